//! Benchmark (not a test): what the sentinel costs a syscall-heavy
//! workload, and how many events per second the daemon drains without
//! loss. Run by `cargo xtask bench`; needs root and the test users.
//!
//! Method. One binary plays two roles: run with `child WORKLOAD N` it runs
//! a tight loop and prints nanoseconds per iteration; otherwise it is the
//! driver. The driver runs each workload as a child under three
//! conditions — no sentinel; sentinel on, workload under an unwatched UID;
//! sentinel on, workload under the watched UID — in rounds that interleave
//! the conditions (so machine noise hits them alike), and reports the
//! median of the rounds and the ratio to "off". Workloads: open+close of a
//! file, fork+exec+wait of /bin/true, TCP connect+close to a loopback
//! listener; and for the cgroup skb hooks that count the bytes of watched
//! sockets (every packet on the host passes them), 64-byte datagrams sent
//! on a connected UDP socket to a socket in the driver that never reads
//! (one egress and one ingress hook run per datagram, no wake-ups), and a
//! 64-byte TCP request/response over one loopback connection to an echo
//! server in the driver (the driver's sockets are unwatched in every
//! condition). Drain rate: the watched UID runs an open loop as fast as it
//! can; events seen per second of wall time, and the lost counter, come
//! from the daemon's own status.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const WATCHED: u32 = 2001;
const UNWATCHED: u32 = 2002;
const ROUNDS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        child(
            &args[2],
            args[3].parse().expect("iterations"),
            args[4].parse().expect("a port or rate"),
        );
        return;
    }
    driver();
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

/// `arg` is the port for `connect`, `udp-send` and `tcp-rr`, the rate for
/// `open-paced`.
fn run_child(uid: u32, workload: &str, n: u64, arg: u64) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", workload, &n.to_string(), &arg.to_string()])
        .uid(uid)
        .gid(uid)
        .current_dir("/tmp")
        .output()
        .expect("running the workload");
    assert!(out.status.success(), "workload failed: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("ns/iter")
}

struct Daemon {
    child: Child,
    state: PathBuf,
}

impl Daemon {
    /// A daemon with a fresh state directory and database, in learning
    /// mode: the whole pipeline runs (verdicts, scoring, audit), but a
    /// tight benchmark loop is not escalated to an approval or an
    /// auto-lockdown.
    fn start() -> Daemon {
        let state = tempfile::Builder::new()
            .prefix("sentinel-bench-")
            .tempdir()
            .expect("a state dir")
            .keep();
        let child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["run", "--uid", &WATCHED.to_string(), "--jsonl", "/dev/null"])
            .args(["--mode", "silent-allow", "--state-dir"])
            .arg(&state)
            .arg("--db")
            .arg(state.join("sentinel.db"))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sentinel");
        let d = Daemon { child, state };
        let deadline = Instant::now() + Duration::from_secs(30);
        while d.status().is_none() {
            assert!(Instant::now() < deadline, "sentinel did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args(["status", "--json", "--state-dir"])
            .arg(&self.state)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())?
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn driver() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the benchmark needs root");
    // A port nobody listens on (bound, then closed).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let echo = echo_server();
    // Datagrams to it are dropped at its full receive queue, after the
    // ingress hook.
    let sink = UdpSocket::bind("127.0.0.1:0").expect("udp sink");
    let sink_port = sink.local_addr().expect("udp sink port").port();
    let workloads: [(&str, u64, u16); 5] = [
        ("open", 200_000, port),
        ("exec", 400, port),
        ("connect", 50_000, port),
        ("udp-send", 200_000, sink_port),
        ("tcp-rr", 50_000, echo),
    ];
    println!("Sentinel overhead benchmark: {ROUNDS} interleaved rounds, median ns per iteration\n");
    println!(
        "| workload | off | on, unwatched UID | on, watched UID | unwatched/off | watched/off |"
    );
    println!("|---|---|---|---|---|---|");
    for (workload, n, port) in workloads {
        let port = u64::from(port);
        let (mut off, mut unwatched, mut watched) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            off.push(run_child(UNWATCHED, workload, n, port));
            let daemon = Daemon::start();
            unwatched.push(run_child(UNWATCHED, workload, n, port));
            watched.push(run_child(WATCHED, workload, n, port));
            drop(daemon);
        }
        let (o, u, w) = (median(off), median(unwatched), median(watched));
        println!(
            "| {workload} ×{n} | {o} | {u} | {w} | {:.2} | {:.2} |",
            u as f64 / o as f64,
            w as f64 / o as f64
        );
    }

    // Drain: paced opens by the watched UID at rising rates, 5 s each, on
    // one daemon; the highest rate with no kernel drop is the sustained
    // zero-loss rate. Then an unpaced flood, to show what happens past it.
    let daemon = Daemon::start();
    println!("\n| target opens/s | events read/s | lost |");
    println!("|---|---|---|");
    let mut best = 0;
    for rate in [1_000u64, 2_000, 4_000, 8_000, 16_000] {
        let (read_per_s, lost) = drain(&daemon, rate * 5, Some(rate));
        println!("| {rate} | {read_per_s:.0} | {lost} |");
        if lost == 0 {
            best = rate;
        }
    }
    let (read_per_s, lost) = drain(&daemon, 200_000, None);
    println!("| unpaced flood | {read_per_s:.0} | {lost} |");
    println!("\nSustained with zero loss: {best} events/s (highest paced rate without a drop)");
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

/// Runs `n` opens as the watched UID (paced at `rate`/s, or as fast as
/// possible), waits for the daemon to read them, and returns the events
/// read per second of wall time and the drops the kernel counted.
fn drain(daemon: &Daemon, n: u64, rate: Option<u64>) -> (f64, u64) {
    let before = daemon.status().unwrap();
    let seen0 = before["events"]["seen"].as_u64().unwrap();
    let lost0 = before["events"]["lost"].as_u64().unwrap();
    let start = Instant::now();
    match rate {
        Some(r) => run_child(WATCHED, "open-paced", n, r),
        None => run_child(WATCHED, "open", n, 0),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut after = daemon.status().unwrap();
    loop {
        let seen = after["events"]["seen"].as_u64().unwrap() - seen0;
        let lost = after["events"]["lost"].as_u64().unwrap() - lost0;
        if seen + lost >= n || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        after = daemon.status().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let seen = after["events"]["seen"].as_u64().unwrap() - seen0;
    let lost = after["events"]["lost"].as_u64().unwrap() - lost0;
    (seen as f64 / elapsed, lost)
}
