//! `sentinel run`: the daemon's lifetime. Checks the machine, opens the
//! engine, the audit chain and the sinks, loads the sensor, watches the
//! requested UIDs, then runs until SIGINT or SIGTERM: the ring-buffer
//! reader (which drives the [`Core`] data path), the control socket, the
//! MCP decision socket, the metrics endpoint, and a once-a-second
//! housekeeping tick. SIGHUP reloads the configuration file (see
//! [`reload`]): policy, mode, sinks and webhook change in place; what
//! needs a restart is named. On the way
//! out it drains the ring buffer, flushes the chain and the sinks, and
//! detaches every program (dropping the sensor does that on every path).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use sentinel_audit::{AuditLog, AuditWriter, AuditWriterOptions, SinkOptions, SinkSpec, Sinks};
use sentinel_mcp::daemon::{
    bind_socket, serve_decisions, DaemonRequest, DaemonResponse, DecisionHandler, PeerBoundHandler,
    PeerCred,
};
use sentinel_mcp::inprocess::SharedEngine;
use sentinel_mcp::{AuditSink, LocalDecider, ScanPolicy, Store};
use sentinel_policy::{homes_from_passwd, Decision, Engine, Mode, Policy};
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::behaviour::Behaviour;
use crate::config::{self, Settings};
use crate::control;
use crate::control_ops;
use crate::enforce::Approvals;
use crate::file_guard::{FileGuard, Watched};
use crate::metrics::{self, Metrics};
use crate::observe::{Sensor, SensorOptions};
use crate::pipeline::{lock, mode_name, Core, CoreParts};
use crate::preflight;
use crate::process::ProcessTable;
use crate::quarantine::QuarantineStore;

/// What `sentinel run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Watched UIDs and their agent names.
    pub agents: BTreeMap<u32, String>,
    /// `--jsonl` and `--cef` sinks.
    pub sinks: Vec<SinkSpec>,
    pub sink_options: SinkOptions,
    pub state_dir: PathBuf,
    pub db: PathBuf,
    /// The policy to start with, loaded (and so checked) by the caller.
    pub policy: Policy,
    /// Where it came from, for SIGHUP reloads; `None`: the embedded
    /// defaults.
    pub policy_dir: Option<PathBuf>,
    /// This run's own files (see [`crate::own_files`]), protected in the
    /// policy at start and at every reload.
    pub own_files: crate::own_files::OwnFiles,
    pub mode: Mode,
    pub approval_timeout: Duration,
    /// Between posture scans; zero: none.
    pub scan_interval: Duration,
    pub sensor: SensorOptions,
    /// `--metrics ADDR`.
    pub metrics: Option<std::net::SocketAddr>,
    /// The webhook the configuration file names, if it names one.
    pub webhook: Option<sentinel_anomaly::WebhookConfig>,
    /// Re-reads the configuration on SIGHUP.
    pub reloader: Option<config::Reloader>,
}

/// Ring-buffer records handled per hold of the core lock.
const RING_BATCH: usize = 512;

pub fn run(config: RunConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(config))
}

/// Loads the policy the daemon will run: a bad directory is an error
/// before anything is attached.
pub fn load_policy(dir: Option<&Path>) -> Result<Policy> {
    match dir {
        Some(dir) => Policy::load_dir(dir).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(Policy::embedded_defaults()),
    }
}

