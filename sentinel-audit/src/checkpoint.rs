//! Checkpoints: a sealed (seq, hash) of the chain's tail, published outside
//! the database — to the root-only anchor file in the state directory and to
//! every export stream — so that a truncated or rolled-back database no
//! longer matches what was published.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::encoding::{checkpoint_seal, same_mac};
use crate::error::AuditError;
use crate::secure_fs::{from_hex32, read_optional, to_hex, write_atomic, Durability};

/// The anchor file in the state directory.
pub const ANCHOR_FILE: &str = "audit.anchor";

/// The chain's tail as of one commit. In JSONL it is one line with
/// `"kind":"audit_checkpoint"`, beside the events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename = "audit_checkpoint")]
pub struct Checkpoint {
    /// The last record's sequence number (0: the chain is empty).
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    /// Hex BLAKE3 hash of record `seq`.
    pub hash: String,
    /// The epoch whose key sealed this checkpoint.
    pub epoch: u64,
    /// The database's random id, so checkpoints of two hosts never mix.
    pub db: String,
    /// Hex keyed MAC over all fields above.
    pub seal: String,
}

impl Checkpoint {
    pub(crate) fn sealed(
        key: &[u8; 32],
        epoch: u64,
        db_id: &str,
        seq: u64,
        hash: &[u8; 32],
        ts: OffsetDateTime,
    ) -> Self {
        let seal = checkpoint_seal(key, db_id, seq, hash, epoch, ts_nanos(ts));
        Checkpoint {
            seq,
            ts,
            hash: to_hex(hash),
            epoch,
            db: db_id.to_string(),
            seal: to_hex(&seal),
        }
    }

    /// The hash as bytes, `None` if the text is not 64 hex digits.
    pub fn hash_bytes(&self) -> Option<[u8; 32]> {
        from_hex32(&self.hash)
    }

    /// True when `seal` is the MAC of this checkpoint under `key`.
    pub(crate) fn seal_is_valid(&self, key: &[u8; 32]) -> bool {
        let Some(hash) = self.hash_bytes() else {
            return false;
        };
        let Some(seal) = from_hex32(&self.seal) else {
            return false;
        };
        let expected = checkpoint_seal(
            key,
            &self.db,
            self.seq,
            &hash,
            self.epoch,
            ts_nanos(self.ts),
        );
        same_mac(&seal, &expected)
    }
}

/// Nanoseconds since the Unix epoch, saturated into i64 (year 1677–2262).
pub(crate) fn ts_nanos(ts: OffsetDateTime) -> i64 {
    let nanos = ts.unix_timestamp_nanos();
    nanos.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

pub(crate) fn anchor_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ANCHOR_FILE)
}

/// Publishes `checkpoint` to the anchor file (atomic, 0600). The directory
/// is not fsynced: after a power loss the anchor may be one batch behind,
/// which is safe (the database is never behind an anchor, because the
/// database commits durably first); it saves one fsync per batch.
pub(crate) fn write_anchor(state_dir: &Path, checkpoint: &Checkpoint) -> Result<(), AuditError> {
    let mut bytes = serde_json::to_vec(checkpoint)?;
    bytes.push(b'\n');
    write_atomic(&anchor_path(state_dir), &bytes, Durability::ContentsOnly)
}

/// Reads the anchor file, `None` if there is none.
pub(crate) fn read_anchor(state_dir: &Path) -> Result<Option<Checkpoint>, AuditError> {
    let path = anchor_path(state_dir);
    let Some(bytes) = read_optional(&path)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| AuditError::Malformed {
            path,
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_serializes_as_a_tagged_line_and_verifies() {
        let key = [5u8; 32];
        let ts = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let cp = Checkpoint::sealed(&key, 3, "abc", 42, &[1u8; 32], ts);
        let json = serde_json::to_string(&cp).unwrap();
        assert!(json.starts_with(
            r#"{"kind":"audit_checkpoint","seq":42,"ts":"2023-11-14T22:13:20Z","hash":"0101"#
        ));
        let back: Checkpoint = serde_json::from_str(&json).unwrap();
        assert!(back.seal_is_valid(&key));
        let mut forged = back.clone();
        forged.seq = 41;
        assert!(!forged.seal_is_valid(&key));
        assert!(!back.seal_is_valid(&[6u8; 32]));
    }
}
