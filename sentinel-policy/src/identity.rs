//! `[identity]`: the agent's identity and instruction files.
//!
//! ```toml
//! [identity]
//! protected = ["~/SOUL.md", "~/.claude/**"]   # the agent may not change them
//! watched = ["~/MEMORY.md"]                   # changes allowed and alerted
//! ```
//!
//! `protected` is not a second list of its own: it becomes one ordinary
//! rule, [`PROTECTED_RULE`] (kind `open`, `write = true`, deny, before every
//! other rule), so the engine, the kernel compiler and every kernel hook
//! that checks open-for-write (and, with the object-based hooks, rename,
//! link, unlink and truncate) enforce it like any other rule. Patterns must
//! be ones the kernel can hold (exact, `dir/**`, a trailing `*`, `~/`).
//! Both lists are also what the daemon baselines and watches for changes
//! by anyone, with a diff summary.

use crate::action::{Decision, Kind};
use crate::pattern::{kernel_paths, PathGlobs};
use crate::rule::{Matcher, Rule};

/// The name of the rule `protected` compiles into.
pub const PROTECTED_RULE: &str = "identity-protected";

/// The merged `[identity]` lists (patterns as written).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityFiles {
    pub protected: Vec<String>,
    pub watched: Vec<String>,
}

impl IdentityFiles {
    pub fn is_empty(&self) -> bool {
        self.protected.is_empty() && self.watched.is_empty()
    }

    /// The deny-write rule for `protected`, if there is anything to
    /// protect.
    pub(crate) fn protected_rule(&self, file_index: usize) -> Option<Rule> {
        if self.protected.is_empty() {
            return None;
        }
        let globs = PathGlobs::new(&self.protected).ok()?;
        Some(Rule {
            name: PROTECTED_RULE.to_string(),
            // Before everything: the engine's first match is this rule, and
            // the kernel compiler sees no earlier rule that could shadow it.
            priority: i64::MIN,
            action: Decision::Deny,
            kind: Kind::Open,
            enabled: true,
            risk: 90,
            reason: Some(
                "identity and instruction files are read-only for agents ([identity] protected)"
                    .to_string(),
            ),
            file: "[identity]".to_string(),
            file_index,
            position: 0,
            matcher: Matcher::Open {
                path: Some(globs),
                write: Some(true),
            },
            agent: None,
            rate_limit: None,
            schedule: None,
        })
    }
}

/// Why a pattern cannot be an identity entry, if it cannot.
pub(crate) fn check_pattern(pattern: &str) -> Result<(), String> {
    let absolute = match pattern.strip_prefix("~/") {
        Some(rest) => format!("/home/agent/{rest}"),
        None => pattern.to_string(),
    };
    if kernel_paths(&absolute).is_none() {
        return Err(format!(
            "identity file `{pattern}` must be an absolute or ~/ path, `dir/**` or end in `*` (the kernel refuses writes to it by path)"
        ));
    }
    PathGlobs::new(&[pattern.to_string()])
        .map(|_| ())
        .map_err(|e| format!("identity file `{pattern}`: {}", e.message))
}
