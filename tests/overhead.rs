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
//! listener. Drain rate: the watched UID runs an open loop as fast as it
//! can; events seen per second of wall time, and the lost counter, come
//! from the daemon's own status.

use std::net::TcpListener;
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
        child(&args[2], args[3].parse().expect("iterations"), args.get(4));
        return;
    }
    driver();
}

/// The workload loop; prints ns per iteration.
fn child(workload: &str, n: u64, port: Option<&String>) {
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
            let port: u16 = port.expect("port").parse().expect("port");
            for _ in 0..n {
                drop(std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect"));
            }
        }
        other => panic!("unknown workload {other}"),
    }
    println!("{}", start.elapsed().as_nanos() as u64 / n);
}

fn run_child(uid: u32, workload: &str, n: u64, port: u16) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["child", workload, &n.to_string(), &port.to_string()])
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
    fn start() -> Daemon {
        let state = std::env::temp_dir().join(format!("sentinel-bench-{}", std::process::id()));
        std::fs::create_dir_all(&state).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sentinel"))
            .args([
                "run",
                "--uid",
                &WATCHED.to_string(),
                "--jsonl",
                "/dev/null",
                "--state-dir",
            ])
            .arg(&state)
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
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn driver() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the benchmark needs root");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let workloads: [(&str, u64); 3] = [("open", 200_000), ("exec", 400), ("connect", 5_000)];
    println!("Sentinel overhead benchmark: {ROUNDS} interleaved rounds, median ns per iteration\n");
    println!(
        "| workload | off | on, unwatched UID | on, watched UID | unwatched/off | watched/off |"
    );
    println!("|---|---|---|---|---|---|");
    for (workload, n) in workloads {
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

    // Sustained drain rate with zero loss.
    let daemon = Daemon::start();
    let before = daemon.status().unwrap();
    let start = Instant::now();
    let n = 400_000;
    run_child(WATCHED, "open", n, port);
    // Wait until the daemon has seen every open (or give up after 30 s).
    let seen0 = before["events"]["seen"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = daemon.status().unwrap();
    while after["events"]["seen"].as_u64().unwrap() - seen0 < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        after = daemon.status().unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let seen = after["events"]["seen"].as_u64().unwrap() - seen0;
    let lost = after["events"]["lost"].as_u64().unwrap();
    println!(
        "\nDrain: {seen} events in {elapsed:.2} s = {:.0} events/s, lost {lost}",
        seen as f64 / elapsed
    );
}
