//! Tamper tests: every kind of edit an attacker with write access to the
//! database can make is detected, with the right sequence number.

mod common;

use common::{rewrite_from, Trail};
use sentinel_audit::{verify, AnchorStatus, AuditError, AuditLog, Column, Problem};

const RECORDS: u64 = 10;

fn verify_after(sql: &str) -> (u64, Problem) {
    let trail = Trail::with_records(RECORDS);
    trail.raw().execute_batch(sql).expect("tamper");
    first_bad(&trail)
}

fn first_bad(trail: &Trail) -> (u64, Problem) {
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(!report.ok, "tampering not detected: {report:?}");
    report.first_bad.expect("first bad record named")
}

fn edited(column: Column) -> Problem {
    Problem::Edited { column }
}

#[test]
fn intact_trail_verifies_with_count_and_anchor() {
    let trail = Trail::with_records(RECORDS);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, RECORDS);
    assert_eq!(
        (report.first_seq, report.last_seq),
        (Some(1), Some(RECORDS))
    );
    assert_eq!(report.anchor, AnchorStatus::Matched { seq: RECORDS });
    assert_eq!(report.first_bad, None);
}

#[test]
fn edit_of_each_column_is_detected_and_named() {
    // Record 5 is `rm -rf`, denied by rule no-rm-rf, agent claude.
    let cases = [
        (
            "UPDATE records SET ts = ts + 1 WHERE seq = 5",
            edited(Column::Ts),
        ),
        (
            "UPDATE records SET kind = 'open' WHERE seq = 5",
            edited(Column::Kind),
        ),
        (
            "UPDATE records SET agent = 'intern' WHERE seq = 5",
            edited(Column::Agent),
        ),
        (
            "UPDATE records SET agent = NULL WHERE seq = 5",
            edited(Column::Agent),
        ),
        (
            "UPDATE records SET action = 'allow' WHERE seq = 5",
            edited(Column::Action),
        ),
        (
            "UPDATE records SET rule = 'allow-ls' WHERE seq = 5",
            edited(Column::Rule),
        ),
        (
            "UPDATE records SET event = replace(event, '\"rm\"', '\"ls\"') WHERE seq = 5",
            edited(Column::Event),
        ),
        (
            "UPDATE records SET epoch = epoch + 1 WHERE seq = 5",
            edited(Column::Epoch),
        ),
        (
            "UPDATE records SET prev_hash = zeroblob(32) WHERE seq = 5",
            edited(Column::PrevHash),
        ),
        (
            "UPDATE records SET hash = zeroblob(32) WHERE seq = 5",
            edited(Column::Hash),
        ),
        (
            "UPDATE records SET seal = zeroblob(32) WHERE seq = 5",
            Problem::BadSeal,
        ),
        (
            "UPDATE records SET kind = 7 WHERE seq = 5",
            edited(Column::Kind),
        ),
        // The record leaves its place: seq 5 is now missing.
        (
            "UPDATE records SET seq = 500 WHERE seq = 5",
            Problem::Deleted,
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(verify_after(sql), (5, expected), "after `{sql}`");
    }
}

#[test]
fn deleted_middle_record_is_named() {
    assert_eq!(
        verify_after("DELETE FROM records WHERE seq = 5"),
        (5, Problem::Deleted)
    );
    assert_eq!(
        verify_after("DELETE FROM records WHERE seq = 1"),
        (1, Problem::Deleted)
    );
}

#[test]
fn swapped_records_are_reported_as_reordered() {
    let sql = "UPDATE records SET seq = -5 WHERE seq = 5;
               UPDATE records SET seq = 5 WHERE seq = 6;
               UPDATE records SET seq = 6 WHERE seq = -5;";
    assert_eq!(verify_after(sql), (5, Problem::Reordered { belongs_at: 6 }));
}

#[test]
fn truncated_tail_is_detected_through_the_anchor() {
    assert_eq!(
        verify_after("DELETE FROM records WHERE seq > 7"),
        (
            8,
            Problem::Truncated {
                anchored_seq: RECORDS
            }
        )
    );
}

#[test]
fn database_replaced_by_an_older_copy_is_detected() {
    let trail = Trail::new();
    let copy = trail.dir.path().join("old-copy.db");
    {
        let mut log = trail.open();
        let mut first: Vec<_> = (1..=6).map(common::varied).collect();
        log.append_batch(&mut first).expect("append");
        trail
            .raw()
            .execute("VACUUM INTO ?1", [copy.to_str().expect("utf-8 path")])
            .expect("backup");
        let mut more: Vec<_> = (7..=RECORDS).map(common::varied).collect();
        log.append_batch(&mut more).expect("append");
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", trail.db().display()));
    }
    std::fs::copy(&copy, trail.db()).expect("replace database");

    assert_eq!(
        first_bad(&trail),
        (
            7,
            Problem::Truncated {
                anchored_seq: RECORDS
            }
        )
    );
    // The writer refuses to continue (and so to overwrite the anchor).
    match AuditLog::open_with(&trail.db(), &trail.state(), trail.config(3)) {
        Err(AuditError::AnchorAhead {
            anchored, db_last, ..
        }) => {
            assert_eq!((anchored, db_last), (RECORDS, 6))
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("writer continued an older copy of the chain"),
    }
}

#[test]
fn rewriting_the_chain_without_the_key_breaks_the_seal() {
    let trail = Trail::with_records(RECORDS);
    rewrite_from(&trail.raw(), 5, &|e| e.replace("\"rm\"", "\"ls\""), None);
    assert_eq!(first_bad(&trail), (5, Problem::BadSeal));
}

#[test]
fn a_stolen_current_key_cannot_reseal_earlier_epochs() {
    let trail = Trail::with_records(RECORDS);
    let (current_epoch, current_key) =
        common::read_key_file(&trail.state().join(sentinel_audit::WRITER_KEY_FILE));
    let record_5_epoch: i64 = trail
        .raw()
        .query_row("SELECT epoch FROM records WHERE seq = 5", [], |r| r.get(0))
        .expect("epoch");
    assert!((record_5_epoch as u64) < current_epoch);

    // Re-sealed under the current key but keeping its epoch: bad seal.
    rewrite_from(
        &trail.raw(),
        5,
        &|e| e.replace("\"rm\"", "\"ls\""),
        Some(&current_key),
    );
    assert_eq!(first_bad(&trail), (5, Problem::BadSeal));

    // Claiming the current epoch for the rewritten records: that epoch
    // would hold more records than one key ever seals.
    let trail = Trail::with_records(RECORDS);
    let (current_epoch, current_key) =
        common::read_key_file(&trail.state().join(sentinel_audit::WRITER_KEY_FILE));
    let raw = trail.raw();
    raw.execute(
        "UPDATE records SET epoch = ?1 WHERE seq >= 5",
        [current_epoch as i64],
    )
    .expect("claim epoch");
    rewrite_from(
        &raw,
        5,
        &|e| e.replace("\"rm\"", "\"ls\""),
        Some(&current_key),
    );
    assert_eq!(first_bad(&trail), (5, Problem::BadEpoch));
}

#[test]
fn writer_key_file_holds_only_the_current_epoch() {
    let trail = Trail::with_records(RECORDS);
    let (writer_epoch, writer_key) =
        common::read_key_file(&trail.state().join(sentinel_audit::WRITER_KEY_FILE));
    let (verify_epoch, verify_key) =
        common::read_verify_key(&trail.state().join(sentinel_audit::VERIFY_KEY_FILE));
    assert_eq!(verify_epoch, 0);
    assert!(writer_epoch >= 3, "epochs of 3 records over 10 records");
    assert_ne!(writer_key, verify_key);
    let state_files: Vec<_> = std::fs::read_dir(trail.state())
        .expect("state dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("name"))
        .collect();
    for name in &state_files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(trail.state().join(name))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "{name} readable by others");
    }
    use std::os::unix::fs::PermissionsExt;
    let db_dir = trail.db().parent().expect("db dir").to_path_buf();
    for path in [db_dir.clone(), trail.db(), trail.state()] {
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} open to others", path.display());
    }
    let wal = std::path::PathBuf::from(format!("{}-wal", trail.db().display()));
    if wal.exists() {
        let mode = std::fs::metadata(&wal).expect("meta").permissions().mode();
        assert_eq!(mode & 0o077, 0, "WAL open to others");
    }
}

