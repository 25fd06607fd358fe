//! The staged trees: the sysroot that becomes the ext4 root, and the directory that becomes
//! the ESP.
//!
//! The sysroot is made the way a device's is (OSTree's layout, [`trellis_sysroot`]): a bare
//! repository holding only the image's commit, recorded as `REMOTE:REF` with the remote
//! configured; one deployment with the origin `REMOTE:REF`; `[sysroot] esp=efi` and the
//! boot-counting tries in the repository config; an empty `efi` directory, where the
//! booted system mounts the ESP (`/sysroot/efi`, reached from the deployment as `/efi`).
//! The deploy writes the kernel, initramfs and loader entries to the ESP directory; then
//! systemd-boot is copied there from the deployed tree.

use crate::error::{ImageError, IoContext, Result};
use crate::ids::{ImageIds, volume_id_text};
use crate::source::{SYSTEMD_BOOT_X64, Source};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use trellis_store::Repo;
use trellis_store::sign::PublicKey;
use trellis_sysroot::{DeployOptions, Deployment, EspConfig, Host, Kargs, Sysroot, layout};
use trellis_transport::pull::{self, LocalPullOptions, PullProgress};

/// Where the booted system mounts the ESP, relative to the physical root.
pub const ESP_MOUNT: &str = "efi";
/// systemd-boot's two places on the ESP: the removable-media fallback path every firmware
/// boots, and systemd's own.
pub const ESP_LOADERS: &[&str] = &["EFI/BOOT/BOOTX64.EFI", "EFI/systemd/systemd-bootx64.efi"];
/// The kernel argument added unless the tree or the options set `panic=`: a kernel that
/// panics reboots, so that boot counting can fall back.
pub const DEFAULT_PANIC: &str = "panic=10";

/// The remote the image's system upgrades from.
#[derive(Clone, Debug)]
pub struct RemoteSpec {
    pub name: String,
    pub url: String,
    /// Keys commits must be signed with; none: no signature check.
    pub keys: Vec<PublicKey>,
}

/// What the sysroot is made with.
pub struct StageOptions<'a> {
    pub remote: Option<&'a RemoteSpec>,
    pub karg: &'a [String],
    pub karg_append: &'a [String],
    /// 0: no boot counting.
    pub boot_counting_tries: u32,
    pub loader_timeout: u32,
}

pub struct Staged {
    pub deployment: Deployment,
    /// The refspec the origin records.
    pub origin: String,
    pub kargs: Kargs,
    /// The deployment directory, relative to the sysroot, e.g.
    /// `/ostree/deploy/debian/deploy/CSUM.0`.
    pub deployment_path: String,
}

/// The kernel arguments: `root=UUID=... rw`, the tree's defaults (less any `root=`, `rw`,
/// `ro`), `panic=10` unless set, then `--karg` (replacing) and `--karg-append`.
pub fn kernel_args(
    root_uuid: &str,
    tree: &Kargs,
    karg: &[String],
    karg_append: &[String],
) -> Kargs {
    let mut k = Kargs::new();
    k.append(&format!("root=UUID={root_uuid}"));
    k.append("rw");
    for a in tree.args() {
        if !matches!(trellis_sysroot::kargs::key_of(a), "root" | "rw" | "ro") {
            k.append(a);
        }
    }
    if k.get("panic").is_none() {
        k.append(DEFAULT_PANIC);
    }
    for a in karg {
        k.replace(a);
    }
    for a in karg_append {
        k.append(a);
    }
    k
}

/// The remote's config options, as `trellis remote add` writes them.
pub fn remote_options(r: &RemoteSpec) -> Vec<(String, String)> {
    let mut o = vec![("gpg-verify".to_string(), "false".to_string())];
    if !r.keys.is_empty() {
        let keys: Vec<String> = r.keys.iter().map(PublicKey::to_base64).collect();
        o.push(("verification-ed25519-key".into(), keys.join(";")));
        o.push(("sign-verify".into(), "ed25519".into()));
    }
    o
}

/// The fstab line that mounts the ESP where the sysroot config says it is.
pub fn esp_fstab_line(volume_id: u32) -> String {
    format!(
        "UUID={} /sysroot/{ESP_MOUNT} vfat umask=0077,shortname=winnt 0 2",
        volume_id_text(volume_id)
    )
}

/// `old` fstab with our ESP line instead of any other for the same mount point.
pub fn fstab_with_esp(old: &str, volume_id: u32) -> String {
    let mut out = String::new();
    for l in old.lines() {
        let target = l.split_whitespace().nth(1);
        let ours = !l.trim_start().starts_with('#')
            && matches!(target, Some(t) if t == format!("/sysroot/{ESP_MOUNT}") || t == format!("/{ESP_MOUNT}"));
        if !ours {
            out += l;
            out.push('\n');
        }
    }
    out += &esp_fstab_line(volume_id);
    out.push('\n');
    out
}

