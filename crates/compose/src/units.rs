//! The systemd units every composed tree gets, for upgrades on the device:
//!
//! * `trellis-finalize-staged.service`: finalizes a staged deployment at shutdown. It is
//!   a oneshot that stays active (`RemainAfterExit=yes`) and does its work in `ExecStop=`,
//!   so that systemd runs `trellis admin finalize` while stopping it, late in the shutdown
//!   (it is ordered before `basic.target`, so it stops after the ordinary services) and
//!   before the file systems it writes are unmounted (`RequiresMountsFor=/sysroot
//!   /sysroot/efi`, after `local-fs.target`). `trellis admin upgrade` starts it *before* it
//!   stages anything, so a unit that cannot start means nothing is staged rather than a
//!   staged deployment that is silently never finalized;
//! * `trellis-finalize-staged.path` starts it too whenever `/run/ostree/staged-deployment`
//!   appears (a deployment staged by another tool, e.g. `ostree admin deploy --stage`).
//!   It is enabled from `/usr/lib`, as part of the OS rather than a setting;
//! * `trellis-upgrade.service` and `trellis-upgrade.timer` (daily, persistent, randomized):
//!   download and stage the update. They only stage: when to reboot into it is the admin's
//!   choice. The timer ships disabled; `[upgrades] automatic = true` enables it;
//! * a drop-in telling `systemd-bless-boot.service` that the ESP is at `/sysroot/efi`,
//!   and, when the tree has it, `systemd-boot-check-no-failures.service` enabled, so that
//!   `boot-complete.target` (which systemd-bless-boot waits for) is reached only once the
//!   boot reached its default target with no failed unit: a boot that does not get there
//!   is not blessed, and after its tries systemd-boot goes back to the previous entry;
//! * `systemd-sysext.service` enabled when the tree has it, so that the system extensions
//!   in /var/lib/extensions are merged at every boot (Debian ships it disabled);
//! * systemd-gpt-auto-generator masked in /etc: its ESP automount on /efi (a symlink in
//!   a deployment) fails, and that failure alone would keep every boot from being blessed.

use crate::error::Result;
use crate::fsutil;
use crate::manifest::Manifest;
use std::path::Path;

/// Where the units go in the tree.
pub const UNIT_DIR: &str = "usr/lib/systemd/system";
pub const FINALIZE_SERVICE: &str = "trellis-finalize-staged.service";
pub const FINALIZE_PATH: &str = "trellis-finalize-staged.path";
pub const UPGRADE_SERVICE: &str = "trellis-upgrade.service";
pub const UPGRADE_TIMER: &str = "trellis-upgrade.timer";
/// systemd's own unit that gates `boot-complete.target` on a boot without failed units.
pub const BOOT_CHECK: &str = "systemd-boot-check-no-failures.service";
/// Merges the system extensions in /var/lib/extensions at boot; Debian ships it disabled,
/// and without it an installed extension is merged only until the next reboot.
pub const SYSEXT: &str = "systemd-sysext.service";
/// Masked: booted by systemd-boot, it would set up an automount of the ESP on /efi, which
/// in a deployment is the symlink `efi -> sysroot/efi` (the ESP is mounted there from
/// fstab). The automount fails, and one failed unit is enough for the boot check above to
/// refuse to bless the boot, so that a good deployment would be rolled back.
const GPT_AUTO_MASK: &str = "etc/systemd/system-generators/systemd-gpt-auto-generator";
/// Units of the tree's systemd are in /lib on Debian 12 (the same directory, usr-merged).
const SYSTEMD_UNIT_DIRS: &[&str] = &["usr/lib/systemd/system", "lib/systemd/system"];
const BLESS_DROPIN: &str = "systemd-bless-boot.service.d/trellis-esp.conf";

const FINALIZE_SERVICE_TEXT: &str = "\
[Unit]
Description=Finalize a staged trellis deployment at shutdown
ConditionPathExists=/run/ostree-booted
DefaultDependencies=no
# Runs while stopping: after local file systems at start means before them at shutdown,
# so /sysroot and the ESP are still mounted when the boot entries are written.
RequiresMountsFor=/sysroot /sysroot/efi
After=local-fs.target systemd-journal-flush.service
Before=basic.target final.target
Conflicts=final.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStop=/usr/bin/trellis admin finalize
# Copying a kernel and initramfs to the ESP may take a while on slow disks.
TimeoutStopSec=5min
";

