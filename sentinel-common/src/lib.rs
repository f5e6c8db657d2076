//! `#[repr(C)]` types shared by the eBPF programs (`sentinel-ebpf`) and the
//! daemon (`sentinel`): ring-buffer event records, map keys and values, and
//! the indices of the configuration and counter arrays.
//!
//! No logic lives here. Every record starts with an [`EventHeader`] whose
//! `kind` says which record follows; the daemon decodes by `kind` and checks
//! the length. With the `user` feature the types implement `aya::Pod` so they
//! can be written into and read from maps.
#![no_std]

/// Longest path string as the process passed it (and the kernel's copy of
/// an exec filename) captured, including the NUL.
pub const PATH_LEN: usize = 256;
/// Longest resolved path captured, including the NUL: the path of the
/// object the kernel resolved, rebuilt from its dentries and mounts.
pub const RPATH_LEN: usize = 512;
/// Path components (and mount crossings) a resolution walks at most;
/// deeper objects are reported with `object_flags::TRUNCATED`.
pub const WALK_DEPTH: usize = 48;
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
    /// A watched process tried to set up or use io_uring (header only).
    pub const IO_URING: u32 = 6;
    /// A change to the file system: rename, link, unlink, truncate, chmod,
    /// mkdir, symlink, mknod ([`MutateEvent`]).
    pub const MUTATE: u32 = 7;
    /// The end of a run of identical opens the kernel folded into the
    /// run's first record ([`RepeatEvent`]).
    pub const REPEAT: u32 = 8;
    /// A watched process signalled, ptraced or called bpf() against the
    /// sentinel ([`TamperEvent`]).
    pub const TAMPER: u32 = 16;
}

/// How a file-system-changing syscall's arguments are laid out, by
/// syscall number (the `CHANGE_SYSCALLS` map, written by the daemon for
/// its architecture): argument indices, or -1 when absent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChangeSyscall {
    /// `mutate_op::*`.
    pub op: u8,
    /// The directory fd of `name` (absent: the working directory).
    pub dfd: i8,
    /// The name changed or created.
    pub name: i8,
    /// rename's and link's source, and its directory fd.
    pub dfd2: i8,
    pub name2: i8,
    /// A descriptor to the object itself (ftruncate, fchmod, fchown).
    pub fd: i8,
    /// The mode, flags or length reported as `arg`.
    pub arg: i8,
    /// Flags that turn an unlink into an rmdir (`AT_REMOVEDIR` in
    /// unlinkat), at this argument index.
    pub rmdir_flags: i8,
}

/// `MutateEvent::op` values.
pub mod mutate_op {
    pub const RENAME: u32 = 1;
    pub const LINK: u32 = 2;
    pub const UNLINK: u32 = 3;
    pub const RMDIR: u32 = 4;
    pub const TRUNCATE: u32 = 5;
    pub const CHMOD: u32 = 6;
    pub const CHOWN: u32 = 7;
    pub const MKDIR: u32 = 8;
    pub const SYMLINK: u32 = 9;
    pub const MKNOD: u32 = 10;
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
    /// The process was sent SIGSTOP and waits for an approval. Where the
    /// call could be refused with a restart code (LSM, cgroup hooks), it
    /// has not taken effect: resuming the process restarts it.
    pub const HELD: u32 = 3;
}

/// What a watched thread is opening, recorded at syscall entry and
/// consumed at exit (or by the LSM `file_open` hook in between).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingOpen {
    /// The user-space address of the path as passed.
    pub filename: u64,
    pub flags: u32,
    pub dfd: i32,
    /// Non-zero once the LSM hook reported this open itself.
    pub reported: u32,
    pub _pad: u32,
}

/// The identity of a file the kernel resolved.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileObject {
    pub ino: u64,
    /// The kernel's `dev_t` of its file system (`MAJOR << 20 | MINOR`).
    pub dev: u32,
    /// `object_flags::*`.
    pub flags: u32,
}

