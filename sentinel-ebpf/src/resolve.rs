//! Resolving the object a call is about: the path of a (vfsmount, dentry)
//! pair rebuilt from the kernel's own dentries and mounts (after symlinks,
//! `..`, relative paths, dirfds and `/proc/self/*` were followed), the
//! object's identity (device, inode), and whether it or one of its
//! ancestors is a protected object (`INODE_RULES`).
//!
//! The walk is bounded (`WALK_DEPTH` names and mount crossings, a path of
//! `RPATH_LEN` bytes); a deeper or longer path is reported truncated, and
//! its first bytes are still exact, so prefix rules still match. Its state
//! lives in map memory (`WalkNames`) so that it verifies in linear time.

use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::helpers::{
    bpf_probe_read_user_str_bytes,
    generated::{bpf_loop, bpf_probe_read_kernel_str},
};
use sentinel_common::{
    inode_scope, object_flags, FileObject, InodeKey, InodeRule, RPATH_LEN, WALK_DEPTH,
};

use crate::kernel::{ptr, read, Layout};
use crate::maps::{WalkNames, INODE_RULES, NAME_SLOTS, WALK_SCRATCH};

const AT_FDCWD: i32 = -100;
/// The longest name a dentry has (NAME_MAX) plus its NUL.
const NAME_BUF: usize = 256;
/// Where the last name may start so that it fits with its NUL.
const LAST_NAME_AT: usize = RPATH_LEN - NAME_BUF - 1;
/// Indices into a path buffer are masked with this, so the compiler (and
/// the verifier) see them in bounds without a panicking check.
const MASK: usize = RPATH_LEN - 1;
const _: () = assert!(RPATH_LEN.is_power_of_two());

/// What a walk found.
#[derive(Clone, Copy, Default)]
pub struct Walk {
    pub obj: FileObject,
    /// Bytes of path written (without the NUL).
    pub len: usize,
    /// The protected-object entry that matched, nearest first
    /// (`decision == 0`: none).
    pub hit: InodeRule,
}

/// Which protected-object entries a walk looks for.
#[derive(Clone, Copy)]
pub struct Lookup {
    /// `path_key_kind::EXEC` or `OPEN`; 0 looks for nothing.
    pub table: u8,
    /// Whether the call writes (entries marked write-only match only then).
    pub writes: bool,
    /// The scope the first dentry is checked with: `SELF` when it is the
    /// object, `SUBTREE` when it is the directory a new name goes in.
    pub leaf_scope: u8,
}

macro_rules! get {
    ($field:expr) => {{
        #[allow(unused_unsafe)]
        let v = unsafe { read_volatile(&raw const $field) };
        v
    }};
}
macro_rules! set {
    ($field:expr, $value:expr) => {{
        #[allow(unused_unsafe)]
        unsafe {
            write_volatile(&raw mut $field, $value)
        }
    }};
}

#[inline(always)]
fn inode_hit(lookup: &Lookup, ino: u64, dev: u32, scope: u8) -> Option<InodeRule> {
    if ino == 0 || lookup.table == 0 || scope == 0 {
        return None;
    }
    let key = InodeKey {
        ino,
        dev,
        table: lookup.table,
        _pad: [0; 3],
    };
    let rule = unsafe { INODE_RULES.get(&key) }.copied()?;
    if rule.scope & scope != 0 && (rule.write_only == 0 || lookup.writes) {
        Some(rule)
    } else {
        None
    }
}

