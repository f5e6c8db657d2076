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
