//! The flood: the watched UID opens a file N times as fast as it can,
//! against one daemon; what became of every open, from the daemon's own
//! accounts — read from the ring buffer (`status` events.seen), recorded
//! in the audit chain (open records of that process, counted in the
//! database, and the opens they stand for: a record of folded repeats
//! counts `repeats`), folded by the kernel (`status` events.coalesced),
//! lost in the kernel (`status` events.lost).

use std::time::{Duration, Instant};

use sentinel_audit::{AuditReader, Body, QueryFilter};

use super::monitors::Sentinel;

pub struct FloodReport {
    pub generated: u64,
    pub read: u64,
    /// Open records of the flooding process in the audit chain.
    pub recorded: u64,
    /// The opens those records stand for (a record of folded repeats
    /// stands for `repeats` opens).
    pub opens_in_chain: u64,
    pub coalesced: u64,
    pub lost: u64,
    /// Opens read or folded per second of wall time (ring-buffer records
    /// plus the repeats the kernel folded), from the first open until the
    /// daemon had read, folded or lost them all.
    pub read_per_s: f64,
    /// Seconds the workload took to make its opens.
    pub workload_s: f64,
}

fn counters(status: &serde_json::Value) -> (u64, u64, u64, u64, u64) {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (
        n(&status["events"]["seen"]),
        n(&status["events"]["lost"]),
        n(&status["events"]["coalesced"]),
        n(&status["events"]["emitted"]),
        n(&status["audit"]["recorded"])
            + n(&status["audit"]["dropped"])
            + n(&status["audit"]["failed"]),
    )
}

/// Runs `n` opens (through `run`, which returns the workload's pid, if its
/// records are to be counted, and its seconds) against `daemon`.
pub fn flood(daemon: &Sentinel, n: u64, run: impl FnOnce() -> (Option<u32>, f64)) -> FloodReport {
    let before = daemon.status().expect("status");
    let (seen0, lost0, coalesced0, _, _) = counters(&before);
    let start = Instant::now();
    let (pid, workload_s) = run();
    // Until every open is read, lost or folded, and the audit writer has
    // committed everything it was handed; or nothing moves for 10 s.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = counters(&before);
    let mut since = Instant::now();
    let mut read_done = None;
    loop {
        let now = counters(&daemon.status().expect("status"));
        let (seen, lost, coalesced, emitted, committed) = now;
        if read_done.is_none() && (seen - seen0) + (lost - lost0) + (coalesced - coalesced0) >= n {
            read_done = Some(start.elapsed());
        }
        if read_done.is_some() && committed >= emitted {
            last = now;
            break;
        }
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if since.elapsed() > Duration::from_secs(10) || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (seen, lost, coalesced, _, _) = last;
    let read_time = read_done.unwrap_or_else(|| start.elapsed());
    let mut recorded = 0;
    let mut opens_in_chain = 0;
    let Some(pid) = pid else {
        return FloodReport {
            generated: n,
            read: seen - seen0,
            recorded,
            opens_in_chain,
            coalesced: coalesced - coalesced0,
            lost: lost - lost0,
            read_per_s: ((seen - seen0) + (coalesced - coalesced0)) as f64
                / read_time.as_secs_f64(),
            workload_s,
        };
    };
    AuditReader::open(&daemon.db())
        .expect("the daemon's audit database")
        .query_each(
            &QueryFilter {
                kind: Some("open".into()),
                ..QueryFilter::default()
            },
            |event| {
                if let Body::Open {
                    process, repeats, ..
                } = &event.body
                {
                    if process.pid == pid {
                        recorded += 1;
                        opens_in_chain += (*repeats).max(1);
                    }
                }
                Ok(())
            },
        )
        .expect("reading the audit database");
    FloodReport {
        generated: n,
        read: seen - seen0,
        recorded,
        opens_in_chain,
        coalesced: coalesced - coalesced0,
        lost: lost - lost0,
        read_per_s: ((seen - seen0) + (coalesced - coalesced0)) as f64 / read_time.as_secs_f64(),
        workload_s,
    }
}
