//! The audit writer: an append-only, hash-chained, sealed table of records
//! in SQLite, with checkpoints published outside the database and
//! retention that leaves a sealed record of what it removed.
//!
//! # The scheme
//!
//! * **Chain.** Record `n` stores `hash_n = H(seq, ts, kind, agent, action,
//!   rule, event, epoch, hash_{n-1})`: BLAKE3 over a length-prefixed
//!   encoding of every column (see `encoding`), so editing any column, or
//!   removing, inserting or swapping records, breaks the chain. The `event`
//!   column holds the event in a compact positional form (see `compact`;
//!   records written before it hold the keyed JSON, and still verify).
//! * **Seal.** `seal = MAC(K_e, hash_n)` (keyed BLAKE3) with the key of
//!   the record's epoch `e`, on the last record of each run of one epoch's
//!   records in a committed batch (the other records' `seal` is empty;
//!   records written before sealed each record). Through the chain the
//!   seal vouches for every record of its run. The chain alone can be
//!   recomputed by anyone who edits the database; the seal cannot without
//!   the key. A run never crosses an epoch boundary (a later key must not
//!   vouch for an earlier epoch's records) and the chain never ends
//!   unsealed; `verify` holds the database to both. A record rewritten
//!   with its hashes recomputed is reported at the first record of its run.
//! * **Ratchet.** `K_{e+1} = KDF("key ratchet", K_e)`. A new epoch starts
//!   every `epoch_records` records, every `epoch_seconds`, and at each
//!   open. The writer's key file (`STATE_DIR/audit.key`, 0600) holds only
//!   the current key and is replaced atomically at each step; the old key
//!   is overwritten in memory. Stealing the current key therefore does not
//!   let anyone forge a record of an earlier epoch: that would need to
//!   invert the KDF.
//! * **Verification key.** The verifier needs the earlier keys, so at
//!   creation `K_0` is also written to `STATE_DIR/audit.verify-key` (0600);
//!   every `K_e` is derived forward from it. Copy that file somewhere the
//!   host cannot reach (and delete it from the host) to get the full
//!   forward-security property; left on the host it is only as safe as
//!   root.
//! * **Checkpoints.** After each committed batch the tail `(seq, hash)`,
//!   sealed, is written atomically (temp file, fsync, rename) to
//!   `STATE_DIR/audit.anchor` and returned to the caller for the export
//!   streams. A database truncated or replaced by an older copy no longer
//!   reaches the anchor; the writer refuses to open it and `verify` reports
//!   it.
//! * **Retention.** Deleting old records writes, in the same transaction, a
//!   sealed retention checkpoint (first and last seq removed, last hash);
//!   verification starts from it. Retention first verifies what it is about
//!   to delete and refuses to launder a tampered range; it always keeps at
//!   least the last record.
//! * **Durability.** WAL journal with `synchronous=FULL`, one transaction
//!   (one fsync) per batch: once `append_batch` returns `Ok`, the batch is
//!   on disk (a kill -9 or a power loss cannot take it back). `NORMAL`
//!   would survive kill -9 but not a power loss, which would leave the
//!   fsynced anchor ahead of the database and look like truncation.
//!
//! # Honest limits
//!
//! * Root on the host can read the verification key (unless it was moved
//!   off the host), recompute everything, and rewrite the anchor: the
//!   checkpoints already shipped to a SIEM are then the evidence.
//! * Someone who steals the current key can forge records of the current
//!   and later epochs until the key is rotated out of their reach; records
//!   of earlier epochs stay protected.
//! * Erasure is best effort: a filesystem (or SSD) may keep old blocks of
//!   the key file, and the compiler may leave copies of keys in memory.
//! * Keys live in the state directory (by default a tmpfs, so erased keys
//!   never reach a disk or a backup). When they are lost (a reboot), the
//!   writer starts a new *key segment*: a fresh random key at the next
//!   epoch, its first key added to the verification key file, and a
//!   sealed alert record in the chain. Records of earlier segments keep
//!   their hash chain, but their seals can only be checked with a copy of
//!   the earlier verification key (`sentinel audit verify --key FILE`);
//!   `verify` counts them as `unsealed`. Keep a copy of
//!   `audit.verify-key` off the host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rusqlite::{params, Connection, OptionalExtension};

