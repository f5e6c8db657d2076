//! `sentinel mcp-admin` driven by a real MCP client (the Python SDK's
//! `Client` over stdio) against a real daemon on the real kernel: the 36
//! tools are listed, a rule created through the tools is dry-run and then
//! enforced by the kernel, rules survive an export → delete → import round
//! trip unchanged, a host quarantine is compiled into the kernel maps and
//! lifted, a mode switch shows in `sentinel mode get`, the audit chain
//! verifies through the tool, anyone but root is refused, and the bytes
//! the agent's sockets moved (counted in the kernel) are reported per host.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::{json, Value};

const PYTHON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../target/mcp-peers/venv/bin/python"
);

/// One MCP session with the Python SDK client: `steps` is a list of
/// `{"op": "list"}` or `{"tool": NAME, "args": {...}}`; prints the
/// negotiated version and one result per step.
const DRIVER: &str = r#"
import asyncio, json, sys
from mcp import Client, StdioServerParameters

async def main():
    steps = json.loads(sys.argv[1])
    sep = sys.argv.index("--")
    params = StdioServerParameters(command=sys.argv[sep + 1], args=sys.argv[sep + 2:])
    out = {"steps": []}
    async with Client(params, mode="legacy") as client:
        out["protocol_version"] = client.protocol_version
        for step in steps:
            if step.get("op") == "list":
                tools = await client.list_tools()
                out["steps"].append({"tools": [t.name for t in tools.tools]})
                continue
            r = await client.call_tool(step["tool"], step.get("args", {}))
            out["steps"].append({
                "is_error": bool(r.is_error),
                "text": "".join(getattr(c, "text", "") for c in r.content),
                "structured": r.structured_content,
            })
    print(json.dumps(out))

asyncio.run(main())
"#;

const TOOLS: [&str; 36] = [
    "sentinel_approvals_list",
    "sentinel_rules_create",
    "sentinel_rules_update",
    "sentinel_rules_delete",
    "sentinel_rules_list",
    "sentinel_rules_test",
    "sentinel_rules_import",
    "sentinel_rules_export",
    "sentinel_monitor_live",
    "sentinel_monitor_stats",
    "sentinel_monitor_top_tools",
    "sentinel_monitor_hosts",
    "sentinel_monitor_bandwidth",
    "sentinel_monitor_mode",
    "sentinel_audit_query",
    "sentinel_audit_tail",
    "sentinel_audit_stats",
    "sentinel_audit_verify",
    "sentinel_audit_export",
    "sentinel_audit_retention",
    "sentinel_policy_status",
    "sentinel_policy_baseline",
    "sentinel_policy_thresholds",
    "sentinel_policy_schedule",
    "sentinel_policy_agent_trust",
    "sentinel_policy_report",
    "sentinel_alerts_list",
    "sentinel_alerts_acknowledge",
    "sentinel_alerts_configure_webhooks",
    "sentinel_alerts_test",
    "sentinel_alerts_history",
    "sentinel_quarantine_host",
    "sentinel_quarantine_tool",
    "sentinel_quarantine_agent",
    "sentinel_quarantine_list",
    "sentinel_quarantine_lift",
];

struct Admin {
    driver: PathBuf,
    args: Vec<String>,
}

impl Admin {
    fn new(scratch: &Path, daemon: &Daemon) -> Admin {
        let driver = scratch.join("admin_driver.py");
        std::fs::write(&driver, DRIVER).unwrap();
        let state = daemon.state_dir();
        Admin {
            driver,
            args: vec![
                "mcp-admin".into(),
                "--state-dir".into(),
                state.display().to_string(),
                "--db".into(),
                state.join("sentinel.db").display().to_string(),
            ],
        }
    }

