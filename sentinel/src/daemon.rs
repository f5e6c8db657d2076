//! `sentinel run`: the daemon's lifetime. Checks the machine, loads the
//! sensor, watches the requested UIDs, then runs three tasks until SIGINT
//! or SIGTERM — the ring-buffer reader (which drives the pipeline), the
//! control socket, and a once-a-second housekeeping tick — and on the way
//! out flushes the stream and detaches every program.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::json;
use tokio::io::unix::AsyncFd;
use tokio::signal::unix::{signal, SignalKind};

use crate::control::{self, Request};
use crate::observe::{Sensor, SensorOptions};
use crate::output::Output;
use crate::pipeline::{Pipeline, Stats};
use crate::preflight;
use crate::process::ProcessTable;

/// What `sentinel run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Watched UIDs and their agent names.
    pub agents: BTreeMap<u32, String>,
    pub jsonl: Option<String>,
    pub state_dir: PathBuf,
    pub sensor: SensorOptions,
}

/// Everything the control socket reads.
struct Shared {
    sensor: Mutex<Sensor>,
    stats: Arc<Stats>,
    agents: BTreeMap<u32, String>,
}

pub fn run(config: RunConfig) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(config))
}

async fn run_async(config: RunConfig) -> Result<()> {
    std::fs::create_dir_all(&config.state_dir).with_context(|| {
        format!(
            "creating the state directory {}",
            config.state_dir.display()
        )
    })?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))?;
    let mut control_socket = control::bind(&config.state_dir)?;

    let output = match &config.jsonl {
        Some(target) => Output::open(target).with_context(|| format!("opening {target}"))?,
        None => Output::none(),
    };

    let mut sensor = Sensor::load(&config.sensor)?;
    for uid in config.agents.keys() {
        sensor.watch_uid(*uid)?;
    }
    let agents: HashMap<u32, String> = config.agents.clone().into_iter().collect();
    let mut table = ProcessTable::new(agents);
    for pid in table.seed_from_proc() {
        sensor.watch_task(pid)?;
    }
    let ring = sensor.take_events()?;
    tracing::info!(
        "watching uids {:?}; attached {}; enforcement exec={} open={} connect={}",
        config.agents.keys().collect::<Vec<_>>(),
        sensor.attached.len(),
        sensor.mechanisms.exec,
        sensor.mechanisms.open,
        sensor.mechanisms.connect,
    );
    if let Some(why) = &sensor.lsm_unavailable {
        tracing::info!("BPF LSM not used ({why}); falling back to cgroup hooks and SIGKILL");
    }

    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        sensor: Mutex::new(sensor),
        stats: stats.clone(),
        agents: config.agents.clone(),
    });
    let pipeline = Arc::new(Mutex::new(Pipeline::new(table, output, stats)));

    let listener = control_socket
        .listener
        .take()
        .context("control socket already taken")?;
    let control_task = tokio::spawn(control::serve(listener, control_handler(shared.clone())));

    // SAFETY: the ring buffer owns its map fd, which stays open and the
    // same for as long as the AsyncFd owns the ring buffer.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {}", e.into_parts().1))?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                let mut p = lock(&pipeline);
                while let Some(item) = rb.next() {
                    p.handle_raw(&item);
                }
                p.flush();
                guard.clear_ready();
            }
            _ = tick.tick() => {
                let lost = lock(&shared.sensor).counters().map(|c| c.ringbuf_full).unwrap_or(0);
                let mut p = lock(&pipeline);
                p.report_lost(lost);
                p.flush();
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }

    // Drain what is already in the ring buffer, then flush and detach.
    {
        let rb = ring.get_mut();
        let mut p = lock(&pipeline);
        while let Some(item) = rb.next() {
            p.handle_raw(&item);
        }
        p.flush();
    }
    control_task.abort();
    drop(control_socket);
    drop(ring);
    drop(shared);
    tracing::info!("stopped; all programs detached");
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn control_handler(shared: Arc<Shared>) -> control::Handler {
    Arc::new(move |req| match req {
        Request::Status => {
            let mut sensor = lock(&shared.sensor);
            let counters = sensor.counters().unwrap_or_default();
            let stats = shared.stats.snapshot();
            json!({
                "ok": true,
                "running": true,
                "pid": std::process::id(),
                "attached": sensor.attached,
                "enforcement": sensor.mechanisms,
                "lsm_unavailable": sensor.lsm_unavailable,
                "watched_uids": shared.agents.keys().collect::<Vec<_>>(),
                "agents": shared.agents,
                "events": {
                    "seen": stats.seen,
                    "emitted": stats.emitted,
                    "lost": counters.ringbuf_full,
                    "decode_errors": stats.decode_errors,
                    "untracked_children": counters.task_map_full,
                },
                "kernel_decisions": counters.kernel_decisions,
            })
        }
        other => {
            json!({"ok": false, "error": format!("{other:?} is not supported by this daemon yet")})
        }
    })
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
