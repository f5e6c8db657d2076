//! Shared harness for the real-kernel integration tests: a machine-wide
//! lock (every test shares one kernel), a running daemon that is always
//! stopped (and so detached) on drop, commands run as the dedicated test
//! UIDs, and waiting on the JSONL stream.
#![allow(dead_code)]

use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Watched by the daemons these tests start.
pub const WATCHED_UID: u32 = 2001;
/// Never watched.
pub const OTHER_UID: u32 = 2002;

pub fn sentinel_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sentinel"))
}

/// Fails loudly when a precondition is missing: these tests never pass by
/// skipping.
pub fn require_environment() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the kernel integration tests must run as root (use `sudo cargo xtask test`)"
    );
    for uid in [WATCHED_UID, OTHER_UID] {
        let ok = Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "test user {uid} is missing: run `cargo xtask setup`");
    }
}

/// A machine-wide lock held for the whole test: kernel programs attached
/// by one test are seen by every process.
pub struct KernelLock(File);

pub fn kernel_lock() -> KernelLock {
    let file = File::create("/tmp/sentinel-kernel-tests.lock").expect("creating the test lock");
    file.lock().expect("taking the test lock");
    KernelLock(file)
}

/// A unique token to find this test's events.
pub fn marker(name: &str) -> String {
    format!(
        "sentinel-{name}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
            ^ (std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos())
    )
}

