//! Checks and preparation before anything is loaded: root, kernel BTF,
//! ring-buffer support, the kernel filesystems the loader needs, and the
//! UIDs the operator asked to watch. Each failure is one line that says
//! what to do; nothing has been attached when one is returned.

use std::ffi::CStr;
use std::process::Command;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum PreflightError {
    #[error("sentinel must run as root to load eBPF programs (try: sudo sentinel {0})")]
    NotRoot(&'static str),
    #[error("this kernel exposes no BTF at /sys/kernel/btf/vmlinux; Sentinel needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf,
    #[error("this kernel has no BPF ring buffer support; Sentinel needs Linux 5.8 or newer")]
    NoRingBuf,
    #[error("no user has uid {0}: create the agent's user first or pass an existing --uid")]
    NoSuchUid(u32),
    #[error("could not mount {fs} on {target}: {why}; mount it yourself and retry")]
    Mount {
        fs: &'static str,
        target: &'static str,
        why: String,
    },
}

pub fn require_root(command: &'static str) -> Result<(), PreflightError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(PreflightError::NotRoot(command));
    }
    Ok(())
}

pub fn require_kernel_support() -> Result<(), PreflightError> {
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(PreflightError::NoBtf);
    }
    match aya::sys::is_map_supported(aya::maps::MapType::RingBuf) {
        Ok(true) => Ok(()),
        _ => Err(PreflightError::NoRingBuf),
    }
}

/// The user name of `uid`, or an error when no such user exists.
pub fn user_name(uid: u32) -> Result<String, PreflightError> {
    // SAFETY: getpwuid returns a pointer into static storage or null; we
    // copy the name out before any other passwd call.
    unsafe {
        let pw = libc::getpwuid(uid);
        if pw.is_null() {
            return Err(PreflightError::NoSuchUid(uid));
        }
        Ok(CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    }
}

/// Mounts tracefs (tracepoint ids) and bpffs when they are missing.
pub fn mount_kernel_filesystems() -> Result<(), PreflightError> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    for (fs, target) in [("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")] {
        if mounts
            .lines()
            .any(|l| l.split_whitespace().nth(1) == Some(target))
        {
            continue;
        }
        let out = Command::new("mount")
            .args(["-t", fs, fs, target])
            .output()
            .map_err(|e| PreflightError::Mount {
                fs,
                target,
                why: e.to_string(),
            })?;
        if !out.status.success() {
            return Err(PreflightError::Mount {
                fs,
                target,
                why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
    }
    Ok(())
}
