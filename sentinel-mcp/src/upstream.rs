//! An HTTP downstream (`--upstream http://HOST:PORT/mcp`): the server is
//! reached over Streamable HTTP instead of being spawned.
//!
//! Each message for the server is one POST; what comes back (a JSON body,
//! or the `data:` of each SSE event) becomes server frames, exactly as if
//! the server had written those lines on stdout, so the proxy logic is the
//! same. The session id and the negotiated protocol version are carried in
//! the headers the revision asks for. Plain `http://` only: there is no TLS
//! stack in this build, so use it for servers on this host.

use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::framing::Frame;
use crate::jsonrpc;
use crate::proxy::META_PROTOCOL_VERSION;
use crate::stdio::Write;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

#[derive(Default)]
struct Negotiated {
    session: Option<String>,
    version: Option<String>,
}

struct Upstream {
    url: Uri,
    client: HttpClient,
    max_line: usize,
    negotiated: Mutex<Negotiated>,
    frames: mpsc::Sender<Frame>,
}

static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// The bearer token sent to every upstream (`--upstream-token-file`).
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

/// The identity of an upstream server: authority and path, so two servers
/// on one host are two servers for pins, policy and the breaker.
pub fn server_id(uri: &Uri) -> String {
    format!(
        "{}{}",
        uri.authority().map_or("", |a| a.as_str()),
        uri.path().trim_end_matches('/')
    )
}

/// Checks an `--upstream` URL.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => Ok(uri),
        Some("https") => Err(format!(
            "`{url}`: https upstreams are not supported by this build; use a plain http:// server on this host"
        )),
        _ => Err(format!("`{url}`: the upstream must be an http:// URL")),
    }
}

/// Starts the upstream link: lines sent to the returned sender are POSTed;
/// whatever the server answers arrives on the returned receiver. The
/// receiver ends after a [`Write::Stop`] once in-flight requests finish.
pub(crate) fn spawn(url: Uri, max_line: usize) -> (mpsc::Sender<Write>, mpsc::Receiver<Frame>) {
    let (to_server, mut lines) = mpsc::channel::<Write>(256);
    let (frames, from_server) = mpsc::channel(256);
    let upstream = Arc::new(Upstream {
        url,
        client: Client::builder(TokioExecutor::new()).build_http(),
        max_line,
        negotiated: Mutex::new(Negotiated::default()),
        frames,
    });
    tokio::spawn(async move {
        while let Some(Write::Line(line)) = lines.recv().await {
            let upstream = Arc::clone(&upstream);
            tokio::spawn(async move { upstream.post(line).await });
        }
        upstream.end_session().await;
    });
    (to_server, from_server)
}

fn header(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(value).ok()
}

