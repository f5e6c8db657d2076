//! The SQLite schema and everything that reads it: raw rows for the
//! verifier, and the query API (tail, filtered query, stats) for the CLI and
//! the daemon.

use std::fmt;
use std::path::Path;

use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use sentinel_policy::Decision;
use serde::Serialize;
use time::OffsetDateTime;

use crate::checkpoint::ts_nanos;
use crate::encoding::RecordFields;
use crate::error::AuditError;
use crate::event::Event;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq       INTEGER PRIMARY KEY,
    ts        INTEGER NOT NULL,
    kind      TEXT NOT NULL,
    agent     TEXT,
    action    TEXT,
    rule      TEXT,
    event     TEXT NOT NULL,
    epoch     INTEGER NOT NULL,
    prev_hash BLOB NOT NULL,
    hash      BLOB NOT NULL,
    seal      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_ts ON records(ts);
CREATE TABLE IF NOT EXISTS retention (
    id        INTEGER PRIMARY KEY,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    last_hash BLOB NOT NULL,
    ts        INTEGER NOT NULL,
    epoch     INTEGER NOT NULL,
    seal      BLOB NOT NULL
);
-- A guard against accidents, not against an attacker (who can drop it):
-- the hash chain and the seals are what detect edits.
CREATE TRIGGER IF NOT EXISTS records_append_only BEFORE UPDATE ON records
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;
";

pub(crate) const RECORD_COLUMNS: &str =
    "seq, ts, kind, agent, action, rule, event, epoch, prev_hash, hash, seal";

/// A column of the `records` table, as named in verification reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Seq,
    Ts,
    Kind,
    Agent,
    Action,
    Rule,
    Event,
    Epoch,
    PrevHash,
    Hash,
    Seal,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::Seq => "seq",
            Column::Ts => "ts",
            Column::Kind => "kind",
            Column::Agent => "agent",
            Column::Action => "action",
            Column::Rule => "rule",
            Column::Event => "event",
            Column::Epoch => "epoch",
            Column::PrevHash => "prev_hash",
            Column::Hash => "hash",
            Column::Seal => "seal",
        }
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One row of `records`, read leniently: a value of the wrong SQL type is
/// kept as a defect for the verifier to report, not an error.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordRow {
    pub seq: u64,
    pub ts_ns: i64,
    pub kind: String,
    pub agent: Option<String>,
    pub action: Option<String>,
    pub rule: Option<String>,
    pub event: String,
    pub epoch: u64,
    pub prev_hash: Vec<u8>,
    pub hash: Vec<u8>,
    pub seal: Vec<u8>,
    /// The first column whose SQL type is not the one the writer used.
    pub wrong_type: Option<Column>,
}

impl RecordRow {
    pub fn fields(&self) -> RecordFields<'_> {
        RecordFields {
            seq: self.seq,
            ts_ns: self.ts_ns,
            kind: &self.kind,
            agent: self.agent.as_deref(),
            action: self.action.as_deref(),
            rule: self.rule.as_deref(),
            event: self.event.as_bytes(),
            epoch: self.epoch,
            prev_hash: &self.prev_hash,
        }
    }

    /// Reads a row selected with [`RECORD_COLUMNS`].
    pub fn from_sql(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
        let mut out = RecordRow::default();
        let wrong = |column: Column, out: &mut RecordRow| {
            out.wrong_type.get_or_insert(column);
        };
        match row.get_ref(0)? {
            ValueRef::Integer(v) => out.seq = v as u64,
            _ => wrong(Column::Seq, &mut out),
        }
        match row.get_ref(1)? {
            ValueRef::Integer(v) => out.ts_ns = v,
            _ => wrong(Column::Ts, &mut out),
        }
        let text = |v: ValueRef<'_>| match v {
            ValueRef::Text(t) => Some(Some(String::from_utf8_lossy(t).into_owned())),
            ValueRef::Null => Some(None),
            _ => None,
        };
        let required = [(2, Column::Kind), (6, Column::Event)];
        for (idx, column) in required {
            match text(row.get_ref(idx)?) {
                Some(Some(s)) => match column {
                    Column::Kind => out.kind = s,
                    _ => out.event = s,
                },
                _ => wrong(column, &mut out),
            }
        }
        let optional = [(3, Column::Agent), (4, Column::Action), (5, Column::Rule)];
        for (idx, column) in optional {
            match text(row.get_ref(idx)?) {
                Some(value) => match column {
                    Column::Agent => out.agent = value,
                    Column::Action => out.action = value,
                    _ => out.rule = value,
                },
                None => wrong(column, &mut out),
            }
        }
        match row.get_ref(7)? {
            ValueRef::Integer(v) => out.epoch = v as u64,
            _ => wrong(Column::Epoch, &mut out),
        }
        let blobs = [(8, Column::PrevHash), (9, Column::Hash), (10, Column::Seal)];
        for (idx, column) in blobs {
            match row.get_ref(idx)? {
                ValueRef::Blob(b) => match column {
                    Column::PrevHash => out.prev_hash = b.to_vec(),
                    Column::Hash => out.hash = b.to_vec(),
                    _ => out.seal = b.to_vec(),
                },
                _ => wrong(column, &mut out),
            }
        }
        Ok(out)
    }
}

