//! Alerts: severity and status, deduplication and per-source rate limits
//! (never for a critical alert), persistence in SQLite (`anomaly_alerts`,
//! `anomaly_webhook`), the `list/ack/resolve` API, the audit records
//! (`kind = "alert"`) and webhook delivery.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use rusqlite::{params, Connection, OptionalExtension, Row};
use sentinel_audit::{Body, Event};
use serde::{Deserialize, Serialize};

use crate::clock::{from_unix_millis, to_offset, unix_millis};
use crate::error::AlertError;
use crate::throttle::{Admit, Throttle};
use crate::webhook::{payload, WebhookConfig, WebhookSender};

/// Related sequence numbers kept on one (deduplicated) alert.
const MAX_RELATED: usize = 64;

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "unknown severity {other:?}; use info, warning or critical"
            )),
        }
    }
}

/// Where an alert is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Active,
    Acknowledged,
    Resolved,
}

impl AlertStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Active => "active",
            AlertStatus::Acknowledged => "acknowledged",
            AlertStatus::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(AlertStatus::Active),
            "acknowledged" | "ack" => Ok(AlertStatus::Acknowledged),
            "resolved" => Ok(AlertStatus::Resolved),
            other => Err(format!(
                "unknown alert status {other:?}; use active, acknowledged or resolved"
            )),
        }
    }
}

/// An alert to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub severity: Severity,
    /// `credential_access`, `exfiltration`, `anomaly`, …
    pub category: String,
    pub reason: String,
    /// `seq` numbers of the events it links.
    pub related: Vec<u64>,
    /// What raised it (rule and agent or process tree); dedup and rate
    /// limits are per source.
    pub source: String,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub id: i64,
    #[serde(serialize_with = "serialize_time")]
    pub created: SystemTime,
    #[serde(serialize_with = "serialize_time")]
    pub updated: SystemTime,
    pub severity: Severity,
    pub category: String,
    pub reason: String,
    pub related: Vec<u64>,
    pub source: String,
    pub status: AlertStatus,
    /// Times it was raised (1 + duplicates folded into it).
    pub occurrences: u64,
    pub acknowledged_by: Option<String>,
    pub resolved_by: Option<String>,
}

fn serialize_time<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    let text = to_offset(*t)
        .format(&time::format_description::well_known::Rfc3339)
        .map_err(serde::ser::Error::custom)?;
    s.serialize_str(&text)
}

impl Alert {
    /// The audit/stream record for this alert, with the `seq` the recorder
    /// assigns.
    pub fn to_event(&self, seq: u64) -> Event {
        Event {
            seq,
            ts: to_offset(self.created),
            body: Body::Alert {
                severity: self.severity.as_str().to_owned(),
                category: self.category.clone(),
                reason: self.reason.clone(),
                related: self.related.clone(),
            },
            verdict: None,
        }
    }
}

/// What [`AlertManager::raise`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Raised {
    /// A new alert: record `alert.to_event(seq)` in the audit chain and sinks.
    New(Alert),
    /// Folded into an open alert with the same source, category and reason.
    Duplicate { id: i64, occurrences: u64 },
    /// Held back by the source's rate limit (never a critical alert); the
    /// next alert from the source that passes carries the count.
    RateLimited { source: String },
}

impl Raised {
    /// The new alert, if one was created.
    pub fn alert(&self) -> Option<&Alert> {
        match self {
            Raised::New(alert) => Some(alert),
            _ => None,
        }
    }
}

/// Dedup and rate-limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertConfig {
    /// An open alert absorbs identical ones raised within this time of its
    /// last occurrence (default 10 min).
    pub dedup_window: Duration,
    /// Alerts a source may raise at once (default 20).
    pub burst: u32,
    /// Sustained alerts per minute per source (default 10).
    pub per_minute: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            dedup_window: Duration::from_secs(600),
            burst: 20,
            per_minute: 10,
        }
    }
}

/// Which alerts to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertFilter {
    /// `None`: every status.
    pub status: Option<AlertStatus>,
    pub limit: usize,
}

