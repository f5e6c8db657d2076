//! Shared helpers of the integration tests: event builders, a raw SQL
//! handle for tampering, and a re-implementation of the documented record
//! encoding (so the tests check the spec, and can play an attacker who
//! recomputes hashes).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sentinel_audit::{AuditConfig, AuditLog, Body, Event, ManualClock, ProcessInfo};
use sentinel_policy::{Decision, Verdict};
use time::OffsetDateTime;

pub const T0: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

pub fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(T0 + seconds).expect("valid time")
}

pub fn process(agent: Option<&str>) -> ProcessInfo {
    ProcessInfo {
        pid: 4242,
        ppid: 1,
        uid: 1000,
        comm: "bash".into(),
        exe: "/usr/bin/bash".into(),
        agent: agent.map(str::to_string),
    }
}

pub fn verdict(action: Decision, rule: Option<&str>, risk: u8) -> Verdict {
    Verdict {
        action,
        rule: rule.map(str::to_string),
        reason: format!("rule {}", rule.unwrap_or("none")),
        risk,
        enforced: action == Decision::Deny,
        alert: false,
        factors: vec![],
    }
}

pub fn exec(ts: OffsetDateTime, argv: &[&str], verdict: Option<Verdict>) -> Event {
    Event {
        seq: 0,
        ts,
        body: Body::Exec {
            process: process(Some("claude")),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            argv_truncated: false,
            path_requested: None,
        },
        verdict,
    }
}

pub fn open(ts: OffsetDateTime, path: &str, verdict: Option<Verdict>) -> Event {
    Event {
        seq: 0,
        ts,
        body: Body::Open {
            process: process(Some("codex")),
            path: path.into(),
            path_requested: None,
            flags: 0o101,
        },
        verdict,
    }
}

pub fn connect(ts: OffsetDateTime, addr: &str, port: u16, verdict: Option<Verdict>) -> Event {
    Event {
        seq: 0,
        ts,
        body: Body::Connect {
            process: process(None),
            addr: addr.into(),
            port,
            family: "inet".into(),
        },
        verdict,
    }
}

/// Event `i` of a varied stream: every column takes several values.
pub fn varied(i: u64) -> Event {
    let ts = at(i as i64 * 10);
    match i % 4 {
        0 => exec(
            ts,
            &["ls", "-l"],
            Some(verdict(Decision::Allow, Some("allow-ls"), 5)),
        ),
        1 => exec(
            ts,
            &["rm", "-rf", "/home/agent/project"],
            Some(verdict(Decision::Deny, Some("no-rm-rf"), 90)),
        ),
        2 => open(
            ts,
            "/etc/shadow",
            Some(verdict(Decision::Deny, Some("secrets"), 80)),
        ),
        _ => connect(ts, "10.0.0.7", 443, None),
    }
}

pub struct Trail {
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
}

impl Trail {
    pub fn new() -> Trail {
        Trail {
            dir: tempfile::tempdir().expect("temp dir"),
            clock: ManualClock::new(at(0)),
        }
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("lib/sentinel.db")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn config(&self, epoch_records: u64) -> AuditConfig {
        AuditConfig {
            epoch_records,
            epoch_seconds: 3600,
            clock: Arc::new(self.clock.clone()),
        }
    }

    pub fn open(&self) -> AuditLog {
        AuditLog::open_with(&self.db(), &self.state(), self.config(3)).expect("open audit log")
    }

    /// A trail of `n` varied records, written in batches of 4.
    pub fn with_records(n: u64) -> Trail {
        let trail = Trail::new();
        let mut log = trail.open();
        let mut events: Vec<Event> = (1..=n).map(varied).collect();
        for chunk in events.chunks_mut(4) {
            log.append_batch(chunk).expect("append");
        }
        trail
    }

    /// A raw connection for tampering, with the accident guard dropped.
    pub fn raw(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).expect("raw open");
        conn.execute_batch("DROP TRIGGER IF EXISTS records_append_only")
            .expect("drop trigger");
        conn
    }
}

