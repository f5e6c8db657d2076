//! The eBPF toolchain: a pinned nightly with rust-src, and a bpf-linker
//! built against that nightly's own libLLVM, kept in `.tools/` so nothing
//! global is touched. Both are installed only when missing.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Keep in step with `sentinel-ebpf/rust-toolchain.toml`.
pub const NIGHTLY: &str = "nightly-2026-05-19";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// The LLVM major of `NIGHTLY` (bpf-linker's feature `llvm-<major>`).
const LLVM_MAJOR: &str = "22";

/// Makes sure the nightly, rust-src and a matching bpf-linker exist;
/// returns the directory holding `bpf-linker`.
pub fn ensure_ebpf_toolchain(root: &Path) -> Result<PathBuf> {
    ensure_nightly()?;
    ensure_bpf_linker(root)
}

pub fn ensure_nightly() -> Result<()> {
    let has_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", NIGHTLY])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if has_src {
        return Ok(());
    }
    eprintln!("xtask: installing {NIGHTLY} with rust-src");
    let status = Command::new("rustup")
        .args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ])
        .status()
        .context("running rustup (is rustup installed?)")?;
    if !status.success() {
        bail!("rustup could not install {NIGHTLY}; check network access to the Rust distribution server");
    }
    Ok(())
}

fn ensure_bpf_linker(root: &Path) -> Result<PathBuf> {
    let install_root = root.join(format!(".tools/bpf-linker-{NIGHTLY}"));
    let bin_dir = install_root.join("bin");
    let linker = bin_dir.join("bpf-linker");
    // bpf-linker links against the nightly's libLLVM.so (cargo puts the
    // toolchain's lib directory on the loader path when it runs it).
    let sysroot = rustc_sysroot()?;
    if linker.exists()
        && Command::new(&linker)
            .arg("--version")
            .env("LD_LIBRARY_PATH", sysroot.join("lib"))
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    {
        return Ok(bin_dir);
    }
    let lib = std::fs::read_dir(sysroot.join("lib"))
        .context("reading the nightly's lib directory")?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("libLLVM.so.{LLVM_MAJOR}")))
        })
        .with_context(|| format!("no libLLVM.so.{LLVM_MAJOR}* in {NIGHTLY}'s sysroot"))?;
    let prefix = root.join(format!(".tools/llvm-{NIGHTLY}"));
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    symlink(&lib, &link).context("linking libLLVM.so")?;
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against {NIGHTLY}'s LLVM (about a minute)"
    );
    let status = Command::new("cargo")
        .env("LLVM_PREFIX", &prefix)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO_TARGET_DIR")
        .args([
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--locked",
            "--no-default-features",
            "--features",
            &format!("llvm-{LLVM_MAJOR}"),
            "--root",
        ])
        .arg(&install_root)
        .status()
        .context("running cargo install bpf-linker")?;
    if !status.success() {
        bail!("building bpf-linker failed");
    }
    Ok(bin_dir)
}

fn rustc_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .arg(format!("+{NIGHTLY}"))
        .args(["--print", "sysroot"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .context("running rustc")?;
    if !out.status.success() {
        bail!("rustc +{NIGHTLY} --print sysroot failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
