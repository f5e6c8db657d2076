//! What Sentinel records and exports: the [`Event`] record (the JSONL
//! contract), the tamper-evident audit chain in SQLite ([`AuditLog`],
//! [`verify`]), the SIEM formats (JSONL, CEF, RFC 5424 syslog) and the live
//! export sinks ([`Sink`]), the writer thread that ties them together
//! ([`AuditWriter`]), and the `sentinel audit` CLI ([`cli`]).

mod append;
pub mod cef;
pub mod checkpoint;
pub mod cli;
pub mod clock;
mod compact;
mod encoding;
pub mod error;
pub mod event;
mod keys;
pub mod log;
mod queue;
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

/// The append path's stages, exposed for the criterion benches
/// (`benches/append.rs`) so each can be measured alone. Not an API.
#[doc(hidden)]
pub mod stages {
    use crate::encoding::{record_seal, RecordFields, RecordHasher};
    use crate::verify::WrittenColumns;
    use crate::Event;

    /// The stored (compact) form of `event`, into `out`.
    pub fn encode(event: &Event, out: &mut Vec<u8>) {
        out.clear();
        let _ = crate::compact::encode(event, out);
    }

    /// Record hashes of a stream of encoded events.
    #[derive(Default)]
    pub struct Hasher(Option<RecordHasher>);

    impl Hasher {
        /// The record hash of `event` stored as `encoded` after `prev`.
        pub fn hash(&mut self, event: &Event, encoded: &[u8], prev: &[u8; 32]) -> [u8; 32] {
            let columns = WrittenColumns::of(event);
            let hasher = self.0.get_or_insert_with(RecordHasher::new);
            hasher.hash(&RecordFields {
                seq: event.seq,
                ts_ns: columns.ts_ns,
                kind: columns.kind,
                agent: columns.agent,
                action: columns.action,
                rule: columns.rule,
                event: encoded,
                epoch: 1,
                prev_hash: prev,
            })
        }
    }

    /// One seal.
    pub fn seal(key: &[u8; 32], hash: &[u8; 32]) -> [u8; 32] {
        record_seal(key, hash)
    }
}
