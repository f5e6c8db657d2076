//! `#[repr(C)]` types shared by the eBPF programs (`sentinel-ebpf`) and the
//! daemon (`sentinel`): ring-buffer event records, map keys and values, and
//! the indices of the configuration and counter arrays.
//!
//! No logic lives here. Every record starts with an [`EventHeader`] whose
//! `kind` says which record follows; the daemon decodes by `kind` and checks
//! the length. With the `user` feature the types implement `aya::Pod` so they
//! can be written into and read from maps.
#![no_std]

/// Longest path (and exec filename) captured, including the NUL.
pub const PATH_LEN: usize = 256;
/// Arguments captured per exec; more are flagged as truncated.
pub const ARGV_MAX: usize = 16;
/// Bytes captured per argument, including the NUL; longer ones are flagged.
pub const ARG_LEN: usize = 256;
pub const COMM_LEN: usize = 16;

/// `EventHeader::kind` values.
pub mod kind {
    pub const EXEC: u32 = 1;
    pub const OPEN: u32 = 2;
    pub const CONNECT: u32 = 3;
    pub const EXIT: u32 = 4;
    pub const FORK: u32 = 5;
    /// A watched process tried to set up io_uring (header only).
    pub const IO_URING: u32 = 6;
}

/// Rule ids the kernel uses on its own; the daemon's compiled rules use
/// small indices into its rule table.
pub mod rule_id {
    pub const LOCKDOWN: u32 = u32::MAX;
    pub const IO_URING: u32 = u32::MAX - 1;
}

/// What the kernel itself did about an event (`EventHeader::action`).
pub mod kernel_action {
    /// Observed only.
    pub const NONE: u32 = 0;
    /// The syscall was refused with EPERM (LSM or cgroup hook).
    pub const DENIED: u32 = 1;
    /// The process was sent SIGKILL from the syscall-entry tracepoint.
    pub const KILLED: u32 = 2;
    /// The process was sent SIGSTOP and waits for an approval.
    pub const HELD: u32 = 3;
}

/// An open whose path could not be read at syscall entry (the page was
/// not faulted in yet); it is read and decided at syscall exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingOpen {
    pub filename: u64,
    pub flags: u32,
    pub dfd: i32,
}

/// Flags in `ExecEvent::flags`.
pub mod exec_flags {
    /// More than `ARGV_MAX` arguments, or an argument longer than `ARG_LEN`.
    pub const ARGV_TRUNCATED: u32 = 1;
    /// The filename was longer than `PATH_LEN`.
    pub const FILENAME_TRUNCATED: u32 = 2;
    /// Emitted at syscall entry because the kernel acted on it; the exec may
    /// not have completed.
    pub const AT_ENTRY: u32 = 4;
}

/// Indices into the `CONFIG` array (u64 values), written by the daemon.
pub mod config {
    /// Byte offset of `child_pid` in the `sched_process_fork` tracepoint
    /// record (it differs between kernel versions; read from tracefs).
    pub const FORK_CHILD_PID_OFFSET: u32 = 0;
    /// The daemon's own tgid: never acted on.
    pub const SELF_TGID: u32 = 1;
    /// `flags::*` bits.
    pub const FLAGS: u32 = 2;
    /// Byte offset of the `filename` `__data_loc` in the
    /// `sched_process_exec` record.
    pub const EXEC_FILENAME_OFFSET: u32 = 3;
    /// Byte offset of `old_pid` in the `sched_process_exec` record.
    pub const EXEC_OLD_PID_OFFSET: u32 = 4;
    pub const LEN: u32 = 8;

    pub mod flags {
        /// Lockdown: deny every exec, open and connect of a watched process
        /// except the allow-lists (`LOCKDOWN_*_ALLOW`); opens that write
        /// are always denied. Deny entries (quarantine) still win.
        pub const LOCKDOWN: u64 = 1;
        /// BPF LSM programs are attached: tracepoints mark decisions and
        /// the LSM hooks refuse with EPERM instead of sending SIGKILL.
        pub const LSM_ENFORCES: u64 = 2;
        /// Kill a watched process that calls io_uring_setup (io_uring
        /// bypasses the syscall tracepoints).
        pub const DENY_IO_URING: u64 = 4;
        /// Connect events come from the `sys_enter_connect` tracepoint
        /// (no cgroup v2 hooks attached).
        pub const CONNECT_VIA_TRACEPOINT: u64 = 8;
    }
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// Watched children that could not be recorded (watched-task map full).
    pub const TASK_MAP_FULL: u32 = 1;
    /// Decisions taken in the kernel (deny, kill or hold).
    pub const KERNEL_DECISIONS: u32 = 2;
    pub const LEN: u32 = 4;
}

