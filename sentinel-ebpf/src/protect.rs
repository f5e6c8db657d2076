//! Self-protection: a watched process (a setuid-root descendant included)
//! may not signal, ptrace or `bpf()` against the sentinel.
//!
//! - With BPF LSM: `task_kill`, `ptrace_access_check` and `bpf` refuse
//!   with EPERM.
//! - Without it: the syscall-entry tracepoints of `kill`, `tkill`,
//!   `tgkill`, `pidfd_open`, `pidfd_send_signal` (a pidfd, or a
//!   `/proc/PID` directory descriptor), `ptrace`, `process_vm_writev`,
//!   `process_vm_readv` and `bpf` kill the caller (the call itself still
//!   runs: a tracepoint cannot refuse).
//!
//! Either way the attempt is recorded in `TAMPER` (pinned, so a daemon
//! killed by it learns of it at its next start) and sent as a
//! [`TamperEvent`]. `protect_exit` notes in `CONFIG` when the daemon's
//! process exits while its programs stay attached, and forgets its tgid so
//! a process that reuses the pid is not exempt.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::{lsm, tracepoint},
    programs::{LsmContext, TracePointContext},
};
use sentinel_common::{
    config, counter, kernel_action, kind, layout, tamper, tamper_op, TamperEvent,
};

use crate::capture::{bump, fill_header, send_signal};
use crate::filter::{config, current, watched_task, Current, SIGKILL};
use crate::kernel::{lsm_arg, ptr, read, Layout};
use crate::maps::{CONFIG, EVENTS, LAYOUT, SELF_THREADS, TAMPER};

const EPERM: i32 = 1;

/// Whether a pid as `kill(2)` takes it reaches the sentinel: its tgid, one
/// of its threads, its process group, or every process (-1).
#[inline(always)]
fn is_self(target: i64) -> bool {
    let me = config(config::SELF_TGID);
    if me == 0 {
        return false;
    }
    if target > 0 {
        return target as u64 == me || unsafe { SELF_THREADS.get(&(target as u32)).is_some() };
    }
    if target == -1 {
        return true;
    }
    let pgid = config(config::SELF_PGID);
    target < -1 && pgid != 0 && (-target) as u64 == pgid
}

#[inline(always)]
fn set(index: u32, value: u64) {
    if let Some(p) = TAMPER.get_ptr_mut(index) {
        unsafe { *p = value };
    }
}

/// Records the attempt (map and ring buffer).
#[inline(always)]
fn record(cur: &Current, op: u32, target: i64, signal: u32, action: u32) {
    if let Some(p) = TAMPER.get_ptr_mut(tamper::COUNT) {
        unsafe { *p += 1 };
    }
    set(tamper::KTIME, unsafe { bpf_ktime_get_ns() });
    set(tamper::PID, u64::from(cur.tgid));
    set(tamper::UID, u64::from(cur.uid));
    set(tamper::OP, u64::from(op));
    set(tamper::TARGET, target as u64);
    set(tamper::SIGNAL, u64::from(signal));
    let Some(mut entry) = EVENTS.reserve::<TamperEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::TAMPER, cur);
    ev.header.action = action;
    ev.op = op;
    ev.signal = signal;
    ev.target = target;
    entry.submit(0);
}

/// From a tracepoint: the caller dies before it returns to user space.
#[inline(always)]
fn strike(cur: &Current, op: u32, target: i64, signal: u32) {
    bump(counter::KERNEL_DECISIONS);
    send_signal(SIGKILL);
    record(cur, op, target, signal, kernel_action::KILLED);
}

/// Syscall argument `n` of a `syscalls:sys_enter_*` record.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> i64 {
    unsafe { ctx.read_at::<i64>(16 + 8 * n) }.unwrap_or(0)
}

/// A `pid_t` argument (an int in a 64-bit slot).
#[inline(always)]
fn pid_arg(ctx: &TracePointContext, n: usize) -> i64 {
    i64::from(arg(ctx, n) as i32)
}

