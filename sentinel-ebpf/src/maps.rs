//! Every map the programs share with each other and with the daemon.
//!
//! The daemon writes the watched set, the configuration, the kernel
//! layout and the compiled rules; the programs write events, counters,
//! pending records and byte counts.

use aya_ebpf::{
    macros::map,
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sentinel_common::{
    config, counter, layout, tamper, ApprovalKey, ChangeSyscall, CoalesceRun, ExecEvent, Flow,
    InodeKey, InodeRule, MutateEvent, NetKeyData, NetRule, OpenEvent, PathKeyData, PathRule,
    PendingOpen, WALK_DEPTH,
};

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);
#[map]
pub static WATCHED_UIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
#[map]
pub static WATCHED_TASKS: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);
/// Parent of every process forked since the sensor started (all of them:
/// a process can become watched later, at a setuid exec, and its parent
/// must still be known when /proc no longer has it).
#[map]
pub static PARENTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(32768, 0);
/// Processes stopped for an approval, with when they were stopped
/// (`bpf_ktime_get_ns`); any hooked syscall from one that was resumed by
/// anybody but the daemon kills it.
#[map]
pub static HELD: HashMap<u32, u64> = HashMap::with_max_entries(4096, 0);
/// One-shot approvals: a held call that restarts finds its approval here.
#[map]
pub static APPROVED: LruHashMap<ApprovalKey, u8> = LruHashMap::with_max_entries(1024, 0);
#[map]
pub static CONFIG: Array<u64> = Array::with_max_entries(config::LEN, 0);
/// Byte offsets into kernel structures (`sentinel_common::layout`).
#[map]
pub static LAYOUT: Array<u64> = Array::with_max_entries(layout::LEN, 0);
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);
#[map]
pub static PATH_RULES: LpmTrie<PathKeyData, PathRule> = LpmTrie::with_max_entries(8192, 0);
/// Protected objects by identity (device, inode).
#[map]
pub static INODE_RULES: HashMap<InodeKey, InodeRule> = HashMap::with_max_entries(16384, 0);
#[map]
pub static NET_RULES: LpmTrie<NetKeyData, NetRule> = LpmTrie::with_max_entries(4096, 0);
/// Destinations still reachable in lockdown.
#[map]
pub static LOCKDOWN_NET_ALLOW: LpmTrie<NetKeyData, NetRule> = LpmTrie::with_max_entries(256, 0);
/// Exec records captured at entry (argv), completed when the exec succeeds.
#[map]
pub static PENDING_EXEC: HashMap<u32, ExecEvent> = HashMap::with_max_entries(2048, 0);
/// The argument layout of each file-system-changing syscall, by number.
#[map]
pub static CHANGE_SYSCALLS: HashMap<u32, ChangeSyscall> = HashMap::with_max_entries(64, 0);
/// Opens in flight, by thread.
#[map]
pub static PENDING_OPEN: HashMap<u32, PendingOpen> = HashMap::with_max_entries(8192, 0);
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static OPEN_SCRATCH: PerCpuArray<OpenEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static MUTATE_SCRATCH: PerCpuArray<MutateEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
pub static KEY_SCRATCH: PerCpuArray<Key<PathKeyData>> = PerCpuArray::with_max_entries(1, 0);
/// The names of the dentries a resolution walked, leaf first.
#[map]
pub static WALK_SCRATCH: PerCpuArray<WalkNames> = PerCpuArray::with_max_entries(1, 0);
/// The run of identical opens each watched thread is in (`coalesce`).
#[map]
pub static COALESCE: LruHashMap<u32, CoalesceRun> = LruHashMap::with_max_entries(16384, 0);
/// Sockets of watched processes by socket cookie, with their byte counts.
#[map]
pub static FLOWS: LruHashMap<u64, Flow> = LruHashMap::with_max_entries(16384, 0);

/// A walk's working state. It lives in map memory, read and written with
/// volatile accesses, so the verifier sees unknown values at each loop
/// head instead of one state per path taken so far: the walks verify in
/// time linear in their bound.
pub const NAME_SLOTS: usize = 64;
const _: () = assert!(NAME_SLOTS.is_power_of_two() && NAME_SLOTS >= WALK_DEPTH);

#[repr(C)]
pub struct WalkNames {
    /// `NAME_SLOTS` entries (a power of two), of which `WALK_DEPTH` are
    /// used: an index masked with `NAME_SLOTS - 1` is in bounds where the
    /// verifier can see it.
    pub name: [u64; NAME_SLOTS],
    pub len: [u32; NAME_SLOTS],
    /// Names recorded.
    pub n: u64,
    pub dentry: u64,
    pub mount: u64,
    pub mnt_root: u64,
    pub dev: u64,
    pub done: u64,
    pub pos: u64,
    pub hit: InodeRule,
    /// `is_plain`: bytes in the current component, and how many are dots.
    pub seg_len: u64,
    pub seg_dots: u64,
}

/// The daemon's threads (its tgid is `CONFIG[SELF_TGID]`), written by the
/// daemon: `tkill`/`tgkill` may name any of them.
#[map]
pub static SELF_THREADS: HashMap<u32, u8> = HashMap::with_max_entries(512, 0);
/// The last attempt against the sentinel (`sentinel_common::tamper`).
#[map]
pub static TAMPER: Array<u64> = Array::with_max_entries(tamper::LEN, 0);
