//! Cost of scoring one action (`AnomalyEngine::assess`, which is also the
//! seam's `score`) against a trained baseline, and of the detector's
//! `observe` on one kernel event. Run: `cargo bench -p sentinel-anomaly`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sentinel_anomaly::{AnomalyEngine, Detector, ScorerConfig};
use sentinel_audit::{Body, Event, ProcessInfo};
use sentinel_policy::{Action, Object};
use serde_json::json;

fn mcp(tool: &str, args: serde_json::Value) -> Action {
    Action {
        agent: Some("claude".into()),
        uid: 1000,
        pid: 4242,
        object: Object::Mcp {
            server: "fs".into(),
            tool: tool.into(),
            args,
        },
    }
}

/// An engine trained on 2,000 calls; `flush_interval` decides whether the
/// periodic SQLite write falls inside the measurement.
fn trained(dir: &std::path::Path, flush_interval: Duration) -> (AnomalyEngine, SystemTime) {
    let config = ScorerConfig {
        timezone: chrono_tz::Tz::UTC,
        flush_interval,
        ..ScorerConfig::default()
    };
    let mut engine = AnomalyEngine::open(&dir.join("bench.db"), config).expect("open");
    let mut now = UNIX_EPOCH + Duration::from_secs(1_795_392_000);
    for i in 0..2_000u64 {
        let tool = ["read_file", "list_dir", "write_file", "search"][(i % 4) as usize];
        let args = json!({"path": format!("/work/src/file{}.rs", i % 200), "opts": {"recursive": i % 2 == 0}});
        engine.assess(&mcp(tool, args), now);
        now += Duration::from_secs(7);
    }
    engine.flush().expect("flush");
    (engine, now)
}

fn bench_score(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    // In memory only: flushing is measured separately below.
    let (mut engine, mut now) = trained(dir.path(), Duration::from_secs(86_400 * 365));
    let known = mcp(
        "read_file",
        json!({"path": "/work/src/file4.rs", "opts": {"recursive": true}}),
    );
    c.bench_function("score/mcp_known_args", |b| {
        b.iter(|| {
            now += Duration::from_millis(100);
            black_box(engine.assess(black_box(&known), now))
        })
    });
    let mut n = 0u64;
    c.bench_function("score/mcp_novel_nested_args", |b| {
        b.iter(|| {
            n += 1;
            now += Duration::from_millis(100);
            let action = mcp(
                "read_file",
                json!({"path": format!("/home/agent/x{n}"), "opts": {"depth": {"max": n}}}),
            );
            black_box(engine.assess(&action, now))
        })
    });
    let exec = Action {
        agent: Some("claude".into()),
        uid: 1000,
        pid: 4243,
        object: Object::Exec {
            binary: "/usr/bin/git".into(),
            argv: vec!["git".into(), "status".into()],
        },
    };
    c.bench_function("score/exec", |b| {
        b.iter(|| {
            now += Duration::from_millis(100);
            black_box(engine.assess(black_box(&exec), now))
        })
    });

    // The default 30 s flush with one action every 100 ms: one SQLite
    // transaction per 300 actions, amortised.
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, mut now) = trained(dir.path(), Duration::from_secs(30));
    c.bench_function("score/mcp_known_args_with_flush", |b| {
        b.iter(|| {
            now += Duration::from_millis(100);
            black_box(engine.assess(black_box(&known), now))
        })
    });
}

fn bench_detector(c: &mut Criterion) {
    let mut detector = Detector::default();
    let mut now = UNIX_EPOCH + Duration::from_secs(1_795_392_000);
    let process = ProcessInfo {
        pid: 200,
        ppid: 100,
        uid: 1000,
        comm: "cargo".into(),
        exe: "/usr/bin/cargo".into(),
        agent: Some("claude".into()),
    };
    let mut seq = 0u64;
    c.bench_function("detector/observe_open", |b| {
        b.iter(|| {
            seq += 1;
            now += Duration::from_millis(1);
            let event = Event {
                seq,
                ts: time::OffsetDateTime::UNIX_EPOCH,
                body: Body::Open {
                    process: process.clone(),
                    path: "/home/agent/src/main.rs".into(),
                    path_requested: None,
                    flags: 0,
                },
                verdict: None,
            };
            black_box(detector.observe(&event, now))
        })
    });
}

criterion_group!(benches, bench_score, bench_detector);
criterion_main!(benches);
