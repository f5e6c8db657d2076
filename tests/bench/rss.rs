//! The daemon's memory with many tracked processes. A helper process of
//! the watched UID creates N processes that wait; the daemon learns of each
//! from its fork event and keeps it in its process table (`status` says how
//! many it tracks: `tracked_processes`); then the daemon's /proc status is read.
//!
//! How the processes are made, exactly: `clone(CLONE_VM | SIGCHLD)` — each
//! is a process of its own (its own PID and thread group, its own fork and
//! exit events, its own /proc entry), sharing the helper's memory so that
//! 100,000 of them fit in the machine's RAM (a plain fork cost about 114
//! KiB of kernel memory each here, clone(CLONE_VM) about 28 KiB). The
//! helper keeps CAP_SYS_ADMIN after becoming the watched UID, because
//! RLIMIT_NPROC (which root without CAP_SYS_RESOURCE cannot raise on these
//! machines) would stop one UID below 100,000 processes. `kernel.pid_max`
//! is raised for the run and restored after it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::monitors::Sentinel;

/// The daemon gives freed heap back to the kernel every 10 s: readings
/// are taken one period after the count settles.
const RELEASE_PERIOD: Duration = Duration::from_secs(11);

/// The helper's argv[1].
pub const TREE: &str = "tree";

/// Memory of the daemon, from /proc/PID/status and smaps, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
    /// Of `file`: BPF maps mapped into the daemon (the ring buffer).
    pub bpf_maps: u64,
    pub peak: u64,
}

pub fn rss_of(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut bpf_maps = 0;
    let mut in_bpf_map = false;
    for line in smaps.lines() {
        if line.contains(" anon_inode:bpf-map") {
            in_bpf_map = true;
        } else if let Some(rss) = line.strip_prefix("Rss:") {
            if in_bpf_map {
                bpf_maps += rss
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            in_bpf_map = false;
        }
    }
    Rss {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:") + field("RssShmem:"),
        bpf_maps,
        peak: field("VmHWM:"),
    }
}

/// Raises `kernel.pid_max` to at least `wanted`; restores it when dropped.
struct PidMax(Option<String>);

const PID_MAX: &str = "/proc/sys/kernel/pid_max";

impl PidMax {
    fn at_least(wanted: u64) -> PidMax {
        let old = std::fs::read_to_string(PID_MAX).expect("reading kernel.pid_max");
        if old.trim().parse::<u64>().unwrap_or(0) >= wanted {
            return PidMax(None);
        }
        std::fs::write(PID_MAX, wanted.to_string()).expect("raising kernel.pid_max");
        PidMax(Some(old))
    }
}

impl Drop for PidMax {
    fn drop(&mut self) {
        if let Some(old) = self.0.take() {
            if let Err(e) = std::fs::write(PID_MAX, old.trim()) {
                eprintln!("could not restore kernel.pid_max to {}: {e}", old.trim());
            }
        }
    }
}

extern "C" fn wait_forever(_: *mut libc::c_void) -> libc::c_int {
    // SAFETY: plain syscalls; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        loop {
            libc::pause();
        }
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The helper: run as root, becomes `uid` keeping CAP_SYS_ADMIN only,
/// creates `n` waiting processes, prints `ready K`, and exits (its
/// processes with it) when its stdin closes.
pub fn tree(uid: u32, n: usize) {
    const CAP_SYS_ADMIN: u32 = 21;
    const CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    // SAFETY: plain syscalls with valid arguments; `header` and `data`
    // live across the capset call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_KEEPCAPS, 1), 0, "PR_SET_KEEPCAPS");
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0, "setgroups");
        assert_eq!(libc::setgid(uid), 0, "setgid");
        assert_eq!(libc::setuid(uid), 0, "setuid");
        let header = CapHeader {
            version: CAPABILITY_VERSION_3,
            pid: 0,
        };
        let admin = CapData {
            effective: 1 << CAP_SYS_ADMIN,
            permitted: 1 << CAP_SYS_ADMIN,
            inheritable: 0,
        };
        let none = CapData {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        };
        let data = [admin, none];
        assert_eq!(
            libc::syscall(libc::SYS_capset, &header, data.as_ptr()),
            0,
            "capset: {}",
            std::io::Error::last_os_error()
        );
    }
    const STACK: usize = 8192;
    // SAFETY: an anonymous private mapping; each process gets its own
    // STACK-sized slice of it.
    let stacks = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            n * STACK,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    assert_ne!(stacks, libc::MAP_FAILED, "mmap for {n} stacks");
    let stacks = stacks as *mut u8;
    let mut made = 0;
    for i in 0..n {
        // SAFETY: the stack top is inside the mapping and 16-byte aligned;
        // `wait_forever` touches nothing but its own stack.
        let pid = unsafe {
            libc::clone(
                wait_forever,
                stacks.add((i + 1) * STACK) as *mut libc::c_void,
                libc::CLONE_VM | libc::SIGCHLD,
                std::ptr::null_mut(),
            )
        };
        if pid <= 0 {
            eprintln!(
                "process {i} could not be created: {}",
                std::io::Error::last_os_error()
            );
            break;
        }
        made += 1;
    }
    println!("ready {made}");
    let _ = std::io::stdout().flush();
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
    // SAFETY: kill has no memory-safety preconditions; the group is ours.
    unsafe { libc::kill(0, libc::SIGKILL) };
}

