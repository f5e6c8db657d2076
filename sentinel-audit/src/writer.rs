//! The audit writer thread: takes events from the daemon, commits them in
//! batches (one transaction each), then hands each committed batch and its
//! checkpoint to the export sinks. SQLite and fsync block, so this runs on
//! its own OS thread, not on the async runtime.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::Checkpoint;
use crate::error::AuditError;
use crate::event::Event;
use crate::log::{AuditLog, WriterHealth};
use crate::queue::{queue, QueueReceiver, QueueSender};
use crate::sink::{SinkMonitor, SinkStats, Sinks};

/// Told how long each committed batch took and how many events it held
/// (the daemon's `sentinel_audit_append_seconds`).
pub type CommitObserver = Arc<dyn Fn(Duration, usize) + Send + Sync>;

/// Tunables of the writer thread.
#[derive(Clone)]
pub struct AuditWriterOptions {
    /// Events buffered before `try_record` refuses (and counts) them and
    /// `record` waits. The queue's memory follows what is in it.
    pub queue_capacity: usize,
    /// The most events committed in one transaction.
    pub max_batch: usize,
    /// Attempts to commit a batch before its events are counted as failed.
    pub commit_attempts: u32,
    pub observer: Option<CommitObserver>,
}

impl std::fmt::Debug for AuditWriterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriterOptions")
            .field("queue_capacity", &self.queue_capacity)
            .field("max_batch", &self.max_batch)
            .field("commit_attempts", &self.commit_attempts)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl Default for AuditWriterOptions {
    fn default() -> Self {
        AuditWriterOptions {
            queue_capacity: 65_536,
            // One fsync per commit: a flood is committed in large batches
            // (about 30 ms of work each), a trickle one event at a time.
            max_batch: 16_384,
            commit_attempts: 3,
            observer: None,
        }
    }
}

/// Counters for `sentinel status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditWriterStats {
    /// Events committed to the audit database.
    pub recorded: u64,
    /// Events refused by `try_record` because the queue was full.
    pub dropped: u64,
    /// Events lost because their batch could not be committed.
    pub failed: u64,
    /// The newest committed sequence number.
    pub last_seq: u64,
    pub health: WriterHealth,
    pub sinks: Vec<(String, SinkStats)>,
}

#[derive(Default)]
struct Counters {
    recorded: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    last_seq: AtomicU64,
    key_write_errors: AtomicU64,
    anchor_write_errors: AtomicU64,
    wal_checkpoint_errors: AtomicU64,
    /// `u64::MAX`: none.
    new_key_segment: AtomicU64,
}

// Nearly every command is an event: boxing it to shrink the rare flush
// would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Command {
    Record(Event),
    /// Answered once everything queued before it is committed.
    Flush(SyncSender<Checkpoint>),
    /// From the next batch on, publish to these sinks (SIGHUP).
    ReplaceSinks(Sinks),
}

/// Handle to the writer thread.
pub struct AuditWriter {
    tx: Option<QueueSender<Command>>,
    worker: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
    sinks: Arc<Mutex<SinkMonitor>>,
}

impl AuditWriter {
    /// Moves `log` and `sinks` to a new writer thread.
    pub fn spawn(
        log: AuditLog,
        sinks: Sinks,
        options: AuditWriterOptions,
    ) -> Result<AuditWriter, AuditError> {
        let (tx, rx) = queue(options.queue_capacity);
        let counters = Arc::new(Counters::default());
        counters.last_seq.store(log.last_seq(), Ordering::Relaxed);
        counters.new_key_segment.store(
            log.health().new_key_segment.unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let monitor = sinks.monitor();
        let mut worker = Worker {
            log,
            sinks: Some(sinks),
            counters: Arc::clone(&counters),
            max_batch: options.max_batch.max(1),
            attempts: options.commit_attempts.max(1),
            observer: options.observer,
        };
        let handle = std::thread::Builder::new()
            .name("audit writer".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| AuditError::io("audit writer thread", e))?;
        Ok(AuditWriter {
            tx: Some(tx),
            worker: Some(handle),
            counters,
            sinks: Arc::new(Mutex::new(monitor)),
        })
    }

    /// Publishes to `sinks` from the next committed batch on; the old
    /// sinks first deliver what they hold and stop. Their counters leave
    /// `stats` with them.
    pub fn replace_sinks(&self, sinks: Sinks) {
        let monitor = sinks.monitor();
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send_unbounded(Command::ReplaceSinks(sinks)).is_ok());
        if sent {
            *self.sinks.lock().unwrap_or_else(|p| p.into_inner()) = monitor;
        }
    }

