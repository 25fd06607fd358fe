//! The sysroot library through a device's life: deploy, stage and finalize on a (simulated)
//! booted system, the booted deployment's protection, rollback by subbootversion swap,
//! ESP syncs, leftovers of interrupted deploys, and refusals that write nothing.
//!
//! "Booted" is simulated with a [`Host`] whose root is the booted deployment's directory
//! (as `/` is on a device), whose run directory holds `ostree-booted`, and whose command
//! line names the booted deployment.

use std::path::{Path, PathBuf};
use std::process::Command;
use trellis_store::commit::{self, CommitOptions, NoProgress, Source};
use trellis_store::gvariant::Value;
use trellis_store::prune::{PruneOptions, prune};
use trellis_store::{Checksum, ObjectType};
use trellis_sysroot::cleanup::cleanup;
use trellis_sysroot::rollback::rollback;
use trellis_sysroot::stage::{FinalizeOutcome, finalize_staged, stage};
use trellis_sysroot::staged_state::{DeploymentId, StagedState};
use trellis_sysroot::{
    DeployOptions, Deployment, Error, EspConfig, Host, Kargs, Sysroot, deploy, layout, load,
};

struct Fx {
    tmp: tempfile::TempDir,
    sysroot: PathBuf,
}

impl Drop for Fx {
    fn drop(&mut self) {
        let _ = Command::new("sh")
            .arg("-c")
            .arg("for d in \"$1\"/ostree/deploy/*/deploy/*/; do [ -d \"$d\" ] && chattr -i \"$d\"; done; true")
            .arg("sh")
            .arg(&self.sysroot)
            .status();
    }
}

fn write(p: &Path, data: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir_in("/dev/shm").unwrap();
        let sysroot = tmp.path().join("sysroot");
        layout::init_fs(&sysroot).unwrap();
        layout::os_init(&sysroot, "testos").unwrap();
        std::fs::create_dir_all(tmp.path().join("run")).unwrap();
        std::fs::create_dir_all(tmp.path().join("elsewhere")).unwrap();
        Fx { tmp, sysroot }
    }

    fn host(&self, booted: Option<&Deployment>) -> Host {
        Host {
            root: match booted {
                Some(d) => d.dir(&self.sysroot),
                None => self.tmp.path().join("elsewhere"),
            },
            run: self.tmp.path().join("run"),
            cmdline: self.tmp.path().join("cmdline"),
        }
    }

    fn offline(&self) -> Sysroot {
        Sysroot::open_with(&self.sysroot, self.host(None)).unwrap()
    }

    /// The sysroot as seen from a system booted into `d` (a deployment with a boot entry).
    fn booted_into(&self, d: &Deployment) -> Sysroot {
        let state = load(&self.offline()).unwrap();
        write(&self.tmp.path().join("run/ostree-booted"), "");
        write(
            &self.tmp.path().join("cmdline"),
            &format!(
                "root=LABEL=root rw ostree=/ostree/boot.{}/{}/{}/{}\n",
                state.bootversion, d.osname, d.bootcsum, d.bootserial
            ),
        );
        Sysroot::open_with(&self.sysroot, self.host(Some(d))).unwrap()
    }

    fn tree(&self, version: &str, edit: impl Fn(&Path)) -> PathBuf {
        let root = self.tmp.path().join(format!("tree-{version}"));
        let m = root.join("usr/lib/modules/6.1.0-test");
        write(&m.join("vmlinuz"), "KERNEL");
        write(&m.join("initramfs.img"), "INITRD");
        write(
            &root.join("usr/lib/os-release"),
            "PRETTY_NAME=\"Lib Test OS\"\n",
        );
        write(&root.join("usr/etc/hostname"), "debian\n");
        write(&root.join("usr/etc/motd"), "welcome\n");
        write(&root.join("usr/bin/hello"), &format!("echo {version}\n"));
        std::fs::create_dir_all(root.join("var")).unwrap();
        edit(&root);
        root
    }

    fn commit(&self, version: &str, edit: impl Fn(&Path)) -> Checksum {
        let tree = self.tree(version, edit);
        let sr = self.offline();
        let opts = CommitOptions {
            branch: Some("testos/stable".into()),
            subject: format!("version {version}"),
            metadata: vec![("version".into(), Value::str(version))],
            ..CommitOptions::default()
        };
        commit::commit(sr.repo(), Source::Dir(&tree), &opts, &NoProgress)
            .unwrap()
            .commit
    }

    fn dir(&self, c: &Checksum, serial: u32) -> PathBuf {
        self.sysroot
            .join(format!("ostree/deploy/testos/deploy/{c}.{serial}"))
    }
}

