//! The event record: one line of the live JSONL stream, one audit record,
//! one line of `sentinel audit export --format jsonl`.
//!
//! Field names are a contract with downstream tools (see
//! shared/docs/architecture.md): `seq`, `ts`, `kind`, `pid`, `ppid`, `uid`,
//! `comm`, `exe`, `agent`; exec `argv`; open `path`, `flags`; connect
//! `addr`, `port`, `family`; MCP `server`, `tool`, `args`; `verdict`;
//! alerts `severity`, `category`, `reason`, `related`.
//!
//! Paths are the objects the kernel resolved (after symlinks, `..`,
//! relative paths and descriptors); what the process typed is kept in
//! `path_requested` when it differs.

use sentinel_policy::Verdict;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// One record of the event stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Monotonic sequence number, assigned by the daemon (or the
    /// standalone proxy) when the event is recorded.
    pub seq: u64,
    /// RFC 3339 with sub-second precision.
    #[serde(with = "time::serde::rfc3339")]
    pub ts: OffsetDateTime,
    #[serde(flatten)]
    pub body: Body,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Who did it: the process, from the kernel and /proc.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub agent: Option<String>,
}

/// What happened; `kind` is the tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    Exec {
        #[serde(flatten)]
        process: ProcessInfo,
        argv: Vec<String>,
        /// True when argv was cut to fit the kernel's bounds.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        argv_truncated: bool,
        /// The filename as passed to execve, when it differs from `exe`
        /// (the binary the kernel resolved and runs).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_requested: Option<String>,
    },
    Open {
        #[serde(flatten)]
        process: ProcessInfo,
        /// The resolved path of the object opened.
        path: String,
        /// The path as the process passed it, when it differs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_requested: Option<String>,
        /// The open(2) flags, as the kernel saw them.
        flags: u32,
    },
    /// A change to the file system: `op` is `rename`, `link`, `unlink`,
    /// `rmdir`, `truncate`, `chmod`, `chown`, `mkdir`, `symlink` or
    /// `mknod`; `path` the object changed or the name created; `source`
    /// rename's and link's other name.
    FileChange {
        #[serde(flatten)]
        process: ProcessInfo,
        op: String,
        path: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        path_requested: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_requested: Option<String>,
    },
    Connect {
        #[serde(flatten)]
        process: ProcessInfo,
        addr: String,
        port: u16,
        /// `inet` or `inet6`.
        family: String,
    },
    Exit {
        #[serde(flatten)]
        process: ProcessInfo,
    },
    McpCall {
        #[serde(flatten)]
        process: ProcessInfo,
        server: String,
        tool: String,
        /// Redacted arguments.
        args: serde_json::Value,
        /// What happened after the verdict (`forwarded`, `error`, `result`, ...).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outcome: Option<String>,
    },
    /// One request through the LLM API proxy (`sentinel llm-proxy`):
    /// which agent called which model, how big the request and the answer
    /// were, and what was done with it. The process is the proxy's.
    LlmCall {
        #[serde(flatten)]
        process: ProcessInfo,
        /// The upstream host the request was (or would have been) sent to.
        upstream: String,
        /// `chat.completions`, `responses`, `messages`, ...
        endpoint: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        stream: bool,
        request_bytes: u64,
        response_bytes: u64,
        /// The HTTP status the agent received.
        status: u16,
        /// `forwarded`, `refused`, `blocked-secret`, `redacted`,
        /// `blocked-injection`, `upstream-error`, `unauthorized`, ...
        outcome: String,
        /// Secret kinds found in the request, injection markers in the
        /// answer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        findings: Vec<String>,
    },
    Alert {
        /// `info`, `warning` or `critical`.
        severity: String,
        category: String,
        reason: String,
        /// `seq` numbers of the events this alert links.
        related: Vec<u64>,
    },
    /// Events the kernel could not deliver (ring buffer full); never silent.
    Lost { count: u64 },
    /// A mode change, with who asked for it.
    ModeChange {
        from: String,
        to: String,
        by: String,
    },
}

impl Event {
    /// The `kind` string of this record.
    pub fn kind(&self) -> &'static str {
        match self.body {
            Body::Exec { .. } => "exec",
            Body::Open { .. } => "open",
            Body::FileChange { .. } => "file_change",
            Body::Connect { .. } => "connect",
            Body::Exit { .. } => "exit",
            Body::McpCall { .. } => "mcp_call",
            Body::LlmCall { .. } => "llm_call",
            Body::Alert { .. } => "alert",
            Body::Lost { .. } => "lost",
            Body::ModeChange { .. } => "mode_change",
        }
    }

    /// The process fields, for kinds that have them.
    pub fn process(&self) -> Option<&ProcessInfo> {
        match &self.body {
            Body::Exec { process, .. }
            | Body::Open { process, .. }
            | Body::FileChange { process, .. }
            | Body::Connect { process, .. }
            | Body::Exit { process }
            | Body::McpCall { process, .. }
            | Body::LlmCall { process, .. } => Some(process),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_event_has_contract_field_names() {
        let ev = Event {
            seq: 7,
            ts: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap(),
            body: Body::Exec {
                process: ProcessInfo {
                    pid: 10,
                    ppid: 1,
                    uid: 1000,
                    comm: "ls".into(),
                    exe: "/usr/bin/ls".into(),
                    agent: Some("claude".into()),
                },
                argv: vec!["ls".into(), "-l".into()],
                argv_truncated: false,
                path_requested: None,
            },
            verdict: None,
        };
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(
            json,
            r#"{"seq":7,"ts":"2023-11-14T22:13:20.123456789Z","kind":"exec","pid":10,"ppid":1,"uid":1000,"comm":"ls","exe":"/usr/bin/ls","agent":"claude","argv":["ls","-l"]}"#
        );
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ev);
    }
}