    /// Queues an event without blocking; `false` (and a counted drop) when
    /// the queue is full.
    pub fn try_record(&self, event: Event) -> bool {
        let Some(tx) = &self.tx else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        match tx.try_send(Command::Record(event)) {
            Ok(()) => true,
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Queues an event, waiting while the queue is full (backpressure).
    pub fn record(&self, event: Event) {
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(Command::Record(event)).is_ok());
        if !sent {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until everything queued so far is committed; returns the
    /// checkpoint of the tail, or `None` if the writer has stopped.
    pub fn flush(&self, timeout: Duration) -> Option<Checkpoint> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .as_ref()?
            .send_unbounded(Command::Flush(reply))
            .ok()?;
        answer.recv_timeout(timeout).ok()
    }

    pub fn stats(&self) -> AuditWriterStats {
        let c = &self.counters;
        AuditWriterStats {
            recorded: c.recorded.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            last_seq: c.last_seq.load(Ordering::Relaxed),
            health: WriterHealth {
                key_write_errors: c.key_write_errors.load(Ordering::Relaxed),
                anchor_write_errors: c.anchor_write_errors.load(Ordering::Relaxed),
                wal_checkpoint_errors: c.wal_checkpoint_errors.load(Ordering::Relaxed),
                new_key_segment: Some(c.new_key_segment.load(Ordering::Relaxed))
                    .filter(|e| *e != u64::MAX),
            },
            sinks: self.sinks.lock().unwrap_or_else(|p| p.into_inner()).stats(),
        }
    }

    /// Commits everything queued, shuts the sinks down (flushing them,
    /// stdout included) and stops the thread. Call on SIGINT/SIGTERM.
    pub fn shutdown(mut self) -> AuditWriterStats {
        self.stop();
        self.stats()
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                tracing::error!("audit writer thread panicked");
            }
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    log: AuditLog,
    sinks: Option<Sinks>,
    counters: Arc<Counters>,
    max_batch: usize,
    attempts: u32,
    observer: Option<CommitObserver>,
}

impl Worker {
    fn run(&mut self, rx: QueueReceiver<Command>) {
        // Grown by bursts, given back when the queue runs dry.
        const IDLE_BATCH: usize = 1024;
        let mut batch = Vec::with_capacity(IDLE_BATCH.min(self.max_batch));
        let mut flushes = Vec::new();
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            while let Some(command) = next.take() {
                match command {
                    Command::Record(event) => batch.push(event),
                    Command::Flush(reply) => flushes.push(reply),
                    Command::ReplaceSinks(sinks) => {
                        // What is batched so far goes to the old sinks.
                        self.commit(&mut batch);
                        // The old sinks deliver what they hold before the
                        // new ones write (a file sink may be the same file
                        // in both); this waits at most their shutdown
                        // timeout for an unreachable network sink.
                        if let Some(old) = self.sinks.replace(sinks) {
                            old.shutdown();
                        }
                    }
                }
                if batch.len() >= self.max_batch {
                    self.commit(&mut batch);
                }
                next = rx.try_recv().ok();
            }
            self.commit(&mut batch);
            batch.shrink_to(IDLE_BATCH);
            for reply in flushes.drain(..) {
                let _ = reply.send(self.log.checkpoint());
            }
        }
        self.commit(&mut batch);
        if let Some(sinks) = self.sinks.take() {
            sinks.shutdown();
        }
    }

    fn commit(&mut self, batch: &mut Vec<Event>) {
        if batch.is_empty() {
            return;
        }
        let mut attempt = 1;
        let started = Instant::now();
        let result = loop {
            match self.log.append_batch(batch) {
                Ok(checkpoint) => break Ok(checkpoint),
                Err(e) if attempt >= self.attempts => break Err(e),
                Err(e) => {
                    tracing::warn!("audit commit failed (attempt {attempt}), retrying: {e}");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        let n = batch.len() as u64;
        match result {
            Ok(checkpoint) => {
                if let Some(observe) = &self.observer {
                    observe(started.elapsed(), batch.len());
                }
                self.counters.recorded.fetch_add(n, Ordering::Relaxed);
                self.counters
                    .last_seq
                    .store(checkpoint.seq, Ordering::Relaxed);
                if let Some(sinks) = &self.sinks {
                    sinks.publish(batch, &checkpoint);
                }
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                tracing::error!("audit: {n} events could not be recorded: {e}");
            }
        }
        let health = self.log.health();
        let c = &self.counters;
        c.key_write_errors
            .store(health.key_write_errors, Ordering::Relaxed);
        c.anchor_write_errors
            .store(health.anchor_write_errors, Ordering::Relaxed);
        c.wal_checkpoint_errors
            .store(health.wal_checkpoint_errors, Ordering::Relaxed);
        batch.clear();
    }
}
