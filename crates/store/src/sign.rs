//! ed25519 signatures in OSTree's format: `ostree.sign.ed25519` → `aay` of 64-byte pure
//! Ed25519 signatures, in a commit's detached metadata or in `summary.sig`. Keys are base64:
//! 32 bytes for a public key, 64 (seed ‖ public) for a secret key, one per line in key files.

use crate::checksum::{Checksum, ObjectType};
use crate::error::{Error, IoContext, Result};
use crate::gvariant::{self, Type, Value};
use crate::repo::Repo;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::path::Path;

pub const SIGN_ED25519: &str = "ostree.sign.ed25519";

#[derive(Clone)]
pub struct SecretKey(SigningKey);

/// Never print secret key material.
impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(public {})", self.public().to_base64())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{what}: not base64")]
    Base64 { what: String },
    #[error("{what}: expected {expected} bytes of key, found {found}")]
    Length {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("{what}: the public half does not match the secret seed")]
    Mismatch { what: String },
    #[error("{what}: not a valid ed25519 public key")]
    Invalid { what: String },
    #[error("{what}: holds no key")]
    Empty { what: String },
}

impl SecretKey {
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Invalid(format!("no randomness for a new key: {e}")))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// Parse base64 of seed ‖ public (64 bytes, libsodium's layout, as ostree stores them).
    pub fn from_base64(s: &str, what: &str) -> Result<SecretKey, KeyError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|_| KeyError::Base64 { what: what.into() })?;
        let arr: [u8; 64] = raw.as_slice().try_into().map_err(|_| KeyError::Length {
            what: what.into(),
            expected: 64,
            found: raw.len(),
        })?;
        let key = SigningKey::from_keypair_bytes(&arr)
            .map_err(|_| KeyError::Mismatch { what: what.into() })?;
        Ok(SecretKey(key))
    }

    /// The first key in a secret-key file.
    pub fn from_file(path: &Path) -> Result<SecretKey> {
        let text = std::fs::read_to_string(path).ctx("read key file", path)?;
        let what = path.display().to_string();
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or(KeyError::Empty { what: what.clone() })
            .map_err(|e| Error::Invalid(e.to_string()))?;
        SecretKey::from_base64(line, &what).map_err(|e| Error::Invalid(e.to_string()))
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_keypair_bytes())
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, data: &[u8]) -> [u8; 64] {
        self.0.sign(data).to_bytes()
    }
}

impl PublicKey {
    pub fn from_base64(s: &str, what: &str) -> Result<PublicKey, KeyError> {
        let raw = B64
            .decode(s.trim())
            .map_err(|_| KeyError::Base64 { what: what.into() })?;
        let arr: [u8; 32] = raw.as_slice().try_into().map_err(|_| KeyError::Length {
            what: what.into(),
            expected: 32,
            found: raw.len(),
        })?;
        VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| KeyError::Invalid { what: what.into() })
    }

    /// Every key in a public-key file (one base64 key per line).
    pub fn list_from_text(text: &str, what: &str) -> Result<Vec<PublicKey>, KeyError> {
        let keys = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| PublicKey::from_base64(l, what))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty { what: what.into() });
        }
        Ok(keys)
    }

    pub fn to_base64(&self) -> String {
        B64.encode(self.0.to_bytes())
    }

    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        let Ok(arr) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.0.verify(data, &Signature::from_bytes(&arr)).is_ok()
    }
}

/// The ed25519 signatures held in an `a{sv}` (commitmeta or summary.sig).
pub fn signatures_in(meta: &[(String, Value)]) -> Vec<Vec<u8>> {
    meta.iter()
        .filter(|(k, _)| k == SIGN_ED25519)
        .flat_map(|(_, v)| v.as_array().unwrap_or_default().iter())
        .filter_map(|s| s.as_bytes().map(<[u8]>::to_vec))
        .collect()
}

/// True when any signature verifies with any of the keys, as ostree decides.
pub fn verify_any(data: &[u8], meta: &[(String, Value)], keys: &[PublicKey]) -> bool {
    let sigs = signatures_in(meta);
    keys.iter().any(|k| sigs.iter().any(|s| k.verify(data, s)))
}

/// Add one signature to an `a{sv}`, keeping the other entries and signatures.
pub fn add_signature(mut meta: Vec<(String, Value)>, sig: [u8; 64]) -> Vec<(String, Value)> {
    let mut sigs = signatures_in(&meta);
    if !sigs.iter().any(|s| s.as_slice() == sig) {
        sigs.push(sig.to_vec());
    }
    meta.retain(|(k, _)| k != SIGN_ED25519);
    meta.push((SIGN_ED25519.to_string(), Value::bytes_array(sigs)));
    meta
}

/// Parse an `a{sv}` such as summary.sig.
pub fn parse_vardict(data: &[u8]) -> Result<Vec<(String, Value)>, crate::format::FormatError> {
    let ty = Type::parse("a{sv}").expect("static type");
    let v = gvariant::from_bytes(&ty, data)?;
    Ok(v.vardict_entries()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect())
}

impl Repo {
    /// Sign a commit: its ed25519 signature joins the detached metadata.
    pub fn sign_commit(&self, commit: &Checksum, key: &SecretKey) -> Result<()> {
        let bytes = self.read_metadata_verified(ObjectType::Commit, commit)?;
        let meta = self.load_commitmeta(commit)?.unwrap_or_default();
        self.write_commitmeta(commit, add_signature(meta, key.sign(&bytes)))
    }

    /// Whether a commit carries a valid signature by one of `keys`.
    pub fn verify_commit(&self, commit: &Checksum, keys: &[PublicKey]) -> Result<bool> {
        let bytes = self.read_metadata_verified(ObjectType::Commit, commit)?;
        let meta = self.load_commitmeta(commit)?.unwrap_or_default();
        Ok(verify_any(&bytes, &meta, keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let k = SecretKey::generate().unwrap();
        let k2 = SecretKey::from_base64(&k.to_base64(), "k").unwrap();
        assert_eq!(k.public(), k2.public());
        let p = PublicKey::from_base64(&k.public().to_base64(), "p").unwrap();
        let meta = add_signature(vec![("other".into(), Value::str("x"))], k.sign(b"data"));
        assert!(verify_any(b"data", &meta, &[p]));
        assert!(!verify_any(b"tampered", &meta, &[p]));
        let other = SecretKey::generate().unwrap().public();
        assert!(!verify_any(b"data", &meta, &[other]));
        // Signing again with another key keeps both signatures.
        let k3 = SecretKey::generate().unwrap();
        let meta = add_signature(meta, k3.sign(b"data"));
        assert_eq!(signatures_in(&meta).len(), 2);
        assert!(verify_any(b"data", &meta, &[k3.public()]));
        assert_eq!(meta[0].0, "other");
    }

    #[test]
    fn bad_keys_name_the_problem() {
        assert!(matches!(
            PublicKey::from_base64("!!", "f"),
            Err(KeyError::Base64 { .. })
        ));
        assert!(matches!(
            PublicKey::from_base64("AAAA", "f"),
            Err(KeyError::Length { found: 3, .. })
        ));
        let mut kp = SecretKey::generate().unwrap().0.to_keypair_bytes();
        kp[40] ^= 1;
        assert!(matches!(
            SecretKey::from_base64(&B64.encode(kp), "f"),
            Err(KeyError::Mismatch { .. })
        ));
        assert!(matches!(
            PublicKey::list_from_text("\n\n", "f"),
            Err(KeyError::Empty { .. })
        ));
    }
}
