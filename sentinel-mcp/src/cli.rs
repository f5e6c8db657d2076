//! `sentinel mcp-proxy`: the arguments and the entry point.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::{socket_path, DaemonDecider};
use crate::decider::{Decider, SystemClock};
use crate::framing::DEFAULT_MAX_LINE;
use crate::proxy::{Proxy, ProxyConfig};
use crate::scan::{FindingAction, ScanPolicy};
use crate::stdio::Target;

/// Run an MCP server behind Sentinel: every tool call is decided by the
/// policy engine and recorded in the audit chain.
#[derive(Debug, Clone, clap::Args)]
pub struct McpProxyArgs {
    /// The agent name recorded for these calls (standalone mode; with a
    /// daemon the agent comes from the caller's UID).
    #[arg(long)]
    pub agent: Option<String>,
    /// The server's name in policy and audit (default: from the command).
    #[arg(long)]
    pub server_name: Option<String>,
    /// Policy directory for standalone mode (default: embedded policy).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// SQLite database for the audit chain, tool pins and approvals
    /// (standalone mode).
    #[arg(long, default_value = "/var/lib/sentinel/sentinel.db")]
    pub db: PathBuf,
    /// Where the daemon's socket (mcp.sock) lives.
    #[arg(long, default_value = "/run/sentinel")]
    pub state_dir: PathBuf,
    /// Audit keys and anchor for standalone mode (default: DB path + ".state").
    #[arg(long)]
    pub audit_state_dir: Option<PathBuf>,
    /// Never ask the daemon; decide in-process.
    #[arg(long)]
    pub standalone: bool,
    /// Longest message accepted from either side, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_LINE)]
    pub max_line: usize,
    /// How long a request may wait for the server, in milliseconds.
    #[arg(long, default_value_t = 120_000)]
    pub request_timeout_ms: u64,
    /// How long an ask confirmation token stays valid, in seconds.
    #[arg(long, default_value_t = 600)]
    pub ask_ttl_secs: u64,
    /// Secrets found (standalone mode): redact, block or flag; overrides
    /// the policy's `[mcp] secrets`.
    #[arg(long, value_parser = parse_finding_action)]
    pub on_secret: Option<FindingAction>,
    /// Prompt injection found (standalone mode): redact, block or flag;
    /// overrides the policy's `[mcp] injection` (default flag).
    #[arg(long, value_parser = parse_finding_action)]
    pub on_injection: Option<FindingAction>,
    /// Serve Streamable HTTP instead of stdio: on ADDR:PORT (e.g.
    /// 127.0.0.1:8765), or on a Unix socket (`unix:PATH`) that only the
    /// --allow-uid users may use (checked by the kernel, SO_PEERCRED).
    #[arg(long, value_name = "ADDR:PORT|unix:PATH")]
    pub listen: Option<crate::http::Listen>,
    /// A UID allowed on a `unix:` front (repeatable; default: the proxy's
    /// own UID).
    #[arg(long, value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// An Origin accepted by the HTTP front besides its own (repeatable).
    #[arg(long)]
    pub allow_origin: Vec<String>,
    /// Require `Authorization: Bearer TOKEN` on the HTTP front, the token
    /// read from this file (keep it readable by root and the client only).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Reach the MCP server over Streamable HTTP at this http:// or
    /// https:// URL instead of spawning a command.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Send `Authorization: Bearer TOKEN` to the upstream, the token read
    /// from this file (a client's own Authorization is then never passed
    /// on).
    #[arg(long, value_name = "FILE")]
    pub upstream_token_file: Option<PathBuf>,
    /// Trust the CA certificates in this PEM file for an https://
    /// upstream, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// The MCP server command and its arguments (unless --upstream).
    #[arg(last = true, num_args = 1..)]
    pub command: Vec<String>,
}

fn parse_finding_action(s: &str) -> Result<FindingAction, String> {
    match s {
        "redact" => Ok(FindingAction::Redact),
        "block" => Ok(FindingAction::Block),
        "flag" | "alert" => Ok(FindingAction::Flag),
        _ => Err(format!("`{s}` is not one of redact, block, flag")),
    }
}

