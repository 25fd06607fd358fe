//! The e2e manifests: the example manifest as it is, plus what a test needs to drive the
//! guest (root logged in on the serial console), a signing key, and extra packages for the
//! upgrade.

use anyhow::{Context, Result, bail};
use std::fs;
use std::path::Path;
use toml::{Table, Value};

/// Log root in on the serial console, so the test can type commands.
const AUTOLOGIN_HOOK: &str = r#"mkdir -p /etc/systemd/system/serial-getty@ttyS0.service.d
cat > /etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
"#;

/// Write to `out` the manifest `example` with relative paths made absolute, the autologin
/// hook, `key` as the signing key and `extra` packages added.
pub fn derive(example: &Path, out: &Path, key: &Path, extra: &[&str]) -> Result<()> {
    let text =
        fs::read_to_string(example).with_context(|| format!("reading {}", example.display()))?;
    let mut m: Table = text
        .parse()
        .with_context(|| format!("parsing {}", example.display()))?;
    let dir = example
        .parent()
        .context("the example manifest has no directory")?;

    if let Some(Value::Table(system)) = m.get_mut("system")
        && let Some(Value::String(overlay)) = system.get_mut("overlay")
    {
        *overlay = dir.join(&*overlay).to_string_lossy().into_owned();
    }
    let Some(Value::Table(debian)) = m.get_mut("debian") else {
        bail!("{} has no [debian] table", example.display());
    };
    let Some(Value::Array(packages)) = debian.get_mut("packages") else {
        bail!("{} has no debian.packages", example.display());
    };
    for p in extra {
        packages.push(Value::String((*p).to_string()));
    }

    let mut signing = Table::new();
    signing.insert(
        "key".into(),
        Value::String(key.to_string_lossy().into_owned()),
    );
    m.insert("signing".into(), Value::Table(signing));

    let mut hook = Table::new();
    hook.insert(
        "name".into(),
        Value::String("e2e: root on the serial console".into()),
    );
    hook.insert("run".into(), Value::String(AUTOLOGIN_HOOK.into()));
    match m.get_mut("hooks") {
        Some(Value::Array(hooks)) => hooks.push(Value::Table(hook)),
        _ => {
            m.insert("hooks".into(), Value::Array(vec![Value::Table(hook)]));
        }
    }

    let text = toml::to_string(&m).context("writing the e2e manifest")?;
    fs::write(out, text).with_context(|| format!("writing {}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_gets_key_hook_and_packages() {
        let dir = tempfile::tempdir().unwrap();
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/minimal.toml");
        let out = dir.path().join("m.toml");
        derive(&example, &out, Path::new("/k/signing.key"), &["strace"]).unwrap();
        let m: Table = fs::read_to_string(&out).unwrap().parse().unwrap();
        let packages = m["debian"]["packages"].as_array().unwrap();
        assert_eq!(packages.last().unwrap().as_str(), Some("strace"));
        assert!(packages.iter().any(|p| p.as_str() == Some("systemd-boot")));
        assert_eq!(m["signing"]["key"].as_str(), Some("/k/signing.key"));
        let overlay = m["system"]["overlay"].as_str().unwrap();
        assert!(Path::new(overlay).is_absolute() && overlay.ends_with("overlay"));
        let hooks = m["hooks"].as_array().unwrap();
        assert!(
            hooks.last().unwrap()["run"]
                .as_str()
                .unwrap()
                .contains("--autologin root")
        );
    }
}