/// A retention checkpoint row: what an earlier `retain` removed.
#[derive(Debug, Clone)]
pub(crate) struct RetentionRow {
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: Vec<u8>,
    pub ts_ns: i64,
    pub epoch: u64,
    pub seal: Vec<u8>,
}

pub(crate) fn retention_rows(conn: &Connection) -> Result<Vec<RetentionRow>, AuditError> {
    let mut stmt = conn.prepare(
        "SELECT first_seq, last_seq, last_hash, ts, epoch, seal FROM retention ORDER BY id",
    )?;
    let rows = stmt.query_map([], |row| {
        Ok(RetentionRow {
            first_seq: row.get::<_, i64>(0)? as u64,
            last_seq: row.get::<_, i64>(1)? as u64,
            last_hash: row.get(2)?,
            ts_ns: row.get(3)?,
            epoch: row.get::<_, i64>(4)? as u64,
            seal: row.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn db_id(conn: &Connection) -> Result<Option<String>, AuditError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row("SELECT value FROM meta WHERE name = 'db_id'", [], |r| {
            r.get(0)
        })
        .optional()?)
}

/// The kebab-case name of a decision, as stored in the `action` column.
pub fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Ask => "ask",
        Decision::LogOnly => "log-only",
    }
}

/// Which records a query returns. Empty filter: all of them.
#[derive(Debug, Clone, Default)]
pub struct QueryFilter {
    /// Records at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Records strictly before this time.
    pub until: Option<OffsetDateTime>,
    pub kind: Option<String>,
    pub agent: Option<String>,
    pub verdict: Option<Decision>,
    pub rule: Option<String>,
    /// At most this many records (the oldest matching ones).
    pub limit: Option<usize>,
}

impl QueryFilter {
    fn where_clause(&self) -> (String, Vec<Value>) {
        let mut clauses = Vec::new();
        let mut params = Vec::new();
        if let Some(since) = self.since {
            clauses.push("ts >= ?");
            params.push(Value::Integer(ts_nanos(since)));
        }
        if let Some(until) = self.until {
            clauses.push("ts < ?");
            params.push(Value::Integer(ts_nanos(until)));
        }
        let texts = [
            ("kind = ?", self.kind.clone()),
            ("agent = ?", self.agent.clone()),
            (
                "action = ?",
                self.verdict.map(|d| decision_name(d).to_string()),
            ),
            ("rule = ?", self.rule.clone()),
        ];
        for (clause, value) in texts {
            if let Some(value) = value {
                clauses.push(clause);
                params.push(Value::Text(value));
            }
        }
        if clauses.is_empty() {
            (String::new(), params)
        } else {
            (format!(" WHERE {}", clauses.join(" AND ")), params)
        }
    }
}

/// Counts over the (filtered) records.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Largest sequence number removed by retention, if any.
    pub retained_through: Option<u64>,
    pub by_kind: Vec<(String, u64)>,
    /// By verdict action; `none` for records without a verdict.
    pub by_verdict: Vec<(String, u64)>,
    /// By rule; records without a rule are not counted here.
    pub by_rule: Vec<(String, u64)>,
}

fn parse_event(seq: i64, json: &str) -> Result<Event, AuditError> {
    crate::compact::decode(json).map_err(|e| AuditError::BadRow {
        seq: seq as u64,
        reason: e.to_string(),
    })
}

