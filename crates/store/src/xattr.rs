//! Reading and writing extended attributes, as sorted `(name, value)` lists.

use crate::format::Xattrs;
use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Where to read or write: an open file, or a path whose last component is not followed.
#[derive(Clone, Copy)]
pub enum Target<'a, Fd: AsFd> {
    Fd(Fd),
    NoFollow(&'a Path),
}

fn list<Fd: AsFd>(t: &Target<'_, Fd>) -> Result<Vec<u8>, Errno> {
    loop {
        let n = match t {
            Target::Fd(fd) => rustix::fs::flistxattr_query(fd),
            Target::NoFollow(p) => rustix::fs::llistxattr_query(*p),
        }?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        let got = match t {
            Target::Fd(fd) => rustix::fs::flistxattr(fd, &mut buf[..]),
            Target::NoFollow(p) => rustix::fs::llistxattr(*p, &mut buf[..]),
        };
        match got {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            // The list grew between the two calls; ask again.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

fn get<Fd: AsFd>(t: &Target<'_, Fd>, name: &[u8]) -> Result<Option<Vec<u8>>, Errno> {
    let name = OsStr::from_bytes(name);
    loop {
        let n = match t {
            Target::Fd(fd) => rustix::fs::fgetxattr_query(fd, name),
            Target::NoFollow(p) => rustix::fs::lgetxattr_query(*p, name),
        };
        let n = match n {
            Ok(n) => n,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n];
        let got = match t {
            Target::Fd(fd) => rustix::fs::fgetxattr(fd, name, &mut buf[..]),
            Target::NoFollow(p) => rustix::fs::lgetxattr(*p, name, &mut buf[..]),
        };
        match got {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// All xattrs, sorted by name. Filesystems without xattr support give an empty list.
pub fn read_all<Fd: AsFd>(t: Target<'_, Fd>) -> std::io::Result<Xattrs> {
    let names = match list(&t) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in names.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        if let Some(v) = get(&t, name)? {
            out.push((name.to_vec(), v));
        }
    }
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

/// One xattr, or `None` when it is not set.
pub fn read_one<Fd: AsFd>(t: Target<'_, Fd>, name: &str) -> std::io::Result<Option<Vec<u8>>> {
    get(&t, name.as_bytes()).map_err(Into::into)
}

pub fn set<Fd: AsFd>(t: Target<'_, Fd>, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let name = OsStr::from_bytes(name);
    match t {
        Target::Fd(fd) => rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()),
        Target::NoFollow(p) => rustix::fs::lsetxattr(p, name, value, XattrFlags::empty()),
    }
    .map_err(Into::into)
}
