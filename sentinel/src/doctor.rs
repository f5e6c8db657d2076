//! `sentinel doctor`: checks this host for what Sentinel needs (root, BTF,
//! the BPF ring buffer, the kernel filesystems, the active LSMs and
//! whether `bpf` is among them, cgroup v2, fanotify permission events,
//! BPF statistics) and says, per kind of action, exactly how it will be
//! enforced here and what to change to do better.
//!
//! The mechanism of each kind is not guessed from the checks: it is what
//! the sensor reports (`observe::Sensor::mechanisms`) — from the running
//! daemon's `status` when one answers, else from loading the sensor for a
//! moment with nothing watched — so a mechanism the sensor learns appears
//! here without a second list.

use std::path::Path;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::control;
use crate::observe::{self, Sensor, SensorOptions};
use crate::preflight;

/// What a mechanism means for one kind, and how to do better (`None`:
/// nothing better exists).
pub fn describe_mechanism(kind: &str, mechanism: &str) -> (String, Option<String>) {
    let lsm_advice = "boot a kernel with CONFIG_BPF_LSM=y and `bpf` in its LSM list (the lsm= boot parameter) to refuse with EPERM before the call".to_string();
    match mechanism {
        "lsm" => (
            format!("{kind} is refused with EPERM in the kernel before it happens (BPF LSM)"),
            None,
        ),
        "cgroup" => (
            format!("{kind} is refused with EPERM by a cgroup hook before it happens"),
            None,
        ),
        "fanotify" => (
            format!("{kind} waits on a fanotify permission event and is refused with EPERM before it completes"),
            Some(lsm_advice),
        ),
        "fanotify+sigkill" => (
            format!("a {kind} of a file the policy protects by place waits on a fanotify permission event and is refused with EPERM before it happens, whatever name reaches the file; files matched only by a pattern the guard cannot place (`**/name`) are killed at the syscall's return instead"),
            Some(lsm_advice.clone()),
        ),
        "sigkill" => (
            format!("the process is killed at the {kind} syscall (SIGKILL from the tracepoint); the call is not refused with an error"),
            Some(lsm_advice),
        ),
        "sigkill-after" => (
            format!("the {kind} completes and the process is killed before it returns to user space (SIGKILL from the syscall tracepoint); the daemon reports it and puts back what it has a copy of"),
            Some(lsm_advice),
        ),
        other => (format!("{kind} is enforced by {other}"), None),
    }
}

struct Check {
    name: &'static str,
    ok: bool,
    /// Without it Sentinel cannot run at all.
    required: bool,
    detail: String,
}

fn check(name: &'static str, ok: bool, required: bool, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok,
        required,
        detail: detail.into(),
    }
}

fn mounted(target: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target))
}

fn host_checks() -> Vec<Check> {
    let mut checks = Vec::new();
    let root = preflight::require_root("doctor").is_ok();
    checks.push(check(
        "root",
        root,
        true,
        if root {
            "running as root".to_string()
        } else {
            "not root: run `sudo sentinel doctor` (loading eBPF programs needs it)".to_string()
        },
    ));
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    checks.push(check(
        "btf",
        btf,
        true,
        if btf {
            "kernel BTF at /sys/kernel/btf/vmlinux"
        } else {
            "no /sys/kernel/btf/vmlinux: use a kernel built with CONFIG_DEBUG_INFO_BTF=y"
        },
    ));
    let ring = matches!(
        aya::sys::is_map_supported(aya::maps::MapType::RingBuf),
        Ok(true)
    );
    checks.push(check(
        "ring_buffer",
        ring,
        true,
        if ring {
            "BPF ring buffer supported"
        } else {
            "no BPF ring buffer (needs Linux 5.8 or newer, and root to probe)"
        },
    ));
    for (name, target, fs) in [
        ("tracefs", "/sys/kernel/tracing", "tracefs"),
        ("bpffs", "/sys/fs/bpf", "bpf"),
        ("securityfs", "/sys/kernel/security", "securityfs"),
    ] {
        let ok = mounted(target);
        checks.push(check(
            name,
            ok,
            false,
            if ok {
                format!("{target} is mounted")
            } else {
                format!("{target} is not mounted (`sentinel run` mounts tracefs and bpffs itself; for the rest: mount -t {fs} {fs} {target})")
            },
        ));
    }
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) => {
            let list = list.trim().to_string();
            let bpf = list.split(',').any(|l| l == "bpf");
            checks.push(check(
                "lsm_bpf",
                bpf,
                false,
                if bpf {
                    format!("active LSMs: {list}; bpf is among them (LSM programs must still load: see the enforcement below)")
                } else {
                    format!("active LSMs: {list}; bpf is not among them, so BPF LSM programs would never run: add bpf to the lsm= boot parameter")
                },
            ));
        }
        Err(e) => checks.push(check(
            "lsm_bpf",
            false,
            false,
            format!("cannot read /sys/kernel/security/lsm ({e}); mount securityfs to see the active LSMs"),
        )),
    }
    if let Some(config) = kernel_config() {
        let on = config.lines().any(|l| l == "CONFIG_BPF_LSM=y");
        checks.push(check(
            "config_bpf_lsm",
            on,
            false,
            if on {
                "the kernel is built with CONFIG_BPF_LSM=y"
            } else {
                "the kernel is built without CONFIG_BPF_LSM: BPF LSM is not available on it"
            },
        ));
    }
    let cgroup = observe::cgroup2_root();
    checks.push(check(
        "cgroup2",
        cgroup.is_some(),
        false,
        match &cgroup {
            Some(p) => format!("cgroup v2 mounted at {}", p.display()),
            None => "no cgroup v2 hierarchy: connect is then enforced by SIGKILL; mount cgroup2 (systemd does by default)".to_string(),
        },
    ));
    let (fan_ok, fan_detail) = fanotify_permission_events();
    checks.push(check("fanotify_perm", fan_ok, false, fan_detail));
    let stats = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|v| v.trim() == "1");
    checks.push(check(
        "bpf_stats",
        true,
        false,
        if stats {
            "kernel.bpf_stats_enabled=1: per-program run time is in the metrics"
        } else {
            "kernel.bpf_stats_enabled=0: per-program run time is not measured (sysctl kernel.bpf_stats_enabled=1 to measure; it costs a little per run)"
        },
    ));
    checks
}

