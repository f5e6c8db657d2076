//! The LLM proxy with real clients: the `openai` and `anthropic` Python
//! SDKs (pinned in tests/llm/requirements.txt, installed by `cargo xtask
//! setup` into target/llm-peers/venv) talk to the proxy as they would to
//! the providers, and a local stand-in upstream (tests/llm/
//! upstream_standin.py) records exactly what the proxy sent on.
//!
//! Tried: chat completions, responses and messages, each plain and
//! streamed (a stream must reach the client before the upstream finished
//! it); the virtual key swapped for the real one in the header style the
//! client used, and never shown to the client even when the upstream
//! echoes it; secrets in prompts refused before they leave (or redacted);
//! unknown, expired and path-restricted keys; lockdown and a quarantined
//! agent refusing everything; injection in an answer flagged; one sealed
//! `llm_call` audit record per request.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use sentinel_audit::{AuditLog, AuditReader, Body};
use sentinel_llm::upstream::Connector;
use sentinel_llm::{Gate, LlmProxy, ProxyConfig, Vault};
use sentinel_mcp::inprocess::{AuditWriter, SharedEngine};
use sentinel_mcp::FindingAction;
use sentinel_policy::{Engine, Mode, Policy, QuarantineEntry, QuarantineTarget};
use serde_json::{json, Value};

const OPENAI_VIRTUAL: &str = "sk-sentinel-virtual-openai-0001";
const OPENAI_REAL: &str = "sk-REAL-openai-never-shown-to-agents-7f3a";
const ANTHROPIC_VIRTUAL: &str = "sk-sentinel-virtual-anthropic-0001";
const ANTHROPIC_REAL: &str = "sk-ant-REAL-never-shown-to-agents-91bc";
const EXPIRED_VIRTUAL: &str = "sk-sentinel-virtual-expired-0001";
const MESSAGES_ONLY_VIRTUAL: &str = "sk-sentinel-virtual-messages-only";
const AWS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> PathBuf {
    let python = root().join("target/llm-peers/venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `cargo xtask setup` (it installs the openai and anthropic SDKs)",
        python.display()
    );
    python
}

struct StandIn {
    child: Child,
    port: u16,
    record: PathBuf,
}

