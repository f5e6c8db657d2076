//! What the daemon does for each request on the control socket: status,
//! mode, approvals, and the operator's management requests (`sentinel
//! mcp-admin`): policy reload, policy info, dry-run evaluation on the live
//! engine, quarantine, anomaly thresholds. Every change is recorded in the
//! audit chain and recompiled into the kernel maps. The socket itself
//! (binding, peer checks, framing) is `control`; the data path is
//! `pipeline`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentinel_audit::{Body, Event};
use sentinel_mcp::Store;
use sentinel_policy::{Action, AnomalyThresholds, Engine, QuarantineEntry, QuarantineTarget};
use serde_json::json;
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::control::{self, Caller, Request};
use crate::pipeline::{lock, mode_name, Core};

/// `status` reports the core's policy directory for `mcp-admin`.
pub fn handler(
    core: Arc<Mutex<Core>>,
    agents: BTreeMap<u32, String>,
    db: PathBuf,
) -> control::Handler {
    Arc::new(move |req, caller| match req {
        Request::Status => status(&core, &agents),
        Request::ModeGet => {
            let c = lock(&core);
            let mode = lock(&c.engine).mode();
            json!({"ok": true, "mode": mode_name(mode)})
        }
        Request::ModeSet { mode } => {
            lock(&core).set_mode(mode, &caller.to_string());
            json!({"ok": true, "mode": mode_name(mode)})
        }
        Request::Approve { id } => resolve(&core, &db, &id, true, caller),
        Request::Deny { id } => resolve(&core, &db, &id, false, caller),
        Request::Reload { dir } => reload(&core, &dir, caller),
        Request::PolicyInfo => policy_info(&core),
        Request::Evaluate { action } => evaluate(&core, &action),
        Request::QuarantineAdd {
            target,
            expires_in_seconds,
            reason,
        } => quarantine_add(&core, target, expires_in_seconds, reason, caller),
        Request::QuarantineList => {
            let c = lock(&core);
            json!({"ok": true, "quarantines": quarantine_list(&c)})
        }
        Request::QuarantineLift { target } => quarantine_lift(&core, Lift::Target(target), caller),
        Request::QuarantineLiftId { id } => quarantine_lift(&core, Lift::Id(id), caller),
        Request::ThresholdsGet => {
            let c = lock(&core);
            let t = lock(&c.engine).anomaly_thresholds();
            json!({"ok": true, "thresholds": t})
        }
        Request::ThresholdsSet { thresholds } => thresholds_set(&core, thresholds, caller),
        Request::LlmRecord { event } => llm_record(&core, *event),
        Request::BaselineList => {
            let c = lock(&core);
            match &c.guards.identity {
                Some(m) => json!({"ok": true, "files": m.list()}),
                None => json!({"ok": true, "files": []}),
            }
        }
        Request::BaselineAccept { path } => baseline(&core, &path, true, caller),
        Request::BaselineRestore { path } => baseline(&core, &path, false, caller),
        Request::RespondList => {
            let c = lock(&core);
            json!({"ok": true, "responses": c.guards.responses.list()})
        }
        Request::RespondDecide { id, approve } => {
            let result = lock(&core).decide_response(id, approve);
            answer(result)
        }
        Request::RespondUndo { id } => {
            let result = lock(&core).undo_response(id);
            answer(result)
        }
        Request::Bandwidth {
            hours,
            agent,
            limit,
        } => bandwidth(&core, hours, agent.as_deref(), limit),
        Request::Events {
            after,
            filter,
            limit,
        } => {
            let c = lock(&core);
            let (events, skipped) = c.feed.since(after, filter.as_deref(), limit.min(5000));
            json!({"ok": true, "events": events, "skipped": skipped, "last_seq": c.feed.last_seq()})
        }
        Request::Alerts { limit } => alerts(&core, |a| {
            a.list(sentinel_anomaly::AlertFilter {
                status: None,
                limit: limit.min(1000),
            })
            .map(|list| json!({"ok": true, "alerts": list}))
        }),
        Request::AlertAck { id } => alerts(&core, |a| {
            a.ack(id, "operator (control socket)", SystemTime::now())
                .map(|alert| json!({"ok": true, "alert": alert}))
        }),
        Request::AlertResolve { id } => alerts(&core, |a| {
            a.resolve(id, "operator (control socket)", SystemTime::now())
                .map(|alert| json!({"ok": true, "alert": alert}))
        }),
        Request::McpPending => match Store::open(&db).and_then(|s| s.pending(SystemTime::now())) {
            Ok(list) => json!({"ok": true, "approvals": list}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        },
    })
}

/// Runs `f` on the daemon's alert store.
fn alerts(
    core: &Arc<Mutex<Core>>,
    f: impl FnOnce(
        &mut sentinel_anomaly::AlertManager,
    ) -> Result<serde_json::Value, sentinel_anomaly::AlertError>,
) -> serde_json::Value {
    let mut c = lock(core);
    match c.behaviour_mut() {
        Some(b) => f(b.alerts()).unwrap_or_else(|e| json!({"ok": false, "error": e.to_string()})),
        None => json!({"ok": false, "error": "this daemon raises no alerts"}),
    }
}

/// Records an operator change in the audit chain (an `info` alert of
/// category `admin`), so policy edits are as tamper-evident as events.
fn record_admin(core: &mut Core, reason: String) {
    core.record(Event {
        seq: 0,
        ts: OffsetDateTime::now_utc(),
        body: Body::Alert {
            severity: "info".into(),
            category: "admin".into(),
            reason,
            related: Vec::new(),
        },
        verdict: None,
    });
}

fn reload(core: &Arc<Mutex<Core>>, dir: &Path, caller: &Caller) -> serde_json::Value {
    let mut c = lock(core);
    match c.reload_policy(dir, &caller.to_string()) {
        Ok(rules) => json!({
            "ok": true,
            "dir": dir,
            "rules": rules,
            "decided_in_kernel": c.maps.rules.iter().collect::<Vec<_>>(),
            "decided_in_userspace": c.userspace_only,
        }),
        Err(e) => {
            json!({"ok": false, "error": format!("policy not reloaded (the running policy is unchanged): {e}")})
        }
    }
}

fn policy_info(core: &Arc<Mutex<Core>>) -> serde_json::Value {
    let c = lock(core);
    // Before the engine's lock: the list takes it itself.
    let quarantines = quarantine_list(&c);
    let engine = lock(&c.engine);
    let policy = engine.policy();
    let breakers: Vec<serde_json::Value> = engine
        .server_states()
        .into_iter()
        .map(|(caller, server, state)| json!({"caller": caller, "server": server, "state": format!("{state:?}")}))
        .collect();
    json!({
        "ok": true,
        "mode": mode_name(engine.mode()),
        "files": policy.files(),
        "rules": policy.rules().len(),
        "enabled_rules": policy.rules().iter().filter(|r| r.enabled).count(),
        "rule_names": policy.rules().iter().map(|r| r.name.clone()).collect::<Vec<_>>(),
        "quarantines": quarantines,
        "thresholds": engine.anomaly_thresholds(),
        "circuit_breakers": breakers,
        "decided_in_kernel": c.maps.rules.iter().collect::<Vec<_>>(),
        "decided_in_userspace": c.userspace_only,
    })
}

/// A fresh engine with the running one's policy, mode, homes, quarantines
/// and thresholds: the live verdict without spending rate-limit tokens or
/// teaching the anomaly baselines.
fn evaluate(core: &Arc<Mutex<Core>>, action: &Action) -> serde_json::Value {
    let c = lock(core);
    let live = lock(&c.engine);
    let mut engine = Engine::new(live.policy().clone());
    engine.set_mode(live.mode());
    engine.set_homes(live.homes().clone());
    engine.set_anomaly_thresholds(live.anomaly_thresholds());
    for entry in live.quarantines() {
        let _ = engine.quarantine(entry.clone());
    }
    drop(live);
    let verdict = engine.evaluate(action, SystemTime::now());
    json!({"ok": true, "verdict": verdict, "mode": mode_name(engine.mode())})
}

/// The active quarantines: the engine's live list, with the id, author
/// and time of each from the durable table. Takes the engine's lock: call
/// it without holding it.
fn quarantine_list(c: &Core) -> Vec<serde_json::Value> {
    let now = SystemTime::now();
    let stored = c
        .quarantines
        .as_ref()
        .and_then(|s| s.active(now).ok())
        .unwrap_or_default();
    lock(&c.engine)
        .quarantines()
        .into_iter()
        .filter(|e| e.is_active(now))
        .map(|e| {
            let expires = e.expires.map(|t| {
                let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                OffsetDateTime::from_unix_timestamp(secs as i64)
                    .map(rfc3339)
                    .unwrap_or_default()
            });
            let row = stored.iter().find(|s| s.entry.target == e.target);
            json!({
                "id": row.map(|r| r.id),
                "target": e.target,
                "description": e.target.to_string(),
                "expires": expires,
                "reason": e.reason,
                "added_by": row.map(|r| r.added_by.clone()),
                "added": row.and_then(|r| OffsetDateTime::from_unix_timestamp(r.added_unix).ok()).map(rfc3339),
            })
        })
        .collect()
}

fn quarantine_add(
    core: &Arc<Mutex<Core>>,
    target: QuarantineTarget,
    expires_in_seconds: Option<u64>,
    reason: String,
    caller: &Caller,
) -> serde_json::Value {
    let now = SystemTime::now();
    let entry = QuarantineEntry {
        target: target.clone(),
        expires: expires_in_seconds.map(|s| now + Duration::from_secs(s)),
        reason: reason.clone(),
    };
    let mut c = lock(core);
    if let Err(e) = lock(&c.engine).quarantine(entry.clone()) {
        return json!({"ok": false, "error": e.to_string()});
    }
    if let Err(e) = c.recompile() {
        lock(&c.engine).lift(&target);
        let _ = c.recompile();
        return json!({"ok": false, "error": format!("quarantine not applied: compiling it into the kernel maps failed ({e})")});
    }
    let by = caller.to_string();
    let id = match c.quarantines.as_mut().map(|s| s.add(&entry, &by, now)) {
        Some(Ok(id)) => Some(id),
        Some(Err(e)) => {
            tracing::error!("the quarantine on {target} is in force but not stored: {e}");
            None
        }
        None => None,
    };
    let until = expires_in_seconds.map_or("until lifted".to_string(), |s| format!("for {s} s"));
    let number = id.map_or(String::new(), |id| format!(" #{id}"));
    record_admin(
        &mut c,
        format!("quarantine{number} on {target} {until} by {by}: {reason}"),
    );
    let list = quarantine_list(&c);
    json!({"ok": true, "id": id, "quarantined": target.to_string(), "quarantines": list, "decided_in_kernel": c.maps.rules.iter().collect::<Vec<_>>()})
}

/// Which quarantine to lift.
enum Lift {
    Target(QuarantineTarget),
    Id(i64),
}

fn quarantine_lift(core: &Arc<Mutex<Core>>, which: Lift, caller: &Caller) -> serde_json::Value {
    let now = SystemTime::now();
    let mut c = lock(core);
    let (target, id) = match which {
        Lift::Target(target) => {
            let id = c
                .quarantines
                .as_ref()
                .and_then(|s| s.id_of(&target, now).ok().flatten());
            (target, id)
        }
        Lift::Id(id) => {
            let found = c
                .quarantines
                .as_ref()
                .and_then(|s| s.active(now).ok())
                .and_then(|all| all.into_iter().find(|q| q.id == id));
            match found {
                Some(q) => (q.entry.target, Some(id)),
                None => {
                    return json!({"ok": false, "error": format!("no active quarantine #{id}; see `sentinel quarantine list`")})
                }
            }
        }
    };
    let by = caller.to_string();
    if let (Some(id), Some(store)) = (id, c.quarantines.as_mut()) {
        if let Err(e) = store.lift(id, &by, now) {
            return json!({"ok": false, "error": format!("quarantine #{id} not lifted: {e}")});
        }
    }
    if !lock(&c.engine).lift(&target) && id.is_none() {
        return json!({"ok": false, "error": format!("no quarantine on {target}; see the list for the exact target")});
    }
    if let Err(e) = c.recompile() {
        return json!({"ok": false, "error": format!("quarantine lifted in the engine but the kernel maps were not recompiled: {e}")});
    }
    let number = id.map_or(String::new(), |id| format!(" #{id}"));
    record_admin(
        &mut c,
        format!("quarantine{number} on {target} lifted by {by}"),
    );
    let list = quarantine_list(&c);
    json!({"ok": true, "id": id, "lifted": target.to_string(), "quarantines": list, "decided_in_kernel": c.maps.rules.iter().collect::<Vec<_>>()})
}

fn thresholds_set(
    core: &Arc<Mutex<Core>>,
    t: AnomalyThresholds,
    caller: &Caller,
) -> serde_json::Value {
    let ordered = t.suspicious <= t.anomalous
        && t.anomalous <= t.critical
        && t.critical <= t.auto_lockdown
        && t.auto_lockdown <= 100;
    if !ordered {
        return json!({"ok": false, "error": "thresholds must satisfy suspicious <= anomalous <= critical <= auto_lockdown <= 100"});
    }
    let mut c = lock(core);
    if let Err(e) = c.set_thresholds(t) {
        return json!({"ok": false, "error": format!("thresholds not set: {e}")});
    }
    record_admin(
        &mut c,
        format!(
            "anomaly thresholds set by {caller}: suspicious {}, anomalous {}, critical {}, auto_lockdown {}",
            t.suspicious, t.anomalous, t.critical, t.auto_lockdown
        ),
    );
    json!({"ok": true, "thresholds": t})
}

/// Numeric ids are held kernel actions; others are MCP approvals (tool
/// pins and ask tokens) in the store.
fn resolve(
    core: &Arc<Mutex<Core>>,
    db: &Path,
    id: &str,
    approve: bool,
    caller: &Caller,
) -> serde_json::Value {
    if let Ok(n) = id.parse::<u64>() {
        return match lock(core).resolve(n, approve, &caller.to_string()) {
            Some(r) => json!({"ok": true, "id": n, "resolution": r}),
            None => {
                json!({"ok": false, "error": format!("no pending approval {n} (already answered or timed out)")})
            }
        };
    }
    let result = Store::open(db).and_then(|mut s| {
        if approve {
            s.approve(id, SystemTime::now())
        } else {
            s.deny(id, SystemTime::now())
        }
    });
    match result {
        Ok(a) => json!({"ok": true, "id": id, "approval": format!("{a:?}")}),
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    }
}

fn answer(result: Result<String, String>) -> serde_json::Value {
    match result {
        Ok(detail) => json!({"ok": true, "detail": detail}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

/// `sentinel baseline accept|restore PATH`, recorded as an admin alert.
fn baseline(
    core: &Arc<Mutex<Core>>,
    path: &Path,
    accept: bool,
    caller: &Caller,
) -> serde_json::Value {
    let mut c = lock(core);
    let Some(m) = c.guards.identity.as_mut() else {
        return json!({"ok": false, "error": "the policy names no identity files ([identity])"});
    };
    let result = if accept {
        m.accept(path)
    } else {
        m.restore(path)
    };
    if let Ok(detail) = &result {
        record_admin(&mut c, format!("identity baseline: {detail} (by {caller})"));
    }
    answer(result)
}

/// Only what the LLM proxy produces is taken: its call records and its
/// `llm-*` alerts.
fn llm_record(core: &Arc<Mutex<Core>>, event: Event) -> serde_json::Value {
    let ours = match &event.body {
        Body::LlmCall { .. } => true,
        Body::Alert { category, .. } => category.starts_with("llm-"),
        _ => false,
    };
    if !ours {
        return json!({"ok": false, "error": "only llm_call records and llm-* alerts are taken"});
    }
    lock(core).record(event);
    json!({"ok": true})
}

fn bandwidth(
    core: &Arc<Mutex<Core>>,
    hours: f64,
    agent: Option<&str>,
    limit: usize,
) -> serde_json::Value {
    let c = lock(core);
    if let Some(why) = &c.sensor.flows_unavailable {
        return json!({"ok": false, "error": format!("bandwidth is not counted on this machine: {why}")});
    }
    let now = OffsetDateTime::now_utc();
    let since = now - time::Duration::seconds_f64(hours.clamp(0.0, 1e6) * 3600.0);
    let mut report = c.bandwidth.report(since, agent, limit, now);
    report["ok"] = json!(true);
    report
}

pub(crate) fn status(core: &Arc<Mutex<Core>>, agents: &BTreeMap<u32, String>) -> serde_json::Value {
    let mut c = lock(core);
    let counters = c.sensor.counters().unwrap_or_default();
    let stats = c.stats.snapshot();
    let table = c.table_stats();
    let mode = lock(&c.engine).mode();
    let kernel_rules: Vec<&String> = c.maps.rules.iter().collect();
    let audit = c.audit_stats();
    let sinks: Vec<serde_json::Value> = audit
        .sinks
        .iter()
        .map(|(name, s)| json!({"sink": name, "sent": s.sent, "dropped": s.dropped, "errors": s.errors}))
        .collect();
    json!({
        "ok": true,
        "running": true,
        "pid": std::process::id(),
        "mode": mode_name(mode),
        "policy_dir": c.policy_dir,
        "attached": c.sensor.attached,
        "enforcement": c.sensor.mechanisms,
        // Where the programs are pinned (they outlive the daemon); null:
        // they detach if it dies.
        "pinned": c.sensor.pin_dir,
        "lsm_unavailable": c.sensor.lsm_unavailable,
        "active_lsms": c.sensor.active_lsms,
        "file_guard": c.guard_status,
        "refused_map_entries": c.maps.refused,
        "watched_uids": agents.keys().collect::<Vec<_>>(),
        "agents": agents,
        "agent_risk": c.agent_risk,
        "decided_in_kernel": kernel_rules,
        "decided_in_userspace": c.userspace_only,
        "approvals": c.approvals.list(),
        "events": {
            "seen": stats.seen,
            "emitted": stats.emitted,
            "lost": counters.ringbuf_full,
            "decode_errors": stats.decode_errors,
            "audit_errors": stats.audit_errors,
            "untracked_children": counters.task_map_full,
            "coalesced": stats.coalesced,
        },
        "kernel_decisions": counters.kernel_decisions,
        "tracked_processes": table.tracked,
        "process_table": table,
        "bandwidth": {
            "counting": c.sensor.flows_unavailable.is_none(),
            "unavailable": c.sensor.flows_unavailable,
            "sockets": c.bandwidth.sockets(),
            "total": c.bandwidth.total(),
        },
        "mcp_socket": c.mcp_peers.snapshot(),
        "sinks": sinks,
        "audit": {
            "recorded": audit.recorded,
            "dropped": audit.dropped,
            "failed": audit.failed,
            "last_seq": audit.last_seq,
            "health": format!("{:?}", audit.health),
        },
    })
}
