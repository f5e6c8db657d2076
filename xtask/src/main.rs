//! `cargo xtask`: building the eBPF object, setting up a fresh machine,
//! running the sentinel, and running every test.
//!
//! Every set-up step is idempotent and skips what is already done, so the
//! two README commands (`cargo xtask run -- run --uid N` and `cargo xtask
//! test`) are all a newcomer or CI needs.

mod fuzz;
mod guest;
mod guest_fanotify;
mod guest_lsm;
mod mcp_peers;
mod package;
mod setup;
mod toolchain;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Build, run and test Sentinel")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what the build and tests need (toolchain, bpf-linker,
    /// mounts, test users). Idempotent.
    Setup,
    /// Build the eBPF object (pinned nightly + project-local bpf-linker).
    BuildEbpf,
    /// Build the eBPF object and the `sentinel` binary (release).
    Build,
    /// Build, then run `sentinel` with the given arguments.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, then run formatting and lint checks and every test,
    /// including the real-kernel tests and the BPF-LSM guest test.
    Test {
        /// Skip `cargo fmt --check` and clippy.
        #[arg(long)]
        no_lint: bool,
    },
    /// Only the BPF-LSM test in the guest kernel (builds first).
    TestLsm,
    /// Only the fanotify guard check in the guest kernel.
    TestFanotifyGuest,
    /// Boot the guest kernel once and check the harness itself.
    GuestSelfTest,
    /// Run the benchmarks and print their figures (installs bpftrace and
    /// auditd, the peers they are compared with; stops them after).
    Bench,
    /// Build the Debian package (target/debian/sentinel_VERSION_ARCH.deb).
    Package,
    /// Build the libFuzzer targets (JSON-RPC framing and parser, policy
    /// loader, ring-record decoder) and run each for a while. Not part of
    /// `test`.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target (jsonrpc, policy, ring_record).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    let root = project_root();
    match task {
        Task::Setup => setup::all(&root),
        Task::BuildEbpf => build_ebpf(&root),
        Task::Build => build(&root),
        Task::Run { args } => {
            build(&root)?;
            setup::kernel_mounts()?;
            let bin = root.join("target/release/sentinel");
            let status = Command::new(&bin)
                .args(&args)
                .status()
                .with_context(|| format!("starting {}", bin.display()))?;
            if !status.success() {
                bail!("sentinel exited with {status}");
            }
            Ok(())
        }
        Task::Test { no_lint } => test(&root, !no_lint),
        Task::GuestSelfTest => guest::self_test(&root),
        Task::TestLsm => {
            build(&root)?;
            guest_lsm::run(&root)
        }
        Task::TestFanotifyGuest => guest_fanotify::run(&root),
        Task::Bench => bench(&root),
        Task::Package => package::build(&root).map(drop),
        Task::Fuzz { seconds, target } => fuzz::run(&root, seconds, target.as_deref()),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Path of the built eBPF object; `sentinel/build.rs` embeds it.
pub fn ebpf_object(root: &Path) -> PathBuf {
    root.join("sentinel-ebpf/target/bpfel-unknown-none/release/sentinel-ebpf")
}

fn build_ebpf(root: &Path) -> Result<()> {
    let linker_dir = toolchain::ensure_ebpf_toolchain(root)?;
    let path = format!(
        "{}:{}",
        linker_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let status = Command::new("cargo")
        .current_dir(root.join("sentinel-ebpf"))
        .env("PATH", path)
        // The userspace toolchain's variables must not leak into the
        // nightly build (rustup sets these when xtask runs under cargo).
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTFLAGS", "-C debuginfo=2 -C link-arg=--btf")
        .args([
            "build",
            "--locked",
            "-Z",
            "build-std=core",
            "--target",
            "bpfel-unknown-none",
            "--release",
        ])
        .status()
        .context("running cargo for the eBPF crate")?;
    if !status.success() {
        bail!("building the eBPF object failed");
    }
    Ok(())
}

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("cargo")
        .current_dir(root)
        .env("SENTINEL_EBPF_OBJECT", ebpf_object(root))
        // The MCP proxy tests drive the real `sentinel mcp-proxy` binary.
        .env("SENTINEL_BIN", root.join("target/release/sentinel"))
        // The evasion tests try every route with this tool.
        .env(
            "SENTINEL_EVASION_BIN",
            root.join("target/release/sentinel-evasion"),
        )
        // The package test installs the package `test` builds.
        .env("SENTINEL_DEB", package::deb_path(root)?)
        .args(args)
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

fn build(root: &Path) -> Result<()> {
    build_ebpf(root)?;
    cargo(
        root,
        &[
            "build",
            "--locked",
            "--release",
            "-p",
            "sentinel",
            "-p",
            "sentinel-evasion",
        ],
    )
}

fn test(root: &Path, lint: bool) -> Result<()> {
    setup::all(root)?;
    // Builds the binary too; the package test installs it.
    package::build(root)?;
    if lint {
        cargo(root, &["fmt", "--all", "--check"])?;
        // The eBPF crate is outside the workspace; its files are formatted
        // by the same rules (rustfmt follows its `mod` declarations).
        let status = Command::new("rustfmt")
            .current_dir(root)
            .args(["--edition", "2021", "--check", "sentinel-ebpf/src/main.rs"])
            .status()
            .context("running rustfmt on the eBPF crate")?;
        if !status.success() {
            bail!("the eBPF crate is not formatted: run `rustfmt --edition 2021 sentinel-ebpf/src/main.rs`");
        }
        cargo(
            root,
            &[
                "clippy",
                "--locked",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        )?;
    }
    // Unit tests and the userspace crates' own integration tests.
    cargo(
        root,
        &["test", "--locked", "--workspace", "--exclude", "sentinel"],
    )?;
    // The sentinel crate: unit tests, then the real-kernel tests. Those
    // share one kernel, so they run one at a time.
    cargo(
        root,
        &[
            "test",
            "--locked",
            "--release",
            "-p",
            "sentinel",
            "--",
            "--test-threads=1",
        ],
    )?;
    // The BPF-LSM path, in a guest kernel that allows it.
    guest_lsm::run(root)?;
    // The fanotify guard on a kernel without pre-content events.
    guest_fanotify::run(root)?;
    println!("xtask: every test passed");
    Ok(())
}

/// Every benchmark, one after the other: the overhead, flood, audit and
/// memory tables (tests/overhead.rs, beside bpftrace and auditd), the
/// process table at 100,000 processes, what the fanotify guard adds to an
/// open, then the MCP proxy's latency (sentinel-mcp's proxy_latency bench)
/// and the LLM API proxy's (sentinel-llm's proxy bench).
fn bench(root: &Path) -> Result<()> {
    setup::all(root)?;
    setup::bench_peers()?;
    build(root)?;
    let audit_daemon_before = setup::audit_daemon_pid();
    let overhead = cargo(
        root,
        &["bench", "--locked", "-p", "sentinel", "--bench", "overhead"],
    );
    setup::bench_peers_stopped(audit_daemon_before)?;
    overhead?;
    println!("\n## The process table at 100,000 processes (criterion)\n");
    cargo(
        root,
        &[
            "bench",
            "--locked",
            "-p",
            "sentinel",
            "--bench",
            "process_table",
        ],
    )?;
    println!("\n## fanotify guard: what it adds to an open (criterion)\n");
    cargo(
        root,
        &[
            "bench",
            "--locked",
            "-p",
            "sentinel-fanotify",
            "--bench",
            "open",
        ],
    )?;
    println!("\n## MCP proxy: tools/call latency, direct and through the proxy\n");
    cargo(
        root,
        &[
            "bench",
            "--locked",
            "-p",
            "sentinel-mcp",
            "--bench",
            "proxy_latency",
        ],
    )?;
    println!("\n## LLM API proxy: latency per request, direct and through the proxy\n");
    cargo(
        root,
        &[
            "bench",
            "--locked",
            "-p",
            "sentinel-llm",
            "--bench",
            "proxy",
        ],
    )
}