async fn run_async(mut config: RunConfig) -> Result<()> {
    // Handlers first: a signal that arrives while starting up must not
    // take the default action (SIGHUP would kill the daemon).
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let policy = config.policy.clone();
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))?;
    let mut control_socket = control::bind(&config.state_dir)?;
    if let Some(parent) = config.db.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let audit = AuditLog::open(&config.db, &config.state_dir)
        .map_err(|e| anyhow::anyhow!("opening the audit chain {}: {e}", config.db.display()))?;
    let sinks = Sinks::start(&config.sinks, &config.sink_options)
        .map_err(|e| anyhow::anyhow!("starting the export sinks: {e}"))?;
    let metrics_listener = match config.metrics {
        Some(addr) => Some(metrics::bind(addr).await?),
        None => None,
    };
    let metrics = Metrics::new();

    let homes: HashMap<u32, PathBuf> = homes_from_passwd(Path::new("/etc/passwd"))
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .into_iter()
        .filter(|(uid, _)| config.agents.contains_key(uid))
        .collect();
    let mut behaviour = Behaviour::open(&config.db, config.mode)?;
    // An auto-lockdown stays until the operator lifts it, restarts included.
    let mode = match behaviour.latched_lockdown() {
        Some(why) => {
            tracing::warn!("starting in lockdown: the auto-lockdown latch is set ({why}); lift it with `sentinel mode set MODE`");
            Mode::Lockdown
        }
        None => config.mode,
    };
    behaviour.set_mode(mode, "start-up");
    if config.webhook.is_some() {
        behaviour
            .set_webhook(config.webhook.clone())
            .map_err(|e| anyhow::anyhow!("setting the webhook from the configuration: {e}"))?;
    }
    let mut engine = Engine::new(policy);
    engine.set_homes(homes.clone());
    // Quarantines outlive the daemon: the active ones are in force (and
    // compiled into the kernel maps) before anything is attached.
    let quarantines = QuarantineStore::open(&config.db).map_err(|e| anyhow::anyhow!("{e}"))?;
    for q in quarantines
        .active(std::time::SystemTime::now())
        .map_err(|e| anyhow::anyhow!("{e}"))?
    {
        let target = q.entry.target.clone();
        if let Err(e) = engine.quarantine(q.entry) {
            tracing::error!("stored quarantine #{} on {target} does not load: {e}", q.id);
        }
    }
    engine.set_mode(mode);
    engine.set_anomaly(behaviour.scorer());
    let engine = Arc::new(Mutex::new(engine));

    // A previous daemon that did not stop cleanly left its programs
    // pinned and enforcing: they stay attached until this one's are.
    let pin_base = crate::pins::base_dir(&config.state_dir);
    let previous = crate::pins::previous(&pin_base)?;
    let mut sensor = Sensor::load(&config.sensor)?;
    if let Some(p) = &previous {
        sensor.adopt(p)?;
    }
    for uid in config.agents.keys() {
        sensor.watch_uid(*uid)?;
    }
    let agents: HashMap<u32, String> = config.agents.clone().into_iter().collect();
    let mut table = ProcessTable::new(agents);
    for pid in table.seed_from_proc() {
        sensor.watch_task(pid)?;
    }
    let ring = sensor.take_events()?;
    let ring_usage = metrics::ring_usage(&ring);
    tracing::info!(
        "watching uids {:?} in mode {}; enforcement exec={} open={} connect={}",
        config.agents.keys().collect::<Vec<_>>(),
        mode_name(mode),
        sensor.mechanisms.exec,
        sensor.mechanisms.open,
        sensor.mechanisms.connect,
    );
    if let Some(why) = &sensor.lsm_unavailable {
        tracing::info!("BPF LSM not used ({why}); cgroup hooks and SIGKILL instead");
    }

    // Identity file baselines live next to the audit database (root-only).
    let baseline_dir = config
        .db
        .parent()
        .unwrap_or(Path::new("/var/lib/sentinel"))
        .join("baselines");
    let identity_homes: Vec<(u32, PathBuf)> = homes.iter().map(|(u, h)| (*u, h.clone())).collect();
    // Identity files are baselined and alerted; every other file a deny
    // rule keeps agents from changing is copied too, so what the kernel
    // could only kill after the fact is put back.
    let (identity, identity_alerts) = {
        let files = config.policy.identity();
        let guarded = sentinel_policy::unchangeable_patterns(&config.policy);
        if files.is_empty() && guarded.is_empty() {
            (None, Vec::new())
        } else {
            let (mut m, a) =
                crate::identity::IdentityMonitor::open(&baseline_dir, files, identity_homes)
                    .with_context(|| {
                        format!(
                            "opening the identity baselines in {}",
                            baseline_dir.display()
                        )
                    })?;
            m.set_guarded(guarded);
            (Some(m), a)
        }
    };
    let core = Core::new(CoreParts {
        identity,
        sensor,
        engine: engine.clone(),
        homes,
        table,
        audit: AuditWriter::spawn(
            audit,
            sinks,
            AuditWriterOptions {
                observer: Some(metrics.commit_observer()),
                ..AuditWriterOptions::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("starting the audit writer: {e}"))?,
        behaviour: Some(behaviour),
        approvals: Approvals::new(config.approval_timeout),
        metrics: metrics.clone(),
        policy_dir: config
            .policy_dir
            .as_deref()
            .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.to_path_buf())),
        own_files: config.own_files.clone(),
        quarantines: Some(quarantines),
    })?;
    let mut core = core;
    // Rules are in the maps now: pin, and let the old programs go.
    if let Err(e) = core.sensor.pin(&pin_base) {
        tracing::warn!("enforcement will not survive this daemon: {e}");
    }
    if let Some(p) = &previous {
        let reason = p.describe();
        tracing::warn!("{reason}");
        core.push(
            time::OffsetDateTime::now_utc(),
            sentinel_audit::Body::Alert {
                severity: "critical".into(),
                category: "sentinel-death".into(),
                reason,
                related: Vec::new(),
            },
            None,
        );
    }
    core.raise_identity(identity_alerts);
    let core = Arc::new(Mutex::new(core));
    let mut file_guard = start_file_guard(&core, &engine, &config);
    crate::memory::release_free_heap();

    // The proxies' socket first: once `status` answers, everything does.
    let mcp_path = sentinel_mcp::daemon::socket_path(&config.state_dir);
    let mcp_task = match mcp_handler(&core, &engine, &config) {
        Ok(handler) => {
            let listener = bind_socket(&mcp_path)
                .with_context(|| format!("binding {}", mcp_path.display()))?;
            Some(tokio::spawn(serve_decisions(listener, handler)))
        }
        Err(e) => {
            tracing::error!("MCP decision socket not available: {e:#}");
            None
        }
    };

    let listener = control_socket
        .listener
        .take()
        .context("control socket already taken")?;
    let store_db = config.db.clone();
    let control_task = tokio::spawn(control::serve(
        listener,
        control_ops::handler(core.clone(), config.agents.clone(), store_db),
    ));
    let metrics_task = metrics_listener.map(|listener| {
        let snapshot_core = core.clone();
        let usage = Mutex::new(ring_usage);
        let snapshot = Arc::new(move || {
            let mut c = lock(&snapshot_core);
            metrics::Snapshot {
                lost: c.sensor.counters().map(|k| k.ringbuf_full).unwrap_or(0),
                audit_records: c.audit_stats().recorded,
                held: c.approvals.list().len(),
                tracked: c.tracked_processes(),
                ringbuf_used: lock(&usage).as_ref().map(metrics::RingUsage::used),
                programs: c.sensor.program_stats(),
            }
        });
        let agents = config.agents.keys().copied().collect();
        tokio::spawn(metrics::serve(listener, metrics.clone(), snapshot, agents))
    });
    // SAFETY: the ring buffer owns its map fd, which stays open and the
    // same for as long as the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {}", e.into_parts().1))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut ticks: u64 = 0;
    let mut posture_tick = tokio::time::interval(if config.scan_interval.is_zero() {
        Duration::from_secs(u64::MAX / 4)
    } else {
        config.scan_interval
    });
    let posture_tracker = Arc::new(Mutex::new(crate::posture::Tracker::open(
        config
            .db
            .parent()
            .unwrap_or(Path::new("/var/lib/sentinel"))
            .join("posture-findings.json"),
    )));
    let mut posture_running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                // A batch at a time: under a flood the core lock is let go
                // between batches, so the control socket (status, top,
                // approvals) and the proxies' verdicts still get answers.
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                let drained = {
                    let mut c = lock(&core);
                    let mut drained = false;
                    for _ in 0..RING_BATCH {
                        match rb.next() {
                            Some(item) => c.handle_raw(&item),
                            None => {
                                drained = true;
                                break;
                            }
                        }
                    }
                    drained
                };
                if drained {
                    guard.clear_ready();
                } else {
                    tokio::task::yield_now().await;
                }
            }
            _ = tick.tick() => {
                lock(&core).tick();
                ticks += 1;
                if ticks.is_multiple_of(crate::memory::RELEASE_EVERY_TICKS) {
                    crate::memory::release_free_heap();
                }
                if let Some(guard) = file_guard.as_mut() {
                    refresh_file_guard(&core, &engine, guard);
                }
            }
            _ = posture_tick.tick(), if !config.scan_interval.is_zero() => {
                if posture_running.as_ref().is_none_or(|t| t.is_finished()) {
                    posture_running = Some(spawn_posture_scan(&core, &config, &posture_tracker));
                }
            }
            _ = sighup.recv() => {
                reload(&core, &mut config);
                if let Some(guard) = file_guard.as_mut() {
                    refresh_file_guard(&core, &engine, guard);
                }
            }
            _ = sigterm.recv() => {
                if !signalled_by_agent(&core, libc::SIGTERM) {
                    break;
                }
            }
            _ = sigint.recv() => {
                if !signalled_by_agent(&core, libc::SIGINT) {
                    break;
                }
            }
        }
    }

    // Drain what is already in the ring buffer, then flush and detach.
    {
        let rb = ring.get_mut();
        let mut c = lock(&core);
        while let Some(item) = rb.next() {
            c.handle_raw(&item);
        }
    }
    if let Some(guard) = file_guard.take() {
        guard.shutdown();
    }
    control_task.abort();
    if let Some(task) = metrics_task {
        task.abort();
    }
    if let Some(task) = mcp_task {
        task.abort();
        let _ = std::fs::remove_file(&mcp_path);
    }
    drop(control_socket);
    drop(ring);
    // A clean stop: the pins go, so the programs detach with the sensor.
    lock(&core).sensor.unpin();
    match Arc::try_unwrap(core) {
        Ok(core) => core
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .shutdown(),
        Err(core) => {
            let c = lock(&core);
            c.guards.shutdown();
            c.flush();
        }
    }
    tracing::info!("stopped; all programs detached");
    Ok(())
}

