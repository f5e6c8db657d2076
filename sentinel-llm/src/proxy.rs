//! One request through the proxy, top to bottom:
//!
//! virtual key → vault entry (401 if unknown or expired) → endpoint and
//! path allowed (404/403) → body read (bounded) → verdict from the one
//! engine (`kind = "mcp"`, `server = "llm"`, `tool` = the endpoint; modes,
//! quarantine and lockdown apply: 403) → DLP scan of the prompt with the
//! MCP proxy's secret scanner (block: 403 and never forwarded, or redact)
//! → the real key put in → upstream → the answer streamed back with the
//! real key scrubbed and scanned for injection → one `llm_call` audit
//! record per request.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode, Uri};
use sentinel_audit::{Body as Record, Event, ProcessInfo};
use sentinel_mcp::{AuditSink, Evaluate, FindingAction, Scanner};
use sentinel_policy::{Action, Decision, Object, Verdict};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::api::{self, KeyStyle};
use crate::upstream::Connector;
use crate::vault::{Vault, VaultKey};

/// The body type the proxy answers with.
pub type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// How the proxy is set up.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where requests go when the key names no upstream of its own.
    pub upstream: Uri,
    /// The agent for keys that name none.
    pub agent: Option<String>,
    /// Secrets in a request: `Block` (403, never forwarded), `Redact`
    /// (forwarded with `[REDACTED:kind]`), otherwise forwarded and alerted.
    pub secrets: FindingAction,
    /// Injection markers in a non-streamed answer: `Block` (502), else
    /// forwarded and alerted.
    pub injection: FindingAction,
    /// Largest request body accepted.
    pub max_request: usize,
    /// Largest non-streamed answer buffered for scanning.
    pub max_response: usize,
}

/// The engine and the audit chain the proxy answers to: in-process
/// (standalone) or the daemon's.
pub struct Gate {
    pub engine: Box<dyn Evaluate>,
    pub audit: Box<dyn AuditSink>,
}

/// The proxy's shared state.
pub struct LlmProxy {
    config: ProxyConfig,
    vault: Vault,
    gate: Gate,
    scanner: Scanner,
    connector: Connector,
    process: ProcessInfo,
}

/// What one request is, for its audit record.
#[derive(Debug, Clone, Default)]
struct Call {
    agent: Option<String>,
    upstream: String,
    endpoint: String,
    model: Option<String>,
    stream: bool,
    request_bytes: u64,
    findings: Vec<String>,
}

/// How a request ended.
struct Ending {
    status: StatusCode,
    outcome: &'static str,
    response_bytes: u64,
    verdict: Option<Verdict>,
}

impl LlmProxy {
    pub fn new(config: ProxyConfig, vault: Vault, gate: Gate, connector: Connector) -> Self {
        let exe = std::fs::read_link("/proc/self/exe")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let process = ProcessInfo {
            pid: std::process::id(),
            ppid: std::os::unix::process::parent_id(),
            // SAFETY: getuid has no preconditions.
            uid: unsafe { libc::getuid() },
            comm: "sentinel".into(),
            exe,
            agent: None,
        };
        LlmProxy {
            config,
            vault,
            gate,
            scanner: Scanner::new(),
            connector,
            process,
        }
    }

    /// Handles one request; never fails (every refusal is an answer).
    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<ProxyBody> {
        let mut call = Call {
            upstream: host_of(&self.config.upstream),
            agent: self.config.agent.clone(),
            endpoint: request.uri().path().to_string(),
            ..Call::default()
        };
        let (response, ending) = self.clone().serve(request, &mut call).await;
        if let Some(ending) = ending {
            self.record(&call, ending);
        }
        response
    }

