//! The object graph walk (spec §6.3): each target commit (and its parents, to the requested
//! depth), then breadth-first over dirtrees, fetching whatever is missing with many requests
//! in flight.
//!
//! The work runs in lanes, one per core: a thread with its own single-threaded runtime and
//! its own connections, which verifies and stores each object itself as soon as its body
//! has arrived. The lanes share one queue of objects to fetch. Handing every object from
//! the network thread to a storage thread and back cost a wake-up and a context switch
//! each way, about a quarter of the pull's CPU time on small objects; a lane blocked in
//! storage for a moment only delays its own connections, whose data waits in the socket.

use super::MAX_METADATA_SIZE;
use super::error::{PullError, Result};
use super::fetch::{Body, Fetcher, Want};
use super::store::{self, CommitCheck, CommitIn, CommitOut, Scan};
use super::{ObjectCounts, PullProgress};
use futures::stream::{FuturesUnordered, StreamExt};
use futures::{FutureExt, future::BoxFuture};
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use trellis_store::{Checksum, ObjectType, Repo};

/// A commit to pull.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub commit: Checksum,
    /// Largest acceptable `.commit` (the summary's commit size, else the metadata cap).
    pub size_limit: u64,
    /// The ref it is pulled for (checked against `ostree.ref-binding`).
    pub binding: Option<String>,
}

/// What every lane works with.
pub(crate) struct Plan {
    pub repo: Arc<Repo>,
    pub check: Arc<CommitCheck>,
    /// Requests in flight, over all lanes.
    pub concurrency: usize,
    /// Lanes (threads) to spread the work over; at least one.
    pub lanes: usize,
    /// Parents to pull below each target; negative: all.
    pub depth: i64,
}

/// One lane's view: the plan, and the fetcher whose connections this lane drives.
struct Ctx {
    repo: Arc<Repo>,
    fetcher: Arc<Fetcher>,
    check: Arc<CommitCheck>,
}

#[derive(Default)]
pub(crate) struct WalkOut {
    pub fetched: ObjectCounts,
    pub already_present: u64,
    /// Commits whose trees were walked to completion (their partial markers can go).
    pub walked: Vec<Checksum>,
}

enum Job {
    Commit {
        csum: Checksum,
        depth: i64,
        parent: bool,
        size_limit: u64,
        binding: Option<String>,
    },
    DirTree(Checksum),
    DirMeta(Checksum),
    File(Checksum),
}

enum Done {
    Commit {
        csum: Checksum,
        depth: i64,
        /// `None`: a parent the remote does not have.
        out: Option<CommitOut>,
        bytes: u64,
    },
    Tree {
        scan: Scan,
        fetched: bool,
        bytes: u64,
    },
    Object {
        ty: ObjectType,
        fetched: bool,
        bytes: u64,
    },
}

fn object_rel(csum: &Checksum, ext: &str) -> String {
    format!("objects/{}", csum.loose_path(ext))
}

async fn fetch_required(ctx: &Ctx, ty: ObjectType, csum: &Checksum, max: u64) -> Result<Body> {
    let ext = ty.extension(true);
    let rel = object_rel(csum, ext);
    let what = format!("{ty} object {csum}");
    let want = Want {
        rel: &rel,
        what: &what,
        max,
        optional: false,
        spool: (ty == ObjectType::File).then_some(&*ctx.repo),
    };
    ctx.fetcher
        .get(&want)
        .await?
        .ok_or_else(|| PullError::Internal(format!("{what}: a required fetch came back empty")))
}

