//! Compiling the policy for the kernel: the part of the rules, quarantine
//! and mode that the BPF programs can decide by map lookups alone.
//!
//! The kernel can match an exec binary or an open path exactly or by byte
//! prefix (an LPM trie), optionally only for opens that write, and a
//! connect by CIDR and port range; plus a lockdown flag with allow-lists.
//! Everything else (regexes, agent names, rate limits, schedules, inner
//! wildcards) stays in userspace and is listed in
//! [`KernelPolicy::userspace_only`] for `sentinel status`.
//!
//! First match wins in userspace, so a deny or ask rule is compiled only
//! when no earlier enabled rule of the same kind with a different action
//! could match an overlapping action; when in doubt it is not compiled.
//! Among compiled entries, overlapping ones therefore always carry the same
//! decision, so whichever the kernel finds first (exact, longest prefix)
//! gives the userspace answer.
//!
//! Entries fully covered by an earlier entry with the same decision are
//! dropped, so the kernel's most specific match (exact, then longest
//! prefix) names the rule userspace would name; where write-only and
//! any-open entries overlap the decision still agrees but the name may
//! not, so audit records should take rule, reason and risk from
//! [`crate::Engine::evaluate`].
//!
//! The kernel checks its deny/ask maps first and the lockdown allow-lists
//! after: quarantine entries (always compiled when expressible) beat the
//! allow-list, as in userspace. In lockdown, rules are ignored, so only
//! quarantine entries are in the maps.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Serialize;

use crate::action::{Decision, Kind, Mode};
use crate::pattern::{expand_home, kernel_paths, may_overlap, KernelPath, PathGlobs};
use crate::policy::Policy;
use crate::quarantine::{Quarantine, QuarantineTarget};
use crate::rule::{Matcher, Rule};

/// What the kernel decides on its own.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KernelPolicy {
    /// Exec binaries, by resolved path.
    pub exec: Vec<PathMatch>,
    /// Open paths.
    pub open: Vec<PathMatch>,
    pub connect: Vec<NetMatch>,
    pub lockdown: bool,
    /// In lockdown: exec binaries still allowed.
    pub lockdown_exec_allow: Vec<KernelPath>,
    /// In lockdown: paths still allowed to be opened for reading (opens
    /// that write are always denied in lockdown).
    pub lockdown_open_allow: Vec<KernelPath>,
    /// In lockdown: destinations still allowed (any port).
    pub lockdown_connect_allow: Vec<IpNet>,
    /// Deny/ask rules (or parts of them) the kernel cannot decide, and why.
    pub userspace_only: Vec<UserspaceOnly>,
    /// When the earliest quarantine entry in these maps expires: compile
    /// again then.
    pub next_expiry: Option<SystemTime>,
}

