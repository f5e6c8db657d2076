//! The kernel sensor: loads the embedded eBPF object, attaches what this
//! kernel allows (BPF LSM where it can, cgroup v2 hooks, tracepoints), and
//! owns the maps the rest of the daemon reads and writes (watched UIDs and
//! tasks, configuration, counters, compiled rules, held processes, the
//! byte counts of watched sockets).
//!
//! Dropping the [`Sensor`] detaches every program: aya's links are owned
//! by the loaded object, so no exit path leaves anything attached.

use std::fs::File;
use std::path::PathBuf;

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf,
};
use aya::programs::{
    CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr, Lsm, TracePoint,
};
use aya::{Btf, Ebpf, EbpfLoader};
use sentinel_common::{config, counter, Flow, NetKeyData, NetRule, PathKeyData, PathRule};
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
}

/// How each kind of action is enforced on this kernel, for `status`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Mechanisms {
    pub exec: &'static str,
    pub open: &'static str,
    pub connect: &'static str,
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
    /// Why the bytes of watched sockets are not counted, when they are not.
    pub flows_unavailable: Option<String>,
    flags: u64,
}

const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sys_enter_execve", "syscalls", "sys_enter_execve"),
    ("sys_enter_execveat", "syscalls", "sys_enter_execveat"),
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sys_enter_openat", "syscalls", "sys_enter_openat"),
    ("sys_enter_openat2", "syscalls", "sys_enter_openat2"),
    ("sys_enter_open", "syscalls", "sys_enter_open"),
    ("sys_enter_creat", "syscalls", "sys_enter_creat"),
    ("sys_exit_openat", "syscalls", "sys_exit_openat"),
    ("sys_exit_openat2", "syscalls", "sys_exit_openat2"),
    ("sys_exit_open", "syscalls", "sys_exit_open"),
    ("sys_exit_creat", "syscalls", "sys_exit_creat"),
    (
        "sys_enter_io_uring_setup",
        "syscalls",
        "sys_enter_io_uring_setup",
    ),
    ("sched_process_fork", "sched", "sched_process_fork"),
    ("sched_process_exit", "sched", "sched_process_exit"),
];

const LSM_HOOKS: &[&str] = &["bprm_check_security", "file_open", "socket_connect"];

impl Sensor {
    /// Loads and attaches everything. On error, whatever was attached is
    /// detached again when the partly built object is dropped.
    pub fn load(opts: &SensorOptions) -> Result<Self, SensorError> {
        let mut loader = EbpfLoader::new();
        if let Some(bytes) = opts.ring_buffer_bytes {
            loader.map_max_entries("EVENTS", bytes);
        }
        let ebpf = loader.load(OBJECT)?;
        let mut sensor = Sensor {
            ebpf,
            attached: Vec::new(),
            mechanisms: Mechanisms {
                exec: "sigkill",
                open: "sigkill",
                connect: "cgroup",
            },
            lsm_unavailable: None,
            flows_unavailable: None,
            flags: config::flags::DENY_IO_URING,
        };
        sensor.write_config(config::SELF_TGID, u64::from(std::process::id()))?;
        for (index, event, field) in [
            (
                config::FORK_CHILD_PID_OFFSET,
                "sched_process_fork",
                "child_pid",
            ),
            (
                config::EXEC_FILENAME_OFFSET,
                "sched_process_exec",
                "filename",
            ),
            (config::EXEC_OLD_PID_OFFSET, "sched_process_exec", "old_pid"),
        ] {
            sensor.write_config(index, tracepoint_field_offset(event, field)?)?;
        }

        let lsm = if opts.no_lsm {
            Err("disabled with --no-lsm".to_string())
        } else {
            sensor.attach_lsm()
        };
        let cgroup = cgroup2_root();
        match lsm {
            Ok(()) => {
                sensor.flags |= config::flags::LSM_ENFORCES;
                sensor.mechanisms = Mechanisms {
                    exec: "lsm",
                    open: "lsm",
                    connect: "lsm",
                };
            }
            Err(why) => {
                sensor.lsm_unavailable = Some(why);
                if cgroup.is_none() {
                    sensor.flags |= config::flags::CONNECT_VIA_TRACEPOINT;
                    sensor.mechanisms.connect = "sigkill";
                    sensor.attach_tracepoint(
                        "sys_enter_connect",
                        "syscalls",
                        "sys_enter_connect",
                    )?;
                }
            }
        }
        match &cgroup {
            Some(cg) => {
                // Under BPF LSM the connect hooks only register sockets for
                // counting (the LSM hook decided already); UDP datagrams
                // without connect() go through the sendmsg hooks either way.
                sensor.attach_cgroup(cg, &["connect4", "connect6", "sendmsg4", "sendmsg6"])?;
                if let Err(why) = sensor.attach_flow_counters(cg) {
                    tracing::warn!("bytes of watched sockets are not counted: {why}");
                    sensor.flows_unavailable = Some(why);
                }
            }
            None => sensor.flows_unavailable = Some("no cgroup v2 hierarchy is mounted".into()),
        }
        sensor.write_config(config::FLAGS, sensor.flags)?;
        for (prog, category, name) in TRACEPOINTS {
            sensor.attach_tracepoint(prog, category, name)?;
        }
        Ok(sensor)
    }

