//! The threads that answer requests: one single-threaded runtime per core, each accepting
//! and owning its connections, as nginx's worker processes do.
//!
//! In one work-stealing runtime, a connection's reads, writes and blocking-pool results
//! wake tasks on whichever thread is free: a futex wake and a context switch per request,
//! which was a fifth of the server's CPU time on small objects. A connection that stays on
//! one thread is driven by that thread's epoll loop alone.

use tokio::runtime::Handle;
use tokio::sync::oneshot;

pub(crate) struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Start `n` (at least one) worker threads.
    pub fn start(n: usize) -> std::io::Result<Workers> {
        let mut w = Workers {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            w.handles.push(rt.handle().clone());
            w.stops.push(stop_tx);
            // On error, `w` is dropped: the threads started so far are stopped and joined.
            w.threads.push(
                std::thread::Builder::new()
                    .name(format!("trellis-serve-{i}"))
                    .spawn(move || {
                        // Spawned tasks run only while the thread blocks on the runtime.
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                    })?,
            );
        }
        Ok(w)
    }

    /// One worker per available core.
    pub fn per_core() -> std::io::Result<Workers> {
        Workers::start(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// The workers' runtimes.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    #[test]
    fn each_worker_is_one_thread_and_its_tasks_stay_on_it() {
        let w = Workers::start(2).unwrap();
        assert_eq!(w.handles().len(), 2);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..4 {
            let (seen, tx) = (Arc::clone(&seen), tx.clone());
            w.handles()[i % 2].spawn(async move {
                let before = std::thread::current().id();
                tokio::task::yield_now().await;
                let after = std::thread::current().id();
                seen.lock().unwrap().push((i % 2, before, after));
                tx.send(()).unwrap();
            });
        }
        for _ in 0..4 {
            rx.recv().unwrap();
        }
        let seen = seen.lock().unwrap();
        assert!(seen.iter().all(|(_, a, b)| a == b), "a task moved threads");
        let threads: HashSet<_> = seen.iter().map(|(_, a, _)| *a).collect();
        assert_eq!(threads.len(), 2, "two workers, two threads");
        for worker in 0..2 {
            let on: HashSet<_> = seen.iter().filter(|s| s.0 == worker).map(|s| s.1).collect();
            assert_eq!(on.len(), 1, "worker {worker}'s tasks ran on one thread");
        }
        drop(seen);
        drop(w);
    }
}
