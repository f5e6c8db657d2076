//! The one verdict engine shared by kernel actions and MCP tool calls.
//!
//! Input is an [`Action`] (what an agent is trying to do); output is a
//! [`Verdict`] (allow, deny, ask or log-only, with the rule, a reason and a
//! risk score). Everything that decides — policy files, modes, quarantine,
//! rate limits, schedules, the circuit breaker and the anomaly seam — lives
//! in this crate, so the kernel side and the MCP proxy cannot disagree.

pub mod action;

pub use action::{Action, Decision, Kind, Mode, Object, RiskFactor, Verdict};
