//! Guest-kernel test harness: runs a shell script as root inside a Debian
//! cloud kernel booted under qemu (software emulation), because the host
//! kernel refuses BPF LSM programs and that guest kernel accepts them.
//!
//! This module owns, under `<root>/target/guest/`:
//! - host set-up: `apt-get update` once, `qemu-system-x86`, `busybox-static`
//!   and `cpio` installed if missing;
//! - the guest kernel: the current `linux-image-*-cloud-amd64-unsigned`
//!   package, downloaded and unpacked once, checked for `CONFIG_BPF_LSM=y`;
//! - a per-run initramfs: busybox, the caller's binaries with their shared
//!   libraries (via `ldd`), extra files, test users 2001 `sentineltest` and
//!   2002 `sentinelother`, and the `/init` from `tests/guest/init.sh`;
//! - booting it, enforcing the timeout and reading the verdict line.
//!
//! Inside the guest: cgroup v2 is at `/sys/fs/cgroup/unified` (a tmpfs on
//! `/sys/fs/cgroup`, like the development hosts), tracefs at
//! `/sys/kernel/tracing`, securityfs at `/sys/kernel/security`, bpffs at
//! `/sys/fs/bpf`. The script runs as root under `sh -e -o pipefail` from `/root`;
//! `as-user sentineltest PROG ARGS...` (from `tests/guest/as-user`, a wrapper
//! of busybox `su -s PROG -- sentineltest ARGS...`) runs PROG as uid/gid 2001.
//!
//! A pass is reported only when the guest printed its result line carrying
//! this boot's nonce. Anything that stops the guest from running the script
//! (no qemu, no kernel, no result line before the timeout) is an `Err`.

use anyhow::{anyhow, bail, Context, Result};
use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Prefix of the verdict line `/init` prints: `SENTINEL-GUEST-RESULT <nonce>: PASS`
/// or `SENTINEL-GUEST-RESULT <nonce>: FAIL <reason>`.
pub const RESULT_MARKER: &str = "SENTINEL-GUEST-RESULT";

/// Every error that means "the guest test did not run" starts with this, so
/// it cannot be mistaken for a test result in CI logs.
const NOT_RUN: &str = "GUEST KERNEL TEST DID NOT RUN";

const INIT_TEMPLATE: &str = include_str!("../../tests/guest/init.sh");
const PASSWD: &str = include_str!("../../tests/guest/passwd");
const GROUP: &str = include_str!("../../tests/guest/group");
const AS_USER: &str = include_str!("../../tests/guest/as-user");
const SELFTEST_SCRIPT: &str = include_str!("../../tests/guest/selftest.sh");

const KERNEL_PKG_PATTERN: &str = "^linux-image-[0-9.]+-[0-9]+-cloud-amd64-unsigned$";

/// What to run in the guest.
#[derive(Debug, Clone)]
pub struct GuestSpec {
    /// Host executables, copied into the initramfs at the same (absolute)
    /// path together with the shared libraries `ldd` lists for them. They
    /// replace a busybox applet of the same path.
    pub binaries: Vec<PathBuf>,
    /// `(host path, guest path)`: files or directories copied as they are.
    pub extra_files: Vec<(PathBuf, PathBuf)>,
    /// Shell run by `/init` as root with busybox `sh -e -o pipefail` from
    /// `/root` after the mounts; exit 0 is a pass, anything else a fail. Must
    /// not power the guest off itself (that is reported as an `Err`).
    pub script: String,
    /// Wall-clock limit for boot, script and power-off together.
    pub timeout: Duration,
    /// `lsm=` for this boot instead of the kernel's own list (with `bpf`
    /// added when it lacks it), e.g. a list without `bpf`.
    pub lsm: Option<String>,
}

/// What the guest reported.
#[derive(Debug, Clone)]
pub struct GuestOutcome {
    /// True only if the guest printed this boot's `PASS` result line.
    pub passed: bool,
    /// Everything the guest wrote to its serial console.
    pub console: String,
    /// The text after `FAIL` on a failure; empty on a pass.
    pub reason: String,
    /// Wall time from starting qemu to its exit.
    pub elapsed: Duration,
}

