//! Deterministic replays through the anomaly scorer with a fake clock and a
//! real SQLite file.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono_tz::Tz;
use sentinel_anomaly::{
    AnomalyAssessment, AnomalyEngine, AnomalyScorer, Level, Outcome, ScorerConfig, Severity,
    Thresholds,
};
use sentinel_policy::{Action, Mode, Object};
use serde_json::{json, Value};

/// Monday 2026-11-23 00:00:00 UTC.
const MONDAY: u64 = 1_795_392_000;

fn at(day: u64, hour: u64, minute: u64, second: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(MONDAY + day * 86_400 + hour * 3600 + minute * 60 + second)
}

fn config() -> ScorerConfig {
    ScorerConfig {
        timezone: Tz::UTC,
        ..ScorerConfig::default()
    }
}

fn engine(db: &Path) -> AnomalyEngine {
    AnomalyEngine::open(db, config()).expect("open engine")
}

fn mcp(tool: &str, args: Value) -> Action {
    Action {
        agent: Some("claude".into()),
        uid: 1000,
        pid: 4242,
        object: Object::Mcp {
            server: "shell".into(),
            tool: tool.into(),
            args,
        },
    }
}

fn factor(a: &AnomalyAssessment, name: &str) -> Option<u8> {
    a.factors.iter().find(|f| f.name == name).map(|f| f.score)
}

#[test]
fn ten_ls_then_rm_rf_is_fully_novel() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    for i in 0..10 {
        let a = engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, i, 0));
        assert!(
            !a.ready,
            "call {i} scored before the baseline had 10 samples"
        );
        assert_eq!(a.score, 0);
    }
    let known = engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, 10, 0));
    assert!(known.ready);
    assert_eq!(known.components.novelty, 0);

    let rm = engine.assess(
        &mcp("run", json!({"command": "rm -rf /"})),
        at(0, 14, 11, 0),
    );
    assert!(rm.ready);
    assert_eq!(rm.components.novelty, 100);
    assert_eq!(factor(&rm, "anomaly.novelty"), Some(100));
    assert!(
        rm.score >= 30,
        "novelty alone is 30 points, got {}",
        rm.score
    );
    assert!(rm.level >= Level::Suspicious);
}

#[test]
fn fewer_than_ten_samples_score_zero_and_the_seam_says_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    for i in 0..9 {
        let scored = engine.score(&mcp("run", json!({"command": "ls"})), at(0, 14, i, 0));
        assert_eq!(scored, None);
    }
    let a = engine.assess(&mcp("run", json!({"command": "rm -rf /"})), at(0, 3, 0, 0));
    assert!(!a.ready);
    assert_eq!(a.score, 0);
    assert_eq!(a.components, Default::default());
    assert!(a.factors.is_empty());
    assert!(a.alert.is_none() && a.lockdown.is_none());
    // The tenth sample was just learned: now it scores.
    let scored = engine.score(&mcp("run", json!({"command": "ls"})), at(0, 14, 10, 0));
    assert!(scored.is_some());
}

#[test]
fn min_samples_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = AnomalyEngine::open(
        &dir.path().join("s.db"),
        ScorerConfig {
            min_samples: 3,
            ..config()
        },
    )
    .unwrap();
    for i in 0..3 {
        assert!(
            !engine
                .assess(&mcp("run", json!({"c": 1})), at(0, 9, i, 0))
                .ready
        );
    }
    assert!(
        engine
            .assess(&mcp("run", json!({"c": 1})), at(0, 9, 4, 0))
            .ready
    );
}

#[test]
fn nested_arguments_that_differ_are_novel() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    for i in 0..12 {
        engine.assess(&mcp("query", json!({"a": {"b": 1}})), at(0, 10, i, 0));
    }
    let same = engine.assess(&mcp("query", json!({"a": {"b": 1}})), at(0, 10, 20, 0));
    assert_eq!(same.components.novelty, 0);
    let nested = engine.assess(&mcp("query", json!({"a": {"c": 1}})), at(0, 10, 21, 0));
    assert_eq!(
        nested.components.novelty, 100,
        "a nested key change must be novel"
    );
    let deeper = engine.assess(
        &mcp("query", json!({"a": {"b": 1, "x": [{"y": {"z": 0}}]}})),
        at(0, 10, 22, 0),
    );
    assert_eq!(deeper.components.novelty, 100);
}

