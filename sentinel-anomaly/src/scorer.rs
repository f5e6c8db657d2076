//! Per-agent anomaly scoring: five components against learned baselines,
//! weighted into one 0–100 score, risk factors, alert and auto-lockdown.
//!
//! Components (each 0–100) and weights:
//! - frequency 25%: the decayed actions-per-hour rate for (agent, action
//!   key) against its EWMA mean and variance (α = 0.1, one sample per
//!   sampling interval), as a z-score;
//! - temporal 15%: how rarely the agent acts in this hour of the week
//!   (in the configured time zone);
//! - argument novelty 30%: an argument fingerprint (every nesting level)
//!   never seen for this agent and action key;
//! - sequence 15%: how improbable the transition from the previous action
//!   key is under a decayed bigram model;
//! - error rate 15%: the recent failure/denial rate against its baseline.
//!
//! Baselines learn from every action in silent-allow mode and, after that,
//! from every action that scores below the anomalous threshold, so an
//! attacker cannot teach the baseline its own behaviour in a burst.

use std::path::Path;
use std::time::{Duration, SystemTime};

use chrono_tz::Tz;
use sentinel_policy::{Action, Mode, Object, RiskFactor};
use serde_json::Value;

use crate::alerts::{NewAlert, Severity};
use crate::baseline::{BaselineStore, Baselines, HOURS_PER_WEEK};
use crate::clock::{hour_of_week, unix_millis, unix_secs_f64};
use crate::error::AnomalyError;
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::lockdown::{LockdownLatch, LockdownOrder, LockdownState};
use crate::seam::{AnomalyScore, AnomalyScorer};

const WEIGHT_FREQUENCY: f64 = 0.25;
const WEIGHT_TEMPORAL: f64 = 0.15;
const WEIGHT_NOVELTY: f64 = 0.30;
const WEIGHT_SEQUENCE: f64 = 0.15;
const WEIGHT_ERROR_RATE: f64 = 0.15;
/// Additive smoothing of the bigram model (probability mass of an unseen
/// transition).
const SEQUENCE_SMOOTHING: f64 = 0.5;
/// A transition at least this probable is never unusual, however peaked the
/// agent's habits are.
const SEQUENCE_USUAL_PROBABILITY: f64 = 0.25;
/// The hour-of-week histogram is halved when it holds more than this, so it
/// follows the agent's current habits.
const HOURS_HISTORY_CAP: f64 = 10_000.0;

/// Score thresholds, configurable at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub suspicious: u8,
    pub anomalous: u8,
    pub critical: u8,
    pub auto_lockdown: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            suspicious: 30,
            anomalous: 60,
            critical: 80,
            auto_lockdown: 90,
        }
    }
}

impl Thresholds {
    /// Checks that the thresholds rise strictly and stay within 0–100.
    pub fn validate(&self) -> Result<(), AnomalyError> {
        let t = self;
        if !(t.suspicious < t.anomalous && t.anomalous < t.critical && t.critical < t.auto_lockdown)
            || t.auto_lockdown > 100
        {
            return Err(AnomalyError::Thresholds(format!(
                "got suspicious {}, anomalous {}, critical {}, auto-lockdown {}",
                t.suspicious, t.anomalous, t.critical, t.auto_lockdown
            )));
        }
        Ok(())
    }

    /// The level a score falls in.
    pub fn level(&self, score: u8) -> Level {
        if score >= self.auto_lockdown {
            Level::Lockdown
        } else if score >= self.critical {
            Level::Critical
        } else if score >= self.anomalous {
            Level::Anomalous
        } else if score >= self.suspicious {
            Level::Suspicious
        } else {
            Level::Normal
        }
    }
}

/// Where a score falls against the [`Thresholds`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Normal,
    Suspicious,
    Anomalous,
    Critical,
    Lockdown,
}

