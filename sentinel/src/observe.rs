//! The kernel sensor: loads the embedded eBPF object, tells it the running
//! kernel's structure layout (from BTF), attaches what this kernel allows
//! (BPF LSM where it is active and its programs load, cgroup v2 hooks,
//! tracepoints), and owns the maps the rest of the daemon reads and writes
//! (watched UIDs and tasks, configuration, counters, compiled rules,
//! protected objects, held processes and their approvals, the byte counts
//! of watched sockets).
//!
//! Every attachment is a BPF link the sensor owns. [`Sensor::pin`] pins
//! them (and the maps that carry state across a restart) to bpffs, so the
//! programs keep enforcing if the daemon dies; [`Sensor::unpin`] (a clean
//! stop) removes the pins, and dropping the [`Sensor`] then detaches every
//! program. See [`crate::pins`].

use std::fs::File;
use std::path::PathBuf;

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf,
};
use aya::programs::{
    links::{FdLink, PinnedLink},
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Lsm,
    RawTracePoint, TracePoint,
};
use aya::{Ebpf, EbpfLoader};
use sentinel_common::{
    config, counter, ApprovalKey, ChangeSyscall, CoalesceRun, Flow, InodeKey, InodeRule,
    NetKeyData, NetRule, PathKeyData, PathRule,
};

use crate::kernel_layout::{self, LayoutError};
use serde::Serialize;
use thiserror::Error;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sentinel-ebpf.o"));

