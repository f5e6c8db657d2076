//! Sentinel's kernel programs.
//!
//! What they own, and nothing more:
//! - deciding, with two hash lookups, whether the current process is
//!   watched (its UID is in `WATCHED_UIDS`, or an ancestor was watched when
//!   it forked: `WATCHED_TASKS`), and returning at once when it is not;
//! - capturing exec (filename, bounded argv), open (path, flags), connect
//!   (address, port), fork and exit into one ring buffer, counting what the
//!   ring buffer could not take;
//! - applying the decisions the daemon compiled into `PATH_RULES` and
//!   `NET_RULES` (and the lockdown flag): EPERM from the LSM or cgroup hooks
//!   where those are attached, SIGKILL from the syscall-entry tracepoint
//!   where they are not, SIGSTOP for `ask`;
//! - counting the IP bytes and packets of the sockets watched processes
//!   connect (`FLOWS`, keyed by socket cookie) for the daemon to read.
//!
//! The programs hold no policy of their own: every rule is a map entry
//! written by the daemon from the one policy engine.
#![no_std]
#![no_main]
// `atomic_xadd`: the bpfel target has no atomic types, but the
// instruction set has an atomic add (BPF_XADD).
#![feature(core_intrinsics)]
#![allow(internal_features)]

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::bpf_sock_addr,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns,
        bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user,
        bpf_probe_read_user_str_bytes,
        generated::{bpf_get_socket_cookie, bpf_send_signal},
    },
    macros::{cgroup_skb, cgroup_sock, cgroup_sock_addr, lsm, map, tracepoint},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::{LsmContext, SkBuffContext, SockAddrContext, SockContext, TracePointContext},
    EbpfContext,
};
use sentinel_common::{
    config, counter, decision, exec_flags, kernel_action, kind, path_key_kind, rule_id,
    ConnectEvent, EventHeader, ExecEvent, ExitEvent, Flow, ForkEvent, NetKeyData, NetRule,
    OpenEvent, PathKeyData, PathRule, PendingOpen, ARGV_MAX, ARG_LEN, NET_PORT_RANGES,
    PATH_KEY_PATH_LEN, PATH_LEN,
};

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;
const EPERM: i32 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;
const AT_FDCWD: i32 = -100;

const RULE_LOCKDOWN: u32 = rule_id::LOCKDOWN;
const RULE_IO_URING: u32 = rule_id::IO_URING;

/// LSM decision marks: what the syscall-entry tracepoint decided for this
/// thread, enforced by the LSM hook that follows in the same syscall.
const MARK_EXEC: u64 = 1;
const MARK_OPEN: u64 = 2;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);
#[map]
static WATCHED_UIDS: HashMap<u32, u8> = HashMap::with_max_entries(1024, 0);
#[map]
static WATCHED_TASKS: HashMap<u32, u8> = HashMap::with_max_entries(65536, 0);
/// Processes stopped for an approval; any hooked syscall from one that was
/// resumed by anybody but the daemon kills it.
/// Parent of every process forked since the sensor started (all of them:
/// a process can become watched later, at a setuid exec, and its parent
/// must still be known when /proc no longer has it).
#[map]
static PARENTS: LruHashMap<u32, u32> = LruHashMap::with_max_entries(32768, 0);
#[map]
static HELD: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);
#[map]
static CONFIG: Array<u64> = Array::with_max_entries(config::LEN, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);
#[map]
static PATH_RULES: LpmTrie<PathKeyData, PathRule> = LpmTrie::with_max_entries(8192, 0);
#[map]
static NET_RULES: LpmTrie<NetKeyData, NetRule> = LpmTrie::with_max_entries(4096, 0);
/// Destinations still reachable in lockdown.
#[map]
static LOCKDOWN_NET_ALLOW: LpmTrie<NetKeyData, NetRule> = LpmTrie::with_max_entries(256, 0);
#[map]
static LSM_MARKS: HashMap<u64, u32> = HashMap::with_max_entries(8192, 0);
/// Exec records captured at entry, emitted at exit when the exec succeeded.
#[map]
static PENDING_EXEC: HashMap<u32, ExecEvent> = HashMap::with_max_entries(2048, 0);
#[map]
static PENDING_OPEN: HashMap<u32, PendingOpen> = HashMap::with_max_entries(4096, 0);
#[map]
static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);
#[map]
static OPEN_SCRATCH: PerCpuArray<OpenEvent> = PerCpuArray::with_max_entries(1, 0);
/// Sockets of watched processes by socket cookie, with their byte counts.
#[map]
static FLOWS: LruHashMap<u64, Flow> = LruHashMap::with_max_entries(16384, 0);
#[map]
static KEY_SCRATCH: PerCpuArray<Key<PathKeyData>> = PerCpuArray::with_max_entries(1, 0);

