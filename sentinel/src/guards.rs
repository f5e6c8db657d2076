//! The agent guards on the data path: the sudo gate's two checkpoints,
//! identity-file change alerts, and response playbooks. Their policy
//! lives in `sentinel-policy` (`[sudo]`, `[identity]`, `[[playbook]]`);
//! the file baselines in `identity`, the response mechanics in `respond`.
//! This module is where they meet the [`Core`]: alerts raised and linked
//! to the event that caused them, playbooks matched against every alert,
//! responses carried out, recorded and undone.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sentinel_audit::{Body, Event};
use sentinel_common::ApprovalKey;
use sentinel_policy::{
    Decision, Mode, QuarantineEntry, QuarantineTarget, ResponseAction, Verdict, GATE_RULE,
};
use time::OffsetDateTime;

use crate::enforce;
use crate::exit_before_run;
use crate::identity::IdentityMonitor;
use crate::pipeline::{lock, Core};
use crate::respond::{self, Netfilter, Responses, State};

/// How many recent events remember their agent (to attribute alerts that
/// name them in `related`).
const RECENT: usize = 4096;

/// An alert waiting for the playbooks.
#[derive(Debug, Clone)]
struct Trigger {
    seq: u64,
    severity: String,
    category: String,
    agent: Option<String>,
}

/// An alert to raise right after the event that caused it.
#[derive(Debug, Clone)]
struct Followup {
    severity: &'static str,
    category: &'static str,
    reason: String,
    agent: Option<String>,
}

pub struct Guards {
    pub identity: Option<IdentityMonitor>,
    pub responses: Responses,
    netfilter: Netfilter,
    triggers: Vec<Trigger>,
    recent: VecDeque<(u64, String)>,
    /// The agent of the alert being emitted, when its raiser knows it.
    explicit_agent: Option<String>,
    followups: Vec<Followup>,
    /// Protected files a refused rename moved away before the kill landed,
    /// to move back once the rename has completed: (where it went, where it
    /// belongs, until when to try).
    moved_away: Vec<(PathBuf, PathBuf, Instant)>,
}

impl Guards {
    pub fn new(identity: Option<IdentityMonitor>) -> Self {
        Guards {
            identity,
            responses: Responses::default(),
            netfilter: Netfilter::new(),
            triggers: Vec::new(),
            recent: VecDeque::new(),
            explicit_agent: None,
            followups: Vec::new(),
            moved_away: Vec::new(),
        }
    }

    /// Moves protected files that refused renames took away back where
    /// they belong, once the rename has landed; says what it did.
    fn move_back_pending(&mut self) -> Vec<String> {
        let now = Instant::now();
        let mut done = Vec::new();
        self.moved_away
            .retain(|(away, home, until)| match move_back(away, home) {
                Some(Ok(())) => {
                    done.push(format!(
                        "{} was moved back to {}",
                        away.display(),
                        home.display()
                    ));
                    false
                }
                Some(Err(e)) => {
                    done.push(format!(
                        "could not move {} back to {}: {e}",
                        away.display(),
                        home.display()
                    ));
                    false
                }
                None => *until > now,
            });
        done
    }

    /// Every emitted event passes here: alerts (except the responses' own)
    /// are queued for the playbooks, actions remember their agent.
    pub fn observe(&mut self, event: &Event) {
        match &event.body {
            Body::Alert {
                severity,
                category,
                related,
                ..
            } => {
                let explicit = self.explicit_agent.take();
                if category == "response" {
                    return;
                }
                let agent = explicit.or_else(|| {
                    related.iter().find_map(|seq| {
                        self.recent
                            .iter()
                            .find(|(s, _)| s == seq)
                            .map(|(_, a)| a.clone())
                    })
                });
                self.triggers.push(Trigger {
                    seq: event.seq,
                    severity: severity.clone(),
                    category: category.clone(),
                    agent,
                });
            }
            _ => {
                if let Some(agent) = event.process().and_then(|p| p.agent.clone()) {
                    if self.recent.len() == RECENT {
                        self.recent.pop_front();
                    }
                    self.recent.push_back((event.seq, agent));
                }
            }
        }
    }

