//! The daemon under faults, on the real kernel (issue 11): it never harms
//! what it does not own and keeps its own state bounded.
//!
//! - A thread storm in a watched process leaves no entries behind in the
//!   process table (threads belong to their group).
//! - A pid reused after a watched thread or child exited is never
//!   signalled when the daemon later kills the watched process's tree: the
//!   pid is taken, deterministically, by an unwatched process of the test
//!   (clone3 with `set_tid`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// A policy whose one rule the kernel cannot decide (a regex on argv), so
/// the daemon kills the offending process tree itself, after the fact.
fn userspace_kill_policy(marker: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kill.toml"),
        format!(
            "[[rule]]\nname = \"kill-marked\"\nkind = \"exec\"\naction = \"deny\"\nargs = '{marker}'\nreason = \"test: the daemon kills the tree\"\n"
        ),
    )
    .unwrap();
    dir
}

fn tracked(daemon: &Daemon) -> u64 {
    daemon.status()["tracked_processes"]
        .as_u64()
        .expect("status reports tracked_processes")
}

#[test]
fn a_thread_storm_leaves_no_entries_behind() {
    require_environment();
    let _lock = kernel_lock();
    let daemon = Daemon::start_observing(&[]);
    let dir = scratch_dir();
    let done = dir.path().join("done");
    let release = dir.path().join("release");
    // 10,000 short-lived threads, 50 at a time; the process stays alive
    // (so its own entry stays) until the test lets it go.
    let script = format!(
        r#"
import os, threading, time
for _ in range(200):
    ts = [threading.Thread(target=lambda: None) for _ in range(50)]
    for t in ts: t.start()
    for t in ts: t.join()
open("{done}", "w").close()
while not os.path.exists("{release}"):
    time.sleep(0.05)
"#,
        done = done.display(),
        release = release.display()
    );
    let before = tracked(&daemon);
    let mut storm = as_user(WATCHED_UID, "/usr/bin/python3");
    storm.args(["-c", &script]);
    let mut child = storm.spawn().expect("python3");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !done.exists() {
        assert!(Instant::now() < deadline, "the thread storm did not finish");
        assert!(child.try_wait().unwrap().is_none(), "python3 died");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The daemon saw the storm (the test is not vacuous) ...
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let table = daemon.status()["process_table"].clone();
        let seen = table["threads_seen"].as_u64().unwrap() + table["swept"].as_u64().unwrap();
        if seen >= 9_000 || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let lost = daemon.status()["events"]["lost"].as_u64().unwrap();
    assert!(
        seen + lost >= 9_000,
        "the daemon saw only {seen} of 10,000 thread creations ({lost} events lost)"
    );
    // ... and keeps no entry for any of the threads once they are gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = tracked(&daemon);
        if now <= before + 5 || Instant::now() > deadline {
            break now;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    std::fs::write(&release, "").unwrap();
    let _ = child.wait();
    assert!(
        after <= before + 5,
        "{after} processes tracked after the storm, {before} before: thread entries were left behind"
    );
}

/// Starts `/bin/sleep 60` as `uid` with exactly pid `pid` (clone3 with
/// `set_tid`, which root may use); `None` if the pid is taken.
fn spawn_at_pid(pid: u32, uid: u32) -> Option<u32> {
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    // Everything the child touches is prepared before the clone: between
    // clone and exec it only makes raw system calls.
    let path = std::ffi::CString::new("/bin/sleep").unwrap();
    let arg0 = std::ffi::CString::new("sleep").unwrap();
    let arg1 = std::ffi::CString::new("60").unwrap();
    let argv = [arg0.as_ptr(), arg1.as_ptr(), std::ptr::null()];
    let envp = [std::ptr::null::<libc::c_char>()];
    let tid = [pid as libc::pid_t];
    let args = CloneArgs {
        exit_signal: libc::SIGCHLD as u64,
        set_tid: tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: a fork-like clone3 (no new stack); the child only makes raw
    // system calls on memory prepared above, then execs or exits.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if rc == 0 {
        unsafe {
            libc::syscall(libc::SYS_setgid, uid);
            libc::syscall(libc::SYS_setuid, uid);
            libc::syscall(
                libc::SYS_execve,
                path.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
            );
            libc::syscall(libc::SYS_exit, 127);
        }
    }
    (rc > 0).then_some(rc as u32)
}

fn alive(pid: u32) -> bool {
    // A zombie has been killed already; only a running process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next());
            !matches!(state, Some(Some('Z')) | Some(Some('X')))
        })
        .unwrap_or(false)
}

