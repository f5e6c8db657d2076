//! The `sentinel audit` runner: exit codes (0 intact, 1 tampered, 2
//! environment error) and exports to a file.

mod common;

use std::process::ExitCode;

use clap::Parser;
use common::Trail;
use sentinel_audit::cli::{run, AuditCommand};
use sentinel_audit::Event;

#[derive(Parser)]
struct Audit {
    #[command(subcommand)]
    cmd: AuditCommand,
}

fn run_args(args: &[&str]) -> String {
    let cmd = Audit::try_parse_from(std::iter::once("audit").chain(args.iter().copied()))
        .expect("valid command line")
        .cmd;
    format!("{:?}", run(cmd))
}

fn code(n: u8) -> String {
    format!("{:?}", ExitCode::from(n))
}

#[test]
fn verify_exit_codes() {
    let trail = Trail::with_records(8);
    let db = trail.db();
    let state = trail.state();
    let args = [
        "verify",
        "--db",
        db.to_str().expect("utf-8"),
        "--state-dir",
        state.to_str().expect("utf-8"),
    ];
    assert_eq!(run_args(&args), code(0));

    trail
        .raw()
        .execute("DELETE FROM records WHERE seq = 4", [])
        .expect("tamper");
    assert_eq!(run_args(&args), code(1));

    let missing = trail.dir.path().join("missing.db");
    assert_eq!(
        run_args(&["verify", "--db", missing.to_str().expect("utf-8")]),
        code(2)
    );
}

#[test]
fn export_writes_every_record_in_both_formats() {
    let trail = Trail::with_records(12);
    let db = trail.db();
    let db = db.to_str().expect("utf-8");
    let jsonl = trail.dir.path().join("out.jsonl");
    let cef = trail.dir.path().join("out.cef");
    assert_eq!(
        run_args(&[
            "export",
            "--db",
            db,
            "--format",
            "jsonl",
            "--out",
            jsonl.to_str().expect("utf-8")
        ]),
        code(0)
    );
    assert_eq!(
        run_args(&[
            "export",
            "--db",
            db,
            "--format",
            "cef",
            "--kind",
            "exec",
            "--out",
            cef.to_str().expect("utf-8"),
        ]),
        code(0)
    );
    let text = std::fs::read_to_string(&jsonl).expect("jsonl export");
    let seqs: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Event>(l)
                .expect("an Event per line")
                .seq
        })
        .collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
    let text = std::fs::read_to_string(&cef).expect("cef export");
    assert_eq!(text.lines().count(), 6);
    assert!(text
        .lines()
        .all(|l| l.starts_with("CEF:0|Sentinel|sentinel|") && l.contains("|exec|")));
}

/// A standalone proxy keeps its keys in `DB.state/`; a moved one is found
/// by where its writer recorded them. `verify --db` alone finds either.
#[test]
fn verify_finds_the_keys_without_being_told_and_says_where() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let db = dir.path().join("proxy.db");
    let beside = dir.path().join("proxy.db.state");
    {
        let mut log = sentinel_audit::AuditLog::open(&db, &beside).expect("open");
        for _ in 0..3 {
            log.append(common::varied(0)).expect("append");
        }
    }
    let found = sentinel_audit::verify_found(
        &db,
        &[
            (dir.path().join("no-such-dir"), "a".into()),
            (beside.clone(), "beside the database".into()),
        ],
    )
    .expect("verified");
    assert!(found.ok, "{found:?}");
    assert_eq!(
        found.key_source.as_deref(),
        Some(format!("{} (beside the database)", beside.display()).as_str())
    );
    assert_eq!(
        run_args(&["verify", "--db", db.to_str().expect("utf-8")]),
        code(0)
    );
    // Keys elsewhere: the database says where its writer put them.
    let other = dir.path().join("elsewhere.db");
    let keys = dir.path().join("keys-somewhere");
    {
        let mut log = sentinel_audit::AuditLog::open(&other, &keys).expect("open");
        log.append(common::varied(0)).expect("append");
    }
    assert_eq!(
        sentinel_audit::recorded_key_dir(&other).as_deref(),
        Some(keys.as_path())
    );
    assert_eq!(
        run_args(&["verify", "--db", other.to_str().expect("utf-8")]),
        code(0)
    );
}