    /// Removes the daemon's nftables table (at exit).
    pub fn shutdown(&self) {
        self.netfilter.clear();
    }
}

fn severity_of(risk: u8) -> &'static str {
    if risk >= 90 {
        "critical"
    } else {
        "warning"
    }
}

impl Core {
    /// Records an alert; `agent` is who it is about, for the playbooks.
    pub(crate) fn raise(
        &mut self,
        severity: &str,
        category: &str,
        reason: String,
        related: Vec<u64>,
        agent: Option<String>,
    ) {
        self.guards.explicit_agent = agent;
        self.push(
            OffsetDateTime::now_utc(),
            Body::Alert {
                severity: severity.into(),
                category: category.into(),
                reason,
                related,
            },
            None,
        );
    }

    /// Raises the alerts the last event caused, linked to its `seq`.
    pub(crate) fn emit_followups(&mut self, seq: u64) {
        for f in std::mem::take(&mut self.guards.followups) {
            self.raise(f.severity, f.category, f.reason, vec![seq], f.agent);
        }
    }

    /// The second checkpoint of the sudo gate: a program an elevator
    /// started (its parent is sudo, su, pkexec or doas) is judged by what
    /// it resolved to, so `sudo /tmp/innocent` (a symlink to vim) is
    /// refused too. Only makes a passing verdict stricter.
    pub(crate) fn gate_elevated_child(&mut self, body: &Body, v: &mut Verdict) {
        let Body::Exec {
            process,
            argv,
            path_requested,
            ..
        } = body
        else {
            return;
        };
        if !matches!(v.action, Decision::Allow | Decision::LogOnly) {
            return;
        }
        let Some(parent) = self.table.parent_exe(process.pid) else {
            return;
        };
        let engine = lock(&self.engine);
        let gate = engine.policy().sudo();
        if !gate.configured || !gate.is_elevator(&parent) || gate.is_elevator(&process.exe) {
            return;
        }
        // What it resolved to, and what the names it was started by
        // resolve to now (the exe read from /proc may already be the next
        // program if it exec'd again at once: `sudo innocent` found on
        // the PATH, a link to env that runs sleep).
        let mut g = gate.decide_command(&process.exe, argv);
        let names = argv
            .first()
            .filter(|a| a.starts_with('/'))
            .into_iter()
            .chain(path_requested.iter());
        for name in names {
            let Some(resolved) = resolve_for(process.pid, name) else {
                continue;
            };
            let other = gate.decide_command(&resolved.to_string_lossy(), argv);
            if strictness(other.action) > strictness(g.action) {
                g = other;
            }
        }
        drop(engine);
        if matches!(g.action, Decision::Deny | Decision::Ask) {
            v.action = g.action;
            v.rule = Some(g.rule.clone());
            v.reason = format!("{} (`{}`, started by {parent})", g.reason, g.command);
            v.risk = v.risk.max(g.risk);
            v.alert = true;
            if g.action == Decision::Deny {
                self.guards.followups.push(Followup {
                    severity: severity_of(g.risk),
                    category: "sudo",
                    reason: format!(
                        "sudo gate: {} refused `{}` run through {parent}: {}",
                        agent_label(process.agent.as_deref()),
                        g.command,
                        g.reason
                    ),
                    agent: process.agent.clone(),
                });
            }
        }
    }

