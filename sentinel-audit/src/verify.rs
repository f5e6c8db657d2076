//! Verification: walks the chain from the first retention checkpoint to the
//! tail, recomputing every hash and seal, and compares the tail with the
//! anchor. Reports the first bad sequence number and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde::Serialize;

use crate::checkpoint::{read_anchor, ts_nanos, Checkpoint};
use crate::encoding::{
    record_hash, record_seal, retention_seal, same_mac, RecordHasher, GENESIS_HASH,
};
use crate::error::AuditError;
use crate::event::Event;
use crate::keys::{KeyChain, VERIFY_KEY_FILE};
use crate::store::{
    db_id, decision_name, open_read_only, retention_rows, Column, RecordRow, RECORD_COLUMNS,
};

/// What is wrong with the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// A column was changed after the record was written.
    Edited { column: Column },
    /// The record with this sequence number is missing.
    Deleted,
    /// The record in this place was written as record `belongs_at`.
    Reordered { belongs_at: u64 },
    /// The chain ends before the published anchor: the tail was removed,
    /// or the database was replaced by an older copy.
    Truncated { anchored_seq: u64 },
    /// The record at the anchor's sequence number is not the one that was
    /// anchored: the database was rewritten or replaced.
    AnchorMismatch,
    /// The hash is consistent but the seal is not (or no seal vouches for
    /// the record): the records of the seal's run (and maybe the chain
    /// after them) were rewritten by someone without the key. Reported at
    /// the first record the seal should vouch for, or at the sealed record
    /// itself when only its seal was changed.
    BadSeal,
    /// The record is intact but does not follow the one before it.
    BrokenLink,
    /// A retention checkpoint's seal is wrong, or checkpoints leave a gap.
    BadRetentionCheckpoint,
    /// The anchor file's seal is wrong or it names another database.
    BadAnchor,
    /// Epochs go backwards, or one epoch holds more records than the
    /// writer ever seals with one key: records re-sealed with a later
    /// (stolen) key. Reported at the first record of the offending run.
    BadEpoch,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Edited { column } => write!(f, "edited ({column} column changed)"),
            Problem::Deleted => f.write_str("deleted (record missing from the chain)"),
            Problem::Reordered { belongs_at } => {
                write!(f, "reordered (this place holds record {belongs_at})")
            }
            Problem::Truncated { anchored_seq } => write!(
                f,
                "truncated (the anchor records seq {anchored_seq}; the tail was removed or the database replaced by an older copy)"
            ),
            Problem::AnchorMismatch => f.write_str(
                "anchor mismatch (the database was rewritten or replaced since the anchor was published)",
            ),
            Problem::BadSeal => f.write_str("bad seal (rewritten without the sealing key)"),
            Problem::BrokenLink => {
                f.write_str("broken link (does not follow the previous record)")
            }
            Problem::BadRetentionCheckpoint => {
                f.write_str("bad retention checkpoint (forged or missing)")
            }
            Problem::BadAnchor => f.write_str("bad anchor (forged, or from another database)"),
            Problem::BadEpoch => f.write_str(
                "bad epoch (epochs out of order or over-full: re-sealed with a later key)",
            ),
        }
    }
}

/// Whether the tail could be compared with a published anchor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnchorStatus {
    /// The anchor at this sequence number matched.
    Matched { seq: u64 },
    /// No anchor file: truncation of the tail could not be checked.
    Missing,
    /// Verification stopped before reaching the anchor check.
    NotReached,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// True when every check passed.
    pub ok: bool,
    /// Records verified intact (before the first bad one, if any).
    pub count: u64,
    /// The first bad sequence number and what is wrong there.
    pub first_bad: Option<(u64, Problem)>,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last sequence number removed by retention, if any.
    pub retained_through: Option<u64>,
    pub anchor: AnchorStatus,
    /// Records whose hash chain was checked but whose seal could not be,
    /// because their key segment's verification key is not available.
    pub unsealed: u64,
    /// Where the verification key (and the anchor) came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_source: Option<String>,
}