#[test]
fn forged_anchor_is_rejected() {
    let trail = Trail::with_records(RECORDS);
    let path = trail.state().join(sentinel_audit::ANCHOR_FILE);
    let text = std::fs::read_to_string(&path).expect("anchor");
    std::fs::write(&path, text.replace("\"seq\":10", "\"seq\":7")).expect("forge");
    assert_eq!(first_bad(&trail), (7, Problem::BadAnchor));
}

#[test]
fn missing_anchor_is_reported_not_hidden() {
    let trail = Trail::with_records(RECORDS);
    std::fs::remove_file(trail.state().join(sentinel_audit::ANCHOR_FILE)).expect("rm anchor");
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok);
    assert_eq!(report.anchor, AnchorStatus::Missing);
}

#[test]
fn verify_without_the_key_is_an_environment_error() {
    let trail = Trail::with_records(3);
    let elsewhere = trail.dir.path().join("empty-state");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    assert!(verify(&trail.db(), &elsewhere).is_err());
    assert!(verify(&trail.dir.path().join("nope.db"), &trail.state()).is_err());
}

#[test]
fn reopening_continues_the_chain_in_a_new_epoch() {
    let trail = Trail::with_records(RECORDS);
    let mut log = trail.open();
    assert_eq!(log.last_seq(), RECORDS);
    let before = log.epoch();
    let seq = log.append(common::varied(11)).expect("append");
    assert_eq!(seq, RECORDS + 1);
    drop(log);
    let log = trail.open();
    assert!(log.epoch() > before);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, RECORDS + 1);
}

