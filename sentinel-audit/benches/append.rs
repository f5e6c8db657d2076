//! The sealed audit chain's append path, stage by stage and end to end.
//!
//! * `audit_stage/*`: one record through each in-memory stage — encoding
//!   the event (the keyed JSON of the live stream, for comparison, and the
//!   compact form the chain stores), the record hash, a seal.
//! * `audit_append/batch_N`: records/s appended to a real database in
//!   batches of N, as the daemon's writer thread commits them: one
//!   transaction with `synchronous=FULL` (the WAL fsynced), one seal per
//!   batch, the anchor published after it. The database is on the disk
//!   that holds the target directory (as /var/lib/sentinel would be); the
//!   state directory with the keys and anchor is on a tmpfs when there is
//!   one (`/dev/shm`), as /run/sentinel is in production.
//! * `audit_append_cpu/batch_N`: the same, timed in CPU time of the whole
//!   process (every thread: writer, sealer, WAL checkpointer) instead of
//!   wall time: records per CPU-second, the rate on a machine whose cores
//!   and disk are not shared with other work (the wall rate above counts
//!   fsync waits and, on a shared machine, other processes' turns).
//! * `audit_verify`: records/s checked by `verify`.
//!
//! Run with `cargo bench -p sentinel-audit --bench append`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sentinel_audit::stages;
use sentinel_audit::{AuditLog, Body, Event, ProcessInfo};
use sentinel_policy::{Decision, Verdict};
use time::OffsetDateTime;

/// Timestamps only move forward, as the daemon's do: a batch that reused
/// earlier timestamps would insert into the middle of the `ts` index.
static CLOCK: AtomicU64 = AtomicU64::new(0);

/// An open by a watched process, as a flood produces them.
fn sample_event(i: u64) -> Event {
    let tick = CLOCK.fetch_add(1, Ordering::Relaxed);
    Event {
        seq: i,
        ts: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + tick as i128)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
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

fn stage(c: &mut Criterion) {
    let event = sample_event(7);
    let mut group = c.benchmark_group("audit_stage");
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_keyed_json", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            serde_json::to_writer(&mut out, &event).expect("json");
            out.len()
        })
    });
    let mut encoded = Vec::with_capacity(512);
    group.bench_function("encode_compact", |b| {
        b.iter(|| {
            stages::encode(&event, &mut encoded);
            encoded.len()
        })
    });
    let text = encoded;
    group.bench_function("hash", |b| {
        let mut hasher = stages::Hasher::default();
        let mut prev = [0u8; 32];
        b.iter(|| {
            prev = hasher.hash(&event, &text, &prev);
            prev[0]
        })
    });
    group.bench_function("seal", |b| {
        let key = [9u8; 32];
        let hash = [7u8; 32];
        b.iter(|| stages::seal(&key, &hash))
    });
    group.finish();
}

/// A directory for the state (keys, anchor): a tmpfs if there is one.
fn state_parent() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// CPU time of the whole process (all threads).
struct ProcessCpu;

fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl Measurement for ProcessCpu {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        process_cpu()
    }
    fn end(&self, start: Duration) -> Duration {
        process_cpu().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, value: &Duration) -> f64 {
        value.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn append(c: &mut Criterion) {
    append_in("audit_append", c, &[1, 1024, 16_384, 65_536]);
}

fn append_cpu(c: &mut Criterion<ProcessCpu>) {
    append_in("audit_append_cpu", c, &[1024, 16_384, 65_536]);
}

fn append_in<M: Measurement>(name: &str, c: &mut Criterion<M>, batches: &[usize]) {
    // On the target directory's disk, not a tmpfs /tmp: fsync must cost
    // what it costs on the real database disk.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let state = tempfile::tempdir_in(state_parent()).expect("state dir");
    let mut log =
        AuditLog::open(&dir.path().join("bench.db"), state.path()).expect("open audit log");
    let mut group = c.benchmark_group(name);
    for &batch in batches {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || (0..batch as u64).map(sample_event).collect::<Vec<_>>(),
                |mut events| log.append_batch(&mut events).expect("append"),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Records/s checked by `verify` (hash, seal, link, epoch, anchor).
fn verify(c: &mut Criterion) {
    const RECORDS: u64 = 100_000;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let state = tempfile::tempdir_in(state_parent()).expect("state dir");
    let db = dir.path().join("verify.db");
    {
        let mut log = AuditLog::open(&db, state.path()).expect("open audit log");
        let mut events: Vec<_> = (0..RECORDS).map(sample_event).collect();
        for chunk in events.chunks_mut(16_384) {
            log.append_batch(chunk).expect("append");
        }
    }
    let mut group = c.benchmark_group("audit_verify");
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function(format!("records_{RECORDS}"), |b| {
        b.iter(|| {
            let report = sentinel_audit::verify(&db, state.path()).expect("verify");
            assert!(report.ok);
            report.count
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = stage, append, verify
}
criterion_group! {
    name = cpu;
    config = Criterion::default().sample_size(10).with_measurement(ProcessCpu);
    targets = append_cpu
}
criterion_main!(benches, cpu);