const FINALIZE_PATH_TEXT: &str = "\
[Unit]
Description=Watch for a staged trellis deployment to finalize at shutdown
ConditionPathExists=/run/ostree-booted

[Path]
PathExists=/run/ostree/staged-deployment
Unit=trellis-finalize-staged.service

[Install]
WantedBy=multi-user.target
";

const UPGRADE_SERVICE_TEXT: &str = "\
# Downloads and stages the update; it is booted at the next reboot, whenever the admin
# reboots. To reboot into it at once, override ExecStart= with `trellis admin upgrade
# --reboot` in a drop-in.
[Unit]
Description=Download and stage a trellis OS update
ConditionPathExists=/run/ostree-booted
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/bin/trellis admin upgrade
";

const UPGRADE_TIMER_TEXT: &str = "\
[Unit]
Description=Daily download and staging of trellis OS updates
ConditionPathExists=/run/ostree-booted

[Timer]
OnCalendar=daily
# A device that was off at the time catches up at boot; a fleet does not all ask at once.
Persistent=true
RandomizedDelaySec=1h

[Install]
WantedBy=timers.target
";

const BLESS_DROPIN_TEXT: &str = "\
# trellis mounts the ESP at /sysroot/efi: this is where systemd-bless-boot finds the boot
# entry to mark good.
[Service]
Environment=SYSTEMD_ESP_PATH=/sysroot/efi
";

/// Write the units into the tree, and enable the path unit from /usr/lib.
pub fn install(tree: &Path) -> Result<()> {
    let dir = tree.join(UNIT_DIR);
    for (name, text) in [
        (FINALIZE_SERVICE, FINALIZE_SERVICE_TEXT),
        (FINALIZE_PATH, FINALIZE_PATH_TEXT),
        (UPGRADE_SERVICE, UPGRADE_SERVICE_TEXT),
        (UPGRADE_TIMER, UPGRADE_TIMER_TEXT),
        (BLESS_DROPIN, BLESS_DROPIN_TEXT),
    ] {
        fsutil::write_file(&dir.join(name), text.as_bytes(), 0o644)?;
    }
    let wants = dir.join("multi-user.target.wants");
    fsutil::ensure_dir(&wants, 0o755)?;
    fsutil::symlink(&format!("../{FINALIZE_PATH}"), &wants.join(FINALIZE_PATH))?;
    let mask = tree.join(GPT_AUTO_MASK);
    if let Some(parent) = mask.parent() {
        fsutil::ensure_dir(parent, 0o755)?;
    }
    fsutil::symlink("/dev/null", &mask)
}

