//! The proxy's message logic, independent of the transport: one client
//! frame or one server frame in, the frames to write to each side out.
//!
//! It owns the pending-request table (one response per request id: a
//! timeout answers once and a late response is dropped), the tool-layer
//! policy (`tools/call` verdicts, `tools/list` filtering and pinning, result
//! scanning) and the ask flow. Messages that pass unchanged are forwarded as
//! the exact bytes received; only messages Sentinel must change (a filtered
//! tool list, a redacted result) are re-serialized.

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

/// A tools/call held while the client's user is asked (elicitation).
#[derive(Debug, Clone)]
struct HeldCall {
    client_id_key: String,
    generation: u64,
    raw: Vec<u8>,
    call: ToolCall,
    verdict: Verdict,
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

/// What a 2026-07-28 `tools/call` carries for the ask flow.
#[derive(Debug, Default)]
struct ModernInput {
    /// The request speaks the 2026-07-28 revision.
    modern: bool,
    /// The request's `_meta` declares the elicitation capability.
    elicitation: bool,
    /// Our sealed `requestState`, when this is a retry.
    state: Option<String>,
    /// The user's answer under our input key.
    answer: Option<Value>,
}

/// The request without our `requestState` and input response.
fn strip_our_input(msg: &Message) -> Vec<u8> {
    let mut value = msg.value.clone();
    if let Some(params) = value.get_mut("params").and_then(Value::as_object_mut) {
        params.remove("requestState");
        let emptied = match params
            .get_mut("inputResponses")
            .and_then(Value::as_object_mut)
        {
            Some(responses) => {
                responses.remove(mrtr::INPUT_KEY);
                responses.is_empty()
            }
            None => false,
        };
        if emptied {
            params.remove("inputResponses");
        }
    }
    Value::Object(value).to_string().into_bytes()
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
        self.scanner.redact_value(&mut call.args);
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
        let call = ToolCall {
            agent: self.config.agent.clone(),
            uid: self.config.uid,
            pid: self.config.pid,
            server: self.config.server.clone(),
            tool: tool.to_string(),
            args,
        };
        let now = self.clock.now();
        let blocked = self.state().blocked_tools.get(tool).cloned();
        let verdict = match blocked {
            Some((rule, reason)) => {
                let verdict = own_verdict(Decision::Deny, &rule, reason, 90);
                self.record(&call, &verdict, "denied");
                verdict
            }
            None => self.decider.decide(&call, now).unwrap_or_else(|e| {
                let verdict = own_verdict(
                    Decision::Deny,
                    "sentinel-unavailable",
                    format!("no verdict could be reached, so the call is refused: {e}"),
                    100,
                );
                self.record(&call, &verdict, "denied");
                verdict
            }),
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

    fn on_ask(
        &self,
        step: &mut Step,
        id: &Value,
        raw: &[u8],
        call: ToolCall,
        verdict: Verdict,
        input: ModernInput,
    ) -> Option<PendingKind> {
        let modern = input.modern;
        let binding = CallBinding {
            agent: call.agent.clone(),
            server: call.server.clone(),
            tool: call.tool.clone(),
            args_digest: args_digest(&call.args),
        };
        let now = self.clock.now();
        match self.decider.take_ask(&binding, now) {
            Ok(true) => {
                self.record(&call, &verdict, "approved");
                return Some(PendingKind::ToolsCall {
                    call: Box::new(call),
                    verdict: Box::new(verdict),
                });
            }
            Ok(false) => {}
            Err(e) => {
                let verdict = own_verdict(
                    Decision::Deny,
                    "sentinel-unavailable",
                    format!("the approval could not be checked, so the call is refused: {e}"),
                    100,
                );
                step.client(self.deny_reply(id, &call, &verdict, modern));
                return None;
            }
        }
        if modern {
            if let Some(state) = &input.state {
                let why = match self.sealer.open(state, &binding, now) {
                    Ok(()) if mrtr::approves(input.answer.as_ref()) => {
                        self.record(&call, &verdict, "approved-by-elicitation");
                        return Some(PendingKind::ToolsCall {
                            call: Box::new(call),
                            verdict: Box::new(verdict),
                        });
                    }
                    Ok(()) => "the user declined the call".to_string(),
                    Err(e) => e.to_string(),
                };
                let denied = own_verdict(
                    Decision::Deny,
                    verdict.rule.as_deref().unwrap_or("ask"),
                    why,
                    verdict.risk,
                );
                self.record(&call, &denied, "denied-by-elicitation");
                step.client(self.deny_reply(id, &call, &denied, modern));
                return None;
            }
            if input.elicitation {
                let sealed = self.sealer.seal(&binding, self.config.ask_ttl, now);
                self.record(&call, &verdict, "ask-elicited");
                step.client(jsonrpc::result_response(
                    id,
                    mrtr::input_required(self.ask_message(&call, &verdict), sealed),
                ));
                return None;
            }
        }
        let elicit = self.state().client_elicitation && !modern;
        if elicit {
            let mut state = self.state();
            state.next_elicitation += 1;
            // Unguessable, so a server cannot pick ids that collide with ours.
            let elicitation_id = format!(
                "sentinel-elicit-{}-{}",
                self.elicit_prefix, state.next_elicitation
            );
            let generation = state.next_generation + 1;
            state.elicitations.insert(
                id_key(&Value::String(elicitation_id.clone())),
                HeldCall {
                    client_id_key: id_key(id),
                    generation,
                    raw: raw.to_vec(),
                    call: call.clone(),
                    verdict: verdict.clone(),
                },
            );
            drop(state);
            let request = json!({
                "jsonrpc": "2.0",
                "id": elicitation_id,
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": self.ask_message(&call, &verdict),
                    "requestedSchema": {
                        "type": "object",
                        "properties": { "approve": { "type": "boolean", "title": "Allow this call once" } },
                        "required": ["approve"],
                    },
                },
            });
            step.client(request.to_string().into_bytes());
            return Some(PendingKind::AwaitingElicitation);
        }
        let text = match self.decider.request_ask(&binding, self.config.ask_ttl, now) {
            Ok(approval) => {
                self.record(&call, &verdict, "ask-pending");
                format!(
                    "Sentinel needs an operator's approval for tool `{}` on server `{}` (rule `{}`: {}). \
                     Ask the operator to run `sentinel approve {approval}` within {} seconds, then retry \
                     the same call with the same arguments; the approval is good for one call.",
                    call.tool,
                    call.server,
                    verdict.rule.as_deref().unwrap_or("-"),
                    verdict.reason,
                    self.config.ask_ttl.as_secs(),
                )
            }
            Err(e) => format!(
                "Sentinel could not register an approval request, so the call is refused: {e}"
            ),
        };
        step.client(jsonrpc::result_response(
            id,
            tool_error_result(text, modern),
        ));
        None
    }

    fn on_elicitation_answer(&self, step: &mut Step, held: HeldCall, msg: &Message) {
        let pending = {
            let state = self.state();
            state
                .pending
                .get(&held.client_id_key)
                .filter(|p| p.generation == held.generation)
                .cloned()
        };
        let Some(pending) = pending else {
            return; // the call already timed out and was answered
        };
        let result = msg.value.get("result");
        let accepted = mrtr::approves(result);
        if accepted {
            self.record(&held.call, &held.verdict, "approved-by-elicitation");
            if let Some(p) = self.state().pending.get_mut(&held.client_id_key) {
                p.kind = PendingKind::ToolsCall {
                    call: Box::new(held.call),
                    verdict: Box::new(held.verdict),
                };
            }
            step.server(held.raw);
        } else {
            self.state().pending.remove(&held.client_id_key);
            let verdict = own_verdict(
                Decision::Deny,
                held.verdict.rule.as_deref().unwrap_or("ask"),
                "the user declined the call".into(),
                held.verdict.risk,
            );
            self.record(&held.call, &verdict, "denied-by-elicitation");
            step.client(self.deny_reply(&pending.id, &held.call, &verdict, pending.modern));
        }
    }

    fn ask_message(&self, call: &ToolCall, verdict: &Verdict) -> String {
        format!(
            "Sentinel: allow tool `{}` on server `{}` once? Rule `{}`: {}. Arguments: {}",
            call.tool,
            call.server,
            verdict.rule.as_deref().unwrap_or("-"),
            verdict.reason,
            crate::store::canonical_json(&self.redacted(&call.args)),
        )
    }

    fn redacted(&self, value: &Value) -> Value {
        let mut value = value.clone();
        self.scanner.redact_value(&mut value);
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
                        PendingKind::AwaitingElicitation | PendingKind::Other => step.client(line),
                    },
                }
            }
            Shape::Request { .. } | Shape::Notification { .. } => step.client(line),
        }
        step
    }

    fn on_call_result(
        &self,
        step: &mut Step,
        mut msg: Message,
        raw: Vec<u8>,
        call: &ToolCall,
        verdict: &Verdict,
        modern: bool,
    ) {
        let now = self.clock.now();
        let Some(result) = msg.value.get_mut("result") else {
            self.decider.server_outcome(&call.server, false, now);
            self.record(call, verdict, "error");
            step.client(raw);
            return;
        };
        self.decider.server_outcome(&call.server, true, now);
        let findings = self.scanner.findings(result);
        if findings.is_empty() {
            self.record(call, verdict, "result");
            step.client(raw);
            return;
        }
        let policy = self.decider.scan_policy();
        let mut block = Vec::new();
        let mut changed = false;
        if !findings.secrets.is_empty() {
            let what = format!(
                "result of tool `{}` contains secrets: {}",
                call.tool,
                findings.secrets.join(", ")
            );
            self.alert("warning", "mcp-secret", what.clone());
            match policy.secrets {
                FindingAction::Block => block.push(what),
                FindingAction::Redact => {
                    self.scanner.redact_value(result);
                    changed = true;
                }
                FindingAction::Alert => {}
            }
        }
        if !findings.injection.is_empty() {
            let what = format!(
                "result of tool `{}` contains prompt-injection markers: {}",
                call.tool,
                findings.injection.join(", ")
            );
            self.alert("warning", "mcp-injection", what.clone());
            match policy.injection {
                FindingAction::Block => block.push(what),
                FindingAction::Redact => {
                    redact_injection(&self.scanner, result);
                    changed = true;
                }
                FindingAction::Alert => {}
            }
        }
        if !block.is_empty() {
            let text = format!("Sentinel blocked the result: {}", block.join("; "));
            *result = tool_error_result(text, modern);
            self.record(call, verdict, "blocked");
        } else if changed {
            self.record(call, verdict, "redacted");
        } else {
            self.record(call, verdict, "result");
            step.client(raw);
            return;
        }
        step.client(Value::Object(msg.value).to_string().into_bytes());
    }

    fn on_tools_list(&self, step: &mut Step, mut msg: Message, raw: Vec<u8>) {
        let last_page = msg
            .value
            .get("result")
            .and_then(|r| r.get("nextCursor"))
            .is_none_or(Value::is_null);
        let Some(tools) = msg
            .value
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        else {
            step.client(raw);
            return;
        };
        let now = self.clock.now();
        let statuses = match self
            .decider
            .check_tools(&self.config.server, tools, last_page, now)
        {
            Ok(statuses) => statuses,
            Err(e) => {
                self.warn(&format!("could not check tool pins: {e}"));
                let id = msg.value.get("id").cloned().unwrap_or(Value::Null);
                step.client(jsonrpc::error_response(
                    Some(&id),
                    jsonrpc::REFUSED,
                    &format!("Sentinel could not check the server's tool definitions: {e}"),
                ));
                return;
            }
        };
        let mut keep = Vec::with_capacity(tools.len());
        let mut blocked_now = HashMap::new();
        for (def, (name, status)) in tools.iter().zip(statuses) {
            if let Some(approval) = match &status {
                crate::store::PinStatus::New { approval }
                | crate::store::PinStatus::Changed { approval } => Some(approval.clone()),
                _ => None,
            } {
                let what = if matches!(status, crate::store::PinStatus::New { .. }) {
                    "appeared after the server's tools were pinned"
                } else {
                    "changed its definition since it was pinned"
                };
                let reason = format!(
                    "tool `{name}` on server `{}` {what}; blocked until an operator runs `sentinel approve {approval}`",
                    self.config.server
                );
                if self.state().alerted.insert(approval) {
                    self.alert("critical", "mcp-rug-pull", reason.clone());
                }
                blocked_now.insert(name, ("tool-pinning".to_string(), reason));
                keep.push(false);
                continue;
            }
            let findings = self.scanner.findings(&crate::store::pin_material(def));
            if !findings.is_empty() {
                let reason = format!(
                    "the definition of tool `{name}` contains {}",
                    findings
                        .secrets
                        .iter()
                        .chain(&findings.injection)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                self.alert("critical", "mcp-poisoned-tool", reason.clone());
                blocked_now.insert(name, ("tool-scan".to_string(), reason));
                keep.push(false);
                continue;
            }
            let probe = ToolCall {
                agent: self.config.agent.clone(),
                uid: self.config.uid,
                pid: self.config.pid,
                server: self.config.server.clone(),
                tool: name.clone(),
                args: Value::Null,
            };
            let hidden = self
                .decider
                .decide_listing(&probe, now)
                .map(|v| v.action == Decision::Deny)
                .unwrap_or(true);
            keep.push(!hidden);
        }
        {
            let mut state = self.state();
            for name in tools
                .iter()
                .filter_map(|d| d.get("name").and_then(Value::as_str))
            {
                state.blocked_tools.remove(name);
            }
            state.blocked_tools.extend(blocked_now);
        }
        if keep.iter().all(|k| *k) {
            step.client(raw);
            return;
        }
        let mut flags = keep.into_iter();
        tools.retain(|_| flags.next().unwrap_or(false));
        step.client(Value::Object(msg.value).to_string().into_bytes());
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
            self.decider
                .server_outcome(&call.server, false, self.clock.now());
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

fn redact_injection(scanner: &Scanner, value: &mut Value) {
    match value {
        Value::String(s) => {
            let kinds = scanner.injection_in(s);
            if !kinds.is_empty() {
                *s = format!("[REDACTED:prompt-injection:{}]", kinds.join(","));
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_injection(scanner, v)),
        Value::Object(map) => map.values_mut().for_each(|v| redact_injection(scanner, v)),
        _ => {}
    }
}
