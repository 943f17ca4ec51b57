//! The background thread that seals day files once their day is over.
//!
//! The writer hands it each file it leaves at midnight; at start it also gets every older file,
//! in case the proxy was down at midnight or stopped during a sealing (which then rolled back).
//! Sealing runs beside the writer on another file, so it never delays audit records.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::store::seal::{SealStop, seal};
use crate::writer::Shared;

/// Handle of the sealing thread.
pub(crate) struct Sealer {
    tx: Option<mpsc::Sender<PathBuf>>,
    stop: SealStop,
    thread: Option<JoinHandle<()>>,
}

impl Sealer {
    /// Starts the thread; it seals `backlog` first.
    pub fn start(full_text: bool, backlog: Vec<PathBuf>, shared: Arc<Shared>) -> Self {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        for path in backlog {
            let _ = tx.send(path);
        }
        let stop = SealStop::default();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("warden-audit-sealer".into())
            .spawn(move || {
                for path in rx {
                    match seal(&path, full_text, &thread_stop) {
                        Ok(true) => {
                            shared.stats.files_sealed.fetch_add(1, Relaxed);
                            tracing::info!(file = %path.display(), "audit day file sealed");
                        }
                        Ok(false) => {}
                        Err(e) => {
                            if thread_stop.stopped() {
                                break;
                            }
                            tracing::warn!(
                                file = %path.display(),
                                error = %e,
                                "audit day file not sealed; queries on it scan instead of \
                                 using the sealed indexes, and the next start tries again"
                            );
                        }
                    }
                }
            })
            .ok();
        Sealer {
            tx: Some(tx),
            stop,
            thread,
        }
    }

    /// Queues a file for sealing.
    pub fn seal(&self, path: PathBuf) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(path);
        }
    }

    /// Stops sealing (a sealing in progress rolls back) and waits for the thread.
    pub fn stop(mut self) {
        self.stop.stop();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
