//! The policy loader and the kernel compiler on arbitrary policy text: the
//! input is split into up to three files at lines reading `%%`; a policy
//! that loads is compiled for the kernel and asked for a verdict on one
//! action of each kind.
//!
//! Checked besides "no panic": loading is deterministic (the same files
//! give the same rules in the same order).
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use sentinel_policy::{Action, Engine, Object, Policy};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let files: Vec<(String, &str)> = text
        .split("\n%%\n")
        .take(3)
        .enumerate()
        .map(|(i, t)| (format!("fuzz-{i}.toml"), t))
        .collect();
    let Ok(policy) = Policy::from_sources(&files) else {
        return;
    };
    let again = Policy::from_sources(&files).expect("the same files load twice");
    let names = |p: &Policy| p.rules().iter().map(|r| r.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&policy), names(&again));

    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let homes = HashMap::from([(2001u32, std::path::PathBuf::from("/home/agent"))]);
    let mut engine = Engine::new(policy);
    engine.set_homes(homes.clone());
    let _ = engine.kernel_policy(&homes, now);
    let objects = [
        Object::Exec {
            binary: "/usr/bin/curl".into(),
            argv: vec!["curl".into(), "http://example.invalid".into()],
        },
        Object::Open {
            path: "/home/agent/.ssh/id_ed25519".into(),
            write: false,
        },
        Object::Connect {
            addr: "10.1.2.3".parse().expect("an address"),
            port: 443,
        },
        Object::Mcp {
            server: "fs".into(),
            tool: "read_file".into(),
            args: serde_json::json!({"path": "/etc/shadow"}),
        },
    ];
    for object in objects {
        let action = Action {
            agent: Some("agent".into()),
            uid: 2001,
            pid: 4242,
            object,
        };
        let _ = engine.evaluate(&action, now);
    }
});
