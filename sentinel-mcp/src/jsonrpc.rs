//! Strict reading of one JSON-RPC message, and the error replies the proxy
//! writes itself.
//!
//! The proxy forwards the raw bytes it received, so what it reads here only
//! decides *whether* a message may pass and which fields policy sees. To
//! close parser-differential gaps (a peer that reads the first of two
//! duplicate keys while the proxy reads the last, a batch array that smuggles
//! a second call), anything ambiguous is refused instead of forwarded:
//! invalid UTF-8, batch arrays, duplicate keys at any depth, and anything that
//! is not a single JSON-RPC object.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// JSON-RPC: the text is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the JSON is not a valid request object.
pub const INVALID_REQUEST: i64 = -32600;
/// Implementation-defined: the proxy gave up waiting for the server.
pub const REQUEST_TIMEOUT: i64 = -32001;
/// Implementation-defined: Sentinel refused the request itself.
pub const REFUSED: i64 = -32002;
/// JSON-RPC: the method does not exist (or is not allowed in this
/// direction and protocol revision).
pub const METHOD_NOT_FOUND: i64 = -32601;

/// A message that passed the strict checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The whole message, parsed (keys in their original order).
    pub value: Map<String, Value>,
    pub shape: Shape,
}

/// What kind of JSON-RPC message it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Request { id: Value, method: String },
    Notification { method: String },
    Response { id: Value },
}

impl Message {
    /// `params`, if the message has an object there.
    pub fn params(&self) -> Option<&Map<String, Value>> {
        self.value.get("params").and_then(Value::as_object)
    }

    /// The request or notification method, if any.
    pub fn method(&self) -> Option<&str> {
        match &self.shape {
            Shape::Request { method, .. } | Shape::Notification { method } => Some(method),
            Shape::Response { .. } => None,
        }
    }
}

/// Why a line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("message is not valid UTF-8")]
    InvalidUtf8,
    #[error(
        "JSON-RPC batch arrays are not accepted (removed from MCP); send one message per line"
    )]
    Batch,
    #[error("duplicate key `{key}` in a JSON object (keys are compared after Unicode case folding and without trailing NULs); each key may appear once")]
    DuplicateKey { key: String, top_level: bool },
    #[error("message is longer than the {limit}-byte line limit")]
    TooLong { limit: usize },
    #[error("message is not JSON: {0}")]
    NotJson(String),
    #[error("message is not a JSON-RPC 2.0 request, notification or response: {0}")]
    NotJsonRpc(&'static str),
}

impl Rejection {
    /// The JSON-RPC error code this refusal is answered with.
    pub fn code(&self) -> i64 {
        match self {
            Rejection::InvalidUtf8 | Rejection::NotJson(_) | Rejection::DuplicateKey { .. } => {
                PARSE_ERROR
            }
            Rejection::Batch | Rejection::TooLong { .. } | Rejection::NotJsonRpc(_) => {
                INVALID_REQUEST
            }
        }
    }
}

/// A refused line, with the request id when it could be read without doubt
/// (so the sender's pending request is answered instead of hanging). A
/// refused batch carries every request id it held, each to be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub rejection: Rejection,
    pub id: Option<Value>,
    pub batch_ids: Vec<Value>,
}

impl Refused {
    /// The ids to answer: the batch's request ids, else the one id (or
    /// `null` when there is none).
    pub fn answer_ids(&self) -> Vec<Option<Value>> {
        if self.batch_ids.is_empty() {
            vec![self.id.clone()]
        } else {
            self.batch_ids.iter().cloned().map(Some).collect()
        }
    }
}

