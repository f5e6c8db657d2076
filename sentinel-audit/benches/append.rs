//! Records/s appended to the sealed audit chain, in batches as the daemon's
//! writer task commits them (one transaction, fsync, anchor per batch), and
//! records/s checked by `verify`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sentinel_audit::{AuditLog, Body, Event, ProcessInfo};
use sentinel_policy::{Decision, Verdict};
use time::OffsetDateTime;

fn sample_event(i: u64) -> Event {
    Event {
        seq: 0,
        ts: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_000_000_000 + i as i128)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH),
        body: Body::Exec {
            process: ProcessInfo {
                pid: 4242,
                ppid: 1,
                uid: 1000,
                comm: "bash".into(),
                exe: "/usr/bin/bash".into(),
                agent: Some("claude".into()),
            },
            argv: vec!["bash".into(), "-c".into(), format!("echo {i} > /tmp/out")],
            argv_truncated: false,
            path_requested: None,
        },
        verdict: Some(Verdict {
            action: Decision::Allow,
            rule: Some("allow-shell".into()),
            reason: "matched rule allow-shell".into(),
            risk: 10,
            enforced: false,
            alert: false,
            factors: vec![],
        }),
    }
}

fn append(c: &mut Criterion) {
    // On the target directory's disk, not a tmpfs /tmp: fsync must cost
    // what it costs on the real database disk.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let mut log = AuditLog::open(&dir.path().join("bench.db"), &dir.path().join("state"))
        .expect("open audit log");
    let mut group = c.benchmark_group("audit_append");
    for batch in [1usize, 64, 256, 1024] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || (0..batch as u64).map(sample_event).collect::<Vec<_>>(),
                |mut events| log.append_batch(&mut events).expect("append"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

/// Records/s checked by `verify` (hash, seal, link, epoch, anchor).
fn verify(c: &mut Criterion) {
    const RECORDS: u64 = 20_000;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir");
    let db = dir.path().join("verify.db");
    let state = dir.path().join("state");
    {
        let mut log = AuditLog::open(&db, &state).expect("open audit log");
        let mut events: Vec<_> = (0..RECORDS).map(sample_event).collect();
        for chunk in events.chunks_mut(1024) {
            log.append_batch(chunk).expect("append");
        }
    }
    let mut group = c.benchmark_group("audit_verify");
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function("records_20000", |b| {
        b.iter(|| {
            let report = sentinel_audit::verify(&db, &state).expect("verify");
            assert!(report.ok);
            report.count
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = append, verify
}
criterion_main!(benches);
