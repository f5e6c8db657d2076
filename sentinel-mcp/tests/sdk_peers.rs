//! Real clients and real servers on both sides of the proxy: the Python SDK
//! client (both protocol eras) and the npm reference servers; the ask flow
//! (operator token, and MCP elicitation); the audit chain afterwards.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

/// Runs tests/mcp/client_driver.py through the proxy; returns its report.
fn drive(
    peers: &Peers,
    mode: &str,
    elicit: &str,
    steps: Value,
    proxy: &[String],
    envs: &[(&str, String)],
) -> Value {
    let mut cmd = Command::new(&peers.python);
    cmd.arg(workspace_root().join("tests/mcp/client_driver.py"))
        .args([mode, elicit, &steps.to_string(), "--"])
        .arg(proxy_bin())
        .args(proxy);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the Python SDK client");
    assert!(
        out.status.success(),
        "client driver failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "driver output not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn verify_chain(db: &Path) -> sentinel_audit::VerifyReport {
    let mut state = db.as_os_str().to_owned();
    state.push(".state");
    sentinel_audit::verify(db, Path::new(&state)).expect("audit verify runs")
}

fn mcp_events(db: &Path) -> Vec<Value> {
    let reader = sentinel_audit::AuditReader::open(db).expect("open audit db");
    reader
        .tail(10_000)
        .expect("read audit records")
        .into_iter()
        .map(|e| serde_json::to_value(e).expect("event json"))
        .collect()
}

#[test]
fn python_sdk_client_in_both_protocol_eras() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let db = dir.path().join("s.db");
    let log = dir.path().join("calls.log");
    let steps = json!([
        {"op": "list"},
        {"op": "call", "tool": "echo", "args": {"text": "hi"}},
        {"op": "call", "tool": "delete_all", "args": {"path": "/srv"}},
    ]);
    for mode in ["legacy", "2026-07-28"] {
        let report = drive(
            &peers,
            mode,
            "none",
            steps.clone(),
            &proxy_args(&policy, &db, &[], &python_server(&peers)),
            &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        );
        let want_version = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(report["protocol_version"], want_version, "{report}");
        let tools = report["steps"][0]["tools"].as_array().unwrap();
        assert!(
            tools.contains(&json!("echo")) && !tools.contains(&json!("delete_all")),
            "{report}"
        );
        assert_eq!(
            report["steps"][1],
            json!({"is_error": false, "text": "hi"}),
            "{report}"
        );
        assert_eq!(report["steps"][2]["is_error"], true, "{report}");
        assert!(report["steps"][2]["text"]
            .as_str()
            .unwrap()
            .contains("no-mass-delete"));
    }
    let calls = call_log(&log);
    assert_eq!(calls.len(), 2, "two echo calls, no delete: {calls:?}");
    assert!(calls.iter().all(|c| c["tool"] == "echo"));

    // Every call is in the audit chain, with the proxy's identity, and the
    // chain verifies.
    let report = verify_chain(&db);
    assert!(report.ok, "{report:?}");
    let events = mcp_events(&db);
    let denied: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "mcp_call" && e["tool"] == "delete_all")
        .collect();
    assert_eq!(denied.len(), 2, "{events:?}");
    for e in denied {
        assert_eq!(e["agent"], "test-agent");
        assert_eq!(e["server"], "testsrv");
        assert_eq!(e["verdict"]["action"], "deny");
        assert_eq!(e["verdict"]["rule"], "no-mass-delete");
        assert_eq!(e["outcome"], "denied");
    }
    let results = events
        .iter()
        .filter(|e| e["kind"] == "mcp_call" && e["tool"] == "echo" && e["outcome"] == "result")
        .count();
    assert_eq!(results, 2);
}

