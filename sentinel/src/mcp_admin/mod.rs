//! `sentinel mcp-admin`: the operator's management tools as an MCP server
//! over stdio (newline-delimited JSON-RPC 2.0, protocol revisions
//! 2025-06-18 and 2025-11-25). Root only: it edits the policy, talks to the
//! daemon's root-only control socket and reads the audit database. These
//! tools exist only here, never behind `mcp-proxy`, so a watched agent
//! cannot rewrite its own firewall.
//!
//! This module owns the protocol loop; `tools` owns the 36 `sentinel_*`
//! tools and `rules` the rule specs and the admin policy file.

mod rules;
mod tools;

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Value};

const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18"];
/// A request line longer than this is refused (the tools take small
/// arguments; an import is the largest).
const MAX_LINE: usize = 8 << 20;

/// Where the tools find the daemon, the audit database and the policy.
pub struct Context {
    pub state_dir: PathBuf,
    pub db: PathBuf,
    /// `--policy DIR`: the directory the daemon runs from, when given.
    pub policy: Option<PathBuf>,
}

/// Runs the server on stdin/stdout until stdin closes.
pub fn run(state_dir: &Path, db: &Path, policy: Option<&Path>) -> ExitCode {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("sentinel mcp-admin: the operator's tools are for root only (they change policy and read the audit trail); run it with sudo");
        return ExitCode::from(2);
    }
    let ctx = Context {
        state_dir: state_dir.to_path_buf(),
        db: db.to_path_buf(),
        policy: policy.map(Path::to_path_buf),
    };
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let mut stdout = std::io::stdout();
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return ExitCode::SUCCESS,
            Ok(_) => {}
            Err(e) => {
                eprintln!("sentinel mcp-admin: reading stdin failed: {e}");
                return ExitCode::from(2);
            }
        }
        let answer = if line.len() > MAX_LINE {
            // Skip the rest of the over-long line.
            let mut rest = Vec::new();
            let _ = input.read_until(b'\n', &mut rest);
            Some(error_response(Value::Null, -32600, "request line too long"))
        } else {
            handle_line(&ctx, &line)
        };
        if let Some(answer) = answer {
            let mut text = answer.to_string();
            text.push('\n');
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::SUCCESS;
            }
        }
    }
}

fn error_response(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// One message in, at most one answer out (none for notifications).
fn handle_line(ctx: &Context, line: &[u8]) -> Option<Value> {
    let text = match std::str::from_utf8(line) {
        Ok(t) => t.trim(),
        Err(_) => return Some(error_response(Value::Null, -32700, "invalid UTF-8")),
    };
    if text.is_empty() {
        return None;
    }
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(error_response(
                Value::Null,
                -32700,
                &format!("parse error: {e}"),
            ))
        }
    };
    if msg.is_array() {
        return Some(error_response(
            Value::Null,
            -32600,
            "JSON-RPC batches are not supported",
        ));
    }
    let Some(method) = msg.get("method").and_then(Value::as_str) else {
        // A response (we send no requests) or garbage: nothing to answer
        // unless it carries an id.
        return msg
            .get("id")
            .filter(|_| msg.get("result").is_none() && msg.get("error").is_none())
            .map(|id| error_response(id.clone(), -32600, "not a request"));
    };
    let id = msg.get("id").cloned()?; // notifications get no answer
    let params = msg.get("params").cloned().unwrap_or(json!({}));
    let result = match method {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = if PROTOCOL_VERSIONS.contains(&asked) {
                asked
            } else {
                PROTOCOL_VERSIONS[0]
            };
            Ok(json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "sentinel-mcp-admin", "version": env!("CARGO_PKG_VERSION")},
                "instructions": "Sentinel's operator tools: rules, monitor, audit, policy, alerts, quarantine. Changes apply to the running daemon and are recorded in the audit chain."
            }))
        }
        "ping" => Ok(json!({})),
        "tools/list" => Ok(json!({"tools": tools::definitions()})),
        "tools/call" => {
            let name = params.get("name").and_then(Value::as_str).unwrap_or("");
            let args = params.get("arguments").cloned().unwrap_or(json!({}));
            if !tools::exists(name) {
                Err((-32602, format!("unknown tool `{name}`")))
            } else {
                Ok(tool_result(tools::call(ctx, name, &args)))
            }
        }
        other => Err((-32601, format!("method `{other}` is not supported"))),
    };
    Some(match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err((code, message)) => error_response(id, code, &message),
    })
}

/// A tool's outcome as an MCP tool result: the JSON as text and as
/// `structuredContent`, or `isError` with one line saying what is wrong.
fn tool_result(outcome: Result<Value, String>) -> Value {
    match outcome {
        Ok(value) => {
            let text = serde_json::to_string_pretty(&value).unwrap_or_default();
            let structured = if value.is_object() {
                value
            } else {
                json!({"result": value})
            };
            json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": false})
        }
        Err(message) => {
            json!({"content": [{"type": "text", "text": message}], "isError": true})
        }
    }
}