    /// The first checkpoint: the kernel held an elevator's exec before it
    /// ran; the engine asked the gate. Allowed: released at once (with
    /// `restart`, the approval an exec held at entry needs to go through
    /// when it restarts). Refused: a message on the agent's terminal, then
    /// made to exit 77 (killed if that fails). Returns false for an `ask`
    /// (the ordinary approval hold takes it).
    pub(crate) fn settle_gated_elevator(
        &mut self,
        pid: u32,
        body: &Body,
        restart: Option<ApprovalKey>,
        v: &mut Verdict,
    ) -> bool {
        let gated = v
            .rule
            .as_deref()
            .is_some_and(|r| r.starts_with(GATE_RULE) && r != GATE_RULE);
        if gated {
            self.judge_what_it_resolves_to(pid, body, v);
        }
        if !gated || v.action == Decision::Ask {
            return false;
        }
        let agent = match body {
            Body::Exec { process, .. } => process.agent.clone(),
            _ => None,
        };
        v.enforced = true;
        if v.action == Decision::Deny {
            let message = format!(
                "sentinel: refused by the sudo gate ({}): {}\n",
                v.rule.as_deref().unwrap_or(GATE_RULE),
                v.reason
            );
            let told = enforce::tell(pid, &message);
            let ended = self.end_held_before_it_ran(pid);
            v.reason = format!(
                "{}; held by the kernel before it ran, then {ended}{}",
                v.reason,
                if told { " (told on its stderr)" } else { "" }
            );
            self.guards.followups.push(Followup {
                severity: severity_of(v.risk),
                category: "sudo",
                reason: format!(
                    "sudo gate: {} refused: {}",
                    agent_label(agent.as_deref()),
                    v.reason
                ),
                agent,
            });
        } else {
            if let Some(mut key) = restart {
                key.pid = pid;
                if let Err(e) = self.sensor.approve(key) {
                    tracing::warn!(
                        "sudo gate: pid {pid} allowed, but its exec cannot restart: {e}"
                    );
                }
            }
            // Held, so still the process the kernel stopped: its start
            // time now is its own (a signal needs one).
            let start = crate::procid::start_time(pid);
            let _ = self.sensor.release_held(pid);
            enforce::resume(pid, start);
            v.reason = format!("{}; held by the kernel until the gate allowed it", v.reason);
        }
        true
    }

    /// The first checkpoint judged the command by the name the elevator
    /// was given; a path (`sudo ./innocent`, a symlink to vim) is judged
    /// by what it resolves to as well, while the elevator is still held,
    /// so it is refused before anything runs. Only makes a passing
    /// verdict stricter; the second checkpoint still judges what the
    /// elevator really starts (the link may change after this).
    fn judge_what_it_resolves_to(&mut self, pid: u32, body: &Body, v: &mut Verdict) {
        let Body::Exec { process, argv, .. } = body else {
            return;
        };
        if !matches!(
            v.action,
            Decision::Allow | Decision::LogOnly | Decision::Ask
        ) {
            return;
        }
        let elevated = sentinel_policy::sudo::parse_elevator(&process.exe, argv);
        let Some(command) = elevated.command.filter(|c| c.contains('/')) else {
            return;
        };
        // Relative to the held process's working directory (sudo's own).
        let Some(resolved) = resolve_for(pid, &command) else {
            return;
        };
        let command_argv: Vec<String> = std::iter::once(command.clone())
            .chain(elevated.args.iter().cloned())
            .collect();
        let engine = lock(&self.engine);
        let g = engine
            .policy()
            .sudo()
            .decide_command(&resolved.to_string_lossy(), &command_argv);
        drop(engine);
        if strictness(g.action) > strictness(v.action) {
            v.action = g.action;
            v.rule = Some(g.rule.clone());
            v.reason = format!(
                "{} (`{}`, which resolves to {})",
                g.reason,
                g.command,
                resolved.display()
            );
            v.risk = v.risk.max(g.risk);
            v.alert = true;
        }
    }

    /// Ends a refused process the kernel holds before it ran: made to exit
    /// with status 77 (its parent reads a refusal), else killed. Says
    /// which, for the record.
    fn end_held_before_it_ran(&mut self, pid: u32) -> String {
        let Some(start) = crate::procid::start_time(pid) else {
            let _ = self.sensor.release_held(pid);
            return "gone before it could be ended".into();
        };
        match exit_before_run::exit_77(&mut self.sensor, pid, start) {
            Ok(()) => format!("exited {} before it ran", exit_before_run::REFUSED_STATUS),
            Err(e @ exit_before_run::Error::NotTheHeldProcess(_)) => {
                let _ = self.sensor.release_held(pid);
                format!("left alone ({e})")
            }
            Err(e) => {
                self.kill_tree(pid);
                let _ = self.sensor.release_held(pid);
                tracing::warn!("sudo gate: pid {pid} killed instead of exiting 77: {e}");
                format!("killed (it could not be made to exit 77: {e})")
            }
        }
    }