async fn run_commit(
    ctx: Arc<Ctx>,
    csum: Checksum,
    depth: i64,
    parent: bool,
    size_limit: u64,
    binding: Option<String>,
) -> Result<Done> {
    let meta_rel = object_rel(&csum, "commitmeta");
    let commit_rel = object_rel(&csum, "commit");
    let meta_what = format!("commitmeta object {csum}");
    let commit_what = format!("commit object {csum}");
    let have = ctx.repo.has_object(ObjectType::Commit, &csum)?;
    // Detached metadata is fetched again (new signatures may have been added), except for a
    // commit named by its checksum (no ref binding) whose detached metadata is stored: the
    // caller resolved and verified it a moment ago (admin upgrade fetches the commit first,
    // then its tree), so fetching it twice would only cost bytes.
    let local_meta = if have && !parent && binding.is_none() {
        ctx.repo
            .read_metadata(ObjectType::CommitMeta, &csum)
            .ok()
            .map(bytes::Bytes::from)
    } else {
        None
    };
    let reused_meta = local_meta.is_some();
    let meta_want = Want {
        rel: &meta_rel,
        what: &meta_what,
        max: MAX_METADATA_SIZE,
        optional: true,
        spool: None,
    };
    let meta = async {
        match local_meta {
            Some(m) => Ok(Some(Body::Mem(m))),
            None => ctx.fetcher.get(&meta_want).await,
        }
    };
    let commit = async {
        if have {
            return Ok(None);
        }
        ctx.fetcher
            .get(&Want {
                rel: &commit_rel,
                what: &commit_what,
                max: size_limit,
                optional: parent,
                spool: None,
            })
            .await
    };
    let (meta, commit) = futures::future::join(meta, commit).await;
    let (meta, commit) = (meta?, commit?);
    // Never spooled: these requests do not allow it.
    let as_mem = |b: Option<Body>| match b {
        Some(Body::Mem(b)) => Some(b),
        Some(Body::Spooled(_)) | None => None,
    };
    let meta_bytes = if reused_meta {
        0
    } else {
        meta.as_ref().map_or(0, Body::len)
    };
    let bytes = meta_bytes + commit.as_ref().map_or(0, Body::len);
    if !have && commit.is_none() {
        // A parent the remote does not have is tolerated (spec §6.4).
        return Ok(Done::Commit {
            csum,
            depth,
            out: None,
            bytes,
        });
    }
    let (meta, commit) = (as_mem(meta), as_mem(commit));
    let commit_url = ctx.fetcher.url_of(&commit_rel);
    let meta_url = ctx.fetcher.url_of(&meta_rel);
    let out = store::store_commit(
        &ctx.repo,
        &ctx.check,
        CommitIn {
            csum,
            commit,
            commit_url: &commit_url,
            commitmeta: meta,
            commitmeta_url: &meta_url,
            binding: binding.as_deref(),
        },
    )?;
    Ok(Done::Commit {
        csum,
        depth,
        out: Some(out),
        bytes,
    })
}

/// A stored dirtree, scanned; `None` when it must be fetched.
fn local_dirtree(repo: &Repo, csum: &Checksum) -> Result<Option<Scan>> {
    if !repo.has_object(ObjectType::DirTree, csum)? {
        return Ok(None);
    }
    match store::scan_local_dirtree(repo, csum) {
        Ok(scan) => Ok(Some(scan)),
        // A stored dirtree that does not read back, left damaged by a machine that lost
        // power during an earlier pull before its data reached the disk: fetch it again.
        Err(_) => {
            repo.delete_object(ObjectType::DirTree, csum)?;
            Ok(None)
        }
    }
}

async fn run_dirtree(ctx: Arc<Ctx>, csum: Checksum) -> Result<Done> {
    let local = local_dirtree(&ctx.repo, &csum)?;
    if let Some(scan) = local {
        return Ok(Done::Tree {
            scan,
            fetched: false,
            bytes: 0,
        });
    }
    let body = fetch_required(&ctx, ObjectType::DirTree, &csum, MAX_METADATA_SIZE).await?;
    let bytes = body.len();
    let url = ctx
        .fetcher
        .url_of(&object_rel(&csum, ObjectType::DirTree.extension(true)));
    let scan = store::store_dirtree(&ctx.repo, &csum, body, &url)?;
    Ok(Done::Tree {
        scan,
        fetched: true,
        bytes,
    })
}

async fn run_leaf(ctx: Arc<Ctx>, ty: ObjectType, csum: Checksum) -> Result<Done> {
    if ty == ObjectType::DirMeta && ctx.repo.has_object(ty, &csum)? {
        return Ok(Done::Object {
            ty,
            fetched: false,
            bytes: 0,
        });
    }
    let max = if ty == ObjectType::File {
        u64::MAX
    } else {
        MAX_METADATA_SIZE
    };
    let body = fetch_required(&ctx, ty, &csum, max).await?;
    let bytes = body.len();
    let url = ctx.fetcher.url_of(&object_rel(&csum, ty.extension(true)));
    // Whether the store found it new or not (another pull may have raced us), it was
    // fetched.
    match ty {
        ObjectType::File => store::store_content(&ctx.repo, &csum, body, &url)?,
        _ => store::store_dirmeta(&ctx.repo, &csum, body, &url)?,
    };
    Ok(Done::Object {
        ty,
        fetched: true,
        bytes,
    })
}