/// A scratch directory every test UID can read and write.
pub fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("sentinel-test-")
        .tempdir_in("/tmp")
        .expect("creating a scratch dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

pub struct Daemon {
    child: Option<Child>,
    /// The command line it was started with (for `restart`).
    args: Vec<std::ffi::OsString>,
    /// The rule-less policy of `start_observing`, kept while it runs.
    policy: Option<tempfile::TempDir>,
    pub state_dir: tempfile::TempDir,
    pub jsonl: PathBuf,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Starts `sentinel run` watching `WATCHED_UID` with `extra` arguments
    /// and waits until `sentinel status` says it is attached.
    pub fn start(extra: &[&str]) -> Daemon {
        let state_dir = tempfile::Builder::new()
            .prefix("sentinel-state-")
            .tempdir()
            .unwrap();
        Daemon::start_with(state_dir, extra)
    }

    /// Stops this daemon and starts another on the same state directory
    /// and database (a restart), with `extra` arguments.
    pub fn restart_with(mut self, extra: &[&str]) -> Daemon {
        if self.child.is_some() {
            self.stop();
        }
        let state_dir = std::mem::replace(&mut self.state_dir, tempfile::tempdir().unwrap());
        let mut daemon = Daemon::start_with(state_dir, extra);
        daemon.policy = self.policy.take();
        daemon
    }

    fn start_with(state_dir: tempfile::TempDir, extra: &[&str]) -> Daemon {
        let jsonl = state_dir.path().join("events.jsonl");
        let stderr_path = state_dir.path().join("daemon.stderr");
        let mut args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--agent".into(),
            format!("testagent={WATCHED_UID}").into(),
            "--jsonl".into(),
            jsonl.clone().into(),
            "--state-dir".into(),
            state_dir.path().into(),
            "--db".into(),
            state_dir.path().join("sentinel.db").into(),
        ];
        args.extend(extra.iter().map(Into::into));
        let child = spawn_daemon(&args, &stderr_path);
        let mut daemon = Daemon {
            child: Some(child),
            args,
            policy: None,
            state_dir,
            jsonl,
            stderr_path,
        };
        daemon.wait_ready();
        daemon
    }

    /// `start` with a policy that has no rules: the daemon watches and
    /// records, and decides nothing (the defaults would, rightly, kill
    /// `echo > /dev/tcp/...`).
    pub fn start_observing(extra: &[&str]) -> Daemon {
        let policy = tempfile::tempdir().expect("a policy dir");
        std::fs::write(
            policy.path().join("empty.toml"),
            "# no rules: observe only\n",
        )
        .expect("writing the policy");
        let dir = policy.path().to_str().expect("utf-8").to_string();
        let mut args = vec!["--policy", dir.as_str()];
        args.extend_from_slice(extra);
        let mut daemon = Daemon::start(&args);
        daemon.policy = Some(policy);
        daemon
    }

    /// Stops the daemon (SIGTERM) and starts it again with the same
    /// command line, state directory and database.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            assert!(self.stop().success(), "sentinel did not stop cleanly");
        }
        self.child = Some(spawn_daemon(&self.args, &self.stderr_path));
        self.wait_ready();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    pub fn state_dir(&self) -> &Path {
        self.state_dir.path()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sentinel exited early with {status}: {}",
                    std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
                );
            }
            let ok = Command::new(sentinel_bin())
                .args(["status", "--state-dir"])
                .arg(self.state_dir())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sentinel did not become ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `sentinel status --json`.
    pub fn status(&self) -> Value {
        let out = Command::new(sentinel_bin())
            .args(["status", "--json", "--state-dir"])
            .arg(self.state_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "status failed: {out:?}");
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Every event written so far.
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.jsonl).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}"))
            })
            .collect()
    }

    /// Waits until an event matches `pred`; returns it.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(ev) = self.events().into_iter().find(|e| pred(e)) {
                return ev;
            }
            assert!(
                Instant::now() < deadline,
                "no event {what} within 15 s; the stream has {} events:\n{}",
                self.events().len(),
                std::fs::read_to_string(&self.jsonl)
                    .unwrap_or_default()
                    .lines()
                    .rev()
                    .take(20)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for a clean exit (the stream is flushed and
    /// every program detached when it returns).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("daemon already stopped");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("sentinel did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Daemon {
    /// SIGKILL, as a crash or an attacker would: nothing is cleaned up and
    /// the pinned programs stay attached. `restart()` starts it again.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        let _ = child.wait();
    }

    /// Whether the daemon process is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the daemon to exit on its own (killed by someone else).
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().ok()? {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

/// Where a daemon on `state_dir` pins its programs (`sentinel::pins`).
pub fn pin_dir(state_dir: &Path) -> PathBuf {
    let key: String = state_dir
        .to_string_lossy()
        .trim_matches('/')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    PathBuf::from("/sys/fs/bpf/sentinel").join(&key[key.len().saturating_sub(200)..])
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Whatever happened, a test daemon leaves nothing attached.
        let _ = std::fs::remove_dir_all(pin_dir(self.state_dir()));
    }
}

fn spawn_daemon(args: &[std::ffi::OsString], stderr: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(stderr)
        .unwrap();
    Command::new(sentinel_bin())
        .args(args)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting sentinel")
}

/// A command that will run as `uid` (its primary group is the same number).
pub fn as_user(uid: u32, program: &str) -> Command {
    let mut cmd = Command::new(program);
    // std drops root's supplementary groups when it changes the UID;
    // cargo's LD_LIBRARY_PATH would make the loader look in target/ first.
    cmd.uid(uid)
        .gid(uid)
        .current_dir("/tmp")
        .env("HOME", "/tmp")
        .env_remove("LD_LIBRARY_PATH");
    cmd
}

pub fn run(mut cmd: Command) -> Output {
    cmd.output().expect("running a test command")
}

/// How a denied exec was stopped before the program ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// execve failed with EPERM (BPF LSM, or the fanotify file guard).
    Eperm,
    /// SIGKILL before the program's first instruction (the fallback).
    Killed,
}

/// Runs `cmd`, which must be refused before it runs; says how.
pub fn exec_refused(mut cmd: Command) -> Refused {
    match cmd.output() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Refused::Eperm,
        Err(e) => panic!("the exec failed, but not with EPERM: {e}"),
        Ok(out) => {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                out.status.signal(),
                Some(9),
                "the denied program ran: {out:?}"
            );
            assert!(out.stdout.is_empty(), "the denied program ran: {out:?}");
            Refused::Killed
        }
    }
}

/// Runs a shell line as `uid`.
pub fn sh_as(uid: u32, line: &str) -> Output {
    let mut cmd = as_user(uid, "/bin/bash");
    cmd.args(["-c", line]);
    run(cmd)
}

pub fn str_field<'a>(ev: &'a Value, key: &str) -> &'a str {
    ev[key].as_str().unwrap_or("")
}
