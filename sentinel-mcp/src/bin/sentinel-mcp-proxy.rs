//! `sentinel-mcp-proxy`: the `sentinel mcp-proxy` subcommand as a binary of
//! its own, for this crate's integration tests and benchmarks.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "sentinel-mcp-proxy",
    about = "Run an MCP server behind Sentinel"
)]
struct Cli {
    #[command(flatten)]
    args: sentinel_mcp::cli::McpProxyArgs,
}

fn main() -> std::process::ExitCode {
    sentinel_mcp::cli::run(Cli::parse().args)
}
