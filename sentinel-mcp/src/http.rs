//! The Streamable HTTP front (`--listen 127.0.0.1:PORT`) to a stdio server.
//!
//! Each POST carries one JSON-RPC message and goes through the same
//! [`Proxy`] as stdio. A request's answer comes back as `application/json`
//! when it is the first thing ready, else as an SSE stream that carries the
//! server's requests and notifications until the answer. Before any body is
//! read: an `Origin` that is not this listener's (or an `--allow-origin`) is
//! refused with 403 (DNS rebinding); an unknown `MCP-Protocol-Version` with
//! 400; and the 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`) must
//! agree with the body, so a gateway routing on headers sees the same call
//! the policy saw.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited};
use hyper::body::{Body, Frame as BodyFrame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, ORIGIN};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::framing::Frame;
use crate::jsonrpc::{self, id_key, parse_strict, Shape};
use crate::proxy::{Out, Proxy, Step, META_PROTOCOL_VERSION};
use crate::stdio::{spawn_downstream, wait, Downstream, StdioError, Target, Write};

/// Protocol revisions the front accepts in `MCP-Protocol-Version`.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";
const METHOD_HEADER: &str = "mcp-method";
const NAME_HEADER: &str = "mcp-name";

type HttpBody = UnsyncBoxBody<Bytes, Infallible>;

/// How the HTTP front listens.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Origins accepted besides the listener's own.
    pub extra_origins: Vec<String>,
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

/// JSON-RPC (2026-07-28 Streamable HTTP): the routing headers are missing,
/// malformed or disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// Decodes an `Mcp-Name` (or `Mcp-Param-*`) value: `=?base64?…?=` carries
/// the UTF-8 of a value that cannot ride in a header as is.
pub fn decode_header_value(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(b64) => {
            let mut out = Vec::new();
            let (mut acc, mut bits) = (0u32, 0);
            for c in b64.trim_end_matches('=').bytes() {
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

/// Encodes a value for `Mcp-Name`: printable ASCII without surrounding
/// whitespace as is, anything else (or anything that looks encoded) as
/// `=?base64?…?=`.
pub fn encode_header_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b))
        && value.trim() == value
        && !(value.starts_with("=?") && value.ends_with("?="));
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

/// Errors of the HTTP front.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}; pick a free loopback port")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Downstream(#[from] StdioError),
}

/// One message for a waiting HTTP request; `last` ends its stream.
struct Delivery {
    line: Vec<u8>,
    last: bool,
}

/// One downstream server process and the proxy state for it.
struct Conn {
    proxy: Arc<Proxy>,
    to_server: mpsc::Sender<Write>,
    /// Requests waiting for their answer, by JSON-RPC id.
    waiters: Mutex<HashMap<String, mpsc::UnboundedSender<Delivery>>>,
    /// The session-less connection: server messages that answer no request
    /// go only to the request whose progress token they carry, never to
    /// every client.
    shared: bool,
    /// Progress token → the waiting request's id key.
    progress: Mutex<HashMap<String, String>>,
    last_used: Mutex<std::time::Instant>,
}

/// What builds a [`Proxy`] for a new downstream connection.
pub type ProxyFactory = Arc<dyn Fn() -> Proxy + Send + Sync>;

struct Front {
    target: Target,
    new_proxy: ProxyFactory,
    /// Serves requests without a session: the 2026-07-28 stateless
    /// revision (and legacy clients that do not use sessions).
    shared: Arc<Conn>,
    /// Legacy sessions: each `initialize` gets a server process of its own,
    /// as it would with a stdio client.
    sessions: Mutex<HashMap<String, Arc<Conn>>>,
    origins: Vec<String>,
    max_body: usize,
    token: Option<String>,
}

