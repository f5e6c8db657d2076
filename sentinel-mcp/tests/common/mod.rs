//! Shared test harness: where the real MCP peers are, and a raw
//! line-by-line session with a child process (the proxy or a server).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use serde_json::Value;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The installed peers (see xtask/src/mcp_peers.rs). Fails loudly when they
/// are missing: these tests never skip.
pub struct Peers {
    pub python: PathBuf,
    pub node_bin: PathBuf,
}

pub fn peers() -> Peers {
    let base = workspace_root().join("target/mcp-peers");
    let python = std::env::var_os("SENTINEL_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| base.join("venv/bin/python"));
    let node_bin = std::env::var_os("SENTINEL_MCP_NODE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| base.join("node/node_modules/.bin"));
    let missing: Vec<String> = [
        python.clone(),
        node_bin.join("mcp-server-everything"),
        node_bin.join("mcp-server-filesystem"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect();
    assert!(
        missing.is_empty(),
        "MCP test peers are missing ({}): install them with `cargo xtask test` \
         (xtask::mcp_peers::ensure_mcp_peers), or point SENTINEL_MCP_PYTHON / \
         SENTINEL_MCP_NODE_BIN at them",
        missing.join(", ")
    );
    Peers { python, node_bin }
}

/// The proxy under test: this crate's `sentinel-mcp-proxy`, or, with
/// SENTINEL_BIN set, `$SENTINEL_BIN mcp-proxy` (the real CLI), through a
/// small exec wrapper so every test runs unchanged.
pub fn proxy_bin() -> PathBuf {
    static WRAPPER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    match std::env::var_os("SENTINEL_BIN") {
        None => PathBuf::from(env!("CARGO_BIN_EXE_sentinel-mcp-proxy")),
        Some(bin) => WRAPPER
            .get_or_init(|| {
                use std::os::unix::fs::PermissionsExt;
                let path =
                    std::env::temp_dir().join(format!("sentinel-mcp-proxy-{}", std::process::id()));
                let script = format!(
                    "#!/bin/sh\nexec '{}' mcp-proxy \"$@\"\n",
                    bin.to_string_lossy()
                );
                std::fs::write(&path, script).expect("write the proxy wrapper");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .expect("make the wrapper executable");
                path
            })
            .clone(),
    }
}

pub fn python_server(peers: &Peers) -> Vec<String> {
    vec![
        peers.python.display().to_string(),
        workspace_root()
            .join("tests/mcp/logging_server.py")
            .display()
            .to_string(),
    ]
}

/// A child process spoken to line by line.
pub struct Session {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Vec<u8>>,
}

impl Session {
    pub fn spawn(program: &Path, args: &[String], envs: &[(&str, String)]) -> Session {
        Self::spawn_with_stderr(program, args, envs, None)
    }

    /// Like `spawn`, with the child's stderr written to `stderr` if given.
    pub fn spawn_with_stderr(
        program: &Path,
        args: &[String],
        envs: &[(&str, String)],
        stderr: Option<&Path>,
    ) -> Session {
        let mut cmd = Command::new(program);
        let err = match stderr {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("create stderr file")),
            None => Stdio::inherit(),
        };
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut line = Vec::new();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if line.last() == Some(&b'\n') {
                            line.pop();
                        }
                        if tx.send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Session {
            stdin: child.stdin.take(),
            child,
            lines: rx,
        }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to child");
        stdin.write_all(b"\n").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    pub fn send(&mut self, value: &Value) {
        self.send_raw(value.to_string().as_bytes());
    }

    /// The next line, waiting at most `secs`.
    pub fn recv_within(&mut self, secs: u64) -> Option<Vec<u8>> {
        match self.lines.recv_timeout(Duration::from_secs(secs)) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next line; panics after 30 s.
    pub fn recv(&mut self) -> Vec<u8> {
        self.recv_within(30).expect("no answer within 30 s")
    }

    pub fn recv_json(&mut self) -> Value {
        let line = self.recv();
        serde_json::from_slice(&line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line)))
    }

    /// Sends a request and returns the raw line of its response, skipping
    /// notifications and other ids.
    pub fn request_raw(&mut self, request: &Value) -> Vec<u8> {
        self.send(request);
        let id = request["id"].clone();
        loop {
            let line = self.recv();
            let value: Value = serde_json::from_slice(&line).expect("JSON line");
            if value.get("id") == Some(&id) && value.get("method").is_none() {
                return line;
            }
        }
    }

    pub fn request(&mut self, request: &Value) -> Value {
        serde_json::from_slice(&self.request_raw(request)).expect("JSON response")
    }

    /// Closes stdin and waits for the process.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("child did not exit within 15 s of stdin closing");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn initialize(id: i64) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "sentinel-test", "version": "0" }
        }
    })
}

