//! An HTTP downstream: the proxy on stdio in front of the Python SDK server
//! serving Streamable HTTP (`--upstream http://127.0.0.1:PORT/mcp`), and
//! over TLS with a certificate the test makes (`https://`, `--upstream-ca`):
//! trusted, untrusted, and issued for another name.

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
    http_server_with(log, None)
}

/// The Python SDK server on Streamable HTTP; over TLS with `tls` (the PEM
/// files of its certificate chain and key).
fn http_server_with(
    log: &std::path::Path,
    tls: Option<(&std::path::Path, &std::path::Path)>,
) -> HttpServer {
    let peers = peers();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut command = Command::new(&peers.python);
    command
        .arg(workspace_root().join("tests/mcp/logging_server.py"))
        .env("SENTINEL_TEST_HTTP_PORT", port.to_string())
        .env("SENTINEL_TEST_CALL_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some((cert, key)) = tls {
        command
            .env("SENTINEL_TEST_TLS_CERT", cert)
            .env("SENTINEL_TEST_TLS_KEY", key);
    }
    let child = command.spawn().expect("start the Python HTTP server");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the Python HTTP server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    HttpServer {
        child,
        url: format!("{scheme}://127.0.0.1:{port}/mcp"),
    }
}

/// A test CA, and a server certificate it signs for `names`, written as
/// PEM files into `dir`: (ca, chain, key).
fn certificates(
    dir: &std::path::Path,
    names: &[&str],
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sentinel test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
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
                // The server checks Mcp-Param-Region against the body: the
                // proxy must mirror it from the body the policy saw.
                {"op": "call", "tool": "query", "args": {"region": "eu-north-1", "sql": "SELECT 3"}},
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
    assert_eq!(
        report["steps"][3],
        json!({"is_error": false, "text": "eu-north-1: SELECT 3"}),
        "{report}"
    );
    assert_eq!(call_log(&log).len(), 2);
}

#[test]
fn the_proxy_reaches_a_tls_upstream_it_trusts_and_refuses_one_it_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let (ca, chain, key) = certificates(dir.path(), &["127.0.0.1", "localhost"]);
    let server = http_server_with(&log, Some((&chain, &key)));
    assert!(server.url.starts_with("https://"), "{}", server.url);

    // Trusted through --upstream-ca: the same policy as over plain HTTP.
    let mut args = upstream_args(dir.path(), &server.url);
    args.extend(["--upstream-ca".to_string(), ca.display().to_string()]);
    let mut proxy = Session::spawn(&proxy_bin(), &args, &[]);
    let init = proxy.request(&initialize(1));
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25", "{init}");
    proxy.send(&initialized());
    let tools = proxy.request(&list(2));
    assert!(tools.to_string().contains("\"echo\""), "{tools}");
    let echo = proxy.request(&call(3, "echo", json!({"text": "over tls"})));
    assert_eq!(echo["result"]["content"][0]["text"], "over tls", "{echo}");
    let denied = proxy.request(&call(4, "delete_all", json!({"path": "/"})));
    assert_eq!(denied["result"]["isError"], true, "{denied}");
    assert!(proxy.finish().success());
    assert_eq!(call_log(&log).len(), 1);

    // Without the CA the certificate is not trusted: nothing is sent.
    let mut proxy = Session::spawn(&proxy_bin(), &upstream_args(dir.path(), &server.url), &[]);
    let refused = proxy.request(&initialize(1));
    let text = refused["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.contains("unreachable") && text.to_lowercase().contains("certificate"),
        "{refused}"
    );
    drop(proxy);

    // A certificate from the trusted CA for another name is refused too.
    let other = tempfile::tempdir().unwrap();
    let (ca2, chain2, key2) = certificates(other.path(), &["other.example"]);
    let log2 = other.path().join("calls.log");
    let server2 = http_server_with(&log2, Some((&chain2, &key2)));
    let mut args = upstream_args(other.path(), &server2.url);
    args.extend(["--upstream-ca".to_string(), ca2.display().to_string()]);
    let mut proxy = Session::spawn(&proxy_bin(), &args, &[]);
    let refused = proxy.request(&initialize(1));
    let text = refused["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        text.to_lowercase().contains("certificate") && text.contains("not valid for name"),
        "{refused}"
    );
    drop(proxy);
    assert_eq!(call_log(&log2).len(), 0);
}