#[test]
fn three_am_after_a_daytime_baseline_is_temporal() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    // A working week: 09:00–17:00, a call every 20 minutes.
    for day in 0..5 {
        for hour in 9..17 {
            for minute in [0, 20, 40] {
                engine.assess(
                    &mcp("run", json!({"command": "ls"})),
                    at(day, hour, minute, 0),
                );
            }
        }
    }
    let night = engine.assess(&mcp("run", json!({"command": "ls"})), at(7, 3, 0, 0));
    assert!(night.ready);
    assert!(
        night.components.temporal > 50,
        "3 a.m. temporal {}",
        night.components.temporal
    );
    assert_eq!(
        factor(&night, "anomaly.temporal"),
        Some(night.components.temporal)
    );
    let day = engine.assess(&mcp("run", json!({"command": "ls"})), at(7, 11, 0, 0));
    assert!(
        day.components.temporal < 30,
        "11 a.m. temporal {}",
        day.components.temporal
    );
}

#[test]
fn temporal_uses_the_configured_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = AnomalyEngine::open(
        &dir.path().join("s.db"),
        ScorerConfig {
            timezone: chrono_tz::Asia::Tokyo,
            ..config()
        },
    )
    .unwrap();
    // 01:00–02:00 UTC is 10:00–11:00 in Tokyo: a daytime baseline there.
    for day in 0..5 {
        for minute in (0..60).step_by(5) {
            engine.assess(&mcp("run", json!({"command": "ls"})), at(day, 1, minute, 0));
        }
    }
    let tokyo_morning = engine.assess(&mcp("run", json!({"command": "ls"})), at(7, 1, 30, 0));
    assert_eq!(tokyo_morning.components.temporal, 0);
    let tokyo_night = engine.assess(&mcp("run", json!({"command": "ls"})), at(7, 18, 0, 0));
    assert!(tokyo_night.components.temporal > 50);
}

#[test]
fn a_burst_raises_frequency() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    // Ten an hour for three hours.
    for i in 0..30 {
        engine.assess(
            &mcp("run", json!({"command": "ls"})),
            at(0, 9, 0, 0) + Duration::from_secs(i * 360),
        );
    }
    let calm = engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 12, 6, 0));
    assert_eq!(calm.components.frequency, 0);
    let mut last = calm;
    for s in 0..60 {
        last = engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 12, 7, s));
    }
    assert_eq!(last.components.frequency, 100);
    assert_eq!(factor(&last, "anomaly.frequency"), Some(100));
}

#[test]
fn an_unusual_transition_raises_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    for i in 0..20 {
        engine.assess(
            &mcp("list_dir", json!({"path": "/work"})),
            at(0, 10, 2 * i, 0),
        );
        engine.assess(
            &mcp("read_file", json!({"path": "/work/README"})),
            at(0, 10, 2 * i + 1, 0),
        );
    }
    let usual = engine.assess(&mcp("list_dir", json!({"path": "/work"})), at(0, 10, 50, 0));
    assert_eq!(usual.components.sequence, 0);
    let unusual = engine.assess(&mcp("list_dir", json!({"path": "/work"})), at(0, 10, 51, 0));
    assert!(
        unusual.components.sequence > 50,
        "list_dir → list_dir never happened, sequence {}",
        unusual.components.sequence
    );
}

#[test]
fn failures_and_denials_raise_error_rate() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    let action = mcp("run", json!({"command": "ls"}));
    for i in 0..20 {
        engine.assess(&action, at(0, 10, i, 0));
        engine.record_outcome(&action, Outcome::Success, at(0, 10, i, 1));
    }
    assert_eq!(
        engine
            .assess(&action, at(0, 10, 30, 0))
            .components
            .error_rate,
        0
    );
    for i in 0..4 {
        engine.record_outcome(&action, Outcome::Denied, at(0, 10, 31, i));
        engine.record_outcome(&action, Outcome::Failure, at(0, 10, 32, i));
    }
    let after = engine.assess(&action, at(0, 10, 33, 0));
    assert!(
        after.components.error_rate > 80,
        "error rate {}",
        after.components.error_rate
    );
    assert!(factor(&after, "anomaly.error_rate").is_some());
}

