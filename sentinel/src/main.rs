//! `sentinel`: the command line. Parses arguments, maps each subcommand to
//! the module that owns it, and turns failures into one line on stderr and
//! the documented exit code: 0 success, 1 a check failed, 2 a usage or
//! environment error.

mod clock;
mod control;
mod daemon;
mod decode;
mod observe;
mod output;
mod pipeline;
mod preflight;
mod process;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

const DEFAULT_STATE_DIR: &str = "/run/sentinel";

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
    /// Watch one or more agent UIDs (and their descendants) and stream
    /// attributed events.
    Run(RunArgs),
    /// Report whether the daemon is running, what is attached, and event
    /// counts. Exits 0 only when it is running with its programs attached.
    Status {
        #[arg(long, default_value = DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the daemon's full answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// A UID to watch; repeat for more. Its agent name is the user name.
    #[arg(long = "uid", value_name = "UID")]
    uids: Vec<u32>,
    /// A named agent: NAME=UID (also watches UID); repeat for more.
    #[arg(long = "agent", value_name = "NAME=UID", value_parser = parse_agent)]
    agents: Vec<(String, u32)>,
    /// Stream events as JSON lines to PATH, or `-` for standard output.
    #[arg(long, value_name = "PATH|-")]
    jsonl: Option<String>,
    /// Where the control socket and audit anchors live.
    #[arg(long, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
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
    match cli.command {
        Command::Run(args) => run(args),
        Command::Status { state_dir, json } => status(&state_dir, json),
    }
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
    let config = daemon::RunConfig {
        agents,
        jsonl: args.jsonl,
        state_dir: args.state_dir,
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
        println!("  enforcement:  {}", answer["enforcement"]);
        println!("  events:       {}", answer["events"]);
    }
    if answer["running"] == true && attached > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
