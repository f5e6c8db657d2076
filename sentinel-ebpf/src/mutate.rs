//! Changes to the file system — rename, link, unlink, rmdir, truncate,
//! chmod, chown, mkdir, symlink, mknod — of a protected object or under a
//! protected directory. They are decided as writes to that path.
//!
//! Where BPF LSM runs, the `path_*` hooks see the objects (the dentries the
//! kernel looked up, and their mounts) and refuse with EPERM. Elsewhere the
//! syscall-entry tracepoints see only strings: the directory a name is
//! relative to is resolved from the kernel's objects, the name as typed is
//! appended, and a plain result is matched as a path; the process is killed
//! before it returns to user space, but the change itself has happened
//! (the daemon reports it, and puts back what it can).

use aya_ebpf::{
    macros::{lsm, tracepoint},
    programs::{LsmContext, TracePointContext},
};
use sentinel_common::{
    config, counter, inode_scope, kernel_action, kind, mutate_op, path_key_kind, MutateEvent,
    RET_UNKNOWN,
};

use crate::act::{refuse, signal};
use crate::capture::{bump, emit, fill_header, read_user_str};
use crate::decide::{open_decision, Decided};
use crate::filter::{flag, watched, watched_task, Current};
use crate::kernel::Layout;
use crate::maps::{CHANGE_SYSCALLS, MUTATE_SCRATCH};
use crate::resolve::{compose, resolve, Lookup, Walk};

const AT_FDCWD: i32 = -100;
const AT_REMOVEDIR: u64 = 0x200;
/// An approved change lets the process's next change through once.
const CHANGE_APPROVAL: sentinel_common::ApprovalKey = sentinel_common::ApprovalKey {
    pid: 0,
    kind: sentinel_common::approval_kind::CHANGE,
    id: 0,
    dev: 0,
    _pad: 0,
    addr: [0; 16],
};

#[inline(always)]
fn lookup(leaf_scope: u8) -> Lookup {
    Lookup {
        table: path_key_kind::OPEN,
        writes: true,
        leaf_scope,
    }
}

#[inline(always)]
fn mutate_record(cur: &Current, op: u32, arg: u32) -> Option<&'static mut MutateEvent> {
    let ev = unsafe { &mut *MUTATE_SCRATCH.get_ptr_mut(0)? };
    fill_header(&mut ev.header, kind::MUTATE, cur);
    ev.op = op;
    ev.arg = arg;
    ev.ret = RET_UNKNOWN;
    ev.obj = Default::default();
    ev.obj2 = Default::default();
    ev.path[0] = 0;
    ev.path2[0] = 0;
    ev.requested[0] = 0;
    ev.requested2[0] = 0;
    Some(ev)
}

/// The stricter of two decisions (deny over ask over none).
#[inline(always)]
fn stricter(a: Decided, b: Decided) -> Decided {
    if a.decision == sentinel_common::decision::DENY || !b.is_some() {
        a
    } else {
        b
    }
}

// ---------------------------------------------------------------------------
// Syscall-entry tracepoints (no BPF LSM).

/// A name-based change: `dfd`/`name` is the name changed or created,
/// `dfd2`/`name2` (rename, link) the source.
#[inline(always)]
fn on_change(op: u32, arg: u32, dfd: i32, name: u64, dfd2: i32, name2: u64, source_changes: bool) {
    let Some(cur) = watched() else { return };
    if flag(config::flags::LSM_ENFORCES) {
        return;
    }
    let Some(ev) = mutate_record(&cur, op, arg) else {
        return;
    };
    read_user_str(name as *const u8, &mut ev.requested);
    if name2 != 0 {
        read_user_str(name2 as *const u8, &mut ev.requested2);
    }
    let Some(l) = Layout::load() else {
        bump(counter::UNRESOLVED);
        emit(ev);
        return;
    };
    let (walk, plain) = compose(
        &l,
        dfd,
        name as *const u8,
        &mut ev.path,
        &lookup(inode_scope::SUBTREE),
    );
    ev.obj = walk.obj;
    let mut d = open_decision(&ev.path, &walk.hit, true, plain);
    if name2 != 0 && source_changes {
        let (walk2, plain2) = compose(
            &l,
            dfd2,
            name2 as *const u8,
            &mut ev.path2,
            &lookup(inode_scope::SUBTREE),
        );
        ev.obj2 = walk2.obj;
        d = stricter(d, open_decision(&ev.path2, &walk2.hit, true, plain2));
    }
    ev.header.rule_id = d.rule_id;
    ev.header.action = signal(&cur, &d, &CHANGE_APPROVAL);
    emit(ev);
}

