//! Webhook delivery: a JSON POST — the alert's fields with a `text`
//! summary, or with `format = slack` exactly what a Slack incoming webhook
//! takes (`text` and `blocks`) — over a small blocking HTTP/1.1 client on
//! std's `TcpStream`, `https://` through rustls (system roots plus an
//! optional CA file; a certificate that does not verify is an error, never
//! a plaintext retry), with retries, exponential backoff and a backup URL.
//!
//! Targets are set by the operator only (the daemon's root-only control
//! path or `sentinel alerts webhook set`, which write the root-owned
//! database); nothing the agent sends can reach this configuration.
//! Delivery runs on a background thread so the data path never waits on
//! the network.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::alerts::{Alert, Severity};
use crate::error::WebhookError;

/// Webhook deliveries waiting for the sender thread before new ones are
/// counted as dropped.
const QUEUE_DEPTH: usize = 1024;
/// Most of a response the client reads (it only needs the status line).
const MAX_RESPONSE: u64 = 64 * 1024;

/// The shape of the JSON posted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PayloadFormat {
    /// Every field of the alert plus a `text` summary.
    #[default]
    Sentinel,
    /// What a Slack incoming webhook takes: `text` and `blocks` only.
    Slack,
}

impl PayloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::Sentinel => "sentinel",
            PayloadFormat::Slack => "slack",
        }
    }
}

impl FromStr for PayloadFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sentinel" | "json" => Ok(PayloadFormat::Sentinel),
            "slack" => Ok(PayloadFormat::Slack),
            other => Err(format!(
                "unknown payload format {other:?}; use sentinel or slack"
            )),
        }
    }
}

impl std::fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how alerts are posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `https://host[:port]/path` (or `http://`).
    pub primary: String,
    /// Tried after every attempt on the primary failed.
    pub backup: Option<String>,
    /// Alerts below this severity are not posted (default warning).
    pub min_severity: Severity,
    /// Retries per URL after the first attempt (default 3).
    pub retries: u32,
    /// Wait before the first retry, doubled for each next one (default 500 ms).
    pub backoff: Duration,
    /// Connect and read/write timeout per attempt (default 5 s).
    pub timeout: Duration,
    /// CA certificates (PEM) trusted for `https://` besides the system's.
    pub ca_file: Option<PathBuf>,
    pub format: PayloadFormat,
}

impl WebhookConfig {
    /// A configuration with the defaults, checking the URLs.
    pub fn new(primary: &str, backup: Option<&str>) -> Result<Self, WebhookError> {
        let config = WebhookConfig {
            primary: primary.to_owned(),
            backup: backup.map(str::to_owned),
            min_severity: Severity::Warning,
            retries: 3,
            backoff: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            ca_file: None,
            format: PayloadFormat::Sentinel,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks that every URL is one the client can post to.
    pub fn validate(&self) -> Result<(), WebhookError> {
        parse_url(&self.primary)?;
        if let Some(backup) = &self.backup {
            parse_url(backup)?;
        }
        Ok(())
    }
}

/// Which URL took the delivery, after how many attempts in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    pub url: String,
    pub status: u16,
    pub attempts: u32,
    pub used_backup: bool,
}

/// The body posted for `alert` in `format`.
pub fn payload(alert: &Alert, format: PayloadFormat) -> Value {
    let text = format!(
        "[{}] sentinel {} alert #{}: {}",
        alert.severity.as_str().to_uppercase(),
        alert.category,
        alert.id,
        alert.reason
    );
    let ts = time::OffsetDateTime::from(alert.created)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    if format == PayloadFormat::Slack {
        return json!({
            "text": text,
            "blocks": [
                {"type": "section", "text": {"type": "mrkdwn", "text": format!(
                    "*{}* sentinel alert #{}: {}",
                    alert.severity.as_str().to_uppercase(), alert.id, alert.reason
                )}},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": format!(
                    "category `{}` · source `{}` · {}", alert.category, alert.source, ts
                )}]},
            ],
        });
    }
    json!({
        "text": text,
        "alert_id": alert.id,
        "severity": alert.severity.as_str(),
        "category": alert.category,
        "reason": alert.reason,
        "source": alert.source,
        "related": alert.related,
        "ts": ts,
    })
}