/// Scorer settings; `Default` is the numbers and the host time zone.
#[derive(Debug, Clone)]
pub struct ScorerConfig {
    /// Samples a baseline needs before it scores (default 10).
    pub min_samples: u64,
    pub thresholds: Thresholds,
    /// The zone hours of the week are counted in.
    pub timezone: Tz,
    /// EWMA smoothing for the frequency mean and variance (default 0.1).
    pub ewma_alpha: f64,
    /// Time constant of the decayed action counter (default one hour, so
    /// the counter reads "actions per hour").
    pub rate_window: Duration,
    /// The frequency mean and variance take at most one sample of the rate
    /// per this interval (default 5 min), so a burst cannot teach the
    /// baseline its own rate within minutes.
    pub frequency_sample_interval: Duration,
    /// Per-transition decay of the bigram model (default 0.98).
    pub sequence_decay: f64,
    /// EWMA smoothing of the recent error rate (default 0.3).
    pub error_recent_alpha: f64,
    /// EWMA smoothing of the baseline error rate (default 0.05).
    pub error_baseline_alpha: f64,
    /// Components strictly above this become risk factors (default 30).
    pub factor_floor: u8,
    /// Argument fingerprints kept per (agent, key); least recently seen go
    /// first (default 4096).
    pub max_fingerprints_per_key: usize,
    /// Action keys kept per agent; the least recently used go first
    /// (default 10,000).
    pub max_keys_per_agent: usize,
    /// How often learned baselines are written to SQLite (default 30 s).
    pub flush_interval: Duration,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        ScorerConfig {
            min_samples: 10,
            thresholds: Thresholds::default(),
            timezone: crate::clock::host_timezone(),
            ewma_alpha: 0.1,
            rate_window: Duration::from_secs(3600),
            frequency_sample_interval: Duration::from_secs(300),
            sequence_decay: 0.98,
            error_recent_alpha: 0.3,
            error_baseline_alpha: 0.05,
            factor_floor: 30,
            max_fingerprints_per_key: 4096,
            max_keys_per_agent: 10_000,
            flush_interval: Duration::from_secs(30),
        }
    }
}

/// The five component scores, each 0–100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Components {
    pub frequency: u8,
    pub temporal: u8,
    pub novelty: u8,
    pub sequence: u8,
    pub error_rate: u8,
}

impl Components {
    /// The weighted total, 0–100.
    pub fn total(&self) -> u8 {
        let sum = WEIGHT_FREQUENCY * f64::from(self.frequency)
            + WEIGHT_TEMPORAL * f64::from(self.temporal)
            + WEIGHT_NOVELTY * f64::from(self.novelty)
            + WEIGHT_SEQUENCE * f64::from(self.sequence)
            + WEIGHT_ERROR_RATE * f64::from(self.error_rate);
        to_score(sum)
    }

    /// Components strictly above `floor`, as risk factors named
    /// `anomaly.<component>`.
    pub fn factors(&self, floor: u8) -> Vec<RiskFactor> {
        self.named()
            .into_iter()
            .filter(|(_, score)| *score > floor)
            .map(|(name, score)| RiskFactor {
                name: format!("anomaly.{name}"),
                score,
            })
            .collect()
    }

    fn named(&self) -> [(&'static str, u8); 5] {
        [
            ("frequency", self.frequency),
            ("temporal", self.temporal),
            ("novelty", self.novelty),
            ("sequence", self.sequence),
            ("error_rate", self.error_rate),
        ]
    }
}

/// What happened to an action after the verdict, fed back with
/// [`AnomalyEngine::record_outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The action ran and failed (exit status, tool error, EACCES…).
    Failure,
    /// The engine or the kernel denied it.
    Denied,
}

/// The full result of scoring one action.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyAssessment {
    /// The agent's baseline key: its name, or `uid:N`.
    pub agent: String,
    /// The action key: `exec:BINARY`, `open:DIR`, `connect:ADDR:PORT` or
    /// `mcp:SERVER/TOOL`.
    pub key: String,
    /// False until the agent's baseline has `min_samples` samples; the
    /// score is then 0 and the seam returns `None`.
    pub ready: bool,
    pub score: u8,
    pub components: Components,
    pub level: Level,
    pub factors: Vec<RiskFactor>,
    /// True when this action was learned into the baseline.
    pub learned: bool,
    /// An alert to raise (anomalous → warning, critical → critical); never
    /// in silent-allow mode.
    pub alert: Option<NewAlert>,
    /// Set when this action tripped auto-lockdown: carry it out.
    pub lockdown: Option<LockdownOrder>,
}

