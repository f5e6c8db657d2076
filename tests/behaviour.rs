//! Behaviour detection on live traffic, on the real kernel: a watched
//! process tree reads a secret file and then connects out (loopback) → one
//! critical exfiltration alert in the stream and the audit chain, linked to
//! both events by `seq`, listed by `sentinel alerts list`.

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;

#[test]
fn secret_read_then_connect_raises_a_linked_critical_alert() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);

    let dir = scratch_dir();
    let ssh = dir.path().join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    std::fs::set_permissions(&ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = ssh.join("id_ed25519");
    std::fs::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot a real key\n",
    )
    .unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let out = sh_as(
        WATCHED_UID,
        &format!(
            "cat {} > /dev/null; echo x > /dev/tcp/127.0.0.1/{port}",
            key.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");

    let key_path = key.to_str().unwrap();
    let read = daemon.wait_for("the secret read", |e| {
        e["kind"] == "open" && e["path"] == key_path
    });
    let connect = daemon.wait_for("the connect", |e| {
        e["kind"] == "connect" && e["port"] == port
    });
    let alert = daemon.wait_for("the exfiltration alert", |e| {
        e["kind"] == "alert" && e["category"] == "exfiltration"
    });
    assert_eq!(alert["severity"], "critical", "{alert}");
    let related: Vec<u64> = alert["related"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(
        related.contains(&read["seq"].as_u64().unwrap()),
        "{alert} vs {read}"
    );
    assert!(
        related.contains(&connect["seq"].as_u64().unwrap()),
        "{alert} vs {connect}"
    );
    assert!(daemon.stop().success());

    // The same alert, from the audit chain's own records and the alerts CLI.
    let db = daemon.state_dir().join("sentinel.db");
    let out = Command::new(sentinel_bin())
        .args(["alerts", "list", "--json", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("exfiltration"));
    let out = Command::new(sentinel_bin())
        .args(["audit", "query", "--kind", "alert", "--db"])
        .arg(&db)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("exfiltration"),
        "{out:?}"
    );
}

const FILE_SERVER: &str = r#"
import json, sys
for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg:
        continue
    method, params = msg.get("method"), msg.get("params") or {}
    if method == "initialize":
        result = {"protocolVersion": params.get("protocolVersion", "2025-06-18"),
                  "capabilities": {"tools": {}}, "serverInfo": {"name": "files", "version": "1"}}
    elif method == "tools/list":
        result = {"tools": [{"name": "read_file", "description": "Read a file",
                             "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}}}]}
    elif method == "tools/call":
        with open(params["arguments"]["path"]) as f:
            result = {"content": [{"type": "text", "text": f.read()}], "isError": False}
    else:
        result = {}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
"#;

#[test]
fn an_mcp_tool_call_is_linked_to_the_kernel_events_it_caused() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    let dir = scratch_dir();
    let server = dir.path().join("server.py");
    std::fs::write(&server, FILE_SERVER).unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "linked-content\n").unwrap();
    for f in [&server, &notes] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }

    // The agent's MCP client starts the proxy, as the agent's user.
    let mut proxy = as_user(WATCHED_UID, sentinel_bin().to_str().unwrap())
        .args(["mcp-proxy", "--agent", "testagent", "--state-dir"])
        .arg(daemon.state_dir())
        .args(["--", "/usr/bin/python3"])
        .arg(&server)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The proxy must be talking to the daemon, not running on its own.
    std::thread::sleep(std::time::Duration::from_millis(500));
    if let Ok(Some(status)) = proxy.try_wait() {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(proxy.stderr.as_mut().unwrap(), &mut err);
        panic!(
            "the proxy exited ({status}): {err}\ndaemon: {}",
            daemon.stderr()
        );
    }
    let mut stdin = proxy.stdin.take().unwrap();
    let mut stdout = BufReader::new(proxy.stdout.take().unwrap());
    let mut send = |line: &str, answer: bool| -> String {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        let mut text = String::new();
        if answer {
            stdout.read_line(&mut text).unwrap();
        }
        text
    };
    send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
        true,
    );
    send(
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        false,
    );
    let tools = send(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, true);
    assert!(tools.contains("read_file"), "{tools}");
    let call = serde_json::json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "read_file", "arguments": {"path": notes.to_str().unwrap()}}});
    let answer = send(&call.to_string(), true);
    assert!(answer.contains("linked-content"), "{answer}");
    drop(stdin);
    let output = proxy.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("daemon"),
        "the proxy must use the daemon: {stderr}"
    );

    let notes_path = notes.to_str().unwrap();
    let started = daemon.wait_for("the call's start record", |e| {
        e["kind"] == "mcp_call" && e["tool"] == "read_file" && e["outcome"] == "started"
    });
    assert_eq!(started["uid"], WATCHED_UID);
    let open = daemon.wait_for("the server's open of the file", |e| {
        e["kind"] == "open" && e["path"] == notes_path
    });
    let reason = open["verdict"]["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("tools/call read_file")
            && reason.contains(&format!("mcp_call seq {}", started["seq"])),
        "the open is linked to the call: {open}"
    );
    daemon.stop();
}