#[derive(Debug, Error)]
pub enum SensorError {
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {name} could not be {what}: {source}")]
    Program {
        name: &'static str,
        what: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {0} is missing from the object (rebuild with `cargo xtask build-ebpf`)")]
    MissingMap(&'static str),
    #[error("eBPF program {0} is missing from the object (rebuild with `cargo xtask build-ebpf`)")]
    MissingProgram(&'static str),
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("cannot read a tracepoint format ({0}); is tracefs mounted at /sys/kernel/tracing?")]
    TracepointFormat(String),
    #[error(transparent)]
    Layout(#[from] LayoutError),
    #[error("{0} cannot be held as a BPF link on this kernel ({1}); the sentinel needs BPF links (Linux 5.15+) to keep enforcing when it dies")]
    Unpinnable(String, String),
    #[error("pinning the sensor to bpffs failed: {0}; is bpffs mounted at /sys/fs/bpf?")]
    Pin(String),
}

/// How each kind of action is enforced on this kernel, for `status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mechanisms {
    pub exec: String,
    pub open: String,
    pub connect: String,
    /// Renames, links, unlinks, truncates, chmods... of protected paths.
    pub change: String,
    /// Signals, ptrace and bpf() of watched processes against the
    /// sentinel: `lsm` (refused) or `sigkill` (the caller is killed).
    pub self_protection: String,
}

/// Options that change what is attached.
#[derive(Debug, Clone, Default)]
pub struct SensorOptions {
    /// Do not try BPF LSM even if the kernel allows it.
    pub no_lsm: bool,
    /// Ring buffer size in bytes (a power of two, at least a page);
    /// `None` keeps the object's 16 MiB.
    pub ring_buffer_bytes: Option<u32>,
}

pub struct Sensor {
    ebpf: Ebpf,
    /// Programs attached, as `type:name`.
    pub attached: Vec<String>,
    pub mechanisms: Mechanisms,
    /// Why LSM is not used, when it is not.
    pub lsm_unavailable: Option<String>,
    /// The kernel's active LSM list (`/sys/kernel/security/lsm`), if
    /// readable.
    pub active_lsms: Option<String>,
    /// Why the bytes of watched sockets are not counted, when they are not.
    pub flows_unavailable: Option<String>,
    flags: u64,
    /// Every attachment, as `(what, link)`; dropping one detaches it
    /// unless it is pinned.
    links: Vec<(String, FdLink)>,
    /// The links once pinned, and the generation directory they are in.
    pinned: Vec<PinnedLink>,
    pub pin_dir: Option<PathBuf>,
}

/// Syscall-entry tracepoints attached on every kernel (each program has
/// its tracepoint's name).
const SYSCALL_TRACEPOINTS: &[&str] = &[
    "sys_enter_execve",
    "sys_enter_execveat",
    "sys_enter_openat",
    "sys_enter_openat2",
    "sys_enter_open",
    "sys_enter_creat",
    "sys_enter_open_by_handle_at",
    "sys_enter_io_uring_setup",
    "sys_enter_io_uring_enter",
    "sys_enter_io_uring_register",
];

/// The exits of every open syscall share one program.
const OPEN_EXITS: &[&str] = &[
    "sys_exit_openat",
    "sys_exit_openat2",
    "sys_exit_open",
    "sys_exit_creat",
    "sys_exit_open_by_handle_at",
];

/// Syscalls that change the file system, with where their arguments are;
/// one program (`sys_enter_change`) is attached to each one's entry where
/// no BPF LSM sees them.
fn change_syscalls() -> Vec<(&'static str, i64, ChangeSyscall)> {
    use sentinel_common::mutate_op::*;
    let spec = |op: u32, dfd: i8, name: i8, dfd2: i8, name2: i8, fd: i8, arg: i8| ChangeSyscall {
        op: op as u8,
        dfd,
        name,
        dfd2,
        name2,
        fd,
        arg,
        rmdir_flags: -1,
    };
    vec![
        (
            "sys_enter_renameat2",
            libc::SYS_renameat2,
            spec(RENAME, 2, 3, 0, 1, -1, 4),
        ),
        (
            "sys_enter_renameat",
            libc::SYS_renameat,
            spec(RENAME, 2, 3, 0, 1, -1, -1),
        ),
        (
            "sys_enter_rename",
            libc::SYS_rename,
            spec(RENAME, -1, 1, -1, 0, -1, -1),
        ),
        (
            "sys_enter_linkat",
            libc::SYS_linkat,
            spec(LINK, 2, 3, 0, 1, -1, 4),
        ),
        (
            "sys_enter_link",
            libc::SYS_link,
            spec(LINK, -1, 1, -1, 0, -1, -1),
        ),
        (
            "sys_enter_unlinkat",
            libc::SYS_unlinkat,
            ChangeSyscall {
                rmdir_flags: 2,
                ..spec(UNLINK, 0, 1, -1, -1, -1, 2)
            },
        ),
        (
            "sys_enter_unlink",
            libc::SYS_unlink,
            spec(UNLINK, -1, 0, -1, -1, -1, -1),
        ),
        (
            "sys_enter_rmdir",
            libc::SYS_rmdir,
            spec(RMDIR, -1, 0, -1, -1, -1, -1),
        ),
        (
            "sys_enter_truncate",
            libc::SYS_truncate,
            spec(TRUNCATE, -1, 0, -1, -1, -1, 1),
        ),
        (
            "sys_enter_ftruncate",
            libc::SYS_ftruncate,
            spec(TRUNCATE, -1, -1, -1, -1, 0, 1),
        ),
        (
            "sys_enter_fchmodat",
            libc::SYS_fchmodat,
            spec(CHMOD, 0, 1, -1, -1, -1, 2),
        ),
        ("sys_enter_fchmodat2", 452, spec(CHMOD, 0, 1, -1, -1, -1, 2)),
        (
            "sys_enter_chmod",
            libc::SYS_chmod,
            spec(CHMOD, -1, 0, -1, -1, -1, 1),
        ),
        (
            "sys_enter_fchmod",
            libc::SYS_fchmod,
            spec(CHMOD, -1, -1, -1, -1, 0, 1),
        ),
        (
            "sys_enter_fchownat",
            libc::SYS_fchownat,
            spec(CHOWN, 0, 1, -1, -1, -1, 2),
        ),
        (
            "sys_enter_chown",
            libc::SYS_chown,
            spec(CHOWN, -1, 0, -1, -1, -1, 1),
        ),
        (
            "sys_enter_lchown",
            libc::SYS_lchown,
            spec(CHOWN, -1, 0, -1, -1, -1, 1),
        ),
        (
            "sys_enter_fchown",
            libc::SYS_fchown,
            spec(CHOWN, -1, -1, -1, -1, 0, 1),
        ),
        (
            "sys_enter_mkdirat",
            libc::SYS_mkdirat,
            spec(MKDIR, 0, 1, -1, -1, -1, 2),
        ),
        (
            "sys_enter_mkdir",
            libc::SYS_mkdir,
            spec(MKDIR, -1, 0, -1, -1, -1, 1),
        ),
        (
            "sys_enter_symlinkat",
            libc::SYS_symlinkat,
            spec(SYMLINK, 1, 2, -1, 0, -1, -1),
        ),
        (
            "sys_enter_symlink",
            libc::SYS_symlink,
            spec(SYMLINK, -1, 1, -1, 0, -1, -1),
        ),
        (
            "sys_enter_mknodat",
            libc::SYS_mknodat,
            spec(MKNOD, 0, 1, -1, -1, -1, 2),
        ),
        (
            "sys_enter_mknod",
            libc::SYS_mknod,
            spec(MKNOD, -1, 0, -1, -1, -1, 1),
        ),
    ]
}

/// The LSM hooks and the parameter count each program was written for
/// (its `ret` argument comes after them); a kernel whose hook differs is
/// not used for LSM.
const LSM_HOOKS: &[(&str, usize)] = &[
    ("bprm_check_security", 1),
    ("file_open", 1),
    ("socket_connect", 3),
    ("path_unlink", 2),
    ("path_rmdir", 2),
    ("path_rename", 5),
    ("path_link", 3),
    ("path_truncate", 1),
    ("path_chmod", 2),
    ("path_chown", 3),
    ("path_mkdir", 3),
    ("path_symlink", 3),
    ("path_mknod", 4),
];

/// Self-protection programs by syscall-entry tracepoint (`protect.rs`).
const PROTECT_TRACEPOINTS: &[(&str, &str)] = &[
    ("protect_kill", "sys_enter_kill"),
    ("protect_tkill", "sys_enter_tkill"),
    ("protect_tgkill", "sys_enter_tgkill"),
    ("protect_pidfd_open", "sys_enter_pidfd_open"),
    ("protect_pidfd_send_signal", "sys_enter_pidfd_send_signal"),
    ("protect_ptrace", "sys_enter_ptrace"),
    ("protect_process_vm_writev", "sys_enter_process_vm_writev"),
    ("protect_process_vm_readv", "sys_enter_process_vm_readv"),
    ("protect_bpf", "sys_enter_bpf"),
];

/// Self-protection programs by LSM hook.
const PROTECT_LSM: &[(&str, &str)] = &[
    ("protect_task_kill", "task_kill"),
    ("protect_ptrace_access", "ptrace_access_check"),
    ("protect_bpf_call", "bpf"),
];

impl Sensor {
    /// Loads and attaches everything. On error, whatever was attached is
    /// detached again when the partly built object is dropped.
    pub fn load(opts: &SensorOptions) -> Result<Self, SensorError> {
        let mut loader = EbpfLoader::new();
        if let Some(bytes) = opts.ring_buffer_bytes {
            loader.map_max_entries("EVENTS", bytes);
        }
        let ebpf = loader.load(OBJECT)?;
        let btf = kernel_layout::Btf::from_sys_fs()?;
        let layout = kernel_layout::read(&btf)?;
        let mut sensor = Sensor {
            ebpf,
            attached: Vec::new(),
            mechanisms: Mechanisms {
                exec: "sigkill".into(),
                open: "sigkill".into(),
                connect: "cgroup".into(),
                change: "sigkill-after".into(),
                self_protection: "sigkill".into(),
            },
            lsm_unavailable: None,
            active_lsms: active_lsms(),
            flows_unavailable: None,
            flags: config::flags::DENY_IO_URING,
            links: Vec::new(),
            pinned: Vec::new(),
            pin_dir: None,
        };
        sensor.write_config(config::SELF_TGID, u64::from(std::process::id()))?;
        // SAFETY: getpgrp has no preconditions.
        sensor.write_config(config::SELF_PGID, unsafe { libc::getpgrp() } as u64)?;
        sensor.refresh_self_threads()?;
        sensor.write_config(
            config::FORK_CHILD_PID_OFFSET,
            tracepoint_field_offset("sched_process_fork", "child_pid")?,
        )?;
        {
            let mut map: Array<_, u64> = sensor.map_mut("LAYOUT")?;
            for (index, offset) in layout.iter().enumerate() {
                map.set(index as u32, *offset, 0)
                    .map_err(|source| SensorError::Map {
                        name: "LAYOUT",
                        source,
                    })?;
            }
        }
        sensor.write_config(config::LAYOUT_READY, 1)?;

        let lsm = if opts.no_lsm {
            Err("disabled with --no-lsm".to_string())
        } else {
            lsm_active(sensor.active_lsms.as_deref())
                .and_then(|()| lsm_hooks_match(&btf))
                .and_then(|()| sensor.attach_lsm())
        };
        let cgroup = cgroup2_root();
        match lsm {
            Ok(()) => {
                sensor.flags |= config::flags::LSM_ENFORCES;
                sensor.mechanisms = Mechanisms {
                    exec: "lsm".into(),
                    open: "lsm".into(),
                    connect: "lsm".into(),
                    change: "lsm".into(),
                    self_protection: "sigkill".into(),
                };
            }
            Err(why) => {
                sensor.lsm_unavailable = Some(why);
                if cgroup.is_none() {
                    sensor.flags |= config::flags::CONNECT_VIA_TRACEPOINT;
                    sensor.mechanisms.connect = "sigkill".into();
                    sensor.attach_tracepoint(
                        "sys_enter_connect",
                        "syscalls",
                        "sys_enter_connect",
                    )?;
                }
                for (tp, nr, spec) in change_syscalls() {
                    let mut map: BpfHashMap<_, u32, ChangeSyscall> =
                        sensor.map_mut("CHANGE_SYSCALLS")?;
                    map.insert(nr as u32, spec, 0)
                        .map_err(|source| SensorError::Map {
                            name: "CHANGE_SYSCALLS",
                            source,
                        })?;
                    sensor.attach_tracepoint("sys_enter_change", "syscalls", tp)?;
                }
            }
        }
        match &cgroup {
            Some(cg) => {
                // Under BPF LSM the connect hooks only register sockets for
                // counting (the LSM hook decided already); UDP datagrams
                // without connect() go through the sendmsg hooks either way.
                sensor.attach_cgroup(cg, &["connect4", "connect6", "sendmsg4", "sendmsg6"])?;
                // A connect the cgroup hook holds returns a restart code;
                // the syscall exit stops the process before user space.
                sensor.attach_tracepoint("sys_exit_connect", "syscalls", "sys_exit_connect")?;
                if let Err(why) = sensor.attach_flow_counters(cg) {
                    tracing::warn!("bytes of watched sockets are not counted: {why}");
                    sensor.flows_unavailable = Some(why);
                }
            }
            None => sensor.flows_unavailable = Some("no cgroup v2 hierarchy is mounted".into()),
        }
        sensor.write_config(config::FLAGS, sensor.flags)?;
        for tp in SYSCALL_TRACEPOINTS {
            sensor.attach_tracepoint(tp, "syscalls", tp)?;
        }
        for tp in OPEN_EXITS {
            sensor.attach_tracepoint("sys_exit_open_any", "syscalls", tp)?;
        }
        for tp in ["sched_process_fork", "sched_process_exit"] {
            sensor.attach_tracepoint(tp, "sched", tp)?;
        }
        sensor.attach_tracepoint("protect_exit", "sched", "sched_process_exit")?;
        let protect_lsm = if sensor.lsm_enforces() {
            sensor.attach_protect_lsm()
        } else {
            Err("BPF LSM is not used".to_string())
        };
        match protect_lsm {
            Ok(()) => sensor.mechanisms.self_protection = "lsm".into(),
            Err(why) => {
                if sensor.lsm_enforces() {
                    tracing::warn!("self-protection falls back to tracepoints: {why}");
                }
                for (prog, tp) in PROTECT_TRACEPOINTS {
                    sensor.attach_tracepoint(prog, "syscalls", tp)?;
                }
            }
        }
        let exec: &mut RawTracePoint = sensor.program("sched_process_exec")?;
        exec.load()
            .map_err(failed("sched_process_exec", "loaded"))?;
        let id = exec
            .attach("sched_process_exec")
            .map_err(failed("sched_process_exec", "attached"))?;
        let link = exec
            .take_link(id)
            .map_err(failed("sched_process_exec", "attached"))?;
        sensor.keep("raw_tracepoint:sched_process_exec".into(), link)?;
        Ok(sensor)
    }

    /// Whether BPF LSM programs enforce on this host.
    pub fn lsm_enforces(&self) -> bool {
        self.flags & config::flags::LSM_ENFORCES != 0
    }

    fn attach_tracepoint(
        &mut self,
        prog: &'static str,
        category: &str,
        name: &str,
    ) -> Result<(), SensorError> {
        // A syscall this kernel does not have (open and creat on some
        // architectures, fchmodat2 before 6.6) is skipped.
        if !std::path::Path::new(&format!("/sys/kernel/tracing/events/{category}/{name}")).exists()
        {
            tracing::warn!("tracepoint {category}:{name} does not exist on this kernel; skipped");
            return Ok(());
        }
        let tp: &mut TracePoint = self.program(prog)?;
        // One program may serve several tracepoints: it is loaded once.
        if tp.fd().is_err() {
            let started = std::time::Instant::now();
            tp.load().map_err(failed(prog, "loaded"))?;
            tracing::debug!("{prog} verified in {:?}", started.elapsed());
        }
        let id = tp
            .attach(category, name)
            .map_err(failed(prog, "attached"))?;
        let link = tp.take_link(id).map_err(failed(prog, "attached"))?;
        self.keep(format!("tracepoint:{category}:{name}"), link)
    }

    fn attach_cgroup(
        &mut self,
        cgroup: &PathBuf,
        progs: &[&'static str],
    ) -> Result<(), SensorError> {
        let dir = open_cgroup(cgroup)?;
        for prog in progs {
            let p: &mut CgroupSockAddr = self.program(prog)?;
            p.load().map_err(failed(prog, "loaded"))?;
            // On kernels with BPF links (5.7+) aya attaches through a link,
            // which never displaces another tool's program and takes no
            // attach flags (the kernel refuses any with EINVAL).
            let id = p
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(failed(prog, "attached"))?;
            let link = p.take_link(id).map_err(failed(prog, "attached"))?;
            self.keep(
                format!("cgroup_sock_addr:{prog}:{}", cgroup.display()),
                link,
            )?;
        }
        Ok(())
    }

    /// The cgroup skb hooks that count the bytes of watched sockets, and
    /// the release hook that marks them closed. Optional: on any failure
    /// the ones attached are detached again and the reason returned.
    fn attach_flow_counters(&mut self, cgroup: &PathBuf) -> Result<(), String> {
        let before = self.links.len();
        let result = (|| -> Result<(), SensorError> {
            let dir = open_cgroup(cgroup)?;
            for (prog, direction) in [
                ("flow_egress", CgroupSkbAttachType::Egress),
                ("flow_ingress", CgroupSkbAttachType::Ingress),
            ] {
                let p: &mut CgroupSkb = self.program(prog)?;
                p.load().map_err(failed(prog, "loaded"))?;
                let id = p
                    .attach(&dir, direction, CgroupAttachMode::Single)
                    .map_err(failed(prog, "attached"))?;
                let link = p.take_link(id).map_err(failed(prog, "attached"))?;
                self.keep(format!("cgroup_skb:{prog}:{}", cgroup.display()), link)?;
            }
            let p: &mut CgroupSock = self.program("flow_release")?;
            p.load().map_err(failed("flow_release", "loaded"))?;
            let id = p
                .attach(&dir, CgroupAttachMode::Single)
                .map_err(failed("flow_release", "attached"))?;
            let link = p
                .take_link(id)
                .map_err(failed("flow_release", "attached"))?;
            self.keep(
                format!("cgroup_sock:sock_release:{}", cgroup.display()),
                link,
            )
        })();
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                self.drop_links_from(before);
                for prog in ["flow_egress", "flow_ingress"] {
                    if let Ok(p) = self.program::<CgroupSkb>(prog) {
                        let _ = p.unload();
                    }
                }
                if let Ok(p) = self.program::<CgroupSock>("flow_release") {
                    let _ = p.unload();
                }
                Err(e.to_string())
            }
        }
    }

    /// A program of the object, as its type.
    fn program<'a, P>(&'a mut self, name: &'static str) -> Result<&'a mut P, SensorError>
    where
        &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(name)
            .ok_or(SensorError::MissingProgram(name))?
            .try_into()
            .map_err(failed(name, "used as the expected program type"))
    }