    /// Runs `steps` in one session; returns the per-step results.
    fn session(&self, steps: Value) -> Vec<Value> {
        assert!(
            Path::new(PYTHON).exists(),
            "the Python MCP SDK is missing at {PYTHON}: run `cargo xtask setup`"
        );
        let out = Command::new(PYTHON)
            .arg(&self.driver)
            .arg(steps.to_string())
            .arg("--")
            .arg(sentinel_bin())
            .args(&self.args)
            .output()
            .expect("running the MCP client");
        assert!(
            out.status.success(),
            "MCP client failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("driver output is JSON");
        assert_eq!(v["protocol_version"], "2025-11-25");
        v["steps"].as_array().unwrap().clone()
    }

    /// One tool call that must succeed; its structured result.
    fn ok(&self, tool: &str, args: Value) -> Value {
        let r = self
            .session(json!([{"tool": tool, "args": args}]))
            .remove(0);
        assert_eq!(r["is_error"], false, "{tool} failed: {}", r["text"]);
        r["structured"].clone()
    }

    /// One tool call that must fail; its message.
    fn err(&self, tool: &str, args: Value) -> String {
        let r = self
            .session(json!([{"tool": tool, "args": args}]))
            .remove(0);
        assert_eq!(r["is_error"], true, "{tool} should have failed: {r}");
        r["text"].as_str().unwrap().to_string()
    }
}

fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect()
}

