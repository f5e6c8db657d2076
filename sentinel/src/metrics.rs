//! Prometheus metrics (`sentinel run --metrics ADDR`): the series below,
//! served at `/metrics` in the Prometheus text format (0.0.4), which
//! `promtool check metrics` accepts and every Prometheus scrapes.
//!
//! The data path counts events, verdicts, alerts and MCP calls as they are
//! recorded ([`Metrics::observe`]); the audit writer reports each commit's
//! duration; everything else (kernel drops, held actions, tracked
//! processes, ring-buffer fill, per-program BPF run time) is read when
//! Prometheus scrapes. Labels an agent can choose (MCP server and tool
//! names) are capped, so a flood of invented names cannot grow the
//! series without bound, and a connection from a watched agent's UID
//! (found in the kernel's socket table, not in anything it sends) is
//! refused: the agent does not get to watch the watcher.
//!
//! The `prometheus` crate is used rather than `prometheus-client`: the
//! latter writes only OpenMetrics, which this Debian's `promtool check
//! metrics` rejects (it reads HELP/TYPE under the `_total` name).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use sentinel_audit::{Body, Event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Distinct (server, tool) pairs counted before new ones are folded into
/// `tool="other"`.
const MAX_MCP_SERIES: usize = 512;

pub struct Metrics {
    registry: Registry,
    events: IntCounterVec,
    lost: IntCounter,
    verdicts: IntCounterVec,
    alerts: IntCounterVec,
    audit_records: IntCounter,
    audit_append: Histogram,
    mcp_calls: IntCounterVec,
    mcp_series: Mutex<HashSet<(String, String)>>,
    held: IntGauge,
    tracked: IntGauge,
    ringbuf_used: IntGauge,
    bpf_run_seconds: prometheus::CounterVec,
    bpf_runs: IntCounterVec,
}