use crate::append::{self, ChainState, EpochRule, Sealer};
use crate::checkpoint::{anchor_path, read_anchor, ts_nanos, write_anchor, Checkpoint};
use crate::clock::{Clock, SystemClock};
use crate::encoding::{retention_seal, RecordHasher, GENESIS_HASH};
use crate::error::AuditError;
use crate::event::{Body, Event};
use crate::keys::{self, EpochKey, KeyChain, VERIFY_KEY_FILE, WRITER_KEY_FILE};
use crate::secure_fs::{create_private_file, ensure_private_dir, random_key, to_hex};
use crate::store::{self, db_id, QueryFilter, Stats, SCHEMA};
use crate::verify::ChainChecker;
use crate::wal::{Checkpointer, NUDGE_EVERY_RECORDS};

/// Tunables of the writer.
#[derive(Clone)]
pub struct AuditConfig {
    /// Start a new key epoch after this many records. Fixed when the chain
    /// is created (stored with the keys; a later open can only lower it):
    /// the verifier rejects epochs holding more, which bounds what a stolen
    /// key can re-seal to one epoch's records.
    pub epoch_records: u64,
    /// Start a new key epoch after this many seconds.
    pub epoch_seconds: u64,
    pub clock: Arc<dyn Clock>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            epoch_records: 10_000,
            epoch_seconds: 300,
            clock: Arc::new(SystemClock),
        }
    }
}

impl std::fmt::Debug for AuditConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditConfig")
            .field("epoch_records", &self.epoch_records)
            .field("epoch_seconds", &self.epoch_seconds)
            .finish_non_exhaustive()
    }
}

/// What `retain` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Records whose `ts` is older than this.
    OlderThan(time::Duration),
    /// Everything but the newest N records (at least one is always kept).
    KeepLast(u64),
}

/// What one `retain` call removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionSummary {
    pub first_seq: u64,
    pub last_seq: u64,
    pub removed: u64,
    /// Hex hash of the last removed record (the remainder's `prev_hash`).
    pub last_hash: String,
}

/// Publication failures after a successful commit. The records are safe;
/// the writer retries on the next batch. Report these in `sentinel status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterHealth {
    pub key_write_errors: u64,
    pub anchor_write_errors: u64,
    /// Failed WAL checkpoints (the WAL file grows until one succeeds).
    pub wal_checkpoint_errors: u64,
    /// Set when this session found the keys of an existing chain missing
    /// and started a new key segment at this epoch (an alert record was
    /// appended to the chain).
    pub new_key_segment: Option<u64>,
}

/// The audit writer. One per database; the daemon owns it on its writer
/// task.
pub struct AuditLog {
    /// An exclusive lock on `<db>.writer-lock`, held for the writer's life:
    /// two writers would fork the chain.
    _writer_lock: std::fs::File,
    conn: Connection,
    db_path: PathBuf,
    state_dir: PathBuf,
    db_id: String,
    config: AuditConfig,
    chain: ChainState,
    key_file_behind: bool,
    health: WriterHealth,
    checkpointer: Checkpointer,
    records_since_nudge: u64,
    /// Kept from batch to batch (its context key is computed once).
    hasher: RecordHasher,
}

impl AuditLog {
    /// Opens (or creates) the audit database `db`, with its keys and anchor
    /// in `state_dir`, and continues the chain.
    pub fn open(db: &Path, state_dir: &Path) -> Result<AuditLog, AuditError> {
        Self::open_with(db, state_dir, AuditConfig::default())
    }