pub fn initialized() -> Value {
    serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
}

pub fn call(id: i64, tool: &str, args: Value) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": { "name": tool, "arguments": args }
    })
}

pub fn list(id: i64) -> Value {
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list" })
}

/// A proxy command line for a standalone run with `policy` and `db`.
pub fn proxy_args(policy: &Path, db: &Path, extra: &[&str], server: &[String]) -> Vec<String> {
    let mut args = vec![
        "--standalone".to_string(),
        "--agent".into(),
        "test-agent".into(),
        "--server-name".into(),
        "testsrv".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--db".into(),
        db.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push("--".into());
    args.extend(server.iter().cloned());
    args
}

/// An initialized session through the standalone proxy (policy `toml`,
/// database `DIR/s.db`, `extra` proxy flags) in front of the Python test
/// server, which logs every call it receives to `DIR/calls.log`.
pub struct LoggedProxy {
    pub session: Session,
    pub db: PathBuf,
    pub log: PathBuf,
}

impl LoggedProxy {
    pub fn start(dir: &Path, toml: &str, extra: &[&str]) -> LoggedProxy {
        let policy = policy_dir(dir, toml);
        let db = dir.join("s.db");
        let log = dir.join("calls.log");
        let mut session = Session::spawn(
            &proxy_bin(),
            &proxy_args(&policy, &db, extra, &python_server(&peers())),
            &[("SENTINEL_TEST_CALL_LOG", log.display().to_string())],
        );
        session.request(&initialize(1));
        session.send(&initialized());
        // The proxy refuses calls to tools it has not seen listed.
        session.request(&list(900));
        LoggedProxy { session, db, log }
    }
}

/// Writes a policy directory with one file.
pub fn policy_dir(dir: &Path, toml: &str) -> PathBuf {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).expect("mkdir policy");
    std::fs::write(policy.join("50-test.toml"), toml).expect("write policy");
    policy
}

/// The tools/call log the Python test server writes.
pub fn call_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("call log line"))
        .collect()
}

pub const TEST_POLICY: &str = r#"
[[rule]]
name = "no-mass-delete"
action = "deny"
kind = "mcp"
tool = "delete_*"
reason = "mass deletion is not allowed for agents"
"#;

/// One raw HTTP/1.1 request (`Connection: close`); returns (status, head,
/// body). The body of an SSE answer is returned as sent.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the front");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("a complete answer within 30 s");
    let status = response[9..12].parse().expect("status code");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (status, head.to_string(), body.to_string())
}

/// The value of header `name` in a response head.
pub fn head_value(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Waits for a proxy's "listening on WHERE" line in its stderr file and
/// returns WHERE.
pub fn wait_listening(stderr: &Path) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        if let Some(rest) = text.split("listening on ").nth(1) {
            return rest.lines().next().unwrap_or_default().to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy did not start listening: {text}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The `_meta` a 2026-07-28 request carries.
pub fn modern_meta() -> Value {
    serde_json::json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    })
}
