//! `Engine::evaluate` cost per action against the embedded default policy
//! (about 30 rules across exec, open and MCP), for typical actions: the
//! common case is an unmatched action that walks every rule of its kind.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use sentinel_policy::{Action, Engine, Mode, Object, Policy};
use serde_json::json;

fn action(object: Object) -> Action {
    Action {
        agent: Some("claude".into()),
        uid: 1001,
        pid: 4242,
        object,
    }
}

fn bench_evaluate(c: &mut Criterion) {
    let mut engine = Engine::new(Policy::embedded_defaults());
    engine.set_mode(Mode::Alert);
    engine.set_homes(HashMap::from([(1001, PathBuf::from("/home/agent"))]));
    let now = UNIX_EPOCH + Duration::from_secs(1_767_571_200);
    let cases = [
        (
            "open-unmatched-read",
            action(Object::Open {
                path: "/home/agent/project/src/main.rs".into(),
                write: false,
            }),
        ),
        (
            "open-denied-ssh-key",
            action(Object::Open {
                path: "/home/agent/.ssh/id_ed25519".into(),
                write: false,
            }),
        ),
        (
            "exec-unmatched-shell",
            action(Object::Exec {
                binary: "/bin/sh".into(),
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    "cargo build --release 2>&1 | tail".into(),
                ],
            }),
        ),
        (
            "connect-unmatched",
            action(Object::Connect {
                addr: "140.82.112.3".parse().expect("literal address"),
                port: 443,
            }),
        ),
        (
            "mcp-unmatched-nested-args",
            action(Object::Mcp {
                server: "files".into(),
                tool: "write_file".into(),
                args: json!({"path": "/srv/app/config.json", "content": "{...}", "options": {"mode": 420, "mkdirs": true}}),
            }),
        ),
    ];
    let mut group = c.benchmark_group("evaluate");
    for (name, action) in &cases {
        group.bench_function(*name, |b| {
            b.iter(|| engine.evaluate(black_box(action), now))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_evaluate);
criterion_main!(benches);
