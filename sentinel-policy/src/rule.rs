//! A compiled policy rule and how it matches an [`Action`].

use std::cell::OnceCell;
use std::net::IpAddr;
use std::path::Path;
use std::time::SystemTime;

use ipnet::IpNet;
use regex::Regex;

use crate::action::{Action, Decision, Kind, Object};
use crate::canonical::canonical_json;
use crate::pattern::{NameGlobs, PathGlobs, PreparedPath};
use crate::rate::RateLimit;
use crate::schedule::Schedule;

/// One `[[rule]]`, compiled. Rules are kept in evaluation order.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub priority: i64,
    pub action: Decision,
    pub kind: Kind,
    pub enabled: bool,
    /// `risk = N`, or the default for the action.
    pub risk: u8,
    /// `reason = "..."`: the text a verdict carries.
    pub reason: Option<String>,
    /// The file the rule came from (its name) and its place in it.
    pub file: String,
    pub file_index: usize,
    pub position: usize,
    pub matcher: Matcher,
    pub agent: Option<NameGlobs>,
    pub rate_limit: Option<RateLimit>,
    pub schedule: Option<Schedule>,
}

/// The per-kind match keys; `None` means "any".
#[derive(Debug, Clone)]
pub enum Matcher {
    Exec {
        binary: Option<PathGlobs>,
        args: Option<Regex>,
    },
    Open {
        path: Option<PathGlobs>,
        write: Option<bool>,
    },
    Connect {
        addr: Option<Vec<IpNet>>,
        ports: Option<(u16, u16)>,
    },
    Mcp {
        tool: Option<NameGlobs>,
        server: Option<NameGlobs>,
        args: Option<Regex>,
    },
}

/// Default risk for a rule's action when it has no `risk` key.
pub fn default_risk(action: Decision) -> u8 {
    match action {
        Decision::Deny => 70,
        Decision::Ask => 50,
        Decision::LogOnly => 20,
        Decision::Allow => 0,
    }
}

/// An action plus what is derived from it lazily, once per evaluation.
pub struct Subject<'a> {
    pub action: &'a Action,
    pub home: Option<&'a Path>,
    joined_argv: OnceCell<String>,
    canonical_args: OnceCell<String>,
    prepared_path: OnceCell<Option<PreparedPath<'a>>>,
}

impl<'a> Subject<'a> {
    pub fn new(action: &'a Action, home: Option<&'a Path>) -> Self {
        Subject {
            action,
            home,
            joined_argv: OnceCell::new(),
            canonical_args: OnceCell::new(),
            prepared_path: OnceCell::new(),
        }
    }

    /// The exec binary or open path, prepared for glob matching.
    pub fn path(&self) -> Option<&PreparedPath<'a>> {
        self.prepared_path
            .get_or_init(|| match &self.action.object {
                Object::Exec { binary, .. } => Some(PreparedPath::new(binary, self.home)),
                Object::Open { path, .. } => Some(PreparedPath::new(path, self.home)),
                _ => None,
            })
            .as_ref()
    }

    /// Does the exec binary or open path match `globs`?
    pub fn path_matches(&self, globs: &PathGlobs) -> bool {
        self.path()
            .is_some_and(|path| globs.is_match_prepared(path))
    }

    fn joined_argv(&self) -> &str {
        self.joined_argv.get_or_init(|| match &self.action.object {
            Object::Exec { argv, .. } => argv.join(" "),
            _ => String::new(),
        })
    }

    fn canonical_args(&self) -> &str {
        self.canonical_args
            .get_or_init(|| match &self.action.object {
                Object::Mcp { args, .. } => canonical_json(args),
                _ => String::new(),
            })
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) match IPv4 CIDRs.
pub fn canonical_addr(addr: IpAddr) -> IpAddr {
    addr.to_canonical()
}

impl Rule {
    /// Does the rule match, schedule included? (Rate limits are the next
    /// step and are not checked here.)
    pub fn matches(&self, subject: &Subject<'_>, now: SystemTime) -> bool {
        self.matches_with(subject, now, None)
    }

    /// [`Rule::matches`] where the caller already knows whether the
    /// action's path matches this rule's `binary`/`path` globs (from the
    /// policy's combined index); `None` matches the globs here.
    pub(crate) fn matches_with(
        &self,
        subject: &Subject<'_>,
        now: SystemTime,
        path_hit: Option<bool>,
    ) -> bool {
        self.enabled
            && self.kind == subject.action.kind()
            && self.agent_matches(subject.action)
            && self.object_matches(subject, path_hit)
            && self.schedule.as_ref().is_none_or(|s| s.contains(now))
    }

    fn agent_matches(&self, action: &Action) -> bool {
        match &self.agent {
            None => true,
            Some(globs) => action
                .agent
                .as_deref()
                .is_some_and(|name| globs.is_match(name)),
        }
    }

    fn object_matches(&self, subject: &Subject<'_>, path_hit: Option<bool>) -> bool {
        let path_matches =
            |globs: &PathGlobs| path_hit.unwrap_or_else(|| subject.path_matches(globs));
        match (&self.matcher, &subject.action.object) {
            (Matcher::Exec { binary, args }, Object::Exec { .. }) => {
                binary.as_ref().is_none_or(path_matches)
                    && args
                        .as_ref()
                        .is_none_or(|r| r.is_match(subject.joined_argv()))
            }
            (Matcher::Open { path, write }, Object::Open { write: w, .. }) => {
                path.as_ref().is_none_or(path_matches) && write.is_none_or(|want| want == *w)
            }
            (Matcher::Connect { addr, ports }, Object::Connect { addr: a, port }) => {
                let a = canonical_addr(*a);
                addr.as_ref()
                    .is_none_or(|nets| nets.iter().any(|n| n.contains(&a)))
                    && ports.is_none_or(|(lo, hi)| (lo..=hi).contains(port))
            }
            (
                Matcher::Mcp { tool, server, args },
                Object::Mcp {
                    tool: t, server: s, ..
                },
            ) => {
                tool.as_ref().is_none_or(|g| g.is_match(t))
                    && server.as_ref().is_none_or(|g| g.is_match(s))
                    && args
                        .as_ref()
                        .is_none_or(|r| r.is_match(subject.canonical_args()))
            }
            _ => false,
        }
    }
}
