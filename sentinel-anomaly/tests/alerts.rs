//! Alerts against a real SQLite file, and webhooks against real HTTP
//! receivers on 127.0.0.1.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sentinel_anomaly::cli::{execute, AlertsCommand, WebhookCommand};
use sentinel_anomaly::webhook::{deliver, payload};
use sentinel_anomaly::{
    Alert, AlertConfig, AlertFilter, AlertManager, AlertStatus, NewAlert, Raised, Severity,
    WebhookConfig,
};

#[path = "../../sentinel-audit/tests/pki/mod.rs"]
mod pki;

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_795_392_000 + secs)
}

fn alert(severity: Severity, source: &str, reason: &str, related: &[u64]) -> NewAlert {
    NewAlert {
        severity,
        category: "exfiltration".into(),
        reason: reason.into(),
        related: related.to_vec(),
        source: source.into(),
    }
}

fn new_id(raised: &Raised) -> i64 {
    raised.alert().map(|a| a.id).expect("a new alert")
}

#[test]
fn duplicates_fold_into_the_open_alert() {
    let dir = tempfile::tempdir().unwrap();
    let mut alerts = AlertManager::open(&dir.path().join("s.db"), AlertConfig::default()).unwrap();
    let first = alerts
        .raise(
            alert(Severity::Warning, "detector:x", "same thing", &[1]),
            t(0),
        )
        .unwrap();
    let id = new_id(&first);
    let second = alerts
        .raise(
            alert(Severity::Warning, "detector:x", "same thing", &[2]),
            t(5),
        )
        .unwrap();
    assert_eq!(second, Raised::Duplicate { id, occurrences: 2 });
    let stored = alerts.get(id).unwrap();
    assert_eq!(stored.occurrences, 2);
    assert_eq!(stored.related, vec![1, 2]);

    // A different reason is a different alert.
    let other = alerts
        .raise(
            alert(Severity::Warning, "detector:x", "other thing", &[3]),
            t(6),
        )
        .unwrap();
    assert!(other.alert().is_some());

    // Once resolved, the same alert opens anew.
    alerts.resolve(id, "uid 0", t(7)).unwrap();
    let reopened = alerts
        .raise(
            alert(Severity::Warning, "detector:x", "same thing", &[4]),
            t(8),
        )
        .unwrap();
    assert_ne!(new_id(&reopened), id);

    // Past the dedup window, too.
    let later = alerts
        .raise(
            alert(Severity::Warning, "detector:x", "same thing", &[5]),
            t(8 + 601),
        )
        .unwrap();
    assert!(later.alert().is_some());
    assert_eq!(alerts.counters().deduplicated, 1);
}

#[test]
fn rate_limits_hold_back_warnings_but_never_a_critical() {
    let dir = tempfile::tempdir().unwrap();
    let config = AlertConfig {
        burst: 3,
        per_minute: 1,
        ..AlertConfig::default()
    };
    let mut alerts = AlertManager::open(&dir.path().join("s.db"), config).unwrap();
    let mut new = 0;
    let mut limited = 0;
    let mut critical_ids = Vec::new();
    for i in 0..10u64 {
        match alerts
            .raise(
                alert(Severity::Warning, "detector:noisy", &format!("w{i}"), &[i]),
                t(0),
            )
            .unwrap()
        {
            Raised::New(_) => new += 1,
            Raised::RateLimited { source } => {
                assert_eq!(source, "detector:noisy");
                limited += 1
            }
            Raised::Duplicate { .. } => panic!("distinct reasons are not duplicates"),
        }
        // Identical criticals from the same exhausted source: every one is kept.
        let c = alerts
            .raise(
                alert(
                    Severity::Critical,
                    "detector:noisy",
                    "secret sent out",
                    &[100 + i],
                ),
                t(0),
            )
            .unwrap();
        critical_ids.push(new_id(&c));
    }
    assert_eq!((new, limited), (3, 7));
    critical_ids.dedup();
    assert_eq!(
        critical_ids.len(),
        10,
        "no critical alert may be dropped or folded"
    );

    // Another source is not affected.
    assert!(alerts
        .raise(alert(Severity::Warning, "detector:quiet", "w", &[]), t(0))
        .unwrap()
        .alert()
        .is_some());

    // A minute later one passes and says how many were held back.
    let next = alerts
        .raise(
            alert(Severity::Warning, "detector:noisy", "w-late", &[]),
            t(60),
        )
        .unwrap();
    let next = next.alert().expect("the bucket refilled");
    assert!(next.reason.contains("+7 earlier alerts"), "{}", next.reason);
    assert_eq!(alerts.counters().rate_limited, 7);

    let stored = alerts
        .list(AlertFilter {
            status: None,
            limit: 1000,
        })
        .unwrap();
    assert_eq!(
        stored
            .iter()
            .filter(|a| a.severity == Severity::Critical)
            .count(),
        10
    );
}

