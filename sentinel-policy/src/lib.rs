//! The one verdict engine shared by kernel actions and MCP tool calls.
//!
//! Input is an [`Action`] (what an agent is trying to do); output is a
//! [`Verdict`] (allow, deny, ask or log-only, with the rule, a reason and a
//! risk score). Everything that decides — policy files, modes, quarantine,
//! rate limits, schedules, the circuit breaker and the anomaly seam — lives
//! in this crate, so the kernel side and the MCP proxy cannot disagree.
//!
//! - [`Policy::load_dir`] / [`Policy::embedded_defaults`] load policy files;
//! - [`Engine::evaluate`] / [`Engine::assess`] take verdicts;
//! - [`Engine::kernel_policy`] compiles what the kernel can decide alone;
//! - [`check_dir`] and [`cli`] back `sentinel policy check|test`.

pub mod action;
mod breaker;
mod canonical;
mod check;
pub mod cli;
mod engine;
mod error;
mod kernel;
mod pattern;
mod policy;
mod quarantine;
mod rate;
mod rule;
mod schedule;

pub use action::{Action, Decision, Kind, Mode, Object, RiskFactor, Verdict};
pub use breaker::{BreakerConfig, BreakerState};
pub use canonical::{canonical_json, open_flags_write};
pub use check::{check_dir, dry_run, homes_from_passwd, summarize, PolicySummary};
pub use engine::{AnomalyScore, AnomalyScorer, AnomalyThresholds, Assessment, Engine};
pub use error::PolicyError;
pub use kernel::{KernelPolicy, NetMatch, PathMatch, UserspaceOnly};
pub use pattern::KernelPath;
pub use policy::{
    parse_net, Approver, FindingAction, LockdownAllow, McpSettings, PinMode, Policy,
    UnknownMethods, DEFAULT_PRIORITY,
};
pub use quarantine::{QuarantineEntry, QuarantineTarget};
pub use rate::RateLimit;
pub use rule::{Matcher, Rule};
pub use schedule::Schedule;