/// The key directory the database's writer recorded (`meta.key_dir`).
pub fn recorded_key_dir(db: &Path) -> Option<PathBuf> {
    let conn = open_read_only(db).ok()?;
    conn.query_row("SELECT value FROM meta WHERE name = 'key_dir'", [], |r| {
        r.get::<_, String>(0)
    })
    .ok()
    .map(PathBuf::from)
}

/// [`verify`] without being told where the keys are: tries each
/// `(directory, description)` in order and verifies with the first that
/// holds this database's verification key. The report names the source.
pub fn verify_found(
    db: &Path,
    candidates: &[(PathBuf, String)],
) -> Result<VerifyReport, AuditError> {
    let mut first_error = None;
    for (dir, how) in candidates {
        if !dir.join(VERIFY_KEY_FILE).exists() {
            continue;
        }
        match verify_with_keys(db, dir, &[]) {
            Ok(mut report) => {
                report.key_source = Some(format!("{} ({how})", dir.display()));
                return Ok(report);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        // Nothing found anywhere: the error names the first place tried.
        None => verify_with_keys(
            db,
            candidates
                .first()
                .map_or(Path::new("."), |(d, _)| d.as_path()),
            &[],
        ),
    }
}

/// Verifies the audit database `db` with the verification key and anchor
/// in `state_dir`. `Err` means verification could not run (missing
/// database or key); tampering is an `Ok` report with `ok == false`.
pub fn verify(db: &Path, state_dir: &Path) -> Result<VerifyReport, AuditError> {
    verify_with_keys(db, state_dir, &[])
}

/// [`verify`] with the verification keys read from `key_files` (merged;
/// e.g. a copy kept off the host plus the current one) instead of
/// `STATE_DIR/audit.verify-key`.
pub fn verify_with_keys(
    db: &Path,
    state_dir: &Path,
    key_files: &[PathBuf],
) -> Result<VerifyReport, AuditError> {
    verify_with_progress(db, state_dir, key_files, None)
}

/// [`verify_with_keys`], telling `progress` how many records were checked
/// every few thousand (for a progress bar on a terminal).
pub fn verify_with_progress(
    db: &Path,
    state_dir: &Path,
    key_files: &[PathBuf],
    progress: Option<Progress>,
) -> Result<VerifyReport, AuditError> {
    // The anchor is read before the snapshot: the writer publishes it after
    // committing, so the snapshot is never behind it.
    let anchor = read_anchor(state_dir)?;
    let conn = open_read_only(db)?;
    let id = db_id(&conn)?.ok_or_else(|| AuditError::Malformed {
        path: db.to_path_buf(),
        reason: "no database id in the meta table".into(),
    })?;
    let default_key = [state_dir.join(VERIFY_KEY_FILE)];
    let key_files = if key_files.is_empty() {
        &default_key[..]
    } else {
        key_files
    };
    let keys = KeyChain::load(key_files, &id)?;
    let tx = conn.unchecked_transaction()?;

    let mut report = VerifyReport {
        ok: false,
        count: 0,
        first_bad: None,
        first_seq: None,
        last_seq: None,
        retained_through: None,
        anchor: AnchorStatus::NotReached,
        unsealed: 0,
        key_source: None,
    };
    let mut checker = match ChainChecker::after_retention(&tx, Some(keys))? {
        Ok(checker) => checker,
        Err(bad) => {
            report.first_bad = Some(bad);
            return Ok(report);
        }
    };
    report.retained_through = checker.expected_seq.checked_sub(1).filter(|s| *s > 0);
    checker.progress = progress;
    if let Some(bad) = checker.check_records(&tx, None)? {
        report.first_bad = Some(bad);
        report.count = checker.count;
        return Ok(report);
    }
    let last_seq = checker.expected_seq - 1;
    if let Some(start) = checker.unsealed_tail() {
        // No seal vouches for the tail. Cut out of a batch, it is reported
        // as truncation below, if an anchor says so; otherwise as a bad seal.
        if anchor.as_ref().is_none_or(|a| a.seq <= last_seq) {
            report.first_bad = checker.fail(start, Problem::BadSeal);
            report.count = checker.count;
            return Ok(report);
        }
    }
    report.count = checker.count;
    report.unsealed = checker.unsealed;
    report.first_seq = checker.first_seq;
    report.last_seq = checker.first_seq.map(|_| last_seq);

    report.anchor = match anchor {
        None => AnchorStatus::Missing,
        Some(anchor) => match check_anchor(&tx, &mut checker, &id, &anchor)? {
            Some(bad) => {
                report.first_bad = Some(bad);
                return Ok(report);
            }
            None => AnchorStatus::Matched { seq: anchor.seq },
        },
    };
    report.ok = true;
    Ok(report)
}

fn check_anchor(
    conn: &Connection,
    checker: &mut ChainChecker,
    db_id: &str,
    anchor: &Checkpoint,
) -> Result<Option<(u64, Problem)>, AuditError> {
    let sealed = match checker.keys.as_mut().and_then(|k| k.key_for(anchor.epoch)) {
        Some(key) => anchor.seal_is_valid(&key),
        None => false,
    };
    if anchor.db != db_id || !sealed {
        return Ok(Some((anchor.seq, Problem::BadAnchor)));
    }
    let last = checker.expected_seq - 1;
    if anchor.seq > last {
        return Ok(Some((
            last + 1,
            Problem::Truncated {
                anchored_seq: anchor.seq,
            },
        )));
    }
    let Some(anchored_hash) = anchor.hash_bytes() else {
        return Ok(Some((anchor.seq, Problem::BadAnchor)));
    };
    use rusqlite::OptionalExtension;
    let stored: Option<Vec<u8>> = if anchor.seq == 0 {
        Some(GENESIS_HASH.to_vec())
    } else {
        conn.query_row(
            "SELECT hash FROM records WHERE seq = ?1",
            [anchor.seq as i64],
            |r| r.get(0),
        )
        .optional()?
        .or_else(|| {
            retention_rows(conn).ok().and_then(|rows| {
                rows.into_iter()
                    .find(|r| r.last_seq == anchor.seq)
                    .map(|r| r.last_hash)
            })
        })
    };
    match stored {
        Some(hash) if same_mac(&hash, &anchored_hash) => Ok(None),
        Some(_) => Ok(Some((anchor.seq, Problem::AnchorMismatch))),
        // Anchored record removed by a retention that kept no checkpoint of
        // it: the checkpoint continuity check has already vouched for it.
        None => Ok(None),
    }
}

/// Walks records in order, one at a time. Also used by retention to check
/// the records it is about to remove.
///
/// Seals: the writer seals the last record of each run of one epoch's
/// records in a batch (older records carry a seal each); the seal covers
/// its record's hash and, through the chain, every record of the run. A run
/// may not cross an epoch boundary (a later key must not vouch for an
/// earlier epoch's records) nor end the chain unsealed. When a seal fails,
/// the first record it should have vouched for is reported.
pub(crate) struct ChainChecker {
    keys: Option<KeyChain>,
    expected_seq: u64,
    /// The first sequence number this checker looks at.
    start_seq: u64,
    prev_hash: Vec<u8>,
    prev_epoch: Option<u64>,
    /// First seq and length of the current run of records in one epoch.
    epoch_run: (u64, u64),
    /// First seq of the records checked since the last seal (`None`: the
    /// previous record was sealed).
    seal_run: Option<u64>,
    first_seq: Option<u64>,
    /// Records verified, up to the last seal.
    count: u64,
    unsealed: u64,
    /// Told the number of records checked so far, every few thousand.
    progress: Option<Progress>,
    hasher: RecordHasher,
    /// Set on the copy that looks ahead for the next seal.
    probing: bool,
}

/// Reports how many records a long verification has checked.
pub type Progress = Box<dyn Fn(u64)>;

impl ChainChecker {
    /// Checks the retention checkpoints and returns a checker positioned at
    /// the first record that should remain. Without `keys`, seals are not
    /// checked (hashes, links and where seals sit still are).
    pub fn after_retention(
        conn: &Connection,
        mut keys: Option<KeyChain>,
    ) -> Result<Result<ChainChecker, (u64, Problem)>, AuditError> {
        let mut expected_seq = 1;
        let mut prev_hash = GENESIS_HASH.to_vec();
        for row in retention_rows(conn)? {
            if row.first_seq != expected_seq || row.last_seq < row.first_seq {
                return Ok(Err((expected_seq, Problem::BadRetentionCheckpoint)));
            }
            if let Some(keys) = keys.as_mut() {
                let sealed = match keys.key_for(row.epoch) {
                    Some(key) => same_mac(
                        &row.seal,
                        &retention_seal(
                            &key,
                            row.first_seq,
                            row.last_seq,
                            &row.last_hash,
                            row.ts_ns,
                            row.epoch,
                        ),
                    ),
                    // From a key segment whose key is gone: not checkable.
                    None => keys.predates_keys(row.epoch),
                };
                if !sealed {
                    return Ok(Err((row.first_seq, Problem::BadRetentionCheckpoint)));
                }
            }
            expected_seq = row.last_seq + 1;
            prev_hash = row.last_hash;
        }
        Ok(Ok(ChainChecker {
            keys,
            expected_seq,
            start_seq: expected_seq,
            prev_hash,
            prev_epoch: None,
            epoch_run: (0, 0),
            seal_run: None,
            first_seq: None,
            count: 0,
            unsealed: 0,
            progress: None,
            hasher: RecordHasher::new(),
            probing: false,
        }))
    }

    /// Checks records in seq order up to `through` (all when `None`), and
    /// on past it to the seal that vouches for `through`.
    pub fn check_records(
        &mut self,
        conn: &Connection,
        through: Option<u64>,
    ) -> Result<Option<(u64, Problem)>, AuditError> {
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE seq >= ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([self.expected_seq.min(i64::MAX as u64) as i64])?;
        while let Some(row) = rows.next()? {
            let row = RecordRow::from_sql(row)?;
            if through.is_some_and(|t| row.seq > t) && self.seal_run.is_none() {
                return Ok(None);
            }
            if let Some(bad) = self.check(conn, &row)? {
                return Ok(Some(bad));
            }
        }
        Ok(None)
    }

    /// The first record of a run that no seal vouches for at the end of the
    /// chain (the writer always seals a batch's last record).
    pub fn unsealed_tail(&self) -> Option<u64> {
        self.seal_run
    }

    /// Reports `problem` at `seq`; `count` keeps only records before it.
    fn fail(&mut self, seq: u64, problem: Problem) -> Option<(u64, Problem)> {
        self.count = self.count.min(seq.saturating_sub(self.start_seq));
        Some((seq, problem))
    }

    /// Checks one record; on success advances past it.
    fn check(
        &mut self,
        conn: &Connection,
        row: &RecordRow,
    ) -> Result<Option<(u64, Problem)>, AuditError> {
        if row.seq > self.expected_seq {
            return Ok(self.fail(self.expected_seq, Problem::Deleted));
        }
        if row.seq < self.expected_seq {
            // A record the retention checkpoints say was removed.
            return Ok(self.fail(row.seq, Problem::BrokenLink));
        }
        if let Some(column) = row.wrong_type {
            return Ok(self.fail(row.seq, Problem::Edited { column }));
        }
        let computed = self.hasher.hash(&row.fields());
        if !same_mac(&row.hash, &computed) {
            let problem = self.diagnose(conn, row, &computed)?;
            return Ok(self.fail(row.seq, problem));
        }
        if let Some(run_start) = self.seal_run {
            if self.prev_epoch != Some(row.epoch) {
                // The previous epoch's records end without a seal: a later
                // key may not vouch for them.
                return Ok(self.fail(run_start, Problem::BadSeal));
            }
        }
        let run_start = self.seal_run.unwrap_or(row.seq);
        let sealed = !row.seal.is_empty();
        if sealed {
            if let Some(keys) = self.keys.as_mut() {
                let valid = match keys.key_for(row.epoch) {
                    Some(key) => same_mac(&row.seal, &record_seal(&key, &computed)),
                    None if keys.predates_keys(row.epoch) => {
                        self.unsealed += row.seq + 1 - run_start;
                        true
                    }
                    // An epoch no key can reach: a forged epoch column.
                    None => false,
                };
                if !valid {
                    // Name the first record this seal vouched for, unless
                    // the chain goes on intact to the next good seal: then
                    // this record's hash is the written one, and only its
                    // seal was changed.
                    let only_the_seal =
                        run_start < row.seq && !self.probing && self.next_seal_holds(conn, row)?;
                    let at = if only_the_seal { row.seq } else { run_start };
                    return Ok(self.fail(at, Problem::BadSeal));
                }
            }
        }
        if row.prev_hash != self.prev_hash {
            return Ok(self.fail(row.seq, Problem::BrokenLink));
        }
        match self.prev_epoch {
            Some(prev) if row.epoch < prev => return Ok(self.fail(row.seq, Problem::BadEpoch)),
            Some(prev) if row.epoch == prev => self.epoch_run.1 += 1,
            _ => self.epoch_run = (row.seq, 1),
        }
        let limit = self.keys.as_ref().and_then(|k| k.epoch_records);
        if limit.is_some_and(|limit| self.epoch_run.1 > limit) {
            // The whole run is suspect: none of it counts as verified.
            return Ok(self.fail(self.epoch_run.0, Problem::BadEpoch));
        }
        self.advance(row, sealed, run_start);
        Ok(None)
    }

    /// Moves past a record that passed every check.
    fn advance(&mut self, row: &RecordRow, sealed: bool, run_start: u64) {
        self.first_seq.get_or_insert(row.seq);
        self.expected_seq = row.seq + 1;
        self.prev_hash.clear();
        self.prev_hash.extend_from_slice(&row.hash);
        self.prev_epoch = Some(row.epoch);
        if sealed {
            let before = self.count;
            self.count += row.seq + 1 - run_start;
            self.seal_run = None;
            if before / 4096 != self.count / 4096 {
                if let Some(progress) = &self.progress {
                    progress(self.count);
                }
            }
        } else {
            self.seal_run = Some(run_start);
        }
    }

    /// Whether the records after `row` (taken as sealed) check out up to
    /// the next seal.
    fn next_seal_holds(&self, conn: &Connection, row: &RecordRow) -> Result<bool, AuditError> {
        let mut probe = ChainChecker {
            keys: self.keys.clone(),
            prev_hash: self.prev_hash.clone(),
            progress: None,
            hasher: self.hasher.clone(),
            probing: true,
            ..*self
        };
        probe.advance(row, true, row.seq);
        let mut stmt = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records WHERE seq > ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([row.seq.min(i64::MAX as u64) as i64])?;
        while let Some(next) = rows.next()? {
            let next = RecordRow::from_sql(next)?;
            if probe.check(conn, &next)?.is_some() {
                return Ok(false);
            }
            if probe.seal_run.is_none() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The record's hash does not match its columns: find out which one
    /// changed by restoring each candidate and re-hashing.
    fn diagnose(
        &mut self,
        conn: &Connection,
        row: &RecordRow,
        computed: &[u8; 32],
    ) -> Result<Problem, AuditError> {
        use crate::encoding::RecordFields;
        let Ok(event) = crate::compact::decode(&row.event) else {
            return Ok(Problem::Edited {
                column: Column::Event,
            });
        };
        let original = row.fields();
        let matches = |candidate: RecordFields<'_>| same_mac(&row.hash, &record_hash(&candidate));
        if event.seq != row.seq
            && matches(RecordFields {
                seq: event.seq,
                ..original
            })
        {
            return Ok(Problem::Reordered {
                belongs_at: event.seq,
            });
        }
        let written = WrittenColumns::of(&event);
        let derived: [(Column, bool); 5] = [
            (
                Column::Ts,
                written.ts_ns != row.ts_ns
                    && matches(RecordFields {
                        ts_ns: written.ts_ns,
                        ..original
                    }),
            ),
            (
                Column::Kind,
                written.kind != row.kind
                    && matches(RecordFields {
                        kind: written.kind,
                        ..original
                    }),
            ),
            (
                Column::Agent,
                written.agent != row.agent.as_deref()
                    && matches(RecordFields {
                        agent: written.agent,
                        ..original
                    }),
            ),
            (
                Column::Action,
                written.action != row.action.as_deref()
                    && matches(RecordFields {
                        action: written.action,
                        ..original
                    }),
            ),
            (
                Column::Rule,
                written.rule != row.rule.as_deref()
                    && matches(RecordFields {
                        rule: written.rule,
                        ..original
                    }),
            ),
        ];
        if let Some((column, _)) = derived.iter().find(|(_, restored)| *restored) {
            return Ok(Problem::Edited { column: *column });
        }
        let base_epoch = self.prev_epoch.unwrap_or(0);
        let epoch_restored = (base_epoch..base_epoch.saturating_add(16))
            .any(|epoch| epoch != row.epoch && matches(RecordFields { epoch, ..original }));
        if epoch_restored {
            return Ok(Problem::Edited {
                column: Column::Epoch,
            });
        }
        if row.prev_hash != self.prev_hash
            && matches(RecordFields {
                prev_hash: &self.prev_hash,
                ..original
            })
        {
            return Ok(Problem::Edited {
                column: Column::PrevHash,
            });
        }
        // The columns are intact and the stored hash is not: the record's
        // seal, or the next record's link, still holds the real one.
        let sealed_hash = match self.keys.as_mut().and_then(|k| k.key_for(row.epoch)) {
            Some(key) => same_mac(&row.seal, &record_seal(&key, computed)),
            None => false,
        };
        use rusqlite::OptionalExtension;
        let next_link: Option<Vec<u8>> = conn
            .query_row(
                "SELECT prev_hash FROM records WHERE seq = ?1",
                [(row.seq + 1).min(i64::MAX as u64) as i64],
                |r| r.get(0),
            )
            .optional()
            .ok()
            .flatten();
        if sealed_hash || next_link.is_some_and(|link| same_mac(&link, computed)) {
            return Ok(Problem::Edited {
                column: Column::Hash,
            });
        }
        // Several columns changed: name the first one that disagrees with
        // the event it was derived from, else the event itself.
        let disagreeing = [
            (Column::Seq, event.seq != row.seq),
            (Column::Ts, written.ts_ns != row.ts_ns),
            (Column::Kind, written.kind != row.kind),
            (Column::Agent, written.agent != row.agent.as_deref()),
            (Column::Action, written.action != row.action.as_deref()),
            (Column::Rule, written.rule != row.rule.as_deref()),
        ];
        let column = disagreeing
            .iter()
            .find(|(_, differs)| *differs)
            .map_or(Column::Event, |(column, _)| *column);
        Ok(Problem::Edited { column })
    }
}

/// The column values the writer derives from an event.
pub(crate) struct WrittenColumns<'a> {
    pub ts_ns: i64,
    pub kind: &'a str,
    pub agent: Option<&'a str>,
    pub action: Option<&'static str>,
    pub rule: Option<&'a str>,
}

impl<'a> WrittenColumns<'a> {
    pub fn of(event: &'a Event) -> Self {
        WrittenColumns {
            ts_ns: ts_nanos(event.ts),
            kind: event.kind(),
            agent: event.process().and_then(|p| p.agent.as_deref()),
            action: event.verdict.as_ref().map(|v| decision_name(v.action)),
            rule: event.verdict.as_ref().and_then(|v| v.rule.as_deref()),
        }
    }
}