impl Default for AlertFilter {
    fn default() -> Self {
        AlertFilter {
            status: None,
            limit: 100,
        }
    }
}

/// Counters for `sentinel status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCounters {
    pub raised: u64,
    pub deduplicated: u64,
    pub rate_limited: u64,
    pub webhook_delivered: u64,
    pub webhook_failed: u64,
    pub webhook_dropped: u64,
}

type DedupKey = (String, String, String);

/// Raises, stores and delivers alerts.
pub struct AlertManager {
    conn: Connection,
    config: AlertConfig,
    throttle: Throttle,
    open_alerts: HashMap<DedupKey, (i64, SystemTime)>,
    webhook: Option<WebhookSender>,
    counters: AlertCounters,
}

impl AlertManager {
    /// Opens (creating if needed) the alert tables in the database at `db`
    /// and starts webhook delivery if the operator configured one.
    pub fn open(db: &Path, config: AlertConfig) -> Result<Self, AlertError> {
        let conn = open_store(db)?;
        let webhook = load_webhook(&conn)?.map(WebhookSender::spawn);
        Ok(AlertManager {
            conn,
            config,
            throttle: Throttle::new(config.burst, config.per_minute),
            open_alerts: HashMap::new(),
            webhook,
            counters: AlertCounters::default(),
        })
    }

