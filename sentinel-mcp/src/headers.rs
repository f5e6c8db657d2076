//! The 2026-07-28 Streamable HTTP routing headers (SEP-2243): `Mcp-Method`,
//! `Mcp-Name` and the `Mcp-Param-{Name}` headers a tool's input schema asks
//! for with `x-mcp-header`. Encoding and decoding of values (`=?base64?…?=`
//! for what cannot ride in a header as is), the headers a body implies, and
//! the check that headers a client sent say what its body says — so a
//! gateway routing on headers sees the call the policy saw.

use serde_json::{Map, Value};

/// Prefix of the per-parameter headers.
pub const PARAM_PREFIX: &str = "mcp-param-";

/// Decodes a header value: `=?base64?…?=` carries the UTF-8 of a value that
/// cannot ride in a header as is; `None` when that encoding is malformed.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => {
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0);
            let trimmed = b64.trim_end_matches('=');
            if b64.len() % 4 != 0 || b64.len() - trimmed.len() > 2 {
                return None;
            }
            for c in trimmed.bytes() {
                let v = match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a' + 26,
                    b'0'..=b'9' => c - b'0' + 52,
                    b'+' => 62,
                    b'/' => 63,
                    _ => return None,
                };
                acc = (acc << 6) | u32::from(v);
                bits += 6;
                if bits >= 8 {
                    bits -= 8;
                    out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
                }
            }
            String::from_utf8(out).ok()
        }
        None => Some(value.to_string()),
    }
}

/// Encodes a value for a header: printable ASCII without surrounding
/// whitespace as is, anything else (or anything that looks encoded) as
/// `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        return value.to_string();
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("=?base64?");
    for chunk in value.as_bytes().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out.push_str("?=");
    out
}

/// The body field `Mcp-Name` mirrors, for the methods that have one.
pub fn name_field(method: &str) -> Option<&'static str> {
    match method {
        "tools/call" | "prompts/get" => Some("name"),
        "resources/read" => Some("uri"),
        _ => None,
    }
}

/// One `x-mcp-header` annotation: the property path and the header token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamHeader {
    pub path: Vec<String>,
    pub token: String,
    /// `string`, `integer` or `boolean`.
    pub kind: String,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The `x-mcp-header` annotations of a tool's input schema, reachable from