    /// Tries the BPF LSM hooks; on any failure, unloads those that loaded
    /// and says why.
    fn attach_lsm(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        let hooks: Vec<(&'static str, &'static str)> =
            LSM_HOOKS.iter().map(|(h, _)| (*h, *h)).collect();
        self.attach_lsm_programs(&hooks, &btf)
    }

    /// The LSM half of self-protection (`protect.rs`); on failure nothing
    /// of it stays attached and the tracepoints are used instead.
    fn attach_protect_lsm(&mut self) -> Result<(), String> {
        let btf = aya::Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        self.attach_lsm_programs(PROTECT_LSM, &btf)
    }

    /// Loads and attaches `(program, hook)` pairs, all or none.
    fn attach_lsm_programs(
        &mut self,
        programs: &[(&'static str, &'static str)],
        btf: &aya::Btf,
    ) -> Result<(), String> {
        let before = self.links.len();
        for (prog, hook) in programs {
            let result = self
                .program::<Lsm>(prog)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.load(hook, btf).map_err(|e| format!("load: {e}"))?;
                    let id = p.attach().map_err(|e| format!("attach: {e}"))?;
                    p.take_link(id).map_err(|e| format!("attach: {e}"))
                })
                .and_then(|link| {
                    self.keep(format!("lsm:{hook}"), link)
                        .map_err(|e| e.to_string())
                });
            if let Err(e) = result {
                self.drop_links_from(before);
                for (prog, _) in programs {
                    if let Ok(p) = self.program::<Lsm>(prog) {
                        let _ = p.unload();
                    }
                }
                return Err(format!("lsm/{hook}: {e}"));
            }
        }
        Ok(())
    }

    /// Takes ownership of an attachment as a BPF link (so it can be
    /// pinned).
    fn keep<L>(&mut self, what: String, link: L) -> Result<(), SensorError>
    where
        L: TryInto<FdLink>,
        L::Error: std::fmt::Display,
    {
        let link = link
            .try_into()
            .map_err(|e| SensorError::Unpinnable(what.clone(), e.to_string()))?;
        self.attached.push(what.clone());
        self.links.push((what, link));
        Ok(())
    }

    /// Detaches the attachments made since `len` links were held.
    fn drop_links_from(&mut self, len: usize) {
        let dropped = self.links.split_off(len);
        for (what, _) in &dropped {
            self.attached.retain(|a| a != what);
        }
    }

    /// Tells the programs which threads are the daemon's (`tkill` and
    /// `tgkill` name threads). Called at load and on every tick.
    pub fn refresh_self_threads(&mut self) -> Result<(), SensorError> {
        let tids: Vec<u32> = std::fs::read_dir("/proc/self/task")
            .map(|d| {
                d.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut m: BpfHashMap<_, u32, u8> = self.map_mut("SELF_THREADS")?;
        let stale: Vec<u32> = m
            .keys()
            .filter_map(Result::ok)
            .filter(|t| !tids.contains(t))
            .collect();
        for t in stale {
            let _ = m.remove(&t);
        }
        for t in tids {
            m.insert(t, 1, 0).map_err(|source| SensorError::Map {
                name: "SELF_THREADS",
                source,
            })?;
        }
        Ok(())
    }

    /// The last attempt against the sentinel the kernel saw
    /// (`sentinel_common::tamper` indices).
    pub fn tamper(&mut self) -> Result<[u64; sentinel_common::tamper::LEN as usize], SensorError> {
        let m: Array<_, u64> = self.map_mut("TAMPER")?;
        Ok(crate::pins::read_tamper(&m))
    }

    /// Pins every link and the maps that carry state across a restart into
    /// a new generation directory under `base`, then removes the pins of
    /// earlier generations (their programs detach: this sensor's programs
    /// were attached before, so nothing is ever unenforced).
    pub fn pin(&mut self, base: &std::path::Path) -> Result<(), SensorError> {
        let dir = crate::pins::generation_dir(base, std::process::id());
        let pin_err = |what: &str, e: &dyn std::fmt::Display| {
            SensorError::Pin(format!("{what} in {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| pin_err("creating the directory", &e))?;
        self.pin_dir = Some(dir.clone());
        for name in crate::pins::PINNED_MAPS {
            let map = self.ebpf.map(name).ok_or(SensorError::MissingMap(name))?;
            map.pin(dir.join(format!("map-{name}")))
                .map_err(|e| pin_err(name, &e))?;
        }
        for (i, (what, link)) in std::mem::take(&mut self.links).into_iter().enumerate() {
            let path = dir.join(format!("link-{i:02}"));
            let pinned = link.pin(&path).map_err(|e| pin_err(&what, &e))?;
            self.pinned.push(pinned);
        }
        crate::pins::remove_other_generations(base, &dir);
        Ok(())
    }

    /// A clean stop: removes this sensor's pins, so dropping it detaches
    /// every program.
    pub fn unpin(&mut self) {
        if let Some(dir) = self.pin_dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!("removing the pins in {}: {e}", dir.display());
            }
            if let Some(base) = dir.parent() {
                let _ = std::fs::remove_dir(base);
            }
        }
    }

    /// Carries the kernel state of a previous daemon's programs over:
    /// watched descendants (setuid children included) and held processes.
    pub fn adopt(&mut self, previous: &crate::pins::Previous) -> Result<(), SensorError> {
        for pid in &previous.watched_tasks {
            self.watch_task(*pid)?;
        }
        for pid in &previous.held {
            self.hold(*pid)?;
        }
        Ok(())
    }

    fn write_config(&mut self, index: u32, value: u64) -> Result<(), SensorError> {
        let mut cfg: Array<_, u64> = self.map_mut("CONFIG")?;
        cfg.set(index, value, 0).map_err(|source| SensorError::Map {
            name: "CONFIG",
            source,
        })
    }

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, SensorError>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self
            .ebpf
            .map_mut(name)
            .ok_or(SensorError::MissingMap(name))?;
        T::try_from(map).map_err(|source| SensorError::Map { name, source })
    }

    /// The ring buffer, handed to the reader task.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, SensorError> {
        let map = self
            .ebpf
            .take_map("EVENTS")
            .ok_or(SensorError::MissingMap("EVENTS"))?;
        RingBuf::try_from(map).map_err(|source| SensorError::Map {
            name: "EVENTS",
            source,
        })
    }

    /// Adds `key` to one of the set-like maps (`u32` → `1`).
    fn set_insert(&mut self, name: &'static str, key: u32) -> Result<(), SensorError> {
        let mut m: BpfHashMap<_, u32, u8> = self.map_mut(name)?;
        m.insert(key, 1, 0)
            .map_err(|source| SensorError::Map { name, source })
    }

    /// Removes `key` from a hash map; a missing key is fine.
    fn remove_key<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        key: &K,
    ) -> Result<(), SensorError> {
        let mut m: BpfHashMap<_, K, V> = self.map_mut(name)?;
        match m.remove(key) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(source) => Err(SensorError::Map { name, source }),
        }
    }

    /// The kernel id of the watched-process map, for a second reader (the
    /// file guard's watched check, which must not wait for the core).
    pub fn watched_tasks_map_id(&mut self) -> Result<u32, SensorError> {
        use aya::maps::IterableMap;
        let name = "WATCHED_TASKS";
        let m: BpfHashMap<_, u32, u8> = self.map_mut(name)?;
        m.map()
            .info()
            .map(|i| i.id())
            .map_err(|source| SensorError::Map { name, source })
    }

    pub fn watch_uid(&mut self, uid: u32) -> Result<(), SensorError> {
        self.set_insert("WATCHED_UIDS", uid)
    }

    /// Marks an already-running process as watched (a descendant of an
    /// agent that now runs under another UID).
    pub fn watch_task(&mut self, pid: u32) -> Result<(), SensorError> {
        self.set_insert("WATCHED_TASKS", pid)
    }

    pub fn set_flag(&mut self, bit: u64, on: bool) -> Result<(), SensorError> {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
        self.write_config(config::FLAGS, self.flags)
    }

    /// Marks a process held (stopped by the daemon for an approval): the
    /// kernel kills it if anybody else resumes it.
    pub fn hold(&mut self, pid: u32) -> Result<(), SensorError> {
        let mut m: BpfHashMap<_, u32, u64> = self.map_mut("HELD")?;
        m.insert(pid, monotonic_ns(), 0)
            .map_err(|source| SensorError::Map {
                name: "HELD",
                source,
            })
    }

    /// Processes the kernel holds (stopped for an approval).
    pub fn held_pids(&mut self) -> Result<Vec<u32>, SensorError> {
        let m: BpfHashMap<_, u32, u64> = self.map_mut("HELD")?;
        Ok(m.keys().filter_map(Result::ok).collect())
    }

    /// Forgets a held process before the daemon resumes it, so the kernel
    /// does not take the resume for a bypass.
    pub fn release_held(&mut self, pid: u32) -> Result<(), SensorError> {
        self.remove_key::<u32, u64>("HELD", &pid)
    }

    /// Lets the held call of a process through once when it restarts.
    pub fn approve(&mut self, key: ApprovalKey) -> Result<(), SensorError> {
        let mut m: BpfHashMap<_, ApprovalKey, u8> = self.map_mut("APPROVED")?;
        m.insert(key, 1, 0).map_err(|source| SensorError::Map {
            name: "APPROVED",
            source,
        })
    }

    /// Replaces the protected objects: new entries are written first, then
    /// the ones no longer wanted removed, so nothing protected in both is
    /// ever unprotected in between. Returns the entries the map refused.
    pub fn replace_inode_rules(
        &mut self,
        entries: &[(InodeKey, InodeRule)],
    ) -> Result<Vec<InodeKey>, SensorError> {
        let mut m: BpfHashMap<_, InodeKey, InodeRule> = self.map_mut("INODE_RULES")?;
        let mut refused = Vec::new();
        for (key, rule) in entries {
            if m.insert(key, rule, 0).is_err() {
                refused.push(*key);
            }
        }
        let wanted: std::collections::HashSet<InodeKey> = entries.iter().map(|(k, _)| *k).collect();
        let stale: Vec<InodeKey> = m
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(k))
            .collect();
        for key in stale {
            let _ = m.remove(&key);
        }
        Ok(refused)
    }

    /// Replaces the compiled path rules (exec, open, lockdown allow-lists).
    /// Returns the indices of entries the map refused.
    pub fn replace_path_rules(
        &mut self,
        entries: &[(Key<PathKeyData>, PathRule)],
    ) -> Result<Vec<usize>, SensorError> {
        self.replace_trie("PATH_RULES", entries)
    }

    /// Replaces one of the network tries; returns the indices refused.
    pub fn replace_net_rules(
        &mut self,
        table: NetTable,
        entries: &[(Key<NetKeyData>, NetRule)],
    ) -> Result<Vec<usize>, SensorError> {
        self.replace_trie(table.map_name(), entries)
    }

    /// New entries first, then the stale ones out: an entry present before
    /// and after is never missing in between.
    fn replace_trie<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        entries: &[(Key<K>, V)],
    ) -> Result<Vec<usize>, SensorError> {
        let mut trie: LpmTrie<_, K, V> = self.map_mut(name)?;
        let mut refused = Vec::new();
        for (i, (key, value)) in entries.iter().enumerate() {
            if trie.insert(key, value, 0).is_err() {
                refused.push(i);
            }
        }
        let wanted: std::collections::HashSet<Vec<u8>> =
            entries.iter().map(|(k, _)| key_bytes(k)).collect();
        let stale: Vec<Key<K>> = trie
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !wanted.contains(&key_bytes(k)))
            .collect();
        for key in &stale {
            let _ = trie.remove(key);
        }
        Ok(refused)
    }

    /// Kernel-side counters summed over CPUs.
    pub fn counters(&mut self) -> Result<KernelCounters, SensorError> {
        let arr: PerCpuArray<_, u64> = self.map_mut("COUNTERS")?;
        let sum = |i: u32| -> u64 {
            arr.get(&i, 0)
                .map(|values| values.iter().sum())
                .unwrap_or(0)
        };
        Ok(KernelCounters {
            ringbuf_full: sum(counter::RINGBUF_FULL),
            task_map_full: sum(counter::TASK_MAP_FULL),
            kernel_decisions: sum(counter::KERNEL_DECISIONS),
            unresolved: sum(counter::UNRESOLVED),
            pending_full: sum(counter::PENDING_FULL),
        })
    }

    /// Each watched thread's run of folded opens, by thread id.
    pub fn coalesce_runs(&mut self) -> Result<Vec<(u32, CoalesceRun)>, SensorError> {
        let m: BpfHashMap<_, u32, CoalesceRun> = self.map_mut("COALESCE")?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// Ends every run of folded opens: after a policy or mode change an
    /// open may no longer be the same action as the run's first.
    pub fn new_coalesce_epoch(&mut self) -> Result<(), SensorError> {
        // The programs add 1 per file-system change; the daemon's stride
        // keeps the value from ever coming back to one a live run holds.
        let cfg: Array<_, u64> = self.map_mut("CONFIG")?;
        let now = cfg
            .get(&config::COALESCE_EPOCH, 0)
            .map_err(|source| SensorError::Map {
                name: "CONFIG",
                source,
            })?;
        self.write_config(config::COALESCE_EPOCH, now.wrapping_add(1 << 32))
    }

    /// Every counted socket of a watched process, by socket cookie.
    pub fn flows(&mut self) -> Result<Vec<(u64, Flow)>, SensorError> {
        let m: BpfHashMap<_, u64, Flow> = self.map_mut("FLOWS")?;
        Ok(m.iter().filter_map(Result::ok).collect())
    }

    /// Run time and run count of each program, while the kernel counts
    /// them (`kernel.bpf_stats_enabled = 1`); empty otherwise.
    pub fn program_stats(&self) -> Vec<(String, std::time::Duration, u64)> {
        let on = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
            .is_ok_and(|v| v.trim() == "1");
        if !on {
            return Vec::new();
        }
        self.ebpf
            .programs()
            .filter_map(|(name, p)| {
                let info = p.info().ok()?;
                Some((name.to_string(), info.run_time(), info.run_count()))
            })
            .collect()
    }

    /// Stops counting a socket (it was released and its last counts read).
    pub fn forget_flow(&mut self, cookie: u64) -> Result<(), SensorError> {
        self.remove_key::<u64, Flow>("FLOWS", &cookie)
    }
}