fn mode_get(daemon: &Daemon) -> String {
    let out = Command::new(sentinel_bin())
        .args(["mode", "get", "--state-dir"])
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "mode get: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn operator_tools_drive_the_running_daemon() {
    require_environment();
    let _lock = kernel_lock();
    let scratch = scratch_dir();
    let d = scratch.path();
    let denyme = d.join("denyme");
    std::fs::copy("/bin/echo", &denyme).unwrap();
    std::fs::set_permissions(&denyme, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = d.join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(
        policy.join("10-base.toml"),
        "# hand-written: the tools rewrite only a rule's own table\n[[rule]]\nname = \"base-log-curl\"\nkind = \"exec\"\naction = \"log-only\"\nbinary = \"/usr/bin/curl\"\n",
    )
    .unwrap();
    let base_before = std::fs::read_to_string(policy.join("10-base.toml")).unwrap();
    // Silent-allow: deny rules apply, but the anomaly scorer only learns,
    // so an auto-lockdown cannot kill the test's own agent commands.
    let daemon = Daemon::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--mode",
        "silent-allow",
    ]);
    let admin = Admin::new(d, &daemon);

    // tools/list: exactly the 36 tools.
    let listed = admin.session(json!([{"op": "list"}])).remove(0);
    let mut got = names(&listed["tools"]);
    got.sort();
    let mut want: Vec<String> = TOOLS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    // Before the rule, the watched agent may run the program.
    let out = run({
        let mut c = as_user(WATCHED_UID, denyme.to_str().unwrap());
        c.arg("before");
        c
    });
    assert!(out.status.success(), "allowed before the rule: {out:?}");

    // Create a rule; the policy dir is found from the daemon's command line.
    let created = admin.ok(
        "sentinel_rules_create",
        json!({"name": "admin-deny-denyme", "kind": "exec", "action": "deny",
               "binary": [denyme.to_str().unwrap()], "reason": "made by the operator's tools"}),
    );
    assert_eq!(created["daemon"]["reloaded"], true, "{created}");
    assert!(
        names(&created["daemon"]["decided_in_kernel"]).contains(&"admin-deny-denyme".to_string()),
        "{created}"
    );
    // A second rule with every kind of value, for the round trip.
    admin.ok(
        "sentinel_rules_create",
        json!({"name": "admin-ask-push", "kind": "mcp", "action": "ask", "priority": 15,
               "tool": ["*push*", "git_*"], "server": ["github"], "args": "\"force\":true\\b",
               "agent": ["testagent"], "risk": 65, "reason": "it's a \"force\" push",
               "rate_limit": {"max": 3, "per_seconds": 60},
               "schedule": {"days": ["weekdays"], "start": "22:00", "end": "06:00", "tz": "Europe/Paris"}}),
    );
    // An invalid rule is refused and changes nothing.
    let msg = admin.err(
        "sentinel_rules_create",
        json!({"name": "bad", "kind": "exec", "action": "deny", "args": "(unclosed"}),
    );
    assert!(msg.contains("invalid regex"), "{msg}");
    assert_eq!(
        std::fs::read_to_string(policy.join("10-base.toml")).unwrap(),
        base_before
    );

    // Dry run on the daemon's engine says deny, with our rule.
    let test_args = json!({"kind": "exec", "binary": denyme.to_str().unwrap(),
                           "agent": "testagent", "uid": WATCHED_UID});
    let tested = admin.ok("sentinel_rules_test", test_args.clone());
    assert_eq!(tested["verdict"]["action"], "deny", "{tested}");
    assert_eq!(tested["verdict"]["rule"], "admin-deny-denyme");
    let on_disk = admin.ok(
        "sentinel_rules_test",
        json!({"kind": "exec", "binary": denyme.to_str().unwrap(), "against": "files"}),
    );
    assert_eq!(on_disk["verdict"]["rule"], "admin-deny-denyme");
    // ... and the kernel enforces it for the watched agent only.
    // Refused before it runs: EPERM (BPF LSM, or the file guard once it
    // has the new rule's place) or killed at exec.
    exec_refused({
        let mut c = as_user(WATCHED_UID, denyme.to_str().unwrap());
        c.arg("after");
        c
    });
    let out = run({
        let mut c = as_user(OTHER_UID, denyme.to_str().unwrap());
        c.arg("fine");
        c
    });
    assert!(out.status.success(), "unwatched still runs: {out:?}");

    // Export → delete → import: nothing lost. Exports are in evaluation
    // order, so the import writes the rules in that order.
    let exported = admin.ok("sentinel_rules_export", json!({"admin_only": true}));
    assert_eq!(exported["count"], 2);
    let toml = exported["toml"].as_str().unwrap().to_string();
    let steps = admin.session(json!([
        {"tool": "sentinel_rules_delete", "args": {"name": "admin-deny-denyme"}},
        {"tool": "sentinel_rules_delete", "args": {"name": "admin-ask-push"}},
        {"tool": "sentinel_rules_list", "args": {}},
        {"tool": "sentinel_rules_test", "args": test_args},
        {"tool": "sentinel_rules_import", "args": {"toml": toml}},
        {"tool": "sentinel_rules_export", "args": {"admin_only": true}},
        {"tool": "sentinel_rules_list", "args": {}},
        {"tool": "sentinel_rules_update", "args": {"name": "base-log-curl", "changes": {"risk": 33}}},
    ]));
    for s in &steps[..7] {
        assert_eq!(s["is_error"], false, "{s}");
    }
    let listed: Vec<String> = steps[2]["structured"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, vec!["base-log-curl".to_string()]);
    assert_ne!(
        steps[3]["structured"]["verdict"]["rule"],
        "admin-deny-denyme"
    );
    assert_eq!(
        steps[4]["structured"]["added"],
        json!(["admin-ask-push", "admin-deny-denyme"])
    );
    assert_eq!(steps[5]["structured"]["toml"].as_str().unwrap(), toml);
    assert_eq!(steps[6]["structured"]["count"], 3);
    // A rule in a hand-written file: only its own table is rewritten.
    assert_eq!(steps[7]["is_error"], false, "{}", steps[7]);
    let base_now = std::fs::read_to_string(policy.join("10-base.toml")).unwrap();
    assert!(
        base_now.starts_with("# hand-written: the tools rewrite only a rule's own table\n[[rule]]\nname = 'base-log-curl'\n"),
        "{base_now}"
    );
    assert!(base_now.contains("risk = 33\n"), "{base_now}");

    // Quarantine a host: compiled into the kernel, then lifted.
    let in_kernel = |d: &Daemon| names(&d.status()["decided_in_kernel"]);
    assert!(!in_kernel(&daemon).contains(&"quarantine".to_string()));
    let q = admin.ok(
        "sentinel_quarantine_host",
        json!({"addr": "203.0.113.7", "reason": "exfil endpoint"}),
    );
    assert_eq!(q["quarantined"], "host 203.0.113.7/32", "{q}");
    assert!(in_kernel(&daemon).contains(&"quarantine".to_string()));
    let list = admin.ok("sentinel_quarantine_list", json!({}));
    assert_eq!(list["quarantines"][0]["reason"], "exfil endpoint");
    let dry = admin.ok(
        "sentinel_rules_test",
        json!({"kind": "connect", "addr": "203.0.113.7", "port": 443, "agent": "testagent", "uid": WATCHED_UID}),
    );
    assert_eq!(dry["verdict"]["rule"], "quarantine", "{dry}");
    admin.ok(
        "sentinel_quarantine_lift",
        json!({"type": "host", "pattern": "203.0.113.7"}),
    );
    assert!(!in_kernel(&daemon).contains(&"quarantine".to_string()));
    assert_eq!(
        admin.ok("sentinel_quarantine_list", json!({}))["quarantines"],
        json!([])
    );

    // Mode through the tool shows in `sentinel mode get`.
    let m = admin.ok("sentinel_monitor_mode", json!({"set": "silent-deny"}));
    assert_eq!(m["mode"], "silent-deny");
    assert_eq!(mode_get(&daemon), "silent-deny");
    admin.ok("sentinel_monitor_mode", json!({"set": "silent-allow"}));
    assert_eq!(mode_get(&daemon), "silent-allow");

    // Thresholds round trip through the daemon's engine.
    let t = admin.ok("sentinel_policy_thresholds", json!({"critical": 85}));
    assert_eq!(t["thresholds"]["critical"], 85);
    assert_eq!(
        admin.ok("sentinel_policy_thresholds", json!({}))["thresholds"]["critical"],
        85
    );
    let status = admin.ok("sentinel_policy_status", json!({}));
    assert_eq!(status["policy_dir"], policy.to_str().unwrap());
    // The directory's three rules, and the two that protect this run's
    // own state, database, policy and binary.
    assert_eq!(status["rules"], 5);

    // The audit trail has the operator's changes and verifies.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let q = admin.ok(
            "sentinel_audit_query",
            json!({"kind": "alert", "limit": 1000}),
        );
        let reasons: Vec<String> = q["events"]
            .as_array()
            .unwrap()
            .iter()
            // Reloads are recorded as `policy` alerts (SIGHUP and the tool
            // share one path); the other admin changes as `admin`.
            .filter(|e| e["category"] == "admin" || e["category"] == "policy")
            .map(|e| e["reason"].as_str().unwrap_or("").to_string())
            .collect();
        if reasons
            .iter()
            .any(|r| r.contains("on host 203.0.113.7/32 lifted by uid 0"))
        {
            assert!(reasons
                .iter()
                .any(|r| r.starts_with("policy reloaded from")));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "admin changes not in the audit trail: {reasons:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let v = admin.ok("sentinel_audit_verify", json!({}));
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["count"].as_u64().unwrap() > 0);
    let killed = admin.ok(
        "sentinel_audit_query",
        json!({"rule": "admin-deny-denyme", "verdict": "deny"}),
    );
    assert!(killed["count"].as_u64().unwrap() >= 1, "{killed}");

    every_other_tool_answers_from_real_state(&admin, &daemon, d);

    // Deleting a hand-written rule leaves the rest of its file.
    let deleted = admin.ok("sentinel_rules_delete", json!({"name": "base-log-curl"}));
    assert_eq!(deleted["daemon"]["reloaded"], true, "{deleted}");
    assert_eq!(
        std::fs::read_to_string(policy.join("10-base.toml")).unwrap(),
        "# hand-written: the tools rewrite only a rule's own table\n"
    );
    // Two of the directory's, and this run's two own-files rules.
    assert_eq!(admin.ok("sentinel_policy_status", json!({}))["rules"], 4);
}

