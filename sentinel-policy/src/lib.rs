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
//! - [`guarded_targets`] says where on disk the file rules point (for the
//!   fanotify guard);
//! - [`check_dir`] and [`cli`] back `sentinel policy check|test`;
//! - [`identity`], [`sudo`] and [`playbook`]: the agent guards' sections
//!   (identity files and the sudo gate compile into ordinary rules).

pub mod action;
mod breaker;
mod canonical;
mod check;
pub mod cli;
mod engine;
mod error;
mod guarded;
pub mod identity;
mod kernel;
mod pattern;
pub mod playbook;
mod policy;
mod quarantine;
mod rate;
mod rule;
mod schedule;
pub mod sudo;

pub use action::{Action, Decision, Kind, Mode, Object, RiskFactor, Verdict};
pub use breaker::{BreakerConfig, BreakerState};
pub use canonical::{canonical_json, open_flags_write};
pub use check::{check_dir, dry_run, homes_from_passwd, summarize, PolicySummary};
pub use engine::{AnomalyScore, AnomalyScorer, AnomalyThresholds, Assessment, Engine};
pub use error::PolicyError;
pub use guarded::{guarded_targets, unchangeable_patterns, GuardScope, GuardTarget};
pub use identity::{IdentityFiles, PROTECTED_RULE};
pub use kernel::{KernelPolicy, NetMatch, PathMatch, UserspaceOnly};
pub use pattern::{expand_braces, KernelPath};
pub use playbook::{Approval, OnTimeout, Playbook, ResponseAction};
pub use policy::{parse_net, LockdownAllow, Policy, DEFAULT_PRIORITY};
pub use quarantine::{QuarantineEntry, QuarantineTarget};
pub use rate::RateLimit;
pub use rule::{Matcher, Rule};
pub use schedule::Schedule;
pub use sudo::{GateVerdict, SudoGate, GATE_RULE};
