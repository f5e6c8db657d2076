//! The in-process decision point: the engine, the audit chain and the
//! proxy's SQLite store in one process. Used by the standalone proxy, and
//! by the daemon behind [`crate::daemon::serve_decisions`].

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sentinel_audit::{Body, Event, ProcessInfo};
use sentinel_policy::{Action, Decision, Object, Verdict};
use serde_json::Value;
use time::OffsetDateTime;

use crate::decider::{CallRecord, DecideError, Decided, Decider, ProxyAlert, ToolCall};
use crate::scan::{McpSettings, ScanPolicy, Scanner};
use crate::store::{CallBinding, PinStatus, Store};

/// The verdict engine, as the proxy needs it.
pub trait Evaluate: Send + Sync {
    fn evaluate(&self, action: &Action, now: SystemTime) -> Verdict;
    /// The verdict without side effects (no rate-limit token spent, no
    /// breaker probe, no anomaly baseline update): used to decide whether
    /// a tool is advertised in `tools/list`.
    fn evaluate_quietly(&self, action: &Action, now: SystemTime) -> Verdict;
    /// Feeds the circuit breaker of one caller (`scope`, see
    /// [`sentinel_policy::Engine::caller_scope`]) and server.
    fn server_outcome(&self, scope: &str, server: &str, ok: bool, now: SystemTime);
    /// The policy's `[mcp]` settings.
    fn mcp_settings(&self) -> McpSettings {
        McpSettings::default()
    }
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
    scanner: &'static Scanner,
    label: String,
    processes: Mutex<std::collections::HashMap<u32, (u32, String, String)>>,
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
            scanner: Scanner::shared(),
            label,
            processes: Mutex::new(std::collections::HashMap::new()),
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

    /// The proxy process's parent, name and executable from /proc
    /// (cached; empty when unreadable).
    fn process_of(&self, pid: u32) -> (u32, String, String) {
        let mut cache = self.processes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = cache.get(&pid) {
            return found.clone();
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised comm: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim_end().to_string())
            .unwrap_or_default();
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        if cache.len() >= 1024 {
            cache.clear();
        }
        cache.insert(pid, (ppid, comm.clone(), exe.clone()));
        (ppid, comm, exe)
    }

    fn call_body(&self, call: &ToolCall, outcome: &str) -> Body {
        let mut args = call.args.clone();
        self.scanner.redact_args(&mut args);
        let (ppid, comm, exe) = self.process_of(call.pid);
        Body::McpCall {
            process: ProcessInfo {
                pid: call.pid,
                ppid,
                uid: call.uid,
                comm,
                exe,
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

    fn decide(&self, call: &ToolCall, now: SystemTime) -> Result<Decided, DecideError> {
        let mut verdict = self.engine.evaluate(&Self::action(call), now);
        let outcome = match verdict.action {
            Decision::Allow | Decision::LogOnly => "forwarded",
            Decision::Deny => "denied",
            Decision::Ask => "ask",
        };
        verdict.enforced = verdict.action != Decision::LogOnly;
        self.append(self.call_body(call, outcome), Some(verdict.clone()), now)?;
        Ok(Decided {
            verdict,
            call_id: None,
        })
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

    fn server_outcome(&self, call: &ToolCall, ok: bool, now: SystemTime) {
        let scope = sentinel_policy::Engine::caller_scope(call.agent.as_deref(), call.uid);
        self.engine.server_outcome(&scope, &call.server, ok, now);
    }

    fn check_tools(
        &self,
        server: &str,
        tools: &[Value],
        last_page: bool,
        now: SystemTime,
    ) -> Result<Vec<(String, PinStatus)>, DecideError> {
        let review = self.settings().pin == sentinel_policy::PinMode::Review;
        Ok(self
            .store()
            .check_tools(server, tools, last_page, review, now)?)
    }

    fn tool_approved(
        &self,
        server: &str,
        tool: &str,
        _now: SystemTime,
    ) -> Result<bool, DecideError> {
        Ok(self.store().tool_approved(server, tool)?)
    }

    fn settings(&self) -> McpSettings {
        self.scan_policy.apply(self.engine.mcp_settings())
    }

    fn take_ask(&self, binding: &CallBinding, now: SystemTime) -> Result<bool, DecideError> {
        Ok(self.store().take_ask(binding, now)?)
    }

    fn request_ask(
        &self,
        binding: &CallBinding,
        args_text: Option<&str>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<String, DecideError> {
        let mut binding = binding.clone();
        let detail = args_text.map(|text| {
            // What is approved is what is shown: the digest is of this text.
            binding.args_digest = crate::store::sha256_hex(text.as_bytes());
            match serde_json::from_str::<Value>(text) {
                Ok(mut args) => {
                    self.scanner.redact_args(&mut args);
                    crate::store::canonical_json(&args)
                }
                Err(_) => "(arguments not shown: not JSON)".to_string(),
            }
        });
        Ok(self
            .store()
            .request_ask(&binding, detail.as_deref(), ttl, now)?)
    }
}