fn open_cgroup(cgroup: &PathBuf) -> Result<File, SensorError> {
    File::open(cgroup).map_err(|e| SensorError::Program {
        name: "cgroup",
        what: "opened",
        source: aya::programs::ProgramError::IOError(e),
    })
}

/// The network tries: compiled deny/ask rules, and the lockdown allow-list.
#[derive(Debug, Clone, Copy)]
pub enum NetTable {
    Rules,
    LockdownAllow,
}

impl NetTable {
    fn map_name(self) -> &'static str {
        match self {
            NetTable::Rules => "NET_RULES",
            NetTable::LockdownAllow => "LOCKDOWN_NET_ALLOW",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct KernelCounters {
    pub ringbuf_full: u64,
    pub task_map_full: u64,
    pub kernel_decisions: u64,
    /// Objects the kernel could not resolve (decided on what was typed).
    pub unresolved: u64,
    /// Calls whose pending record did not fit its map.
    pub pending_full: u64,
}

/// Maps a program error to the sensor's, naming the program and the step.
fn failed(
    name: &'static str,
    what: &'static str,
) -> impl FnOnce(aya::programs::ProgramError) -> SensorError {
    move |source| SensorError::Program { name, what, source }
}

/// The bytes of an LPM key (prefix length and data), to compare keys.
fn key_bytes<K: aya::Pod>(key: &Key<K>) -> Vec<u8> {
    let data = key.data();
    // SAFETY: `K` is plain old data (aya::Pod); its bytes are readable.
    let bytes = unsafe {
        std::slice::from_raw_parts((&data as *const K).cast::<u8>(), std::mem::size_of::<K>())
    };
    let mut out = key.prefix_len().to_le_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// `CLOCK_MONOTONIC` in nanoseconds, the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The kernel's active LSMs, in order (securityfs must be mounted).
fn active_lsms() -> Option<String> {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .ok()
        .map(|s| s.trim().to_string())
}

/// BPF LSM programs run only where `bpf` is an active LSM: a kernel built
/// with CONFIG_BPF_LSM but booted without it in `lsm=` loads and attaches
/// them, and they never run.
fn lsm_active(active: Option<&str>) -> Result<(), String> {
    match active {
        None => Err("cannot read /sys/kernel/security/lsm (is securityfs mounted?)".into()),
        Some(list) if list.split(',').any(|l| l == "bpf") => Ok(()),
        Some(list) => Err(format!(
            "BPF LSM is not active on this kernel (active: {list}); add `bpf` to the `lsm=` boot parameter to use it"
        )),
    }
}

/// Every hook must have the parameters its program reads.
fn lsm_hooks_match(btf: &kernel_layout::Btf) -> Result<(), String> {
    for (hook, params) in LSM_HOOKS {
        match btf.param_count(&format!("bpf_lsm_{hook}")) {
            Some(n) if n == *params => {}
            Some(n) => {
                return Err(format!(
                    "lsm/{hook} takes {n} arguments on this kernel, the program expects {params}"
                ))
            }
            None => return Err(format!("this kernel has no BPF LSM hook {hook}")),
        }
    }
    Ok(())
}

/// The cgroup v2 mount point, from /proc/self/mountinfo (it is
/// /sys/fs/cgroup on most hosts, /sys/fs/cgroup/unified on hybrid ones).
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        if fstype != "cgroup2" {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// A field's offset in a sched tracepoint record; they moved between
/// kernel versions (sched_process_fork's comm became a `__data_loc`).
fn tracepoint_field_offset(event: &str, field: &str) -> Result<u64, SensorError> {
    let path = format!("/sys/kernel/tracing/events/sched/{event}/format");
    let format = std::fs::read_to_string(&path)
        .map_err(|e| SensorError::TracepointFormat(format!("{path}: {e}")))?;
    parse_field_offset(&format, field)
        .ok_or_else(|| SensorError::TracepointFormat(format!("{path} has no field {field}")))
}

fn parse_field_offset(format: &str, field: &str) -> Option<u64> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';');
        let decl = parts.next()?;
        if decl.split_whitespace().last().is_none_or(|n| n != field) {
            return None;
        }
        parts
            .find_map(|p| p.trim().strip_prefix("offset:"))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_child_pid_offset_in_both_layouts() {
        let new = "\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        let old = "\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_field_offset(new, "child_pid"), Some(20));
        assert_eq!(parse_field_offset(old, "child_pid"), Some(44));
        assert_eq!(parse_field_offset(old, "parent_pid"), None);
    }
}
