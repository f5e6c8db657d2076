//! `cargo xtask fuzz`: builds the libFuzzer targets in `fuzz/` with the
//! pinned nightly and the sanitizer-coverage flags cargo-fuzz uses (no
//! cargo-fuzz install needed), then runs each for the time asked.
//!
//! Corpora grow in `fuzz/corpus/TARGET` (seeded from `fuzz/seeds/TARGET`
//! and, for the policy target, the shipped `policies/`); a crash leaves
//! its input in `fuzz/artifacts/TARGET/` and fails the run, with the
//! command that replays it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::toolchain::{ensure_nightly, NIGHTLY};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &["jsonrpc", "policy", "ring_record"];
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The flags cargo-fuzz passes for libFuzzer with AddressSanitizer.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks";

/// Builds the targets, then runs `only` (or all of them) for `seconds`
/// each.
pub fn run(root: &Path, seconds: u64, only: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!(
            "no fuzz target {t:?}; the targets are {}",
            TARGETS.join(", ")
        ),
        None => TARGETS.to_vec(),
    };
    let binaries = build(root)?;
    for target in targets {
        let corpus = root.join("fuzz/corpus").join(target);
        let artifacts = root.join("fuzz/artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let mut seeds = vec![root.join("fuzz/seeds").join(target)];
        if target == "policy" {
            seeds.push(root.join("policies"));
        }
        let binary = binaries.join(target);
        println!("xtask: fuzzing {target} for {seconds} s");
        let status = Command::new(&binary)
            .arg(&corpus)
            .args(seeds.iter().filter(|s| s.is_dir()))
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .arg("-max_len=65536")
            .status()
            .with_context(|| format!("running {}", binary.display()))?;
        if !status.success() {
            bail!(
                "fuzz target {target} failed ({status}); the crashing input is in {}; replay it with `{} FILE`",
                artifacts.display(),
                binary.display()
            );
        }
    }
    println!("xtask: every fuzz target ran without a crash");
    Ok(())
}

/// Builds every target; returns the directory holding the binaries.
fn build(root: &Path) -> Result<PathBuf> {
    ensure_nightly()?;
    let dir = root.join("fuzz");
    let status = Command::new("cargo")
        .current_dir(&dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTFLAGS", RUSTFLAGS)
        .env("RUSTDOCFLAGS", RUSTFLAGS)
        .args([
            &format!("+{NIGHTLY}"),
            "build",
            "--release",
            "--target",
            TRIPLE,
            "--bins",
        ])
        .status()
        .context("running cargo for the fuzz targets")?;
    if !status.success() {
        bail!("building the fuzz targets failed");
    }
    Ok(dir.join("target").join(TRIPLE).join("release"))
}