#[test]
fn npm_everything_server_answers_byte_for_byte_through_the_proxy() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let everything = peers.node_bin.join("mcp-server-everything");
    let server = vec![everything.display().to_string(), "stdio".to_string()];
    let mut direct = Session::spawn(&everything, &server[1..], &[]);
    let mut proxied = Session::spawn(
        &proxy_bin(),
        &proxy_args(&policy, &dir.path().join("s.db"), &[], &server),
        &[],
    );
    for s in [&mut direct, &mut proxied] {
        s.request_raw(&initialize(1));
        s.send(&initialized());
    }
    let direct_list = direct.request_raw(&list(2));
    let proxied_list = proxied.request_raw(&list(2));
    assert_eq!(
        String::from_utf8_lossy(&proxied_list),
        String::from_utf8_lossy(&direct_list),
        "nothing denied, nothing poisoned: the list passes unchanged"
    );
    for (id, tool, args) in [
        (3, "echo", json!({"message": "through sentinel"})),
        (4, "get-sum", json!({"a": 2, "b": 40})),
    ] {
        let want = direct.request_raw(&call(id, tool, args.clone()));
        let got = proxied.request_raw(&call(id, tool, args));
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{tool}"
        );
    }
    drop(direct);
    assert!(proxied.finish().success());
}

#[test]
fn npm_filesystem_server_reads_allowed_writes_denied() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(
        dir.path(),
        r#"
[[rule]]
name = "read-only-files"
action = "deny"
kind = "mcp"
server = "files"
tool = ["write_file", "edit_file", "move_file", "create_directory"]
reason = "this agent may only read files"
"#,
    );
    let root = dir.path().join("srv");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("notes.txt"), "hello from disk").unwrap();
    let fs_server = peers.node_bin.join("mcp-server-filesystem");
    let mut args = proxy_args(
        &policy,
        &dir.path().join("s.db"),
        &[],
        &[fs_server.display().to_string(), root.display().to_string()],
    );
    let name_at = args.iter().position(|a| a == "testsrv").unwrap();
    args[name_at] = "files".into();
    let report = drive(
        &peers,
        "legacy",
        "none",
        json!([
            {"op": "list"},
            {"op": "call", "tool": "read_text_file", "args": {"path": root.join("notes.txt").display().to_string()}},
            {"op": "call", "tool": "write_file", "args": {"path": root.join("evil.txt").display().to_string(), "content": "x"}},
        ]),
        &args,
        &[],
    );
    let tools = report["steps"][0]["tools"].as_array().unwrap();
    assert!(tools.contains(&json!("read_text_file")), "{report}");
    assert!(!tools.contains(&json!("write_file")), "{report}");
    assert_eq!(report["steps"][1]["text"], "hello from disk", "{report}");
    assert_eq!(report["steps"][2]["is_error"], true, "{report}");
    assert!(
        !root.join("evil.txt").exists(),
        "the denied write never happened"
    );
}

const ASK_POLICY: &str = r#"
[[rule]]
name = "confirm-deletes"
action = "ask"
kind = "mcp"
tool = "delete_all"
reason = "deleting needs a human"
"#;

#[test]
fn an_ask_is_approved_once_and_not_twice() {
    let dir = tempfile::tempdir().unwrap();
    let LoggedProxy {
        session: mut proxy,
        db,
        log,
    } = LoggedProxy::start(dir.path(), ASK_POLICY, &[]);
    let delete = |id| call(id, "delete_all", json!({"path": "/srv/tmp"}));

    let first = proxy.request(&delete(2));
    assert_eq!(first["result"]["isError"], true);
    let text = first["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .to_string();
    let token = text
        .split('`')
        .find_map(|part| part.strip_prefix("sentinel approve "))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_string();
    assert!(call_log(&log).is_empty());

    // Approving it lets exactly this call through, once.
    let mut store = sentinel_mcp::Store::open(&db).unwrap();
    store.approve(&token, std::time::SystemTime::now()).unwrap();
    drop(store);
    let other = proxy.request(&call(3, "delete_all", json!({"path": "/"})));
    assert_eq!(
        other["result"]["isError"], true,
        "other arguments are not approved"
    );
    let approved = proxy.request(&delete(4));
    assert_eq!(approved["result"]["isError"], false, "{approved}");
    let again = proxy.request(&delete(5));
    assert_eq!(again["result"]["isError"], true, "single use: {again}");
    assert!(proxy.finish().success());
    assert_eq!(call_log(&log).len(), 1);
    assert!(verify_chain(&db).ok);
}

#[test]
fn an_ask_uses_elicitation_when_the_client_declares_it() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    // The client may approve only where the policy says so (the default
    // approver is the operator; smuggling.rs tests that the agent's own
    // client cannot approve then).
    let policy = policy_dir(
        dir.path(),
        &format!("{ASK_POLICY}\n[mcp]\napprover = \"client\"\n"),
    );
    let log = dir.path().join("calls.log");
    // Tools are listed first: the proxy refuses calls to tools it has not
    // seen listed.
    let steps = json!([
        {"op": "list"},
        {"op": "call", "tool": "delete_all", "args": {"path": "/srv/tmp"}},
    ]);
    for (mode, answer, reaches) in [
        ("legacy", "accept", 1),
        ("legacy", "decline", 0),
        ("2026-07-28", "accept", 1),
        ("2026-07-28", "decline", 0),
    ] {
        std::fs::remove_file(&log).ok();
        let report = drive(
            &peers,
            mode,
            answer,
            steps.clone(),
            &proxy_args(
                &policy,
                &dir.path().join("s.db"),
                &[],
                &python_server(&peers),
            ),
            &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        );
        assert_eq!(report["elicited"].as_array().unwrap().len(), 1, "{report}");
        assert!(report["elicited"][0]
            .as_str()
            .unwrap()
            .contains("delete_all"));
        assert_eq!(
            report["steps"][1]["is_error"],
            reaches == 0,
            "{answer}: {report}"
        );
        assert_eq!(call_log(&log).len(), reaches, "{answer}");
    }
}

