//! The shapes of the OpenAI- and Anthropic-compatible APIs the proxy
//! understands: which paths it forwards (and under which endpoint name
//! the policy sees them), where the key is, which model a request asks
//! for, whether the answer streams, and the error body an agent's SDK
//! can read.

use hyper::header::{HeaderMap, AUTHORIZATION};
use hyper::Method;
use serde_json::{json, Value};

/// How the client presented its key; the real key goes upstream the same
/// way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStyle {
    /// `Authorization: Bearer KEY` (OpenAI and compatibles).
    Bearer,
    /// `x-api-key: KEY` (Anthropic).
    XApiKey,
}

pub const X_API_KEY: &str = "x-api-key";

/// The key the client sent, and how.
pub fn presented_key(headers: &HeaderMap) -> Option<(String, KeyStyle)> {
    if let Some(v) = headers.get(X_API_KEY).and_then(|v| v.to_str().ok()) {
        return Some((v.trim().to_string(), KeyStyle::XApiKey));
    }
    let auth = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| (key.trim().to_string(), KeyStyle::Bearer))
}

/// A proxied endpoint: its method, path and the name rules match
/// (`kind = "mcp"`, `server = "llm"`, `tool = NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub name: &'static str,
    /// Requests carry a JSON body worth scanning.
    pub has_body: bool,
}

const ENDPOINTS: &[(&str, &str, &str, bool)] = &[
    ("POST", "/v1/chat/completions", "chat.completions", true),
    ("POST", "/v1/completions", "completions", true),
    ("POST", "/v1/responses", "responses", true),
    ("POST", "/v1/embeddings", "embeddings", true),
    ("POST", "/v1/messages", "messages", true),
    (
        "POST",
        "/v1/messages/count_tokens",
        "messages.count_tokens",
        true,
    ),
    ("GET", "/v1/models", "models", false),
];

/// The endpoint for `method` and `path` (query excluded); `None` for
/// anything the proxy does not forward.
pub fn endpoint(method: &Method, path: &str) -> Option<Endpoint> {
    if method == Method::GET {
        if let Some(id) = path.strip_prefix("/v1/models/") {
            if !id.is_empty() && !id.contains('/') {
                return Some(Endpoint {
                    name: "models",
                    has_body: false,
                });
            }
        }
    }
    ENDPOINTS
        .iter()
        .find(|(m, p, _, _)| method.as_str() == *m && path == *p)
        .map(|(_, _, name, has_body)| Endpoint {
            name,
            has_body: *has_body,
        })
}

/// The `model` and `stream` fields of a request body.
pub fn model_and_stream(body: &Value) -> (Option<String>, bool) {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .map(str::to_string);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    (model, stream)
}

/// An error body both SDK families parse: OpenAI reads `error.message`,
/// Anthropic `error.type` / `error.message` under `type: "error"`.
pub fn error_body(kind: &str, message: &str) -> Value {
    json!({
        "type": "error",
        "error": {"type": kind, "message": message, "code": kind},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_keys() {
        assert_eq!(
            endpoint(&Method::POST, "/v1/chat/completions")
                .unwrap()
                .name,
            "chat.completions"
        );
        assert_eq!(
            endpoint(&Method::POST, "/v1/messages").unwrap().name,
            "messages"
        );
        assert_eq!(
            endpoint(&Method::GET, "/v1/models/gpt-x").unwrap().name,
            "models"
        );
        assert!(endpoint(&Method::GET, "/v1/chat/completions").is_none());
        assert!(endpoint(&Method::POST, "/v1/files").is_none());
        assert!(endpoint(&Method::POST, "/v1/chat/completions/../files").is_none());
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        assert_eq!(presented_key(&h), Some(("abc".into(), KeyStyle::Bearer)));
        h.insert(X_API_KEY, "k".parse().unwrap());
        assert_eq!(presented_key(&h), Some(("k".into(), KeyStyle::XApiKey)));
        let (m, s) = model_and_stream(&json!({"model": "m", "stream": true}));
        assert_eq!((m.as_deref(), s), (Some("m"), true));
    }
}
