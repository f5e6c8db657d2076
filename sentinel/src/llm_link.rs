//! `sentinel llm-proxy` with the daemon: the proxy's verdicts come from
//! the daemon's live engine (its policy, mode, quarantines) and its
//! records go into the daemon's one audit chain, both over the root-only
//! control socket. Any failure to reach the daemon is a deny.

use std::path::PathBuf;
use std::time::SystemTime;

use sentinel_audit::Event;
use sentinel_llm::Gate;
use sentinel_mcp::{AuditSink, Evaluate};
use sentinel_policy::{Action, Decision, Verdict};

use crate::control::{self, Request};

/// The daemon's engine and audit chain for the LLM proxy; fails when the
/// daemon does not answer.
pub fn gate(state_dir: PathBuf) -> Result<Gate, String> {
    control::call(&state_dir, &Request::ModeGet).map_err(|e| {
        format!("{e}; or run the proxy standalone with --db DB (its own engine and audit chain)")
    })?;
    Ok(Gate {
        engine: Box::new(DaemonEngine(state_dir.clone())),
        audit: Box::new(DaemonAudit(state_dir)),
    })
}

struct DaemonEngine(PathBuf);

impl Evaluate for DaemonEngine {
    fn evaluate(&self, action: &Action, _now: SystemTime) -> Verdict {
        let request = Request::Evaluate {
            action: action.clone(),
        };
        let answer = control::call(&self.0, &request);
        match answer
            .as_ref()
            .ok()
            .and_then(|a| serde_json::from_value::<Verdict>(a["verdict"].clone()).ok())
        {
            Some(verdict) => verdict,
            None => Verdict {
                action: Decision::Deny,
                rule: None,
                reason: format!(
                    "the Sentinel daemon did not give a verdict ({}); failing closed",
                    match answer {
                        Ok(a) => a["error"].as_str().unwrap_or("no verdict").to_string(),
                        Err(e) => e.to_string(),
                    }
                ),
                risk: 100,
                enforced: true,
                alert: true,
                factors: Vec::new(),
            },
        }
    }

    fn evaluate_quietly(&self, action: &Action, now: SystemTime) -> Verdict {
        self.evaluate(action, now)
    }

    fn server_outcome(&self, _scope: &str, _server: &str, _ok: bool, _now: SystemTime) {}
}

struct DaemonAudit(PathBuf);

impl AuditSink for DaemonAudit {
    fn append(&self, event: Event) -> Result<(), String> {
        let answer = control::call(
            &self.0,
            &Request::LlmRecord {
                event: Box::new(event),
            },
        )
        .map_err(|e| e.to_string())?;
        if answer["ok"] == true {
            Ok(())
        } else {
            Err(answer["error"].as_str().unwrap_or("refused").to_string())
        }
    }
}
