//! Learned per-agent baselines and their persistence in SQLite.
//!
//! The scorer works on the in-memory [`Baselines`]; [`BaselineStore`] loads
//! them at start and writes back only what changed, in one transaction, when
//! the scorer flushes. Tables (all prefixed `anomaly_` so the file can be
//! the audit database): `anomaly_agents`, `anomaly_keys`,
//! `anomaly_fingerprints`, `anomaly_transitions`.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection};

use crate::error::AnomalyError;
use crate::fingerprint::Fingerprint;

pub const HOURS_PER_WEEK: usize = 168;

/// What the scorer knows about one agent as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentBaseline {
    /// Actions learned.
    pub samples: u64,
    /// Actions per hour of the week (local time), halved when large so the
    /// histogram follows the agent's current habits.
    pub hours: Vec<f64>,
    /// The previous action's key, for the sequence model.
    pub last_key: Option<String>,
    /// Outcomes (success, failure, denial) learned.
    pub outcomes: u64,
    /// Fast EWMA of the error indicator (recent error rate).
    pub error_recent: f64,
    /// Slow EWMA of the error indicator (the baseline error rate).
    pub error_baseline: f64,
}

impl Default for AgentBaseline {
    fn default() -> Self {
        AgentBaseline {
            samples: 0,
            hours: vec![0.0; HOURS_PER_WEEK],
            last_key: None,
            outcomes: 0,
            error_recent: 0.0,
            error_baseline: 0.0,
        }
    }
}

/// How often and with which arguments one agent uses one action key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyBaseline {
    /// Exponentially decayed action count: actions in the last hour, roughly.
    pub rate: f64,
    /// When `rate` was last updated (Unix seconds).
    pub rate_at: f64,
    /// When `rate` was last folded into `mean`/`var` (Unix seconds).
    pub sampled_at: f64,
    /// EWMA mean of `rate`, sampled at most once per sampling interval.
    pub mean: f64,
    /// EWMA variance of `rate`.
    pub var: f64,
    /// Rate samples folded into `mean`/`var`.
    pub samples: u64,
    /// Argument fingerprints seen: fingerprint → (times, last seen ms).
    pub fingerprints: HashMap<Fingerprint, (u64, i64)>,
}

/// Outgoing transitions from one action key, with exponential decay.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransitionRow {
    /// Sum of the decayed weights in `next`.
    pub total: f64,
    /// Raw number of transitions learned (not decayed).
    pub observed: u64,
    pub next: HashMap<String, f64>,
}

/// Everything learned, keyed by agent.
#[derive(Debug, Default)]
pub struct Baselines {
    pub agents: HashMap<String, AgentBaseline>,
    pub keys: HashMap<String, HashMap<String, KeyBaseline>>,
    pub transitions: HashMap<String, HashMap<String, TransitionRow>>,
    dirty: Dirty,
}

#[derive(Debug, Default)]
struct Dirty {
    agents: HashSet<String>,
    keys: HashSet<(String, String)>,
    fingerprints: HashSet<(String, String, Fingerprint)>,
    evicted: HashSet<(String, String, Fingerprint)>,
    transitions: HashSet<(String, String)>,
    forgotten_keys: HashSet<(String, String)>,
}

impl Baselines {
    /// Forgets the least recently used tenth of `agent`'s action keys when
    /// it has more than `max`: their rates, fingerprints and transitions.
    pub fn bound_keys(&mut self, agent: &str, max: usize, keep: &str) {
        let Some(keys) = self.keys.get_mut(agent) else {
            return;
        };
        if keys.len() <= max {
            return;
        }
        let mut by_age: Vec<(f64, String)> = keys
            .iter()
            .filter(|(key, _)| key.as_str() != keep)
            .map(|(key, kb)| (kb.rate_at, key.clone()))
            .collect();
        let forget = (max / 10).max(keys.len() - max).min(by_age.len());
        if forget == 0 {
            return;
        }
        by_age.select_nth_unstable_by(forget - 1, |a, b| a.0.total_cmp(&b.0));
        let mut rows = self.transitions.get_mut(agent);
        for (_, key) in by_age.into_iter().take(forget) {
            keys.remove(&key);
            if let Some(rows) = rows.as_deref_mut() {
                rows.remove(&key);
            }
            let entry = (agent.to_owned(), key);
            self.dirty.keys.remove(&entry);
            self.dirty.transitions.remove(&entry);
            self.dirty
                .fingerprints
                .retain(|(a, k, _)| !(a == &entry.0 && k == &entry.1));
            self.dirty
                .evicted
                .retain(|(a, k, _)| !(a == &entry.0 && k == &entry.1));
            self.dirty.forgotten_keys.insert(entry);
        }
    }

    pub fn mark_agent(&mut self, agent: &str) {
        if !self.dirty.agents.contains(agent) {
            self.dirty.agents.insert(agent.to_owned());
        }
    }

    pub fn mark_key(&mut self, agent: &str, key: &str) {
        self.dirty.keys.insert((agent.to_owned(), key.to_owned()));
    }