#[test]
fn baselines_survive_reopening_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    {
        let mut engine = engine(&db);
        for i in 0..10 {
            engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, i, 0));
        }
        engine.flush().unwrap();
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM anomaly_fingerprints", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
    drop(conn);

    let mut engine = engine(&db);
    let known = engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, 10, 0));
    assert!(known.ready, "the baseline was lost on reopen");
    assert_eq!(known.components.novelty, 0);
    let novel = engine.assess(
        &mcp("run", json!({"command": "rm -rf /"})),
        at(0, 14, 11, 0),
    );
    assert_eq!(novel.components.novelty, 100);
}

#[test]
fn dropping_the_engine_saves_what_it_learned() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    {
        let mut engine = engine(&db);
        // All within one flush interval: only the drop writes the rest.
        for i in 0..12 {
            engine.assess(&mcp("run", json!({"n": i})), at(0, 14, 0, i));
        }
    }
    let mut engine = engine(&db);
    let a = engine.assess(&mcp("run", json!({"n": 11})), at(0, 14, 1, 0));
    assert!(a.ready);
    assert_eq!(a.components.novelty, 0);
}

/// A daytime baseline of list_dir → read_file with successes, then a 3 a.m.
/// burst of read_file on novel paths that fail.
fn attack(engine: &mut AnomalyEngine, start: SystemTime, calls: u64) -> Vec<AnomalyAssessment> {
    let mut out = Vec::new();
    for i in 0..calls {
        let action = mcp(
            "read_file",
            json!({"path": format!("/home/agent/.ssh/id_{i}")}),
        );
        let a = engine.assess(&action, start + Duration::from_secs(i));
        engine.record_outcome(&action, Outcome::Denied, start + Duration::from_secs(i));
        out.push(a);
    }
    out
}

fn train(engine: &mut AnomalyEngine) {
    for day in 0..3 {
        for i in 0..20 {
            let list = mcp("list_dir", json!({"path": "/work"}));
            let read = mcp("read_file", json!({"path": "/work/README.md"}));
            let t = at(day, 14, 0, 0) + Duration::from_secs(i * 180);
            engine.assess(&list, t);
            engine.record_outcome(&list, Outcome::Success, t);
            engine.assess(&read, t + Duration::from_secs(90));
            engine.record_outcome(&read, Outcome::Success, t + Duration::from_secs(90));
        }
    }
}

#[test]
fn auto_lockdown_at_90_latches_until_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sentinel.db");
    let mut engine = engine(&db);
    train(&mut engine);

    let run = attack(&mut engine, at(7, 3, 0, 0), 40);
    let orders: Vec<&AnomalyAssessment> = run.iter().filter(|a| a.lockdown.is_some()).collect();
    assert_eq!(
        orders.len(),
        1,
        "exactly one lockdown order until it is lifted"
    );
    let first_90 = run
        .iter()
        .position(|a| a.score >= 90)
        .expect("the burst reaches 90");
    assert!(run[..first_90].iter().all(|a| a.lockdown.is_none()));
    let tripped = &run[first_90];
    let order = tripped
        .lockdown
        .as_ref()
        .expect("the first score >= 90 orders lockdown");
    assert_eq!(tripped.level, Level::Lockdown);
    assert!(order.score >= 90);
    assert!(
        order.reason.starts_with("auto-lockdown: anomaly score"),
        "{}",
        order.reason
    );
    assert!(order.reason.contains("claude"));
    let alert = order.alert();
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(
        tripped.alert.as_ref().map(|a| a.severity),
        Some(Severity::Critical)
    );
    assert!(engine.lockdown_state().is_some());
    // Anomalous actions are not learned.
    assert!(!tripped.learned);

    // The latch survives a restart.
    drop(engine);
    let mut engine = self::engine(&db);
    assert_eq!(
        engine.lockdown_state().map(|s| s.score),
        Some(order.score),
        "auto-lockdown must stay engaged across a restart"
    );
    let more = attack(&mut engine, at(7, 3, 10, 0), 10);
    assert!(more.iter().all(|a| a.lockdown.is_none()));

    // The operator lifts it; the next score >= 90 orders lockdown again.
    let lifted = engine.lift_lockdown("uid 0", at(7, 4, 0, 0)).unwrap();
    assert!(lifted.is_some());
    assert!(engine.lockdown_state().is_none());
    assert_eq!(engine.lift_lockdown("uid 0", at(7, 4, 0, 1)).unwrap(), None);
    let again = attack(&mut engine, at(7, 4, 1, 0), 40);
    assert_eq!(again.iter().filter(|a| a.lockdown.is_some()).count(), 1);
}

