//! What comes back from the server: tool results (and `resources/read`,
//! `prompts/get` results) scanned for secrets and injection markers, and
//! `tools/list` results pinned and filtered.

use std::collections::HashMap;

use serde_json::Value;

use super::*;

/// What scanning a result decided.
enum Inspection {
    Clean,
    /// Redacted in place.
    Changed,
    /// Must not reach the client; why.
    Blocked(String),
}

impl Proxy {
    pub(super) fn on_call_result(
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
            self.decider.server_outcome(call, false, now);
            self.record(call, verdict, "error");
            step.client(raw);
            return;
        };
        self.decider.server_outcome(call, true, now);
        // A result the tool itself marks as failed counts as an error for
        // the anomaly baselines (the server answered, so not the breaker).
        let tool_failed = result.get("isError").and_then(Value::as_bool) == Some(true);
        match self.inspect(&format!("tool `{}`", call.tool), result) {
            Inspection::Clean => {
                self.record(
                    call,
                    verdict,
                    if tool_failed { "tool-error" } else { "result" },
                );
                step.client(raw);
                return;
            }
            Inspection::Changed => self.record(call, verdict, "redacted"),
            Inspection::Blocked(why) => {
                let text = format!("Sentinel blocked the result: {why}");
                *result = tool_error_result(text, modern);
                self.record(call, verdict, "blocked");
            }
        }
        step.client(Value::Object(msg.value).to_string().into_bytes());
    }

    /// A `resources/read` or `prompts/get` result: scanned like a tool
    /// result; a blocked one becomes a JSON-RPC error.
    pub(super) fn on_content_result(
        &self,
        step: &mut Step,
        mut msg: Message,
        raw: Vec<u8>,
        method: &str,
    ) {
        let Some(result) = msg.value.get_mut("result") else {
            step.client(raw);
            return;
        };
        match self.inspect(&format!("`{method}`"), result) {
            Inspection::Clean => step.client(raw),
            Inspection::Changed => step.client(Value::Object(msg.value).to_string().into_bytes()),
            Inspection::Blocked(why) => {
                let id = msg.value.get("id").cloned().unwrap_or(Value::Null);
                step.client(jsonrpc::error_response(
                    Some(&id),
                    jsonrpc::REFUSED,
                    &format!("Sentinel blocked the result: {why}"),
                ));
            }
        }
    }

    /// Scans a result for secrets and injection markers, alerts, and
    /// redacts in place or says it must be blocked, per the scan policy.
    fn inspect(&self, subject: &str, result: &mut Value) -> Inspection {
        let findings = self.scanner.findings(result);
        if findings.is_empty() {
            return Inspection::Clean;
        }
        let policy = self.decider.scan_policy();
        let mut block = Vec::new();
        let mut changed = false;
        if !findings.secrets.is_empty() {
            let what = format!(
                "result of {subject} contains secrets: {}",
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
                "result of {subject} contains prompt-injection markers: {}",
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
        match (block.is_empty(), changed) {
            (false, _) => Inspection::Blocked(block.join("; ")),
            (true, true) => Inspection::Changed,
            (true, false) => Inspection::Clean,
        }
    }

    pub(super) fn on_tools_list(&self, step: &mut Step, mut msg: Message, raw: Vec<u8>) {
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
                call_id: None,
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