// ---------------------------------------------------------------------------
// Who is acting, and is it watched?

struct Current {
    tgid: u32,
    tid: u32,
    uid: u32,
}

#[inline(always)]
fn current() -> Current {
    let pid_tgid = bpf_get_current_pid_tgid();
    Current {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
    }
}

#[inline(always)]
fn config(index: u32) -> u64 {
    CONFIG.get(index).copied().unwrap_or(0)
}

#[inline(always)]
fn flag(bit: u64) -> bool {
    config(config::FLAGS) & bit != 0
}

/// The watched check every program starts with; unwatched processes pay
/// for two hash lookups and nothing else.
#[inline(always)]
fn watched_task() -> Option<Current> {
    let cur = current();
    let watched =
        unsafe { WATCHED_UIDS.get(&cur.uid).is_some() || WATCHED_TASKS.get(&cur.tgid).is_some() };
    if !watched || u64::from(cur.tgid) == config(config::SELF_TGID) {
        return None;
    }
    Some(cur)
}

/// A held process runs again only when the daemon resumes it (and then
/// removes it from HELD first): anything else is a bypass attempt.
#[inline(always)]
fn is_held(cur: &Current) -> bool {
    unsafe { HELD.get(&cur.tgid).is_some() }
}

/// `watched_task` for tracepoints, which may signal: a held process that
/// was resumed behind the daemon's back is killed.
#[inline(always)]
fn watched() -> Option<Current> {
    let cur = watched_task()?;
    if is_held(&cur) {
        send_signal(SIGKILL);
    }
    Some(cur)
}

/// The address of a tracepoint record as a plain number. Field offsets
/// that come from the daemon (they differ between kernels) are variables,
/// and older verifiers refuse variable arithmetic on the context pointer.
#[inline(always)]
fn record_address(ctx: &TracePointContext) -> Option<u64> {
    let record = ctx.as_ptr() as *const u8;
    unsafe { bpf_probe_read_kernel(&record as *const *const u8 as *const u64) }.ok()
}

/// Reads a `T` at a variable offset into a tracepoint record.
#[inline(always)]
fn read_record<T>(ctx: &TracePointContext, offset: usize) -> Option<T> {
    let base = record_address(ctx)?;
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn send_signal(sig: u32) {
    unsafe { bpf_send_signal(sig) };
}

#[inline(always)]
fn fill_header(h: &mut EventHeader, event_kind: u32, cur: &Current) {
    h.kind = event_kind;
    h.pid = cur.tgid;
    h.tid = cur.tid;
    h.uid = cur.uid;
    h.ktime_ns = unsafe { bpf_ktime_get_ns() };
    h.action = kernel_action::NONE;
    h.rule_id = 0;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

#[inline(always)]
fn emit<T: 'static>(event: &T) {
    if EVENTS.output::<T>(event, 0).is_err() {
        bump(counter::RINGBUF_FULL);
    }
}

// ---------------------------------------------------------------------------
// Decisions: lookups in the maps the daemon compiled from the policy.

/// Looks `path` up in the path trie under `table`.
#[inline(always)]
fn path_rule(table: u8, path: &[u8; PATH_LEN]) -> Option<PathRule> {
    let key = KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    key.prefix_len = (8 * (1 + PATH_KEY_PATH_LEN)) as u32;
    key.data.bytes[0] = table;
    unsafe {
        core::ptr::copy_nonoverlapping(
            path.as_ptr(),
            key.data.bytes.as_mut_ptr().add(1),
            PATH_KEY_PATH_LEN,
        );
    }
    PATH_RULES.get(&*key).copied()
}

/// Applies a deny or ask decision taken at syscall entry; returns the
/// `kernel_action` to report.
#[inline(always)]
fn act_at_entry(cur: &Current, decided: u8, rule_id: u32, mark: u64) -> u32 {
    bump(counter::KERNEL_DECISIONS);
    if decided == decision::ASK {
        let _ = HELD.insert(&cur.tgid, &1, 0);
        send_signal(SIGSTOP);
        return kernel_action::HELD;
    }
    if flag(config::flags::LSM_ENFORCES) {
        let _ = LSM_MARKS.insert(&mark_key(cur.tid, mark), &rule_id, 0);
        kernel_action::DENIED
    } else {
        send_signal(SIGKILL);
        kernel_action::KILLED
    }
}

#[inline(always)]
fn mark_key(tid: u32, mark: u64) -> u64 {
    (u64::from(tid) << 8) | mark
}

#[inline(always)]
fn open_writes(flags: u32) -> bool {
    flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND) != 0
}

