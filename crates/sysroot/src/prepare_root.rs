//! `prepare-root`: run in the initramfs once the physical root file system is mounted at
//! ROOT (initramfs-tools' `$rootmnt`), it makes ROOT the deployment that the kernel
//! command line's `ostree=` names, so that init switches into it:
//!
//! ```text
//! ROOT          the deployment directory, bind-mounted (and moved over the physical root)
//! ROOT/usr      a read-only bind mount of the deployment's usr
//! ROOT/var      a bind mount of the stateroot's ostree/deploy/OS/var
//! ROOT/sysroot  a bind mount of the physical root (the tree has an empty /sysroot)
//! ROOT/boot     a bind mount of the physical /boot, when it holds the boot entries
//! /run/ostree-booted   written last: the booted system knows it runs a deployment
//! ```
//!
//! `ostree=/ostree/boot.N/OS/BOOTCSUM/SERIAL` is resolved *inside* ROOT: `boot.N` links to
//! `boot.N.M`, whose `OS/BOOTCSUM/SERIAL` links to `../../../deploy/OS/deploy/CSUM.SERIAL`.
//! The walk reads each link itself, with ROOT as `/`: an absolute link or too many `..` never
//! reach the initramfs's own files. What it leads to must be a deployment directory of the
//! named OS.
//!
//! [`plan`] is the pure part (command line and links in, paths out); [`prepare_root`] adds
//! the checks on disk and the mount calls. Every error is one line that names what is
//! wrong: it is what the console shows before the initramfs gives up.

use crate::bootconfig::BootLink;
use crate::deployment::parse_deploy_name;
use crate::kargs::Kargs;
use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, ResolveFlags, StatVfsMountFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, MountPropagationFlags};
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The marker a booted system is recognized by, in `/run`.
pub const BOOTED_MARKER: &str = "ostree-booted";

/// Symbolic links followed before the chain is called a loop (the kernel's limit).
const MAX_LINKS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "no ostree= argument on the kernel command line ({cmdline}); boot a trellis boot entry"
    )]
    NoOstreeArg { cmdline: String },
    #[error(
        "ostree={arg} on the kernel command line is malformed: expected ostree=/ostree/boot.N/OS/BOOTCSUM/SERIAL"
    )]
    BadOstreeArg { arg: String },
    #[error(
        "ostree={arg}: /{path} does not exist in the root file system mounted at {root} (a missing or stale boot entry?)"
    )]
    Missing {
        arg: String,
        path: String,
        root: PathBuf,
    },
    #[error("ostree={arg}: too many levels of symbolic links at /{path}")]
    Loop { arg: String, path: String },
    #[error(
        "ostree={arg} leads to /{path}, which is not a deployment of {osname} (expected /ostree/deploy/{osname}/deploy/CHECKSUM.SERIAL)"
    )]
    NotADeployment {
        arg: String,
        path: String,
        osname: String,
    },
    #[error("deployment {path} is incomplete: {why}")]
    Incomplete { path: PathBuf, why: String },
    #[error(
        "the root file system at {root} is mounted read-only and remounting it read-write failed ({cause}); add `rw` to the kernel command line"
    )]
    ReadOnly {
        root: PathBuf,
        cause: std::io::Error,
    },
    #[error("{what} failed: {cause}")]
    Mount { what: String, cause: std::io::Error },
    #[error("{op} {path}: {cause}")]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
}

type Result<T, E = PrepareError> = std::result::Result<T, E>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> PrepareError + 'a {
    move |e| PrepareError::Io {
        op,
        path: path.to_path_buf(),
        cause: e.into(),
    }
}

/// What a path inside the root is, without following it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Missing,
    Link(String),
    Dir,
    Other,
}

/// Reads nodes inside the root; `rel` never starts with `/` and never crosses a link.
pub trait Nodes {
    fn node(&self, rel: &str) -> Result<Node>;
}

/// Everything the mounts need, worked out from the command line and the links.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The `ostree=` value as given.
    pub arg: String,
    pub link: BootLink,
    pub osname: String,
    /// `CSUM.SERIAL`.
    pub name: String,
    /// `ostree/deploy/OS/deploy/CSUM.SERIAL`, relative to the root.
    pub deployment: String,
    /// `ostree/deploy/OS/var`, relative to the root.
    pub var: String,
}