/// `PathRule::decision` and `NetRule::decision`.
pub mod decision {
    pub const DENY: u8 = 1;
    pub const ASK: u8 = 2;
    /// Only in the lockdown allow-lists.
    pub const ALLOW: u8 = 3;
}

/// The first data byte of a [`PathKey`]: which table the entry belongs to.
pub mod path_key_kind {
    pub const EXEC: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const LOCKDOWN_EXEC_ALLOW: u8 = 3;
    /// Paths still readable in lockdown (writes are always refused).
    pub const LOCKDOWN_OPEN_ALLOW: u8 = 4;
}

/// Bytes of path in a [`PathKey`] (the LPM trie holds at most 256 data
/// bytes; one is the table byte).
pub const PATH_KEY_PATH_LEN: usize = 255;

/// Data of the path LPM trie key: `[table, path bytes...]`. An exact match
/// is stored as a prefix that includes the path's terminating NUL; a
/// directory prefix without it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PathKeyData {
    pub bytes: [u8; 1 + PATH_KEY_PATH_LEN],
}

/// Value of the path trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathRule {
    /// Index into the daemon's rule table (names the rule in events).
    pub rule_id: u32,
    pub decision: u8,
    /// Open entries: match only opens that write, create or truncate.
    pub write_only: u8,
    pub _pad: [u8; 2],
}

/// Data of the network LPM trie key: `[family (4 or 6), address (16)]`,
/// IPv4 addresses in the first four bytes.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct NetKeyData {
    pub bytes: [u8; 17],
}

pub const NET_PORT_RANGES: usize = 4;

/// Value of the network trie: the rule and up to four port ranges
/// (inclusive; `nports == 0` means every port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetRule {
    pub rule_id: u32,
    pub decision: u8,
    pub nports: u8,
    pub _pad: [u8; 2],
    pub ports: [[u16; 2]; NET_PORT_RANGES],
}

/// The start of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    pub kind: u32,
    /// Thread-group id (the process id users see).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub ktime_ns: u64,
    /// `kernel_action::*`.
    pub action: u32,
    /// Rule id when `action != NONE`.
    pub rule_id: u32,
    pub comm: [u8; COMM_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExecEvent {
    pub header: EventHeader,
    pub flags: u32,
    pub argc: u32,
    /// The parent's pid, from the kernel's fork record (0 if unknown).
    pub ppid: u32,
    pub _pad: u32,
    pub filename: [u8; PATH_LEN],
    pub argv: [[u8; ARG_LEN]; ARGV_MAX],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct OpenEvent {
    pub header: EventHeader,
    /// open(2) flags.
    pub flags: u32,
    /// The directory fd the path is relative to (`AT_FDCWD` = -100).
    pub dfd: i32,
    pub path: [u8; PATH_LEN],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectEvent {
    pub header: EventHeader,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    /// IPPROTO_TCP / IPPROTO_UDP when known, else 0.
    pub protocol: u32,
    /// IPv4 in the first four bytes.
    pub addr: [u8; 16],
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct ExitEvent {
    pub header: EventHeader,
}

/// A socket of a watched process whose traffic the kernel counts, the
/// value of the `FLOWS` map (keyed by the kernel's socket cookie). It is
/// registered when a watched process connects it or sends a datagram from
/// it (the first destination is kept), counted on every IP packet by the
/// cgroup skb hooks, and marked closed when the socket is released; the
/// daemon reads the counters and removes closed entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flow {
    /// The process that connected it, and its UID at that moment.
    pub pid: u32,
    pub uid: u32,
    /// AF_INET (2) or AF_INET6 (10).
    pub family: u16,
    /// Remote port, host byte order.
    pub port: u16,
    /// IPPROTO_TCP (6) or IPPROTO_UDP (17).
    pub protocol: u32,
    /// Remote address; IPv4 in the first four bytes.
    pub addr: [u8; 16],
    /// IP packets and their bytes (headers included), out and in.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Non-zero once the socket was released.
    pub closed: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C) with only integer fields and no
    // implicit padding reads that matter (explicit `_pad` fields).
    unsafe impl aya::Pod for PathKeyData {}
    unsafe impl aya::Pod for PathRule {}
    unsafe impl aya::Pod for NetKeyData {}
    unsafe impl aya::Pod for NetRule {}
    unsafe impl aya::Pod for Flow {}
}
