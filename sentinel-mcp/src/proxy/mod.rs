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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sentinel_policy::{Decision, Verdict};
use serde_json::{json, Value};

use crate::decider::{CallRecord, Clock, Decider, ProxyAlert, ToolCall};
use crate::framing::Frame;
use crate::jsonrpc::{self, id_key, parse_strict, Message, Rejection, Shape};
use crate::methods::{self, Direction};
use crate::mrtr::{self, StateSealer};
use crate::scan::{FindingAction, Scanner};
use crate::store::{args_digest, CallBinding};

mod ask;
mod results;
mod server_requests;

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
    /// The proxy's own `tools/list` (see [`SelfListing`]).
    SelfList,
    /// A `resources/read` or `prompts/get`: decided like a tool call, its
    /// content scanned and its outcome recorded.
    Content {
        call: Box<ToolCall>,
        verdict: Box<Verdict>,
    },
    /// `initialize` or `server/discover`: the negotiated revision and the
    /// server's instructions (pinned and scanned).
    Initialize,
    /// A result that is scanned (lists, completion, `tasks/result`).
    Scanned(&'static str),
    /// Waiting for the client to answer the proxy's own elicitation.
    AwaitingElicitation,
    Other,
}

/// A server-to-client request forwarded to the client, awaiting its answer.
#[derive(Debug, Clone)]
struct ServerRequest {
    method: String,
    /// For requests the policy decided (sampling, elicitation, roots).
    decided: Option<(ToolCall, Verdict)>,
}

/// Most timed-out request ids remembered (their late answers are dropped
/// and the ids cannot be reused while remembered).
const MAX_TIMED_OUT: usize = 4096;

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
    /// The protocol revision negotiated by `initialize` (else the request's
    /// own, for 2026-07-28).
    revision: Option<String>,
    /// Requests that timed out: `notifications/cancelled` went upstream,
    /// a late answer is dropped, and the id may not be reused meanwhile.
    timed_out: HashSet<String>,
    timed_out_order: VecDeque<String>,
    /// Tools this session saw listed: callable (true) or withheld (false).
    listed: HashMap<String, bool>,
    /// Server requests forwarded to the client, by id.
    server_requests: HashMap<String, ServerRequest>,
    /// Input schemas of the callable tools this session saw listed.
    schemas: HashMap<String, Value>,
    /// The proxy's own listing in flight, with the calls waiting for it.
    self_listing: Option<SelfListing>,
    /// The proxy listed the server's tools itself once this session.
    self_listed: bool,
    next_self_list: u64,
}

/// A client may call a tool without listing first (many SDK clients keep
/// the list from an earlier session). The proxy then lists the server's
/// tools itself — every page, through the same pinning and withholding as
/// a client's listing, the answer going to nobody — and decides the held
/// calls again: a tool the server lists (and, with `pin = "review"`, the
/// operator approved) goes through; one it does not list is refused.
/// Once per session; at most [`MAX_HELD_FOR_LISTING`] calls wait.
#[derive(Debug)]
struct SelfListing {
    held: Vec<(Value, Message, Vec<u8>)>,
    pages: u32,
    modern: bool,
    /// The 2026-07-28 `_meta` (protocol version, capabilities) of the call
    /// that started it, for the listing requests.
    meta: Option<Value>,
}

/// Most calls held while the proxy lists the server's tools itself.
const MAX_HELD_FOR_LISTING: usize = 64;
/// Most pages of the proxy's own listing.
const MAX_SELF_LIST_PAGES: u32 = 100;