    pub fn open_with(
        db: &Path,
        state_dir: &Path,
        config: AuditConfig,
    ) -> Result<AuditLog, AuditError> {
        if let Some(parent) = db.parent().filter(|p| !p.as_os_str().is_empty()) {
            ensure_private_dir(parent)?;
        }
        ensure_private_dir(state_dir)?;
        // Created 0600 before SQLite touches it: SQLite gives the WAL and
        // shared-memory files the database file's mode.
        create_private_file(db)?;
        let lock_path = writer_lock_path(db);
        create_private_file(&lock_path)?;
        let writer_lock =
            std::fs::File::open(&lock_path).map_err(|e| AuditError::io(&lock_path, e))?;
        match writer_lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Busy {
                    path: db.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(&lock_path, e)),
        }
        let conn = Connection::open(db).map_err(|source| AuditError::Open {
            path: db.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // 16 KiB pages for a new database (an existing one keeps its own):
        // a quarter of the WAL frames, page writes and b-tree cells per
        // record of 4 KiB pages, for at most 48 KiB written by a one-record
        // commit.
        conn.pragma_update(None, "page_size", 16384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // 8 MiB of page cache: appends touch the right edge of two b-trees,
        // and a batch of the writer's largest size (about 5 MiB of new
        // pages) stays in the cache until it commits. More would only hold
        // pages already written, in the daemon's resident memory.
        conn.pragma_update(None, "cache_size", -8192)?;
        // Checkpoints run on their own thread (see `wal`).
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.execute_batch(SCHEMA)?;

        let tail: Option<(u64, Vec<u8>, u64)> = conn
            .query_row(
                "SELECT seq, hash, epoch FROM records ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)? as u64,
                    ))
                },
            )
            .optional()?;
        let retained: Option<(u64, Vec<u8>)> = conn
            .query_row(
                "SELECT last_seq, last_hash FROM retention ORDER BY id DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        let retained_epoch: Option<i64> =
            conn.query_row("SELECT max(epoch) FROM retention", [], |r| r.get(0))?;
        // The largest epoch sealed with so far, if anything was.
        let last_epoch = match (tail.as_ref().map(|t| t.2), retained_epoch) {
            (None, None) if retained.is_none() => None,
            (a, b) => Some(a.unwrap_or(0).max(b.map_or(0, |e| e as u64))),
        };

        let id = match db_id(&conn)? {
            Some(id) => id,
            None => {
                let id = to_hex(&random_key()?[..16]);
                conn.execute("INSERT INTO meta (name, value) VALUES ('db_id', ?1)", [&id])?;
                id
            }
        };
        // Where this writer keeps its keys, so `audit verify --db` finds
        // them without being told (it says which source it used).
        let key_dir = std::path::absolute(state_dir).unwrap_or_else(|_| state_dir.to_path_buf());
        conn.execute(
            "INSERT OR REPLACE INTO meta (name, value) VALUES ('key_dir', ?1)",
            [key_dir.to_string_lossy()],
        )?;

        let now = config.clock.now();
        let (key, epoch_records, new_segment) =
            Self::load_or_create_key(state_dir, &id, last_epoch, config.epoch_records)?;
        let config = AuditConfig {
            epoch_records,
            ..config
        };
        let (last_seq, prev_hash) = match (&tail, &retained) {
            (Some((seq, hash, _)), _) | (None, Some((seq, hash))) => (*seq, hash_array(hash)),
            (None, None) => (0, GENESIS_HASH),
        };
        let mut log = AuditLog {
            _writer_lock: writer_lock,
            conn,
            db_path: db.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            db_id: id,
            config,
            chain: ChainState {
                next_seq: last_seq + 1,
                prev_hash,
                key,
                epoch_started: now,
                records_in_epoch: 0,
            },
            key_file_behind: false,
            health: WriterHealth::default(),
            checkpointer: Checkpointer::start(db)?,
            records_since_nudge: 0,
            hasher: RecordHasher::new(),
        };
        log.check_anchor(last_seq)?;
        log.publish();
        if new_segment {
            let epoch = log.chain.key.epoch;
            log.health.new_key_segment = Some(epoch);
            tracing::warn!(
                "audit keys for {} were missing from {}: new key segment from epoch {epoch}",
                db.display(),
                state_dir.display()
            );
            log.append(Event {
                seq: 0,
                ts: log.config.clock.now(),
                body: Body::Alert {
                    severity: "warning".into(),
                    category: "audit-keys".into(),
                    reason: format!(
                        "audit keys were missing from {}: records before seq {} keep their hash chain, but their seals can only be checked with the earlier verification key",
                        state_dir.display(),
                        last_seq + 1
                    ),
                    related: Vec::new(),
                },
                verdict: None,
            })?;
        }
        Ok(log)
    }

