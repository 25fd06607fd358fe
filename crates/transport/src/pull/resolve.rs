//! What to pull: the remote's summary (verified when configured) and the commits the named
//! refs point to (spec §6.2, §10.2 step 1).

use super::MAX_METADATA_SIZE;
use super::error::{PullError, Result};
use super::fetch::{Body, Fetcher, Want};
use super::walk::Target;
use bytes::Bytes;
use trellis_store::Checksum;
use trellis_store::format::{SUMMARY_MODE, Summary, validate_ref_name};
use trellis_store::sign::{self, PublicKey};

/// Largest `summary.sig` accepted (it holds a few signatures).
const MAX_SUMMARY_SIG: u64 = 16 * 1024 * 1024;

/// The remote's summary as fetched, if it has one.
pub(crate) struct RemoteSummary {
    pub bytes: Bytes,
    pub sig: Option<Bytes>,
    pub parsed: Summary,
}

/// A ref (or commit) to pull, resolved.
pub(crate) struct Resolved {
    /// The remote's ref name; `None` when a commit checksum was named.
    pub name: Option<String>,
    pub target: Target,
}

pub(crate) struct Verify<'a> {
    pub remote: &'a str,
    /// Trusted keys when commits must be signed (`sign-verify`).
    pub commit_keys: Option<&'a [PublicKey]>,
    /// Trusted keys when the summary must be signed (`sign-verify-summary`).
    pub summary_keys: Option<&'a [PublicKey]>,
}

fn into_mem(b: Option<Body>) -> Option<Bytes> {
    match b {
        Some(Body::Mem(b)) => Some(b),
        // Never spooled: these requests do not allow it.
        Some(Body::Spooled(_)) | None => None,
    }
}

/// Fetch `summary.sig` and `summary` (both optional), and check the signature as the
/// remote's configuration asks.
pub(crate) async fn fetch_summary(
    fetcher: &Fetcher,
    v: &Verify<'_>,
) -> Result<Option<RemoteSummary>> {
    let sig_want = Want {
        rel: "summary.sig",
        what: "summary.sig",
        max: MAX_SUMMARY_SIG,
        optional: true,
        spool: None,
    };
    let summary_want = Want {
        rel: "summary",
        what: "summary",
        max: MAX_METADATA_SIZE,
        optional: true,
        spool: None,
    };
    let sig = fetcher.get(&sig_want);
    let summary = fetcher.get(&summary_want);
    let (sig, summary) = futures::future::join(sig, summary).await;
    let (sig, summary) = (into_mem(sig?), into_mem(summary?));
    let refuse = |why: String| PullError::Summary {
        remote: v.remote.to_string(),
        why,
    };
    let Some(bytes) = summary else {
        if v.summary_keys.is_some() {
            return Err(refuse(
                "sign-verify-summary is on, but the remote has no summary".into(),
            ));
        }
        return Ok(None);
    };
    let sig_meta = match &sig {
        Some(s) => Some(
            sign::parse_vardict(s)
                .map_err(|e| refuse(format!("summary.sig is not a valid a{{sv}}: {e}")))?,
        ),
        None => None,
    };
    if let Some(keys) = v.summary_keys {
        let Some(meta) = &sig_meta else {
            return Err(refuse(
                "sign-verify-summary is on, but the remote has no summary.sig".into(),
            ));
        };
        if !sign::verify_any(&bytes, meta, keys) {
            return Err(refuse(format!(
                "summary.sig does not verify the summary with any of the remote's {} trusted \
                 key(s) (tampered summary, or signed by another key)",
                keys.len()
            )));
        }
    } else if let (Some(keys), Some(meta)) = (v.commit_keys, &sig_meta) {
        // With sign-verify on, a summary signature that is there must hold: a summary that
        // fails its own signature has been tampered with.
        let sigs = sign::signatures_in(meta);
        if !sigs.is_empty() && !sign::verify_any(&bytes, meta, keys) {
            return Err(refuse(format!(
                "summary.sig holds {} ed25519 signature(s), but none verifies the summary with \
                 the remote's {} trusted key(s) (tampered summary, or signed by another key)",
                sigs.len(),
                keys.len()
            )));
        }
    }
    let parsed = Summary::parse(&bytes)
        .map_err(|e| refuse(format!("summary is not a valid summary: {e}")))?;
    if let Some(mode) = parsed
        .metadata
        .iter()
        .find(|(k, _)| k == SUMMARY_MODE)
        .and_then(|(_, v)| v.as_str())
        && !matches!(mode, "archive" | "archive-z2")
    {
        return Err(PullError::Remote {
            remote: v.remote.to_string(),
            why: format!(
                "it is a {mode} repository; only archive repositories can be pulled from \
                 (use `trellis pull-local` for a local repository of another mode)"
            ),
        });
    }
    Ok(Some(RemoteSummary { bytes, sig, parsed }))
}

/// Resolve each named ref (or commit checksum) to the commit to pull: from the summary when
/// the remote has one (refs/heads is then never read, as ostree does), else `refs/heads/REF`.
pub(crate) async fn resolve_refs(
    fetcher: &Fetcher,
    remote: &str,
    summary: Option<&RemoteSummary>,
    names: &[String],
) -> Result<Vec<Resolved>> {
    let mut out = Vec::new();
    for name in names {
        if let Ok(c) = Checksum::from_hex(name) {
            out.push(Resolved {
                name: None,
                target: Target {
                    commit: c,
                    size_limit: MAX_METADATA_SIZE,
                    binding: None,
                },
            });
            continue;
        }
        validate_ref_name(name)
            .map_err(|e| PullError::Invalid(format!("cannot pull {name:?}: {e}")))?;
        let not_found = |why: &'static str| PullError::RefNotFound {
            remote: remote.to_string(),
            name: name.clone(),
            why,
        };
        let (commit, size_limit) = match summary {
            Some(s) => {
                let r = s
                    .parsed
                    .find(name)
                    .ok_or_else(|| not_found("not in the remote's summary"))?;
                // ostree takes a size of 0 as "unknown".
                let limit = match r.commit_size {
                    0 => MAX_METADATA_SIZE,
                    n => n.min(MAX_METADATA_SIZE),
                };
                (r.commit, limit)
            }
            None => {
                let rel = format!("refs/heads/{name}");
                let what = format!("ref {name}");
                let body = fetcher
                    .get(&Want {
                        rel: &rel,
                        what: &what,
                        max: 4096,
                        optional: true,
                        spool: None,
                    })
                    .await?;
                let body =
                    into_mem(body).ok_or_else(|| not_found("no summary and no refs/heads file"))?;
                let text = std::str::from_utf8(&body).unwrap_or("");
                let c = Checksum::from_hex(text.trim()).map_err(|_| PullError::Fetch {
                    what,
                    url: fetcher.url_of(&rel).into(),
                    why: "does not hold a commit checksum".into(),
                })?;
                (c, MAX_METADATA_SIZE)
            }
        };
        out.push(Resolved {
            name: Some(name.clone()),
            target: Target {
                commit,
                size_limit,
                binding: Some(name.clone()),
            },
        });
    }
    Ok(out)
}
