//! trellis-sysroot: the device side of trellis.
//!
//! A sysroot is OSTree's physical root layout (spec §7), byte for byte, so that
//! `ostree admin status` lists what trellis deploys and trellis reads what ostree
//! deploys. This crate creates one ([`layout`]), deploys commits from its bare repository
//! ([`deploy`], with the `/etc` three-way merge of [`etc_merge`]), writes the boot entries
//! ([`bootconfig`], and systemd-boot entries with boot counting on an ESP in [`esp`]),
//! reads it back ([`status`]), stages deployments to be finalized at shutdown
//! ([`stage`]), upgrades from a deployment's origin ([`upgrade`]), rolls back
//! ([`rollback`]) and cleans up ([`cleanup`]). [`prepare_root`] runs in the initramfs and
//! makes the booted deployment the root.
//!
//! Every change takes the sysroot lock (`ostree/lock`, ostree's own) and ends with one
//! atomic switch of the boot configuration ([`write`]). Nothing here prints.

pub mod bootconfig;
pub mod cleanup;
pub mod deploy;
pub mod deployment;
pub mod error;
pub mod esp;
pub mod etc_merge;
pub mod fsutil;
pub mod kargs;
pub mod kernel;
pub mod layout;
pub mod origin;
pub mod prepare_root;
pub mod rollback;
pub mod space;
pub mod stage;
pub mod staged_state;
pub mod status;
pub mod sysroot;
pub mod upgrade;
pub mod write;

pub use deploy::{DeployOptions, DeployOutcome, deploy};
pub use deployment::Deployment;
pub use error::{Error, Result};
pub use kargs::Kargs;
pub use origin::Origin;
pub use status::{State, load};
pub use sysroot::{EspConfig, Host, Sysroot};
