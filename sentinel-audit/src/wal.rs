//! The WAL checkpointer: copies committed pages from the write-ahead log
//! into the database file on its own thread and connection, so appends do
//! not pay for it (SQLite's automatic checkpoint runs inside the commit
//! that crosses the threshold, and fsyncs the database file there).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::AuditError;

/// Records appended between two nudges of the checkpointer.
pub(crate) const NUDGE_EVERY_RECORDS: u64 = 2048;
/// The checkpointer also runs this often when nudges stop coming.
const IDLE_PERIOD: Duration = Duration::from_secs(2);

/// Handle of the checkpointer thread; stops it (after a last checkpoint)
/// when dropped.
pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    worker: Option<JoinHandle<()>>,
    pub errors: Arc<AtomicU64>,
}

impl Checkpointer {
    pub fn start(db: &Path) -> Result<Checkpointer, AuditError> {
        let conn = Connection::open(db).map_err(|source| AuditError::Open {
            path: db.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let (nudge, wake) = mpsc::sync_channel::<()>(1);
        let errors = Arc::new(AtomicU64::new(0));
        let worker_errors = Arc::clone(&errors);
        let worker = std::thread::Builder::new()
            .name("audit wal checkpoint".into())
            .spawn(move || loop {
                let stop = matches!(
                    wake.recv_timeout(IDLE_PERIOD),
                    Err(RecvTimeoutError::Disconnected)
                );
                // PASSIVE never blocks the writer or readers.
                let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                if let Err(e) = done {
                    if worker_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                        tracing::warn!("audit WAL checkpoint failed: {e}");
                    }
                }
                if stop {
                    return;
                }
            })
            .map_err(|e| AuditError::io(db, e))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            worker: Some(worker),
            errors,
        })
    }

    /// Asks for a checkpoint soon; never blocks.
    pub fn nudge(&self) {
        if let Some(nudge) = &self.nudge {
            let _ = nudge.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