    /// A protected identity file the agent was refused a write to is put
    /// back from its baseline when the write took effect anyway (the
    /// fallback's kill lands after an `O_TRUNC` or `O_CREAT`; without BPF
    /// LSM a rename, unlink or truncate(2) has happened when it is seen).
    /// A change the engine refused (a write, rename, unlink, truncate,
    /// chmod...) that took effect anyway — the kernel could only kill after
    /// it — is undone from the copy the monitor keeps. A change the kernel
    /// refused left nothing to undo.
    pub(crate) fn put_back_identity(&mut self, body: &Body, v: &mut Verdict) {
        if v.action != Decision::Deny {
            return;
        }
        let paths: Vec<&String> = match body {
            Body::Open { path, flags, .. } if sentinel_policy::open_flags_write(*flags) => {
                vec![path]
            }
            Body::FileChange { path, source, .. } => std::iter::once(path).chain(source).collect(),
            _ => return,
        };
        let Some(monitor) = self.guards.identity.as_mut() else {
            return;
        };
        // A protected file renamed away is moved back (the same object,
        // so the copy it left readable elsewhere is gone), now or once the
        // rename has landed.
        if let Body::FileChange {
            op,
            path,
            source: Some(source),
            ..
        } = body
        {
            if op == "rename" && monitor.classify(Path::new(source)).is_some() {
                match move_back(Path::new(path), Path::new(source)) {
                    Some(Ok(())) => v.reason = format!("{}; moved back to {source}", v.reason),
                    Some(Err(e)) => {
                        v.reason = format!("{}; could not move {path} back: {e}", v.reason)
                    }
                    None => self.guards.moved_away.push((
                        PathBuf::from(path),
                        PathBuf::from(source),
                        Instant::now() + MOVE_BACK_WINDOW,
                    )),
                }
            }
        }
        for path in paths {
            match monitor.put_back(std::path::Path::new(path)) {
                Ok(Some(detail)) => v.reason = format!("{}; {path}: {detail}", v.reason),
                Ok(None) => {}
                Err(e) => v.reason = format!("{}; could not put {path} back: {e}", v.reason),
            }
        }
    }

    /// Once a second: identity file changes, response timeouts.
    pub(crate) fn guards_tick(&mut self) {
        for line in self.guards.move_back_pending() {
            tracing::warn!("{line}");
            self.push(
                OffsetDateTime::now_utc(),
                Body::Alert {
                    severity: "warning".into(),
                    category: "identity".into(),
                    reason: line,
                    related: Vec::new(),
                },
                None,
            );
        }
        let alerts = self
            .guards
            .identity
            .as_mut()
            .map(IdentityMonitor::check)
            .unwrap_or_default();
        self.raise_identity(alerts);
        for id in self.guards.responses.expired() {
            let run = self
                .guards
                .responses
                .get(id)
                .is_some_and(|r| r.on_timeout == sentinel_policy::OnTimeout::Run);
            if run {
                self.carry_out(id, "the approval timed out (on_timeout = run)");
            } else {
                self.settle(id, State::Skipped, "the approval timed out; skipped".into());
            }
        }
        self.respond();
    }

    pub(crate) fn raise_identity(&mut self, alerts: Vec<crate::identity::IdentityAlert>) {
        for a in alerts {
            let agent = a
                .uid
                .and_then(|uid| self.table.agent_name(uid).map(str::to_string));
            self.raise(a.severity, "identity", a.reason, Vec::new(), agent);
        }
    }