#[test]
fn the_seam_hands_the_lockdown_order_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    train(&mut engine);
    let mut took = None;
    for i in 0..40 {
        let action = mcp("read_file", json!({"path": format!("/etc/secret/{i}")}));
        let scored = engine
            .score(&action, at(7, 3, 0, i))
            .expect("baseline is ready");
        engine.record_outcome(&action, Outcome::Failure, at(7, 3, 0, i));
        if let Some(order) = engine.take_lockdown() {
            assert!(scored.score >= 90);
            assert!(scored.factors.iter().all(|f| f.score > 30));
            took = Some(order);
            break;
        }
    }
    assert!(took.is_some(), "the seam never produced a lockdown order");
    assert!(
        engine.take_lockdown().is_none(),
        "an order is handed over once"
    );
}

#[test]
fn no_lockdown_or_alert_while_learning_in_silent_allow() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    train(&mut engine);
    engine.set_mode(Mode::SilentAllow);
    let run = attack(&mut engine, at(7, 3, 0, 0), 40);
    assert!(run.iter().any(|a| a.score >= 60), "the burst is anomalous");
    assert!(run
        .iter()
        .all(|a| a.lockdown.is_none() && a.alert.is_none()));
    assert!(
        run.iter().all(|a| a.learned),
        "silent-allow learns everything"
    );
}

#[test]
fn thresholds_change_at_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    train(&mut engine);
    let bad = Thresholds {
        suspicious: 50,
        anomalous: 40,
        critical: 80,
        auto_lockdown: 90,
    };
    assert!(engine.set_thresholds(bad).is_err());
    engine
        .set_thresholds(Thresholds {
            auto_lockdown: 100,
            ..Thresholds::default()
        })
        .unwrap();
    let run = attack(&mut engine, at(7, 3, 0, 0), 40);
    assert!(run.iter().any(|a| (90..100).contains(&a.score)));
    assert!(
        run.iter().all(|a| a.lockdown.is_none()),
        "scores below the raised threshold must not lock down"
    );
    assert!(engine.lockdown_state().is_none());
}

#[test]
fn fingerprints_per_key_are_bounded_and_the_newest_kept() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    {
        let mut engine = AnomalyEngine::open(
            &db,
            ScorerConfig {
                max_fingerprints_per_key: 50,
                ..config()
            },
        )
        .unwrap();
        for i in 0..200 {
            engine.assess(
                &mcp("run", json!({"n": i})),
                at(0, 10, 0, 0) + Duration::from_secs(i),
            );
        }
        // The most recent arguments are still known; the oldest are forgotten.
        let recent = engine.assess(&mcp("run", json!({"n": 199})), at(0, 11, 0, 0));
        assert_eq!(recent.components.novelty, 0);
        let old = engine.assess(&mcp("run", json!({"n": 0})), at(0, 11, 0, 1));
        assert_eq!(old.components.novelty, 100);
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM anomaly_fingerprints", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(rows <= 51, "{rows} fingerprints stored for a cap of 50");
}