    async fn serve(
        self: Arc<Self>,
        request: Request<Incoming>,
        call: &mut Call,
    ) -> (Response<ProxyBody>, Option<Ending>) {
        let (parts, body) = request.into_parts();
        // 1. The key.
        let Some((presented, style)) = api::presented_key(&parts.headers) else {
            return self.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no API key: send the virtual key Sentinel gave you as the API key",
                None,
            );
        };
        let Some(key) = self.vault.lookup(&presented).cloned() else {
            return self.refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown API key",
                None,
            );
        };
        if key.agent.is_some() {
            call.agent.clone_from(&key.agent);
        }
        let upstream = key
            .upstream
            .clone()
            .unwrap_or_else(|| self.config.upstream.clone());
        call.upstream = host_of(&upstream);
        if key.expired(OffsetDateTime::now_utc()) {
            return self.refuse(
                StatusCode::UNAUTHORIZED,
                "key-expired",
                "this virtual key has expired; ask the operator for a new one",
                None,
            );
        }
        // 2. The endpoint.
        let path = parts.uri.path().to_string();
        let Some(endpoint) = api::endpoint(&parts.method, &path) else {
            return self.refuse(
                StatusCode::NOT_FOUND,
                "not-proxied",
                &format!(
                    "{} {path} is not an API the Sentinel LLM proxy forwards",
                    parts.method
                ),
                None,
            );
        };
        call.endpoint = endpoint.name.to_string();
        if !key.allows_path(&path) {
            return self.refuse(
                StatusCode::FORBIDDEN,
                "path-not-allowed",
                &format!("this virtual key may not call {path}"),
                None,
            );
        }
        // 3. The body.
        let bytes = match Limited::new(body, self.config.max_request).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return self.refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    &format!(
                        "request bodies are limited to {} bytes",
                        self.config.max_request
                    ),
                    None,
                );
            }
        };
        call.request_bytes = bytes.len() as u64;
        let mut json = Value::Null;
        if endpoint.has_body {
            json = match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    return self.refuse(
                        StatusCode::BAD_REQUEST,
                        "bad-request",
                        &format!("the request body is not JSON: {e}"),
                        None,
                    );
                }
            };
            (call.model, call.stream) = api::model_and_stream(&json);
        }
        // 4. The verdict: the one engine, with modes and quarantine.
        let verdict = self.verdict(call).await;
        if matches!(verdict.action, Decision::Deny | Decision::Ask) {
            let message = format!("refused by Sentinel: {}", verdict.reason);
            return self.refuse(StatusCode::FORBIDDEN, "refused", &message, Some(verdict));
        }
        // 5. DLP on the prompt.
        let mut outcome = "forwarded";
        let mut body = bytes;
        let secrets = self.scanner.findings(&json).secrets;
        if !secrets.is_empty() {
            call.findings = secrets.iter().map(|s| s.to_string()).collect();
            let kinds = secrets.join(", ");
            match self.config.secrets {
                FindingAction::Block => {
                    self.alert(
                        "warning",
                        "llm-secret",
                        format!(
                            "{} sent a secret ({kinds}) to {} {}: refused, not forwarded",
                            agent_name(call),
                            call.upstream,
                            call.endpoint
                        ),
                    );
                    let message = format!("refused by Sentinel: the request contains a secret ({kinds}); remove it and try again");
                    return self.refuse(
                        StatusCode::FORBIDDEN,
                        "blocked-secret",
                        &message,
                        Some(verdict),
                    );
                }
                FindingAction::Redact => {
                    self.scanner.redact_value(&mut json);
                    body = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
                    outcome = "redacted";
                    self.alert(
                        "warning",
                        "llm-secret",
                        format!(
                            "{} sent a secret ({kinds}) to {} {}: redacted before forwarding",
                            agent_name(call),
                            call.upstream,
                            call.endpoint
                        ),
                    );
                }
                _ => {
                    self.alert(
                        "critical",
                        "llm-secret",
                        format!(
                            "{} sent a secret ({kinds}) to {} {}: forwarded (flag only)",
                            agent_name(call),
                            call.upstream,
                            call.endpoint
                        ),
                    );
                }
            }
        }
        // 6. Upstream, with the real key.
        let target = join_uri(&upstream, &parts.uri);
        let mut forward = Request::builder().method(parts.method.clone()).uri(target);
        if let Some(headers) = forward.headers_mut() {
            copy_request_headers(&parts.headers, headers);
            put_key(headers, &key, style);
        }
        let forward = match forward.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => {
                return self.refuse(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    &format!("cannot forward this request: {e}"),
                    Some(verdict),
                )
            }
        };
        let answer = match self.connector.send(forward).await {
            Ok(answer) => answer,
            Err(e) => {
                return self.refuse(
                    StatusCode::BAD_GATEWAY,
                    "upstream-error",
                    &format!("the upstream {} failed: {e}", call.upstream),
                    Some(verdict),
                );
            }
        };
        // 7. The answer.
        let (head, incoming) = answer.into_parts();
        let streaming = head
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        let mut builder = Response::builder().status(head.status);
        if let Some(headers) = builder.headers_mut() {
            copy_response_headers(&head.headers, headers);
        }
        if streaming {
            let tracked = Tracked {
                inner: incoming,
                bytes: 0,
                tail: Vec::new(),
                scrub: scrub_pairs(&self.vault),
                done: None,
            };
            let proxy = self.clone();
            let call = call.clone();
            let status = head.status;
            let verdict = verdict.clone();
            let mut tracked = tracked;
            tracked.done = Some(Box::new(move |bytes, tail, complete| {
                let found = proxy.scanner.injection_in(&String::from_utf8_lossy(&tail));
                let mut call = call;
                if !found.is_empty() {
                    proxy.alert(
                        "warning",
                        "llm-injection",
                        format!(
                            "the streamed answer to {} from {} {} carries injection markers ({})",
                            agent_name(&call),
                            call.upstream,
                            call.endpoint,
                            found.join(", ")
                        ),
                    );
                    call.findings.extend(found.iter().map(|s| s.to_string()));
                }
                let outcome = if complete { outcome } else { "stream-cut" };
                proxy.record(
                    &call,
                    Ending {
                        status,
                        outcome,
                        response_bytes: bytes,
                        verdict: Some(verdict),
                    },
                );
            }));
            let body = tracked.boxed_unsync();
            let response = builder.body(body).unwrap_or_else(|_| {
                plain(
                    StatusCode::BAD_GATEWAY,
                    &api::error_body("upstream-error", "bad upstream headers"),
                )
            });
            return (response, None);
        }
        let full = match Limited::new(incoming, self.config.max_response)
            .collect()
            .await
        {
            Ok(c) => c.to_bytes(),
            Err(e) => {
                return self.refuse(
                    StatusCode::BAD_GATEWAY,
                    "upstream-error",
                    &format!("the upstream answer could not be read: {e}"),
                    Some(verdict),
                );
            }
        };
        let full = Bytes::from(scrub(&full, &scrub_pairs(&self.vault)));
        let text = String::from_utf8_lossy(&full);
        let injection = match serde_json::from_str::<Value>(&text) {
            Ok(v) => self.scanner.findings(&v).injection,
            Err(_) => self.scanner.injection_in(&text),
        };
        if !injection.is_empty() {
            let kinds = injection.join(", ");
            call.findings
                .extend(injection.iter().map(|s| s.to_string()));
            if self.config.injection == FindingAction::Block {
                self.alert(
                    "warning",
                    "llm-injection",
                    format!(
                        "the answer to {} from {} {} carries injection markers ({kinds}): withheld",
                        agent_name(call),
                        call.upstream,
                        call.endpoint
                    ),
                );
                return self.refuse(StatusCode::BAD_GATEWAY, "blocked-injection", &format!("Sentinel withheld the answer: it carries prompt-injection markers ({kinds})"), Some(verdict));
            }
            self.alert(
                "warning",
                "llm-injection",
                format!(
                    "the answer to {} from {} {} carries injection markers ({kinds})",
                    agent_name(call),
                    call.upstream,
                    call.endpoint
                ),
            );
        }
        let ending = Ending {
            status: head.status,
            outcome,
            response_bytes: full.len() as u64,
            verdict: Some(verdict),
        };
        let response = builder
            .body(
                Full::new(full)
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap_or_else(|_| {
                plain(
                    StatusCode::BAD_GATEWAY,
                    &api::error_body("upstream-error", "bad upstream headers"),
                )
            });
        (response, Some(ending))
    }

    async fn verdict(self: &Arc<Self>, call: &Call) -> Verdict {
        let action = Action {
            agent: call.agent.clone(),
            uid: self.process.uid,
            pid: self.process.pid,
            object: Object::Mcp {
                server: "llm".into(),
                tool: call.endpoint.clone(),
                args: json!({"model": call.model, "upstream": call.upstream, "stream": call.stream}),
            },
        };
        let proxy = self.clone();
        tokio::task::spawn_blocking(move || proxy.gate.engine.evaluate(&action, SystemTime::now()))
            .await
            .unwrap_or_else(|e| Verdict {
                action: Decision::Deny,
                rule: None,
                reason: format!("the verdict could not be taken ({e}); failing closed"),
                risk: 100,
                enforced: true,
                alert: true,
                factors: Vec::new(),
            })
    }

    fn refuse(
        &self,
        status: StatusCode,
        outcome: &'static str,
        message: &str,
        verdict: Option<Verdict>,
    ) -> (Response<ProxyBody>, Option<Ending>) {
        let body = api::error_body(outcome, message);
        let bytes = body.to_string().len() as u64;
        let verdict = verdict.map(|mut v| {
            v.enforced = true;
            v
        });
        (
            plain(status, &body),
            Some(Ending {
                status,
                outcome,
                response_bytes: bytes,
                verdict,
            }),
        )
    }

    fn record(&self, call: &Call, ending: Ending) {
        let mut process = self.process.clone();
        process.agent.clone_from(&call.agent);
        let event = Event {
            seq: 0,
            ts: OffsetDateTime::now_utc(),
            body: Record::LlmCall {
                process,
                upstream: call.upstream.clone(),
                endpoint: call.endpoint.clone(),
                model: call.model.clone(),
                stream: call.stream,
                request_bytes: call.request_bytes,
                response_bytes: ending.response_bytes,
                status: ending.status.as_u16(),
                outcome: ending.outcome.to_string(),
                findings: call.findings.clone(),
            },
            verdict: ending.verdict,
        };
        if let Err(e) = self.gate.audit.append(event) {
            eprintln!("sentinel llm-proxy: the audit record could not be written: {e}");
        }
    }

    fn alert(&self, severity: &str, category: &str, reason: String) {
        let event = Event {
            seq: 0,
            ts: OffsetDateTime::now_utc(),
            body: Record::Alert {
                severity: severity.into(),
                category: category.into(),
                reason,
                related: Vec::new(),
            },
            verdict: None,
        };
        if let Err(e) = self.gate.audit.append(event) {
            eprintln!("sentinel llm-proxy: an alert could not be written: {e}");
        }
    }

    /// Waits until every record so far is committed.
    pub fn flush(&self) {
        self.gate.audit.flush();
    }
}

