//! The proxy's message logic, independent of the transport: one client
//! frame or one server frame in, the frames to write to each side out.
//!
//! This module owns the pending-request table (one response per request
//! id: a timeout answers once and a late response is dropped) and the
//! `tools/call` verdict; `ask` holds calls for a human, `results`
//! inspects what the server returns (result scanning, `tools/list` pinning
//! and filtering). Messages that pass unchanged are forwarded as the exact
//! bytes received; only messages Sentinel must change (a filtered tool list,
//! a redacted result) are re-serialized.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sentinel_policy::{Decision, Verdict};
use serde_json::{json, Value};

use crate::decider::{CallRecord, Clock, Decider, ProxyAlert, ToolCall};
use crate::framing::Frame;
use crate::jsonrpc::{self, id_key, parse_strict, Message, Shape};
use crate::mrtr::{self, StateSealer};
use crate::scan::{FindingAction, Scanner};
use crate::store::{args_digest, CallBinding};

mod ask;
mod results;

use ask::{strip_our_input, HeldCall, ModernInput};

/// The 2026-07-28 `_meta` key carrying the protocol version of a request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The 2026-07-28 `_meta` key carrying the client's capabilities.
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// How the proxy was configured; identity comes from here and the OS.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The agent name from the proxy's own `--agent` flag.
    pub agent: Option<String>,
    /// The name this server goes by in policy and audit.
    pub server: String,
    /// The UID the proxy runs as (from the OS).
    pub uid: u32,
    /// The proxy's PID.
    pub pid: u32,
    pub max_line: usize,
    /// How long a request may wait for the server before it is answered
    /// with an error.
    pub request_timeout: Duration,
    /// How long an ask confirmation token stays valid.
    pub ask_ttl: Duration,
}

/// A frame for one side; the transport writes it followed by `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    Client(Vec<u8>),
    Server(Vec<u8>),
}

/// A timer the transport must start: when it fires, call
/// [`Proxy::on_timeout`] with the same value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub id_key: String,
    pub generation: u64,
    pub after: Duration,
}

/// What one step produced.
#[derive(Debug, Default)]
pub struct Step {
    pub out: Vec<Out>,
    pub timers: Vec<Timer>,
}

impl Step {
    fn client(&mut self, bytes: Vec<u8>) {
        self.out.push(Out::Client(bytes));
    }
    fn server(&mut self, bytes: Vec<u8>) {
        self.out.push(Out::Server(bytes));
    }
}

#[derive(Debug, Clone)]
enum PendingKind {
    ToolsCall {
        call: Box<ToolCall>,
        verdict: Box<Verdict>,
    },
    ToolsList,
    /// A `resources/read` or `prompts/get`: its content is scanned.
    Content(&'static str),
    /// Waiting for the client to answer the proxy's own elicitation.
    AwaitingElicitation,
    Other,
}

#[derive(Debug, Clone)]
struct Pending {
    id: Value,
    kind: PendingKind,
    generation: u64,
    cancelled: bool,
    /// The request spoke the 2026-07-28 revision (`_meta` protocol version).
    modern: bool,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    next_generation: u64,
    /// Tools withheld from the client, with the reason (pins, scanning).
    blocked_tools: HashMap<String, (String, String)>,
    /// Approval ids already alerted on in this session.
    alerted: HashSet<String>,
    client_elicitation: bool,
    elicitations: HashMap<String, HeldCall>,
    next_elicitation: u64,
}

/// The proxy core; shared by the transport's reader tasks.
pub struct Proxy {
    config: ProxyConfig,
    decider: Arc<dyn Decider>,
    clock: Arc<dyn Clock>,
    scanner: Scanner,
    sealer: StateSealer,
    elicit_prefix: String,
    state: Mutex<State>,
}

/// A verdict the proxy reaches on its own (pins, errors, scanning).
fn own_verdict(action: Decision, rule: &str, reason: String, risk: u8) -> Verdict {
    Verdict {
        action,
        rule: Some(rule.to_string()),
        reason,
        risk,
        enforced: true,
        alert: action == Decision::Deny,
        factors: Vec::new(),
    }
}

fn is_modern(msg: &Message) -> bool {
    msg.params()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION))
        .and_then(Value::as_str)
        .is_some_and(|v| v.as_bytes() >= b"2026-07-28".as_slice())
}

