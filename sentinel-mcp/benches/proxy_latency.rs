//! The latency the proxy adds per `tools/call`: the same request/response
//! round trip against a stdio MCP peer, straight and through
//! `sentinel-mcp-proxy` (standalone: in-process engine, audit chain written
//! per call). Criterion measures the mean per call; a second pass of
//! `SAMPLES` single calls reports p50 and p99 of each, and their difference.
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

fn proxied(dir: &Path) -> Peer {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).expect("policy dir");
    std::fs::write(
        policy.join("50-bench.toml"),
        "[[rule]]\nname = \"no-mass-delete\"\naction = \"deny\"\nkind = \"mcp\"\ntool = \"delete_*\"\n",
    )
    .expect("policy");
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
    Peer::spawn(Path::new(env!("CARGO_BIN_EXE_sentinel-mcp-proxy")), &args)
}

fn direct() -> Peer {
    Peer::spawn(&python(), &server())
}

fn bench_calls(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("tools_call_round_trip");
    let mut straight = direct();
    group.bench_function("direct", |b| b.iter(|| straight.call()));
    let mut through = proxied(dir.path());
    group.bench_function("through_proxy", |b| b.iter(|| through.call()));
    group.finish();
}

fn percentiles(peer: &mut Peer) -> (Duration, Duration) {
    for _ in 0..100 {
        peer.call();
    }
    let mut samples: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            peer.call();
            start.elapsed()
        })
        .collect();
    samples.sort();
    (samples[SAMPLES / 2], samples[SAMPLES * 99 / 100])
}

fn report_percentiles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (d50, d99) = percentiles(&mut direct());
    let (p50, p99) = percentiles(&mut proxied(dir.path()));
    println!("tools/call latency over {SAMPLES} calls (stdio, one call in flight):");
    println!("  direct        p50 {d50:>10.1?}  p99 {d99:>10.1?}");
    println!("  through proxy p50 {p50:>10.1?}  p99 {p99:>10.1?}");
    println!(
        "  added         p50 {:>10.1?}  p99 {:>10.1?}",
        p50.saturating_sub(d50),
        p99.saturating_sub(d99)
    );
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
