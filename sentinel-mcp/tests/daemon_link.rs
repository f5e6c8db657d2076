//! The daemon link over a real Unix socket: the proxy asks the daemon's
//! half (`serve_decisions`), which identifies it by SO_PEERCRED and ignores
//! what the proxy claims; without an answering daemon the proxy falls back
//! to the in-process engine and says so.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use sentinel_mcp::daemon::{bind_socket, serve_decisions, socket_path, PeerBoundHandler, PeerCred};
use sentinel_mcp::{inprocess, ScanPolicy, SystemClock};
use serde_json::{json, Value};

fn proxy_args_daemon(state_dir: &Path, server: &[String]) -> Vec<String> {
    let mut args = vec![
        "--agent".to_string(),
        "i-am-root-honest".into(),
        "--server-name".into(),
        "testsrv".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        // Never opened with a daemon: the daemon holds the chain.
        "--db".into(),
        "/nonexistent/sentinel.db".into(),
        "--".into(),
    ];
    args.extend(server.iter().cloned());
    args
}

#[test]
fn the_proxy_asks_the_daemon_which_binds_calls_to_the_peers_kernel_identity() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let daemon_db = dir.path().join("daemon/sentinel.db");
    let audit_state = dir.path().join("daemon/state");
    let decider = inprocess::open_standalone(
        Some(&policy),
        &daemon_db,
        &audit_state,
        ScanPolicy::default(),
    )
    .expect("daemon-side decider");
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    let decider = Arc::new(decider);
    let handler = Arc::new(PeerBoundHandler::new(
        decider.clone(),
        Box::new(move |peer: &PeerCred| (peer.uid == me).then(|| "agent-from-uid".to_string())),
        Arc::new(SystemClock),
    ));
    let state_dir = dir.path().join("run");
    std::fs::create_dir_all(&state_dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(async { bind_socket(&socket_path(&state_dir)) })
        .unwrap();
    runtime.spawn(serve_decisions(listener, handler));

    let log = dir.path().join("calls.log");
    let stderr = dir.path().join("proxy.stderr");
    let mut proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_args_daemon(&state_dir, &python_server(&peers)),
        &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        Some(&stderr),
    );
    proxy.request(&initialize(1));
    proxy.send(&initialized());
    proxy.request(&list(9));
    let ok = proxy.request(&call(2, "echo", json!({"text": "via daemon"})));
    assert_eq!(ok["result"]["content"][0]["text"], "via daemon", "{ok}");
    let denied = proxy.request(&call(3, "delete_all", json!({"path": "/"})));
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    assert!(proxy.finish().success());

    let banner = std::fs::read_to_string(&stderr).unwrap();
    assert!(banner.contains("verdicts from the daemon at"), "{banner}");
    assert_eq!(call_log(&log).len(), 1);

    // The daemon's chain holds the calls under the kernel's identity.
    decider.flush();
    let events: Vec<Value> = sentinel_audit::AuditReader::open(&daemon_db)
        .unwrap()
        .tail(1000)
        .unwrap()
        .into_iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .filter(|e| e["kind"] == "mcp_call")
        .collect();
    assert!(events.len() >= 3, "{events:?}");
    for e in &events {
        assert_eq!(e["uid"], me);
        let exe = e["exe"].as_str().unwrap();
        assert!(
            exe.ends_with("sentinel-mcp-proxy") || exe.ends_with("/sentinel"),
            "the process is the kernel's peer: {e}"
        );
        assert_eq!(
            e["agent"], "agent-from-uid",
            "the proxy's --agent claim is ignored: {e}"
        );
    }
    assert!(events
        .iter()
        .any(|e| e["tool"] == "delete_all" && e["verdict"]["rule"] == "no-mass-delete"));
    assert!(sentinel_audit::verify(&daemon_db, &audit_state).unwrap().ok);
}

#[test]
fn without_an_answering_daemon_the_proxy_decides_in_process_and_says_so() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let state_dir = dir.path().join("run");
    std::fs::create_dir_all(&state_dir).unwrap();
    // A socket file nobody listens on (a daemon that died).
    drop(std::os::unix::net::UnixListener::bind(socket_path(&state_dir)).unwrap());
    let stderr = dir.path().join("proxy.stderr");
    let mut args = vec!["--state-dir".to_string(), state_dir.display().to_string()];
    args.extend(proxy_args(
        &policy,
        &dir.path().join("s.db"),
        &[],
        &python_server(&peers),
    ));
    args.retain(|a| a != "--standalone");
    let mut proxy = Session::spawn_with_stderr(&proxy_bin(), &args, &[], Some(&stderr));
    proxy.request(&initialize(1));
    let denied = proxy.request(&call(2, "delete_all", json!({"path": "/"})));
    assert_eq!(denied["result"]["isError"], true);
    assert!(proxy.finish().success());
    let banner = std::fs::read_to_string(&stderr).unwrap();
    assert!(banner.contains("did not answer"), "{banner}");
    assert!(
        banner.contains("verdicts from the in-process engine"),
        "{banner}"
    );
}

#[test]
fn in_lockdown_a_tool_named_like_a_status_probe_is_denied() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("daemon.db");
    let mut engine = sentinel_policy::Engine::new(sentinel_policy::Policy::embedded_defaults());
    engine.set_mode(sentinel_policy::Mode::Lockdown);
    let audit = sentinel_audit::AuditLog::open(&db, &dir.path().join("state")).unwrap();
    let decider = Arc::new(sentinel_mcp::LocalDecider::new(
        Box::new(inprocess::SharedEngine(Arc::new(Mutex::new(engine)))),
        Box::new(inprocess::AuditWriter::spawn(audit)),
        sentinel_mcp::Store::open(&db).unwrap(),
        ScanPolicy::default(),
        "lockdown daemon".into(),
    ));
    let handler = Arc::new(PeerBoundHandler::new(
        decider.clone(),
        Box::new(|_: &PeerCred| Some("agent".to_string())),
        Arc::new(SystemClock),
    ));
    let state_dir = dir.path().join("run");
    std::fs::create_dir_all(&state_dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(async { bind_socket(&socket_path(&state_dir)) })
        .unwrap();
    runtime.spawn(serve_decisions(listener, handler));
    let server = vec![
        peers().python.display().to_string(),
        workspace_root()
            .join("tests/mcp/lenient_server.py")
            .display()
            .to_string(),
    ];
    let log = dir.path().join("calls.log");
    let mut proxy = Session::spawn(
        &proxy_bin(),
        &proxy_args_daemon(&state_dir, &server),
        &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
    );
    proxy.request(&initialize(1));
    proxy.request(&list(2));
    let r = proxy.request(&call(3, "wipe_status", json!({})));
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(r.to_string().contains("rule `lockdown`"), "{r}");
    assert!(proxy.finish().success());
    assert!(call_log(&log).iter().all(|e| e["tool"] != "wipe_status"));
}