/// Starts the file guard where the BPF LSM does not enforce: opens and
/// execs of protected files are then refused before they happen (fanotify)
/// instead of killed at the syscall's return.
fn start_file_guard(
    core: &Arc<Mutex<Core>>,
    engine: &Arc<Mutex<Engine>>,
    config: &RunConfig,
) -> Option<FileGuard> {
    let (homes, tasks_map) = {
        let mut c = lock(core);
        if c.sensor.lsm_enforces() {
            return None;
        }
        let map = c
            .sensor
            .watched_tasks_map_id()
            .map_err(|e| tracing::warn!("file guard: {e}; descendants that changed UID are only watched by the kill path"))
            .ok();
        (c.homes.clone(), map)
    };
    let watched = Arc::new(Watched::new(config.agents.keys().copied(), tasks_map));
    let targets = crate::file_guard::targets(engine, &homes);
    match FileGuard::start(core, watched, targets, config.approval_timeout) {
        Ok(guard) => {
            let mut c = lock(core);
            crate::file_guard::guarded_mechanisms(&mut c.sensor.mechanisms);
            c.guard_status = Some(guard.status());
            tracing::info!(
                "enforcement exec={} open={} (fanotify file guard)",
                c.sensor.mechanisms.exec,
                c.sensor.mechanisms.open
            );
            Some(guard)
        }
        Err(e) => {
            tracing::warn!("file guard not started ({e}); opens of protected files are killed at the syscall's return instead");
            None
        }
    }
}

