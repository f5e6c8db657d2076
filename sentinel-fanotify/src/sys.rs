//! The crate's only `unsafe` code: thin wrappers over fanotify(7), file
//! handles and the few other system calls the guard makes. Every wrapper
//! returns `io::Result`, takes borrowed descriptors and hands back owned
//! ones, so the rest of the crate is safe Rust.
//!
//! Constants come from `libc` where it has them; the ones it lacks are
//! defined here with their values from the kernel's
//! `include/uapi/linux/fanotify.h` (Linux 6.14 and later).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{
    FAN_ATTRIB, FAN_CLASS_NOTIF, FAN_CLASS_PRE_CONTENT, FAN_CLOEXEC, FAN_CREATE, FAN_DELETE,
    FAN_DELETE_SELF, FAN_EVENT_INFO_TYPE_DFID, FAN_EVENT_INFO_TYPE_DFID_NAME,
    FAN_EVENT_INFO_TYPE_FID, FAN_EVENT_ON_CHILD, FAN_MARK_ADD, FAN_MARK_FLUSH, FAN_MARK_REMOVE,
    FAN_MODIFY, FAN_MOVED_FROM, FAN_MOVED_TO, FAN_MOVE_SELF, FAN_NONBLOCK, FAN_ONDIR,
    FAN_OPEN_EXEC_PERM, FAN_OPEN_PERM, FAN_Q_OVERFLOW, FAN_REPORT_DFID_NAME, FAN_REPORT_FID,
    FAN_REPORT_TARGET_FID, FAN_REPORT_TID, FAN_UNLIMITED_MARKS, FAN_UNLIMITED_QUEUE,
};

/// `FAN_PRE_ACCESS` (uapi fanotify.h, Linux 6.14): a permission event
/// before a range of a file is read or written, or the file truncated.
/// Older kernels refuse it with EINVAL.
pub const FAN_PRE_ACCESS: u64 = 0x0010_0000;
/// `FAN_EVENT_INFO_TYPE_RANGE` (uapi fanotify.h, Linux 6.14): the info
/// record carrying the offset and length of a `FAN_PRE_ACCESS` event.
pub const FAN_EVENT_INFO_TYPE_RANGE: u8 = 6;
/// `FANOTIFY_METADATA_VERSION` (uapi fanotify.h): the only event layout
/// this crate parses.
pub const FANOTIFY_METADATA_VERSION: u8 = 3;
/// `FAN_ALLOW` / `FAN_DENY` (uapi fanotify.h): the two answers.
pub const FAN_ALLOW: u32 = libc::FAN_ALLOW;
pub const FAN_DENY: u32 = libc::FAN_DENY;

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// fanotify_init(2).
pub fn fanotify_init(flags: u32, event_f_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments; a non-negative result is a new
    // descriptor that nothing else owns.
    let fd = check(unsafe { libc::fanotify_init(flags, event_f_flags) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fanotify_mark(2) on the object `object` refers to, whatever name it
/// is reached by now. The kernel refuses an `O_PATH` descriptor as
/// `dirfd` with a NULL pathname (it looks descriptors up with `fdget`, which
/// skips them), so the mark goes through the descriptor's `/proc/self/fd`
/// magic link, which resolves to exactly the object the descriptor holds.
pub fn mark_fd(group: BorrowedFd, flags: u32, mask: u64, object: BorrowedFd) -> io::Result<()> {
    let link = format!("/proc/self/fd/{}", object.as_raw_fd());
    mark_path(group, flags, mask, Path::new(&link))
}

/// fanotify_mark(2) by path (used for the probes and FAN_MARK_FLUSH).
pub fn mark_path(group: BorrowedFd, flags: u32, mask: u64, path: &Path) -> io::Result<()> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    check(unsafe {
        libc::fanotify_mark(group.as_raw_fd(), flags, mask, libc::AT_FDCWD, c.as_ptr())
    })?;
    Ok(())
}

/// open(2) with `O_PATH | O_CLOEXEC | extra`: a handle on an object that
/// neither reads it nor triggers fanotify open events.
pub fn open_path(path: &Path, extra: libc::c_int) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` outlives the call; the result is a new descriptor.
    let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | extra) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// open(2) of a directory for reading, as the mount descriptor
/// open_by_handle_at(2) wants (it refuses `O_PATH` ones).
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` outlives the call; the result is a new descriptor.
    let fd = check(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// fstat(2).
pub fn fstat(fd: BorrowedFd) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain old data, fully written by a successful call.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// The filesystem id fanotify reports in its file-id records
/// (`statfs.f_fsid`).
pub fn fsid(fd: BorrowedFd) -> io::Result<[i32; 2]> {
    // SAFETY: `statfs` is plain old data, fully written by a successful
    // call; `fsid_t` is `struct { int val[2]; }` in the kernel ABI, whose
    // fields libc keeps private, hence the transmute to the same layout.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(unsafe { std::mem::transmute::<libc::fsid_t, [i32; 2]>(st.f_fsid) })
}

/// `struct file_handle` with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandleBuf {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; libc::MAX_HANDLE_SZ as usize],
}

/// name_to_handle_at(2) of the object `fd` refers to: its handle type and
/// bytes, the same the kernel puts in fanotify file-id records. Falls back
/// to `AT_HANDLE_FID` (Linux 6.5) for filesystems that cannot export.
pub fn file_handle(fd: BorrowedFd) -> io::Result<(i32, Vec<u8>)> {
    let empty = c"";
    let mut last = io::Error::from_raw_os_error(libc::EOPNOTSUPP);
    for flags in [
        libc::AT_EMPTY_PATH,
        libc::AT_EMPTY_PATH | libc::AT_HANDLE_FID,
    ] {
        let mut buf = FileHandleBuf {
            handle_bytes: libc::MAX_HANDLE_SZ as u32,
            handle_type: 0,
            f_handle: [0; libc::MAX_HANDLE_SZ as usize],
        };
        let mut mount_id: libc::c_int = 0;
        // SAFETY: `buf` is a file_handle with `handle_bytes` of room after
        // its header, as the call requires; the path is "" with
        // AT_EMPTY_PATH, so the object is `fd` itself.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                fd.as_raw_fd(),
                empty.as_ptr(),
                &mut buf as *mut FileHandleBuf,
                &mut mount_id as *mut libc::c_int,
                flags,
            )
        };
        if ret == 0 {
            let len = (buf.handle_bytes as usize).min(buf.f_handle.len());
            return Ok((buf.handle_type, buf.f_handle[..len].to_vec()));
        }
        last = io::Error::last_os_error();
        if last.raw_os_error() != Some(libc::EOPNOTSUPP) {
            break;
        }
    }
    Err(last)
}

