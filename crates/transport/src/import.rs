//! Import a repository tar archive (from `export`, or a plain `tar` of an ostree archive
//! repository) into a repository of any mode.
//!
//! The archive is untrusted. Nothing is ever extracted by path: each member's name is
//! matched against the repository layout and its data goes through the store's API, so no
//! member can write outside the repository. Refused, naming the member: absolute paths,
//! `..`, links of any kind, devices, FIFOs, any other member type, names outside the
//! layout, bare-mode `.file` objects, oversized metadata. Every object is verified before it
//! is stored: metadata must hash to its name and parse in normal form; `.filez` headers are
//! parsed and the inflated payload re-hashed. Refs are written last, only once every commit
//! they name is present and every newly imported commit's tree is complete.
//!
//! Layout accepted: `config` (must say archive mode; checked, not copied: the target keeps
//! its own), `objects/XX/<62 hex>.{commit,commitmeta,dirtree,dirmeta,filez}`,
//! `refs/heads/…`, `refs/remotes/REMOTE/…`, `summary`, `summary.sig`,
//! `state/<hex>.commitpartial`. Skipped without being read: `.lock`, `tmp/`, `extensions/`,
//! `deltas/`, `delta-indexes/`, `refs/mirrors/`, `uncompressed-objects-cache/`, other
//! `state/` files and `.tombstone-commit` objects.

use flate2::read::MultiGzDecoder;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use trellis_store::commit::Progress;
use trellis_store::format::keyfile::KeyFile;
use trellis_store::format::{Commit, DirMeta, DirTree, SUMMARY_MODE, Summary};
use trellis_store::sign::parse_vardict;
use trellis_store::{Checksum, Error, ObjectType, Repo, RepoMode};

mod content;
mod filez;
mod layout;

use content::{Outcome, Pool, TmpFile};
use layout::{Member, classify};

/// Largest metadata object accepted (ostree's OSTREE_MAX_METADATA_SIZE).
pub const MAX_METADATA: u64 = 128 * 1024 * 1024;
const MAX_CONFIG: u64 = 1024 * 1024;
const MAX_REF: u64 = 1024;
const MAX_SUMMARY: u64 = 128 * 1024 * 1024;
const MAX_SUMMARY_SIG: u64 = 16 * 1024 * 1024;
const MAX_MARKER: u64 = 16;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("archive member {member:?} refused: {why}")]
    Refused { member: String, why: String },
    #[error("archive member {member:?} is not a valid object: {why}")]
    BadObject { member: String, why: String },
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error("reading archive member {member:?}: {source}")]
    ReadMember {
        member: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{ty} object {csum} (needed by commit {commit}) is missing: the archive is incomplete")]
    Incomplete {
        commit: Checksum,
        ty: ObjectType,
        csum: Checksum,
    },
    #[error("ref {name}: {why}")]
    Ref { name: String, why: String },
    #[error(transparent)]
    Store(#[from] Error),
}

#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Move refs even when the archive's commit does not descend from the current one.
    pub force: bool,
}

/// A ref the import set.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RefUpdate {
    /// `NAME`, or `REMOTE:NAME` for refs/remotes.
    pub name: String,
    pub old: Option<String>,
    pub new: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SummaryAction {
    /// Nothing to do: neither the archive nor the repository had a summary.
    #[default]
    None,
    /// The archive's summary (and signature) listed exactly the resulting refs, for a
    /// repository of this mode: installed as it was.
    Imported,
    /// Regenerated, unsigned (a stale `summary.sig` is removed): the refs changed, or the
    /// archive's summary did not fit the repository.
    Regenerated,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ImportReport {
    /// Objects stored (commitmeta included).
    pub objects_new: u64,
    /// Objects the repository already had.
    pub objects_present: u64,
    pub commits_new: u64,
    /// Compressed bytes of the new content objects, as in the archive.
    pub content_bytes: u64,
    /// Members skipped as not part of a repository's content (tmp/, .lock, …).
    pub members_skipped: u64,
    pub refs: Vec<RefUpdate>,
    pub refs_unchanged: u64,
    pub summary: SummaryAction,
}

/// Read a whole member, refusing more than `limit` bytes.
fn read_limited(
    entry: &mut dyn Read,
    size: u64,
    limit: u64,
    member: &str,
) -> Result<Vec<u8>, ImportError> {
    if size > limit {
        return Err(ImportError::Refused {
            member: member.into(),
            why: format!("{size} bytes is over the {limit}-byte limit for this kind of file"),
        });
    }
    let mut buf = Vec::with_capacity(size as usize);
    entry
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ImportError::ReadMember {
            member: member.into(),
            source,
        })?;
    if buf.len() as u64 != size {
        return Err(ImportError::Refused {
            member: member.into(),
            why: format!("holds {} bytes, its header says {size}", buf.len()),
        });
    }
    Ok(buf)
}

