//! `sentinel`: the command line. Parses arguments, maps each subcommand to
//! the module that owns it, and turns failures into one line on stderr and
//! the documented exit code: 0 success, 1 a check failed, 2 a usage or
//! environment error.

mod bandwidth;
mod behaviour;
mod clock;
mod coalesce;
mod config;
mod control;
mod control_ops;
mod daemon;
mod decode;
mod doctor;
mod enforce;
mod exit_before_run;
mod file_guard;
mod guards;
mod identity;
mod kernel_layout;
mod llm_link;
mod mcp_admin;
mod memory;
mod metrics;
mod observe;
mod own_files;
mod paths;
mod pins;
mod pipeline;
mod posture;
mod preflight;
mod process;
mod procid;
mod quarantine;
mod respond;
mod status;
mod top;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use config::{DEFAULT_DB, DEFAULT_STATE_DIR};

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
    /// Show the configuration `run` would use, merged from the file, its
    /// overlays and the defaults, with where each value came from.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// A live dashboard of the running daemon: agents, events, alerts,
    /// held actions and approvals (root; talks to the control socket).
    Top {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Check this host and say how each kind of action will be enforced
    /// here, and what to change to do better.
    Doctor {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the checks as JSON.
        #[arg(long)]
        json: bool,
    },
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
    /// Pending MCP approvals (asks with the arguments they bind, and tool
    /// pins with the definition), read from the database.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Deny a held action (the process is killed) or an MCP approval.
    Deny {
        id: String,
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Quarantine an agent, binary, path, host or tool (in force in the
    /// kernel at once, kept across restarts, recorded with who did it).
    Quarantine {
        #[command(subcommand)]
        command: QuarantineCommand,
        #[arg(long, default_value = DEFAULT_STATE_DIR, global = true)]
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
    /// Posture checks: what on this host would let an agent get around
    /// Sentinel or outlast it. Exit 1 when a warning or critical finding
    /// is found.
    Scan(posture::ScanArgs),
    /// Identity file baselines: list, accept the current content, restore
    /// the shadow copy.
    Baseline {
        #[command(subcommand)]
        command: BaselineCommand,
        #[arg(long, default_value = DEFAULT_STATE_DIR, global = true)]
        state_dir: PathBuf,
    },
    /// Response playbooks: list responses, approve or deny a gated one,
    /// undo one.
    Respond {
        #[command(subcommand)]
        command: RespondCommand,
        #[arg(long, default_value = DEFAULT_STATE_DIR, global = true)]
        state_dir: PathBuf,
    },
    /// The LLM API proxy: agents use a virtual key with an OpenAI- or
    /// Anthropic-compatible SDK; the vault holds the real keys.
    LlmProxy(sentinel_llm::LlmProxyArgs),
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
enum BaselineCommand {
    /// Every identity file, its baseline, and whether it matches.
    List,
    /// The file as it is now becomes its baseline.
    Accept { path: PathBuf },
    /// Puts the baseline's shadow copy back.
    Restore { path: PathBuf },
}

#[derive(Subcommand)]
enum RespondCommand {
    /// Every response since the daemon started.
    List,
    /// Carries out a response waiting for approval.
    Approve { id: u64 },
    /// Skips a response waiting for approval.
    Deny { id: u64 },
    /// Reverses a response (suspend, cut-network, quarantine-agent,
    /// lockdown; a kill cannot be undone).
    Undo { id: u64 },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the merged configuration, each value with its file:line.
    Show {
        /// The configuration file (default /etc/sentinel/sentinel.toml,
        /// when it exists); overlays come from NAME.d/*.toml beside it.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// List pending MCP approvals: asks (tool, server, agent and the
    /// arguments they bind, credentials redacted) and tool pins.
    List {
        #[arg(long)]
        json: bool,
        /// The database the daemon (or a standalone proxy) writes.
        #[arg(long, default_value = "/var/lib/sentinel/sentinel.db")]
        db: PathBuf,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Quarantine one target.
    Add {
        #[command(flatten)]
        target: QuarantineTargetArgs,
        /// Lift it automatically after this long (90s, 30m, 2h, 1d).
        #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
        duration: Option<u64>,
        #[arg(long, default_value = "quarantined by the operator")]
        reason: String,
    },
    /// The active quarantines.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Lift a quarantine by its id (see `list`).
    Lift { id: i64 },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct QuarantineTargetArgs {
    /// Opens (and execs) of paths matching this glob.
    #[arg(long, value_name = "GLOB")]
    path: Option<String>,
    /// Execs of binaries matching this glob.
    #[arg(long, value_name = "GLOB")]
    binary: Option<String>,
    /// Connects to this address or network.
    #[arg(long, value_name = "CIDR")]
    host: Option<String>,
    /// MCP calls of tools matching this glob, on any server.
    #[arg(long, value_name = "NAME")]
    tool: Option<String>,
    /// Every action of matching agents.
    #[arg(long, value_name = "NAME")]
    agent: Option<String>,
}

impl QuarantineTargetArgs {
    fn target(self) -> Result<sentinel_policy::QuarantineTarget, String> {
        use sentinel_policy::QuarantineTarget as T;
        match self {
            Self { path: Some(p), .. } => Ok(T::Path(p)),
            Self {
                binary: Some(b), ..
            } => Ok(T::Binary(b)),
            Self { tool: Some(t), .. } => Ok(T::Tool(t)),
            Self { agent: Some(a), .. } => Ok(T::Agent(a)),
            Self { host: Some(h), .. } => sentinel_policy::parse_net(&h)
                .map(T::Host)
                .ok_or_else(|| format!("{h:?} is not an address or a CIDR network")),
            _ => Err("name one target: --path, --binary, --host, --tool or --agent".into()),
        }
    }
}

/// `90`, `90s`, `30m`, `2h`, `1d` → seconds.
fn parse_duration(s: &str) -> Result<u64, String> {
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (90s, 30m, 2h, 1d)"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: the unit must be s, m, h or d")),
    };
    n.checked_mul(scale)
        .filter(|secs| *secs > 0)
        .ok_or_else(|| format!("{s:?} is not a usable duration"))
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
    config::parse_mode(s)
}

/// `sentinel run`. Every flag has a key of the same name in the
/// configuration file; a flag given here beats the file. Defaults are
/// in `sentinel config show`.
#[derive(clap::Args)]
struct RunArgs {
    /// The configuration file (default /etc/sentinel/sentinel.toml, when
    /// it exists); overlays come from NAME.d/*.toml beside it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A UID to watch; repeat for more. Its agent name is the user name.
    #[arg(long = "uid", value_name = "UID")]
    uids: Vec<u32>,
    /// A named agent: NAME=UID (also watches UID); repeat for more.
    #[arg(long = "agent", value_name = "NAME=UID", value_parser = parse_agent)]
    agents: Vec<(String, u32)>,
    /// Stream events as JSONL to a file (rotated by size) or `-` (stdout).
    #[arg(long = "jsonl", value_name = "PATH|-")]
    jsonl: Vec<String>,
    /// Stream events as CEF to a file, `-`, or syslog (RFC 5424) over
    /// udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT (RFC 5425).
    #[arg(long = "cef", value_name = "PATH|-|udp://|tcp://|tls://HOST:PORT")]
    cef: Vec<String>,
    /// Rotate file sinks past this many bytes (0: never; default 64 MiB).
    #[arg(long, value_name = "BYTES")]
    sink_rotate_bytes: Option<u64>,
    /// Rotated files to keep (default 5).
    #[arg(long, value_name = "N")]
    sink_rotate_keep: Option<u64>,
    /// Records buffered per sink before drops (counted) begin (default 8192).
    #[arg(long, value_name = "N")]
    sink_queue: Option<u64>,
    /// CA certificates (PEM) trusted for tls:// syslog besides the system's.
    #[arg(long, value_name = "FILE")]
    syslog_ca_file: Option<PathBuf>,
    /// Where the control socket, MCP socket and audit anchors live
    /// (default /run/sentinel).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The audit database (default /var/lib/sentinel/sentinel.db).
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// A directory of policy files; without it, the embedded defaults.
    #[arg(long, value_name = "DIR")]
    policy: Option<PathBuf>,
    /// The mode to start in: silent-allow, alert (default), silent-deny
    /// or lockdown.
    #[arg(long)]
    mode: Option<String>,
    /// Seconds a held action waits for `sentinel approve` before it is
    /// denied (default 120).
    #[arg(long, value_name = "SECONDS")]
    approval_timeout: Option<u64>,
    /// Do not use BPF LSM even where the kernel allows it.
    #[arg(long)]
    no_lsm: bool,
    /// Seconds between posture scans (0: none); each new or changed
    /// finding is an alert.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    scan_interval: u64,
    /// Ring buffer size in bytes (a power of two; default 16 MiB).
    #[arg(long, value_name = "BYTES")]
    ring_buffer_bytes: Option<u64>,
    /// Serve Prometheus metrics at http://ADDR/metrics: PORT (loopback),
    /// or HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

impl RunArgs {
    /// The flags given, as configuration values (flags beat files).
    fn flags(&self) -> Vec<config::FlagValue> {
        let mut out: Vec<config::FlagValue> = Vec::new();
        let text = |p: &PathBuf| toml::Value::String(p.display().to_string());
        let int = |n: u64| toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
        if !self.uids.is_empty() {
            let list = self.uids.iter().map(|u| int(u64::from(*u))).collect();
            out.push(("uid", "--uid".into(), toml::Value::Array(list)));
        }
        if !self.agents.is_empty() {
            let list = self
                .agents
                .iter()
                .map(|(name, uid)| {
                    let mut t = toml::map::Map::new();
                    t.insert("name".into(), name.clone().into());
                    t.insert("uid".into(), int(u64::from(*uid)));
                    toml::Value::Table(t)
                })
                .collect();
            out.push(("agent", "--agent".into(), toml::Value::Array(list)));
        }
        for (key, flag, items) in [
            ("jsonl", "--jsonl", &self.jsonl),
            ("cef", "--cef", &self.cef),
        ] {
            if !items.is_empty() {
                let list = items.iter().map(|s| s.clone().into()).collect();
                out.push((key, flag.into(), toml::Value::Array(list)));
            }
        }
        for (key, flag, value) in [
            (
                "sink_rotate_bytes",
                "--sink-rotate-bytes",
                self.sink_rotate_bytes,
            ),
            (
                "sink_rotate_keep",
                "--sink-rotate-keep",
                self.sink_rotate_keep,
            ),
            ("sink_queue", "--sink-queue", self.sink_queue),
            (
                "approval_timeout",
                "--approval-timeout",
                self.approval_timeout,
            ),
            (
                "ring_buffer_bytes",
                "--ring-buffer-bytes",
                self.ring_buffer_bytes,
            ),
        ] {
            if let Some(n) = value {
                out.push((key, flag.into(), int(n)));
            }
        }
        for (key, flag, value) in [
            ("syslog_ca_file", "--syslog-ca-file", &self.syslog_ca_file),
            ("state_dir", "--state-dir", &self.state_dir),
            ("db", "--db", &self.db),
            ("policy", "--policy", &self.policy),
        ] {
            if let Some(p) = value {
                out.push((key, flag.into(), text(p)));
            }
        }
        for (key, flag, value) in [
            ("mode", "--mode", &self.mode),
            ("metrics", "--metrics", &self.metrics),
        ] {
            if let Some(v) = value {
                out.push((key, flag.into(), v.clone().into()));
            }
        }
        if self.no_lsm {
            out.push(("no_lsm", "--no-lsm".into(), true.into()));
        }
        out
    }
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
        Command::Run(_)
            | Command::McpProxy(_)
            | Command::LlmProxy(_)
            | Command::McpAdmin { .. }
            | Command::Top { .. }
    ) {
        quiet_on_closed_stdout();
    }
    match cli.command {
        Command::Run(args) => run(args),
        Command::Config(ConfigCommand::Show { config, json }) => config_show(config, json),
        Command::Top { state_dir } => top::run(&state_dir),
        Command::Doctor { state_dir, json } => doctor::run(&state_dir, json),
        Command::Status { state_dir, json } => status::run(&state_dir, json),
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
        Command::Approvals(ApprovalsCommand::List { json, db }) => {
            match sentinel_mcp::store::list_pending(&db, json, std::time::SystemTime::now()) {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(2, e),
            }
        }
        Command::Deny { id, state_dir } => {
            ask_daemon(&state_dir, &control::Request::Deny { id }, |a| {
                format!("{}", a.get("resolution").or(a.get("approval")).unwrap_or(a))
            })
        }
        Command::Quarantine { command, state_dir } => quarantine(&state_dir, command),
        Command::Baseline { command, state_dir } => {
            let request = match command {
                BaselineCommand::List => control::Request::BaselineList,
                BaselineCommand::Accept { path } => control::Request::BaselineAccept {
                    path: absolute(path),
                },
                BaselineCommand::Restore { path } => control::Request::BaselineRestore {
                    path: absolute(path),
                },
            };
            ask_daemon(&state_dir, &request, show_detail)
        }
        Command::Respond { command, state_dir } => {
            let request = match command {
                RespondCommand::List => control::Request::RespondList,
                RespondCommand::Approve { id } => {
                    control::Request::RespondDecide { id, approve: true }
                }
                RespondCommand::Deny { id } => {
                    control::Request::RespondDecide { id, approve: false }
                }
                RespondCommand::Undo { id } => control::Request::RespondUndo { id },
            };
            ask_daemon(&state_dir, &request, show_detail)
        }
        Command::Scan(args) => posture::run_cli(args),
        Command::Policy(cmd) => sentinel_policy::cli::run(cmd),
        Command::Audit(cmd) => sentinel_audit::cli::run(cmd),
        Command::Alerts { command, db } => sentinel_anomaly::cli::run(&command, &db),
        Command::McpProxy(args) => sentinel_mcp::cli::run(args),
        Command::LlmProxy(args) => {
            let state_dir = args.state_dir.clone();
            sentinel_llm::run(args, || llm_link::gate(state_dir))
        }
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

fn config_show(file: Option<PathBuf>, as_json: bool) -> ExitCode {
    let merged = match config::Merged::load(&config::Source::from_flag(file)) {
        Ok(m) => m,
        Err(e) => return fail(2, e),
    };
    // The values are checked too: `show` says what `run` would refuse.
    let checked = merged.settings();
    if as_json {
        let mut out = merged.render_json();
        out["valid"] = serde_json::json!(checked.is_ok());
        if let Err(e) = &checked {
            out["error"] = serde_json::json!(e.to_string());
        }
        println!("{out:#}");
    } else {
        print!("{}", merged.render_text());
    }
    match checked {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => fail(2, e),
    }
}

fn run(args: RunArgs) -> ExitCode {
    // The configuration is checked before anything else: a bad one is one
    // error naming file:line, and nothing starts.
    let scan_interval = args.scan_interval;
    let source = config::Source::from_flag(args.config.clone());
    let flags = args.flags();
    let merged = config::Merged::load(&source).map(|mut m| {
        m.apply_flags(flags.clone());
        m
    });
    let (merged, settings) = match merged.and_then(|m| m.settings().map(|s| (m, s))) {
        Ok(pair) => pair,
        Err(e) => return fail(2, e),
    };
    if settings.uids.is_empty() && settings.agents.is_empty() {
        return fail(
            2,
            "nothing to watch: pass --uid UID or --agent NAME=UID, or set uid / [[agent]] in the configuration file",
        );
    }
    if let Err(e) = preflight::require_root("run")
        .and_then(|()| preflight::require_kernel_support())
        .and_then(|()| preflight::mount_kernel_filesystems())
    {
        return fail(2, e);
    }
    let agents = match daemon::resolve_agents(&settings.uids, &settings.agents) {
        Ok(a) => a,
        Err(e) => return fail(2, e),
    };
    let own_files = own_files::OwnFiles::of(
        &settings.state_dir,
        &settings.db,
        settings.policy.as_deref(),
        std::env::current_exe().ok().as_deref(),
    );
    let policy = match own_files.load(settings.policy.as_deref()) {
        Ok(p) => p,
        Err(e) => return fail(1, e.to_string()),
    };
    let config = daemon::RunConfig {
        own_files,
        agents,
        sinks: settings.sinks,
        sink_options: settings.sink_options,
        state_dir: settings.state_dir,
        db: settings.db,
        policy,
        policy_dir: settings.policy,
        mode: settings.mode,
        approval_timeout: settings.approval_timeout,
        scan_interval: std::time::Duration::from_secs(scan_interval),
        sensor: observe::SensorOptions {
            no_lsm: settings.no_lsm,
            ring_buffer_bytes: settings.ring_buffer_bytes,
        },
        metrics: settings.metrics,
        webhook: settings.webhook,
        reloader: Some(config::Reloader::new(source, flags, merged)),
    };
    match daemon::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(2, format!("{e:#}")),
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The `detail` line of an answer, or the whole answer as JSON (lists).
fn show_detail(answer: &serde_json::Value) -> String {
    match answer["detail"].as_str() {
        Some(detail) => detail.to_string(),
        None => {
            let mut a = answer.clone();
            if let Some(o) = a.as_object_mut() {
                o.remove("ok");
            }
            format!("{a:#}")
        }
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

fn quarantine(state_dir: &std::path::Path, command: QuarantineCommand) -> ExitCode {
    let request = match command {
        QuarantineCommand::Add {
            target,
            duration,
            reason,
        } => match target.target() {
            Ok(target) => control::Request::QuarantineAdd {
                target,
                expires_in_seconds: duration,
                reason,
            },
            Err(e) => return fail(2, e),
        },
        QuarantineCommand::List { json } => {
            return ask_daemon(state_dir, &control::Request::QuarantineList, |a| {
                if json {
                    return format!("{:#}", a["quarantines"]);
                }
                let list = a["quarantines"].as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    return "no active quarantines".into();
                }
                list.iter()
                    .map(|q| {
                        format!(
                            "#{}\t{}\t{}\tby {}\t{}",
                            q["id"],
                            q["description"].as_str().unwrap_or(""),
                            q["expires"]
                                .as_str()
                                .map_or("until lifted".to_string(), |e| format!("until {e}")),
                            q["added_by"].as_str().unwrap_or("-"),
                            q["reason"].as_str().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        QuarantineCommand::Lift { id } => control::Request::QuarantineLiftId { id },
    };
    ask_daemon(state_dir, &request, |a| {
        match (&a["quarantined"], &a["lifted"]) {
            (serde_json::Value::String(t), _) => format!("quarantine #{} on {t}", a["id"]),
            (_, serde_json::Value::String(t)) => format!("lifted quarantine #{} on {t}", a["id"]),
            _ => a.to_string(),
        }
    })
}