// ---------------------------------------------------------------------------
// exec: argv is read at syscall entry (from the old image); the filename
// and the decision come from sched_process_exec, whose record carries the
// kernel's own copy of the filename (no page faults, no user-memory race).
// Where BPF LSM enforces, the entry also marks the decision for
// bprm_check_security, and sched_process_exec is the backstop.

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let filename: *const u8 = unsafe { ctx.read_at(16) }.unwrap_or(core::ptr::null());
    let argv: *const *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    on_exec_enter(filename, argv);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let filename: *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    let argv: *const *const u8 = unsafe { ctx.read_at(32) }.unwrap_or(core::ptr::null());
    on_exec_enter(filename, argv);
    0
}

#[inline(always)]
fn on_exec_enter(filename: *const u8, argv: *const *const u8) {
    let Some(cur) = watched() else { return };
    let _ = LSM_MARKS.remove(&mark_key(cur.tid, MARK_OPEN));
    let _ = LSM_MARKS.remove(&mark_key(cur.tid, MARK_EXEC));
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let ev = unsafe { &mut *ev };
    fill_header(&mut ev.header, kind::EXEC, &cur);
    ev.flags = 0;
    ev.argc = 0;
    if unsafe { bpf_probe_read_user_str_bytes(filename, &mut ev.filename) }.is_err() {
        ev.filename[0] = 0;
    }
    read_argv(ev, argv);

    if flag(config::flags::LSM_ENFORCES) {
        if let Some((decided, rule_id)) = exec_decision(&ev.filename) {
            if decided == decision::DENY {
                // bprm_check_security refuses it; the exec never happens, so
                // report it now.
                bump(counter::KERNEL_DECISIONS);
                let _ = LSM_MARKS.insert(&mark_key(cur.tid, MARK_EXEC), &rule_id, 0);
                ev.header.action = kernel_action::DENIED;
                ev.header.rule_id = rule_id;
                ev.flags |= exec_flags::AT_ENTRY;
                emit(ev);
                return;
            }
        }
    }
    // Failed execs leave a stale entry that the thread's next exec or its
    // exit replaces or removes.
    let _ = PENDING_EXEC.insert(&cur.tid, &*ev, 0);
}

/// The decision for executing `filename`, if the kernel has one. Deny and
/// ask entries (quarantine, in lockdown) come first, then the lockdown
/// allow-list.
#[inline(always)]
fn exec_decision(filename: &[u8; PATH_LEN]) -> Option<(u8, u32)> {
    if let Some(r) = path_rule(path_key_kind::EXEC, filename) {
        if r.decision == decision::DENY || r.decision == decision::ASK {
            return Some((r.decision, r.rule_id));
        }
    }
    if flag(config::flags::LOCKDOWN)
        && !allowed_in_lockdown(path_key_kind::LOCKDOWN_EXEC_ALLOW, filename)
    {
        return Some((decision::DENY, RULE_LOCKDOWN));
    }
    None
}

#[inline(always)]
fn allowed_in_lockdown(table: u8, path: &[u8; PATH_LEN]) -> bool {
    matches!(path_rule(table, path), Some(r) if r.decision == decision::ALLOW)
}

#[inline(always)]
fn read_argv(ev: &mut ExecEvent, argv: *const *const u8) {
    if argv.is_null() {
        return;
    }
    let mut i = 0usize;
    while i < ARGV_MAX {
        let arg: *const u8 =
            unsafe { bpf_probe_read_user(argv.add(i)) }.unwrap_or(core::ptr::null());
        if arg.is_null() {
            return;
        }
        match unsafe { bpf_probe_read_user_str_bytes(arg, &mut ev.argv[i]) } {
            Ok(s) if s.len() >= ARG_LEN - 1 => ev.flags |= exec_flags::ARGV_TRUNCATED,
            Ok(_) => {}
            Err(_) => ev.argv[i][0] = 0,
        }
        i += 1;
        ev.argc = i as u32;
    }
    let more: *const u8 =
        unsafe { bpf_probe_read_user(argv.add(ARGV_MAX)) }.unwrap_or(core::ptr::null());
    if !more.is_null() {
        ev.flags |= exec_flags::ARGV_TRUNCATED;
    }
}

