//! Canonical fingerprints of tool-call and command arguments.
//!
//! The fingerprint covers every nesting level: object keys (sorted, so key
//! order does not matter), every value, array order, and the JSON type of
//! each node. `{"a":{"b":1}}` and `{"a":{"c":1}}` differ; `{"x":1,"y":2}` and
//! `{"y":2,"x":1}` do not; `1` and `1.0` are the same number; `1` and `"1"`
//! are not the same value.

use std::fmt;

use serde_json::Value;

/// A 128-bit BLAKE3 digest of the canonical encoding, shown as hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 16]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl Fingerprint {
    /// Parses the hex form written by `Display`.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()?;
        }
        Some(Fingerprint(out))
    }
}

/// The fingerprint of `value` at every nesting level.
pub fn fingerprint(value: &Value) -> Fingerprint {
    let mut hasher = blake3::Hasher::new();
    feed(&mut hasher, value);
    let digest = hasher.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest.as_bytes()[..16]);
    Fingerprint(out)
}

/// Feeds a self-delimiting encoding: a type tag, then a length where the
/// node has one, so no two different trees encode to the same bytes.
fn feed(hasher: &mut blake3::Hasher, value: &Value) {
    match value {
        Value::Null => {
            hasher.update(b"n");
        }
        Value::Bool(b) => {
            hasher.update(if *b { b"t" } else { b"f" });
        }
        Value::Number(n) => {
            hasher.update(b"#");
            feed_str(hasher, &canonical_number(n));
        }
        Value::String(s) => {
            hasher.update(b"s");
            feed_str(hasher, s);
        }
        Value::Array(items) => {
            hasher.update(b"a");
            hasher.update(&(items.len() as u64).to_le_bytes());
            for item in items {
                feed(hasher, item);
            }
        }
        Value::Object(map) => {
            hasher.update(b"o");
            hasher.update(&(map.len() as u64).to_le_bytes());
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            for (key, item) in entries {
                feed_str(hasher, key);
                feed(hasher, item);
            }
        }
    }
}

fn feed_str(hasher: &mut blake3::Hasher, s: &str) {
    hasher.update(&(s.len() as u64).to_le_bytes());
    hasher.update(s.as_bytes());
}

/// Integers (and floats with an exact integer value) as decimal integers;
/// other floats in Rust's shortest round-trip form.
fn canonical_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
            format!("{}", f as i64)
        }
        Some(f) => format!("{f:e}"),
        None => n.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nested_keys_change_the_fingerprint() {
        assert_ne!(
            fingerprint(&json!({"a": {"b": 1}})),
            fingerprint(&json!({"a": {"c": 1}}))
        );
        assert_ne!(
            fingerprint(&json!({"a": [{"b": {"c": 1}}]})),
            fingerprint(&json!({"a": [{"b": {"d": 1}}]}))
        );
        assert_ne!(
            fingerprint(&json!({"a": {"b": {"c": 1}}})),
            fingerprint(&json!({"a": {"b": {"c": 2}}}))
        );
    }

    #[test]
    fn key_order_does_not_matter_but_array_order_does() {
        assert_eq!(
            fingerprint(&json!({"x": 1, "y": {"p": true, "q": null}})),
            fingerprint(&json!({"y": {"q": null, "p": true}, "x": 1}))
        );
        assert_ne!(fingerprint(&json!([1, 2])), fingerprint(&json!([2, 1])));
    }

    #[test]
    fn types_are_part_of_the_value() {
        assert_ne!(fingerprint(&json!(1)), fingerprint(&json!("1")));
        assert_ne!(fingerprint(&json!(null)), fingerprint(&json!(false)));
        assert_eq!(fingerprint(&json!(1)), fingerprint(&json!(1.0)));
        // Concatenation ambiguity: ["ab"] vs ["a","b"].
        assert_ne!(fingerprint(&json!(["ab"])), fingerprint(&json!(["a", "b"])));
        assert_ne!(
            fingerprint(&json!({"a": "b"})),
            fingerprint(&json!({"ab": ""}))
        );
    }

    #[test]
    fn hex_round_trip() {
        let fp = fingerprint(&json!({"command": "ls"}));
        assert_eq!(Fingerprint::from_hex(&fp.to_string()), Some(fp));
        assert_eq!(Fingerprint::from_hex("zz"), None);
    }
}
