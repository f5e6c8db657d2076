//! Process identity: a pid names a process only together with its start
//! time, because pids are reused. This module reads start times from
//! /proc, decides whether the process now behind a pid can be the one an
//! event came from, and sends every signal the daemon sends — through a
//! pidfd, after checking the start time, so a process that merely reused
//! the pid is never signalled.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// One process: its pid and its start time (clock ticks since boot, the
/// 22nd field of /proc/PID/stat).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

/// Why a signal was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSignalled {
    /// The process is gone (exited and reaped).
    Gone,
    /// The pid now belongs to another process.
    Reused,
    /// The daemon never learnt which process this was (it exited before
    /// its start time could be read): a pid alone is not signalled.
    Unknown,
}

/// `/proc/PID/stat`'s start time; `None` when the pid is gone.
pub fn start_time_in(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat_start(&stat)
}

pub fn start_time(pid: u32) -> Option<u64> {
    start_time_in(Path::new("/proc"), pid)
}

/// Field 22 of a stat line, counted after the comm's last `)` (a comm may
/// hold spaces and parentheses).
pub fn parse_stat_start(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn ns_per_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    1_000_000_000 / u64::try_from(hz).ok().filter(|h| *h > 0).unwrap_or(100)
}

/// Could a process that started at `start` (ticks since boot) have done
/// something at kernel time `ktime_ns` (CLOCK_MONOTONIC, as the programs
/// stamp events)? A process that started after the event is a later
/// process that reused the pid. Start times are whole ticks rounded down,
/// so a reuse within the same tick (10 ms) still passes.
pub fn started_by(start: u64, ktime_ns: u64) -> bool {
    let boot_minus_mono =
        clock_ns(libc::CLOCK_BOOTTIME).saturating_sub(clock_ns(libc::CLOCK_MONOTONIC));
    start.saturating_mul(ns_per_tick()) <= ktime_ns.saturating_add(boot_minus_mono)
}

/// The current kernel time, as the programs stamp events.
pub fn now_ktime() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Sends `sig` to the process `id`, and only to it: a pidfd is opened
/// first, then the start time behind the pid is checked, then the signal
/// goes through the pidfd (which names the process it was opened on, so a
/// reuse after the check cannot redirect it).
pub fn signal(id: ProcId, sig: i32) -> Result<(), NotSignalled> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, id.pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(NotSignalled::Gone);
    }
    // SAFETY: the fd was just returned by pidfd_open and is owned here.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    match start_time(id.pid) {
        None => return Err(NotSignalled::Gone),
        Some(start) if start != id.start => return Err(NotSignalled::Reused),
        Some(_) => {}
    }
    // SAFETY: pidfd_send_signal with a valid pidfd, no siginfo, no flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(NotSignalled::Gone)
    }
}

/// [`signal`] for a process the daemon may not know the start time of.
pub fn signal_known(pid: u32, start: Option<u64>, sig: i32) -> Result<(), NotSignalled> {
    match start {
        Some(start) => signal(ProcId { pid, start }, sig),
        None => Err(NotSignalled::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_survives_a_hostile_comm() {
        let stat = "123 (a) b) S 1 123 123 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        assert_eq!(parse_stat_start(stat), Some(98765));
    }

    #[test]
    fn this_process_is_signalled_only_under_its_own_identity() {
        let me = std::process::id();
        let start = start_time(me).expect("our own stat");
        // Signal 0 checks deliverability without delivering anything.
        assert_eq!(signal(ProcId { pid: me, start }, 0), Ok(()));
        assert_eq!(
            signal(
                ProcId {
                    pid: me,
                    start: start + 1
                },
                0
            ),
            Err(NotSignalled::Reused)
        );
        assert_eq!(signal_known(me, None, 0), Err(NotSignalled::Unknown));
        assert!(started_by(start, now_ktime()));
        // A process cannot have acted before it started.
        assert!(!started_by(start, 0) || start == 0);
    }
}
