use super::*;

const GOOD: &str = r#"[os]
name = "debian"
ref = "debian/bookworm/amd64"

[debian]
suite = "bookworm"
packages = [
    "systemd",
    "linux-image-amd64",
    "zstd=1.5.4+dfsg2-5",
]

[system]
hostname = "box"
kernel-cmdline = ["console=ttyS0"]
units = ["systemd-networkd.service"]

[user]
name = "admin"
ssh-authorized-keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG admin@example"]
groups = ["sudo"]

[version]
scheme = "counter"
prefix = "12."

[[hooks]]
name = "motd"
run = "echo hi > /etc/motd"

[[hooks]]
name = "host side"
run = "true"
chroot = false
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse(text, Path::new("/tmp/m/minimal.toml"))
}

/// GOOD with `from` replaced by `to` (which must occur exactly once).
fn variant(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from}");
    GOOD.replace(from, to)
}

fn line_of_text(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn a_good_manifest_parses_with_defaults() {
    let m = parse(GOOD).unwrap();
    assert_eq!(m.os.ref_name, "debian/bookworm/amd64");
    assert_eq!(m.debian.mirror, DEFAULT_MIRROR);
    assert_eq!(m.debian.architecture, "amd64");
    assert_eq!(m.debian.components, ["main"]);
    assert_eq!(m.debian.variant, "minbase");
    assert_eq!(m.debian.source_date_epoch, DEFAULT_SOURCE_DATE_EPOCH);
    assert_eq!(m.system.hostname, "box");
    assert_eq!(m.version.scheme, Scheme::Counter);
    assert_eq!(m.version.prefix, "12.");
    assert_eq!(m.hooks.len(), 2);
    assert!(m.hooks[0].chroot && !m.hooks[1].chroot);
    let u = m.user.as_ref().unwrap();
    assert_eq!(u.shell, "/bin/bash");
    assert!(u.password_hash.is_none());
    assert_eq!(m.package_line("zstd"), 10);
    assert_eq!(m.package_line("linux-image-amd64"), 9);
    assert_eq!(m.package_line("not-listed"), 7);
    assert_eq!(m.digest.len(), 64);
    assert_eq!(
        m.package_names().collect::<Vec<_>>(),
        ["systemd", "linux-image-amd64", "zstd"]
    );
}

#[test]
fn unknown_field_is_named_with_its_line() {
    let text = variant("hostname = \"box\"", "hostname = \"box\"\nhostnmae = \"x\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, Some(line_of_text(&text, "hostnmae")));
    assert_eq!(e.field.as_deref(), Some("system.hostnmae"));
    assert!(e.message.contains("unknown field `hostnmae`"), "{e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "/tmp/m/minimal.toml:{}: system.hostnmae: ",
            e.line.unwrap()
        )),
        "{shown}"
    );
}

#[test]
fn unknown_table_is_an_error() {
    let e = parse(&format!("{GOOD}\n[extra]\nx = 1\n")).unwrap_err();
    assert!(e.message.contains("unknown field `extra`"), "{e}");
    assert_eq!(e.field.as_deref(), Some("extra"));
}

#[test]
fn wrong_type_is_named_with_its_line() {
    let text = variant("hostname = \"box\"", "hostname = 42");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.line, Some(line_of_text(&text, "hostname = 42")));
    assert_eq!(e.field.as_deref(), Some("system.hostname"));
    assert!(e.message.contains("invalid type"), "{e}");

    let text = variant("chroot = false", "chroot = \"no\"");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("hooks[1].chroot"));
    assert_eq!(e.line, Some(line_of_text(&text, "chroot = \"no\"")));
}

#[test]
fn missing_kernel_points_at_the_package_list() {
    let text = variant("    \"linux-image-amd64\",\n", "");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("debian.packages"));
    assert_eq!(e.line, Some(line_of_text(&text, "packages = [")));
    assert!(e.message.contains("no kernel"), "{e}");
}

#[test]
fn other_architectures_are_refused_clearly() {
    let text = variant(
        "suite = \"bookworm\"",
        "suite = \"bookworm\"\narchitecture = \"arm64\"",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("debian.architecture"));
    assert_eq!(e.line, Some(line_of_text(&text, "architecture")));
    assert!(e.message.contains("\"arm64\" is not supported yet"), "{e}");
}

#[test]
fn missing_required_field() {
    let text = variant("suite = \"bookworm\"\n", "");
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("missing field `suite`"), "{e}");
}