/// What is read from the daemon at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub lost: u64,
    pub audit_records: u64,
    pub held: usize,
    pub tracked: usize,
    pub ringbuf_used: Option<u64>,
    /// Per program: name, run time, run count (only with bpf_stats on).
    pub programs: Vec<(String, Duration, u64)>,
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let m = Metrics {
            registry: Registry::new(),
            events: counter_vec(
                "sentinel_events_total",
                "Events recorded, by kind (exec, open, connect, exit, mcp_call, alert, ...).",
                &["kind"],
            ),
            lost: IntCounter::new(
                "sentinel_events_lost_total",
                "Events the kernel could not deliver because the ring buffer was full.",
            )
            .expect("valid metric"),
            verdicts: counter_vec(
                "sentinel_verdicts_total",
                "Verdicts given, by action, kind and whether the kernel enforced them.",
                &["action", "kind", "enforced"],
            ),
            alerts: counter_vec(
                "sentinel_alerts_total",
                "Alerts recorded, by severity and category.",
                &["severity", "category"],
            ),
            audit_records: IntCounter::new(
                "sentinel_audit_records_total",
                "Records committed to the sealed audit chain.",
            )
            .expect("valid metric"),
            audit_append: Histogram::with_opts(
                HistogramOpts::new(
                    "sentinel_audit_append_seconds",
                    "Time to commit one batch to the audit chain.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                ]),
            )
            .expect("valid metric"),
            mcp_calls: counter_vec(
                "sentinel_mcp_calls_total",
                "MCP tool calls decided, by server, tool and action.",
                &["server", "tool", "action"],
            ),
            mcp_series: Mutex::new(HashSet::new()),
            held: IntGauge::new(
                "sentinel_held_actions",
                "Kernel actions held for an operator's approval.",
            )
            .expect("valid metric"),
            tracked: IntGauge::new(
                "sentinel_tracked_processes",
                "Processes of watched agents in the process table.",
            )
            .expect("valid metric"),
            ringbuf_used: IntGauge::new(
                "sentinel_ringbuf_bytes_used",
                "Bytes written to the ring buffer and not yet read by the daemon.",
            )
            .expect("valid metric"),
            bpf_run_seconds: prometheus::CounterVec::new(
                Opts::new(
                    "sentinel_bpf_program_run_seconds_total",
                    "Time spent in each eBPF program (only while kernel.bpf_stats_enabled=1).",
                ),
                &["program"],
            )
            .expect("valid metric"),
            bpf_runs: counter_vec(
                "sentinel_bpf_program_runs_total",
                "Runs of each eBPF program (only while kernel.bpf_stats_enabled=1).",
                &["program"],
            ),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.events.clone()),
            Box::new(m.lost.clone()),
            Box::new(m.verdicts.clone()),
            Box::new(m.alerts.clone()),
            Box::new(m.audit_records.clone()),
            Box::new(m.audit_append.clone()),
            Box::new(m.mcp_calls.clone()),
            Box::new(m.held.clone()),
            Box::new(m.tracked.clone()),
            Box::new(m.ringbuf_used.clone()),
            Box::new(m.bpf_run_seconds.clone()),
            Box::new(m.bpf_runs.clone()),
        ];
        for c in collectors {
            m.registry.register(c).expect("metric names are unique");
        }
        Arc::new(m)
    }

    /// Counts one recorded event.
    pub fn observe(&self, event: &Event) {
        let kind = event.kind();
        self.events.with_label_values(&[kind]).inc();
        if let Some(v) = &event.verdict {
            let action = decision_name(v.action);
            let enforced = if v.enforced { "true" } else { "false" };
            self.verdicts
                .with_label_values(&[action, kind, enforced])
                .inc();
            if let Body::McpCall { server, tool, .. } = &event.body {
                let tool = self.mcp_tool_label(server, tool);
                self.mcp_calls
                    .with_label_values(&[server.as_str(), tool.as_str(), action])
                    .inc();
            }
        }
        if let Body::Alert {
            severity, category, ..
        } = &event.body
        {
            self.alerts
                .with_label_values(&[severity.as_str(), category.as_str()])
                .inc();
        }
    }

    fn mcp_tool_label(&self, server: &str, tool: &str) -> String {
        let mut seen = self.mcp_series.lock().unwrap_or_else(|p| p.into_inner());
        let key = (server.to_string(), tool.to_string());
        if seen.contains(&key) || seen.len() < MAX_MCP_SERIES {
            seen.insert(key);
            tool.to_string()
        } else {
            "other".to_string()
        }
    }

    /// The audit writer's report of one commit.
    pub fn commit_observer(self: &Arc<Self>) -> sentinel_audit::CommitObserver {
        let m = Arc::clone(self);
        Arc::new(move |took: Duration, _events: usize| {
            m.audit_append.observe(took.as_secs_f64());
        })
    }

    /// Brings the scrape-time series up to `s` and renders everything.
    pub fn render(&self, s: &Snapshot) -> String {
        raise_to(&self.lost, s.lost);
        raise_to(&self.audit_records, s.audit_records);
        self.held.set(s.held as i64);
        self.tracked.set(s.tracked as i64);
        if let Some(used) = s.ringbuf_used {
            self.ringbuf_used.set(used as i64);
        }
        for (name, time, runs) in &s.programs {
            let secs = self.bpf_run_seconds.with_label_values(&[name.as_str()]);
            let delta = time.as_secs_f64() - secs.get();
            if delta > 0.0 {
                secs.inc_by(delta);
            }
            raise_to(&self.bpf_runs.with_label_values(&[name.as_str()]), *runs);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!("encoding the metrics: {e}");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Counters read from elsewhere only ever go up; a lower reading (a
/// restarted source) leaves the counter where it is.
fn raise_to(counter: &IntCounter, value: u64) {
    let now = counter.get();
    if value > now {
        counter.inc_by(value - now);
    }
}

fn decision_name(d: sentinel_policy::Decision) -> &'static str {
    match d {
        sentinel_policy::Decision::Allow => "allow",
        sentinel_policy::Decision::Deny => "deny",
        sentinel_policy::Decision::Ask => "ask",
        sentinel_policy::Decision::LogOnly => "log-only",
    }
}

/// Binds the metrics address; a non-loopback address is allowed with a
/// warning (the series name agents, MCP servers and tools).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "metrics on {addr}, which is not a loopback address: anyone who reaches it sees agent, server and tool names; prefer 127.0.0.1 and a scraper on this host"
        );
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding the metrics address {addr}: {e}"))
}

