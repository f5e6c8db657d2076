//! The daemon link: both halves of the Unix socket over which a proxy (run
//! as the agent's user) asks the daemon (root) for verdicts.
//!
//! Wire format: newline-delimited JSON, one [`DaemonRequest`] per line from
//! the proxy, one [`DaemonResponse`] per line back, in order. The daemon
//! identifies the caller by `SO_PEERCRED` and overwrites every identity
//! field of the request with what the kernel says; the proxy cannot claim to
//! be another user or agent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sentinel_policy::Verdict;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixListener;

use crate::decider::{CallRecord, DecideError, Decider, ProxyAlert, ToolCall};
use crate::scan::McpSettings;
use crate::store::{CallBinding, PinStatus};

/// The socket's file name inside the state directory.
pub const SOCKET_NAME: &str = "mcp.sock";
/// Longest request line the daemon accepts (a `tools/list` can be large).
pub const MAX_REQUEST: usize = 8 * 1024 * 1024;

/// The socket path for a state directory (`/run/sentinel/mcp.sock`).
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join(SOCKET_NAME)
}

fn yes() -> bool {
    true
}

/// The caller, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// One request from a proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum DaemonRequest {
    Hello,
    Decide {
        call: ToolCall,
    },
    DecideListing {
        call: ToolCall,
    },
    Record {
        record: CallRecord,
    },
    Alert {
        alert: ProxyAlert,
    },
    ServerOutcome {
        server: String,
        ok: bool,
    },
    CheckTools {
        server: String,
        tools: Vec<Value>,
        /// False while more pages (`nextCursor`) follow.
        #[serde(default = "yes")]
        last_page: bool,
    },
    ScanPolicy,
    TakeAsk {
        binding: CallBinding,
    },
    RequestAsk {
        binding: CallBinding,
        ttl_secs: u64,
        /// The exact canonical text of the arguments: the daemon digests
        /// it and shows it (redacted) to the operator.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args_text: Option<String>,
    },
    /// Whether a tool has an approved pin (a call to a tool the proxy's
    /// session has not seen listed).
    ToolApproved {
        server: String,
        tool: String,
    },
}

/// One answer from the daemon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonResponse {
    Hello {
        daemon: String,
    },
    Verdict(Verdict),
    Done,
    Pins(Vec<(String, PinStatus)>),
    /// The `[mcp]` settings (named for the first two it carried).
    ScanPolicy(McpSettings),
    Taken(bool),
    AskId(String),
    Error(String),
}

/// What the daemon mounts behind the socket.
pub trait DecisionHandler: Send + Sync {
    fn handle(&self, peer: &PeerCred, request: DaemonRequest) -> DaemonResponse;
}

/// Maps a socket peer to its agent name (the daemon's agent table).
pub type AgentOf = Box<dyn Fn(&PeerCred) -> Option<String> + Send + Sync>;

/// A [`DecisionHandler`] over any [`Decider`] (in the daemon: a
/// [`crate::LocalDecider`] sharing the daemon's engine and audit log) that
/// binds every request to the peer's kernel identity. `agent_of` maps the
/// peer to its agent name (the daemon's `--agent NAME=UID` table); the
/// proxy's own `--agent` claim is ignored. Times come from the daemon's
/// clock; the proxy's clock is never on the wire.
pub struct PeerBoundHandler {
    decider: Arc<dyn Decider>,
    agent_of: AgentOf,
    clock: Arc<dyn crate::decider::Clock>,
}

impl PeerBoundHandler {
    pub fn new(
        decider: Arc<dyn Decider>,
        agent_of: AgentOf,
        clock: Arc<dyn crate::decider::Clock>,
    ) -> Self {
        Self {
            decider,
            agent_of,
            clock,
        }
    }

    fn bind(&self, peer: &PeerCred, call: &mut ToolCall) {
        call.uid = peer.uid;
        call.pid = peer.pid.and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
        call.agent = (self.agent_of)(peer);
    }
}

