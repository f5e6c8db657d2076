//! The data path, top to bottom, for every kernel event (and, through
//! [`Core::record`], every MCP call the proxies report):
//!
//! event → enrich (process table) → verdict (the one engine) → enforce
//! (what the kernel already did, or the userspace fallback, or a hold for
//! approval) → audit (the sealed chain, which assigns `seq`) → export (the
//! live JSONL/CEF sinks).
//!
//! The audit chain is written by its own thread ([`AuditWriter`]), which
//! commits in batches and feeds the sinks, so an fsync never stalls the
//! ring-buffer reader. A full writer queue blocks the reader, the ring
//! buffer fills, and the kernel counts the drops: backpressure ends in a
//! counted, reported loss, never a silent one.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sentinel_anomaly::Outcome;
use sentinel_audit::{AuditWriter, Body, Event};
use sentinel_policy::{open_flags_write, Action, Decision, Engine, Mode, Object, Verdict};
use serde::Serialize;
use time::OffsetDateTime;

use crate::bandwidth::BandwidthMeter;
use crate::behaviour::Behaviour;
use crate::clock::WallClock;
use crate::decode::{self, Header, KernelAction, KernelEvent};
use crate::enforce::{self, Approvals, CompiledMaps, PendingApproval, Resolution};
use crate::metrics::Metrics;
use crate::procid::{self, ProcId};

use crate::guards::Guards;
use crate::observe::Sensor;
use crate::process::ProcessTable;
use crate::quarantine::QuarantineStore;

/// How often protected objects are looked for on disk again.
const IDENTIFY_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Counters shared with the control socket (`sentinel status`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub seen: AtomicU64,
    /// Events recorded (audit chain and sinks).
    pub emitted: AtomicU64,
    /// Records that could not be decoded.
    pub decode_errors: AtomicU64,
    /// Events the kernel could not deliver (ring buffer full), as last
    /// reported.
    pub lost: AtomicU64,
    /// Events the audit chain failed to take: not queued (the writer
    /// stopped) or not committed (a failed batch).
    pub audit_errors: AtomicU64,
    /// Events not recorded one by one but folded into an earlier record
    /// that counts its repeats (kernel or reader coalescing).
    pub coalesced: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub seen: u64,
    pub emitted: u64,
    pub decode_errors: u64,
    pub lost: u64,
    pub audit_errors: u64,
    pub coalesced: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            seen: self.seen.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            audit_errors: self.audit_errors.load(Ordering::Relaxed),
            coalesced: self.coalesced.load(Ordering::Relaxed),
        }
    }
}

/// Everything the data path owns. One lock guards it: the ring reader, the
/// control socket and the MCP decision socket take turns.
pub struct Core {
    pub sensor: Sensor,
    pub engine: Arc<Mutex<Engine>>,
    pub maps: CompiledMaps,
    /// Deny/ask rules the kernel cannot decide, and why (for status).
    pub userspace_only: Vec<sentinel_policy::UserspaceOnly>,
    pub approvals: Approvals,
    pub(crate) homes: HashMap<u32, PathBuf>,
    pub(crate) table: ProcessTable,
    clock: WallClock,
    audit: AuditWriter,
    /// The `seq` the audit chain will give the next record (it numbers
    /// records in the order they are handed over, and only this core hands
    /// them over), so the detector can link events by `seq` at once.
    next_seq: u64,
    behaviour: Option<Behaviour>,
    pub stats: Arc<Stats>,
    /// Processes the daemon killed after the fact: children they forked
    /// before the kill landed are killed when their fork is seen.
    condemned: HashSet<ProcId>,
    lost_reported: u64,
    next_recompile: Option<SystemTime>,
    /// The compiled policy the maps were laid out from, kept to find
    /// protected objects created or replaced on disk since.
    kernel_policy: sentinel_policy::KernelPolicy,
    next_identify: std::time::Instant,
    pub bandwidth: BandwidthMeter,
    pub metrics: Arc<Metrics>,
    /// The policy directory in force (absolute); `None`: the embedded
    /// defaults.
    pub policy_dir: Option<PathBuf>,
    /// This run's own files, protected in every policy it loads.
    pub own_files: crate::own_files::OwnFiles,
    /// The newest events, for `sentinel top`'s live feed.
    pub feed: Feed,
    /// Per agent: the risk of its latest verdict, the highest, and how
    /// many events it had.
    pub agent_risk: BTreeMap<String, AgentRisk>,
    /// Held by the kernel without an approval at the last tick.
    orphans: HashSet<u32>,
    /// What the MCP decision socket refused (set when it is bound).
    pub mcp_peers: Arc<sentinel_mcp::daemon::PeerStats>,
    /// The durable copy of the quarantines (the engine holds the live one).
    pub quarantines: Option<QuarantineStore>,
    /// The agent guards' state: identity baselines, responses, alerts
    /// waiting for the playbooks (see `guards`).
    pub(crate) guards: Guards,
    /// Answers opens and execs the file guard holds for an approval.
    pub(crate) guard_holds: Option<sentinel_fanotify::Resolver>,
    /// What the file guard recorded, so the eBPF side's report of the
    /// same call is not recorded twice.
    pub(crate) guard_records: crate::file_guard::GuardRecords,
    /// The file guard's state at the last tick, for `status`.
    pub guard_status: Option<crate::file_guard::GuardStatus>,
    /// Runs of identical opens the kernel folds (see `coalesce`).
    runs: crate::coalesce::Runs,
}