    /// Matches queued alerts against the playbooks and opens responses.
    pub(crate) fn respond(&mut self) {
        let triggers = std::mem::take(&mut self.guards.triggers);
        if triggers.is_empty() {
            return;
        }
        let playbooks = lock(&self.engine).policy().playbooks().to_vec();
        for t in triggers {
            for p in playbooks
                .iter()
                .filter(|p| p.matches(&t.severity, &t.category, t.agent.as_deref()))
            {
                let id = self.guards.responses.open(p, t.agent.clone(), t.seq);
                let Some(r) = self.guards.responses.get(id).cloned() else {
                    continue;
                };
                if r.action.targets_agent() && r.agent.is_none() {
                    self.settle(
                        id,
                        State::Skipped,
                        "the alert names no agent to act on".into(),
                    );
                    continue;
                }
                match r.state {
                    State::Pending {
                        timeout_seconds, ..
                    } => {
                        let reason = format!(
                            "{} after alert {}: waiting for `sentinel respond approve {id}` (or deny) for {timeout_seconds} s",
                            r.describe(),
                            t.seq
                        );
                        self.raise("warning", "response", reason, vec![t.seq], None);
                    }
                    _ => self.carry_out(id, "automatic"),
                }
            }
        }
    }

    /// Carries a response out and records it.
    pub(crate) fn carry_out(&mut self, id: u64, why: &str) {
        let Some(r) = self.guards.responses.get(id).cloned() else {
            return;
        };
        let agent = r.agent.clone().unwrap_or_default();
        let uids = self.table.uids_of(&agent);
        let mut stopped = Vec::new();
        let mut previous_mode = None;
        let outcome: Result<String, String> = match r.action {
            ResponseAction::Suspend => {
                let table = &self.table;
                stopped =
                    respond::suspend(|| respond::processes(&uids, &table.pids_of_agent(&agent)));
                for (pid, _) in &stopped {
                    let _ = self.sensor.hold(*pid);
                }
                Ok(format!(
                    "stopped {} processes of agent {agent} (uids {uids:?})",
                    stopped.len()
                ))
            }
            ResponseAction::Kill => {
                let table = &self.table;
                let n = respond::kill(|| respond::processes(&uids, &table.pids_of_agent(&agent)));
                Ok(format!(
                    "killed {n} processes of agent {agent} (uids {uids:?})"
                ))
            }
            ResponseAction::CutNetwork => {
                if uids.is_empty() {
                    Err(format!("agent {agent} has no watched UID"))
                } else {
                    self.guards.netfilter.cut(id, &uids, &r.allow).map(|()| {
                        format!(
                            "connects of uids {uids:?} refused in the kernel (nftables){}",
                            if r.allow.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    " except to {}",
                                    r.allow
                                        .iter()
                                        .map(|n| n.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                )
                            }
                        )
                    })
                }
            }
            ResponseAction::QuarantineAgent => {
                let entry = QuarantineEntry {
                    target: QuarantineTarget::Agent(agent.clone()),
                    expires: None,
                    reason: format!("{} after alert {}", r.describe(), r.alert_seq),
                };
                let added = lock(&self.engine)
                    .quarantine(entry)
                    .map_err(|e| e.to_string());
                added.and_then(|()| {
                    self.recompile().map_err(|e| e.to_string())?;
                    Ok(format!(
                        "agent {agent} quarantined: its MCP tools and kernel actions are denied"
                    ))
                })
            }
            ResponseAction::Lockdown => {
                let mode = lock(&self.engine).mode();
                previous_mode = Some(mode);
                self.set_mode(Mode::Lockdown, &r.describe());
                Ok(format!(
                    "lockdown (was {})",
                    crate::pipeline::mode_name(mode)
                ))
            }
        };
        if let Some(resp) = self.guards.responses.get_mut(id) {
            resp.stopped = stopped;
            resp.previous_mode = previous_mode;
            resp.uids = uids;
        }
        match outcome {
            Ok(detail) => self.settle(id, State::Done, format!("carried out ({why}): {detail}")),
            Err(e) => self.settle(id, State::Failed, format!("failed ({why}): {e}")),
        }
    }

    /// Sets a response's state and records it.
    fn settle(&mut self, id: u64, state: State, detail: String) {
        let Some(r) = self.guards.responses.get_mut(id) else {
            return;
        };
        r.state = state.clone();
        r.detail.clone_from(&detail);
        let reason = format!("{} after alert {}: {detail}", r.describe(), r.alert_seq);
        let related = vec![r.alert_seq];
        let severity = match state {
            State::Failed => "critical",
            State::Done => "warning",
            _ => "info",
        };
        self.raise(severity, "response", reason, related, None);
    }

    /// `sentinel respond approve|deny ID`.
    pub(crate) fn decide_response(&mut self, id: u64, approve: bool) -> Result<String, String> {
        let r = self
            .guards
            .responses
            .get(id)
            .ok_or_else(|| format!("no response {id}"))?;
        if !matches!(r.state, State::Pending { .. }) {
            return Err(format!("response {id} is not waiting for approval"));
        }
        if approve {
            self.carry_out(id, "approved by the operator");
        } else {
            self.settle(id, State::Skipped, "denied by the operator".into());
        }
        Ok(self
            .guards
            .responses
            .get(id)
            .map(|r| r.detail.clone())
            .unwrap_or_default())
    }

    /// `sentinel respond undo ID`.
    pub(crate) fn undo_response(&mut self, id: u64) -> Result<String, String> {
        let r = self
            .guards
            .responses
            .get(id)
            .cloned()
            .ok_or_else(|| format!("no response {id}"))?;
        if r.state != State::Done {
            return Err(format!(
                "response {id} was not carried out; nothing to undo"
            ));
        }
        let detail = match r.action {
            ResponseAction::Suspend => {
                for (pid, _) in &r.stopped {
                    let _ = self.sensor.release_held(*pid);
                }
                let n = respond::resume(&r.stopped);
                format!("resumed {n} of {} stopped processes", r.stopped.len())
            }
            ResponseAction::Kill => return Err("a kill cannot be undone".into()),
            ResponseAction::CutNetwork => {
                self.guards.netfilter.restore(id)?;
                format!("connects of uids {:?} allowed again", r.uids)
            }
            ResponseAction::QuarantineAgent => {
                let agent = r.agent.clone().unwrap_or_default();
                lock(&self.engine).lift(&QuarantineTarget::Agent(agent.clone()));
                self.recompile().map_err(|e| e.to_string())?;
                format!("quarantine on agent {agent} lifted")
            }
            ResponseAction::Lockdown => {
                let mode = r.previous_mode.unwrap_or(Mode::Alert);
                self.set_mode(mode, &format!("undo of {}", r.describe()));
                format!("mode back to {}", crate::pipeline::mode_name(mode))
            }
        };
        self.settle(
            id,
            State::Undone,
            format!("undone by the operator: {detail}"),
        );
        Ok(detail)
    }
}

/// What the path `name` a process used resolves to now (a relative one
/// from the process's working directory).
fn resolve_for(pid: u32, name: &str) -> Option<PathBuf> {
    std::fs::canonicalize(Path::new(&format!("/proc/{pid}/cwd")).join(name)).ok()
}

fn strictness(d: Decision) -> u8 {
    match d {
        Decision::Deny => 3,
        Decision::Ask => 2,
        Decision::LogOnly => 1,
        Decision::Allow => 0,
    }
}

fn agent_label(agent: Option<&str>) -> String {
    agent.map_or("an unnamed agent".into(), |a| format!("agent {a}"))
}

/// How long a refused rename's result is waited for, to move it back.
const MOVE_BACK_WINDOW: Duration = Duration::from_secs(5);

/// Renames `away` back to `home`; `None` while `away` does not exist (the
/// rename has not landed yet).
fn move_back(away: &Path, home: &Path) -> Option<Result<(), String>> {
    std::fs::symlink_metadata(away).ok()?;
    Some(std::fs::rename(away, home).map_err(|e| e.to_string()))
}