impl DecisionHandler for PeerBoundHandler {
    fn handle(&self, peer: &PeerCred, request: DaemonRequest) -> DaemonResponse {
        let now = self.clock.now();
        let d = &self.decider;
        let result: Result<DaemonResponse, DecideError> = match request {
            DaemonRequest::Hello => Ok(DaemonResponse::Hello {
                daemon: d.describe(),
            }),
            DaemonRequest::Decide { mut call, .. } => {
                self.bind(peer, &mut call);
                d.decide(&call, now).map(DaemonResponse::Verdict)
            }
            DaemonRequest::DecideListing { mut call, .. } => {
                self.bind(peer, &mut call);
                d.decide_listing(&call, now).map(DaemonResponse::Verdict)
            }
            DaemonRequest::Record { mut record, .. } => {
                self.bind(peer, &mut record.call);
                d.record(record, now).map(|()| DaemonResponse::Done)
            }
            DaemonRequest::Alert { mut alert, .. } => {
                alert.reason = format!(
                    "{} (reported by the MCP proxy of uid {})",
                    alert.reason, peer.uid
                );
                d.alert(alert, now).map(|()| DaemonResponse::Done)
            }
            DaemonRequest::ServerOutcome { server, ok, .. } => {
                d.server_outcome(&server, ok, now);
                Ok(DaemonResponse::Done)
            }
            DaemonRequest::CheckTools {
                server,
                tools,
                last_page,
            } => d
                .check_tools(&server, &tools, last_page, now)
                .map(DaemonResponse::Pins),
            DaemonRequest::ScanPolicy => Ok(DaemonResponse::ScanPolicy(d.settings())),
            DaemonRequest::ToolApproved { server, tool } => d
                .tool_approved(&server, &tool, now)
                .map(DaemonResponse::Taken),
            DaemonRequest::TakeAsk { mut binding, .. } => {
                binding.agent = (self.agent_of)(peer);
                d.take_ask(&binding, now).map(DaemonResponse::Taken)
            }
            DaemonRequest::RequestAsk {
                mut binding,
                ttl_secs,
                args_text,
            } => {
                binding.agent = (self.agent_of)(peer);
                d.request_ask(
                    &binding,
                    args_text.as_deref(),
                    Duration::from_secs(ttl_secs.min(86_400)),
                    now,
                )
                .map(DaemonResponse::AskId)
            }
        };
        result.unwrap_or_else(|e| DaemonResponse::Error(e.to_string()))
    }
}

