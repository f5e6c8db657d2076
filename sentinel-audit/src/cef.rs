//! ArcSight CEF:0 lines for events and checkpoints: header escaping,
//! extension escaping, and the severity mapping from verdict, risk and
//! alert severity.
//!
//! Format: `CEF:0|Sentinel|sentinel|VERSION|signatureId|name|severity|ext`.
//! Header fields escape `\` and `|` (newlines are not allowed there and
//! become spaces); extension values escape `\`, `=`, and encode newline and
//! carriage return as `\n` and `\r`, as the CEF specification requires.

use std::fmt::Write;

use sentinel_policy::Decision;

use crate::checkpoint::Checkpoint;
use crate::event::{Body, Event};
use crate::store::decision_name;

const VENDOR: &str = "Sentinel";
const PRODUCT: &str = "sentinel";
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Escapes a CEF header field.
pub fn escape_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a CEF extension value.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// CEF severity 0–10 of an event: from the alert's severity, or from the
/// verdict (deny 7, ask 5, log-only 2, allow 1, at least 5 when the mode
/// raised an alert) raised to risk/10; 1 for plain observations.
pub fn severity(event: &Event) -> u8 {
    match &event.body {
        Body::Alert { severity, .. } => match severity.as_str() {
            "critical" => 9,
            "warning" => 6,
            "info" => 3,
            _ => 5,
        },
        Body::Lost { .. } => 7,
        Body::ModeChange { .. } => 5,
        _ => match &event.verdict {
            None => 1,
            Some(verdict) => {
                let mut base = match verdict.action {
                    Decision::Allow => 1,
                    Decision::LogOnly => 2,
                    Decision::Ask => 5,
                    Decision::Deny => 7,
                };
                if verdict.alert {
                    base = base.max(5);
                }
                base.max(verdict.risk.min(100) / 10).min(10)
            }
        },
    }
}

/// Builds the extension part: `key=value` pairs separated by spaces.
struct Extension(String);

impl Extension {
    fn put(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        let _ = write!(self.0, "{key}={}", escape_value(&value.to_string()));
        self
    }

    /// A custom string/number field with its label.
    fn labelled(&mut self, slot: &str, label: &str, value: impl std::fmt::Display) -> &mut Self {
        self.put(&format!("{slot}Label"), label).put(slot, value)
    }
}

fn header(signature: &str, name: &str, severity: u8, extension: &str) -> String {
    format!(
        "CEF:0|{VENDOR}|{PRODUCT}|{VERSION}|{}|{}|{severity}|{extension}",
        escape_header(signature),
        escape_header(name)
    )
}

/// One event as a CEF line (no trailing newline).
pub fn event_line(event: &Event) -> String {
    let mut ext = Extension(String::new());
    ext.put("rt", event.ts.unix_timestamp_nanos() / 1_000_000)
        .put("externalId", event.seq)
        .put("cat", event.kind());
    if let Some(p) = event.process() {
        ext.put("spid", p.pid)
            .labelled("cn3", "ppid", p.ppid)
            .put("suid", p.uid)
            .put("sproc", &p.comm)
            .labelled("cs3", "exe", &p.exe);
        if let Some(agent) = &p.agent {
            ext.put("suser", agent);
        }
    }
    let mut signature = event.kind().to_string();
    let mut name = None;
    match &event.body {
        Body::Exec { argv, .. } => {
            let argv = serde_json::to_string(argv).unwrap_or_default();
            ext.labelled("cs4", "argv", argv);
        }
        Body::Open { path, flags, .. } => {
            let file_name = path.rsplit('/').next().unwrap_or(path);
            ext.put("filePath", path)
                .put("fname", file_name)
                .labelled("cn2", "flags", flags);
        }
        Body::FileChange {
            op, path, source, ..
        } => {
            let file_name = path.rsplit('/').next().unwrap_or(path);
            ext.put("filePath", path)
                .put("fname", file_name)
                .labelled("cs5", "op", op);
            if let Some(source) = source {
                ext.put("oldFilePath", source);
            }
        }
        Body::Connect {
            addr, port, family, ..
        } => {
            ext.put("dst", addr)
                .put("dpt", port)
                .labelled("cs5", "family", family);
        }
        Body::Exit { .. } => {}
        Body::McpCall {
            server,
            tool,
            args,
            outcome,
            ..
        } => {
            ext.labelled("cs5", "mcpServer", server)
                .labelled("cs6", "mcpTool", tool)
                .labelled("cs4", "args", args);
            if let Some(outcome) = outcome {
                ext.put("outcome", outcome);
            }
        }
        Body::LlmCall {
            upstream,
            endpoint,
            model,
            stream,
            request_bytes,
            response_bytes,
            status,
            outcome,
            findings,
            ..
        } => {
            ext.labelled("cs5", "llmUpstream", upstream)
                .labelled("cs6", "llmEndpoint", endpoint)
                .labelled("cs4", "model", model.as_deref().unwrap_or(""))
                .put("out", request_bytes)
                .put("in", response_bytes)
                .labelled("cn2", "httpStatus", status)
                .labelled("flexString1", "stream", stream)
                .put("outcome", outcome);
            if !findings.is_empty() {
                ext.put("msg", findings.join(","));
            }
        }
        Body::Alert {
            severity,
            category,
            reason,
            related,
        } => {
            signature = format!("alert:{category}");
            name = Some(reason.clone());
            let related: Vec<String> = related.iter().map(u64::to_string).collect();
            ext.labelled("cs5", "category", category)
                .labelled("cs6", "alertSeverity", severity)
                .labelled("cs4", "related", related.join(","))
                .put("msg", reason);
        }
        Body::Lost { count } => {
            name = Some(format!("{count} events lost"));
            ext.put("cnt", count);
        }
        Body::ModeChange { from, to, by } => {
            name = Some(format!("mode {from} -> {to}"));
            ext.labelled("cs5", "fromMode", from)
                .labelled("cs6", "toMode", to)
                .put("suser", by);
        }
    }
    if let Some(verdict) = &event.verdict {
        let action = decision_name(verdict.action);
        ext.put("act", action)
            .labelled("cn1", "risk", verdict.risk)
            .labelled("cs2", "enforced", verdict.enforced)
            .put("reason", &verdict.reason);
        if let Some(rule) = &verdict.rule {
            ext.labelled("cs1", "rule", rule);
        }
        if name.is_none() {
            name = Some(format!("{} {action}", event.kind()));
        }
    }
    let name = name.unwrap_or_else(|| event.kind().to_string());
    header(&signature, &name, severity(event), &ext.0)
}

/// A checkpoint as a CEF line (no trailing newline).
pub fn checkpoint_line(checkpoint: &Checkpoint) -> String {
    let mut ext = Extension(String::new());
    ext.put("rt", checkpoint.ts.unix_timestamp_nanos() / 1_000_000)
        .put("externalId", checkpoint.seq)
        .put("cat", "audit_checkpoint")
        .labelled("cs1", "hash", &checkpoint.hash)
        .labelled("cs2", "seal", &checkpoint.seal)
        .labelled("cs3", "db", &checkpoint.db)
        .labelled("cn1", "epoch", checkpoint.epoch);
    header("audit_checkpoint", "audit checkpoint", 1, &ext.0)
}

/// Syslog severity (RFC 5424) for a CEF severity.
pub fn syslog_severity(cef_severity: u8) -> u8 {
    match cef_severity {
        9.. => 2,
        7..=8 => 3,
        5..=6 => 4,
        3..=4 => 5,
        _ => 6,
    }
}