/// `FileObject::flags` bits.
pub mod object_flags {
    /// `path` is the resolved object's path (else only what was typed is
    /// known, e.g. the call failed before anything was resolved).
    pub const RESOLVED: u32 = 1;
    /// The resolved path was longer than the buffer or deeper than
    /// `WALK_DEPTH`: `path` holds its first bytes.
    pub const TRUNCATED: u32 = 2;
    /// The object has no name left in the file system (a memfd, a deleted
    /// file).
    pub const UNLINKED: u32 = 4;
    /// The file was opened with `O_PATH` (a handle, not readable).
    pub const O_PATH: u32 = 8;
    /// `path` was composed from the directory the kernel resolved and the
    /// name as typed (mutations at syscall entry), not from the object.
    pub const COMPOSED: u32 = 16;
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
    /// Non-zero once the daemon wrote every `layout` offset: the programs
    /// resolve objects only then.
    pub const LAYOUT_READY: u32 = 5;
    /// Bumped whenever an open that was allowed before may no longer be
    /// the same action: the daemon bumps it when it reloads the policy or
    /// changes the mode, the programs when a watched process changes the
    /// file system (a rename can give a folded file another name). A run
    /// of folded opens ends when it changes.
    pub const COALESCE_EPOCH: u32 = 6;
    /// The daemon's process group: `kill(-pgid)` reaches it.
    pub const SELF_PGID: u32 = 8;
    /// Written by the kernel: when the daemon's process exited while its
    /// programs stayed attached (pinned), `bpf_ktime_get_ns`; 0 otherwise.
    pub const DAEMON_EXIT_NS: u32 = 9;
    pub const LEN: u32 = 12;

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

/// Indices into the `LAYOUT` array: byte offsets of the kernel structure
/// members the programs follow to resolve an object, read by the daemon
/// from the running kernel's BTF (they differ between kernel builds).
pub mod layout {
    pub const TASK_FILES: u32 = 0;
    pub const TASK_FS: u32 = 1;
    pub const FILES_FDT: u32 = 2;
    pub const FDTABLE_FD: u32 = 3;
    pub const FDTABLE_MAX_FDS: u32 = 4;
    pub const FILE_PATH: u32 = 5;
    pub const FILE_FLAGS: u32 = 6;
    pub const PATH_MNT: u32 = 7;
    pub const PATH_DENTRY: u32 = 8;
    pub const DENTRY_PARENT: u32 = 9;
    /// `d_name.len`, from the start of the dentry.
    pub const DENTRY_NAME_LEN: u32 = 10;
    /// `d_name.name`, from the start of the dentry.
    pub const DENTRY_NAME_PTR: u32 = 11;
    pub const DENTRY_INODE: u32 = 12;
    pub const INODE_INO: u32 = 13;
    pub const INODE_NLINK: u32 = 14;
    pub const SB_DEV: u32 = 15;
    /// `struct mount` members; `MOUNT_MNT` is where its `vfsmount` sits.
    pub const MOUNT_MNT: u32 = 16;
    pub const MOUNT_PARENT: u32 = 17;
    pub const MOUNT_MOUNTPOINT: u32 = 18;
    pub const VFSMOUNT_ROOT: u32 = 19;
    pub const VFSMOUNT_SB: u32 = 20;
    /// `fs_struct.pwd` (a `struct path`).
    pub const FS_PWD: u32 = 21;
    pub const BPRM_FILE: u32 = 22;
    pub const BPRM_FILENAME: u32 = 23;
    /// `task_struct.tgid`, for the target of a signal or ptrace (LSM).
    pub const TASK_TGID: u32 = 24;
    /// `file.private_data` (a pidfd's `struct pid`).
    pub const FILE_PRIVATE_DATA: u32 = 25;
    /// `pid.numbers` (`numbers[0].nr` is the pid in the initial namespace).
    pub const PID_NUMBERS: u32 = 26;
    /// `file.f_inode`, `inode.i_sb` and `super_block.s_magic`: whether a
    /// descriptor is a `/proc/PID` directory.
    pub const FILE_INODE: u32 = 27;
    pub const INODE_SB: u32 = 28;
    pub const SB_MAGIC: u32 = 29;
    /// `proc_inode.pid` and `proc_inode.vfs_inode`: the process a
    /// `/proc/PID` directory names.
    pub const PROC_INODE_PID: u32 = 30;
    pub const PROC_INODE_VFS: u32 = 31;
    pub const LEN: u32 = 32;
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Events dropped because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 0;
    /// Watched children that could not be recorded (watched-task map full).
    pub const TASK_MAP_FULL: u32 = 1;
    /// Decisions taken in the kernel (deny, kill or hold).
    pub const KERNEL_DECISIONS: u32 = 2;
    /// Objects the kernel could not resolve (layout missing, a read of
    /// kernel memory failed): decided on what was typed instead.
    pub const UNRESOLVED: u32 = 3;
    /// Pending records (open, exec, mutation) dropped because their map
    /// was full.
    pub const PENDING_FULL: u32 = 4;
    /// Opens folded into the first record of their run (see
    /// [`RepeatEvent`]).
    pub const COALESCED: u32 = 5;
    pub const LEN: u32 = 8;
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

/// Key of the protected-object map: a file or directory by identity, so
/// every name it has (hardlinks, bind mounts, `/proc/self/root`, renames)
/// is the same object.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub ino: u64,
    pub dev: u32,
    /// `path_key_kind::EXEC` or `path_key_kind::OPEN`.
    pub table: u8,
    pub _pad: [u8; 3],
}

/// Value of the protected-object map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeRule {
    pub rule_id: u32,
    pub decision: u8,
    pub write_only: u8,
    /// `inode_scope::*` bits.
    pub scope: u8,
    pub _pad: u8,
}

