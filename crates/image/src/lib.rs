//! trellis-image: bootable disk images from a commit.
//!
//! [`build::build_image`] makes a GPT disk with a FAT32 EFI system partition and an ext4
//! root (Discoverable Partitions Specification types), without loop devices:
//!
//! - [`source`] reads the ref's tip: OS name, default kernel arguments, systemd-boot;
//! - [`stage`] builds the sysroot the root will hold (OSTree's layout: a bare repository
//!   with only that commit, recorded as `REMOTE:REF` with the remote configured, one
//!   deployment with that origin) and the ESP's content (systemd-boot from the tree, the
//!   kernel, initramfs and loader entries with boot counting);
//! - [`size`] measures both and plans the partitions (content plus free space, or a fixed
//!   total);
//! - [`gpt`] writes the partition table (a pure function of the layout), [`ext4`] and
//!   [`fat`] the file systems into the disk file at their offsets.
//!
//! The same commit and options give the same bytes: identifiers derive from the commit
//! ([`ids`]) and every timestamp is the commit's (or the one given). Nothing here prints;
//! progress goes through [`build::ImageProgress`].

pub mod build;
pub mod error;
pub mod ext4;
pub mod fat;
pub mod fsutil;
pub mod gpt;
pub mod ids;
pub mod size;
pub mod source;
pub mod stage;

pub use build::{Format, ImageOptions, ImageOutcome, ImageProgress, Step, build_image};
pub use error::{ImageError, Result};
pub use size::SizeSpec;
pub use stage::RemoteSpec;
