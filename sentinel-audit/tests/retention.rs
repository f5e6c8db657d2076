//! Retention and the query API: removing old records leaves a sealed
//! checkpoint so the remainder still verifies and tampering is still
//! caught; tail, query filters and stats return what was written.

mod common;

use common::{at, Trail};
use sentinel_audit::{verify, AuditError, AuditReader, Problem, QueryFilter, Retention};
use sentinel_policy::Decision;

#[test]
fn keep_last_leaves_a_verifiable_remainder() {
    let trail = Trail::with_records(20);
    let mut log = trail.open();
    let summary = log
        .retain(Retention::KeepLast(5))
        .expect("retain")
        .expect("something removed");
    assert_eq!(
        (summary.first_seq, summary.last_seq, summary.removed),
        (1, 15, 15)
    );

    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, 5);
    assert_eq!(report.retained_through, Some(15));
    assert_eq!((report.first_seq, report.last_seq), (Some(16), Some(20)));

    // A second retention continues from the first; the chain continues.
    log.retain(Retention::KeepLast(2)).expect("retain again");
    log.append(common::varied(21)).expect("append");
    drop(log);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.retained_through, report.count), (Some(18), 3));
}

#[test]
fn older_than_uses_the_injected_clock_and_keeps_the_last_record() {
    // Records are 10 s apart starting at T0+10 s.
    let trail = Trail::with_records(20);
    let mut log = trail.open();
    trail.clock.set(at(200));
    let summary = log
        .retain(Retention::OlderThan(time::Duration::seconds(100)))
        .expect("retain")
        .expect("something removed");
    // Older than T0+100 s: records 1..9.
    assert_eq!((summary.first_seq, summary.last_seq), (1, 9));
    trail.clock.set(at(100_000));
    let summary = log
        .retain(Retention::OlderThan(time::Duration::seconds(1)))
        .expect("retain")
        .expect("something removed");
    assert_eq!(summary.last_seq, 19, "the newest record always stays");
    assert!(verify(&trail.db(), &trail.state()).expect("verify").ok);
    assert_eq!(log.retain(Retention::KeepLast(1)).expect("retain"), None);
}

#[test]
fn tampering_after_retention_is_still_detected() {
    let make = || {
        let trail = Trail::with_records(20);
        trail.open().retain(Retention::KeepLast(5)).expect("retain");
        trail
    };
    let bad = |trail: &Trail| {
        let report = verify(&trail.db(), &trail.state()).expect("verify runs");
        assert!(!report.ok, "{report:?}");
        report.first_bad.expect("named")
    };

    let trail = make();
    trail
        .raw()
        .execute("DELETE FROM records WHERE seq = 16", [])
        .expect("tamper");
    assert_eq!(bad(&trail), (16, Problem::Deleted));

    // Claiming a larger removed range needs the seal.
    let trail = make();
    trail
        .raw()
        .execute("UPDATE retention SET last_seq = 16", [])
        .expect("tamper");
    assert_eq!(bad(&trail), (1, Problem::BadRetentionCheckpoint));

    // Dropping the checkpoint exposes the missing head.
    let trail = make();
    trail
        .raw()
        .execute("DELETE FROM retention", [])
        .expect("tamper");
    assert_eq!(bad(&trail), (1, Problem::Deleted));

    let trail = make();
    trail
        .raw()
        .execute("UPDATE records SET rule = 'x' WHERE seq = 18", [])
        .expect("tamper");
    assert_eq!(
        bad(&trail),
        (
            18,
            Problem::Edited {
                column: sentinel_audit::Column::Rule
            }
        )
    );
}