pub fn read_key_file(path: &Path) -> (u64, [u8; 32]) {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("key file")).expect("key json");
    let hex = json["key"].as_str().expect("key field");
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex");
    }
    (json["epoch"].as_u64().expect("epoch"), key)
}

/// The first segment's (epoch, key) of a verification key file.
pub fn read_verify_key(path: &Path) -> (u64, [u8; 32]) {
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("key file")).expect("key json");
    let segment = &json["segments"][0];
    let hex = segment["key"].as_str().expect("key field");
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).expect("hex");
    }
    (segment["epoch"].as_u64().expect("epoch"), key)
}

/// The record hash exactly as documented in the `encoding` module.
#[allow(clippy::too_many_arguments)]
pub fn record_hash(
    seq: u64,
    ts_ns: i64,
    kind: &str,
    agent: Option<&str>,
    action: Option<&str>,
    rule: Option<&str>,
    event: &str,
    epoch: u64,
    prev_hash: &[u8],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("sentinel-audit 2026-01 record hash v1");
    let bytes = |h: &mut blake3::Hasher, b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    let opt = |h: &mut blake3::Hasher, v: Option<&str>| match v {
        None => {
            h.update(&[0]);
        }
        Some(s) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    };
    h.update(&seq.to_le_bytes());
    h.update(&ts_ns.to_le_bytes());
    bytes(&mut h, kind.as_bytes());
    opt(&mut h, agent);
    opt(&mut h, action);
    opt(&mut h, rule);
    bytes(&mut h, event.as_bytes());
    h.update(&epoch.to_le_bytes());
    bytes(&mut h, prev_hash);
    *h.finalize().as_bytes()
}

pub fn record_seal(key: &[u8; 32], hash: &[u8]) -> [u8; 32] {
    let mut mac = blake3::Hasher::new_keyed(key);
    mac.update(b"sentinel-audit seal v1 record\0");
    mac.update(hash);
    *mac.finalize().as_bytes()
}

/// Plays an attacker who edits record `seq`'s event and recomputes the
/// hash chain from there to the tail, sealing with `key` if given (else
/// keeping the old seals).
pub fn rewrite_from(
    conn: &rusqlite::Connection,
    seq: u64,
    edit: &dyn Fn(&str) -> String,
    key: Option<&[u8; 32]>,
) {
    type Row = (
        i64,
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        String,
        i64,
        Vec<u8>,
    );
    let rows: Vec<Row> = {
        let mut stmt = conn
            .prepare("SELECT seq, ts, kind, agent, action, rule, event, epoch, prev_hash FROM records WHERE seq >= ?1 ORDER BY seq")
            .expect("prepare");
        stmt.query_map([seq as i64], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
            ))
        })
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
    };
    let mut prev: Option<Vec<u8>> = None;
    for (s, ts, kind, agent, action, rule, event, epoch, prev_hash) in rows {
        let event = if s as u64 == seq { edit(&event) } else { event };
        let prev_hash = prev.clone().unwrap_or(prev_hash);
        let hash = record_hash(
            s as u64,
            ts,
            &kind,
            agent.as_deref(),
            action.as_deref(),
            rule.as_deref(),
            &event,
            epoch as u64,
            &prev_hash,
        );
        conn.execute(
            "UPDATE records SET event = ?1, prev_hash = ?2, hash = ?3 WHERE seq = ?4",
            rusqlite::params![event, prev_hash, &hash[..], s],
        )
        .expect("update");
        if let Some(key) = key {
            let seal = record_seal(key, &hash);
            conn.execute(
                "UPDATE records SET seal = ?1 WHERE seq = ?2",
                rusqlite::params![&seal[..], s],
            )
            .expect("reseal");
        }
        prev = Some(hash.to_vec());
    }
}
