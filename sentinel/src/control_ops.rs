//! What the daemon does for each request on the control socket: status,
//! mode, approvals. The socket itself (binding, peer checks, framing) is
//! `control`; the data path is `pipeline`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use sentinel_mcp::Store;
use serde_json::json;

use crate::control::{self, Request};
use crate::pipeline::{lock, mode_name, Core};

pub fn handler(
    core: Arc<Mutex<Core>>,
    agents: BTreeMap<u32, String>,
    db: PathBuf,
) -> control::Handler {
    Arc::new(move |req| match req {
        Request::Status => status(&core, &agents),
        Request::ModeGet => {
            let c = lock(&core);
            let mode = lock(&c.engine).mode();
            json!({"ok": true, "mode": mode_name(mode)})
        }
        Request::ModeSet { mode } => {
            lock(&core).set_mode(mode, "operator");
            json!({"ok": true, "mode": mode_name(mode)})
        }
        Request::Approve { id } => resolve(&core, &db, &id, true),
        Request::Deny { id } => resolve(&core, &db, &id, false),
    })
}

/// Numeric ids are held kernel actions; others are MCP approvals (tool
/// pins and ask tokens) in the store.
fn resolve(core: &Arc<Mutex<Core>>, db: &Path, id: &str, approve: bool) -> serde_json::Value {
    if let Ok(n) = id.parse::<u64>() {
        return match lock(core).resolve(n, approve) {
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

fn status(core: &Arc<Mutex<Core>>, agents: &BTreeMap<u32, String>) -> serde_json::Value {
    let mut c = lock(core);
    let counters = c.sensor.counters().unwrap_or_default();
    let stats = c.stats.snapshot();
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
        "attached": c.sensor.attached,
        "enforcement": c.sensor.mechanisms,
        "lsm_unavailable": c.sensor.lsm_unavailable,
        "watched_uids": agents.keys().collect::<Vec<_>>(),
        "agents": agents,
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
        },
        "kernel_decisions": counters.kernel_decisions,
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
