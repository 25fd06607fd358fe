//! Loose objects: paths, existence, metadata objects, listing and deletion.

use super::Repo;
use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::format::{Commit, DirMeta, DirTree, FormatError};
use crate::gvariant::{self, Type, Value};
use rustix::fs::{AtFlags, CWD, Mode, OFlags};
use rustix::io::Errno;
use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Metadata objects larger than this are refused (ostree's OSTREE_MAX_METADATA_SIZE).
pub const MAX_METADATA_SIZE: u64 = 128 * 1024 * 1024;

/// An object being written as an unnamed file (`O_TMPFILE`) in its own `objects/XX/`
/// directory, named only once complete. Unlike a named file in `tmp/` renamed into place,
/// concurrent writers do not all take `tmp/`'s directory lock (twice: create, then rename),
/// which on ext4 serializes them behind inode allocation.
pub(crate) struct Unnamed {
    pub(crate) file: File,
    pub(crate) dest: PathBuf,
}

impl Unnamed {
    /// Give the file its name; `false` when another writer named the object first.
    pub(crate) fn link(self) -> Result<bool> {
        let named = match rustix::fs::linkat(&self.file, "", CWD, &self.dest, AtFlags::EMPTY_PATH) {
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc's link to the fd does not.
            Err(Errno::NOENT | Errno::PERM | Errno::ACCESS) => {
                let proc = format!("/proc/self/fd/{}", self.file.as_raw_fd());
                rustix::fs::linkat(CWD, proc.as_str(), CWD, &self.dest, AtFlags::SYMLINK_FOLLOW)
            }
            r => r,
        };
        match named {
            Ok(()) => Ok(true),
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e).ctx("link into", &self.dest),
        }
    }
}

