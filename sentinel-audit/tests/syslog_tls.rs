//! Syslog over TLS (RFC 5425) into the real rsyslog from Debian with its
//! GnuTLS driver (`rsyslog-gnutls`, installed by `cargo xtask setup`),
//! using a CA and server certificate this test makes:
//! - CEF records arrive, and rsyslog parsed them as RFC 5424 (version 1,
//!   our APP-NAME and MSGID, the CEF line as MSG);
//! - a server whose certificate the sink does not trust gets nothing: a
//!   clear error, every record counted as dropped, no plaintext fallback.

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_audit::{Event, Sink, SinkOptions, SinkSpec};

#[path = "pki/mod.rs"]
mod pki;

/// rsyslogd in the foreground with a TLS listener and one output file,
/// stopped on drop.
struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
}

impl Rsyslog {
    fn start(dir: &Path, pki: &pki::Pki) -> Rsyslog {
        let rsyslogd = Path::new("/usr/sbin/rsyslogd");
        assert!(
            rsyslogd.exists(),
            "rsyslogd is not installed: run `sudo cargo xtask setup` (Debian packages rsyslog and rsyslog-gnutls)"
        );
        let port = free_port();
        let out = dir.join("received.log");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        // The template prints what rsyslog parsed out of each frame, so the
        // test sees RFC 5424 fields, not just bytes.
        let conf = format!(
            r#"global(
  workDirectory="{work}"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{ca}"
  DefaultNetstreamDriverCertFile="{cert}"
  DefaultNetstreamDriverKeyFile="{key}"
)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="parsed" type="string" string="v=%protocol-version% app=%app-name% msgid=%msgid% pri=%pri% msg=%msg%\n")
action(type="omfile" file="{out}" template="parsed" flushOnTXEnd="on" asyncWriting="off")
"#,
            work = work.display(),
            ca = pki.ca.display(),
            cert = pki.cert.display(),
            key = pki.key.display(),
            out = out.display(),
        );
        let conf_path = dir.join("rsyslog.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let check = Command::new(rsyslogd)
            .args(["-N1", "-f"])
            .arg(&conf_path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "rsyslog rejected the test configuration (is rsyslog-gnutls installed?): {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(rsyslogd)
            .args(["-n", "-f"])
            .arg(&conf_path)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting rsyslogd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Rsyslog { child, port, out }
    }

    fn received(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    fn wait_for_lines(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines: Vec<String> = self.received().lines().map(str::to_string).collect();
            if lines.len() >= n || Instant::now() > deadline {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn events(n: u64) -> Vec<Arc<Event>> {
    (1..=n)
        .map(|i| {
            let mut e = common::varied(i);
            e.seq = i;
            Arc::new(e)
        })
        .collect()
}

fn options(ca: &Path) -> SinkOptions {
    SinkOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(3),
        tls_ca_file: Some(ca.to_path_buf()),
        ..SinkOptions::default()
    }
}

#[test]
fn rsyslog_receives_cef_as_rfc5424_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::make(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &pki);
    let spec = SinkSpec::cef(&format!("tls://127.0.0.1:{}", rsyslog.port)).unwrap();
    let sink = Sink::start(spec, &options(&pki.ca)).unwrap();
    let sent = events(5);
    for e in &sent {
        sink.send_event(Arc::clone(e));
    }
    let stats = sink.shutdown();
    assert_eq!((stats.sent, stats.dropped, stats.errors), (5, 0, 0));
    let lines = rsyslog.wait_for_lines(5);
    assert_eq!(lines.len(), 5, "rsyslog wrote: {lines:?}");
    for (line, event) in lines.iter().zip(&sent) {
        assert!(line.starts_with("v=1 app=sentinel "), "{line}");
        assert!(line.contains(&format!("msgid={} ", event.kind())), "{line}");
        assert!(line.contains("msg=CEF:0|"), "{line}");
    }
}

#[test]
fn an_untrusted_certificate_drops_counted_records_and_sends_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::Pki::make_untrusted(dir.path());
    let rsyslog = Rsyslog::start(dir.path(), &pki);
    let spec = SinkSpec::cef(&format!("tls://127.0.0.1:{}", rsyslog.port)).unwrap();
    let sink = Sink::start(spec, &options(&pki.ca)).unwrap();
    for e in events(3) {
        sink.send_event(e);
    }
    let stats = sink.shutdown();
    assert_eq!(stats.sent, 0);
    assert_eq!(stats.dropped, 3, "{stats:?}");
    assert!(stats.errors >= 3, "{stats:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rsyslog.received(), "", "rsyslog received records");

    // The operator sees why, in one line, when the sink is checked.
    let config = sentinel_audit::tls::client_config(Some(&pki.ca)).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", rsyslog.port)).unwrap();
    let err = match sentinel_audit::tls::connect(&config, "127.0.0.1", tcp) {
        Ok(_) => panic!("the handshake must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("not trusted"), "{err}");
    assert!(err.contains("nothing is sent in plaintext"), "{err}");
}

#[test]
fn a_missing_ca_file_stops_the_sink_at_start() {
    let spec = SinkSpec::cef("tls://127.0.0.1:6514").unwrap();
    let err = match Sink::start(
        spec,
        &SinkOptions {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..SinkOptions::default()
        },
    ) {
        Ok(_) => panic!("a missing CA file is an error"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
}