/// Posts `body` to the primary URL, retrying with backoff, then to the
/// backup URL the same way. Blocks; the daemon uses the background sender.
pub fn deliver(config: &WebhookConfig, body: &Value) -> Result<DeliveryReport, WebhookError> {
    let bytes = serde_json::to_vec(body).map_err(|e| WebhookError::Attempt {
        url: config.primary.clone(),
        reason: format!("cannot encode the payload: {e}"),
    })?;
    let tls = if std::iter::once(&config.primary)
        .chain(config.backup.as_ref())
        .any(|u| u.starts_with("https://"))
    {
        Some(
            sentinel_audit::tls::client_config(config.ca_file.as_deref()).map_err(|e| {
                WebhookError::Attempt {
                    url: config.primary.clone(),
                    reason: e.to_string(),
                }
            })?,
        )
    } else {
        None
    };
    let targets = std::iter::once((&config.primary, false))
        .chain(config.backup.iter().map(|url| (url, true)));
    let mut attempts = 0;
    let mut failures = Vec::new();
    for (url, used_backup) in targets {
        let mut wait = config.backoff;
        for attempt in 0..=config.retries {
            if attempt > 0 {
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
            attempts += 1;
            match post(url, &bytes, config.timeout, tls.as_ref()) {
                Ok(status) if (200..300).contains(&status) => {
                    return Ok(DeliveryReport {
                        url: url.clone(),
                        status,
                        attempts,
                        used_backup,
                    })
                }
                Ok(status) => failures.push(format!("{url}: HTTP {status}")),
                Err(e) => failures.push(e.to_string()),
            }
        }
    }
    Err(WebhookError::Exhausted(
        failures.last().cloned().unwrap_or_default(),
    ))
}

/// One POST; returns the response status. `tls` is set when any URL is
/// `https://`.
fn post(
    url: &str,
    body: &[u8],
    timeout: Duration,
    tls: Option<&std::sync::Arc<rustls::ClientConfig>>,
) -> Result<u16, WebhookError> {
    let fail = |reason: String| WebhookError::Attempt {
        url: url.to_owned(),
        reason,
    };
    let target = parse_url(url)?;
    let addrs: Vec<_> = target
        .authority_with_port()
        .to_socket_addrs()
        .map_err(|e| fail(format!("cannot resolve {}: {e}", target.host)))?
        .collect();
    let mut last_error = format!("{} resolved to no address", target.host);
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = format!("connect {addr}: {e}"),
        }
    }
    let stream = stream.ok_or_else(|| fail(last_error))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    let mut stream: Box<dyn ReadWrite> = match (target.https, tls) {
        (false, _) => Box::new(stream),
        (true, Some(config)) => Box::new(
            sentinel_audit::tls::connect(config, &target.host, stream)
                .map_err(|e| fail(e.to_string()))?,
        ),
        (true, None) => return Err(fail("no TLS configuration for an https:// URL".into())),
    };
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sentinel\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.authority,
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush())
        .map_err(|e| fail(format!("send: {e}")))?;
    let mut response = Vec::new();
    // A server may close as soon as it has answered; what was read is enough.
    let read = (&mut stream).take(MAX_RESPONSE).read_to_end(&mut response);
    let status_line = response.split(|b| *b == b'\n').next().unwrap_or_default();
    let status_line = String::from_utf8_lossy(status_line);
    let mut parts = status_line.split_whitespace();
    match (parts.next(), parts.next().map(str::parse::<u16>)) {
        (Some(version), Some(Ok(status))) if version.starts_with("HTTP/1.") => Ok(status),
        _ => Err(fail(match read {
            Err(e) => format!("no response: {e}"),
            Ok(_) => format!("not an HTTP response: {:?}", status_line.trim()),
        })),
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

struct Target {
    https: bool,
    host: String,
    authority: String,
    path: String,
}

impl Target {
    fn authority_with_port(&self) -> String {
        let has_port = match self.authority.rfind(']') {
            Some(bracket) => self.authority[bracket..].contains(':'),
            None => self.authority.contains(':'),
        };
        if has_port {
            self.authority.clone()
        } else {
            format!("{}:{}", self.authority, if self.https { 443 } else { 80 })
        }
    }
}

fn parse_url(url: &str) -> Result<Target, WebhookError> {
    let (https, rest) = match url.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => return Err(WebhookError::UnsupportedUrl(url.to_owned())),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty()
        || authority.contains('@')
        || path.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(WebhookError::UnsupportedUrl(url.to_owned()));
    }
    let host = match authority.rfind(']') {
        Some(bracket) => authority[..=bracket].to_owned(),
        None => authority.split(':').next().unwrap_or_default().to_owned(),
    };
    Ok(Target {
        https,
        host,
        authority: authority.to_owned(),
        path: path.to_owned(),
    })
}

/// Delivery counters, shared with the sender thread.
#[derive(Debug, Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Deliveries not queued because the queue was full.
    pub dropped: AtomicU64,
}

/// The background sender: a bounded queue and one thread that delivers.
pub(crate) struct WebhookSender {
    tx: Option<SyncSender<Value>>,
    thread: Option<JoinHandle<()>>,
    pub(crate) config: WebhookConfig,
    pub(crate) stats: Arc<WebhookStats>,
}

impl WebhookSender {
    pub(crate) fn spawn(config: WebhookConfig) -> Self {
        let (tx, rx) = mpsc::sync_channel::<Value>(QUEUE_DEPTH);
        let stats = Arc::new(WebhookStats::default());
        let thread_stats = Arc::clone(&stats);
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("sentinel-webhook".into())
            .spawn(move || {
                for body in rx {
                    match deliver(&thread_config, &body) {
                        Ok(_) => thread_stats.delivered.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            tracing::error!("alert webhook not delivered: {e}");
                            thread_stats.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        let thread = match thread {
            Ok(handle) => Some(handle),
            Err(e) => {
                tracing::error!("cannot start the webhook thread, alerts will not be posted: {e}");
                None
            }
        };
        WebhookSender {
            tx: thread.is_some().then_some(tx),
            thread,
            config,
            stats,
        }
    }

    pub(crate) fn enqueue(&self, body: Value) {
        let queued = match &self.tx {
            Some(tx) => match tx.try_send(body) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!("alert webhook queue full or stopped; delivery dropped (the alert is still in the audit chain)");
        }
    }
}

impl Drop for WebhookSender {
    /// Closes the queue and waits for what was queued to be delivered.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(parse_url("ftp://hooks.example/x").is_err());
        let t = parse_url("https://hooks.example/x").unwrap();
        assert_eq!(t.authority_with_port(), "hooks.example:443");
        assert!(parse_url("http://user@host/x").is_err());
        let t = parse_url("http://127.0.0.1:8080/hook?x=1").unwrap();
        assert_eq!(t.authority_with_port(), "127.0.0.1:8080");
        assert_eq!(t.path, "/hook?x=1");
        let t = parse_url("http://[::1]").unwrap();
        assert_eq!(t.authority_with_port(), "[::1]:80");
        assert_eq!(t.path, "/");
    }
}
