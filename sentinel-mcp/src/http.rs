//! The Streamable HTTP front (`--listen 127.0.0.1:PORT` or
//! `--listen unix:PATH`) to a stdio or HTTP server.
//!
//! Each POST carries one JSON-RPC message and goes through the same
//! [`Proxy`] as stdio. A request's answer comes back as `application/json`
//! when it is the first thing ready, else as an SSE stream that carries the
//! server's requests and notifications until the answer. Clients are
//! authenticated by the kernel (a Unix socket: SO_PEERCRED, only the
//! allowed UIDs) or by a bearer token from a root-readable file. Before any
//! body is read: an `Origin` that is not this listener's (or an
//! `--allow-origin`) is refused with 403 (DNS rebinding); an unknown
//! `MCP-Protocol-Version` with 400; and the 2026-07-28 routing headers
//! (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`) are
//! required and must agree with the body (-32020 otherwise), so a gateway
//! routing on headers sees the same call the policy saw.
//!
//! In front of an HTTP upstream, a client's `Authorization` is passed on
//! (unless the front consumes it as its own token, or the operator set an
//! upstream token), an upstream 401 is answered as a 401 with the
//! upstream's challenge pointing at this front's own protected-resource
//! metadata, which the front serves from the upstream's with `resource`
//! set to this front: so an OAuth 2.1 client discovers the authorization
//! server through the proxy.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
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
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::mpsc;

use crate::framing::Frame;
use crate::jsonrpc::{self, id_key, parse_strict, Shape};
use crate::proxy::{Out, Proxy, Step, META_PROTOCOL_VERSION};
use crate::stdio::{spawn_downstream, wait, Downstream, StdioError, Target, Write};
use crate::upstream::{Challenges, HttpClient, UpstreamConfig};

pub use crate::headers::{decode_header_value, encode_header_value};

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

/// Where the HTTP front listens.
#[derive(Debug, Clone)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A Unix socket; clients are identified by SO_PEERCRED.
    Unix(PathBuf),
}

impl std::str::FromStr for Listen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Listen::Unix(PathBuf::from(path))),
            Some(_) => Err("`unix:` needs a socket path, e.g. unix:/run/user/1000/mcp.sock".into()),
            None => s
                .parse()
                .map(Listen::Tcp)
                .map_err(|e| format!("`{s}` is neither ADDR:PORT nor unix:PATH: {e}")),
        }
    }
}

/// How the HTTP front listens.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: Listen,
    /// Origins accepted besides the listener's own.
    pub extra_origins: Vec<String>,
    /// When set, every request must carry `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// On a Unix socket: the UIDs whose processes may connect.
    pub allow_uids: Vec<u32>,
}

/// JSON-RPC (2026-07-28 Streamable HTTP): the routing headers are missing,
/// malformed or disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;