fn tool_error_result(text: String, modern: bool) -> Value {
    let mut result = json!({
        "content": [{ "type": "text", "text": text }],
        "isError": true,
    });
    if modern {
        result["resultType"] = json!("complete");
    }
    result
}

impl Proxy {
    pub fn new(config: ProxyConfig, decider: Arc<dyn Decider>, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            decider,
            clock,
            scanner: Scanner::new(),
            sealer: StateSealer::new(),
            elicit_prefix: crate::store::random_hex(8),
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another reader leaves the state usable: every entry is
        // complete after each statement that writes it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn warn(&self, text: &str) {
        eprintln!("sentinel mcp-proxy [{}]: {text}", self.config.server);
    }

    fn alert(&self, severity: &str, category: &str, reason: String) {
        self.warn(&format!("alert {category}: {reason}"));
        let alert = ProxyAlert {
            severity: severity.into(),
            category: category.into(),
            reason,
        };
        if let Err(e) = self.decider.alert(alert, self.clock.now()) {
            self.warn(&format!("could not record alert: {e}"));
        }
    }

    fn record(&self, call: &ToolCall, verdict: &Verdict, outcome: &str) {
        let mut call = call.clone();
        self.scanner.redact_args(&mut call.args);
        let record = CallRecord {
            call,
            verdict: verdict.clone(),
            outcome: outcome.into(),
        };
        if let Err(e) = self.decider.record(record, self.clock.now()) {
            self.warn(&format!("could not record call outcome: {e}"));
        }
    }

    // ---- client → server ------------------------------------------------

    /// Handles one frame from the client.
    pub fn on_client_frame(&self, frame: Frame) -> Step {
        let mut step = Step::default();
        let line = match frame {
            Frame::TooLong => {
                self.warn("refused an over-long message from the client");
                step.client(jsonrpc::error_response(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    &format!(
                        "Sentinel refused the message: longer than the {}-byte line limit",
                        self.config.max_line
                    ),
                ));
                return step;
            }
            Frame::Line(line) => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            return step;
        }
        let msg = match parse_strict(&line) {
            Ok(msg) => msg,
            Err(refused) => {
                self.warn(&format!("refused a client message: {}", refused.rejection));
                step.client(jsonrpc::error_response(
                    refused.id.as_ref(),
                    refused.rejection.code(),
                    &format!("Sentinel refused the message: {}", refused.rejection),
                ));
                return step;
            }
        };
        match msg.shape.clone() {
            Shape::Request { id, method } => {
                self.on_client_request(&mut step, id, &method, msg, line)
            }
            Shape::Notification { method } => {
                if method == "notifications/cancelled" {
                    let target = msg.params().and_then(|p| p.get("requestId")).map(id_key);
                    if let Some(key) = target {
                        if let Some(p) = self.state().pending.get_mut(&key) {
                            p.cancelled = true;
                        }
                    }
                }
                step.server(line);
            }
            Shape::Response { id } => {
                let held = self.state().elicitations.remove(&id_key(&id));
                match held {
                    Some(held) => self.on_elicitation_answer(&mut step, held, &msg),
                    None => step.server(line),
                }
            }
        }
        step
    }

    fn on_client_request(
        &self,
        step: &mut Step,
        id: Value,
        method: &str,
        msg: Message,
        raw: Vec<u8>,
    ) {
        let key = id_key(&id);
        if self.state().pending.contains_key(&key) {
            step.client(jsonrpc::error_response(
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                "Sentinel refused the request: a request with this id is still pending",
            ));
            return;
        }
        let modern = is_modern(&msg);
        let mut raw = raw;
        let kind = match method {
            "tools/call" => match self.on_tools_call(step, &id, &msg, &mut raw, modern) {
                Some(kind) => kind,
                None => return,
            },
            "tools/list" => PendingKind::ToolsList,
            "resources/read" => PendingKind::Content("resources/read"),
            "prompts/get" => PendingKind::Content("prompts/get"),
            "initialize" => {
                let declares = msg
                    .params()
                    .and_then(|p| p.get("capabilities"))
                    .and_then(|c| c.get("elicitation"))
                    .is_some();
                self.state().client_elicitation = declares;
                PendingKind::Other
            }
            _ => PendingKind::Other,
        };
        let forward = !matches!(kind, PendingKind::AwaitingElicitation);
        self.track(step, id, kind, modern);
        if forward {
            step.server(raw);
        }
    }

