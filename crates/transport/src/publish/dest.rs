//! Where a repository is published: a directory (a web root) or an S3 bucket and prefix,
//! both behind `object_store`.
//!
//! Every file lands atomically: `LocalFileSystem::put` writes `NAME#N` beside the target
//! and renames it over the target (object_store 0.12, `local.rs` `put_opts`, and its
//! multipart upload renames the same way on completion); an S3 PUT or a completed multipart
//! upload replaces the object as a whole. Readers therefore see an old file or a new one,
//! never a part. For directories, [`Destination::barrier`] calls `syncfs` so that each
//! publishing step is on disk before the next begins.

use super::PublishError;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{
    Attribute, Attributes, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// Files larger than this are uploaded in parts rather than read into memory whole.
const MULTIPART_THRESHOLD: u64 = 32 * 1024 * 1024;
const PART_SIZE: usize = 16 * 1024 * 1024;

/// A destination as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DestSpec {
    Dir(PathBuf),
    S3 { bucket: String, prefix: String },
}

impl DestSpec {
    /// `s3://BUCKET[/PREFIX]`, `file:///PATH`, or a directory path.
    pub fn parse(s: &str) -> Result<DestSpec, PublishError> {
        let bad = |why: &str| PublishError::BadDestination {
            dest: s.to_string(),
            why: why.to_string(),
        };
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
                && !bucket.starts_with(['.', '-'])
                && !bucket.ends_with(['.', '-']);
            if !valid_bucket {
                return Err(bad(
                    "the bucket name must be 3 to 63 lowercase letters, digits, '.' or '-'",
                ));
            }
            let prefix = prefix.trim_end_matches('/');
            if !prefix.is_empty() {
                StorePath::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?;
            }
            return Ok(DestSpec::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(path) = s.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "a file:// URL needs an absolute path (file:///srv/repo)",
                ));
            }
            return Ok(DestSpec::Dir(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(bad(&format!(
                "unsupported scheme {scheme}://; use a directory or s3://BUCKET/PREFIX"
            )));
        }
        if s.is_empty() {
            return Err(bad("empty destination"));
        }
        Ok(DestSpec::Dir(PathBuf::from(s)))
    }
}

/// An open destination.
#[derive(Debug)]
pub struct Destination {
    store: Arc<dyn ObjectStore>,
    /// Without leading or trailing '/'; empty for the root.
    prefix: String,
    /// The directory, for `syncfs` barriers.
    local_root: Option<PathBuf>,
    /// Whether to set Cache-Control (object stores; a local directory cannot store it).
    cache_headers: bool,
    name: String,
}

impl Destination {
    pub fn open(spec: &DestSpec) -> Result<Destination, PublishError> {
        match spec {
            DestSpec::Dir(p) => Destination::dir(p),
            DestSpec::S3 { bucket, prefix } => Destination::s3(bucket, prefix),
        }
    }

    /// A local directory, created if missing.
    pub fn dir(path: &Path) -> Result<Destination, PublishError> {
        std::fs::create_dir_all(path).map_err(|source| PublishError::Local {
            op: "create directory",
            path: path.to_path_buf(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(path).map_err(|e| PublishError::Store {
            path: path.display().to_string(),
            source: e,
        })?;
        Ok(Destination {
            store: Arc::new(store),
            prefix: String::new(),
            local_root: Some(path.to_path_buf()),
            cache_headers: false,
            name: path.display().to_string(),
        })
    }

    /// An S3 bucket, configured from the usual environment: AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION / AWS_DEFAULT_REGION, and
    /// AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3, AWS_ENDPOINT) for S3-compatible servers;
    /// plain `http://` is allowed when the endpoint says so.
    pub fn s3(bucket: &str, prefix: &str) -> Result<Destination, PublishError> {
        let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        if let Some(ep) = endpoint {
            if ep.starts_with("http://") {
                b = b.with_allow_http(true);
            }
            b = b.with_endpoint(ep);
        }
        let store = b.build().map_err(|e| PublishError::Store {
            path: format!("s3://{bucket}"),
            source: e,
        })?;
        let name = if prefix.is_empty() {
            format!("s3://{bucket}")
        } else {
            format!("s3://{bucket}/{prefix}")
        };
        Ok(Destination {
            store: Arc::new(store),
            prefix: prefix.trim_matches('/').to_string(),
            local_root: None,
            cache_headers: true,
            name,
        })
    }

    /// Any object store (tests use `InMemory`); `cache_headers` as for S3.
    pub fn from_store(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        name: &str,
        cache_headers: bool,
    ) -> Destination {
        Destination {
            store,
            prefix: prefix.trim_matches('/').to_string(),
            local_root: None,
            cache_headers,
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn location(&self, rel: &str) -> Result<StorePath, PublishError> {
        let full = if self.prefix.is_empty() {
            rel.to_string()
        } else {
            format!("{}/{rel}", self.prefix)
        };
        StorePath::parse(&full).map_err(|e| PublishError::Store {
            path: full.clone(),
            source: e.into(),
        })
    }

    fn relative<'a>(&self, loc: &'a StorePath) -> Option<&'a str> {
        let s = loc.as_ref();
        if self.prefix.is_empty() {
            Some(s)
        } else {
            s.strip_prefix(self.prefix.as_str())?.strip_prefix('/')
        }
    }

    fn err(&self, rel: &str, source: object_store::Error) -> PublishError {
        PublishError::Store {
            path: format!("{}/{rel}", self.name),
            source,
        }
    }

    /// Every file under `rel_prefix` (a directory, without trailing '/'), relative to the
    /// destination's root, with its size.
    pub(crate) async fn list(&self, rel_prefix: &str) -> Result<Vec<(String, u64)>, PublishError> {
        let loc = self.location(rel_prefix)?;
        let metas: Vec<_> = match self.store.list(Some(&loc)).try_collect().await {
            Ok(m) => m,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(self.err(rel_prefix, e)),
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| Some((self.relative(&m.location)?.to_string(), m.size)))
            .collect())
    }

    /// A whole file, or `None` when absent; larger than `limit` is an error.
    pub(crate) async fn get(&self, rel: &str, limit: u64) -> Result<Option<Bytes>, PublishError> {
        let loc = self.location(rel)?;
        let r = match self.store.get(&loc).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.err(rel, e)),
        };
        if r.meta.size > limit {
            return Err(PublishError::Invalid(format!(
                "{}/{rel} is {} bytes, over the {limit}-byte limit",
                self.name, r.meta.size
            )));
        }
        r.bytes().await.map(Some).map_err(|e| self.err(rel, e))
    }