/// A change through a descriptor (ftruncate, fchmod, fchown): the object
/// is the descriptor's file.
#[inline(always)]
fn on_fd_change(op: u32, arg: u32, fd: i32) {
    let Some(cur) = watched() else { return };
    if flag(config::flags::LSM_ENFORCES) {
        return;
    }
    let Some(ev) = mutate_record(&cur, op, arg) else {
        return;
    };
    let Some(l) = Layout::load() else {
        bump(counter::UNRESOLVED);
        emit(ev);
        return;
    };
    let (vfs, dentry) = l.file_path(l.file_of_fd(fd));
    let walk = resolve(&l, vfs, dentry, &mut ev.path, &lookup(inode_scope::SELF));
    ev.obj = walk.obj;
    let d = open_decision(&ev.path, &walk.hit, true, true);
    ev.header.rule_id = d.rule_id;
    ev.header.action = signal(&cur, &d, &CHANGE_APPROVAL);
    emit(ev);
}

/// Argument `i` of a syscall tracepoint record (-1: absent).
#[inline(always)]
fn arg(ctx: &TracePointContext, i: i8) -> Option<u64> {
    if !(0..6).contains(&i) {
        return None;
    }
    unsafe { ctx.read_at(16 + 8 * i as usize) }.ok()
}

/// One program for every file-system-changing syscall: the daemon attaches
/// it to each one's entry tracepoint and tells it, by syscall number, where
/// the arguments are (`CHANGE_SYSCALLS`).
#[tracepoint(category = "syscalls", name = "sys_enter_change")]
pub fn sys_enter_change(ctx: TracePointContext) -> u32 {
    let nr: i32 = unsafe { ctx.read_at(8) }.unwrap_or(-1);
    let Some(spec) = (unsafe { CHANGE_SYSCALLS.get(&(nr as u32)) }).copied() else {
        return 0;
    };
    let value = arg(&ctx, spec.arg).unwrap_or(0) as u32;
    if let Some(fd) = arg(&ctx, spec.fd) {
        on_fd_change(u32::from(spec.op), value, fd as i32);
        return 0;
    }
    let mut op = u32::from(spec.op);
    if let Some(flags) = arg(&ctx, spec.rmdir_flags) {
        if flags & AT_REMOVEDIR != 0 {
            op = mutate_op::RMDIR;
        }
    }
    let dfd = arg(&ctx, spec.dfd).map_or(AT_FDCWD, |d| d as i32);
    let dfd2 = arg(&ctx, spec.dfd2).map_or(AT_FDCWD, |d| d as i32);
    on_change(
        op,
        value,
        dfd,
        arg(&ctx, spec.name).unwrap_or(0),
        dfd2,
        arg(&ctx, spec.name2).unwrap_or(0),
        op == mutate_op::RENAME,
    );
    0
}

// ---------------------------------------------------------------------------
// BPF LSM: the kernel's own objects, refused with EPERM.

/// Decides a change of `(vfsmount, dentry)` (the changed object, or a new
/// name in its directory) and, when given, of a second one; reports it.
#[inline(always)]
fn lsm_change(op: u32, arg: u32, vfs: u64, dentry: u64, vfs2: u64, dentry2: u64) -> i32 {
    let Some(cur) = watched_task() else { return 0 };
    let Some(l) = Layout::load() else {
        bump(counter::UNRESOLVED);
        return 0;
    };
    let Some(ev) = mutate_record(&cur, op, arg) else {
        return 0;
    };
    let walk: Walk = resolve(&l, vfs, dentry, &mut ev.path, &lookup(inode_scope::SELF));
    ev.obj = walk.obj;
    let mut d = open_decision(&ev.path, &walk.hit, true, true);
    if dentry2 != 0 {
        let walk2 = resolve(&l, vfs2, dentry2, &mut ev.path2, &lookup(inode_scope::SELF));
        ev.obj2 = walk2.obj;
        d = stricter(d, open_decision(&ev.path2, &walk2.hit, true, true));
    }
    let (ret, action) = refuse(&cur, &d, &CHANGE_APPROVAL);
    if action != kernel_action::NONE {
        ev.header.action = action;
        ev.header.rule_id = d.rule_id;
        ev.ret = ret;
    }
    emit(ev);
    ret
}

