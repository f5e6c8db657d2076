//! Runs of identical opens the kernel folded (`sentinel-ebpf`'s
//! `coalesce`): the daemon side. It remembers each thread's latest open
//! the kernel may fold repeats into (its record and verdict), and turns
//! the kernel's counts — a `Repeat` record when a run ends, or a run the
//! daemon finds idle in the `COALESCE` map — into records that say how
//! many opens they stand for (`repeats`), each folded open counted once.

use std::collections::HashMap;

use sentinel_audit::Body;
use sentinel_policy::Verdict;

/// Threads remembered at most; past that the oldest runs are forgotten
/// and their counts recorded without the path (by inode).
const MAX_RUNS: usize = 65_536;

#[derive(Default)]
pub struct Runs {
    by_tid: HashMap<u32, Run>,
}

struct Run {
    /// `ktime_ns` of the run's first record, as the kernel stamped it.
    ktime_ns: u64,
    body: Body,
    verdict: Option<Verdict>,
    /// Folded opens already recorded.
    recorded: u64,
}

/// What a count of folded opens becomes: `opens` not recorded before, and
/// the run's first record with its verdict when the daemon still knows it.
pub struct Folded {
    pub opens: u64,
    pub first: Option<(Body, Option<Verdict>)>,
}

impl Runs {
    /// `tid`'s open stamped `ktime_ns` was recorded and may start a run.
    pub fn started(&mut self, tid: u32, ktime_ns: u64, body: &Body, verdict: &Option<Verdict>) {
        if self.by_tid.len() >= MAX_RUNS && !self.by_tid.contains_key(&tid) {
            // Bounded: forget the oldest half (their counts still arrive,
            // recorded by inode).
            let mut stamps: Vec<u64> = self.by_tid.values().map(|r| r.ktime_ns).collect();
            stamps.sort_unstable();
            let cut = stamps[stamps.len() / 2];
            self.by_tid.retain(|_, r| r.ktime_ns > cut);
        }
        self.by_tid.insert(
            tid,
            Run {
                ktime_ns,
                body: body.clone(),
                verdict: verdict.clone(),
                recorded: 0,
            },
        );
    }

    /// The process (its main thread) exited.
    pub fn exited(&mut self, pid: u32) {
        self.by_tid.remove(&pid);
    }

    /// The kernel reports `total` opens folded into `tid`'s run stamped
    /// `ktime_ns` (`ended`: the run is over). `None` when all of them were
    /// recorded already.
    pub fn folded(&mut self, tid: u32, ktime_ns: u64, total: u64, ended: bool) -> Option<Folded> {
        let folded = match self.by_tid.get_mut(&tid) {
            Some(run) if run.ktime_ns == ktime_ns => {
                let opens = total.saturating_sub(run.recorded);
                run.recorded = run.recorded.max(total);
                (opens > 0).then(|| Folded {
                    opens,
                    first: Some((run.body.clone(), run.verdict.clone())),
                })
            }
            // The run's first record is no longer known here (the table
            // was full): the count is still recorded, by inode.
            _ if ended => Some(Folded {
                opens: total,
                first: None,
            }),
            _ => None,
        };
        if ended
            && self
                .by_tid
                .get(&tid)
                .is_some_and(|r| r.ktime_ns == ktime_ns)
        {
            self.by_tid.remove(&tid);
        }
        folded
    }

    /// Whether the daemon has recorded every fold of `tid`'s run
    /// `ktime_ns` up to `total` (the sweep skips those).
    pub fn is_current(&self, tid: u32, ktime_ns: u64, total: u64) -> bool {
        self.by_tid
            .get(&tid)
            .is_some_and(|r| r.ktime_ns == ktime_ns && r.recorded >= total)
    }
}

/// The record of `opens` folded repeats of `first`.
pub fn repeat_record(first: Body, opens: u64) -> Body {
    match first {
        Body::Open {
            process,
            path,
            path_requested,
            flags,
            ..
        } => Body::Open {
            process,
            path,
            path_requested,
            flags,
            repeats: opens,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_audit::ProcessInfo;

    fn open(path: &str) -> Body {
        Body::Open {
            process: ProcessInfo {
                pid: 5,
                ppid: 1,
                uid: 2001,
                comm: "flood".into(),
                exe: "/bin/flood".into(),
                agent: None,
            },
            path: path.into(),
            path_requested: None,
            flags: 0,
            repeats: 0,
        }
    }

    #[test]
    fn every_folded_open_is_recorded_once() {
        let mut runs = Runs::default();
        runs.started(5, 100, &open("/etc/hostname"), &None);
        // The sweep finds 10 folded, then the kernel ends the run at 25.
        let f = runs.folded(5, 100, 10, false).expect("first sweep");
        assert_eq!(f.opens, 10);
        assert!(runs.folded(5, 100, 10, false).is_none(), "counted twice");
        let f = runs.folded(5, 100, 25, true).expect("end of run");
        assert_eq!(f.opens, 15);
        match f.first.map(|(b, _)| repeat_record(b, f.opens)) {
            Some(Body::Open { path, repeats, .. }) => {
                assert_eq!((path.as_str(), repeats), ("/etc/hostname", 15))
            }
            other => panic!("{other:?}"),
        }
        // An unknown run's end is still recorded, without the path.
        let f = runs.folded(5, 100, 3, true).expect("unknown run");
        assert!(f.first.is_none());
        assert_eq!(f.opens, 3);
        assert!(runs.folded(6, 1, 3, false).is_none());
    }
}