/// Keeps the guard's places in step with the policy and quarantine, and
/// its state visible to `status`.
fn refresh_file_guard(core: &Arc<Mutex<Core>>, engine: &Arc<Mutex<Engine>>, guard: &mut FileGuard) {
    let homes = lock(core).homes.clone();
    let targets = crate::file_guard::targets(engine, &homes);
    if !guard.has_targets(&targets) {
        guard.set_targets(targets);
    }
    let status = guard.status();
    lock(core).guard_status = Some(status);
}

/// Runs the posture checks off the data path (they walk directories) and
/// raises an alert for each new, changed or fixed finding.
fn spawn_posture_scan(
    core: &Arc<Mutex<Core>>,
    config: &RunConfig,
    tracker: &Arc<Mutex<crate::posture::Tracker>>,
) -> tokio::task::JoinHandle<()> {
    let status = crate::control_ops::status(core, &config.agents);
    let gate = {
        let c = lock(core);
        let engine = lock(&c.engine);
        engine.policy().sudo().clone()
    };
    let ctx = crate::posture::ScanContext {
        agents: crate::posture::agents(&config.agents),
        gate,
        sentinel: crate::posture::SentinelFacts {
            status: Some(status),
            db: config.db.clone(),
            state_dir: config.state_dir.clone(),
            policy_dir: config.policy_dir.clone(),
        },
        suid_baseline: crate::posture::suid_baseline_path(&config.db),
        suid_roots: crate::posture::SUID_ROOTS
            .iter()
            .map(PathBuf::from)
            .collect(),
        root_path: std::env::var("PATH").unwrap_or_default(),
    };
    let core = core.clone();
    let tracker = tracker.clone();
    tokio::task::spawn_blocking(move || {
        let findings = crate::posture::scan(&ctx);
        let changes = lock(&tracker).update(&findings);
        let mut c = lock(&core);
        for change in changes {
            c.raise(&change.severity, "posture", change.reason, Vec::new(), None);
        }
    })
}