/// `(vfsmount, dentry)` of a `struct path *` argument.
#[inline(always)]
fn path_arg(path: u64) -> (u64, u64) {
    match Layout::load() {
        Some(l) => l.path_at(path),
        None => (0, 0),
    }
}

/// The vfsmount of a `struct path *` argument.
#[inline(always)]
fn mnt_of(path: u64) -> u64 {
    path_arg(path).0
}

/// `path_unlink(const struct path *dir, struct dentry *dentry)`.
#[lsm(hook = "path_unlink")]
pub fn path_unlink(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return prev;
    }
    lsm_change(
        mutate_op::UNLINK,
        0,
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
        0,
        0,
    )
}

/// `path_rmdir(const struct path *dir, struct dentry *dentry)`.
#[lsm(hook = "path_rmdir")]
pub fn path_rmdir(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return prev;
    }
    lsm_change(
        mutate_op::RMDIR,
        0,
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
        0,
        0,
    )
}

/// `path_rename(const struct path *old_dir, struct dentry *old_dentry,
/// const struct path *new_dir, struct dentry *new_dentry, unsigned int
/// flags)`.
#[lsm(hook = "path_rename")]
pub fn path_rename(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(5);
    if prev != 0 {
        return prev;
    }
    let flags: u32 = ctx.arg(4);
    lsm_change(
        mutate_op::RENAME,
        flags,
        mnt_of(crate::kernel::lsm_arg(&ctx, 2)),
        crate::kernel::lsm_arg(&ctx, 3),
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
    )
}

/// `path_link(struct dentry *old_dentry, const struct path *new_dir,
/// struct dentry *new_dentry)`: both names are the same mount.
#[lsm(hook = "path_link")]
pub fn path_link(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let mnt = mnt_of(crate::kernel::lsm_arg(&ctx, 1));
    lsm_change(
        mutate_op::LINK,
        0,
        mnt,
        crate::kernel::lsm_arg(&ctx, 2),
        mnt,
        crate::kernel::lsm_arg(&ctx, 0),
    )
}

/// `path_truncate(const struct path *path)`.
#[lsm(hook = "path_truncate")]
pub fn path_truncate(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let (vfs, dentry) = path_arg(crate::kernel::lsm_arg(&ctx, 0));
    lsm_change(mutate_op::TRUNCATE, 0, vfs, dentry, 0, 0)
}

/// `path_chmod(const struct path *path, umode_t mode)`.
#[lsm(hook = "path_chmod")]
pub fn path_chmod(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return prev;
    }
    let mode: u32 = ctx.arg(1);
    let (vfs, dentry) = path_arg(crate::kernel::lsm_arg(&ctx, 0));
    lsm_change(mutate_op::CHMOD, mode & 0xffff, vfs, dentry, 0, 0)
}

/// `path_chown(const struct path *path, kuid_t uid, kgid_t gid)`.
#[lsm(hook = "path_chown")]
pub fn path_chown(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let uid: u32 = ctx.arg(1);
    let (vfs, dentry) = path_arg(crate::kernel::lsm_arg(&ctx, 0));
    lsm_change(mutate_op::CHOWN, uid, vfs, dentry, 0, 0)
}

/// `path_mkdir(const struct path *dir, struct dentry *dentry, umode_t
/// mode)`.
#[lsm(hook = "path_mkdir")]
pub fn path_mkdir(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let mode: u32 = ctx.arg(2);
    lsm_change(
        mutate_op::MKDIR,
        mode & 0xffff,
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
        0,
        0,
    )
}

/// `path_symlink(const struct path *dir, struct dentry *dentry, const char
/// *old_name)`.
#[lsm(hook = "path_symlink")]
pub fn path_symlink(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    lsm_change(
        mutate_op::SYMLINK,
        0,
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
        0,
        0,
    )
}

/// `path_mknod(const struct path *dir, struct dentry *dentry, umode_t mode,
/// unsigned int dev)`.
#[lsm(hook = "path_mknod")]
pub fn path_mknod(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return prev;
    }
    let mode: u32 = ctx.arg(2);
    lsm_change(
        mutate_op::MKNOD,
        mode & 0xffff,
        mnt_of(crate::kernel::lsm_arg(&ctx, 0)),
        crate::kernel::lsm_arg(&ctx, 1),
        0,
        0,
    )
}
