//! Reading a remote's extensions: `URL/extensions/` over HTTP(S), or a `file://` path.
//!
//! Nothing from the remote is trusted until checked: the index (`SHA256SUMS`) must carry
//! an ed25519 signature from one of the remote's keys, and every file fetched afterwards
//! must have the SHA-256 the index lists. Images are streamed to a temporary file beside
//! their destination while they are hashed, and a mismatch removes the file.

use crate::error::{IoContext, Result, SysextError};
use crate::publish::EXTENSIONS_DIR;
use crate::sums::{self, MAX_SIG, MAX_SUMS, SIG_FILE, SUMS_FILE, Sums};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use trellis_store::sign::PublicKey;

/// Largest image accepted.
pub const MAX_IMAGE: u64 = 16 * 1024 * 1024 * 1024;
/// Largest release file accepted.
pub const MAX_RELEASE: u64 = 1024 * 1024;

enum Kind {
    Http {
        client: reqwest::Client,
        rt: tokio::runtime::Runtime,
    },
    File(PathBuf),
}

/// The extensions of one remote, with the keys its index must be signed with.
pub struct Source {
    /// The extensions directory's URL, without a trailing '/'.
    pub url: String,
    keys: Vec<PublicKey>,
    kind: Kind,
}

/// HTTP options a remote may set (`tls-permissive`, `proxy`), as for pulls.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    pub tls_permissive: bool,
    pub proxy: Option<String>,
}