/// An exec or open match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathMatch {
    pub path: String,
    /// Every path starting with `path` (bytes), rather than `path` exactly.
    pub prefix: bool,
    /// Opens only: match only opens whose flags write (see
    /// [`crate::open_flags_write`]).
    pub write_only: bool,
    /// Set when the path came from a `~/` pattern: it applies to this
    /// watched UID only. A kernel map without a UID in its key may apply it
    /// to every watched UID, which is stricter than userspace, never looser.
    pub uid: Option<u32>,
    /// `Deny` or `Ask`.
    pub decision: Decision,
    /// The rule name, or `quarantine`.
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetMatch {
    pub net: IpNet,
    /// Inclusive.
    pub ports: (u16, u16),
    pub decision: Decision,
    pub rule: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserspaceOnly {
    /// A rule name, `quarantine` or `mode-default`.
    pub rule: String,
    pub why: String,
}

/// Compiles `policy` under `mode` with `quarantine`, for the watched UIDs
/// whose homes are given.
pub fn compile(
    policy: &Policy,
    mode: Mode,
    quarantine: &Quarantine,
    homes: &HashMap<u32, PathBuf>,
    now: SystemTime,
) -> KernelPolicy {
    let mut homes: Vec<(u32, &Path)> = homes
        .iter()
        .map(|(uid, home)| (*uid, home.as_path()))
        .collect();
    homes.sort();
    let mut compiler = Compiler {
        out: KernelPolicy {
            lockdown: mode == Mode::Lockdown,
            ..KernelPolicy::default()
        },
        homes,
        quarantined_paths: Vec::new(),
        quarantined_nets: Vec::new(),
    };
    compiler.quarantine(quarantine, now);
    if mode == Mode::Lockdown {
        let allow = policy.lockdown();
        compiler.out.lockdown_exec_allow = allow.exec.clone();
        compiler.out.lockdown_open_allow = allow.open.clone();
        compiler.out.lockdown_connect_allow = allow.connect.clone();
    } else {
        compiler.rules(policy.rules());
        if mode == Mode::SilentDeny {
            compiler.userspace(
                "mode-default",
                "silent-deny denies unmatched actions from userspace",
            );
        }
    }
    compiler.dedupe();
    compiler.out
}

struct Compiler<'h> {
    out: KernelPolicy,
    homes: Vec<(u32, &'h Path)>,
    /// Kernel forms of quarantined binaries and paths, to keep compiled
    /// `ask` entries from overlapping a quarantine's deny.
    quarantined_paths: Vec<KernelPath>,
    quarantined_nets: Vec<IpNet>,
}

impl Compiler<'_> {
    fn userspace(&mut self, rule: &str, why: impl Into<String>) {
        self.out.userspace_only.push(UserspaceOnly {
            rule: rule.to_string(),
            why: why.into(),
        });
    }

    /// `(kernel path, uid)` pairs for one pattern, `~/` expanded per home;
    /// `None` when the kernel cannot express it.
    fn expand(&self, pattern: &str) -> Option<Vec<(KernelPath, Option<u32>)>> {
        let mut out = Vec::new();
        if pattern.starts_with("~/") {
            for (uid, home) in &self.homes {
                let expanded = expand_home(pattern, Some(home))?;
                for form in kernel_paths(&expanded)? {
                    out.push((form, Some(*uid)));
                }
            }
        } else {
            for form in kernel_paths(pattern)? {
                out.push((form, None));
            }
        }
        Some(out)
    }

    fn quarantine(&mut self, quarantine: &Quarantine, now: SystemTime) {
        for entry in quarantine.entries().filter(|entry| entry.is_active(now)) {
            if let Some(expires) = entry.expires {
                self.out.next_expiry = Some(match self.out.next_expiry {
                    Some(earliest) => earliest.min(expires),
                    None => expires,
                });
            }
            let (pattern, exec, open) = match &entry.target {
                QuarantineTarget::Binary(pattern) => (pattern, true, false),
                QuarantineTarget::Path(pattern) => (pattern, true, true),
                QuarantineTarget::Host(net) => {
                    self.quarantined_nets.push(*net);
                    self.out.connect.push(NetMatch {
                        net: net.trunc(),
                        ports: (0, u16::MAX),
                        decision: Decision::Deny,
                        rule: "quarantine".into(),
                    });
                    continue;
                }
                QuarantineTarget::Agent(pattern) => {
                    self.userspace(
                        "quarantine",
                        format!("agent `{pattern}`: agent names are resolved in userspace"),
                    );
                    continue;
                }
                // MCP calls are always decided in userspace.
                QuarantineTarget::Tool(_) => continue,
            };
            let Some(forms) = self.expand(pattern) else {
                self.userspace(
                    "quarantine",
                    format!("`{pattern}`: wildcards the kernel cannot match"),
                );
                continue;
            };
            for (form, uid) in forms {
                self.quarantined_paths.push(form.clone());
                let entry = PathMatch {
                    path: form.path,
                    prefix: form.prefix,
                    write_only: false,
                    uid,
                    decision: Decision::Deny,
                    rule: "quarantine".into(),
                };
                if exec {
                    self.out.exec.push(entry.clone());
                }
                if open {
                    self.out.open.push(entry);
                }
            }
        }
    }

    fn rules(&mut self, rules: &[Rule]) {
        for (index, rule) in rules.iter().enumerate() {
            let compilable_action = matches!(rule.action, Decision::Deny | Decision::Ask);
            if !rule.enabled || rule.kind == Kind::Mcp || !compilable_action {
                continue;
            }
            if let Some(why) = needs_userspace(rule) {
                self.userspace(&rule.name, why);
                continue;
            }
            let earlier: Vec<&Rule> = rules[..index]
                .iter()
                .filter(|e| e.enabled && e.kind == rule.kind && e.action != rule.action)
                .collect();
            match &rule.matcher {
                Matcher::Exec { binary, .. } => {
                    self.path_rule(rule, binary.as_ref(), false, &earlier)
                }
                Matcher::Open { path, write } => {
                    self.path_rule(rule, path.as_ref(), *write == Some(true), &earlier)
                }
                Matcher::Connect { addr, ports } => self.connect_rule(rule, addr, *ports, &earlier),
                Matcher::Mcp { .. } => {}
            }
        }
    }

    fn path_rule(
        &mut self,
        rule: &Rule,
        globs: Option<&PathGlobs>,
        write_only: bool,
        earlier: &[&Rule],
    ) {
        let any = ["/**".to_string()];
        let patterns = globs.map_or(&any[..], |g| g.sources());
        for pattern in patterns {
            let Some(forms) = self.expand(pattern) else {
                self.userspace(
                    &rule.name,
                    format!("`{pattern}`: wildcards the kernel cannot match (only exact paths, `dir/**` and a trailing `*`)"),
                );
                continue;
            };
            for (form, uid) in forms {
                if let Some(shadow) = earlier
                    .iter()
                    .find(|e| self.path_overlaps(e, &form, write_only))
                {
                    self.userspace(
                        &rule.name,
                        format!(
                            "`{}`: earlier rule `{}` ({}) may match the same {}s first",
                            form.path,
                            shadow.name,
                            decision_name(shadow.action),
                            crate::policy::kind_name(rule.kind),
                        ),
                    );
                    continue;
                }
                if rule.action == Decision::Ask
                    && self.quarantined_paths.iter().any(|q| q.overlaps(&form))
                {
                    self.userspace(
                        &rule.name,
                        format!("`{}`: overlaps a quarantine, which must win", form.path),
                    );
                    continue;
                }
                let entry = PathMatch {
                    path: form.path,
                    prefix: form.prefix,
                    write_only,
                    uid,
                    decision: rule.action,
                    rule: rule.name.clone(),
                };
                let list = match rule.kind {
                    Kind::Exec => &mut self.out.exec,
                    _ => &mut self.out.open,
                };
                // An earlier entry that already catches everything this one
                // would keeps the earlier rule's name on those actions.
                if !list.iter().any(|earlier| path_covers(earlier, &entry)) {
                    list.push(entry);
                }
            }
        }
    }

    /// Could the earlier rule `e` match an action the kernel entry `form`
    /// would catch? Only paths and the write bit are known statically;
    /// everything else (agent, args, schedule…) counts as "could match".
    fn path_overlaps(&self, e: &Rule, form: &KernelPath, write_only: bool) -> bool {
        let globs = match &e.matcher {
            Matcher::Exec { binary, .. } => binary.as_ref(),
            Matcher::Open { path, write } => {
                if write_only && *write == Some(false) {
                    return false;
                }
                path.as_ref()
            }
            _ => return false,
        };
        let Some(globs) = globs else { return true };
        globs.sources().iter().any(|pattern| {
            if pattern.starts_with("~/") {
                self.homes.iter().any(|(_, home)| {
                    expand_home(pattern, Some(home)).is_some_and(|p| may_overlap(form, &p))
                })
            } else {
                may_overlap(form, pattern)
            }
        })
    }

    fn connect_rule(
        &mut self,
        rule: &Rule,
        addr: &Option<Vec<IpNet>>,
        ports: Option<(u16, u16)>,
        earlier: &[&Rule],
    ) {
        let everywhere = [IpNet::V4(Default::default()), IpNet::V6(Default::default())];
        let nets = addr.as_deref().unwrap_or(&everywhere);
        let ports = ports.unwrap_or((0, u16::MAX));
        for net in nets {
            let shadow = earlier.iter().find(|e| match &e.matcher {
                Matcher::Connect {
                    addr: e_addr,
                    ports: e_ports,
                } => {
                    let (lo, hi) = e_ports.unwrap_or((0, u16::MAX));
                    let ports_meet = lo <= ports.1 && ports.0 <= hi;
                    let nets_meet = e_addr
                        .as_deref()
                        .is_none_or(|e_nets| e_nets.iter().any(|e_net| nets_overlap(e_net, net)));
                    ports_meet && nets_meet
                }
                _ => false,
            });
            if let Some(shadow) = shadow {
                self.userspace(
                    &rule.name,
                    format!(
                        "{net}: earlier rule `{}` ({}) may match the same connects first",
                        shadow.name,
                        decision_name(shadow.action)
                    ),
                );
                continue;
            }
            if rule.action == Decision::Ask
                && self.quarantined_nets.iter().any(|q| nets_overlap(q, net))
            {
                self.userspace(
                    &rule.name,
                    format!("{net}: overlaps a quarantine, which must win"),
                );
                continue;
            }
            let entry = NetMatch {
                net: *net,
                ports,
                decision: rule.action,
                rule: rule.name.clone(),
            };
            if !self
                .out
                .connect
                .iter()
                .any(|earlier| net_covers(earlier, &entry))
            {
                self.out.connect.push(entry);
            }
        }
    }

    /// Drops repeated entries (same match), keeping the first: quarantine
    /// before rules, earlier rules before later ones.
    fn dedupe(&mut self) {
        fn path_key(m: &PathMatch) -> (String, bool, bool, Option<u32>) {
            (m.path.clone(), m.prefix, m.write_only, m.uid)
        }
        let mut seen = HashSet::new();
        self.out.exec.retain(|m| seen.insert(path_key(m)));
        seen.clear();
        self.out.open.retain(|m| seen.insert(path_key(m)));
        let mut seen_nets = HashSet::new();
        self.out
            .connect
            .retain(|m| seen_nets.insert((m.net, m.ports)));
    }
}

