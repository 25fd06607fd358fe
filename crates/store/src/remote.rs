//! Remotes, stored as ostree stores them: `[remote "NAME"]` groups in the repo config.

use crate::error::{Error, IoContext, Result};
use crate::repo::Repo;
use crate::sign::PublicKey;
use std::path::PathBuf;

/// A configured remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub name: String,
    pub url: String,
    /// Every key of the group, in file order (url included).
    pub options: Vec<(String, String)>,
}

fn group(name: &str) -> String {
    format!("remote \"{name}\"")
}

/// Remote names follow the ref-name fragment grammar and may not contain '/'.
pub fn validate_remote_name(name: &str) -> Result<()> {
    if name.contains('/') || crate::format::validate_ref_name(name).is_err() {
        return Err(Error::Invalid(format!(
            "invalid remote name {name:?}: use letters, digits, '_', '-' and '.'"
        )));
    }
    Ok(())
}

impl Remote {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.options
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn get_bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(v) => Err(Error::Invalid(format!(
                "remote {}: {key}={v:?} is not true or false",
                self.name
            ))),
        }
    }

    /// Whether commits must carry a valid ed25519 signature (`sign-verify=true` or a list
    /// naming `ed25519`).
    pub fn sign_verify(&self) -> Result<bool> {
        match self.get("sign-verify").map(str::trim) {
            None => Ok(false),
            Some(v) if v.split([';', ',']).any(|t| t.trim() == "ed25519") => Ok(true),
            Some(_) => self.get_bool("sign-verify", false),
        }
    }

    /// Whether the summary's signature must verify (`sign-verify-summary`).
    pub fn sign_verify_summary(&self) -> Result<bool> {
        self.get_bool("sign-verify-summary", false)
    }

    /// `gpg-verify` defaults to true in ostree.
    pub fn gpg_verify(&self) -> Result<bool> {
        self.get_bool("gpg-verify", true)
    }

    /// The trusted ed25519 keys: `verification-ed25519-key` (inline) and
    /// `verification-ed25519-file` (one base64 key per line).
    pub fn verification_keys(&self) -> Result<Vec<PublicKey>> {
        let mut keys = Vec::new();
        if let Some(k) = self.get("verification-ed25519-key") {
            let what = format!("remote {} verification-ed25519-key", self.name);
            keys.extend(
                PublicKey::list_from_text(&k.replace([';', ','], "\n"), &what)
                    .map_err(|e| Error::Invalid(e.to_string()))?,
            );
        }
        if let Some(f) = self.get("verification-ed25519-file") {
            let path = PathBuf::from(f);
            let text = std::fs::read_to_string(&path).ctx("read verification key file", &path)?;
            keys.extend(
                PublicKey::list_from_text(&text, f).map_err(|e| Error::Invalid(e.to_string()))?,
            );
        }
        Ok(keys)
    }
}

impl Repo {
    pub fn remote_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .config()
            .groups()
            .filter_map(|g| {
                g.strip_prefix("remote \"")?
                    .strip_suffix('"')
                    .map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    pub fn remote(&self, name: &str) -> Result<Remote> {
        let g = group(name);
        if !self.config().has_group(&g) {
            return Err(Error::Invalid(format!(
                "remote {name:?} is not configured in {} (add it with `trellis remote add`)",
                self.path().display()
            )));
        }
        let options: Vec<(String, String)> = self
            .config()
            .entries(&g)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let url = options
            .iter()
            .rev()
            .find(|(k, _)| k == "url")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Invalid(format!("remote {name:?} has no url")))?;
        Ok(Remote {
            name: name.to_string(),
            url,
            options,
        })
    }

    /// Add a remote with `url` and extra options (written in the given order). Fails if it
    /// exists, unless `if_not_exists`.
    pub fn add_remote(
        &mut self,
        name: &str,
        url: &str,
        options: &[(String, String)],
        if_not_exists: bool,
    ) -> Result<()> {
        validate_remote_name(name)?;
        let g = group(name);
        if self.config().has_group(&g) {
            if if_not_exists {
                return Ok(());
            }
            return Err(Error::Invalid(format!(
                "remote {name:?} already exists (delete it first, or use --if-not-exists)"
            )));
        }
        let mut config = self.config().clone();
        config.set(&g, "url", url);
        for (k, v) in options {
            config.set(&g, k, v);
        }
        self.write_config(&config)?;
        self.reload()
    }

    pub fn delete_remote(&mut self, name: &str, if_exists: bool) -> Result<()> {
        let mut config = self.config().clone();
        if !config.remove_group(&group(name)) {
            if if_exists {
                return Ok(());
            }
            return Err(Error::Invalid(format!("remote {name:?} is not configured")));
        }
        self.write_config(&config)?;
        self.reload()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoMode;

    #[test]
    fn add_read_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let mut repo = Repo::init(&tmp.path().join("r"), RepoMode::Archive).unwrap();
        let key = crate::sign::SecretKey::generate()
            .unwrap()
            .public()
            .to_base64();
        repo.add_remote(
            "origin",
            "http://127.0.0.1:8080",
            &[
                ("gpg-verify".into(), "false".into()),
                ("sign-verify".into(), "ed25519".into()),
                ("verification-ed25519-key".into(), key.clone()),
            ],
            false,
        )
        .unwrap();
        assert!(repo.add_remote("origin", "x", &[], false).is_err());
        repo.add_remote("origin", "x", &[], true).unwrap();
        let r = repo.remote("origin").unwrap();
        assert_eq!(r.url, "http://127.0.0.1:8080");
        assert!(r.sign_verify().unwrap());
        assert!(!r.gpg_verify().unwrap());
        assert_eq!(r.verification_keys().unwrap()[0].to_base64(), key);
        assert_eq!(repo.remote_names(), ["origin"]);
        let text = std::fs::read_to_string(tmp.path().join("r/config")).unwrap();
        assert!(
            text.contains("[remote \"origin\"]\nurl=http://127.0.0.1:8080\ngpg-verify=false\n"),
            "{text}"
        );
        repo.delete_remote("origin", false).unwrap();
        assert!(repo.remote("origin").is_err());
        assert!(repo.delete_remote("origin", false).is_err());
        assert!(repo.add_remote("a/b", "x", &[], false).is_err());
    }
}
