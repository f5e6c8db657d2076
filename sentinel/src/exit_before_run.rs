//! Ending a refused process the kernel holds before it ran with exit
//! status 77 instead of SIGKILL, so its parent (the agent's shell) reads
//! "refused" rather than "crashed" — what ClawTower's sudo gate does.
//!
//! The kernel stops an elevator's exec before the new image runs a single
//! instruction (`sched_process_exec`, the image is loaded; or, where BPF
//! LSM runs, in `bprm_check_security`, the exec not done yet). As root the
//! daemon then
//!
//! 1. seizes the stopped process with ptrace (`PTRACE_O_EXITKILL`: if the
//!    daemon dies while it holds it, the process dies too) and brings it
//!    into a ptrace-stop (`PTRACE_INTERRUPT`);
//! 2. checks it is still the process the kernel held (its start time and
//!    the kernel's hold; ptrace pins the pid meanwhile);
//! 3. sets its registers to the `exit_group(77)` system call and writes
//!    the one instruction that makes it (`syscall`, `svc #0`) at its
//!    instruction pointer — the held image never ran, so nothing of it is
//!    lost — with no system call left to restart;
//! 4. lets the caller release the kernel's hold, detaches, and resumes it:
//!    its first and only instruction is the exit.
//!
//! Any step that fails (ptrace refused, e.g. Yama scope 3; the process
//! gone or replaced; an architecture without the code here) leaves the
//! process detached and still stopped (or, if it never reached a
//! ptrace-stop, killed here) and says why: the caller falls back to
//! SIGKILL.

use std::io;
use std::time::{Duration, Instant};

use crate::observe::Sensor;

/// The exit status of a command refused before it ran.
pub const REFUSED_STATUS: u64 = 77;

/// How long the seized process may take to reach its ptrace-stop.
const STOP_WAIT: Duration = Duration::from_millis(500);

/// Why the process could not be made to exit with 77 (it is left stopped
/// and detached, for the caller to kill).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ptrace {step} failed: {source}")]
    Ptrace {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("it did not stop for ptrace within {0:?}")]
    NoStop(Duration),
    #[error("it exited before it could be made to")]
    Gone,
    #[error("pid {0} is no longer the process the kernel held")]
    NotTheHeldProcess(u32),
    #[error("exiting before the first instruction is not implemented on this architecture")]
    #[cfg_attr(any(target_arch = "x86_64", target_arch = "aarch64"), allow(dead_code))]
    UnsupportedArch,
}

/// Makes the process `pid` the kernel holds before it ran (started at
/// `start`, in clock ticks since boot) exit with status 77, and resumes
/// it. The kernel's hold is lifted once the process is set to exit, while
/// ptrace still keeps it stopped.
pub fn exit_77(sensor: &mut Sensor, pid: u32, start: u64) -> Result<(), Error> {
    let tracee = Seized::seize(pid)?;
    tracee.wait_stop()?;
    let held = sensor.held_pids().is_ok_and(|pids| pids.contains(&pid));
    if crate::procid::start_time(pid) != Some(start) || !held {
        return Err(Error::NotTheHeldProcess(pid));
    }
    arch::set_exit(pid, REFUSED_STATUS)?;
    let _ = sensor.release_held(pid);
    tracee.detach()?;
    // Detached, it is back in the group stop the kernel put it in (unless
    // it was seized before it got there, then it is already exiting).
    crate::enforce::resume(pid, Some(start));
    Ok(())
}

/// A process this thread traces; detached (still stopped) when dropped
/// on an error path.
struct Seized {
    pid: libc::pid_t,
    attached: bool,
}

impl Seized {
    fn seize(pid: u32) -> Result<Seized, Error> {
        let pid = pid as libc::pid_t;
        ptrace(
            "seize",
            libc::PTRACE_SEIZE,
            pid,
            0,
            libc::PTRACE_O_EXITKILL as usize,
        )?;
        let tracee = Seized {
            pid,
            attached: true,
        };
        ptrace("interrupt", libc::PTRACE_INTERRUPT, pid, 0, 0)?;
        Ok(tracee)
    }

