//! Enforcement against the real host kernel (BPF LSM is refused here, so
//! the fallbacks are what is tested: SIGKILL from the tracepoints for exec
//! and open, cgroup connect hooks for connect): denied actions fail for the
//! watched UID and succeed for an unwatched one, `ask` holds the process
//! until a human answers (once), rules the kernel cannot decide are
//! enforced by the daemon, lockdown and back, and the audit chain verifies.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

struct Fixture {
    dir: tempfile::TempDir,
    port: u16,
    _listener: TcpListener,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = scratch_dir();
        let d = dir.path();
        for name in ["forbidden-tool", "needs-approval"] {
            std::fs::copy("/bin/echo", d.join(name)).unwrap();
            std::fs::set_permissions(d.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        std::fs::write(d.join("secret.txt"), "TOP-SECRET-CONTENT\n").unwrap();
        std::fs::set_permissions(d.join("secret.txt"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accept in the background so allowed connects complete.
        let l = listener.try_clone().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                drop(s);
            }
        });
        let policy = d.join("policy");
        std::fs::create_dir(&policy).unwrap();
        std::fs::write(
            policy.join("test.toml"),
            format!(
                r#"
[[rule]]
name = "deny-test-exec"
kind = "exec"
action = "deny"
binary = ["{d}/forbidden-tool"]

[[rule]]
name = "ask-test-exec"
kind = "exec"
action = "ask"
binary = ["{d}/needs-approval"]

[[rule]]
name = "deny-test-open"
kind = "open"
action = "deny"
path = ["{d}/secret.txt"]

[[rule]]
name = "deny-test-connect"
kind = "connect"
action = "deny"
addr = ["127.0.0.1/32"]
port = {port}

[[rule]]
name = "deny-argv-regex"
kind = "exec"
action = "deny"
args = "sentinel-userspace-only-marker"

[lockdown]
exec = ["/usr/bin/true"]
open = ["/etc/ld.so.cache", "/lib/**", "/usr/lib/**"]
"#,
                d = d.display()
            ),
        )
        .unwrap();
        Fixture {
            dir,
            port,
            _listener: listener,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn start(&self) -> Daemon {
        Daemon::start(&["--policy", &self.path("policy"), "--approval-timeout", "30"])
    }
}

fn verdict_of(ev: &Value) -> &Value {
    &ev["verdict"]
}

fn ctl(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    Command::new(sentinel_bin())
        .args(args)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .unwrap()
}

#[test]
fn denied_exec_and_open_are_refused_for_the_watched_uid_only() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();

    // Where the file guard runs (no BPF LSM), a protected file is refused
    // with EPERM before the call like under the LSM, not killed after it.
    let guarded = daemon.status()["enforcement"]["exec"] == "fanotify+sigkill";

    // exec
    let how = exec_refused(as_user(WATCHED_UID, &fx.path("forbidden-tool")));
    if guarded {
        assert_eq!(how, Refused::Eperm, "refused before it ran");
    }
    let ev = daemon.wait_for("denied exec", |e| {
        e["kind"] == "exec" && e["verdict"]["rule"] == "deny-test-exec"
    });
    assert_eq!(verdict_of(&ev)["action"], "deny");
    assert_eq!(verdict_of(&ev)["enforced"], true);
    let out = run({
        let mut c = as_user(OTHER_UID, &fx.path("forbidden-tool"));
        c.arg("fine");
        c
    });
    assert!(out.status.success(), "unwatched exec must run: {out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "fine");

    // open
    let secret = fx.path("secret.txt");
    let out = run({
        let mut c = as_user(WATCHED_UID, "/bin/cat");
        c.arg(&secret);
        c
    });
    if guarded {
        assert!(
            out.status.code() == Some(1)
                && String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"),
            "watched open must be refused with EPERM: {out:?}"
        );
    } else {
        assert_eq!(
            out.status.signal(),
            Some(9),
            "watched open must be killed: {out:?}"
        );
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("TOP-SECRET"),
        "the content never reached the agent"
    );
    let ev = daemon.wait_for("denied open", |e| {
        e["kind"] == "open" && e["path"] == secret.as_str() && e["verdict"]["action"] == "deny"
    });
    assert_eq!(verdict_of(&ev)["rule"], "deny-test-open");
    assert_eq!(verdict_of(&ev)["enforced"], true);
    let out = run({
        let mut c = as_user(OTHER_UID, "/bin/cat");
        c.arg(&secret);
        c
    });
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("TOP-SECRET"));

    let s = daemon.status();
    assert_eq!(s["enforcement"]["exec"], "fanotify+sigkill");
    assert_eq!(s["enforcement"]["open"], "fanotify+sigkill");
    assert!(s["file_guard"]["marked"].as_u64().unwrap_or(0) > 0, "{s}");
    let in_kernel: Vec<&str> = s["decided_in_kernel"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for rule in [
        "deny-test-exec",
        "ask-test-exec",
        "deny-test-open",
        "deny-test-connect",
    ] {
        assert!(
            in_kernel.contains(&rule),
            "{rule} not compiled: {in_kernel:?}"
        );
    }
    assert!(
        s["decided_in_userspace"]
            .to_string()
            .contains("deny-argv-regex"),
        "{s}"
    );
    assert!(daemon.stop().success());

    // The audit chain of this run verifies.
    let out = Command::new(sentinel_bin())
        .args(["audit", "verify", "--db"])
        .arg(daemon.state_dir().join("sentinel.db"))
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "audit verify: {out:?}");
}

#[test]
fn denied_connect_gets_eperm_and_unwatched_connects() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();
    let line = format!("echo hi > /dev/tcp/127.0.0.1/{}", fx.port);
    let out = sh_as(WATCHED_UID, &line);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Operation not permitted"),
        "EPERM expected: {err}"
    );
    let ev = daemon.wait_for("denied connect", |e| {
        e["kind"] == "connect" && e["port"] == fx.port
    });
    assert_eq!(verdict_of(&ev)["action"], "deny");
    assert_eq!(verdict_of(&ev)["rule"], "deny-test-connect");
    assert_eq!(verdict_of(&ev)["enforced"], true);
    let out = sh_as(OTHER_UID, &line);
    assert!(out.status.success(), "unwatched connect must work: {out:?}");
    assert_eq!(daemon.status()["enforcement"]["connect"], "cgroup");
    daemon.stop();
}

fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..].chars().next()
}

fn approval_id(daemon: &Daemon, pid: u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = daemon.status();
        if let Some(a) = s["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["pid"] == pid)
        {
            return a["id"].to_string();
        }
        assert!(Instant::now() < deadline, "no approval for pid {pid}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ask_holds_the_process_until_approved_once() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();

    // Where the file guard runs, the exec waits inside execve (nothing of
    // the new program has run) and a denial fails it with EPERM; otherwise
    // the kernel stops the process after the exec and a denial kills it.
    let in_the_call = daemon.status()["enforcement"]["exec"]
        .as_str()
        .is_some_and(|m| m.starts_with("fanotify"));
    // Through `sh -c exec`, so spawning does not itself wait for the exec.
    let held = |arg: &str| {
        as_user(WATCHED_UID, "/bin/sh")
            .args(["-c", &format!("exec {} {arg}", fx.path("needs-approval"))])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Approved: the program runs to completion after the approval.
    let mut child = held("approved-output");
    let pid = child.id();
    let id = approval_id(&daemon, pid);
    let tool = fx.path("needs-approval");
    let ev = daemon.wait_for("ask event", |e| {
        e["kind"] == "exec" && e["pid"] == pid && e["exe"] == tool.as_str()
    });
    assert_eq!(verdict_of(&ev)["action"], "ask");
    assert_eq!(verdict_of(&ev)["rule"], "ask-test-exec");
    std::thread::sleep(Duration::from_millis(300));
    if in_the_call {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        assert!(
            syscall.starts_with(&format!("{} ", libc::SYS_execve)),
            "held inside execve until a human answers: {syscall}"
        );
    } else {
        assert_eq!(
            proc_state(pid),
            Some('T'),
            "held (stopped) until a human answers"
        );
    }
    assert!(child.try_wait().unwrap().is_none());
    let out = ctl(&daemon, &["approve", &id]);
    assert!(out.status.success(), "{out:?}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text.trim(), "approved-output");
    // One-shot: the same id does not approve twice.
    let again = ctl(&daemon, &["approve", &id]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");

    // Denied: the held exec is refused, or the held process killed.
    let mut child = held("never");
    let id = approval_id(&daemon, child.id());
    assert!(ctl(&daemon, &["deny", &id]).status.success());
    let status = child.wait().unwrap();
    let mut said = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(!said.contains("never"), "the denied program ran: {said}");
    if in_the_call {
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "{status:?}");
        assert!(err.contains("Operation not permitted"), "{err}");
    } else {
        assert_eq!(status.signal(), Some(9));
    }
    daemon.stop();
}

#[test]
fn rules_the_kernel_cannot_decide_are_enforced_by_the_daemon() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();
    let start = Instant::now();
    let out = run({
        let mut c = as_user(WATCHED_UID, "/bin/sh");
        c.args(["-c", "sleep 10", "sentinel-userspace-only-marker"]);
        c
    });
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "killed, not finished"
    );
    let ev = daemon.wait_for("userspace deny", |e| {
        e["verdict"]["rule"] == "deny-argv-regex"
    });
    assert_eq!(verdict_of(&ev)["action"], "deny");
    assert_eq!(
        verdict_of(&ev)["enforced"],
        false,
        "not a synchronous kernel block"
    );
    assert!(verdict_of(&ev)["reason"]
        .as_str()
        .unwrap()
        .contains("after the call"));
    daemon.stop();
}

#[test]
fn lockdown_denies_everything_but_the_allow_list_and_lifts() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();
    assert!(ctl(&daemon, &["mode", "set", "lockdown"]).status.success());
    let mode = ctl(&daemon, &["mode", "get"]);
    assert_eq!(String::from_utf8_lossy(&mode.stdout).trim(), "lockdown");
    // On the allow-list: runs.
    let out = run(as_user(WATCHED_UID, "/usr/bin/true"));
    assert!(
        out.status.success(),
        "allow-listed binary: {out:?}\n{}",
        daemon
            .events()
            .iter()
            .rev()
            .take(8)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Not on it: killed.
    let out = run({
        let mut c = as_user(WATCHED_UID, "/bin/echo");
        c.arg("x");
        c
    });
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    // The operator (root, unwatched) is never locked out.
    assert!(Command::new("/bin/echo")
        .arg("root")
        .output()
        .unwrap()
        .status
        .success());
    daemon.wait_for("mode change", |e| {
        e["kind"] == "mode_change" && e["to"] == "lockdown"
    });
    daemon.wait_for("lockdown deny", |e| {
        e["kind"] == "exec" && e["verdict"]["rule"] == "lockdown"
    });
    // Lifted.
    assert!(ctl(&daemon, &["mode", "set", "alert"]).status.success());
    let out = run({
        let mut c = as_user(WATCHED_UID, "/bin/echo");
        c.arg("back");
        c
    });
    assert!(out.status.success(), "{out:?}");
    daemon.stop();
    assert!(Path::new(&daemon.jsonl).exists());
}

#[test]
fn a_policy_reload_that_fails_keeps_the_old_policy() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();
    let pid = daemon.pid();
    let policy = fx.dir.path().join("policy");
    // A broken file: the reload fails, the old rules stay in force.
    std::fs::write(
        policy.join("zz-broken.toml"),
        "[[rule]]\nname = \"x\"\nkind = \"exec\"\naction = \"maybe\"\n",
    )
    .unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    daemon.wait_for("the failed reload", |e| {
        e["kind"] == "alert"
            && e["category"] == "policy"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .contains("stays in force")
    });
    // The old deny rule still holds.
    exec_refused(as_user(WATCHED_UID, &fx.path("forbidden-tool")));
    // Fixed: a new rule comes into force, in the kernel too.
    std::fs::write(
        policy.join("zz-broken.toml"),
        format!("[[rule]]\nname = \"deny-true-now\"\nkind = \"exec\"\naction = \"deny\"\nbinary = [\"{}\"]\n", fx.path("needs-approval")),
    )
    .unwrap();
    std::fs::remove_file(policy.join("test.toml")).unwrap();
    unsafe { libc::kill(pid as i32, libc::SIGHUP) };
    daemon.wait_for("the reload", |e| {
        e["kind"] == "alert"
            && e["reason"]
                .as_str()
                .unwrap_or("")
                .starts_with("policy reloaded")
    });
    exec_refused(as_user(WATCHED_UID, &fx.path("needs-approval")));
    let out = run(as_user(WATCHED_UID, &fx.path("forbidden-tool")));
    assert!(
        out.status.success(),
        "the removed rule no longer applies: {out:?}"
    );
    let s = daemon.status();
    assert!(
        s["decided_in_kernel"].to_string().contains("deny-true-now"),
        "{s}"
    );
    daemon.stop();
}

/// `ask` on an open and on a connect holds the call before it takes
/// effect: nothing of the file is read and no connection is made until the
/// operator answers; approved, the call completes; denied, it fails.
#[test]
fn ask_holds_opens_and_connects_before_they_happen() {
    require_environment();
    let _lock = kernel_lock();
    let dir = scratch_dir();
    let d = dir.path();
    let held = d.join("held.txt");
    std::fs::write(&held, "HELD-CONTENT\n").unwrap();
    std::fs::set_permissions(&held, std::fs::Permissions::from_mode(0o644)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = d.join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(
        policy.join("ask.toml"),
        format!(
            "[[rule]]\nname = \"ask-test-open\"\nkind = \"open\"\naction = \"ask\"\npath = [\"{}\"]\n\n[[rule]]\nname = \"ask-test-connect\"\nkind = \"connect\"\naction = \"ask\"\naddr = [\"127.0.0.1/32\"]\nport = {port}\n",
            held.display()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&[
        "--policy",
        policy.to_str().unwrap(),
        "--approval-timeout",
        "30",
    ]);
    let guarded = daemon.status()["enforcement"]["open"] == "fanotify+sigkill";
    let cat = || {
        as_user(WATCHED_UID, "/bin/cat")
            .arg(&held)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };

    // Open, approved.
    let mut child = cat();
    let pid = child.id();
    let id = approval_id(&daemon, pid);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "held until answered");
    if guarded {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        assert!(
            syscall.starts_with(&format!("{} ", libc::SYS_openat)),
            "held inside openat, before the file is open: {syscall}"
        );
    }
    assert!(ctl(&daemon, &["approve", &id]).status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "HELD-CONTENT\n");

    // Open, denied: nothing read.
    let child = cat();
    let id = approval_id(&daemon, child.id());
    assert!(ctl(&daemon, &["deny", &id]).status.success());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // Connect: no connection exists while it is held.
    let connect = format!(
        "import socket\ns = socket.create_connection(('127.0.0.1', {port}), timeout=60)\nprint('connected')\n"
    );
    let child = as_user(WATCHED_UID, "/usr/bin/python3")
        .args(["-c", &connect])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = approval_id(&daemon, child.id());
    std::thread::sleep(Duration::from_millis(500));
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a held connect reached the listener: {other:?}"),
    }
    assert!(ctl(&daemon, &["approve", &id]).status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "connected");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match listener.accept() {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "the approved connect never arrived"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    }
    daemon.stop();
}