/// `loader.conf` with `timeout N` (first), keeping the other lines esp::sync wrote.
pub fn loader_conf_with_timeout(old: &str, timeout: u32) -> String {
    let mut out = format!("timeout {timeout}\n");
    for l in old.lines() {
        if l.split_whitespace().next() != Some("timeout") {
            out += l;
            out.push('\n');
        }
    }
    out
}

fn mkdir(p: &Path, mode: u32) -> Result<()> {
    std::fs::create_dir_all(p).ctx("create directory", p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).ctx("chmod", p)
}

/// A regular file (not a symlink, which could point out of the tree), read whole.
fn read_regular(p: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(p) {
        Ok(md) if md.file_type().is_file() => Ok(Some(std::fs::read(p).ctx("read", p)?)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ImageError::io("stat", p, e)),
    }
}

fn write_file(p: &Path, data: &[u8], mode: u32) -> Result<()> {
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).ctx("create directory", parent)?;
    }
    std::fs::write(p, data).ctx("write", p)?;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).ctx("chmod", p)
}

/// Build the sysroot in `root` and the ESP content in `esp`. `host` is an empty directory
/// standing in for the running system (so that nothing of the build machine's own state is
/// read).
#[allow(clippy::too_many_arguments)]
pub fn stage(
    src: &Repo,
    source: &Source,
    ids: &ImageIds,
    opts: &StageOptions<'_>,
    root: &Path,
    esp: &Path,
    host: &Path,
    pull_progress: &dyn PullProgress,
) -> Result<Staged> {
    let mut repo = layout::init_fs(root)?;
    // The root directory of the file system: not the temp directory's 0700.
    mkdir(root, 0o755)?;
    mkdir(&root.join(ESP_MOUNT), 0o755)?;
    mkdir(esp, 0o755)?;
    layout::os_init(root, &source.osname)?;

    // Only the commit itself, by checksum: the source ref may move meanwhile.
    let hex = source.commit.to_hex();
    pull::pull_local(
        &repo,
        src,
        &LocalPullOptions {
            refs: vec![hex.clone()],
            depth: 0,
            remote: None,
        },
        pull_progress,
    )?;
    let origin = match opts.remote {
        Some(r) => format!("{}:{}", r.name, source.ref_name),
        None => source.ref_name.clone(),
    };
    repo.set_ref(&origin, Some(&source.commit))?;
    if let Some(r) = opts.remote {
        repo.add_remote(&r.name, &r.url, &remote_options(r), false)?;
    }
    let mut config = repo.config().clone();
    config.set("sysroot", "esp", ESP_MOUNT);
    if opts.boot_counting_tries > 0 {
        config.set(
            "sysroot",
            "boot-counting-tries",
            &opts.boot_counting_tries.to_string(),
        );
    }
    repo.write_config(&config)?;
    drop(repo);

    let host_root = host.join("root");
    mkdir(&host_root, 0o755)?;
    let cmdline = host.join("cmdline");
    std::fs::write(&cmdline, "").ctx("write", &cmdline)?;
    let mut sr = Sysroot::open_with(
        root,
        Host {
            root: host_root,
            run: host.join("run"),
            cmdline,
        },
    )?;
    sr.set_esp(Some(EspConfig {
        dir: esp.to_path_buf(),
        tries: (opts.boot_counting_tries > 0).then_some(opts.boot_counting_tries),
    }));
    let kargs = kernel_args(
        &ids.root_fs.to_string(),
        &source.cmdline,
        opts.karg,
        opts.karg_append,
    );
    let out = trellis_sysroot::deploy(
        &sr,
        &origin,
        &DeployOptions {
            osname: Some(source.osname.clone()),
            kargs: Some(kargs.clone()),
            no_cleanup: true,
            ..DeployOptions::default()
        },
    )?;
    let d = out.deployment;
    let dir = d.dir(root);
    // The seal goes back on in the file system (ext4::make); here it would stop the
    // timestamps from being fixed and the staging area from being removed.
    crate::fsutil::clear_immutable(&dir)?;

    write_fstab(&dir, ids.esp_volume_id)?;
    install_systemd_boot(&dir, esp, &source.commit.to_hex())?;
    let conf = esp.join("loader/loader.conf");
    let old = std::fs::read_to_string(&conf).unwrap_or_default();
    write_file(
        &conf,
        loader_conf_with_timeout(&old, opts.loader_timeout).as_bytes(),
        0o644,
    )?;
    let rel = dir
        .strip_prefix(root)
        .map(|p| format!("/{}", p.display()))
        .map_err(|_| {
            ImageError::Invalid(format!("{} is outside {}", dir.display(), root.display()))
        })?;
    Ok(Staged {
        deployment: d,
        origin,
        kargs,
        deployment_path: rel,
    })
}

