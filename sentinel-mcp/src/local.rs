//! The in-process decision point: the engine, the audit chain and the
//! proxy's SQLite store in one process. Used by the standalone proxy, and
//! by the daemon behind [`crate::daemon::serve_decisions`].

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sentinel_audit::{Body, Event, ProcessInfo};
use sentinel_policy::{Action, Decision, Object, Verdict};
use serde_json::Value;
use time::OffsetDateTime;

use crate::decider::{CallRecord, DecideError, Decider, ProxyAlert, ToolCall};
use crate::scan::{ScanPolicy, Scanner};
use crate::store::{CallBinding, PinStatus, Store};

/// The verdict engine, as the proxy needs it.
pub trait Evaluate: Send + Sync {
    fn evaluate(&self, action: &Action, now: SystemTime) -> Verdict;
    /// The verdict without side effects (no rate-limit token spent, no
    /// breaker probe, no anomaly baseline update): used to decide whether
    /// a tool is advertised in `tools/list`.
    fn evaluate_quietly(&self, action: &Action, now: SystemTime) -> Verdict;
    /// Feeds the circuit breaker.
    fn server_outcome(&self, server: &str, ok: bool, now: SystemTime);
}

/// The audit chain, as the proxy needs it.
pub trait AuditSink: Send + Sync {
    /// Appends one event; the sink assigns `seq`.
    fn append(&self, event: Event) -> Result<(), String>;

    /// Waits until every appended event is committed (for sinks that
    /// write in the background).
    fn flush(&self) {}
}

/// Engine + audit chain + store, in this process.
pub struct LocalDecider {
    engine: Box<dyn Evaluate>,
    audit: Box<dyn AuditSink>,
    store: Mutex<Store>,
    scan_policy: ScanPolicy,
    scanner: Scanner,
    label: String,
}

impl LocalDecider {
    pub fn new(
        engine: Box<dyn Evaluate>,
        audit: Box<dyn AuditSink>,
        store: Store,
        scan_policy: ScanPolicy,
        label: String,
    ) -> Self {
        Self {
            engine,
            audit,
            store: Mutex::new(store),
            scan_policy,
            scanner: Scanner::new(),
            label,
        }
    }

    /// Waits until every record so far is committed to the audit chain.
    pub fn flush(&self) {
        self.audit.flush();
    }

    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn action(call: &ToolCall) -> Action {
        Action {
            agent: call.agent.clone(),
            uid: call.uid,
            pid: call.pid,
            object: Object::Mcp {
                server: call.server.clone(),
                tool: call.tool.clone(),
                args: call.args.clone(),
            },
        }
    }

    fn append(
        &self,
        body: Body,
        verdict: Option<Verdict>,
        now: SystemTime,
    ) -> Result<(), DecideError> {
        let event = Event {
            seq: 0,
            ts: OffsetDateTime::from(now),
            body,
            verdict,
        };
        self.audit.append(event).map_err(DecideError::Audit)
    }

    fn call_body(&self, call: &ToolCall, outcome: &str) -> Body {
        let mut args = call.args.clone();
        self.scanner.redact_value(&mut args);
        Body::McpCall {
            process: ProcessInfo {
                pid: call.pid,
                ppid: 0,
                uid: call.uid,
                comm: "sentinel-mcp".into(),
                exe: String::new(),
                agent: call.agent.clone(),
            },
            server: call.server.clone(),
            tool: call.tool.clone(),
            args,
            outcome: Some(outcome.into()),
        }
    }
}

impl Decider for LocalDecider {
    fn describe(&self) -> String {
        self.label.clone()
    }

    fn decide(&self, call: &ToolCall, now: SystemTime) -> Result<Verdict, DecideError> {
        let mut verdict = self.engine.evaluate(&Self::action(call), now);
        let outcome = match verdict.action {
            Decision::Allow | Decision::LogOnly => "forwarded",
            Decision::Deny => "denied",
            Decision::Ask => "ask",
        };
        verdict.enforced = verdict.action != Decision::LogOnly;
        self.append(self.call_body(call, outcome), Some(verdict.clone()), now)?;
        Ok(verdict)
    }

    fn decide_listing(&self, probe: &ToolCall, now: SystemTime) -> Result<Verdict, DecideError> {
        Ok(self.engine.evaluate_quietly(&Self::action(probe), now))
    }

    fn record(&self, record: CallRecord, now: SystemTime) -> Result<(), DecideError> {
        self.append(
            self.call_body(&record.call, &record.outcome),
            Some(record.verdict),
            now,
        )
    }

    fn alert(&self, alert: ProxyAlert, now: SystemTime) -> Result<(), DecideError> {
        let body = Body::Alert {
            severity: alert.severity,
            category: alert.category,
            reason: alert.reason,
            related: Vec::new(),
        };
        self.append(body, None, now)
    }

    fn server_outcome(&self, server: &str, ok: bool, now: SystemTime) {
        self.engine.server_outcome(server, ok, now);
    }

    fn check_tools(
        &self,
        server: &str,
        tools: &[Value],
        last_page: bool,
        now: SystemTime,
    ) -> Result<Vec<(String, PinStatus)>, DecideError> {
        Ok(self.store().check_tools(server, tools, last_page, now)?)
    }

    fn scan_policy(&self) -> ScanPolicy {
        self.scan_policy
    }

    fn take_ask(&self, binding: &CallBinding, now: SystemTime) -> Result<bool, DecideError> {
        Ok(self.store().take_ask(binding, now)?)
    }

    fn request_ask(
        &self,
        binding: &CallBinding,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, DecideError> {
        Ok(self.store().request_ask(binding, ttl, now)?)
    }
}
