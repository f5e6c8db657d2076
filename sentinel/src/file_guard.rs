//! The file guard: where the BPF LSM is not active, opens and execs of the
//! files the policy protects wait in the kernel for the engine's verdict
//! (fanotify permission events on those objects' inodes, see
//! `sentinel-fanotify`). The object is what the kernel resolved, so every
//! spelling of its path — and a 32-bit `int 0x80` open, which no 64-bit
//! syscall tracepoint sees — meets the same decision before a byte moves.
//! Renames, unlinks, links and chmods of protected objects have no
//! permission events: the guard reports them after the fact, and a watched
//! process that made one is killed and the file put back.
//!
//! This module owns the guard's life (start, targets, shutdown), who counts
//! as watched without the core lock, and the core's side of each request:
//! verdict, approval, record.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use sentinel_audit::Body;
use sentinel_fanotify::{
    Access, Answer, Capabilities, Decider, Guard, Intent, MarkReport, Mutation, MutationKind,
    Options, Report, Request, RequestId, RequestKind, Resolver, Scope, Stats, Target,
    Verdict as Answered,
};
use sentinel_policy::{Decision, GuardScope, GuardTarget, Verdict};
use serde::Serialize;
use time::OffsetDateTime;

use crate::pipeline::{lock, Core};

/// How long the engine may take on a request before the guard answers for
/// it: deny for a watched process (only watched ones reach the engine).
const DECIDE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a record one mechanism made keeps the other from recording the
/// same call again.
const DEDUPE_WINDOW: Duration = Duration::from_secs(5);

/// Who is watched, answered without the core lock: the agents' UIDs, and
/// the kernel's own map of watched processes (descendants that changed
/// UID), read through a second handle on it.
pub struct Watched {
    uids: RwLock<HashSet<u32>>,
    tasks: Option<Mutex<BpfHashMap<MapData, u32, u8>>>,
}

impl Watched {
    /// `tasks_map_id` is the kernel id of the sensor's `WATCHED_TASKS` map.
    pub fn new(uids: impl IntoIterator<Item = u32>, tasks_map_id: Option<u32>) -> Watched {
        let tasks = tasks_map_id.and_then(|id| {
            let data = MapData::from_id(id)
                .map_err(|e| tracing::warn!("file guard: reading the watched processes: {e}"))
                .ok()?;
            BpfHashMap::try_from(Map::HashMap(data))
                .map_err(|e| tracing::warn!("file guard: reading the watched processes: {e}"))
                .ok()
                .map(Mutex::new)
        });
        Watched {
            uids: RwLock::new(uids.into_iter().collect()),
            tasks,
        }
    }

    /// The kernel's test: the real UID is an agent's, or the process
    /// descends from one.
    pub fn contains(&self, pid: u32, uid: u32) -> bool {
        if self.uids.read().is_ok_and(|u| u.contains(&uid)) {
            return true;
        }
        self.tasks
            .as_ref()
            .is_some_and(|t| lock(t).get(&pid, 0).is_ok())
    }
}

/// What the guard did, for `sentinel status`.
#[derive(Debug, Clone, Serialize)]
pub struct GuardStatus {
    pub capabilities: Capabilities,
    pub targets: usize,
    pub marked: usize,
    /// Places that could not be marked, and why.
    pub failures: Vec<String>,
    pub stats: Stats,
}

/// The running guard.
pub struct FileGuard {
    guard: Guard,
    targets: Vec<GuardTarget>,
    last_report: Mutex<MarkReport>,
    mutations: Option<std::thread::JoinHandle<()>>,
}

/// Answers the guard's requests with the core's engine.
struct CoreDecider {
    core: Weak<Mutex<Core>>,
    watched: Arc<Watched>,
}

impl Decider for CoreDecider {
    fn decide(&self, request: &Request) -> Answer {
        match self.core.upgrade() {
            Some(core) => lock(&core).guard_decide(request),
            // Shutting down: what a watched process asks is refused.
            None => Answer::Deny,
        }
    }

    fn quick(&self, request: &Request) -> Option<Answered> {
        (!self.watched.contains(request.pid, request.uid)).then_some(Answered::Allow)
    }

    fn fallback(&self, request: &Request) -> Answered {
        if self.watched.contains(request.pid, request.uid) {
            Answered::Deny
        } else {
            Answered::Allow
        }
    }
}

