//! Machine set-up for running and testing: kernel filesystems, test users,
//! and the peers other crates' tests need. Every step checks first and
//! does nothing when already done.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The UIDs the integration tests run as: the first is watched, the second
/// never is. Created if missing; they persist between runs.
pub const TEST_USERS: &[(u32, &str)] = &[(2001, "sentineltest"), (2002, "sentinelother")];

pub fn all(root: &Path) -> Result<()> {
    require_root()?;
    crate::toolchain::ensure_ebpf_toolchain(root)?;
    kernel_mounts()?;
    test_users()?;
    crate::mcp_peers::ensure_mcp_peers(root)?;
    crate::mcp_peers::ensure_llm_peers(root)?;
    debian_packages(CONSOLE_PACKAGES)?;
    debian_packages(GUARD_PACKAGES)?;
    Ok(())
}

/// Debian packages the agent-guard tests use as peers: the real `sudo`
/// (the sudo gate) and `nftables` (the cut-network response).
pub const GUARD_PACKAGES: &[&str] = &["sudo", "nftables"];

/// Debian packages the operator-console tests drive for real: Prometheus
/// (and promtool) scraping the daemon, rsyslog with its GnuTLS driver
/// receiving syslog over TLS, tmux for the dashboard, systemd for
/// `systemd-analyze verify` of the unit.
pub const CONSOLE_PACKAGES: &[&str] =
    &["prometheus", "rsyslog", "rsyslog-gnutls", "tmux", "systemd"];

/// Installs the packages that are missing (`apt-get update` first, only
/// when something is missing); nothing when all are there.
pub fn debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| !crate::guest::dpkg_installed(p))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: apt-get install {}", missing.join(" "));
    let update = Command::new("apt-get")
        .args(crate::guest::apt_lock_args())
        .arg("update")
        .status()
        .context("running apt-get update")?;
    if !update.success() {
        bail!("apt-get update failed: check the network and /etc/apt/sources.list");
    }
    let install = Command::new("apt-get")
        .args(crate::guest::apt_lock_args())
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !install.success() {
        bail!(
            "installing {} failed: run `apt-get install -y {}` as root and retry",
            missing.join(" "),
            missing.join(" ")
        );
    }
    Ok(())
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("run as root (sudo): loading eBPF programs and creating test users needs it");
    }
    Ok(())
}

/// tracefs, bpffs and securityfs are not mounted on these machines by
/// default.
pub fn kernel_mounts() -> Result<()> {
    let mounts =
        std::fs::read_to_string("/proc/self/mounts").context("reading /proc/self/mounts")?;
    for (fstype, target) in [
        ("tracefs", "/sys/kernel/tracing"),
        ("bpf", "/sys/fs/bpf"),
        ("securityfs", "/sys/kernel/security"),
    ] {
        let mounted = mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target));
        if mounted {
            continue;
        }
        let status = Command::new("mount")
            .args(["-t", fstype, fstype, target])
            .status()
            .with_context(|| format!("mounting {fstype}"))?;
        if !status.success() {
            bail!("could not mount {fstype} on {target}");
        }
    }
    Ok(())
}

fn test_users() -> Result<()> {
    for (uid, name) in TEST_USERS {
        let exists = Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if exists {
            continue;
        }
        let status = Command::new("useradd")
            .args(["-u", &uid.to_string(), "-m", "-s", "/bin/sh", name])
            .status()
            .context("running useradd")?;
        if !status.success() {
            bail!("useradd {name} (uid {uid}) failed");
        }
    }
    Ok(())
}
