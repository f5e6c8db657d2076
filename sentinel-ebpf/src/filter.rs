//! Who is acting, and is it watched? Every program starts here, and
//! unwatched processes leave after two hash lookups.

use aya_ebpf::helpers::{bpf_get_current_pid_tgid, bpf_get_current_uid_gid, bpf_ktime_get_ns};
use sentinel_common::config;

use crate::capture::send_signal;
use crate::maps::{CONFIG, HELD, WATCHED_TASKS, WATCHED_UIDS};

pub const SIGKILL: u32 = 9;
pub const SIGSTOP: u32 = 19;

pub struct Current {
    pub tgid: u32,
    pub tid: u32,
    pub uid: u32,
}

#[inline(always)]
pub fn current() -> Current {
    let pid_tgid = bpf_get_current_pid_tgid();
    Current {
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        uid: bpf_get_current_uid_gid() as u32,
    }
}

#[inline(always)]
pub fn config(index: u32) -> u64 {
    CONFIG.get(index).copied().unwrap_or(0)
}

#[inline(always)]
pub fn flag(bit: u64) -> bool {
    config(config::FLAGS) & bit != 0
}

#[inline(always)]
pub fn is_watched(cur: &Current) -> bool {
    unsafe { WATCHED_UIDS.get(&cur.uid).is_some() || WATCHED_TASKS.get(&cur.tgid).is_some() }
}

/// The watched check for hooks that must not signal (LSM, cgroup, exits).
#[inline(always)]
pub fn watched_task() -> Option<Current> {
    let cur = current();
    if !is_watched(&cur) || u64::from(cur.tgid) == config(config::SELF_TGID) {
        return None;
    }
    Some(cur)
}

/// A held process runs again only when the daemon resumes it (and then
/// removes it from HELD first): anything else is a bypass attempt.
#[inline(always)]
pub fn is_held(cur: &Current) -> bool {
    unsafe { HELD.get(&cur.tgid).is_some() }
}

/// `watched_task` for syscall-entry tracepoints: a held process that was
/// resumed behind the daemon's back is killed.
#[inline(always)]
pub fn watched() -> Option<Current> {
    let cur = watched_task()?;
    if is_held(&cur) {
        send_signal(SIGKILL);
    }
    Some(cur)
}

/// Marks the current process held, with the time.
#[inline(always)]
pub fn hold(cur: &Current) {
    let now = unsafe { bpf_ktime_get_ns() };
    let _ = HELD.insert(&cur.tgid, &now, 0);
}