/// `InodeRule::scope` bits.
pub mod inode_scope {
    /// The object itself.
    pub const SELF: u8 = 1;
    /// Everything below it (a directory).
    pub const SUBTREE: u8 = 2;
}

/// A one-shot approval of a held action: when the call restarts, the
/// matching `ask` is let through once.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ApprovalKey {
    pub pid: u32,
    /// `approval_kind::*`.
    pub kind: u32,
    /// The inode (exec, open) or the port (connect).
    pub id: u64,
    /// The device (exec, open) or the family (connect).
    pub dev: u32,
    pub _pad: u32,
    /// The address (connect), IPv4 in the first four bytes.
    pub addr: [u8; 16],
}

pub mod approval_kind {
    pub const EXEC: u32 = 1;
    pub const OPEN: u32 = 2;
    pub const CONNECT: u32 = 3;
    /// Any change to the file system by this process (rename, unlink…).
    pub const CHANGE: u32 = 4;
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
    /// The binary the kernel is running (for a script, its interpreter),
    /// resolved from the file it opened.
    pub obj: FileObject,
    pub path: [u8; RPATH_LEN],
    /// The filename as passed to execve (or the kernel's name for it,
    /// e.g. `/dev/fd/3` for fexecve).
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
    /// The call's result: the new fd, or a negative errno. `RET_UNKNOWN`
    /// when reported before the call returned.
    pub ret: i32,
    pub _pad: u32,
    pub obj: FileObject,
    /// The resolved path of the object opened (see `obj.flags`).
    pub path: [u8; RPATH_LEN],
    /// The path as the process passed it.
    pub requested: [u8; PATH_LEN],
}

/// The end of a run of identical opens by one thread: the same file (the
/// same dentry on the same mount, so the same name and object), the same
/// flags, allowed with no kernel action under the same rule state. The
/// run's first open was emitted as an [`OpenEvent`] (its
/// `header.ktime_ns` is `run_ktime_ns`); `count` more were folded into it.
/// Emitted when the thread opens something else, when the run is older
/// than `COALESCE_WINDOW_NS`, when the epoch changes, and when the thread
/// exits; the daemon also reads runs idle that long from `COALESCE`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RepeatEvent {
    pub header: EventHeader,
    pub run_ktime_ns: u64,
    /// Opens folded into the run's first record, in all.
    pub count: u64,
    pub obj: FileObject,
    pub flags: u32,
    pub _pad: u32,
}

