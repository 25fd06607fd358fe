//! Progress bars on stderr (indicatif hides them when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use trellis_store::commit::Progress;

pub struct Bar {
    pb: ProgressBar,
    bytes: AtomicU64,
}

impl Bar {
    pub fn new(what: &str) -> Bar {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} files, {msg} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_prefix(what.to_string());
        Bar {
            pb,
            bytes: AtomicU64::new(0),
        }
    }

    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
}

impl Progress for Bar {
    fn total(&self, files: u64, _bytes: u64) {
        self.pb.set_length(files);
    }

    fn advance(&self, files: u64, bytes: u64) {
        self.pb.inc(files);
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.pb.set_message(format!("{:.1} MB", total as f64 / 1e6));
    }
}
