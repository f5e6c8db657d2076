//! `sentinel policy check` and `sentinel policy test` as library functions:
//! validate a policy directory and summarise it, or evaluate one action
//! against a policy without a daemon.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::action::{Action, Decision, Mode, Verdict};
use crate::engine::Engine;
use crate::error::PolicyError;
use crate::kernel::{compile, KernelPolicy};
use crate::policy::{kind_name, Policy};
use crate::quarantine::Quarantine;

/// What `sentinel policy check` reports about a valid policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PolicySummary {
    pub files: Vec<String>,
    pub rules: usize,
    pub enabled: usize,
    /// Enabled rules per kind.
    pub by_kind: BTreeMap<String, usize>,
    /// Enabled rules per action.
    pub by_action: BTreeMap<String, usize>,
    /// The kernel compilation in `alert` mode with no quarantine, for the
    /// homes given (none for [`check_dir`]: `~/` patterns compile per
    /// watched UID when the daemon runs).
    pub kernel: KernelPolicy,
}

impl fmt::Display for PolicySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "policy OK: {} rules ({} enabled) in {} file(s)",
            self.rules,
            self.enabled,
            self.files.len()
        )?;
        for file in &self.files {
            writeln!(f, "  {file}")?;
        }
        let counts = |map: &BTreeMap<String, usize>| {
            map.iter()
                .map(|(name, count)| format!("{name} {count}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "by kind: {}", counts(&self.by_kind))?;
        writeln!(f, "by action: {}", counts(&self.by_action))?;
        writeln!(
            f,
            "kernel: {} exec, {} open, {} connect entries",
            self.kernel.exec.len(),
            self.kernel.open.len(),
            self.kernel.connect.len()
        )?;
        if !self.kernel.userspace_only.is_empty() {
            writeln!(f, "decided in userspace:")?;
            for entry in &self.kernel.userspace_only {
                writeln!(f, "  {}: {}", entry.rule, entry.why)?;
            }
        }
        Ok(())
    }
}

/// Loads and validates `dir`; the error names file, line and column.
pub fn check_dir(dir: &Path) -> Result<PolicySummary, PolicyError> {
    let policy = Policy::load_dir(dir)?;
    Ok(summarize(&policy, &HashMap::new()))
}

/// Summarises a loaded policy, compiling `~/` patterns for `homes`.
pub fn summarize(policy: &Policy, homes: &HashMap<u32, PathBuf>) -> PolicySummary {
    let mut by_kind = BTreeMap::new();
    let mut by_action = BTreeMap::new();
    let enabled: Vec<_> = policy.rules().iter().filter(|rule| rule.enabled).collect();
    for rule in &enabled {
        *by_kind.entry(kind_name(rule.kind).to_string()).or_insert(0) += 1;
        let action = match rule.action {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Ask => "ask",
            Decision::LogOnly => "log-only",
        };
        *by_action.entry(action.to_string()).or_insert(0) += 1;
    }
    PolicySummary {
        files: policy.files().to_vec(),
        rules: policy.rules().len(),
        enabled: enabled.len(),
        by_kind,
        by_action,
        kernel: compile(
            policy,
            Mode::Alert,
            &Quarantine::default(),
            homes,
            SystemTime::UNIX_EPOCH,
        ),
    }
}

/// Evaluates one action against `policy` in `mode`, as a fresh engine
/// would (no quarantine, no rate-limit history).
pub fn dry_run(
    policy: Policy,
    action: &Action,
    mode: Mode,
    homes: HashMap<u32, PathBuf>,
    now: SystemTime,
) -> Verdict {
    let mut engine = Engine::new(policy);
    engine.set_mode(mode);
    engine.set_homes(homes);
    engine.evaluate(action, now)
}

/// Home directories by UID from a passwd(5) file; malformed lines are
/// skipped.
pub fn homes_from_passwd(path: &Path) -> Result<HashMap<u32, PathBuf>, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_passwd(&text))
}

fn parse_passwd(text: &str) -> HashMap<u32, PathBuf> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let uid = fields.get(2)?.parse().ok()?;
            let home = fields.get(5).filter(|home| home.starts_with('/'))?;
            Some((uid, PathBuf::from(home)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_give_homes() {
        let homes = parse_passwd(
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nagent:x:1001:1001::/home/agent:/bin/sh\nnohome:x:7:7:::/bin/sh\n",
        );
        assert_eq!(homes.len(), 2);
        assert_eq!(homes[&1001], PathBuf::from("/home/agent"));
        assert_eq!(homes[&0], PathBuf::from("/root"));
    }
}