impl Source {
    /// The extensions beside the repository at `repo_url`.
    pub fn new(repo_url: &str, keys: Vec<PublicKey>, http: &HttpOptions) -> Result<Source> {
        if keys.is_empty() {
            return Err(SysextError::Verify(format!(
                "no ed25519 key to verify the extensions of {repo_url} with: set \
                 verification-ed25519-key (or -file) on the remote, or give --key"
            )));
        }
        let parsed = url::Url::parse(repo_url).map_err(|e| {
            SysextError::Invalid(format!("remote URL {repo_url:?} is not a URL: {e}"))
        })?;
        let url = format!("{}/{EXTENSIONS_DIR}", repo_url.trim_end_matches('/'));
        let kind = match parsed.scheme() {
            "http" | "https" => {
                let mut b = reqwest::Client::builder()
                    .connect_timeout(Duration::from_secs(30))
                    .read_timeout(Duration::from_secs(60))
                    .user_agent(concat!("trellis/", env!("CARGO_PKG_VERSION")));
                if http.tls_permissive {
                    b = b.danger_accept_invalid_certs(true);
                }
                match &http.proxy {
                    Some(p) => {
                        let proxy = reqwest::Proxy::all(p)
                            .map_err(|e| SysextError::Invalid(format!("proxy {p:?}: {e}")))?;
                        b = b.proxy(proxy);
                    }
                    None if is_loopback(&parsed) => b = b.no_proxy(),
                    None => {}
                }
                let client = b
                    .build()
                    .map_err(|e| SysextError::Invalid(format!("cannot set up HTTP: {e}")))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| SysextError::Invalid(format!("cannot start a runtime: {e}")))?;
                Kind::Http { client, rt }
            }
            "file" => Kind::File(
                parsed
                    .to_file_path()
                    .map_err(|()| {
                        SysextError::Invalid(format!("remote URL {repo_url:?} is not a local path"))
                    })?
                    .join(EXTENSIONS_DIR),
            ),
            s => {
                return Err(SysextError::Invalid(format!(
                    "remote URL {repo_url:?}: unsupported scheme {s:?} (use http, https or file)"
                )));
            }
        };
        Ok(Source { url, keys, kind })
    }

    /// From a configured remote: its URL, its ed25519 keys, its HTTP options.
    pub fn from_remote(remote: &trellis_store::remote::Remote) -> Result<Source> {
        let keys = remote.verification_keys()?;
        let http = HttpOptions {
            tls_permissive: remote
                .get("tls-permissive")
                .is_some_and(|v| matches!(v.trim(), "true" | "1")),
            proxy: remote.get("proxy").map(str::to_string),
        };
        if keys.is_empty() {
            return Err(SysextError::Verify(format!(
                "remote {:?} has no ed25519 verification key (verification-ed25519-key or \
                 verification-ed25519-file): extensions are installed only when their index \
                 is signed; add one, or give --key",
                remote.name
            )));
        }
        Source::new(&remote.url, keys, &http)
    }

    fn file_url(&self, file: &str) -> String {
        format!("{}/{file}", self.url)
    }

    /// A small file, or `None` when absent (404 / no such file).
    fn get(&self, file: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let url = self.file_url(file);
        let fail = |why: String| SysextError::Fetch {
            url: url.clone(),
            why,
        };
        match &self.kind {
            Kind::File(dir) => {
                let p = dir.join(file);
                let mut f = match std::fs::File::open(&p) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(fail(e.to_string())),
                };
                let mut buf = Vec::new();
                (&mut f)
                    .take(max + 1)
                    .read_to_end(&mut buf)
                    .map_err(|e| fail(e.to_string()))?;
                if buf.len() as u64 > max {
                    return Err(fail(format!("larger than {max} bytes")));
                }
                Ok(Some(buf))
            }
            Kind::Http { client, rt } => rt.block_on(async {
                let mut resp = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| fail(error_chain(&e)))?;
                let status = resp.status();
                if matches!(status.as_u16(), 403 | 404 | 410) {
                    return Ok(None);
                }
                if !status.is_success() {
                    return Err(fail(format!("HTTP {status}")));
                }
                let mut buf = Vec::new();
                while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
                    buf.extend_from_slice(&chunk);
                    if buf.len() as u64 > max {
                        return Err(fail(format!("larger than {max} bytes")));
                    }
                }
                Ok(Some(buf))
            }),
        }
    }

    /// The index, after its signature verified.
    pub fn index(&self) -> Result<Sums> {
        let text = self
            .get(SUMS_FILE, MAX_SUMS)?
            .ok_or_else(|| SysextError::Fetch {
                url: self.file_url(SUMS_FILE),
                why: "not found: the remote publishes no extensions (trellis sysext publish)"
                    .into(),
            })?;
        let sig = self.get(SIG_FILE, MAX_SIG)?.ok_or_else(|| {
            SysextError::Verify(format!(
                "{} is missing: the extension index is not signed; nothing is installed",
                self.file_url(SIG_FILE)
            ))
        })?;
        if !sums::verify(&text, &String::from_utf8_lossy(&sig), &self.keys) {
            return Err(SysextError::Verify(format!(
                "the signature of {} does not verify with the trusted key(s): the index was \
                 changed or signed with another key; nothing is installed",
                self.file_url(SUMS_FILE)
            )));
        }
        Sums::parse(&String::from_utf8_lossy(&text))
    }

    fn expected(&self, index: &Sums, file: &str) -> Result<[u8; 32]> {
        index.entries.get(file).copied().ok_or_else(|| {
            SysextError::Verify(format!(
                "{file} is not listed in {}",
                self.file_url(SUMS_FILE)
            ))
        })
    }

    /// A small listed file, checked against its hash.
    pub fn fetch_small(&self, index: &Sums, file: &str, max: u64) -> Result<Vec<u8>> {
        let want = self.expected(index, file)?;
        let data = self.get(file, max)?.ok_or_else(|| SysextError::Fetch {
            url: self.file_url(file),
            why: "listed in SHA256SUMS but not found".into(),
        })?;
        if sums::sha256(&data) != want {
            return Err(hash_mismatch(
                &self.file_url(file),
                &want,
                &sums::sha256(&data),
            ));
        }
        Ok(data)
    }

    /// Download a listed file into a new temporary file in `dir`, checking its hash.
    /// Nothing is left in `dir` when it fails.
    pub fn download(
        &self,
        index: &Sums,
        file: &str,
        dir: &Path,
    ) -> Result<tempfile::NamedTempFile> {
        let want = self.expected(index, file)?;
        let url = self.file_url(file);
        let fail = |why: String| SysextError::Fetch {
            url: url.clone(),
            why,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".trellis-download-")
            .tempfile_in(dir)
            .ctx("create file in", dir)?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        match &self.kind {
            Kind::File(d) => {
                let p = d.join(file);
                let mut f = std::fs::File::open(&p).map_err(|e| fail(e.to_string()))?;
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    let k = f.read(&mut buf).map_err(|e| fail(e.to_string()))?;
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                    if n > MAX_IMAGE {
                        return Err(fail(format!("larger than {MAX_IMAGE} bytes")));
                    }
                    h.update(&buf[..k]);
                    tmp.write_all(&buf[..k]).ctx("write", tmp.path())?;
                }
            }
            Kind::Http { client, rt } => rt.block_on(async {
                let mut resp = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| fail(error_chain(&e)))?;
                if !resp.status().is_success() {
                    return Err(fail(format!("HTTP {}", resp.status())));
                }
                while let Some(chunk) = resp.chunk().await.map_err(|e| fail(error_chain(&e)))? {
                    n += chunk.len() as u64;
                    if n > MAX_IMAGE {
                        return Err(fail(format!("larger than {MAX_IMAGE} bytes")));
                    }
                    h.update(&chunk);
                    tmp.write_all(&chunk).ctx("write", tmp.path())?;
                }
                Ok(())
            })?,
        }
        let got: [u8; 32] = h.finalize().into();
        if got != want {
            return Err(hash_mismatch(&url, &want, &got));
        }
        tmp.as_file().sync_all().ctx("sync", tmp.path())?;
        Ok(tmp)
    }
}