#[test]
fn status_changes_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    let (a, b, c);
    {
        let mut alerts = AlertManager::open(&db, AlertConfig::default()).unwrap();
        a = new_id(
            &alerts
                .raise(alert(Severity::Critical, "s", "a", &[1, 2]), t(0))
                .unwrap(),
        );
        b = new_id(
            &alerts
                .raise(alert(Severity::Warning, "s", "b", &[3]), t(1))
                .unwrap(),
        );
        c = new_id(
            &alerts
                .raise(alert(Severity::Info, "s", "c", &[]), t(2))
                .unwrap(),
        );
        let acked = alerts.ack(a, "uid 0", t(3)).unwrap();
        assert_eq!(acked.status, AlertStatus::Acknowledged);
        assert_eq!(acked.acknowledged_by.as_deref(), Some("uid 0"));
        alerts.resolve(b, "uid 0", t(4)).unwrap();
        // Acknowledging a resolved alert does not reopen it.
        assert_eq!(
            alerts.ack(b, "uid 0", t(5)).unwrap().status,
            AlertStatus::Resolved
        );
    }
    let alerts = AlertManager::open(&db, AlertConfig::default()).unwrap();
    let all = alerts.list(AlertFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![c, b, a],
        "newest first"
    );
    assert_eq!(alerts.get(a).unwrap().status, AlertStatus::Acknowledged);
    assert_eq!(alerts.get(a).unwrap().related, vec![1, 2]);
    assert_eq!(alerts.get(b).unwrap().status, AlertStatus::Resolved);
    let active = alerts
        .list(AlertFilter {
            status: Some(AlertStatus::Active),
            limit: 10,
        })
        .unwrap();
    assert_eq!(active.iter().map(|x| x.id).collect::<Vec<_>>(), vec![c]);
    let missing = alerts.get(9999).unwrap_err().to_string();
    assert!(missing.contains("no alert with id 9999"), "{missing}");
}

#[test]
fn an_alert_becomes_an_audit_record_with_the_contract_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut alerts = AlertManager::open(&dir.path().join("s.db"), AlertConfig::default()).unwrap();
    let raised = alerts
        .raise(
            alert(
                Severity::Critical,
                "detector:secret-then-connect:claude",
                "secret then connect",
                &[11, 13],
            ),
            t(0),
        )
        .unwrap();
    let event = raised.alert().unwrap().to_event(42);
    assert_eq!(event.kind(), "alert");
    let json: serde_json::Value = serde_json::to_value(&event).unwrap();
    assert_eq!(json["seq"], 42);
    assert_eq!(json["kind"], "alert");
    assert_eq!(json["severity"], "critical");
    assert_eq!(json["category"], "exfiltration");
    assert_eq!(json["reason"], "secret then connect");
    assert_eq!(json["related"], serde_json::json!([11, 13]));
    assert!(json["ts"]
        .as_str()
        .unwrap()
        .starts_with("2026-11-23T00:00:00"));
}

/// An HTTP server on 127.0.0.1 that answers `statuses` in turn, one per
/// connection, and sends each request body back to the test.
trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

struct Receiver {
    url: String,
    bodies: mpsc::Receiver<(String, Vec<u8>)>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start(statuses: Vec<u16>) -> Receiver {
        Self::start_with(statuses, None)
    }

