//! `[[playbook]]`: responses to alerts.
//!
//! ```toml
//! [[playbook]]
//! name = "contain-identity-tamper"
//! on = { severity = "critical", category = ["identity"], agent = "claude*" }
//! do = "suspend"          # suspend | kill | cut-network | quarantine-agent | lockdown
//! approval = "operator"   # auto (default) | operator
//! timeout_seconds = 300   # operator approval: how long to wait
//! on_timeout = "skip"     # skip (default) | run
//! allow = ["127.0.0.1/32"]  # cut-network: destinations still allowed
//! ```
//!
//! `on.severity` is a minimum (`warning` also matches `critical`);
//! `category` and `agent` are globs. Every playbook whose `on` matches an
//! alert runs; the daemon carries responses out, records each step in the
//! audit chain with the alert that caused it, and `sentinel respond undo
//! ID` reverses one.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::pattern::NameGlobs;

/// What a playbook does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResponseAction {
    /// Stop the agent's processes (SIGSTOP; resumable).
    Suspend,
    /// Kill the agent's processes.
    Kill,
    /// Refuse the agent's connects in the kernel, except `allow`.
    CutNetwork,
    /// Deny the agent's MCP tools and kernel actions (a quarantine).
    QuarantineAgent,
    /// Switch the daemon to lockdown.
    Lockdown,
}

impl ResponseAction {
    pub fn name(self) -> &'static str {
        match self {
            ResponseAction::Suspend => "suspend",
            ResponseAction::Kill => "kill",
            ResponseAction::CutNetwork => "cut-network",
            ResponseAction::QuarantineAgent => "quarantine-agent",
            ResponseAction::Lockdown => "lockdown",
        }
    }

    /// Does it act on one agent (and so need the alert's agent)?
    pub fn targets_agent(self) -> bool {
        !matches!(self, ResponseAction::Lockdown)
    }
}

/// `approval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approval {
    /// Carried out at once (reactive).
    #[default]
    Auto,
    /// Waits for `sentinel respond approve ID` (a gate).
    Operator,
}

/// `on_timeout`, for operator-gated playbooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnTimeout {
    #[default]
    Skip,
    Run,
}

/// Alert severities, in order.
pub fn severity_rank(severity: &str) -> u8 {
    match severity {
        "critical" => 3,
        "warning" => 2,
        "info" => 1,
        _ => 0,
    }
}

/// One compiled `[[playbook]]`.
#[derive(Debug, Clone)]
pub struct Playbook {
    pub name: String,
    pub min_severity: Option<String>,
    pub categories: Option<NameGlobs>,
    pub agents: Option<NameGlobs>,
    pub action: ResponseAction,
    pub approval: Approval,
    pub timeout_seconds: u64,
    pub on_timeout: OnTimeout,
    pub allow: Vec<IpNet>,
}

impl Playbook {
    /// Does an alert with this severity, category and agent trigger it?
    pub fn matches(&self, severity: &str, category: &str, agent: Option<&str>) -> bool {
        let severe = self
            .min_severity
            .as_deref()
            .is_none_or(|min| severity_rank(severity) >= severity_rank(min));
        let category_ok = self
            .categories
            .as_ref()
            .is_none_or(|g| g.is_match(category));
        let agent_ok = match &self.agents {
            None => true,
            Some(g) => agent.is_some_and(|a| g.is_match(a)),
        };
        severe && category_ok && agent_ok
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPlaybook {
    pub name: String,
    #[serde(default)]
    pub on: RawTrigger,
    #[serde(rename = "do")]
    pub action: ResponseAction,
    #[serde(default)]
    pub approval: Approval,
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    #[serde(default)]
    pub allow: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    pub severity: Option<String>,
    pub category: Option<crate::policy::StrListPub>,
    pub agent: Option<crate::policy::StrListPub>,
}

impl RawPlaybook {
    pub(crate) fn compile(self) -> Result<Playbook, String> {
        let name = self.name.trim().to_string();
        if name.is_empty() {
            return Err("playbook name is empty".into());
        }
        if let Some(s) = &self.on.severity {
            if severity_rank(s) == 0 {
                return Err(format!(
                    "playbook `{name}`: severity `{s}` is not info, warning or critical"
                ));
            }
        }
        let globs = |list: Option<crate::policy::StrListPub>| -> Result<Option<NameGlobs>, String> {
            match list {
                None => Ok(None),
                Some(l) => NameGlobs::new(&l.0)
                    .map(Some)
                    .map_err(|e| format!("playbook `{name}`: `{}`: {}", l.0[e.index], e.message)),
            }
        };
        let categories = globs(self.on.category)?;
        let agents = globs(self.on.agent)?;
        let mut allow = Vec::new();
        for text in &self.allow {
            allow.push(crate::policy::parse_net(text).ok_or_else(|| {
                format!("playbook `{name}`: `{text}` is not an IP address or CIDR")
            })?);
        }
        if !allow.is_empty() && self.action != ResponseAction::CutNetwork {
            return Err(format!(
                "playbook `{name}`: `allow` only applies to do = \"cut-network\""
            ));
        }
        Ok(Playbook {
            name,
            min_severity: self.on.severity,
            categories,
            agents,
            action: self.action,
            approval: self.approval,
            timeout_seconds: self.timeout_seconds.unwrap_or(300).max(1),
            on_timeout: self.on_timeout,
            allow,
        })
    }
}
