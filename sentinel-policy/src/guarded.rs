//! Where the policy's file rules point on disk: for every deny or ask rule
//! on opens or execs (and every quarantined path or binary), the literal
//! part of each glob, as the object or directory a file-system guard
//! (fanotify permission events) should watch. The guard then asks the
//! engine about each access, so this only says *where* to look; what is
//! refused stays the rules'.
//!
//! A literal path is the object itself; `dir/**` is everything below `dir`;
//! a glob only in its last component (`~/.ssh/*.pem`, `/root/.ssh/id_*`) is
//! the entries of its directory. A glob with wildcards in a directory
//! component (`**/nc`, `/home/*/.ssh/x`) names no place to watch and is
//! left to the other mechanisms, as is a directory too broad to guard
//! (`/`, or one level below it like `/etc`): watching it would make every
//! unwatched process pay for each open there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::action::{Decision, Kind};
use crate::pattern::{expand_braces, expand_home};
use crate::policy::Policy;
use crate::quarantine::{Quarantine, QuarantineTarget};
use crate::rule::Matcher;

/// Which part of the file system a target covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GuardScope {
    /// The file or directory itself.
    Object,
    /// The entries directly in this directory.
    Children,
    /// Everything below this directory.
    Subtree,
}

/// A place to guard and what to guard there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardTarget {
    pub path: PathBuf,
    pub scope: GuardScope,
    /// Opens are decided there.
    pub open: bool,
    /// Execs are decided there.
    pub exec: bool,
    /// Some rule there refuses every open, not only writes (reads and
    /// content access matter too).
    pub reads: bool,
    /// The rules behind it, for reports.
    pub rules: Vec<String>,
}

const GLOB_META: &[char] = &['*', '?', '[', ']', '{', '}'];

/// Splits an absolute glob (home already expanded, no braces) into the
/// place to guard.
fn place(pattern: &str) -> Option<(PathBuf, GuardScope)> {
    if !pattern.starts_with('/') || pattern.contains('\\') {
        return None;
    }
    let path = Path::new(pattern);
    if !pattern.contains(GLOB_META) {
        return Some((path.to_path_buf(), GuardScope::Object));
    }
    let (dir, scope) = match pattern.strip_suffix("/**") {
        Some(dir) => (dir, GuardScope::Subtree),
        None => {
            let (dir, last) = pattern.rsplit_once('/')?;
            if last.contains("**") {
                return None;
            }
            (dir, GuardScope::Children)
        }
    };
    if dir.contains(GLOB_META) || Path::new(dir).components().count() <= 2 {
        // Wildcards in a directory name, or `/` and `/etc`-like levels.
        return None;
    }
    Some((PathBuf::from(dir), scope))
}

/// The places the policy's deny and ask file rules (and the quarantine)
/// point at, for the watched homes given. Sorted and merged: one target
/// per place and scope.
pub fn guarded_targets(
    policy: &Policy,
    quarantine: &Quarantine,
    homes: &[(u32, PathBuf)],
    now: std::time::SystemTime,
) -> Vec<GuardTarget> {
    let mut out: BTreeMap<(PathBuf, GuardScope), GuardTarget> = BTreeMap::new();
    let mut add = |pattern: &str, kind: Kind, reads: bool, rule: &str| {
        let forms: Vec<String> = if pattern.starts_with("~/") {
            homes
                .iter()
                .filter_map(|(_, home)| expand_home(pattern, Some(home)))
                .collect()
        } else {
            vec![pattern.to_string()]
        };
        for form in forms {
            for alternative in expand_braces(&form).unwrap_or_else(|| vec![form.clone()]) {
                let Some((path, scope)) = place(&alternative) else {
                    continue;
                };
                let target = out.entry((path.clone(), scope)).or_insert(GuardTarget {
                    path,
                    scope,
                    open: false,
                    exec: false,
                    reads: false,
                    rules: Vec::new(),
                });
                target.open |= kind == Kind::Open;
                target.exec |= kind == Kind::Exec;
                target.reads |= reads;
                if !target.rules.iter().any(|r| r == rule) {
                    target.rules.push(rule.to_string());
                }
            }
        }
    };
    for rule in policy.rules() {
        if !rule.enabled || !matches!(rule.action, Decision::Deny | Decision::Ask) {
            continue;
        }
        let (globs, kind, reads) = match &rule.matcher {
            Matcher::Open { path, write } => (path.as_ref(), Kind::Open, *write != Some(true)),
            Matcher::Exec { binary, .. } => (binary.as_ref(), Kind::Exec, true),
            _ => continue,
        };
        let Some(globs) = globs else { continue };
        for pattern in globs.sources() {
            add(pattern, kind, reads, &rule.name);
        }
    }
    for entry in quarantine.entries().filter(|e| e.is_active(now)) {
        match &entry.target {
            QuarantineTarget::Path(p) => {
                add(p, Kind::Open, true, "quarantine");
                add(p, Kind::Exec, true, "quarantine");
            }
            QuarantineTarget::Binary(p) => add(p, Kind::Exec, true, "quarantine"),
            _ => {}
        }
    }
    out.into_values().collect()
}