    /// An HTTPS receiver with `tls`; a connection whose handshake fails
    /// is reported as a request with head `handshake failed: …`.
    fn start_with(statuses: Vec<u16>, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!(
            "{scheme}://{}/hooks/sentinel",
            listener.local_addr().unwrap()
        );
        let (tx, bodies) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for status in statuses {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let stream: Box<dyn ReadWrite> = match &tls {
                    None => Box::new(stream),
                    Some(config) => {
                        let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                        let mut stream = stream;
                        let mut failed = None;
                        while conn.is_handshaking() {
                            if let Err(e) = conn.complete_io(&mut stream) {
                                failed = Some(e);
                                break;
                            }
                        }
                        if let Some(e) = failed {
                            let _ = tx.send((format!("handshake failed: {e}"), Vec::new()));
                            continue;
                        }
                        Box::new(rustls::StreamOwned::new(conn, stream))
                    }
                };
                let mut reader = BufReader::new(stream);
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let reply = format!(
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                reader.get_mut().write_all(reply.as_bytes()).unwrap();
                let _ = tx.send((head, body));
            }
        });
        Receiver {
            url,
            bodies,
            thread: Some(thread),
        }
    }

    fn next(&self) -> (String, serde_json::Value) {
        let (head, body) = self.next_raw();
        (head, serde_json::from_slice(&body).expect("JSON body"))
    }

    fn next_raw(&self) -> (String, Vec<u8>) {
        self.bodies
            .recv_timeout(Duration::from_secs(20))
            .expect("the receiver got no request")
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

fn sample_alert() -> Alert {
    Alert {
        id: 7,
        created: t(0),
        updated: t(0),
        severity: Severity::Critical,
        category: "exfiltration".into(),
        reason: "credential file read then connect".into(),
        related: vec![11, 13],
        source: "detector:secret-then-connect:claude".into(),
        status: AlertStatus::Active,
        occurrences: 1,
        acknowledged_by: None,
        resolved_by: None,
    }
}

fn fast(config: WebhookConfig) -> WebhookConfig {
    WebhookConfig {
        backoff: Duration::from_millis(10),
        timeout: Duration::from_secs(5),
        ..config
    }
}

#[test]
fn webhook_posts_slack_compatible_json() {
    let receiver = Receiver::start(vec![200]);
    let config = fast(WebhookConfig::new(&receiver.url, None).unwrap());
    let report = deliver(&config, &payload(&sample_alert(), Default::default())).unwrap();
    assert_eq!(report.status, 200);
    assert_eq!(report.attempts, 1);
    assert!(!report.used_backup);
    let (head, body) = receiver.next();
    assert!(
        head.starts_with("POST /hooks/sentinel HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(head
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    let text = body["text"].as_str().unwrap();
    assert!(
        text.starts_with("[CRITICAL] sentinel exfiltration alert #7"),
        "{text}"
    );
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["related"], serde_json::json!([11, 13]));
}

#[test]
fn webhook_retries_then_falls_back_to_the_backup() {
    // The primary fails every attempt with HTTP 500.
    let primary = Receiver::start(vec![500, 500, 500]);
    let backup = Receiver::start(vec![200]);
    let mut config = fast(WebhookConfig::new(&primary.url, Some(&backup.url)).unwrap());
    config.retries = 2;
    let report = deliver(&config, &payload(&sample_alert(), Default::default())).unwrap();
    assert!(report.used_backup);
    assert_eq!(report.url, backup.url);
    assert_eq!(report.attempts, 4, "3 on the primary, 1 on the backup");
    for _ in 0..3 {
        primary.next();
    }
    assert_eq!(backup.next().1["alert_id"], 7);

    // A primary nobody listens on: connection refused, then the backup.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let backup = Receiver::start(vec![200]);
    let mut config = fast(WebhookConfig::new(&dead_url, Some(&backup.url)).unwrap());
    config.retries = 1;
    let report = deliver(&config, &payload(&sample_alert(), Default::default())).unwrap();
    assert!(report.used_backup);
    assert_eq!(report.attempts, 3);
    backup.next();

    // Everything down: an error that names the last failure.
    let mut config = fast(WebhookConfig::new(&dead_url, None).unwrap());
    config.retries = 0;
    let err = deliver(&config, &payload(&sample_alert(), Default::default()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed on every target"), "{err}");

    assert!(WebhookConfig::new("ftp://hooks.example/x", None).is_err());
}

#[test]
fn the_alert_manager_posts_to_the_operators_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    let receiver = Receiver::start(vec![200]);
    let mut alerts = AlertManager::open(&db, AlertConfig::default()).unwrap();
    let config = fast(WebhookConfig::new(&receiver.url, None).unwrap());
    alerts.set_webhook(Some(config.clone())).unwrap();

    // Below the minimum severity (warning): stored, not posted.
    alerts
        .raise(alert(Severity::Info, "s", "fyi", &[]), t(0))
        .unwrap();
    let raised = alerts
        .raise(
            alert(Severity::Critical, "s", "secret sent out", &[11, 13]),
            t(1),
        )
        .unwrap();
    let id = new_id(&raised);
    alerts.drain_webhook();
    let (_, body) = receiver.next();
    assert_eq!(body["alert_id"], id);
    assert_eq!(body["reason"], "secret sent out");
    let counters = alerts.counters();
    assert_eq!(
        (counters.webhook_delivered, counters.webhook_failed),
        (1, 0)
    );
    drop(alerts);

    // The configuration is the operator's, stored in the database.
    let alerts = AlertManager::open(&db, AlertConfig::default()).unwrap();
    assert_eq!(alerts.webhook(), Some(&config));
}

#[test]
fn cli_lists_acks_and_resolves_on_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    let id = {
        let mut alerts = AlertManager::open(&db, AlertConfig::default()).unwrap();
        new_id(
            &alerts
                .raise(
                    alert(Severity::Critical, "s", "secret sent out", &[11, 13]),
                    t(0),
                )
                .unwrap(),
        )
    };
    let run = |cmd: AlertsCommand| {
        let mut out = Vec::new();
        execute(&cmd, &db, &mut out).map(|()| String::from_utf8(out).unwrap())
    };
    let table = run(AlertsCommand::List {
        status: None,
        limit: 50,
        json: false,
    })
    .unwrap();
    assert!(
        table.contains("secret sent out") && table.contains("critical"),
        "{table}"
    );

    assert_eq!(
        run(AlertsCommand::Ack { id }).unwrap(),
        format!("alert {id} is acknowledged\n")
    );
    let json = run(AlertsCommand::List {
        status: Some(AlertStatus::Acknowledged),
        limit: 50,
        json: true,
    })
    .unwrap();
    let line: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(line["id"], id);
    assert_eq!(line["status"], "acknowledged");
    assert!(line["acknowledged_by"]
        .as_str()
        .unwrap()
        .starts_with("uid "));

    assert_eq!(
        run(AlertsCommand::Resolve { id }).unwrap(),
        format!("alert {id} is resolved\n")
    );
    let none = run(AlertsCommand::List {
        status: Some(AlertStatus::Active),
        limit: 50,
        json: false,
    })
    .unwrap();
    assert_eq!(none, "no alerts\n");

    let err = run(AlertsCommand::Ack { id: 4242 }).unwrap_err();
    assert!(err.contains("no alert with id 4242"), "{err}");
    let missing = dir.path().join("nope.db");
    let mut sink = Vec::new();
    let err = execute(
        &AlertsCommand::List {
            status: None,
            limit: 1,
            json: false,
        },
        &missing,
        &mut sink,
    )
    .unwrap_err();
    assert!(err.contains("--db"), "{err}");
    assert!(!missing.exists(), "listing must not create a database");

    // Webhook configuration through the CLI.
    let err = run(AlertsCommand::Webhook(WebhookCommand::Set {
        url: "ftp://hooks.example/x".into(),
        backup: None,
        min_severity: Severity::Warning,
        retries: 3,
        backoff_ms: 500,
        ca_file: None,
        format: Default::default(),
    }))
    .unwrap_err();
    assert!(err.contains("https://"), "{err}");
    // A CA file that holds no certificate is refused when it is set.
    let not_pem = dir.path().join("not-a-ca.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let err = run(AlertsCommand::Webhook(WebhookCommand::Set {
        url: "https://127.0.0.1:9/hook".into(),
        backup: None,
        min_severity: Severity::Warning,
        retries: 3,
        backoff_ms: 500,
        ca_file: Some(not_pem),
        format: Default::default(),
    }))
    .unwrap_err();
    assert!(err.contains("not-a-ca.pem"), "{err}");
    run(AlertsCommand::Webhook(WebhookCommand::Set {
        url: "http://127.0.0.1:9/hook".into(),
        backup: Some("http://[::1]:9/hook".into()),
        min_severity: Severity::Critical,
        retries: 1,
        backoff_ms: 10,
        ca_file: None,
        format: "slack".parse().unwrap(),
    }))
    .unwrap();
    let shown = run(AlertsCommand::Webhook(WebhookCommand::Show)).unwrap();
    assert!(
        shown.contains("primary http://127.0.0.1:9/hook")
            && shown.contains("min severity critical")
            && shown.contains("format slack"),
        "{shown}"
    );
    run(AlertsCommand::Webhook(WebhookCommand::Clear)).unwrap();
    assert_eq!(
        run(AlertsCommand::Webhook(WebhookCommand::Show)).unwrap(),
        "no alert webhook configured\n"
    );
}

