//! The guest-kernel tests: boots the Debian 6.1 guest kernel (see `guest`)
//! with the release `sentinel` and `sentinel-evasion` binaries and runs
//!
//! - `tests/guest/lsm.sh`: exec, open and connect refused by BPF LSM;
//! - `tests/guest/evasion.sh` with BPF LSM active: the evasion corpus;
//! - `tests/guest/evasion.sh` again with `bpf` left out of `lsm=` (a kernel
//!   built with BPF LSM whose LSM programs never run, like stock Ubuntu):
//!   status must report the fallback, and the corpus is still refused.
//!
//! The host kernel refuses LSM programs, so this is where that path is
//! tested for real. A guest that cannot start is an error, never a pass.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::guest::{run_guest_test, stripped_copy, GuestSpec};

const LSM_SCRIPT: &str = include_str!("../../tests/guest/lsm.sh");
const EVASION_SCRIPT: &str = include_str!("../../tests/guest/evasion.sh");
/// The guest kernel's default LSM list without `bpf`.
const LSM_WITHOUT_BPF: &str = "landlock,lockdown,yama,integrity,apparmor";

pub fn run(root: &Path) -> Result<()> {
    let sentinel = stripped_copy(root, "target/release/sentinel", "sentinel")?;
    let evasion = stripped_copy(root, "target/release/sentinel-evasion", "sentinel-evasion")?;
    // The binaries go in through `binaries` so their libraries come along;
    // the script puts them on PATH.
    let install = format!(
        "cp {} /usr/local/bin/sentinel\ncp {} /usr/local/bin/sentinel-evasion\n",
        sentinel.display(),
        evasion.display()
    );
    let boots = [
        ("BPF-LSM enforcement", LSM_SCRIPT.to_string(), None),
        (
            "evasion corpus under BPF LSM",
            format!("EXPECT=lsm\n{EVASION_SCRIPT}"),
            None,
        ),
        (
            "evasion corpus with bpf left out of lsm=",
            format!("EXPECT=fallback\n{EVASION_SCRIPT}"),
            Some(LSM_WITHOUT_BPF.to_string()),
        ),
    ];
    for (name, script, lsm) in boots {
        let spec = GuestSpec {
            binaries: vec![sentinel.clone(), evasion.clone()],
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
            script: format!("{install}{script}"),
            timeout: Duration::from_secs(600),
            lsm,
        };
        eprintln!("xtask: guest kernel test: {name} (qemu, software emulation)");
        let outcome = run_guest_test(root, &spec)?;
        if !outcome.passed {
            eprintln!("{}", outcome.console);
            bail!("the guest test \"{name}\" failed: {}", outcome.reason);
        }
        eprintln!(
            "xtask: guest test \"{name}\" passed in {:.1} s",
            outcome.elapsed.as_secs_f64()
        );
    }
    Ok(())
}
