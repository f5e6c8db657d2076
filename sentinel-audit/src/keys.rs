//! Epoch keys: the forward ratchet, the writer's key file (current epoch
//! only) and the verifier's key file (the first epoch), both root-only.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::encoding::ratchet;
use crate::error::AuditError;
use crate::secure_fs::{from_hex32, read_optional, to_hex, write_atomic, Durability};

/// The writer's key file: holds only the current epoch's key.
pub const WRITER_KEY_FILE: &str = "audit.key";
/// The verifier's key file: the key of the first epoch, from which every
/// later epoch key is derived.
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

/// Derives epoch keys forward from the verifier's key, caching the last
/// one so a verification pass in epoch order costs one hash per epoch.
pub(crate) struct KeyChain {
    initial: EpochKey,
    cursor: EpochKey,
    /// The most records one epoch may hold, if the key file says.
    pub epoch_records: Option<u64>,
}

impl KeyChain {
    pub fn new(initial: EpochKey, epoch_records: Option<u64>) -> Self {
        KeyChain {
            cursor: initial.clone(),
            initial,
            epoch_records,
        }
    }

    /// Loads the verifier key file of the database `db_id`.
    pub fn load(path: &Path, db_id: &str) -> Result<Self, AuditError> {
        match load(path)? {
            None => Err(AuditError::io(
                PathBuf::from(path),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "verification key not found (pass the state directory the daemon wrote)",
                ),
            )),
            Some(file) if file.db != db_id => Err(AuditError::WrongDatabase {
                path: path.to_path_buf(),
                expected: db_id.to_string(),
                found: file.db,
            }),
            Some(file) => Ok(KeyChain::new(file.key, file.epoch_records)),
        }
    }

    /// The key of `epoch`, or `None` for epochs before the verifier's key.
    /// Epochs far beyond any real one (a forged epoch column) are refused
    /// rather than derived for hours.
    pub fn key_for(&mut self, epoch: u64) -> Option<[u8; 32]> {
        const MAX_STEPS: u64 = 1 << 32;
        if epoch < self.initial.epoch {
            return None;
        }
        if epoch < self.cursor.epoch {
            self.cursor = self.initial.clone();
        }
        if epoch - self.cursor.epoch > MAX_STEPS {
            return None;
        }
        while self.cursor.epoch < epoch {
            self.cursor.advance();
        }
        Some(self.cursor.key)
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
        let mut chain = KeyChain::new(writer.clone(), None);
        for _ in 0..5 {
            writer.advance();
        }
        assert_eq!(chain.key_for(5), Some(writer.key));
        // Going back re-derives from the start.
        assert_eq!(chain.key_for(0), Some([3u8; 32]));
        assert_eq!(chain.key_for(5), Some(writer.key));
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
