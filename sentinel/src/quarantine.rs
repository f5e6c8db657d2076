//! Quarantines that outlive the daemon: every quarantine the operator adds
//! is a row in the audit database (`sentinel_quarantines`) with its
//! expiry, who added it and, once lifted, who lifted it. The daemon loads
//! the active ones into the engine (and so the kernel maps) at start; the
//! engine holds the live copy, this table the durable one.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use sentinel_policy::{QuarantineEntry, QuarantineTarget};
use serde::Serialize;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sentinel_quarantines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    added_unix INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    expires_unix INTEGER,
    lifted_unix INTEGER,
    lifted_by TEXT
);
";

#[derive(Debug, thiserror::Error)]
pub enum QuarantineStoreError {
    #[error("quarantine table in {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("quarantine table: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("a stored quarantine target does not parse: {0}")]
    Target(#[from] serde_json::Error),
}

/// One stored quarantine.
#[derive(Debug, Clone, Serialize)]
pub struct StoredQuarantine {
    pub id: i64,
    #[serde(flatten)]
    pub entry: QuarantineEntry,
    pub added_unix: i64,
    pub added_by: String,
}

pub struct QuarantineStore {
    conn: Connection,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl QuarantineStore {
    pub fn open(db: &Path) -> Result<Self, QuarantineStoreError> {
        let open = || -> rusqlite::Result<Connection> {
            let conn = Connection::open(db)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.execute_batch(SCHEMA)?;
            Ok(conn)
        };
        open()
            .map(|conn| Self { conn })
            .map_err(|source| QuarantineStoreError::Open {
                path: db.display().to_string(),
                source,
            })
    }

    /// Stores a quarantine; one still active on the same target is lifted
    /// (the engine replaces it too). Returns the new id.
    pub fn add(
        &mut self,
        entry: &QuarantineEntry,
        by: &str,
        now: SystemTime,
    ) -> Result<i64, QuarantineStoreError> {
        let target = serde_json::to_string(&entry.target)?;
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE sentinel_quarantines SET lifted_unix = ?1, lifted_by = ?2
             WHERE target = ?3 AND lifted_unix IS NULL",
            params![unix(now), format!("replaced, {by}"), target],
        )?;
        tx.execute(
            "INSERT INTO sentinel_quarantines (target, reason, added_unix, added_by, expires_unix)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![target, entry.reason, unix(now), by, entry.expires.map(unix)],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok(id)
    }

    /// Quarantines neither lifted nor expired at `now`, oldest first.
    pub fn active(&self, now: SystemTime) -> Result<Vec<StoredQuarantine>, QuarantineStoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, target, reason, added_unix, added_by, expires_unix
             FROM sentinel_quarantines
             WHERE lifted_unix IS NULL AND (expires_unix IS NULL OR expires_unix > ?1)
             ORDER BY id",
        )?;
        let rows = stmt.query_map(params![unix(now)], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, target, reason, added_unix, added_by, expires) = row?;
            let target: QuarantineTarget = serde_json::from_str(&target)?;
            out.push(StoredQuarantine {
                id,
                entry: QuarantineEntry {
                    target,
                    expires: expires
                        .map(|s| UNIX_EPOCH + Duration::from_secs(u64::try_from(s).unwrap_or(0))),
                    reason,
                },
                added_unix,
                added_by,
            });
        }
        Ok(out)
    }

    /// Marks quarantine `id` lifted; `None` if there is no active one.
    pub fn lift(
        &mut self,
        id: i64,
        by: &str,
        now: SystemTime,
    ) -> Result<Option<StoredQuarantine>, QuarantineStoreError> {
        let Some(found) = self.active(now)?.into_iter().find(|q| q.id == id) else {
            return Ok(None);
        };
        self.conn.execute(
            "UPDATE sentinel_quarantines SET lifted_unix = ?1, lifted_by = ?2 WHERE id = ?3",
            params![unix(now), by, id],
        )?;
        Ok(Some(found))
    }

    /// The id of the active quarantine on `target`, if any.
    pub fn id_of(
        &self,
        target: &QuarantineTarget,
        now: SystemTime,
    ) -> Result<Option<i64>, QuarantineStoreError> {
        let target = serde_json::to_string(target)?;
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM sentinel_quarantines
                 WHERE target = ?1 AND lifted_unix IS NULL
                   AND (expires_unix IS NULL OR expires_unix > ?2)",
                params![target, unix(now)],
                |row| row.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarantines_survive_a_reopen_until_lifted_or_expired() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut store = QuarantineStore::open(&db).unwrap();
        let forever = QuarantineEntry {
            target: QuarantineTarget::Binary("/usr/bin/nc".into()),
            expires: None,
            reason: "tunnels".into(),
        };
        let brief = QuarantineEntry {
            target: QuarantineTarget::Tool("delete_*".into()),
            expires: Some(t0 + Duration::from_secs(60)),
            reason: "incident".into(),
        };
        let a = store.add(&forever, "uid 0 (pid 1)", t0).unwrap();
        let b = store.add(&brief, "uid 0 (pid 2)", t0).unwrap();
        drop(store);
        let mut store = QuarantineStore::open(&db).unwrap();
        let active = store.active(t0).unwrap();
        assert_eq!(active.iter().map(|q| q.id).collect::<Vec<_>>(), vec![a, b]);
        assert_eq!(active[0].added_by, "uid 0 (pid 1)");
        assert_eq!(active[1].entry, brief);
        // Expired after its minute; lifted once, not twice.
        assert_eq!(store.active(t0 + Duration::from_secs(61)).unwrap().len(), 1);
        assert!(store.lift(a, "uid 0 (pid 3)", t0).unwrap().is_some());
        assert!(store.lift(a, "uid 0 (pid 3)", t0).unwrap().is_none());
        // Re-adding a target replaces the active one.
        let c = store.add(&brief, "uid 0 (pid 4)", t0).unwrap();
        let active = store.active(t0).unwrap();
        assert_eq!(active.iter().map(|q| q.id).collect::<Vec<_>>(), vec![c]);
        assert_eq!(store.id_of(&brief.target, t0).unwrap(), Some(c));
    }
}
