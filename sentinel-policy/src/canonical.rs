//! Canonical forms shared with the daemon, the MCP proxy and the anomaly
//! scorer: the canonical JSON text of tool arguments (what MCP `args`
//! regexes match) and which open(2) flags count as a write.

use serde_json::Value;

/// `value` as JSON text with object keys sorted at every nesting level and
/// no whitespace. Two argument objects that differ only in key order or
/// formatting give the same text.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (index, (key, value)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(text) => write_string(text, out),
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn write_string(text: &str, out: &mut String) {
    // Serializing a string to JSON cannot fail; the fallback keeps the
    // function total without a panic path.
    match serde_json::to_string(text) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
    }
}

/// True when open(2) flags write, create, truncate or append: `O_WRONLY`,
/// `O_RDWR`, `O_CREAT`, `O_TRUNC`, `O_APPEND` (O_TMPFILE needs one of the
/// first two). An open `write = true` rule matches exactly these.
pub fn open_flags_write(flags: u32) -> bool {
    let write_bits = libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC | libc::O_APPEND;
    flags & (write_bits as u32) != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_sorted_at_every_level_without_whitespace() {
        let a: Value = serde_json::from_str(
            r#"{ "z": 1, "a": { "y": [ {"b": 2, "a": "x\"y"} ], "x": null }, "m": 1.5 }"#,
        )
        .unwrap();
        let b = json!({"m": 1.5, "a": {"x": null, "y": [{"a": "x\"y", "b": 2}]}, "z": 1});
        let expected = r#"{"a":{"x":null,"y":[{"a":"x\"y","b":2}]},"m":1.5,"z":1}"#;
        assert_eq!(canonical_json(&a), expected);
        assert_eq!(canonical_json(&b), expected);
        assert_eq!(canonical_json(&json!("é\n")), "\"é\\n\"");
        assert_eq!(canonical_json(&json!([true, false])), "[true,false]");
    }

    #[test]
    fn write_flags() {
        let cases = [
            (libc::O_RDONLY, false),
            (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW, false),
            (libc::O_WRONLY, true),
            (libc::O_RDWR, true),
            (libc::O_RDONLY | libc::O_CREAT, true),
            (libc::O_RDONLY | libc::O_TRUNC, true),
            (libc::O_WRONLY | libc::O_APPEND, true),
        ];
        for (flags, expected) in cases {
            assert_eq!(open_flags_write(flags as u32), expected, "{flags:#o}");
        }
    }
}
