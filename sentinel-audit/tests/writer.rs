//! The writer thread end to end: events from several threads are
//! committed in batches, exported with checkpoints, and verify.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Trail;
use sentinel_audit::{verify, AuditWriter, AuditWriterOptions, SinkOptions, SinkSpec, Sinks};

#[test]
fn writer_commits_exports_and_verifies() {
    let trail = Trail::new();
    let export = trail.dir.path().join("live.jsonl");
    let sinks = Sinks::start(
        &[SinkSpec::jsonl(export.to_str().expect("utf-8")).expect("spec")],
        &SinkOptions {
            queue_capacity: 100_000,
            ..SinkOptions::default()
        },
    )
    .expect("sinks");
    let writer = Arc::new(
        AuditWriter::spawn(
            trail.open(),
            sinks,
            AuditWriterOptions {
                max_batch: 256,
                ..AuditWriterOptions::default()
            },
        )
        .expect("spawn writer"),
    );
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..1500 {
                    writer.record(common::varied(p * 1500 + i));
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().expect("producer");
    }
    let checkpoint = writer.flush(Duration::from_secs(60)).expect("flushed");
    assert_eq!(checkpoint.seq, 3000);
    let writer = Arc::try_unwrap(writer).unwrap_or_else(|_| panic!("writer still shared"));
    let stats = writer.shutdown();
    assert_eq!((stats.recorded, stats.dropped, stats.failed), (3000, 0, 0));
    assert_eq!(stats.last_seq, 3000);
    assert_eq!(stats.sinks[0].1.dropped, 0);

    let text = std::fs::read_to_string(&export).expect("export");
    let mut event_seqs = Vec::new();
    let mut checkpoints = Vec::new();
    for line in text.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("json line");
        let seq = value["seq"].as_u64().expect("seq");
        if value["kind"] == "audit_checkpoint" {
            checkpoints.push(seq);
        } else {
            event_seqs.push(seq);
        }
    }
    assert_eq!(event_seqs.len(), 3000);
    assert!(event_seqs.iter().copied().eq(1..=3000), "exported in order");
    assert_eq!(checkpoints.last(), Some(&3000));
    assert!(
        checkpoints.len() >= 12,
        "one checkpoint per batch of at most 256"
    );

    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, 3000);
}