/// Reads one line strictly. `line` excludes the trailing newline.
// A refusal is the rare path; its ids are needed by value by every caller.
#[allow(clippy::result_large_err)]
pub fn parse_strict(line: &[u8]) -> Result<Message, Refused> {
    let refused = |rejection, id| {
        Err(Refused {
            rejection,
            id,
            batch_ids: Vec::new(),
        })
    };
    let Ok(text) = std::str::from_utf8(line) else {
        return refused(Rejection::InvalidUtf8, None);
    };
    if text.trim_start().starts_with('[') {
        return Err(Refused {
            rejection: Rejection::Batch,
            id: None,
            batch_ids: batch_request_ids(text),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let value = match (StrictSeed { depth: 0 }).deserialize(&mut de) {
        Ok(value) => value,
        Err(err) => {
            let rejection = match decode_duplicate(&err.to_string()) {
                Some((key, top_level)) => Rejection::DuplicateKey { key, top_level },
                None => Rejection::NotJson(err.to_string()),
            };
            let id = match &rejection {
                Rejection::DuplicateKey { key, top_level }
                    if !(folded_key(key) == "id" && *top_level) =>
                {
                    lenient_id(text)
                }
                _ => None,
            };
            return refused(rejection, id);
        }
    };
    if let Err(err) = de.end() {
        return refused(Rejection::NotJson(err.to_string()), None);
    }
    let Value::Object(map) = value else {
        return refused(Rejection::NotJsonRpc("not an object"), None);
    };
    let id = map.get("id").cloned();
    let shape = match classify(&map) {
        Ok(shape) => shape,
        Err(why) => return refused(Rejection::NotJsonRpc(why), id.filter(valid_id)),
    };
    Ok(Message { value: map, shape })
}

fn classify(map: &Map<String, Value>) -> Result<Shape, &'static str> {
    if map.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err("`jsonrpc` must be \"2.0\"");
    }
    match (map.get("method"), map.get("id")) {
        (Some(Value::String(method)), Some(id)) if valid_id(id) => Ok(Shape::Request {
            id: id.clone(),
            method: method.clone(),
        }),
        (Some(Value::String(_)), Some(_)) => Err("`id` must be a string or a number"),
        (Some(Value::String(method)), None) => Ok(Shape::Notification {
            method: method.clone(),
        }),
        (Some(_), _) => Err("`method` must be a string"),
        (None, Some(id)) if map.contains_key("result") || map.contains_key("error") => {
            Ok(Shape::Response { id: id.clone() })
        }
        (None, _) => Err("neither a method nor a result or error"),
    }
}

/// The request ids of a batch, when the batch itself reads without doubt
/// (no duplicate keys anywhere): each is answered with the refusal, so a
/// client waiting on any of them is not left hanging. Repeated ids are
/// answered once.
fn batch_request_ids(text: &str) -> Vec<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    let Ok(Value::Array(items)) = (StrictSeed { depth: 0 }).deserialize(&mut de) else {
        return Vec::new();
    };
    if de.end().is_err() {
        return Vec::new();
    }
    let mut seen = HashSet::new();
    items
        .iter()
        .filter(|item| item.get("method").is_some())
        .filter_map(|item| item.get("id").filter(|id| valid_id(id)).cloned())
        .filter(|id| seen.insert(id_key(id)))
        .collect()
}

/// The form in which two object keys count as the same key: Unicode case
/// folded and without trailing NULs. Peers that match field names
/// case-insensitively (Go's `encoding/json`, many dispatchers) or through
/// C strings would read `Method` or `method\u0000` as `method`.
pub fn folded_key(key: &str) -> String {
    key.trim_end_matches('\0')
        .chars()
        .flat_map(|c| {
            // Simple case folding where it differs from lowercasing.
            let c = match c {
                '\u{017F}' => 's',              // LATIN SMALL LETTER LONG S
                '\u{1E9E}' => 'ß',              // LATIN CAPITAL LETTER SHARP S
                '\u{0345}' | '\u{1FBE}' => 'ι', // ypogegrammeni, prosgegrammeni
                '\u{03C2}' => 'σ',              // final sigma
                '\u{03D0}' => 'β',
                '\u{03D1}' => 'θ',
                '\u{03D5}' => 'φ',
                '\u{03D6}' => 'π',
                '\u{03F0}' => 'κ',
                '\u{03F1}' => 'ρ',
                '\u{03F5}' => 'ε',
                '\u{1E9B}' => '\u{1E61}',
                other => other,
            };
            c.to_lowercase()
        })
        .collect()
}

fn valid_id(id: &Value) -> bool {
    matches!(id, Value::String(_) | Value::Number(_))
}

