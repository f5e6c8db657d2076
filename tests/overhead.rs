//! Benchmark (not a test): what the sentinel costs a syscall-heavy
//! workload next to the peers that install here from Debian, how a flood
//! is accounted for, how fast the audit chain appends, and the daemon's
//! memory with 100,000 tracked processes. Run by `cargo xtask bench` (which
//! installs bpftrace and auditd and builds first); needs root and the test
//! users; holds the machine-wide kernel-test lock for the whole run.
//!
//! Method. One binary plays several roles: run with `child WORKLOAD N ARG`
//! it runs a tight loop and prints nanoseconds per iteration; with `tree`
//! it is the process-tree helper of the memory measurement; otherwise it is
//! the driver. The driver runs each workload as a child under seven
//! conditions — no sentinel; the sentinel with the workload under an
//! unwatched UID (2002) and under the watched UID (2001); bpftrace with one
//! tracepoint (`sys_enter_openat`) filtered on the watched UID, printing
//! each match; auditd with one `openat` rule on the watched UID — the two
//! peers also under both UIDs. Rounds interleave the monitors (so machine
//! noise hits them alike, and the order rotates each round); each table
//! reports the median of the rounds and the ratio to "no sentinel" in the
//! same run. Workloads: open+close of a file, fork+exec+wait of /bin/true,
//! TCP connect to a closed loopback port, 64-byte datagrams on a connected
//! UDP socket to a socket that never reads (the cgroup skb hooks), and a
//! 64-byte TCP request/response over one loopback connection.

#[path = "common/mod.rs"]
mod common;

#[path = "bench/audit_rate.rs"]
mod audit_rate;
#[path = "bench/flood.rs"]
mod flood;
#[path = "bench/monitors.rs"]
mod monitors;
#[path = "bench/rss.rs"]
mod rss;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use monitors::{Auditd, Bpftrace, Sentinel};

const WATCHED: u32 = 2001;
const UNWATCHED: u32 = 2002;
const ROUNDS: usize = 5;
const FLOOD_OPENS: u64 = 1_000_000;
const TRACKED_PROCESSES: usize = 100_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => child(
            &args[2],
            args[3].parse().expect("iterations"),
            args[4].parse().expect("a port or rate"),
        ),
        Some(rss::TREE) => rss::tree(
            args[2].parse().expect("a uid"),
            args[3].parse().expect("a process count"),
        ),
        _ => driver(),
    }
}

/// The workload loop; prints ns per iteration.
/// `arg` is what `run_child` passed: a port, or a rate for `open-paced`.
fn child(workload: &str, n: u64, arg: u64) {
    let port = || u16::try_from(arg).expect("a port");
    let start = Instant::now();
    match workload {
        "open" => {
            for _ in 0..n {
                drop(std::fs::File::open("/etc/hostname").expect("open"));
            }
        }
        "exec" => {
            for _ in 0..n {
                Command::new("/bin/true").status().expect("exec");
            }
        }
        "connect" => {
            // A closed loopback port: the kernel answers at once (RST), so
            // the loop measures the connect path, not a listener.
            for _ in 0..n {
                let _ = TcpStream::connect(("127.0.0.1", port()));
            }
        }
        "udp-send" => {
            let sock = UdpSocket::bind("127.0.0.1:0").expect("udp bind");
            sock.connect(("127.0.0.1", port())).expect("udp connect");
            let buf = [7u8; 64];
            for _ in 0..n {
                let _ = sock.send(&buf);
            }
        }
        "tcp-rr" => {
            let mut conn = TcpStream::connect(("127.0.0.1", port())).expect("connect");
            conn.set_nodelay(true).expect("nodelay");
            let mut buf = [7u8; 64];
            for _ in 0..n {
                conn.write_all(&buf).expect("send");
                conn.read_exact(&mut buf).expect("receive");
            }
        }
        "open-paced" => {
            // `arg` is the target rate (opens per second), paced in
            // batches of 100.
            let per_batch = Duration::from_nanos(100 * 1_000_000_000 / arg.max(1));
            let mut next = Instant::now();
            for i in 0..n {
                drop(std::fs::File::open("/etc/hostname").expect("open"));
                if i % 100 == 99 {
                    next += per_batch;
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            }
        }
        other => panic!("unknown workload {other}"),
    }
    println!("{}", start.elapsed().as_nanos() as u64 / n);
}

fn workload_command(uid: u32, workload: &str, n: u64, arg: u64) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("bench binary"));
    cmd.args(["child", workload, &n.to_string(), &arg.to_string()])
        .uid(uid)
        .gid(uid)
        .current_dir("/tmp");
    cmd
}

/// Runs a workload as `uid`; returns ns per iteration.
fn run_child(uid: u32, workload: &str, n: u64, arg: u64) -> u64 {
    let out = workload_command(uid, workload, n, arg)
        .output()
        .expect("running the workload");
    assert!(out.status.success(), "workload failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ns/iter")
}