impl FileGuard {
    /// Starts the guard on `targets`; the core learns how to answer held
    /// requests. `approval_timeout` bounds how long a held call waits.
    pub fn start(
        core: &Arc<Mutex<Core>>,
        watched: Arc<Watched>,
        targets: Vec<GuardTarget>,
        approval_timeout: Duration,
    ) -> Result<FileGuard, sentinel_fanotify::Error> {
        let decider = CoreDecider {
            core: Arc::downgrade(core),
            watched: watched.clone(),
        };
        let guard = Guard::start(
            decider,
            Options {
                // A watched process waits at most this long on a protected
                // file while the core is busy (a flood); then it is refused.
                decide_timeout: DECIDE_TIMEOUT,
                // The core answers an approval's timeout itself; the guard's
                // own deadline is the backstop.
                hold_timeout: approval_timeout + Duration::from_secs(5),
                ..Options::default()
            },
        )?;
        lock(core).guard_holds = Some(guard.resolver());
        let mutations = guard.mutations().map(|rx| {
            let core = Arc::downgrade(core);
            std::thread::Builder::new()
                .name("guard-mutations".into())
                .spawn(move || {
                    for report in rx {
                        let Some(core) = core.upgrade() else { return };
                        match report {
                            Report::Mutation(m) => {
                                let Some(uid) = proc_uid(m.pid) else { continue };
                                if watched.contains(m.pid, uid) {
                                    lock(&core).guard_mutation(&m, uid);
                                }
                            }
                            Report::Lost { count } => lock(&core).guard_lost(count),
                        }
                    }
                })
        });
        let mutations = match mutations {
            Some(Ok(handle)) => Some(handle),
            Some(Err(e)) => {
                tracing::error!("file guard: starting the mutation reader: {e}");
                None
            }
            None => None,
        };
        let mut this = FileGuard {
            guard,
            targets: Vec::new(),
            last_report: Mutex::new(MarkReport::default()),
            mutations,
        };
        this.set_targets(targets);
        Ok(this)
    }

    /// Marks the places `targets` name (replacing the previous ones).
    pub fn set_targets(&mut self, targets: Vec<GuardTarget>) {
        let marks: Vec<Target> = targets
            .iter()
            .enumerate()
            .map(|(tag, t)| Target {
                path: t.path.clone(),
                scope: match t.scope {
                    GuardScope::Object => Scope::Object,
                    GuardScope::Children => Scope::Children,
                    GuardScope::Subtree => Scope::Subtree,
                },
                access: Access {
                    open: t.open && t.reads,
                    exec: t.exec,
                    content_write: t.open,
                },
                tag: tag as u32,
            })
            .collect();
        let report = self.guard.set_targets(&marks);
        for failure in failures(&report) {
            tracing::warn!("file guard: {failure}");
        }
        tracing::info!(
            "file guard: {} places, {} objects marked",
            targets.len(),
            report.marked
        );
        self.targets = targets;
        *lock(&self.last_report) = report;
    }

    /// Whether the guard already covers exactly `targets`.
    pub fn has_targets(&self, targets: &[GuardTarget]) -> bool {
        self.targets == targets
    }

    pub fn status(&self) -> GuardStatus {
        let report = lock(&self.last_report);
        GuardStatus {
            capabilities: self.guard.capabilities(),
            targets: self.targets.len(),
            marked: report.marked,
            failures: failures(&report),
            stats: self.guard.stats(),
        }
    }

    /// Removes every mark and answers what is pending (by fallback).
    pub fn shutdown(self) {
        let stats = self.guard.shutdown();
        if let Some(handle) = self.mutations {
            let _ = handle.join();
        }
        tracing::info!(
            "file guard stopped: {} requests, {} denied",
            stats.events,
            stats.denied
        );
    }
}

/// Every place that could not be (fully) protected, one line each.
fn failures(report: &MarkReport) -> Vec<String> {
    let mut out = Vec::new();
    for t in &report.targets {
        if let sentinel_fanotify::TargetState::Failed(why) = &t.state {
            out.push(format!("{}: not protected: {why}", t.path.display()));
        }
        for f in &t.failures {
            out.push(format!("{}: not protected: {}", f.path.display(), f.error));
        }
        if t.left_out > 0 {
            out.push(format!(
                "{}: {} objects left out (the mark budget is spent)",
                t.path.display(),
                t.left_out
            ));
        }
    }
    out
}

/// The real UID of a live process.
fn proc_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn comm_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|c| c.trim_end().to_string())
        .unwrap_or_default()
}

/// The open flags an intent stands for: an unknown intent may write.
fn intent_flags(intent: Intent) -> u32 {
    match intent {
        Intent::Read | Intent::Exec => libc::O_RDONLY as u32,
        Intent::Write => libc::O_WRONLY as u32,
        Intent::Unknown => libc::O_RDWR as u32,
    }
}