/// The server's name when `--server-name` is not given: the script or
/// package after an interpreter or launcher, else the program's file name.
pub fn default_server_name(command: &[String]) -> String {
    const LAUNCHERS: &[&str] = &[
        "npx", "node", "python", "python3", "uv", "uvx", "bunx", "bun", "deno", "pnpm", "env",
    ];
    let base = |s: &str| {
        let name = s.rsplit('/').next().unwrap_or(s);
        name.split('.').next().unwrap_or(name).to_string()
    };
    let Some(program) = command.first() else {
        return "mcp-server".into();
    };
    if LAUNCHERS.contains(&base(program).as_str()) {
        if let Some(arg) = command[1..]
            .iter()
            .find(|a| !a.starts_with('-') && a.as_str() != "run")
        {
            return base(arg.trim_start_matches('@'));
        }
    }
    base(program)
}

fn exit_code_of(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(255)),
        (None, None) => ExitCode::from(1),
    }
}

fn choose_decider(args: &McpProxyArgs) -> Result<Arc<dyn Decider>, String> {
    let socket = socket_path(&args.state_dir);
    if !args.standalone && socket.exists() {
        match DaemonDecider::connect(&socket, Duration::from_secs(10)) {
            Ok(daemon) => return Ok(Arc::new(daemon)),
            Err(e) => eprintln!(
                "sentinel mcp-proxy: the daemon socket {} did not answer ({e}); deciding in-process",
                socket.display()
            ),
        }
    }
    let audit_state = args
        .audit_state_dir
        .clone()
        .unwrap_or_else(|| standalone_state_dir(&args.db));
    let scan = ScanPolicy {
        secrets: args.on_secret,
        injection: args.on_injection,
    };
    crate::inprocess::open_standalone(args.policy.as_deref(), &args.db, &audit_state, scan)
        .map(|d| Arc::new(d) as Arc<dyn Decider>)
        .map_err(|e| e.to_string())
}

fn standalone_state_dir(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".state");
    PathBuf::from(name)
}

type ClientIn = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type ClientOut = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The client's side: stdin and stdout as non-blocking pipes read by the
/// reactor when they are pipes (as an MCP client starts its servers), else
/// Tokio's stdin/stdout, which read on a helper thread and cost a thread
/// hop per read. Call inside the runtime.
fn client_pipes() -> (ClientIn, ClientOut) {
    use std::os::fd::AsFd;
    use tokio::net::unix::pipe;
    let dup = |fd: std::os::fd::BorrowedFd<'_>| fd.try_clone_to_owned().map(std::fs::File::from);
    let input: ClientIn = match dup(std::io::stdin().as_fd()).and_then(pipe::Receiver::from_file) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdin()),
    };
    let output: ClientOut = match dup(std::io::stdout().as_fd()).and_then(pipe::Sender::from_file) {
        Ok(pipe) => Box::new(pipe),
        Err(_) => Box::new(tokio::io::stdout()),
    };
    (input, output)
}

/// Runs the HTTP front until it ends or a termination signal arrives (then
/// its servers are ended as their handles drop, and the proxy reports
/// SIGTERM).
async fn serve_until_terminated(
    termination: Option<crate::stdio::Termination>,
    front: impl std::future::Future<Output = Result<std::process::ExitStatus, crate::http::HttpError>>,
) -> Result<std::process::ExitStatus, crate::http::HttpError> {
    use std::os::unix::process::ExitStatusExt;
    let Some(mut termination) = termination else {
        return front.await;
    };
    tokio::select! {
        status = front => status,
        () = termination.recv() => Ok(std::process::ExitStatus::from_raw(libc::SIGTERM)),
    }
}

