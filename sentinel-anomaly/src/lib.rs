//! Anomaly scoring, behaviour detection on kernel events, and alerts (issue 6).
//!
//! Three pieces the daemon wires together:
//! - [`AnomalyEngine`] scores every [`Action`](sentinel_policy::Action) against
//!   per-agent baselines persisted in SQLite and implements the engine's
//!   anomaly seam ([`AnomalyScorer`]); a score at the auto-lockdown threshold
//!   yields a [`LockdownOrder`] for the caller to carry out.
//! - [`Detector`] classifies the event stream into categories an analyst
//!   recognises (credential access, exfiltration, …), including sequences per
//!   process tree, and links kernel events to the MCP call in flight.
//! - [`AlertManager`] deduplicates, rate-limits (never a critical one),
//!   persists and delivers alerts (audit records and webhooks).
//!
//! Everything time-dependent takes `now: SystemTime` from the caller, so
//! replays with a fake clock are deterministic.
//!
//! Wiring in the daemon, in outline:
//! ```text
//! let scorer = SharedAnomalyEngine::new(AnomalyEngine::open(&db, ScorerConfig::default())?);
//! verdicts.set_anomaly(Box::new(scorer.clone()));           // evaluation step 6
//! // after each verdict:
//! scorer.lock().record_outcome(&action, Outcome::Denied, now);  // or Success / Failure
//! if let Some(order) = scorer.lock().take_lockdown() { /* mode → lockdown,
//!     mode_change{by: order.reason}, alerts.raise(order.alert(), now) */ }
//! // for every recorded event (seq assigned):
//! for d in detector.observe(&event, now).detections {
//!     if let Raised::New(alert) = alerts.raise(d.to_alert(), now)? {
//!         record(alert.to_event(next_seq()));
//!     }
//! }
//! // MCP proxy: detector.call_started(call_seq, server_pid, now) / call_finished(call_seq)
//! // operator lifts lockdown: scorer.lock().lift_lockdown("uid 0", now)
//! ```

pub mod alerts;
pub mod baseline;
pub mod cli;
pub mod clock;
mod db;
pub mod detector;
pub mod error;
pub mod fingerprint;
pub mod lockdown;
pub mod rules;
pub mod scorer;
pub mod seam;
pub mod throttle;
pub mod tree;
pub mod webhook;

pub use alerts::{
    Alert, AlertConfig, AlertFilter, AlertManager, AlertStatus, NewAlert, Raised, Severity,
};
pub use detector::{CallLink, Category, Detection, Detector, DetectorConfig, Observation};
pub use error::{AlertError, AnomalyError, WebhookError};
pub use fingerprint::{fingerprint, Fingerprint};
pub use lockdown::{LockdownOrder, LockdownState};
pub use scorer::{
    AnomalyAssessment, AnomalyEngine, Components, Level, Outcome, ScorerConfig, Thresholds,
};
pub use seam::{AnomalyScore, AnomalyScorer, SharedAnomalyEngine};
pub use webhook::{DeliveryReport, WebhookConfig};
