//! Records/s appended to the sealed audit chain as the daemon's writer
//! appends them: batches of the writer's largest batch, one transaction
//! with `synchronous=FULL` per batch, the database on the disk of the
//! target directory, the keys and anchor on a tmpfs (as /run/sentinel).
//! Timed in wall time and in CPU time of this process (every thread).
//! Stage by stage: `cargo bench -p sentinel-audit --bench append`.

use std::time::{Duration, Instant};

use sentinel_audit::{AuditLog, Body, Event, ProcessInfo};
use sentinel_policy::{Decision, Verdict};
use time::OffsetDateTime;

pub fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn open_event(i: u64) -> Event {
    Event {
        seq: 0,
        ts: OffsetDateTime::now_utc(),
        body: Body::Open {
            process: ProcessInfo {
                pid: 4242,
                ppid: 4200,
                uid: 2001,
                comm: "python3".into(),
                exe: "/usr/bin/python3.11".into(),
                agent: Some("claude".into()),
            },
            path: format!("/home/agent/project/src/module_{}.py", i % 97),
            path_requested: None,
            flags: 0o2000000,
            repeats: 0,
        },
        verdict: Some(Verdict {
            action: Decision::Allow,
            rule: None,
            reason: "no rule matched (silent-allow)".into(),
            risk: 3,
            enforced: false,
            alert: false,
            factors: vec![],
        }),
    }
}

/// Appends `total` records in batches of `batch`; returns (records per
/// wall second, records per CPU second).
pub fn append_rate(batch: usize, total: usize) -> (f64, f64) {
    let disk = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a dir on disk");
    let tmpfs = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let state = tempfile::tempdir_in(tmpfs).expect("a state dir");
    let mut log =
        AuditLog::open(&disk.path().join("sentinel.db"), state.path()).expect("audit log");
    let mut batches: Vec<Vec<Event>> = (0..total / batch)
        .map(|b| {
            (0..batch as u64)
                .map(|i| open_event(b as u64 * batch as u64 + i))
                .collect()
        })
        .collect();
    let (wall, cpu) = (Instant::now(), process_cpu());
    for events in batches.iter_mut() {
        log.append_batch(events).expect("append");
    }
    let (wall, cpu) = (wall.elapsed(), process_cpu() - cpu);
    let n = (batches.len() * batch) as f64;
    (n / wall.as_secs_f64(), n / cpu.as_secs_f64())
}