impl Upstream {
    fn negotiated(&self) -> std::sync::MutexGuard<'_, Negotiated> {
        self.negotiated.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, frame: Frame) {
        let _ = self.frames.send(frame).await;
    }

    async fn fail(&self, id: Option<&Value>, message: String) {
        if let Some(id) = id {
            let reply = jsonrpc::error_response(Some(id), jsonrpc::REFUSED, &message);
            self.send(Frame::Line(reply)).await;
        }
    }

    async fn post(&self, line: Vec<u8>) {
        let value: Option<Value> = serde_json::from_slice(&line).ok();
        let method = value
            .as_ref()
            .and_then(|v| v.get("method"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let id = value
            .as_ref()
            .filter(|_| method.is_some())
            .and_then(|v| v.get("id"))
            .cloned();
        let params = value.as_ref().and_then(|v| v.get("params"));
        let body_version = params
            .and_then(|p| p.get("_meta"))
            .and_then(|m| m.get(META_PROTOCOL_VERSION))
            .and_then(Value::as_str);

        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream");
        {
            let negotiated = self.negotiated();
            if let Some(session) = negotiated.session.as_deref().and_then(header) {
                request = request.header("mcp-session-id", session);
            }
            let version = body_version.or(negotiated.version.as_deref());
            if let Some(version) = version.and_then(header) {
                request = request.header("mcp-protocol-version", version);
            }
        }
        if body_version.is_some() {
            // The 2026-07-28 routing headers, from the body the policy saw.
            if let Some(m) = method.as_deref().and_then(header) {
                request = request.header("mcp-method", m);
            }
            let name = params
                .and_then(|p| p.get("name").or_else(|| p.get("uri")))
                .and_then(Value::as_str);
            if let Some(n) = name
                .map(crate::http::encode_header_value)
                .as_deref()
                .and_then(header)
            {
                request = request.header("mcp-name", n);
            }
        }
        if let Some(token) = TOKEN.get().cloned().flatten() {
            if let Some(v) = header(&format!("Bearer {token}")) {
                request = request.header("authorization", v);
            }
        }
        let request = match request.body(Full::new(Bytes::from(line))) {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(
                        id.as_ref(),
                        format!("cannot build the upstream request: {e}"),
                    )
                    .await
            }
        };
        let response = match self.client.request(request).await {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(
                        id.as_ref(),
                        format!("Sentinel: the upstream MCP server is unreachable: {e}"),
                    )
                    .await
            }
        };
        if let Some(session) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.negotiated().session = Some(session.to_string());
        }
        let status = response.status();
        if status == hyper::StatusCode::UNAUTHORIZED {
            // Surfaced with its challenge, so the operator (or an OAuth
            // client) can see where to get a token.
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if let Some(id) = id.as_ref() {
                let reply = serde_json::json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": {
                        "code": jsonrpc::REFUSED,
                        "message": format!("Sentinel: the upstream MCP server answered HTTP 401 Unauthorized (WWW-Authenticate: {challenge}); give the proxy a token with --upstream-token-file"),
                        "data": {"httpStatus": 401, "wwwAuthenticate": challenge},
                    },
                });
                self.send(Frame::Line(reply.to_string().into_bytes())).await;
            }
            return;
        }
        let is_sse = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/event-stream"));
        let mut body = response.into_body();
        let mut answered = false;
        let mut buffer = BytesMut::new();
        let mut too_long = false;
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if too_long {
                continue;
            }
            buffer.extend_from_slice(&data);
            if is_sse {
                while let Some(event) = take_event(&mut buffer) {
                    if let Some(payload) = sse_data(&event) {
                        answered |= self.deliver(payload, method.as_deref()).await;
                    }
                }
            }
            if buffer.len() > self.max_line {
                too_long = true;
                buffer.clear();
                self.send(Frame::TooLong).await;
            }
        }
        if !is_sse && !too_long && !buffer.is_empty() {
            answered |= self.deliver(buffer.to_vec(), method.as_deref()).await;
        }
        if !answered && !too_long && !status.is_success() {
            self.fail(
                id.as_ref(),
                format!("Sentinel: the upstream MCP server answered HTTP {status}"),
            )
            .await;
        }
    }

    /// Hands one message to the proxy; returns true when it answers a
    /// request (has an id and no method).
    async fn deliver(&self, message: Vec<u8>, method: Option<&str>) -> bool {
        let value: Option<Value> = serde_json::from_slice(&message).ok();
        let is_answer = value
            .as_ref()
            .is_some_and(|v| v.get("id").is_some() && v.get("method").is_none());
        if is_answer && method == Some("initialize") {
            let version = value
                .as_ref()
                .and_then(|v| v.pointer("/result/protocolVersion"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            if version.is_some() {
                self.negotiated().version = version;
            }
        }
        self.send(Frame::Line(message)).await;
        is_answer
    }

    async fn end_session(&self) {
        let Some(session) = self.negotiated().session.clone() else {
            return;
        };
        let mut request = Request::builder()
            .method(Method::DELETE)
            .uri(self.url.clone());
        if let Some(value) = header(&session) {
            request = request.header("mcp-session-id", value);
        }
        if let Ok(request) = request.body(Full::new(Bytes::new())) {
            let _ = self.client.request(request).await;
        }
    }
}

/// Removes and returns the first complete SSE event (up to a blank line).
fn take_event(buffer: &mut BytesMut) -> Option<Vec<u8>> {
    let text = &buffer[..];
    let lf = text.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    let end = match (lf, crlf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    let event = buffer.split_to(end.0 + end.1);
    Some(event[..end.0].to_vec())
}

/// The joined `data:` lines of one SSE event, if it has any.
fn sse_data(event: &[u8]) -> Option<Vec<u8>> {
    let mut data: Vec<u8> = Vec::new();
    let mut any = false;
    for line in event.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if any {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
            any = true;
        }
    }
    (any && !data.is_empty()).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_sse_events_and_joins_data_lines() {
        let mut buffer = BytesMut::from(
            &b"event: message\ndata: {\"a\":1}\n\n: ping\n\nid: 7\r\ndata: x\r\ndata: y\r\n\r\npartial"[..],
        );
        let first = take_event(&mut buffer).unwrap();
        assert_eq!(sse_data(&first).unwrap(), b"{\"a\":1}");
        let comment = take_event(&mut buffer).unwrap();
        assert_eq!(sse_data(&comment), None);
        let third = take_event(&mut buffer).unwrap();
        assert_eq!(sse_data(&third).unwrap(), b"x\ny");
        assert_eq!(take_event(&mut buffer), None);
        assert_eq!(&buffer[..], b"partial");
    }

    #[test]
    fn only_plain_http_upstreams() {
        assert!(parse_url("http://127.0.0.1:8000/mcp").is_ok());
        assert!(parse_url("https://example.org/mcp")
            .unwrap_err()
            .contains("not supported"));
        assert!(parse_url("ftp://x").is_err());
    }
}