/// SIGHUP: re-reads the configuration file and its overlays (when the
/// daemon was started from one) and applies what changed that a running
/// daemon can take — mode, sinks, webhook, the policy directory — then
/// reloads the policy directory (see [`Core::reload_policy`]). A
/// configuration that does not check leaves everything as it was; keys
/// that need a restart are named. Every outcome is recorded.
fn reload(core: &Arc<Mutex<Core>>, config: &mut RunConfig) {
    if let Some(reloader) = config.reloader.as_mut() {
        match reloader.reload() {
            Err(e) => {
                let reason = format!(
                    "SIGHUP: the configuration was not reloaded, the running one stays: {e}"
                );
                tracing::error!("{reason}");
                lock(core).record_config_alert("warning", reason);
            }
            Ok((settings, live, restart)) => apply(core, config, &settings, &live, &restart),
        }
    }
    match config.policy_dir.clone() {
        Some(dir) => {
            let _ = lock(core).reload_policy(&dir, "SIGHUP");
        }
        None => tracing::info!("SIGHUP: running on the embedded default policy (set `policy` to a directory to change it)"),
    }
}

/// Applies the changed keys `live` of a reloaded configuration.
fn apply(
    core: &Arc<Mutex<Core>>,
    config: &mut RunConfig,
    new: &Settings,
    live: &[&str],
    restart: &[&str],
) {
    let mut applied = Vec::new();
    let mut failed = Vec::new();
    let changed = |keys: &[&str]| live.iter().any(|k| keys.iter().any(|p| k.starts_with(p)));
    if changed(&["mode"]) {
        lock(core).set_mode(new.mode, "SIGHUP (configuration)");
        config.mode = new.mode;
        applied.push("mode");
    }
    if changed(&["jsonl", "cef", "sink_", "syslog_ca_file"]) {
        match Sinks::start(&new.sinks, &new.sink_options) {
            Ok(sinks) => {
                lock(core).replace_sinks(sinks);
                config.sinks = new.sinks.clone();
                config.sink_options = new.sink_options.clone();
                applied.push("sinks");
            }
            Err(e) => failed.push(format!("sinks ({e}; the running sinks stay)")),
        }
    }
    if changed(&["webhook."]) {
        match lock(core).set_webhook(new.webhook.clone()) {
            Ok(()) => applied.push("webhook"),
            Err(e) => failed.push(format!("webhook ({e})")),
        }
    }
    if changed(&["policy"]) {
        match &new.policy {
            Some(dir) => {
                config.policy_dir = Some(dir.clone());
                applied.push("policy");
            }
            None => failed
                .push("policy (going back to the embedded defaults needs a restart)".to_string()),
        }
    }
    let mut reason = format!(
        "SIGHUP: configuration reloaded; changed in place: {}",
        if applied.is_empty() {
            "nothing".to_string()
        } else {
            applied.join(", ")
        }
    );
    if !failed.is_empty() {
        reason.push_str(&format!("; not changed: {}", failed.join(", ")));
    }
    if !restart.is_empty() {
        reason.push_str(&format!(
            "; needs a restart to take effect: {}",
            restart.join(", ")
        ));
        tracing::warn!(
            "SIGHUP: {} changed in the configuration; restart the daemon for that",
            restart.join(", ")
        );
    }
    tracing::info!("{reason}");
    let severity = if failed.is_empty() { "info" } else { "warning" };
    lock(core).record_config_alert(severity, reason);
}

/// Writes MCP call records into the daemon's one audit chain.
struct DaemonAudit(Arc<Mutex<Core>>);

impl AuditSink for DaemonAudit {
    fn append(&self, event: sentinel_audit::Event) -> Result<(), String> {
        lock(&self.0).record(event);
        Ok(())
    }
}

/// The MCP decision socket's handler: the same engine and audit chain as
/// the kernel path, callers identified by SO_PEERCRED.
fn mcp_handler(
    core: &Arc<Mutex<Core>>,
    engine: &Arc<Mutex<Engine>>,
    config: &RunConfig,
) -> Result<Arc<dyn DecisionHandler>> {
    let store = Store::open(&config.db).map_err(|e| anyhow::anyhow!("{e}"))?;
    let decider = LocalDecider::new(
        Box::new(SharedEngine(engine.clone())),
        Box::new(DaemonAudit(core.clone())),
        store,
        ScanPolicy::default(),
        "sentinel daemon".to_string(),
    );
    let agents = config.agents.clone();
    let agent_of = Box::new(move |peer: &PeerCred| agents.get(&peer.uid).cloned());
    let inner = PeerBoundHandler::new(
        Arc::new(decider),
        agent_of,
        Arc::new(sentinel_mcp::SystemClock),
    );
    lock(core).mcp_peers = inner.stats();
    Ok(Arc::new(CallLinking {
        inner,
        core: core.clone(),
        in_flight: Mutex::new(BTreeMap::new()),
    }))
}

