//! The seal per batch: one seal on the last record of each run of one
//! epoch's records in a committed batch vouches, through the chain, for
//! the whole run. These tests play the attacker against that: rewriting a
//! record inside a batch, stripping, forging or moving seals, stretching a
//! run over an epoch boundary with a stolen later key, cutting the tail
//! inside a batch; and check that records written before (keyed JSON, one
//! seal each) still verify and read.

mod common;

use common::{record_hash, record_seal, rewrite_from, Trail};
use sentinel_audit::{verify, AuditLog, AuditReader, Event, Problem, QueryFilter};

/// Batches of 8 records, epochs of 12: seals on 8 (batch end), 12 (epoch
/// end), 16 (batch end), 24 (both).
const BATCH: usize = 8;
const EPOCH: u64 = 12;
const RECORDS: u64 = 24;

fn trail() -> Trail {
    let trail = Trail::new();
    let mut log = open(&trail);
    let mut events: Vec<Event> = (1..=RECORDS).map(common::varied).collect();
    for chunk in events.chunks_mut(BATCH) {
        log.append_batch(chunk).expect("append");
    }
    trail
}

fn open(trail: &Trail) -> AuditLog {
    AuditLog::open_with(&trail.db(), &trail.state(), trail.config(EPOCH)).expect("open")
}

fn sealed_seqs(trail: &Trail) -> Vec<u64> {
    let raw = trail.raw();
    let mut stmt = raw
        .prepare("SELECT seq FROM records WHERE length(seal) > 0 ORDER BY seq")
        .expect("prepare");
    stmt.query_map([], |r| r.get::<_, i64>(0))
        .expect("query")
        .map(|s| s.expect("seq") as u64)
        .collect()
}

fn first_bad(trail: &Trail) -> (u64, Problem, u64) {
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(!report.ok, "tampering not detected: {report:?}");
    let (seq, problem) = report.first_bad.expect("first bad record named");
    (seq, problem, report.count)
}

/// The current (writer's) key and epoch, as a thief of the state
/// directory would have them.
fn stolen_key(trail: &Trail) -> (u64, [u8; 32]) {
    common::read_key_file(&trail.state().join(sentinel_audit::WRITER_KEY_FILE))
}