fn reap(pid: u32) {
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
        libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
    }
}

#[test]
fn a_reused_pid_is_never_signalled() {
    require_environment();
    let _lock = kernel_lock();
    let marker = marker("reuse");
    let policy = userspace_kill_policy(&marker);
    let daemon = Daemon::start(&["--policy", policy.path().to_str().unwrap()]);
    let dir = scratch_dir();
    let ids = dir.path().join("ids");
    let release = dir.path().join("release");
    // The watched process: 100 threads and one child process, all exited;
    // it writes their ids, waits, then execs something the policy kills.
    let script = format!(
        r#"
import os, threading, time
tids = []
for _ in range(100):
    t = threading.Thread(target=lambda: tids.append(threading.get_native_id()))
    t.start(); t.join()
child = os.fork()
if child == 0:
    os._exit(0)
os.waitpid(child, 0)
with open("{ids}.tmp", "w") as f:
    f.write(" ".join(map(str, tids + [child])))
os.rename("{ids}.tmp", "{ids}")
while not os.path.exists("{release}"):
    time.sleep(0.05)
os.execv("/bin/true", ["true", "{marker}"])
"#,
        ids = ids.display(),
        release = release.display(),
    );
    let mut watched = as_user(WATCHED_UID, "/usr/bin/python3");
    watched.args(["-c", &script]);
    let mut child = watched.spawn().expect("python3");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ids.exists() {
        assert!(
            Instant::now() < deadline,
            "the watched process did not start its threads"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ids: Vec<u32> = std::fs::read_to_string(&ids)
        .unwrap()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect();
    let (tids, forked) = ids.split_at(ids.len() - 1);
    // Let the daemon read the forks and the exit before the pids are reused.
    daemon.wait_for("the forked child's exit", |e| {
        e["kind"] == "exit" && e["pid"] == forked[0]
    });

    // Unwatched processes of the test take a former thread's tid and the
    // former child's pid.
    let mut bystanders = Vec::new();
    for candidates in [tids, forked] {
        let taken = candidates
            .iter()
            .rev()
            .find_map(|pid| spawn_at_pid(*pid, OTHER_UID))
            .expect("no pid of the watched process could be taken (all in use?)");
        bystanders.push(taken);
    }
    std::thread::sleep(Duration::from_millis(200));
    for pid in &bystanders {
        assert!(alive(*pid), "bystander {pid} did not start");
    }

    // The watched process does what the policy kills it (and its tree) for.
    std::fs::write(dir.path().join("release"), "").unwrap();
    daemon.wait_for("the userspace deny", |e| {
        e["kind"] == "exec" && e["verdict"]["rule"] == "kill-marked"
    });
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(500));
    let survivors: Vec<bool> = bystanders.iter().map(|p| alive(*p)).collect();
    for pid in &bystanders {
        reap(*pid);
    }
    assert_eq!(
        survivors,
        vec![true, true],
        "a process that reused a pid of the watched tree ({bystanders:?}: former thread, former child) was killed"
    );
    assert!(Path::new("/proc/self").exists());
}

/// Sends JSON lines to the daemon's decision socket as `uid`; returns the
/// answer lines (one per request, or the one refusal line).
fn ask_socket_as(
    uid: u32,
    socket: &Path,
    requests: &[serde_json::Value],
) -> Vec<serde_json::Value> {
    let lines: Vec<String> = requests.iter().map(|r| r.to_string()).collect();
    let script = format!(
        r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect({socket:?})
f = s.makefile("rwb")
for line in {lines:?}:
    try:
        f.write(line.encode() + b"\n"); f.flush()
    except BrokenPipeError:
        break
    answer = f.readline()
    if not answer:
        break
    sys.stdout.write(answer.decode())
"#,
        socket = socket.display().to_string(),
    );
    let mut cmd = as_user(uid, "/usr/bin/python3");
    cmd.args(["-c", &script]);
    let out = run(cmd);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_decision_socket_serves_only_watched_users_and_records_its_own_verdicts() {
    require_environment();
    let _lock = kernel_lock();
    let daemon = Daemon::start_observing(&[]);
    let socket = daemon.state_dir().join("mcp.sock");
    let marker = marker("forged");

    // An unwatched user is refused at once, and counted.
    let answers = ask_socket_as(OTHER_UID, &socket, &[serde_json::json!({"op": "hello"})]);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(
        answers[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("may not use"),
        "{answers:?}"
    );
    assert_eq!(daemon.status()["mcp_socket"]["refused_peers"], 1);

    // The watched user's proxy tries to put words in the daemon's mouth.
    let call = serde_json::json!({"agent": "root", "uid": 0, "pid": 1, "server": "files",
                                  "tool": "read", "args": {"path": "/tmp/x"}});
    let forged_verdict = serde_json::json!({"action": "allow", "rule": marker, "reason": marker,
                                            "risk": 0, "enforced": true});
    let answers = ask_socket_as(
        WATCHED_UID,
        &socket,
        &[
            // The old vocabulary that carried a verdict and a severity.
            serde_json::json!({"op": "record", "record": {"call": call, "verdict": forged_verdict, "outcome": "result"}}),
            serde_json::json!({"op": "alert", "alert": {"severity": "critical", "category": "mcp-secret", "reason": marker}}),
            // A finding is recorded, with the daemon's severity.
            serde_json::json!({"op": "report", "finding": {"category": "mcp-secret", "detail": format!("{marker} finding")}}),
            // A call the daemon decides; its outcome, reported by id.
            serde_json::json!({"op": "decide", "call": call}),
            serde_json::json!({"op": "outcome", "call_id": 999_999, "outcome": "result"}),
        ],
    );
    assert_eq!(answers.len(), 5, "{answers:?}");
    assert!(
        answers[0].get("error").is_some(),
        "a record carrying a verdict was taken: {answers:?}"
    );
    assert!(
        answers[1].get("error").is_some(),
        "an alert carrying a severity was taken: {answers:?}"
    );
    assert_eq!(answers[2], "done", "{answers:?}");
    let call_id = answers[3]["decided"]["call_id"]
        .as_u64()
        .expect("a call id");
    assert!(
        answers[4].get("error").is_some(),
        "an outcome for a call never decided was taken"
    );
    let answers = ask_socket_as(
        WATCHED_UID,
        &socket,
        &[serde_json::json!({"op": "outcome", "call_id": call_id, "outcome": "result"})],
    );
    // The id belongs to the peer that asked (another process of the same
    // user is another peer).
    assert!(answers[0].get("error").is_some(), "{answers:?}");

    let finding = daemon.wait_for("the reported finding", |e| {
        e["kind"] == "alert" && str_field(e, "reason").contains(&marker)
    });
    assert_eq!(finding["severity"], "warning", "{finding}");
    assert!(str_field(&finding, "reason").contains("reported by the MCP proxy of uid 2001"));
    let decided = daemon.wait_for("the daemon's record of the call", |e| {
        e["kind"] == "mcp_call" && e["tool"] == "read"
    });
    assert_eq!(decided["agent"], "testagent", "{decided}");
    assert_eq!(decided["uid"], WATCHED_UID, "{decided}");
    std::thread::sleep(Duration::from_millis(500));
    for event in daemon.events() {
        let text = event.to_string();
        assert!(
            !(text.contains(&marker) && event["kind"] == "mcp_call"),
            "a verdict of the peer's choosing was recorded: {event}"
        );
        if event["kind"] == "alert" && text.contains(&marker) {
            assert_ne!(event["severity"], "critical", "{event}");
        }
    }
    assert!(
        daemon.status()["mcp_socket"]["bad_reports"]
            .as_u64()
            .unwrap()
            >= 2
    );
}

fn sentinel(daemon: &Daemon, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(sentinel_bin())
        .args(args)
        .arg("--state-dir")
        .arg(daemon.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "sentinel {args:?}: {out:?}");
    out
}

#[test]
fn a_quarantine_outlives_a_restart_and_is_lifted_by_id() {
    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    let dir = scratch_dir();
    let tool = dir.path().join("quarantined-tool");
    std::fs::copy("/bin/true", &tool).unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tool_path = tool.to_str().unwrap();
    // Refused at spawn (the file guard's EPERM) or killed: not run.
    let runs = || {
        as_user(WATCHED_UID, tool_path)
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(runs(), "the tool runs before the quarantine");

    let out = sentinel(
        &daemon,
        &[
            "quarantine",
            "add",
            "--binary",
            tool_path,
            "--reason",
            "incident 42",
        ],
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let id: i64 = said
        .split_whitespace()
        .find_map(|w| w.strip_prefix('#').and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no id in {said:?}"));
    assert!(!runs(), "the quarantined binary still runs");

    daemon.restart();
    let out = sentinel(&daemon, &["quarantine", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["id"] == id)
        .unwrap_or_else(|| panic!("quarantine #{id} lost in the restart: {list}"));
    assert_eq!(entry["reason"], "incident 42");
    assert!(
        entry["added_by"]
            .as_str()
            .unwrap()
            .starts_with("uid 0 (pid "),
        "{entry}"
    );
    assert!(!runs(), "the quarantine is not enforced after the restart");

    sentinel(&daemon, &["quarantine", "lift", &id.to_string()]);
    assert!(runs(), "the lifted quarantine still blocks");
    let out = sentinel(&daemon, &["quarantine", "list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    // Both changes are in the chain, with who made them.
    daemon.wait_for("the lift", |e| {
        e["kind"] == "alert"
            && str_field(e, "reason").contains(&format!(
                "quarantine #{id} on binary {tool_path} lifted by uid 0"
            ))
    });
    let added = daemon.wait_for("the add", |e| {
        e["kind"] == "alert"
            && str_field(e, "reason").contains(&format!("quarantine #{id} on binary"))
    });
    assert!(
        str_field(&added, "reason").contains("by uid 0 (pid "),
        "{added}"
    );
}

#[test]
fn a_hold_whose_record_was_lost_is_found_and_timed_out() {
    require_environment();
    let _lock = kernel_lock();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("ask.toml"),
        format!(
            "[[rule]]\nname = \"ask-lost\"\nkind = \"connect\"\naction = \"ask\"\naddr = [\"127.0.0.1/32\"]\nport = {port}\n"
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&[
        "--policy",
        policy.path().to_str().unwrap(),
        "--ring-buffer-bytes",
        "4096",
        "--approval-timeout",
        "3",
    ]);
    // The daemon stops reading (SIGSTOP) while the watched process fills
    // the 4 KiB ring, then connects: the kernel holds it and its HELD
    // record is lost, deterministically. (An exec ask cannot be used on
    // this host: the file guard holds execs in fanotify instead.)
    let dpid = daemon.pid() as i32;
    unsafe { libc::kill(dpid, libc::SIGSTOP) };
    let mut held = as_user(WATCHED_UID, "/bin/bash");
    held.args([
        "-c",
        // Opens fill the ring; forks and exits of subshells (the smallest
        // records) then fill what is left below a connect record's size.
        &format!("for i in $(seq 100); do : < /etc/hostname; done; for i in $(seq 300); do ( : ); done; echo hi > /dev/tcp/127.0.0.1/{port}"),
    ]);
    let mut child = held.spawn().unwrap();
    let pid = child.id();
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(dpid, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the held process was never resolved (still stopped after 30 s)"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "denied at the timeout: {status:?}"
    );
    daemon.wait_for("the lost-hold alert", |e| {
        e["kind"] == "alert"
            && str_field(e, "reason").contains(&format!("pid {pid} "))
            && str_field(e, "reason").contains("event was lost")
    });
    daemon.wait_for("the timeout", |e| {
        e["kind"] == "alert"
            && str_field(e, "reason").contains(&format!("for pid {pid} "))
            && str_field(e, "reason").contains("TimedOut")
    });
    assert!(daemon.status()["events"]["lost"].as_u64().unwrap() >= 1);
    assert!(daemon.running());
}

/// An MCP action of the watched agent, as the daemon's engine sees it.
fn mcp_action(tool: &str, args: serde_json::Value) -> sentinel_policy::Action {
    sentinel_policy::Action {
        agent: Some("testagent".into()),
        uid: WATCHED_UID,
        pid: 1,
        object: sentinel_policy::Object::Mcp {
            server: "files".into(),
            tool: tool.into(),
            args,
        },
    }
}

#[test]
fn auto_lockdown_trips_live_at_the_default_threshold_and_the_operator_lifts_it() {
    use sentinel_anomaly::{AnomalyEngine, Outcome, ScorerConfig};
    use std::time::SystemTime;

    require_environment();
    let _lock = kernel_lock();
    let mut daemon = Daemon::start_observing(&[]);
    assert!(daemon.stop().success());
    let started = Instant::now();
    // Three days of the agent's ordinary work, half a day away from this
    // hour: list a directory, read a file, every few minutes, all fine.
    {
        let db = daemon.state_dir().join("sentinel.db");
        let mut scorer = AnomalyEngine::open(&db, ScorerConfig::default()).unwrap();
        let start = SystemTime::now() - Duration::from_secs(4 * 86_400 + 11 * 3600);
        for day in 0..3u64 {
            for i in 0..20u64 {
                let t = start + Duration::from_secs(day * 86_400 + i * 180);
                let list = mcp_action("list_dir", serde_json::json!({"path": "/work"}));
                let read = mcp_action("read_file", serde_json::json!({"path": "/work/README.md"}));
                scorer.assess(&list, t);
                scorer.record_outcome(&list, Outcome::Success, t);
                let t = t + Duration::from_secs(90);
                scorer.assess(&read, t);
                scorer.record_outcome(&read, Outcome::Success, t);
                // A busy agent: many small lookups in those hours too.
                for j in 0..20u64 {
                    let t = t + Duration::from_secs(1 + j * 4);
                    let stat =
                        mcp_action("stat", serde_json::json!({"path": format!("/work/f{j}")}));
                    scorer.assess(&stat, t);
                    scorer.record_outcome(&stat, Outcome::Success, t);
                }
            }
        }
        scorer.flush().unwrap();
    }
    eprintln!("trained in {:?}", started.elapsed());
    daemon.restart();
    let mode = |d: &Daemon| d.status()["mode"].as_str().unwrap_or("").to_string();
    assert_eq!(mode(&daemon), "alert");

    // Now, at an hour it never works, the agent's MCP client reads key
    // after key, and every call fails: through the real decision socket,
    // as the watched user, each outcome reported by the daemon's call id.
    let socket = daemon.state_dir().join("mcp.sock");
    let script = format!(
        r#"
import json, socket
s = socket.socket(socket.AF_UNIX)
s.connect({socket:?})
f = s.makefile("rwb")
def ask(req):
    f.write(json.dumps(req).encode() + b"\n"); f.flush()
    return json.loads(f.readline())
for i in range(60):
    call = {{"agent": None, "uid": 0, "pid": 0, "server": "files", "tool": "read_file",
             "args": {{"path": "/home/agent/.ssh/id_%d" % i}}}}
    answer = ask({{"op": "decide", "call": call}})
    if "decided" not in answer:
        print("refused", answer); break
    ask({{"op": "outcome", "call_id": answer["decided"]["call_id"], "outcome": "tool-error"}})
"#,
        socket = socket.display().to_string()
    );
    // (-I -S: a quiet start, so the process's own opens are few.)
    let mut peer = as_user(WATCHED_UID, "/usr/bin/python3");
    peer.args(["-I", "-S", "-c", &script]);
    let out = run(peer);
    assert!(out.status.success(), "{out:?}");

    let switched = daemon.wait_for("the auto-lockdown", |e| {
        e["kind"] == "mode_change" && e["to"] == "lockdown"
    });
    assert!(
        str_field(&switched, "by").starts_with("auto-lockdown: anomaly score"),
        "{switched}"
    );
    daemon.wait_for("the critical anomaly alert", |e| {
        e["kind"] == "alert"
            && e["severity"] == "critical"
            && str_field(e, "reason").contains("testagent")
    });
    assert_eq!(mode(&daemon), "lockdown");
    // Lockdown is enforced in the kernel for the watched user.
    assert!(!sh_as(WATCHED_UID, "exec /usr/bin/id").status.success());

    // The operator lifts it; the change says who did.
    sentinel(&daemon, &["mode", "set", "alert"]);
    let lifted = daemon.wait_for("the operator's lift", |e| {
        e["kind"] == "mode_change" && e["from"] == "lockdown" && e["to"] == "alert"
    });
    assert!(
        str_field(&lifted, "by").starts_with("uid 0 (pid "),
        "{lifted}"
    );
    assert_eq!(mode(&daemon), "alert");
    assert!(sh_as(WATCHED_UID, "exec /usr/bin/id").status.success());
    // The latch is lifted too: a restart does not bring the lockdown back.
    daemon.restart();
    assert_eq!(mode(&daemon), "alert");
}

/// `sentinel-evasion` (tests/evasion): tries one call and reports it.
fn evasion_bin() -> std::path::PathBuf {
    let path = std::env::var_os("SENTINEL_EVASION_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sentinel-evasion")
        });
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p sentinel-evasion`",
        path.display()
    );
    path
}

/// A copy of /bin/true in a scratch directory, and a policy whose one
/// rule the kernel decides on its own: exec of that copy is denied.
fn kernel_denied_tool() -> (tempfile::TempDir, String, tempfile::TempDir) {
    let dir = scratch_dir();
    let tool = dir.path().join("denied-tool");
    std::fs::copy("/bin/true", &tool).unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tool = tool.to_str().unwrap().to_string();
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("deny.toml"),
        format!("[[rule]]\nname = \"deny-tool\"\nkind = \"exec\"\naction = \"deny\"\nbinary = [\"{tool}\"]\nreason = \"test: denied in the kernel\"\n"),
    )
    .unwrap();
    (dir, tool, policy)
}

fn generations(pins: &Path) -> Vec<String> {
    std::fs::read_dir(pins)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The attack: the daemon is SIGKILLed (a crash, an OOM kill, `sudo kill
/// -9`). Its pinned programs keep refusing the denied exec with no daemon
/// at all; a watched process hammering the exec while a new daemon starts
/// and takes over never gets through; the new daemon records the death;
/// a clean stop then detaches everything.
#[test]
fn enforcement_survives_kill_9_and_a_restart_takes_over_without_a_gap() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    require_environment();
    let _lock = kernel_lock();
    let (_dir, tool, policy) = kernel_denied_tool();
    let mut daemon = Daemon::start(&["--policy", policy.path().to_str().unwrap()]);
    let runs = {
        let tool = tool.clone();
        // Refused before it ran (the file guard's EPERM at spawn) or
        // killed at the exec (the pinned tracepoint): either way not run.
        move || {
            as_user(WATCHED_UID, &tool)
                .status()
                .is_ok_and(|s| s.success())
        }
    };
    assert!(!runs(), "the denied tool runs while the daemon runs");
    let pins = pin_dir(daemon.state_dir());
    let old_pid = daemon.pid();
    assert_eq!(generations(&pins), vec![format!("gen-{old_pid}")]);

    daemon.kill9();
    for _ in 0..3 {
        assert!(!runs(), "the denied tool ran once the daemon was killed");
    }
    assert!(
        run(as_user(OTHER_UID, &tool)).status.success(),
        "the unwatched UID is refused with no daemon"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let (tries, ran) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let hammer = {
        let (stop, tries, ran, runs) = (stop.clone(), tries.clone(), ran.clone(), runs.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if runs() {
                    ran.fetch_add(1, Ordering::Relaxed);
                }
                tries.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    daemon.restart();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    assert_eq!(
        ran.load(Ordering::Relaxed),
        0,
        "the denied tool ran during the takeover ({} tries)",
        tries.load(Ordering::Relaxed)
    );
    assert!(
        tries.load(Ordering::Relaxed) > 5,
        "too few tries to mean anything"
    );
    assert_eq!(
        generations(&pins),
        vec![format!("gen-{}", daemon.pid())],
        "the old pins were not replaced"
    );
    let death = daemon.wait_for("the death record", |e| {
        e["kind"] == "alert" && str_field(e, "category") == "sentinel-death"
    });
    assert!(
        str_field(&death, "reason").contains(&format!("pid {old_pid}"))
            && str_field(&death, "severity") == "critical",
        "{death}"
    );
    assert!(!runs(), "the restarted daemon does not enforce");

    assert!(daemon.stop().success());
    assert!(
        !pins.exists(),
        "a clean stop left pins in {}",
        pins.display()
    );
    assert!(runs(), "a clean stop left the programs attached");
}

/// A setuid-root copy of `sentinel-evasion` the watched user can run: a
/// watched process that became root.
fn setuid_root_evasion() -> (tempfile::TempDir, String) {
    let dir = scratch_dir();
    let bin = dir.path().join("suid-evasion");
    std::fs::copy(evasion_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let bin = bin.to_str().unwrap().to_string();
    (dir, bin)
}

fn killed_by_sigkill(out: &std::process::Output) -> bool {
    use std::os::unix::process::ExitStatusExt;
    out.status.signal() == Some(libc::SIGKILL)
}

/// The attack, without BPF LSM (this host): a watched process's
/// setuid-root child signals the daemon — SIGTERM (would be a clean stop,
/// detaching everything), then tkill, pidfd_send_signal and ptrace of it,
/// and bpf(). Each time the attacker is killed and a critical alert
/// recorded; the SIGTERM is ignored. Then SIGKILL, which the kernel
/// delivers before the attacker dies: enforcement stays (pinned), and the
/// restarted daemon's death record names the attempt.
#[test]
fn a_watched_setuid_root_child_that_attacks_the_daemon_is_killed_and_alerted() {
    require_environment();
    let _lock = kernel_lock();
    let (_dir, tool, policy) = kernel_denied_tool();
    let (_suid_dir, suid) = setuid_root_evasion();
    let mut daemon = Daemon::start(&["--policy", policy.path().to_str().unwrap()]);
    let status = daemon.status();
    if status.to_string().contains("\"self_protection\":\"lsm\"") {
        panic!("BPF LSM enforces here: this test is for the tracepoint path (the guest tests LSM)");
    }
    let pid = daemon.pid().to_string();
    let attempts: [(&[&str], &str); 7] = [
        (&["kill", &pid, "15"], "tried kill"),
        (&["tkill", &pid, "15"], "tried tkill"),
        (&["pidfd-signal", &pid, "15"], "tried pidfd_open"),
        (&["proc-signal", &pid, "15"], "tried pidfd_send_signal"),
        (&["ptrace", &pid], "tried ptrace"),
        (&["vm-read", &pid], "tried process_vm_writev/readv"),
        (&["bpf"], "tried bpf"),
    ];
    for (args, said) in attempts {
        let mut cmd = as_user(WATCHED_UID, &suid);
        cmd.args(args);
        let out = run(cmd);
        assert!(killed_by_sigkill(&out), "{args:?} was not killed: {out:?}");
        daemon.wait_for(said, |e| {
            e["kind"] == "alert"
                && str_field(e, "category") == "tamper"
                && str_field(e, "severity") == "critical"
                && str_field(e, "reason").contains(said)
        });
        assert!(daemon.running(), "the daemon died of {args:?}");
    }
    // The unwatched root is the operator: it is never touched.
    let out = run({
        let mut c = std::process::Command::new(evasion_bin());
        c.args(["kill", &pid, "0"]);
        c
    });
    assert!(out.status.success(), "{out:?}");

    let old_pid = daemon.pid();
    let mut cmd = as_user(WATCHED_UID, &suid);
    cmd.args(["kill", &pid, "9"]);
    let out = run(cmd);
    assert!(killed_by_sigkill(&out), "{out:?}");
    daemon
        .wait_exit(Duration::from_secs(5))
        .expect("without LSM the SIGKILL is delivered");
    assert!(
        !as_user(WATCHED_UID, &tool)
            .status()
            .is_ok_and(|s| s.success()),
        "the denied tool ran after the daemon was killed"
    );
    daemon.restart();
    let death = daemon.wait_for("the death record", |e| {
        e["kind"] == "alert" && str_field(e, "category") == "sentinel-death"
    });
    let reason = str_field(&death, "reason");
    assert!(
        reason.contains(&format!("pid {old_pid}")) && reason.contains(" kill target "),
        "{death}"
    );
}

/// The daemon's own files where this run keeps them (a temporary state
/// directory, database and policy directory here; not only the installed
/// paths the embedded policy names): a watched process's setuid-root
/// child — root, so file permissions do not stop it — cannot read the
/// sealing key or the database, overwrite or truncate the database, or
/// drop a rule into the policy directory. Each attempt is refused before
/// it takes effect (EPERM from the file guard or the BPF LSM) or killed,
/// and afterwards the chain still verifies.
#[test]
fn a_watched_setuid_root_child_cannot_touch_the_daemons_own_files() {
    require_environment();
    let _lock = kernel_lock();
    let (_dir, _tool, policy) = kernel_denied_tool();
    let (_suid_dir, suid) = setuid_root_evasion();
    let mut daemon = Daemon::start(&["--policy", policy.path().to_str().unwrap()]);
    let state = daemon.state_dir().to_path_buf();
    let db = state.join("sentinel.db");
    let key = std::fs::read(state.join("audit.key")).expect("the daemon's sealing key");
    let planted = policy.path().join("99-planted.toml");
    let planted_rule =
        "[[rule]]\nname = \"planted\"\nkind = \"exec\"\naction = \"allow\"\nbinary = \"/**\"\n";
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let attempts: [Vec<String>; 6] = [
        vec!["read".into(), p(&state.join("audit.key"))],
        vec!["read".into(), p(&db)],
        vec!["write".into(), p(&db), "gone".into()],
        vec!["truncate".into(), p(&db)],
        vec!["append".into(), p(&state.join("audit.anchor")), "x".into()],
        vec!["write".into(), p(&planted), planted_rule.into()],
    ];
    for args in &attempts {
        let mut cmd = as_user(WATCHED_UID, &suid);
        cmd.args(args);
        let out = run(cmd);
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            killed_by_sigkill(&out)
                || (out.status.code().is_some_and(|c| c != 0)
                    && said.contains("Operation not permitted")),
            "{args:?} was not refused: {out:?}"
        );
        let key_text = String::from_utf8_lossy(&key);
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains(key_text.trim()),
            "{args:?} read the sealing key"
        );
        assert!(daemon.running(), "the daemon died of {args:?}");
    }
    daemon.wait_for("a refusal under this run's own-files rule", |e| {
        e["verdict"]["rule"] == "sentinel-own-state"
    });
    let planted_now = std::fs::read_to_string(&planted).unwrap_or_default();
    assert!(
        !planted_now.contains("planted"),
        "a rule was planted in the policy directory: {planted_now}"
    );
    assert!(
        std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) > 0,
        "the audit database was emptied"
    );
    assert!(daemon.stop().success());
    let out = std::process::Command::new(sentinel_bin())
        .args(["audit", "verify", "--db"])
        .arg(&db)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit verify after the attempts: {out:?}"
    );
}
