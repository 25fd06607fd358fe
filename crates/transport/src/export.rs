//! Export an archive repository as a tar archive that is the same, byte for byte, for the
//! same repository content.
//!
//! The archive extracts (with plain `tar x`) to a usable archive repository: `config` (its
//! `[core]` essentials only: remotes and local settings stay home), the empty directories
//! `ostree init` makes, the objects reachable from the selected refs, the `.commitmeta` of
//! the included commits, `refs/heads/…`, and `summary`/`summary.sig` when every ref is
//! exported and the summary lists exactly those refs.
//!
//! Determinism: entries are sorted by path, directories included; modes are fixed (0755
//! and 0644), owners 0, names empty, mtimes 0; gzip gets no timestamp, no file name and a
//! fixed level. Nothing from the file system's metadata reaches the output.

use flate2::{Compression, GzBuilder};
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::PathBuf;
use trellis_store::commit::Progress;
use trellis_store::format::Summary;
use trellis_store::repo::RefEntry;
use trellis_store::{Checksum, Error, ObjectType, Repo, RepoMode};

/// The gzip level of exported archives; part of the output's identity. zlib-rs's level 1
/// uses a quicker strategy that left a Debian minbase archive 5.5% larger; levels 2 to 6
/// were within 0.2% of each other in size and close in time, so the usual default it is.
pub const GZIP_LEVEL: u32 = 6;

/// The directories `ostree init` creates (besides `objects/` and refs), so that an extracted
/// archive opens as a repository.
const EMPTY_DIRS: [&str; 6] = [
    "extensions/",
    "refs/mirrors/",
    "refs/remotes/",
    "state/",
    "tmp/",
    "tmp/cache/",
];

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{path} is a {mode} repository; export needs an archive repository (the tar carries \
         its .filez objects as an HTTP remote serves them)"
    )]
    NotArchive { path: PathBuf, mode: RepoMode },
    #[error(transparent)]
    Store(#[from] Error),
    #[error("writing the archive at {entry}: {source}")]
    Write {
        entry: String,
        #[source]
        source: std::io::Error,
    },
    #[error("object file {path} changed size while being exported ({expected} bytes expected)")]
    Changed { path: PathBuf, expected: u64 },
}

/// Which commits and objects an export or a publish carries.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// The selected local refs, sorted by name.
    pub refs: Vec<RefEntry>,
    /// Whether every local ref was selected (no `--ref`).
    pub all_refs: bool,
    /// Included commits, parents before their children.
    pub commits: Vec<Checksum>,
    /// The dirtree, dirmeta and content objects of the included commits.
    pub objects: BTreeSet<(ObjectType, Checksum)>,
}

/// Select local refs (all when `refs` is empty) with `depth` parents each (`None`: all of
/// history). A history cut short (a missing parent) ends the walk; so does a parent marked
/// partial, whose tree may be incomplete. A selected ref whose commit is partial is an
/// error.
pub fn select(repo: &Repo, refs: &[String], depth: Option<u32>) -> Result<Selection, Error> {
    let all_refs = refs.is_empty();
    let mut chosen = if all_refs {
        repo.list_local_refs()?
    } else {
        let mut out = Vec::new();
        for name in refs {
            if name.contains(':') {
                return Err(Error::Invalid(format!(
                    "{name:?} is a remote ref; only local refs (refs/heads) can be selected"
                )));
            }
            let commit = repo
                .read_ref(name)?
                .ok_or_else(|| Error::RefNotFound(name.clone()))?;
            out.push(RefEntry {
                name: name.clone(),
                commit,
            });
        }
        out
    };
    chosen.sort();
    chosen.dedup();
    let mut w = Walker {
        repo,
        visited: HashMap::new(),
        order: Vec::new(),
        objects: BTreeSet::new(),
    };
    for r in &chosen {
        if repo.is_partial(&r.commit) {
            return Err(Error::Invalid(format!(
                "commit {} of ref {} is partial (state/{}.commitpartial): its tree may be \
                 incomplete; complete it (pull again) first",
                r.commit, r.name, r.commit
            )));
        }
        if !repo.has_object(ObjectType::Commit, &r.commit)? {
            return Err(Error::Missing {
                ty: ObjectType::Commit,
                csum: r.commit,
            });
        }
        w.walk(r.commit, depth)?;
    }
    // Oldest first: a destination then never holds a commit whose parent it lacks because of
    // an interruption.
    let mut commits = w.order;
    commits.reverse();
    Ok(Selection {
        refs: chosen,
        all_refs,
        commits,
        objects: w.objects,
    })
}

struct Walker<'a> {
    repo: &'a Repo,
    /// The most parents still to walk with which each commit was visited (`None`: all).
    visited: HashMap<Checksum, Option<u32>>,
    order: Vec<Checksum>,
    objects: BTreeSet<(ObjectType, Checksum)>,
}