    pub fn mark_fingerprint(&mut self, agent: &str, key: &str, fp: Fingerprint) {
        let entry = (agent.to_owned(), key.to_owned(), fp);
        self.dirty.evicted.remove(&entry);
        self.dirty.fingerprints.insert(entry);
    }

    pub fn mark_evicted(&mut self, agent: &str, key: &str, fp: Fingerprint) {
        let entry = (agent.to_owned(), key.to_owned(), fp);
        self.dirty.fingerprints.remove(&entry);
        self.dirty.evicted.insert(entry);
    }

    pub fn mark_transition(&mut self, agent: &str, prev: &str) {
        self.dirty
            .transitions
            .insert((agent.to_owned(), prev.to_owned()));
    }

    /// True when something changed since the last save.
    pub fn is_dirty(&self) -> bool {
        let d = &self.dirty;
        !(d.agents.is_empty()
            && d.forgotten_keys.is_empty()
            && d.keys.is_empty()
            && d.fingerprints.is_empty()
            && d.evicted.is_empty()
            && d.transitions.is_empty())
    }
}

/// The `anomaly_*` baseline tables in one SQLite file.
pub struct BaselineStore {
    conn: Connection,
}

impl BaselineStore {
    /// Opens the database at `path`, creating the tables if needed.
    pub fn open(path: &Path) -> Result<Self, AnomalyError> {
        let conn = crate::db::open(path).map_err(|source| AnomalyError::Open {
            path: path.to_owned(),
            source,
        })?;
        // Baselines are relearnable: a power cut may cost the last flush,
        // never consistency (WAL), so skip the fsync on each commit. This
        // pragma is per connection; the audit chain's own stays as it is.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS anomaly_agents (
                agent TEXT PRIMARY KEY,
                samples INTEGER NOT NULL,
                hours TEXT NOT NULL,
                last_key TEXT,
                outcomes INTEGER NOT NULL,
                error_recent REAL NOT NULL,
                error_baseline REAL NOT NULL
            );
            CREATE TABLE IF NOT EXISTS anomaly_keys (
                agent TEXT NOT NULL,
                key TEXT NOT NULL,
                rate REAL NOT NULL,
                rate_at REAL NOT NULL,
                sampled_at REAL NOT NULL,
                mean REAL NOT NULL,
                var REAL NOT NULL,
                samples INTEGER NOT NULL,
                PRIMARY KEY (agent, key)
            );
            CREATE TABLE IF NOT EXISTS anomaly_fingerprints (
                agent TEXT NOT NULL,
                key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                seen INTEGER NOT NULL,
                last_seen_ms INTEGER NOT NULL,
                PRIMARY KEY (agent, key, fingerprint)
            );
            CREATE TABLE IF NOT EXISTS anomaly_transitions (
                agent TEXT NOT NULL,
                prev TEXT NOT NULL,
                total REAL NOT NULL,
                observed INTEGER NOT NULL,
                next TEXT NOT NULL,
                PRIMARY KEY (agent, prev)
            );",
        )?;
        Ok(BaselineStore { conn })
    }

    /// Reads every baseline into memory.
    pub fn load(&self) -> Result<Baselines, AnomalyError> {
        let mut baselines = Baselines::default();
        let mut stmt = self.conn.prepare(
            "SELECT agent, samples, hours, last_key, outcomes, error_recent, error_baseline
             FROM anomaly_agents",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, f64>(5)?,
                row.get::<_, f64>(6)?,
            ))
        })?;
        for row in rows {
            let (agent, samples, hours, last_key, outcomes, error_recent, error_baseline) = row?;
            let hours: Vec<f64> = serde_json::from_str(&hours)
                .ok()
                .filter(|h: &Vec<f64>| h.len() == HOURS_PER_WEEK)
                .ok_or_else(|| AnomalyError::Corrupt(format!("anomaly_agents.hours of {agent}")))?;
            baselines.agents.insert(
                agent,
                AgentBaseline {
                    samples: samples.max(0) as u64,
                    hours,
                    last_key,
                    outcomes: outcomes.max(0) as u64,
                    error_recent,
                    error_baseline,
                },
            );
        }

        let mut stmt = self.conn.prepare(
            "SELECT agent, key, rate, rate_at, sampled_at, mean, var, samples FROM anomaly_keys",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                KeyBaseline {
                    rate: row.get(2)?,
                    rate_at: row.get(3)?,
                    sampled_at: row.get(4)?,
                    mean: row.get(5)?,
                    var: row.get(6)?,
                    samples: row.get::<_, i64>(7)?.max(0) as u64,
                    fingerprints: HashMap::new(),
                },
            ))
        })?;
        for row in rows {
            let (agent, key, kb) = row?;
            baselines.keys.entry(agent).or_default().insert(key, kb);
        }

        let mut stmt = self.conn.prepare(
            "SELECT agent, key, fingerprint, seen, last_seen_ms FROM anomaly_fingerprints",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        for row in rows {
            let (agent, key, fp, seen, last_seen) = row?;
            let fp = Fingerprint::from_hex(&fp)
                .ok_or_else(|| AnomalyError::Corrupt(format!("anomaly_fingerprints row {fp:?}")))?;
            baselines
                .keys
                .entry(agent)
                .or_default()
                .entry(key)
                .or_default()
                .fingerprints
                .insert(fp, (seen.max(0) as u64, last_seen));
        }

        let mut stmt = self
            .conn
            .prepare("SELECT agent, prev, total, observed, next FROM anomaly_transitions")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, f64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, String>(4)?,
            ))
        })?;
        for row in rows {
            let (agent, prev, total, observed, next) = row?;
            let next: HashMap<String, f64> = serde_json::from_str(&next).map_err(|_| {
                AnomalyError::Corrupt(format!("anomaly_transitions.next of {agent}/{prev}"))
            })?;
            baselines.transitions.entry(agent).or_default().insert(
                prev,
                TransitionRow {
                    total,
                    observed: observed.max(0) as u64,
                    next,
                },
            );
        }
        Ok(baselines)
    }

    /// Writes what changed since the last save, in one transaction.
    pub fn save(&mut self, baselines: &mut Baselines) -> Result<(), AnomalyError> {
        if !baselines.is_dirty() {
            return Ok(());
        }
        let dirty = std::mem::take(&mut baselines.dirty);
        let result = self.write(baselines, &dirty);
        if result.is_err() {
            // Keep the changes for the next try.
            baselines.dirty = dirty;
        }
        result
    }

    fn write(&mut self, baselines: &Baselines, dirty: &Dirty) -> Result<(), AnomalyError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert_agent = tx.prepare_cached(
                "INSERT INTO anomaly_agents
                    (agent, samples, hours, last_key, outcomes, error_recent, error_baseline)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(agent) DO UPDATE SET samples = ?2, hours = ?3, last_key = ?4,
                    outcomes = ?5, error_recent = ?6, error_baseline = ?7",
            )?;
            for agent in &dirty.agents {
                if let Some(a) = baselines.agents.get(agent) {
                    let hours = serde_json::to_string(&a.hours)
                        .map_err(|e| AnomalyError::Corrupt(e.to_string()))?;
                    upsert_agent.execute(params![
                        agent,
                        a.samples as i64,
                        hours,
                        a.last_key,
                        a.outcomes as i64,
                        a.error_recent,
                        a.error_baseline
                    ])?;
                }
            }
            let mut upsert_key = tx.prepare_cached(
                "INSERT INTO anomaly_keys (agent, key, rate, rate_at, sampled_at, mean, var, samples)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(agent, key) DO UPDATE SET rate = ?3, rate_at = ?4,
                    sampled_at = ?5, mean = ?6, var = ?7, samples = ?8",
            )?;
            for (agent, key) in &dirty.keys {
                if let Some(k) = baselines.keys.get(agent).and_then(|m| m.get(key)) {
                    upsert_key.execute(params![
                        agent,
                        key,
                        k.rate,
                        k.rate_at,
                        k.sampled_at,
                        k.mean,
                        k.var,
                        k.samples as i64
                    ])?;
                }
            }
            let mut upsert_fp = tx.prepare_cached(
                "INSERT INTO anomaly_fingerprints (agent, key, fingerprint, seen, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(agent, key, fingerprint) DO UPDATE SET seen = ?4, last_seen_ms = ?5",
            )?;
            for (agent, key, fp) in &dirty.fingerprints {
                let seen = baselines
                    .keys
                    .get(agent)
                    .and_then(|m| m.get(key))
                    .and_then(|k| k.fingerprints.get(fp));
                if let Some((count, last_seen)) = seen {
                    upsert_fp.execute(params![
                        agent,
                        key,
                        fp.to_string(),
                        *count as i64,
                        last_seen
                    ])?;
                }
            }
            let mut delete_fp = tx.prepare_cached(
                "DELETE FROM anomaly_fingerprints WHERE agent = ?1 AND key = ?2 AND fingerprint = ?3",
            )?;
            for (agent, key, fp) in &dirty.evicted {
                delete_fp.execute(params![agent, key, fp.to_string()])?;
            }
            for (agent, key) in &dirty.forgotten_keys {
                tx.execute(
                    "DELETE FROM anomaly_keys WHERE agent = ?1 AND key = ?2",
                    params![agent, key],
                )?;
                tx.execute(
                    "DELETE FROM anomaly_fingerprints WHERE agent = ?1 AND key = ?2",
                    params![agent, key],
                )?;
                tx.execute(
                    "DELETE FROM anomaly_transitions WHERE agent = ?1 AND prev = ?2",
                    params![agent, key],
                )?;
            }
            let mut upsert_row = tx.prepare_cached(
                "INSERT INTO anomaly_transitions (agent, prev, total, observed, next)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(agent, prev) DO UPDATE SET total = ?3, observed = ?4, next = ?5",
            )?;
            for (agent, prev) in &dirty.transitions {
                if let Some(row) = baselines.transitions.get(agent).and_then(|m| m.get(prev)) {
                    let next = serde_json::to_string(&row.next)
                        .map_err(|e| AnomalyError::Corrupt(e.to_string()))?;
                    upsert_row.execute(params![
                        agent,
                        prev,
                        row.total,
                        row.observed as i64,
                        next
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
