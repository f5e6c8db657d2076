//! The Streamable HTTP front: the Python SDK client over HTTP in both eras,
//! Origin validation, protocol-version and routing-header checks, and the
//! same hardening as stdio.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Front {
    _proxy: Session,
    addr: String,
}

fn start(dir: &Path, log: &Path) -> Front {
    let peers = peers();
    std::fs::create_dir_all(dir).unwrap();
    let policy = policy_dir(dir, TEST_POLICY);
    let stderr = dir.join("proxy.stderr");
    let proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_args(
            &policy,
            &dir.join("s.db"),
            &["--listen", "127.0.0.1:0"],
            &python_server(&peers),
        ),
        &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        Some(&stderr),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            let addr = rest.split('/').next().unwrap().to_string();
            return Front {
                _proxy: proxy,
                addr,
            };
        }
        assert!(
            Instant::now() < deadline,
            "the HTTP front did not start: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One raw HTTP/1.1 POST; returns (status, body).
fn post(addr: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let (status, _, body) = post_full(addr, headers, body);
    (status, body)
}

/// One raw HTTP/1.1 POST to /mcp; returns (status, head, body).
fn post_full(addr: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    http_request(addr, "POST", "/mcp", headers, body)
}

fn drive_http(addr: &str, mode: &str, steps: Value) -> Value {
    let peers = peers();
    let out = Command::new(&peers.python)
        .arg(workspace_root().join("tests/mcp/client_driver.py"))
        .args([
            mode,
            "none",
            &steps.to_string(),
            "--",
            &format!("http://{addr}/mcp"),
        ])
        .output()
        .expect("run the Python SDK client");
    assert!(
        out.status.success(),
        "client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn python_sdk_client_over_http_in_both_eras() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    // One front: each legacy session gets its own server process, the
    // stateless revision shares one; both eras, twice each.
    let front = start(dir.path(), &log);
    for mode in ["legacy", "2026-07-28", "legacy", "2026-07-28"] {
        let report = drive_http(
            &front.addr,
            mode,
            json!([
                {"op": "list"},
                {"op": "call", "tool": "echo", "args": {"text": "over http"}},
                {"op": "call", "tool": "delete_all", "args": {"path": "/"}},
            ]),
        );
        let tools = report["steps"][0]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{mode}: {report}"));
        assert!(
            tools.contains(&json!("echo")) && !tools.contains(&json!("delete_all")),
            "{mode}: {report}"
        );
        assert_eq!(
            report["steps"][1],
            json!({"is_error": false, "text": "over http"}),
            "{mode}: {report}"
        );
        assert_eq!(report["steps"][2]["is_error"], true, "{mode}: {report}");
    }
    let calls = call_log(&log);
    assert_eq!(calls.len(), 4, "{calls:?}");
    assert!(calls.iter().all(|c| c["tool"] == "echo"));
}

#[test]
fn foreign_origins_bad_versions_and_lying_headers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let front = start(dir.path(), &log);
    let delete = call(7, "delete_all", json!({"path": "/"})).to_string();
    let echo = call(8, "echo", json!({"text": "x"})).to_string();

    let (status, _) = post(&front.addr, &[("Origin", "http://evil.example")], &echo);
    assert_eq!(status, 403, "a foreign Origin is refused");
    let own_origin = format!("http://{}", front.addr);
    let (status, _) = post(
        &front.addr,
        &[
            ("Origin", &own_origin),
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        &echo,
    );
    assert_eq!(status, 400, "an unknown protocol version is refused");

    // A routing header that disagrees with the body (a gateway would see
    // `echo`, the server would run `delete_all`).
    let (status, body) = post(
        &front.addr,
        &[("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")],
        &delete,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Mcp-Name"), "{body}");

    // The stdio hardening applies to HTTP bodies too.
    let (status, body) = post(&front.addr, &[], &format!("[{echo}]"));
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32600
    );
    let (status, body) = post(
        &front.addr,
        &[],
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","name":"delete_all"}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["id"], 9);

    // An honest request from the right origin goes through.
    let (status, head, body) = post_full(
        &front.addr,
        &[("Origin", &own_origin)],
        &initialize(1).to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let session = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("mcp-session-id: ")
                .map(str::to_owned)
        })
        .expect("a session id");
    let (status, _) = post(&front.addr, &[("Mcp-Session-Id", "not-a-session")], &echo);
    assert_eq!(status, 404, "an unknown session is refused");
    // The honest call goes through; the session never listed its tools,
    // so the proxy lists them itself first (echo is on the server's list).
    let (status, body) = post(&front.addr, &[("Mcp-Session-Id", &session)], &echo);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["result"]["content"][0]["text"],
        "x"
    );
    assert_eq!(
        call_log(&log).len(),
        1,
        "only the honest call reached the server"
    );
}

#[test]
fn the_front_refuses_an_unauthenticated_client_and_applies_the_2026_header_rules() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let policy = policy_dir(dir.path(), TEST_POLICY);
    let stderr = dir.path().join("proxy.stderr");
    let token_arg = token_file.display().to_string();
    let _proxy = Session::spawn_with_stderr(
        &proxy_bin(),
        &proxy_args(
            &policy,
            &dir.path().join("s.db"),
            &["--listen", "127.0.0.1:0", "--auth-token-file", &token_arg],
            &python_server(&peers()),
        ),
        &[],
        Some(&stderr),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let text = std::fs::read_to_string(&stderr).unwrap_or_default();
        if let Some(rest) = text.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, head, _) = post_full(&addr, &[], ping);
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let (status, _) = post(&addr, &[("Authorization", "Bearer wrong")], ping);
    assert_eq!(status, 401);
    let auth = ("Authorization", "Bearer s3cret-token");

    // 2026-07-28: MCP-Protocol-Version, Mcp-Method and Mcp-Name are
    // required and must match the body; a non-ASCII name arrives
    // base64-encoded.
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": name, "arguments": {"text": "x"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
        .to_string()
    };
    let (status, body) = post(&addr, &[auth], &call("echo"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("-32020") && body.contains("MCP-Protocol-Version"),
        "{body}"
    );
    let version = ("MCP-Protocol-Version", "2026-07-28");
    let (status, body) = post(&addr, &[auth, version], &call("echo"));
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("-32020") && body.contains("Mcp-Method"),
        "{body}"
    );
    let (status, body) = post(
        &addr,
        &[auth, version, ("Mcp-Method", "tools/call")],
        &call("echo"),
    );
    assert!(
        status == 400 && body.contains("-32020") && body.contains("Mcp-Name"),
        "{body}"
    );
    let (status, body) = post(
        &addr,
        &[
            auth,
            version,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "delete_all"),
        ],
        &call("echo"),
    );
    assert!(status == 400 && body.contains("-32020"), "{body}");
    let encoded = sentinel_mcp::http::encode_header_value("échô");
    assert!(encoded.starts_with("=?base64?"), "{encoded}");
    let (status, body) = post(
        &addr,
        &[
            auth,
            version,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", &encoded),
        ],
        &call("échô"),
    );
    assert_ne!(
        status, 400,
        "a matching encoded name passes the header check: {body}"
    );
    assert_eq!(
        sentinel_mcp::http::decode_header_value(&encoded).as_deref(),
        Some("échô")
    );
    // A session-less 2026 client that never listed: the proxy lists the
    // tools itself (with the call's `_meta` envelope) and the call runs;
    // the unlisted `échô` above was refused, not forwarded (its listing
    // failed: that server wants clientCapabilities in the envelope, which
    // that call lacked; a failed listing is tried again by the next call).
    assert!(body.contains("tool-not-listed"), "{body}");
    let mut echo: Value = serde_json::from_str(&call("echo")).unwrap();
    echo["params"]["_meta"] = modern_meta();
    let (status, body) = post(
        &addr,
        &[
            auth,
            version,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ],
        &echo.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        messages(&body)[0]["result"]["content"][0]["text"],
        "x",
        "{body}"
    );
}

