//! The canonical encoding of audit records and checkpoints, and the hash,
//! seal and key-ratchet functions over it.
//!
//! Encoding: a fixed field order; integers as fixed-width little-endian;
//! strings and byte strings as a u64 length followed by the bytes; optional
//! fields as a presence byte (0 or 1) followed by the value. No field can
//! bleed into its neighbour, so two different records never encode to the
//! same bytes. Every primitive is BLAKE3 with its own context string, so a
//! record hash can never be confused with a seal, a checkpoint or a key.

/// The chain's first `prev_hash`.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

const RECORD_HASH_CONTEXT: &str = "sentinel-audit 2026-01 record hash v1";
const RATCHET_CONTEXT: &str = "sentinel-audit 2026-01 key ratchet v1";
const RECORD_SEAL_TAG: &[u8] = b"sentinel-audit seal v1 record\0";
const CHECKPOINT_SEAL_TAG: &[u8] = b"sentinel-audit seal v1 checkpoint\0";
const RETENTION_SEAL_TAG: &[u8] = b"sentinel-audit seal v1 retention\0";

/// Every column of a record except `hash` and `seal` (which are computed
/// from the others), borrowed so a verifier can substitute one value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordFields<'a> {
    pub seq: u64,
    pub ts_ns: i64,
    pub kind: &'a str,
    pub agent: Option<&'a str>,
    pub action: Option<&'a str>,
    pub rule: Option<&'a str>,
    /// The stored event text (UTF-8).
    pub event: &'a [u8],
    pub epoch: u64,
    pub prev_hash: &'a [u8],
}

/// Writes the canonical encoding into a buffer, which is then hashed in
/// one call (many small `update` calls cost more than the hashing).
struct Encoder<'a>(&'a mut Vec<u8>);

impl Encoder<'_> {
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn opt(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.0.push(0),
            Some(s) => {
                self.0.push(1);
                self.bytes(s.as_bytes());
            }
        }
        self
    }
}

fn encode_record(f: &RecordFields<'_>, out: &mut Vec<u8>) {
    out.clear();
    Encoder(out)
        .u64(f.seq)
        .i64(f.ts_ns)
        .bytes(f.kind.as_bytes())
        .opt(f.agent)
        .opt(f.action)
        .opt(f.rule)
        .bytes(f.event)
        .u64(f.epoch)
        .bytes(f.prev_hash);
}

/// The record hash: covers every column and, through `prev_hash`, the chain.
pub(crate) fn record_hash(f: &RecordFields<'_>) -> [u8; 32] {
    RecordHasher::new().hash(f)
}

/// [`record_hash`] for a stream of records: keeps the context-keyed hasher
/// and the encoding buffer between records.
#[derive(Clone)]
pub(crate) struct RecordHasher {
    base: blake3::Hasher,
    buf: Vec<u8>,
}

impl RecordHasher {
    pub fn new() -> Self {
        RecordHasher {
            base: blake3::Hasher::new_derive_key(RECORD_HASH_CONTEXT),
            buf: Vec::with_capacity(512),
        }
    }

    pub fn hash(&mut self, f: &RecordFields<'_>) -> [u8; 32] {
        encode_record(f, &mut self.buf);
        let mut hasher = self.base.clone();
        hasher.update(&self.buf);
        *hasher.finalize().as_bytes()
    }
}

/// The seal of one record: a keyed MAC of its hash under its epoch's key.
pub(crate) fn record_seal(key: &[u8; 32], hash: &[u8]) -> [u8; 32] {
    let mut mac = blake3::Hasher::new_keyed(key);
    mac.update(RECORD_SEAL_TAG);
    mac.update(hash);
    *mac.finalize().as_bytes()
}

/// The seal of a published checkpoint (anchor file, export streams).
pub(crate) fn checkpoint_seal(
    key: &[u8; 32],
    db_id: &str,
    seq: u64,
    hash: &[u8],
    epoch: u64,
    ts_ns: i64,
) -> [u8; 32] {
    let mut buf = CHECKPOINT_SEAL_TAG.to_vec();
    Encoder(&mut buf)
        .bytes(db_id.as_bytes())
        .u64(seq)
        .bytes(hash)
        .u64(epoch)
        .i64(ts_ns);
    *blake3::keyed_hash(key, &buf).as_bytes()
}

/// The seal of a retention checkpoint (what was removed).
pub(crate) fn retention_seal(
    key: &[u8; 32],
    first_seq: u64,
    last_seq: u64,
    last_hash: &[u8],
    ts_ns: i64,
    epoch: u64,
) -> [u8; 32] {
    let mut buf = RETENTION_SEAL_TAG.to_vec();
    Encoder(&mut buf)
        .u64(first_seq)
        .u64(last_seq)
        .bytes(last_hash)
        .i64(ts_ns)
        .u64(epoch);
    *blake3::keyed_hash(key, &buf).as_bytes()
}

/// The next epoch's key. One-way: the previous key cannot be recovered.
pub(crate) fn ratchet(key: &[u8; 32]) -> [u8; 32] {
    blake3::derive_key(RATCHET_CONTEXT, key)
}

/// Constant-time comparison of two 32-byte values.
pub(crate) fn same_mac(a: &[u8], b: &[u8; 32]) -> bool {
    match <[u8; 32]>::try_from(a) {
        Ok(a) => blake3::Hash::from(a) == blake3::Hash::from(*b),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(kind: &'a str, event: &'a str) -> RecordFields<'a> {
        RecordFields {
            seq: 1,
            ts_ns: 0,
            kind,
            agent: None,
            action: None,
            rule: None,
            event: event.as_bytes(),
            epoch: 0,
            prev_hash: &GENESIS_HASH,
        }
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_hash() {
        // With a naive `a|b` join these two would collide.
        assert_ne!(
            record_hash(&fields("ab", "c")),
            record_hash(&fields("a", "bc"))
        );
    }

    #[test]
    fn absent_and_empty_optional_fields_differ() {
        let mut a = fields("x", "y");
        let mut b = a;
        a.agent = None;
        b.agent = Some("");
        assert_ne!(record_hash(&a), record_hash(&b));
    }

    #[test]
    fn ratchet_is_deterministic_and_moves() {
        let k0 = [7u8; 32];
        let k1 = ratchet(&k0);
        assert_eq!(k1, ratchet(&k0));
        assert_ne!(k1, k0);
        assert_ne!(ratchet(&k1), k1);
    }
}