/// Per-agent anomaly scorer with baselines persisted in SQLite.
pub struct AnomalyEngine {
    config: ScorerConfig,
    baselines: Baselines,
    store: BaselineStore,
    latch: LockdownLatch,
    mode: Mode,
    last_flush: Option<SystemTime>,
    pending_lockdown: Option<LockdownOrder>,
    flush_failures: u64,
    /// The arguments the last assessed action taught the baseline for the
    /// first time, so a denial can take them back.
    last_new_fingerprint: Option<(String, String, Fingerprint)>,
}

impl AnomalyEngine {
    /// Opens (creating if needed) the `anomaly_*` tables in the database at
    /// `db` and loads the baselines. The mode starts as `alert`; the caller
    /// sets the real one with [`set_mode`](Self::set_mode).
    pub fn open(db: &Path, config: ScorerConfig) -> Result<Self, AnomalyError> {
        config.thresholds.validate()?;
        let store = BaselineStore::open(db)?;
        let baselines = store.load()?;
        let latch = LockdownLatch::open(db)?;
        Ok(AnomalyEngine {
            config,
            baselines,
            store,
            latch,
            mode: Mode::default(),
            last_flush: None,
            pending_lockdown: None,
            flush_failures: 0,
            last_new_fingerprint: None,
        })
    }