/// Errors of the HTTP front.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}; pick a free loopback port or another socket path")]
    Bind {
        addr: String,
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
    /// An HTTP upstream's 401 challenges, by request id key.
    challenges: Option<Challenges>,
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
    /// `Host` values accepted as this front's own (for its public URL).
    hosts: Vec<String>,
    max_body: usize,
    token: Option<String>,
    /// The HTTP upstream, if any (its protected-resource metadata is
    /// served through the front).
    upstream: Option<(Arc<UpstreamConfig>, HttpClient)>,
    /// Whether a client's `Authorization` goes on to the upstream.
    pass_authorization: bool,
    /// The `resource_metadata` URL of the upstream's last 401 challenge
    /// (same origin as the upstream only).
    resource_metadata: Mutex<Option<String>>,
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
            challenges,
        } = spawn_downstream(target, max_line, !shared)?;
        let conn = Arc::new(Conn {
            proxy: Arc::new(proxy),
            to_server,
            waiters: Mutex::new(HashMap::new()),
            shared,
            progress: Mutex::new(HashMap::new()),
            last_used: Mutex::new(std::time::Instant::now()),
            challenges,
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
        self.deliver_as(step, None).await;
    }

    /// Delivers a step taken for a client that sent `authorization`: the
    /// lines for the server go with it.
    async fn deliver_as(self: &Arc<Self>, step: Step, authorization: Option<HeaderValue>) {
        for timer in step.timers {
            let front = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(timer.after).await;
                let out = front.proxy.on_timeout(&timer).out;
                front.deliver_out(out, None).await;
            });
        }
        self.deliver_out(step.out, authorization).await;
    }

    async fn deliver_out(&self, out: Vec<Out>, authorization: Option<HeaderValue>) {
        for out in out {
            match out {
                Out::Server(line) => {
                    let write = match &authorization {
                        Some(auth) => Write::Authorized(line, auth.clone()),
                        None => Write::Line(line),
                    };
                    let _ = self.to_server.send(write).await;
                }
                Out::Client(line) => self.route(line),
            }
        }
    }

    /// The challenge of an upstream 401 answering request `key`, if any.
    fn take_challenge(&self, key: &str) -> Option<String> {
        self.challenges.as_ref().and_then(|c| c.take(key))
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

/// This front's base URL as the client addresses it (its `Host`, when it
/// is one of the front's own).
fn public_base(front: &Front, host: Option<&str>) -> String {
    let host = host
        .filter(|h| front.hosts.iter().any(|own| own.eq_ignore_ascii_case(h)))
        .or(front.hosts.first().map(String::as_str))
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// Where this front serves the upstream's protected-resource metadata.
const RESOURCE_METADATA_PATH: &str = "/.well-known/oauth-protected-resource/mcp";

/// The `resource_metadata` parameter of a `WWW-Authenticate` challenge.
fn challenge_param<'a>(challenge: &'a str, name: &str) -> Option<&'a str> {
    let at = challenge.find(&format!("{name}=\""))? + name.len() + 2;
    let rest = &challenge[at..];
    Some(&rest[..rest.find('"')?])
}

/// The upstream's challenge with `resource_metadata` pointing at this
/// front (added when the upstream gave none).
fn rewrite_challenge(challenge: &str, metadata_url: &str) -> String {
    match challenge_param(challenge, "resource_metadata") {
        Some(old) => challenge.replacen(old, metadata_url, 1),
        None if challenge.trim().is_empty() => {
            format!("Bearer resource_metadata=\"{metadata_url}\"")
        }
        None => format!("{challenge}, resource_metadata=\"{metadata_url}\""),
    }
}

fn same_origin(a: &hyper::Uri, b: &str) -> bool {
    b.parse::<hyper::Uri>()
        .is_ok_and(|b| a.scheme_str() == b.scheme_str() && a.authority() == b.authority())
}