fn run(ctx: &Arc<Ctx>, job: Job) -> BoxFuture<'static, Result<Done>> {
    let ctx = ctx.clone();
    match job {
        Job::Commit {
            csum,
            depth,
            parent,
            size_limit,
            binding,
        } => run_commit(ctx, csum, depth, parent, size_limit, binding).boxed(),
        Job::DirTree(c) => run_dirtree(ctx, c).boxed(),
        Job::DirMeta(c) => run_leaf(ctx, ObjectType::DirMeta, c).boxed(),
        Job::File(c) => run_leaf(ctx, ObjectType::File, c).boxed(),
    }
}

/// The walk's state: what was seen, what is queued, what was done.
struct Walk<'p> {
    seen: HashSet<(ObjectType, Checksum)>,
    /// Jobs queued so far (the progress total).
    jobs: u64,
    /// Commits, dirtrees and dirmetas: fetched first, since they reveal more work.
    meta: VecDeque<Job>,
    files: VecDeque<Job>,
    out: WalkOut,
    progress: &'p dyn PullProgress,
}

impl Walk<'_> {
    fn queue(&mut self, ty: ObjectType, job: Job) {
        let csum = match &job {
            Job::Commit { csum, .. } => *csum,
            Job::DirTree(c) | Job::DirMeta(c) | Job::File(c) => *c,
        };
        if !self.seen.insert((ty, csum)) {
            return;
        }
        self.jobs += 1;
        match ty {
            ObjectType::File => self.files.push_back(job),
            _ => self.meta.push_back(job),
        }
    }

    fn next(&mut self) -> Option<Job> {
        self.meta.pop_front().or_else(|| self.files.pop_front())
    }

    fn has_work(&self) -> bool {
        !self.meta.is_empty() || !self.files.is_empty()
    }

    fn done(&mut self, done: Done) {
        let bytes = match done {
            Done::Commit {
                csum,
                depth,
                out,
                bytes,
            } => {
                if let Some(out) = out {
                    self.commit_done(csum, depth, out);
                }
                bytes
            }
            Done::Tree {
                scan,
                fetched,
                bytes,
            } => {
                if fetched {
                    self.out.fetched.dirtree += 1;
                } else {
                    self.out.already_present += 1;
                }
                // Found present and not queued by this pull: there before it started.
                for key in scan.present {
                    if self.seen.insert(key) {
                        self.out.already_present += 1;
                    }
                }
                for c in scan.missing_files {
                    self.queue(ObjectType::File, Job::File(c));
                }
                for c in scan.missing_dirmetas {
                    self.queue(ObjectType::DirMeta, Job::DirMeta(c));
                }
                for c in scan.subtrees {
                    self.queue(ObjectType::DirTree, Job::DirTree(c));
                }
                bytes
            }
            Done::Object { ty, fetched, bytes } => {
                match (ty, fetched) {
                    (_, false) => self.out.already_present += 1,
                    (ObjectType::File, true) => self.out.fetched.file += 1,
                    (_, true) => self.out.fetched.dirmeta += 1,
                }
                bytes
            }
        };
        self.progress.queued(self.jobs);
        self.progress.fetched(1, bytes);
    }

    fn commit_done(&mut self, csum: Checksum, depth: i64, out: CommitOut) {
        self.out.fetched.commit += u64::from(out.wrote_commit);
        self.out.already_present += u64::from(!out.fetched_commit);
        self.out.fetched.commitmeta += u64::from(out.wrote_commitmeta);
        if out.walk_tree {
            self.out.walked.push(csum);
            self.queue(ObjectType::DirTree, Job::DirTree(out.commit.root_tree));
            self.queue(ObjectType::DirMeta, Job::DirMeta(out.commit.root_meta));
        }
        if depth != 0
            && let Some(p) = out.commit.parent
        {
            self.queue(
                ObjectType::Commit,
                Job::Commit {
                    csum: p,
                    depth: if depth > 0 { depth - 1 } else { depth },
                    parent: true,
                    size_limit: MAX_METADATA_SIZE,
                    binding: None,
                },
            );
        }
    }
}

/// The scheduler, shared by the lanes.
struct Shared<'p> {
    state: Mutex<Sched<'p>>,
    /// One per lane: wakes it when work it has room for appears, or when the walk ends.
    wake: Vec<Notify>,
}

struct Sched<'p> {
    walk: Walk<'p>,
    /// Jobs taken by a lane and not done yet.
    running: usize,
    /// Lanes that found the queue empty while they had room for more.
    hungry: Vec<bool>,
    /// The first error; it ends every lane.
    error: Option<PullError>,
    finished: bool,
}

impl<'p> Shared<'p> {
    fn lock(&self) -> MutexGuard<'_, Sched<'p>> {
        // A lane that panicked brings the whole walk down through the thread scope anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake_all(&self) {
        for w in &self.wake {
            w.notify_one();
        }
    }