    /// The daemon's mode: silent-allow learns everything and never alerts
    /// or locks down.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    pub fn thresholds(&self) -> Thresholds {
        self.config.thresholds
    }

    /// Changes the thresholds at runtime.
    pub fn set_thresholds(&mut self, thresholds: Thresholds) -> Result<(), AnomalyError> {
        thresholds.validate()?;
        self.config.thresholds = thresholds;
        Ok(())
    }

    /// The auto-lockdown latch, if engaged (it survives restarts).
    pub fn lockdown_state(&self) -> Option<&LockdownState> {
        self.latch.state()
    }

    /// The operator lifts auto-lockdown; returns what was lifted. Until this
    /// is called no new lockdown order is issued (one is in force).
    pub fn lift_lockdown(
        &mut self,
        by: &str,
        now: SystemTime,
    ) -> Result<Option<LockdownState>, AnomalyError> {
        self.pending_lockdown = None;
        self.latch.lift(by, now)
    }

    /// The lockdown order produced through the [`AnomalyScorer`] seam, if
    /// any; the daemon checks this after each verdict.
    pub fn take_lockdown(&mut self) -> Option<LockdownOrder> {
        self.pending_lockdown.take()
    }

    /// Baseline writes that failed (the changes are kept and retried).
    pub fn flush_failures(&self) -> u64 {
        self.flush_failures
    }

    /// Writes learned baselines to SQLite now.
    pub fn flush(&mut self) -> Result<(), AnomalyError> {
        self.store.save(&mut self.baselines)
    }

    /// Scores `action` against its agent's baseline, then learns from it.
    pub fn assess(&mut self, action: &Action, now: SystemTime) -> AnomalyAssessment {
        let agent = agent_key(action);
        let (key, fp) = key_and_fingerprint(&action.object);
        let t = unix_secs_f64(now);
        let how = hour_of_week(now, self.config.timezone);
        let ready = self
            .baselines
            .agents
            .get(&agent)
            .is_some_and(|a| a.samples >= self.config.min_samples);

        let key_baseline = self.baselines.keys.get(&agent).and_then(|m| m.get(&key));
        let current_rate = key_baseline
            .map(|k| k.rate * self.rate_decay(t - k.rate_at))
            .unwrap_or(0.0)
            + 1.0;
        let components = if ready {
            self.components(&agent, &key, fp, how, current_rate)
        } else {
            Components::default()
        };
        let score = components.total();
        let thresholds = self.config.thresholds;
        let level = if ready {
            thresholds.level(score)
        } else {
            Level::Normal
        };
        let factors = components.factors(self.config.factor_floor);
        let learned = !ready || self.mode == Mode::SilentAllow || score < thresholds.anomalous;
        self.observe(&agent, &key, fp, how, t, now, current_rate, learned);

        let alerting = ready && self.mode != Mode::SilentAllow;
        let floor = self.config.factor_floor;
        let reason = || describe(score, &agent, &key, &components, floor);
        let alert = match level {
            Level::Anomalous if alerting => Some(Severity::Warning),
            Level::Critical | Level::Lockdown if alerting => Some(Severity::Critical),
            _ => None,
        }
        .map(|severity| NewAlert {
            severity,
            category: "anomaly".into(),
            reason: reason(),
            related: Vec::new(),
            source: format!("anomaly:{agent}"),
        });
        let lockdown = if level == Level::Lockdown
            && alerting
            && self.mode != Mode::Lockdown
            && self.latch.state().is_none()
        {
            let order = LockdownOrder {
                agent: agent.clone(),
                score,
                factors: factors.clone(),
                reason: format!("auto-lockdown: {}", reason()),
                at: now,
            };
            if let Err(e) = self.latch.engage(&order) {
                tracing::warn!("auto-lockdown latch not persisted: {e}");
            }
            Some(order)
        } else {
            None
        };
        self.maybe_flush(now);
        AnomalyAssessment {
            agent,
            key,
            ready,
            score,
            components,
            level,
            factors,
            learned,
            alert,
            lockdown,
        }
    }

    /// Feeds back what happened to an action (errors and denials drive the
    /// error-rate component).
    ///
    /// A denial also takes back the arguments the action taught the
    /// baseline, if this was the action just scored and its arguments were
    /// new: what was refused does not become normal.
    pub fn record_outcome(&mut self, action: &Action, outcome: Outcome, now: SystemTime) {
        let agent = agent_key(action);
        if outcome == Outcome::Denied {
            self.forget_denied(&agent, action);
        }
        let is_error = if outcome == Outcome::Success {
            0.0
        } else {
            1.0
        };
        let (recent_alpha, baseline_alpha) = (
            self.config.error_recent_alpha,
            self.config.error_baseline_alpha,
        );
        let a = self.baselines.agents.entry(agent.clone()).or_default();
        // Running mean until there are 1/α outcomes, then EWMA: the early
        // baseline is not biased towards zero.
        let warmup = 1.0 / (a.outcomes as f64 + 1.0);
        a.error_recent += recent_alpha.max(warmup) * (is_error - a.error_recent);
        a.error_baseline += baseline_alpha.max(warmup) * (is_error - a.error_baseline);
        a.outcomes += 1;
        self.baselines.mark_agent(&agent);
        self.maybe_flush(now);
    }

    fn forget_denied(&mut self, agent: &str, action: &Action) {
        let Some((last_agent, last_key, fp)) = self.last_new_fingerprint.take() else {
            return;
        };
        let (key, action_fp) = key_and_fingerprint(&action.object);
        if last_agent != agent || last_key != key || action_fp != fp {
            return;
        }
        let removed = self
            .baselines
            .keys
            .get_mut(agent)
            .and_then(|keys| keys.get_mut(&key))
            .and_then(|kb| kb.fingerprints.remove(&fp));
        if removed.is_some() {
            self.baselines.mark_evicted(agent, &key, fp);
        }
    }

    fn rate_decay(&self, elapsed_secs: f64) -> f64 {
        let window = self.config.rate_window.as_secs_f64().max(1.0);
        (-elapsed_secs.max(0.0) / window).exp()
    }

    fn components(
        &self,
        agent: &str,
        key: &str,
        fp: Fingerprint,
        how: usize,
        current_rate: f64,
    ) -> Components {
        let min = self.config.min_samples;
        let agent_baseline = self.baselines.agents.get(agent);
        let key_baseline = self.baselines.keys.get(agent).and_then(|m| m.get(key));

        let frequency = match key_baseline {
            Some(k) if k.samples >= min => {
                let sd = k.var.max(k.mean).max(1.0).sqrt();
                let z = (current_rate - k.mean) / sd;
                to_score((z - 1.0) * 25.0)
            }
            _ => 0,
        };

        let temporal = agent_baseline.map_or(0, |a| temporal_score(&a.hours, how));

        let novelty = match key_baseline {
            Some(k) if k.fingerprints.contains_key(&fp) => 0,
            _ => 100,
        };

        let sequence = agent_baseline
            .and_then(|a| a.last_key.as_deref())
            .and_then(|prev| self.baselines.transitions.get(agent)?.get(prev))
            .filter(|row| row.observed >= min)
            .map_or(0, |row| {
                let distinct = row.next.len() as f64 + 1.0;
                let denominator = row.total + SEQUENCE_SMOOTHING * distinct;
                let p =
                    (row.next.get(key).copied().unwrap_or(0.0) + SEQUENCE_SMOOTHING) / denominator;
                let max_weight = row.next.values().copied().fold(0.0, f64::max);
                let p_max = (max_weight + SEQUENCE_SMOOTHING) / denominator;
                let usual = p_max.min(SEQUENCE_USUAL_PROBABILITY);
                to_score(100.0 * (1.0 - (p / usual).min(1.0)))
            });

        let error_rate = agent_baseline.filter(|a| a.outcomes >= min).map_or(0, |a| {
            let headroom = (1.0 - a.error_baseline).max(0.05);
            to_score(100.0 * (a.error_recent - a.error_baseline).max(0.0) / headroom)
        });

        Components {
            frequency,
            temporal,
            novelty,
            sequence,
            error_rate,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn observe(
        &mut self,
        agent: &str,
        key: &str,
        fp: Fingerprint,
        how: usize,
        t: f64,
        now: SystemTime,
        current_rate: f64,
        learn: bool,
    ) {
        let alpha = self.config.ewma_alpha;
        let sample_interval = self.config.frequency_sample_interval.as_secs_f64();
        let decay = self.config.sequence_decay;
        let max_fps = self.config.max_fingerprints_per_key.max(1);

        let agent_baseline = self.baselines.agents.entry(agent.to_owned()).or_default();
        let prev = agent_baseline.last_key.replace(key.to_owned());
        if learn {
            agent_baseline.samples += 1;
            agent_baseline.hours[how % HOURS_PER_WEEK] += 1.0;
            if agent_baseline.hours.iter().sum::<f64>() > HOURS_HISTORY_CAP {
                agent_baseline.hours.iter_mut().for_each(|h| *h /= 2.0);
            }
        }
        self.baselines.mark_agent(agent);

        let kb = self
            .baselines
            .keys
            .entry(agent.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default();
        kb.rate = current_rate;
        kb.rate_at = t;
        let mut evicted = Vec::new();
        let mut new_fingerprint = false;
        if learn {
            if kb.samples == 0 {
                kb.mean = current_rate;
                kb.var = 0.0;
                kb.sampled_at = t;
                kb.samples = 1;
            } else if t - kb.sampled_at >= sample_interval {
                // Running mean until there are 1/α samples, then EWMA.
                let alpha = alpha.max(1.0 / (kb.samples as f64 + 1.0));
                let diff = current_rate - kb.mean;
                let increment = alpha * diff;
                kb.mean += increment;
                kb.var = (1.0 - alpha) * (kb.var + diff * increment);
                kb.sampled_at = t;
                kb.samples += 1;
            }
            let seen = kb.fingerprints.entry(fp).or_insert((0, 0));
            new_fingerprint = seen.0 == 0;
            seen.0 += 1;
            seen.1 = unix_millis(now);
            if kb.fingerprints.len() > max_fps {
                // Forget the least recently seen tenth at once, so the scan
                // is paid once per many inserts rather than on each.
                let mut by_age: Vec<(i64, Fingerprint)> = kb
                    .fingerprints
                    .iter()
                    .filter(|(other, _)| **other != fp)
                    .map(|(other, (_, last_seen))| (*last_seen, *other))
                    .collect();
                let excess = kb.fingerprints.len() - max_fps;
                let forget = (max_fps / 10).max(excess).min(by_age.len());
                if forget > 0 {
                    by_age.select_nth_unstable(forget - 1);
                    for (_, old) in by_age.into_iter().take(forget) {
                        kb.fingerprints.remove(&old);
                        evicted.push(old);
                    }
                }
            }
        }
        self.baselines.mark_key(agent, key);
        let max_keys = self.config.max_keys_per_agent.max(1);
        self.baselines.bound_keys(agent, max_keys, key);
        self.last_new_fingerprint = new_fingerprint.then(|| (agent.to_owned(), key.to_owned(), fp));
        if learn {
            self.baselines.mark_fingerprint(agent, key, fp);
            for old in evicted {
                self.baselines.mark_evicted(agent, key, old);
            }
        }

        if let (true, Some(prev)) = (learn, prev) {
            let row = self
                .baselines
                .transitions
                .entry(agent.to_owned())
                .or_default()
                .entry(prev.clone())
                .or_default();
            row.next.values_mut().for_each(|w| *w *= decay);
            row.next.retain(|_, w| *w >= 0.01);
            *row.next.entry(key.to_owned()).or_insert(0.0) += 1.0;
            row.total = row.next.values().sum();
            row.observed += 1;
            self.baselines.mark_transition(agent, &prev);
        }
    }

    fn maybe_flush(&mut self, now: SystemTime) {
        let due = match self.last_flush {
            None => true,
            Some(last) => now
                .duration_since(last)
                .map_or(true, |d| d >= self.config.flush_interval),
        };
        if !due {
            return;
        }
        self.last_flush = Some(now);
        if let Err(e) = self.flush() {
            self.flush_failures += 1;
            tracing::warn!("anomaly baselines not saved (will retry): {e}");
        }
    }
}

impl Drop for AnomalyEngine {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("anomaly baselines not saved at shutdown: {e}");
        }
    }
}