/// The exec succeeded; the new image has not run an instruction yet.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched() else { return 0 };
    let old_pid_off = config(config::EXEC_OLD_PID_OFFSET) as usize;
    let name_off = config(config::EXEC_FILENAME_OFFSET) as usize;
    if old_pid_off == 0 || old_pid_off > 64 || name_off == 0 || name_off > 64 {
        return 0;
    }
    // The pending record is keyed by the thread that called execve.
    let old_pid: i32 = read_record(&ctx, old_pid_off).unwrap_or(0);
    let key = old_pid as u32;
    let ev = match PENDING_EXEC.get_ptr_mut(&key) {
        Some(ev) => ev,
        None => {
            // No entry (the map was full): build one without argv.
            let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
                return 0;
            };
            let e = unsafe { &mut *ev };
            fill_header(&mut e.header, kind::EXEC, &cur);
            e.flags = 0;
            e.argc = 0;
            ev
        }
    };
    let ev = unsafe { &mut *ev };
    let loc: u32 = read_record(&ctx, name_off).unwrap_or(0);
    // The string sits `loc & 0xffff` bytes into the record.
    let Some(base) = record_address(&ctx) else {
        return 0;
    };
    let data = (base + u64::from(loc & 0xffff)) as *const u8;
    match unsafe { bpf_probe_read_kernel_str_bytes(data, &mut ev.filename) } {
        Ok(s) if s.len() >= PATH_LEN - 1 => ev.flags |= exec_flags::FILENAME_TRUNCATED,
        Ok(_) => {}
        Err(_) => {}
    }
    // Every program a watched process runs stays watched by its pid, so
    // a setuid binary that then drops or changes its UIDs (sudo, su) keeps
    // itself and its descendants attributed.
    if WATCHED_TASKS.insert(&cur.tgid, &1, 0).is_err() {
        bump(counter::TASK_MAP_FULL);
    }
    ev.ppid = unsafe { PARENTS.get(&cur.tgid) }.copied().unwrap_or(0);
    ev.header.pid = cur.tgid;
    ev.header.tid = cur.tid;
    ev.header.uid = cur.uid;
    ev.header.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    if let Some((decided, rule_id)) = exec_decision(&ev.filename) {
        bump(counter::KERNEL_DECISIONS);
        ev.header.rule_id = rule_id;
        ev.header.action = if decided == decision::ASK {
            let _ = HELD.insert(&cur.tgid, &1, 0);
            send_signal(SIGSTOP);
            kernel_action::HELD
        } else {
            send_signal(SIGKILL);
            kernel_action::KILLED
        };
    }
    emit(ev);
    let _ = PENDING_EXEC.remove(&key);
    0
}

