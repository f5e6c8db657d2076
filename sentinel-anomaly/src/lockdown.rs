//! Auto-lockdown: the order the scorer hands back when a score reaches the
//! auto-lockdown threshold, and the persisted latch that keeps it until the
//! operator lifts it (table `anomaly_lockdown`).
//!
//! Nothing here switches the mode: the caller carries the order out
//! (mode → lockdown, a `mode_change` audit record with [`LockdownOrder::reason`],
//! and the alert from [`LockdownOrder::alert`]).

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};
use sentinel_policy::RiskFactor;

use crate::alerts::{NewAlert, Severity};
use crate::clock::{from_unix_millis, unix_millis};
use crate::error::AnomalyError;

/// "Switch the daemon to lockdown", with why.
#[derive(Debug, Clone, PartialEq)]
pub struct LockdownOrder {
    pub agent: String,
    pub score: u8,
    pub factors: Vec<RiskFactor>,
    /// One line for the audit chain (`mode_change.by`) and the alert.
    pub reason: String,
    pub at: SystemTime,
}

impl LockdownOrder {
    /// The critical alert that goes with the order.
    pub fn alert(&self) -> NewAlert {
        NewAlert {
            severity: Severity::Critical,
            category: "anomaly".into(),
            reason: self.reason.clone(),
            related: Vec::new(),
            source: format!("anomaly:auto-lockdown:{}", self.agent),
        }
    }
}

/// The latch as stored: engaged since when and why.
#[derive(Debug, Clone, PartialEq)]
pub struct LockdownState {
    pub reason: String,
    pub score: u8,
    pub since: SystemTime,
}

/// The persisted auto-lockdown latch.
pub(crate) struct LockdownLatch {
    conn: Connection,
    engaged: Option<LockdownState>,
}

impl LockdownLatch {
    pub(crate) fn open(path: &Path) -> Result<Self, AnomalyError> {
        let conn = crate::db::open(path).map_err(|source| AnomalyError::Open {
            path: path.to_owned(),
            source,
        })?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS anomaly_lockdown (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                engaged_ms INTEGER NOT NULL,
                score INTEGER NOT NULL,
                reason TEXT NOT NULL,
                lifted_ms INTEGER,
                lifted_by TEXT
            );",
        )?;
        let engaged = conn
            .query_row(
                "SELECT engaged_ms, score, reason FROM anomaly_lockdown
                 WHERE lifted_ms IS NULL ORDER BY id DESC LIMIT 1",
                [],
                |row| {
                    Ok(LockdownState {
                        since: from_unix_millis(row.get(0)?),
                        score: row.get::<_, i64>(1)?.clamp(0, 100) as u8,
                        reason: row.get(2)?,
                    })
                },
            )
            .optional()?;
        Ok(LockdownLatch { conn, engaged })
    }

    pub(crate) fn state(&self) -> Option<&LockdownState> {
        self.engaged.as_ref()
    }

    pub(crate) fn engage(&mut self, order: &LockdownOrder) -> Result<(), AnomalyError> {
        self.conn.execute(
            "INSERT INTO anomaly_lockdown (engaged_ms, score, reason) VALUES (?1, ?2, ?3)",
            params![unix_millis(order.at), order.score as i64, order.reason],
        )?;
        self.engaged = Some(LockdownState {
            reason: order.reason.clone(),
            score: order.score,
            since: order.at,
        });
        Ok(())
    }

    /// Lifts the latch; returns what was lifted, or `None` if it was not engaged.
    pub(crate) fn lift(
        &mut self,
        by: &str,
        now: SystemTime,
    ) -> Result<Option<LockdownState>, AnomalyError> {
        if self.engaged.is_none() {
            return Ok(None);
        }
        self.conn.execute(
            "UPDATE anomaly_lockdown SET lifted_ms = ?1, lifted_by = ?2 WHERE lifted_ms IS NULL",
            params![unix_millis(now), by],
        )?;
        Ok(self.engaged.take())
    }
}