/// A guest kernel ready to boot.
#[derive(Debug, Clone)]
struct GuestKernel {
    vmlinuz: PathBuf,
    /// Extra kernel command-line words (`lsm=...,bpf` when the default LSM
    /// list of the kernel lacks bpf).
    extra_cmdline: String,
}

/// Boots the guest kernel with an initramfs built from `spec`, runs
/// `spec.script` and returns the guest's verdict.
///
/// Returns `Err` whenever the guest could not be started or gave no verdict;
/// `Ok` with `passed == false` when the script itself failed.
pub fn run_guest_test(root: &Path, spec: &GuestSpec) -> Result<GuestOutcome> {
    let cache = root.join("target").join("guest");
    let kernel = prepare(&cache).map_err(|e| anyhow!("{NOT_RUN}: {e:#}"))?;

    let run_dir = cache.join("runs").join(run_id());
    let result = (|| {
        let nonce = nonce();
        let initrd = build_initramfs(&run_dir, spec, &nonce)
            .context("building the guest initramfs failed")?;
        let mut kernel = kernel.clone();
        if let Some(lsm) = &spec.lsm {
            kernel.extra_cmdline = format!("lsm={lsm}");
        }
        boot(&kernel, &initrd, &nonce, spec.timeout)
    })();
    if std::env::var_os("SENTINEL_GUEST_KEEP").is_none() {
        let _ = fs::remove_dir_all(&run_dir);
    }
    result.map_err(|e| anyhow!("{NOT_RUN}: {e:#}"))
}

/// Copies the release binary `built` (relative to the workspace root) to
/// `target/guest/<name>` and strips it: a small initramfs (release
/// binaries carry debug info). Returns the copy's path, to put in
/// `GuestSpec::binaries`.
pub fn stripped_copy(root: &Path, built: &str, name: &str) -> Result<PathBuf> {
    let dir = root.join("target/guest");
    fs::create_dir_all(&dir)?;
    let bin = dir.join(name);
    fs::copy(root.join(built), &bin)
        .with_context(|| format!("copying {built} (build it first)"))?;
    let status = Command::new("strip")
        .arg(&bin)
        .status()
        .context("running strip")?;
    if !status.success() {
        bail!("strip failed on {}", bin.display());
    }
    Ok(bin)
}

