//! The library's error type: one enum, each message a single line that says
//! what went wrong and, where it helps, what to do about it.

use std::path::PathBuf;

/// Everything that can go wrong opening, writing, querying or verifying the
/// audit trail.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit database {path}: {source}; check the path and that you are root")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("audit database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("audit database {path} is being written by another process (the sentinel daemon?); stop it first, one writer per chain")]
    Busy { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: malformed ({reason}); restore it from a backup or move it aside")]
    Malformed { path: PathBuf, reason: String },
    #[error("audit key {path} is missing but the database already holds records; restore the state directory that belongs to this database")]
    KeyMissing { path: PathBuf },
    #[error("{path} belongs to audit database {found}, not {expected}; use the state directory written for this database")]
    WrongDatabase {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("audit database ends at seq {db_last} but the anchor {anchor_path} records seq {anchored}: the tail was truncated or the database replaced by an older copy; run `sentinel audit verify`, then move the anchor aside to accept")]
    AnchorAhead {
        anchor_path: PathBuf,
        anchored: u64,
        db_last: u64,
    },
    #[error("record {seq} does not match the anchor {anchor_path}: the database was rewritten or replaced; run `sentinel audit verify`, then move the anchor aside to accept")]
    AnchorMismatch { anchor_path: PathBuf, seq: u64 },
    #[error("retention stopped: record {seq} fails verification ({problem}); run `sentinel audit verify`")]
    RetentionBlocked { seq: u64, problem: String },
    #[error("event could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("audit database holds a malformed row at seq {seq}: {reason}")]
    BadRow { seq: u64, reason: String },
}

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}
