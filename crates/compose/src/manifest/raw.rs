//! The manifest as TOML gives it: strict (unknown fields are errors), with the spans that
//! semantic errors report as lines.

use super::Scheme;
use serde::Deserialize;
use toml::Spanned;

type S = Spanned<String>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Raw {
    pub os: RawOs,
    pub debian: RawDebian,
    pub system: Option<RawSystem>,
    pub user: Option<RawUser>,
    pub remote: Option<RawRemote>,
    pub signing: Option<RawSigning>,
    pub upgrades: Option<RawUpgrades>,
    #[serde(default)]
    pub version: RawVersion,
    #[serde(default)]
    pub hooks: Vec<RawHook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawOs {
    pub name: S,
    #[serde(rename = "ref")]
    pub ref_name: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDebian {
    pub suite: S,
    pub mirror: Option<S>,
    pub architecture: Option<S>,
    pub components: Option<Spanned<Vec<S>>>,
    pub variant: Option<S>,
    pub packages: Spanned<Vec<S>>,
    pub source_date_epoch: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSystem {
    pub hostname: Option<S>,
    pub overlay: Option<S>,
    pub kernel_cmdline: Option<Vec<S>>,
    pub units: Option<Vec<S>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUser {
    pub name: S,
    pub password_hash: Option<S>,
    pub ssh_authorized_keys: Option<Vec<S>>,
    pub groups: Option<Vec<S>>,
    pub shell: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRemote {
    pub name: S,
    pub url: S,
    pub public_key: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSigning {
    pub key: S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawUpgrades {
    pub automatic: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVersion {
    #[serde(default)]
    pub scheme: Scheme,
    pub prefix: Option<S>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHook {
    pub name: S,
    pub run: S,
    pub chroot: Option<bool>,
}
