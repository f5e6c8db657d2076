//! `cargo xtask package`: a Debian package of Sentinel, built with
//! `dpkg-deb` from a staged tree — the binary (eBPF object embedded,
//! debug info stripped), the hardened systemd unit, the commented default
//! configuration (a conffile), the default policies, the `--help` text of
//! every command, and maintainer scripts that honour `DPKG_ROOT`.
//!
//! Why not cargo-deb: the binary must be built by xtask anyway (the eBPF
//! object first), dpkg-deb is on every Debian machine, and installing
//! cargo-deb would compile a few hundred crates for what is here a
//! staged directory and a control file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Commands whose `--help` text is shipped.
const HELP: &[&[&str]] = &[
    &[],
    &["run"],
    &["status"],
    &["top"],
    &["doctor"],
    &["config", "show"],
    &["mode"],
    &["approve"],
    &["deny"],
    &["policy"],
    &["audit"],
    &["audit", "verify"],
    &["audit", "export"],
    &["alerts"],
    &["alerts", "webhook", "set"],
    &["mcp-proxy"],
    &["mcp-admin"],
];

/// Where `build` puts the package.
pub fn deb_path(root: &Path) -> Result<PathBuf> {
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    Ok(root.join(format!(
        "target/debian/sentinel_{}_{arch}.deb",
        env!("CARGO_PKG_VERSION")
    )))
}

/// Builds the package; returns its path.
pub fn build(root: &Path) -> Result<PathBuf> {
    crate::build(root)?;
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out_dir = root.join("target/debian");
    let stage = out_dir.join(format!("sentinel_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("clearing {}", stage.display()))?;
    }
    let packaging = root.join("packaging");

    let bin = stage.join("usr/bin/sentinel");
    copy(&root.join("target/release/sentinel"), &bin, 0o755)?;
    run(Command::new("strip").arg("--strip-debug").arg(&bin))?;
    copy(
        &packaging.join("sentinel.service"),
        &stage.join("lib/systemd/system/sentinel.service"),
        0o644,
    )?;
    copy(
        &packaging.join("sentinel.toml"),
        &stage.join("etc/sentinel/sentinel.toml"),
        0o644,
    )?;
    let policies = root.join("policies");
    for entry in fs::read_dir(&policies).context("reading policies/")? {
        let path = entry?.path();
        if let Some(name) = path.file_name() {
            copy(
                &path,
                &stage.join("usr/share/sentinel/policies").join(name),
                0o644,
            )?;
        }
    }
    let doc = stage.join("usr/share/doc/sentinel");
    copy(&root.join("README.md"), &doc.join("README.md"), 0o644)?;
    fs::write(
        doc.join("copyright"),
        "Sentinel\nLicense: MIT OR Apache-2.0\n",
    )?;
    for args in HELP {
        let text = output(Command::new(&bin).args(*args).arg("--help"))
            .with_context(|| format!("sentinel {} --help", args.join(" ")))?;
        let name = std::iter::once("sentinel")
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join("-");
        fs::create_dir_all(doc.join("help"))?;
        fs::write(doc.join("help").join(format!("{name}.txt")), text + "\n")?;
    }

    let debian = stage.join("DEBIAN");
    for script in ["postinst", "prerm", "postrm"] {
        copy(
            &packaging.join("debian").join(script),
            &debian.join(script),
            0o755,
        )?;
    }
    fs::write(debian.join("conffiles"), "/etc/sentinel/sentinel.toml\n")?;
    let size_kib = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(&stage),
    )?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_string();
    fs::write(
        debian.join("control"),
        format!(
            "Package: sentinel\n\
             Version: {version}\n\
             Architecture: {arch}\n\
             Maintainer: Sentinel developers <sentinel@localhost>\n\
             Installed-Size: {size_kib}\n\
             Depends: libc6 (>= 2.34)\n\
             Recommends: systemd\n\
             Section: admin\n\
             Priority: optional\n\
             Description: runtime security for AI agents (eBPF observer and enforcement)\n \
             Sentinel watches the processes of AI agents running as their own users:\n \
             every exec, file open and connect is decided by one policy engine,\n \
             enforced in the kernel where it can be, and recorded in a sealed,\n \
             tamper-evident audit chain exported as JSONL or CEF (syslog over TLS).\n"
        ),
    )?;
    let deb = deb_path(root)?;
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    println!("xtask: built {}", deb.display());
    Ok(deb)
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