    /// Waits (boundedly: the daemon must not hang on one process) for the
    /// tracee's ptrace-stop.
    fn wait_stop(&self) -> Result<(), Error> {
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            let mut status = 0;
            // SAFETY: waitpid writes only `status`.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG | libc::__WALL) };
            if r == self.pid {
                if libc::WIFSTOPPED(status) {
                    return Ok(());
                }
                // It exited (or was killed) and this wait reaped it as its
                // tracer, which hands it back to its parent.
                return Err(Error::Gone);
            }
            if r < 0 {
                return Err(Error::Ptrace {
                    step: "wait",
                    source: io::Error::last_os_error(),
                });
            }
            if Instant::now() >= deadline {
                return Err(Error::NoStop(STOP_WAIT));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    fn detach(mut self) -> Result<(), Error> {
        // On failure the drop below still owns it.
        ptrace("detach", libc::PTRACE_DETACH, self.pid, 0, 0)?;
        self.attached = false;
        Ok(())
    }
}

impl Drop for Seized {
    fn drop(&mut self) {
        if self.attached {
            // Detaching needs a ptrace-stop. One that never reached it is
            // killed here and its exit reaped: a tracee's exit goes to
            // its tracer first, and the wait hands it to its parent.
            if ptrace("detach", libc::PTRACE_DETACH, self.pid, 0, 0).is_err() {
                // SAFETY: kill and waitpid have no memory preconditions.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                    let mut status = 0;
                    let deadline = Instant::now() + STOP_WAIT;
                    while libc::waitpid(self.pid, &mut status, libc::WNOHANG | libc::__WALL) == 0
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                }
            }
        }
    }
}

/// One ptrace request; `-1` with errno is an error (for PEEK requests use
/// [`peek`], whose result may legitimately be -1).
fn ptrace(
    step: &'static str,
    request: libc::c_uint,
    pid: libc::pid_t,
    addr: usize,
    data: usize,
) -> Result<libc::c_long, Error> {
    // SAFETY: the requests used here read or write only the tracee, or the
    // buffer `data` points to, which the caller owns for the call.
    let r = unsafe {
        libc::ptrace(
            request,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        return Err(Error::Ptrace {
            step,
            source: io::Error::last_os_error(),
        });
    }
    Ok(r)
}

/// Reads one word of the tracee's memory.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn peek(pid: libc::pid_t, addr: u64) -> Result<u64, Error> {
    // SAFETY: errno is thread-local; PEEKTEXT returns the word read.
    unsafe {
        *libc::__errno_location() = 0;
        let word = libc::ptrace(
            libc::PTRACE_PEEKTEXT,
            pid,
            addr as *mut libc::c_void,
            std::ptr::null_mut::<libc::c_void>(),
        );
        if word == -1 && *libc::__errno_location() != 0 {
            return Err(Error::Ptrace {
                step: "peektext",
                source: io::Error::last_os_error(),
            });
        }
        Ok(word as u64)
    }
}

/// Writes `code` over the first bytes of the word at `addr`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn poke_code(pid: libc::pid_t, addr: u64, code: &[u8]) -> Result<(), Error> {
    let mut bytes = peek(pid, addr)?.to_ne_bytes();
    bytes[..code.len()].copy_from_slice(code);
    ptrace(
        "poketext",
        libc::PTRACE_POKETEXT,
        pid,
        addr as usize,
        u64::from_ne_bytes(bytes) as usize,
    )
    .map(|_| ())
}

#[cfg(target_arch = "x86_64")]
mod arch {
    use super::{poke_code, ptrace, Error};

    /// `exit_group` on x86_64.
    const SYS_EXIT_GROUP: u64 = 231;
    /// `syscall`.
    const SYSCALL: [u8; 2] = [0x0f, 0x05];

    pub fn set_exit(pid: u32, status: u64) -> Result<(), Error> {
        let pid = pid as libc::pid_t;
        // SAFETY: user_regs_struct is plain old data.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        ptrace(
            "getregs",
            libc::PTRACE_GETREGS,
            pid,
            0,
            &mut regs as *mut _ as usize,
        )?;
        poke_code(pid, regs.rip, &SYSCALL)?;
        regs.rax = SYS_EXIT_GROUP;
        regs.rdi = status;
        // Not inside a system call any more: nothing to restart (a held
        // exec returned -ERESTARTNOINTR where BPF LSM held it).
        regs.orig_rax = u64::MAX;
        ptrace(
            "setregs",
            libc::PTRACE_SETREGS,
            pid,
            0,
            &mut regs as *mut _ as usize,
        )
        .map(|_| ())
    }
}

#[cfg(target_arch = "aarch64")]
mod arch {
    use super::{poke_code, ptrace, Error};

    /// `exit_group` on aarch64.
    const SYS_EXIT_GROUP: u64 = 94;
    /// `svc #0`.
    const SVC0: [u8; 4] = [0x01, 0x00, 0x00, 0xd4];
    const NT_PRSTATUS: usize = 1;

    /// PTRACE_GETREGSET or PTRACE_SETREGSET of the general registers.
    fn regset(
        step: &'static str,
        request: libc::c_uint,
        pid: libc::pid_t,
        regs: &mut libc::user_regs_struct,
    ) -> Result<(), Error> {
        let mut iov = libc::iovec {
            iov_base: regs as *mut _ as *mut libc::c_void,
            iov_len: std::mem::size_of::<libc::user_regs_struct>(),
        };
        ptrace(step, request, pid, NT_PRSTATUS, &mut iov as *mut _ as usize).map(|_| ())
    }

    pub fn set_exit(pid: u32, status: u64) -> Result<(), Error> {
        let pid = pid as libc::pid_t;
        // SAFETY: user_regs_struct is plain old data.
        let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
        regset("getregset", libc::PTRACE_GETREGSET, pid, &mut regs)?;
        poke_code(pid, regs.pc, &SVC0)?;
        // x0 = 77 is no restart code, so an interrupted call is not
        // restarted over it.
        regs.regs[8] = SYS_EXIT_GROUP;
        regs.regs[0] = status;
        regset("setregset", libc::PTRACE_SETREGSET, pid, &mut regs)
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod arch {
    use super::Error;

    pub fn set_exit(_pid: u32, _status: u64) -> Result<(), Error> {
        Err(Error::UnsupportedArch)
    }
}
