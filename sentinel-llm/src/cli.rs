//! `sentinel llm-proxy`: the arguments, and starting the proxy with either
//! the daemon's engine and audit chain (the default) or, with `--db`, an
//! engine and audit chain of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use sentinel_audit::AuditLog;
use sentinel_mcp::inprocess::{AuditWriter, SharedEngine};
use sentinel_mcp::FindingAction;
use sentinel_policy::{Engine, Mode, Policy};

use crate::proxy::{Gate, LlmProxy, ProxyConfig};
use crate::upstream::Connector;
use crate::vault::{parse_upstream, Vault};

/// An HTTP proxy for OpenAI- and Anthropic-compatible APIs: agents get
/// virtual keys, the vault holds the real ones, prompts are scanned for
/// secrets, and every request is decided and audited.
#[derive(Debug, Clone, clap::Args)]
pub struct LlmProxyArgs {
    /// Address to serve on (the agent's SDK `base_url` points here).
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// The provider (or gateway) base URL, e.g. https://api.openai.com.
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// The key vault (TOML, owned by root, mode 600).
    #[arg(long, value_name = "FILE")]
    pub vault: PathBuf,
    /// The agent recorded for keys that do not name one.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// Standalone: decide with an engine of its own and keep the audit
    /// chain in this database (default: ask the running daemon).
    #[arg(long, value_name = "DB")]
    pub db: Option<PathBuf>,
    /// Standalone: the policy directory (default: the embedded policy).
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    /// Standalone: the mode.
    #[arg(long, default_value = "alert", value_parser = parse_mode)]
    pub mode: Mode,
    /// The daemon's state directory (its control socket).
    #[arg(long, default_value = "/run/sentinel")]
    pub state_dir: PathBuf,
    /// Secrets in prompts: block (403, never forwarded), redact, or flag.
    #[arg(long, default_value = "block", value_parser = parse_finding_action)]
    pub on_secret: FindingAction,
    /// Injection markers in (non-streamed) answers: block or flag.
    #[arg(long, default_value = "flag", value_parser = parse_finding_action)]
    pub on_injection: FindingAction,
    /// Extra PEM CA certificates trusted for the upstream.
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_request: usize,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown mode {s:?}: use silent-allow, alert, silent-deny or lockdown")
    })
}

fn parse_finding_action(s: &str) -> Result<FindingAction, String> {
    // `alert` is the older name of `flag`.
    let name = if s == "flag" { "alert" } else { s };
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| format!("{s:?}: use block, redact or flag"))
}

/// The standalone gate: the policy's engine and an audit chain of the
/// proxy's own.
pub fn standalone_gate(args: &LlmProxyArgs, db: &std::path::Path) -> Result<Gate, String> {
    let policy = match &args.policy {
        Some(dir) => Policy::load_dir(dir).map_err(|e| e.to_string())?,
        None => Policy::embedded_defaults(),
    };
    let mut engine = Engine::new(policy);
    engine.set_mode(args.mode);
    if let Some(parent) = db.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let mut state = db.as_os_str().to_owned();
    state.push(".state");
    let audit = AuditLog::open(db, std::path::Path::new(&state))
        .map_err(|e| format!("opening the audit chain {}: {e}", db.display()))?;
    Ok(Gate {
        engine: Box::new(SharedEngine(Arc::new(Mutex::new(engine)))),
        audit: Box::new(AuditWriter::spawn(audit)),
    })
}

/// Runs the proxy until SIGINT/SIGTERM. `daemon_gate` is the daemon's
/// engine and audit chain (used unless `--db` asks for standalone).
pub fn run(args: LlmProxyArgs, daemon_gate: impl FnOnce() -> Result<Gate, String>) -> ExitCode {
    let fail = |message: String| {
        eprintln!("sentinel llm-proxy: {message}");
        ExitCode::from(2)
    };
    let upstream = match parse_upstream(&args.upstream) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let vault = match Vault::load(&args.vault) {
        Ok(v) => v,
        Err(e) => return fail(e.to_string()),
    };
    let connector = match Connector::new(args.upstream_ca.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (gate, label) = match &args.db {
        Some(db) => match standalone_gate(&args, db) {
            Ok(g) => (
                g,
                format!("its own engine and audit chain {}", db.display()),
            ),
            Err(e) => return fail(e),
        },
        None => match daemon_gate() {
            Ok(g) => (g, "the daemon".to_string()),
            Err(e) => return fail(e),
        },
    };
    let config = ProxyConfig {
        upstream,
        agent: args.agent.clone(),
        secrets: args.on_secret,
        injection: args.on_injection,
        max_request: args.max_request,
        max_response: 64 << 20,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(l) => l,
            Err(e) => return fail(format!("cannot listen on {}: {e}", args.listen)),
        };
        if !args.listen.ip().is_loopback() {
            eprintln!("sentinel llm-proxy: warning: listening on {}, not a loopback address", args.listen);
        }
        let proxy = Arc::new(LlmProxy::new(config, vault, gate, connector));
        eprintln!(
            "sentinel llm-proxy: listening on {}, upstream {}, verdicts and audit from {label}",
            args.listen, args.upstream
        );
        let server = tokio::spawn(crate::proxy::serve(listener, proxy.clone()));
        let stop = async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {},
            }
        };
        stop.await;
        server.abort();
        proxy.flush();
        ExitCode::SUCCESS
    })
}