/// Follow `path` (relative to the root, `/`-separated) to a link-free path, with the root
/// as `/` for absolute links and `..` stopping at the root.
pub fn resolve(arg: &str, path: &str, fs: &dyn Nodes, root: &Path) -> Result<String> {
    let mut todo: VecDeque<String> = path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        done.push(c);
        let rel = done.join("/");
        match fs.node(&rel)? {
            Node::Dir => {}
            Node::Other if todo.is_empty() => {}
            Node::Other | Node::Missing => {
                return Err(PrepareError::Missing {
                    arg: arg.to_string(),
                    path: rel,
                    root: root.to_path_buf(),
                });
            }
            Node::Link(target) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(PrepareError::Loop {
                        arg: arg.to_string(),
                        path: rel,
                    });
                }
                done.pop();
                if target.starts_with('/') {
                    done.clear();
                }
                for part in target.split('/').rev().filter(|p| !p.is_empty()) {
                    todo.push_front(part.to_string());
                }
            }
        }
    }
    Ok(done.join("/"))
}

/// Find the deployment the command line boots.
pub fn plan(cmdline: &str, fs: &dyn Nodes, root: &Path) -> Result<Plan> {
    let kargs = Kargs::parse(cmdline);
    let Some(arg) = kargs.get("ostree") else {
        return Err(PrepareError::NoOstreeArg {
            cmdline: cmdline.trim().to_string(),
        });
    };
    let bad = || PrepareError::BadOstreeArg {
        arg: arg.to_string(),
    };
    let link = BootLink::parse(arg).ok_or_else(bad)?;
    crate::layout::validate_osname(&link.osname).map_err(|_| bad())?;
    let path = resolve(arg, &link.rel_path(), fs, root)?;
    let parts: Vec<&str> = path.split('/').collect();
    let not_deployment = || PrepareError::NotADeployment {
        arg: arg.to_string(),
        path: path.clone(),
        osname: link.osname.clone(),
    };
    let name = match parts.as_slice() {
        ["ostree", "deploy", os, "deploy", name]
            if *os == link.osname && parse_deploy_name(name).is_some() =>
        {
            name.to_string()
        }
        _ => return Err(not_deployment()),
    };
    if fs.node(&path)? != Node::Dir {
        return Err(not_deployment());
    }
    Ok(Plan {
        arg: arg.to_string(),
        osname: link.osname.clone(),
        var: format!("ostree/deploy/{}/var", link.osname),
        link,
        name,
        deployment: path,
    })
}

/// The root file system, read through a directory descriptor.
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    pub fn open(path: &Path) -> Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io("open the root directory", path))?;
        Ok(RootDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Nodes for RootDir {
    fn node(&self, rel: &str) -> Result<Node> {
        let shown = self.path.join(rel);
        let st = match rustix::fs::statat(self.fd(), rel, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(Node::Missing),
            Err(e) => return Err(io("stat", &shown)(e)),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => Node::Dir,
            FileType::Symlink => {
                let t = rustix::fs::readlinkat(self.fd(), rel, Vec::new())
                    .map_err(io("read symlink", &shown))?;
                Node::Link(t.to_string_lossy().into_owned())
            }
            _ => Node::Other,
        })
    }
}

/// What preparing the root did.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub plan: Plan,
    /// The physical root was mounted read-only and was remounted read-write.
    pub remounted_rw: bool,
    /// The physical /boot was bind-mounted on the deployment's.
    pub boot: bool,
}

fn check_dir(root: &RootDir, rel: &str, deployment: &Path, why: &str) -> Result<()> {
    let fd = rustix::fs::openat2(
        root.fd(),
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS,
    );
    match fd {
        Ok(_) => Ok(()),
        Err(e) => Err(PrepareError::Incomplete {
            path: deployment.to_path_buf(),
            why: format!("{why} ({})", std::io::Error::from(e)),
        }),
    }
}

fn is_read_only(path: &Path) -> Result<bool> {
    let st = rustix::fs::statvfs(path).map_err(io("statvfs", path))?;
    Ok(st.f_flag.contains(StatVfsMountFlags::RDONLY))
}

fn mount_err(what: String) -> impl FnOnce(Errno) -> PrepareError {
    move |e| PrepareError::Mount {
        what,
        cause: e.into(),
    }
}

fn bind(src: &Path, dst: &Path) -> Result<()> {
    rustix::mount::mount_bind(src, dst).map_err(mount_err(format!(
        "bind-mounting {} on {}",
        src.display(),
        dst.display()
    )))
}

/// Make the physical root writable: the superblock first (a root mounted without `rw`),
/// then the mount itself (a read-only bind mount).
fn ensure_writable(root: &Path) -> Result<bool> {
    if !is_read_only(root)? {
        return Ok(false);
    }
    let first = rustix::mount::mount_remount(root, MountFlags::empty(), c"");
    if first.is_ok() && !is_read_only(root)? {
        return Ok(true);
    }
    let second = rustix::mount::mount_remount(root, MountFlags::BIND, c"");
    match second {
        Ok(()) if !is_read_only(root)? => Ok(true),
        r => {
            let cause = match (first, r) {
                (Err(e), _) | (Ok(()), Err(e)) => std::io::Error::from(e),
                (Ok(()), Ok(())) => std::io::Error::other("it stayed read-only"),
            };
            Err(PrepareError::ReadOnly {
                root: root.to_path_buf(),
                cause,
            })
        }
    }
}

