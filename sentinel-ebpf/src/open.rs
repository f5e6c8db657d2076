//! open: what was asked (path, flags, dirfd) is recorded at syscall entry;
//! the decision is taken on the file the kernel opened. Where BPF LSM runs,
//! `file_open` decides before the open completes (EPERM, or a hold that
//! restarts the open once approved) and reports it; elsewhere the syscall
//! exit resolves the new descriptor's file and kills or stops the process
//! before it returns to user space, so it never reads a byte. Opens that
//! fail before a file exists (ENOENT, EACCES) are reported at exit with
//! what was typed.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_user},
    macros::{lsm, tracepoint},
    programs::{LsmContext, TracePointContext},
};
use sentinel_common::{
    approval_kind, config, counter, inode_scope, kernel_action, kind, object_flags, path_key_kind,
    OpenEvent, PendingOpen, RET_UNKNOWN,
};

use crate::act::{refuse, signal, ERESTARTNOINTR};
use crate::capture::{bump, emit, fill_header, read_user_str, send_signal};
use crate::decide::{file_approval, open_decision, open_writes};
use crate::filter::{flag, is_held, watched, watched_task, Current, SIGSTOP};
use crate::kernel::{read, Layout};
use crate::maps::{OPEN_SCRATCH, PENDING_OPEN};
use crate::resolve::{resolve, Lookup};

const AT_FDCWD: i32 = -100;
const O_WRONLY: u32 = 0o1;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_PATH: u32 = 0o10000000;
/// `__FMODE_EXEC` in `file->f_flags`: the open of a binary by execve.
const FMODE_EXEC_FLAG: u32 = 0x20;

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    let dfd: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let filename: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    let flags: u64 = unsafe { ctx.read_at(32) }.unwrap_or(0);
    on_open_enter(dfd as i32, filename, flags as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    let dfd: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let filename: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
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
    let filename: u64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let flags: u64 = unsafe { ctx.read_at(24) }.unwrap_or(0);
    on_open_enter(AT_FDCWD, filename, flags as u32);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_creat")]
pub fn sys_enter_creat(ctx: TracePointContext) -> u32 {
    let filename: u64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    on_open_enter(AT_FDCWD, filename, O_CREAT | O_WRONLY | O_TRUNC);
    0
}

/// `open_by_handle_at(mount_fd, handle, flags)`: no path at all; the
/// object is resolved at exit like every other open.
#[tracepoint(category = "syscalls", name = "sys_enter_open_by_handle_at")]
pub fn sys_enter_open_by_handle_at(ctx: TracePointContext) -> u32 {
    let dfd: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    let flags: u64 = unsafe { ctx.read_at(32) }.unwrap_or(0);
    on_open_enter(dfd as i32, 0, flags as u32);
    0
}

#[inline(always)]
fn on_open_enter(dfd: i32, filename: u64, flags: u32) {
    let Some(cur) = watched() else { return };
    let pending = PendingOpen {
        filename,
        flags,
        dfd,
        reported: 0,
        _pad: 0,
    };
    if PENDING_OPEN.insert(&cur.tid, &pending, 0).is_err() {
        bump(counter::PENDING_FULL);
    }
}

/// One program for the exit of every open syscall (the daemon attaches it
/// to each).
#[tracepoint(category = "syscalls", name = "sys_exit_open_any")]
pub fn sys_exit_open_any(ctx: TracePointContext) -> u32 {
    on_open_exit(&ctx);
    0
}

/// A fresh open record for the current thread.
#[inline(always)]
fn open_record(cur: &Current, p: &PendingOpen) -> Option<&'static mut OpenEvent> {
    let ev = unsafe { &mut *OPEN_SCRATCH.get_ptr_mut(0)? };
    fill_header(&mut ev.header, kind::OPEN, cur);
    ev.flags = p.flags;
    ev.dfd = p.dfd;
    ev.ret = RET_UNKNOWN;
    ev.obj = Default::default();
    ev.path[0] = 0;
    read_user_str(p.filename as *const u8, &mut ev.requested);
    Some(ev)
}