/// Wrap the input: gzip is detected by its magic number; anything else is read as tar.
fn open_input<'a>(input: Box<dyn Read + 'a>) -> Result<Box<dyn Read + 'a>, ImportError> {
    let mut buf = BufReader::with_capacity(256 * 1024, input);
    let magic = buf.fill_buf().map_err(ImportError::Read)?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(buf)))
    } else {
        Ok(Box::new(buf))
    }
}

struct Importer<'a, 'p> {
    repo: &'a Repo,
    pool: &'a Pool<'p>,
    report: ImportReport,
    refs: BTreeMap<String, Checksum>,
    summary: Option<Vec<u8>>,
    summary_sig: Option<Vec<u8>>,
    partial: HashSet<Checksum>,
    new_commits: Vec<Checksum>,
    seen_config: bool,
}

/// Import a repository archive (tar, plain or gzip) into `repo`. Progress counts members.
pub fn import(
    repo: &Repo,
    input: &mut dyn Read,
    opts: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let _session = repo.begin_write()?;
    let reader = open_input(Box::new(input))?;
    let mut archive = tar::Archive::new(reader);
    let outcome = Outcome::default();
    let result = std::thread::scope(|s| {
        let pool = Pool::start(s, repo, &outcome);
        let mut imp = Importer {
            repo,
            pool: &pool,
            report: ImportReport::default(),
            refs: BTreeMap::new(),
            summary: None,
            summary_sig: None,
            partial: HashSet::new(),
            new_commits: Vec::new(),
            seen_config: false,
        };
        let read = (|| -> Result<(), ImportError> {
            for entry in archive.entries().map_err(ImportError::Read)? {
                if outcome.failed() {
                    break;
                }
                let mut entry = entry.map_err(ImportError::Read)?;
                imp.member(&mut entry)?;
                progress.advance(1, entry.size());
            }
            Ok(())
        })();
        pool.finish(&outcome);
        read?;
        if let Some(e) = outcome.take_error() {
            return Err(e);
        }
        imp.report.objects_new += outcome.stored.load(Ordering::Relaxed);
        imp.report.content_bytes += outcome.bytes.load(Ordering::Relaxed);
        imp.finish(opts)
    });
    if result.is_err() {
        // Newly written commits stay marked partial (their trees may be incomplete); the
        // objects themselves are verified and harmless, and prune removes them.
        let _ = repo.sync();
    }
    result
}