    pub(crate) async fn exists(&self, rel: &str) -> Result<bool, PublishError> {
        match self.store.head(&self.location(rel)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    fn put_options(&self, immutable: bool) -> PutOptions {
        let mut attributes = Attributes::new();
        if self.cache_headers {
            // Objects never change under their name; refs and the summary do, and a cache
            // serving an old summary would hide new commits.
            let cc = if immutable {
                "public, max-age=31536000, immutable"
            } else {
                "no-cache"
            };
            attributes.insert(Attribute::CacheControl, cc.into());
        }
        PutOptions {
            attributes,
            ..PutOptions::default()
        }
    }

    pub(crate) async fn put(
        &self,
        rel: &str,
        data: Bytes,
        immutable: bool,
    ) -> Result<(), PublishError> {
        let loc = self.location(rel)?;
        self.store
            .put_opts(
                &loc,
                PutPayload::from_bytes(data),
                self.put_options(immutable),
            )
            .await
            .map(drop)
            .map_err(|e| self.err(rel, e))
    }

    /// Upload a local file, in parts when it is large.
    pub(crate) async fn put_file(
        &self,
        rel: &str,
        path: &Path,
        immutable: bool,
    ) -> Result<u64, PublishError> {
        let local = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| PublishError::Local { op, path, source }
        };
        let mut f = tokio::fs::File::open(path).await.map_err(local("open"))?;
        let size = f.metadata().await.map_err(local("stat"))?.len();
        if size <= MULTIPART_THRESHOLD {
            let mut buf = Vec::with_capacity(size as usize);
            f.read_to_end(&mut buf).await.map_err(local("read"))?;
            let n = buf.len() as u64;
            self.put(rel, Bytes::from(buf), immutable).await?;
            return Ok(n);
        }
        let loc = self.location(rel)?;
        let opts = PutMultipartOptions {
            attributes: self.put_options(immutable).attributes,
            ..PutMultipartOptions::default()
        };
        let upload = self
            .store
            .put_multipart_opts(&loc, opts)
            .await
            .map_err(|e| self.err(rel, e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; 1024 * 1024];
        let mut n = 0u64;
        let result = async {
            loop {
                let k = f.read(&mut buf).await.map_err(local("read"))?;
                if k == 0 {
                    break;
                }
                n += k as u64;
                w.wait_for_capacity(4).await.map_err(|e| self.err(rel, e))?;
                w.write(&buf[..k]);
            }
            Ok::<(), PublishError>(())
        }
        .await;
        match result {
            Ok(()) => {
                w.finish().await.map_err(|e| self.err(rel, e))?;
                Ok(n)
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    pub(crate) async fn delete(&self, rel: &str) -> Result<(), PublishError> {
        match self.store.delete(&self.location(rel)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, e)),
        }
    }

    /// Make everything written so far durable before the next step (directories: one
    /// `syncfs`; object stores acknowledge a PUT only once it is stored).
    pub(crate) fn barrier(&self) -> Result<(), PublishError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let f = std::fs::File::open(root).map_err(|source| PublishError::Local {
            op: "open",
            path: root.clone(),
            source,
        })?;
        rustix::fs::syncfs(&f).map_err(|e| PublishError::Local {
            op: "syncfs",
            path: root.clone(),
            source: e.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_destinations() {
        assert_eq!(
            DestSpec::parse("s3://my-bucket/os/debian/").unwrap(),
            DestSpec::S3 {
                bucket: "my-bucket".into(),
                prefix: "os/debian".into()
            }
        );
        assert_eq!(
            DestSpec::parse("s3://my.bucket").unwrap(),
            DestSpec::S3 {
                bucket: "my.bucket".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            DestSpec::parse("/srv/www/repo").unwrap(),
            DestSpec::Dir("/srv/www/repo".into())
        );
        assert_eq!(
            DestSpec::parse("file:///srv/repo").unwrap(),
            DestSpec::Dir("/srv/repo".into())
        );
        assert_eq!(DestSpec::parse("out").unwrap(), DestSpec::Dir("out".into()));
        for bad in [
            "s3://",
            "s3://UPPER/x",
            "s3://ab",
            "s3://bucket/a//b",
            "s3://bucket/a/../b",
            "gs://bucket/x",
            "http://example.com/repo",
            "file://relative",
            "",
        ] {
            assert!(DestSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_compose() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let d = Destination::from_store(store, "/a/b/", "mem", false);
        assert_eq!(
            d.location("objects/ab/c.commit").unwrap().as_ref(),
            "a/b/objects/ab/c.commit"
        );
        let loc = StorePath::parse("a/b/refs/heads/main").unwrap();
        assert_eq!(d.relative(&loc), Some("refs/heads/main"));
        assert_eq!(d.relative(&StorePath::parse("a/bc/x").unwrap()), None);
    }
}
