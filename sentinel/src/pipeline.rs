//! The data path, top to bottom, for one kernel event:
//! decode → enrich (process table) → record (the JSONL [`Event`]) →
//! output. Later stages (verdict, enforcement, audit) hang off
//! [`Pipeline::handle`] in that order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sentinel_audit::{Body, Event};
use serde::Serialize;
use time::OffsetDateTime;

use crate::clock::WallClock;
use crate::decode::{self, KernelEvent};
use crate::output::Output;
use crate::process::ProcessTable;

/// Counters shared with the control socket (`sentinel status`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Records read from the ring buffer.
    pub seen: AtomicU64,
    /// Events written to the stream.
    pub emitted: AtomicU64,
    /// Records that could not be decoded.
    pub decode_errors: AtomicU64,
    /// Events the kernel could not deliver (ring buffer full), as last
    /// reported.
    pub lost: AtomicU64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub seen: u64,
    pub emitted: u64,
    pub decode_errors: u64,
    pub lost: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            seen: self.seen.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            decode_errors: self.decode_errors.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }
}

pub struct Pipeline {
    table: ProcessTable,
    clock: WallClock,
    output: Output,
    next_seq: u64,
    stats: Arc<Stats>,
    /// Kernel drops already reported in the stream.
    lost_reported: u64,
}

impl Pipeline {
    pub fn new(table: ProcessTable, output: Output, stats: Arc<Stats>) -> Self {
        Self {
            table,
            clock: WallClock::now(),
            output,
            next_seq: 1,
            stats,
            lost_reported: 0,
        }
    }

    /// Handles one ring-buffer record.
    pub fn handle_raw(&mut self, bytes: &[u8]) {
        self.stats.seen.fetch_add(1, Ordering::Relaxed);
        match decode::decode(bytes) {
            Ok(event) => self.handle(event),
            Err(e) => {
                self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("{e}");
            }
        }
    }

    pub fn handle(&mut self, event: KernelEvent) {
        let ts = self.clock.wall(event.header().ktime_ns);
        let Some(body) = self.enrich(event) else {
            return;
        };
        self.record(ts, body);
    }

    /// Turns a kernel event into the record body, keeping the process
    /// table current. Fork events only update the table.
    fn enrich(&mut self, event: KernelEvent) -> Option<Body> {
        let t = &mut self.table;
        Some(match event {
            KernelEvent::Fork { header, child_pid } => {
                t.on_fork(header.pid, header.uid, &header.comm, child_pid);
                return None;
            }
            KernelEvent::Exec {
                header,
                filename,
                argv,
                argv_truncated,
                ..
            } => {
                t.on_exec(header.pid, header.uid, &header.comm, &filename);
                Body::Exec {
                    process: t.info(header.pid, header.uid, &header.comm),
                    argv,
                    argv_truncated,
                }
            }
            KernelEvent::Open {
                header,
                path,
                flags,
                dfd,
            } => Body::Open {
                path: t.resolve_path(header.pid, dfd, &path),
                process: t.info(header.pid, header.uid, &header.comm),
                flags,
            },
            KernelEvent::Connect {
                header, addr, port, ..
            } => Body::Connect {
                process: t.info(header.pid, header.uid, &header.comm),
                family: if addr.is_ipv4() { "inet" } else { "inet6" }.to_string(),
                addr: addr.to_string(),
                port,
            },
            KernelEvent::Exit { header } => {
                let process = t.info(header.pid, header.uid, &header.comm);
                t.on_exit(header.pid);
                Body::Exit { process }
            }
            KernelEvent::IoUring { header } => {
                let process = t.info(header.pid, header.uid, &header.comm);
                Body::Alert {
                    severity: "warning".into(),
                    category: "defense_evasion".into(),
                    reason: format!(
                        "{} (pid {}) tried io_uring, which bypasses syscall monitoring; killed",
                        process.comm, process.pid
                    ),
                    related: Vec::new(),
                }
            }
        })
    }

    fn record(&mut self, ts: OffsetDateTime, body: Body) {
        let event = Event {
            seq: self.next_seq,
            ts,
            body,
            verdict: None,
        };
        self.next_seq += 1;
        self.output.write(&event);
        self.stats.emitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Reports kernel drops that happened since the last call, as a `lost`
    /// event in the stream: drops are never silent.
    pub fn report_lost(&mut self, kernel_total: u64) {
        self.stats.lost.store(kernel_total, Ordering::Relaxed);
        if kernel_total > self.lost_reported {
            let count = kernel_total - self.lost_reported;
            self.lost_reported = kernel_total;
            tracing::warn!("{count} events lost: the ring buffer was full");
            self.record(OffsetDateTime::now_utc(), Body::Lost { count });
        }
    }

    pub fn flush(&mut self) {
        self.output.flush();
    }

    pub fn processes(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Header, KernelAction};
    use std::collections::HashMap;

    fn header(pid: u32, uid: u32, comm: &str) -> Header {
        Header {
            pid,
            tid: pid,
            uid,
            ktime_ns: 1_000,
            action: KernelAction::None,
            rule_id: 0,
            comm: comm.into(),
        }
    }

    #[test]
    fn fork_then_exec_is_attributed_and_sequenced() {
        let dir = tempfile::tempdir().unwrap();
        let out_path = dir.path().join("events.jsonl");
        let output = Output::open(out_path.to_str().unwrap()).unwrap();
        let agents = HashMap::from([(1000, "claude".to_string())]);
        let table = ProcessTable::with_proc_root(agents, dir.path().to_path_buf());
        let mut p = Pipeline::new(table, output, Arc::new(Stats::default()));
        p.handle(KernelEvent::Fork {
            header: header(10, 1000, "bash"),
            child_pid: 11,
        });
        p.handle(KernelEvent::Exec {
            header: header(11, 0, "sudo"),
            filename: "/usr/bin/sudo".into(),
            argv: vec!["sudo".into(), "id".into()],
            argv_truncated: false,
            at_entry: false,
        });
        p.report_lost(3);
        p.flush();
        let text = std::fs::read_to_string(&out_path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["seq"], 1);
        assert_eq!(lines[0]["kind"], "exec");
        assert_eq!(lines[0]["ppid"], 10);
        assert_eq!(lines[0]["uid"], 0);
        assert_eq!(lines[0]["agent"], "claude");
        assert_eq!(lines[0]["argv"], serde_json::json!(["sudo", "id"]));
        assert_eq!(lines[1]["kind"], "lost");
        assert_eq!(lines[1]["count"], 3);
    }
}