impl Importer<'_, '_> {
    fn member(&mut self, entry: &mut tar::Entry<'_, impl Read>) -> Result<(), ImportError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let refuse = |why: String| ImportError::Refused {
            member: shown.clone(),
            why,
        };
        use tar::EntryType as T;
        let is_dir = match kind {
            T::Regular | T::Continuous => false,
            T::Directory => true,
            // Global pax headers carry defaults for later members, not content.
            T::XGlobalHeader => return Ok(()),
            T::Symlink | T::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                return Err(refuse(format!(
                    "a {} to {target:?}; a repository archive holds no links",
                    if kind == T::Symlink {
                        "symlink"
                    } else {
                        "hard link"
                    }
                )));
            }
            T::Char | T::Block => return Err(refuse("a device node".into())),
            T::Fifo => return Err(refuse("a FIFO".into())),
            T::GNUSparse => return Err(refuse("a sparse file".into())),
            other => {
                return Err(refuse(format!(
                    "unexpected member type {:?}",
                    other.as_byte() as char
                )));
            }
        };
        let (name, member) = classify(&raw, is_dir).map_err(refuse)?;
        let size = entry.size();
        match member {
            Member::Dir => {}
            Member::Skipped => self.report.members_skipped += 1,
            Member::Config => {
                if std::mem::replace(&mut self.seen_config, true) {
                    return Err(refuse("a second config".into()));
                }
                let data = read_limited(entry, size, MAX_CONFIG, &name)?;
                let text = String::from_utf8(data).map_err(|_| refuse("not UTF-8".into()))?;
                let kf = KeyFile::parse(&text).map_err(|e| refuse(format!("bad config: {e}")))?;
                let mode = kf.get("core", "mode").unwrap_or("bare");
                if !RepoMode::parse(mode).is_some_and(RepoMode::is_archive) {
                    return Err(refuse(format!(
                        "the archive holds a repository in mode {mode:?}; only archive-mode \
                         repositories can be imported"
                    )));
                }
            }
            Member::Ref(refspec) => {
                let data = read_limited(entry, size, MAX_REF, &name)?;
                let text = std::str::from_utf8(&data).map_err(|_| refuse("not UTF-8".into()))?;
                let commit = Checksum::from_hex(text.trim())
                    .map_err(|_| refuse("does not hold a commit checksum".into()))?;
                if self.refs.insert(refspec, commit).is_some() {
                    return Err(refuse("the same ref appears twice".into()));
                }
            }
            Member::Summary | Member::SummarySig => {
                let (limit, slot) = if member == Member::Summary {
                    (MAX_SUMMARY, &mut self.summary)
                } else {
                    (MAX_SUMMARY_SIG, &mut self.summary_sig)
                };
                let data = read_limited(entry, size, limit, &name)?;
                if slot.replace(data).is_some() {
                    return Err(refuse("appears twice".into()));
                }
            }
            Member::Partial(c) => {
                read_limited(entry, size, MAX_MARKER, &name)?;
                self.partial.insert(c);
            }
            Member::Object(ty, csum) => self.object(entry, &name, ty, csum, size)?,
        }
        Ok(())
    }

    fn object(
        &mut self,
        entry: &mut dyn Read,
        name: &str,
        ty: ObjectType,
        csum: Checksum,
        size: u64,
    ) -> Result<(), ImportError> {
        let repo = self.repo;
        let bad = |why: String| ImportError::BadObject {
            member: name.into(),
            why,
        };
        if ty != ObjectType::CommitMeta && repo.has_object(ty, &csum)? {
            self.report.objects_present += 1;
            return Ok(());
        }
        if ty == ObjectType::File {
            return self.content(entry, name, csum, size);
        }
        let data = read_limited(entry, size, MAX_METADATA, name)?;
        if ty == ObjectType::CommitMeta {
            parse_vardict(&data).map_err(|e| bad(format!("bad commitmeta: {e}")))?;
            let path = repo.object_path(ty, &csum);
            if std::fs::read(&path).is_ok_and(|cur| cur == data) {
                self.report.objects_present += 1;
                return Ok(());
            }
            let (tmp, mut f) = TmpFile::create(repo)?;
            f.write_all(&data).map_err(|source| Error::Io {
                op: "write",
                path: tmp.path.clone(),
                source,
            })?;
            drop(f);
            tmp.install(repo, ty, &csum)?;
            self.report.objects_new += 1;
            return Ok(());
        }
        let actual = Checksum::of(&data);
        if actual != csum {
            return Err(bad(format!("its content hashes to {actual}")));
        }
        let parsed = match ty {
            ObjectType::Commit => Commit::parse(&data).map(drop),
            ObjectType::DirTree => DirTree::parse(&data).map(drop),
            _ => DirMeta::parse(&data).map(drop),
        };
        parsed.map_err(|e| bad(e.to_string()))?;
        if ty == ObjectType::Commit {
            // Its tree may come later in the archive (or never): until it is checked, the
            // commit is partial, as during a pull.
            repo.mark_partial(&csum)?;
            self.new_commits.push(csum);
            self.report.commits_new += 1;
        }
        repo.write_metadata(ty, &data)?;
        self.report.objects_new += 1;
        Ok(())
    }

    fn content(
        &mut self,
        entry: &mut dyn Read,
        name: &str,
        csum: Checksum,
        size: u64,
    ) -> Result<(), ImportError> {
        if size <= content::BUFFERED_MAX {
            let data = read_limited(entry, size, content::BUFFERED_MAX, name)?;
            return self.pool.submit(name, csum, data);
        }
        let n = content::store_streamed(self.repo, name, &csum, entry)?;
        self.report.objects_new += 1;
        self.report.content_bytes += n;
        Ok(())
    }

    fn finish(mut self, opts: &ImportOptions) -> Result<ImportReport, ImportError> {
        let repo = self.repo;
        // Every new commit not marked partial by the archive must have its whole tree.
        let mut seen = HashSet::new();
        let mut complete = Vec::new();
        for c in std::mem::take(&mut self.new_commits) {
            if self.partial.contains(&c) {
                continue;
            }
            check_tree(repo, &c, &mut seen)?;
            complete.push(c);
        }
        for (name, commit) in &self.refs {
            if !repo.has_object(ObjectType::Commit, commit)? {
                return Err(ImportError::Ref {
                    name: name.clone(),
                    why: format!(
                        "points at commit {commit}, which is neither in the archive nor in the repository"
                    ),
                });
            }
        }
        // Objects reach the disk before the markers go and the refs move.
        repo.sync()?;
        for c in &complete {
            repo.clear_partial(c)?;
        }
        let mut updates = Vec::new();
        for (name, commit) in &self.refs {
            let old = repo.read_ref(name)?;
            if old == Some(*commit) {
                self.report.refs_unchanged += 1;
                continue;
            }
            if let Some(o) = old
                && !opts.force
                && !descends(repo, commit, &o)?
            {
                return Err(ImportError::Ref {
                    name: name.clone(),
                    why: format!(
                        "the archive's commit {commit} does not descend from the repository's \
                         {o}; use --force to replace it"
                    ),
                });
            }
            updates.push((name, old, commit));
        }
        for (name, old, commit) in updates {
            repo.set_ref(name, Some(commit))?;
            self.report.refs.push(RefUpdate {
                name: name.clone(),
                old: old.map(|c| c.to_hex()),
                new: commit.to_hex(),
            });
        }
        self.report.summary = self.summary(!self.report.refs.is_empty())?;
        repo.sync()?;
        Ok(self.report)
    }

    fn summary(&self, refs_changed: bool) -> Result<SummaryAction, ImportError> {
        let repo = self.repo;
        let local: Vec<(String, Checksum)> = repo
            .list_local_refs()?
            .into_iter()
            .map(|r| (r.name, r.commit))
            .collect();
        if let Some(bytes) = &self.summary
            && let Ok(s) = Summary::parse(bytes)
            && summary_mode_fits(&s, repo.mode())
            && s.refs
                .iter()
                .map(|r| (r.name.clone(), r.commit))
                .eq(local.iter().cloned())
            && self
                .summary_sig
                .as_ref()
                .is_none_or(|sig| parse_vardict(sig).is_ok())
        {
            // The sig first, then the summary: a reader never sees the new summary with no
            // signature (a stale one fails closed).
            let sig_path = repo.path().join("summary.sig");
            match &self.summary_sig {
                Some(sig) => repo.write_file_atomic(&sig_path, sig)?,
                None => remove_if_exists(&sig_path)?,
            }
            repo.write_file_atomic(&repo.path().join("summary"), bytes)?;
            return Ok(SummaryAction::Imported);
        }
        if (refs_changed && repo.path().join("summary").exists()) || self.summary.is_some() {
            repo.update_summary(None)?;
            return Ok(SummaryAction::Regenerated);
        }
        Ok(SummaryAction::None)
    }
}