/// The units to enable with `systemctl enable` in the tree (after [`install`]).
pub fn to_enable(tree: &Path, m: &Manifest) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for unit in [BOOT_CHECK, SYSEXT] {
        for d in SYSTEMD_UNIT_DIRS {
            if fsutil::lstat(&tree.join(d).join(unit))?.is_some() {
                out.push(unit.to_string());
                break;
            }
        }
    }
    if m.upgrades.automatic {
        out.push(UPGRADE_TIMER.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(extra: &str) -> Manifest {
        let text = format!(
            "[os]\nname = \"debian\"\nref = \"debian/test\"\n\n[debian]\nsuite = \"bookworm\"\n\
             packages = [\"linux-image-amd64\"]\n{extra}"
        );
        Manifest::parse(&text, Path::new("/tmp/m.toml")).unwrap()
    }

    /// `key=value` lines of a unit file, in order.
    fn keys(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.starts_with('['))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn value<'a>(k: &'a [(String, String)], key: &str) -> Vec<&'a str> {
        k.iter()
            .filter(|(x, _)| x == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn units_are_written_and_the_path_unit_is_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        install(t).unwrap();
        // Twice is harmless (a rebuild over the same tree).
        install(t).unwrap();
        let units = t.join(UNIT_DIR);
        for name in [
            FINALIZE_SERVICE,
            FINALIZE_PATH,
            UPGRADE_SERVICE,
            UPGRADE_TIMER,
            BLESS_DROPIN,
        ] {
            let md = std::fs::metadata(units.join(name)).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o777,
                0o644
            );
        }
        assert_eq!(
            std::fs::read_link(units.join("multi-user.target.wants").join(FINALIZE_PATH)).unwrap(),
            Path::new("../trellis-finalize-staged.path")
        );
        assert_eq!(
            std::fs::read_link(t.join(GPT_AUTO_MASK)).unwrap(),
            Path::new("/dev/null")
        );

        let fin = keys(&std::fs::read_to_string(units.join(FINALIZE_SERVICE)).unwrap());
        assert_eq!(value(&fin, "ExecStop"), ["/usr/bin/trellis admin finalize"]);
        assert!(value(&fin, "ExecStart").is_empty());
        assert_eq!(value(&fin, "RemainAfterExit"), ["yes"]);
        assert_eq!(value(&fin, "RequiresMountsFor"), ["/sysroot /sysroot/efi"]);
        assert_eq!(value(&fin, "DefaultDependencies"), ["no"]);
        let path = keys(&std::fs::read_to_string(units.join(FINALIZE_PATH)).unwrap());
        assert_eq!(
            value(&path, "PathExists"),
            ["/run/ostree/staged-deployment"]
        );
        assert_eq!(value(&path, "Unit"), [FINALIZE_SERVICE]);
        let up = keys(&std::fs::read_to_string(units.join(UPGRADE_SERVICE)).unwrap());
        // Stages only: no --reboot.
        assert_eq!(value(&up, "ExecStart"), ["/usr/bin/trellis admin upgrade"]);
        let timer = keys(&std::fs::read_to_string(units.join(UPGRADE_TIMER)).unwrap());
        assert_eq!(value(&timer, "OnCalendar"), ["daily"]);
        assert_eq!(value(&timer, "Persistent"), ["true"]);
        assert_eq!(value(&timer, "WantedBy"), ["timers.target"]);
        let bless = keys(&std::fs::read_to_string(units.join(BLESS_DROPIN)).unwrap());
        assert_eq!(
            value(&bless, "Environment"),
            ["SYSTEMD_ESP_PATH=/sysroot/efi"]
        );
    }

    #[test]
    fn the_timer_is_enabled_only_when_the_manifest_asks() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        assert!(to_enable(t, &manifest("")).unwrap().is_empty());
        assert_eq!(
            to_enable(t, &manifest("\n[upgrades]\nautomatic = true\n")).unwrap(),
            [UPGRADE_TIMER]
        );
        assert!(
            to_enable(t, &manifest("\n[upgrades]\nautomatic = false\n"))
                .unwrap()
                .is_empty()
        );
        // The boot check and systemd-sysext are enabled when the tree's systemd has them.
        fsutil::write_file(&t.join("lib/systemd/system").join(BOOT_CHECK), b"", 0o644).unwrap();
        assert_eq!(to_enable(t, &manifest("")).unwrap(), [BOOT_CHECK]);
        fsutil::write_file(&t.join("usr/lib/systemd/system").join(SYSEXT), b"", 0o644).unwrap();
        assert_eq!(to_enable(t, &manifest("")).unwrap(), [BOOT_CHECK, SYSEXT]);
    }

    #[test]
    fn systemd_accepts_the_units() {
        // systemd-analyze checks the syntax, the dependencies and that ExecStop's binary
        // exists, against a root holding the units, the host's systemd units and a
        // stand-in trellis.
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path();
        install(t).unwrap();
        fsutil::write_file(&t.join("usr/bin/trellis"), b"#!/bin/sh\n", 0o755).unwrap();
        // The host's own systemd units (Debian 12's, as in the composed trees) for the
        // targets ours are ordered against.
        fsutil::ensure_dir(&t.join("lib/systemd"), 0o755).unwrap();
        trellis_tools::Tool::new("cp")
            .arg("-a")
            .arg("/lib/systemd/system")
            .arg(t.join("lib/systemd/"))
            .run()
            .unwrap();
        let units = t.join(UNIT_DIR);
        let out = trellis_tools::Tool::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", t.display()))
            .args(
                [
                    FINALIZE_SERVICE,
                    FINALIZE_PATH,
                    UPGRADE_SERVICE,
                    UPGRADE_TIMER,
                ]
                .iter()
                .map(|n| units.join(n)),
            )
            .run();
        match out {
            Ok(o) => {
                let err = o.stderr_text();
                assert!(
                    !err.contains("trellis"),
                    "systemd-analyze complained about our units:\n{err}"
                );
            }
            Err(e) => panic!("systemd-analyze verify failed: {e}"),
        }
    }
}