impl AnomalyScorer for AnomalyEngine {
    fn score(&mut self, action: &Action, now: SystemTime) -> Option<AnomalyScore> {
        let assessment = self.assess(action, now);
        if let Some(order) = assessment.lockdown {
            self.pending_lockdown = Some(order);
        }
        assessment.ready.then_some(AnomalyScore {
            score: assessment.score,
            factors: assessment.factors,
        })
    }
}

/// The baseline key of the agent behind `action`: its name, else `uid:N`.
pub fn agent_key(action: &Action) -> String {
    match &action.agent {
        Some(name) => name.clone(),
        None => format!("uid:{}", action.uid),
    }
}

/// The action key (what frequency, novelty and sequence are counted per)
/// and the fingerprint of the arguments.
///
/// Opens are keyed by directory and fingerprinted by extension and write
/// flag, so reading one more source file in a known tree is not novel while
/// writing there, or a new directory, is.
pub fn key_and_fingerprint(object: &Object) -> (String, Fingerprint) {
    match object {
        Object::Exec { binary, argv } => {
            let args: Vec<Value> = argv
                .iter()
                .skip(1)
                .map(|a| Value::String(a.clone()))
                .collect();
            (format!("exec:{binary}"), fingerprint(&Value::Array(args)))
        }
        Object::Open { path, write } => {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let ext = name.rsplit_once('.').map_or("", |(_, ext)| ext);
            let args = serde_json::json!({ "ext": ext, "write": write });
            (format!("open:{dir}/"), fingerprint(&args))
        }
        Object::Connect { addr, port } => {
            let key = match addr {
                std::net::IpAddr::V4(v4) => format!("connect:{v4}:{port}"),
                std::net::IpAddr::V6(v6) => format!("connect:[{v6}]:{port}"),
            };
            (key, fingerprint(&Value::Null))
        }
        Object::Mcp { server, tool, args } => (format!("mcp:{server}/{tool}"), fingerprint(args)),
    }
}

