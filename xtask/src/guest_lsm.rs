//! The BPF-LSM enforcement test: boots the guest kernel (see `guest`) with
//! the release `sentinel` binary and runs `tests/guest/lsm.sh` in it. The
//! host kernel refuses LSM programs, so this is where that path is tested
//! for real. A guest that cannot start is an error, never a pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::guest::{run_guest_test, stripped_copy, GuestSpec};

const SCRIPT: &str = include_str!("../../tests/guest/lsm.sh");

pub fn run(root: &Path) -> Result<()> {
    let bin = stripped_copy(root, "target/release/sentinel", "sentinel")?;
    // The binary goes in through `binaries` so its libraries come along;
    // the script puts it on PATH.
    let guest_bin = PathBuf::from("/usr/local/bin/sentinel");
    let spec = GuestSpec {
        binaries: vec![bin.clone()],
        extra_files: vec![
            (
                root.join("tests/guest/policy"),
                "/sentinel-guest/policy".into(),
            ),
            (
                "/usr/bin/true".into(),
                "/sentinel-guest/forbidden-tool".into(),
            ),
        ],
        script: format!("cp {} {}\n{SCRIPT}", bin.display(), guest_bin.display()),
        timeout: Duration::from_secs(300),
    };
    eprintln!("xtask: BPF-LSM test in the guest kernel (qemu, software emulation)");
    let outcome = run_guest_test(root, &spec)?;
    if !outcome.passed {
        eprintln!("{}", outcome.console);
        bail!("the BPF-LSM guest test failed: {}", outcome.reason);
    }
    eprintln!(
        "xtask: BPF-LSM guest test passed in {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(())
}