/// Serves `GET /metrics` until the task is dropped; `snapshot` reads the
/// daemon when a scrape arrives. Connections from `refused_uids` (the
/// watched agents) get 403.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    snapshot: Arc<dyn Fn() -> Snapshot + Send + Sync>,
    refused_uids: HashSet<u32>,
) {
    let refused_uids = Arc::new(refused_uids);
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            continue;
        };
        let local = stream.local_addr().ok();
        let refused = Arc::clone(&refused_uids);
        let metrics = Arc::clone(&metrics);
        let snapshot = Arc::clone(&snapshot);
        tokio::spawn(async move {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // The request head only; a client that never finishes it is
            // dropped after five seconds.
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let line = String::from_utf8_lossy(&request);
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next(), parts.next());
            let agent = local
                .and_then(|local| peer_uid(peer, local))
                .filter(|uid| refused.contains(uid));
            let (status, content_type, body) = match (method, path) {
                _ if agent.is_some() => (
                    "403 Forbidden",
                    "text/plain; charset=utf-8",
                    "watched agents may not read the metrics\n".to_string(),
                ),
                (Some("GET"), Some(p)) if p == "/metrics" || p.starts_with("/metrics?") => {
                    let snap = tokio::task::spawn_blocking(move || snapshot())
                        .await
                        .unwrap_or_default();
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        metrics.render(&snap),
                    )
                }
                (Some("GET"), Some("/")) => (
                    "200 OK",
                    "text/plain; charset=utf-8",
                    "sentinel: metrics at /metrics\n".to_string(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain; charset=utf-8",
                    "not found; metrics are at /metrics\n".to_string(),
                ),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

/// The UID owning the client end of a TCP connection to this host, from
/// /proc/net/tcp(6): the row whose local address is the peer's and whose
/// remote address is ours.
fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (file, peer_hex, local_hex) = match (peer, local) {
        (SocketAddr::V4(p), SocketAddr::V4(l)) => (
            "/proc/net/tcp",
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(p.ip().octets()),
                p.port()
            ),
            format!(
                "{:08X}:{:04X}",
                u32::from_le_bytes(l.ip().octets()),
                l.port()
            ),
        ),
        (SocketAddr::V6(p), SocketAddr::V6(l)) => {
            let hex = |ip: std::net::Ipv6Addr, port: u16| {
                let words: String = ip
                    .octets()
                    .chunks(4)
                    .map(|c| format!("{:08X}", u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect();
                format!("{words}:{port:04X}")
            };
            (
                "/proc/net/tcp6",
                hex(*p.ip(), p.port()),
                hex(*l.ip(), l.port()),
            )
        }
        _ => return None,
    };
    let table = std::fs::read_to_string(file).ok()?;
    table.lines().skip(1).find_map(|row| {
        let cols: Vec<&str> = row.split_whitespace().collect();
        (cols.get(1) == Some(&peer_hex.as_str()) && cols.get(2) == Some(&local_hex.as_str()))
            .then(|| cols.get(7)?.parse().ok())
            .flatten()
    })
}

/// The ring buffer's fill level, read from its producer and consumer
/// positions: the kernel maps the consumer page at offset 0 and the
/// producer page after it. A second, read-only mapping of the same map fd
/// sees what the reader's mapping sees.
pub struct RingUsage {
    consumer: *const u64,
    producer: *const u64,
    page: usize,
}

// SAFETY: the mapped pages stay valid for the lifetime of the value and
// are only read with atomic-width volatile loads.
unsafe impl Send for RingUsage {}

impl RingUsage {
    pub fn map(fd: BorrowedFd<'_>) -> std::io::Result<RingUsage> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let map = |offset: usize| -> std::io::Result<*const u64> {
            // SAFETY: a fresh read-only shared mapping of one page of the
            // ring buffer map; the kernel checks the offset and length.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    page,
                    libc::PROT_READ,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    offset as libc::off_t,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(std::io::Error::last_os_error());
            }
            Ok(p as *const u64)
        };
        let consumer = map(0)?;
        let producer = match map(page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: unmapping the page mapped just above.
                unsafe { libc::munmap(consumer as *mut libc::c_void, page) };
                return Err(e);
            }
        };
        Ok(RingUsage {
            consumer,
            producer,
            page,
        })
    }

    /// Bytes produced and not yet consumed.
    pub fn used(&self) -> u64 {
        // SAFETY: both pointers point into live read-only mappings.
        let (c, p) = unsafe {
            (
                std::ptr::read_volatile(self.consumer),
                std::ptr::read_volatile(self.producer),
            )
        };
        p.saturating_sub(c)
    }
}