    /// The writer's key for this session and the epoch size it must keep
    /// to: a fresh `K_0` for a new chain; the stored key moved to a new
    /// epoch past everything already written; or, when the keys of an
    /// existing chain are gone, a fresh key starting a new key segment
    /// (reported in [`WriterHealth::new_key_segment`]).
    fn load_or_create_key(
        state_dir: &Path,
        db_id: &str,
        history: Option<u64>,
        wanted_epoch_records: u64,
    ) -> Result<(EpochKey, u64, bool), AuditError> {
        let writer_path = state_dir.join(WRITER_KEY_FILE);
        let verify_path = state_dir.join(VERIFY_KEY_FILE);
        let wrong_db = |path: &Path, found: String| AuditError::WrongDatabase {
            path: path.to_path_buf(),
            expected: db_id.to_string(),
            found,
        };
        let wanted_epoch_records = wanted_epoch_records.max(1);
        let verify_keys = match keys::load_verify(&verify_path)? {
            Some(file) if file.db != db_id => return Err(wrong_db(&verify_path, file.db)),
            other => other,
        };
        let stored = match keys::load(&writer_path)? {
            Some(file) if file.db != db_id => return Err(wrong_db(&writer_path, file.db)),
            other => other,
        };
        let limit_of = |stored: Option<u64>| {
            stored.map_or(wanted_epoch_records, |l| l.min(wanted_epoch_records))
        };
        let (mut key, epoch_records, new_segment) = match (stored, history) {
            (Some(file), _) => {
                let limit = limit_of(file.epoch_records);
                (file.key, limit, false)
            }
            // A new chain whose writer crashed between the two key files.
            (None, None) if verify_keys.as_ref().is_some_and(|v| v.segments.len() == 1) => {
                let verify = verify_keys
                    .as_ref()
                    .map(|v| (v.segments[0].clone(), v.epoch_records));
                match verify {
                    Some((key, limit)) => (key, limit_of(limit), false),
                    None => return Err(AuditError::KeyMissing { path: writer_path }),
                }
            }
            (None, history) => {
                // A new chain, or the keys of this one are lost: start a key
                // segment after every epoch already used.
                let key = EpochKey {
                    epoch: history.map_or(0, |last_epoch| last_epoch + 1),
                    key: random_key()?,
                };
                let mut verify = verify_keys.unwrap_or(keys::VerifyKeys {
                    db: db_id.to_string(),
                    epoch_records: Some(wanted_epoch_records),
                    segments: Vec::new(),
                });
                verify.segments.push(key.clone());
                let limit = limit_of(verify.epoch_records);
                keys::store_verify(&verify_path, &verify)?;
                (key, limit, history.is_some())
            }
        };
        if !new_segment {
            if let Some(last_epoch) = history {
                // Never reuse an epoch another session sealed with.
                let target = last_epoch.max(key.epoch) + 1;
                while key.epoch < target {
                    key.advance();
                }
            }
        }
        keys::store(&writer_path, db_id, &key, epoch_records)?;
        Ok((key, epoch_records, new_segment))
    }