/// the root through `properties` only. `Err` with the reason when an
/// annotation breaks the rules (not a token, not on a string, integer or
/// boolean property, not reachable through `properties`, or not unique
/// case-insensitively): such a tool must not be offered over HTTP.
pub fn param_headers(schema: &Value) -> Result<Vec<ParamHeader>, String> {
    let mut found = Vec::new();
    let mut stack: Vec<(Option<Vec<String>>, &Value)> = vec![(Some(Vec::new()), schema)];
    while let Some((path, node)) = stack.pop() {
        let Some(obj) = node.as_object() else {
            continue;
        };
        if let Some(annotation) = obj.get("x-mcp-header") {
            let where_ = path.as_ref().map(|p| p.join(".")).unwrap_or_default();
            let path = match path.clone() {
                Some(p) if !p.is_empty() => p,
                _ => {
                    return Err(
                        "x-mcp-header on a schema position not reached through `properties`".into(),
                    )
                }
            };
            let Some(token) = annotation.as_str().filter(|t| is_token(t)) else {
                return Err(format!(
                    "x-mcp-header of property `{where_}` is not an HTTP token"
                ));
            };
            let kind = obj.get("type").and_then(Value::as_str).unwrap_or_default();
            if !matches!(kind, "string" | "integer" | "boolean") {
                return Err(format!(
                    "x-mcp-header on property `{where_}` of type `{kind}` (only string, integer, boolean)"
                ));
            }
            found.push(ParamHeader {
                path,
                token: token.to_string(),
                kind: kind.to_string(),
            });
        }
        for (keyword, value) in obj {
            match keyword.as_str() {
                "properties" => {
                    if let Some(props) = value.as_object() {
                        for (name, sub) in props {
                            let next = path.as_ref().map(|p| {
                                let mut p = p.clone();
                                p.push(name.clone());
                                p
                            });
                            stack.push((next, sub));
                        }
                    }
                }
                "items"
                | "contains"
                | "additionalProperties"
                | "unevaluatedItems"
                | "unevaluatedProperties"
                | "propertyNames"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contentSchema" => stack.push((None, value)),
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => {
                    for sub in value.as_array().into_iter().flatten() {
                        stack.push((None, sub));
                    }
                }
                "patternProperties" | "dependentSchemas" | "$defs" | "definitions" => {
                    for sub in value.as_object().into_iter().flat_map(Map::values) {
                        stack.push((None, sub));
                    }
                }
                _ => {}
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for h in &found {
        if !seen.insert(h.token.to_ascii_lowercase()) {
            return Err(format!("x-mcp-header `{}` is used twice", h.token));
        }
    }
    Ok(found)
}

fn value_at<'a>(arguments: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter()
        .try_fold(arguments, |node, key| node.as_object()?.get(key))
        .filter(|v| !v.is_null())
}

/// How an argument is written into its header (`None`: it is not).
fn render(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The routing headers a message body implies, for a request to a
/// 2026-07-28 server: `Mcp-Method`, `Mcp-Name`, and for `tools/call` the
/// `Mcp-Param-*` of the tool's input schema (from `schemas`, by tool name).
pub fn routing_headers(
    body: Option<&Value>,
    schemas: &std::collections::HashMap<String, Value>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(method) = body.and_then(|b| b.get("method")).and_then(Value::as_str) else {
        return out;
    };
    out.push(("mcp-method".to_string(), method.to_string()));
    let params = body.and_then(|b| b.get("params"));
    if let Some(name) = name_field(method)
        .and_then(|f| params.and_then(|p| p.get(f)))
        .and_then(Value::as_str)
    {
        out.push(("mcp-name".to_string(), encode_header_value(name)));
        if method == "tools/call" {
            let args = params.and_then(|p| p.get("arguments"));
            let annotations = schemas.get(name).map(param_headers);
            if let (Some(args), Some(Ok(annotations))) = (args, annotations) {
                for h in annotations {
                    if let Some(text) = value_at(args, &h.path).and_then(render) {
                        out.push((
                            format!("{PARAM_PREFIX}{}", h.token.to_ascii_lowercase()),
                            encode_header_value(&text),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// Checks the `Mcp-Param-*` headers of a `tools/call` against its
/// arguments and the tool's input schema: each annotated argument that is
/// present needs its header with the same value, an absent one none, and a
/// header no annotation asks for is refused (a router would act on a value
/// the server never sees). `headers` are (lowercase name, value) pairs.
pub fn check_param_headers(
    schema: Option<&Value>,
    arguments: &Value,
    headers: &[(String, String)],
) -> Result<(), String> {
    let sent: Vec<&(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.starts_with(PARAM_PREFIX))
        .collect();
    let annotations = match schema.map(param_headers) {
        Some(Ok(a)) => a,
        Some(Err(why)) => return Err(format!("the tool's input schema is refused: {why}")),
        None => Vec::new(),
    };
    for (name, _) in &sent {
        let token = &name[PARAM_PREFIX.len()..];
        if sent.iter().filter(|(n, _)| n == name).count() > 1 {
            return Err(format!("the {name} header appears more than once"));
        }
        if !annotations
            .iter()
            .any(|h| h.token.eq_ignore_ascii_case(token))
        {
            return Err(format!(
                "the {name} header matches no x-mcp-header of the tool's input schema"
            ));
        }
    }
    for h in &annotations {
        let header_name = format!("{PARAM_PREFIX}{}", h.token.to_ascii_lowercase());
        let raw = sent.iter().find(|(n, _)| *n == header_name).map(|(_, v)| v);
        let value = value_at(arguments, &h.path);
        let display = format!("Mcp-Param-{}", h.token);
        match (value.and_then(render), raw) {
            (None, None) => {}
            (None, Some(_)) => {
                return Err(format!(
                    "{display} is sent but argument `{}` is absent",
                    h.path.join(".")
                ))
            }
            (Some(_), None) => {
                return Err(format!(
                    "{display} is missing but argument `{}` is present",
                    h.path.join(".")
                ))
            }
            (Some(body), Some(raw)) => {
                let decoded = decode_header_value(raw)
                    .ok_or_else(|| format!("{display} is not valid =?base64?…?= text"))?;
                let same = decoded == body
                    || (h.kind == "integer"
                        && value.and_then(Value::as_f64).is_some_and(|v| {
                            decoded.parse::<f64>().is_ok_and(|d| d == v) && !decoded.contains('e')
                        }));
                if !same {
                    return Err(format!(
                        "{display} does not match argument `{}`",
                        h.path.join(".")
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_round_trip_and_bad_encodings_are_refused() {
        for v in [
            "us-west1",
            "Hello, 世界",
            " padded ",
            "line1\nline2",
            "=?base64?x?=",
        ] {
            assert_eq!(
                decode_header_value(&encode_header_value(v)).as_deref(),
                Some(v)
            );
        }
        assert_eq!(
            encode_header_value("Hello, 世界"),
            "=?base64?SGVsbG8sIOS4lueVjA==?="
        );
        assert_eq!(decode_header_value("=?base64?not*base64?="), None);
        assert_eq!(decode_header_value("=?base64?QQ?="), None, "unpadded");
    }

    #[test]
    fn annotations_are_found_and_checked() {
        let schema = json!({"type": "object", "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "opts": {"type": "object", "properties": {"n": {"type": "integer", "x-mcp-header": "N"}}},
            "q": {"type": "string"}}});
        let found = param_headers(&schema).unwrap();
        assert_eq!(found.len(), 2);
        let bad = json!({"properties": {"x": {"type": "number", "x-mcp-header": "X"}}});
        assert!(param_headers(&bad).is_err());
        let dup = json!({"properties": {"a": {"type": "string", "x-mcp-header": "A"},
                                        "b": {"type": "string", "x-mcp-header": "a"}}});
        assert!(param_headers(&dup).is_err());
        let nested = json!({"items": {"type": "string", "x-mcp-header": "I"}});
        assert!(param_headers(&nested).is_err());

        let args = json!({"region": "us-west1", "opts": {"n": 42}, "q": "SELECT 1"});
        let ok = vec![
            ("mcp-param-region".to_string(), "us-west1".to_string()),
            ("mcp-param-n".to_string(), "42".to_string()),
        ];
        assert_eq!(check_param_headers(Some(&schema), &args, &ok), Ok(()));
        let lying = vec![
            ("mcp-param-region".to_string(), "eu-west1".to_string()),
            ("mcp-param-n".to_string(), "42".to_string()),
        ];
        assert!(check_param_headers(Some(&schema), &args, &lying).is_err());
        assert!(
            check_param_headers(Some(&schema), &args, &ok[..1]).is_err(),
            "missing"
        );
        let extra = [ok.clone(), vec![("mcp-param-tenant".into(), "acme".into())]].concat();
        assert!(
            check_param_headers(Some(&schema), &args, &extra).is_err(),
            "unannotated"
        );
        let headers = routing_headers(
            Some(&json!({"method": "tools/call", "params": {"name": "sql", "arguments": args}})),
            &[("sql".to_string(), schema.clone())].into_iter().collect(),
        );
        assert!(headers.contains(&("mcp-param-region".into(), "us-west1".into())));
        assert!(headers.contains(&("mcp-param-n".into(), "42".into())));
        assert!(headers.contains(&("mcp-name".into(), "sql".into())));
    }
}
