//! An HTTP downstream (`--upstream http[s]://HOST:PORT/mcp`): the server is
//! reached over Streamable HTTP instead of being spawned.
//!
//! Each message for the server is one POST; what comes back (a JSON body,
//! or the `data:` of each SSE event) becomes server frames, exactly as if
//! the server had written those lines on stdout, so the proxy logic is the
//! same. The session id and the negotiated protocol version are carried in
//! the headers the revision asks for, and for 2026-07-28 bodies the routing
//! headers (`Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) are taken from the body
//! the policy saw. `https://` upstreams are verified with rustls against
//! the system's roots plus `--upstream-ca`.
//!
//! Credentials: a configured token (`--upstream-token-file`) is sent on
//! every request; without one, the `Authorization` a client gave the HTTP
//! front is passed through with its own messages. A 401 is turned into a
//! JSON-RPC error, and its `WWW-Authenticate` challenge is kept (by request
//! id, out of band, so a server cannot forge one through a message body)
//! for the HTTP front to answer with a real 401.
//!
//! Order: a notification, a response and `initialize` are sent only after
//! the previous one was accepted (response head received), so the server
//! sees `initialize`, `notifications/initialized` and a client's answers in
//! the order the client sent them; requests then run concurrently, as with
//! any Streamable HTTP client.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::framing::Frame;
use crate::jsonrpc;
use crate::proxy::META_PROTOCOL_VERSION;
use crate::stdio::Write;

pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Where an HTTP upstream is and how to reach it.
#[derive(Clone)]
pub struct UpstreamConfig {
    pub url: Uri,
    /// Sent as `Authorization: Bearer TOKEN` on every request; when set, a
    /// client's own `Authorization` is never forwarded.
    pub token: Option<String>,
    /// Whether the `Authorization` a client gave the HTTP front may be
    /// passed through (not when the front itself consumes it).
    pub pass_client_authorization: bool,
    pub tls: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("pass_client_authorization", &self.pass_client_authorization)
            .finish_non_exhaustive()
    }
}

