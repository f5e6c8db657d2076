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
fn denied_exec_and_open_are_killed_for_the_watched_uid_only() {
    require_environment();
    let _lock = kernel_lock();
    let fx = Fixture::new();
    let mut daemon = fx.start();

    // exec
    let out = run(as_user(WATCHED_UID, &fx.path("forbidden-tool")));
    assert_eq!(
        out.status.signal(),
        Some(9),
        "watched exec must be killed: {out:?}"
    );
    assert!(out.stdout.is_empty(), "the denied program never ran");
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
    assert_eq!(
        out.status.signal(),
        Some(9),
        "watched open must be killed: {out:?}"
    );
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

    // Approved: the program runs to completion after the approval.
    let mut child = as_user(WATCHED_UID, &fx.path("needs-approval"))
        .arg("approved-output")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let id = approval_id(&daemon, pid);
    let ev = daemon.wait_for("ask event", |e| e["kind"] == "exec" && e["pid"] == pid);
    assert_eq!(verdict_of(&ev)["action"], "ask");
    assert_eq!(verdict_of(&ev)["rule"], "ask-test-exec");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        proc_state(pid),
        Some('T'),
        "held (stopped) until a human answers"
    );
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

    // Denied: the held process is killed.
    let mut child = as_user(WATCHED_UID, &fx.path("needs-approval"))
        .arg("never")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let id = approval_id(&daemon, child.id());
    assert!(ctl(&daemon, &["deny", &id]).status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
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
    let out = run(as_user(WATCHED_UID, &fx.path("forbidden-tool")));
    assert_eq!(
        out.status.signal(),
        Some(9),
        "the old deny rule still holds: {out:?}"
    );
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
    let out = run(as_user(WATCHED_UID, &fx.path("needs-approval")));
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
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
