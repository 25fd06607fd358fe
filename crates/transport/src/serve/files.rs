//! Opening files strictly beneath a served root, and streaming them out.
//!
//! Every operation comes in two flavours. [`Blocking::Never`] runs on the async workers
//! and only succeeds when the kernel can answer from its caches (`RESOLVE_CACHED`,
//! `RWF_NOWAIT`); otherwise it reports [`OpenFailure::WouldBlock`] and the caller redoes
//! the work on the blocking pool with [`Blocking::Allowed`]. A warm repository is thus
//! served without a thread hand-off per request, which is most of the cost of a small
//! object, and a cold one never stalls the workers.

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::{Errno, ReadWriteFlags};
use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use tokio::task::JoinHandle;

/// How much one blocking read of a streamed body fetches.
const CHUNK: u64 = 512 * 1024;

/// A directory that is served: all lookups resolve beneath its descriptor.
#[derive(Debug)]
pub(crate) struct RootDir {
    fd: OwnedFd,
}

impl RootDir {
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(RootDir { fd })
    }
}

/// Whether an operation may wait for the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Blocking {
    Allowed,
    Never,
}

/// Why a file could not be served.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// Absent, a directory or special file, or reachable only by leaving the root.
    NotFound,
    /// The server's user may not read it.
    Forbidden,
    /// Not answerable from the kernel's caches; retry with [`Blocking::Allowed`].
    WouldBlock,
    Io(io::Error),
}

impl From<io::Error> for OpenFailure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::WouldBlock {
            OpenFailure::WouldBlock
        } else {
            OpenFailure::Io(e)
        }
    }
}

/// An open regular file and what its validators are made of.
#[derive(Debug)]
pub(crate) struct OpenFile {
    pub file: File,
    pub size: u64,
    pub mtime: i64,
    pub mtime_ns: u64,
    pub ino: u64,
}

/// Open `rel` beneath `root`. The kernel refuses any resolution that leaves the root,
/// whether through `..` or a symlink (absolute or relative), and any magic link; symlinks
/// that stay inside (ref aliases) are followed.
pub(crate) fn open_beneath(
    root: &RootDir,
    rel: &Path,
    blocking: Blocking,
) -> Result<OpenFile, OpenFailure> {
    // O_NONBLOCK: opening a FIFO must not hang a worker; it has no effect on regular files.
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK;
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if blocking == Blocking::Never {
        resolve |= ResolveFlags::CACHED;
    }
    let mut attempts = 0;
    let fd = loop {
        match rustix::fs::openat2(&root.fd, rel, flags, Mode::empty(), resolve) {
            Ok(fd) => break fd,
            // EAGAIN: a lookup outside the dentry cache; EINVAL: a kernel before 5.12,
            // without RESOLVE_CACHED. The blocking path gives the real answer.
            Err(Errno::AGAIN | Errno::INVAL) if blocking == Blocking::Never => {
                return Err(OpenFailure::WouldBlock);
            }
            // The kernel asks for a retry when a rename raced with the lookup.
            Err(Errno::AGAIN | Errno::INTR) if attempts < 8 => attempts += 1,
            Err(e) => return Err(classify(e)),
        }
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| OpenFailure::Io(e.into()))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(OpenFailure::NotFound);
    }
    Ok(OpenFile {
        file: File::from(fd),
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime: st.st_mtime,
        mtime_ns: st.st_mtime_nsec,
        ino: st.st_ino,
    })
}

fn classify(e: Errno) -> OpenFailure {
    match e {
        // EXDEV: the path tried to leave the root; ELOOP: a magic link or a symlink loop.
        Errno::NOENT | Errno::NOTDIR | Errno::XDEV | Errno::LOOP | Errno::NAMETOOLONG => {
            OpenFailure::NotFound
        }
        Errno::ACCESS | Errno::PERM => OpenFailure::Forbidden,
        e => OpenFailure::Io(e.into()),
    }
}

/// Check once, at startup, that the kernel can resolve beneath a root at all: without
/// `openat2` there is no safe way to follow the repository's own symlinks.
pub(crate) fn probe_openat2(root: &RootDir) -> io::Result<()> {
    match rustix::fs::openat2(
        &root.fd,
        ".",
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH,
    ) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Read exactly `len` bytes at `offset`. A file that shrank under us is an error: the
/// length has been promised to the client already. With [`Blocking::Never`], data not in
/// the page cache is an error of kind `WouldBlock`.
pub(crate) fn read_at(file: &File, offset: u64, len: u64, blocking: Blocking) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| io::Error::other("range too large"))?;
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = read_once(file, &mut buf[done..], offset + done as u64, blocking)?;
        done += n;
    }
    Ok(Bytes::from(buf))
}