fn hash_mismatch(url: &str, want: &[u8; 32], got: &[u8; 32]) -> SysextError {
    SysextError::Verify(format!(
        "{url}: SHA-256 {} does not match {} listed in the signed SHA256SUMS (corrupt or \
         tampered download); nothing is installed",
        hex::encode(got),
        hex::encode(want)
    ))
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s += &format!(": {c}");
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_store::sign::SecretKey;

    /// A `file://` remote with one listed file, signed by `key`.
    fn remote(key: &SecretKey) -> (tempfile::TempDir, String) {
        let d = tempfile::tempdir().unwrap();
        let ext = d.path().join(EXTENSIONS_DIR);
        std::fs::create_dir(&ext).unwrap();
        std::fs::write(ext.join("a_1.raw"), b"image bytes").unwrap();
        let mut s = Sums::default();
        s.entries
            .insert("a_1.raw".into(), sums::sha256(b"image bytes"));
        s.entries.insert("gone_1.raw".into(), [0; 32]);
        let text = s.to_text();
        std::fs::write(ext.join(SUMS_FILE), &text).unwrap();
        std::fs::write(ext.join(SIG_FILE), sums::sign_line(key, text.as_bytes())).unwrap();
        let url = format!("file://{}", d.path().display());
        (d, url)
    }

    #[test]
    fn verified_index_and_files() {
        let key = SecretKey::generate().unwrap();
        let (d, url) = remote(&key);
        let src = Source::new(&url, vec![key.public()], &HttpOptions::default()).unwrap();
        let index = src.index().unwrap();
        assert_eq!(
            src.fetch_small(&index, "a_1.raw", 100).unwrap(),
            b"image bytes"
        );
        let out = tempfile::tempdir().unwrap();
        let tmp = src.download(&index, "a_1.raw", out.path()).unwrap();
        assert_eq!(std::fs::read(tmp.path()).unwrap(), b"image bytes");
        drop(tmp);

        // Not listed; listed but missing; listed with another hash.
        assert!(src.fetch_small(&index, "b_1.raw", 100).is_err());
        assert!(src.download(&index, "gone_1.raw", out.path()).is_err());
        std::fs::write(d.path().join("extensions/a_1.raw"), b"tampered!!!").unwrap();
        let e = src.download(&index, "a_1.raw", out.path()).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        let e = src.fetch_small(&index, "a_1.raw", 100).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        assert_eq!(
            std::fs::read_dir(out.path()).unwrap().count(),
            0,
            "left behind"
        );
    }

    #[test]
    fn untrusted_indexes_are_refused() {
        let key = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let (d, url) = remote(&key);
        assert!(Source::new(&url, vec![], &HttpOptions::default()).is_err());
        let src = Source::new(&url, vec![other.public()], &HttpOptions::default()).unwrap();
        let e = src.index().unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
        std::fs::remove_file(d.path().join("extensions").join(SIG_FILE)).unwrap();
        let src = Source::new(&url, vec![key.public()], &HttpOptions::default()).unwrap();
        let e = src.index().unwrap_err().to_string();
        assert!(e.contains("not signed"), "{e}");
        assert!(Source::new("ftp://x/", vec![key.public()], &HttpOptions::default()).is_err());
    }
}