#[test]
fn one_seal_per_run_and_the_trail_verifies() {
    let trail = trail();
    assert_eq!(sealed_seqs(&trail), vec![8, 12, 16, 24]);
    let unsealed: i64 = trail
        .raw()
        .query_row(
            "SELECT count(*) FROM records WHERE length(seal) = 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(unsealed, 20);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, RECORDS);
}

#[test]
fn a_keyless_rewrite_inside_a_batch_is_caught_at_the_batch_start() {
    let trail = trail();
    // Record 18 (batch 17..24) edited, every hash after it recomputed,
    // the old seals kept: the seal on 24 no longer matches.
    rewrite_from(&trail.raw(), 18, &|e| e.replace("4242", "4343"), None);
    assert_eq!(first_bad(&trail), (17, Problem::BadSeal, 16));
    // The first record of a batch, likewise.
    let trail = self::trail();
    rewrite_from(&trail.raw(), 9, &|e| e.replace("4242", "4343"), None);
    assert_eq!(first_bad(&trail), (9, Problem::BadSeal, 8));
}

#[test]
fn an_edit_without_recomputing_is_named_exactly_inside_a_batch() {
    let trail = trail();
    trail
        .raw()
        .execute(
            "UPDATE records SET event = replace(event, '\"rm\"', '\"ls\"') WHERE seq = 21",
            [],
        )
        .expect("tamper");
    assert_eq!(
        first_bad(&trail),
        (
            21,
            Problem::Edited {
                column: sentinel_audit::Column::Event
            },
            16
        )
    );
    let trail = self::trail();
    trail
        .raw()
        .execute("UPDATE records SET hash = zeroblob(32) WHERE seq = 19", [])
        .expect("tamper");
    assert_eq!(
        first_bad(&trail),
        (
            19,
            Problem::Edited {
                column: sentinel_audit::Column::Hash
            },
            16
        )
    );
}

#[test]
fn a_forged_or_moved_seal_is_caught_where_it_was_put() {
    let trail = trail();
    trail
        .raw()
        .execute("UPDATE records SET seal = zeroblob(32) WHERE seq = 11", [])
        .expect("tamper");
    assert_eq!(first_bad(&trail), (11, Problem::BadSeal, 8));
    // A real seal moved onto another record.
    let trail = self::trail();
    trail
        .raw()
        .execute(
            "UPDATE records SET seal = (SELECT seal FROM records WHERE seq = 16) WHERE seq = 14",
            [],
        )
        .expect("tamper");
    assert_eq!(first_bad(&trail), (14, Problem::BadSeal, 12));
    // The last batch's seal replaced: no later seal says the records are
    // intact, so the whole batch is unvouched for.
    let trail = self::trail();
    trail
        .raw()
        .execute(
            "UPDATE records SET seal = randomblob(32) WHERE seq = 24",
            [],
        )
        .expect("tamper");
    assert_eq!(first_bad(&trail), (17, Problem::BadSeal, 16));
}

#[test]
fn a_run_may_not_cross_an_epoch_boundary() {
    // Without its seal, the epoch's last records would be vouched for by
    // the next epoch's key.
    let trail = trail();
    trail
        .raw()
        .execute("UPDATE records SET seal = x'' WHERE seq = 12", [])
        .expect("tamper");
    assert_eq!(first_bad(&trail), (9, Problem::BadSeal, 8));
    // Inside an epoch, a stripped seal leaves its records vouched for by
    // the next seal of the same key: nothing can be forged that way.
    let trail = self::trail();
    trail
        .raw()
        .execute("UPDATE records SET seal = x'' WHERE seq = 8", [])
        .expect("tamper");
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
}

#[test]
fn a_stolen_later_key_cannot_vouch_for_an_earlier_epochs_batch() {
    let trail = trail();
    let (current_epoch, current_key) = stolen_key(&trail);
    let raw = trail.raw();
    let epoch_of = |seq: i64| -> i64 {
        raw.query_row("SELECT epoch FROM records WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("epoch")
    };
    assert!((epoch_of(10) as u64) < current_epoch);
    assert_eq!(epoch_of(24) as u64, current_epoch);
    // Record 10 (the first epoch) rewritten, the chain recomputed, the
    // first epoch's last seal stripped, the current epoch's seals and the
    // anchor remade with the stolen key: every hash, every remaining seal
    // and the anchor are right, but the run 9..12 now ends under a later
    // key.
    rewrite_from(&raw, 10, &|e| e.replace("4242", "4343"), None);
    raw.execute("UPDATE records SET seal = x'' WHERE seq = 12", [])
        .expect("strip");
    for seq in [16i64, 24] {
        let hash: Vec<u8> = raw
            .query_row("SELECT hash FROM records WHERE seq = ?1", [seq], |r| {
                r.get(0)
            })
            .expect("hash");
        raw.execute(
            "UPDATE records SET seal = ?1 WHERE seq = ?2",
            rusqlite::params![&record_seal(&current_key, &hash)[..], seq],
        )
        .expect("reseal");
    }
    let tail: Vec<u8> = raw
        .query_row("SELECT hash FROM records WHERE seq = 24", [], |r| r.get(0))
        .expect("tail hash");
    forge_anchor(&trail, &current_key, &tail);
    assert_eq!(first_bad(&trail), (9, Problem::BadSeal, 8));
}

/// Rewrites the anchor to name `hash`, sealed with `key` as the writer
/// seals checkpoints (the documented encoding).
fn forge_anchor(trail: &Trail, key: &[u8; 32], hash: &[u8]) {
    let path = trail.state().join(sentinel_audit::ANCHOR_FILE);
    let mut anchor: sentinel_audit::Checkpoint =
        serde_json::from_slice(&std::fs::read(&path).expect("anchor")).expect("anchor json");
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    anchor.hash = hex(hash);
    let mut msg = b"sentinel-audit seal v1 checkpoint\0".to_vec();
    let bytes = |msg: &mut Vec<u8>, b: &[u8]| {
        msg.extend_from_slice(&(b.len() as u64).to_le_bytes());
        msg.extend_from_slice(b);
    };
    bytes(&mut msg, anchor.db.as_bytes());
    msg.extend_from_slice(&anchor.seq.to_le_bytes());
    bytes(&mut msg, hash);
    msg.extend_from_slice(&anchor.epoch.to_le_bytes());
    let ts = anchor.ts.unix_timestamp_nanos() as i64;
    msg.extend_from_slice(&ts.to_le_bytes());
    anchor.seal = hex(blake3::keyed_hash(key, &msg).as_bytes());
    std::fs::write(&path, serde_json::to_vec(&anchor).expect("json")).expect("forge anchor");
}

#[test]
fn a_tail_cut_inside_a_batch_is_caught_with_or_without_the_anchor() {
    let trail = trail();
    trail
        .raw()
        .execute("DELETE FROM records WHERE seq > 20", [])
        .expect("truncate");
    assert_eq!(
        first_bad(&trail),
        (21, Problem::Truncated { anchored_seq: 24 }, 16)
    );
    // Anchor gone too: records 17..20 end the chain with no seal.
    std::fs::remove_file(trail.state().join(sentinel_audit::ANCHOR_FILE)).expect("rm anchor");
    assert_eq!(first_bad(&trail), (17, Problem::BadSeal, 16));
    // Cut at a batch end, without the anchor, the rest verifies (what the
    // anchor is for).
    let trail = self::trail();
    trail
        .raw()
        .execute("DELETE FROM records WHERE seq > 16", [])
        .expect("truncate");
    std::fs::remove_file(trail.state().join(sentinel_audit::ANCHOR_FILE)).expect("rm anchor");
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
}

#[test]
fn a_large_batch_sealed_on_two_threads_verifies_and_reads_back() {
    let trail = Trail::new();
    let mut log =
        AuditLog::open_with(&trail.db(), &trail.state(), trail.config(1000)).expect("open");
    let mut events: Vec<Event> = (1..=5000).map(common::varied).collect();
    let checkpoint = log.append_batch(&mut events).expect("append");
    assert_eq!(checkpoint.seq, 5000);
    assert!(events.iter().zip(1..).all(|(e, seq)| e.seq == seq));
    drop(log);
    assert_eq!(sealed_seqs(&trail), vec![1000, 2000, 3000, 4000, 5000]);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, 5000);
    let back = AuditReader::open(&trail.db())
        .expect("reader")
        .query(&QueryFilter::default())
        .expect("query");
    assert_eq!(back, events);
    // An edit deep in the batch is still found exactly.
    trail
        .raw()
        .execute("UPDATE records SET ts = ts + 1 WHERE seq = 3333", [])
        .expect("tamper");
    assert_eq!(
        first_bad(&trail),
        (
            3333,
            Problem::Edited {
                column: sentinel_audit::Column::Ts
            },
            3000
        )
    );
}

#[test]
fn records_written_before_one_seal_each_keyed_json_still_verify_and_read() {
    // Rewrite a trail into the earlier format, as the previous version
    // wrote it: the live stream's keyed JSON in `event`, every record
    // sealed with its epoch's key (derived from the verification key).
    let trail = trail();
    let originals = AuditReader::open(&trail.db())
        .expect("reader")
        .query(&QueryFilter::default())
        .expect("query");
    let (first_epoch, first_key) =
        common::read_verify_key(&trail.state().join(sentinel_audit::VERIFY_KEY_FILE));
    let raw = trail.raw();
    let mut prev = [0u8; 32];
    for event in &originals {
        let seq = event.seq as i64;
        let (ts, kind, agent, action, rule, epoch): (
            i64,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            i64,
        ) = raw
            .query_row(
                "SELECT ts, kind, agent, action, rule, epoch FROM records WHERE seq = ?1",
                [seq],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .expect("row");
        let json = serde_json::to_string(event).expect("json");
        let hash = record_hash(
            seq as u64,
            ts,
            &kind,
            agent.as_deref(),
            action.as_deref(),
            rule.as_deref(),
            &json,
            epoch as u64,
            &prev,
        );
        let mut key = first_key;
        for _ in first_epoch..epoch as u64 {
            key = blake3::derive_key("sentinel-audit 2026-01 key ratchet v1", &key);
        }
        raw.execute(
            "UPDATE records SET event = ?1, prev_hash = ?2, hash = ?3, seal = ?4 WHERE seq = ?5",
            rusqlite::params![
                json,
                &prev[..],
                &hash[..],
                &record_seal(&key, &hash)[..],
                seq
            ],
        )
        .expect("rewrite as v1");
        prev = hash;
    }
    // The anchor named the compact tail; the earlier writer would have
    // anchored this one.
    std::fs::remove_file(trail.state().join(sentinel_audit::ANCHOR_FILE)).expect("rm anchor");
    assert_eq!(sealed_seqs(&trail).len() as u64, RECORDS);
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    let reader = AuditReader::open(&trail.db()).expect("reader");
    assert_eq!(
        reader.query(&QueryFilter::default()).expect("query"),
        originals
    );
    // The chain continues in the compact format after the old records.
    {
        let mut log = open(&trail);
        let mut more: Vec<Event> = (RECORDS + 1..=RECORDS + 6).map(common::varied).collect();
        log.append_batch(&mut more).expect("append");
    }
    let report = verify(&trail.db(), &trail.state()).expect("verify runs");
    assert!(report.ok, "{report:?}");
    assert_eq!(report.count, RECORDS + 6);
    // Tampering with an old record is still caught.
    trail
        .raw()
        .execute("UPDATE records SET seal = zeroblob(32) WHERE seq = 5", [])
        .expect("tamper");
    assert_eq!(first_bad(&trail), (5, Problem::BadSeal, 4));
}
