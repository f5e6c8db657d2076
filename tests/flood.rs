//! A flood cannot blind the sentinel: the watched UID opens one file a
//! million times as fast as it can, and everything it did is accounted for
//! in the sealed audit chain — each open recorded, or folded by the kernel
//! into a record that says how many identical opens it stands for — while
//! the distinct actions it takes during the flood are each recorded on
//! their own, decided and alerted. Counted from the audit database, not
//! from the daemon's counters alone.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use sentinel_audit::{AuditReader, Body, Event, QueryFilter};

const FLOOD: u64 = 1_000_000;
const SECRET: &str = "FLOOD-SECRET-91c2";

/// The flooder: opens /etc/hostname `n` times; at the half opens a canary
/// file (a distinct action a log-only userspace rule matches) and starts
/// the reader of the secret; prints `done` and stays alive a while, so the
/// last run's count must come from the daemon's sweep of idle runs, not
/// from the process's exit.
const FLOODER: &str = r#"
import os, sys, subprocess, time
n, canary, secret = int(sys.argv[1]), sys.argv[2], sys.argv[3]
reader = None
for i in range(n):
    fd = os.open("/etc/hostname", os.O_RDONLY)
    os.close(fd)
    if i == n // 2:
        fd = os.open(canary, os.O_RDONLY)
        os.close(fd)
        reader = subprocess.Popen(["/bin/cat", secret], stdout=subprocess.PIPE)
out, _ = reader.communicate()
print("done", reader.returncode, out.decode().strip(), flush=True)
time.sleep(4)
"#;

fn audit_events(db: &Path) -> Vec<Event> {
    let mut out = Vec::new();
    AuditReader::open(db)
        .expect("the daemon's audit database")
        .query_each(&QueryFilter::default(), |e| {
            out.push(e);
            Ok(())
        })
        .expect("reading the audit chain");
    out
}

/// Opens of `path` by `pid` the chain accounts for: each record stands
/// for one open, or for `repeats` folded ones.
fn opens_recorded(events: &[Event], pid: u32, path: &str) -> (u64, usize) {
    let mut opens = 0;
    let mut records = 0;
    for e in events {
        if let Body::Open {
            process,
            path: p,
            repeats,
            ..
        } = &e.body
        {
            if process.pid == pid && p == path {
                opens += (*repeats).max(1);
                records += 1;
            }
        }
    }
    (opens, records)
}

