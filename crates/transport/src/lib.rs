//! trellis-transport: moving OSTree repositories between machines.
//!
//! `serve` exposes an archive repository as a static HTTP remote; `pull` fetches commits
//! from one, verifying every object before it is stored; `publish` uploads what a
//! destination lacks (objects, then commits, refs, summary last); `export`/`import` carry a
//! repository as a deterministic tar archive.

pub mod export;
pub mod import;
pub mod publish;
pub mod pull;
pub mod serve;
