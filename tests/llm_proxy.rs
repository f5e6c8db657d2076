//! `sentinel llm-proxy` against the running daemon: verdicts come from the
//! daemon's live engine and records land in its one audit chain, so
//! `sentinel mode set lockdown` refuses the next LLM request as it refuses
//! kernel actions. Clients are the real `openai` SDK (see
//! sentinel-llm/tests/sdk_clients.rs for the full SDK matrix).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const VIRTUAL: &str = "sk-sentinel-virtual-daemon-0001";
const REAL: &str = "sk-REAL-daemon-linked-4411";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let p = root().join("target/llm-peers/venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: run `cargo xtask setup`",
        p.display()
    );
    p
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sdk(base: u16, release: &Path, prompt: &str) -> Value {
    let mut child = Command::new(python())
        .arg(root().join("tests/llm/sdk_client.py"))
        .arg(format!("http://127.0.0.1:{base}"))
        .arg(release)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(
        child.stdin.take().unwrap(),
        "{}",
        json!({"scenario": "openai-chat", "key": VIRTUAL, "prompt": prompt})
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
}

#[test]
fn daemon_linked_llm_proxy_obeys_lockdown_and_audits() {
    require_environment();
    let _lock = kernel_lock();
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let mut standin = Command::new(python())
        .arg(root().join("tests/llm/upstream_standin.py"))
        .arg(dir.path().join("upstream.jsonl"))
        .arg(&release)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(standin.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _standin = Kill(standin);
    let upstream: u16 = line.trim().parse().unwrap();
    let vault = dir.path().join("vault.toml");
    std::fs::write(
        &vault,
        format!("[[key]]\nvirtual = \"{VIRTUAL}\"\nreal = \"{REAL}\"\nagent = \"testagent\"\n"),
    )
    .unwrap();
    std::fs::set_permissions(&vault, std::fs::Permissions::from_mode(0o600)).unwrap();

    let daemon = Daemon::start_observing(&[]);
    let port = free_port();
    let proxy = Command::new(sentinel_bin())
        .args(["llm-proxy", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--upstream", &format!("http://127.0.0.1:{upstream}")])
        .arg("--vault")
        .arg(&vault)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _proxy = Kill(proxy);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "llm-proxy did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }

    let ok = sdk(port, &release, "Say hello");
    assert_eq!(ok["text"], "Hello from the stand-in", "{ok}");
    daemon.wait_for("the allowed llm_call", |e| {
        e["kind"] == "llm_call" && e["outcome"] == "forwarded" && e["agent"] == "testagent"
    });

    let set = Command::new(sentinel_bin())
        .args(["mode", "set", "lockdown", "--state-dir"])
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(set.status.success(), "{set:?}");
    let refused = sdk(port, &release, "Say hello again");
    assert_eq!(refused["status"], 403, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("lockdown"),
        "{refused}"
    );
    let ev = daemon.wait_for("the refused llm_call", |e| {
        e["kind"] == "llm_call" && e["outcome"] == "refused"
    });
    assert_eq!(ev["verdict"]["rule"], "lockdown");
    assert_eq!(ev["model"], "gpt-test");
    let upstream_saw = std::fs::read_to_string(dir.path().join("upstream.jsonl")).unwrap();
    assert_eq!(
        upstream_saw.lines().count(),
        1,
        "lockdown let a request through: {upstream_saw}"
    );
    assert!(upstream_saw.contains(REAL) && !upstream_saw.contains(VIRTUAL));
}
