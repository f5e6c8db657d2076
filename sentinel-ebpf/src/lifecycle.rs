//! Process lifecycle: forks (watched children inherit being watched),
//! exits (their pending records and holds go), and io_uring, which submits
//! opens and connects without the syscalls the tracepoints watch: a
//! watched process that sets one up, or uses one it was handed, is killed.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext, EbpfContext,
};
use sentinel_common::{config, counter, kernel_action, kind, rule_id, ExitEvent, ForkEvent};

use crate::capture::{bump, fill_header, send_signal};
use crate::filter::{current, flag, is_watched, watched, SIGKILL};
use crate::kernel::read;
use crate::maps::{EVENTS, HELD, PARENTS, PENDING_EXEC, PENDING_OPEN, WATCHED_TASKS};

/// Reads a `T` at a daemon-given offset into a tracepoint record. The
/// record's address is taken as a plain number: older verifiers refuse
/// variable arithmetic on the context pointer.
#[inline(always)]
fn read_record<T: Copy + Default>(ctx: &TracePointContext, offset: usize) -> T {
    let record = ctx.as_ptr() as *const u8;
    let base: u64 = read(&record as *const *const u8 as u64);
    read::<T>(base + offset as u64)
}

#[tracepoint(category = "sched", name = "sched_process_fork")]
pub fn sched_process_fork(ctx: TracePointContext) -> u32 {
    let offset = crate::filter::config(config::FORK_CHILD_PID_OFFSET) as usize;
    if offset == 0 || offset > 64 {
        return 0;
    }
    let child: i32 = read_record(&ctx, offset);
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
    if !is_watched(&cur) {
        return 0;
    }
    let _ = WATCHED_TASKS.remove(&cur.tid);
    let _ = PENDING_EXEC.remove(&cur.tid);
    let _ = PENDING_OPEN.remove(&cur.tid);
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

#[inline(always)]
fn kill_io_uring() {
    if !flag(config::flags::DENY_IO_URING) {
        return;
    }
    let Some(cur) = watched() else { return };
    bump(counter::KERNEL_DECISIONS);
    send_signal(SIGKILL);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::IO_URING, &cur);
    ev.header.action = kernel_action::KILLED;
    ev.header.rule_id = rule_id::IO_URING;
    entry.submit(0);
}

#[tracepoint(category = "syscalls", name = "sys_enter_io_uring_setup")]
pub fn sys_enter_io_uring_setup(_ctx: TracePointContext) -> u32 {
    kill_io_uring();
    0
}

/// A ring set up by another process and handed over (SCM_RIGHTS, an
/// inherited descriptor) is used through io_uring_enter.
#[tracepoint(category = "syscalls", name = "sys_enter_io_uring_enter")]
pub fn sys_enter_io_uring_enter(_ctx: TracePointContext) -> u32 {
    kill_io_uring();
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_io_uring_register")]
pub fn sys_enter_io_uring_register(_ctx: TracePointContext) -> u32 {
    kill_io_uring();
    0
}
