//! An HTTP downstream: the proxy on stdio in front of the Python SDK server
//! serving Streamable HTTP (`--upstream http://127.0.0.1:PORT/mcp`).

mod common;

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct HttpServer {
    child: Child,
    url: String,
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_server(log: &std::path::Path) -> HttpServer {
    let peers = peers();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&peers.python)
        .arg(workspace_root().join("tests/mcp/logging_server.py"))
        .env("SENTINEL_TEST_HTTP_PORT", port.to_string())
        .env("SENTINEL_TEST_CALL_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the Python HTTP server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Python HTTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    HttpServer {
        child,
        url: format!("http://127.0.0.1:{port}/mcp"),
    }
}

fn upstream_args(dir: &std::path::Path, url: &str) -> Vec<String> {
    let policy = policy_dir(dir, TEST_POLICY);
    let mut args = proxy_args(&policy, &dir.join("s.db"), &["--upstream", url], &[]);
    args.retain(|a| a != "--");
    args
}

#[test]
fn the_proxy_fronts_an_http_server_with_the_same_policy() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let server = http_server(&log);
    let mut proxy = Session::spawn(&proxy_bin(), &upstream_args(dir.path(), &server.url), &[]);
    let init = proxy.request(&initialize(1));
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    proxy.send(&initialized());
    let tools = proxy.request(&list(2));
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"delete_all"),
        "{tools}"
    );
    let echo = proxy.request(&call(3, "echo", json!({"text": "via http"})));
    assert_eq!(echo["result"]["content"][0]["text"], "via http", "{echo}");
    let denied = proxy.request(&call(4, "delete_all", json!({"path": "/"})));
    assert_eq!(denied["result"]["isError"], true);
    assert!(proxy.finish().success());
    let calls = call_log(&log);
    assert_eq!(
        calls,
        vec![json!({"tool": "echo", "args": {"text": "via http"}})]
    );
}

#[test]
fn the_python_sdk_client_reaches_an_http_server_through_the_proxy_in_the_stateless_era() {
    let peers = peers();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let server = http_server(&log);
    let out = Command::new(&peers.python)
        .arg(workspace_root().join("tests/mcp/client_driver.py"))
        .args([
            "2026-07-28",
            "none",
            &json!([
                {"op": "list"},
                {"op": "call", "tool": "echo", "args": {"text": "stateless"}},
                {"op": "call", "tool": "delete_all", "args": {"path": "/"}},
            ])
            .to_string(),
            "--",
        ])
        .arg(proxy_bin())
        .args(upstream_args(dir.path(), &server.url))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["protocol_version"], "2026-07-28", "{report}");
    assert_eq!(
        report["steps"][1],
        json!({"is_error": false, "text": "stateless"}),
        "{report}"
    );
    assert_eq!(report["steps"][2]["is_error"], true, "{report}");
    assert_eq!(call_log(&log).len(), 1);
}