#[test]
fn a_million_open_flood_loses_nothing_and_hides_nothing() {
    require_environment();
    let _lock = kernel_lock();
    let dir = scratch_dir();
    let secret = dir.path().join("secret");
    let canary = dir.path().join("canary.txt");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    std::fs::write(&canary, "canary\n").unwrap();
    let policy = tempfile::tempdir().unwrap();
    std::fs::write(
        policy.path().join("flood.toml"),
        format!(
            r#"
[[rule]]
name = "flood-secret"
kind = "open"
action = "deny"
path = ["{secret}"]

[[rule]]
name = "flood-canary"
kind = "open"
action = "log-only"
path = ["{dir}/*ary.txt"]
"#,
            secret = secret.display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    // A small ring buffer (64 KiB, about 75 open records): without the
    // kernel folding repeats, the flood overflows it whenever the reader
    // falls behind, and the actions in the flood could be among the drops.
    let mut daemon = Daemon::start(&[
        "--policy",
        policy.path().to_str().unwrap(),
        "--ring-buffer-bytes",
        "65536",
    ]);
    let before = daemon.status();

    let started = Instant::now();
    let mut child = as_user(WATCHED_UID, "/usr/bin/python3")
        .args(["-c", FLOODER, &FLOOD.to_string()])
        .arg(&canary)
        .arg(&secret)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 (installed by cargo xtask setup)");
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The reader of the secret was refused (the file guard's EPERM) or
    // killed at the open, before a byte.
    eprintln!("flood of {FLOOD} opens made in {:?}", started.elapsed());
    assert!(
        line.starts_with("done 1 ") || line.starts_with("done -9 "),
        "reader of the secret: {line:?}"
    );
    assert!(!line.contains(SECRET), "the secret leaked: {line:?}");

    // While the flooder is still alive (idle), every open is accounted
    // for: the last run's count comes from the daemon's sweep.
    let db = daemon.state_dir().join("sentinel.db");
    let deadline = Instant::now() + Duration::from_secs(60);
    let (opens, records, events) = loop {
        let events = audit_events(&db);
        let (opens, records) = opens_recorded(&events, pid, "/etc/hostname");
        if opens >= FLOOD || Instant::now() > deadline {
            break (opens, records, events);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        child.try_wait().unwrap().is_none(),
        "the flooder exited before its opens were all recorded"
    );
    let status = daemon.status();
    assert_eq!(
        opens, FLOOD,
        "{records} records account for {opens} of {FLOOD} opens; status {}",
        status["events"]
    );
    assert_eq!(
        status["events"]["lost"], before["events"]["lost"],
        "the kernel dropped events: {}",
        status["events"]
    );
    // Folded, not recorded one by one: the chain stays small.
    assert!(records < 10_000, "{records} records for the flood");
    assert!(status["events"]["coalesced"].as_u64().unwrap() >= FLOOD - records as u64);

    // The distinct actions in the flood are each recorded on their own.
    let canary_path = canary.to_str().unwrap();
    let canary_records: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(&e.body, Body::Open { process, path, .. } if process.pid == pid && path == canary_path))
        .collect();
    assert_eq!(canary_records.len(), 1, "the canary open");
    let v = canary_records[0].verdict.as_ref().expect("a verdict");
    assert_eq!(v.rule.as_deref(), Some("flood-canary"), "{v:?}");
    let secret_path = secret.to_str().unwrap();
    let denied = events
        .iter()
        .find(|e| matches!(&e.body, Body::Open { path, .. } if path == secret_path))
        .expect("the secret read is recorded");
    let v = denied.verdict.as_ref().expect("a verdict");
    assert_eq!(v.rule.as_deref(), Some("flood-secret"), "{v:?}");
    assert!(v.enforced && v.alert, "{v:?}");
    // ... and alerted on the stream too.
    daemon.wait_for("the secret read, alerted", |e| {
        e["kind"] == "open"
            && e["path"] == secret_path
            && e["verdict"]["action"] == "deny"
            && e["verdict"]["alert"] == true
    });

    let _ = child.wait();
    daemon.stop();
    // The run ended by the exit adds nothing already counted.
    let (opens, _) = opens_recorded(&audit_events(&db), pid, "/etc/hostname");
    assert_eq!(opens, FLOOD, "counted twice after the exit");
}

/// A run of identical opens ends when the file changes under it: an open
/// of the same file after a rename gives it another name, and is recorded
/// on its own, not folded into the old name's count.
#[test]
fn a_renamed_file_is_not_folded_into_its_old_name() {
    require_environment();
    let _lock = kernel_lock();
    let dir = scratch_dir();
    let a = dir.path().join("a.txt");
    let b = dir.path().join("b.txt");
    std::fs::write(&a, "x\n").unwrap();
    std::os::unix::fs::chown(&a, Some(WATCHED_UID), Some(WATCHED_UID)).unwrap();
    let mut daemon = Daemon::start_observing(&[]);
    let script = format!(
        r#"
import os
for i in range(1000):
    os.close(os.open("{a}", os.O_RDONLY))
os.rename("{a}", "{b}")
for i in range(1000):
    os.close(os.open("{b}", os.O_RDONLY))
"#,
        a = a.display(),
        b = b.display()
    );
    let mut child = as_user(WATCHED_UID, "/usr/bin/python3")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    daemon.wait_for("the flooder's exit", |e| {
        e["kind"] == "exit" && e["pid"] == pid
    });
    let db = daemon.state_dir().join("sentinel.db");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let events = audit_events(&db);
        let (at_a, _) = opens_recorded(&events, pid, a.to_str().unwrap());
        let (at_b, b_records) = opens_recorded(&events, pid, b.to_str().unwrap());
        if (at_a, at_b) == (1000, 1000) {
            assert!(b_records >= 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "opens recorded: {at_a} as a.txt, {at_b} as b.txt (1000 each)"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    daemon.stop();
}