// ---------------------------------------------------------------------------
// open: decided at syscall entry; a path that cannot be read there (its
// page not faulted in yet) is read and decided at syscall exit instead.

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let dfd: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let filename: *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    let flags: u64 = unsafe { ctx.read_at(32) }.unwrap_or(0);
    on_open_enter(dfd as i32, filename, flags as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let dfd: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let filename: *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    let how: *const u64 = unsafe { ctx.read_at(32) }.unwrap_or(core::ptr::null());
    // struct open_how { u64 flags; u64 mode; u64 resolve; }
    let flags: u64 = if how.is_null() {
        0
    } else {
        unsafe { bpf_probe_read_user(how) }.unwrap_or(0)
    };
    on_open_enter(dfd as i32, filename, flags as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    let filename: *const u8 = unsafe { ctx.read_at(16) }.unwrap_or(core::ptr::null());
    let flags: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    on_open_enter(AT_FDCWD, filename, flags as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    let filename: *const u8 = unsafe { ctx.read_at(16) }.unwrap_or(core::ptr::null());
    on_open_enter(AT_FDCWD, filename, O_CREAT | O_WRONLY | O_TRUNC);
    0
}

#[inline(always)]
fn on_open_enter(dfd: i32, filename: *const u8, flags: u32) {
    let Some(cur) = watched() else { return };
    let _ = LSM_MARKS.remove(&mark_key(cur.tid, MARK_OPEN));
    let Some(ev) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let ev = unsafe { &mut *ev };
    if unsafe { bpf_probe_read_user_str_bytes(filename, &mut ev.path) }.is_err() {
        let pending = PendingOpen {
            filename: filename as u64,
            flags,
            dfd,
        };
        if PENDING_OPEN.insert(&cur.tid, &pending, 0).is_ok() {
            return;
        }
        ev.path[0] = 0;
    }
    decide_and_emit_open(&cur, ev, dfd, flags, true);
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat")]
pub fn sys_exit_openat(_ctx: TracePointContext) -> u32 {
    on_open_exit();
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_openat2")]
pub fn sys_exit_openat2(_ctx: TracePointContext) -> u32 {
    on_open_exit();
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_open")]
pub fn sys_exit_open(_ctx: TracePointContext) -> u32 {
    on_open_exit();
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_creat")]
pub fn sys_exit_creat(_ctx: TracePointContext) -> u32 {
    on_open_exit();
    0
}

/// Reads and decides an open deferred from its entry. The process has not
/// returned to user space yet, so a kill still lands before it can use
/// the file.
#[inline(always)]
fn on_open_exit() {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(pending) = (unsafe { PENDING_OPEN.get(&tid) }).copied() else {
        return;
    };
    let _ = PENDING_OPEN.remove(&tid);
    let Some(cur) = watched() else { return };
    let Some(ev) = OPEN_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let ev = unsafe { &mut *ev };
    if unsafe { bpf_probe_read_user_str_bytes(pending.filename as *const u8, &mut ev.path) }
        .is_err()
    {
        ev.path[0] = 0;
    }
    decide_and_emit_open(&cur, ev, pending.dfd, pending.flags, false);
}

#[inline(always)]
fn decide_and_emit_open(cur: &Current, ev: &mut OpenEvent, dfd: i32, flags: u32, at_entry: bool) {
    fill_header(&mut ev.header, kind::OPEN, cur);
    ev.flags = flags;
    ev.dfd = dfd;
    let writes = open_writes(flags);
    let mut decided = 0u8;
    let mut rule_id = 0u32;
    if let Some(rule) = path_rule(path_key_kind::OPEN, &ev.path) {
        if (rule.write_only == 0 || writes)
            && (rule.decision == decision::DENY || rule.decision == decision::ASK)
        {
            decided = rule.decision;
            rule_id = rule.rule_id;
        }
    }
    if decided == 0
        && flag(config::flags::LOCKDOWN)
        && (writes || !allowed_in_lockdown(path_key_kind::LOCKDOWN_OPEN_ALLOW, &ev.path))
    {
        decided = decision::DENY;
        rule_id = RULE_LOCKDOWN;
    }
    if decided != 0 {
        ev.header.rule_id = rule_id;
        ev.header.action = if at_entry {
            act_at_entry(cur, decided, rule_id, MARK_OPEN)
        } else if decided == decision::ASK {
            bump(counter::KERNEL_DECISIONS);
            let _ = HELD.insert(&cur.tgid, &1, 0);
            send_signal(SIGSTOP);
            kernel_action::HELD
        } else {
            bump(counter::KERNEL_DECISIONS);
            send_signal(SIGKILL);
            kernel_action::KILLED
        };
    }
    emit(ev);
}

// ---------------------------------------------------------------------------
// connect: cgroup sock_addr hooks (a real EPERM), or the tracepoint when no
// cgroup v2 hierarchy could be used.

#[cgroup_sock_addr(connect4)]
pub fn connect4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, false, true)
}

#[cgroup_sock_addr(connect6)]
pub fn connect6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, true, true)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn sendmsg4(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, false, false)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn sendmsg6(ctx: SockAddrContext) -> i32 {
    on_sock_addr(ctx.sock_addr, true, false)
}

/// Returns 1 to allow, 0 to refuse with EPERM.
#[inline(always)]
fn on_sock_addr(sa: *mut bpf_sock_addr, v6: bool, is_connect: bool) -> i32 {
    let Some(cur) = watched_task() else { return 1 };
    // With BPF LSM the `socket_connect` hook decided and reported this
    // connect already; here it is only registered for counting.
    let lsm_decided = is_connect && flag(config::flags::LSM_ENFORCES);
    if is_held(&cur) && !lsm_decided {
        return 0;
    }
    let sa = unsafe { &*sa };
    let mut addr = [0u8; 16];
    let family;
    if v6 {
        family = AF_INET6;
        let words = [
            sa.user_ip6[0],
            sa.user_ip6[1],
            sa.user_ip6[2],
            sa.user_ip6[3],
        ];
        let mut i = 0;
        while i < 4 {
            let b = words[i].to_ne_bytes();
            addr[i * 4] = b[0];
            addr[i * 4 + 1] = b[1];
            addr[i * 4 + 2] = b[2];
            addr[i * 4 + 3] = b[3];
            i += 1;
        }
    } else {
        family = AF_INET;
        let b = sa.user_ip4.to_ne_bytes();
        addr[0] = b[0];
        addr[1] = b[1];
        addr[2] = b[2];
        addr[3] = b[3];
    }
    let port = u16::from_be(sa.user_port as u16);
    let protocol = sa.protocol;
    if lsm_decided {
        register_flow(sa, &cur, family, port, protocol, &addr);
        return 1;
    }
    let (action, rule_id) = connect_decision(&cur, family, &addr, port, Hook::Refuse);
    if is_connect || action != kernel_action::NONE {
        emit_connect(&cur, family, port, protocol, &addr, action, rule_id);
    }
    if action == kernel_action::DENIED {
        0
    } else {
        register_flow(sa, &cur, family, port, protocol, &addr);
        1
    }
}

// ---------------------------------------------------------------------------
// Byte counts of the sockets watched processes use.

/// Starts counting a socket a watched process connects or sends from; a
/// socket already counted keeps its counters (and first destination).
#[inline(always)]
fn register_flow(
    sa: &bpf_sock_addr,
    cur: &Current,
    family: u16,
    port: u16,
    protocol: u32,
    addr: &[u8; 16],
) {
    let cookie = unsafe { bpf_get_socket_cookie(sa as *const bpf_sock_addr as *mut _) };
    // Look first: an update of an LRU map takes a free node (evicting
    // another socket when the map is full) before it sees the key exists,
    // and an unconnected UDP socket comes here for every datagram.
    if cookie == 0 || unsafe { FLOWS.get(&cookie) }.is_some() {
        return;
    }
    let flow = Flow {
        pid: cur.tgid,
        uid: cur.uid,
        family,
        port,
        protocol,
        addr: *addr,
        ..Flow::default()
    };
    // BPF_NOEXIST: a socket another CPU registered meanwhile keeps its counts.
    const BPF_NOEXIST: u64 = 1;
    let _ = FLOWS.insert(&cookie, &flow, BPF_NOEXIST);
}

/// Adds one IP packet to its socket's counters when the socket is counted.
/// Unwatched sockets pay one cookie read and one hash lookup.
#[inline(always)]
fn count_packet(ctx: &SkBuffContext, egress: bool) {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if cookie == 0 {
        return;
    }
    let Some(flow) = FLOWS.get_ptr_mut(&cookie) else {
        return;
    };
    let len = u64::from(ctx.len());
    // Both directions of a socket can be counted on two CPUs at once.
    unsafe {
        let (bytes, packets) = if egress {
            (&raw mut (*flow).tx_bytes, &raw mut (*flow).tx_packets)
        } else {
            (&raw mut (*flow).rx_bytes, &raw mut (*flow).rx_packets)
        };
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bytes, len);
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(packets, 1);
    }
}

#[cgroup_skb(egress)]
pub fn flow_egress(ctx: SkBuffContext) -> i32 {
    count_packet(&ctx, true);
    1
}

#[cgroup_skb(ingress)]
pub fn flow_ingress(ctx: SkBuffContext) -> i32 {
    count_packet(&ctx, false);
    1
}

/// Marks a counted socket closed, for the daemon to collect and remove.
#[cgroup_sock(sock_release)]
pub fn flow_release(ctx: SockContext) -> i32 {
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if let Some(flow) = FLOWS.get_ptr_mut(&cookie) {
        unsafe { (*flow).closed = 1 };
    }
    1
}

/// Where a connect is decided: a hook that can refuse the call (cgroup,
/// LSM; these cannot send signals on every kernel, so an `ask` is left to
/// the daemon, which stops the process after the call), or the syscall
/// tracepoint, which cannot refuse and kills or stops instead.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Refuse,
    Signal,
}

#[inline(always)]
fn connect_decision(
    cur: &Current,
    family: u16,
    addr: &[u8; 16],
    port: u16,
    hook: Hook,
) -> (u32, u32) {
    let (mut decided, mut rule_id) = (0u8, 0u32);
    if let Some(rule) = net_rule(&NET_RULES, family, addr) {
        if port_matches(&rule, port) {
            decided = rule.decision;
            rule_id = rule.rule_id;
        }
    }
    if decided == 0
        && flag(config::flags::LOCKDOWN)
        && !matches!(net_rule(&LOCKDOWN_NET_ALLOW, family, addr), Some(r) if r.decision == decision::ALLOW)
    {
        decided = decision::DENY;
        rule_id = RULE_LOCKDOWN;
    }
    match (decided, hook) {
        (decision::DENY, Hook::Refuse) => {
            bump(counter::KERNEL_DECISIONS);
            (kernel_action::DENIED, rule_id)
        }
        (decision::DENY, Hook::Signal) => {
            bump(counter::KERNEL_DECISIONS);
            send_signal(SIGKILL);
            (kernel_action::KILLED, rule_id)
        }
        (decision::ASK, Hook::Signal) => {
            bump(counter::KERNEL_DECISIONS);
            let _ = HELD.insert(&cur.tgid, &1, 0);
            send_signal(SIGSTOP);
            (kernel_action::HELD, rule_id)
        }
        _ => (kernel_action::NONE, 0),
    }
}

#[inline(always)]
fn net_rule(trie: &LpmTrie<NetKeyData, NetRule>, family: u16, addr: &[u8; 16]) -> Option<NetRule> {
    let mut data = NetKeyData { bytes: [0; 17] };
    // An IPv4-mapped IPv6 address is looked up as the IPv4 address it is.
    let mapped = family == AF_INET6
        && addr[..10].iter().all(|b| *b == 0)
        && addr[10] == 0xff
        && addr[11] == 0xff;
    if family == AF_INET || mapped {
        data.bytes[0] = 4;
        let off = if mapped { 12 } else { 0 };
        data.bytes[1] = addr[off];
        data.bytes[2] = addr[off + 1];
        data.bytes[3] = addr[off + 2];
        data.bytes[4] = addr[off + 3];
        let key = Key::new(8 + 32, data);
        trie.get(&key).copied()
    } else {
        data.bytes[0] = 6;
        data.bytes[1..17].copy_from_slice(addr);
        let key = Key::new(8 + 128, data);
        trie.get(&key).copied()
    }
}

#[inline(always)]
fn port_matches(rule: &NetRule, port: u16) -> bool {
    if rule.nports == 0 {
        return true;
    }
    let mut i = 0;
    while i < NET_PORT_RANGES {
        if i < rule.nports as usize && port >= rule.ports[i][0] && port <= rule.ports[i][1] {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
fn emit_connect(
    cur: &Current,
    family: u16,
    port: u16,
    protocol: u32,
    addr: &[u8; 16],
    action: u32,
    rule_id: u32,
) {
    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::CONNECT, cur);
    ev.header.action = action;
    ev.header.rule_id = rule_id;
    ev.family = family;
    ev.port = port;
    ev.protocol = protocol;
    ev.addr = *addr;
    entry.submit(0);
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if !flag(config::flags::CONNECT_VIA_TRACEPOINT) {
        return 0;
    }
    let Some(cur) = watched() else { return 0 };
    let uaddr: *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    if uaddr.is_null() {
        return 0;
    }
    // struct sockaddr_in / sockaddr_in6: family (2), port (2, big-endian),
    // then the IPv4 address, or flowinfo (4) and the IPv6 address.
    let family: u16 = unsafe { bpf_probe_read_user(uaddr as *const u16) }.unwrap_or(0);
    let port_be: u16 = unsafe { bpf_probe_read_user(uaddr.add(2) as *const u16) }.unwrap_or(0);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let a: [u8; 4] =
                unsafe { bpf_probe_read_user(uaddr.add(4) as *const [u8; 4]) }.unwrap_or([0; 4]);
            addr[..4].copy_from_slice(&a);
        }
        AF_INET6 => {
            addr =
                unsafe { bpf_probe_read_user(uaddr.add(8) as *const [u8; 16]) }.unwrap_or([0; 16]);
        }
        _ => return 0,
    }
    let port = u16::from_be(port_be);
    let (action, rule_id) = connect_decision(&cur, family, &addr, port, Hook::Signal);
    emit_connect(&cur, family, port, 0, &addr, action, rule_id);
    0
}

// ---------------------------------------------------------------------------
// process lifecycle

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let offset = config(config::FORK_CHILD_PID_OFFSET) as usize;
    if offset == 0 || offset > 64 {
        return 0;
    }
    let child: i32 = read_record(&ctx, offset).unwrap_or(0);
    if child <= 0 {
        return 0;
    }
    let child = child as u32;
    let parent = (bpf_get_current_pid_tgid() >> 32) as u32;
    let _ = PARENTS.insert(&child, &parent, 0);
    let Some(cur) = watched() else { return 0 };
    if WATCHED_TASKS.insert(&child, &1, 0).is_err() {
        bump(counter::TASK_MAP_FULL);
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return 0;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::FORK, &cur);
    ev.child_pid = child;
    ev._pad = 0;
    entry.submit(0);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let cur = current();
    let watched =
        unsafe { WATCHED_UIDS.get(&cur.uid).is_some() || WATCHED_TASKS.get(&cur.tgid).is_some() };
    if !watched {
        return 0;
    }
    let _ = WATCHED_TASKS.remove(&cur.tid);
    let _ = PENDING_EXEC.remove(&cur.tid);
    let _ = PENDING_OPEN.remove(&cur.tid);
    let _ = LSM_MARKS.remove(&mark_key(cur.tid, MARK_OPEN));
    let _ = LSM_MARKS.remove(&mark_key(cur.tid, MARK_EXEC));
    if cur.tid != cur.tgid {
        return 0;
    }
    let _ = HELD.remove(&cur.tgid);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return 0;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::EXIT, &cur);
    entry.submit(0);
    0
}