fn write_fstab(deployment: &Path, volume_id: u32) -> Result<()> {
    let etc = deployment.join("etc");
    let md = std::fs::symlink_metadata(&etc).ctx("stat", &etc)?;
    if !md.is_dir() {
        return Err(ImageError::Invalid(format!(
            "{}: the deployment's /etc is not a directory",
            etc.display()
        )));
    }
    let fstab = etc.join("fstab");
    let old = match std::fs::symlink_metadata(&fstab) {
        Ok(m) if m.file_type().is_symlink() => {
            return Err(ImageError::Invalid(format!(
                "{}: /etc/fstab is a symlink in the tree; make it a file",
                fstab.display()
            )));
        }
        _ => read_regular(&fstab)?,
    };
    let old = old
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    write_file(&fstab, fstab_with_esp(&old, volume_id).as_bytes(), 0o644)
}

fn install_systemd_boot(deployment: &Path, esp: &Path, commit: &str) -> Result<()> {
    let src = deployment.join(SYSTEMD_BOOT_X64);
    let Some(data) = read_regular(&src)? else {
        return Err(ImageError::NoSystemdBoot {
            commit: commit.to_string(),
            path: SYSTEMD_BOOT_X64.to_string(),
        });
    };
    for rel in ESP_LOADERS {
        let dest: PathBuf = esp.join(rel);
        write_file(&dest, &data, 0o644)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kargs_order_and_overrides() {
        let tree = Kargs::parse("console=tty0 console=ttyS0,115200 root=/dev/sda2 ro quiet");
        let k = kernel_args("u-u-i-d", &tree, &[], &[]);
        assert_eq!(
            k.to_string(),
            "root=UUID=u-u-i-d rw console=tty0 console=ttyS0,115200 quiet panic=10"
        );
        let k = kernel_args(
            "x",
            &Kargs::parse("panic=30"),
            &["quiet".into(), "panic=0".into()],
            &["console=ttyS1".into()],
        );
        assert_eq!(k.to_string(), "root=UUID=x rw panic=0 quiet console=ttyS1");
        let k = kernel_args("x", &Kargs::new(), &["root=/dev/vda2".into()], &[]);
        assert_eq!(k.to_string(), "root=/dev/vda2 rw panic=10");
    }

    #[test]
    fn remote_is_written_as_remote_add_does() {
        let key = trellis_store::sign::SecretKey::generate().unwrap().public();
        let r = RemoteSpec {
            name: "origin".into(),
            url: "http://10.0.2.2:8080".into(),
            keys: vec![key],
        };
        assert_eq!(
            remote_options(&r),
            vec![
                ("gpg-verify".to_string(), "false".to_string()),
                ("verification-ed25519-key".to_string(), key.to_base64()),
                ("sign-verify".to_string(), "ed25519".to_string()),
            ]
        );
        let unsigned = RemoteSpec { keys: vec![], ..r };
        assert_eq!(remote_options(&unsigned).len(), 1);
    }

    #[test]
    fn fstab_keeps_other_lines_and_replaces_an_esp_line() {
        let old = "# UNCONFIGURED FSTAB FOR BASE SYSTEM\nUUID=0000-0001 /sysroot/efi vfat defaults 0 2\ntmpfs /tmp tmpfs defaults 0 0\n";
        assert_eq!(
            fstab_with_esp(old, 0xabcd_0123),
            "# UNCONFIGURED FSTAB FOR BASE SYSTEM\ntmpfs /tmp tmpfs defaults 0 0\n\
             UUID=ABCD-0123 /sysroot/efi vfat umask=0077,shortname=winnt 0 2\n"
        );
        assert_eq!(
            fstab_with_esp("", 1),
            "UUID=0000-0001 /sysroot/efi vfat umask=0077,shortname=winnt 0 2\n"
        );
    }

    #[test]
    fn loader_conf_timeout() {
        assert_eq!(
            loader_conf_with_timeout("default trellis-*\ntimeout 5\n", 1),
            "timeout 1\ndefault trellis-*\n"
        );
        assert_eq!(loader_conf_with_timeout("", 0), "timeout 0\n");
    }
}