/// Most legacy sessions (server processes) the front runs at once.
pub const MAX_SESSIONS: usize = 32;
/// A session unused this long is ended.
pub const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(900);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Conn {
    /// Spawns the server and the task that reads it; `on_exit` runs when
    /// its output ends.
    fn start(
        proxy: Proxy,
        target: &Target,
        shared: bool,
        on_exit: impl FnOnce(Option<ExitStatus>) + Send + 'static,
    ) -> Result<Arc<Conn>, StdioError> {
        let max_line = proxy.config().max_line;
        let Downstream {
            child,
            mut frames,
            to_server,
        } = spawn_downstream(target, max_line)?;
        let conn = Arc::new(Conn {
            proxy: Arc::new(proxy),
            to_server,
            waiters: Mutex::new(HashMap::new()),
            shared,
            progress: Mutex::new(HashMap::new()),
            last_used: Mutex::new(std::time::Instant::now()),
        });
        let reading = Arc::clone(&conn);
        tokio::spawn(async move {
            while let Ok(Some(frame)) = frames.next_frame().await {
                let step = reading.proxy.on_server_frame(frame);
                reading.deliver(step).await;
            }
            let step = reading.proxy.on_server_closed();
            reading.deliver(step).await;
            // Nobody waits on a server that is gone.
            lock(&reading.waiters).clear();
            on_exit(wait(child).await.ok());
        });
        Ok(conn)
    }

    async fn deliver(self: &Arc<Self>, step: Step) {
        for timer in step.timers {
            let front = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(timer.after).await;
                let out = front.proxy.on_timeout(&timer).out;
                front.deliver_out(out).await;
            });
        }
        self.deliver_out(step.out).await;
    }

    async fn deliver_out(&self, out: Vec<Out>) {
        for out in out {
            match out {
                Out::Server(line) => {
                    let _ = self.to_server.send(Write::Line(line)).await;
                }
                Out::Client(line) => self.route(line),
            }
        }
    }

    /// Sends a client-bound message to the request it answers, or (a
    /// server request or notification) to every open request stream.
    fn route(&self, line: Vec<u8>) {
        let value: Option<Value> = serde_json::from_slice(&line).ok();
        let answer_to = value
            .as_ref()
            .filter(|v| v.get("method").is_none())
            .and_then(|v| v.get("id"))
            .map(id_key);
        let mut waiters = lock(&self.waiters);
        match answer_to {
            Some(key) => {
                if let Some(tx) = waiters.remove(&key) {
                    let _ = tx.send(Delivery { line, last: true });
                }
            }
            None if self.shared => {
                // Only what can be tied to one request reaches a client.
                let token = value
                    .as_ref()
                    .and_then(|v| v.pointer("/params/progressToken"))
                    .map(id_key);
                let target = token.and_then(|t| lock(&self.progress).get(&t).cloned());
                // Without a request to deliver it to, it is dropped, never
                // broadcast.
                if let Some(tx) = target.and_then(|key| waiters.get(&key)) {
                    let _ = tx.send(Delivery { line, last: false });
                }
            }
            None => {
                waiters.retain(|_, tx| {
                    tx.send(Delivery {
                        line: line.clone(),
                        last: false,
                    })
                    .is_ok()
                });
            }
        }
    }
}

impl Front {
    fn origin_ok(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|o| self.origins.iter().any(|allowed| allowed == o))
    }
}

fn plain(status: StatusCode, text: &str) -> Response<HttpBody> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())).boxed_unsync());
    *response.status_mut() = status;
    response
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<HttpBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn rpc_error(
    status: StatusCode,
    id: Option<&Value>,
    code: i64,
    message: &str,
) -> Response<HttpBody> {
    json(status, jsonrpc::error_response(id, code, message))
}

/// An SSE body fed by a channel, ending after the `last` delivery.
struct SseBody {
    first: Option<Delivery>,
    rx: mpsc::UnboundedReceiver<Delivery>,
    done: bool,
}