/// Boots the guest once with a script that checks BPF LSM is active, the
/// mounts are in place, a dynamic host binary and an extra file arrived, and
/// the test users can run commands. Prints the boot time.
pub fn self_test(root: &Path) -> Result<()> {
    let cache = root.join("target").join("guest");
    fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}: check permissions", cache.display()))?;
    let extra = cache.join("selftest-extra.txt");
    fs::write(&extra, "extra-file-ok\n")
        .with_context(|| format!("cannot write {}", extra.display()))?;
    let getent = find_in_path("getent").ok_or_else(|| {
        anyhow!(
            "guest self-test needs the host's getent (package libc-bin) as its dynamic test binary"
        )
    })?;

    let spec = GuestSpec {
        binaries: vec![getent],
        extra_files: vec![(extra, PathBuf::from("/sentinel-guest/selftest-extra.txt"))],
        script: SELFTEST_SCRIPT.to_string(),
        timeout: Duration::from_secs(180),
        lsm: None,
    };
    let outcome = run_guest_test(root, &spec)?;
    if !outcome.passed {
        bail!(
            "guest self-test FAILED: {}\n--- guest console ---\n{}",
            outcome.reason,
            outcome.console
        );
    }
    println!(
        "guest self-test passed: booted, ran the checks and powered off in {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------- host set-up

/// Steps 1–2: host tools and the guest kernel, each skipped when done.
fn prepare(cache: &Path) -> Result<GuestKernel> {
    fs::create_dir_all(cache)
        .with_context(|| format!("cannot create {}: check permissions", cache.display()))?;
    // One set-up at a time, across threads and processes (parallel tests).
    let lock_path = cache.join("prepare.lock");
    let lock = fs::File::create(&lock_path)
        .with_context(|| format!("cannot create {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let mut apt = Apt::new(cache);
    ensure_host_tools(&mut apt)?;
    ensure_kernel(cache, &mut apt)
}

/// Runs apt at most once per process, and `apt-get update` at most once per
/// cache (a stamp file), unless a download shows the lists are stale.
struct Apt {
    stamp: PathBuf,
    updated_now: bool,
}

impl Apt {
    fn new(cache: &Path) -> Self {
        Apt {
            stamp: cache.join("apt-updated.stamp"),
            updated_now: false,
        }
    }

    fn update_once(&mut self) -> Result<()> {
        if self.stamp.exists() || self.updated_now {
            return Ok(());
        }
        self.update()
    }

    fn update(&mut self) -> Result<()> {
        if self.updated_now {
            return Ok(());
        }
        eprintln!("guest: apt-get update (once per machine)");
        run(Command::new("apt-get").args(apt_lock_args()).arg("update"))
            .context("apt-get update failed: check the network and /etc/apt/sources.list")?;
        self.updated_now = true;
        fs::write(&self.stamp, "apt-get update done for the guest harness\n")
            .with_context(|| format!("cannot write {}", self.stamp.display()))?;
        Ok(())
    }
}

pub(crate) fn apt_lock_args() -> [&'static str; 2] {
    // Other helpers may run apt at the same time: wait for the lock.
    ["-o", "DPkg::Lock::Timeout=600"]
}

fn ensure_host_tools(apt: &mut Apt) -> Result<()> {
    let mut missing = Vec::new();
    if find_in_path("qemu-system-x86_64").is_none() {
        missing.push("qemu-system-x86");
    }
    if !dpkg_installed("busybox-static") {
        missing.push("busybox-static");
    }
    if find_in_path("cpio").is_none() {
        missing.push("cpio");
    }
    if missing.is_empty() {
        return Ok(());
    }
    apt.update_once()?;
    eprintln!("guest: apt-get install -y {}", missing.join(" "));
    run(Command::new("apt-get")
        .args(apt_lock_args())
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
    .with_context(|| {
        format!(
            "installing {} failed: run `apt-get install -y {}` as root and retry",
            missing.join(" "),
            missing.join(" ")
        )
    })?;
    if find_in_path("qemu-system-x86_64").is_none() {
        bail!("qemu-system-x86_64 is still not on PATH after installing qemu-system-x86");
    }
    Ok(())
}

pub(crate) fn dpkg_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn ensure_kernel(cache: &Path, apt: &mut Apt) -> Result<GuestKernel> {
    apt.update_once()?;
    let pkg = match current_kernel_package() {
        Ok(p) => p,
        Err(_) => {
            apt.update()?;
            current_kernel_package()?
        }
    };
    let dir = cache.join("kernel").join(&pkg);
    if find_vmlinuz(&dir).is_err() {
        if let Err(first) = download_and_unpack(cache, &pkg, &dir) {
            // Stale package lists are the usual cause: refresh and retry once.
            if apt.updated_now {
                return Err(first);
            }
            eprintln!("guest: download of {pkg} failed ({first:#}); refreshing package lists");
            apt.update()?;
            let pkg = current_kernel_package()?;
            let dir = cache.join("kernel").join(&pkg);
            if find_vmlinuz(&dir).is_err() {
                download_and_unpack(cache, &pkg, &dir)?;
            }
            return checked_kernel(&dir);
        }
    }
    checked_kernel(&dir)
}

/// The newest `linux-image-X.Y.Z-N-cloud-amd64-unsigned` apt knows about.
fn current_kernel_package() -> Result<String> {
    let out = Command::new("apt-cache")
        .args(["search", "--names-only", KERNEL_PKG_PATTERN])
        .output()
        .context("cannot run apt-cache: is this a Debian host?")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("linux-image-") && n.ends_with("-cloud-amd64-unsigned"))
        .max_by_key(|n| version_key(n))
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!("apt knows no linux-image-*-cloud-amd64-unsigned package: run `apt-get update` and check that Debian main is in the sources")
        })
}

/// `linux-image-6.1.0-50-cloud-amd64-unsigned` -> `[6, 1, 0, 50]`.
fn version_key(name: &str) -> Vec<u64> {
    name.trim_start_matches("linux-image-")
        .split(['.', '-'])
        .map_while(|p| p.parse().ok())
        .collect()
}

fn download_and_unpack(cache: &Path, pkg: &str, dir: &Path) -> Result<()> {
    let debs = cache.join("debs");
    fs::create_dir_all(&debs).with_context(|| format!("cannot create {}", debs.display()))?;
    let deb = match find_deb(&debs, pkg) {
        Some(d) => d,
        None => {
            eprintln!("guest: apt-get download {pkg}");
            run(Command::new("apt-get")
                // The cache may not be readable by the _apt sandbox user.
                .args(["-o", "APT::Sandbox::User=root", "download", pkg])
                .current_dir(&debs))
            .with_context(|| format!("apt-get download {pkg} failed"))?;
            find_deb(&debs, pkg).ok_or_else(|| {
                anyhow!(
                    "apt-get download {pkg} reported success but no .deb is in {}",
                    debs.display()
                )
            })?
        }
    };
    let tmp = cache
        .join("kernel")
        .join(format!("{pkg}.unpacking-{}", run_id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    eprintln!("guest: dpkg -x {}", deb.display());
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tmp))
        .with_context(|| format!("dpkg -x {} failed: delete it and retry", deb.display()))?;
    find_vmlinuz(&tmp).with_context(|| format!("{} holds no kernel", deb.display()))?;
    let _ = fs::remove_dir_all(dir);
    fs::rename(&tmp, dir)
        .with_context(|| format!("cannot move {} to {}", tmp.display(), dir.display()))?;
    Ok(())
}

fn find_deb(debs: &Path, pkg: &str) -> Option<PathBuf> {
    let prefix = format!("{pkg}_");
    fs::read_dir(debs)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
}

fn find_in_dir(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let boot = dir.join("boot");
    let entries = fs::read_dir(&boot).with_context(|| format!("cannot read {}", boot.display()))?;
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .ok_or_else(|| anyhow!("no {prefix}* in {}", boot.display()))
}

fn find_vmlinuz(dir: &Path) -> Result<PathBuf> {
    find_in_dir(dir, "vmlinuz-")
}

/// Checks the kernel config for BPF LSM and works out the `lsm=` parameter.
fn checked_kernel(dir: &Path) -> Result<GuestKernel> {
    let vmlinuz = find_vmlinuz(dir)?;
    let config_path = find_in_dir(dir, "config-")?;
    let config = fs::read_to_string(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let extra_cmdline = lsm_cmdline(&config).with_context(|| {
        format!(
            "guest kernel {} cannot run BPF LSM programs",
            vmlinuz.display()
        )
    })?;
    Ok(GuestKernel {
        vmlinuz,
        extra_cmdline,
    })
}

/// `Ok("")` if the default LSM list has bpf, `Ok("lsm=...,bpf")` if it must be
/// added, `Err` if the kernel was built without BPF LSM.
fn lsm_cmdline(config: &str) -> Result<String> {
    if !config.lines().any(|l| l.trim() == "CONFIG_BPF_LSM=y") {
        bail!("CONFIG_BPF_LSM=y is not in its config");
    }
    let list = config
        .lines()
        .find_map(|l| l.trim().strip_prefix("CONFIG_LSM="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    if list.split(',').any(|l| l == "bpf") {
        Ok(String::new())
    } else if list.is_empty() {
        Ok("lsm=bpf".to_string())
    } else {
        Ok(format!("lsm={list},bpf"))
    }
}

// ----------------------------------------------------------------- initramfs

/// Step 3: stages the guest's root file system in `run_dir/root` and packs
/// it into `run_dir/initrd.gz`.
fn build_initramfs(run_dir: &Path, spec: &GuestSpec, nonce: &str) -> Result<PathBuf> {
    let _ = fs::remove_dir_all(run_dir);
    let root = run_dir.join("root");
    for d in [
        "bin",
        "sbin",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "tmp",
        "run",
        "root",
        "home/sentineltest",
        "home/sentinelother",
        "sentinel-guest",
        "usr/local/bin",
        "var/tmp",
    ] {
        let p = root.join(d);
        fs::create_dir_all(&p).with_context(|| format!("cannot create {}", p.display()))?;
    }

    // busybox and its applet links.
    let busybox = Path::new("/bin/busybox");
    if !busybox.exists() {
        bail!("/bin/busybox is missing: apt-get install -y busybox-static");
    }
    let mut copied = BTreeSet::new();
    copy_binary_with_libs(&root, busybox, &mut copied)?;
    let list = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("cannot run /bin/busybox --list-full")?;
    if !list.status.success() {
        bail!("/bin/busybox --list-full failed: reinstall busybox-static");
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let applet = applet.trim().trim_start_matches('/');
        if applet.is_empty() || applet == "bin/busybox" {
            continue;
        }
        let link = root.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        symlink("/bin/busybox", &link)
            .with_context(|| format!("cannot link {}", link.display()))?;
    }

    // The caller's binaries (replacing applets of the same path).
    for bin in &spec.binaries {
        let abs = std::path::absolute(bin)
            .with_context(|| format!("cannot make {} absolute", bin.display()))?;
        if !abs.is_file() {
            bail!(
                "guest binary {} does not exist or is not a file: build it first",
                abs.display()
            );
        }
        copy_binary_with_libs(&root, &abs, &mut copied)?;
    }

    for (host, guest) in &spec.extra_files {
        if !guest.is_absolute() {
            bail!(
                "guest path {} for {} must be absolute",
                guest.display(),
                host.display()
            );
        }
        copy_tree(host, &in_root(&root, guest))
            .with_context(|| format!("cannot copy extra file {}", host.display()))?;
    }

    write_file(&root.join("etc/passwd"), PASSWD, 0o644)?;
    write_file(&root.join("etc/group"), GROUP, 0o644)?;
    write_file(&root.join("usr/local/bin/as-user"), AS_USER, 0o755)?;
    write_file(&root.join("etc/hostname"), "sentinel-guest\n", 0o644)?;
    write_file(
        &root.join("init"),
        &INIT_TEMPLATE.replace("@NONCE@", nonce),
        0o755,
    )?;
    write_file(&root.join("sentinel-guest/script.sh"), &spec.script, 0o755)?;

    let initrd = run_dir.join("initrd.gz");
    pack_cpio_gz(&root, &initrd)?;
    Ok(initrd)
}

fn in_root(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").unwrap_or(abs))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Copies `src` (following symlinks) to `dst`, replacing whatever is there.
fn copy_file(src: &Path, dst: &Path) -> Result<()> {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Remove first: a busybox applet symlink would otherwise be followed and
    // busybox itself overwritten.
    if dst.symlink_metadata().is_ok() {
        fs::remove_file(dst).with_context(|| format!("cannot replace {}", dst.display()))?;
    }
    fs::copy(src, dst)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dst.display()))?;
    Ok(())
}

fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let meta = fs::metadata(src).with_context(|| format!("cannot stat {}", src.display()))?;
    if meta.is_dir() {
        fs::create_dir_all(dst).with_context(|| format!("cannot create {}", dst.display()))?;
        for entry in fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))? {
            let entry = entry.with_context(|| format!("cannot read {}", src.display()))?;
            copy_tree(&entry.path(), &dst.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        copy_file(src, dst)
    }
}

/// Copies `bin` and the libraries `ldd` lists for it (including the dynamic
/// loader) to the same paths under `root`.
fn copy_binary_with_libs(root: &Path, bin: &Path, copied: &mut BTreeSet<PathBuf>) -> Result<()> {
    copy_file(bin, &in_root(root, bin))?;
    for lib in shared_libs(bin)? {
        if copied.insert(lib.clone()) {
            copy_file(&lib, &in_root(root, &lib))?;
        }
    }
    Ok(())
}

/// The absolute library paths `ldd` reports; empty for a static binary.
fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(bin)
        .output()
        .context("cannot run ldd: install libc-bin")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let all = format!("{text}{}", String::from_utf8_lossy(&out.stderr));
    if all.contains("not a dynamic executable") || all.contains("statically linked") {
        return Ok(Vec::new());
    }
    if !out.status.success() {
        bail!("ldd {} failed: {}", bin.display(), all.trim());
    }
    parse_ldd(&text).with_context(|| format!("ldd {}", bin.display()))
}

fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let path = match line.split_once("=>") {
            Some((name, rest)) => {
                let rest = rest.trim();
                if rest.starts_with("not found") {
                    bail!("library {} not found on the host", name.trim());
                }
                rest.split_whitespace().next().unwrap_or("")
            }
            None => line.split_whitespace().next().unwrap_or(""),
        };
        // Skips the vDSO, which has no file (`linux-vdso.so.1 (0x...)`).
        if path.starts_with('/') {
            libs.push(PathBuf::from(path));
        }
    }
    Ok(libs)
}

