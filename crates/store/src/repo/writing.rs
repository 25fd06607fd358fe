//! Write sessions, and recovery from a power loss in the middle of one.
//!
//! Objects are linked into `objects/` complete but without an fsync each: one `syncfs`
//! ends a write, before any ref or partial marker changes. A process killed in between
//! loses nothing (the page cache is the file), but a machine that loses power can come
//! back with objects that are linked and whose data never reached the disk: empty or
//! zero-filled files under a valid name, which a later pull would trust as present.
//!
//! So each writer leaves `state/<boot id>-<pid>.writing`, made durable before its first
//! object, and removes it after the final `syncfs`. A marker from an earlier boot means
//! that boot may have stopped mid-write: before the next write, every object whose ctime
//! is not older than that marker (linking sets the ctime, and a lost link takes its ctime
//! with it) is checked as `fsck` would, and the bad ones are deleted so that they are
//! fetched or written again. Markers of this boot belong to live writers, left alone, or
//! to killed ones, whose objects are whole: those markers are removed.

use super::{Repo, RepoLock};
use crate::checksum::{Checksum, ObjectType};
use crate::error::{IoContext, Result};
use rayon::prelude::*;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const MARKER_EXT: &str = "writing";
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// Objects linked this long before a marker are checked too: coarse timestamps and small
/// clock steps must not let one through.
const CLOCK_SLACK_SECS: i64 = 120;

/// Objects of an interrupted write, checked before a new one starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Objects linked since the interrupted write began, checked.
    pub checked: u64,
    /// Those that were damaged, and deleted.
    pub removed: Vec<(ObjectType, Checksum)>,
}

/// A write in progress: the shared lock and this writer's marker. [`WriteSession::finish`]
/// flushes and removes the marker; dropping the session (an error path) does the same on a
/// best-effort basis, since what was written is whole while the machine stays up.
#[derive(Debug)]
pub struct WriteSession<'r> {
    repo: &'r Repo,
    marker: PathBuf,
    /// What was found and repaired before this write began.
    pub recovery: Recovery,
    _lock: RepoLock,
}

impl WriteSession<'_> {
    /// Flush every object written to disk and close the session.
    pub fn finish(self) -> Result<()> {
        self.repo.sync()?;
        let p = self.marker.clone();
        // Drop removes the marker again; a second removal finds nothing.
        std::fs::remove_file(&p).ctx("remove", &p)
    }
}

impl Drop for WriteSession<'_> {
    fn drop(&mut self) {
        if self.marker.exists() {
            let _ = self.repo.sync();
            let _ = std::fs::remove_file(&self.marker);
        }
    }
}

/// This boot's id (a UUID), or "unknown" without /proc: then every marker counts as
/// stale, which costs a check but never trusts a damaged object.
fn boot_id() -> String {
    std::fs::read_to_string(BOOT_ID)
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        .unwrap_or_else(|| "unknown".to_string())
}