#[test]
fn rule_edits_on_the_embedded_policy_are_refused() {
    require_environment();
    let _lock = kernel_lock();
    let scratch = scratch_dir();
    let daemon = Daemon::start(&[]);
    let admin = Admin::new(scratch.path(), &daemon);
    let msg = admin.err(
        "sentinel_rules_create",
        json!({"name": "x", "kind": "exec", "action": "deny", "binary": "/x"}),
    );
    assert!(msg.contains("--policy DIR"), "{msg}");
    let listed = admin.ok("sentinel_rules_list", json!({}));
    assert_eq!(listed["embedded_defaults"], true);
    assert!(listed["count"].as_u64().unwrap() > 5);
}

#[test]
fn protocol_versions_and_non_root() {
    require_environment();
    let _lock = kernel_lock();
    // Raw JSON-RPC for the older revision, a notification, ping and a batch.
    let mut child = Command::new(sentinel_bin())
        .args([
            "mcp-admin",
            "--state-dir",
            "/nonexistent",
            "--db",
            "/nonexistent.db",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"1"}}}}}}"#).unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"ping"}}"#).unwrap();
    writeln!(stdin, r#"[{{"jsonrpc":"2.0","id":3,"method":"ping"}}]"#).unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"nope"}}}}"#
    )
    .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4, "no answer to the notification: {lines:?}");
    assert_eq!(lines[0]["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(lines[1]["id"], 2);
    assert_eq!(lines[1]["result"], json!({}));
    assert_eq!(lines[2]["error"]["code"], -32600);
    assert_eq!(lines[3]["error"]["code"], -32602);

    // Anyone but root is refused with one line.
    let scratch = scratch_dir();
    let bin = scratch.path().join("sentinel");
    std::fs::copy(sentinel_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The watched agent's UID and an unrelated one alike.
    for uid in [WATCHED_UID, OTHER_UID] {
        let out = run({
            let mut c = as_user(uid, bin.to_str().unwrap());
            c.arg("mcp-admin").stdin(Stdio::null());
            c
        });
        assert_eq!(out.status.code(), Some(2), "uid {uid}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains("root"), "{err}");
        assert!(out.stdout.is_empty());
    }
    // Without a database the audit and baseline tools say so, and create
    // nothing.
    let missing = scratch.path().join("missing.db");
    let mut child = Command::new(sentinel_bin())
        .args(["mcp-admin", "--state-dir", "/nonexistent", "--db"])
        .arg(&missing)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for (id, tool) in [
        (1, "sentinel_policy_baseline"),
        (2, "sentinel_audit_verify"),
    ] {
        writeln!(
            stdin,
            "{}",
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
        )
        .unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["result"]["isError"], true, "{v}");
    }
    assert!(!missing.exists());
}

/// A one-shot HTTP receiver for webhook posts: answers 200 and hands the
/// request body over.
fn webhook_receiver() -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            let body = loop {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break String::new(),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break text[end + 4..].to_string();
                    }
                }
            };
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = tx.send(body);
        }
    });
    (port, rx)
}

