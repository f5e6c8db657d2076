//! Who may talk through the proxy, and with which credentials:
//!
//! - an OAuth-protected upstream built with the Python SDK's auth support
//!   (authorization server and resource server), reached through the HTTP
//!   front by the SDK's OAuth 2.1 client: the upstream's 401 comes back as
//!   a 401 whose challenge leads to the front's copy of the protected
//!   resource metadata, the client gets a token and the policy still
//!   decides every call;
//! - a configured upstream token is injected, and a client's own
//!   `Authorization` (the front's token) never reaches the upstream;
//! - a Unix-socket front serves the UIDs the kernel vouches for and refuses
//!   (and records) the others.

mod common;

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::{json, Value};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The OAuth-protected Python SDK server; returns it and its port.
fn oauth_server(log: &Path, static_token: Option<&str>) -> (Server, u16) {
    let port = free_port();
    let mut command = Command::new(peers().python);
    command
        .arg(workspace_root().join("tests/mcp/oauth_server.py"))
        .arg(port.to_string())
        .env("SENTINEL_TEST_CALL_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(token) = static_token {
        command.env("SENTINEL_TEST_STATIC_TOKEN", token);
    }
    let child = Server(command.spawn().expect("start the OAuth server"));
    wait_port(port);
    (child, port)
}

/// The proxy in front of an HTTP upstream: stdio, or with `--listen`.
fn proxy_to(dir: &Path, upstream: &str, extra: &[&str]) -> Vec<String> {
    let policy = policy_dir(dir, TEST_POLICY);
    let mut flags = vec!["--upstream", upstream];
    flags.extend_from_slice(extra);
    let mut args = proxy_args(&policy, &dir.join("s.db"), &flags, &[]);
    args.retain(|a| a != "--");
    args
}

fn log_entries(log: &Path, kind: &str) -> Vec<Value> {
    call_log(log)
        .into_iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

#[test]
fn an_oauth_protected_upstream_is_reachable_through_the_front_and_the_policy_still_decides() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let (_server, port) = oauth_server(&log, None);
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let stderr = dir.path().join("proxy.stderr");
    let _proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_to(dir.path(), &upstream, &["--listen", "127.0.0.1:0"]),
        &[],
        Some(&stderr),
    );
    let shown = wait_listening(&stderr);
    let front_url = shown.split_whitespace().next().unwrap().to_string();
    let addr = front_url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();

    // Without a token: a real 401, pointing at the front's metadata.
    let (status, head, body) = http_request(&addr, "POST", "/mcp", &[], &initialize(1).to_string());
    assert_eq!(status, 401, "{head}\n{body}");
    let challenge = head_value(&head, "www-authenticate").expect("a challenge");
    let metadata_url = format!("http://{addr}/.well-known/oauth-protected-resource/mcp");
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    // Unauthorized initializes hold no session: more of them than the
    // front has session slots still get 401, never "too many sessions".
    for _ in 0..40 {
        let (status, _, body) =
            http_request(&addr, "POST", "/mcp", &[], &initialize(1).to_string());
        assert_eq!(status, 401, "{body}");
    }
    let (status, _, metadata) = http_request(
        &addr,
        "GET",
        "/.well-known/oauth-protected-resource/mcp",
        &[],
        "",
    );
    assert_eq!(status, 200, "{metadata}");
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["resource"], front_url, "{metadata}");
    assert_eq!(
        metadata["authorization_servers"],
        json!([format!("http://127.0.0.1:{port}")]),
        "{metadata}"
    );

    // The SDK's OAuth client, both eras: discovery, registration, code
    // flow with PKCE, then calls with the token; the policy still hides
    // and denies delete_all.
    for mode in ["legacy", "2026-07-28"] {
        let out = Command::new(peers().python)
            .arg(workspace_root().join("tests/mcp/oauth_client.py"))
            .args([mode, &front_url])
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{mode}: {e}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert!(report.get("exception").is_none(), "{mode}: {report}");
        assert_eq!(report["tools"], json!(["echo"]), "{mode}: {report}");
        assert_eq!(
            report["echo"],
            json!({"is_error": false, "text": "through oauth"}),
            "{mode}: {report}"
        );
        assert_eq!(report["delete_all"]["is_error"], true, "{mode}: {report}");
    }
    let tokens = log_entries(&log, "token");
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert!(
        tokens.iter().all(|t| t["resource"] == front_url),
        "{tokens:?}"
    );
    let calls = log_entries(&log, "call");
    assert_eq!(calls.len(), 2, "only the allowed calls: {calls:?}");
    assert!(calls
        .iter()
        .all(|c| c["tool"] == "echo" && c["client_id"].is_string()));
}

