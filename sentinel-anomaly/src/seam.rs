//! The engine's anomaly seam (evaluation step 6): `sentinel-policy`'s
//! [`AnomalyScorer`] trait, implemented by [`AnomalyEngine`], and a shared
//! handle so the daemon can keep talking to the scorer (outcomes, lockdown
//! orders, lifting, flushing) after handing it to the verdict engine.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use sentinel_policy::{Action, AnomalyThresholds};
pub use sentinel_policy::{AnomalyScore, AnomalyScorer};

use crate::scorer::{AnomalyEngine, Thresholds};

/// An [`AnomalyEngine`] behind a mutex: give one clone to
/// `Engine::set_anomaly(Box::new(handle.clone()))` and keep another.
#[derive(Clone)]
pub struct SharedAnomalyEngine(Arc<Mutex<AnomalyEngine>>);

impl SharedAnomalyEngine {
    pub fn new(engine: AnomalyEngine) -> Self {
        SharedAnomalyEngine(Arc::new(Mutex::new(engine)))
    }

    /// The engine. A panic while it was held does not make it unusable:
    /// its state is plain data, always consistent between calls.
    pub fn lock(&self) -> MutexGuard<'_, AnomalyEngine> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl AnomalyScorer for SharedAnomalyEngine {
    fn score(&mut self, action: &Action, now: SystemTime) -> Option<AnomalyScore> {
        self.lock().score(action, now)
    }
}

impl From<AnomalyThresholds> for Thresholds {
    fn from(t: AnomalyThresholds) -> Self {
        Thresholds {
            suspicious: t.suspicious,
            anomalous: t.anomalous,
            critical: t.critical,
            auto_lockdown: t.auto_lockdown,
        }
    }
}

impl From<Thresholds> for AnomalyThresholds {
    fn from(t: Thresholds) -> Self {
        AnomalyThresholds {
            suspicious: t.suspicious,
            anomalous: t.anomalous,
            critical: t.critical,
            auto_lockdown: t.auto_lockdown,
        }
    }
}
