//! The operator's control path: a root-only Unix socket in the state
//! directory (`control.sock`), one JSON request line and one JSON response
//! line per connection. The server checks the peer's UID from the kernel
//! (SO_PEERCRED) as well as the socket's file mode, so a watched agent can
//! neither change the mode nor approve its own actions. This module owns the
//! request vocabulary and the framing; `control_ops` carries requests out.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sentinel_policy::{AnomalyThresholds, Mode, QuarantineTarget};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};
use tokio::net::UnixListener;

pub const SOCKET_NAME: &str = "control.sock";

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "kebab-case")]
pub enum Request {
    Status,
    ModeGet,
    ModeSet {
        mode: Mode,
    },
    /// A held kernel action (a number) or an MCP approval id.
    Approve {
        id: String,
    },
    Deny {
        id: String,
    },
    /// Loads the policy directory `dir` and, when it is valid, makes it
    /// the running policy (kernel maps recompiled); a bad directory or a
    /// failed recompile keeps the old policy running.
    Reload {
        dir: PathBuf,
    },
    /// Everything about the running policy: files, rules, quarantines,
    /// anomaly thresholds, MCP circuit breakers.
    PolicyInfo,
    /// The verdict the running engine would give `action` now (its policy,
    /// mode, quarantines and homes), without rate-limit or anomaly side
    /// effects.
    Evaluate {
        action: sentinel_policy::Action,
    },
    /// Quarantines a target (replacing one on the same target); the kernel
    /// maps follow.
    QuarantineAdd {
        target: QuarantineTarget,
        /// Lifted automatically after this many seconds; `None`: until
        /// lifted.
        #[serde(default)]
        expires_in_seconds: Option<u64>,
        reason: String,
    },
    QuarantineList,
    QuarantineLift {
        target: QuarantineTarget,
    },
    /// Lifts a quarantine by the id `quarantine list` shows.
    QuarantineLiftId {
        id: i64,
    },
    ThresholdsGet,
    ThresholdsSet {
        thresholds: AnomalyThresholds,
    },
    /// The newest recorded events after `after` (a `seq`), at most
    /// `limit`, only those whose JSON contains `filter` (`sentinel top`).
    Events {
        #[serde(default)]
        after: u64,
        #[serde(default)]
        filter: Option<String>,
        limit: usize,
    },
    /// The newest alerts.
    Alerts {
        limit: usize,
    },
    AlertAck {
        id: i64,
    },
    AlertResolve {
        id: i64,
    },
    /// MCP approvals (tool pins, asks) waiting for an operator.
    McpPending,
    /// Identity files: their baselines and whether they match.
    BaselineList,
    /// The file as it is now becomes its baseline.
    BaselineAccept {
        path: PathBuf,
    },
    /// The baseline's shadow copy goes back in place.
    BaselineRestore {
        path: PathBuf,
    },
    /// Response playbooks: every response since start.
    RespondList,
    /// Carries out (approve) or skips (deny) a response waiting for the
    /// operator.
    RespondDecide {
        id: u64,
        approve: bool,
    },
    /// Reverses a response that was carried out.
    RespondUndo {
        id: u64,
    },
    /// A record from the LLM proxy (`sentinel llm-proxy`, run by root):
    /// an `llm_call` or an `llm-*` alert, appended to the audit chain.
    LlmRecord {
        event: Box<sentinel_audit::Event>,
    },
    /// Bytes and packets per agent and host over the last `hours`.
    Bandwidth {
        hours: f64,
        /// Only this agent.
        #[serde(default)]
        agent: Option<String>,
        /// Hosts per agent.
        limit: usize,
    },
}

/// Who sent a request, as the kernel reports it (SO_PEERCRED): recorded
/// with every change it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "uid {}", self.uid)?;
        if let Some(pid) = self.pid {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            write!(f, " (pid {pid}")?;
            if !comm.trim().is_empty() {
                write!(f, " {}", comm.trim())?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

pub type Handler = Arc<dyn Fn(Request, &Caller) -> Value + Send + Sync>;

pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

/// The bound control socket; its file is removed when this is dropped, on
/// every exit path.
pub struct ControlSocket {
    pub listener: Option<UnixListener>,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket (replacing a stale one) with mode 0600.
pub fn bind(state_dir: &Path) -> std::io::Result<ControlSocket> {
    let path = socket_path(state_dir);
    if StdUnixStream::connect(&path).is_ok() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            format!(
                "another sentinel is already running (its control socket {} answers); stop it or use another --state-dir",
                path.display()
            ),
        ));
    }
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let socket = ControlSocket {
        listener: Some(listener),
        path: path.clone(),
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(socket)
}

/// Serves requests until the task is dropped.
pub async fn serve(listener: UnixListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let caller = stream.peer_cred().ok().map(|c| Caller {
                uid: c.uid(),
                pid: c.pid(),
            });
            let root = caller.is_some_and(|c| c.uid == 0);
            let (read, mut write) = stream.into_split();
            let mut lines = TokioBufReader::new(read).lines();
            let Ok(Some(line)) = lines.next_line().await else {
                return;
            };
            let response = if !root {
                serde_json::json!({"ok": false, "error": "the control socket is for root only"})
            } else {
                match (serde_json::from_str::<Request>(&line), caller) {
                    (Ok(req), Some(caller)) => handler(req, &caller),
                    (Ok(_), None) => {
                        serde_json::json!({"ok": false, "error": "the caller could not be identified"})
                    }
                    (Err(e), _) => {
                        serde_json::json!({"ok": false, "error": format!("bad request: {e}")})
                    }
                }
            };
            let mut out = response.to_string();
            out.push('\n');
            let _ = write.write_all(out.as_bytes()).await;
        });
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("sentinel is not running (no answer on {path}: {source}); start it with `sudo sentinel run --uid UID`")]
    NotRunning {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the daemon's answer could not be read: {0}")]
    BadAnswer(String),
}

/// Sends one request and returns the daemon's answer.
pub fn call(state_dir: &Path, request: &Request) -> Result<Value, ClientError> {
    let path = socket_path(state_dir);
    let not_running = |source| ClientError::NotRunning {
        path: path.display().to_string(),
        source,
    };
    let mut stream = StdUnixStream::connect(&path).map_err(not_running)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(not_running)?;
    let mut line =
        serde_json::to_string(request).map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(not_running)?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(|e| ClientError::BadAnswer(e.to_string()))?;
    serde_json::from_str(&answer).map_err(|e| ClientError::BadAnswer(e.to_string()))
}