/// The proxy core; shared by the transport's reader tasks.
pub struct Proxy {
    config: ProxyConfig,
    decider: Arc<dyn Decider>,
    clock: Arc<dyn Clock>,
    scanner: &'static Scanner,
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

/// What the method allow-list decided for one message.
enum Gate {
    Pass,
    /// Refused; the answer (for a request) is already in the step.
    Refused,
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
            scanner: Scanner::shared(),
            sealer: StateSealer::new(),
            elicit_prefix: crate::store::random_hex(8),
            state: Mutex::new(State::default()),
        }
    }

    pub fn config(&self) -> &ProxyConfig {
        &self.config
    }

    /// The input schema of a callable tool this session saw listed (the
    /// HTTP front checks `Mcp-Param-*` headers against it).
    pub fn tool_schema(&self, tool: &str) -> Option<Value> {
        self.state().schemas.get(tool).cloned()
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

    /// A client the transport refused before any message (the kernel said
    /// it is not an allowed user): alerted and recorded.
    pub fn refused_client(&self, reason: &str) {
        self.alert("warning", "mcp-client-refused", reason.to_string());
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
                if matches!(
                    refused.rejection,
                    Rejection::DuplicateKey { .. } | Rejection::Batch
                ) {
                    self.alert(
                        "warning",
                        "mcp-smuggling",
                        format!(
                            "refused a client message to server `{}`: {}",
                            self.config.server, refused.rejection
                        ),
                    );
                }
                for id in refused.answer_ids() {
                    step.client(jsonrpc::error_response(
                        id.as_ref(),
                        refused.rejection.code(),
                        &format!("Sentinel refused the message: {}", refused.rejection),
                    ));
                }
                return step;
            }
        };
        let revision = self.revision_of(&msg);
        match msg.shape.clone() {
            Shape::Request { id, method } => {
                if let Gate::Pass = self.gate(
                    &mut step,
                    Direction::ClientToServer,
                    &method,
                    Some(&id),
                    &msg,
                    revision,
                ) {
                    self.on_client_request(&mut step, id, &method, msg, line)
                }
            }
            Shape::Notification { method } => {
                if let Gate::Refused = self.gate(
                    &mut step,
                    Direction::ClientToServer,
                    &method,
                    None,
                    &msg,
                    revision,
                ) {
                    return step;
                }
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
                let key = id_key(&id);
                let held = self.state().elicitations.remove(&key);
                match held {
                    Some(held) => self.on_elicitation_answer(&mut step, held, &msg),
                    None => {
                        let request = self.state().server_requests.remove(&key);
                        match request {
                            Some(request) => self.on_client_answer(&mut step, request, msg, line),
                            None => self.warn(&format!(
                                "dropped a client response to unknown server request id {id}"
                            )),
                        }
                    }
                }
            }
        }
        step
    }

    /// The revision a message is judged under: its own 2026-07-28 `_meta`,
    /// else the negotiated one.
    fn revision_of(&self, msg: &Message) -> &'static str {
        if is_modern(msg) {
            return methods::effective_revision(Some("2026-07-28"));
        }
        let negotiated = self.state().revision.clone();
        methods::effective_revision(negotiated.as_deref())
    }

    /// The method allow-list: a request-only method sent as a notification,
    /// a method outside this direction or revision, and (unless the policy
    /// forwards them) methods that are not MCP are refused and recorded.
    fn gate(
        &self,
        step: &mut Step,
        direction: Direction,
        method: &str,
        id: Option<&Value>,
        msg: &Message,
        revision: &str,
    ) -> Gate {
        let verdict = methods::check(direction, method, id.is_some(), revision);
        let from = match direction {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        };
        let why = match verdict {
            methods::Verdict::Allowed => return Gate::Pass,
            methods::Verdict::Unknown
                if self.decider.settings().unknown_methods
                    == sentinel_policy::UnknownMethods::Forward =>
            {
                self.alert(
                    "info",
                    "mcp-unknown-method",
                    format!(
                        "forwarded `{method}` from the {from} of server `{}` (unknown_methods = \"forward\")",
                        self.config.server
                    ),
                );
                return Gate::Pass;
            }
            methods::Verdict::Unknown => format!("`{method}` is not an MCP method"),
            methods::Verdict::NotInRevision => format!(
                "`{method}` is not sent by the {from} in MCP revision {revision}"
            ),
            methods::Verdict::WrongShape if id.is_none() => format!(
                "`{method}` is a request; sent as a notification (no id) it would run without a verdict"
            ),
            methods::Verdict::WrongShape => format!("`{method}` is a notification, not a request"),
        };
        let severity = if methods::is_request_method(method) && id.is_none() {
            "critical"
        } else {
            "warning"
        };
        self.alert(
            severity,
            "mcp-smuggling",
            format!(
                "refused a message from the {from} of server `{}`: {why}",
                self.config.server
            ),
        );
        if direction == Direction::ClientToServer
            && id.is_none()
            && matches!(method, "tools/call" | "resources/read" | "prompts/get")
        {
            // On the record like any refused call.
            let call = self.call_of(method, msg);
            let verdict = own_verdict(Decision::Deny, "mcp-framing", why.clone(), 90);
            self.record(&call, &verdict, "refused-notification");
        }
        if let Some(id) = id {
            let reply = jsonrpc::error_response(
                Some(id),
                jsonrpc::METHOD_NOT_FOUND,
                &format!("Sentinel refused the request: {why}"),
            );
            match direction {
                Direction::ClientToServer => step.client(reply),
                Direction::ServerToClient => step.server(reply),
            }
        }
        Gate::Refused
    }

    /// The action a `tools/call`, `resources/read` or `prompts/get` is
    /// decided as: tools by their name, the others by the method (their
    /// parameters are the arguments).
    fn call_of(&self, method: &str, msg: &Message) -> ToolCall {
        let params = msg.params();
        let (tool, args) = if method == "tools/call" {
            (
                params
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                params
                    .and_then(|p| p.get("arguments"))
                    .cloned()
                    .unwrap_or_else(|| json!({})),
            )
        } else {
            let mut args = params.cloned().unwrap_or_default();
            args.remove("_meta");
            (method.to_string(), Value::Object(args))
        };
        ToolCall {
            agent: self.config.agent.clone(),
            uid: self.config.uid,
            pid: self.config.pid,
            server: self.config.server.clone(),
            tool,
            args,
            call_id: None,
        }
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
        let (pending, timed_out) = {
            let state = self.state();
            let held = state
                .self_listing
                .as_ref()
                .is_some_and(|l| l.held.iter().any(|(i, _, _)| id_key(i) == key));
            (
                state.pending.contains_key(&key) || held,
                state.timed_out.contains(&key),
            )
        };
        if pending || timed_out {
            step.client(jsonrpc::error_response(
                Some(&id),
                jsonrpc::INVALID_REQUEST,
                if pending {
                    "Sentinel refused the request: a request with this id is still pending"
                } else {
                    "Sentinel refused the request: a request with this id timed out and the server may still answer it; use a new id"
                },
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
            "resources/read" | "prompts/get" => {
                match self.on_content_request(step, &id, method, &msg, modern) {
                    Some(kind) => kind,
                    None => return,
                }
            }
            "resources/list" => PendingKind::Scanned("resources/list"),
            "resources/templates/list" => PendingKind::Scanned("resources/templates/list"),
            "prompts/list" => PendingKind::Scanned("prompts/list"),
            "completion/complete" => PendingKind::Scanned("completion/complete"),
            "tasks/result" => PendingKind::Scanned("tasks/result"),
            "server/discover" => PendingKind::Initialize,
            "initialize" => {
                let params = msg.params();
                let declares = params
                    .and_then(|p| p.get("capabilities"))
                    .and_then(|c| c.get("elicitation"))
                    .is_some();
                let mut state = self.state();
                state.client_elicitation = declares;
                state.revision = params
                    .and_then(|p| p.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                PendingKind::Initialize
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
        let blocked = match blocked {
            Some(b) => Some(b),
            None => self.unlisted(tool, now),
        };
        if blocked
            .as_ref()
            .is_some_and(|(rule, _)| rule == "tool-not-listed")
            && self.hold_for_listing(step, id, msg, raw, modern)
        {
            return None;
        }
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
            None => self.decide_or_refuse(&mut call, now, "call"),
        };
        let pass = match verdict.action {
            Decision::Allow | Decision::LogOnly => Some(PendingKind::ToolsCall {
                call: Box::new(call.clone()),
                verdict: Box::new(verdict.clone()),
            }),
            Decision::Deny => {
                step.client(self.deny_reply(id, &call, &verdict, modern));
                None
            }
            Decision::Ask => self.on_ask(step, id, raw, call.clone(), verdict.clone(), input),
        };
        if pass.is_some() && !self.outgoing_arguments(step, id, msg, raw, &call, &verdict, modern) {
            return None;
        }
        pass
    }

    /// Why a tool that this session has not seen listed as callable may
    /// not be called: never listed by the server, or listed and awaiting
    /// approval; `None` when it was approved (here or earlier).
    fn unlisted(&self, tool: &str, now: std::time::SystemTime) -> Option<(String, String)> {
        if !valid_tool_name(tool) {
            return Some((
                "tool-name".into(),
                format!("`{tool}` is not a valid MCP tool name"),
            ));
        }
        let not_listed = || {
            Some((
                "tool-not-listed".to_string(),
                format!(
                    "tool `{tool}` is not on the tool list of server `{}`, or its definition awaits `sentinel approve`",
                    self.config.server
                ),
            ))
        };
        match self.state().listed.get(tool) {
            Some(true) => return None,
            // Never seen listed this session: a pin from an earlier session
            // says nothing about what the server offers now (it may have
            // changed the tool since), so the tool list is read first.
            None => return not_listed(),
            // Withheld here: the operator may have approved it since.
            Some(false) => {}
        }
        match self.decider.tool_approved(&self.config.server, tool, now) {
            Ok(true) => {
                self.state().listed.insert(tool.to_string(), true);
                None
            }
            Ok(false) => not_listed(),
            Err(e) => Some((
                "sentinel-unavailable".into(),
                format!("the tool's pin could not be checked, so the call is refused: {e}"),
            )),
        }
    }

    /// The decider's verdict on `call` (a `what`); when none can be
    /// reached, a recorded deny, so nothing passes unjudged.
    /// The decision point's verdict (the call then carries the id it
    /// records its verdict under), or a refusal when none can be reached.
    fn decide_or_refuse(
        &self,
        call: &mut ToolCall,
        now: std::time::SystemTime,
        what: &str,
    ) -> Verdict {
        match self.decider.decide(call, now) {
            Ok(decided) => {
                call.call_id = decided.call_id;
                decided.verdict
            }
            Err(e) => {
                let verdict = own_verdict(
                    Decision::Deny,
                    "sentinel-unavailable",
                    format!("no verdict could be reached, so the {what} is refused: {e}"),
                    100,
                );
                self.record(call, &verdict, "denied");
                verdict
            }
        }
    }

    /// Holds a call to a tool this session has not seen listed while the
    /// proxy lists the server's tools itself (see [`SelfListing`]). False
    /// when it may not wait: the proxy listed once already, or too many
    /// calls wait.
    fn hold_for_listing(
        &self,
        step: &mut Step,
        id: &Value,
        msg: &Message,
        raw: &[u8],
        modern: bool,
    ) -> bool {
        let mut state = self.state();
        if state.self_listed {
            return false;
        }
        if let Some(listing) = state.self_listing.as_mut() {
            if listing.held.len() >= MAX_HELD_FOR_LISTING {
                return false;
            }
            listing.held.push((id.clone(), msg.clone(), raw.to_vec()));
            return true;
        }
        let meta = msg
            .params()
            .and_then(|p| p.get("_meta"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| k.starts_with("io.modelcontextprotocol/"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<serde_json::Map<_, _>>()
            })
            .filter(|m| !m.is_empty())
            .map(Value::Object);
        state.self_listing = Some(SelfListing {
            held: vec![(id.clone(), msg.clone(), raw.to_vec())],
            pages: 0,
            modern,
            meta,
        });
        drop(state);
        self.request_self_list(step, None);
        true
    }

    /// Sends the next page request of the proxy's own listing.
    fn request_self_list(&self, step: &mut Step, cursor: Option<String>) {
        let (id, modern, meta) = {
            let mut state = self.state();
            // An id no client request holds.
            let id = loop {
                state.next_self_list += 1;
                // The session's random prefix: a client cannot aim at it.
                let id = json!(format!(
                    "sentinel-{}-tools-list-{}",
                    self.elicit_prefix, state.next_self_list
                ));
                if !state.pending.contains_key(&id_key(&id)) {
                    break id;
                }
            };
            let Some(listing) = state.self_listing.as_mut() else {
                return;
            };
            listing.pages += 1;
            (id, listing.modern, listing.meta.clone())
        };
        let mut params = serde_json::Map::new();
        if let Some(cursor) = cursor {
            params.insert("cursor".into(), json!(cursor));
        }
        if let Some(meta) = meta {
            params.insert("_meta".into(), meta);
        }
        let mut request = json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"});
        if !params.is_empty() {
            request["params"] = Value::Object(params);
        }
        self.track(step, id, PendingKind::SelfList, modern);
        step.server(request.to_string().into_bytes());
    }

    /// A page of the proxy's own listing: pinned and checked like a
    /// client's (the listing itself goes to nobody); the next page is
    /// asked for, or the held calls are decided again.
    fn on_self_list(&self, step: &mut Step, msg: Message, line: Vec<u8>) {
        let cursor = msg
            .value
            .get("result")
            .and_then(|r| r.get("nextCursor"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let listed = msg
            .value
            .get("result")
            .and_then(|r| r.get("tools"))
            .is_some_and(Value::is_array);
        let mut nobody = Step::default();
        self.on_tools_list(&mut nobody, msg, line);
        step.timers.append(&mut nobody.timers);
        step.out.extend(
            nobody
                .out
                .into_iter()
                .filter(|o| matches!(o, Out::Server(_))),
        );
        let pages = self.state().self_listing.as_ref().map_or(0, |l| l.pages);
        match cursor {
            Some(cursor) if listed && pages < MAX_SELF_LIST_PAGES => {
                self.request_self_list(step, Some(cursor));
            }
            _ => self.release_held(step, listed),
        }
    }

    /// Ends the proxy's own listing: the held calls are decided again, on
    /// what the listing showed. A listing that failed (an error, no answer)
    /// may be tried again by a later call.
    fn release_held(&self, step: &mut Step, listed: bool) {
        let held = {
            let mut state = self.state();
            // Not again while these are decided (a server whose listing
            // fails must not start another for each of them).
            state.self_listed = true;
            state
                .self_listing
                .take()
                .map(|l| l.held)
                .unwrap_or_default()
        };
        for (id, msg, raw) in held {
            self.on_client_request(step, id, "tools/call", msg, raw);
        }
        self.state().self_listed = listed;
    }

    /// Secrets in a call's outgoing arguments: alerted, and redacted or
    /// refused per the `secrets` setting. Returns false when the call was
    /// answered here (blocked).
    #[allow(clippy::too_many_arguments)]
    fn outgoing_arguments(
        &self,
        step: &mut Step,
        id: &Value,
        msg: &Message,
        raw: &mut Vec<u8>,
        call: &ToolCall,
        verdict: &Verdict,
        modern: bool,
    ) -> bool {
        let found = self.scanner.findings(&call.args).secrets;
        if found.is_empty() {
            return true;
        }
        let what = format!(
            "arguments of tool `{}` on server `{}` carry secrets: {}",
            call.tool,
            call.server,
            found.join(", ")
        );
        self.alert("warning", "mcp-secret", what.clone());
        match self.decider.settings().secrets {
            FindingAction::Flag => true,
            FindingAction::Block => {
                let denied = own_verdict(Decision::Deny, "mcp-secret", what, 80);
                self.record(call, &denied, "blocked-arguments");
                step.client(self.deny_reply(id, call, &denied, modern));
                let _ = verdict;
                false
            }
            FindingAction::Redact => {
                let mut value = msg.value.clone();
                if let Some(args) = value.get_mut("params").and_then(|p| p.get_mut("arguments")) {
                    self.scanner.redact_value(args);
                }
                *raw = Value::Object(value).to_string().into_bytes();
                true
            }
        }
    }

    /// Decides a `resources/read` or `prompts/get` like a tool call (the
    /// method is the tool, its parameters the arguments).
    fn on_content_request(
        &self,
        step: &mut Step,
        id: &Value,
        method: &str,
        msg: &Message,
        modern: bool,
    ) -> Option<PendingKind> {
        let mut call = self.call_of(method, msg);
        let now = self.clock.now();
        let mut verdict = self.decide_or_refuse(&mut call, now, "request");
        if verdict.action == Decision::Ask {
            match self.operator_ask(&call, &verdict, None) {
                Ok(()) => verdict.action = Decision::Allow,
                Err(text) => {
                    step.client(jsonrpc::error_response(Some(id), jsonrpc::REFUSED, &text));
                    return None;
                }
            }
        }
        if verdict.action == Decision::Deny {
            let _ = modern;
            step.client(jsonrpc::error_response(
                Some(id),
                jsonrpc::REFUSED,
                &format!(
                    "Sentinel denied `{method}` on server `{}`: rule `{}`: {}",
                    call.server,
                    verdict.rule.as_deref().unwrap_or("-"),
                    verdict.reason
                ),
            ));
            return None;
        }
        Some(PendingKind::Content {
            call: Box::new(call),
            verdict: Box::new(verdict),
        })
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
        let revision = self.revision_of(&msg);
        match msg.shape.clone() {
            Shape::Response { id } => {
                let key = id_key(&id);
                let pending = {
                    let mut state = self.state();
                    let pending = state.pending.remove(&key);
                    if pending.is_none() && state.timed_out.remove(&key) {
                        state.timed_out_order.retain(|k| k != &key);
                    }
                    pending
                };
                match pending {
                    None => self.warn(&format!(
                        "dropped a response to unknown or expired request id {id}"
                    )),
                    Some(p) => match p.kind {
                        PendingKind::ToolsCall { call, verdict } => {
                            self.on_call_result(&mut step, msg, line, &call, &verdict, p.modern)
                        }
                        PendingKind::ToolsList => self.on_tools_list(&mut step, msg, line),
                        PendingKind::SelfList => self.on_self_list(&mut step, msg, line),
                        PendingKind::Content { call, verdict } => {
                            self.on_content_result(&mut step, msg, line, &call, &verdict)
                        }
                        PendingKind::Initialize => self.on_initialize_result(&mut step, msg, line),
                        PendingKind::Scanned(method) => {
                            self.on_scanned_result(&mut step, msg, line, method)
                        }
                        PendingKind::AwaitingElicitation | PendingKind::Other => step.client(line),
                    },
                }
            }
            Shape::Request { id, method } => {
                if let Gate::Pass = self.gate(
                    &mut step,
                    Direction::ServerToClient,
                    &method,
                    Some(&id),
                    &msg,
                    revision,
                ) {
                    self.on_server_request(&mut step, id, &method, msg, line);
                }
            }
            Shape::Notification { method } => {
                if let Gate::Pass = self.gate(
                    &mut step,
                    Direction::ServerToClient,
                    &method,
                    None,
                    &msg,
                    revision,
                ) {
                    self.on_server_notification(&mut step, &method, msg, line);
                }
            }
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
        if !matches!(p.kind, PendingKind::AwaitingElicitation) {
            // The server is told to stop; whatever it still sends for this
            // id is dropped, and the id is not reused meanwhile.
            let cancel = json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": { "requestId": p.id, "reason": "timed out in the Sentinel proxy" },
            });
            step.server(cancel.to_string().into_bytes());
            let mut state = self.state();
            if state.timed_out.insert(timer.id_key.clone()) {
                state.timed_out_order.push_back(timer.id_key.clone());
            }
            while state.timed_out_order.len() > MAX_TIMED_OUT {
                if let Some(old) = state.timed_out_order.pop_front() {
                    state.timed_out.remove(&old);
                }
            }
        }
        if matches!(p.kind, PendingKind::SelfList) {
            // The held calls are decided on what was seen: refused.
            self.warn("the server did not answer the proxy's own tools/list in time");
            self.release_held(&mut step, false);
            return step;
        }
        if let PendingKind::ToolsCall { call, verdict } | PendingKind::Content { call, verdict } =
            &p.kind
        {
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
        let held = self.state().self_listing.take();
        for (id, _, _) in held.map(|l| l.held).unwrap_or_default() {
            step.client(jsonrpc::error_response(
                Some(&id),
                jsonrpc::REFUSED,
                "Sentinel: the MCP server exited before answering",
            ));
        }
        let pending: Vec<Pending> = self.state().pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            if matches!(p.kind, PendingKind::SelfList) {
                continue;
            }
            if let PendingKind::ToolsCall { call, verdict }
            | PendingKind::Content { call, verdict } = &p.kind
            {
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

/// Whether a server may use `name` for a tool: MCP tool names never
/// contain `/` (which would let a tool pose as `sampling/createMessage` or
/// `resources/read` in policy) or control characters, and are not empty
/// nor Sentinel's own pseudo-tool.
pub fn valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name != crate::store::INSTRUCTIONS_PIN
        && !name.contains('/')
        && !name.chars().any(char::is_control)
}