impl Drop for RingUsage {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the two pages `map` mapped.
        unsafe {
            libc::munmap(self.consumer as *mut libc::c_void, self.page);
            libc::munmap(self.producer as *mut libc::c_void, self.page);
        }
    }
}

/// Maps the usage reader for any ring buffer handle.
pub fn ring_usage(ring: &impl AsFd) -> Option<RingUsage> {
    match RingUsage::map(ring.as_fd()) {
        Ok(u) => Some(u),
        Err(e) => {
            tracing::warn!("sentinel_ringbuf_bytes_used is not reported: mapping the ring buffer positions failed: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invented_tool_names_cannot_grow_the_series_without_bound() {
        let m = Metrics::new();
        for i in 0..(MAX_MCP_SERIES + 50) {
            assert_eq!(
                m.mcp_tool_label("s", &format!("t{i}")),
                if i < MAX_MCP_SERIES {
                    format!("t{i}")
                } else {
                    "other".into()
                }
            );
        }
        // Decided MCP calls are counted with their server, tool and action;
        // this pair is past the cap, so its tool is `other`.
        let call = Event {
            seq: 1,
            ts: time::OffsetDateTime::now_utc(),
            body: Body::McpCall {
                process: sentinel_audit::ProcessInfo {
                    pid: 1,
                    ppid: 0,
                    uid: 2001,
                    comm: "proxy".into(),
                    exe: "/usr/bin/sentinel".into(),
                    agent: Some("claude".into()),
                },
                server: "fs".into(),
                tool: "t1".into(),
                args: serde_json::json!({}),
                outcome: None,
            },
            verdict: Some(sentinel_policy::Verdict {
                action: sentinel_policy::Decision::Deny,
                rule: None,
                reason: String::new(),
                risk: 0,
                enforced: false,
                alert: false,
                factors: Vec::new(),
            }),
        };
        m.observe(&call);
        let text = m.render(&Snapshot::default());
        assert!(
            text.contains(
                "sentinel_mcp_calls_total{action=\"deny\",server=\"fs\",tool=\"other\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "sentinel_verdicts_total{action=\"deny\",enforced=\"false\",kind=\"mcp_call\"} 1"
        ));
        // A pair seen before keeps its own label.
        assert_eq!(m.mcp_tool_label("s", "t0"), "t0");
        let text = m.render(&Snapshot {
            lost: 3,
            ..Snapshot::default()
        });
        assert!(text.contains("sentinel_events_lost_total 3"), "{text}");
        assert!(text.contains("# TYPE sentinel_audit_append_seconds histogram"));
    }
}