#[test]
fn a_configured_token_is_injected_and_the_fronts_own_token_never_reaches_the_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let (_server, port) = oauth_server(&log, Some("front-and-service-token"));
    let upstream = format!("http://127.0.0.1:{port}/mcp");

    // stdio, no token: the upstream's 401 is an error with its challenge.
    let mut proxy = Session::spawn(&proxy_bin(), &proxy_to(dir.path(), &upstream, &[]), &[]);
    let refused = proxy.request(&initialize(1));
    assert_eq!(refused["error"]["data"]["httpStatus"], 401, "{refused}");
    drop(proxy);

    // With --upstream-token-file the token goes with every request.
    let token_file = dir.path().join("upstream.token");
    std::fs::write(&token_file, "front-and-service-token\n").unwrap();
    let token_arg = token_file.display().to_string();
    let mut proxy = Session::spawn(
        &proxy_bin(),
        &proxy_to(
            dir.path(),
            &upstream,
            &["--upstream-token-file", &token_arg],
        ),
        &[],
    );
    let init = proxy.request(&initialize(1));
    assert!(init["result"].is_object(), "{init}");
    proxy.send(&initialized());
    proxy.request(&list(2));
    let echo = proxy.request(&call(3, "echo", json!({"text": "service"})));
    assert_eq!(echo["result"]["content"][0]["text"], "service", "{echo}");
    drop(proxy);
    let calls = log_entries(&log, "call");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["client_id"], "static-service", "{calls:?}");

    // A front that takes the same string as its own bearer token: the
    // client's Authorization is the front's, and is not passed on (if it
    // were, the upstream would accept it).
    let front_token = dir.path().join("front.token");
    std::fs::write(&front_token, "front-and-service-token\n").unwrap();
    let front_arg = front_token.display().to_string();
    let stderr = dir.path().join("front.stderr");
    let _front = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_to(
            dir.path(),
            &upstream,
            &["--listen", "127.0.0.1:0", "--auth-token-file", &front_arg],
        ),
        &[],
        Some(&stderr),
    );
    let shown = wait_listening(&stderr);
    let addr = shown
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let (status, _, body) = http_request(
        &addr,
        "POST",
        "/mcp",
        &[("Authorization", "Bearer front-and-service-token")],
        &initialize(1).to_string(),
    );
    assert_eq!(status, 401, "the upstream saw no token: {body}");
    assert!(
        body.contains("upstream MCP server answered HTTP 401"),
        "{body}"
    );
}

#[test]
fn a_unix_socket_front_serves_the_allowed_uids_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // Other users must reach the socket to be refused by the proxy rather
    // than by the directory.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("mcp.sock");
    let listen = format!("unix:{}", socket.display());
    let log = dir.path().join("calls.log");
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let db = dir.path().join("s.db");
    let stderr = dir.path().join("proxy.stderr");
    let _proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_args(
            &policy,
            &db,
            &["--listen", &listen, "--allow-uid", "2001"],
            &python_server(&peers()),
        ),
        &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        Some(&stderr),
    );
    let shown = wait_listening(&stderr);
    assert!(shown.starts_with("unix:"), "{shown}");
    // A raw HTTP POST over the socket, from a process of `uid`.
    let post_as = |uid: u32| {
        let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[2].encode()
s.sendall(b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
          b"Accept: application/json, text/event-stream\r\nConnection: close\r\n"
          + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
sys.stdout.write(out.decode())
"#;
        let out = Command::new("python3")
            .args([
                "-c",
                script,
                &socket.display().to_string(),
                &initialize(1).to_string(),
            ])
            .uid(uid)
            .gid(uid)
            .output()
            .expect("run python3 as a test user");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let allowed = post_as(2001);
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.contains("\"protocolVersion\""), "{allowed}");
    let refused = post_as(2002);
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    // Root is not on the list either: the kernel's word, not a header's.
    let as_root = post_as(0);
    assert!(as_root.starts_with("HTTP/1.1 403"), "{as_root}");
    // The refusals are on the record.
    let alerts: Vec<Value> = (0..100)
        .find_map(|_| {
            let events: Vec<Value> = sentinel_audit::AuditReader::open(&db)
                .ok()?
                .tail(1000)
                .ok()?
                .into_iter()
                .map(|e| serde_json::to_value(e).unwrap())
                .filter(|e| e["category"] == "mcp-client-refused")
                .collect();
            if events.len() >= 2 {
                Some(events)
            } else {
                std::thread::sleep(std::time::Duration::from_millis(100));
                None
            }
        })
        .expect("two refusals recorded");
    assert!(alerts
        .iter()
        .any(|a| a["reason"].as_str().unwrap().contains("UID 2002")));
}
