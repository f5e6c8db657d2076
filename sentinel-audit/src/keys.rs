//! Epoch keys: the forward ratchet, the writer's key file (current epoch
//! only) and the verifier's key file (the first key of each key segment),
//! both root-only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encoding::ratchet;
use crate::error::AuditError;
use crate::secure_fs::{from_hex32, read_optional, to_hex, write_atomic, Durability};

/// The writer's key file: holds only the current epoch's key.
pub const WRITER_KEY_FILE: &str = "audit.key";
/// The verifier's key file: the key of the first epoch of each key
/// segment, from which every later epoch key is derived.
pub const VERIFY_KEY_FILE: &str = "audit.verify-key";

/// One epoch's sealing key. Zeroed when dropped (best effort: the compiler
/// may have left copies in registers or on the stack).
#[derive(Clone)]
pub(crate) struct EpochKey {
    pub epoch: u64,
    pub key: [u8; 32],
}

impl EpochKey {
    /// Moves to the next epoch, overwriting the old key in place.
    pub fn advance(&mut self) {
        self.key = ratchet(&self.key);
        self.epoch += 1;
    }
}

impl Drop for EpochKey {
    fn drop(&mut self) {
        for byte in self.key.iter_mut() {
            // SAFETY: `byte` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpochKey")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFileContents {
    db: String,
    epoch: u64,
    key: String,
    /// The most records one epoch may seal; the verifier enforces it, so a
    /// stolen key can re-seal at most one epoch's worth of records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch_records: Option<u64>,
}

/// A key file's contents.
pub(crate) struct KeyFile {
    /// The id of the database the key belongs to.
    pub db: String,
    pub key: EpochKey,
    pub epoch_records: Option<u64>,
}

/// Reads a key file, `None` if there is none.
pub(crate) fn load(path: &Path) -> Result<Option<KeyFile>, AuditError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let malformed = |reason: &str| AuditError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let contents: KeyFileContents =
        serde_json::from_slice(&bytes).map_err(|e| malformed(&e.to_string()))?;
    let key = from_hex32(&contents.key).ok_or_else(|| malformed("key is not 64 hex digits"))?;
    Ok(Some(KeyFile {
        db: contents.db,
        key: EpochKey {
            epoch: contents.epoch,
            key,
        },
        epoch_records: contents.epoch_records,
    }))
}

/// Writes a key file atomically, mode 0600; the previous contents (the
/// previous epoch's key) are replaced, not kept.
pub(crate) fn store(
    path: &Path,
    db_id: &str,
    key: &EpochKey,
    epoch_records: u64,
) -> Result<(), AuditError> {
    let contents = KeyFileContents {
        db: db_id.to_string(),
        epoch: key.epoch,
        key: to_hex(&key.key),
        epoch_records: Some(epoch_records),
    };
    let mut bytes = serde_json::to_vec(&contents)?;
    bytes.push(b'\n');
    let result = write_atomic(path, &bytes, Durability::Durable);
    bytes.iter_mut().for_each(|b| *b = 0);
    result
}

#[derive(Serialize, Deserialize)]
struct VerifyKeyContents {
    db: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epoch_records: Option<u64>,
    segments: Vec<SegmentContents>,
}

#[derive(Serialize, Deserialize)]
struct SegmentContents {
    epoch: u64,
    key: String,
}

/// The verifier's key file: the first key of every key segment. A chain
/// has one segment unless the writer's keys were lost (a wiped state
/// directory) and it had to start again from a fresh key.
pub(crate) struct VerifyKeys {
    pub db: String,
    pub epoch_records: Option<u64>,
    pub segments: Vec<EpochKey>,
}

pub(crate) fn load_verify(path: &Path) -> Result<Option<VerifyKeys>, AuditError> {
    let Some(bytes) = read_optional(path)? else {
        return Ok(None);
    };
    let malformed = |reason: &str| AuditError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let contents: VerifyKeyContents =
        serde_json::from_slice(&bytes).map_err(|e| malformed(&e.to_string()))?;
    let segments = contents
        .segments
        .iter()
        .map(|s| {
            from_hex32(&s.key)
                .map(|key| EpochKey {
                    epoch: s.epoch,
                    key,
                })
                .ok_or_else(|| malformed("key is not 64 hex digits"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(VerifyKeys {
        db: contents.db,
        epoch_records: contents.epoch_records,
        segments,
    }))
}

pub(crate) fn store_verify(path: &Path, keys: &VerifyKeys) -> Result<(), AuditError> {
    let contents = VerifyKeyContents {
        db: keys.db.clone(),
        epoch_records: keys.epoch_records,
        segments: keys
            .segments
            .iter()
            .map(|k| SegmentContents {
                epoch: k.epoch,
                key: to_hex(&k.key),
            })
            .collect(),
    };
    let mut bytes = serde_json::to_vec(&contents)?;
    bytes.push(b'\n');
    let result = write_atomic(path, &bytes, Durability::Durable);
    bytes.iter_mut().for_each(|b| *b = 0);
    result
}

/// Derives epoch keys forward from the first key of the segment that
/// covers them, caching the last one so a pass in epoch order costs one
/// hash per epoch.
#[derive(Clone)]
pub(crate) struct KeyChain {
    /// Sorted by epoch.
    segments: Vec<EpochKey>,
    /// The last derived key and the index of the segment it belongs to.
    cursor: Option<(usize, EpochKey)>,
    /// The most records one epoch may hold, if the key file says.
    pub epoch_records: Option<u64>,
}

impl KeyChain {
    pub fn new(mut segments: Vec<EpochKey>, epoch_records: Option<u64>) -> Self {
        segments.sort_by_key(|k| k.epoch);
        KeyChain {
            segments,
            cursor: None,
            epoch_records,
        }
    }

    /// Loads and merges verifier key files of the database `db_id`.
    pub fn load(paths: &[PathBuf], db_id: &str) -> Result<Self, AuditError> {
        let mut segments = Vec::new();
        let mut epoch_records: Option<u64> = None;
        for path in paths {
            match load_verify(path)? {
                None => {
                    return Err(AuditError::io(
                        path.clone(),
                        std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "verification key not found (pass the state directory the daemon wrote, or --key FILE)",
                        ),
                    ))
                }
                Some(file) if file.db != db_id => {
                    return Err(AuditError::WrongDatabase {
                        path: path.clone(),
                        expected: db_id.to_string(),
                        found: file.db,
                    })
                }
                Some(file) => {
                    if let Some(limit) = file.epoch_records {
                        epoch_records = Some(epoch_records.map_or(limit, |l| l.min(limit)));
                    }
                    segments.extend(file.segments);
                }
            }
        }
        Ok(KeyChain::new(segments, epoch_records))
    }

    /// True when `epoch` is older than every known key segment: its key was
    /// lost, so its seals cannot be checked (as opposed to being wrong).
    pub fn predates_keys(&self, epoch: u64) -> bool {
        self.segments
            .first()
            .is_none_or(|first| epoch < first.epoch)
    }

    /// The key of `epoch`, or `None` when no known segment covers it (see
    /// [`KeyChain::predates_keys`]) or the epoch is implausibly far beyond
    /// its segment's start.
    pub fn key_for(&mut self, epoch: u64) -> Option<[u8; 32]> {
        // 16M epochs: 159 years of 300 s epochs. Anything further is a
        // forged epoch column, refused rather than derived for minutes.
        const MAX_STEPS: u64 = 1 << 24;
        let index = self.segments.iter().rposition(|k| k.epoch <= epoch)?;
        let reusable = self
            .cursor
            .as_ref()
            .is_some_and(|(i, c)| *i == index && c.epoch <= epoch);
        if !reusable {
            self.cursor = Some((index, self.segments[index].clone()));
        }
        let (_, cursor) = self.cursor.as_mut()?;
        if epoch - cursor.epoch > MAX_STEPS {
            return None;
        }
        while cursor.epoch < epoch {
            cursor.advance();
        }
        Some(cursor.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_chain_derives_the_writers_later_keys() {
        let mut writer = EpochKey {
            epoch: 0,
            key: [3u8; 32],
        };
        let mut chain = KeyChain::new(vec![writer.clone()], None);
        for _ in 0..5 {
            writer.advance();
        }
        assert_eq!(chain.key_for(5), Some(writer.key));
        // Going back re-derives from the start.
        assert_eq!(chain.key_for(0), Some([3u8; 32]));
        assert_eq!(chain.key_for(5), Some(writer.key));
    }

    #[test]
    fn key_chain_switches_to_later_segments() {
        let first = EpochKey {
            epoch: 0,
            key: [1u8; 32],
        };
        let second = EpochKey {
            epoch: 10,
            key: [2u8; 32],
        };
        let mut derived = first.clone();
        for _ in 0..9 {
            derived.advance();
        }
        let mut chain = KeyChain::new(vec![second.clone(), first], None);
        assert_eq!(chain.key_for(9), Some(derived.key));
        assert_eq!(chain.key_for(10), Some([2u8; 32]));
        let mut only_second = KeyChain::new(vec![second], None);
        assert_eq!(only_second.key_for(9), None);
    }

    #[test]
    fn key_files_round_trip_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(WRITER_KEY_FILE);
        let key = EpochKey {
            epoch: 9,
            key: [0xab; 32],
        };
        store(&path, "db1", &key, 100).unwrap();
        let back = load(&path).unwrap().unwrap();
        assert_eq!(back.db, "db1");
        assert_eq!(back.epoch_records, Some(100));
        assert_eq!((back.key.epoch, back.key.key), (9, [0xab; 32]));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