#[test]
fn semantic_checks_name_field_and_line() {
    for (from, to, field, needle) in [
        (
            "\"systemd\",",
            "\"Bad Name\",",
            "debian.packages",
            "Bad Name",
        ),
        (
            "ref = \"debian/bookworm/amd64\"",
            "ref = \"../x\"",
            "os.ref",
            "ref =",
        ),
        (
            "hostname = \"box\"",
            "hostname = \"-box\"",
            "system.hostname",
            "hostname",
        ),
        (
            "units = [\"systemd-networkd.service\"]",
            "units = [\"networkd\"]",
            "system.units",
            "units",
        ),
        (
            "name = \"admin\"",
            "name = \"root\"",
            "user.name",
            "name = \"root\"",
        ),
        (
            "scheme = \"counter\"",
            "scheme = \"weekly\"",
            "version.scheme",
            "scheme",
        ),
    ] {
        let text = variant(from, to);
        let e = parse(&text).unwrap_err();
        assert_eq!(e.field.as_deref(), Some(field), "{to}: {e}");
        assert_eq!(e.line, Some(line_of_text(&text, needle)), "{to}: {e}");
    }
}

#[test]
fn user_needs_a_way_to_log_in() {
    let text = variant(
        "ssh-authorized-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG admin@example\"]\n",
        "",
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("user"));
    let text = variant(
        "ssh-authorized-keys = [\"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG admin@example\"]\n",
        "password-hash = \"$y$j9T$abc$def\"\n",
    );
    assert!(parse(&text).is_ok());
}

#[test]
fn relative_paths_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("overlay")).unwrap();
    let path = dir.path().join("m.toml");
    let text = variant(
        "hostname = \"box\"",
        "hostname = \"box\"\noverlay = \"overlay\"",
    );
    let m = Manifest::parse(&text, &path).unwrap();
    assert_eq!(m.system.overlay, Some(dir.path().join("overlay")));

    let text = variant(
        "hostname = \"box\"",
        "hostname = \"box\"\noverlay = \"nope\"",
    );
    let e = Manifest::parse(&text, &path).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("system.overlay"));
    assert_eq!(e.line, Some(line_of_text(&text, "overlay")));

    let text = format!("{GOOD}\n[signing]\nkey = \"overlay\"\n");
    let e = Manifest::parse(&text, &path).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("signing.key"));
    assert!(e.message.contains("is not a file"), "{e}");
}

#[test]
fn remote_is_checked() {
    let good =
        format!("{GOOD}\n[remote]\nname = \"origin\"\nurl = \"http://127.0.0.1:8080/repo\"\n");
    let m = parse(&good).unwrap();
    assert_eq!(m.remote.as_ref().unwrap().name, "origin");
    let bad = good.replace("http://127", "ftp://127");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("remote.url"));
    let bad = format!("{good}public-key = \"not base64\"\n");
    let e = parse(&bad).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("remote.public-key"));
}

#[test]
fn kernel_names() {
    assert!(is_kernel("linux-image-amd64"));
    assert!(is_kernel("linux-image-6.1.0-18-cloud-amd64"));
    assert!(!is_kernel("linux-image-"));
    assert!(!is_kernel("linux-headers-amd64"));
    assert!(!is_kernel("linux-image-amd64-dbg"));
}

#[test]
fn example_manifest_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/minimal.toml");
    let m = Manifest::load(&path).unwrap();
    assert_eq!(m.os.ref_name, "debian/bookworm/amd64");
    assert!(m.package_names().any(is_kernel));
    assert!(m.package_names().any(|p| p == "systemd"));
    assert!(m.system.overlay.as_ref().is_some_and(|o| o.is_dir()));
}

#[test]
fn automatic_upgrades_are_off_unless_asked_for() {
    assert!(!parse(GOOD).unwrap().upgrades.automatic);
    let on = parse(&format!("{GOOD}\n[upgrades]\nautomatic = true\n")).unwrap();
    assert!(on.upgrades.automatic);
    let text = format!("{GOOD}\n[upgrades]\nautomatic = \"daily\"\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("upgrades.automatic"));
    assert_eq!(e.line, Some(line_of_text(&text, "automatic =")));
    let e = parse(&format!("{GOOD}\n[upgrades]\nautomatik = true\n")).unwrap_err();
    assert!(e.message.contains("unknown field `automatik`"), "{e}");
}
