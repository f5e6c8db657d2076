//! The observer against the real host kernel: exact exec, open and
//! connect events for the watched UID, attribution through a setuid child,
//! nothing at all for an unwatched UID, drops reported, status, clean
//! errors and clean shutdown.

mod common;

use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use serde_json::Value;

fn is_exec_with_argv(ev: &Value, argv: &[&str]) -> bool {
    ev["kind"] == "exec"
        && ev["argv"].as_array().is_some_and(|a| {
            a.iter()
                .map(|v| v.as_str().unwrap_or(""))
                .eq(argv.iter().copied())
        })
}

#[test]
fn exec_open_and_connect_are_reported_exactly_for_the_watched_uid() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    let mark = marker("exec");
    let dir = scratch_dir();
    let file = dir.path().join(format!("{mark}.txt"));
    std::fs::write(&file, "hello").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let (p4, p6) = (
        v4.local_addr().unwrap().port(),
        v6.local_addr().unwrap().port(),
    );

    // exec: argv exactly, exe resolved, parent and identity from the kernel.
    let out = run({
        let mut c = as_user(WATCHED_UID, "/bin/echo");
        c.args(["hello", &mark]);
        c
    });
    assert!(out.status.success());
    let exec = daemon.wait_for("exec of echo", |e| {
        is_exec_with_argv(e, &["/bin/echo", "hello", &mark])
    });
    assert_eq!(exec["uid"], WATCHED_UID);
    assert_eq!(exec["agent"], "testagent");
    assert_eq!(exec["comm"], "echo");
    assert_eq!(exec["exe"], "/usr/bin/echo");
    assert_eq!(
        exec["ppid"],
        std::process::id(),
        "echo's parent is this test process"
    );
    assert!(
        exec["ts"].as_str().unwrap().contains('.'),
        "sub-second timestamp"
    );

    // open: absolute and relative paths, with flags.
    let abs = file.to_str().unwrap().to_string();
    let out = sh_as(
        WATCHED_UID,
        &format!(
            // The shell stays a moment: relative paths are resolved from
            // /proc/PID/cwd, best effort, while the process lives.
            "cat {abs} >/dev/null; cd {} && echo x >> {mark}.txt; sleep 1",
            dir.path().display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    let read = daemon.wait_for("open for reading", |e| {
        e["kind"] == "open" && e["path"] == abs.as_str() && e["comm"] == "cat"
    });
    assert_eq!(read["flags"].as_u64().unwrap() & 0o3, 0, "O_RDONLY");
    assert_eq!(read["uid"], WATCHED_UID);
    let append = daemon.wait_for("relative open for appending", |e| {
        e["kind"] == "open" && e["path"] == abs.as_str() && e["comm"] == "bash"
    });
    let flags = append["flags"].as_u64().unwrap();
    assert_eq!(flags & 0o2000, 0o2000, "O_APPEND");
    assert_eq!(flags & 0o100, 0o100, "O_CREAT");

    // connect: IPv4 and IPv6 loopback.
    let out = sh_as(
        WATCHED_UID,
        &format!("echo a > /dev/tcp/127.0.0.1/{p4}; echo b > /dev/tcp/::1/{p6}"),
    );
    assert!(out.status.success(), "{out:?}");
    let c4 = daemon.wait_for("IPv4 connect", |e| {
        e["kind"] == "connect" && e["port"] == p4
    });
    assert_eq!(c4["addr"], "127.0.0.1");
    assert_eq!(c4["family"], "inet");
    assert_eq!(c4["uid"], WATCHED_UID);
    let c6 = daemon.wait_for("IPv6 connect", |e| {
        e["kind"] == "connect" && e["port"] == p6
    });
    assert_eq!(c6["addr"], "::1");
    assert_eq!(c6["family"], "inet6");

    // exit of the echo process.
    let echo_pid = exec["pid"].clone();
    daemon.wait_for("exit of echo", |e| {
        e["kind"] == "exit" && e["pid"] == echo_pid
    });

    let status = daemon.stop();
    assert!(
        status.success(),
        "daemon exit: {status} {}",
        daemon.stderr()
    );
}

#[test]
fn a_setuid_child_stays_attributed_to_the_agent() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    let mark = marker("suid");
    // A setuid-root copy of setpriv: run by the agent, it becomes root for
    // real (setresuid 0), as sudo does.
    let dir = scratch_dir();
    let suid = dir.path().join("suid-setpriv");
    std::fs::copy("/usr/bin/setpriv", &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let out = sh_as(
        WATCHED_UID,
        &format!(
            "{} --reuid=0 --regid=0 --clear-groups -- /bin/sh -c '/bin/echo {mark}'",
            suid.display()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&mark));
    let ev = daemon.wait_for("exec of echo as root", |e| {
        is_exec_with_argv(e, &["/bin/echo", &mark])
    });
    assert_eq!(ev["uid"], 0, "the child really runs as root");
    assert_eq!(ev["agent"], "testagent", "and is still the agent's");
    daemon.stop();
}

#[test]
fn an_unwatched_uid_produces_no_events() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    let mark = marker("other");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = sh_as(
        OTHER_UID,
        &format!(
            "/bin/echo {mark}; cat /etc/hostname >/dev/null; echo a > /dev/tcp/127.0.0.1/{port}; echo u > /dev/udp/127.0.0.1/{}",
            udp.local_addr().unwrap().port()
        ),
    );
    assert!(out.status.success(), "{out:?}");
    // The watched UID runs the same marker afterwards: once its event is
    // in the stream, everything before it has been drained too.
    sh_as(WATCHED_UID, &format!("/bin/echo {mark}-watched"));
    daemon.wait_for("the watched echo", |e| {
        is_exec_with_argv(e, &["/bin/echo", &format!("{mark}-watched")])
    });
    daemon.stop();
    let events = daemon.events();
    let leaked: Vec<&Value> = events
        .iter()
        .filter(|e| e["uid"] == OTHER_UID || e.to_string().contains(&format!("{mark}\"")))
        .collect();
    assert!(
        leaked.is_empty(),
        "unwatched UID produced events: {leaked:?}"
    );
    assert!(events
        .iter()
        .all(|e| e["kind"] == "lost" || e["uid"] != OTHER_UID));
}