impl Repo {
    /// Markers left by writers of earlier boots, with the oldest ctime among them.
    fn stale_markers(&self, boot: &str) -> Result<(Vec<PathBuf>, Option<i64>)> {
        let dir = self.state_dir();
        let mut stale = Vec::new();
        let mut oldest: Option<i64> = None;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((stale, None)),
            Err(e) => return Err(e).ctx("list", dir),
        };
        for entry in entries {
            let entry = entry.ctx("list", &dir)?;
            let name = entry.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|n| n.strip_suffix(&format!(".{MARKER_EXT}")))
            else {
                continue;
            };
            let path = entry.path();
            let this_boot_pid = (boot != "unknown")
                .then(|| stem.strip_prefix(boot)?.strip_prefix('-'))
                .flatten();
            if let Some(pid) = this_boot_pid {
                // A writer of this boot that was killed: its objects are whole, and its
                // marker would only cost a check after the next reboot.
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
            let t = meta.ctime();
            oldest = Some(oldest.map_or(t, |o| o.min(t)));
            stale.push(path);
        }
        Ok((stale, oldest))
    }

    /// Check and repair what writers of an earlier boot may have left half on disk; see
    /// the module documentation. Takes the exclusive lock while it deletes, and does
    /// nothing (cheaply) when no earlier boot left a marker.
    pub fn recover_interrupted_writes(&self) -> Result<Recovery> {
        self.recover(&boot_id())
    }

    fn recover(&self, boot: &str) -> Result<Recovery> {
        if self.stale_markers(boot)?.0.is_empty() {
            return Ok(Recovery::default());
        }
        let _lock = self.lock_exclusive()?;
        // Again under the lock: another process may have done it meanwhile.
        let (stale, Some(since)) = self.stale_markers(boot)? else {
            return Ok(Recovery::default());
        };
        let recovery = self.check_objects_since(since - CLOCK_SLACK_SECS)?;
        // The deletions reach the disk before the markers that asked for them go.
        self.sync()?;
        for p in stale {
            std::fs::remove_file(&p).ctx("remove", &p)?;
        }
        Ok(recovery)
    }

    /// Check every object whose ctime is `since` (seconds) or later, and delete the bad.
    fn check_objects_since(&self, since: i64) -> Result<Recovery> {
        let candidates: Vec<(ObjectType, Checksum)> = self
            .list_objects()?
            .into_iter()
            .filter(|(ty, csum)| {
                std::fs::symlink_metadata(self.object_path(*ty, csum))
                    .is_ok_and(|m| m.ctime() >= since)
            })
            .collect();
        let bad: Vec<(ObjectType, Checksum)> = candidates
            .par_iter()
            .filter(|(ty, csum)| crate::fsck::check_object(self, *ty, csum).is_err())
            .copied()
            .collect();
        for (ty, csum) in &bad {
            self.delete_object(*ty, csum)?;
        }
        let recovery = Recovery {
            checked: candidates.len() as u64,
            removed: bad,
        };
        Ok(recovery)
    }

    /// Start writing objects: recover from an interrupted earlier boot if needed, take the
    /// shared lock, and leave a durable marker for the time of the write.
    pub fn begin_write(&self) -> Result<WriteSession<'_>> {
        let boot = boot_id();
        let recovery = self.recover(&boot)?;
        let lock = self.lock_shared()?;
        let dir = self.state_dir();
        std::fs::create_dir_all(&dir).ctx("create directory", &dir)?;
        let marker = dir.join(format!("{boot}-{}.{MARKER_EXT}", std::process::id()));
        let f = File::create(&marker).ctx("create", &marker)?;
        f.sync_all().ctx("fsync", &marker)?;
        sync_dir(&dir)?;
        Ok(WriteSession {
            repo: self,
            marker,
            recovery,
            _lock: lock,
        })
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::fixtures::*;

    fn setup(mode: &str) -> (tempfile::TempDir, Repo, Checksum) {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        rich_tree(&src);
        let repo_path = init_repo(tmp.path(), mode);
        let c = commit(&repo_path, "main", &src, &[]);
        (tmp, Repo::open(&repo_path).unwrap(), c)
    }

    /// A marker of process 1, which is alive in any boot.
    fn leave_marker(repo: &Repo, boot: &str) -> PathBuf {
        let dir = repo.state_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(format!("{boot}-1.{MARKER_EXT}"));
        File::create(&p).unwrap();
        p
    }

    /// Empty a file in place, as a power loss before writeback leaves it.
    fn lose_data(path: &Path) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    fn objects_of(repo: &Repo, ty: ObjectType) -> Vec<Checksum> {
        repo.list_objects()
            .unwrap()
            .into_iter()
            .filter(|(t, _)| *t == ty)
            .map(|(_, c)| c)
            .collect()
    }

    fn damaged_objects_of_an_earlier_boot_are_removed(mode: &str) {
        let (_tmp, repo, commit) = setup(mode);
        let marker = leave_marker(&repo, "00000000-0000-0000-0000-000000000000");
        let file = objects_of(&repo, ObjectType::File)
            .into_iter()
            .find(|c| {
                std::fs::symlink_metadata(repo.object_path(ObjectType::File, c))
                    .unwrap()
                    .file_type()
                    .is_file()
            })
            .unwrap();
        let tree = objects_of(&repo, ObjectType::DirTree)[0];
        lose_data(&repo.object_path(ObjectType::File, &file));
        lose_data(&repo.object_path(ObjectType::DirTree, &tree));

        let before = repo.list_objects().unwrap().len();
        let session = repo.begin_write().unwrap();
        let mut removed = session.recovery.removed.clone();
        removed.sort();
        let mut expected = vec![(ObjectType::File, file), (ObjectType::DirTree, tree)];
        expected.sort();
        assert_eq!(removed, expected, "{mode}");
        // Every object of the commit was linked after the marker's slack began.
        assert_eq!(session.recovery.checked as usize, before, "{mode}");
        assert!(!marker.exists(), "the stale marker stays after recovery");
        assert!(repo.has_object(ObjectType::Commit, &commit).unwrap());
        session.finish().unwrap();
        assert!(
            std::fs::read_dir(repo.state_dir())
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn damaged_objects_of_an_earlier_boot_are_removed_archive() {
        damaged_objects_of_an_earlier_boot_are_removed("archive");
    }

    #[test]
    fn damaged_objects_of_an_earlier_boot_are_removed_bare_user() {
        damaged_objects_of_an_earlier_boot_are_removed("bare-user");
    }

    #[test]
    fn markers_of_this_boot_are_left_to_their_writers() {
        let (_tmp, repo, _) = setup("archive");
        let boot = boot_id();
        assert_ne!(boot, "unknown", "this test needs {BOOT_ID}");
        let marker = leave_marker(&repo, &boot);
        let file = objects_of(&repo, ObjectType::File)[0];
        lose_data(&repo.object_path(ObjectType::File, &file));
        let session = repo.begin_write().unwrap();
        assert_eq!(session.recovery, Recovery::default());
        assert!(marker.exists());
        drop(session);
        assert!(repo.has_object(ObjectType::File, &file).unwrap());
        // A killed writer's marker goes.
        let dead = repo
            .state_dir()
            .join(format!("{boot}-999999999.{MARKER_EXT}"));
        File::create(&dead).unwrap();
        repo.begin_write().unwrap().finish().unwrap();
        assert!(!dead.exists());
        assert!(marker.exists());
    }

    #[test]
    fn objects_older_than_the_marker_are_not_checked() {
        let (_tmp, repo, _) = setup("archive");
        let file = objects_of(&repo, ObjectType::File)[0];
        lose_data(&repo.object_path(ObjectType::File, &file));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let r = repo.check_objects_since(now + 3600).unwrap();
        assert_eq!(r, Recovery::default());
        let r = repo.check_objects_since(now - 3600).unwrap();
        assert_eq!(r.removed, vec![(ObjectType::File, file)]);
    }
}