/// Up to `max` bytes at `offset`, or `None` if none are in the page cache.
fn read_some_cached(file: &File, offset: u64, max: u64) -> io::Result<Option<Bytes>> {
    let max = usize::try_from(max).map_err(|_| io::Error::other("range too large"))?;
    let mut buf = vec![0u8; max];
    match read_once(file, &mut buf, offset, Blocking::Never) {
        Ok(n) => {
            buf.truncate(n);
            Ok(Some(Bytes::from(buf)))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// One read of at least one byte (retrying on EINTR).
fn read_once(file: &File, buf: &mut [u8], offset: u64, blocking: Blocking) -> io::Result<usize> {
    loop {
        let r = match blocking {
            Blocking::Allowed => rustix::io::pread(file, &mut *buf, offset),
            Blocking::Never => rustix::io::preadv2(
                file,
                &mut [IoSliceMut::new(buf)],
                offset,
                ReadWriteFlags::NOWAIT,
            ),
        };
        return match r {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being served",
            )),
            Ok(n) => Ok(n),
            Err(Errno::INTR) => continue,
            // EOPNOTSUPP: a file system that cannot tell whether a read would wait.
            Err(Errno::AGAIN | Errno::OPNOTSUPP) if blocking == Blocking::Never => {
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(e) => Err(e.into()),
        };
    }
}

/// A response body: nothing, bytes in memory, or a byte range of a file read in chunks
/// on the blocking pool as the connection drains them.
pub(crate) enum ServeBody {
    Empty,
    Bytes(Option<Bytes>),
    File(FileStream),
}

pub(crate) struct FileStream {
    file: Arc<File>,
    pos: u64,
    remaining: u64,
    pending: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileStream {
    pub fn new(file: File, start: u64, end: u64) -> FileStream {
        FileStream {
            file: Arc::new(file),
            pos: start,
            remaining: end.saturating_sub(start),
            pending: None,
        }
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        if let Some(h) = self.pending.take() {
            h.abort();
        }
    }
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ServeBody::Empty => Poll::Ready(None),
            ServeBody::Bytes(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ServeBody::File(s) => s.poll_chunk(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ServeBody::Empty => true,
            ServeBody::Bytes(b) => b.is_none(),
            ServeBody::File(s) => s.remaining == 0,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Empty => SizeHint::with_exact(0),
            ServeBody::Bytes(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::File(s) => SizeHint::with_exact(s.remaining),
        }
    }
}

impl FileStream {
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(CHUNK);
        if self.pending.is_none() {
            match read_some_cached(&self.file, self.pos, len) {
                Ok(Some(chunk)) => return self.advance(chunk),
                Ok(None) => {}
                Err(e) => return self.fail(e),
            }
        }
        let pending = self.pending.get_or_insert_with(|| {
            let (file, pos) = (Arc::clone(&self.file), self.pos);
            tokio::task::spawn_blocking(move || read_at(&file, pos, len, Blocking::Allowed))
        });
        let joined = ready!(Pin::new(pending).poll(cx));
        self.pending = None;
        match joined {
            Ok(Ok(chunk)) => self.advance(chunk),
            Ok(Err(e)) => self.fail(e),
            Err(join) => self.fail(io::Error::other(join)),
        }
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.remaining = 0;
        Poll::Ready(Some(Err(e)))
    }

    fn advance(&mut self, chunk: Bytes) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.pos += chunk.len() as u64;
        self.remaining -= chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// Drop a file's pages from the page cache, so that a cached-only read must fail.
    /// Returns false on file systems that keep everything in memory (tmpfs).
    fn evict(path: &Path) -> bool {
        let f = File::open(path).expect("open");
        f.sync_all().expect("sync");
        rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed).expect("fadvise");
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        let fs = rustix::fs::fstatfs(&f).expect("fstatfs");
        #[allow(clippy::unnecessary_cast)]
        let in_memory = fs.f_type as i64 == TMPFS_MAGIC;
        !in_memory
    }

    #[test]
    fn both_flavours_read_the_same_bytes_and_refuse_the_same_escapes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root_path = tmp.path().join("root");
        std::fs::create_dir_all(root_path.join("d")).expect("mkdir");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(root_path.join("d/f"), &data).expect("write");
        std::fs::write(tmp.path().join("outside"), b"outside").expect("write");
        symlink("../../outside", root_path.join("d/out")).expect("symlink");
        symlink("f", root_path.join("d/alias")).expect("symlink");
        let root = RootDir::open(&root_path).expect("root");
        for blocking in [Blocking::Allowed, Blocking::Never] {
            for name in ["d/f", "d/alias"] {
                let f = open_beneath(&root, Path::new(name), blocking).expect("open");
                assert_eq!(f.size, data.len() as u64);
                let bytes = read_at(&f.file, 7, 1000, blocking).expect("read");
                assert_eq!(&bytes[..], &data[7..1007]);
            }
            for bad in ["d/out", "../outside", "/etc/passwd", "d", "nope"] {
                // A cached-only lookup may give up on an escape instead of refusing it;
                // the blocking one then refuses it.
                let r = open_beneath(&root, Path::new(bad), blocking);
                let refused = matches!(
                    (blocking, r),
                    (_, Err(OpenFailure::NotFound))
                        | (Blocking::Never, Err(OpenFailure::WouldBlock))
                );
                assert!(refused, "{bad} ({blocking:?}) was not refused");
            }
        }
    }

    #[test]
    fn cached_only_reads_give_way_when_the_data_is_on_disk() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("f");
        let data = vec![7u8; 1 << 20];
        std::fs::write(&path, &data).expect("write");
        let evicted = evict(&path);
        let root = RootDir::open(tmp.path()).expect("root");
        let f = open_beneath(&root, Path::new("f"), Blocking::Never).expect("open cached");
        match read_at(&f.file, 0, data.len() as u64, Blocking::Never) {
            Err(e) if evicted => assert_eq!(e.kind(), io::ErrorKind::WouldBlock),
            Ok(b) if !evicted => assert_eq!(b.len(), data.len()),
            other => panic!("evicted={evicted}: {other:?}"),
        }
        let all = read_at(&f.file, 0, data.len() as u64, Blocking::Allowed).expect("read");
        assert!(all == data);
        let short = read_at(&f.file, data.len() as u64 - 3, 10, Blocking::Allowed);
        assert_eq!(
            short.err().map(|e| e.kind()),
            Some(io::ErrorKind::UnexpectedEof)
        );
    }
}