#[test]
fn the_policy_engine_scores_through_a_shared_handle() {
    use sentinel_anomaly::SharedAnomalyEngine;
    let dir = tempfile::tempdir().unwrap();
    let shared = SharedAnomalyEngine::new(engine(&dir.path().join("s.db")));
    let policy = sentinel_policy::Policy::default();
    let mut verdicts = sentinel_policy::Engine::new(policy);
    verdicts.set_anomaly(Box::new(shared.clone()));
    verdicts.set_anomaly_thresholds(Thresholds::default().into());
    for i in 0..10 {
        let a = verdicts.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, i, 0));
        assert_eq!(a.anomaly, None, "no score before 10 samples");
    }
    let a = verdicts.assess(
        &mcp("run", json!({"command": "rm -rf /"})),
        at(0, 14, 11, 0),
    );
    let score = a.anomaly.expect("scored once the baseline is ready");
    assert!(score
        .factors
        .iter()
        .any(|f| f.name == "anomaly.novelty" && f.score == 100));
    assert!(a
        .verdict
        .factors
        .iter()
        .any(|f| f.name == "anomaly.novelty"));
    // The daemon's handle sees what the engine's scoring learned.
    shared
        .lock()
        .record_outcome(&mcp("run", json!({})), Outcome::Denied, at(0, 14, 12, 0));
    assert!(shared.lock().take_lockdown().is_none());
}

#[test]
fn a_denied_action_does_not_become_normal() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    for i in 0..10 {
        engine.assess(&mcp("run", json!({"command": "ls"})), at(0, 14, i, 0));
    }
    let rm = mcp("run", json!({"command": "rm -rf /"}));
    assert_eq!(engine.assess(&rm, at(0, 14, 11, 0)).components.novelty, 100);
    engine.record_outcome(&rm, Outcome::Denied, at(0, 14, 11, 0));
    assert_eq!(
        engine.assess(&rm, at(0, 14, 12, 0)).components.novelty,
        100,
        "a refused command must stay novel"
    );
    // An allowed one is learned.
    let pwd = mcp("run", json!({"command": "pwd"}));
    assert_eq!(
        engine.assess(&pwd, at(0, 14, 13, 0)).components.novelty,
        100
    );
    engine.record_outcome(&pwd, Outcome::Success, at(0, 14, 13, 0));
    assert_eq!(engine.assess(&pwd, at(0, 14, 14, 0)).components.novelty, 0);
}

#[test]
fn handles_are_send() {
    fn send<T: Send>() {}
    send::<AnomalyEngine>();
    send::<sentinel_anomaly::SharedAnomalyEngine>();
    send::<sentinel_anomaly::AlertManager>();
    send::<sentinel_anomaly::Detector>();
}

#[test]
fn action_keys_per_agent_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("s.db");
    {
        let mut engine = AnomalyEngine::open(
            &db,
            ScorerConfig {
                max_keys_per_agent: 20,
                ..config()
            },
        )
        .unwrap();
        for i in 0..100 {
            let action = Action {
                agent: Some("claude".into()),
                uid: 1000,
                pid: 1,
                object: Object::Connect {
                    addr: std::net::IpAddr::from([10, 0, 0, i as u8]),
                    port: 443,
                },
            };
            engine.assess(&action, at(0, 10, 0, 0) + Duration::from_secs(i));
        }
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let keys: i64 = conn
        .query_row("SELECT COUNT(*) FROM anomaly_keys", [], |r| r.get(0))
        .unwrap();
    assert!(
        (1..=21).contains(&keys),
        "{keys} keys stored for a cap of 20"
    );
    let newest: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM anomaly_keys WHERE key = 'connect:10.0.0.99:443'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(newest, 1);
}

#[test]
fn a_habitually_failing_agent_is_not_an_error_anomaly() {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = engine(&dir.path().join("s.db"));
    let action = mcp("build", json!({"target": "all"}));
    for i in 0..40 {
        engine.assess(&action, at(0, 10, i, 0));
        let outcome = if i % 2 == 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        engine.record_outcome(&action, outcome, at(0, 10, i, 1));
    }
    let a = engine.assess(&action, at(0, 10, 45, 0));
    assert!(
        a.components.error_rate <= 30,
        "half the builds always fail: error rate {}",
        a.components.error_rate
    );
}