fn sse_event(line: &[u8]) -> Bytes {
    let mut event = b"event: message\ndata: ".to_vec();
    event.extend_from_slice(line);
    event.extend_from_slice(b"\n\n");
    Bytes::from(event)
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let next = match self.first.take() {
            Some(first) => Some(first),
            None => match self.rx.poll_recv(cx) {
                Poll::Ready(next) => next,
                Poll::Pending => return Poll::Pending,
            },
        };
        match next {
            Some(delivery) => {
                self.done = delivery.last;
                Poll::Ready(Some(Ok(BodyFrame::data(sse_event(&delivery.line)))))
            }
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

fn id_of(msg: &crate::jsonrpc::Message) -> Option<Value> {
    match &msg.shape {
        Shape::Request { id, .. } => Some(id.clone()),
        _ => None,
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Constant-time comparison of two byte strings.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn handle(
    front: Arc<Front>,
    req: Request<Incoming>,
) -> Result<Response<HttpBody>, Infallible> {
    if let Some(token) = &front.token {
        let given = header(&req, "authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same(given.as_bytes(), token.as_bytes()) {
            let mut response = plain(StatusCode::UNAUTHORIZED, "a bearer token is required\n");
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"sentinel-mcp-proxy\""),
            );
            return Ok(response);
        }
    }
    if let Some(origin) = req.headers().get(ORIGIN) {
        if !front.origin_ok(origin) {
            return Ok(plain(StatusCode::FORBIDDEN, "origin not allowed\n"));
        }
    }
    if req.uri().path() != "/mcp" && req.uri().path() != "/" {
        return Ok(plain(StatusCode::NOT_FOUND, "the MCP endpoint is /mcp\n"));
    }
    let header_session = header(&req, SESSION_HEADER).map(str::to_owned);
    if req.method() == Method::DELETE {
        let ended = header_session
            .as_ref()
            .and_then(|id| lock(&front.sessions).remove(id));
        // Closing its stdin lets the session's server exit.
        return Ok(match ended {
            Some(conn) => {
                let _ = conn.to_server.send(Write::Stop).await;
                plain(StatusCode::NO_CONTENT, "")
            }
            None => plain(StatusCode::NOT_FOUND, "unknown Mcp-Session-Id\n"),
        });
    }
    if req.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only POST is served\n");
        response
            .headers_mut()
            .insert("allow", HeaderValue::from_static("POST, DELETE"));
        return Ok(response);
    }
    let header_version = header(&req, VERSION_HEADER).map(str::to_owned);
    if let Some(v) = &header_version {
        if !SUPPORTED_VERSIONS.contains(&v.as_str()) {
            return Ok(rpc_error(
                StatusCode::BAD_REQUEST,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "unsupported MCP-Protocol-Version `{v}`; supported: {}",
                    SUPPORTED_VERSIONS.join(", ")
                ),
            ));
        }
    }
    let header_method = header(&req, METHOD_HEADER).map(str::to_owned);
    let header_name = header(&req, NAME_HEADER).map(str::to_owned);
    let body = match Limited::new(req.into_body(), front.max_body)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                None,
                jsonrpc::INVALID_REQUEST,
                &format!(
                    "Sentinel refused the message: longer than {} bytes",
                    front.max_body
                ),
            ))
        }
    };
    let line = body.to_vec();

    let session = match &header_session {
        Some(id) => match lock(&front.sessions).get(id) {
            Some(conn) => Some(Arc::clone(conn)),
            None => {
                return Ok(plain(
                    StatusCode::NOT_FOUND,
                    "unknown Mcp-Session-Id; initialize again\n",
                ))
            }
        },
        None => None,
    };
    let msg = match parse_strict(&line) {
        Ok(msg) => msg,
        Err(_) => {
            // The proxy writes the refusal (with the id when unambiguous).
            let conn = session.unwrap_or_else(|| Arc::clone(&front.shared));
            let step = conn.proxy.on_client_frame(Frame::Line(line));
            let reply = step.out.into_iter().find_map(|o| match o {
                Out::Client(bytes) => Some(bytes),
                Out::Server(_) => None,
            });
            return Ok(json(StatusCode::BAD_REQUEST, reply.unwrap_or_default()));
        }
    };
    let id = id_of(&msg);
    // The headers a router may act on must say what the body says.
    let body_version = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str);
    // 2026-07-28: the routing headers are required, and must say what the
    // body says (a value that cannot ride as is arrives base64-encoded).
    if body_version.is_some_and(|v| v >= "2026-07-28") {
        let needs_name = matches!(
            msg.method(),
            Some("tools/call" | "resources/read" | "prompts/get")
        );
        let missing = if msg.method().is_some() && header_method.is_none() {
            Some("Mcp-Method")
        } else if needs_name && header_name.is_none() {
            Some("Mcp-Name")
        } else {
            None
        };
        if let Some(h) = missing {
            return Ok(rpc_error(
                StatusCode::BAD_REQUEST,
                id.as_ref(),
                HEADER_MISMATCH,
                &format!("the {h} header is required for this request"),
            ));
        }
    }
    let header_name = match header_name.as_deref().map(decode_header_value) {
        Some(None) => {
            return Ok(rpc_error(
                StatusCode::BAD_REQUEST,
                id.as_ref(),
                HEADER_MISMATCH,
                "Mcp-Name is not valid =?base64?…?= text",
            ))
        }
        Some(Some(name)) => Some(name),
        None => None,
    };
    let mismatch = if let (Some(h), Some(b)) = (&header_version, body_version) {
        (h != b).then(|| format!("MCP-Protocol-Version `{h}` does not match the body's `{b}`"))
    } else {
        None
    }
    .or_else(|| {
        let m = header_method.as_deref()?;
        (Some(m) != msg.method())
            .then(|| format!("Mcp-Method `{m}` does not match the body's method"))
    })
    .or_else(|| {
        let n = header_name.as_deref()?;
        let body_name = msg
            .params()
            .and_then(|p| p.get("name").or_else(|| p.get("uri")))
            .and_then(Value::as_str);
        (Some(n) != body_name).then(|| format!("Mcp-Name `{n}` does not match the body"))
    });
    if let Some(why) = mismatch {
        let code = if body_version.is_some_and(|v| v >= "2026-07-28") {
            HEADER_MISMATCH
        } else {
            jsonrpc::INVALID_REQUEST
        };
        return Ok(rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), code, &why));
    }
    let is_initialize = msg.method() == Some("initialize");
    let mut new_session = None;
    let conn = match session {
        Some(conn) if !is_initialize => conn,
        _ if is_initialize && lock(&front.sessions).len() >= MAX_SESSIONS => {
            return Ok(rpc_error(
                StatusCode::SERVICE_UNAVAILABLE,
                id_of(&msg).as_ref(),
                jsonrpc::REFUSED,
                &format!("Sentinel: {MAX_SESSIONS} sessions are open; end one (DELETE) or wait for an idle one to expire"),
            ))
        }
        _ if is_initialize => {
            let id = crate::store::random_hex(16);
            let gone = Arc::downgrade(&front);
            let key = id.clone();
            let started = Conn::start((front.new_proxy)(), &front.target, false, move |_| {
                if let Some(front) = gone.upgrade() {
                    lock(&front.sessions).remove(&key);
                }
            });
            match started {
                Ok(conn) => {
                    lock(&front.sessions).insert(id.clone(), Arc::clone(&conn));
                    new_session = Some(id);
                    conn
                }
                Err(e) => {
                    return Ok(rpc_error(
                        StatusCode::BAD_GATEWAY,
                        id_of(&msg).as_ref(),
                        jsonrpc::REFUSED,
                        &format!("Sentinel could not start the MCP server: {e}"),
                    ))
                }
            }
        }
        _ => Arc::clone(&front.shared),
    };

    *lock(&conn.last_used) = std::time::Instant::now();
    let Some(id) = id else {
        // Notifications and responses: accepted, nothing to answer.
        let step = conn.proxy.on_client_frame(Frame::Line(line));
        conn.deliver(step).await;
        return Ok(plain(StatusCode::ACCEPTED, ""));
    };
    let key = id_key(&id);
    let (tx, mut rx) = mpsc::unbounded_channel();
    {
        let mut waiters = lock(&conn.waiters);
        if waiters.contains_key(&key) {
            return Ok(rpc_error(
                StatusCode::BAD_REQUEST,
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "Sentinel refused the request: a request with this id is still pending",
            ));
        }
        waiters.insert(key.clone(), tx);
    }
    let token = msg
        .params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("progressToken"))
        .map(id_key);
    if let Some(token) = &token {
        lock(&conn.progress).insert(token.clone(), key.clone());
    }
    let step = conn.proxy.on_client_frame(Frame::Line(line));
    conn.deliver(step).await;
    if let Some(token) = token {
        // Forgotten once the answer is in (the stream may still be open).
        let conn = Arc::clone(&conn);
        let key = key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(conn.proxy.config().request_timeout).await;
            lock(&conn.progress).retain(|t, k| !(t == &token && k == &key));
        });
    }
    let Some(first) = rx.recv().await else {
        return Ok(rpc_error(
            StatusCode::BAD_GATEWAY,
            Some(&id),
            jsonrpc::REFUSED,
            "Sentinel: the MCP server went away",
        ));
    };
    let mut response = if first.last {
        json(StatusCode::OK, first.line)
    } else {
        let body = SseBody {
            first: Some(first),
            rx,
            done: false,
        };
        let mut response = Response::new(body.boxed_unsync());
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        response
    };
    if let Some(session) = new_session {
        if let Ok(value) = HeaderValue::from_str(&session) {
            response.headers_mut().insert(SESSION_HEADER, value);
        }
    }
    Ok(response)
}