fn agent_name(call: &Call) -> String {
    call.agent
        .as_deref()
        .map_or("an unnamed agent".to_string(), |a| format!("agent {a}"))
}

fn host_of(uri: &Uri) -> String {
    uri.authority().map_or(String::new(), |a| a.to_string())
}

fn plain(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// `base` (scheme, authority, optional path prefix) + the request's path
/// and query.
fn join_uri(base: &Uri, request: &Uri) -> String {
    let prefix = base.path().trim_end_matches('/');
    let path_and_query = request.path_and_query().map_or("/", |p| p.as_str());
    format!(
        "{}://{}{prefix}{path_and_query}",
        base.scheme_str().unwrap_or("http"),
        base.authority().map_or("", |a| a.as_str())
    )
}

/// Connection-level headers, and those the proxy sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        let dropped = hop_by_hop(name)
            || name == hyper::header::AUTHORIZATION
            || name.as_str() == api::X_API_KEY
            // Answers are scanned and scrubbed: ask for them uncompressed.
            || name == hyper::header::ACCEPT_ENCODING;
        if !dropped {
            to.append(name.clone(), value.clone());
        }
    }
    to.insert(
        hyper::header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
}

fn copy_response_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !hop_by_hop(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn put_key(headers: &mut HeaderMap, key: &VaultKey, style: KeyStyle) {
    match style {
        KeyStyle::Bearer => {
            if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", key.real_key)) {
                headers.insert(hyper::header::AUTHORIZATION, v);
            }
        }
        KeyStyle::XApiKey => {
            if let Ok(v) = HeaderValue::from_str(&key.real_key) {
                headers.insert(HeaderName::from_static(api::X_API_KEY), v);
            }
        }
    }
}