    fn attach_tracepoint(
        &mut self,
        prog: &'static str,
        category: &str,
        name: &str,
    ) -> Result<(), SensorError> {
        // Some syscalls do not exist on every architecture (open, creat).
        if !std::path::Path::new(&format!("/sys/kernel/tracing/events/{category}/{name}")).exists()
        {
            tracing::warn!("tracepoint {category}:{name} does not exist on this kernel; skipped");
            return Ok(());
        }
        let tp: &mut TracePoint = self.program(prog)?;
        tp.load().map_err(failed(prog, "loaded"))?;
        tp.attach(category, name)
            .map_err(failed(prog, "attached"))?;
        self.attached.push(format!("tracepoint:{category}:{name}"));
        Ok(())
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
            p.attach(&dir, CgroupAttachMode::Single)
                .map_err(failed(prog, "attached"))?;
            self.attached
                .push(format!("cgroup_sock_addr:{prog}:{}", cgroup.display()));
        }
        Ok(())
    }

    /// The cgroup skb hooks that count the bytes of watched sockets, and
    /// the release hook that marks them closed. Optional: on any failure
    /// the ones attached are detached again and the reason returned.
    fn attach_flow_counters(&mut self, cgroup: &PathBuf) -> Result<(), String> {
        let result = (|| -> Result<(), SensorError> {
            let dir = open_cgroup(cgroup)?;
            for (prog, direction) in [
                ("flow_egress", CgroupSkbAttachType::Egress),
                ("flow_ingress", CgroupSkbAttachType::Ingress),
            ] {
                let p: &mut CgroupSkb = self.program(prog)?;
                p.load().map_err(failed(prog, "loaded"))?;
                p.attach(&dir, direction, CgroupAttachMode::Single)
                    .map_err(failed(prog, "attached"))?;
            }
            let p: &mut CgroupSock = self.program("flow_release")?;
            p.load().map_err(failed("flow_release", "loaded"))?;
            p.attach(&dir, CgroupAttachMode::Single)
                .map_err(failed("flow_release", "attached"))?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.attached.extend([
                    format!("cgroup_skb:egress:{}", cgroup.display()),
                    format!("cgroup_skb:ingress:{}", cgroup.display()),
                    format!("cgroup_sock:sock_release:{}", cgroup.display()),
                ]);
                Ok(())
            }
            Err(e) => {
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
        let btf = Btf::from_sys_fs().map_err(|e| format!("no kernel BTF: {e}"))?;
        for hook in LSM_HOOKS {
            let result = self
                .program::<Lsm>(hook)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    p.load(hook, &btf).map_err(|e| format!("load: {e}"))?;
                    p.attach().map_err(|e| format!("attach: {e}"))?;
                    Ok(())
                });
            if let Err(e) = result {
                for hook in LSM_HOOKS {
                    if let Ok(p) = self.program::<Lsm>(hook) {
                        let _ = p.unload();
                    }
                }
                return Err(format!("lsm/{hook}: {e}"));
            }
        }
        self.attached
            .extend(LSM_HOOKS.iter().map(|h| format!("lsm:{h}")));
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

    /// Removes `key` from a set-like map; a missing key is fine.
    fn set_remove(&mut self, name: &'static str, key: u32) -> Result<(), SensorError> {
        self.remove_key::<u32, u8>(name, &key)
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
        self.set_insert("HELD", pid)
    }

    /// Processes the kernel holds (stopped for an approval).
    pub fn held_pids(&mut self) -> Result<Vec<u32>, SensorError> {
        let m: BpfHashMap<_, u32, u8> = self.map_mut("HELD")?;
        Ok(m.keys().filter_map(Result::ok).collect())
    }

    /// Forgets a held process before the daemon resumes it, so the kernel
    /// does not take the resume for a bypass.
    pub fn release_held(&mut self, pid: u32) -> Result<(), SensorError> {
        self.set_remove("HELD", pid)
    }

    /// Replaces the compiled path rules (exec, open, lockdown allow-lists).
    pub fn replace_path_rules(
        &mut self,
        entries: &[(Key<PathKeyData>, PathRule)],
    ) -> Result<(), SensorError> {
        self.replace_trie("PATH_RULES", entries)
    }

    /// Replaces one of the network tries.
    pub fn replace_net_rules(
        &mut self,
        table: NetTable,
        entries: &[(Key<NetKeyData>, NetRule)],
    ) -> Result<(), SensorError> {
        self.replace_trie(table.map_name(), entries)
    }

    fn replace_trie<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
        entries: &[(Key<K>, V)],
    ) -> Result<(), SensorError> {
        let mut trie: LpmTrie<_, K, V> = self.map_mut(name)?;
        let old: Vec<Key<K>> = trie.keys().filter_map(Result::ok).collect();
        for key in &old {
            let _ = trie.remove(key);
        }
        for (key, value) in entries {
            trie.insert(key, value, 0)
                .map_err(|source| SensorError::Map { name, source })?;
        }
        Ok(())
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
        })
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
}

/// Maps a program error to the sensor's, naming the program and the step.
fn failed(
    name: &'static str,
    what: &'static str,
) -> impl FnOnce(aya::programs::ProgramError) -> SensorError {
    move |source| SensorError::Program { name, what, source }
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