#[test]
fn cli_parses_with_clap() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        alerts: AlertsCommand,
    }
    let cli = Cli::try_parse_from(["sentinel", "list", "--status", "active", "--json"]).unwrap();
    assert!(matches!(
        cli.alerts,
        AlertsCommand::List {
            status: Some(AlertStatus::Active),
            json: true,
            ..
        }
    ));
    let cli = Cli::try_parse_from(["sentinel", "ack", "12"]).unwrap();
    assert!(matches!(cli.alerts, AlertsCommand::Ack { id: 12 }));
    assert!(Cli::try_parse_from(["sentinel", "resolve", "x"]).is_err());
}

#[test]
fn webhook_posts_over_https_with_the_operators_ca_in_slack_format() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::make(dir.path());
    let receiver = Receiver::start_with(vec![200], Some(pki.server_config()));
    let mut config = fast(WebhookConfig::new(&receiver.url, None).unwrap());
    config.ca_file = Some(pki.ca.clone());
    config.format = "slack".parse().unwrap();
    let report = deliver(&config, &payload(&sample_alert(), config.format)).unwrap();
    assert_eq!(report.status, 200);
    let (head, body) = receiver.next();
    assert!(
        head.starts_with("POST /hooks/sentinel HTTP/1.1\r\n"),
        "{head}"
    );
    // Slack takes `text` and `blocks`; nothing else is sent.
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["blocks", "text"]);
    assert!(body["text"]
        .as_str()
        .unwrap()
        .starts_with("[CRITICAL] sentinel exfiltration alert #7"));
    assert_eq!(body["blocks"][0]["type"], "section");
}

