//! exec: argv is read at syscall entry (from the old image). The decision
//! is taken on the file the kernel opened to run: in `bprm_check_security`
//! where BPF LSM runs (once per stage, so a script and its interpreter are
//! both decided, and a refusal is EPERM), else in `sched_process_exec`,
//! after the point of no return but before the new image runs an
//! instruction (SIGKILL or SIGSTOP).

use aya_ebpf::{
    helpers::{bpf_get_current_comm, generated::bpf_probe_read_kernel_str},
    macros::{lsm, raw_tracepoint, tracepoint},
    programs::{LsmContext, RawTracePointContext, TracePointContext},
};
use sentinel_common::{
    approval_kind, config, counter, exec_flags, inode_scope, kind, path_key_kind, ExecEvent,
    PATH_LEN,
};

use crate::act::{refuse, signal};
use crate::capture::{bump, emit, fill_header, read_argv};
use crate::decide::{exec_decision, file_approval};
use crate::filter::{flag, watched, watched_task, Current};
use crate::kernel::{ptr, Layout};
use crate::maps::{EXEC_SCRATCH, PARENTS, PENDING_EXEC, WATCHED_TASKS};
use crate::resolve::{resolve, Lookup};

const LOOKUP: Lookup = Lookup {
    table: path_key_kind::EXEC,
    writes: false,
    leaf_scope: inode_scope::SELF,
};

#[tracepoint(category = "syscalls", name = "sys_enter_execve")]
pub fn sys_enter_execve(ctx: TracePointContext) -> u32 {
    let argv: *const *const u8 = unsafe { ctx.read_at(24) }.unwrap_or(core::ptr::null());
    on_exec_enter(argv);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_execveat")]
pub fn sys_enter_execveat(ctx: TracePointContext) -> u32 {
    let argv: *const *const u8 = unsafe { ctx.read_at(32) }.unwrap_or(core::ptr::null());
    on_exec_enter(argv);
    0
}

#[inline(always)]
fn on_exec_enter(argv: *const *const u8) {
    let Some(cur) = watched() else { return };
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let ev = unsafe { &mut *ev };
    fill_header(&mut ev.header, kind::EXEC, &cur);
    ev.flags = 0;
    ev.argc = 0;
    ev.obj = Default::default();
    ev.path[0] = 0;
    ev.filename[0] = 0;
    read_argv(ev, argv);
    // A failed exec leaves a stale entry that the thread's next exec or
    // its exit replaces or removes.
    if PENDING_EXEC.insert(&cur.tid, &*ev, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
}

/// The record of the exec `key` (the thread that called execve) started,
/// or a fresh one without argv.
#[inline(always)]
fn exec_record(key: u32, cur: &Current) -> Option<&'static mut ExecEvent> {
    if let Some(ev) = PENDING_EXEC.get_ptr_mut(&key) {
        return Some(unsafe { &mut *ev });
    }
    let ev = unsafe { &mut *EXEC_SCRATCH.get_ptr_mut(0)? };
    fill_header(&mut ev.header, kind::EXEC, cur);
    ev.flags = 0;
    ev.argc = 0;
    Some(ev)
}

/// Resolves the binary of `bprm` into the record; false when the layout
/// is missing.
#[inline(always)]
fn resolve_binary(l: &Layout, bprm: u64, ev: &mut ExecEvent) -> sentinel_common::InodeRule {
    let filename = ptr(bprm + l.bprm_filename);
    if filename == 0
        || unsafe {
            bpf_probe_read_kernel_str(
                ev.filename.as_mut_ptr() as *mut _,
                PATH_LEN as u32,
                filename as *const _,
            )
        } < 0
    {
        ev.filename[0] = 0;
    }
    let (vfs, dentry) = l.file_path(ptr(bprm + l.bprm_file));
    let walk = resolve(l, vfs, dentry, &mut ev.path, &LOOKUP);
    ev.obj = walk.obj;
    walk.hit
}

/// `bprm_check_security(struct linux_binprm *bprm, int ret)`.
#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(cur) = watched_task() else { return 0 };
    let Some(l) = Layout::load() else {
        bump(counter::UNRESOLVED);
        return 0;
    };
    let Some(ev) = exec_record(cur.tid, &cur) else {
        return 0;
    };
    let bprm: u64 = crate::kernel::lsm_arg(&ctx, 0);
    let hit = resolve_binary(&l, bprm, ev);
    let d = exec_decision(&ev.path, &hit);
    let (ret, action) = refuse(&cur, &d, &file_approval(approval_kind::EXEC, &ev.obj));
    if ret != 0 {
        // The exec does not happen: report it now.
        ev.header.action = action;
        ev.header.rule_id = d.rule_id;
        ev.flags |= exec_flags::AT_ENTRY;
        emit(ev);
    }
    ret
}

/// `sched_process_exec(struct task_struct *p, pid_t old_pid, struct
/// linux_binprm *bprm)`: the exec succeeded; the new image has not run an
/// instruction yet.
#[raw_tracepoint(tracepoint = "sched_process_exec")]
pub fn sched_process_exec(ctx: RawTracePointContext) -> i32 {
    let Some(cur) = watched() else { return 0 };
    let old_pid: i32 = ctx.arg(1);
    let bprm: u64 = ctx.arg(2);
    let key = old_pid as u32;
    let Some(ev) = exec_record(key, &cur) else {
        return 0;
    };
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
    match Layout::load() {
        Some(l) => {
            let hit = resolve_binary(&l, bprm, ev);
            // Where BPF LSM runs, bprm_check_security decided already.
            if !flag(config::flags::LSM_ENFORCES) {
                let d = exec_decision(&ev.path, &hit);
                ev.header.rule_id = d.rule_id;
                ev.header.action = signal(&cur, &d, &file_approval(approval_kind::EXEC, &ev.obj));
            }
        }
        None => {
            bump(counter::UNRESOLVED);
            ev.path[0] = 0;
        }
    }
    emit(ev);
    let _ = PENDING_EXEC.remove(&key);
    0
}