/// A summary states its repository's mode; one for another mode is regenerated instead.
fn summary_mode_fits(s: &Summary, mode: RepoMode) -> bool {
    match s.metadata.iter().find(|(k, _)| k == SUMMARY_MODE) {
        Some((_, v)) => v
            .as_str()
            .and_then(RepoMode::parse)
            .is_some_and(|m| m == mode),
        None => true,
    }
}

fn remove_if_exists(p: &Path) -> Result<(), Error> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            op: "remove",
            path: p.to_path_buf(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Whether `ancestor` is `commit` or one of its parents (as far as history is present).
fn descends(repo: &Repo, commit: &Checksum, ancestor: &Checksum) -> Result<bool, Error> {
    let mut c = *commit;
    loop {
        if c == *ancestor {
            return Ok(true);
        }
        match repo.load_commit(&c) {
            Ok(parsed) => match parsed.parent {
                Some(p) => c = p,
                None => return Ok(false),
            },
            Err(Error::Missing { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Check that every object of a commit's tree is present.
fn check_tree(
    repo: &Repo,
    commit: &Checksum,
    seen: &mut HashSet<Checksum>,
) -> Result<(), ImportError> {
    let c = repo.load_commit(commit)?;
    let missing = |ty, csum| ImportError::Incomplete {
        commit: *commit,
        ty,
        csum,
    };
    let need = |ty, csum: &Checksum| -> Result<(), ImportError> {
        if repo.has_object(ty, csum)? {
            Ok(())
        } else {
            Err(missing(ty, *csum))
        }
    };
    need(ObjectType::DirMeta, &c.root_meta)?;
    let mut stack = vec![c.root_tree];
    let mut files = BTreeSet::new();
    while let Some(t) = stack.pop() {
        if !seen.insert(t) {
            continue;
        }
        let tree = match repo.load_dirtree(&t) {
            Ok(tree) => tree,
            Err(Error::Missing { .. }) => return Err(missing(ObjectType::DirTree, t)),
            Err(e) => return Err(e.into()),
        };
        for (_, f) in tree.files {
            files.insert(f);
        }
        for (_, st, sm) in tree.dirs {
            need(ObjectType::DirMeta, &sm)?;
            stack.push(st);
        }
    }
    for f in &files {
        need(ObjectType::File, f)?;
    }
    Ok(())
}