/// A 2026-07-28 request body and the routing headers it needs.
fn modern(id: i64, method: &str, mut params: Value) -> String {
    params["_meta"] = modern_meta();
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

/// The JSON-RPC messages of an SSE (or JSON) answer.
fn messages(body: &str) -> Vec<Value> {
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        return vec![serde_json::from_str(trimmed).expect("JSON answer")];
    }
    body.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("JSON event"))
        .collect()
}

/// The progress tokens of the progress notifications in an answer.
fn progress_tokens(body: &str) -> Vec<String> {
    messages(body)
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            m["params"]["progressToken"]
                .as_str()
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

#[test]
fn two_clients_never_see_each_others_messages() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let front = start(dir.path(), &log);
    let addr = front.addr.clone();

    // Session-less 2026-07-28 clients share one server process: what it
    // sends for one client's request must reach that request only.
    let listing = modern(1, "tools/list", json!({}));
    let headers = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
    ];
    let (status, _, body) = http_request(&addr, "POST", "/mcp", &headers, &listing);
    assert_eq!(status, 200, "{body}");
    let call = |id: i64, token: &str, steps: u32| {
        let mut params = json!({"name": "progress", "arguments": {"steps": steps}});
        params["_meta"] = modern_meta();
        params["_meta"]["progressToken"] = json!(token);
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params}).to_string()
    };
    let call_headers = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "progress"),
    ];
    let long = {
        let addr = addr.clone();
        let body = call(10, "long-client", 30);
        std::thread::spawn(move || http_request(&addr, "POST", "/mcp", &call_headers, &body))
    };
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, short) = http_request(
        &addr,
        "POST",
        "/mcp",
        &call_headers,
        &call(11, "short-client", 3),
    );
    assert_eq!(status, 200, "{short}");
    let (status, _, long) = long.join().unwrap();
    assert_eq!(status, 200, "{long}");
    assert_eq!(progress_tokens(&short), vec!["short-client"; 3], "{short}");
    assert_eq!(progress_tokens(&long), vec!["long-client"; 30], "{long}");
    assert!(messages(&short)
        .iter()
        .any(|m| m["id"] == 11 && m["result"].is_object()));
    assert!(messages(&long)
        .iter()
        .any(|m| m["id"] == 10 && m["result"].is_object()));

    // Two legacy sessions: each has a server of its own and sees only its
    // own messages, even with the same request ids and progress tokens.
    let session = || {
        let (status, head, body) =
            http_request(&addr, "POST", "/mcp", &[], &initialize(1).to_string());
        assert_eq!(status, 200, "{body}");
        let id = head_value(&head, "mcp-session-id").expect("a session id");
        let (status, _, body) = http_request(
            &addr,
            "POST",
            "/mcp",
            &[("Mcp-Session-Id", &id)],
            &list(2).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        id
    };
    let (a, b) = (session(), session());
    assert_ne!(a, b);
    let legacy_call = |token: &str, steps: u32| {
        json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
            "name": "progress", "arguments": {"steps": steps},
            "_meta": {"progressToken": token}}})
        .to_string()
    };
    let long = {
        let addr = addr.clone();
        let body = legacy_call("a-token", 30);
        let a = a.clone();
        std::thread::spawn(move || {
            http_request(&addr, "POST", "/mcp", &[("Mcp-Session-Id", &a)], &body)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (_, _, short) = http_request(
        &addr,
        "POST",
        "/mcp",
        &[("Mcp-Session-Id", &b)],
        &legacy_call("b-token", 3),
    );
    let (_, _, long) = long.join().unwrap();
    assert_eq!(progress_tokens(&short), vec!["b-token"; 3], "{short}");
    assert_eq!(progress_tokens(&long), vec!["a-token"; 30], "{long}");
}

#[test]
fn mcp_param_headers_must_say_what_the_arguments_say() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let front = start(dir.path(), &log);
    let addr = front.addr.clone();
    let (status, _, body) = http_request(
        &addr,
        "POST",
        "/mcp",
        &[
            ("MCP-Protocol-Version", "2026-07-28"),
            ("Mcp-Method", "tools/list"),
        ],
        &modern(1, "tools/list", json!({})),
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("x-mcp-header"),
        "the query tool is listed: {body}"
    );
    let query = modern(
        2,
        "tools/call",
        json!({"name": "query", "arguments": {"region": "us-west1", "sql": "SELECT 1"}}),
    );
    let base = [
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "query"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut h = base.to_vec();
        h.extend_from_slice(extra);
        h
    };
    // A router would send this to eu-west1 while the server runs it in
    // us-west1; a missing header hides the region; an unannotated one
    // invents a routing key the server never sees.
    for (headers, why) in [
        (with(&[("Mcp-Param-Region", "eu-west1")]), "lying"),
        (with(&[]), "missing"),
        (
            with(&[
                ("Mcp-Param-Region", "us-west1"),
                ("Mcp-Param-Tenant", "acme"),
            ]),
            "unannotated",
        ),
        (
            with(&[("Mcp-Param-Region", "=?base64?not base64?=")]),
            "malformed",
        ),
    ] {
        let (status, _, body) = http_request(&addr, "POST", "/mcp", &headers, &query);
        assert_eq!(status, 400, "{why}: {body}");
        assert!(body.contains("-32020"), "{why}: {body}");
    }
    assert!(
        call_log(&log).is_empty(),
        "nothing refused reached the server"
    );
    let encoded = sentinel_mcp::headers::encode_header_value("us-west1");
    let (status, _, body) = http_request(
        &addr,
        "POST",
        "/mcp",
        &with(&[("Mcp-Param-Region", "us-west1")]),
        &query,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("us-west1: SELECT 1"), "{body}");
    assert_eq!(encoded, "us-west1");

    // The SDK client mirrors the annotated argument itself.
    let report = drive_http(
        &addr,
        "2026-07-28",
        json!([{"op": "list"}, {"op": "call", "tool": "query", "args": {"region": "ap-south-1", "sql": "SELECT 2"}}]),
    );
    assert_eq!(
        report["steps"][1],
        json!({"is_error": false, "text": "ap-south-1: SELECT 2"}),
        "{report}"
    );
    assert_eq!(call_log(&log).len(), 2);
}