/// The patterns of files agents must not change: every enabled deny or ask
/// rule on opens (a change is a write to its path). Where the kernel can
/// only kill after a change took effect, the daemon keeps copies of these
/// files to put back what the agent changed.
pub fn unchangeable_patterns(policy: &Policy) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in policy.rules() {
        if !rule.enabled || !matches!(rule.action, Decision::Deny | Decision::Ask) {
            continue;
        }
        if let Matcher::Open {
            path: Some(globs), ..
        } = &rule.matcher
        {
            for pattern in globs.sources() {
                if !out.contains(pattern) {
                    out.push(pattern.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_of_globs() {
        assert_eq!(
            place("/etc/shadow"),
            Some((PathBuf::from("/etc/shadow"), GuardScope::Object))
        );
        assert_eq!(
            place("/etc/cron.d/**"),
            Some((PathBuf::from("/etc/cron.d"), GuardScope::Subtree))
        );
        assert_eq!(
            place("/home/a/.ssh/*.pem"),
            Some((PathBuf::from("/home/a/.ssh"), GuardScope::Children))
        );
        assert_eq!(
            place("/root/.ssh/id_*"),
            Some((PathBuf::from("/root/.ssh"), GuardScope::Children))
        );
        // Nowhere to look, or too broad to watch.
        assert_eq!(place("**/{kill,pkill}"), None);
        assert_eq!(place("/home/*/.ssh/id_rsa"), None);
        assert_eq!(place("/etc/**"), None);
        assert_eq!(place("/**"), None);
        assert_eq!(place("/x/**/y"), None);
        assert_eq!(place("relative/path"), None);
    }

    #[test]
    fn the_default_policy_guards_the_agents_secrets_and_persistence_points() {
        let policy = Policy::embedded_defaults();
        let homes = vec![(2001, PathBuf::from("/home/agent"))];
        let targets = guarded_targets(
            &policy,
            &Quarantine::default(),
            &homes,
            std::time::SystemTime::now(),
        );
        let find = |p: &str, scope| {
            targets
                .iter()
                .find(|t| t.path == Path::new(p) && t.scope == scope)
                .unwrap_or_else(|| panic!("{p} {scope:?} not guarded: {targets:#?}"))
        };
        let key = find("/home/agent/.ssh/id_ed25519", GuardScope::Object);
        assert!(key.open && key.reads);
        let keys = find("/home/agent/.ssh", GuardScope::Children);
        assert!(keys.reads, "*.pem and *.key are read-protected");
        let auth = find("/home/agent/.ssh/authorized_keys", GuardScope::Object);
        assert!(
            auth.open && !auth.reads,
            "authorized_keys is write-protected only"
        );
        find("/etc/cron.d", GuardScope::Subtree);
        find("/usr/local/bin/chisel", GuardScope::Object);
        // Sorted and merged: one target per place.
        let mut places: Vec<_> = targets.iter().map(|t| (&t.path, t.scope)).collect();
        places.dedup();
        assert_eq!(places.len(), targets.len());
    }
}