#[tracepoint(category = "syscalls", name = "sys_enter_kill")]
pub fn protect_kill(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let (pid, sig) = (pid_arg(&ctx, 0), arg(&ctx, 1) as u32);
    if sig != 0 && is_self(pid) {
        strike(&cur, tamper_op::KILL, pid, sig);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_tkill")]
pub fn protect_tkill(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let (tid, sig) = (pid_arg(&ctx, 0), arg(&ctx, 1) as u32);
    if sig != 0 && tid > 0 && is_self(tid) {
        strike(&cur, tamper_op::TKILL, tid, sig);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_tgkill")]
pub fn protect_tgkill(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let (tgid, tid, sig) = (pid_arg(&ctx, 0), pid_arg(&ctx, 1), arg(&ctx, 2) as u32);
    if sig != 0 && ((tgid > 0 && is_self(tgid)) || (tid > 0 && is_self(tid))) {
        strike(&cur, tamper_op::TGKILL, tgid, sig);
    }
    0
}

/// A pidfd on the sentinel is only ever the first step of signalling it.
#[tracepoint(category = "syscalls", name = "sys_enter_pidfd_open")]
pub fn protect_pidfd_open(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let pid = pid_arg(&ctx, 0);
    if pid > 0 && is_self(pid) {
        strike(&cur, tamper_op::PIDFD_OPEN, pid, 0);
    }
    0
}

/// `PROC_SUPER_MAGIC`: the file system of `/proc`.
const PROC_SUPER_MAGIC: u64 = 0x9fa0;

/// The `struct pid` a descriptor handed to `pidfd_send_signal` names, as
/// the kernel finds it: a `/proc/PID` directory's inode carries it, a
/// pidfd (however obtained: inherited, passed over a socket) holds it in
/// `private_data`.
#[inline(always)]
fn pid_of_file(file: u64) -> u64 {
    let at = |i: u32| LAYOUT.get(i).copied().unwrap_or(0);
    let (f_inode, i_sb, s_magic) = (
        at(layout::FILE_INODE),
        at(layout::INODE_SB),
        at(layout::SB_MAGIC),
    );
    let (proc_pid, proc_vfs) = (at(layout::PROC_INODE_PID), at(layout::PROC_INODE_VFS));
    if f_inode != 0 && i_sb != 0 && s_magic != 0 && proc_vfs != 0 {
        let inode = ptr(file + f_inode);
        let sb = if inode == 0 { 0 } else { ptr(inode + i_sb) };
        if sb != 0 && read::<u64>(sb + s_magic) == PROC_SUPER_MAGIC {
            return ptr(inode - proc_vfs + proc_pid);
        }
    }
    let private_data = at(layout::FILE_PRIVATE_DATA);
    if private_data == 0 {
        return 0;
    }
    ptr(file + private_data)
}

#[tracepoint(category = "syscalls", name = "sys_enter_pidfd_send_signal")]
pub fn protect_pidfd_send_signal(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let (fd, sig) = (arg(&ctx, 0) as i32, arg(&ctx, 1) as u32);
    if sig == 0 {
        return 0;
    }
    let Some(l) = Layout::load() else { return 0 };
    let numbers = LAYOUT.get(layout::PID_NUMBERS).copied().unwrap_or(0);
    if numbers == 0 {
        return 0;
    }
    let file = l.file_of_fd(fd);
    if file == 0 {
        return 0;
    }
    let pid = pid_of_file(file);
    if pid == 0 {
        return 0;
    }
    let nr: i32 = read(pid + numbers);
    if nr > 0 && is_self(i64::from(nr)) {
        strike(&cur, tamper_op::PIDFD_SEND_SIGNAL, i64::from(nr), sig);
    }
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn protect_ptrace(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    // PTRACE_TRACEME (0) names no target.
    let (request, pid) = (arg(&ctx, 0), pid_arg(&ctx, 1));
    if request != 0 && pid > 0 && is_self(pid) {
        strike(&cur, tamper_op::PTRACE, pid, 0);
    }
    0
}

/// Reading or writing the sentinel's memory.
#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_writev")]
pub fn protect_process_vm_writev(ctx: TracePointContext) -> u32 {
    process_vm(&ctx)
}

#[tracepoint(category = "syscalls", name = "sys_enter_process_vm_readv")]
pub fn protect_process_vm_readv(ctx: TracePointContext) -> u32 {
    process_vm(&ctx)
}

#[inline(always)]
fn process_vm(ctx: &TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    let pid = pid_arg(ctx, 0);
    if pid > 0 && is_self(pid) {
        strike(&cur, tamper_op::PROCESS_VM, pid, 0);
    }
    0
}

/// Agents have no business with bpf(): any command could reach the
/// sentinel's maps, programs or links (by id or by pin).
#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub fn protect_bpf(ctx: TracePointContext) -> u32 {
    let Some(cur) = watched_task() else { return 0 };
    strike(&cur, tamper_op::BPF, arg(&ctx, 0), 0);
    0
}

/// The tgid of a `task_struct` handed to an LSM hook (0 when unknown).
#[inline(always)]
fn tgid_of(task: u64) -> i64 {
    let offset = LAYOUT.get(layout::TASK_TGID).copied().unwrap_or(0);
    if task == 0 || offset == 0 {
        return 0;
    }
    i64::from(read::<i32>(task + offset))
}

#[lsm(hook = "task_kill")]
pub fn protect_task_kill(ctx: LsmContext) -> i32 {
    let Some(cur) = watched_task() else { return 0 };
    let sig = lsm_arg(&ctx, 2) as u32;
    let target = tgid_of(lsm_arg(&ctx, 0));
    if sig == 0 || target <= 0 || !is_self(target) {
        return 0;
    }
    bump(counter::KERNEL_DECISIONS);
    record(&cur, tamper_op::KILL, target, sig, kernel_action::DENIED);
    -EPERM
}

#[lsm(hook = "ptrace_access_check")]
pub fn protect_ptrace_access(ctx: LsmContext) -> i32 {
    let Some(cur) = watched_task() else { return 0 };
    let target = tgid_of(lsm_arg(&ctx, 0));
    if target <= 0 || !is_self(target) {
        return 0;
    }
    bump(counter::KERNEL_DECISIONS);
    record(&cur, tamper_op::PTRACE, target, 0, kernel_action::DENIED);
    -EPERM
}

#[lsm(hook = "bpf")]
pub fn protect_bpf_call(ctx: LsmContext) -> i32 {
    let Some(cur) = watched_task() else { return 0 };
    bump(counter::KERNEL_DECISIONS);
    record(
        &cur,
        tamper_op::BPF,
        lsm_arg(&ctx, 0) as i64,
        0,
        kernel_action::DENIED,
    );
    -EPERM
}

/// The daemon's process ended while this program was still attached: it
/// was killed or crashed (a clean stop detaches first).
#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn protect_exit(_ctx: TracePointContext) -> u32 {
    let cur = current();
    let me = config(config::SELF_TGID);
    if me == 0 || cur.tid != cur.tgid || u64::from(cur.tgid) != me {
        return 0;
    }
    if let Some(p) = CONFIG.get_ptr_mut(config::DAEMON_EXIT_NS) {
        unsafe { *p = bpf_ktime_get_ns() };
    }
    if let Some(p) = CONFIG.get_ptr_mut(config::SELF_TGID) {
        unsafe { *p = 0 };
    }
    0
}