/// The open returned: report it and, where no LSM decided, decide on the
/// file it opened. The process has not returned to user space yet.
#[inline(always)]
fn on_open_exit(ctx: &TracePointContext) {
    let tid = bpf_get_current_pid_tgid() as u32;
    let Some(p) = (unsafe { PENDING_OPEN.get(&tid) }).copied() else {
        return;
    };
    let _ = PENDING_OPEN.remove(&tid);
    let Some(cur) = watched_task() else { return };
    let ret: i64 = unsafe { ctx.read_at(16) }.unwrap_or(0);
    if ret == -(ERESTARTNOINTR as i64) && is_held(&cur) {
        // file_open held it; it stops here and the open restarts once
        // it is resumed.
        send_signal(SIGSTOP);
    }
    if p.reported != 0 {
        return;
    }
    let Some(ev) = open_record(&cur, &p) else {
        return;
    };
    ev.ret = ret as i32;
    if ret >= 0 {
        let Some(l) = Layout::load() else {
            bump(counter::UNRESOLVED);
            emit(ev);
            return;
        };
        let writes = open_writes(p.flags);
        let (vfs, dentry) = l.file_path(l.file_of_fd(ret as i32));
        let lookup = Lookup {
            table: path_key_kind::OPEN,
            writes,
            leaf_scope: inode_scope::SELF,
        };
        let walk = resolve(&l, vfs, dentry, &mut ev.path, &lookup);
        ev.obj = walk.obj;
        if p.flags & O_PATH != 0 {
            // A handle that cannot read; a reopen through /proc/self/fd
            // is an open of its own and decided then.
            ev.obj.flags |= object_flags::O_PATH;
        } else if !flag(config::flags::LSM_ENFORCES) {
            let d = open_decision(&ev.path, &walk.hit, writes, true);
            ev.header.rule_id = d.rule_id;
            ev.header.action = signal(&cur, &d, &file_approval(approval_kind::OPEN, &ev.obj));
        }
    }
    emit(ev);
}

/// `file_open(struct file *file, int ret)`: decides on the file about to
/// be opened, and reports the open.
#[lsm(hook = "file_open")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(cur) = watched_task() else { return 0 };
    let Some(l) = Layout::load() else {
        bump(counter::UNRESOLVED);
        return 0;
    };
    let file: u64 = crate::kernel::lsm_arg(&ctx, 0);
    let f_flags: u32 = read(file + l.file_flags);
    if f_flags & FMODE_EXEC_FLAG != 0 {
        // execve opening the binary: bprm_check_security decides.
        return 0;
    }
    let pending = PENDING_OPEN.get_ptr_mut(&cur.tid);
    let p = match pending {
        Some(p) => unsafe { *p },
        None => PendingOpen {
            filename: 0,
            flags: f_flags,
            dfd: AT_FDCWD,
            reported: 0,
            _pad: 0,
        },
    };
    let Some(ev) = open_record(&cur, &p) else {
        return 0;
    };
    let writes = open_writes(p.flags);
    let (vfs, dentry) = l.file_path(file);
    let lookup = Lookup {
        table: path_key_kind::OPEN,
        writes,
        leaf_scope: inode_scope::SELF,
    };
    let walk = resolve(&l, vfs, dentry, &mut ev.path, &lookup);
    ev.obj = walk.obj;
    let d = open_decision(&ev.path, &walk.hit, writes, true);
    let (ret, action) = refuse(&cur, &d, &file_approval(approval_kind::OPEN, &ev.obj));
    if action != kernel_action::NONE {
        ev.header.action = action;
        ev.header.rule_id = d.rule_id;
        ev.ret = ret;
    }
    if let Some(pending) = pending {
        unsafe { (*pending).reported = 1 };
    }
    emit(ev);
    ret
}