/// `find . | cpio -o -H newc -R 0:0 | gzip`, with every stage checked.
fn pack_cpio_gz(root: &Path, out: &Path) -> Result<()> {
    let file = fs::File::create(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut find = Command::new("find")
        .args([".", "-print0"])
        .current_dir(root)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run find")?;
    let find_out = find.stdout.take().context("find has no stdout")?;
    let mut cpio = Command::new("cpio")
        .args([
            "--null",
            "--create",
            "--format=newc",
            "--owner=0:0",
            "--quiet",
        ])
        .current_dir(root)
        .stdin(find_out)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cpio: apt-get install -y cpio")?;
    let cpio_out = cpio.stdout.take().context("cpio has no stdout")?;
    let mut gzip = Command::new("gzip")
        .arg("-1")
        .stdin(cpio_out)
        .stdout(file)
        .spawn()
        .context("cannot run gzip")?;
    for (name, child) in [
        ("find", &mut find),
        ("cpio", &mut cpio),
        ("gzip", &mut gzip),
    ] {
        let status = child
            .wait()
            .with_context(|| format!("waiting for {name}"))?;
        if !status.success() {
            bail!("{name} failed ({status}) while packing the initramfs");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------- boot

/// Step 4: boots qemu, captures the serial console, enforces the timeout and
/// reads the verdict.
fn boot(
    kernel: &GuestKernel,
    initrd: &Path,
    nonce: &str,
    timeout: Duration,
) -> Result<GuestOutcome> {
    let qemu = find_in_path("qemu-system-x86_64").ok_or_else(|| {
        anyhow!("qemu-system-x86_64 is not installed: apt-get install -y qemu-system-x86")
    })?;
    let mut append = String::from("console=ttyS0 quiet panic=-1");
    if !kernel.extra_cmdline.is_empty() {
        append.push(' ');
        append.push_str(&kernel.extra_cmdline);
    }
    let echo = std::env::var_os("SENTINEL_GUEST_ECHO").is_some();
    let start = Instant::now();
    let mut child = Command::new(&qemu)
        .args(["-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "1"])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append, "-nographic", "-no-reboot"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", qemu.display()))?;

    let console = Arc::new(Mutex::new(Vec::<u8>::new()));
    let stderr_buf = Arc::new(Mutex::new(Vec::<u8>::new()));
    let readers = [
        spawn_reader(child.stdout.take(), Arc::clone(&console), echo),
        spawn_reader(child.stderr.take(), Arc::clone(&stderr_buf), echo),
    ];

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => {
                kill(&mut child);
                bail!("cannot wait for qemu: {e}");
            }
        }
        if start.elapsed() >= timeout {
            kill(&mut child);
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let elapsed = start.elapsed();
    for r in readers {
        let _ = r.join();
    }
    let console = lossy(&console);
    let qemu_stderr = lossy(&stderr_buf);

    let Some(status) = status else {
        bail!(
            "the guest gave no result within {:.0} s (qemu killed); last console lines:\n{}{}",
            timeout.as_secs_f64(),
            tail(&console, 40),
            stderr_note(&qemu_stderr)
        );
    };
    match parse_verdict(&console, nonce) {
        Some((passed, reason)) => Ok(GuestOutcome {
            passed,
            console,
            reason,
            elapsed,
        }),
        None => bail!(
            "qemu exited ({status}) after {:.1} s without the guest's result line; last console lines:\n{}{}",
            elapsed.as_secs_f64(),
            tail(&console, 40),
            stderr_note(&qemu_stderr)
        ),
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    src: Option<R>,
    buf: Arc<Mutex<Vec<u8>>>,
    echo: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let Some(mut src) = src else { return };
        let mut chunk = [0u8; 8192];
        loop {
            match src.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if echo {
                        let _ = std::io::stderr().write_all(&chunk[..n]);
                    }
                    if let Ok(mut b) = buf.lock() {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            }
        }
    })
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn lossy(buf: &Mutex<Vec<u8>>) -> String {
    let text = match buf.lock() {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(p) => String::from_utf8_lossy(&p.into_inner()).into_owned(),
    };
    strip_terminal_codes(&text)
}

/// Drops carriage returns, the firmware's terminal escape sequences and other
/// control characters, keeping newlines and tabs.
fn strip_terminal_codes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                if chars.peek() == Some(&'[') {
                    chars.next();
                    // CSI: parameters and intermediates, then one final byte.
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            '\n' | '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// `Some((true, ""))` for `PASS`, `Some((false, reason))` for `FAIL reason`,
/// `None` when no line carries this boot's nonce.
fn parse_verdict(console: &str, nonce: &str) -> Option<(bool, String)> {
    let marker = format!("{RESULT_MARKER} {nonce}: ");
    console.lines().find_map(|line| {
        let (_, verdict) = line.split_once(&marker)?;
        let verdict = verdict.trim();
        if verdict == "PASS" {
            Some((true, String::new()))
        } else {
            let reason = verdict.strip_prefix("FAIL").unwrap_or(verdict).trim();
            Some((false, reason.to_string()))
        }
    })
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if out.is_empty() {
        out = "(no console output)".to_string();
    }
    out
}

fn stderr_note(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!("\nqemu stderr:\n{}", tail(s, 20))
    }
}

// ------------------------------------------------------------------- helpers

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{:?} exited with {status}", cmd.get_program());
    }
    Ok(())
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn run_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A per-boot token that a test's own output cannot guess.
fn nonce() -> String {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(now);
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_sort_numerically() {
        let a = version_key("linux-image-6.1.0-9-cloud-amd64-unsigned");
        let b = version_key("linux-image-6.1.0-50-cloud-amd64-unsigned");
        assert_eq!(b, vec![6, 1, 0, 50]);
        assert!(b > a);
    }

    #[test]
    fn lsm_parameter_only_when_needed() {
        let with = "CONFIG_BPF_LSM=y\nCONFIG_LSM=\"landlock,lockdown,yama,bpf\"\n";
        assert_eq!(lsm_cmdline(with).ok(), Some(String::new()));
        let without = "CONFIG_BPF_LSM=y\nCONFIG_LSM=\"landlock,yama\"\n";
        assert_eq!(
            lsm_cmdline(without).ok(),
            Some("lsm=landlock,yama,bpf".to_string())
        );
        assert!(lsm_cmdline("# CONFIG_BPF_LSM is not set\n").is_err());
    }

    #[test]
    fn ldd_output_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n";
        let libs = parse_ldd(text).ok();
        assert_eq!(
            libs,
            Some(vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ])
        );
        assert!(parse_ldd("\tlibfoo.so => not found\n").is_err());
    }

    #[test]
    fn terminal_codes_stripped() {
        let raw = "\u{1b}c\u{1b}[?7l\u{1b}[2J\u{1b}[0mSeaBIOS\r\nline\tx\n";
        assert_eq!(strip_terminal_codes(raw), "SeaBIOS\nline\tx\n");
    }

    #[test]
    fn verdict_needs_the_nonce() {
        let console = "SENTINEL-GUEST-RESULT: PASS\nSENTINEL-GUEST-RESULT abc: FAIL test script exited with status 1\n";
        assert_eq!(
            parse_verdict(console, "abc"),
            Some((false, "test script exited with status 1".to_string()))
        );
        assert_eq!(parse_verdict(console, "zzz"), None);
        assert_eq!(
            parse_verdict("x SENTINEL-GUEST-RESULT n: PASS\n", "n"),
            Some((true, String::new()))
        );
    }
}
