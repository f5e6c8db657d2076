//! `sentinel-evasion ROUTE ARGS...`: tries one route to a file and reports
//! what came back, for the evasion tests (on the host and in the qemu
//! guest). A read prints the bytes it got on stdout and exits 0; a refusal
//! prints `refused: <errno text>` on stderr and exits 1; a route that could
//! not even be tried (bad arguments) exits 2. Being killed is the kernel's
//! answer and shows as a signal.
//!
//! Routes:
//! - `read PATH`: open(2) and read.
//! - `read-at DIR NAME`: openat(2) relative to a directory descriptor.
//! - `read-fd-dir DIR NAME`: open `/proc/self/fd/N/NAME` through a directory
//!   descriptor N.
//! - `read-opath PATH`: an `O_PATH` handle reopened through `/proc/self/fd`.
//! - `read-int80 PATH`: the 32-bit `int 0x80` open(2), then read(2).
//! - `read-handle PATH`: name_to_handle_at(2) then open_by_handle_at(2)
//!   (needs CAP_DAC_READ_SEARCH).
//! - `io-uring`: io_uring_setup(2).
//! - `exec PATH`, `exec-fd PATH` (execveat AT_EMPTY_PATH), `exec-proc-fd
//!   PATH` (exec of /proc/self/fd/N), `exec-memfd PATH` (a memfd copy).
//! - `write PATH TEXT`, `append PATH TEXT`, `truncate PATH`, `rename FROM
//!   TO`, `link FROM TO`, `symlink TARGET LINK`, `unlink PATH`, `chmod PATH
//!   OCTAL`, `rename-over PATH TEXT` (a new file in the same directory
//!   renamed over PATH).
//! - Against a process (the sentinel's self-protection): `kill PID SIG`,
//!   `tkill TID SIG`, `pidfd-signal PID SIG` (pidfd_open then
//!   pidfd_send_signal), `ptrace PID` (PTRACE_SEIZE then detach), `bpf`
//!   (BPF_PROG_GET_NEXT_ID, the first step to any loaded program).

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

fn c(path: &str) -> CString {
    CString::new(OsStr::new(path).as_bytes()).unwrap_or_default()
}

fn errno() -> String {
    std::io::Error::last_os_error().to_string()
}

/// `Err(errno text)` when a libc call returned -1.
fn check(ret: i64) -> Result<i64, String> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

fn read_fd(fd: i32) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: buf is ours and its length is passed.
        let n = check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as i64)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
}

fn open(path: &str, flags: i32) -> Result<i32, String> {
    let p = c(path);
    // SAFETY: p is a valid C string.
    check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC, 0o644) } as i64)
        .map(|fd| fd as i32)
}

fn openat(dir: i32, name: &str, flags: i32) -> Result<i32, String> {
    let p = c(name);
    // SAFETY: p is a valid C string.
    check(unsafe { libc::openat(dir, p.as_ptr(), flags | libc::O_CLOEXEC) } as i64)
        .map(|fd| fd as i32)
}

/// The 32-bit open(2) through `int 0x80` (the path must sit below 4 GiB).
#[cfg(target_arch = "x86_64")]
fn open_int80(path: &str) -> Result<i32, String> {
    let bytes = c(path);
    let len = bytes.as_bytes_with_nul().len();
    // SAFETY: an anonymous private mapping; MAP_32BIT keeps it below 4 GiB.
    let low = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
            -1,
            0,
        )
    };
    if low == libc::MAP_FAILED || len > 4096 {
        return Err(format!("mmap: {}", errno()));
    }
    // SAFETY: the mapping is 4096 bytes and len fits.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), low.cast(), len) };
    let ret: i32;
    // SAFETY: the i386 open(2) (number 5) with a valid pointer below 4 GiB.
    unsafe {
        // rbx is LLVM's: swap the path into it around the trap.
        std::arch::asm!(
            "xchg {path:r}, rbx",
            "int 0x80",
            "xchg {path:r}, rbx",
            path = inout(reg) low as u64 => _,
            inlateout("eax") 5i32 => ret,
            in("ecx") libc::O_RDONLY,
            in("edx") 0,
        );
    }
    if ret < 0 {
        return Err(std::io::Error::from_raw_os_error(-ret).to_string());
    }
    Ok(ret)
}