fn kernel_config() -> Option<String> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()
}

/// Whether the kernel delivers fanotify permission events: an inode mark
/// for FAN_OPEN_PERM on a scratch file of our own (nobody else opens it,
/// so nothing ever waits on this group).
fn fanotify_permission_events() -> (bool, String) {
    let Ok(file) = tempfile::NamedTempFile::new() else {
        return (false, "cannot make a scratch file to probe fanotify".into());
    };
    let path = match std::ffi::CString::new(file.path().as_os_str().as_encoded_bytes()) {
        Ok(p) => p,
        Err(_) => return (false, "scratch path is not a C string".into()),
    };
    // SAFETY: plain syscalls on a descriptor this function owns and closes.
    unsafe {
        let fd = libc::fanotify_init(
            libc::FAN_CLASS_CONTENT | libc::FAN_CLOEXEC,
            libc::O_RDONLY as u32,
        );
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return (
                false,
                format!("fanotify_init(FAN_CLASS_CONTENT) failed: {e} (needs root and CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y)"),
            );
        }
        let r = libc::fanotify_mark(
            fd,
            libc::FAN_MARK_ADD,
            libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM,
            libc::AT_FDCWD,
            path.as_ptr(),
        );
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            (
                true,
                "fanotify permission events (FAN_OPEN_PERM, FAN_OPEN_EXEC_PERM) are available"
                    .into(),
            )
        } else {
            (
                false,
                format!("fanotify permission events are not available: {e}"),
            )
        }
    }
}

/// The sensor's report: from the running daemon, else from loading the
/// sensor for a moment. Returns the source and the status-shaped answer.
fn enforcement(state_dir: &Path, can_load: bool) -> (String, Value) {
    if let Ok(a) = control::call(state_dir, &control::Request::Status) {
        if a["ok"] == true {
            return (format!("the running daemon (pid {})", a["pid"]), a);
        }
    }
    if !can_load {
        return (
            "nothing: no daemon answers and this host cannot load the sensor".into(),
            json!({}),
        );
    }
    if let Err(e) = preflight::mount_kernel_filesystems() {
        return (format!("nothing: {e}"), json!({}));
    }
    match Sensor::load(&SensorOptions::default()) {
        Ok(mut sensor) => {
            if !sensor.lsm_enforces() && fanotify_permission_events().0 {
                // The daemon starts its file guard here.
                crate::file_guard::guarded_mechanisms(&mut sensor.mechanisms);
            }
            (
                "the sensor, loaded for this check with nothing watched, then unloaded".into(),
                json!({
                    "enforcement": sensor.mechanisms,
                    "lsm_unavailable": sensor.lsm_unavailable,
                    "bandwidth": {"unavailable": sensor.flows_unavailable},
                    "attached": sensor.attached,
                }),
            )
        }
        Err(e) => (format!("nothing: the sensor did not load: {e}"), json!({})),
    }
}

pub fn run(state_dir: &Path, as_json: bool) -> ExitCode {
    let checks = host_checks();
    let can_load = checks.iter().filter(|c| c.required).all(|c| c.ok);
    let (source, report) = enforcement(state_dir, can_load);
    let kinds: Vec<(String, String, String, Option<String>)> = report["enforcement"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(kind, mech)| {
                    let mech = mech.as_str().unwrap_or("?").to_string();
                    let (how, better) = describe_mechanism(kind, &mech);
                    (kind.clone(), mech, how, better)
                })
                .collect()
        })
        .unwrap_or_default();
    if as_json {
        let out = json!({
            "ok": can_load,
            "checks": checks.iter().map(|c| json!({"check": c.name, "ok": c.ok, "required": c.required, "detail": c.detail})).collect::<Vec<_>>(),
            "enforcement_source": source,
            "enforcement": kinds.iter().map(|(k, m, how, better)| json!({"kind": k, "mechanism": m, "how": how, "better": better})).collect::<Vec<_>>(),
            "lsm_unavailable": report["lsm_unavailable"],
        });
        println!("{out:#}");
    } else {
        println!("host checks:");
        for c in &checks {
            let mark = match (c.ok, c.required) {
                (true, _) => "ok  ",
                (false, true) => "FAIL",
                (false, false) => "warn",
            };
            println!("  {mark}  {:<15} {}", c.name, c.detail);
        }
        println!("enforcement here (reported by {source}):");
        if kinds.is_empty() {
            println!(
                "  unknown: fix the failed checks above, then run `sudo sentinel doctor` again"
            );
        }
        for (kind, mech, how, better) in &kinds {
            println!("  {kind:<8} {mech:<9} {how}");
            if let Some(better) = better {
                println!("  {:<8} {:<9} to do better: {better}", "", "");
            }
        }
        if let Some(why) = report["lsm_unavailable"].as_str() {
            println!("  BPF LSM is not used: {why}");
        }
    }
    if can_load {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
