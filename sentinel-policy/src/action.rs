//! The engine's vocabulary: actions in, verdicts out, and the four modes.
//!
//! These types are the contract between the observer, the MCP proxy, the
//! engine, the audit trail and the exporters; their serde names are the
//! field values of the JSONL event stream.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// The kind of action a rule matches (`kind = "..."` in a policy file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Exec,
    Open,
    Connect,
    Mcp,
}

/// What the agent is acting on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Object {
    /// `binary` is the resolved executable path; `argv` the arguments
    /// including argv[0].
    Exec {
        binary: String,
        argv: Vec<String>,
    },
    /// `path` is absolute where the observer could resolve it; `write` is
    /// true for opens that write, create or truncate.
    Open {
        path: String,
        write: bool,
    },
    Connect {
        addr: IpAddr,
        port: u16,
    },
    /// `args` are the tool call's JSON arguments as the client sent them.
    Mcp {
        server: String,
        tool: String,
        args: serde_json::Value,
    },
}

/// One thing an agent tries to do, as the engine sees it. Identity fields
/// come from the kernel (UID, process tree) or the proxy's own
/// configuration, never from a message the agent wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// The agent's name (`--agent NAME=UID`), if it has one.
    pub agent: Option<String>,
    pub uid: u32,
    pub pid: u32,
    pub object: Object,
}

impl Action {
    pub fn kind(&self) -> Kind {
        match self.object {
            Object::Exec { .. } => Kind::Exec,
            Object::Open { .. } => Kind::Open,
            Object::Connect { .. } => Kind::Connect,
            Object::Mcp { .. } => Kind::Mcp,
        }
    }
}

/// A verdict's action (`action = "..."` in a rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    Allow,
    Deny,
    Ask,
    LogOnly,
}

/// The daemon-wide mode; switched at runtime with `sentinel mode set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Learning: unmatched actions allowed, no alerts; deny rules apply.
    SilentAllow,
    /// Unmatched actions allowed and alerted.
    #[default]
    Alert,
    /// Production: unmatched actions denied.
    SilentDeny,
    /// Emergency: everything denied except the health allow-list.
    Lockdown,
}

/// One contribution to a verdict's risk (an anomaly component, say).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RiskFactor {
    pub name: String,
    pub score: u8,
}

/// The engine's answer for one action. `enforced` is filled in by the
/// enforcement stage: true only when the kernel (or the proxy) actually
/// carried the verdict out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub action: Decision,
    /// The rule that decided, or a step name such as `quarantine`,
    /// `lockdown`, `mode-default`, `rate-limit`, `circuit-breaker`.
    pub rule: Option<String>,
    pub reason: String,
    /// 0–100.
    pub risk: u8,
    #[serde(default)]
    pub enforced: bool,
    /// True when the mode says this verdict should raise an alert.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub alert: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub factors: Vec<RiskFactor>,
}
