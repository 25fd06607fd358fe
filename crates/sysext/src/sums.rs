//! The remote's index of extensions: `SHA256SUMS` in the format `sha256sum` writes and
//! systemd-sysupdate reads (`<hex>  <file>` lines), and its detached ed25519 signature
//! `SHA256SUMS.ed25519`: one base64 signature of the exact `SHA256SUMS` bytes per line
//! (several during a publish: the new index's and the previous one's, so that a reader
//! racing the publish verifies whichever index it got).

use crate::error::{Result, SysextError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use trellis_store::sign::{PublicKey, SecretKey};

pub const SUMS_FILE: &str = "SHA256SUMS";
pub const SIG_FILE: &str = "SHA256SUMS.ed25519";
/// Largest index accepted from a remote.
pub const MAX_SUMS: u64 = 4 * 1024 * 1024;
pub const MAX_SIG: u64 = 64 * 1024;

/// File name → SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub entries: BTreeMap<String, [u8; 32]>,
}

/// A file name in the index must be a plain file name.
fn check_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

impl Sums {
    pub fn parse(text: &str) -> Result<Sums> {
        let mut entries = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| {
                SysextError::Invalid(format!("{SUMS_FILE} line {}: {why}: {line:?}", i + 1))
            };
            let (hash, rest) = line
                .split_once(' ')
                .ok_or_else(|| bad("expected \"<sha256>  <file>\""))?;
            // "  name" (text mode) or " *name" (binary mode).
            let name = rest
                .strip_prefix(' ')
                .or_else(|| rest.strip_prefix('*'))
                .ok_or_else(|| bad("expected two spaces or \" *\" after the hash"))?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(hash, &mut h).map_err(|_| bad("not a SHA-256 in hex"))?;
            if !check_file_name(name) {
                return Err(bad("the file name is not a plain file name"));
            }
            if entries.insert(name.to_string(), h).is_some() {
                return Err(bad("the file is listed twice"));
            }
        }
        Ok(Sums { entries })
    }

    /// Sorted by file name, as `sha256sum` of sorted names writes it.
    pub fn to_text(&self) -> String {
        self.entries
            .iter()
            .map(|(n, h)| format!("{}  {n}\n", hex::encode(h)))
            .collect()
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// One signature line for `data`.
pub fn sign_line(key: &SecretKey, data: &[u8]) -> String {
    format!("{}\n", B64.encode(key.sign(data)))
}

/// Whether any signature line in `sig_text` verifies `data` with any of `keys`.
pub fn verify(data: &[u8], sig_text: &str, keys: &[PublicKey]) -> bool {
    sig_text
        .lines()
        .filter_map(|l| B64.decode(l.trim()).ok())
        .any(|sig| keys.iter().any(|k| k.verify(data, &sig)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let text = format!(
            "{}  b_1.raw\n{} *a_1.raw\n\n",
            hex::encode([1u8; 32]),
            hex::encode([2u8; 32])
        );
        let s = Sums::parse(&text).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.entries["a_1.raw"], [2u8; 32]);
        let out = s.to_text();
        assert!(out.starts_with(&format!("{}  a_1.raw\n", hex::encode([2u8; 32]))));
        assert_eq!(Sums::parse(&out).unwrap(), s);
        for bad in [
            format!("{}  ../x.raw", hex::encode([1u8; 32])),
            format!("{}  a/b.raw", hex::encode([1u8; 32])),
            "zz  a.raw".to_string(),
            format!("{}a.raw", hex::encode([1u8; 32])),
            format!("{0}  a.raw\n{0}  a.raw\n", hex::encode([1u8; 32])),
        ] {
            assert!(Sums::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn signatures() {
        let k = SecretKey::generate().unwrap();
        let other = SecretKey::generate().unwrap();
        let data = b"index";
        let sig = sign_line(&k, data) + &sign_line(&other, b"old index");
        assert!(verify(data, &sig, &[k.public()]));
        assert!(verify(b"old index", &sig, &[other.public()]));
        assert!(!verify(b"tampered", &sig, &[k.public(), other.public()]));
        assert!(!verify(data, &sig, &[other.public()]));
        assert!(!verify(data, "garbage\n", &[k.public()]));
    }
}