/// Wraps the proxies' decision handler to tell the data path when a tool
/// call the engine let through is in flight, so the kernel events of the
/// MCP server (a child of the proxy, which the kernel identified by
/// SO_PEERCRED) are linked to it.
struct CallLinking {
    inner: PeerBoundHandler,
    core: Arc<Mutex<Core>>,
    /// Call id → `seq` of its record, for calls in flight (ids only grow,
    /// so the first is the oldest).
    in_flight: Mutex<BTreeMap<u64, u64>>,
}

/// Calls in flight kept for linking; beyond it the oldest is forgotten.
const MAX_LINKED_CALLS: usize = 4096;

impl DecisionHandler for CallLinking {
    fn admit(&self, peer: &PeerCred) -> bool {
        self.inner.admit(peer)
    }

    fn handle(&self, peer: &PeerCred, request: DaemonRequest) -> DaemonResponse {
        let proxy = peer.pid.and_then(|p| u32::try_from(p).ok());
        match (request, proxy) {
            (DaemonRequest::Decide { call }, Some(pid)) => {
                let (server, tool, args) =
                    (call.server.clone(), call.tool.clone(), call.args.clone());
                let response = self.inner.handle(peer, DaemonRequest::Decide { call });
                if let DaemonResponse::Decided(d) = &response {
                    if let (true, Some(id)) = (
                        matches!(d.verdict.action, Decision::Allow | Decision::LogOnly),
                        d.call_id,
                    ) {
                        let seq =
                            lock(&self.core).mcp_call_started(pid, peer.uid, server, tool, &args);
                        let mut in_flight = lock(&self.in_flight);
                        in_flight.insert(id, seq);
                        if in_flight.len() > MAX_LINKED_CALLS {
                            in_flight.pop_first();
                        }
                    }
                }
                response
            }
            (DaemonRequest::Outcome { call_id, outcome }, _) => {
                let ends = sentinel_mcp::outcome_ends_call(&outcome) == Some(true);
                let response = self
                    .inner
                    .handle(peer, DaemonRequest::Outcome { call_id, outcome });
                if ends && response == DaemonResponse::Done {
                    if let Some(seq) = lock(&self.in_flight).remove(&call_id) {
                        lock(&self.core).mcp_call_finished(seq);
                    }
                }
                response
            }
            (request, _) => self.inner.handle(peer, request),
        }
    }
}

/// Resolves `--uid` and `--agent NAME=UID` into watched UIDs with names,
/// checking that each UID exists.
pub fn resolve_agents(
    uids: &[u32],
    agents: &[(String, u32)],
) -> Result<BTreeMap<u32, String>, preflight::PreflightError> {
    let mut out = BTreeMap::new();
    for (name, uid) in agents {
        preflight::user_name(*uid)?;
        out.insert(*uid, name.clone());
    }
    for uid in uids {
        if !out.contains_key(uid) {
            out.insert(*uid, preflight::user_name(*uid)?);
        }
    }
    Ok(out)
}

/// Whether the kernel saw a watched process send `sig` to the sentinel in
/// the last seconds (without BPF LSM the tracepoint kills the sender but
/// the signal is still delivered): such a stop request is ignored, so an
/// agent cannot detach the sensor with a SIGTERM.
fn signalled_by_agent(core: &Arc<Mutex<Core>>, sig: i32) -> bool {
    let t = match lock(core).sensor.tamper() {
        Ok(t) => t,
        Err(_) => return false,
    };
    use sentinel_common::tamper;
    let recent =
        crate::observe::monotonic_ns().saturating_sub(t[tamper::KTIME as usize]) < 5_000_000_000;
    let by_agent =
        t[tamper::COUNT as usize] > 0 && recent && t[tamper::SIGNAL as usize] == sig as u64;
    if by_agent {
        tracing::error!(
            "signal {sig} came from a watched process ({}); ignored",
            crate::pins::describe_tamper(&t)
        );
    }
    by_agent
}