/// Serves `command` over Streamable HTTP at `config.listen` until the
/// shared (session-less) server exits; `on_listening` is told the bound
/// address. Each legacy session gets a server process of its own, built
/// with `new_proxy`.
pub async fn run(
    new_proxy: ProxyFactory,
    target: &Target,
    config: HttpConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<ExitStatus, HttpError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| HttpError::Bind {
            addr: config.listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: config.listen,
        source,
    })?;
    let port = bound.port();
    let mut origins = vec![
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::1]:{port}"),
    ];
    origins.extend(config.extra_origins);

    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel();
    let shared_proxy = new_proxy();
    let max_body = shared_proxy.config().max_line;
    let shared = Conn::start(shared_proxy, target, true, move |status| {
        let _ = exited_tx.send(status);
    })?;
    let front = Arc::new(Front {
        target: target.clone(),
        new_proxy,
        shared,
        sessions: Mutex::new(HashMap::new()),
        origins,
        max_body,
        token: config.token,
    });
    on_listening(bound);
    // Idle sessions are ended (their server's stdin closed).
    {
        let front = Arc::downgrade(&front);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                let Some(front) = front.upgrade() else { break };
                let idle: Vec<Arc<Conn>> = {
                    let mut sessions = lock(&front.sessions);
                    let expired: Vec<String> = sessions
                        .iter()
                        .filter(|(_, c)| lock(&c.last_used).elapsed() >= SESSION_IDLE)
                        .map(|(k, _)| k.clone())
                        .collect();
                    expired.iter().filter_map(|k| sessions.remove(k)).collect()
                };
                for conn in idle {
                    let _ = conn.to_server.send(Write::Stop).await;
                }
            }
        });
    }

    let mut exited = std::pin::pin!(exited_rx);
    let status = loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let front = Arc::clone(&front);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(Arc::clone(&front), req));
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
            status = &mut exited => break status.ok().flatten(),
        }
    };
    lock(&front.sessions).clear();
    status.ok_or_else(|| {
        HttpError::Downstream(StdioError::Wait(std::io::Error::other(
            "the MCP server's exit status was lost",
        )))
    })
}
