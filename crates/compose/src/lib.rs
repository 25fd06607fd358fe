//! trellis-compose: from a TOML manifest to a boot-ready Debian commit.
//!
//! [`compose::compose`] runs the phases in order: find the parent (the local ref's tip, or
//! only the tip commit object fetched from the manifest's remote), bootstrap the root
//! filesystem with mmdebstrap ([`rootfs`]), customize it inside the tree (host name,
//! overlay, user, the trellis binary and its systemd units ([`units`]), the manifest's
//! hooks, units to enable: [`customize`]), make the initramfs and put the kernel in
//! /usr/lib/modules ([`initramfs`]), convert the tree to
//! the layout an image-based system boots ([`convert`]), and commit it with its version,
//! the manifest's digest and the package list. Each phase is timed.

mod chroot;
pub mod compose;
pub mod convert;
pub mod customize;
pub mod dpkg;
pub mod error;
mod fsutil;
pub mod initramfs;
pub mod manifest;
pub mod parent;
pub mod rootfs;
pub mod units;
pub mod version;

pub use compose::{ComposeOptions, ComposeOutcome, ComposeProgress, Phase, compose};
pub use error::{ComposeError, Result};
pub use manifest::Manifest;