/// Writes the path of `(vfsmount, dentry)` into `out` and checks it and its
/// ancestors against the protected objects.
#[inline(always)]
pub fn resolve(
    l: &Layout,
    vfsmount: u64,
    dentry: u64,
    out: &mut [u8; RPATH_LEN],
    lookup: &Lookup,
) -> Walk {
    let mut walk = Walk::default();
    out[0] = 0;
    let Some(st) = WALK_SCRATCH.get_ptr_mut(0) else {
        return walk;
    };
    let st: &mut WalkNames = unsafe { &mut *st };
    if vfsmount == 0 || dentry == 0 {
        return walk;
    }
    let inode = ptr(dentry + l.dentry_inode);
    let dev = l.dev_of_mount(vfsmount);
    if inode != 0 {
        walk.obj.ino = read(inode + l.inode_ino);
        walk.obj.dev = dev;
        let nlink: u32 = read(inode + l.inode_nlink);
        if nlink == 0 {
            walk.obj.flags |= object_flags::UNLINKED;
        }
    }
    set!(st.n, 0);
    set!(st.done, 0);
    set!(st.dentry, dentry);
    set!(st.mount, vfsmount - l.mount_mnt);
    set!(st.mnt_root, ptr(vfsmount + l.vfsmount_root));
    set!(st.dev, u64::from(dev));
    set!(st.hit, InodeRule::default());

    let ctx = WalkCtx {
        lookup: *lookup,
        out: out.as_mut_ptr(),
    };
    let ctx_ptr = &ctx as *const WalkCtx as *mut core::ffi::c_void;
    // Up: the names from the object to the root, and the identity checks;
    // then down: "/name" for each, root first. bpf_loop verifies each step
    // once, whatever the bound.
    unsafe {
        bpf_loop(WALK_DEPTH as u32, walk_up as *mut _, ctx_ptr, 0);
        set!(st.pos, 0);
        bpf_loop(WALK_DEPTH as u32, walk_down as *mut _, ctx_ptr, 0);
    }
    let mut pos = get!(st.pos) as usize;
    if pos == 0 {
        out[0] = b'/';
        pos = 1;
    }
    if pos < RPATH_LEN {
        out[pos & MASK] = 0;
    }
    walk.len = pos.min(RPATH_LEN - 1);
    walk.hit = get!(st.hit);
    walk.obj.flags |= object_flags::RESOLVED;
    if get!(st.done) == 0 {
        walk.obj.flags |= object_flags::TRUNCATED;
    }
    walk
}

/// What the walk steps need besides the scratch state.
#[repr(C)]
struct WalkCtx {
    lookup: Lookup,
    out: *mut u8,
}

/// One step up: checks the dentry's identity, records its name and moves
/// to its parent (or across a mount). Returns 1 to stop.
extern "C" fn walk_up(_index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let ctx = unsafe { &*(ctx as *const WalkCtx) };
    let (Some(l), Some(st)) = (Layout::load(), WALK_SCRATCH.get_ptr_mut(0)) else {
        return 1;
    };
    let st: &mut WalkNames = unsafe { &mut *st };
    let d: u64 = get!(st.dentry);
    let n: u64 = get!(st.n);
    if get!(st.hit.decision) == 0 {
        let scope = if n == 0 {
            ctx.lookup.leaf_scope
        } else {
            inode_scope::SUBTREE
        };
        if let Some(rule) = inode_hit(&ctx.lookup, l.ino_of(d), get!(st.dev) as u32, scope) {
            set!(st.hit, rule);
        }
    }
    let mount: u64 = get!(st.mount);
    if d == get!(st.mnt_root) {
        let parent = ptr(mount + l.mount_parent);
        if parent == mount || parent == 0 {
            set!(st.done, 1);
            return 1;
        }
        let vfs = parent + l.mount_mnt;
        set!(st.dentry, ptr(mount + l.mount_mountpoint));
        set!(st.mount, parent);
        set!(st.mnt_root, ptr(vfs + l.vfsmount_root));
        set!(st.dev, u64::from(l.dev_of_mount(vfs)));
        return 0;
    }
    let parent = ptr(d + l.dentry_parent);
    if n as usize >= WALK_DEPTH || parent == 0 {
        return 1;
    }
    // Masked where the verifier can see it (black_box keeps the compiler
    // from dropping a mask it can prove redundant).
    let k = core::hint::black_box(n as usize) & (NAME_SLOTS - 1);
    set!(st.name[k], ptr(d + l.dentry_name_ptr));
    set!(st.len[k], read::<u32>(d + l.dentry_name_len));
    set!(st.n, n + 1);
    if parent == d {
        // A dentry of its own, mounted nowhere (memfd, a disconnected
        // handle): its name is the whole path, `/memfd:NAME`.
        set!(st.done, 1);
        return 1;
    }
    set!(st.dentry, parent);
    0
}

/// One step down: writes "/" and the next name. Returns 1 to stop.
extern "C" fn walk_down(index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let ctx = unsafe { &*(ctx as *const WalkCtx) };
    let Some(st) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let st: &mut WalkNames = unsafe { &mut *st };
    let j = index as usize;
    let n = get!(st.n) as usize;
    if j >= n || n > WALK_DEPTH {
        return 1;
    }
    let k = core::hint::black_box(n - 1 - j) & (NAME_SLOTS - 1);
    let pos = get!(st.pos) as usize;
    if pos > LAST_NAME_AT {
        set!(st.done, 0);
        return 1;
    }
    let out = ctx.out;
    unsafe { *out.add(pos & MASK) = b'/' };
    let size = (get!(st.len[k]) & 0xff) + 1;
    let copied = unsafe {
        bpf_probe_read_kernel_str(
            out.add((pos + 1) & MASK) as *mut _,
            size,
            get!(st.name[k]) as *const _,
        )
    };
    if copied <= 0 {
        set!(st.done, 0);
        return 1;
    }
    let copied = (copied as usize).min(NAME_BUF);
    set!(st.pos, (pos + copied) as u64);
    0
}

