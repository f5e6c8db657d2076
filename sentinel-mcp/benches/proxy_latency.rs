//! The latency the proxy adds per `tools/call`: the same request/response
//! round trip against a stdio MCP peer, straight, through
//! `sentinel-mcp-proxy` standalone (in-process engine, audit chain written
//! per call) and through the proxy in daemon mode (verdicts, pins and the
//! audit chain on the daemon's side of its Unix socket: the daemon's
//! decision half, `serve_decisions`, runs in this process). Criterion
//! measures the mean per call; a second pass of `SAMPLES` single calls per
//! peer, interleaved in rounds so the machine's noise falls on all of them
//! alike, reports p50 and p99 of each and what the proxy adds.
//!
//! Needs the Python peer from `cargo xtask test` (target/mcp-peers) or
//! SENTINEL_MCP_PYTHON.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};

const SAMPLES: usize = 2000;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn python() -> PathBuf {
    std::env::var_os("SENTINEL_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/mcp-peers/venv/bin/python"))
}

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Peer {
    fn spawn(program: &Path, args: &[String]) -> Peer {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout"));
        Peer {
            child,
            stdin,
            stdout,
            next_id: 0,
        }
    }

    /// One request/response round trip; returns the answer.
    fn round_trip(&mut self, request: &str) -> String {
        writeln!(self.stdin, "{request}").expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        line
    }

    /// Lists the tools once: the proxy refuses calls to tools it has not
    /// seen listed, so every session starts with a listing.
    fn list(mut self) -> Peer {
        self.next_id += 1;
        let request = format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/list"}}"#,
            self.next_id
        );
        let line = self.round_trip(&request);
        assert!(line.contains("\"echo\""), "unexpected listing: {line}");
        self
    }

    /// One tools/call round trip.
    fn call(&mut self) {
        self.next_id += 1;
        writeln!(
            self.stdin,
            r#"{{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"benchmark"}}}}}}"#,
            self.next_id
        )
        .expect("write");
        self.stdin.flush().expect("flush");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read");
        assert!(line.contains("echo done"), "unexpected answer: {line}");
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server() -> Vec<String> {
    vec![root()
        .join("tests/mcp/slow_server.py")
        .display()
        .to_string()]
}

/// The daemon's decision half on a socket in `dir/run` (kept alive by the
/// returned runtime).
fn daemon(dir: &Path) -> (tokio::runtime::Runtime, PathBuf) {
    use sentinel_mcp::daemon::{bind_socket, serve_decisions, socket_path, PeerBoundHandler};
    let policy = bench_policy(dir);
    let decider = sentinel_mcp::inprocess::open_standalone(
        Some(&policy),
        &dir.join("daemon.db"),
        &dir.join("daemon.state"),
        sentinel_mcp::ScanPolicy::default(),
    )
    .expect("daemon-side decider");
    let handler = std::sync::Arc::new(PeerBoundHandler::new(
        std::sync::Arc::new(decider),
        Box::new(|_: &sentinel_mcp::daemon::PeerCred| Some("bench-agent".to_string())),
        std::sync::Arc::new(sentinel_mcp::SystemClock),
    ));
    let state_dir = dir.join("run");
    std::fs::create_dir_all(&state_dir).expect("state dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(async { bind_socket(&socket_path(&state_dir)) })
        .expect("bind the decision socket");
    runtime.spawn(serve_decisions(listener, handler));
    (runtime, state_dir)
}

fn through_daemon(state_dir: &Path) -> Peer {
    let mut args = vec![
        "--server-name".to_string(),
        "bench".into(),
        "--state-dir".into(),
        state_dir.display().to_string(),
        "--db".into(),
        "/nonexistent/sentinel.db".into(),
        "--".into(),
        python().display().to_string(),
    ];
    args.extend(server());
    Peer::spawn(Path::new(env!("CARGO_BIN_EXE_sentinel-mcp-proxy")), &args).list()
}

fn bench_policy(dir: &Path) -> PathBuf {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).expect("policy dir");
    std::fs::write(
        policy.join("50-bench.toml"),
        "[[rule]]\nname = \"no-mass-delete\"\naction = \"deny\"\nkind = \"mcp\"\ntool = \"delete_*\"\n",
    )
    .expect("policy");
    policy
}

fn proxied(dir: &Path) -> Peer {
    let policy = bench_policy(dir);
    let mut args = vec![
        "--standalone".to_string(),
        "--server-name".into(),
        "bench".into(),
        "--policy".into(),
        policy.display().to_string(),
        "--db".into(),
        dir.join("bench.db").display().to_string(),
        "--".into(),
        python().display().to_string(),
    ];
    args.extend(server());
    Peer::spawn(Path::new(env!("CARGO_BIN_EXE_sentinel-mcp-proxy")), &args).list()
}

fn direct() -> Peer {
    Peer::spawn(&python(), &server()).list()
}

fn bench_calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_daemon, state_dir) = daemon(dir.path());
    let mut group = c.benchmark_group("tools_call_round_trip");
    let mut straight = direct();
    group.bench_function("direct", |b| b.iter(|| straight.call()));
    let mut through = proxied(dir.path());
    group.bench_function("through_proxy_standalone", |b| b.iter(|| through.call()));
    let mut via_daemon = through_daemon(&state_dir);
    group.bench_function("through_proxy_daemon", |b| b.iter(|| via_daemon.call()));
    group.finish();
}

/// p50 and p99 of each peer's single calls, sampled in interleaved rounds.
fn percentiles(peers: &mut [&mut Peer]) -> Vec<(Duration, Duration)> {
    const ROUND: usize = 100;
    for peer in peers.iter_mut() {
        for _ in 0..ROUND {
            peer.call();
        }
    }
    let mut samples = vec![Vec::with_capacity(SAMPLES); peers.len()];
    for _ in 0..SAMPLES / ROUND {
        for (peer, samples) in peers.iter_mut().zip(samples.iter_mut()) {
            for _ in 0..ROUND {
                let start = Instant::now();
                peer.call();
                samples.push(start.elapsed());
            }
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort();
            (s[s.len() / 2], s[s.len() * 99 / 100])
        })
        .collect()
}

fn report_percentiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_daemon, state_dir) = daemon(dir.path());
    let mut straight = direct();
    let mut standalone = proxied(dir.path());
    let mut via_daemon = through_daemon(&state_dir);
    let figures = percentiles(&mut [&mut straight, &mut standalone, &mut via_daemon]);
    let (d50, d99) = figures[0];
    println!(
        "tools/call latency over {SAMPLES} calls each (stdio, one call in flight, interleaved):"
    );
    println!("  direct                 p50 {d50:>10.1?}  p99 {d99:>10.1?}");
    for (name, (p50, p99)) in ["standalone", "daemon"].iter().zip(&figures[1..]) {
        println!("  proxy {name:<16} p50 {p50:>10.1?}  p99 {p99:>10.1?}");
        println!(
            "    added              p50 {:>10.1?}  p99 ratio {:.2}x of direct",
            p50.saturating_sub(d50),
            p99.as_secs_f64() / d99.as_secs_f64()
        );
    }
}
criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench_calls
}

fn main() {
    benches();
    report_percentiles();
    Criterion::default().configure_from_args().final_summary();
}