/// Runs the proxy; returns the server's exit status, or 2 when the proxy
/// cannot start.
pub fn run(args: McpProxyArgs) -> ExitCode {
    let read_token = |path: &Option<PathBuf>| -> Result<Option<String>, String> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| format!("cannot read the token file {}: {e}", p.display()))
            })
            .transpose()
    };
    let (auth_token, upstream_token) = match (
        read_token(&args.auth_token_file),
        read_token(&args.upstream_token_file),
    ) {
        (Ok(a), Ok(u)) => (a, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("sentinel mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    let target = match (&args.upstream, args.command.is_empty()) {
        (Some(url), true) => {
            let upstream = crate::upstream::parse_url(url).and_then(|url| {
                let tls = crate::upstream::tls_config(args.upstream_ca.as_deref())?;
                Ok(crate::upstream::UpstreamConfig {
                    url,
                    pass_client_authorization: upstream_token.is_none(),
                    token: upstream_token,
                    tls: Arc::new(tls),
                })
            });
            match upstream {
                Ok(config) => Target::Http(Arc::new(config)),
                Err(e) => {
                    eprintln!("sentinel mcp-proxy: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        (None, false) => Target::Command(args.command.clone()),
        _ => {
            eprintln!(
                "sentinel mcp-proxy: give either the server command after `--` or --upstream URL, not both"
            );
            return ExitCode::from(2);
        }
    };
    // One thread carries a stdio session (a message costs microseconds;
    // hopping between worker threads costs more); the HTTP front serves
    // several clients on two.
    let mut builder = if args.listen.is_some() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sentinel mcp-proxy: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // Caught from here on: a signal during start-up must not kill the
    // proxy and leave its server behind.
    let termination = runtime
        .block_on(async { crate::stdio::Termination::install() })
        .ok();
    let decider = match choose_decider(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sentinel mcp-proxy: {e}");
            return ExitCode::from(2);
        }
    };
    // Distinct upstream URLs are distinct servers (pins, policy, breaker):
    // an HTTP server goes by its URL, or by `NAME@URL`.
    let server = match (&target, args.server_name.clone()) {
        (Target::Command(command), name) => name.unwrap_or_else(|| default_server_name(command)),
        (Target::Http(up), None) => crate::upstream::server_id(&up.url),
        (Target::Http(up), Some(name)) => format!("{name}@{}", crate::upstream::server_id(&up.url)),
    };
    eprintln!(
        "sentinel mcp-proxy: server `{server}`, verdicts from the {}",
        decider.describe()
    );
    // SAFETY: getuid has no preconditions and cannot fail.
    let uid = unsafe { libc::getuid() };
    let config = ProxyConfig {
        agent: args.agent.clone(),
        server,
        uid,
        pid: std::process::id(),
        max_line: args.max_line,
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        ask_ttl: Duration::from_secs(args.ask_ttl_secs),
    };
    let clock: Arc<dyn crate::decider::Clock> = Arc::new(SystemClock);
    let has_token = args.auth_token_file.is_some();
    let allow_uids = if args.allow_uid.is_empty() {
        vec![uid]
    } else {
        args.allow_uid.clone()
    };
    let result = match args.listen.clone() {
        Some(listen) => runtime
            .block_on(serve_until_terminated(termination, crate::http::run(
                Arc::new(move || {
                    Proxy::new(config.clone(), Arc::clone(&decider), Arc::clone(&clock))
                }),
                &target,
                crate::http::HttpConfig {
                    listen: listen.clone(),
                    extra_origins: args.allow_origin.clone(),
                    token: auth_token,
                    allow_uids,
                },
                |shown| {
                    eprintln!("sentinel mcp-proxy: listening on {shown}");
                    if matches!(listen, crate::http::Listen::Tcp(_)) && !has_token {
                        eprintln!(
                            "sentinel mcp-proxy: warning: without --auth-token-file, anyone who can reach {shown} \
                             (any local user, for a loopback address) can call this server's tools; \
                             a unix: socket limits it to the --allow-uid users"
                        );
                    }
                },
            )))
            .map_err(|e| e.to_string()),
        None => runtime
            .block_on(async {
                let (input, output) = client_pipes();
                crate::stdio::run(
                    Arc::new(Proxy::new(config, decider, clock)),
                    &target,
                    input,
                    output,
                    termination,
                )
                .await
            })
            .map_err(|e| e.to_string()),
    };
    // stdin's blocking reader thread may still be parked in read(2).
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(status) => exit_code_of(status),
        Err(e) => {
            eprintln!("sentinel mcp-proxy: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(cmd: &[&str]) -> String {
        default_server_name(&cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn server_names_skip_launchers() {
        assert_eq!(
            names(&[
                "npx",
                "-y",
                "@modelcontextprotocol/server-filesystem",
                "/srv"
            ]),
            "server-filesystem"
        );
        assert_eq!(
            names(&["/usr/bin/python3", "tests/mcp/logging_server.py"]),
            "logging_server"
        );
        assert_eq!(names(&["/opt/bin/my-server", "--flag"]), "my-server");
    }
}
