//! Installs the real peers the integration tests drive: the Python MCP
//! SDK (`mcp` from PyPI, pinned in tests/mcp/requirements.txt) into a venv
//! and the npm reference servers (pinned in tests/mcp/package.json +
//! package-lock.json) into a node folder, both under target/mcp-peers; and
//! the `openai` and `anthropic` SDKs (pinned in tests/llm/requirements.txt)
//! the LLM proxy tests use as clients, into target/llm-peers/venv.
//! Idempotent: a part whose pinned inputs did not change since it was
//! installed is skipped.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Where the peers are installed, relative to the workspace root.
pub const PEERS_DIR: &str = "target/mcp-peers";

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {what}; is it installed?"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// True when `stamp` holds exactly `inputs` (the part is up to date).
fn up_to_date(stamp: &Path, inputs: &str) -> bool {
    fs::read_to_string(stamp).is_ok_and(|s| s == inputs)
}

/// Installs (or confirms) the Python venv and the npm servers.
pub fn ensure_mcp_peers(root: &Path) -> Result<()> {
    let spec = root.join("tests/mcp");
    let peers = root.join(PEERS_DIR);
    fs::create_dir_all(&peers).with_context(|| format!("cannot create {}", peers.display()))?;

    ensure_venv(
        &spec.join("requirements.txt"),
        &peers.join("venv"),
        "the Python MCP SDK",
    )?;

    let node = peers.join("node");
    fs::create_dir_all(&node)?;
    let manifest = fs::read_to_string(spec.join("package.json"))
        .context("cannot read tests/mcp/package.json")?;
    let lock = fs::read_to_string(spec.join("package-lock.json")).unwrap_or_default();
    let inputs = format!("{manifest}\n--lock--\n{lock}");
    let stamp = node.join(".sentinel-packages");
    if up_to_date(&stamp, &inputs) && node.join("node_modules/.bin").exists() {
        eprintln!("mcp peers: npm servers up to date ({})", node.display());
    } else {
        eprintln!(
            "mcp peers: installing the npm reference servers into {}",
            node.display()
        );
        fs::write(node.join("package.json"), &manifest)?;
        let mut npm = Command::new("npm");
        npm.current_dir(&node).args(["--no-audit", "--no-fund"]);
        if lock.is_empty() {
            npm.arg("install");
        } else {
            fs::write(node.join("package-lock.json"), &lock)?;
            npm.arg("ci");
        }
        run(&mut npm, "npm install of tests/mcp/package.json")?;
        fs::write(&stamp, &inputs)?;
    }
    Ok(())
}

/// The LLM SDKs, in a venv of their own (their pins differ from the MCP
/// SDK's).
pub fn ensure_llm_peers(root: &Path) -> Result<()> {
    ensure_venv(
        &root.join("tests/llm/requirements.txt"),
        &root.join(LLM_PEERS_DIR).join("venv"),
        "the openai and anthropic SDKs",
    )
}

/// Where the LLM SDKs are installed, relative to the workspace root.
pub const LLM_PEERS_DIR: &str = "target/llm-peers";

/// Creates `venv` with the pinned `requirements` unless it already holds
/// exactly them.
fn ensure_venv(requirements: &Path, venv: &Path, what: &str) -> Result<()> {
    let wanted = fs::read_to_string(requirements)
        .with_context(|| format!("cannot read {}", requirements.display()))?;
    let stamp = venv.join(".sentinel-requirements");
    if up_to_date(&stamp, &wanted) && venv.join("bin/python").exists() {
        eprintln!("peers: {what} up to date ({})", venv.display());
        return Ok(());
    }
    eprintln!("peers: installing {what} into {}", venv.display());
    if let Some(parent) = venv.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    run(
        Command::new("python3").arg("-m").arg("venv").arg(venv),
        "python3 -m venv",
    )?;
    run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements),
        &format!("pip install -r {}", requirements.display()),
    )?;
    fs::write(&stamp, &wanted)?;
    Ok(())
}
