//! The engine's anomaly seam (evaluation step 6): the trait the verdict
//! engine calls for every action, and the score it gets back.
//!
//! These mirror the shapes the engine in `sentinel-policy` defines; when the
//! engine publishes its own, this module re-exports them instead.

use std::time::SystemTime;

use sentinel_policy::{Action, RiskFactor};

/// An anomaly score for one action: 0–100 and the components that drove it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyScore {
    pub score: u8,
    pub factors: Vec<RiskFactor>,
}

/// Something that scores actions; `None` means "no opinion yet" (the
/// baseline has too few samples).
pub trait AnomalyScorer: Send {
    fn score(&mut self, action: &Action, now: SystemTime) -> Option<AnomalyScore>;
}