/// io_uring submits opens and connects without the syscalls the
/// tracepoints watch; a watched process that sets one up is killed when the
/// daemon sets `DENY_IO_URING`.
#[tracepoint(category = "syscalls", name = "sys_enter_io_uring_setup")]
pub fn sys_enter_io_uring_setup(_ctx: TracePointContext) -> u32 {
    if !flag(config::flags::DENY_IO_URING) {
        return 0;
    }
    let Some(cur) = watched() else { return 0 };
    bump(counter::KERNEL_DECISIONS);
    send_signal(SIGKILL);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return 0;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::IO_URING, &cur);
    ev.header.action = kernel_action::KILLED;
    ev.header.rule_id = RULE_IO_URING;
    entry.submit(0);
    0
}

// ---------------------------------------------------------------------------
// BPF LSM (where the kernel allows it): refuse with EPERM.

/// Enforces the decision the syscall-entry tracepoint marked for this
/// thread. `prev` is the previous LSM's verdict, kept if it already refused.
#[inline(always)]
fn enforce_mark(mark: u64, prev: i32) -> i32 {
    if prev != 0 {
        return prev;
    }
    let tid = bpf_get_current_pid_tgid() as u32;
    let key = mark_key(tid, mark);
    if unsafe { LSM_MARKS.get(&key) }.is_some() {
        let _ = LSM_MARKS.remove(&key);
        return -EPERM;
    }
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    enforce_mark(MARK_EXEC, prev)
}