/// Why a deny/ask rule cannot go to the kernel at all, if it cannot.
fn needs_userspace(rule: &Rule) -> Option<String> {
    if rule.agent.is_some() {
        return Some("scoped to an agent name".into());
    }
    if rule.rate_limit.is_some() {
        return Some("has a rate limit".into());
    }
    if rule.schedule.is_some() {
        return Some("has a schedule".into());
    }
    match &rule.matcher {
        Matcher::Exec { args: Some(_), .. } => Some("matches argv with a regex".into()),
        Matcher::Open {
            write: Some(false), ..
        } => Some("matches read-only opens (`write = false`)".into()),
        _ => None,
    }
}

/// Does `earlier` match every action `later` matches, with the same
/// decision?
fn path_covers(earlier: &PathMatch, later: &PathMatch) -> bool {
    let same_scope = earlier.uid.is_none() || earlier.uid == later.uid;
    let writes = !earlier.write_only || later.write_only;
    let paths = if earlier.prefix {
        later.path.starts_with(&earlier.path)
    } else {
        !later.prefix && later.path == earlier.path
    };
    earlier.decision == later.decision && same_scope && writes && paths
}

fn net_covers(earlier: &NetMatch, later: &NetMatch) -> bool {
    earlier.decision == later.decision
        && earlier.net.contains(&later.net)
        && earlier.ports.0 <= later.ports.0
        && later.ports.1 <= earlier.ports.1
}

fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
        Decision::Ask => "ask",
        Decision::LogOnly => "log-only",
    }
}