    /// Raises an alert at `now`: deduplicated and rate-limited per source
    /// unless it is critical; stored; posted to the webhook.
    pub fn raise(&mut self, alert: NewAlert, now: SystemTime) -> Result<Raised, AlertError> {
        let mut alert = alert;
        let critical = alert.severity == Severity::Critical;
        let dedup_key = (
            alert.source.clone(),
            alert.category.clone(),
            alert.reason.clone(),
        );
        if !critical {
            if let Some(raised) = self.fold_duplicate(&dedup_key, &alert.related, now)? {
                self.counters.deduplicated += 1;
                return Ok(raised);
            }
            match self.throttle.admit(&alert.source, now) {
                Admit::No => {
                    self.counters.rate_limited += 1;
                    return Ok(Raised::RateLimited {
                        source: alert.source,
                    });
                }
                Admit::Yes {
                    suppressed_before: n,
                } if n > 0 => {
                    alert.reason = format!(
                        "{} (+{n} earlier alerts from this source held back by the rate limit)",
                        alert.reason
                    );
                }
                Admit::Yes { .. } => {}
            }
        }
        alert.related.truncate(MAX_RELATED);
        let related = serde_json::to_string(&alert.related).unwrap_or_else(|_| "[]".into());
        let ms = unix_millis(now);
        self.conn.execute(
            "INSERT INTO anomaly_alerts
                (created_ms, updated_ms, severity, category, source, reason, related, status, occurrences)
             VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, 'active', 1)",
            params![
                ms,
                alert.severity.as_str(),
                alert.category,
                alert.source,
                alert.reason,
                related
            ],
        )?;
        let id = self.conn.last_insert_rowid();
        if !critical {
            if self.open_alerts.len() > 10_000 {
                let window = self.config.dedup_window;
                self.open_alerts
                    .retain(|_, (_, last)| now.duration_since(*last).map_or(true, |d| d < window));
            }
            self.open_alerts.insert(dedup_key, (id, now));
        }
        self.counters.raised += 1;
        let stored = Alert {
            id,
            created: from_unix_millis(ms),
            updated: from_unix_millis(ms),
            severity: alert.severity,
            category: alert.category,
            reason: alert.reason,
            related: alert.related,
            source: alert.source,
            status: AlertStatus::Active,
            occurrences: 1,
            acknowledged_by: None,
            resolved_by: None,
        };
        if let Some(webhook) = &self.webhook {
            if stored.severity >= webhook.config.min_severity {
                webhook.enqueue(payload(&stored, webhook.config.format));
            }
        }
        Ok(Raised::New(stored))
    }

    /// Folds `related` into the open alert with the same key, if there is
    /// one within the dedup window that nobody has resolved.
    fn fold_duplicate(
        &mut self,
        key: &DedupKey,
        related: &[u64],
        now: SystemTime,
    ) -> Result<Option<Raised>, AlertError> {
        let Some(&(id, last)) = self.open_alerts.get(key) else {
            return Ok(None);
        };
        let fresh = now
            .duration_since(last)
            .map_or(true, |d| d < self.config.dedup_window);
        let stored = if fresh { self.get(id).ok() } else { None };
        let Some(mut stored) = stored.filter(|a| a.status != AlertStatus::Resolved) else {
            self.open_alerts.remove(key);
            return Ok(None);
        };
        for seq in related {
            if stored.related.len() < MAX_RELATED && !stored.related.contains(seq) {
                stored.related.push(*seq);
            }
        }
        stored.occurrences += 1;
        let related = serde_json::to_string(&stored.related).unwrap_or_else(|_| "[]".into());
        self.conn.execute(
            "UPDATE anomaly_alerts SET occurrences = ?2, related = ?3, updated_ms = ?4 WHERE id = ?1",
            params![id, stored.occurrences as i64, related, unix_millis(now)],
        )?;
        self.open_alerts.insert(key.clone(), (id, now));
        Ok(Some(Raised::Duplicate {
            id,
            occurrences: stored.occurrences,
        }))
    }

    /// One alert by id.
    pub fn get(&self, id: i64) -> Result<Alert, AlertError> {
        get_alert(&self.conn, id)
    }

    /// Alerts, newest first.
    pub fn list(&self, filter: AlertFilter) -> Result<Vec<Alert>, AlertError> {
        list_alerts(&self.conn, filter)
    }

    /// Marks an alert acknowledged by `by`.
    pub fn ack(&mut self, id: i64, by: &str, now: SystemTime) -> Result<Alert, AlertError> {
        ack_alert(&self.conn, id, by, now)
    }

    /// Marks an alert resolved by `by`; a new identical alert opens a new one.
    pub fn resolve(&mut self, id: i64, by: &str, now: SystemTime) -> Result<Alert, AlertError> {
        let alert = resolve_alert(&self.conn, id, by, now)?;
        self.open_alerts.retain(|_, (open_id, _)| *open_id != id);
        Ok(alert)
    }

    /// Sets (or with `None` clears) the webhook and stores it. Operator
    /// only: call this from the daemon's root-only control path.
    pub fn set_webhook(&mut self, config: Option<WebhookConfig>) -> Result<(), AlertError> {
        save_webhook(&self.conn, config.as_ref())?;
        self.reload_webhook()
    }

    /// Re-reads the webhook configuration from the database (after
    /// `sentinel alerts webhook set` changed it).
    pub fn reload_webhook(&mut self) -> Result<(), AlertError> {
        let config = load_webhook(&self.conn)?;
        if config.as_ref() != self.webhook.as_ref().map(|w| &w.config) {
            self.retire_webhook();
            self.webhook = config.map(WebhookSender::spawn);
        }
        Ok(())
    }

    pub fn webhook(&self) -> Option<&WebhookConfig> {
        self.webhook.as_ref().map(|w| &w.config)
    }

    /// Waits until every queued webhook delivery has been attempted, then
    /// restarts delivery (shutdown, tests).
    pub fn drain_webhook(&mut self) {
        let config = self.webhook.as_ref().map(|w| w.config.clone());
        self.retire_webhook();
        self.webhook = config.map(WebhookSender::spawn);
    }

    fn retire_webhook(&mut self) {
        if let Some(old) = self.webhook.take() {
            let stats = std::sync::Arc::clone(&old.stats);
            drop(old);
            self.counters.webhook_delivered += stats.delivered.load(Ordering::Relaxed);
            self.counters.webhook_failed += stats.failed.load(Ordering::Relaxed);
            self.counters.webhook_dropped += stats.dropped.load(Ordering::Relaxed);
        }
    }

    /// What was raised, folded, held back and delivered so far.
    pub fn counters(&self) -> AlertCounters {
        let mut counters = self.counters;
        if let Some(w) = &self.webhook {
            counters.webhook_delivered += w.stats.delivered.load(Ordering::Relaxed);
            counters.webhook_failed += w.stats.failed.load(Ordering::Relaxed);
            counters.webhook_dropped += w.stats.dropped.load(Ordering::Relaxed);
        }
        counters
    }
}

