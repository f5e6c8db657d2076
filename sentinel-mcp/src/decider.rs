//! Where verdicts come from: the [`Decider`] seam between the proxy and the
//! decision point (the daemon over its socket, or the engine in-process).
//!
//! Everything that must not be under the agent's control lives behind this
//! trait: the verdict, the audit record, the tool pins and the approvals.
//! With a daemon, all of it is on the daemon's side of the socket.

use std::time::{Duration, SystemTime};

use sentinel_policy::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::scan::McpSettings;
use crate::store::{CallBinding, PinStatus};

/// One `tools/call`, as the proxy asks about it. `agent`, `uid` and `pid`
/// come from the proxy's own flags and the OS; a daemon replaces them with
/// what the kernel says about the socket peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub agent: Option<String>,
    pub uid: u32,
    pub pid: u32,
    pub server: String,
    pub tool: String,
    pub args: Value,
    /// The decision point's id for this call, from its answer to
    /// [`Decider::decide`]; later outcome reports name the call by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<u64>,
}

/// The decision point's answer to [`Decider::decide`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decided {
    pub verdict: Verdict,
    /// Names the call in later outcome reports (a daemon needs it: it
    /// records its own verdict with them, never the proxy's copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<u64>,
}

/// What happened to a call, for the audit chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The call, with its arguments already redacted.
    pub call: ToolCall,
    pub verdict: Verdict,
    /// One of [`OUTCOMES`]: `denied`, `result`, `tool-error`, `error`,
    /// `timeout`, `redacted`, `blocked`, `ask-pending`, ...
    pub outcome: String,
}

/// Every outcome a proxy reports, and whether it ends the call (no more
/// reports follow). `tool-error` is a result the tool marked `isError`;
/// `error` a JSON-RPC error answer.
pub const OUTCOMES: &[(&str, bool)] = &[
    ("denied", true),
    ("result", true),
    ("tool-error", true),
    ("error", true),
    ("timeout", true),
    ("redacted", true),
    ("blocked", true),
    ("server-exited", true),
    ("denied-by-elicitation", true),
    ("ask-elicited", true),
    ("ask-pending", true),
    ("approved", false),
    ("approved-by-elicitation", false),
];

/// Whether `outcome` is in the vocabulary, and if so whether it ends the
/// call.
pub fn outcome_ends_call(outcome: &str) -> Option<bool> {
    OUTCOMES
        .iter()
        .find(|(name, _)| *name == outcome)
        .map(|(_, ends)| *ends)
}

/// An alert raised by the proxy (rug-pull, secret in a result, injection).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyAlert {
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// `mcp-rug-pull`, `mcp-secret`, `mcp-injection`, ...
    pub category: String,
    pub reason: String,
}

/// Errors reaching or using the decision point. The proxy fails closed on
/// every one of them.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("the Sentinel daemon did not answer: {0}")]
    Daemon(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("audit log: {0}")]
    Audit(String),
}

/// The decision point the proxy consults.
pub trait Decider: Send + Sync {
    /// One line for the startup log: which decision point this is.
    fn describe(&self) -> String;

    /// The verdict for a call, before it reaches the server. The decision
    /// point audits the decision itself (outcome `forwarded`, `denied` or
    /// `ask`), so a proxy that skips [`Decider::record`] cannot hide it.
    fn decide(&self, call: &ToolCall, now: SystemTime) -> Result<Decided, DecideError>;

    /// The verdict used to decide whether a tool is advertised in
    /// `tools/list` (arguments unknown: `args` is null). Not audited.
    fn decide_listing(&self, probe: &ToolCall, now: SystemTime) -> Result<Verdict, DecideError>;

    /// Appends a call record to the audit chain (`kind = "mcp_call"`). A
    /// daemon takes only the outcome from it: the verdict it records is
    /// its own for `record.call.call_id`.
    fn record(&self, record: CallRecord, now: SystemTime) -> Result<(), DecideError>;

    /// Appends an alert to the audit chain. A daemon takes the category
    /// and the text as a report and sets the severity itself.
    fn alert(&self, alert: ProxyAlert, now: SystemTime) -> Result<(), DecideError>;

    /// Tells the circuit breaker of this caller and `call.server` whether
    /// the server answered well.
    fn server_outcome(&self, call: &ToolCall, ok: bool, now: SystemTime);

    /// Compares a server's tool definitions (one `tools/list` page;
    /// `last_page` when no `nextCursor` follows) with their pins, under the
    /// decision point's own `pin` setting.
    fn check_tools(
        &self,
        server: &str,
        tools: &[Value],
        last_page: bool,
        now: SystemTime,
    ) -> Result<Vec<(String, PinStatus)>, DecideError>;

    /// Whether a tool of `server` has an approved pin (for calls to tools
    /// this session has not seen listed).
    fn tool_approved(&self, server: &str, tool: &str, now: SystemTime)
        -> Result<bool, DecideError>;

    /// The `[mcp]` settings in force (scan actions, approver, pinning,
    /// unknown methods).
    fn settings(&self) -> McpSettings;

    /// Consumes an operator's approval of this exact call, if there is one.
    fn take_ask(&self, binding: &CallBinding, now: SystemTime) -> Result<bool, DecideError>;

    /// Registers a pending approval for this exact call; returns its id.
    /// `args_text` is the exact canonical text of the arguments: the
    /// decision point digests it itself and shows it (redacted) to the
    /// operator, so what is approved is what is shown.
    fn request_ask(
        &self,
        binding: &CallBinding,
        args_text: Option<&str>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, DecideError>;
}

/// The time source; injected so tests are deterministic.
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
