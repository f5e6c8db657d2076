//! `sentinel`: the command line. Parses arguments, maps each subcommand to
//! the module that owns it, and turns failures into one line on stderr and
//! the documented exit code: 0 success, 1 a check failed, 2 a usage or
//! environment error.

mod bandwidth;
mod behaviour;
mod clock;
mod control;
mod control_ops;
mod daemon;
mod decode;
mod enforce;
mod kernel_layout;
mod mcp_admin;
mod observe;
mod paths;
mod pipeline;
mod preflight;
mod process;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_STATE_DIR: &str = "/run/sentinel";
const DEFAULT_DB: &str = "/var/lib/sentinel/sentinel.db";

#[derive(Parser)]
#[command(
    name = "sentinel",
    version,
    about = "Runtime security for AI agents: eBPF observer, one policy engine, kernel enforcement, tamper-evident audit"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch one or more agent UIDs (and their descendants), decide every
    /// action with the policy, enforce in the kernel, audit and export.
    Run(RunArgs),
    /// Report whether the daemon is running, what is attached, how each
    /// kind of action is enforced, and event counts. Exits 0 only when it
    /// is running with its programs attached.
    Status {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the daemon's full answer as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show or switch the mode (recorded in the audit chain).
    Mode {
        #[command(subcommand)]
        command: ModeCommand,
        #[arg(long, default_value = DEFAULT_STATE_DIR, global = true)]
        state_dir: PathBuf,
    },
    /// Approve a held action (a number) or an MCP approval (pin-…, ask-…).
    Approve {
        id: String,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Deny a held action (the process is killed) or an MCP approval.
    Deny {
        id: String,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Check a policy directory, or dry-run one action against a policy.
    #[command(subcommand)]
    Policy(sentinel_policy::cli::PolicyCommand),
    /// Verify, query and export the audit chain.
    #[command(subcommand)]
    Audit(sentinel_audit::cli::AuditCommand),
    /// List, acknowledge and resolve alerts.
    Alerts {
        #[command(subcommand)]
        command: sentinel_anomaly::cli::AlertsCommand,
        #[arg(long, default_value = DEFAULT_DB, global = true)]
        db: PathBuf,
    },
    /// The MCP proxy: put it in the agent's MCP config in place of the
    /// server command (`sentinel mcp-proxy --agent NAME -- SERVER ARGS...`).
    McpProxy(sentinel_mcp::cli::McpProxyArgs),
    /// The operator's management tools as an MCP server on stdio (root
    /// only): rules, monitor, audit, policy, alerts, quarantine.
    McpAdmin {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        #[arg(long, default_value = DEFAULT_DB)]
        db: PathBuf,
        /// The daemon's policy directory (default: read from the running
        /// daemon's command line).
        #[arg(long)]
        policy: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModeCommand {
    /// Print the current mode.
    Get,
    /// Switch to silent-allow, alert, silent-deny or lockdown.
    Set {
        #[arg(value_parser = parse_mode)]
        mode: sentinel_policy::Mode,
    },
}

fn parse_mode(s: &str) -> Result<sentinel_policy::Mode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown mode {s:?}: use silent-allow, alert, silent-deny or lockdown")
    })
}

#[derive(clap::Args)]
struct RunArgs {
    /// A UID to watch; repeat for more. Its agent name is the user name.
    #[arg(long = "uid", value_name = "UID")]
    uids: Vec<u32>,
    /// A named agent: NAME=UID (also watches UID); repeat for more.
    #[arg(long = "agent", value_name = "NAME=UID", value_parser = parse_agent)]
    agents: Vec<(String, u32)>,
    #[command(flatten)]
    sinks: sentinel_audit::cli::SinkArgs,
    /// Where the control socket, MCP socket and audit anchors live.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
    /// The audit database.
    #[arg(long, default_value = DEFAULT_DB)]
    db: PathBuf,
    /// A directory of policy files; without it, the embedded defaults.
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// The mode to start in.
    #[arg(long, default_value = "alert", value_parser = parse_mode)]
    mode: sentinel_policy::Mode,
    /// Seconds a held action waits for `sentinel approve` before it is
    /// denied.
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    approval_timeout: u64,
    /// Do not use BPF LSM even where the kernel allows it.
    #[arg(long)]
    no_lsm: bool,
    /// Ring buffer size in bytes (a power of two; default 16 MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_ring_size)]
    ring_buffer_bytes: Option<u32>,
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of bytes"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err("the ring buffer size must be a power of two of at least 4096".into());
    }
    Ok(n)
}