/// 0–100 for how rarely the agent acts in hour-of-week `how`: the count in
/// that hour (plus half of each neighbouring hour) against the average
/// count of the hours the agent is active in.
fn temporal_score(hours: &[f64], how: usize) -> u8 {
    let total: f64 = hours.iter().sum();
    let active = hours.iter().filter(|h| **h > 0.0).count();
    if total <= 0.0 || active == 0 || hours.len() != HOURS_PER_WEEK {
        return 0;
    }
    let expected = total / active as f64;
    let before = hours[(how + HOURS_PER_WEEK - 1) % HOURS_PER_WEEK];
    let after = hours[(how + 1) % HOURS_PER_WEEK];
    let here = hours[how % HOURS_PER_WEEK] + 0.5 * (before + after);
    to_score(100.0 * (1.0 - (here / expected).min(1.0)))
}

fn to_score(x: f64) -> u8 {
    if x.is_nan() {
        0
    } else {
        x.round().clamp(0.0, 100.0) as u8
    }
}

fn describe(score: u8, agent: &str, key: &str, components: &Components, floor: u8) -> String {
    let mut drivers: Vec<String> = components
        .named()
        .iter()
        .filter(|(_, s)| *s > floor)
        .map(|(name, s)| format!("{name} {s}"))
        .collect();
    if drivers.is_empty() {
        drivers.push("no single component above the floor".into());
    }
    format!(
        "anomaly score {score} for agent {agent} on {key} ({})",
        drivers.join(", ")
    )
}
