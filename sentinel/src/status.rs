//! `sentinel status`: asks the daemon over the control socket and prints
//! a short summary a person reads at a glance (what is attached and how
//! each kind is enforced, agents and their risk, mode, drops, audit), or
//! the daemon's whole answer with `--json`. Exits 0 only when the daemon
//! runs with programs attached.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use serde_json::Value;

use crate::control;
use crate::doctor::describe_mechanism;

pub fn run(state_dir: &Path, as_json: bool) -> ExitCode {
    let answer = match control::call(state_dir, &control::Request::Status) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sentinel: {e}");
            return ExitCode::from(1);
        }
    };
    if as_json {
        println!("{answer:#}");
    } else {
        print!("{}", summary(&answer));
    }
    let attached = answer["attached"].as_array().map_or(0, Vec::len);
    if answer["running"] == true && attached > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A number from the daemon's answer (0 when absent).
pub fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// One watched agent as `status` reports it.
pub struct AgentRow<'a> {
    pub uid: &'a str,
    pub name: &'a str,
    /// `{last, max, events}`; null before its first event.
    pub risk: &'a Value,
}

/// The watched agents with their risk, from a status answer.
pub fn agent_rows(a: &Value) -> Vec<AgentRow<'_>> {
    a["agents"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(uid, name)| {
                    let name = name.as_str().unwrap_or("?");
                    AgentRow {
                        uid,
                        name,
                        risk: &a["agent_risk"][name],
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The human summary of a status answer.
pub fn summary(a: &Value) -> String {
    let mut out = String::new();
    let policy = a["policy_dir"]
        .as_str()
        .map_or("the embedded defaults".to_string(), str::to_string);
    let _ = writeln!(
        out,
        "sentinel is running (pid {}) in mode {}, policy {policy}",
        a["pid"],
        a["mode"].as_str().unwrap_or("?")
    );
    let agents: Vec<String> = agent_rows(a)
        .into_iter()
        .map(|row| {
            let (name, uid, r) = (row.name, row.uid, row.risk);
            if r.is_object() {
                format!(
                    "{name} (uid {uid}, risk {} now, {} at most, {} events)",
                    n(&r["last"]),
                    n(&r["max"]),
                    n(&r["events"])
                )
            } else {
                format!("{name} (uid {uid}, no events yet)")
            }
        })
        .collect();
    let _ = writeln!(out, "  agents:    {}", agents.join("; "));
    let attached = a["attached"].as_array().map_or(0, Vec::len);
    let _ = writeln!(
        out,
        "  attached:  {attached} programs, {} processes tracked",
        n(&a["tracked_processes"])
    );
    if let Some(kinds) = a["enforcement"].as_object() {
        for (kind, mechanism) in kinds {
            let mechanism = mechanism.as_str().unwrap_or("?");
            let (how, _) = describe_mechanism(kind, mechanism);
            let _ = writeln!(out, "  {kind:<9}  {mechanism}: {how}");
        }
    }
    if let Some(why) = a["lsm_unavailable"].as_str() {
        let _ = writeln!(out, "  no BPF LSM: {why}");
    }
    let g = &a["file_guard"];
    if g.is_object() {
        let caps = &g["capabilities"];
        let _ = writeln!(
            out,
            "  file guard: {} places, {} objects marked (fanotify{}{}), {} requests, {} refused",
            n(&g["targets"]),
            n(&g["marked"]),
            if caps["open_exec_perm"] == true {
                ", exec"
            } else {
                ""
            },
            if caps["pre_content"] == true {
                ", pre-content"
            } else {
                ", no pre-content: truncate and writes through open descriptors are undone after the fact"
            },
            n(&g["stats"]["events"]),
            n(&g["stats"]["denied"]),
        );
        for f in g["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "    {}", f.as_str().unwrap_or("?"));
        }
    }
    let e = &a["events"];
    let _ = writeln!(
        out,
        "  events:    {} seen, {} recorded, {} lost (ring buffer full), {} undecodable, {} untracked children",
        n(&e["seen"]),
        n(&e["emitted"]),
        n(&e["lost"]),
        n(&e["decode_errors"]),
        n(&e["untracked_children"])
    );
    let held = a["approvals"].as_array().map_or(0, Vec::len);
    if held > 0 {
        let _ = writeln!(
            out,
            "  held:      {held} actions waiting (`sentinel approve ID` / `sentinel deny ID`)"
        );
        for p in a["approvals"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "             #{} pid {}: {}",
                p["id"],
                p["pid"],
                p["action"].as_str().unwrap_or("?")
            );
        }
    }
    for s in a["sinks"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  sink:      {}: {} sent, {} dropped, {} errors",
            s["sink"].as_str().unwrap_or("?"),
            n(&s["sent"]),
            n(&s["dropped"]),
            n(&s["errors"])
        );
    }
    let au = &a["audit"];
    let _ = writeln!(
        out,
        "  audit:     {} records (last seq {}), {} dropped, {} failed, writer {}",
        n(&au["recorded"]),
        n(&au["last_seq"]),
        n(&au["dropped"]),
        n(&au["failed"]),
        au["health"].as_str().unwrap_or("?")
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_kind_the_daemon_reports() {
        let answer = serde_json::json!({
            "running": true, "pid": 7, "mode": "alert", "policy_dir": null,
            "agents": {"2001": "claude"},
            "agent_risk": {"claude": {"last": 10, "max": 40, "events": 3}},
            "attached": ["a", "b"], "tracked_processes": 4,
            // A kind the sensor may report later appears without a change here.
            "enforcement": {"exec": "sigkill", "open": "sigkill", "connect": "cgroup", "ioctl": "fanotify"},
            "events": {"seen": 5, "emitted": 5, "lost": 1, "decode_errors": 0, "untracked_children": 0},
            "approvals": [{"id": 3, "pid": 99, "action": "exec /usr/bin/curl"}],
            "sinks": [{"sink": "cef:tls://127.0.0.1:6514", "sent": 1, "dropped": 2, "errors": 3}],
            "audit": {"recorded": 5, "last_seq": 5, "dropped": 0, "failed": 0, "health": "Healthy"},
        });
        let text = summary(&answer);
        for needle in [
            "mode alert, policy the embedded defaults",
            "claude (uid 2001, risk 10 now, 40 at most, 3 events)",
            "exec       sigkill:",
            "ioctl      fanotify",
            "1 lost",
            "#3 pid 99: exec /usr/bin/curl",
            "cef:tls://127.0.0.1:6514: 1 sent, 2 dropped, 3 errors",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
    }
}