#[test]
fn an_untrusted_certificate_is_a_clear_error_and_nothing_goes_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    // The server's certificate is signed by a CA the client was not given
    // (nor is it among the system roots).
    let pki = pki::Pki::make_untrusted(dir.path());
    let receiver = Receiver::start_with(vec![200, 200], Some(pki.server_config()));
    let mut config = fast(WebhookConfig::new(&receiver.url, None).unwrap());
    config.retries = 1;
    config.ca_file = Some(pki.ca.clone());
    let err = deliver(&config, &payload(&sample_alert(), Default::default()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("certificate"), "{err}");
    assert!(err.contains("not trusted"), "{err}");
    for _ in 0..2 {
        let (head, body) = receiver.next_raw();
        assert!(head.starts_with("handshake failed"), "{head}");
        assert!(body.is_empty());
    }

    // An https:// URL pointing at a plain-HTTP server: an error, not a
    // plaintext retry (the plain receiver would have accepted it).
    let plain = Receiver::start(vec![200]);
    let url = plain.url.replacen("http://", "https://", 1);
    let mut config = fast(WebhookConfig::new(&url, None).unwrap());
    config.retries = 0;
    assert!(deliver(&config, &payload(&sample_alert(), Default::default())).is_err());
    let (head, _) = plain.next_raw();
    assert!(
        !head.contains("POST"),
        "a plaintext POST reached the server: {head}"
    );
}