/// The top-level id of a message that failed only on a nested duplicate key.
fn lenient_id(text: &str) -> Option<Value> {
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("id").cloned().filter(valid_id)
}

/// A stable key for a request id in the pending-request tables.
pub fn id_key(id: &Value) -> String {
    id.to_string()
}

/// A JSON-RPC error response, serialized without a trailing newline.
pub fn error_response(id: Option<&Value>, code: i64, message: &str) -> Vec<u8> {
    let reply = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Value::Null),
        "error": { "code": code, "message": message },
    });
    reply.to_string().into_bytes()
}

/// A JSON-RPC success response carrying `result`.
pub fn result_response(id: &Value, result: Value) -> Vec<u8> {
    serde_json::json!({ "jsonrpc": "2.0", "id": id, "result": result })
        .to_string()
        .into_bytes()
}

const DUPLICATE_MARK: &str = "sentinel-duplicate-key:";

fn decode_duplicate(message: &str) -> Option<(String, bool)> {
    let rest = &message[message.find(DUPLICATE_MARK)? + DUPLICATE_MARK.len()..];
    let (depth, rest) = rest.split_once(':')?;
    // serde_json appends " at line L column C"; the key is length-prefixed
    // so keys containing that text are not misread.
    let (len, rest) = rest.split_once(':')?;
    let len: usize = len.parse().ok()?;
    let key = rest.get(..len)?.to_string();
    Some((key, depth == "0"))
}

/// Builds a `serde_json::Value`, failing on a duplicate key at any depth.
struct StrictSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed {
            depth: self.depth + 1,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        let mut seen = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            if !seen.insert(folded_key(&key)) {
                return Err(de::Error::custom(format!(
                    "{DUPLICATE_MARK}{}:{}:{key}",
                    self.depth,
                    key.len()
                )));
            }
            let value = access.next_value_seed(StrictSeed {
                depth: self.depth + 1,
            })?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_request_and_reads_its_method_and_id() {
        let msg = parse_strict(
            br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#,
        )
        .unwrap();
        assert_eq!(
            msg.shape,
            Shape::Request {
                id: Value::from(7),
                method: "tools/call".into()
            }
        );
        assert_eq!(msg.params().unwrap()["name"], "x");
    }

    #[test]
    fn refuses_batches() {
        let err = parse_strict(br#" [{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).unwrap_err();
        assert_eq!(err.rejection, Rejection::Batch);
        assert_eq!(err.rejection.code(), INVALID_REQUEST);
    }

    #[test]
    fn refuses_nested_duplicate_keys_but_keeps_the_id() {
        let line = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"a","arguments":{"p":1,"p":2}}}"#;
        let err = parse_strict(line).unwrap_err();
        assert_eq!(
            err.rejection,
            Rejection::DuplicateKey {
                key: "p".into(),
                top_level: false
            }
        );
        assert_eq!(err.id, Some(Value::from(3)));
    }

    #[test]
    fn a_duplicated_id_is_not_trusted() {
        let err = parse_strict(br#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#).unwrap_err();
        assert!(matches!(
            err.rejection,
            Rejection::DuplicateKey {
                top_level: true,
                ..
            }
        ));
        assert_eq!(err.id, None);
    }

    #[test]
    fn refuses_invalid_utf8_and_trailing_garbage() {
        assert_eq!(
            parse_strict(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}")
                .unwrap_err()
                .rejection,
            Rejection::InvalidUtf8
        );
        assert!(matches!(
            parse_strict(br#"{"jsonrpc":"2.0","method":"a"} {}"#)
                .unwrap_err()
                .rejection,
            Rejection::NotJson(_)
        ));
    }

    #[test]
    fn classifies_notifications_and_responses() {
        let n = parse_strict(
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        )
        .unwrap();
        assert_eq!(n.method(), Some("notifications/cancelled"));
        let r = parse_strict(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).unwrap();
        assert_eq!(
            r.shape,
            Shape::Response {
                id: Value::from("a")
            }
        );
        assert!(parse_strict(br#"{"jsonrpc":"2.0","id":1}"#).is_err());
    }
}