/// Turn the physical root mounted at `root` into the deployment `cmdline` names, and write
/// `RUN/ostree-booted`.
///
/// The deployment is bind-mounted onto itself, gets its `var`, `sysroot` and read-only
/// `usr` mounts, and is then moved over `root`: the physical root stays mounted beneath it
/// and at `root/sysroot`. Mounting under a moved tree rather than moving the physical root
/// into the deployment is what the kernel allows (a mount cannot be moved beneath itself).
pub fn prepare_root(root: &Path, cmdline: &str, run: &Path) -> Result<Prepared> {
    let dir = RootDir::open(root)?;
    let plan = plan(cmdline, &dir, root)?;
    let deployment = root.join(&plan.deployment);
    check_dir(
        &dir,
        &format!("{}/usr", plan.deployment),
        &deployment,
        "it has no /usr",
    )?;
    check_dir(
        &dir,
        &format!("{}/sysroot", plan.deployment),
        &deployment,
        "it has no empty /sysroot directory for the physical root (compose makes one)",
    )?;
    check_dir(
        &dir,
        &format!("{}/var", plan.deployment),
        &deployment,
        "it has no /var",
    )?;
    check_dir(
        &dir,
        &plan.var,
        &deployment,
        &format!(
            "the stateroot has no /{} (create it with `trellis admin os-init {}`)",
            plan.var, plan.osname
        ),
    )?;
    // As ostree does: a physical /boot holding the boot entries is the booted system's
    // /boot too, so that tools which look there (`ostree admin status`) find them.
    let bind_boot = matches!(dir.node("boot/loader")?, Node::Link(_))
        && dir.node(&format!("{}/boot", plan.deployment))? == Node::Dir;
    drop(dir);

    let remounted_rw = ensure_writable(root)?;
    // Mounts made here must not propagate to peers of the physical root (or receive theirs):
    // the move below requires a private parent. Not being a mount point is fine.
    match rustix::mount::mount_change(root, MountPropagationFlags::PRIVATE) {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => {
            return Err(mount_err(format!(
                "making {} a private mount",
                root.display()
            ))(e));
        }
    }
    bind(&deployment, &deployment)?;
    bind(&root.join(&plan.var), &deployment.join("var"))?;
    bind(root, &deployment.join("sysroot"))?;
    if bind_boot {
        bind(&root.join("boot"), &deployment.join("boot"))?;
    }
    let usr = deployment.join("usr");
    bind(&usr, &usr)?;
    rustix::mount::mount_remount(&usr, MountFlags::BIND | MountFlags::RDONLY, c"")
        .map_err(mount_err(format!("remounting {} read-only", usr.display())))?;
    rustix::mount::mount_move(&deployment, root).map_err(mount_err(format!(
        "moving the deployment {} to {}",
        deployment.display(),
        root.display()
    )))?;

    rustix::fs::mkdirat(CWD, run, Mode::from_raw_mode(0o755))
        .or_else(|e| if e == Errno::EXIST { Ok(()) } else { Err(e) })
        .map_err(io("create directory", run))?;
    let marker = run.join(BOOTED_MARKER);
    std::fs::write(&marker, b"").map_err(|cause| PrepareError::Io {
        op: "write",
        path: marker.clone(),
        cause,
    })?;
    Ok(Prepared {
        plan,
        remounted_rw,
        boot: bind_boot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const CSUM: &str = "5d0e1e6607327ff8d8e019c2d3b7c242f792ad0346a8898cbb702219d1bb3d40";
    const BOOTCSUM: &str = "b2e6f3a0e1c3f7d0a5c1b8d4e9f2a7c6b3d8e1f4a9c2b7d6e3f8a1c4b9d2e7f6";

    /// A root made of directories and links.
    struct Fake(HashMap<String, Node>);

    impl Nodes for Fake {
        fn node(&self, rel: &str) -> Result<Node> {
            Ok(self.0.get(rel).cloned().unwrap_or(Node::Missing))
        }
    }

    fn layout() -> Fake {
        let mut m = HashMap::new();
        for d in [
            "ostree",
            "ostree/boot.1.0",
            "ostree/boot.1.0/debian",
            &format!("ostree/boot.1.0/debian/{BOOTCSUM}"),
            "ostree/deploy",
            "ostree/deploy/debian",
            "ostree/deploy/debian/deploy",
            &format!("ostree/deploy/debian/deploy/{CSUM}.0"),
        ] {
            m.insert(d.to_string(), Node::Dir);
        }
        m.insert("ostree/boot.1".into(), Node::Link("boot.1.0".into()));
        m.insert(
            format!("ostree/boot.1.0/debian/{BOOTCSUM}/0"),
            Node::Link(format!("../../../deploy/debian/deploy/{CSUM}.0")),
        );
        Fake(m)
    }

    fn arg() -> String {
        format!("ostree=/ostree/boot.1/debian/{BOOTCSUM}/0")
    }

    fn root() -> &'static Path {
        Path::new("/root")
    }

    #[test]
    fn follows_the_bootlink_chain_to_the_deployment() {
        let cmdline = format!("root=UUID=x rw panic=10 {} console=ttyS0\n", arg());
        let p = plan(&cmdline, &layout(), root()).unwrap();
        assert_eq!(p.osname, "debian");
        assert_eq!(p.name, format!("{CSUM}.0"));
        assert_eq!(
            p.deployment,
            format!("ostree/deploy/debian/deploy/{CSUM}.0")
        );
        assert_eq!(p.var, "ostree/deploy/debian/var");
        assert_eq!(p.link.bootversion, 1);
    }

    #[test]
    fn absolute_links_and_dotdot_stay_inside_the_root() {
        let mut fs = layout();
        // An absolute link is read with the root as `/`.
        fs.0.insert(
            "ostree/boot.1".into(),
            Node::Link("/ostree/boot.1.0".into()),
        );
        fs.0.insert(
            format!("ostree/boot.1.0/debian/{BOOTCSUM}/0"),
            Node::Link(format!(
                "../../../../../../../../ostree/deploy/debian/deploy/{CSUM}.0"
            )),
        );
        let p = plan(&arg(), &fs, root()).unwrap();
        assert_eq!(
            p.deployment,
            format!("ostree/deploy/debian/deploy/{CSUM}.0")
        );

        // A link to the initramfs's own /usr never leaves the root: inside it, it is
        // missing.
        fs.0.insert(
            format!("ostree/boot.1.0/debian/{BOOTCSUM}/0"),
            Node::Link("/usr".into()),
        );
        let e = plan(&arg(), &fs, root()).unwrap_err();
        assert!(
            matches!(&e, PrepareError::Missing { path, .. } if path == "usr"),
            "{e}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_deployment_of_the_os() {
        let mut fs = layout();
        fs.0.insert("ostree/deploy/other/deploy/x".into(), Node::Dir);
        fs.0.insert("ostree/deploy/other".into(), Node::Dir);
        fs.0.insert("ostree/deploy/other/deploy".into(), Node::Dir);
        fs.0.insert(
            format!("ostree/boot.1.0/debian/{BOOTCSUM}/0"),
            Node::Link("../../../deploy/other/deploy/x".into()),
        );
        let e = plan(&arg(), &fs, root()).unwrap_err().to_string();
        assert!(e.contains("not a deployment of debian"), "{e}");
        assert!(e.contains("/ostree/deploy/other/deploy/x"), "{e}");
        // The right place, but a file.
        fs.0.insert(
            format!("ostree/boot.1.0/debian/{BOOTCSUM}/0"),
            Node::Link(format!("../../../deploy/debian/deploy/{CSUM}.1")),
        );
        fs.0.insert(format!("ostree/deploy/debian/deploy/{CSUM}.1"), Node::Other);
        let e = plan(&arg(), &fs, root()).unwrap_err().to_string();
        assert!(e.contains("not a deployment"), "{e}");
    }

    #[test]
    fn errors_name_the_problem() {
        let e = plan("root=/dev/vda2 quiet", &layout(), root())
            .unwrap_err()
            .to_string();
        assert!(e.contains("no ostree= argument"), "{e}");
        assert!(e.contains("root=/dev/vda2 quiet"), "{e}");
        let e = plan("ostree=/boot/x", &layout(), root())
            .unwrap_err()
            .to_string();
        assert!(e.contains("malformed"), "{e}");
        let e = plan("ostree=/ostree/boot.0/debian/abc/0", &layout(), root())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/ostree/boot.0 does not exist in the root file system mounted at /root"),
            "{e}"
        );
        let mut fs = layout();
        fs.0.insert("ostree/boot.1".into(), Node::Link("boot.1".into()));
        let e = plan(&arg(), &fs, root()).unwrap_err().to_string();
        assert!(e.contains("too many levels of symbolic links"), "{e}");
    }
}