/// What watches the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Monitor {
    Nothing,
    Sentinel,
    Bpftrace,
    Auditd,
}

impl Monitor {
    /// Starts the monitor; it runs until the returned guard is dropped.
    fn start(self) -> Option<Box<dyn std::any::Any>> {
        match self {
            Monitor::Nothing => None,
            Monitor::Sentinel => Some(Box::new(Sentinel::start(&[WATCHED]))),
            Monitor::Bpftrace => Some(Box::new(Bpftrace::start(WATCHED))),
            Monitor::Auditd => Some(Box::new(Auditd::start(WATCHED))),
        }
    }
}

const CONDITIONS: [(&str, Monitor, u32); 7] = [
    ("no sentinel", Monitor::Nothing, UNWATCHED),
    ("sentinel, unwatched UID", Monitor::Sentinel, UNWATCHED),
    ("sentinel, watched UID", Monitor::Sentinel, WATCHED),
    (
        "bpftrace openat filter on the watched UID, run as unwatched UID",
        Monitor::Bpftrace,
        UNWATCHED,
    ),
    (
        "bpftrace openat filter on the watched UID, run as watched UID",
        Monitor::Bpftrace,
        WATCHED,
    ),
    (
        "auditd openat rule on the watched UID, run as unwatched UID",
        Monitor::Auditd,
        UNWATCHED,
    ),
    (
        "auditd openat rule on the watched UID, run as watched UID",
        Monitor::Auditd,
        WATCHED,
    ),
];

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn driver() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the benchmark needs root");
    common::require_environment();
    if let Err(e) = monitors::check_peers_installed() {
        panic!("{e}");
    }
    // Programs attached by kernel tests running meanwhile would be
    // measured too (and ours would slow their tests): one at a time.
    let _lock = common::kernel_lock();
    println!(
        "Sentinel benchmark, {} vCPUs, load average at start {}\n",
        num_cpus(),
        load_average()
    );
    // `cargo bench -p sentinel --bench overhead -- memory flood`: only
    // those sections.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wanted = |section: &str| {
        let named = args.iter().any(|a| SECTIONS.contains(&a.as_str()));
        !named || args.iter().any(|a| a == section)
    };
    if wanted("overhead") {
        overhead_tables();
    }
    if wanted("flood") {
        flood_and_drain();
    }
    if wanted("audit") {
        audit_append();
    }
    if wanted("memory") {
        memory();
    }
    println!("load average at end {}", load_average());
    host_restored();
}

const SECTIONS: [&str; 4] = ["overhead", "flood", "audit", "memory"];