/// argv for an exec: the path, then the route's remaining arguments.
struct Argv {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

fn exec_args(path: &str, rest: &[String]) -> Argv {
    let strings: Vec<CString> = std::iter::once(path)
        .chain(rest.iter().map(String::as_str))
        .map(c)
        .collect();
    let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    Argv {
        _strings: strings,
        ptrs,
    }
}

fn memfd_copy(path: &str) -> Result<i32, String> {
    let content = std::fs::read(path).map_err(|e| e.to_string())?;
    let name = c("evasion");
    // SAFETY: name is a valid C string.
    let fd = check(unsafe { libc::memfd_create(name.as_ptr(), 0) } as i64)? as i32;
    // SAFETY: content is ours.
    let n = unsafe { libc::write(fd, content.as_ptr().cast(), content.len()) };
    if n != content.len() as isize {
        return Err(errno());
    }
    Ok(fd)
}

fn route(args: &[String]) -> Result<Option<Vec<u8>>, String> {
    let arg = |i: usize| args.get(i).map(String::as_str).ok_or("missing argument");
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    match arg(0)? {
        "read" => Ok(Some(read_fd(open(arg(1)?, libc::O_RDONLY)?)?)),
        "read-at" => {
            let dir = open(arg(1)?, libc::O_RDONLY | libc::O_DIRECTORY)?;
            Ok(Some(read_fd(openat(dir, arg(2)?, libc::O_RDONLY)?)?))
        }
        "read-fd-dir" => {
            let dir = open(arg(1)?, libc::O_RDONLY | libc::O_DIRECTORY)?;
            let path = format!("/proc/self/fd/{dir}/{}", arg(2)?);
            Ok(Some(read_fd(open(&path, libc::O_RDONLY)?)?))
        }
        "read-opath" => {
            let handle = open(arg(1)?, libc::O_PATH)?;
            let path = format!("/proc/self/fd/{handle}");
            Ok(Some(read_fd(open(&path, libc::O_RDONLY)?)?))
        }
        #[cfg(target_arch = "x86_64")]
        "read-int80" => Ok(Some(read_fd(open_int80(arg(1)?)?)?)),
        "read-handle" => {
            let path = c(arg(1)?);
            // struct file_handle with room for the handle bytes.
            let mut buf = [0u8; 8 + 128];
            buf[..4].copy_from_slice(&128u32.to_ne_bytes());
            let mut mount_id: i32 = 0;
            // SAFETY: buf is a file_handle with handle_bytes = 128.
            check(unsafe {
                libc::syscall(
                    libc::SYS_name_to_handle_at,
                    libc::AT_FDCWD,
                    path.as_ptr(),
                    buf.as_mut_ptr(),
                    &mut mount_id,
                    0,
                )
            })?;
            let mount = open("/", libc::O_RDONLY | libc::O_DIRECTORY)?;
            // SAFETY: buf holds the handle the kernel filled in.
            let fd = check(unsafe {
                libc::syscall(
                    libc::SYS_open_by_handle_at,
                    mount,
                    buf.as_mut_ptr(),
                    libc::O_RDONLY,
                )
            })? as i32;
            Ok(Some(read_fd(fd)?))
        }
        "io-uring" => {
            let mut params = [0u8; 120];
            // SAFETY: params is a zeroed struct io_uring_params.
            let fd =
                check(unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) })?;
            Ok(Some(format!("io_uring fd {fd}").into_bytes()))
        }
        "exec" => {
            let path = c(arg(1)?);
            let argv = exec_args(arg(1)?, &args[2..]);
            // SAFETY: valid C strings and NULL-terminated arrays.
            unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), env.as_ptr()) };
            Err(errno())
        }
        "exec-fd" => {
            let fd = open(arg(1)?, libc::O_RDONLY)?;
            let argv = exec_args(arg(1)?, &args[2..]);
            // SAFETY: as above; fexecve is execveat(fd, "", AT_EMPTY_PATH).
            unsafe { libc::fexecve(fd, argv.ptrs.as_ptr(), env.as_ptr()) };
            Err(errno())
        }
        "exec-proc-fd" => {
            let fd = open(arg(1)?, libc::O_RDONLY)?;
            // The descriptor must survive the exec to be run from it.
            // SAFETY: fcntl on our own descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
            let via = format!("/proc/self/fd/{fd}");
            let path = c(&via);
            let argv = exec_args(&via, &args[2..]);
            // SAFETY: as above.
            unsafe { libc::execve(path.as_ptr(), argv.ptrs.as_ptr(), env.as_ptr()) };
            Err(errno())
        }
        "exec-memfd" => {
            let fd = memfd_copy(arg(1)?)?;
            let argv = exec_args(arg(1)?, &args[2..]);
            // SAFETY: as above.
            unsafe { libc::fexecve(fd, argv.ptrs.as_ptr(), env.as_ptr()) };
            Err(errno())
        }
        "write" | "append" => {
            let flags = libc::O_WRONLY
                | libc::O_CREAT
                | if arg(0)? == "write" {
                    libc::O_TRUNC
                } else {
                    libc::O_APPEND
                };
            let fd = open(arg(1)?, flags)?;
            let text = arg(2)?.as_bytes();
            // SAFETY: text is ours.
            check(unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) } as i64)?;
            Ok(None)
        }
        "truncate" => {
            let p = c(arg(1)?);
            // SAFETY: valid C string.
            check(unsafe { libc::truncate(p.as_ptr(), 0) } as i64)?;
            Ok(None)
        }
        "rename" | "link" | "symlink" => {
            let (a, b) = (c(arg(1)?), c(arg(2)?));
            // SAFETY: valid C strings.
            let ret = unsafe {
                match arg(0)? {
                    "rename" => libc::rename(a.as_ptr(), b.as_ptr()),
                    "link" => libc::link(a.as_ptr(), b.as_ptr()),
                    _ => libc::symlink(a.as_ptr(), b.as_ptr()),
                }
            };
            check(ret as i64)?;
            Ok(None)
        }
        "unlink" => {
            let p = c(arg(1)?);
            // SAFETY: valid C string.
            check(unsafe { libc::unlink(p.as_ptr()) } as i64)?;
            Ok(None)
        }
        "chmod" => {
            let p = c(arg(1)?);
            let mode = u32::from_str_radix(arg(2)?, 8).map_err(|e| e.to_string())?;
            // SAFETY: valid C string.
            check(unsafe { libc::chmod(p.as_ptr(), mode) } as i64)?;
            Ok(None)
        }
        "rename-over" => {
            let target = arg(1)?;
            let dir = std::path::Path::new(target)
                .parent()
                .ok_or("no directory")?;
            let temp = dir.join(format!(".evasion-{}", std::process::id()));
            let temp = temp.to_string_lossy().into_owned();
            let fd = open(&temp, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
            let text = arg(2)?.as_bytes();
            // SAFETY: text is ours.
            check(unsafe { libc::write(fd, text.as_ptr().cast(), text.len()) } as i64)?;
            let (a, b) = (c(&temp), c(target));
            // SAFETY: valid C strings.
            let ret = check(unsafe { libc::rename(a.as_ptr(), b.as_ptr()) } as i64);
            if ret.is_err() {
                // SAFETY: valid C string.
                unsafe { libc::unlink(a.as_ptr()) };
            }
            ret.map(|_| None)
        }
        "proc-signal" => {
            // A signal through a /proc/PID directory descriptor (what
            // pidfd_send_signal also accepts), not a pidfd.
            let pid: i64 = arg(1)?.parse().map_err(|_| "missing argument")?;
            let sig: i64 = arg(2)?.parse().map_err(|_| "missing argument")?;
            let fd = open(&format!("/proc/{pid}"), libc::O_RDONLY | libc::O_DIRECTORY)?;
            // SAFETY: plain syscall with integer arguments.
            check(unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, 0, 0) })
                .map(|_| None)
        }
        "vm-read" => {
            // process_vm_readv of one byte at an address that is not mapped
            // (EFAULT at worst): the attempt is the point.
            let pid: i64 = arg(1)?.parse().map_err(|_| "missing argument")?;
            let mut byte = 0u8;
            let local = libc::iovec {
                iov_base: (&mut byte as *mut u8).cast(),
                iov_len: 1,
            };
            let remote = libc::iovec {
                iov_base: 8 as *mut libc::c_void,
                iov_len: 1,
            };
            // SAFETY: the local iovec points at our byte; the remote one is
            // only read by the kernel, which checks it.
            check(unsafe { libc::process_vm_readv(pid as i32, &local, 1, &remote, 1, 0) } as i64)
                .map(|_| None)
        }
        "kill" | "tkill" | "pidfd-signal" => {
            let pid: i64 = arg(1)?.parse().map_err(|_| "missing argument")?;
            let sig: i64 = arg(2)?.parse().map_err(|_| "missing argument")?;
            // SAFETY: plain syscalls with integer arguments.
            let ret = unsafe {
                match arg(0)? {
                    "kill" => libc::syscall(libc::SYS_kill, pid, sig),
                    "tkill" => libc::syscall(libc::SYS_tkill, pid, sig),
                    _ => {
                        let fd = check(libc::syscall(libc::SYS_pidfd_open, pid, 0))?;
                        libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, 0, 0)
                    }
                }
            };
            check(ret).map(|_| None)
        }
        "ptrace" => {
            let pid: i64 = arg(1)?.parse().map_err(|_| "missing argument")?;
            // SAFETY: PTRACE_SEIZE does not stop the target; detached at once.
            check(unsafe { libc::syscall(libc::SYS_ptrace, 0x4206, pid, 0, 0) })?;
            unsafe { libc::syscall(libc::SYS_ptrace, libc::PTRACE_DETACH, pid, 0, 0) };
            Ok(None)
        }
        "bpf" => {
            let mut attr = [0u32; 4];
            // SAFETY: attr is ours and its size is passed.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    11,
                    attr.as_mut_ptr(),
                    std::mem::size_of_val(&attr),
                )
            };
            check(ret).map(|_| None)
        }
        other => Err(format!("unknown route {other}")),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        eprintln!("usage: sentinel-evasion ROUTE ARGS... (see the module docs)");
        return ExitCode::from(2);
    }
    match route(&args) {
        Ok(Some(bytes)) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes);
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) if e == "missing argument" => {
            eprintln!("sentinel-evasion: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("refused: {e}");
            ExitCode::from(1)
        }
    }
}
