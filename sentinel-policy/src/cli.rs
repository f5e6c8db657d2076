//! `sentinel policy check DIR` and `sentinel policy test …`: clap argument
//! structs and the code that runs them, for the binary to mount.
//!
//! Exit codes follow the architecture contract: 0 success, 1 the policy is
//! invalid, 2 a usage or environment error.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Args, Subcommand};

use crate::action::{Action, Kind, Mode, Object};
use crate::check::{check_dir, dry_run, homes_from_passwd};
use crate::policy::Policy;

/// `sentinel policy …`
#[derive(Debug, Clone, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy directory and show what the kernel will enforce.
    Check(CheckArgs),
    /// Evaluate one described action against a policy (a dry run, no daemon).
    Test(Box<TestArgs>),
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Directory of *.toml policy files.
    pub dir: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// exec, open, connect or mcp.
    #[arg(long, value_parser = parse_kind)]
    pub kind: Kind,
    /// exec: the resolved binary path.
    #[arg(long)]
    pub binary: Option<String>,
    /// exec: the arguments after argv[0], split on whitespace.
    #[arg(long, allow_hyphen_values = true)]
    pub args: Option<String>,
    /// open: the path.
    #[arg(long)]
    pub path: Option<String>,
    /// open: the open writes, creates or truncates.
    #[arg(long)]
    pub write: bool,
    /// connect: destination address.
    #[arg(long)]
    pub addr: Option<IpAddr>,
    /// connect: destination port.
    #[arg(long)]
    pub port: Option<u16>,
    /// mcp: tool name.
    #[arg(long)]
    pub tool: Option<String>,
    /// mcp: server name.
    #[arg(long)]
    pub server: Option<String>,
    /// mcp: the call's arguments as JSON (default {}).
    #[arg(long)]
    pub mcp_args: Option<String>,
    /// The agent's name.
    #[arg(long)]
    pub agent: Option<String>,
    /// The acting UID (default: yours).
    #[arg(long)]
    pub uid: Option<u32>,
    /// Home directory for `~/` patterns (default: the UID's from /etc/passwd).
    #[arg(long)]
    pub home: Option<PathBuf>,
    /// silent-allow, alert, silent-deny or lockdown (default alert).
    #[arg(long, value_parser = parse_mode, default_value = "alert")]
    pub mode: Mode,
    /// Policy directory (default: the embedded defaults).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Evaluate as of this time, RFC 3339 (default: now); for schedules.
    #[arg(long, value_parser = parse_time)]
    pub at: Option<SystemTime>,
}

fn parse_kind(text: &str) -> Result<Kind, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .map_err(|_| format!("`{text}` is not a kind; use exec, open, connect or mcp"))
}

fn parse_mode(text: &str) -> Result<Mode, String> {
    serde_json::from_value(serde_json::Value::String(text.to_string())).map_err(|_| {
        format!("`{text}` is not a mode; use silent-allow, alert, silent-deny or lockdown")
    })
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(SystemTime::from)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time ({e}); e.g. 2026-01-05T03:00:00Z"))
}

/// Runs a `sentinel policy` subcommand, printing to stdout/stderr.
pub fn run(command: PolicyCommand) -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    ExitCode::from(run_with(command, &mut stdout.lock(), &mut stderr.lock()))
}

/// [`run`] writing to the given streams; returns the exit code.
pub fn run_with(command: PolicyCommand, out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let result = match command {
        PolicyCommand::Check(args) => check(&args, out),
        PolicyCommand::Test(args) => test(&args, out),
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            // Nothing more useful to do if stderr itself is gone.
            let _ = writeln!(err, "{}", failure.message);
            failure.code
        }
    }
}

struct Failure {
    code: u8,
    message: String,
}

fn invalid(message: impl ToString) -> Failure {
    Failure {
        code: 1,
        message: message.to_string(),
    }
}

fn usage(message: impl ToString) -> Failure {
    Failure {
        code: 2,
        message: message.to_string(),
    }
}

fn check(args: &CheckArgs, out: &mut dyn Write) -> Result<(), Failure> {
    if !args.dir.is_dir() {
        return Err(usage(format!(
            "{} is not a directory; pass the directory that holds the *.toml policy files",
            args.dir.display()
        )));
    }
    let summary = check_dir(&args.dir).map_err(invalid)?;
    let written = if args.json {
        serde_json::to_string(&summary)
            .map_err(invalid)
            .and_then(|json| writeln!(out, "{json}").map_err(usage))
    } else {
        write!(out, "{summary}").map_err(usage)
    };
    written
}

fn test(args: &TestArgs, out: &mut dyn Write) -> Result<(), Failure> {
    let policy = match &args.policy {
        Some(dir) if !dir.is_dir() => {
            return Err(usage(format!(
                "{} is not a directory; pass --policy DIR with *.toml files, or omit it for the defaults",
                dir.display()
            )))
        }
        Some(dir) => Policy::load_dir(dir).map_err(invalid)?,
        None => Policy::embedded_defaults(),
    };
    let uid = args.uid.unwrap_or_else(current_uid);
    let action = Action {
        agent: args.agent.clone(),
        uid,
        pid: std::process::id(),
        object: object_from(args)?,
    };
    let homes = homes_for(uid, args.home.as_deref());
    let now = args.at.unwrap_or_else(SystemTime::now);
    let verdict = dry_run(policy, &action, args.mode, homes, now);
    let json = serde_json::to_string(&verdict).map_err(invalid)?;
    writeln!(out, "{json}").map_err(usage)
}

fn object_from(args: &TestArgs) -> Result<Object, Failure> {
    let need = |value: &Option<String>, flag: &str| {
        value
            .clone()
            .ok_or_else(|| usage(format!("--kind {} needs {flag}", kind_flag(args.kind))))
    };
    Ok(match args.kind {
        Kind::Exec => {
            let binary = need(&args.binary, "--binary PATH")?;
            let argv0 = binary.rsplit('/').next().unwrap_or(&binary).to_string();
            let mut argv = vec![argv0];
            argv.extend(
                args.args
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .map(str::to_string),
            );
            Object::Exec { binary, argv }
        }
        Kind::Open => Object::Open {
            path: need(&args.path, "--path PATH")?,
            write: args.write,
        },
        Kind::Connect => Object::Connect {
            addr: args
                .addr
                .ok_or_else(|| usage("--kind connect needs --addr ADDR"))?,
            port: args
                .port
                .ok_or_else(|| usage("--kind connect needs --port N"))?,
        },
        Kind::Mcp => {
            let text = args.mcp_args.as_deref().unwrap_or("{}");
            let call_args = serde_json::from_str(text).map_err(|e| {
                usage(format!(
                    "--mcp-args is not valid JSON ({e}); e.g. --mcp-args '{{\"path\":\"/srv\"}}'"
                ))
            })?;
            Object::Mcp {
                server: need(&args.server, "--server NAME")?,
                tool: need(&args.tool, "--tool NAME")?,
                args: call_args,
            }
        }
    })
}

fn kind_flag(kind: Kind) -> &'static str {
    crate::policy::kind_name(kind)
}

/// The real UID of this process (owner of /proc/self), or 0 if unknown.
fn current_uid() -> u32 {
    std::fs::metadata("/proc/self").map_or(0, |meta| meta.uid())
}

fn homes_for(uid: u32, home: Option<&Path>) -> HashMap<u32, PathBuf> {
    match home {
        Some(home) => HashMap::from([(uid, home.to_path_buf())]),
        None => homes_from_passwd(Path::new("/etc/passwd")).unwrap_or_default(),
    }
}
