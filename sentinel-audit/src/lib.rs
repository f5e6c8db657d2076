//! What Sentinel records and exports: the [`Event`] record (the JSONL
//! contract), the tamper-evident audit chain in SQLite ([`AuditLog`],
//! [`verify`]), the SIEM formats (JSONL, CEF, RFC 5424 syslog) and the live
//! export sinks ([`Sink`]), the writer thread that ties them together
//! ([`AuditWriter`]), and the `sentinel audit` CLI ([`cli`]).

pub mod cef;
pub mod checkpoint;
pub mod cli;
pub mod clock;
mod encoding;
pub mod error;
pub mod event;
mod keys;
pub mod log;
mod secure_fs;
pub mod sink;
pub mod store;
pub mod syslog;
pub mod tls;
pub mod verify;
mod wal;
pub mod writer;

pub use checkpoint::{Checkpoint, ANCHOR_FILE};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::AuditError;
pub use event::{Body, Event, ProcessInfo};
pub use keys::{VERIFY_KEY_FILE, WRITER_KEY_FILE};
pub use log::{AuditConfig, AuditLog, Retention, RetentionSummary, WriterHealth};
pub use sink::{Sink, SinkMonitor, SinkOptions, SinkSpec, SinkStats, Sinks};
pub use store::{AuditReader, Column, QueryFilter, Stats};
pub use verify::{
    recorded_key_dir, verify, verify_found, verify_with_keys, AnchorStatus, Problem, VerifyReport,
};
pub use writer::{AuditWriter, AuditWriterOptions, AuditWriterStats, CommitObserver};
