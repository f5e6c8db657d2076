//! The standalone decision point: the real engine and the real audit chain
//! opened in the proxy's own process (no daemon), wrapped as a
//! [`LocalDecider`].

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sentinel_audit::{AuditLog, Event};
use sentinel_policy::{Action, Engine, Policy, Verdict};

use crate::local::{AuditSink, Evaluate, LocalDecider};
use crate::scan::ScanPolicy;
use crate::store::Store;

/// The engine, shared (in the daemon: with the kernel event path).
pub struct SharedEngine(pub Arc<Mutex<Engine>>);

impl Evaluate for SharedEngine {
    fn evaluate(&self, action: &Action, now: SystemTime) -> Verdict {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .evaluate(action, now)
    }

    fn evaluate_quietly(&self, action: &Action, now: SystemTime) -> Verdict {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .evaluate_static(action, now)
    }

    fn server_outcome(&self, scope: &str, server: &str, ok: bool, now: SystemTime) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_server_outcome(scope, server, ok, now);
    }

    fn mcp_settings(&self) -> crate::scan::McpSettings {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .policy()
            .mcp()
    }
}

/// The audit writer, shared likewise.
pub struct SharedAudit(pub Arc<Mutex<AuditLog>>);

impl AuditSink for SharedAudit {
    fn append(&self, event: Event) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(event)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The audit writer on a thread of its own: appends are queued and
/// committed in batches (one fsync for all that queued up meanwhile), so a
/// call does not wait for the disk. If a commit fails, every later append
/// fails, and the proxy refuses calls it cannot record. Dropping it commits
/// what is queued.
pub struct AuditWriter {
    tx: Mutex<Option<std::sync::mpsc::Sender<Queued>>>,
    failed: Arc<Mutex<Option<String>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Queued {
    Event(Box<Event>),
    /// Answered once everything queued before it is committed.
    Flush(std::sync::mpsc::Sender<()>),
}

/// Most events committed in one batch.
const MAX_BATCH: usize = 512;

impl AuditWriter {
    pub fn spawn(mut log: AuditLog) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Queued>();
        let failed = Arc::new(Mutex::new(None));
        let failure = Arc::clone(&failed);
        let thread = std::thread::spawn(move || {
            let mut batch = Vec::new();
            let mut waiting = Vec::new();
            while let Ok(first) = rx.recv() {
                let mut next = Some(first);
                while let Some(queued) = next.take() {
                    match queued {
                        Queued::Event(event) => batch.push(*event),
                        Queued::Flush(done) => waiting.push(done),
                    }
                    if batch.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
                if !batch.is_empty() {
                    if let Err(e) = log.append_batch(&mut batch) {
                        eprintln!("sentinel mcp-proxy: audit log write failed: {e}");
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                    }
                    batch.clear();
                }
                for done in waiting.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        Self {
            tx: Mutex::new(Some(tx)),
            failed,
            thread: Mutex::new(Some(thread)),
        }
    }
}

impl AuditSink for AuditWriter {
    fn flush(&self) {
        AuditWriter::flush(self);
    }

    fn append(&self, event: Event) -> Result<(), String> {
        if let Some(e) = self
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            return Err(format!("the audit log is failing ({e})"));
        }
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        match tx.as_ref() {
            Some(tx) => tx
                .send(Queued::Event(Box::new(event)))
                .map_err(|_| "the audit writer has stopped".to_string()),
            None => Err("the audit writer has stopped".to_string()),
        }
    }
}

impl AuditWriter {
    /// Waits until everything appended so far is committed.
    pub fn flush(&self) {
        let (done, wait) = std::sync::mpsc::channel();
        let sent = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|tx| tx.send(Queued::Flush(done)).is_ok());
        if sent {
            let _ = wait.recv();
        }
    }
}

impl Drop for AuditWriter {
    fn drop(&mut self) {
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

/// Errors opening the standalone decision point.
#[derive(Debug, thiserror::Error)]
pub enum StandaloneError {
    #[error(
        "cannot load the policy from {dir}: {message}; fix the files or pass another --policy"
    )]
    Policy { dir: String, message: String },
    #[error("cannot open the audit log {db}: {message}; pass a --db the proxy's user can write")]
    Audit { db: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Opens the engine (policy from `policy_dir`, or the embedded defaults),
/// the audit chain in `db` (keys and anchor in `audit_state_dir`) and the
/// pin/approval store in the same `db`.
pub fn open_standalone(
    policy_dir: Option<&Path>,
    db: &Path,
    audit_state_dir: &Path,
    scan_policy: ScanPolicy,
) -> Result<LocalDecider, StandaloneError> {
    let policy = match policy_dir {
        Some(dir) => Policy::load_dir(dir).map_err(|e| StandaloneError::Policy {
            dir: dir.display().to_string(),
            message: e.to_string(),
        })?,
        None => Policy::embedded_defaults(),
    };
    let audit = AuditLog::open(db, audit_state_dir).map_err(|e| StandaloneError::Audit {
        db: db.display().to_string(),
        message: e.to_string(),
    })?;
    let store = Store::open(db)?;
    let label = format!(
        "in-process engine (policy {}, audit chain {})",
        policy_dir.map_or("embedded defaults".into(), |d| d.display().to_string()),
        db.display()
    );
    Ok(LocalDecider::new(
        Box::new(SharedEngine(Arc::new(Mutex::new(Engine::new(policy))))),
        Box::new(AuditWriter::spawn(audit)),
        store,
        scan_policy,
        label,
    ))
}