/// Calls `each` for every matching record, oldest first, without holding
/// them all in memory.
pub(crate) fn query_each(
    conn: &Connection,
    filter: &QueryFilter,
    mut each: impl FnMut(Event) -> Result<(), AuditError>,
) -> Result<(), AuditError> {
    let (where_clause, mut params) = filter.where_clause();
    let mut sql = format!("SELECT seq, event FROM records{where_clause} ORDER BY seq");
    if let Some(limit) = filter.limit {
        sql.push_str(" LIMIT ?");
        params.push(Value::Integer(limit.min(i64::MAX as usize) as i64));
    }
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let json: String = row.get(1)?;
        each(parse_event(seq, &json)?)?;
    }
    Ok(())
}

pub(crate) fn tail(conn: &Connection, n: usize) -> Result<Vec<Event>, AuditError> {
    let mut stmt = conn.prepare("SELECT seq, event FROM records ORDER BY seq DESC LIMIT ?")?;
    let mut rows = stmt.query([n.min(i64::MAX as usize) as i64])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let json: String = row.get(1)?;
        out.push(parse_event(seq, &json)?);
    }
    out.reverse();
    Ok(out)
}

pub(crate) fn stats(conn: &Connection, filter: &QueryFilter) -> Result<Stats, AuditError> {
    let (where_clause, params) = filter.where_clause();
    let mut stats = conn.query_row(
        &format!("SELECT count(*), min(seq), max(seq) FROM records{where_clause}"),
        rusqlite::params_from_iter(params.iter()),
        |r| {
            Ok(Stats {
                records: r.get::<_, i64>(0)? as u64,
                first_seq: r.get::<_, Option<i64>>(1)?.map(|v| v as u64),
                last_seq: r.get::<_, Option<i64>>(2)?.map(|v| v as u64),
                ..Stats::default()
            })
        },
    )?;
    stats.retained_through = conn
        .query_row("SELECT max(last_seq) FROM retention", [], |r| {
            r.get::<_, Option<i64>>(0)
        })?
        .map(|v| v as u64);
    let group = |column: &str, null_as: Option<&str>| -> Result<Vec<(String, u64)>, AuditError> {
        let sql = format!(
            "SELECT {column}, count(*) AS n FROM records{where_clause} GROUP BY {column} ORDER BY n DESC, {column}"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params.iter()), |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, count) = row?;
            match (name, null_as) {
                (Some(name), _) => out.push((name, count)),
                (None, Some(null_name)) => out.push((null_name.to_string(), count)),
                (None, None) => {}
            }
        }
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    };
    stats.by_kind = group("kind", None)?;
    stats.by_verdict = group("action", Some("none"))?;
    stats.by_rule = group("rule", None)?;
    Ok(stats)
}

/// Read-only access for the CLI (`audit tail|query|stats|export`) while the
/// daemon keeps writing.
pub struct AuditReader {
    conn: Connection,
}

impl AuditReader {
    pub fn open(db: &Path) -> Result<AuditReader, AuditError> {
        let conn = open_read_only(db)?;
        Ok(AuditReader { conn })
    }

    /// The last `n` records, oldest first.
    pub fn tail(&self, n: usize) -> Result<Vec<Event>, AuditError> {
        tail(&self.conn, n)
    }

    pub fn query(&self, filter: &QueryFilter) -> Result<Vec<Event>, AuditError> {
        let mut out = Vec::new();
        query_each(&self.conn, filter, |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams matching records, oldest first.
    pub fn query_each(
        &self,
        filter: &QueryFilter,
        each: impl FnMut(Event) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        query_each(&self.conn, filter, each)
    }

    pub fn stats(&self, filter: &QueryFilter) -> Result<Stats, AuditError> {
        stats(&self.conn, filter)
    }
}

pub(crate) fn open_read_only(db: &Path) -> Result<Connection, AuditError> {
    if !db.exists() {
        return Err(AuditError::io(
            db,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no audit database here (pass --db FILE)",
            ),
        ));
    }
    let conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| AuditError::Open {
        path: db.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // Fails early, with the path, if this is not an audit database.
    conn.query_row("SELECT count(*) FROM records LIMIT 1", [], |_| Ok(()))
        .map_err(|source| AuditError::Open {
            path: db.to_path_buf(),
            source,
        })?;
    Ok(conn)
}
