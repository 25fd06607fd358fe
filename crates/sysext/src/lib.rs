//! trellis-sysext: systemd system extensions for image-based Debian systems.
//!
//! - [`build`]: install Debian packages over a base commit in an overlay and keep what
//!   they add under /usr and /opt, with an extension-release file matching the base;
//! - [`pack`]: as a directory, or a raw erofs or squashfs image, reproducibly;
//! - [`image`], [`inspect`], [`check`]: read an image and decide, with systemd-sysext
//!   252's rules ([`matching`]), whether it merges on an OS and why not;
//! - [`publish`]: images beside a published repository, in a signed `SHA256SUMS`
//!   ([`sums`]) as systemd-sysupdate reads it;
//! - [`fetch`], [`device`]: on a device, list, install (verified), remove, status, and
//!   which extensions an OS upgrade would leave behind ([`device::would_stop_matching`]).
//!
//! Nothing here prints; progress lines go to callbacks.

pub mod arch;
pub mod base;
pub mod build;
pub mod check;
pub mod device;
pub mod error;
pub mod fetch;
mod fsutil;
pub mod image;
pub mod inspect;
pub mod matching;
pub mod name;
pub mod osrelease;
pub mod pack;
pub mod publish;
pub mod sums;
pub mod version;

pub use error::{Result, SysextError};
pub use image::Format;
pub use osrelease::OsRelease;