#[test]
fn retention_refuses_to_remove_tampered_records() {
    let trail = Trail::with_records(20);
    trail
        .raw()
        .execute("UPDATE records SET agent = 'nobody' WHERE seq = 3", [])
        .expect("tamper");
    let mut log = trail.open();
    match log.retain(Retention::KeepLast(5)) {
        Err(AuditError::RetentionBlocked { seq, .. }) => assert_eq!(seq, 3),
        other => panic!("retention laundered tampering: {other:?}"),
    }
    // Nothing was removed: the evidence is still there.
    assert_eq!(
        verify(&trail.db(), &trail.state())
            .expect("verify")
            .first_bad,
        Some((
            3,
            Problem::Edited {
                column: sentinel_audit::Column::Agent
            }
        ))
    );
}

#[test]
fn tail_query_and_stats_return_what_was_written() {
    let trail = Trail::with_records(20);
    let reader = AuditReader::open(&trail.db()).expect("reader");

    let tail: Vec<u64> = reader
        .tail(3)
        .expect("tail")
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(tail, vec![18, 19, 20]);

    let query = |filter: QueryFilter| -> Vec<u64> {
        reader
            .query(&filter)
            .expect("query")
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    // varied(i): i%4 == 0 allow exec, 1 deny exec, 2 deny open, 3 connect.
    assert_eq!(
        query(QueryFilter {
            kind: Some("open".into()),
            ..Default::default()
        }),
        vec![2, 6, 10, 14, 18]
    );
    assert_eq!(
        query(QueryFilter {
            verdict: Some(Decision::Allow),
            ..Default::default()
        }),
        vec![4, 8, 12, 16, 20]
    );
    assert_eq!(
        query(QueryFilter {
            rule: Some("no-rm-rf".into()),
            ..Default::default()
        }),
        vec![1, 5, 9, 13, 17]
    );
    assert_eq!(
        query(QueryFilter {
            agent: Some("codex".into()),
            ..Default::default()
        }),
        vec![2, 6, 10, 14, 18]
    );
    assert_eq!(
        query(QueryFilter {
            since: Some(at(50)),
            until: Some(at(90)),
            ..Default::default()
        }),
        vec![5, 6, 7, 8]
    );
    assert_eq!(
        query(QueryFilter {
            kind: Some("exec".into()),
            verdict: Some(Decision::Deny),
            limit: Some(2),
            ..Default::default()
        }),
        vec![1, 5]
    );

    let stats = reader.stats(&QueryFilter::default()).expect("stats");
    assert_eq!(stats.records, 20);
    assert_eq!((stats.first_seq, stats.last_seq), (Some(1), Some(20)));
    assert_eq!(
        stats.by_kind,
        vec![
            ("exec".to_string(), 10),
            ("connect".to_string(), 5),
            ("open".to_string(), 5)
        ]
    );
    assert_eq!(
        stats.by_verdict,
        vec![
            ("deny".to_string(), 10),
            ("allow".to_string(), 5),
            ("none".to_string(), 5)
        ]
    );
    assert_eq!(stats.by_rule.len(), 3);
    let filtered = reader
        .stats(&QueryFilter {
            agent: Some("claude".into()),
            ..Default::default()
        })
        .expect("stats");
    assert_eq!(filtered.records, 10);
}

#[test]
fn one_writer_per_chain_and_retention_from_the_cli() {
    let trail = Trail::with_records(12);
    let log = trail.open();
    // A second writer is refused while the first holds the chain.
    let second = sentinel_audit::AuditLog::open(&trail.db(), &trail.state());
    assert!(
        matches!(second, Err(AuditError::Busy { .. })),
        "a second writer must be refused"
    );
    let cmd = |keep: u64| sentinel_audit::cli::AuditCommand::Retain {
        location: sentinel_audit::cli::Location {
            db: trail.db(),
            state_dir: trail.state(),
        },
        older_than: None,
        keep_last: Some(keep),
    };
    assert_eq!(
        sentinel_audit::cli::run(cmd(4)),
        std::process::ExitCode::from(2),
        "retain needs the writer"
    );
    drop(log);
    assert_eq!(
        sentinel_audit::cli::run(cmd(4)),
        std::process::ExitCode::SUCCESS
    );
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.count, report.retained_through), (4, Some(8)));
}
