//! Root-only files: 0700 directories, 0600 files, and atomic replacement
//! (write a temporary file, fsync, rename over the target, fsync the
//! directory) so a reader never sees half a key or half an anchor.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::error::AuditError;

/// Creates `dir` (and parents) with mode 0700 if it does not exist. An
/// existing directory keeps its mode: the operator may share it (the
/// daemon's control socket lives in the state directory too).
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), AuditError> {
    if dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| AuditError::io(dir, e))
}

/// Creates `path` empty with mode 0600 if it does not exist yet.
pub(crate) fn create_private_file(path: &Path) -> Result<(), AuditError> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

/// How durable a replacement must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The new contents survive a power loss (file and directory fsynced).
    Durable,
    /// The contents are fsynced, the rename is not: after a power loss the
    /// file holds either the old or the new contents, both complete.
    ContentsOnly,
}

/// Replaces `path` with `contents` atomically, mode 0600.
pub(crate) fn write_atomic(
    path: &Path,
    contents: &[u8],
    durability: Durability,
) -> Result<(), AuditError> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        match durability {
            Durability::Durable => fs::File::open(dir)?.sync_all(),
            Durability::ContentsOnly => Ok(()),
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| AuditError::io(path, e))
}

/// Reads a whole file, `None` when it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, AuditError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io(path, e)),
    }
}

/// Lower-case hex, for keys and hashes in text files.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Parses exactly 32 bytes of hex.
pub(crate) fn from_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.as_bytes();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// 32 bytes from the kernel's CSPRNG.
pub(crate) fn random_key() -> Result<[u8; 32], AuditError> {
    use std::io::Read;
    let path = Path::new("/dev/urandom");
    let mut key = [0u8; 32];
    fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| AuditError::io(path, e))?;
    Ok(key)
}