/// The rustls client configuration: the system's trust anchors plus the
/// PEM certificates in `extra_ca` (for a private CA or a self-signed
/// server).
pub fn tls_config(extra_ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<_, _>>())
            .map_err(|e| format!("cannot read the CA certificates in {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An HTTP(S) client for the upstream.
pub(crate) fn client(config: &UpstreamConfig) -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*config.tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Every error in a chain, joined: hyper's own message ("client error
/// (Connect)") says little without its sources.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// `WWW-Authenticate` challenges of upstream 401s, by request id key.
pub(crate) type Challenges = Arc<ChallengeMap>;

/// The challenges of upstream 401s waiting for the HTTP front to take them
/// (with the answer to the request they belong to). Behind stdio nobody
/// takes them, so the map is bounded: past [`ChallengeMap::CAP`] entries
/// the oldest is dropped, never a fresh one.
#[derive(Default)]
pub(crate) struct ChallengeMap {
    /// Request id key -> (insertion number, challenge).
    entries: Mutex<HashMap<String, (u64, String)>>,
    next: std::sync::atomic::AtomicU64,
}

impl ChallengeMap {
    pub(crate) const CAP: usize = 1024;

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, String)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn insert(&self, key: String, challenge: String) {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut entries = self.entries();
        entries.insert(key, (n, challenge));
        while entries.len() > Self::CAP {
            let oldest = entries
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => entries.remove(&k),
                None => break,
            };
        }
    }

    /// The challenge of the 401 that answered request `key`, once.
    pub(crate) fn take(&self, key: &str) -> Option<String> {
        self.entries().remove(key).map(|(_, c)| c)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[derive(Default)]
struct Negotiated {
    session: Option<String>,
    version: Option<String>,
    /// The last client `Authorization` seen on this link (a link that
    /// serves one client only), for messages the proxy itself sends.
    authorization: Option<HeaderValue>,
}

struct Upstream {
    config: Arc<UpstreamConfig>,
    client: HttpClient,
    max_line: usize,
    negotiated: Mutex<Negotiated>,
    remember_authorization: bool,
    frames: mpsc::Sender<Frame>,
    challenges: Challenges,
    /// Tool input schemas seen in `tools/list` results, for `Mcp-Param-*`.
    schemas: Mutex<HashMap<String, Value>>,
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
        Some("http" | "https") if uri.authority().is_some() => Ok(uri),
        _ => Err(format!(
            "`{url}`: the upstream must be an http:// or https:// URL"
        )),
    }
}

/// Starts the upstream link: lines sent to the returned sender are POSTed;
/// whatever the server answers arrives on the returned receiver. The
/// receiver ends after a [`Write::Stop`] once in-flight requests finish.
/// `remember_authorization` is for links that serve one client: the
/// client's last `Authorization` also goes with the proxy's own messages.
pub(crate) fn spawn(
    config: Arc<UpstreamConfig>,
    max_line: usize,
    remember_authorization: bool,
) -> (mpsc::Sender<Write>, mpsc::Receiver<Frame>, Challenges) {
    let (to_server, mut lines) = mpsc::channel::<Write>(256);
    let (frames, from_server) = mpsc::channel(256);
    let challenges = Challenges::default();
    let upstream = Arc::new(Upstream {
        client: client(&config),
        config,
        max_line,
        negotiated: Mutex::new(Negotiated::default()),
        remember_authorization,
        frames,
        challenges: Arc::clone(&challenges),
        schemas: Mutex::new(HashMap::new()),
    });
    tokio::spawn(async move {
        loop {
            let (line, authorization) = match lines.recv().await {
                Some(Write::Line(line)) => (line, None),
                Some(Write::Authorized(line, auth)) => (line, Some(auth)),
                Some(Write::Stop) | None => break,
            };
            let upstream = Arc::clone(&upstream);
            let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
            let ordered = must_precede_what_follows(&line);
            tokio::spawn(async move { upstream.post(line, authorization, sent_tx).await });
            if ordered {
                let _ = sent_rx.await;
            }
        }
        upstream.end_session().await;
    });
    (to_server, from_server, challenges)
}

/// Notifications, responses and `initialize` are sent one at a time, in
/// order; other requests may overlap.
fn must_precede_what_follows(line: &[u8]) -> bool {
    let value: Option<Value> = serde_json::from_slice(line).ok();
    let method = value.as_ref().and_then(|v| v.get("method"));
    let is_request = method.is_some() && value.as_ref().is_some_and(|v| v.get("id").is_some());
    !is_request || method.and_then(Value::as_str) == Some("initialize")
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

    /// The `Authorization` for one message: the configured token, else the
    /// client's (when passing it through is allowed).
    fn authorization(&self, from_client: Option<HeaderValue>) -> Option<HeaderValue> {
        if let Some(token) = &self.config.token {
            return header(&format!("Bearer {token}"));
        }
        if !self.config.pass_client_authorization {
            return None;
        }
        if !self.remember_authorization {
            return from_client;
        }
        let mut negotiated = self.negotiated();
        match from_client {
            Some(auth) => {
                negotiated.authorization = Some(auth.clone());
                Some(auth)
            }
            None => negotiated.authorization.clone(),
        }
    }

    async fn post(
        &self,
        line: Vec<u8>,
        from_client: Option<HeaderValue>,
        sent: tokio::sync::oneshot::Sender<()>,
    ) {
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
            .uri(self.config.url.clone())
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
            for (name, value) in crate::headers::routing_headers(value.as_ref(), &self.schemas()) {
                if let Some(v) = header(&value) {
                    request = request.header(name, v);
                }
            }
        }
        if let Some(auth) = self.authorization(from_client) {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = match request.body(Full::new(Bytes::from(line))) {
            Ok(r) => r,
            Err(e) => {
                let _ = sent.send(());
                return self
                    .fail(
                        id.as_ref(),
                        format!("cannot build the upstream request: {e}"),
                    )
                    .await;
            }
        };
        let response = self.client.request(request).await;
        let _ = sent.send(());
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return self
                    .fail(
                        id.as_ref(),
                        format!(
                            "Sentinel: the upstream MCP server is unreachable: {}",
                            error_chain(&e)
                        ),
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
            // client, through the HTTP front's own 401) can see where to
            // get a token.
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if let Some(id) = id.as_ref() {
                self.challenges
                    .insert(jsonrpc::id_key(id), challenge.clone());
                let reply = serde_json::json!({
                    "jsonrpc": "2.0", "id": id,
                    "error": {
                        "code": jsonrpc::REFUSED,
                        "message": format!("Sentinel: the upstream MCP server answered HTTP 401 Unauthorized (WWW-Authenticate: {challenge}); authorize with it, or give the proxy a token with --upstream-token-file"),
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

    fn schemas(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        self.schemas.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands one message to the proxy; returns true when it answers a
    /// request (has an id and no method).
    async fn deliver(&self, message: Vec<u8>, method: Option<&str>) -> bool {
        let value: Option<Value> = serde_json::from_slice(&message).ok();
        let is_answer = value
            .as_ref()
            .is_some_and(|v| v.get("id").is_some() && v.get("method").is_none());
        if is_answer && method == Some("tools/list") {
            let tools = value
                .as_ref()
                .and_then(|v| v.pointer("/result/tools"))
                .and_then(Value::as_array);
            let mut schemas = self.schemas();
            for tool in tools.into_iter().flatten() {
                if let (Some(name), Some(schema)) = (
                    tool.get("name").and_then(Value::as_str),
                    tool.get("inputSchema"),
                ) {
                    schemas.insert(name.to_string(), schema.clone());
                }
            }
        }
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
            .uri(self.config.url.clone());
        if let Some(value) = header(&session) {
            request = request.header("mcp-session-id", value);
        }
        if let Some(auth) = self.authorization(None) {
            request = request.header(AUTHORIZATION, auth);
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
    #[test]
    fn the_challenge_map_is_bounded_and_drops_the_oldest_only() {
        let map = super::ChallengeMap::default();
        for i in 0..super::ChallengeMap::CAP + 10 {
            map.insert(format!("n:{i}"), format!("Bearer realm=\"{i}\""));
        }
        assert_eq!(map.len(), super::ChallengeMap::CAP);
        // The ten oldest went; the newest is there, and taken once.
        assert_eq!(map.take("n:0"), None);
        assert_eq!(map.take("n:9"), None);
        assert!(map.take("n:10").is_some());
        let last = format!("n:{}", super::ChallengeMap::CAP + 9);
        assert_eq!(
            map.take(&last).as_deref(),
            Some(format!("Bearer realm=\"{}\"", super::ChallengeMap::CAP + 9).as_str())
        );
        assert_eq!(map.take(&last), None);
    }

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
    fn http_and_https_upstreams_only() {
        assert!(parse_url("http://127.0.0.1:8000/mcp").is_ok());
        assert!(parse_url("https://example.org/mcp").is_ok());
        assert!(parse_url("ftp://x/mcp").is_err());
        assert!(parse_url("/mcp").is_err());
    }
}
