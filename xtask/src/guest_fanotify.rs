//! The fanotify guard on the guest kernel (Debian 6.1: permission events,
//! no pre-content events): boots it with `sentinel-fanotify`'s `check`
//! example, which refuses a watched open, O_TRUNC open and exec for real,
//! and asserts the documented fallback for what 6.1 lacks (`truncate(2)`
//! is only reported after the fact). A guest that cannot start is an
//! error, never a pass.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::guest::{run_guest_test, stripped_copy, GuestSpec};

pub fn run(root: &Path) -> Result<()> {
    crate::cargo(
        root,
        &[
            "build",
            "--locked",
            "--release",
            "-p",
            "sentinel-fanotify",
            "--example",
            "check",
        ],
    )?;
    let bin = stripped_copy(root, "target/release/examples/check", "fanotify-check")?;
    let spec = GuestSpec {
        binaries: vec![bin.clone()],
        extra_files: Vec::new(),
        script: format!("{} 2001 2002\n", bin.display()),
        timeout: Duration::from_secs(300),
        lsm: None,
    };
    eprintln!("xtask: fanotify guard check in the guest kernel (qemu, software emulation)");
    let outcome = run_guest_test(root, &spec)?;
    if !outcome.passed {
        eprintln!("{}", outcome.console);
        bail!("the fanotify guest check failed: {}", outcome.reason);
    }
    for line in outcome
        .console
        .lines()
        .filter(|l| l.contains("fanotify-check:"))
    {
        eprintln!("guest: {}", line.trim());
    }
    eprintln!(
        "xtask: fanotify guest check passed in {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(())
}