impl StandIn {
    fn start(dir: &Path, release: &Path) -> StandIn {
        let record = dir.join("upstream.jsonl");
        let mut child = Command::new(python())
            .arg(root().join("tests/llm/upstream_standin.py"))
            .arg(&record)
            .arg(release)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the upstream stand-in");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().expect("the stand-in prints its port");
        StandIn {
            child,
            port,
            record,
        }
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn vault(upstream: u16) -> Vault {
    let text = format!(
        r#"
[[key]]
virtual = "{OPENAI_VIRTUAL}"
real = "{OPENAI_REAL}"
agent = "claude-test"

[[key]]
virtual = "{ANTHROPIC_VIRTUAL}"
real = "{ANTHROPIC_REAL}"
agent = "claude-test"
upstream = "http://127.0.0.1:{upstream}"

[[key]]
virtual = "{EXPIRED_VIRTUAL}"
real = "sk-REAL-expired"
expires = "2020-01-01T00:00:00Z"

[[key]]
virtual = "{MESSAGES_ONLY_VIRTUAL}"
real = "sk-REAL-messages-only"
paths = ["/v1/messages"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The file checks (root-owned, 0600) hold when the tests run as root,
    // as `cargo xtask test` does; parse the text otherwise.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        Vault::load(&path).unwrap()
    } else {
        Vault::parse(&std::fs::read_to_string(&path).unwrap()).unwrap()
    }
}

/// A proxy on 127.0.0.1 with its own engine and audit chain in `db`.
fn start_proxy(
    runtime: &tokio::runtime::Runtime,
    upstream: u16,
    db: &Path,
    engine: Engine,
    secrets: FindingAction,
) -> (u16, Arc<LlmProxy>) {
    let audit = AuditLog::open(db, &db.with_extension("state")).unwrap();
    let gate = Gate {
        engine: Box::new(SharedEngine(Arc::new(Mutex::new(engine)))),
        audit: Box::new(AuditWriter::spawn(audit)),
    };
    let config = ProxyConfig {
        upstream: format!("http://127.0.0.1:{upstream}").parse().unwrap(),
        agent: Some("default-agent".into()),
        secrets,
        injection: FindingAction::Alert,
        max_request: 1 << 20,
        max_response: 1 << 20,
    };
    let proxy = Arc::new(LlmProxy::new(
        config,
        vault(upstream),
        gate,
        Connector::new(None).unwrap(),
    ));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    runtime.spawn(sentinel_llm::proxy::serve(listener, proxy.clone()));
    (port, proxy)
}

/// Runs every scenario in one Python process; returns one answer each.
fn drive(release: &Path, asks: &[Value]) -> Vec<Value> {
    let mut child = Command::new(python())
        .arg(root().join("tests/llm/sdk_client.py"))
        .arg("http://unused")
        .arg(release)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the SDK client");
    {
        let mut stdin = child.stdin.take().unwrap();
        for ask in asks {
            writeln!(stdin, "{ask}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        answers.len(),
        asks.len(),
        "the SDK client stopped early: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    answers
}

fn ask(base: u16, scenario: &str, key: &str, prompt: &str) -> Value {
    json!({"base": format!("http://127.0.0.1:{base}"), "scenario": scenario, "key": key, "prompt": prompt})
}

fn llm_calls(db: &Path) -> Vec<sentinel_audit::Event> {
    AuditReader::open(db)
        .unwrap()
        .tail(1000)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.body, Body::LlmCall { .. }))
        .collect()
}

#[test]
fn real_sdks_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    let standin = StandIn::start(dir.path(), &release);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = dir.path().join("main.db");
    let (main, proxy) = start_proxy(
        &runtime,
        standin.port,
        &db,
        Engine::new(Policy::embedded_defaults()),
        FindingAction::Block,
    );
    let mut lockdown = Engine::new(Policy::embedded_defaults());
    lockdown.set_mode(Mode::Lockdown);
    let lockdown_db = dir.path().join("lockdown.db");
    let (locked, locked_proxy) = start_proxy(
        &runtime,
        standin.port,
        &lockdown_db,
        lockdown,
        FindingAction::Block,
    );
    let mut quarantined = Engine::new(Policy::embedded_defaults());
    quarantined
        .quarantine(QuarantineEntry {
            target: QuarantineTarget::Agent("claude-test".into()),
            expires: None,
            reason: "test".into(),
        })
        .unwrap();
    let (quarantine, _q) = start_proxy(
        &runtime,
        standin.port,
        &dir.path().join("quarantine.db"),
        quarantined,
        FindingAction::Block,
    );
    let redact_db = dir.path().join("redact.db");
    let (redacting, redact_proxy) = start_proxy(
        &runtime,
        standin.port,
        &redact_db,
        Engine::new(Policy::embedded_defaults()),
        FindingAction::Redact,
    );

    let secret_prompt = format!("deploy with aws key {AWS_KEY} please");
    let asks = vec![
        ask(main, "openai-chat", OPENAI_VIRTUAL, "Say hello"),
        ask(main, "openai-chat-stream", OPENAI_VIRTUAL, "Say hello"),
        ask(main, "openai-responses", OPENAI_VIRTUAL, "Say hello"),
        ask(main, "openai-responses-stream", OPENAI_VIRTUAL, "Say hello"),
        ask(main, "openai-models", OPENAI_VIRTUAL, ""),
        ask(main, "anthropic-messages", ANTHROPIC_VIRTUAL, "Say hello"),
        ask(main, "anthropic-stream", ANTHROPIC_VIRTUAL, "Say hello"),
        ask(main, "openai-echo-key", OPENAI_VIRTUAL, "x"),
        ask(main, "openai-chat", OPENAI_VIRTUAL, &secret_prompt),
        ask(
            main,
            "anthropic-messages",
            ANTHROPIC_VIRTUAL,
            "token ghp_0123456789abcdefghijABCDEFGHIJ012345",
        ),
        ask(main, "openai-chat", "sk-sentinel-virtual-not-in-vault", "x"),
        ask(
            main,
            "openai-chat",
            OPENAI_REAL,
            "the real key is not a key the proxy takes",
        ),
        ask(main, "openai-chat", EXPIRED_VIRTUAL, "x"),
        ask(main, "openai-chat", MESSAGES_ONLY_VIRTUAL, "x"),
        ask(main, "openai-inject", OPENAI_VIRTUAL, "x"),
        ask(locked, "openai-chat", OPENAI_VIRTUAL, "Say hello"),
        ask(locked, "anthropic-stream", ANTHROPIC_VIRTUAL, "Say hello"),
        ask(quarantine, "openai-chat", OPENAI_VIRTUAL, "Say hello"),
        ask(redacting, "openai-chat", OPENAI_VIRTUAL, &secret_prompt),
    ];
    let answers = drive(&release, &asks);
    let by = |i: usize| &answers[i];
    let hello = "Hello from the stand-in";
    for i in [0, 2, 5] {
        assert_eq!(by(i)["text"], hello, "{}", by(i));
    }
    for i in [1, 3, 6] {
        assert_eq!(by(i)["text"], hello, "{}", by(i));
        assert_eq!(by(i)["pieces"], 4, "{}", by(i));
        assert_eq!(
            by(i)["first_before_release"],
            true,
            "the stream must reach the client while the upstream still holds it open: {}",
            by(i)
        );
    }
    assert_eq!(by(4)["text"], "stand-in-model");
    // The upstream echoed the key it got; the agent sees its virtual key.
    assert_eq!(by(7)["status"], 401, "{}", by(7));
    let echoed = by(7)["message"].as_str().unwrap();
    assert!(!echoed.contains(OPENAI_REAL), "real key leaked: {echoed}");
    assert!(echoed.contains(OPENAI_VIRTUAL), "{echoed}");
    // Secrets in prompts: refused with a 4xx.
    for i in [8, 9] {
        assert_eq!(by(i)["error"], "PermissionDeniedError", "{}", by(i));
        assert_eq!(by(i)["status"], 403);
        assert!(
            by(i)["message"].as_str().unwrap().contains("secret"),
            "{}",
            by(i)
        );
    }
    for i in [10, 11, 12] {
        assert_eq!(by(i)["error"], "AuthenticationError", "{}", by(i));
        assert_eq!(by(i)["status"], 401);
    }
    assert_eq!(by(13)["status"], 403, "{}", by(13));
    // Injection in an answer is flagged, the answer passes.
    assert!(by(14)["text"]
        .as_str()
        .unwrap()
        .contains("Ignore all previous"));
    // Lockdown and quarantine refuse everything.
    for i in [15, 16, 17] {
        assert_eq!(by(i)["status"], 403, "{}", by(i));
        assert!(
            by(i)["message"]
                .as_str()
                .unwrap()
                .contains("refused by Sentinel"),
            "{}",
            by(i)
        );
    }
    assert!(by(15)["message"].as_str().unwrap().contains("lockdown"));
    assert!(by(17)["message"].as_str().unwrap().contains("quarantined"));
    // Redact mode forwards the prompt without the key.
    assert_eq!(by(18)["text"], hello, "{}", by(18));

    // What really left the proxy.
    let received = standin.received();
    let forwarded = [0, 1, 2, 3, 4, 5, 6, 7, 14, 18];
    assert_eq!(
        received.len(),
        forwarded.len(),
        "only allowed, clean requests reach the upstream: {received:#?}"
    );
    for r in &received {
        let headers = r["headers"].to_string();
        let body = r["body"].as_str().unwrap();
        assert!(
            !headers.contains("sk-sentinel-virtual"),
            "a virtual key went upstream: {headers}"
        );
        assert!(
            !body.contains(AWS_KEY) && !body.contains("ghp_"),
            "a secret left: {body}"
        );
        let auth = r["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| {
                k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("x-api-key")
            })
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
            .expect("a key upstream");
        // The real key, in the header style the client used (this SDK
        // version sends `Authorization: Bearer`, older ones `x-api-key`).
        let real = if r["path"] == "/v1/messages" {
            ANTHROPIC_REAL
        } else {
            OPENAI_REAL
        };
        let expected = match auth.0.as_str() {
            "x-api-key" => real.to_string(),
            _ => format!("Bearer {real}"),
        };
        assert_eq!(auth.1, expected, "{r}");
    }
    assert!(received.iter().any(|r| r["body"]
        .as_str()
        .unwrap()
        .contains("[REDACTED:aws-access-key]")));

    // One audit record per request, with agent, model, sizes and verdict.
    proxy.flush();
    locked_proxy.flush();
    redact_proxy.flush();
    let calls = llm_calls(&db);
    assert_eq!(calls.len(), 15, "{calls:#?}");
    let outcomes: Vec<String> = calls
        .iter()
        .map(|e| match &e.body {
            Body::LlmCall { outcome, .. } => outcome.clone(),
            _ => unreachable!(),
        })
        .collect();
    for outcome in [
        "forwarded",
        "blocked-secret",
        "unauthorized",
        "key-expired",
        "path-not-allowed",
    ] {
        assert!(
            outcomes.iter().any(|o| o == outcome),
            "{outcome} missing: {outcomes:?}"
        );
    }
    match &calls[1].body {
        Body::LlmCall {
            process,
            endpoint,
            model,
            stream,
            request_bytes,
            response_bytes,
            status,
            ..
        } => {
            assert_eq!(process.agent.as_deref(), Some("claude-test"));
            assert_eq!(endpoint, "chat.completions");
            assert_eq!(model.as_deref(), Some("gpt-test"));
            assert!(*stream);
            assert!(*request_bytes > 10 && *response_bytes > 100, "{calls:?}");
            assert_eq!(*status, 200);
        }
        _ => unreachable!(),
    }
    assert!(calls[1].verdict.is_some());
    let blocked = calls
        .iter()
        .find(|e| matches!(&e.body, Body::LlmCall { outcome, .. } if outcome == "blocked-secret"))
        .unwrap();
    assert!(
        matches!(&blocked.body, Body::LlmCall { findings, .. } if findings.contains(&"aws-access-key".to_string()))
    );
    let lock_calls = llm_calls(&lockdown_db);
    assert_eq!(lock_calls.len(), 2);
    assert!(lock_calls
        .iter()
        .all(|e| e.verdict.as_ref().unwrap().rule.as_deref() == Some("lockdown")));
    let all = AuditReader::open(&db).unwrap().tail(1000).unwrap();
    assert!(all
        .iter()
        .any(|e| matches!(&e.body, Body::Alert { category, .. } if category == "llm-secret")));
    assert!(all
        .iter()
        .any(|e| matches!(&e.body, Body::Alert { category, .. } if category == "llm-injection")));
    let report = sentinel_audit::verify(&db, &db.with_extension("state")).unwrap();
    assert!(report.ok, "{report:?}");
}
