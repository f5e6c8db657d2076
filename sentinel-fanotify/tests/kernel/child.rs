//! The child side of the kernel tests: this same binary, re-executed as a
//! test UID with `SENTINEL_FANOTIFY_CHILD=<op>`, makes exactly the system
//! calls an evasion needs and prints one line: `OK <content>` or
//! `ERR <errno>`. The tests assert on that content.

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub const ENV: &str = "SENTINEL_FANOTIFY_CHILD";

fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM".into(),
        Some(libc::EACCES) => "EACCES".into(),
        Some(libc::ENOENT) => "ENOENT".into(),
        Some(n) => format!("errno{n}"),
        None => e.to_string(),
    }
}

fn c(path: &str) -> CString {
    CString::new(Path::new(path).as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_at(dir: libc::c_int, path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
    let p = c(path);
    let fd = check(unsafe { libc::openat(dir, p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn read_all(fd: OwnedFd) -> io::Result<String> {
    let mut s = String::new();
    std::fs::File::from(fd).read_to_string(&mut s)?;
    Ok(s)
}

fn report(result: io::Result<String>) -> ! {
    match result {
        Ok(s) => println!("OK {s}"),
        Err(e) => println!("ERR {}", errno_name(&e)),
    }
    std::process::exit(0)
}

/// Runs op `op` with `args` and exits.
pub fn run(op: &str, args: &[String]) -> ! {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let result = match op {
        // open(path) and read it.
        "read" => open_at(libc::AT_FDCWD, arg(0), libc::O_RDONLY).and_then(read_all),
        // openat(dirfd, name): the name is relative to a directory fd.
        "readat" => open_at(libc::AT_FDCWD, arg(0), libc::O_RDONLY | libc::O_DIRECTORY)
            .and_then(|d| open_at(d.as_raw_fd(), arg(1), libc::O_RDONLY))
            .and_then(read_all),
        // /proc/self/fd/N/name through an O_PATH directory fd.
        "procfd" => open_at(libc::AT_FDCWD, arg(0), libc::O_PATH | libc::O_DIRECTORY)
            .and_then(|d| {
                let p = format!("/proc/self/fd/{}/{}", d.as_raw_fd(), arg(1));
                open_at(libc::AT_FDCWD, &p, libc::O_RDONLY)
            })
            .and_then(read_all),
        // O_PATH (no open event), then a real open through /proc/self/fd.
        "reopen" => open_at(libc::AT_FDCWD, arg(0), libc::O_PATH)
            .and_then(|f| {
                let p = format!("/proc/self/fd/{}", f.as_raw_fd());
                open_at(libc::AT_FDCWD, &p, libc::O_RDONLY)
            })
            .and_then(read_all),
        // execveat(fd, "", AT_EMPTY_PATH) of an O_PATH fd.
        "execveat" => open_at(libc::AT_FDCWD, arg(0), libc::O_PATH).and_then(|f| {
            let argv0 = c(arg(0));
            let argv1 = c(arg(1));
            let argv = [argv0.as_ptr(), argv1.as_ptr(), std::ptr::null()];
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            let empty = c"";
            unsafe {
                libc::syscall(
                    libc::SYS_execveat,
                    f.as_raw_fd(),
                    empty.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                    libc::AT_EMPTY_PATH,
                )
            };
            Err(io::Error::last_os_error())
        }),
        // truncate(2) by path: no open at all.
        "truncate" => {
            check(unsafe { libc::truncate(c(arg(0)).as_ptr(), 0) }).map(|_| String::new())
        }
        // ftruncate(2) of an inherited descriptor (fd 3).
        "ftruncate" => check(unsafe { libc::ftruncate(3, 0) }).map(|_| String::new()),
        // read(2) of an inherited descriptor (fd 3).
        "read3" => read_all(unsafe { OwnedFd::from_raw_fd(3) }),
        // 32-bit system calls from this 64-bit process (`int 0x80`), whose
        // numbers mean other calls in the 64-bit table: openat(2) is 295
        // there, preadv(2) here.
        "compat-otrunc" => {
            compat::openat(arg(0), libc::O_WRONLY | libc::O_TRUNC).map(|_| String::new())
        }
        "compat-read" => compat::openat(arg(0), libc::O_RDONLY).and_then(read_all),
        // openat through io_uring: inline, and forced onto an io-wq
        // worker thread (the open then happens in another thread).
        "uring-read" => uring::openat(arg(0), false).and_then(read_all),
        "uring-read-async" => uring::openat(arg(0), true).and_then(read_all),
        // write(2) to an inherited descriptor (fd 3).
        "write3" => {
            let n = unsafe { libc::write(3, b"x".as_ptr().cast(), 1) };
            if n < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(String::new())
            }
        }
        "otrunc" => {
            open_at(libc::AT_FDCWD, arg(0), libc::O_WRONLY | libc::O_TRUNC).map(|_| String::new())
        }
        "append" => {
            open_at(libc::AT_FDCWD, arg(0), libc::O_WRONLY | libc::O_APPEND).map(|_| String::new())
        }
        // N opens and closes; prints how many succeeded.
        "flood" => {
            let n: usize = arg(1).parse().unwrap_or(0);
            let ok = (0..n)
                .filter(|_| open_at(libc::AT_FDCWD, arg(0), libc::O_RDONLY).is_ok())
                .count();
            Ok(format!("{ok}/{n}"))
        }
        "rename" => std::fs::rename(arg(0), arg(1)).map(|_| String::new()),
        "unlink" => std::fs::remove_file(arg(0)).map(|_| String::new()),
        "link" => std::fs::hard_link(arg(0), arg(1)).map(|_| String::new()),
        "chmod" => check(unsafe { libc::chmod(c(arg(0)).as_ptr(), 0o600) }).map(|_| String::new()),
        "create" => open_at(
            libc::AT_FDCWD,
            arg(0),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        )
        .map(|_| String::new()),
        other => Err(io::Error::other(format!("unknown child op {other}"))),
    };
    report(result)
}

#[cfg(target_arch = "x86_64")]
mod compat {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};

    /// openat(2) through the 32-bit entry point. Its pointer arguments are
    /// 32 bits wide, so the path is copied below 4 GiB first.
    pub fn openat(path: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        const IA32_OPENAT: u32 = 295;
        let page = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            )
        };
        if page == libc::MAP_FAILED || path.len() >= 4096 {
            return Err(io::Error::last_os_error());
        }
        unsafe {
            std::ptr::copy_nonoverlapping(path.as_ptr(), page.cast::<u8>(), path.len());
            *page.cast::<u8>().add(path.len()) = 0;
        }
        let ret: i32;
        // rbx is reserved by LLVM: swap the first argument in and out.
        unsafe {
            std::arch::asm!(
                "xchg {a:r}, rbx",
                "int 0x80",
                "xchg {a:r}, rbx",
                a = inout(reg) (libc::AT_FDCWD as u32) as u64 => _,
                inlateout("eax") IA32_OPENAT as i32 => ret,
                in("ecx") page as u64 as u32,
                in("edx") flags as u32,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
            );
        }
        if ret < 0 {
            return Err(io::Error::from_raw_os_error(-ret));
        }
        Ok(unsafe { OwnedFd::from_raw_fd(ret) })
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod compat {
    pub fn openat(_: &str, _: libc::c_int) -> std::io::Result<std::os::fd::OwnedFd> {
        Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// A minimal io_uring: one IORING_OP_OPENAT, submitted and reaped with raw
/// system calls (no liburing), so the open happens the way an agent using
/// io_uring would make it.
mod uring {
    use std::io;
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[repr(C)]
    #[derive(Default)]
    struct SqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        flags: u32,
        dropped: u32,
        array: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct CqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        overflow: u32,
        cqes: u32,
        flags: u32,
        resv1: u32,
        user_addr: u64,
    }

    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: SqOffsets,
        cq_off: CqOffsets,
    }

    #[repr(C)]
    struct Sqe {
        opcode: u8,
        flags: u8,
        ioprio: u16,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        open_flags: u32,
        user_data: u64,
        buf_index: u16,
        personality: u16,
        splice_fd_in: i32,
        addr3: u64,
        pad: u64,
    }

    const IORING_OP_OPENAT: u8 = 18;
    const IOSQE_ASYNC: u8 = 1 << 4;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;

    fn map(fd: i32, len: usize, off: i64) -> io::Result<*mut u8> {
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(p.cast())
    }

    pub fn openat(path: &str, force_async: bool) -> io::Result<OwnedFd> {
        let path = std::ffi::CString::new(path).map_err(io::Error::other)?;
        let mut p = Params::default();
        let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, &mut p as *mut Params) };
        if ring < 0 {
            return Err(io::Error::last_os_error());
        }
        let ring = ring as i32;
        let sq = map(
            ring,
            (p.sq_off.array + p.sq_entries * 4) as usize,
            IORING_OFF_SQ_RING,
        )?;
        let cq = map(
            ring,
            (p.cq_off.cqes + p.cq_entries * 16) as usize,
            IORING_OFF_CQ_RING,
        )?;
        let sqes = map(
            ring,
            p.sq_entries as usize * std::mem::size_of::<Sqe>(),
            IORING_OFF_SQES,
        )?;
        unsafe {
            let sqe = sqes.cast::<Sqe>();
            sqe.write(Sqe {
                opcode: IORING_OP_OPENAT,
                flags: if force_async { IOSQE_ASYNC } else { 0 },
                ioprio: 0,
                fd: libc::AT_FDCWD,
                off: 0,
                addr: path.as_ptr() as u64,
                len: 0,
                open_flags: (libc::O_RDONLY | libc::O_CLOEXEC) as u32,
                user_data: 1,
                buf_index: 0,
                personality: 0,
                splice_fd_in: 0,
                addr3: 0,
                pad: 0,
            });
            let tail = &*sq.add(p.sq_off.tail as usize).cast::<AtomicU32>();
            let mask = *sq.add(p.sq_off.ring_mask as usize).cast::<u32>();
            let t = tail.load(Ordering::Acquire);
            *sq.add(p.sq_off.array as usize)
                .cast::<u32>()
                .add((t & mask) as usize) = 0;
            tail.store(t + 1, Ordering::Release);
        }
        let n = unsafe {
            libc::syscall(
                libc::SYS_io_uring_enter,
                ring,
                1u32,
                1u32,
                IORING_ENTER_GETEVENTS,
                std::ptr::null::<u8>(),
                0usize,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let res = unsafe {
            let head = &*cq.add(p.cq_off.head as usize).cast::<AtomicU32>();
            let mask = *cq.add(p.cq_off.ring_mask as usize).cast::<u32>();
            let h = head.load(Ordering::Acquire);
            let cqe = cq.add(p.cq_off.cqes as usize + ((h & mask) as usize) * 16);
            let res = *cqe.add(8).cast::<i32>();
            head.store(h + 1, Ordering::Release);
            res
        };
        if res < 0 {
            return Err(io::Error::from_raw_os_error(-res));
        }
        Ok(unsafe { OwnedFd::from_raw_fd(res) })
    }
}