pub(crate) fn open_store(db: &Path) -> Result<Connection, AlertError> {
    let conn = crate::db::open(db).map_err(|source| AlertError::Open {
        path: db.to_owned(),
        source,
    })?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS anomaly_alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL,
            severity TEXT NOT NULL,
            category TEXT NOT NULL,
            source TEXT NOT NULL,
            reason TEXT NOT NULL,
            related TEXT NOT NULL,
            status TEXT NOT NULL,
            occurrences INTEGER NOT NULL,
            acknowledged_by TEXT,
            acknowledged_ms INTEGER,
            resolved_by TEXT,
            resolved_ms INTEGER
        );
        CREATE INDEX IF NOT EXISTS anomaly_alerts_by_status ON anomaly_alerts (status, id);
        CREATE TABLE IF NOT EXISTS anomaly_webhook (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            primary_url TEXT NOT NULL,
            backup_url TEXT,
            min_severity TEXT NOT NULL,
            retries INTEGER NOT NULL,
            backoff_ms INTEGER NOT NULL,
            timeout_ms INTEGER NOT NULL
        );",
    )?;
    // Columns added later: a database from an older version gains them.
    for column in ["ca_file TEXT", "format TEXT"] {
        match conn.execute(
            &format!("ALTER TABLE anomaly_webhook ADD COLUMN {column}"),
            [],
        ) {
            Ok(_) => {}
            Err(e) if e.to_string().contains("duplicate column") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(conn)
}

const ALERT_COLUMNS: &str = "id, created_ms, updated_ms, severity, category, reason, related, \
     source, status, occurrences, acknowledged_by, resolved_by";

fn alert_from_row(row: &Row<'_>) -> rusqlite::Result<Result<Alert, AlertError>> {
    let id: i64 = row.get(0)?;
    let severity: String = row.get(3)?;
    let related: String = row.get(6)?;
    let status: String = row.get(8)?;
    let corrupt = |field| AlertError::Corrupt { id, field };
    let parsed = (|| -> Result<Alert, ParseFailure> {
        Ok(Alert {
            id,
            created: from_unix_millis(row.get(1)?),
            updated: from_unix_millis(row.get(2)?),
            severity: severity.parse().map_err(|_| corrupt("severity"))?,
            category: row.get(4)?,
            reason: row.get(5)?,
            related: serde_json::from_str(&related).map_err(|_| corrupt("related"))?,
            source: row.get(7)?,
            status: status.parse().map_err(|_| corrupt("status"))?,
            occurrences: row.get::<_, i64>(9)?.max(0) as u64,
            acknowledged_by: row.get(10)?,
            resolved_by: row.get(11)?,
        })
    })();
    match parsed {
        Ok(alert) => Ok(Ok(alert)),
        Err(ParseFailure::Sql(e)) => Err(e),
        Err(ParseFailure::Alert(e)) => Ok(Err(e)),
    }
}

enum ParseFailure {
    Sql(rusqlite::Error),
    Alert(AlertError),
}

impl From<rusqlite::Error> for ParseFailure {
    fn from(e: rusqlite::Error) -> Self {
        ParseFailure::Sql(e)
    }
}

impl From<AlertError> for ParseFailure {
    fn from(e: AlertError) -> Self {
        ParseFailure::Alert(e)
    }
}

pub(crate) fn get_alert(conn: &Connection, id: i64) -> Result<Alert, AlertError> {
    conn.query_row(
        &format!("SELECT {ALERT_COLUMNS} FROM anomaly_alerts WHERE id = ?1"),
        [id],
        alert_from_row,
    )
    .optional()?
    .ok_or(AlertError::NotFound(id))?
}

pub(crate) fn list_alerts(
    conn: &Connection,
    filter: AlertFilter,
) -> Result<Vec<Alert>, AlertError> {
    let limit = i64::try_from(filter.limit).unwrap_or(i64::MAX);
    let mut stmt = conn.prepare(&format!(
        "SELECT {ALERT_COLUMNS} FROM anomaly_alerts
         WHERE (?1 IS NULL OR status = ?1) ORDER BY id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(
        params![filter.status.map(AlertStatus::as_str), limit],
        alert_from_row,
    )?;
    let mut alerts = Vec::new();
    for row in rows {
        alerts.push(row??);
    }
    Ok(alerts)
}

pub(crate) fn ack_alert(
    conn: &Connection,
    id: i64,
    by: &str,
    now: SystemTime,
) -> Result<Alert, AlertError> {
    // A resolved alert stays resolved.
    let changed = conn.execute(
        "UPDATE anomaly_alerts SET status = 'acknowledged', acknowledged_by = ?2,
            acknowledged_ms = ?3, updated_ms = ?3
         WHERE id = ?1 AND status = 'active'",
        params![id, by, unix_millis(now)],
    )?;
    let alert = get_alert(conn, id)?;
    if changed == 0 {
        tracing::debug!("alert {id} already {}", alert.status);
    }
    Ok(alert)
}

pub(crate) fn resolve_alert(
    conn: &Connection,
    id: i64,
    by: &str,
    now: SystemTime,
) -> Result<Alert, AlertError> {
    conn.execute(
        "UPDATE anomaly_alerts SET status = 'resolved', resolved_by = ?2,
            resolved_ms = ?3, updated_ms = ?3
         WHERE id = ?1 AND status != 'resolved'",
        params![id, by, unix_millis(now)],
    )?;
    get_alert(conn, id)
}

pub(crate) fn load_webhook(conn: &Connection) -> Result<Option<WebhookConfig>, AlertError> {
    let row = conn
        .query_row(
            "SELECT primary_url, backup_url, min_severity, retries, backoff_ms, timeout_ms,
                    ca_file, format
             FROM anomaly_webhook WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, Option<String>>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ))
            },
        )
        .optional()?;
    let Some((primary, backup, min_severity, retries, backoff_ms, timeout_ms, ca_file, format)) =
        row
    else {
        return Ok(None);
    };
    let corrupt = |field| AlertError::Corrupt { id: 0, field };
    let config = WebhookConfig {
        primary,
        backup,
        min_severity: min_severity.parse().map_err(|_| corrupt("min_severity"))?,
        retries: u32::try_from(retries).map_err(|_| corrupt("retries"))?,
        backoff: Duration::from_millis(backoff_ms.max(0) as u64),
        timeout: Duration::from_millis(timeout_ms.max(1) as u64),
        ca_file: ca_file.map(Into::into),
        format: format
            .as_deref()
            .unwrap_or("sentinel")
            .parse()
            .map_err(|_| corrupt("format"))?,
    };
    config.validate()?;
    Ok(Some(config))
}

pub(crate) fn save_webhook(
    conn: &Connection,
    config: Option<&WebhookConfig>,
) -> Result<(), AlertError> {
    match config {
        None => {
            conn.execute("DELETE FROM anomaly_webhook", [])?;
        }
        Some(c) => {
            c.validate()?;
            conn.execute(
                "INSERT INTO anomaly_webhook
                    (id, primary_url, backup_url, min_severity, retries, backoff_ms, timeout_ms,
                     ca_file, format)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET primary_url = ?1, backup_url = ?2,
                    min_severity = ?3, retries = ?4, backoff_ms = ?5, timeout_ms = ?6,
                    ca_file = ?7, format = ?8",
                params![
                    c.primary,
                    c.backup,
                    c.min_severity.as_str(),
                    i64::from(c.retries),
                    i64::try_from(c.backoff.as_millis()).unwrap_or(i64::MAX),
                    i64::try_from(c.timeout.as_millis()).unwrap_or(i64::MAX),
                    c.ca_file.as_ref().map(|p| p.display().to_string()),
                    c.format.as_str()
                ],
            )?;
        }
    }
    Ok(())
}