    /// Refuses to continue a chain that no longer reaches its anchor.
    fn check_anchor(&self, last_seq: u64) -> Result<(), AuditError> {
        let Some(anchor) = read_anchor(&self.state_dir)? else {
            return Ok(());
        };
        let anchor_path = anchor_path(&self.state_dir);
        if anchor.db != self.db_id {
            return Err(AuditError::WrongDatabase {
                path: anchor_path,
                expected: self.db_id.clone(),
                found: anchor.db,
            });
        }
        if anchor.seq > last_seq {
            return Err(AuditError::AnchorAhead {
                anchor_path,
                anchored: anchor.seq,
                db_last: last_seq,
            });
        }
        if anchor.seq == 0 {
            return Ok(());
        }
        let stored: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT hash FROM records WHERE seq = ?1",
                [anchor.seq as i64],
                |r| r.get(0),
            )
            .optional()?;
        match (stored, anchor.hash_bytes()) {
            (Some(stored), Some(anchored)) if stored[..] != anchored[..] => {
                Err(AuditError::AnchorMismatch {
                    anchor_path,
                    seq: anchor.seq,
                })
            }
            _ => Ok(()),
        }
    }

    /// Appends one event; returns its sequence number.
    pub fn append(&mut self, event: Event) -> Result<u64, AuditError> {
        let mut batch = [event];
        self.append_batch(&mut batch)?;
        Ok(batch[0].seq)
    }

    /// Appends `events` in one transaction, assigning each its `seq` (in
    /// place, so the caller can export exactly what was recorded). Returns
    /// the checkpoint of the new tail, for the export streams. Once this
    /// returns `Ok`, the whole batch is durable; on `Err` none of it is.
    pub fn append_batch(&mut self, events: &mut [Event]) -> Result<Checkpoint, AuditError> {
        if events.is_empty() {
            return Ok(self.checkpoint());
        }
        let now = self.config.clock.now();
        let rule = EpochRule {
            records: self.config.epoch_records,
            length: time::Duration::seconds(self.config.epoch_seconds.min(i64::MAX as u64) as i64),
        };
        let original_seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        for (event, seq) in events.iter_mut().zip(self.chain.next_seq..) {
            event.seq = seq;
        }
        let mut sealer = Sealer::new(self.chain.clone(), rule, now, &mut self.hasher);
        let result = (|| -> Result<(), AuditError> {
            let tx = self.conn.transaction()?;
            append::append(&tx, &mut sealer, events)?;
            tx.commit()?;
            Ok(())
        })();
        let chain = sealer.chain;
        if let Err(e) = result {
            for (event, seq) in events.iter_mut().zip(original_seqs) {
                event.seq = seq;
            }
            return Err(e);
        }
        if chain.key.epoch != self.chain.key.epoch {
            self.key_file_behind = true;
        }
        self.chain = chain;
        self.records_since_nudge += events.len() as u64;
        if self.records_since_nudge >= NUDGE_EVERY_RECORDS {
            self.records_since_nudge = 0;
            self.checkpointer.nudge();
        }
        Ok(self.publish())
    }

    /// Persists the current key if it moved, and the anchor; failures are
    /// counted and retried on the next call (the records are already safe).
    fn publish(&mut self) -> Checkpoint {
        if self.key_file_behind {
            match keys::store(
                &self.state_dir.join(WRITER_KEY_FILE),
                &self.db_id,
                &self.chain.key,
                self.config.epoch_records,
            ) {
                Ok(()) => self.key_file_behind = false,
                Err(e) => {
                    self.health.key_write_errors += 1;
                    tracing::warn!("audit key rotation not persisted, will retry: {e}");
                }
            }
        }
        let checkpoint = self.checkpoint();
        if let Err(e) = write_anchor(&self.state_dir, &checkpoint) {
            self.health.anchor_write_errors += 1;
            tracing::warn!("audit anchor not written, will retry: {e}");
        }
        checkpoint
    }

    /// A sealed checkpoint of the current tail.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint::sealed(
            &self.chain.key.key,
            self.chain.key.epoch,
            &self.db_id,
            self.chain.next_seq - 1,
            &self.chain.prev_hash,
            self.config.clock.now(),
        )
    }

    /// Removes old records, leaving a sealed retention checkpoint of what
    /// was removed. Verifies the range first and refuses to remove records
    /// that fail verification. Always keeps the newest record.
    pub fn retain(&mut self, policy: Retention) -> Result<Option<RetentionSummary>, AuditError> {
        let tail = self.chain.next_seq - 1;
        let first: Option<i64> = self
            .conn
            .query_row("SELECT min(seq) FROM records", [], |r| r.get(0))?;
        let Some(first) = first.map(|s| s as u64) else {
            return Ok(None);
        };
        let now = self.config.clock.now();
        let candidate = match policy {
            Retention::KeepLast(n) => tail.saturating_sub(n.max(1)),
            Retention::OlderThan(age) => self
                .conn
                .query_row(
                    "SELECT max(seq) FROM records WHERE ts < ?1",
                    [ts_nanos(now - age)],
                    |r| r.get::<_, Option<i64>>(0),
                )?
                .map_or(0, |s| s as u64),
        };
        let last = candidate.min(tail.saturating_sub(1));
        if last < first {
            return Ok(None);
        }

        let verify_key = match keys::load_verify(&self.state_dir.join(VERIFY_KEY_FILE))? {
            Some(file) if file.db == self.db_id => {
                Some(KeyChain::new(file.segments, file.epoch_records))
            }
            _ => None,
        };
        let tx = self.conn.transaction()?;
        let checked = match ChainChecker::after_retention(&tx, verify_key)? {
            Ok(mut checker) => checker.check_records(&tx, Some(last))?,
            Err(bad) => Some(bad),
        };
        if let Some((seq, problem)) = checked {
            return Err(AuditError::RetentionBlocked {
                seq,
                problem: problem.to_string(),
            });
        }
        let last_hash: Vec<u8> = tx.query_row(
            "SELECT hash FROM records WHERE seq = ?1",
            [last as i64],
            |r| r.get(0),
        )?;
        let ts_ns = ts_nanos(now);
        let epoch = self.chain.key.epoch;
        let seal = retention_seal(&self.chain.key.key, first, last, &last_hash, ts_ns, epoch);
        tx.execute(
            "INSERT INTO retention (first_seq, last_seq, last_hash, ts, epoch, seal) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                first as i64,
                last as i64,
                &last_hash,
                ts_ns,
                epoch as i64,
                &seal[..]
            ],
        )?;
        let removed = tx.execute("DELETE FROM records WHERE seq <= ?1", [last as i64])? as u64;
        tx.commit()?;
        Ok(Some(RetentionSummary {
            first_seq: first,
            last_seq: last,
            removed,
            last_hash: to_hex(&last_hash),
        }))
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<Event>, AuditError> {
        store::tail(&self.conn, n)
    }

    pub fn query(&self, filter: &QueryFilter) -> Result<Vec<Event>, AuditError> {
        let mut out = Vec::new();
        store::query_each(&self.conn, filter, |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    pub fn stats(&self, filter: &QueryFilter) -> Result<Stats, AuditError> {
        store::stats(&self.conn, filter)
    }

    /// The sequence number of the newest record (0: none yet).
    pub fn last_seq(&self) -> u64 {
        self.chain.next_seq - 1
    }

    /// The current key epoch.
    pub fn epoch(&self) -> u64 {
        self.chain.key.epoch
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The database's random id (also in every checkpoint).
    pub fn db_id(&self) -> &str {
        &self.db_id
    }

    pub fn health(&self) -> WriterHealth {
        WriterHealth {
            wal_checkpoint_errors: self
                .checkpointer
                .errors
                .load(std::sync::atomic::Ordering::Relaxed),
            ..self.health
        }
    }
}

fn hash_array(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let n = bytes.len().min(32);
    out[..n].copy_from_slice(&bytes[..n]);
    out
}

/// The file whose exclusive lock marks the one writer of `db`.
fn writer_lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".writer-lock");
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_writer_can_move_to_its_own_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<super::AuditLog>();
    }
}