/// (real key, virtual key) pairs: an answer that echoes a real key (an
/// upstream error message, say) shows the agent its virtual key instead.
fn scrub_pairs(vault: &Vault) -> Vec<(Vec<u8>, Vec<u8>)> {
    vault
        .real_keys()
        .map(|k| {
            (
                k.real_key.as_bytes().to_vec(),
                k.virtual_key.as_bytes().to_vec(),
            )
        })
        .collect()
}

fn scrub(bytes: &[u8], pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (real, replacement) in pairs {
        if real.is_empty() {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(real) {
                next.extend_from_slice(replacement);
                i += real.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        out = next;
    }
    out
}

/// The last bytes of a stream kept for the injection scan.
const STREAM_TAIL: usize = 256 * 1024;

type StreamDone = Box<dyn FnOnce(u64, Vec<u8>, bool) + Send>;

/// A streamed answer on its way to the agent: counted, scrubbed of real
/// keys chunk by chunk, its tail kept for the injection scan, and recorded
/// once when it ends (or the agent goes away).
struct Tracked {
    inner: Incoming,
    bytes: u64,
    tail: Vec<u8>,
    scrub: Vec<(Vec<u8>, Vec<u8>)>,
    done: Option<StreamDone>,
}

impl Tracked {
    fn finish(&mut self, complete: bool) {
        if let Some(done) = self.done.take() {
            done(self.bytes, std::mem::take(&mut self.tail), complete);
        }
    }
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    let data = Bytes::from(scrub(&data, &this.scrub));
                    this.bytes += data.len() as u64;
                    this.tail.extend_from_slice(&data);
                    if this.tail.len() > STREAM_TAIL {
                        let cut = this.tail.len() - STREAM_TAIL;
                        this.tail.drain(..cut);
                    }
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(e))) => {
                this.finish(false);
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.finish(true);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// Serves the proxy on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<LlmProxy>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let proxy = proxy.clone();
                async move { Ok::<_, std::convert::Infallible>(proxy.handle(req).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_every_occurrence_and_joins_paths() {
        let pairs = vec![(b"REAL".to_vec(), b"virtual-key".to_vec())];
        assert_eq!(
            scrub(b"xREALyREAL", &pairs),
            b"xvirtual-keyyvirtual-key".to_vec()
        );
        let base: Uri = "https://gw.example/openai/".parse().unwrap();
        let req: Uri = "/v1/chat/completions?x=1".parse().unwrap();
        assert_eq!(
            join_uri(&base, &req),
            "https://gw.example/openai/v1/chat/completions?x=1"
        );
    }
}