#[test]
fn epochs_also_turn_over_with_time() {
    let trail = Trail::new();
    let mut log = AuditLog::open_with(
        &trail.db(),
        &trail.state(),
        sentinel_audit::AuditConfig {
            epoch_records: 1000,
            epoch_seconds: 60,
            clock: std::sync::Arc::new(trail.clock.clone()),
        },
    )
    .expect("open");
    log.append(common::varied(1)).expect("append");
    let first = log.epoch();
    trail.clock.advance(time::Duration::seconds(30));
    log.append(common::varied(2)).expect("append");
    assert_eq!(log.epoch(), first);
    trail.clock.advance(time::Duration::seconds(31));
    log.append(common::varied(3)).expect("append");
    assert_eq!(log.epoch(), first + 1);
    assert!(verify(&trail.db(), &trail.state()).expect("verify").ok);
}

#[test]
fn verification_key_can_live_off_the_host() {
    let trail = Trail::with_records(RECORDS);
    let offline = trail.dir.path().join("offline.key");
    std::fs::rename(
        trail.state().join(sentinel_audit::VERIFY_KEY_FILE),
        &offline,
    )
    .expect("move key");
    assert!(verify(&trail.db(), &trail.state()).is_err());
    let report = sentinel_audit::verify_with_keys(&trail.db(), &trail.state(), &[offline])
        .expect("verify runs");
    assert!(report.ok, "{report:?}");
    // The writer keeps going without it.
    let mut log = trail.open();
    log.append(common::varied(11)).expect("append");
}

#[test]
fn lost_keys_start_a_new_segment_with_an_alert_record() {
    let trail = Trail::with_records(RECORDS);
    let saved = trail.dir.path().join("saved.verify-key");
    std::fs::copy(trail.state().join(sentinel_audit::VERIFY_KEY_FILE), &saved).expect("save");
    // A reboot wipes the tmpfs state directory.
    std::fs::remove_dir_all(trail.state()).expect("wipe state");

    let mut log = trail.open();
    let segment = log
        .health()
        .new_key_segment
        .expect("new key segment reported");
    assert_eq!(
        log.last_seq(),
        RECORDS + 1,
        "an alert record marks the new segment"
    );
    let alert = log.tail(1).expect("tail").remove(0);
    assert_eq!(alert.kind(), "alert");
    log.append(common::varied(12)).expect("append");
    assert!(log.epoch() >= segment);
    drop(log);

    // Without the old key: chain checked, old seals counted as unchecked.
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!((report.count, report.unsealed), (RECORDS + 2, RECORDS));
    // With it: everything checked.
    let report = sentinel_audit::verify_with_keys(
        &trail.db(),
        &trail.state(),
        &[
            saved.clone(),
            trail.state().join(sentinel_audit::VERIFY_KEY_FILE),
        ],
    )
    .expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.unsealed, 0);

    // Tampering with the new segment is still caught without the old key.
    trail
        .raw()
        .execute("UPDATE records SET seal = zeroblob(32) WHERE seq = 12", [])
        .expect("tamper");
    assert_eq!(first_bad(&trail), (12, Problem::BadSeal));
    // A record cannot escape its seal check by claiming an epoch no key
    // reaches.
    let raw = trail.raw();
    raw.execute("UPDATE records SET seal = zeroblob(32) WHERE seq = 12", [])
        .expect("tamper");
    raw.execute(
        "UPDATE records SET epoch = 1099511627776 WHERE seq = 12",
        [],
    )
    .expect("tamper");
    rewrite_from(&raw, 12, &|e| e.to_string(), None);
    assert_eq!(first_bad(&trail), (12, Problem::BadSeal));
    // And with an old record, given the old key.
    trail
        .raw()
        .execute("UPDATE records SET seal = zeroblob(32) WHERE seq = 3", [])
        .expect("tamper");
    let report = sentinel_audit::verify_with_keys(&trail.db(), &trail.state(), &[saved])
        .expect("verify runs");
    assert_eq!(report.first_bad, Some((3, Problem::BadSeal)));
}
