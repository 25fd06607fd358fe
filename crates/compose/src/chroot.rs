//! Running a program inside the tree.
//!
//! Each run gets private mount and PID namespaces (`unshare`) with a fresh /proc mounted in
//! the tree: the mount disappears with the namespace even if trellis is killed, so no
//! mount ever leaks onto the host, and a daemon that a maintainer script starts dies with
//! the run. The tree's own /dev holds the nodes mmdebstrap made in root mode.

use crate::manifest::Manifest;
use std::path::{Path, PathBuf};
use trellis_tools::Tool;

pub struct Chroot {
    tree: PathBuf,
    env: Vec<(String, String)>,
}

impl Chroot {
    pub fn new(tree: &Path, m: &Manifest) -> Chroot {
        let mut env: Vec<(String, String)> = [
            (
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("DEBIAN_FRONTEND", "noninteractive"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.extend(crate::rootfs::build_env(m));
        Chroot {
            tree: tree.to_path_buf(),
            env,
        }
    }

    pub fn tree(&self) -> &Path {
        &self.tree
    }

    /// `program args...` run inside the tree, with a clean environment.
    pub fn tool(&self, program: &str) -> Tool {
        let mut t = Tool::new("unshare")
            .args(["--fork", "--pid", "--kill-child", "--mount"])
            .arg(format!("--mount-proc={}", self.tree.join("proc").display()))
            .arg("chroot")
            .arg(&self.tree)
            .arg(program)
            .env_clear();
        for (k, v) in &self.env {
            t = t.env(k, v);
        }
        t
    }

    /// A shell script run inside the tree with `sh -e -c`; `args` become `$1`, `$2`, ...
    pub fn script(&self, script: &str, args: &[&str]) -> Tool {
        self.tool("/bin/sh")
            .args(["-e", "-c", script, "sh"])
            .args(args)
    }

    /// The environment runs get (for hooks run on the host side).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
}