    fn fail(&self, e: PullError) {
        let mut s = self.lock();
        s.error.get_or_insert(e);
        drop(s);
        self.wake_all();
    }
}

impl Sched<'_> {
    fn over(&self) -> bool {
        self.finished || self.error.is_some()
    }
}

/// One lane: take jobs from the shared queue while there is room, run them on this thread
/// (fetch, verify, store), and report what they found.
async fn lane(i: usize, ctx: Arc<Ctx>, shared: &Shared<'_>, room: usize) {
    let mut running = FuturesUnordered::new();
    loop {
        {
            let mut s = shared.lock();
            if s.over() {
                return;
            }
            while running.len() < room {
                let Some(job) = s.walk.next() else { break };
                s.running += 1;
                running.push(run(&ctx, job));
            }
            if s.running == 0 {
                // Nothing queued and nothing running in any lane: the walk is complete.
                s.finished = true;
                drop(s);
                shared.wake_all();
                return;
            }
            s.hungry[i] = running.len() < room;
        }
        tokio::select! {
            biased;
            Some(done) = running.next() => {
                let mut s = shared.lock();
                s.running -= 1;
                match done {
                    Ok(done) => {
                        s.walk.done(done);
                        if s.walk.has_work() {
                            // A lane is hungry only when the queue ran dry: rare enough to
                            // wake it without first letting go of the lock.
                            for (j, hungry) in s.hungry.iter_mut().enumerate() {
                                if std::mem::take(hungry) && j != i {
                                    shared.wake[j].notify_one();
                                }
                            }
                        }
                    }
                    Err(e) => {
                        drop(s);
                        shared.fail(e);
                        return;
                    }
                }
            }
            () = shared.wake[i].notified() => {}
        }
    }
}

/// A single-threaded runtime for a lane.
pub(crate) fn lane_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| PullError::Internal(format!("cannot start the async runtime: {e}")))
}

/// Pull `targets` (and their parents to `plan.depth`) into `plan.repo`. `rt` is the
/// caller's single-threaded runtime, which drives `fetcher`'s connections: it runs the
/// first lane; the others get threads, runtimes and connections of their own. On error,
/// whatever was stored stays (verified, under no ref) and in-flight requests are dropped.
pub(crate) fn walk(
    plan: &Plan,
    rt: &tokio::runtime::Runtime,
    fetcher: &Arc<Fetcher>,
    targets: &[Target],
    progress: &dyn PullProgress,
) -> Result<WalkOut> {
    let mut w = Walk {
        seen: HashSet::new(),
        jobs: 0,
        meta: VecDeque::new(),
        files: VecDeque::new(),
        out: WalkOut::default(),
        progress,
    };
    for t in targets {
        w.queue(
            ObjectType::Commit,
            Job::Commit {
                csum: t.commit,
                depth: plan.depth,
                parent: false,
                size_limit: t.size_limit,
                binding: t.binding.clone(),
            },
        );
    }
    progress.queued(w.jobs);
    let concurrency = plan.concurrency.max(1);
    let lanes = plan.lanes.clamp(1, concurrency);
    let room = concurrency.div_ceil(lanes);
    let shared = Shared {
        state: Mutex::new(Sched {
            walk: w,
            running: 0,
            hungry: vec![false; lanes],
            error: None,
            finished: false,
        }),
        wake: (0..lanes).map(|_| Notify::new()).collect(),
    };
    let ctx_with = |fetcher: Arc<Fetcher>| {
        Arc::new(Ctx {
            repo: Arc::clone(&plan.repo),
            fetcher,
            check: Arc::clone(&plan.check),
        })
    };
    std::thread::scope(|scope| {
        for i in 1..lanes {
            let (shared, ctx_with) = (&shared, &ctx_with);
            let started = std::thread::Builder::new()
                .name(format!("trellis-pull-{i}"))
                .spawn_scoped(scope, move || {
                    let run = || -> Result<()> {
                        let rt = lane_runtime()?;
                        let ctx = ctx_with(fetcher.sibling()?);
                        rt.block_on(lane(i, ctx, shared, room));
                        Ok(())
                    };
                    if let Err(e) = run() {
                        shared.fail(e);
                    }
                });
            if let Err(e) = started {
                shared.fail(PullError::Internal(format!(
                    "cannot start a pull thread: {e}"
                )));
            }
        }
        rt.block_on(lane(0, ctx_with(Arc::clone(fetcher)), &shared, room));
    });
    let s = shared.state.into_inner().unwrap_or_else(|e| e.into_inner());
    match s.error {
        Some(e) => Err(e),
        None => Ok(s.walk.out),
    }
}