fn everything_through_proxy(dir: &Path, extra: &[&str], envs: &[(&str, String)]) -> Session {
    let peers = peers();
    let policy = policy_dir(dir, TEST_POLICY);
    let everything = peers.node_bin.join("mcp-server-everything");
    let server = vec![everything.display().to_string(), "stdio".to_string()];
    let mut proxy = Session::spawn(
        &proxy_bin(),
        &proxy_args(&policy, &dir.join("s.db"), extra, &server),
        envs,
    );
    proxy.request(&initialize(1));
    proxy.send(&initialized());
    // The proxy refuses calls to tools it has not seen listed.
    proxy.request(&list(900));
    proxy
}

#[test]
fn progress_notifications_and_cancellations_pass_through() {
    let dir = tempfile::tempdir().unwrap();
    let mut proxy = everything_through_proxy(dir.path(), &["--request-timeout-ms", "3000"], &[]);
    let mut long = call(
        2,
        "trigger-long-running-operation",
        json!({"duration": 1, "steps": 3}),
    );
    long["params"]["_meta"] = json!({"progressToken": "tok-1"});
    proxy.send(&long);
    let mut progress = 0;
    loop {
        let msg = proxy.recv_json();
        if msg["method"] == "notifications/progress" {
            assert_eq!(msg["params"]["progressToken"], "tok-1");
            progress += 1;
        } else if msg["id"] == 2 {
            assert!(msg.get("result").is_some(), "{msg}");
            break;
        }
    }
    assert!(progress >= 1, "progress notifications reached the client");

    // A cancelled request is not answered by a timeout error.
    let mut slow = call(
        3,
        "trigger-long-running-operation",
        json!({"duration": 6, "steps": 2}),
    );
    slow["params"]["_meta"] = json!({"progressToken": "tok-2"});
    proxy.send(&slow);
    proxy.send(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3, "reason": "user"}}));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut answers = Vec::new();
    while std::time::Instant::now() < deadline {
        if let Some(line) = proxy.recv_within(1) {
            let msg: Value = serde_json::from_slice(&line).unwrap();
            if msg["id"] == 3 {
                answers.push(msg);
            }
        }
    }
    assert!(answers.len() <= 1, "{answers:?}");
    assert!(
        answers.iter().all(|a| a["error"]["code"] != -32001),
        "no timeout answer for a cancelled request: {answers:?}"
    );
    let ok = proxy.request(&call(4, "echo", json!({"message": "still fine"})));
    assert!(ok.to_string().contains("still fine"), "{ok}");
}

#[test]
fn secrets_in_a_real_servers_result_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let mut proxy = everything_through_proxy(
        dir.path(),
        &[],
        &[("SENTINEL_TEST_GITHUB_TOKEN", token.to_string())],
    );
    let env = proxy.request(&call(2, "get-env", json!({})));
    let text = env.to_string();
    assert!(
        text.contains("SENTINEL_TEST_GITHUB_TOKEN"),
        "the server really returned its environment"
    );
    assert!(!text.contains(token), "the token is redacted");
    assert!(text.contains("[REDACTED:github-token]"), "{text}");
}