/// Serves the upstream's protected-resource metadata (RFC 9728) with
/// `resource` set to this front's MCP URL, which is what an OAuth client
/// connected to the front checks it against.
async fn protected_resource(front: &Front, host: Option<&str>) -> Response<HttpBody> {
    let Some((config, client)) = &front.upstream else {
        return plain(
            StatusCode::NOT_FOUND,
            "no protected-resource metadata here\n",
        );
    };
    let url = &config.url;
    let origin = format!(
        "{}://{}",
        url.scheme_str().unwrap_or("http"),
        url.authority().map_or("", |a| a.as_str())
    );
    let path = url.path().trim_end_matches('/');
    let mut candidates: Vec<String> = lock(&front.resource_metadata).iter().cloned().collect();
    candidates.push(format!(
        "{origin}/.well-known/oauth-protected-resource{path}"
    ));
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    for candidate in candidates {
        let Ok(uri) = candidate.parse::<hyper::Uri>() else {
            continue;
        };
        let Ok(request) = Request::get(uri)
            .header("accept", "application/json")
            .body(Full::new(Bytes::new()))
        else {
            continue;
        };
        let Ok(response) = client.request(request).await else {
            continue;
        };
        if !response.status().is_success() {
            continue;
        }
        let Ok(body) = Limited::new(response.into_body(), 64 * 1024)
            .collect()
            .await
        else {
            continue;
        };
        let Ok(Value::Object(mut metadata)) = serde_json::from_slice(&body.to_bytes()) else {
            continue;
        };
        let base = public_base(front, host);
        metadata.insert("resource".into(), Value::String(format!("{base}/mcp")));
        let mut response = json(
            StatusCode::OK,
            Value::Object(metadata).to_string().into_bytes(),
        );
        response
            .headers_mut()
            .insert("cache-control", HeaderValue::from_static("no-store"));
        return response;
    }
    plain(
        StatusCode::NOT_FOUND,
        "the upstream publishes no protected-resource metadata\n",
    )
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
    let host = header(&req, "host").map(str::to_owned);
    if req.method() == Method::GET
        && matches!(
            req.uri().path(),
            RESOURCE_METADATA_PATH | "/.well-known/oauth-protected-resource"
        )
    {
        return Ok(protected_resource(&front, host.as_deref()).await);
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
    // Mcp-Param-* headers, lowercased; one that is not visible ASCII is
    // malformed (`None`).
    let param_headers: Vec<(String, Option<String>)> = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with(crate::headers::PARAM_PREFIX))
        .map(|(name, value)| {
            let text = value
                .to_str()
                .ok()
                .filter(|t| t.bytes().all(|b| (0x20..=0x7e).contains(&b) || b == b'\t'))
                .map(str::to_owned);
            (name.as_str().to_string(), text)
        })
        .collect();
    let client_authorization = if front.pass_authorization {
        req.headers().get(hyper::header::AUTHORIZATION).cloned()
    } else {
        None
    };
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
    let modern = body_version.is_some_and(|v| v >= "2026-07-28");
    let header_mismatch = |why: String| {
        let code = if modern {
            HEADER_MISMATCH
        } else {
            jsonrpc::INVALID_REQUEST
        };
        Ok(rpc_error(StatusCode::BAD_REQUEST, id.as_ref(), code, &why))
    };
    // 2026-07-28: the routing headers are required, and must say what the
    // body says (a value that cannot ride as is arrives base64-encoded).
    if modern {
        let needs_name = msg.method().and_then(crate::headers::name_field).is_some();
        let missing = if header_version.is_none() {
            Some("MCP-Protocol-Version")
        } else if msg.method().is_some() && header_method.is_none() {
            Some("Mcp-Method")
        } else if needs_name && header_name.is_none() {
            Some("Mcp-Name")
        } else {
            None
        };
        if let Some(h) = missing {
            return header_mismatch(format!("the {h} header is required for this request"));
        }
    }
    let header_name = match header_name.as_deref().map(decode_header_value) {
        Some(None) => return header_mismatch("Mcp-Name is not valid =?base64?…?= text".into()),
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
        let field = msg.method().and_then(crate::headers::name_field);
        let body_name = field
            .and_then(|f| msg.params().and_then(|p| p.get(f)))
            .and_then(Value::as_str);
        (Some(n) != body_name).then(|| format!("Mcp-Name `{n}` does not match the body"))
    });
    if let Some(why) = mismatch {
        return header_mismatch(why);
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
    // Mcp-Param-* must match the arguments, per the input schema of the
    // tool as this session saw it listed.
    if modern || !param_headers.is_empty() {
        if let Some(malformed) = param_headers.iter().find(|(_, v)| v.is_none()) {
            return header_mismatch(format!(
                "the {} header carries characters a header may not",
                malformed.0
            ));
        }
        if msg.method() == Some("tools/call") {
            let params = msg.params();
            let tool = params
                .and_then(|p| p.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let arguments = params
                .and_then(|p| p.get("arguments"))
                .cloned()
                .unwrap_or(Value::Null);
            let sent: Vec<(String, String)> = param_headers
                .iter()
                .filter_map(|(n, v)| Some((n.clone(), v.clone()?)))
                .collect();
            if let Err(why) = crate::headers::check_param_headers(
                conn.proxy.tool_schema(tool).as_ref(),
                &arguments,
                &sent,
            ) {
                return header_mismatch(why);
            }
        } else if let Some((name, _)) = param_headers.first() {
            return header_mismatch(format!("{name} is only for tools/call"));
        }
    }

    *lock(&conn.last_used) = std::time::Instant::now();
    let Some(id) = id else {
        // Notifications and responses: accepted, nothing to answer.
        let step = conn.proxy.on_client_frame(Frame::Line(line));
        conn.deliver_as(step, client_authorization).await;
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
    conn.deliver_as(step, client_authorization).await;
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
    let challenge = conn.take_challenge(&key);
    if let Some(session) = &new_session {
        // A session whose `initialize` failed (an upstream that wants a
        // token, a server error) is not kept: an unauthorized client must
        // not hold one of the few session slots until it idles out.
        let failed = challenge.is_some()
            || serde_json::from_slice::<Value>(&first.line)
                .map_or(true, |v| v.get("result").is_none());
        if failed && first.last {
            let ended = lock(&front.sessions).remove(session);
            if let Some(conn) = ended {
                let _ = conn.to_server.send(Write::Stop).await;
            }
            new_session = None;
        }
    }
    if let Some(challenge) = challenge {
        // The upstream wants a token: a real 401, whose challenge points
        // at this front's copy of the upstream's resource metadata.
        if let (Some(url), Some((config, _))) = (
            challenge_param(&challenge, "resource_metadata"),
            &front.upstream,
        ) {
            if same_origin(&config.url, url) {
                *lock(&front.resource_metadata) = Some(url.to_string());
            }
        }
        let metadata_url = format!(
            "{}{RESOURCE_METADATA_PATH}",
            public_base(&front, host.as_deref())
        );
        let mut response = json(StatusCode::UNAUTHORIZED, first.line);
        if let Ok(value) = HeaderValue::from_str(&rewrite_challenge(&challenge, &metadata_url)) {
            response.headers_mut().insert("www-authenticate", value);
        }
        return Ok(response);
    }
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

/// A listening socket of either kind.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Vec<u32>),
}

fn serve<I>(front: &Arc<Front>, io: I)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let front = Arc::clone(front);
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |req| handle(Arc::clone(&front), req));
        let io = hyper_util::rt::TokioIo::new(io);
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await;
    });
}