#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    enforce_mark(MARK_OPEN, prev)
}

/// `socket_connect(struct socket *sock, struct sockaddr *address, int
/// addrlen)`: the address is a kernel copy, so there is no user-memory race.
#[lsm(hook = "socket_connect")]
pub fn socket_connect(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let Some(cur) = watched_task() else { return 0 };
    if is_held(&cur) {
        return -EPERM;
    }
    let address: *const u8 = ctx.arg(1);
    if address.is_null() {
        return 0;
    }
    let family: u16 = unsafe { bpf_probe_read_kernel(address as *const u16) }.unwrap_or(0);
    let port_be: u16 = unsafe { bpf_probe_read_kernel(address.add(2) as *const u16) }.unwrap_or(0);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let a: [u8; 4] = unsafe { bpf_probe_read_kernel(address.add(4) as *const [u8; 4]) }
                .unwrap_or([0; 4]);
            addr[..4].copy_from_slice(&a);
        }
        AF_INET6 => {
            addr = unsafe { bpf_probe_read_kernel(address.add(8) as *const [u8; 16]) }
                .unwrap_or([0; 16]);
        }
        _ => return 0,
    }
    let port = u16::from_be(port_be);
    let (action, rule_id) = connect_decision(&cur, family, &addr, port, Hook::Refuse);
    emit_connect(&cur, family, port, 0, &addr, action, rule_id);
    if action == kernel_action::DENIED {
        -EPERM
    } else {
        0
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