/// Resolves a name as a syscall would find it, without following it: the
/// directory (`dfd`, the working directory, or none for an absolute path)
/// is resolved by `resolve`, the name as typed is appended. Returns the
/// walk of the directory (its identity checks apply to a name directly in
/// it) and whether the result is plain — no `.`/`..` components, no empty
/// ones — so that it can be matched as a path.
#[inline(always)]
pub fn compose(
    l: &Layout,
    dfd: i32,
    name: *const u8,
    out: &mut [u8; RPATH_LEN],
    lookup: &Lookup,
) -> (Walk, bool) {
    let mut walk = Walk::default();
    out[0] = 0;
    if name.is_null() {
        return (walk, false);
    }
    let first: u8 = unsafe { aya_ebpf::helpers::bpf_probe_read_user(name) }.unwrap_or(0);
    let mut pos = 0usize;
    if first != b'/' {
        let (vfs, dentry) = if dfd == AT_FDCWD {
            l.cwd()
        } else {
            l.file_path(l.file_of_fd(dfd))
        };
        let dir = Lookup {
            leaf_scope: inode_scope::SUBTREE,
            ..*lookup
        };
        walk = resolve(l, vfs, dentry, out, &dir);
        walk.obj = FileObject::default();
        pos = walk.len;
        if pos == 0 || pos > LAST_NAME_AT {
            return (walk, false);
        }
        if out[(pos - 1) & MASK] != b'/' {
            out[pos & MASK] = b'/';
            pos += 1;
        }
    }
    if pos > LAST_NAME_AT {
        return (walk, false);
    }
    let tail =
        unsafe { core::slice::from_raw_parts_mut(out.as_mut_ptr().add(pos & MASK), NAME_BUF) };
    let copied = match unsafe { bpf_probe_read_user_str_bytes(name, tail) } {
        Ok(s) => s.len(),
        Err(_) => return (walk, false),
    };
    walk.len = (pos + copied.min(NAME_BUF - 1)) & MASK;
    walk.obj.flags = object_flags::COMPOSED;
    (walk, is_plain(out))
}

/// An absolute path with no `.`, `..` or empty components and no
/// trailing slash.
#[inline(always)]
fn is_plain(path: &mut [u8; RPATH_LEN]) -> bool {
    if path[0] != b'/' {
        return false;
    }
    let Some(st) = WALK_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let st: &mut WalkNames = unsafe { &mut *st };
    set!(st.seg_len, 0);
    set!(st.seg_dots, 0);
    set!(st.done, 0);
    let ctx = WalkCtx {
        lookup: Lookup {
            table: 0,
            writes: false,
            leaf_scope: 0,
        },
        out: path.as_mut_ptr(),
    };
    unsafe {
        bpf_loop(
            (RPATH_LEN - 1) as u32,
            plain_step as *mut _,
            &ctx as *const WalkCtx as *mut core::ffi::c_void,
            0,
        )
    };
    get!(st.done) == 1
}

/// One byte of `is_plain` (index + 1 into the path). Returns 1 to stop.
extern "C" fn plain_step(index: u32, ctx: *mut core::ffi::c_void) -> i64 {
    let ctx = unsafe { &*(ctx as *const WalkCtx) };
    let Some(st) = WALK_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    let st: &mut WalkNames = unsafe { &mut *st };
    let i = (index as usize + 1) & MASK;
    let c = unsafe { *ctx.out.add(i) };
    let seg_len = get!(st.seg_len);
    let seg_dots = get!(st.seg_dots);
    if c == 0 || c == b'/' {
        if seg_len == 0 || (seg_len == seg_dots && seg_len <= 2) {
            // An empty, "." or ".." component, or a trailing slash; "/"
            // alone is plain.
            set!(st.done, u64::from(i == 1 && c == 0));
            return 1;
        }
        if c == 0 {
            set!(st.done, 1);
            return 1;
        }
        set!(st.seg_len, 0);
        set!(st.seg_dots, 0);
    } else {
        set!(st.seg_len, seg_len + 1);
        if c == b'.' {
            set!(st.seg_dots, seg_dots + 1);
        }
    }
    0
}