fn change_op(kind: MutationKind) -> &'static str {
    match kind {
        MutationKind::Created => "create",
        MutationKind::Deleted | MutationKind::DeletedSelf => "unlink",
        MutationKind::MovedFrom | MutationKind::MovedTo | MutationKind::MovedSelf => "rename",
        MutationKind::Attrib => "chmod",
        MutationKind::Modified => "write",
    }
}

/// Records the guard made, so the same call reported by the eBPF side is
/// not recorded (or acted on) twice.
#[derive(Default)]
pub struct GuardRecords {
    /// Threads whose open or exec the guard refused: their syscall exit
    /// reports EPERM next.
    refused: Vec<(u32, Instant)>,
    /// Changes the guard recorded, by process and path.
    changes: Vec<(u32, String, Instant)>,
    /// Calls the operator approved while the guard held them, by process
    /// and description: the eBPF side's report of each is not asked again.
    approved: Vec<(u32, String, Instant)>,
}

impl GuardRecords {
    fn prune(&mut self) {
        let now = Instant::now();
        self.refused
            .retain(|(_, t)| now.duration_since(*t) < DEDUPE_WINDOW);
        self.changes
            .retain(|(_, _, t)| now.duration_since(*t) < DEDUPE_WINDOW);
        self.approved
            .retain(|(_, _, t)| now.duration_since(*t) < DEDUPE_WINDOW);
    }

    /// The operator let a held call through.
    pub fn approved(&mut self, pid: u32, action: &str) {
        self.prune();
        self.approved
            .push((pid, action.to_string(), Instant::now()));
    }