fn parse_agent(s: &str) -> Result<(String, u32), String> {
    let (name, uid) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=UID, got {s:?}"))?;
    if name.is_empty() {
        return Err("the agent name is empty".into());
    }
    let uid = uid
        .parse()
        .map_err(|_| format!("{uid:?} is not a numeric UID"))?;
    Ok((name.to_string(), uid))
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SENTINEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Run(_) | Command::McpProxy(_) | Command::McpAdmin { .. }
    ) {
        quiet_on_closed_stdout();
    }
    match cli.command {
        Command::Run(args) => run(args),
        Command::Status { state_dir, json } => status(&state_dir, json),
        Command::Mode { command, state_dir } => {
            let request = match command {
                ModeCommand::Get => control::Request::ModeGet,
                ModeCommand::Set { mode } => control::Request::ModeSet { mode },
            };
            ask_daemon(&state_dir, &request, |a| {
                a["mode"].as_str().unwrap_or("").to_string()
            })
        }
        Command::Approve { id, state_dir } => {
            ask_daemon(&state_dir, &control::Request::Approve { id }, |a| {
                format!("{}", a.get("resolution").or(a.get("approval")).unwrap_or(a))
            })
        }
        Command::Deny { id, state_dir } => {
            ask_daemon(&state_dir, &control::Request::Deny { id }, |a| {
                format!("{}", a.get("resolution").or(a.get("approval")).unwrap_or(a))
            })
        }
        Command::Policy(cmd) => sentinel_policy::cli::run(cmd),
        Command::Audit(cmd) => sentinel_audit::cli::run(cmd),
        Command::Alerts { command, db } => sentinel_anomaly::cli::run(&command, &db),
        Command::McpProxy(args) => sentinel_mcp::cli::run(args),
        Command::McpAdmin {
            state_dir,
            db,
            policy,
        } => mcp_admin::run(&state_dir, &db, policy.as_deref()),
    }
}

/// A reporting command piped into `head` ends quietly when the reader
/// goes away, as `cat` does, instead of panicking on the failed write. The
/// long-running commands keep SIGPIPE ignored: a closed sink or peer is an
/// error they report and survive.
fn quiet_on_closed_stdout() {
    // SAFETY: restoring the default disposition of one signal before any
    // thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("sentinel: {message}");
    ExitCode::from(code)
}

fn run(args: RunArgs) -> ExitCode {
    if args.uids.is_empty() && args.agents.is_empty() {
        return fail(2, "nothing to watch: pass --uid UID or --agent NAME=UID");
    }
    if let Err(e) = preflight::require_root("run")
        .and_then(|()| preflight::require_kernel_support())
        .and_then(|()| preflight::mount_kernel_filesystems())
    {
        return fail(2, e);
    }
    let agents = match daemon::resolve_agents(&args.uids, &args.agents) {
        Ok(a) => a,
        Err(e) => return fail(2, e),
    };
    let policy = match daemon::load_policy(args.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(1, format!("{e:#}")),
    };
    let config = daemon::RunConfig {
        agents,
        sinks: args.sinks.specs(),
        sink_options: args.sinks.options(),
        state_dir: args.state_dir,
        db: args.db,
        policy,
        policy_dir: args.policy,
        mode: args.mode,
        approval_timeout: std::time::Duration::from_secs(args.approval_timeout),
        sensor: observe::SensorOptions {
            no_lsm: args.no_lsm,
            ring_buffer_bytes: args.ring_buffer_bytes,
        },
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, format!("{e:#}")),
    }
}

/// Sends one control request; prints `show(answer)` on success.
fn ask_daemon(
    state_dir: &std::path::Path,
    request: &control::Request,
    show: impl Fn(&serde_json::Value) -> String,
) -> ExitCode {
    match control::call(state_dir, request) {
        Ok(a) if a["ok"] == true => {
            println!("{}", show(&a));
            ExitCode::SUCCESS
        }
        Ok(a) => fail(1, a["error"].as_str().unwrap_or("the daemon refused")),
        Err(e) => fail(2, e),
    }
}

fn status(state_dir: &std::path::Path, as_json: bool) -> ExitCode {
    let answer = match control::call(state_dir, &control::Request::Status) {
        Ok(a) => a,
        Err(e) => return fail(1, e),
    };
    let attached = answer["attached"].as_array().map_or(0, Vec::len);
    if as_json {
        println!("{answer:#}");
    } else {
        println!("sentinel running (pid {})", answer["pid"]);
        println!("  watched uids: {}", answer["watched_uids"]);
        println!("  attached:     {attached} programs");
        println!("  mode:         {}", answer["mode"]);
        println!("  enforcement:  {}", answer["enforcement"]);
        println!("  events:       {}", answer["events"]);
    }
    if answer["running"] == true && attached > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