/// The run of identical opens a thread is in (`COALESCE`, by thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoalesceRun {
    pub dentry: u64,
    pub mnt: u64,
    pub epoch: u64,
    /// `header.ktime_ns` of the run's first record.
    pub run_ktime_ns: u64,
    /// When the last open was folded.
    pub last_ns: u64,
    /// Opens folded so far.
    pub count: u64,
    pub obj: FileObject,
    pub flags: u32,
    pub rule_id: u32,
    pub pid: u32,
    pub uid: u32,
}

/// The longest a run of folded opens lasts before a new first record is
/// emitted (and how long a run stays idle before the daemon collects it).
pub const COALESCE_WINDOW_NS: u64 = 1_000_000_000;

/// `ret` of a record emitted before the call returned.
pub const RET_UNKNOWN: i32 = i32::MIN;

/// A change to the file system by a watched process.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MutateEvent {
    pub header: EventHeader,
    /// `mutate_op::*`.
    pub op: u32,
    /// The mode (chmod, mkdir, mknod), flags (rename, unlink) or the new
    /// length's low bits (truncate).
    pub arg: u32,
    pub ret: i32,
    pub _pad: u32,
    /// The object changed (or the name created): rename's and link's
    /// destination, everything else's only path.
    pub obj: FileObject,
    pub path: [u8; RPATH_LEN],
    /// rename's and link's source.
    pub obj2: FileObject,
    pub path2: [u8; RPATH_LEN],
    /// The paths as typed, in the same order.
    pub requested: [u8; PATH_LEN],
    pub requested2: [u8; PATH_LEN],
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

/// Indices into the `TAMPER` array: the last attempt against the
/// sentinel, kept in the kernel (pinned) so a daemon that was killed by it
/// learns of it at its next start.
pub mod tamper {
    /// Attempts seen since the programs were loaded.
    pub const COUNT: u32 = 0;
    /// `bpf_ktime_get_ns` of the last one.
    pub const KTIME: u32 = 1;
    pub const PID: u32 = 2;
    pub const UID: u32 = 3;
    /// `tamper_op::*`.
    pub const OP: u32 = 4;
    /// The pid, pidfd target or bpf command it named.
    pub const TARGET: u32 = 5;
    pub const SIGNAL: u32 = 6;
    pub const LEN: u32 = 8;
}

/// What a watched process tried against the sentinel.
pub mod tamper_op {
    pub const KILL: u32 = 1;
    pub const TKILL: u32 = 2;
    pub const TGKILL: u32 = 3;
    pub const PIDFD_OPEN: u32 = 4;
    pub const PIDFD_SEND_SIGNAL: u32 = 5;
    pub const PTRACE: u32 = 6;
    pub const BPF: u32 = 7;
    /// `process_vm_writev` / `process_vm_readv` on the sentinel.
    pub const PROCESS_VM: u32 = 8;

    pub fn name(op: u32) -> &'static str {
        match op {
            KILL => "kill",
            TKILL => "tkill",
            TGKILL => "tgkill",
            PIDFD_OPEN => "pidfd_open",
            PIDFD_SEND_SIGNAL => "pidfd_send_signal",
            PTRACE => "ptrace",
            BPF => "bpf",
            PROCESS_VM => "process_vm_writev/readv",
            _ => "unknown",
        }
    }
}

/// A watched process acted against the sentinel (`header.action`: what
/// the kernel did to it: `DENIED` from LSM, `KILLED` from a tracepoint).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct TamperEvent {
    pub header: EventHeader,
    /// `tamper_op::*`.
    pub op: u32,
    pub signal: u32,
    /// The pid it named (or the bpf command).
    pub target: i64,
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
    unsafe impl aya::Pod for InodeKey {}
    unsafe impl aya::Pod for InodeRule {}
    unsafe impl aya::Pod for ApprovalKey {}
    unsafe impl aya::Pod for ChangeSyscall {}
    unsafe impl aya::Pod for CoalesceRun {}
}