    /// The eBPF side reports a call the operator already approved (once).
    pub fn take_approved(&mut self, pid: u32, action: &str) -> bool {
        self.prune();
        match self
            .approved
            .iter()
            .position(|(p, a, _)| *p == pid && a == action)
        {
            Some(i) => {
                self.approved.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The eBPF side reports a failed open the guard already recorded.
    pub fn take_refused(&mut self, tid: u32) -> bool {
        self.prune();
        match self.refused.iter().position(|(t, _)| *t == tid) {
            Some(i) => {
                self.refused.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// The eBPF side reports a change the guard already recorded.
    pub fn has_change(&mut self, pid: u32, path: &str) -> bool {
        self.prune();
        self.changes.iter().any(|(p, c, _)| *p == pid && c == path)
    }
}

impl Core {
    /// The engine's answer to a request the guard holds in the kernel: a
    /// refusal or a hold is recorded here (the syscall then fails or
    /// waits); an allowed open is recorded by the eBPF side as usual.
    pub(crate) fn guard_decide(&mut self, r: &Request) -> Answer {
        let mut process =
            self.table
                .info(r.pid, r.uid, &comm_of(r.pid), crate::procid::now_ktime());
        let path = r.path.to_string_lossy().into_owned();
        let body = match r.kind {
            RequestKind::OpenExec => {
                process.exe = path.clone();
                Body::Exec {
                    process,
                    argv: Vec::new(),
                    argv_truncated: false,
                    path_requested: None,
                }
            }
            RequestKind::Open | RequestKind::PreAccess { .. } => Body::Open {
                path,
                path_requested: None,
                process,
                flags: intent_flags(r.intent),
                repeats: 0,
            },
        };
        let Some(mut v) = self.verdict_for(&body, Some((r.object.dev, r.object.ino))) else {
            return Answer::Allow;
        };
        // The sudo gate judges the command an elevator is asked to run,
        // which only the exec's own event carries (argv): the exec path
        // holds it there.
        if matches!(body, Body::Exec { .. })
            && v.rule
                .as_deref()
                .is_some_and(|r| r.starts_with(sentinel_policy::GATE_RULE))
        {
            return Answer::Allow;
        }
        let answer = match v.action {
            Decision::Deny => {
                v.enforced = true;
                v.reason = format!(
                    "{}; the kernel refused it before it happened (fanotify, EPERM)",
                    v.reason
                );
                Answer::Deny
            }
            Decision::Ask => {
                let Some(request) = self.guard_holds.as_ref().map(|_| r.id.0) else {
                    return Answer::Deny;
                };
                // Once approved, the kill path at the syscall's return lets
                // the same object through once too.
                let kind = match r.kind {
                    RequestKind::OpenExec => sentinel_common::approval_kind::EXEC,
                    _ => sentinel_common::approval_kind::OPEN,
                };
                let key = sentinel_common::ApprovalKey {
                    pid: r.pid,
                    kind,
                    id: r.object.ino,
                    dev: crate::enforce::kernel_dev(r.object.dev),
                    ..Default::default()
                };
                let id = self.approvals.hold_request(
                    r.pid,
                    crate::pipeline::describe(&body),
                    v.rule.clone(),
                    request,
                    Some(key),
                );
                v.enforced = true;
                v.reason = format!(
                    "{}; waiting in the kernel (fanotify): `sentinel approve {id}` lets it through, `sentinel deny {id}` refuses it",
                    v.reason
                );
                Answer::Hold
            }
            Decision::Allow | Decision::LogOnly => return Answer::Allow,
        };
        self.guard_records.refused.push((r.tid, Instant::now()));
        self.push(OffsetDateTime::now_utc(), body, Some(v));
        answer
    }

    /// A protected object was changed by a watched process: the change
    /// happened (no kernel can refuse these before the fact without the
    /// BPF LSM), so the process is killed and the file put back, unless
    /// the policy allows it.
    pub(crate) fn guard_mutation(&mut self, m: &Mutation, uid: u32) {
        let process = self
            .table
            .info(m.pid, uid, &comm_of(m.pid), crate::procid::now_ktime());
        let path = m.path.to_string_lossy().into_owned();
        let body = Body::FileChange {
            process,
            op: change_op(m.kind).to_string(),
            path: path.clone(),
            path_requested: None,
            source: None,
            source_requested: None,
        };
        let Some(mut v) = self.verdict_for(&body, m.object.map(|o| (o.dev, o.ino))) else {
            return;
        };
        if v.action != Decision::Deny {
            return;
        }
        // The eBPF side may have seen the call first (and put back before
        // the change landed): put back again, record once.
        let seen = self.guard_records.has_change(m.pid, &path) || self.is_condemned(m.pid);
        self.put_back_identity(&body, &mut v);
        if seen {
            return;
        }
        let killed = self.kill_tree(m.pid);
        v.enforced = false;
        v.reason = format!(
            "{}; seen after the change (fanotify): {}",
            v.reason,
            if killed {
                "the daemon killed the process"
            } else {
                "the process had already exited"
            }
        );
        self.guard_records
            .changes
            .push((m.pid, path, Instant::now()));
        self.push(OffsetDateTime::now_utc(), body, Some(v));
    }

    /// The guard's mutation queue overflowed: say so in the chain.
    pub(crate) fn guard_lost(&mut self, count: u64) {
        tracing::warn!("file guard: {count} change reports lost");
        self.push(OffsetDateTime::now_utc(), Body::Lost { count }, None);
    }

    /// The engine's verdict on `body`, and where the policy's own path
    /// does not match the name used (a hard link), the rule that protects
    /// the object itself.
    fn verdict_for(&mut self, body: &Body, object: Option<(u64, u64)>) -> Option<Verdict> {
        let action = crate::pipeline::action_for(body)?;
        let mut v = lock(&self.engine)
            .assess(&action, SystemTime::now())
            .verdict;
        if v.action == Decision::Deny {
            return Some(v);
        }
        let table = match body {
            Body::Exec { .. } => sentinel_common::path_key_kind::EXEC,
            _ => sentinel_common::path_key_kind::OPEN,
        };
        let writes = matches!(
            action.object,
            sentinel_policy::Object::Open { write: true, .. }
        );
        if let Some((dev, ino)) = object {
            if let Some((rule, decision)) = self.maps.object_rule(dev, ino, table, writes) {
                if decision == Decision::Deny
                    || (decision == Decision::Ask && v.action != Decision::Ask)
                {
                    v.reason = format!("the object is the one {rule} protects (by inode)");
                    v.action = decision;
                    v.rule = Some(rule);
                }
            }
        }
        Some(v)
    }
}

/// The mechanisms once the guard runs: opens and execs of protected files
/// are refused before they happen; the kill at the syscall's return stays
/// for what the guard cannot place.
pub fn guarded_mechanisms(m: &mut crate::observe::Mechanisms) {
    m.open = "fanotify+sigkill".into();
    m.exec = "fanotify+sigkill".into();
}

/// The guard's targets for the engine's policy and the watched homes.
pub fn targets(
    engine: &Mutex<sentinel_policy::Engine>,
    homes: &std::collections::HashMap<u32, PathBuf>,
) -> Vec<GuardTarget> {
    let homes: Vec<(u32, PathBuf)> = homes.iter().map(|(u, h)| (*u, h.clone())).collect();
    lock(engine).guarded_targets(&homes, SystemTime::now())
}

/// Answers a request the guard holds for an approval.
pub fn answer(resolver: &Resolver, request: u64, approve: bool) {
    let verdict = if approve {
        Answered::Allow
    } else {
        Answered::Deny
    };
    if let Err(e) = resolver.resolve(RequestId(request), verdict) {
        tracing::warn!("file guard: answering request {request}: {e}");
    }
}