fn every_other_tool_answers_from_real_state(admin: &Admin, daemon: &Daemon, scratch: &Path) {
    // A connect by the watched agent shows in monitor_hosts.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let out = sh_as(WATCHED_UID, &format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
    assert!(
        out.status.success(),
        "connect: {out:?}; the daemon saw:\n{}",
        daemon
            .events()
            .iter()
            .rev()
            .take(15)
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    let host = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hosts = admin.ok("sentinel_monitor_hosts", json!({"hours": 1}));
        let row = hosts["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["host"] == host.as_str())
            .cloned();
        if let Some(row) = row {
            assert!(row["count"].as_u64().unwrap() >= 1);
            assert!(row["agents"]["testagent"].as_u64().unwrap() >= 1, "{row}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host} not in {hosts}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    let stats = admin.ok("sentinel_monitor_stats", json!({}));
    assert!(stats["attached_programs"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["events"]["seen"].as_u64().unwrap() > 0, "{stats}");
    let live = admin.ok("sentinel_monitor_live", json!({"limit": 5}));
    let events = live["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.len() <= 5);
    let next = live["next_after_seq"].as_u64().unwrap();
    assert_eq!(events.last().unwrap()["seq"].as_u64().unwrap(), next);
    let later = admin.ok("sentinel_monitor_live", json!({"after_seq": next}));
    assert!(later["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["seq"].as_u64().unwrap() > next));
    // A real MCP call by the agent through `sentinel mcp-proxy` (the
    // daemon decides and records it) shows in monitor_top_tools. The
    // client is the Python SDK (root's venv); the proxy and the npm
    // reference server run as the agent.
    let everything = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/mcp-peers/node/node_modules/.bin/mcp-server-everything"
    );
    assert!(
        Path::new(everything).exists(),
        "missing {everything}: run `cargo xtask setup`"
    );
    let out = Command::new(PYTHON)
        .arg(&admin.driver)
        .arg(json!([{"tool": "echo", "args": {"message": "hello"}}]).to_string())
        .arg("--")
        .arg("/usr/bin/setpriv")
        .arg(format!("--reuid={WATCHED_UID}"))
        .arg(format!("--regid={WATCHED_UID}"))
        .args(["--clear-groups", "/usr/bin/env", "HOME=/tmp"])
        .arg(sentinel_bin())
        .args([
            "mcp-proxy",
            "--agent",
            "testagent",
            "--server-name",
            "testsrv",
        ])
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .args(["--", "/usr/bin/node", everything, "stdio"])
        .current_dir("/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agent session: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(session["steps"][0]["is_error"], false, "{session}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let top = admin.ok("sentinel_monitor_top_tools", json!({"hours": 1}));
        let row = top["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tool"] == "testsrv/echo")
            .cloned();
        if let Some(row) = row {
            assert_eq!(row["agents"]["testagent"], 1, "{row}");
            assert_eq!(row["count"], 1, "{row}");
            assert_eq!(row["verdicts"]["allow"], 1, "{row}");
            assert_eq!(row["outcomes"]["result"], 1, "{row}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no echo call in {top}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    // Audit.
    let tail = admin.ok("sentinel_audit_tail", json!({"lines": 3}));
    assert_eq!(tail["count"], 3);
    let stats = admin.ok("sentinel_audit_stats", json!({"kind": "exec"}));
    assert!(stats["records"].as_u64().unwrap() >= 1, "{stats}");
    let cef = admin.ok(
        "sentinel_audit_export",
        json!({"format": "cef", "kind": "exec"}),
    );
    assert!(cef["text"].as_str().unwrap().starts_with("CEF:"), "{cef}");
    let file = scratch.join("export.jsonl");
    let exported = admin.ok(
        "sentinel_audit_export",
        json!({"format": "jsonl", "out": file.to_str().unwrap()}),
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text.lines().count() as u64,
        exported["count"].as_u64().unwrap()
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // An existing file is never truncated, and a symlink is never followed.
    let again = admin.err(
        "sentinel_audit_export",
        json!({"format": "jsonl", "out": file.to_str().unwrap()}),
    );
    assert!(again.contains("new file only"), "{again}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
    let target = scratch.join("victim");
    std::fs::write(&target, "keep me").unwrap();
    let link = scratch.join("link.jsonl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let refused = admin.err(
        "sentinel_audit_export",
        json!({"format": "jsonl", "out": link.to_str().unwrap()}),
    );
    assert!(refused.contains("symlink"), "{refused}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    let pending = admin.ok("sentinel_approvals_list", json!({}));
    assert!(pending["pending"].is_array(), "{pending}");
    let kept = admin.ok("sentinel_audit_retention", json!({}));
    assert!(kept["records"].as_u64().unwrap() > 0);
    let msg = admin.err(
        "sentinel_audit_retention",
        json!({"apply": true, "keep_last": 10}),
    );
    assert!(msg.contains("stop the daemon"), "{msg}");

    // Policy.
    let sched = admin.ok("sentinel_policy_schedule", json!({}));
    let row = &sched["scheduled_rules"][0];
    assert_eq!(row["rule"], "admin-ask-push");
    assert!(row["in_force_now"].is_boolean());
    admin.ok("sentinel_policy_baseline", json!({}));
    let trust = admin.ok("sentinel_policy_agent_trust", json!({"agent": "testagent"}));
    let row = &trust["agents"][0];
    assert_eq!(row["uid"], WATCHED_UID);
    assert!(row["denials_24h"].as_u64().unwrap() >= 1, "{row}");
    assert_eq!(row["trust"], "reduced");
    admin.ok("sentinel_quarantine_agent", json!({"agent": "test*"}));
    let trust = admin.ok("sentinel_policy_agent_trust", json!({"agent": "testagent"}));
    assert_eq!(trust["agents"][0]["trust"], "quarantined", "{trust}");
    admin.ok(
        "sentinel_quarantine_lift",
        json!({"type": "agent", "pattern": "test*"}),
    );
    admin.ok(
        "sentinel_quarantine_tool",
        json!({"tool": "*shell*", "expires_in_seconds": 600}),
    );
    let dry = admin.ok(
        "sentinel_rules_test",
        json!({"kind": "mcp", "server": "x", "tool": "run_shell", "agent": "testagent", "uid": WATCHED_UID}),
    );
    assert_eq!(dry["verdict"]["rule"], "quarantine", "{dry}");
    let list = admin.ok("sentinel_quarantine_list", json!({}));
    assert!(
        list["quarantines"][0]["expires"].as_str().unwrap().len() > 10,
        "{list}"
    );
    admin.ok(
        "sentinel_quarantine_lift",
        json!({"type": "tool", "pattern": "*shell*"}),
    );
    let report = admin.ok("sentinel_policy_report", json!({"hours": 1}));
    assert_eq!(report["audit"]["intact"], true, "{report}");
    assert_eq!(report["mode"], "silent-allow");
    // The directory's three and this run's two own-files rules.
    assert_eq!(report["policy"]["rules"], 5);

    // Alerts: one raised in the daemon's database, listed, acknowledged.
    let db = daemon.state_dir().join("sentinel.db");
    let raised = sentinel_anomaly::AlertManager::open(&db, Default::default())
        .unwrap()
        .raise(
            sentinel_anomaly::NewAlert {
                severity: sentinel_anomaly::Severity::Warning,
                category: "exfiltration".into(),
                reason: "mcp-admin test alert".into(),
                related: vec![],
                source: "tests/mcp_admin".into(),
            },
            std::time::SystemTime::now(),
        )
        .unwrap();
    let id = raised.alert().unwrap().id;
    let active = admin.ok("sentinel_alerts_list", json!({}));
    assert!(active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id));
    let acked = admin.ok("sentinel_alerts_acknowledge", json!({"id": id}));
    assert_eq!(acked["alert"]["status"], "acknowledged", "{acked}");
    let active = admin.ok("sentinel_alerts_list", json!({}));
    assert!(!active["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id));
    let history = admin.ok("sentinel_alerts_history", json!({"hours": 1}));
    assert!(history["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["id"] == id && a["acknowledged_by"].as_str().unwrap().contains("mcp-admin")));

    // Webhooks: configured, then a test alert reaches a real receiver.
    let msg = admin.err("sentinel_alerts_test", json!({}));
    assert!(msg.contains("no alert webhook"), "{msg}");
    let (port, bodies) = webhook_receiver();
    let url = format!("http://127.0.0.1:{port}/hook");
    let set = admin.ok(
        "sentinel_alerts_configure_webhooks",
        json!({"url": url, "min_severity": "info", "retries": 0}),
    );
    assert_eq!(set["webhook"]["url"], url.as_str());
    let shown = admin.ok("sentinel_alerts_configure_webhooks", json!({}));
    assert_eq!(shown["webhook"]["min_severity"], "info");
    let sent = admin.ok("sentinel_alerts_test", json!({}));
    assert_eq!(sent["http_status"], 200, "{sent}");
    let body = bodies
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert!(
        body.contains("test alert from sentinel mcp-admin"),
        "{body}"
    );
    let cleared = admin.ok("sentinel_alerts_configure_webhooks", json!({"clear": true}));
    assert_eq!(cleared["webhook"], Value::Null);
}

/// Bytes each bandwidth-test client sends, and its peer answers.
const SENT: usize = 1_000_000;
const RECEIVED: usize = 250_000;

/// One full exchange over loopback TCP: a peer on `ip` (this test, root)
/// reads exactly `SENT` bytes and answers with `RECEIVED`; the client is a
/// bash line run as `uid`, which `wrap` may put inside another command.
/// Checks that both ends got everything; returns the peer's port.
fn tcp_exchange(uid: u32, ip: &str, wrap: impl FnOnce(String) -> String) -> u16 {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let peer = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut got = 0;
        while got < SENT {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        conn.write_all(&vec![b'y'; RECEIVED]).unwrap();
        got
    });
    let client =
        format!("exec 3<>/dev/tcp/{ip}/{port}; head -c {SENT} /dev/zero >&3; cat <&3 | wc -c");
    let out = sh_as(uid, &wrap(client));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        RECEIVED.to_string(),
        "{out:?}"
    );
    assert_eq!(peer.join().unwrap(), SENT);
    port
}

/// The row of `host` in the bandwidth report of `agent`, if any.
fn bandwidth_row(report: &Value, agent: &str, host: &str) -> Option<Value> {
    report["agents"]
        .as_array()?
        .iter()
        .find(|a| a["agent"] == agent)?["hosts"]
        .as_array()?
        .iter()
        .find(|h| h["host"] == host)
        .cloned()
}

fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn bandwidth_is_counted_in_the_kernel_per_agent_and_host() {
    const DATAGRAMS: u64 = 10;
    require_environment();
    let _lock = kernel_lock();
    let scratch = scratch_dir();
    let daemon = Daemon::start_observing(&[]);
    let admin = Admin::new(scratch.path(), &daemon);
    assert_eq!(daemon.status()["bandwidth"]["counting"], true);

    // The agent: TCP over IPv4, then datagrams without connect().
    let v4 = tcp_exchange(WATCHED_UID, "127.0.0.1", |client| client);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_port = udp.local_addr().unwrap().port();
    let mut py = as_user(WATCHED_UID, "/usr/bin/python3");
    py.args([
        "-c",
        &format!("import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor _ in range({DATAGRAMS}): s.sendto(b'z' * 1000, ('127.0.0.1', {udp_port}))"),
    ]);
    let out = run(py);
    assert!(out.status.success(), "{out:?}");

    // Its setuid-root child (as with sudo), over IPv6, gone at once.
    let suid = scratch.path().join("suid-setpriv");
    std::fs::copy("/usr/bin/setpriv", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let v6 = tcp_exchange(WATCHED_UID, "::1", |client| {
        format!(
            "{} --reuid=0 --regid=0 --clear-groups -- /bin/bash -c '{client}'",
            suid.display()
        )
    });

    // Somebody else: not counted, and not hindered either.
    let other = tcp_exchange(OTHER_UID, "127.0.0.1", |client| client);

    let (v4_host, v6_host) = (format!("127.0.0.1:{v4}"), format!("[::1]:{v6}"));
    let udp_host = format!("127.0.0.1:{udp_port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let report = loop {
        let r = admin.ok("sentinel_monitor_bandwidth", json!({"hours": 1}));
        let complete = |host: &str, sent: usize, received: usize| {
            bandwidth_row(&r, "testagent", host).is_some_and(|row| {
                u(&row, "sent_bytes") >= sent as u64 && u(&row, "received_bytes") >= received as u64
            })
        };
        if complete(&v4_host, SENT, RECEIVED)
            && complete(&v6_host, SENT, RECEIVED)
            && complete(&udp_host, 1000, 0)
        {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's transfers are not all in the report: {r}"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    };

    // IP bytes: the payload plus headers and ACKs, not much more.
    for host in [&v4_host, &v6_host] {
        let row = bandwidth_row(&report, "testagent", host).unwrap();
        assert_eq!(row["protocol"], "tcp", "{row}");
        let (sent, received) = (u(&row, "sent_bytes"), u(&row, "received_bytes"));
        assert!(
            sent <= (SENT + SENT / 20) as u64,
            "{host} sent {sent}: {row}"
        );
        assert!(
            received <= (RECEIVED + RECEIVED / 20) as u64,
            "{host} received {received}: {row}"
        );
        assert!(
            u(&row, "sent_packets") > 0 && u(&row, "received_packets") > 0,
            "{row}"
        );
    }
    // A datagram is its payload plus 20 bytes of IPv4 and 8 of UDP header.
    let row = bandwidth_row(&report, "testagent", &udp_host).unwrap();
    assert_eq!(row["protocol"], "udp", "{row}");
    assert_eq!(u(&row, "sent_packets"), DATAGRAMS, "{row}");
    assert_eq!(u(&row, "sent_bytes"), DATAGRAMS * 1028, "{row}");
    // The agent's totals cover its hosts; nobody else is in the report.
    let agents = report["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "only the agent: {report}");
    let rows = agents[0]["hosts"].as_array().unwrap();
    let sum: u64 = rows.iter().map(|h| u(h, "sent_bytes")).sum();
    assert_eq!(u(&agents[0], "sent_bytes"), sum, "{report}");
    assert!(
        !report.to_string().contains(&format!(":{other}\"")),
        "the unwatched user's transfer was counted: {report}"
    );
    let filtered = admin.ok(
        "sentinel_monitor_bandwidth",
        json!({"hours": 1, "agent": "someone-else"}),
    );
    assert_eq!(filtered["agents"], json!([]), "{filtered}");

    // Released sockets are collected; what they moved stays reported.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while daemon.status()["bandwidth"]["sockets"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "released sockets are still counted: {}",
            daemon.status()["bandwidth"]
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let after = admin.ok("sentinel_monitor_bandwidth", json!({"hours": 1}));
    let row = bandwidth_row(&after, "testagent", &v4_host).unwrap();
    assert!(u(&row, "sent_bytes") >= SENT as u64, "{after}");
}