/// open_by_handle_at(2) with `O_PATH`: only used to name an object the
/// guard has no path for (a directory it never marked). `mount` must be a
/// real (not `O_PATH`) descriptor on the object's filesystem.
pub fn open_by_handle(mount: BorrowedFd, handle_type: i32, handle: &[u8]) -> io::Result<OwnedFd> {
    if handle.len() > libc::MAX_HANDLE_SZ as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut buf = FileHandleBuf {
        handle_bytes: handle.len() as u32,
        handle_type,
        f_handle: [0; libc::MAX_HANDLE_SZ as usize],
    };
    buf.f_handle[..handle.len()].copy_from_slice(handle);
    // SAFETY: `buf` is a valid file_handle; the result is a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            &mut buf as *mut FileHandleBuf,
            libc::O_PATH | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// read(2) into `buf`; `Ok(0)` also for EAGAIN on a non-blocking group.
pub fn read(fd: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Ok(0);
        }
        return Err(err);
    }
    Ok(n as usize)
}

/// Writes a `struct fanotify_response` answering the permission event
/// whose descriptor is `event_fd`.
pub fn respond(group: BorrowedFd, event_fd: BorrowedFd, response: u32) -> io::Result<()> {
    let answer = libc::fanotify_response {
        fd: event_fd.as_raw_fd(),
        response,
    };
    let len = std::mem::size_of::<libc::fanotify_response>();
    // SAFETY: `answer` is a plain struct of `len` bytes.
    let n = unsafe {
        libc::write(
            group.as_raw_fd(),
            (&answer as *const libc::fanotify_response).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of an event descriptor the kernel installed in this
/// process when the event was read. Negative values (FAN_NOFD) are `None`.
pub fn take_event_fd(raw: i32) -> Option<OwnedFd> {
    // SAFETY: the kernel created this descriptor for us while we read the
    // event, and the parser hands each event's descriptor out exactly once.
    (raw >= 0).then(|| unsafe { OwnedFd::from_raw_fd(raw) })
}

/// poll(2) on two descriptors for input; returns which are readable.
/// `timeout_ms` < 0 waits forever. EINTR reads as "nothing ready".
pub fn poll_in(a: BorrowedFd, b: BorrowedFd, timeout_ms: i32) -> io::Result<(bool, bool)> {
    let mut fds = [
        libc::pollfd {
            fd: a.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: `fds` is an array of two valid pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok((false, false));
        }
        return Err(err);
    }
    let ready = |p: &libc::pollfd| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
    Ok((ready(&fds[0]), ready(&fds[1])))
}