impl Walker<'_> {
    fn walk(&mut self, start: Checksum, depth: Option<u32>) -> Result<(), Error> {
        let mut csum = start;
        let mut remaining = depth;
        loop {
            let covered = match (self.visited.get(&csum), remaining) {
                (None, _) => false,
                (Some(None), _) => true,
                (Some(Some(_)), None) => false,
                (Some(Some(a)), Some(b)) => *a >= b,
            };
            if covered {
                return Ok(());
            }
            if csum != start && self.repo.is_partial(&csum) {
                return Ok(());
            }
            let commit = match self.repo.load_commit(&csum) {
                Ok(c) => c,
                Err(Error::Missing { .. }) if csum != start => return Ok(()),
                Err(e) => return Err(e),
            };
            if self.visited.insert(csum, remaining).is_none() {
                self.order.push(csum);
                self.tree(commit.root_tree, commit.root_meta)?;
            }
            match (remaining, commit.parent) {
                (Some(0), _) | (_, None) => return Ok(()),
                (r, Some(parent)) => {
                    remaining = r.map(|n| n - 1);
                    csum = parent;
                }
            }
        }
    }

    fn tree(&mut self, root_tree: Checksum, root_meta: Checksum) -> Result<(), Error> {
        self.objects.insert((ObjectType::DirMeta, root_meta));
        let mut stack = vec![root_tree];
        while let Some(t) = stack.pop() {
            if !self.objects.insert((ObjectType::DirTree, t)) {
                continue;
            }
            let tree = self.repo.load_dirtree(&t)?;
            for (_, f) in tree.files {
                self.objects.insert((ObjectType::File, f));
            }
            for (_, st, sm) in tree.dirs {
                self.objects.insert((ObjectType::DirMeta, sm));
                stack.push(st);
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct ExportOptions {
    /// Local refs to export; empty for all.
    pub refs: Vec<String>,
    /// Parents to include per ref; `None` for all of history.
    pub depth: Option<u32>,
    /// Compress with gzip (level [`GZIP_LEVEL`]).
    pub gzip: bool,
}

/// What an export wrote.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ExportReport {
    pub refs: Vec<(String, String)>,
    pub commits: u64,
    /// Objects of every type, commit and commitmeta included.
    pub objects: u64,
    /// Bytes of object files carried (before gzip).
    pub object_bytes: u64,
    pub summary_included: bool,
    /// Why an existing summary was left out.
    pub summary_skipped: Option<String>,
}

enum Body {
    Dir,
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// The config an exported repository gets: what `ostree init --mode=archive` writes.
pub fn minimal_config() -> String {
    "[core]\nrepo_version=1\nmode=archive-z2\n".to_string()
}

/// Write the archive to `out`. Progress is reported per object (count, bytes).
pub fn export(
    repo: &Repo,
    opts: &ExportOptions,
    out: &mut dyn Write,
    progress: &dyn Progress,
) -> Result<ExportReport, ExportError> {
    if !repo.mode().is_archive() {
        return Err(ExportError::NotArchive {
            path: repo.path().to_path_buf(),
            mode: repo.mode(),
        });
    }
    let _lock = repo.lock_shared()?;
    let sel = select(repo, &opts.refs, opts.depth)?;
    let mut report = ExportReport {
        refs: sel
            .refs
            .iter()
            .map(|r| (r.name.clone(), r.commit.to_hex()))
            .collect(),
        commits: sel.commits.len() as u64,
        ..ExportReport::default()
    };

    let mut entries: Vec<(String, Body)> = Vec::new();
    entries.push(("config".into(), Body::Bytes(minimal_config().into_bytes())));
    for d in ["objects/", "refs/", "refs/heads/"]
        .into_iter()
        .chain(EMPTY_DIRS)
    {
        entries.push((d.to_string(), Body::Dir));
    }
    let mut dirs = BTreeSet::new();
    let mut object = |ty: ObjectType, csum: &Checksum, entries: &mut Vec<(String, Body)>| {
        let rel = csum.loose_path(ty.extension(true));
        dirs.insert(format!("objects/{}/", &rel[..2]));
        entries.push((
            format!("objects/{rel}"),
            Body::File(repo.object_path(ty, csum)),
        ));
    };
    for (ty, csum) in &sel.objects {
        object(*ty, csum, &mut entries);
    }
    for c in &sel.commits {
        object(ObjectType::Commit, c, &mut entries);
        if repo.has_object(ObjectType::CommitMeta, c)? {
            object(ObjectType::CommitMeta, c, &mut entries);
        }
    }
    for r in &sel.refs {
        // Every prefix directory of a nested ref name, so that the listing stays complete.
        let parts: Vec<&str> = r.name.split('/').collect();
        for i in 1..parts.len() {
            dirs.insert(format!("refs/heads/{}/", parts[..i].join("/")));
        }
        entries.push((
            format!("refs/heads/{}", r.name),
            Body::Bytes(format!("{}\n", r.commit).into_bytes()),
        ));
    }
    if sel.all_refs {
        match current_summary(repo, &sel.refs)? {
            Ok(Some((summary, sig))) => {
                entries.push(("summary".into(), Body::Bytes(summary)));
                if let Some(sig) = sig {
                    entries.push(("summary.sig".into(), Body::Bytes(sig)));
                }
                report.summary_included = true;
            }
            Ok(None) => {}
            Err(why) => report.summary_skipped = Some(why),
        }
    }
    entries.extend(dirs.into_iter().map(|d| (d, Body::Dir)));
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));

    let files = entries
        .iter()
        .filter(|(p, _)| p.starts_with("objects/") && !p.ends_with('/'))
        .count() as u64;
    progress.total(files, 0);
    report.objects = files;

    let result = if opts.gzip {
        let mut gz = GzBuilder::new()
            .mtime(0)
            .operating_system(3)
            .write(out, Compression::new(GZIP_LEVEL));
        write_tar(&mut gz, &entries, progress, &mut report)?;
        gz.finish().map(drop)
    } else {
        write_tar(out, &entries, progress, &mut report)?;
        out.flush()
    };
    result.map_err(|source| ExportError::Write {
        entry: "end of archive".into(),
        source,
    })?;
    Ok(report)
}

/// The repository's summary and signature, if it has a summary listing exactly `refs`.
/// `Err` says why a summary that exists is left out.
#[allow(clippy::type_complexity)]
fn current_summary(
    repo: &Repo,
    refs: &[RefEntry],
) -> Result<Result<Option<(Vec<u8>, Option<Vec<u8>>)>, String>, Error> {
    let read = |name: &str| -> Result<Option<Vec<u8>>, Error> {
        let p = repo.path().join(name);
        match std::fs::read(&p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::Io {
                op: "read",
                path: p,
                source,
            }),
        }
    };
    let Some(bytes) = read("summary")? else {
        return Ok(Ok(None));
    };
    let Ok(summary) = Summary::parse(&bytes) else {
        return Ok(Err("the summary does not parse".into()));
    };
    let listed: Vec<(&str, Checksum)> = summary
        .refs
        .iter()
        .map(|r| (r.name.as_str(), r.commit))
        .collect();
    let local: Vec<(&str, Checksum)> = refs.iter().map(|r| (r.name.as_str(), r.commit)).collect();
    if listed != local {
        return Ok(Err(
            "the summary is stale (its refs differ from the repository's); regenerate it".into(),
        ));
    }
    Ok(Ok(Some((bytes, read("summary.sig")?))))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

fn write_tar(
    out: &mut dyn Write,
    entries: &[(String, Body)],
    progress: &dyn Progress,
    report: &mut ExportReport,
) -> Result<(), ExportError> {
    let mut b = tar::Builder::new(out);
    for (path, body) in entries {
        let werr = |source| ExportError::Write {
            entry: path.clone(),
            source,
        };
        match body {
            Body::Dir => {
                let mut h = header(tar::EntryType::Directory, 0o755, 0);
                b.append_data(&mut h, path, std::io::empty())
                    .map_err(werr)?;
            }
            Body::Bytes(data) => {
                let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
                b.append_data(&mut h, path, data.as_slice()).map_err(werr)?;
            }
            Body::File(fs_path) => {
                let f = std::fs::File::open(fs_path).map_err(|source| Error::Io {
                    op: "open",
                    path: fs_path.clone(),
                    source,
                })?;
                let size = f
                    .metadata()
                    .map_err(|source| Error::Io {
                        op: "stat",
                        path: fs_path.clone(),
                        source,
                    })?
                    .len();
                let mut h = header(tar::EntryType::Regular, 0o644, size);
                // The tar crate pads a short read silently; count to catch it.
                let mut counted = Counted {
                    inner: f.take(size),
                    n: 0,
                };
                b.append_data(&mut h, path, &mut counted).map_err(werr)?;
                if counted.n != size {
                    return Err(ExportError::Changed {
                        path: fs_path.clone(),
                        expected: size,
                    });
                }
                report.object_bytes += size;
                progress.advance(1, size);
            }
        }
    }
    b.into_inner()
        .map_err(|source| ExportError::Write {
            entry: "end of archive".into(),
            source,
        })?
        .flush()
        .map_err(|source| ExportError::Write {
            entry: "end of archive".into(),
            source,
        })
}

struct Counted<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}