impl Repo {
    /// An unnamed file in the object's directory; `None` when the filesystem has no
    /// `O_TMPFILE` (the caller then writes a named file in `tmp/` and renames it).
    pub(crate) fn unnamed_object(
        &self,
        ty: ObjectType,
        csum: &Checksum,
    ) -> Result<Option<Unnamed>> {
        let dest = self.object_path(ty, csum);
        let Some(dir) = dest.parent() else {
            return Ok(None);
        };
        let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
        for first in [true, false] {
            match rustix::fs::open(dir, flags, Mode::from_raw_mode(0o644)) {
                Ok(fd) => {
                    return Ok(Some(Unnamed {
                        file: File::from(fd),
                        dest,
                    }));
                }
                Err(Errno::NOENT) if first => match std::fs::create_dir(dir) {
                    Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                        return Err(e).ctx("create directory", dir);
                    }
                    _ => {}
                },
                Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOENT) => {
                    return Ok(None);
                }
                Err(e) => return Err(e).ctx("create a file in", dir),
            }
        }
        Ok(None)
    }

    pub fn object_path(&self, ty: ObjectType, csum: &Checksum) -> PathBuf {
        self.path
            .join("objects")
            .join(csum.loose_path(ty.extension(self.mode.is_archive())))
    }

    pub fn has_object(&self, ty: ObjectType, csum: &Checksum) -> Result<bool> {
        let p = self.object_path(ty, csum);
        match std::fs::symlink_metadata(&p) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).ctx("stat", p),
        }
    }

    /// Raw bytes of a metadata object (commit, dirtree, dirmeta, commitmeta), unverified.
    pub fn read_metadata(&self, ty: ObjectType, csum: &Checksum) -> Result<Vec<u8>> {
        let p = self.object_path(ty, csum);
        let md = match std::fs::metadata(&p) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::Missing { ty, csum: *csum });
            }
            Err(e) => return Err(e).ctx("stat", p),
        };
        if md.len() > MAX_METADATA_SIZE {
            return Err(Error::Corrupt {
                ty,
                csum: *csum,
                why: format!("{} bytes is over the metadata limit", md.len()),
            });
        }
        std::fs::read(&p).ctx("read", p)
    }

    /// Read a metadata object and check that its bytes hash to its name.
    pub fn read_metadata_verified(&self, ty: ObjectType, csum: &Checksum) -> Result<Vec<u8>> {
        let data = self.read_metadata(ty, csum)?;
        let actual = Checksum::of(&data);
        if actual != *csum {
            return Err(Error::Corrupt {
                ty,
                csum: *csum,
                why: format!("its content hashes to {actual}"),
            });
        }
        Ok(data)
    }

    fn parse_object<T>(
        &self,
        ty: ObjectType,
        csum: &Checksum,
        parse: fn(&[u8]) -> Result<T, FormatError>,
    ) -> Result<T> {
        let data = self.read_metadata(ty, csum)?;
        parse(&data).map_err(|source| Error::BadObject {
            ty,
            csum: *csum,
            source,
        })
    }

    pub fn load_commit(&self, csum: &Checksum) -> Result<Commit> {
        self.parse_object(ObjectType::Commit, csum, Commit::parse)
    }

    pub fn load_dirtree(&self, csum: &Checksum) -> Result<DirTree> {
        self.parse_object(ObjectType::DirTree, csum, DirTree::parse)
    }

    pub fn load_dirmeta(&self, csum: &Checksum) -> Result<DirMeta> {
        self.parse_object(ObjectType::DirMeta, csum, DirMeta::parse)
    }

    /// The detached metadata (`a{sv}`) of a commit, if it has any.
    pub fn load_commitmeta(&self, commit: &Checksum) -> Result<Option<Vec<(String, Value)>>> {
        let data = match self.read_metadata(ObjectType::CommitMeta, commit) {
            Ok(d) => d,
            Err(Error::Missing { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let ty = Type::parse("a{sv}").expect("static type");
        let v = gvariant::from_bytes(&ty, &data).map_err(|e| Error::BadObject {
            ty: ObjectType::CommitMeta,
            csum: *commit,
            source: e.into(),
        })?;
        let entries = v.vardict_entries().unwrap_or_default();
        Ok(Some(
            entries
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        ))
    }

    /// Store a metadata object under the SHA-256 of its bytes; a no-op if present.
    pub fn write_metadata(&self, ty: ObjectType, data: &[u8]) -> Result<Checksum> {
        let csum = Checksum::of(data);
        if !self.has_object(ty, &csum)? {
            self.install_bytes(ty, &csum, data)?;
        }
        Ok(csum)
    }

    /// Store detached metadata for a commit, replacing what was there.
    pub fn write_commitmeta(&self, commit: &Checksum, entries: Vec<(String, Value)>) -> Result<()> {
        let data = gvariant::to_bytes(&Value::vardict(entries));
        self.install_bytes(ObjectType::CommitMeta, commit, &data)
    }

    /// Rename a finished temporary file into `objects/XX/`, creating `XX` on first use.
    pub(crate) fn install_object(&self, tmp: &Path, ty: ObjectType, csum: &Checksum) -> Result<()> {
        let dest = self.object_path(ty, csum);
        match std::fs::rename(tmp, &dest) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let dir = dest.parent().expect("object paths have a parent");
                match std::fs::create_dir(dir) {
                    Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                        return Err(e).ctx("create directory", dir);
                    }
                    _ => {}
                }
                std::fs::rename(tmp, &dest).ctx("rename into", dest)
            }
            r => r.ctx("rename into", dest),
        }
    }

    /// Remove a loose object (prune). Missing objects are not an error.
    pub fn delete_object(&self, ty: ObjectType, csum: &Checksum) -> Result<()> {
        let p = self.object_path(ty, csum);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e).ctx("remove", p),
            _ => Ok(()),
        }
    }

    /// Every loose object in the repository, by type and checksum (unknown names skipped).
    pub fn list_objects(&self) -> Result<Vec<(ObjectType, Checksum)>> {
        let objects = self.path.join("objects");
        let mut out = Vec::new();
        for prefix in std::fs::read_dir(&objects).ctx("list", &objects)? {
            let prefix = prefix.ctx("list", &objects)?;
            let pname = prefix.file_name();
            let Some(p) = pname.to_str().filter(|p| p.len() == 2) else {
                continue;
            };
            let dir = prefix.path();
            for entry in std::fs::read_dir(&dir).ctx("list", &dir)? {
                let entry = entry.ctx("list", &dir)?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Some((rest, ext)) = name.split_once('.') else {
                    continue;
                };
                let (Some(ty), Ok(csum)) = (
                    ObjectType::from_extension(ext),
                    Checksum::from_hex(&format!("{p}{rest}")),
                ) else {
                    continue;
                };
                let archive_ext = ext == "filez";
                if ty == ObjectType::File && archive_ext != self.mode.is_archive() {
                    continue;
                }
                out.push((ty, csum));
            }
        }
        out.sort();
        Ok(out)
    }
}