/// One agent's risk as its verdicts report it.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct AgentRisk {
    pub last: u8,
    pub max: u8,
    pub events: u64,
}

/// The newest recorded events, kept in memory for the dashboard; older
/// ones are in the audit chain.
#[derive(Debug, Default)]
pub struct Feed {
    events: VecDeque<Event>,
}

impl Feed {
    const CAPACITY: usize = 4096;

    fn push(&mut self, event: &Event) {
        if self.events.len() == Self::CAPACITY {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
    }

    /// Events after `after` whose JSON contains `filter` (any case), the
    /// newest `limit` of them, and how many matching ones were left out.
    pub fn since(
        &self,
        after: u64,
        filter: Option<&str>,
        limit: usize,
    ) -> (Vec<serde_json::Value>, usize) {
        let needle = filter.map(str::to_lowercase).filter(|f| !f.is_empty());
        let matching: Vec<serde_json::Value> = self
            .events
            .iter()
            .filter(|e| e.seq > after)
            .filter_map(|e| serde_json::to_value(e).ok())
            .filter(|v| {
                needle
                    .as_deref()
                    .is_none_or(|n| v.to_string().to_lowercase().contains(n))
            })
            .collect();
        let skipped = matching.len().saturating_sub(limit);
        (matching.into_iter().skip(skipped).collect(), skipped)
    }

    pub fn last_seq(&self) -> u64 {
        self.events.back().map_or(0, |e| e.seq)
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct CoreParts {
    /// Identity file baselines (`None`: no `[identity]` files).
    pub identity: Option<crate::identity::IdentityMonitor>,
    pub sensor: Sensor,
    pub engine: Arc<Mutex<Engine>>,
    pub homes: HashMap<u32, PathBuf>,
    pub table: ProcessTable,
    pub audit: AuditWriter,
    pub behaviour: Option<Behaviour>,
    pub approvals: Approvals,
    pub metrics: Arc<Metrics>,
    pub policy_dir: Option<PathBuf>,
    pub own_files: crate::own_files::OwnFiles,
    pub quarantines: Option<QuarantineStore>,
}

impl Core {
    pub fn new(parts: CoreParts) -> Result<Self, crate::observe::SensorError> {
        let mut core = Core {
            sensor: parts.sensor,
            engine: parts.engine,
            maps: CompiledMaps::default(),
            userspace_only: Vec::new(),
            approvals: parts.approvals,
            homes: parts.homes,
            table: parts.table,
            clock: WallClock::now(),
            next_seq: parts.audit.stats().last_seq + 1,
            audit: parts.audit,
            behaviour: parts.behaviour,
            stats: Arc::new(Stats::default()),
            condemned: HashSet::new(),
            lost_reported: 0,
            next_recompile: None,
            kernel_policy: sentinel_policy::KernelPolicy::default(),
            next_identify: std::time::Instant::now(),
            bandwidth: BandwidthMeter::new(OffsetDateTime::now_utc()),
            metrics: parts.metrics,
            policy_dir: parts.policy_dir,
            own_files: parts.own_files,
            feed: Feed::default(),
            agent_risk: BTreeMap::new(),
            orphans: HashSet::new(),
            mcp_peers: Arc::default(),
            quarantines: parts.quarantines,
            guards: Guards::new(parts.identity),
            guard_holds: None,
            guard_records: Default::default(),
            guard_status: None,
            runs: Default::default(),
        };
        core.recompile()?;
        Ok(core)
    }

    /// Compiles the engine's current policy, quarantine and mode into the
    /// kernel's maps.
    pub fn recompile(&mut self) -> Result<(), crate::observe::SensorError> {
        let kp = lock(&self.engine).kernel_policy(&self.homes, SystemTime::now());
        self.next_recompile = kp.next_expiry;
        let mut maps = enforce::compile_maps(&kp);
        enforce::identify(&kp, &mut maps);
        for skipped in &maps.skipped {
            tracing::warn!("{skipped}");
        }
        enforce::apply(&mut self.sensor, &mut maps)?;
        self.maps = maps;
        self.userspace_only = kp.userspace_only.clone();
        self.kernel_policy = kp;
        // The policy or the mode changed: an open is decided afresh, not
        // folded into a run its first open started under the old one.
        self.sensor.new_coalesce_epoch()
    }

    /// Looks for protected objects that appeared or were replaced on disk
    /// since the maps were written (a key created later, a file renamed
    /// over another) and updates the kernel when anything changed.
    pub fn reidentify(&mut self) {
        let mut maps = enforce::compile_maps(&self.kernel_policy);
        enforce::identify(&self.kernel_policy, &mut maps);
        if maps.inodes == self.maps.inodes && maps.paths.len() == self.maps.paths.len() {
            return;
        }
        match enforce::apply(&mut self.sensor, &mut maps) {
            Ok(()) => self.maps = maps,
            Err(e) => tracing::error!("updating the protected objects failed: {e}"),
        }
    }

    /// Handles one ring-buffer record.
    pub fn handle_raw(&mut self, bytes: &[u8]) {
        self.stats.seen.fetch_add(1, Ordering::Relaxed);
        match decode::decode(bytes) {
            Ok(event) => self.handle(event),
            Err(e) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{e}");
            }
        }
    }

    pub fn handle(&mut self, event: KernelEvent) {
        let ts = self.clock.wall(event.header().ktime_ns);
        if let KernelEvent::Repeat {
            header,
            run_ktime_ns,
            count,
            file,
            flags,
        } = event
        {
            self.record_folded(ts, &header, run_ktime_ns, count, &file, flags, true);
            return;
        }
        let header = event.header().clone();
        // An open the kernel may fold later repeats into (see `coalesce`).
        let may_start_run = header.action == KernelAction::None
            && matches!(&event, KernelEvent::Open { ret: Some(r), file, .. }
                if *r >= 0 && !file.path.is_empty());
        let approval = enforce::approval_key(&event);
        // An exec held at entry (BPF LSM) restarts when resumed and needs
        // its one-shot approval then; one held after it (a tracepoint)
        // does not, and must not leave one behind.
        let restart =
            approval.filter(|_| matches!(&event, KernelEvent::Exec { at_entry: true, .. }));
        if let KernelEvent::Open { ret: Some(ret), .. } = &event {
            if *ret == -libc::EPERM && self.guard_records.take_refused(header.tid) {
                return;
            }
        }
        let Some(body) = self.enrich(event) else {
            return;
        };
        if let Body::FileChange { process, path, .. } = &body {
            if self.guard_records.has_change(process.pid, path) {
                return;
            }
        }
        let mut verdict = self.verdict_and_enforce(&body, &header, approval, restart);
        if let Some(v) = verdict.as_mut() {
            self.put_back_identity(&body, v);
        }
        if may_start_run {
            self.runs
                .started(header.tid, header.ktime_ns, &body, &verdict);
        }
        let seq = self.next_seq;
        self.push(ts, body, verdict);
        self.emit_followups(seq);
    }

    /// Records the opens the kernel folded into a thread's run (`count`
    /// in all; `ended`: the run is over) that were not recorded yet, as
    /// one record that says how many they are.
    #[allow(clippy::too_many_arguments)]
    fn record_folded(
        &mut self,
        ts: OffsetDateTime,
        header: &Header,
        run_ktime_ns: u64,
        count: u64,
        file: &decode::FileRef,
        flags: u32,
        ended: bool,
    ) {
        let Some(folded) = self.runs.folded(header.tid, run_ktime_ns, count, ended) else {
            return;
        };
        self.stats
            .coalesced
            .fetch_add(folded.opens, Ordering::Relaxed);
        let (body, verdict) = match folded.first {
            Some((first, verdict)) => (
                crate::coalesce::repeat_record(first, folded.opens),
                verdict.map(|mut v| {
                    // The first open of the run carried the verdict and
                    // its alert; the count does not alert again.
                    v.alert = false;
                    v
                }),
            ),
            None => (
                Body::Open {
                    process: self
                        .table
                        .info(header.pid, header.uid, &header.comm, header.ktime_ns),
                    path: format!("inode {}:{}", file.dev, file.ino),
                    path_requested: None,
                    flags,
                    repeats: folded.opens,
                },
                None,
            ),
        };
        self.push(ts, body, verdict);
    }

    /// Runs of folded opens left idle (the thread stopped opening but did
    /// not exit) are recorded from the kernel's map once idle for the
    /// coalescing window.
    fn sweep_folded(&mut self) {
        let runs = match self.sensor.coalesce_runs() {
            Ok(runs) => runs,
            Err(e) => {
                tracing::warn!("reading the folded opens: {e}");
                return;
            }
        };
        let now = crate::observe::monotonic_ns();
        for (tid, run) in runs {
            if run.count == 0
                || run.dentry == 0
                || now.saturating_sub(run.last_ns) < sentinel_common::COALESCE_WINDOW_NS
                || self.runs.is_current(tid, run.run_ktime_ns, run.count)
            {
                continue;
            }
            let header = Header {
                pid: run.pid,
                tid,
                uid: run.uid,
                ktime_ns: run.last_ns,
                action: KernelAction::None,
                rule_id: run.rule_id,
                comm: String::new(),
            };
            let file = decode::FileRef {
                dev: run.obj.dev,
                ino: run.obj.ino,
                ..Default::default()
            };
            let ts = self.clock.wall(run.last_ns);
            self.record_folded(
                ts,
                &header,
                run.run_ktime_ns,
                run.count,
                &file,
                run.flags,
                false,
            );
        }
    }

    /// Turns a kernel event into the record body, keeping the process
    /// table current. Fork events only update the table.
    fn enrich(&mut self, event: KernelEvent) -> Option<Body> {
        let at = event.header().ktime_ns;
        let t = &mut self.table;
        Some(match event {
            KernelEvent::Fork { header, child_pid } => {
                t.on_fork(header.pid, header.uid, &header.comm, child_pid, at);
                let parent = t.get(header.pid).and_then(|e| e.id(header.pid));
                if parent.is_some_and(|p| self.condemned.contains(&p)) {
                    if let Some(child) = t.get(child_pid).and_then(|e| e.id(child_pid)) {
                        let _ = procid::signal(child, libc::SIGKILL);
                        self.condemned.insert(child);
                    }
                }
                return None;
            }
            KernelEvent::Exec {
                header,
                ppid,
                binary,
                filename,
                argv,
                argv_truncated,
                ..
            } => {
                // The binary the kernel resolved is the truth; the name
                // passed is kept when it differs (a symlink, a script,
                // /proc/self/fd/N).
                let resolved =
                    (!binary.path.is_empty() && !binary.truncated).then_some(binary.path.as_str());
                t.on_exec(
                    header.pid,
                    ppid,
                    header.uid,
                    &header.comm,
                    resolved,
                    &filename,
                    at,
                );
                let process = t.info(header.pid, header.uid, &header.comm, at);
                let path_requested =
                    (!filename.is_empty() && filename != process.exe).then_some(filename);
                Body::Exec {
                    process,
                    argv,
                    argv_truncated,
                    path_requested,
                }
            }
            KernelEvent::Open {
                header,
                file,
                requested,
                flags,
                dfd,
                ..
            } => {
                let path = if file.path.is_empty() {
                    t.resolve_path(header.pid, dfd, &requested)
                } else {
                    file.path
                };
                Body::Open {
                    path_requested: (!requested.is_empty() && requested != path)
                        .then_some(requested),
                    path,
                    process: t.info(header.pid, header.uid, &header.comm, at),
                    flags,
                    repeats: 0,
                }
            }
            KernelEvent::Change {
                header,
                op,
                target,
                target_requested,
                source,
                source_requested,
                ..
            } => {
                let path = t.change_path(header.pid, &target, &target_requested);
                let source = source.map(|s| t.change_path(header.pid, &s, &source_requested));
                Body::FileChange {
                    process: t.info(header.pid, header.uid, &header.comm, at),
                    op: op.name().to_string(),
                    path_requested: (!target_requested.is_empty() && target_requested != path)
                        .then_some(target_requested),
                    path,
                    source_requested: match &source {
                        Some(s) if !source_requested.is_empty() && source_requested != *s => {
                            Some(source_requested)
                        }
                        _ => None,
                    },
                    source,
                }
            }
            KernelEvent::Connect {
                header, addr, port, ..
            } => Body::Connect {
                process: t.info(header.pid, header.uid, &header.comm, at),
                family: if addr.is_ipv4() { "inet" } else { "inet6" }.to_string(),
                addr: addr.to_string(),
                port,
            },
            KernelEvent::Exit { header } => {
                let process = t.info(header.pid, header.uid, &header.comm, at);
                let gone = t.on_exit(header.pid, at);
                if let Some(id) = gone.as_ref().and_then(|e| e.id(header.pid)) {
                    self.condemned.remove(&id);
                }
                self.bandwidth.process_exited(
                    header.pid,
                    gone.and_then(|e| e.agent.map(|a| a.to_string())),
                );
                self.runs.exited(header.pid);
                Body::Exit { process }
            }
            KernelEvent::Repeat { .. } => return None,
            KernelEvent::Tamper {
                header,
                op,
                signal,
                target,
            } => {
                let process = t.info(header.pid, header.uid, &header.comm, at);
                let done = match header.action {
                    KernelAction::Denied => "refused in the kernel",
                    KernelAction::Killed => "the process was killed",
                    _ => "seen",
                };
                Body::Alert {
                    severity: "critical".into(),
                    category: "tamper".into(),
                    reason: format!(
                        "{} (pid {}, uid {}) tried {} against the sentinel (target {target}, signal {signal}); {done}",
                        process.comm,
                        process.pid,
                        process.uid,
                        sentinel_common::tamper_op::name(op),
                    ),
                    related: Vec::new(),
                }
            }
            KernelEvent::IoUring { header } => {
                let process = t.info(header.pid, header.uid, &header.comm, at);
                Body::Alert {
                    severity: "warning".into(),
                    category: "defense_evasion".into(),
                    reason: format!(
                        "{} (pid {}) tried io_uring, which bypasses syscall monitoring; killed",
                        process.comm, process.pid
                    ),
                    related: Vec::new(),
                }
            }
        })
    }

    /// The engine's verdict, reconciled with what the kernel already did,
    /// and carried out where the kernel could not.
    fn verdict_and_enforce(
        &mut self,
        body: &Body,
        header: &Header,
        approval: Option<sentinel_common::ApprovalKey>,
        restart: Option<sentinel_common::ApprovalKey>,
    ) -> Option<Verdict> {
        let action = action_for(body)?;
        let mut v = lock(&self.engine)
            .assess(&action, SystemTime::now())
            .verdict;
        // A rename or link changes its source name too: the stricter
        // verdict of the two stands.
        if let Some(source) = source_action_for(body) {
            let sv = lock(&self.engine)
                .assess(&source, SystemTime::now())
                .verdict;
            if strictness(sv.action) > strictness(v.action) {
                v = sv;
            }
        }
        self.enforce_auto_lockdown();
        self.gate_elevated_child(body, &mut v);
        let pid = header.pid;
        if header.action == KernelAction::Held
            && self.settle_gated_elevator(pid, body, restart, &mut v)
        {
            return Some(v);
        }
        match header.action {
            KernelAction::Killed | KernelAction::Denied => {
                let kernel_rule = self.maps.rule_name(header.rule_id);
                if v.action != Decision::Deny || v.rule.as_deref() != Some(kernel_rule.as_str()) {
                    v.reason = format!("denied in the kernel by {kernel_rule}");
                    v.rule = Some(kernel_rule);
                    v.action = Decision::Deny;
                }
                v.enforced = true;
                v.reason = format!(
                    "{}; {}",
                    v.reason,
                    if header.action == KernelAction::Killed {
                        "the kernel killed the process at the syscall"
                    } else {
                        "the kernel refused the call with EPERM"
                    }
                );
            }
            KernelAction::Held => {
                v.action = Decision::Ask;
                if v.rule.is_none() {
                    v.rule = Some(self.maps.rule_name(header.rule_id));
                }
                v.enforced = true;
                let id = self.hold(pid, body, v.rule.clone(), approval);
                v.reason = format!(
                    "{}; held by the kernel: `sentinel approve {id}` resumes it, `sentinel deny {id}` kills it",
                    v.reason
                );
            }
            KernelAction::None => match v.action {
                Decision::Deny
                    if v.rule
                        .as_ref()
                        .is_some_and(|r| self.maps.refused.contains(r)) =>
                {
                    let killed = self.kill_tree(pid);
                    v.enforced = false;
                    v.reason = format!(
                        "{}; the kernel refused this rule's map entries, so it was decided in userspace: {}",
                        v.reason,
                        if killed { "the daemon killed the process after the call" } else { "the process had already exited" }
                    );
                }
                Decision::Deny => {
                    let killed = self.kill_tree(pid);
                    v.enforced = false;
                    v.reason = format!(
                        "{}; decided in userspace: {}",
                        v.reason,
                        if killed {
                            "the daemon killed the process after the call"
                        } else {
                            "the process had already exited"
                        }
                    );
                }
                Decision::Ask if self.guard_records.take_approved(pid, &describe(body)) => {
                    // The kernel held this very call before its effect and
                    // the operator let it through: this is its report.
                    v.action = Decision::Allow;
                    v.enforced = true;
                    v.reason = format!("{}; approved while the kernel held it", v.reason);
                }
                Decision::Ask => {
                    // Stopped after the fact: the call has happened, but the
                    // process cannot use its result until a human decides.
                    let start = self.table.get(pid).and_then(|e| e.start);
                    let stopped = procid::signal_known(pid, start, libc::SIGSTOP).is_ok();
                    if stopped {
                        let _ = self.sensor.hold(pid);
                    }
                    let id = self.hold(pid, body, v.rule.clone(), None);
                    v.enforced = false;
                    v.reason = format!(
                        "{}; decided in userspace, {}: `sentinel approve {id}` / `sentinel deny {id}`",
                        v.reason,
                        if stopped { "process stopped after the call" } else { "process already gone" }
                    );
                }
                _ => {}
            },
        }
        if let Some(b) = &self.behaviour {
            let outcome = match (header.action, v.action) {
                (KernelAction::Denied | KernelAction::Killed, _) | (_, Decision::Deny) => {
                    Some(Outcome::Denied)
                }
                (KernelAction::None, Decision::Allow | Decision::LogOnly) => Some(Outcome::Success),
                _ => None,
            };
            if let Some(outcome) = outcome {
                b.outcome(&action, outcome);
            }
        }
        Some(v)
    }

    /// The scorer latches an auto-lockdown once (not while learning) until
    /// the operator lifts it; the mode follows at once. Checked after every
    /// kernel verdict and every tick (an MCP call's score can trip it too).
    fn enforce_auto_lockdown(&mut self) {
        if let Some(order) = self.behaviour.as_ref().and_then(Behaviour::take_lockdown) {
            self.set_mode(Mode::Lockdown, &order.reason);
            let alert = self
                .behaviour
                .as_mut()
                .and_then(|b| b.raise(order.alert(), SystemTime::now()));
            if let Some(alert) = alert {
                let event = alert.to_event(self.take_seq());
                self.emit(event);
            }
        }
    }

    /// Whether the daemon already killed `pid` after the fact.
    pub(crate) fn is_condemned(&self, pid: u32) -> bool {
        self.condemned.iter().any(|id| id.pid == pid)
    }

    /// Kills a process and every descendant the table knows of, and
    /// remembers them so children whose fork is still in the ring buffer
    /// follow. Only processes whose identity (pid and start time) the
    /// table holds are signalled. Returns whether the process itself was
    /// still there.
    pub(crate) fn kill_tree(&mut self, pid: u32) -> bool {
        let mut killed = false;
        for (i, p) in std::iter::once(pid)
            .chain(self.table.descendants(pid))
            .enumerate()
        {
            let Some(id) = self.table.get(p).and_then(|e| e.id(p)) else {
                continue;
            };
            let sent = procid::signal(id, libc::SIGKILL).is_ok();
            killed |= i == 0 && sent;
            self.condemned.insert(id);
        }
        killed
    }

    fn hold(
        &mut self,
        pid: u32,
        body: &Body,
        rule: Option<String>,
        approval: Option<sentinel_common::ApprovalKey>,
    ) -> u64 {
        let start = self.table.get(pid).and_then(|e| e.start);
        self.approvals
            .hold(pid, start, describe(body), rule, approval)
    }

    /// What the process table holds, for `status`.
    pub fn table_stats(&self) -> crate::process::TableStats {
        self.table.stats()
    }

    pub(crate) fn push(&mut self, ts: OffsetDateTime, body: Body, verdict: Option<Verdict>) {
        self.record(Event {
            seq: 0,
            ts,
            body,
            verdict,
        });
    }

    /// Hands an event to the audit writer (which commits it and publishes
    /// it to the sinks), then to the detector; new alerts follow it.
    pub fn record(&mut self, mut event: Event) {
        event.seq = self.take_seq();
        let alerts = match self.behaviour.as_mut() {
            Some(b) if !matches!(event.body, Body::Alert { .. }) => {
                if let Some((action, outcome)) = crate::behaviour::outcome_of_mcp(&event) {
                    b.outcome(&action, outcome);
                }
                let (alerts, link) = b.observe(&event);
                // The analyst sees which tool call caused a kernel action
                // in that action's own record.
                if let (Some(link), Some(v)) = (link, event.verdict.as_mut()) {
                    v.reason = format!("{}; during {link}", v.reason);
                }
                alerts
            }
            _ => Vec::new(),
        };
        self.emit(event);
        for alert in alerts {
            let event = alert.to_event(self.take_seq());
            self.emit(event);
        }
        self.respond();
    }

    /// Hands a numbered event to the audit writer, counting it for the
    /// metrics and keeping it for the live feed; alerts are queued for
    /// the playbooks.
    pub(crate) fn emit(&mut self, event: Event) {
        self.guards.observe(&event);
        self.metrics.observe(&event);
        if let (Some(agent), Some(v)) = (
            event.process().and_then(|p| p.agent.as_ref()),
            &event.verdict,
        ) {
            let r = self.agent_risk.entry(agent.clone()).or_default();
            r.last = v.risk;
            r.max = r.max.max(v.risk);
            r.events += 1;
        }
        self.feed.push(&event);
        self.audit.record(event);
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn take_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq - 1
    }

    /// Once a second: kernel drops become a `lost` event, the byte counts
    /// of watched sockets are read, timed-out approvals are denied,
    /// expired quarantines recompiled.
    pub fn tick(&mut self) {
        self.read_bandwidth();
        if let Err(e) = self.sensor.refresh_self_threads() {
            tracing::warn!("self-protection: {e}");
        }
        if self.next_identify <= std::time::Instant::now() {
            self.reidentify();
            self.next_identify = std::time::Instant::now() + IDENTIFY_EVERY;
        }
        let lost = self.sensor.counters().map(|c| c.ringbuf_full).unwrap_or(0);
        self.stats.lost.store(lost, Ordering::Relaxed);
        // Lost events may have been exits: check every entry then.
        self.table.sweep(lost > self.lost_reported);
        if lost > self.lost_reported {
            let count = lost - self.lost_reported;
            self.lost_reported = lost;
            tracing::warn!("{count} events lost: the ring buffer was full");
            self.push(OffsetDateTime::now_utc(), Body::Lost { count }, None);
        }
        if let Some(b) = self.behaviour.as_mut() {
            b.reload_webhook();
        }
        self.enforce_auto_lockdown();
        self.adopt_orphans();
        self.sweep_folded();
        for (p, resolution) in self.approvals.expire(&mut self.sensor) {
            self.answer_guard(&p, false);
            self.push_resolution(&p, resolution, "timeout");
        }
        let audit = self.audit.stats();
        let errors = audit.failed + audit.dropped;
        if errors > self.stats.audit_errors.swap(errors, Ordering::Relaxed) {
            tracing::error!(
                "the audit chain failed to take {errors} events so far ({} not committed, {} not queued)",
                audit.failed,
                audit.dropped
            );
        }
        if self.next_recompile.is_some_and(|t| t <= SystemTime::now()) {
            if let Err(e) = self.recompile() {
                tracing::error!("recompiling the kernel maps failed: {e}");
            }
        }
        self.guards_tick();
    }

    /// A process the kernel stopped for an approval whose event was lost
    /// (ring buffer full) would wait forever unseen: one held for two
    /// ticks without an approval gets one, times out like any other, and
    /// the loss is recorded.
    fn adopt_orphans(&mut self) {
        let held = match self.sensor.held_pids() {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!("reading the held processes: {e}");
                return;
            }
        };
        let waiting: HashSet<u32> = held
            .into_iter()
            .filter(|pid| !self.approvals.holds(*pid))
            .collect();
        let adopt: Vec<u32> = waiting.intersection(&self.orphans).copied().collect();
        for pid in adopt {
            let id = self.approvals.hold(
                pid,
                procid::start_time(pid),
                format!(
                    "a held action of pid {pid} (its event was lost: the ring buffer was full)"
                ),
                None,
                None,
            );
            let reason = format!(
                "pid {pid} is held by the kernel but its event was lost; approval {id}: `sentinel approve {id}` / `sentinel deny {id}`"
            );
            tracing::warn!("{reason}");
            self.push(
                OffsetDateTime::now_utc(),
                Body::Alert {
                    severity: "warning".into(),
                    category: "approval".into(),
                    reason,
                    related: Vec::new(),
                },
                None,
            );
        }
        self.orphans = waiting;
    }

    /// Reads the kernel's socket counters into the bandwidth meter and
    /// stops counting released sockets whose counts have settled.
    fn read_bandwidth(&mut self) {
        if self.sensor.flows_unavailable.is_some() {
            return;
        }
        let flows = match self.sensor.flows() {
            Ok(flows) => flows,
            Err(e) => {
                tracing::warn!("reading the socket byte counts: {e}");
                return;
            }
        };
        let table = &self.table;
        let settled = self
            .bandwidth
            .observe(&flows, OffsetDateTime::now_utc(), |pid, uid| {
                table.agent_of(pid, uid)
            });
        for cookie in settled {
            if let Err(e) = self.sensor.forget_flow(cookie) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Resolves an approval (`sentinel approve|deny ID`).
    pub fn resolve(&mut self, id: u64, approve: bool, by: &str) -> Option<Resolution> {
        let (p, resolution) = self.approvals.resolve(id, approve, &mut self.sensor)?;
        self.answer_guard(&p, approve);
        self.push_resolution(&p, resolution, by);
        Some(resolution)
    }

    /// An approval of a call the file guard holds is answered in the
    /// kernel (the process is blocked in the call, not stopped).
    /// A call approved while the kernel held it (before its effect) is
    /// reported again when it completes: that report is not asked again.
    fn answer_guard(&mut self, p: &PendingApproval, approve: bool) {
        if let (Some(request), Some(resolver)) = (p.guard_request, &self.guard_holds) {
            crate::file_guard::answer(resolver, request, approve);
        }
        if approve && (p.guard_request.is_some() || p.kernel_key.is_some()) {
            self.guard_records.approved(p.pid, &p.action);
        }
    }

    fn push_resolution(&mut self, p: &PendingApproval, resolution: Resolution, by: &str) {
        let severity = if resolution == Resolution::Approved {
            "info"
        } else {
            "warning"
        };
        self.push(
            OffsetDateTime::now_utc(),
            Body::Alert {
                severity: severity.into(),
                category: "approval".into(),
                reason: format!(
                    "approval {} for pid {} ({}): {:?} by {by}",
                    p.id, p.pid, p.action, resolution
                ),
                related: Vec::new(),
            },
            None,
        );
    }

    /// A tool call the engine let through is about to reach the MCP
    /// server behind proxy `proxy_pid`: records that it started and links
    /// the server's kernel events to it. Returns the call's `seq`.
    pub fn mcp_call_started(
        &mut self,
        proxy_pid: u32,
        uid: u32,
        server: String,
        tool: String,
        args: &serde_json::Value,
    ) -> u64 {
        let comm = std::fs::read_to_string(format!("/proc/{proxy_pid}/comm")).unwrap_or_default();
        let process = self
            .table
            .info(proxy_pid, uid, comm.trim(), procid::now_ktime());
        let args_digest = blake3::hash(sentinel_policy::canonical_json(args).as_bytes())
            .to_hex()
            .to_string();
        let seq = self.next_seq;
        if let Some(b) = self.behaviour.as_mut() {
            b.call_started(seq, proxy_pid);
        }
        self.push(
            OffsetDateTime::now_utc(),
            Body::McpCall {
                process,
                server,
                tool,
                // The proxy records the redacted arguments with the outcome;
                // this record only identifies them.
                args: serde_json::json!({ "blake3": args_digest }),
                outcome: Some("started".into()),
            },
            None,
        );
        seq
    }

    pub fn mcp_call_finished(&mut self, call_seq: u64) {
        if let Some(b) = self.behaviour.as_mut() {
            b.call_finished(call_seq);
        }
    }

    /// Loads the policy directory and puts it in force, kernel maps
    /// included; if it does not load or compile, the running policy stays.
    /// Either way the outcome is recorded. Returns the number of rules.
    pub fn reload_policy(&mut self, dir: &std::path::Path, by: &str) -> Result<usize, String> {
        let result = self.try_reload(dir);
        let (severity, reason) = match &result {
            Ok(rules) => (
                "info",
                format!(
                    "policy reloaded from {} by {by}: {rules} rules",
                    dir.display()
                ),
            ),
            Err(e) => (
                "warning",
                format!(
                    "policy reload from {} by {by} failed, the previous policy stays in force: {e}",
                    dir.display()
                ),
            ),
        };
        tracing::info!("{reason}");
        self.push(
            OffsetDateTime::now_utc(),
            Body::Alert {
                severity: severity.into(),
                category: "policy".into(),
                reason,
                related: Vec::new(),
            },
            None,
        );
        result
    }

    fn try_reload(&mut self, dir: &std::path::Path) -> Result<usize, String> {
        let policy = self.own_files.load(Some(dir)).map_err(|e| e.to_string())?;
        let rules = policy.rules().len();
        let old = lock(&self.engine).policy().clone();
        if let Some(m) = self.guards.identity.as_mut() {
            m.set_patterns(policy.identity());
            m.set_guarded(sentinel_policy::unchangeable_patterns(&policy));
        }
        lock(&self.engine).reload(policy);
        if let Err(e) = self.recompile() {
            lock(&self.engine).reload(old);
            let _ = self.recompile();
            return Err(format!("compiling it into the kernel maps failed: {e}"));
        }
        self.policy_dir = Some(std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()));
        Ok(rules)
    }

    /// Sets the anomaly thresholds for the engine's escalation and the
    /// scorer's auto-lockdown alike.
    pub fn set_thresholds(&mut self, t: sentinel_policy::AnomalyThresholds) -> Result<(), String> {
        if let Some(b) = &self.behaviour {
            b.set_thresholds(t)?;
        }
        lock(&self.engine).set_anomaly_thresholds(t);
        Ok(())
    }

    /// Switches the mode for kernel and MCP actions at once, recompiles the
    /// kernel maps and records who asked.
    pub fn set_mode(&mut self, mode: Mode, by: &str) {
        let from = {
            let mut engine = lock(&self.engine);
            let from = engine.mode();
            engine.set_mode(mode);
            from
        };
        if let Some(b) = &self.behaviour {
            b.set_mode(mode, by);
        }
        if let Err(e) = self.recompile() {
            tracing::error!("recompiling the kernel maps for mode {mode:?} failed: {e}");
        }
        self.push(
            OffsetDateTime::now_utc(),
            Body::ModeChange {
                from: mode_name(from),
                to: mode_name(mode),
                by: by.to_string(),
            },
            None,
        );
    }

    /// Records a configuration reload's outcome (category `config`).
    pub fn record_config_alert(&mut self, severity: &str, reason: String) {
        self.push(
            OffsetDateTime::now_utc(),
            Body::Alert {
                severity: severity.into(),
                category: "config".into(),
                reason,
                related: Vec::new(),
            },
            None,
        );
    }

    /// Publishes to new sinks from now on (SIGHUP).
    pub fn replace_sinks(&self, sinks: sentinel_audit::Sinks) {
        self.audit.replace_sinks(sinks);
    }

    /// Sets (or clears) the alert webhook the configuration file names.
    pub fn set_webhook(
        &mut self,
        config: Option<sentinel_anomaly::WebhookConfig>,
    ) -> Result<(), String> {
        match self.behaviour.as_mut() {
            Some(b) => b.set_webhook(config),
            None => Err("alerts are not raised by this daemon".into()),
        }
    }

    /// The alerts store, for the control socket (`sentinel top`).
    pub fn behaviour_mut(&mut self) -> Option<&mut Behaviour> {
        self.behaviour.as_mut()
    }

    pub fn tracked_processes(&self) -> usize {
        self.table.len()
    }

    pub fn audit_stats(&self) -> sentinel_audit::AuditWriterStats {
        self.audit.stats()
    }

    /// Waits until everything recorded so far is committed and published.
    pub fn flush(&self) {
        let _ = self.audit.flush(std::time::Duration::from_secs(10));
    }

    /// Commits everything and stops the writer and the sinks (the daemon
    /// is exiting).
    pub fn shutdown(self) {
        self.guards.shutdown();
        let stats = self.audit.shutdown();
        if stats.dropped > 0 || stats.failed > 0 {
            tracing::warn!(
                "the audit writer dropped {} and failed {} events",
                stats.dropped,
                stats.failed
            );
        }
        for (name, sink) in stats.sinks {
            if sink.dropped > 0 {
                tracing::warn!("sink {name} dropped {} records", sink.dropped);
            }
        }
    }
}

pub fn mode_name(mode: Mode) -> String {
    serde_json::to_value(mode)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// How far a decision goes, to pick the stricter of two verdicts.
fn strictness(d: Decision) -> u8 {
    match d {
        Decision::Allow => 0,
        Decision::LogOnly => 1,
        Decision::Ask => 2,
        Decision::Deny => 3,
    }
}

/// The other name a rename or link changes, as a write to it.
fn source_action_for(body: &Body) -> Option<Action> {
    let Body::FileChange {
        process,
        op,
        source: Some(source),
        ..
    } = body
    else {
        return None;
    };
    if op != "rename" {
        return None;
    }
    Some(Action {
        agent: process.agent.clone(),
        uid: process.uid,
        pid: process.pid,
        object: Object::Open {
            path: source.clone(),
            write: true,
        },
    })
}

/// The engine's view of a kernel event; `None` for kinds that are not
/// actions (exit, alerts). A file-system change is a write to its path.
pub(crate) fn action_for(body: &Body) -> Option<Action> {
    let (process, object) = match body {
        Body::Exec { process, argv, .. } => (
            process,
            Object::Exec {
                binary: process.exe.clone(),
                argv: argv.clone(),
            },
        ),
        // An O_PATH handle reads nothing; reopening it through
        // /proc/self/fd is an open of its own and decided then.
        Body::Open { flags, .. } if flags & (libc::O_PATH as u32) != 0 => return None,
        Body::Open {
            process,
            path,
            flags,
            ..
        } => (
            process,
            Object::Open {
                path: path.clone(),
                write: open_flags_write(*flags),
            },
        ),
        Body::FileChange { process, path, .. } => (
            process,
            Object::Open {
                path: path.clone(),
                write: true,
            },
        ),
        Body::Connect {
            process,
            addr,
            port,
            ..
        } => (
            process,
            Object::Connect {
                addr: addr.parse().ok()?,
                port: *port,
            },
        ),
        _ => return None,
    };
    Some(Action {
        agent: process.agent.clone(),
        uid: process.uid,
        pid: process.pid,
        object,
    })
}

/// A short description of an action for approvals.
pub(crate) fn describe(body: &Body) -> String {
    match body {
        Body::Exec { process, .. } => format!("exec {}", process.exe),
        Body::Open { path, .. } => format!("open {path}"),
        Body::FileChange {
            op,
            path,
            source: Some(source),
            ..
        } => format!("{op} {source} -> {path}"),
        Body::FileChange { op, path, .. } => format!("{op} {path}"),
        Body::Connect { addr, port, .. } => format!("connect {addr}:{port}"),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_audit::ProcessInfo;

    fn info() -> ProcessInfo {
        ProcessInfo {
            pid: 7,
            ppid: 1,
            uid: 1000,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
            agent: Some("claude".into()),
        }
    }

    #[test]
    fn kernel_events_become_engine_actions() {
        let exec = Body::Exec {
            process: info(),
            argv: vec!["curl".into(), "x".into()],
            argv_truncated: false,
            path_requested: None,
        };
        let a = action_for(&exec).unwrap();
        assert_eq!(a.agent.as_deref(), Some("claude"));
        assert!(matches!(a.object, Object::Exec { ref binary, .. } if binary == "/usr/bin/curl"));
        let open = Body::Open {
            process: info(),
            path: "/etc/shadow".into(),
            path_requested: None,
            flags: 0o1101,
            repeats: 0,
        };
        assert!(matches!(
            action_for(&open).unwrap().object,
            Object::Open { write: true, .. }
        ));
        let connect = Body::Connect {
            process: info(),
            addr: "::1".into(),
            port: 443,
            family: "inet6".into(),
        };
        assert!(matches!(
            action_for(&connect).unwrap().object,
            Object::Connect { port: 443, .. }
        ));
        assert!(action_for(&Body::Exit { process: info() }).is_none());
        assert_eq!(describe(&exec), "exec /usr/bin/curl");
        assert_eq!(mode_name(Mode::SilentDeny), "silent-deny");
    }
}