#[test]
fn status_reports_attachments_and_counts() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    sh_as(WATCHED_UID, "/bin/true");
    daemon.wait_for("exec of true", |e| {
        e["kind"] == "exec" && e["comm"] == "true"
    });
    let s = daemon.status();
    assert_eq!(s["running"], true);
    assert_eq!(s["watched_uids"], serde_json::json!([WATCHED_UID]));
    let attached: Vec<&str> = s["attached"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for needle in [
        "tracepoint:syscalls:sys_enter_execve",
        "raw_tracepoint:sched_process_exec",
        "tracepoint:syscalls:sys_enter_openat",
        "tracepoint:syscalls:sys_exit_openat",
        "tracepoint:syscalls:sys_enter_open_by_handle_at",
        "tracepoint:syscalls:sys_enter_io_uring_enter",
        "tracepoint:sched:sched_process_fork",
        "tracepoint:sched:sched_process_exit",
        // Without BPF LSM, changes to the file system are seen at the
        // syscalls (with it, by the LSM path hooks).
        "tracepoint:syscalls:sys_enter_renameat2",
        "tracepoint:syscalls:sys_enter_unlinkat",
        "tracepoint:syscalls:sys_enter_truncate",
        "tracepoint:syscalls:sys_enter_fchmodat",
        "tracepoint:syscalls:sys_enter_linkat",
    ] {
        assert!(attached.contains(&needle), "{needle} not in {attached:?}");
    }
    // The host kernel refuses BPF LSM: connect is blocked by cgroup hooks.
    assert!(attached
        .iter()
        .any(|a| a.starts_with("cgroup_sock_addr:connect4:")));
    assert_eq!(s["enforcement"]["connect"], "cgroup");
    assert_eq!(s["enforcement"]["change"], "sigkill-after");
    assert!(s["events"]["seen"].as_u64().unwrap() > 0);
    assert!(s["events"]["emitted"].as_u64().unwrap() > 0);
    assert_eq!(s["events"]["lost"], 0);
    assert_eq!(s["bandwidth"]["counting"], true, "{}", s["bandwidth"]);
    for hook in [
        "cgroup_skb:flow_egress:",
        "cgroup_skb:flow_ingress:",
        "cgroup_sock:sock_release:",
    ] {
        assert!(
            attached.iter().any(|a| a.starts_with(hook)),
            "{hook} not in {attached:?}"
        );
    }
    // Piped into a reader that is already gone (`| head` that has read
    // enough), the report ends quietly instead of panicking on the write.
    let piped = Command::new("/bin/bash")
        .arg("-c")
        .arg(format!(
            "(sleep 0.3; exec {} status --json --state-dir {}) | true",
            sentinel_bin().display(),
            daemon.state_dir().display()
        ))
        .output()
        .unwrap();
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    let state = daemon.state_dir().to_path_buf();
    assert!(daemon.stop().success());
    // Stopped: status says so and fails.
    let out = Command::new(sentinel_bin())
        .args(["status", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));
}

#[test]
fn a_full_ring_buffer_is_counted_and_reported_never_silent() {
    require_environment();
    let _lock = kernel_lock();
    // The smallest ring buffer (one page): a burst of opens overflows it.
    // Distinct (failed) opens: the kernel folds identical ones.
    let mut daemon = Daemon::start_observing(&["--ring-buffer-bytes", "4096"]);
    sh_as(
        WATCHED_UID,
        "for i in $(seq 1 3000); do : < /nonexistent-$i; done 2>/dev/null",
    );
    let lost = daemon.wait_for("a lost event", |e| e["kind"] == "lost");
    assert!(lost["count"].as_u64().unwrap() > 0);
    let s = daemon.status();
    assert!(s["events"]["lost"].as_u64().unwrap() > 0, "{s}");
    daemon.stop();
}

#[test]
fn bad_invocations_fail_with_one_clear_line() {
    require_environment();
    let _lock = kernel_lock();
    // Not root.
    let out = run({
        let mut c = as_user(OTHER_UID, sentinel_bin().to_str().unwrap());
        c.args([
            "run",
            "--uid",
            "2001",
            "--state-dir",
            "/tmp/sentinel-nonroot",
        ]);
        c
    });
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("must run as root"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A UID with no user.
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(sentinel_bin())
        .args(["run", "--uid", "3999999", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no user has uid 3999999"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing was left behind: no control socket.
    assert!(!state.path().join("control.sock").exists());

    // Nothing to watch.
    let out = Command::new(sentinel_bin()).args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