/// What one measurement found.
pub struct RssReport {
    pub idle: Rss,
    pub wanted: usize,
    pub made: usize,
    pub tracked: u64,
    pub with_processes: Rss,
    pub untracked_children: u64,
    pub after_exit: Rss,
    pub tracked_after_exit: u64,
}

fn tracked(daemon: &Sentinel) -> u64 {
    daemon
        .status()
        .and_then(|s| s["tracked_processes"].as_u64())
        .unwrap_or(0)
}

/// Polls the tracked count until `done` or until it stops moving for 5 s
/// (at most 5 minutes); returns the last count.
fn settle(daemon: &Sentinel, done: impl Fn(u64) -> bool) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(300);
    let (mut last, mut since) = (tracked(daemon), Instant::now());
    while !done(last) && since.elapsed() < Duration::from_secs(5) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let now = tracked(daemon);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// Measures the daemon's memory idle, with `n` processes of `uid`
/// tracked, and after they exit.
pub fn measure(uid: u32, n: usize) -> RssReport {
    let _pid_max = PidMax::at_least((n as u64) * 2 + 32_768);
    let daemon = Sentinel::start(&[uid]);
    std::thread::sleep(RELEASE_PERIOD);
    let idle = rss_of(daemon.pid());
    let mut helper = Command::new(std::env::current_exe().expect("bench binary"))
        .args([TREE, &uid.to_string(), &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("starting the process-tree helper");
    let group = helper.id() as i32;
    let mut line = String::new();
    BufReader::new(helper.stdout.take().expect("helper stdout"))
        .read_line(&mut line)
        .expect("reading the helper");
    let made: usize = line
        .trim()
        .strip_prefix("ready ")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    // Until the table holds them all, or stops growing for 5 s; then one
    // period of the daemon's release of freed heap (every 10 s).
    let tracked_with = settle(&daemon, |n| n >= made as u64);
    std::thread::sleep(RELEASE_PERIOD);
    let with_processes = rss_of(daemon.pid());
    let untracked_children = daemon
        .status()
        .and_then(|s| s["events"]["untracked_children"].as_u64())
        .unwrap_or(0);
    drop(helper.stdin.take());
    // SAFETY: kill has no memory-safety preconditions; the group is the
    // helper's own.
    unsafe { libc::kill(-group, libc::SIGKILL) };
    let _ = helper.wait();
    // Until the exits are read, and the daemon's release of freed heap.
    settle(&daemon, |n| n < 100);
    std::thread::sleep(RELEASE_PERIOD);
    RssReport {
        idle,
        wanted: n,
        made,
        tracked: tracked_with,
        with_processes,
        untracked_children,
        after_exit: rss_of(daemon.pid()),
        tracked_after_exit: tracked(&daemon),
    }
}