/// The peers leave nothing behind: no audit daemon, no rule of ours.
fn host_restored() {
    let status = monitors::audit_status();
    let ours: Vec<String> = monitors::audit_rules()
        .into_iter()
        .filter(|r| r.contains("sentinel-bench"))
        .collect();
    assert!(
        status.pid == 0 && ours.is_empty(),
        "the audit peer was not cleaned up: {status:?}, rules {ours:?}"
    );
    println!("auditd stopped and its rule removed (kernel audit {status:?})");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

/// One table per workload, every condition side by side.
fn overhead_tables() {
    // A port nobody listens on (bound, then closed).
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let echo = echo_server();
    // Datagrams to it are dropped at its full receive queue, after the
    // ingress hook.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("udp sink");
    let sink_port = sink.local_addr().expect("udp sink port").port();
    let workloads: [(&str, &str, u64, u16); 5] = [
        ("open", "open+close", 200_000, port),
        ("exec", "fork+exec+wait", 400, port),
        ("connect", "connect (refused)", 50_000, port),
        ("udp-send", "udp-send", 200_000, sink_port),
        ("tcp-rr", "tcp-rr", 50_000, echo),
    ];
    let monitors = [
        Monitor::Nothing,
        Monitor::Sentinel,
        Monitor::Bpftrace,
        Monitor::Auditd,
    ];
    // results[workload][condition] = ns/iter per round
    let mut results = vec![vec![Vec::new(); CONDITIONS.len()]; workloads.len()];
    for round in 0..ROUNDS {
        for k in 0..monitors.len() {
            let monitor = monitors[(round + k) % monitors.len()];
            let running = monitor.start();
            for (w, (workload, _, n, arg)) in workloads.iter().enumerate() {
                for (c, (_, m, uid)) in CONDITIONS.iter().enumerate() {
                    if *m == monitor {
                        results[w][c].push(run_child(*uid, workload, *n, u64::from(*arg)));
                    }
                }
            }
            drop(running);
        }
    }
    println!(
        "## Overhead: ns per iteration, median of {ROUNDS} interleaved rounds; ratio to \"no sentinel\" in the same run\n"
    );
    for (w, (_, title, n, _)) in workloads.iter().enumerate() {
        let off = median(results[w][0].clone()) as f64;
        println!("### {title} ×{n}\n");
        println!("| condition | ns/iter | × no sentinel | rounds min–max |");
        println!("|---|---|---|---|");
        for (c, (name, _, _)) in CONDITIONS.iter().enumerate() {
            let runs = &results[w][c];
            let m = median(runs.clone());
            println!(
                "| {name} | {m} | {:.2} | {}–{} |",
                m as f64 / off,
                runs.iter().min().unwrap_or(&0),
                runs.iter().max().unwrap_or(&0)
            );
        }
        println!();
    }
}

/// A loopback echo server (64-byte messages), one thread per connection;
/// returns its port.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("echo listener");
    let port = listener.local_addr().expect("echo port").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 64];
                while conn.read_exact(&mut buf).is_ok() {
                    if conn.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Paced opens by the watched UID at rising rates, 5 s each, then the
/// unpaced flood, on one daemon.
fn flood_and_drain() {
    let daemon = Sentinel::start(&[WATCHED]);
    println!("## Drain: paced opens by the watched UID, 5 s per step\n");
    println!("| target opens/s | opens read or folded/s | lost |");
    println!("|---|---|---|");
    for rate in [1_000u64, 4_000, 16_000, 64_000] {
        let n = rate * 5;
        let report = flood::flood(&daemon, n, || {
            let start = Instant::now();
            let out = workload_command(WATCHED, "open-paced", n, rate)
                .output()
                .expect("paced workload");
            assert!(out.status.success(), "workload failed: {out:?}");
            (None, start.elapsed().as_secs_f64())
        });
        println!("| {rate} | {:.0} | {} |", report.read_per_s, report.lost);
    }
    println!("\n## Flood: {FLOOD_OPENS} opens by the watched UID, as fast as it can\n");
    let report = flood::flood(&daemon, FLOOD_OPENS, || {
        let start = Instant::now();
        let child = workload_command(WATCHED, "open", FLOOD_OPENS, 0)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("flood workload");
        let pid = child.id();
        let out = child.wait_with_output().expect("flood workload");
        assert!(out.status.success(), "workload failed: {out:?}");
        (Some(pid), start.elapsed().as_secs_f64())
    });
    let unaccounted = report
        .generated
        .saturating_sub(report.opens_in_chain + report.lost);
    println!("| opens generated | opens/s generated | records read | opens read or folded/s | open records in the chain | opens they stand for | of which folded | lost | unaccounted |");
    println!("|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {} | {:.0} | {} | {} | {} | {} | {} |\n",
        report.generated,
        report.generated as f64 / report.workload_s,
        report.read,
        report.read_per_s,
        report.recorded,
        report.opens_in_chain,
        report.coalesced,
        report.lost,
        unaccounted
    );
    println!("(records read: ring-buffer records, folded counts included; open records: of the flooding process in the audit chain, each one open or a count of folded repeats; folded and lost: the daemon's `status` counters; unaccounted: generated minus the opens in the chain and the lost.)\n");
}

/// The audit chain's append rate, as the writer thread appends.
fn audit_append() {
    const RECORDS: usize = 262_144;
    println!("## Audit chain append: records/s, `synchronous=FULL`, one transaction and one seal per batch, median of 3\n");
    println!("| batch | records/s (wall) | records per CPU-second (all threads) |");
    println!("|---|---|---|");
    for batch in [1_024usize, 16_384] {
        let runs: Vec<(f64, f64)> = (0..3)
            .map(|_| audit_rate::append_rate(batch, RECORDS))
            .collect();
        let wall = median(runs.iter().map(|r| r.0 as u64).collect());
        let cpu = median(runs.iter().map(|r| r.1 as u64).collect());
        println!("| {batch} | {wall} | {cpu} |");
    }
    println!();
}

/// The daemon's memory idle, with 100,000 tracked processes, and after
/// they exit.
fn memory() {
    let r = rss::measure(WATCHED, TRACKED_PROCESSES);
    let mib = |kib: u64| format!("{:.1}", kib as f64 / 1024.0);
    println!(
        "## Daemon memory (MiB), {} processes of the watched UID made with clone(CLONE_VM), {} of them tracked\n",
        r.made, r.tracked
    );
    println!("| moment | VmRSS | anonymous | file-backed | of which BPF maps (ring buffer) | peak (VmHWM) |");
    println!("|---|---|---|---|---|---|");
    for (moment, m) in [
        ("idle, 0 processes".to_string(), r.idle),
        (format!("{} processes tracked", r.tracked), r.with_processes),
        (
            format!("after they exited ({} tracked)", r.tracked_after_exit),
            r.after_exit,
        ),
    ] {
        println!(
            "| {moment} | {} | {} | {} | {} | {} |",
            mib(m.total),
            mib(m.anon),
            mib(m.file),
            mib(m.bpf_maps),
            mib(m.peak)
        );
    }
    println!(
        "\n(wanted {}, made {}; children the kernel could not add to its task map: {})\n",
        r.wanted, r.made, r.untracked_children
    );
}