/// Binds the decision socket at `path`, replacing a stale one, with mode
/// 0666 so watched users can connect (the daemon identifies them by
/// SO_PEERCRED, not by who may open the socket).
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Serves proxies on `listener` until it fails; one task per connection.
pub async fn serve_decisions(listener: UnixListener, handler: Arc<dyn DecisionHandler>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("sentinel: MCP decision socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = Arc::clone(&handler);
        tokio::spawn(async move {
            let Ok(cred) = stream.peer_cred() else {
                return; // no kernel identity, no service
            };
            let peer = PeerCred {
                uid: cred.uid(),
                gid: cred.gid(),
                pid: cred.pid(),
            };
            let (read, mut write) = stream.into_split();
            let mut reader =
                crate::framing::LineReader::new(tokio::io::BufReader::new(read), MAX_REQUEST);
            while let Ok(Some(frame)) = reader.next_frame().await {
                let response = match frame {
                    crate::framing::Frame::TooLong => {
                        DaemonResponse::Error("request too long".into())
                    }
                    crate::framing::Frame::Line(line) => match serde_json::from_slice(&line) {
                        Ok(request) => {
                            let handler = Arc::clone(&handler);
                            tokio::task::spawn_blocking(move || handler.handle(&peer, request))
                                .await
                                .unwrap_or_else(|e| {
                                    DaemonResponse::Error(format!("handler failed: {e}"))
                                })
                        }
                        Err(e) => DaemonResponse::Error(format!("bad request: {e}")),
                    },
                };
                let mut line = serde_json::to_vec(&response)
                    .unwrap_or_else(|_| br#"{"error":"unserializable response"}"#.to_vec());
                line.push(b'\n');
                if write.write_all(&line).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The proxy's half: a [`Decider`] that asks the daemon.
///
/// Verdicts, pin checks and approvals wait for their answer. What only
/// informs the daemon (a call's outcome for the audit chain and the
/// breaker) is written without waiting: its answer is read, and an error
/// in it reported, before the next request that waits — the daemon
/// answers in order, so the link stays in step and a call's result is not
/// held up by an audit round trip.
pub struct DaemonDecider {
    path: PathBuf,
    conn: Mutex<Option<Link>>,
    timeout: Duration,
    daemon: String,
}

struct Link {
    stream: BufReader<StdUnixStream>,
    /// Requests written without waiting whose answers are still unread.
    unanswered: usize,
}

impl Link {
    /// Reads the answers of the requests sent without waiting; errors in
    /// them are reported (the call they belong to is long answered).
    fn catch_up(&mut self) -> std::io::Result<()> {
        while self.unanswered > 0 {
            let mut answer = String::new();
            if self.stream.read_line(&mut answer)? == 0 {
                return Err(std::io::Error::other("connection closed"));
            }
            self.unanswered -= 1;
            if let Ok(DaemonResponse::Error(e)) = serde_json::from_str(&answer) {
                eprintln!("sentinel mcp-proxy: the daemon could not record an outcome: {e}");
            }
        }
        Ok(())
    }
}

impl DaemonDecider {
    /// Connects and says hello; fails if nothing answers at `path`.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, DecideError> {
        let mut decider = Self {
            path: path.to_path_buf(),
            conn: Mutex::new(None),
            timeout,
            daemon: String::new(),
        };
        match decider.call(&DaemonRequest::Hello)? {
            DaemonResponse::Hello { daemon } => decider.daemon = daemon,
            other => {
                return Err(DecideError::Daemon(format!(
                    "unexpected hello answer {other:?}"
                )))
            }
        }
        Ok(decider)
    }

    fn open(&self) -> Result<Link, DecideError> {
        let stream = StdUnixStream::connect(&self.path)
            .map_err(|e| DecideError::Daemon(format!("connect {}: {e}", self.path.display())))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .and_then(|()| stream.set_write_timeout(Some(self.timeout)))
            .map_err(|e| DecideError::Daemon(e.to_string()))?;
        Ok(Link {
            stream: BufReader::new(stream),
            unanswered: 0,
        })
    }

    fn line(request: &DaemonRequest) -> Result<Vec<u8>, DecideError> {
        let mut line =
            serde_json::to_vec(request).map_err(|e| DecideError::Daemon(e.to_string()))?;
        line.push(b'\n');
        Ok(line)
    }

    fn call(&self, request: &DaemonRequest) -> Result<DaemonResponse, DecideError> {
        let line = Self::line(request)?;
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // One retry on a fresh connection (the daemon may have restarted).
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(self.open()?);
            }
            let Some(link) = guard.as_mut() else { continue };
            let mut answer = String::new();
            let io = link
                .catch_up()
                .and_then(|()| link.stream.get_mut().write_all(&line))
                .and_then(|()| link.stream.read_line(&mut answer));
            match io {
                Ok(n) if n > 0 => {
                    return match serde_json::from_str(&answer) {
                        Ok(DaemonResponse::Error(e)) => Err(DecideError::Daemon(e)),
                        Ok(response) => Ok(response),
                        Err(e) => Err(DecideError::Daemon(format!("bad answer: {e}"))),
                    };
                }
                Ok(_) | Err(_) if attempt == 0 => *guard = None,
                Ok(_) => return Err(DecideError::Daemon("connection closed".into())),
                Err(e) => return Err(DecideError::Daemon(e.to_string())),
            }
        }
        Err(DecideError::Daemon("no answer".into()))
    }

    /// Sends a request whose answer is only checked later.
    fn tell(&self, request: &DaemonRequest) -> Result<(), DecideError> {
        let line = Self::line(request)?;
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(self.open()?);
            }
            let Some(link) = guard.as_mut() else { continue };
            match link.stream.get_mut().write_all(&line) {
                Ok(()) => {
                    link.unanswered += 1;
                    return Ok(());
                }
                Err(_) if attempt == 0 => *guard = None,
                Err(e) => return Err(DecideError::Daemon(e.to_string())),
            }
        }
        Err(DecideError::Daemon("not sent".into()))
    }
}

impl Drop for DaemonDecider {
    /// Waits for the answers still owed, so every outcome is in the
    /// daemon's hands (and any error reported) before the proxy exits.
    fn drop(&mut self) {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(link) = guard.as_mut() {
            let _ = link.catch_up();
        }
    }
}

fn unexpected(what: &str, got: DaemonResponse) -> DecideError {
    DecideError::Daemon(format!("expected {what}, got {got:?}"))
}

/// The daemon keeps its own clock: the proxy's `now` is not sent.
impl Decider for DaemonDecider {
    fn describe(&self) -> String {
        format!("daemon at {} ({})", self.path.display(), self.daemon)
    }

    fn decide(&self, call: &ToolCall, _now: SystemTime) -> Result<Verdict, DecideError> {
        match self.call(&DaemonRequest::Decide { call: call.clone() })? {
            DaemonResponse::Verdict(v) => Ok(v),
            other => Err(unexpected("a verdict", other)),
        }
    }

    fn decide_listing(&self, probe: &ToolCall, _now: SystemTime) -> Result<Verdict, DecideError> {
        match self.call(&DaemonRequest::DecideListing {
            call: probe.clone(),
        })? {
            DaemonResponse::Verdict(v) => Ok(v),
            other => Err(unexpected("a verdict", other)),
        }
    }

    fn record(&self, record: CallRecord, _now: SystemTime) -> Result<(), DecideError> {
        self.tell(&DaemonRequest::Record { record })
    }

    fn alert(&self, alert: ProxyAlert, _now: SystemTime) -> Result<(), DecideError> {
        match self.call(&DaemonRequest::Alert { alert })? {
            DaemonResponse::Done => Ok(()),
            other => Err(unexpected("done", other)),
        }
    }

    fn server_outcome(&self, server: &str, ok: bool, _now: SystemTime) {
        let _ = self.tell(&DaemonRequest::ServerOutcome {
            server: server.into(),
            ok,
        });
    }

    fn check_tools(
        &self,
        server: &str,
        tools: &[Value],
        last_page: bool,
        _now: SystemTime,
    ) -> Result<Vec<(String, PinStatus)>, DecideError> {
        match self.call(&DaemonRequest::CheckTools {
            server: server.into(),
            tools: tools.to_vec(),
            last_page,
        })? {
            DaemonResponse::Pins(p) if p.len() == tools.len() => Ok(p),
            other => Err(unexpected("one pin status per tool", other)),
        }
    }

    fn tool_approved(
        &self,
        server: &str,
        tool: &str,
        _now: SystemTime,
    ) -> Result<bool, DecideError> {
        match self.call(&DaemonRequest::ToolApproved {
            server: server.into(),
            tool: tool.into(),
        })? {
            DaemonResponse::Taken(t) => Ok(t),
            other => Err(unexpected("taken", other)),
        }
    }

    fn settings(&self) -> McpSettings {
        match self.call(&DaemonRequest::ScanPolicy) {
            Ok(DaemonResponse::ScanPolicy(p)) => p,
            // Fail closed: block what cannot be judged, and only the
            // operator approves.
            _ => McpSettings {
                secrets: crate::scan::FindingAction::Block,
                injection: crate::scan::FindingAction::Block,
                ..McpSettings::default()
            },
        }
    }

    fn take_ask(&self, binding: &CallBinding, _now: SystemTime) -> Result<bool, DecideError> {
        match self.call(&DaemonRequest::TakeAsk {
            binding: binding.clone(),
        })? {
            DaemonResponse::Taken(t) => Ok(t),
            other => Err(unexpected("taken", other)),
        }
    }

    fn request_ask(
        &self,
        binding: &CallBinding,
        args_text: Option<&str>,
        ttl: Duration,
        _now: SystemTime,
    ) -> Result<String, DecideError> {
        match self.call(&DaemonRequest::RequestAsk {
            binding: binding.clone(),
            ttl_secs: ttl.as_secs(),
            args_text: args_text.map(str::to_owned),
        })? {
            DaemonResponse::AskId(id) => Ok(id),
            other => Err(unexpected("an approval id", other)),
        }
    }
}