/// A Unix-socket client the kernel says is not one of the allowed UIDs:
/// recorded, answered 403 whatever it asks, and the connection closed.
async fn refuse_peer(front: &Arc<Front>, stream: tokio::net::UnixStream, uid: Option<u32>) {
    let who = uid.map_or_else(
        || "an unidentified process".to_string(),
        |u| format!("UID {u}"),
    );
    front.shared.proxy.refused_client(&format!(
        "{who} connected to the MCP proxy's Unix socket and is not allowed (--allow-uid)"
    ));
    let text = format!("{who} may not use this MCP proxy socket\n");
    tokio::spawn(async move {
        let service = hyper::service::service_fn(move |_req| {
            let text = text.clone();
            async move { Ok::<_, Infallible>(plain(StatusCode::FORBIDDEN, &text)) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .keep_alive(false)
            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
            .await;
    });
}

/// Binds the front's socket. A Unix socket replaces a stale socket file
/// (never any other kind of file) and is made connectable by every local
/// user: who may use it is decided per connection by SO_PEERCRED.
fn bind(config: &HttpConfig) -> Result<(Listener, Vec<String>, String), HttpError> {
    match &config.listen {
        Listen::Tcp(addr) => {
            let std_listener = std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|source| HttpError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            let listener =
                TcpListener::from_std(std_listener).map_err(|source| HttpError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            let bound = listener.local_addr().map_err(|source| HttpError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            let port = bound.port();
            let mut hosts = vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ];
            if !bound.ip().is_loopback() {
                hosts.insert(0, bound.to_string());
            }
            Ok((
                Listener::Tcp(listener),
                hosts,
                format!("http://{bound}/mcp"),
            ))
        }
        Listen::Unix(path) => {
            use std::os::unix::fs::{FileTypeExt, PermissionsExt};
            let bind_error = |source| HttpError::Bind {
                addr: format!("unix:{}", path.display()),
                source,
            };
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if !meta.file_type().is_socket() {
                    return Err(bind_error(std::io::Error::other(
                        "a file that is not a socket is in the way",
                    )));
                }
                std::fs::remove_file(path).map_err(bind_error)?;
            }
            let listener = UnixListener::bind(path).map_err(bind_error)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
                .map_err(bind_error)?;
            Ok((
                Listener::Unix(listener, config.allow_uids.clone()),
                vec!["localhost".to_string()],
                format!("unix:{} (HTTP, POST /mcp)", path.display()),
            ))
        }
    }
}

/// Serves the server at `target` over Streamable HTTP at `config.listen`
/// until the shared (session-less) server exits; `on_listening` is told
/// where. Each legacy session gets a server process (or upstream link) of
/// its own, built with `new_proxy`.
pub async fn run(
    new_proxy: ProxyFactory,
    target: &Target,
    config: HttpConfig,
    on_listening: impl FnOnce(&str),
) -> Result<ExitStatus, HttpError> {
    let (listener, hosts, shown) = bind(&config)?;
    let mut origins: Vec<String> = hosts.iter().map(|h| format!("http://{h}")).collect();
    origins.extend(config.extra_origins.iter().cloned());

    let (exited_tx, exited_rx) = tokio::sync::oneshot::channel();
    let shared_proxy = new_proxy();
    let max_body = shared_proxy.config().max_line;
    let shared = Conn::start(shared_proxy, target, true, move |status| {
        let _ = exited_tx.send(status);
    })?;
    let upstream = match target {
        Target::Http(upstream) => Some((Arc::clone(upstream), crate::upstream::client(upstream))),
        Target::Command(_) => None,
    };
    let front = Arc::new(Front {
        target: target.clone(),
        new_proxy,
        shared,
        sessions: Mutex::new(HashMap::new()),
        origins,
        hosts,
        max_body,
        pass_authorization: config.token.is_none()
            && upstream
                .as_ref()
                .is_some_and(|(u, _)| u.pass_client_authorization),
        token: config.token,
        upstream,
        resource_metadata: Mutex::new(None),
    });
    on_listening(&shown);
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
            accepted = accept(&listener) => match accepted {
                Accepted::Tcp(stream) => serve(&front, stream),
                Accepted::Unix(stream, allowed) => {
                    let uid = stream.peer_cred().ok().map(|c| c.uid());
                    match uid {
                        Some(uid) if allowed.contains(&uid) => serve(&front, stream),
                        _ => refuse_peer(&front, stream, uid).await,
                    }
                }
                Accepted::Failed => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            status = &mut exited => break status.ok().flatten(),
        }
    };
    if let Listen::Unix(path) = &config.listen {
        let _ = std::fs::remove_file(path);
    }
    lock(&front.sessions).clear();
    status.ok_or_else(|| {
        HttpError::Downstream(StdioError::Wait(std::io::Error::other(
            "the MCP server's exit status was lost",
        )))
    })
}

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream, Vec<u32>),
    Failed,
}

async fn accept(listener: &Listener) -> Accepted {
    match listener {
        Listener::Tcp(l) => l
            .accept()
            .await
            .map_or(Accepted::Failed, |(s, _)| Accepted::Tcp(s)),
        Listener::Unix(l, allowed) => l.accept().await.map_or(Accepted::Failed, |(s, _)| {
            Accepted::Unix(s, allowed.clone())
        }),
    }
}