fn order(sr: &Sysroot) -> Vec<(Checksum, u32)> {
    load(sr)
        .unwrap()
        .deployments
        .iter()
        .map(|d| (d.csum, d.serial))
        .collect()
}

fn ostree_status(sysroot: &Path) -> String {
    let out = Command::new("ostree")
        .args([
            "admin",
            "status",
            &format!("--sysroot={}", sysroot.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn kargs(s: &str) -> DeployOptions {
    DeployOptions {
        kargs: Some(Kargs::parse(s)),
        ..DeployOptions::default()
    }
}

#[test]
fn stage_then_finalize_carries_late_etc_changes() {
    let fx = Fx::new();
    let c1 = fx.commit("1.0", |_| {});
    let d1 = deploy(&fx.offline(), "testos/stable", &kargs("root=LABEL=root rw"))
        .unwrap()
        .deployment;
    let sr = fx.booted_into(&d1);
    let st = load(&sr).unwrap();
    assert!(st.booted_system);
    assert_eq!(st.booted, Some(0));

    let c2 = fx.commit("2.0", |t| write(&t.join("usr/etc/motd"), "welcome to 2\n"));
    let staged = stage(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    assert_eq!(staged.deployment.csum, c2);
    assert!(staged.merge.as_ref().is_some_and(|m| m.same(&d1)));
    let state_file = fx.tmp.path().join("run/ostree/staged-deployment");
    let parsed = StagedState::parse(&std::fs::read(&state_file).unwrap(), &state_file).unwrap();
    assert_eq!(parsed.target.csum, c2);
    assert_eq!(parsed.merge.as_ref().map(|m| m.csum), Some(c1));
    assert_eq!(parsed.kargs, None);

    let st = load(&sr).unwrap();
    assert_eq!(st.staged, Some(0));
    assert_eq!(st.booted, Some(1));
    assert_eq!(st.deployments[0].kargs.to_string(), "root=LABEL=root rw");
    // No boot entry yet: the sysroot's own list is unchanged.
    assert_eq!(order(&fx.offline()), [(c1, 0)]);
    // The staged commit is held by a deployment ref: a prune keeps it.
    let repo = sr.repo();
    prune(
        repo,
        &PruneOptions {
            refs_only: true,
            depth: Some(0),
            ..PruneOptions::default()
        },
    )
    .unwrap();
    assert!(repo.has_object(ObjectType::Commit, &c2).unwrap());

    // The admin changes /etc after staging; finalization (at shutdown) carries it over.
    write(&fx.dir(&c1, 0).join("etc/hostname"), "late-edit\n");
    let FinalizeOutcome::Finalized(f) = finalize_staged(&sr).unwrap() else {
        panic!("not finalized")
    };
    assert_eq!(f.deployment.csum, c2);
    let etc = f.etc.unwrap();
    assert_eq!(etc.modified, ["hostname"]);
    let e2 = fx.dir(&c2, 0).join("etc");
    assert_eq!(read(&e2.join("hostname")), "late-edit\n");
    assert_eq!(read(&e2.join("motd")), "welcome to 2\n");
    assert!(!state_file.exists());
    assert!(trellis_sysroot::fsutil::is_immutable(&fx.dir(&c2, 0)).unwrap());
    let st = load(&sr).unwrap();
    assert_eq!(st.staged, None);
    assert_eq!(st.booted, Some(1));
    assert!(st.is_pending(0));
    assert_eq!(st.deployments[0].kargs.to_string(), "root=LABEL=root rw");
    let text = ostree_status(&fx.sysroot);
    let first = text.find(&c2.to_hex()).unwrap();
    let second = text.find(&c1.to_hex()).unwrap();
    assert!(first < second, "{text}");

    // Booted into c1 with c2 pending, rollback makes the booted one the default again.
    let r = rollback(&sr).unwrap();
    assert!(r.new_default.same(&d1));
    assert_eq!(order(&sr), [(c1, 0), (c2, 0)]);
    // Nothing left to finalize.
    assert!(matches!(
        finalize_staged(&sr).unwrap(),
        FinalizeOutcome::NothingStaged
    ));
}

#[test]
fn finalization_can_be_locked_and_failures_leave_a_stamp() {
    let fx = Fx::new();
    fx.commit("1.0", |_| {});
    let d1 = deploy(&fx.offline(), "testos/stable", &DeployOptions::default())
        .unwrap()
        .deployment;
    let sr = fx.booted_into(&d1);
    let c2 = fx.commit("2.0", |_| {});
    stage(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    let lock = fx.tmp.path().join("run/ostree/staged-deployment-locked");
    write(&lock, "");
    assert!(matches!(finalize_staged(&sr).unwrap(), FinalizeOutcome::Locked(d) if d.csum == c2));
    assert_eq!(load(&sr).unwrap().staged, Some(0));
    std::fs::remove_file(&lock).unwrap();

    // A state file naming a merge deployment that is gone: finalization fails, says why in
    // the stamp, and the boot configuration stays as it was.
    let state_file = sr.staged_state_path();
    let mut st = StagedState::parse(&std::fs::read(&state_file).unwrap(), &state_file).unwrap();
    st.merge = Some(DeploymentId {
        serial: 7,
        ..st.merge.clone().unwrap()
    });
    std::fs::write(&state_file, st.to_bytes()).unwrap();
    let err = finalize_staged(&sr).unwrap_err();
    assert!(err.to_string().contains("merge deployment"), "{err}");
    let stamp = read(&fx.sysroot.join("boot/ostree/finalize-failure.stamp"));
    assert!(stamp.contains("merge deployment"), "{stamp}");
    assert_eq!(order(&fx.offline()), [(d1.csum, 0)]);
}

#[test]
fn the_booted_deployment_is_never_dropped() {
    let fx = Fx::new();
    let c1 = fx.commit("1.0", |_| {});
    let d1 = deploy(&fx.offline(), "testos/stable", &DeployOptions::default())
        .unwrap()
        .deployment;
    let sr = fx.booted_into(&d1);
    let c2 = fx.commit("2.0", |_| {});
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    let c3 = fx.commit("3.0", |_| {});
    let out = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    // The merge deployment is the booted one, so c2 goes and c1 stays.
    assert_eq!(order(&sr), [(c3, 0), (c1, 0)]);
    assert_eq!(
        out.cleanup.unwrap().deployments_removed,
        [format!("testos/{c2}.0")]
    );
    // Writing a list without the booted deployment is refused.
    let state = load(&sr).unwrap();
    let only_new = vec![state.deployments[0].clone()];
    let err = trellis_sysroot::write::write_deployments(&sr, &state, only_new).unwrap_err();
    assert!(err.to_string().contains("booted deployment"), "{err}");
    assert_eq!(order(&sr), [(c3, 0), (c1, 0)]);
    // Staging needs a booted system.
    let err = stage(&fx.offline(), "testos/stable", &DeployOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NotBooted(_)), "{err}");
}

#[test]
fn same_commit_twice_then_rollback_only_swaps_bootlinks() {
    let fx = Fx::new();
    let c1 = fx.commit("1.0", |_| {});
    let sr = fx.offline();
    deploy(&sr, "testos/stable", &kargs("rw")).unwrap();
    let second = deploy(&sr, &c1.to_hex(), &DeployOptions::default()).unwrap();
    assert_eq!(second.deployment.serial, 1);
    let st = load(&sr).unwrap();
    assert_eq!(order(&sr), [(c1, 1), (c1, 0)]);
    assert_eq!(
        st.deployments
            .iter()
            .map(|d| d.bootserial)
            .collect::<Vec<_>>(),
        [0, 1]
    );
    let entries = fx.sysroot.join("boot/loader/entries");
    let before: Vec<String> = ["ostree-1-testos.conf", "ostree-2-testos.conf"]
        .iter()
        .map(|n| read(&entries.join(n)))
        .collect();
    // Same kernel, kernel arguments and version: rollback needs no new boot version.
    let r = rollback(&sr).unwrap();
    assert!(!r.write.new_bootversion);
    assert_eq!(r.write.bootversion, st.bootversion);
    assert_ne!(r.write.subbootversion, st.subbootversion);
    let after: Vec<String> = ["ostree-1-testos.conf", "ostree-2-testos.conf"]
        .iter()
        .map(|n| read(&entries.join(n)))
        .collect();
    assert_eq!(before, after);
    assert_eq!(order(&sr), [(c1, 0), (c1, 1)]);
    let text = ostree_status(&fx.sysroot);
    let i0 = text.find(&format!("{c1}.0")).unwrap();
    let i1 = text.find(&format!("{c1}.1")).unwrap();
    assert!(i0 < i1, "{text}");
    // The refs follow the new subbootversion.
    let refs: Vec<String> = sr
        .repo()
        .list_local_refs()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .filter(|n| n.starts_with("ostree/"))
        .collect();
    let b = r.write.bootversion;
    let s = r.write.subbootversion;
    assert_eq!(
        refs,
        [format!("ostree/{b}/{s}/0"), format!("ostree/{b}/{s}/1")]
    );
}

#[test]
fn interrupted_deploy_leftovers_are_cleaned_up() {
    let fx = Fx::new();
    let c1 = fx.commit("1.0", |_| {});
    let sr = fx.offline();
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    // What a deploy killed before its boot swap leaves: a checked-out, sealed deployment
    // with an origin, a dangling loader.tmp and the other boot version's entries.
    let c2 = fx.commit("2.0", |_| {});
    let half = fx.dir(&c2, 0);
    trellis_store::checkout::checkout_commit(
        sr.repo(),
        &c2,
        &half,
        &trellis_store::checkout::CheckoutOptions::default(),
    )
    .unwrap();
    write(
        &half.with_file_name(format!("{c2}.0.origin")),
        "[origin]\nrefspec=x\n",
    );
    Command::new("chattr")
        .arg("+i")
        .arg(&half)
        .status()
        .unwrap();
    std::os::unix::fs::symlink("loader.0", fx.sysroot.join("boot/loader.tmp")).unwrap();
    write(
        &fx.sysroot
            .join("boot/loader.0/entries/ostree-9-testos.conf"),
        "junk\n",
    );
    // Status only sees the real deployment.
    assert_eq!(order(&sr), [(c1, 0)]);
    let r = cleanup(&sr, true).unwrap();
    assert_eq!(r.deployments_removed, [format!("testos/{c2}.0")]);
    assert!(!half.exists());
    assert!(!half.with_file_name(format!("{c2}.0.origin")).exists());
    assert!(!fx.sysroot.join("boot/loader.tmp").exists());
    assert!(!fx.sysroot.join("boot/loader.0").exists());
    assert!(sr.repo().has_object(ObjectType::Commit, &c1).unwrap());
    // c2 is the branch tip, so the prune keeps it; deploying it now takes serial 0 again.
    let d = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    assert_eq!((d.deployment.csum, d.deployment.serial), (c2, 0));
}

#[test]
fn refused_deploys_write_nothing() {
    let fx = Fx::new();
    let sr = fx.offline();
    let c1 = fx.commit("1.0", |_| {});
    sr.repo().mark_partial(&c1).unwrap();
    let err = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap_err();
    assert!(matches!(err, Error::PartialCommit(_)), "{err}");
    sr.repo().clear_partial(&c1).unwrap();
    let err = deploy(
        &sr,
        "testos/stable",
        &DeployOptions {
            osname: Some("nope".into()),
            ..DeployOptions::default()
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoStateroot { .. }), "{err}");
    fx.commit("2.0", |t| {
        std::fs::remove_dir_all(t.join("usr/lib/modules")).unwrap()
    });
    let err = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err}");
    let err = deploy(&sr, "no/such/ref", &DeployOptions::default()).unwrap_err();
    assert!(err.to_string().contains("no/such/ref"), "{err}");
    assert!(
        !fx.sysroot.join("ostree/deploy/testos/deploy").exists()
            || std::fs::read_dir(fx.sysroot.join("ostree/deploy/testos/deploy"))
                .unwrap()
                .next()
                .is_none()
    );
    assert!(!fx.sysroot.join("boot/loader").exists());
    assert!(load(&sr).unwrap().deployments.is_empty());
}

#[test]
fn esp_sync_keeps_foreign_entries_and_removes_leftovers() {
    let fx = Fx::new();
    fx.commit("1.0", |_| {});
    let mut sr = fx.offline();
    let esp = fx.tmp.path().join("esp");
    write(
        &esp.join("loader/entries/debian-6.1.conf"),
        "title Debian\n",
    );
    write(
        &esp.join("loader/entries/.trellis-testos-1.conf.tmp"),
        "half\n",
    );
    write(&esp.join("loader/loader.conf"), "timeout 5\n");
    sr.set_esp(Some(EspConfig {
        dir: esp.clone(),
        tries: None,
    }));
    let out = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    let report = out.write.esp.unwrap();
    assert_eq!(report.entries_written, ["trellis-testos-1.conf"]);
    assert_eq!(report.kernels_copied.len(), 1);
    let mut names: Vec<String> = std::fs::read_dir(esp.join("loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["debian-6.1.conf", "trellis-testos-1.conf"]);
    assert_eq!(
        read(&esp.join("loader/loader.conf")),
        "timeout 5\ndefault trellis-*\n"
    );
    // Without changes, a cleanup's sync writes nothing.
    let again = cleanup(&sr, false).unwrap().esp.unwrap();
    assert!(
        again.entries_written.is_empty() && again.kernels_copied.is_empty(),
        "{again:?}"
    );
    // Turning boot counting on later does not mark a deployment that already booted.
    sr.set_esp(Some(EspConfig {
        dir: esp.clone(),
        tries: Some(2),
    }));
    fx.commit("2.0", |_| {});
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(esp.join("loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "debian-6.1.conf",
            "trellis-testos-1.conf",
            "trellis-testos-2+2.conf"
        ]
    );
}

#[test]
fn booted_deployment_from_the_kernel_command_line() {
    let fx = Fx::new();
    fx.commit("1.0", |_| {});
    let sr = fx.offline();
    let d1 = deploy(&sr, "testos/stable", &DeployOptions::default())
        .unwrap()
        .deployment;
    let c2 = fx.commit("2.0", |_| {});
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    // The sysroot is the running root (`--sysroot /`), but no deployment is: only the
    // command line's ostree= says which one booted.
    let state = load(&sr).unwrap();
    let d1 = state
        .deployments
        .iter()
        .find(|d| d.same(&d1))
        .unwrap()
        .clone();
    write(&fx.tmp.path().join("run/ostree-booted"), "");
    let host = |cmdline: &str| {
        write(&fx.tmp.path().join("cmdline"), cmdline);
        Host {
            root: fx.sysroot.clone(),
            ..fx.host(None)
        }
    };
    let good = format!(
        "quiet ostree=/ostree/boot.{}/testos/{}/{}\n",
        state.bootversion, d1.bootcsum, d1.bootserial
    );
    let booted = Sysroot::open_with(&fx.sysroot, host(&good)).unwrap();
    let st = load(&booted).unwrap();
    assert!(st.booted_system);
    assert_eq!(st.booted, Some(1));
    assert!(st.is_pending(0));
    assert_eq!(st.deployments[0].csum, c2);
    for bad in ["quiet\n", "ostree=/ostree/boot.7/x/y/0\n", ""] {
        let s = Sysroot::open_with(&fx.sysroot, host(bad)).unwrap();
        let st = load(&s).unwrap();
        assert!(st.booted_system);
        assert_eq!(st.booted, None, "{bad:?}");
    }
}

#[test]
fn the_sysroot_lock_excludes_ostree() {
    let fx = Fx::new();
    fx.commit("1.0", |_| {});
    let sr = fx.offline();
    let lock = sr.lock().unwrap();
    let mut child = Command::new("ostree")
        .args([
            "admin",
            "deploy",
            &format!("--sysroot={}", fx.sysroot.display()),
            "--os=testos",
            "testos/stable",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let waiting = child.try_wait().unwrap().is_none();
    drop(lock);
    let status = child.wait().unwrap();
    assert!(waiting, "ostree did not wait for the lock trellis held");
    assert!(status.success());
    assert!(!fx.sysroot.join("ostree/lock").exists());
    assert_eq!(load(&sr).unwrap().deployments.len(), 1);
}

/// A tmpfs mounted on a directory for the length of a test.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_separate_boot_partition_gets_copies_and_its_space_is_checked() {
    let fx = Fx::new();
    let boot = fx.sysroot.join("boot");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&boot)
        .status()
        .unwrap();
    assert!(ok.success());
    let _mount = Mount(boot.clone());
    let sr = fx.offline();
    // A 2 MiB kernel does not fit a 1 MiB /boot: refused before the checkout.
    let big = "K".repeat(2 << 20);
    let c1 = fx.commit("1.0", |t| {
        write(&t.join("usr/lib/modules/6.1.0-test/vmlinuz"), &big)
    });
    let err = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap_err();
    match &err {
        Error::NoSpace { path, what, .. } => {
            assert_eq!(path, &boot);
            assert!(what.contains("/boot"), "{what}");
        }
        other => panic!("{other}"),
    }
    assert!(!fx.dir(&c1, 0).exists());
    // A small one is copied (not hardlinked) into /boot.
    let c2 = fx.commit("2.0", |_| {});
    let d = deploy(&sr, "testos/stable", &DeployOptions::default())
        .unwrap()
        .deployment;
    assert_eq!(d.csum, c2);
    let kernel = boot.join(format!("ostree/testos-{}/vmlinuz-6.1.0-test", d.bootcsum));
    assert_eq!(read(&kernel), "KERNEL");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(kernel.metadata().unwrap().nlink(), 1);
    assert_eq!(order(&sr), [(c2, 0)]);
    let text = ostree_status(&fx.sysroot);
    assert!(text.contains(&c2.to_hex()), "{text}");
}

#[test]
fn a_failed_esp_update_keeps_the_old_boot_version_until_retried() {
    let fx = Fx::new();
    let c1 = fx.commit("1.0", |_| {});
    let mut sr = fx.offline();
    let esp = fx.tmp.path().join("esp");
    sr.set_esp(Some(EspConfig {
        dir: esp.clone(),
        tries: None,
    }));
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    let b1 = load(&sr).unwrap().bootversion;
    // The ESP's entries directory becomes unwritable (a file in its place).
    let entries = esp.join("loader/entries");
    std::fs::rename(&entries, esp.join("saved")).unwrap();
    write(&entries, "not a directory");
    let c2 = fx.commit("2.0", |_| {});
    let err = deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap_err();
    assert!(matches!(err, Error::EspSync { .. }), "{err}");
    // The sysroot switched, and the old boot version (which the ESP's entries still
    // name) is still there.
    let st = load(&sr).unwrap();
    assert_eq!(order(&sr), [(c2, 0), (c1, 0)]);
    assert_ne!(st.bootversion, b1);
    assert!(fx.sysroot.join(format!("ostree/boot.{b1}")).exists());
    // The new commit is already held by a deployment ref.
    let refs = sr.repo().list_local_refs().unwrap();
    assert!(
        refs.iter()
            .any(|r| r.name.starts_with(&format!("ostree/{}/", st.bootversion)) && r.commit == c2),
        "{refs:?}"
    );
    // Once the ESP is writable again, cleanup syncs it and only then drops the old version.
    std::fs::remove_file(&entries).unwrap();
    std::fs::rename(esp.join("saved"), &entries).unwrap();
    let r = cleanup(&sr, true).unwrap();
    assert_eq!(r.esp.unwrap().entries_written.len(), 2);
    assert!(!fx.sysroot.join(format!("ostree/boot.{b1}")).exists());
    let e = read(&entries.join("trellis-testos-2.conf"));
    assert!(
        e.contains(&format!("ostree=/ostree/boot.{}/", st.bootversion)),
        "{e}"
    );
}

#[test]
fn the_esp_and_boot_counting_come_from_the_repo_config() {
    let fx = Fx::new();
    let sr = fx.offline();
    assert_eq!(sr.esp(), None);
    let mut cfg = sr.repo().config().clone();
    cfg.set("sysroot", "esp", "/boot/efi");
    cfg.set("sysroot", "boot-counting-tries", "3");
    sr.repo().write_config(&cfg).unwrap();
    let sr = fx.offline();
    assert_eq!(
        sr.esp(),
        Some(&EspConfig {
            dir: fx.sysroot.join("boot/efi"),
            tries: Some(3),
        })
    );
    let c1 = fx.commit("1.0", |_| {});
    deploy(&sr, "testos/stable", &DeployOptions::default()).unwrap();
    assert!(
        fx.sysroot
            .join("boot/efi/loader/entries/trellis-testos-1+3.conf")
            .is_file()
    );
    // ostree ignores the keys it does not know.
    assert!(ostree_status(&fx.sysroot).contains(&c1.to_hex()));
    cfg.set("sysroot", "boot-counting-tries", "three");
    sr.repo().write_config(&cfg).unwrap();
    let err = Sysroot::open_with(&fx.sysroot, fx.host(None)).unwrap_err();
    assert!(err.to_string().contains("boot-counting-tries"), "{err}");
}
