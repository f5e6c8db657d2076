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

    fn server_outcome(&self, server: &str, ok: bool, now: SystemTime) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record_server_outcome(server, ok, now);
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
        Box::new(SharedAudit(Arc::new(Mutex::new(audit)))),
        store,
        scan_policy,
        label,
    ))
}