    fn track(&self, step: &mut Step, id: Value, kind: PendingKind, modern: bool) {
        let key = id_key(&id);
        let mut state = self.state();
        state.next_generation += 1;
        let generation = state.next_generation;
        state.pending.insert(
            key.clone(),
            Pending {
                id,
                kind,
                generation,
                cancelled: false,
                modern,
            },
        );
        step.timers.push(Timer {
            id_key: key,
            generation,
            after: self.config.request_timeout,
        });
    }

    /// Decides a tools/call. Returns the pending kind when the request is
    /// to be tracked (forwarded, or held for elicitation); `None` when it
    /// was answered here.
    fn on_tools_call(
        &self,
        step: &mut Step,
        id: &Value,
        msg: &Message,
        raw: &mut Vec<u8>,
        modern: bool,
    ) -> Option<PendingKind> {
        let params = msg.params();
        // 2026-07-28 ask: the client's retry carries our sealed state and
        // the user's answer; neither is for the server.
        let input = ModernInput {
            modern,
            elicitation: modern
                && params
                    .and_then(|p| p.get("_meta"))
                    .and_then(|m| m.get(META_CLIENT_CAPABILITIES))
                    .and_then(|c| c.get("elicitation"))
                    .is_some(),
            state: params
                .and_then(|p| p.get("requestState"))
                .and_then(Value::as_str)
                .filter(|s| StateSealer::is_ours(s))
                .map(str::to_owned),
            answer: params
                .and_then(|p| p.get("inputResponses"))
                .and_then(|r| r.get(mrtr::INPUT_KEY))
                .cloned(),
        };
        if input.state.is_some() {
            *raw = strip_our_input(msg);
        }
        let Some(tool) = params.and_then(|p| p.get("name")).and_then(Value::as_str) else {
            step.client(jsonrpc::error_response(
                Some(id),
                -32602,
                "Sentinel refused the call: params.name must be a string",
            ));
            return None;
        };
        let args = params
            .and_then(|p| p.get("arguments"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut call = ToolCall {
            agent: self.config.agent.clone(),
            uid: self.config.uid,
            pid: self.config.pid,
            server: self.config.server.clone(),
            tool: tool.to_string(),
            args,
            call_id: None,
        };
        let now = self.clock.now();
        let blocked = self.state().blocked_tools.get(tool).cloned();
        let verdict = match blocked {
            Some((rule, reason)) => {
                // The decision point still hears of the call (and records
                // its own verdict); the proxy refuses it for what it saw in
                // the tool list, and reports that.
                if let Ok(decided) = self.decider.decide(&call, now) {
                    call.call_id = decided.call_id;
                }
                let verdict = own_verdict(Decision::Deny, &rule, reason, 90);
                self.record(&call, &verdict, "denied");
                verdict
            }
            None => match self.decider.decide(&call, now) {
                Ok(decided) => {
                    call.call_id = decided.call_id;
                    decided.verdict
                }
                Err(e) => {
                    let verdict = own_verdict(
                        Decision::Deny,
                        "sentinel-unavailable",
                        format!("no verdict could be reached, so the call is refused: {e}"),
                        100,
                    );
                    self.record(&call, &verdict, "denied");
                    verdict
                }
            },
        };
        match verdict.action {
            Decision::Allow | Decision::LogOnly => Some(PendingKind::ToolsCall {
                call: Box::new(call),
                verdict: Box::new(verdict),
            }),
            Decision::Deny => {
                step.client(self.deny_reply(id, &call, &verdict, modern));
                None
            }
            Decision::Ask => self.on_ask(step, id, raw, call, verdict, input),
        }
    }

    fn deny_reply(&self, id: &Value, call: &ToolCall, verdict: &Verdict, modern: bool) -> Vec<u8> {
        let text = format!(
            "Sentinel denied the call to tool `{}` on server `{}`: rule `{}`: {}",
            call.tool,
            call.server,
            verdict.rule.as_deref().unwrap_or("-"),
            verdict.reason
        );
        jsonrpc::result_response(id, tool_error_result(text, modern))
    }

    /// Arguments as an approver or the audit trail may see them.
    fn redacted_args(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.scanner.redact_args(&mut value);
        value
    }

    // ---- server → client ------------------------------------------------

    /// Handles one frame from the server.
    pub fn on_server_frame(&self, frame: Frame) -> Step {
        let mut step = Step::default();
        let line = match frame {
            Frame::TooLong => {
                self.warn(&format!(
                    "dropped an over-long message from the server (limit {} bytes)",
                    self.config.max_line
                ));
                return step;
            }
            Frame::Line(line) => line,
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            return step;
        }
        let msg = match parse_strict(&line) {
            Ok(msg) => msg,
            Err(refused) => {
                self.warn(&format!("refused a server message: {}", refused.rejection));
                let pending = refused
                    .id
                    .as_ref()
                    .and_then(|id| self.state().pending.remove(&id_key(id)));
                if let Some(p) = pending {
                    step.client(jsonrpc::error_response(
                        Some(&p.id),
                        jsonrpc::REFUSED,
                        &format!(
                            "Sentinel refused the server's response: {}",
                            refused.rejection
                        ),
                    ));
                }
                return step;
            }
        };
        match msg.shape.clone() {
            Shape::Response { id } => {
                let pending = self.state().pending.remove(&id_key(&id));
                match pending {
                    None => self.warn(&format!(
                        "dropped a response to unknown or expired request id {id}"
                    )),
                    Some(p) => match p.kind {
                        PendingKind::ToolsCall { call, verdict } => {
                            self.on_call_result(&mut step, msg, line, &call, &verdict, p.modern)
                        }
                        PendingKind::ToolsList => self.on_tools_list(&mut step, msg, line),
                        PendingKind::Content(method) => {
                            self.on_content_result(&mut step, msg, line, method)
                        }
                        PendingKind::AwaitingElicitation | PendingKind::Other => step.client(line),
                    },
                }
            }
            Shape::Request { .. } | Shape::Notification { .. } => step.client(line),
        }
        step
    }

    // ---- timers and shutdown ---------------------------------------------

    /// A request timer fired: answer the request once, if still pending.
    pub fn on_timeout(&self, timer: &Timer) -> Step {
        let mut step = Step::default();
        let pending = {
            let mut state = self.state();
            match state.pending.get(&timer.id_key) {
                Some(p) if p.generation == timer.generation => state.pending.remove(&timer.id_key),
                _ => None,
            }
        };
        let Some(p) = pending else {
            return step;
        };
        if let PendingKind::ToolsCall { call, verdict } = &p.kind {
            self.decider.server_outcome(call, false, self.clock.now());
            self.record(call, verdict, "timeout");
        }
        if !p.cancelled {
            self.warn(&format!("request {} timed out", p.id));
            step.client(jsonrpc::error_response(
                Some(&p.id),
                jsonrpc::REQUEST_TIMEOUT,
                &format!(
                    "Sentinel: the server did not answer within {} ms",
                    timer.after.as_millis()
                ),
            ));
        }
        step
    }

    /// The server's output ended: every request still pending is answered
    /// with an error, once.
    pub fn on_server_closed(&self) -> Step {
        let mut step = Step::default();
        let pending: Vec<Pending> = self.state().pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            if let PendingKind::ToolsCall { call, verdict } = &p.kind {
                self.record(call, verdict, "server-exited");
            }
            if !p.cancelled {
                step.client(jsonrpc::error_response(
                    Some(&p.id),
                    jsonrpc::REFUSED,
                    "Sentinel: the MCP server exited before answering",
                ));
            }
        }
        step
    }
}
