//! The monitors a workload runs under: the sentinel daemon, and the two
//! peers from Debian it is compared with — bpftrace with one tracepoint
//! filtered on the watched UID, and auditd with one `openat` rule on the
//! watched UID. Each is a guard: dropping it stops the monitor and undoes
//! what it changed on the host (bpftrace detached, auditd stopped, its rule
//! deleted, the kernel's audit settings put back).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The sentinel daemon on a fresh state directory and database, in
/// learning mode (`silent-allow`): the whole pipeline runs — verdicts,
/// scoring, detector, audit chain, a JSONL sink to /dev/null — but a tight
/// benchmark loop is not escalated to an approval or an auto-lockdown.
pub struct Sentinel {
    child: Child,
    pub state: PathBuf,
}

impl Sentinel {
    pub fn start(uids: &[u32]) -> Sentinel {
        let state = tempfile::Builder::new()
            .prefix("sentinel-bench-")
            .tempdir()
            .expect("a state dir")
            .keep();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sentinel"));
        cmd.arg("run");
        for uid in uids {
            cmd.args(["--uid", &uid.to_string()]);
        }
        let child = cmd
            .args([
                "--jsonl",
                "/dev/null",
                "--mode",
                "silent-allow",
                "--state-dir",
            ])
            .arg(&state)
            .arg("--db")
            .arg(state.join("sentinel.db"))
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sentinel");
        let d = Sentinel { child, state };
        let deadline = Instant::now() + Duration::from_secs(60);
        while d.status().is_none() {
            assert!(Instant::now() < deadline, "sentinel did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn db(&self) -> PathBuf {
        self.state.join("sentinel.db")
    }

    /// `sentinel status --json`, `None` while it does not answer.
    pub fn status(&self) -> Option<serde_json::Value> {
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

impl Drop for Sentinel {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Says which of the peers' programs is missing, with what to do.
pub fn check_peers_installed() -> Result<(), String> {
    for tool in ["bpftrace", "auditd", "auditctl"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(format!(
                "{tool} is not installed: run `sudo cargo xtask bench`, which installs bpftrace and auditd from Debian"
            ));
        }
    }
    Ok(())
}

/// bpftrace with one tracepoint (`sys_enter_openat`) filtered on `uid`,
/// printing pid, comm and path of each match — an event stream, as the
/// sentinel produces one. Its output is read and discarded.
pub struct Bpftrace {
    child: Child,
    drain: Option<std::thread::JoinHandle<u64>>,
}

impl Bpftrace {
    pub fn start(uid: u32) -> Bpftrace {
        let program = format!(
            "tracepoint:syscalls:sys_enter_openat /uid == {uid}/ {{ printf(\"%d %s %s\\n\", pid, comm, str(args->filename)); }}"
        );
        let mut child = Command::new("bpftrace")
            .args(["-e", &program])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting bpftrace");
        let stdout = child.stdout.take().expect("bpftrace stdout");
        let (ready, attached) = mpsc::channel();
        let drain = std::thread::spawn(move || {
            let mut lines = 0u64;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("Attaching") {
                    let _ = ready.send(());
                } else {
                    lines += 1;
                }
            }
            lines
        });
        let mut peer = Bpftrace {
            child,
            drain: Some(drain),
        };
        if attached.recv_timeout(Duration::from_secs(120)).is_err() {
            peer.stop();
            panic!("bpftrace did not attach within 120 s");
        }
        peer
    }

    /// Detaches; returns how many events it printed.
    fn stop(&mut self) -> u64 {
        // SIGINT: bpftrace detaches and exits.
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.drain.take().and_then(|d| d.join().ok()).unwrap_or(0)
    }
}

impl Drop for Bpftrace {
    fn drop(&mut self) {
        self.stop();
    }
}

/// auditd (foreground, its log in a private directory) with one rule:
/// `-a always,exit -F arch=b64 -S openat -F uid=UID`, and the kernel
/// backlog Debian's shipped rules set (8192). Dropping it deletes the
/// rule, stops auditd and restores the kernel's audit settings.
pub struct Auditd {
    child: Option<Child>,
    rule: Vec<String>,
    before: AuditStatus,
    /// auditd's configuration and log; removed when dropped.
    _dir: tempfile::TempDir,
}

/// The kernel audit settings the bench changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditStatus {
    pub enabled: u64,
    pub pid: u64,
    pub backlog_limit: u64,
}

pub fn audit_status() -> AuditStatus {
    let out = Command::new("auditctl")
        .arg("-s")
        .output()
        .expect("running auditctl -s");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    AuditStatus {
        enabled: field("enabled "),
        pid: field("pid "),
        backlog_limit: field("backlog_limit "),
    }
}

/// `auditctl -l` lines that are rules (not "No rules").
pub fn audit_rules() -> Vec<String> {
    let out = Command::new("auditctl")
        .arg("-l")
        .output()
        .expect("running auditctl -l");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('-'))
        .map(str::to_string)
        .collect()
}

fn auditctl(args: &[&str]) {
    let status = Command::new("auditctl")
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("running auditctl");
    assert!(status.success(), "auditctl {args:?} failed");
}

impl Auditd {
    pub fn start(uid: u32) -> Auditd {
        let before = audit_status();
        assert_eq!(
            before.pid, 0,
            "an audit daemon is already running (pid {}): stop it before benchmarking",
            before.pid
        );
        let dir = tempfile::Builder::new()
            .prefix("sentinel-bench-auditd-")
            .tempdir()
            .expect("auditd dir");
        let conf =
            std::fs::read_to_string("/etc/audit/auditd.conf").expect("/etc/audit/auditd.conf");
        let log = dir.path().join("audit.log");
        let conf: String = conf
            .lines()
            .map(|l| {
                if l.trim_start().starts_with("log_file") {
                    format!("log_file = {}\n", log.display())
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        let conf_path = dir.path().join("auditd.conf");
        std::fs::write(&conf_path, conf).expect("auditd.conf");
        std::fs::set_permissions(
            &conf_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .expect("auditd.conf mode");
        let child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting auditd");
        let rule: Vec<String> = ["always,exit", "-F", "arch=b64", "-S", "openat", "-F"]
            .iter()
            .map(|s| s.to_string())
            .chain([format!("uid={uid}"), "-k".into(), "sentinel-bench".into()])
            .collect();
        let mut peer = Auditd {
            child: Some(child),
            rule,
            before,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while audit_status().pid == 0 {
            if Instant::now() > deadline {
                peer.stop();
                panic!("auditd did not register with the kernel within 20 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        auditctl(&["-b", "8192"]);
        let mut add = vec!["-a"];
        add.extend(peer.rule.iter().map(String::as_str));
        auditctl(&add);
        peer
    }

    fn stop(&mut self) {
        let mut delete = vec!["-d"];
        delete.extend(self.rule.iter().map(String::as_str));
        let _ = Command::new("auditctl")
            .args(&delete)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let backlog = self.before.backlog_limit.to_string();
        let enabled = self.before.enabled.to_string();
        for setting in [["-b", &backlog], ["-e", &enabled]] {
            let _ = Command::new("auditctl")
                .args(setting)
                .stdout(Stdio::null())
                .status();
        }
    }
}

impl Drop for Auditd {
    fn drop(&mut self) {
        self.stop();
    }
}
