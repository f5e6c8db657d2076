//! Quarantine: operator-imposed blocks on an agent, a binary, a path, a
//! host or a tool, with an optional expiry. A quarantine beats every rule.

use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::action::Object;
use crate::error::PolicyError;
use crate::pattern::{NameGlobs, PathGlobs};
use crate::rule::{canonical_addr, Subject};

/// What is quarantined. Globs follow rule syntax: `Binary` and `Path` are
/// path globs (`~/` allowed), `Agent` and `Tool` name globs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "pattern", rename_all = "kebab-case")]
pub enum QuarantineTarget {
    /// Every action of matching agents.
    Agent(String),
    /// Execs of matching binaries.
    Binary(String),
    /// Opens of matching paths, and execs of them.
    Path(String),
    /// Connects to addresses in the network.
    Host(IpNet),
    /// MCP calls of matching tools, on any server.
    Tool(String),
}

impl std::fmt::Display for QuarantineTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuarantineTarget::Agent(p) => write!(f, "agent {p}"),
            QuarantineTarget::Binary(p) => write!(f, "binary {p}"),
            QuarantineTarget::Path(p) => write!(f, "path {p}"),
            QuarantineTarget::Host(net) => write!(f, "host {net}"),
            QuarantineTarget::Tool(p) => write!(f, "tool {p}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    pub target: QuarantineTarget,
    /// `None`: until lifted.
    pub expires: Option<SystemTime>,
    pub reason: String,
}

impl QuarantineEntry {
    pub fn is_active(&self, now: SystemTime) -> bool {
        self.expires.is_none_or(|expires| now < expires)
    }
}

#[derive(Debug, Clone)]
enum CompiledTarget {
    Agent(NameGlobs),
    Binary(PathGlobs),
    Path(PathGlobs),
    Host(IpNet),
    Tool(NameGlobs),
}

/// The engine's quarantine list.
#[derive(Debug, Default, Clone)]
pub struct Quarantine {
    entries: Vec<(QuarantineEntry, CompiledTarget)>,
}

impl Quarantine {
    /// Adds `entry`, replacing an entry with the same target.
    pub fn add(&mut self, entry: QuarantineEntry) -> Result<(), PolicyError> {
        let compiled = compile(&entry.target)?;
        self.lift(&entry.target);
        self.entries.push((entry, compiled));
        Ok(())
    }

    /// Removes the entry for `target`; false when there was none.
    pub fn lift(&mut self, target: &QuarantineTarget) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(entry, _)| &entry.target != target);
        self.entries.len() != before
    }

    /// Drops expired entries.
    pub fn prune(&mut self, now: SystemTime) {
        self.entries.retain(|(entry, _)| entry.is_active(now));
    }

    pub fn entries(&self) -> impl Iterator<Item = &QuarantineEntry> {
        self.entries.iter().map(|(entry, _)| entry)
    }

    /// The first active entry that covers the action.
    pub fn find(&self, subject: &Subject<'_>, now: SystemTime) -> Option<&QuarantineEntry> {
        self.entries
            .iter()
            .find(|(entry, target)| entry.is_active(now) && covers(target, subject))
            .map(|(entry, _)| entry)
    }
}

fn covers(target: &CompiledTarget, subject: &Subject<'_>) -> bool {
    let action = subject.action;
    match (target, &action.object) {
        (CompiledTarget::Agent(globs), _) => action
            .agent
            .as_deref()
            .is_some_and(|name| globs.is_match(name)),
        (CompiledTarget::Binary(globs), Object::Exec { .. }) => subject.path_matches(globs),
        (CompiledTarget::Path(globs), Object::Open { .. } | Object::Exec { .. }) => {
            subject.path_matches(globs)
        }
        (CompiledTarget::Host(net), Object::Connect { addr, .. }) => {
            net.contains(&canonical_addr(*addr))
        }
        (CompiledTarget::Tool(globs), Object::Mcp { tool, .. }) => globs.is_match(tool),
        _ => false,
    }
}

fn compile(target: &QuarantineTarget) -> Result<CompiledTarget, PolicyError> {
    let invalid = |pattern: &str, message: String| PolicyError::Quarantine {
        pattern: pattern.to_string(),
        message,
    };
    let one = |pattern: &str| vec![pattern.to_string()];
    Ok(match target {
        QuarantineTarget::Agent(p) => {
            CompiledTarget::Agent(NameGlobs::new(&one(p)).map_err(|e| invalid(p, e.message))?)
        }
        QuarantineTarget::Tool(p) => {
            CompiledTarget::Tool(NameGlobs::new(&one(p)).map_err(|e| invalid(p, e.message))?)
        }
        QuarantineTarget::Binary(p) => {
            CompiledTarget::Binary(PathGlobs::new(&one(p)).map_err(|e| invalid(p, e.message))?)
        }
        QuarantineTarget::Path(p) => {
            CompiledTarget::Path(PathGlobs::new(&one(p)).map_err(|e| invalid(p, e.message))?)
        }
        QuarantineTarget::Host(net) => CompiledTarget::Host(net.trunc()),
    })
}
