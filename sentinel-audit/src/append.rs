//! The append path of one batch: the sealer turns events into chain rows
//! (compact encoding → record hash → a seal at the end of each run), the
//! inserter writes them with one prepared statement in one transaction.
//!
//! Large batches run the two on two threads, the sealer a chunk ahead of
//! the inserter, so a record costs the slower of the two stages rather than
//! their sum. Nothing of the batch is kept unless the transaction commits:
//! the sealer works on a copy of the chain state, which the caller adopts
//! only after the commit.

use std::sync::mpsc;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Transaction;
use time::OffsetDateTime;

use crate::compact;
use crate::encoding::{record_seal, RecordFields, RecordHasher};
use crate::error::AuditError;
use crate::event::Event;
use crate::keys::EpochKey;
use crate::verify::WrittenColumns;

const INSERT_RECORD: &str = "INSERT INTO records \
    (seq, ts, kind, agent, action, rule, event, epoch, prev_hash, hash, seal) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

/// Batches at least this long are sealed on a second thread.
const PARALLEL_MIN: usize = 512;
/// Records the sealer hands to the inserter at a time.
const CHUNK: usize = 256;

/// Where the chain stands: the next record's seq and link, and the epoch.
#[derive(Clone)]
pub(crate) struct ChainState {
    pub next_seq: u64,
    pub prev_hash: [u8; 32],
    pub key: EpochKey,
    pub epoch_started: OffsetDateTime,
    pub records_in_epoch: u64,
}

/// When an epoch ends.
#[derive(Clone, Copy)]
pub(crate) struct EpochRule {
    pub records: u64,
    pub length: time::Duration,
}

/// Encodes, hashes and seals records in chain order.
pub(crate) struct Sealer<'h> {
    pub chain: ChainState,
    rule: EpochRule,
    now: OffsetDateTime,
    hasher: &'h mut RecordHasher,
}

/// Sealed records, ready to insert: their stored event text, end to end,
/// and their chain columns.
#[derive(Default)]
struct Sealed {
    text: Vec<u8>,
    rows: Vec<SealedRow>,
}

struct SealedRow {
    /// Where this record's text ends in `Sealed::text`.
    end: usize,
    epoch: u64,
    prev_hash: [u8; 32],
    hash: [u8; 32],
    seal: Option<[u8; 32]>,
}

impl<'h> Sealer<'h> {
    pub fn new(
        chain: ChainState,
        rule: EpochRule,
        now: OffsetDateTime,
        hasher: &'h mut RecordHasher,
    ) -> Self {
        Sealer {
            chain,
            rule,
            now,
            hasher,
        }
    }

    fn epoch_over(&self) -> bool {
        self.chain.records_in_epoch >= self.rule.records
            || self.now - self.chain.epoch_started >= self.rule.length
    }

    /// Seals `events` (numbered already); `batch_ends` when the last of
    /// them is the last of the batch.
    fn seal(&mut self, events: &[Event], batch_ends: bool) -> Result<Sealed, AuditError> {
        let mut out = Sealed {
            text: Vec::with_capacity(events.len() * 256),
            rows: Vec::with_capacity(events.len()),
        };
        let last = events.len().saturating_sub(1);
        for (i, event) in events.iter().enumerate() {
            if self.epoch_over() {
                self.chain.key.advance();
                self.chain.records_in_epoch = 0;
                self.chain.epoch_started = self.now;
            }
            let start = out.text.len();
            compact::encode(event, &mut out.text)?;
            let columns = WrittenColumns::of(event);
            let chain = &mut self.chain;
            let hash = self.hasher.hash(&RecordFields {
                seq: chain.next_seq,
                ts_ns: columns.ts_ns,
                kind: columns.kind,
                agent: columns.agent,
                action: columns.action,
                rule: columns.rule,
                event: &out.text[start..],
                epoch: chain.key.epoch,
                prev_hash: &chain.prev_hash,
            });
            let epoch = chain.key.epoch;
            let prev_hash = std::mem::replace(&mut chain.prev_hash, hash);
            chain.next_seq += 1;
            chain.records_in_epoch += 1;
            // One seal per run of one epoch's records in a batch, on its
            // last record; the chain carries it back over the run.
            let run_ends = (batch_ends && i == last) || self.epoch_over();
            out.rows.push(SealedRow {
                end: out.text.len(),
                epoch,
                prev_hash,
                hash,
                seal: run_ends.then(|| record_seal(&self.chain.key.key, &hash)),
            });
        }
        Ok(out)
    }
}

/// Binds one record's columns to the insert's parameters.
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    event: &Event,
    row: &SealedRow,
    text: &[u8],
) -> rusqlite::Result<()> {
    let columns = WrittenColumns::of(event);
    stmt.raw_bind_parameter(1, event.seq as i64)?;
    stmt.raw_bind_parameter(2, columns.ts_ns)?;
    stmt.raw_bind_parameter(3, columns.kind)?;
    stmt.raw_bind_parameter(4, columns.agent)?;
    stmt.raw_bind_parameter(5, columns.action)?;
    stmt.raw_bind_parameter(6, columns.rule)?;
    stmt.raw_bind_parameter(7, ToSqlOutput::Borrowed(ValueRef::Text(text)))?;
    stmt.raw_bind_parameter(8, row.epoch as i64)?;
    stmt.raw_bind_parameter(9, &row.prev_hash[..])?;
    stmt.raw_bind_parameter(10, &row.hash[..])?;
    stmt.raw_bind_parameter(11, row.seal.as_ref().map_or(&[][..], |s| &s[..]))
}

/// Seals and inserts `events` (numbered from the sealer's next seq) in
/// `tx`, which the caller commits.
pub(crate) fn append(
    tx: &Transaction<'_>,
    sealer: &mut Sealer<'_>,
    events: &[Event],
) -> Result<(), AuditError> {
    let mut insert = tx.prepare_cached(INSERT_RECORD)?;
    let mut insert_all = |events: &[Event], sealed: &Sealed| -> Result<(), AuditError> {
        let mut start = 0;
        for (event, row) in events.iter().zip(&sealed.rows) {
            bind_row(&mut insert, event, row, &sealed.text[start..row.end])?;
            start = row.end;
            insert.raw_execute()?;
        }
        Ok(())
    };
    if events.len() < PARALLEL_MIN {
        let sealed = sealer.seal(events, true)?;
        return insert_all(events, &sealed);
    }
    std::thread::scope(|scope| {
        let (chunks, ready) = mpsc::sync_channel::<Result<Sealed, AuditError>>(2);
        let chunk_count = events.len().div_ceil(CHUNK);
        std::thread::Builder::new()
            .name("audit sealer".into())
            .spawn_scoped(scope, move || {
                for (i, chunk) in events.chunks(CHUNK).enumerate() {
                    let sealed = sealer.seal(chunk, i + 1 == chunk_count);
                    let failed = sealed.is_err();
                    // A closed channel: the inserter failed and stopped.
                    if chunks.send(sealed).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| AuditError::io("audit sealer thread", e))?;
        let mut inserted = 0;
        for (chunk, sealed) in events.chunks(CHUNK).zip(ready.iter()) {
            insert_all(chunk, &sealed?)?;
            inserted += 1;
        }
        if inserted != chunk_count {
            return Err(AuditError::io(
                "audit sealer thread",
                std::io::Error::other("stopped before sealing the whole batch"),
            ));
        }
        Ok(())
    })
}
