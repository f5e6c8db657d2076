//! What the guard learns about the thread behind a permission event from
//! /proc: its thread group and UIDs, and what it is doing (reading,
//! writing, executing). The thread is blocked in the kernel until the event
//! is answered, so none of this can change under us — except where noted.

use std::fs;

use crate::decide::Intent;

/// The identity of the thread behind an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Task {
    pub tgid: u32,
    pub uid: u32,
    pub euid: u32,
}

/// `/proc/<tid>/status`: `None` when the thread is gone (it was killed
/// while it waited for the answer).
pub(crate) fn task(tid: u32) -> Option<Task> {
    parse_status(&fs::read_to_string(format!("/proc/{tid}/status")).ok()?)
}

/// When the process started (clock ticks after boot, `/proc/<pid>/stat`
/// field 22): with the pid, it names one process even after the pid
/// number is reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may hold anything,
    // parentheses included: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn parse_status(status: &str) -> Option<Task> {
    let mut tgid = None;
    let mut uids = None;
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("Tgid:") {
            tgid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("Uid:") {
            let mut it = v.split_whitespace().map(|f| f.parse::<u32>().ok());
            uids = Some((it.next()??, it.next()??));
        }
    }
    let (uid, euid) = uids?;
    Some(Task {
        tgid: tgid?,
        uid,
        euid,
    })
}

/// What the blocked thread is doing, from `/proc/<tid>/syscall` (the
/// system call number and its register arguments, saved at entry and
/// stable while it waits) checked against `/proc/<tid>/stack` (the
/// kernel's own stack), which tells a native 64-bit system call apart from
/// a 32-bit one entered with `int 0x80` whose number means something else.
/// Anything not established that way is `Intent::Unknown`, which the guard
/// treats as a possible write.
pub(crate) fn intent(tid: u32) -> Intent {
    let Some(syscall) = blocked_syscall(tid) else {
        return Intent::Unknown;
    };
    let Ok(stack) = fs::read_to_string(format!("/proc/{tid}/stack")) else {
        return Intent::Unknown;
    };
    if !native_syscall(&stack) {
        return Intent::Unknown;
    }
    classify(&syscall)
}

/// `/proc/<tid>/syscall` of a thread that is going to sleep until the
/// guard answers. The kernel only reports the call of a thread that is
/// off the CPU ("running" otherwise), and the guard may read the event
/// before the thread has finished queueing it and gone to sleep: so this
/// yields, then waits a little, for at most about 20 ms.
fn blocked_syscall(tid: u32) -> Option<String> {
    let path = format!("/proc/{tid}/syscall");
    for attempt in 0..120 {
        let text = fs::read_to_string(&path).ok()?;
        if !text.starts_with("running") {
            return Some(text);
        }
        if attempt < 20 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    None
}

/// True when the kernel stack shows the native 64-bit entry path and no
/// compat one.
fn native_syscall(stack: &str) -> bool {
    let compat = ["ia32", "compat", "int80", "_32+", "_32 "];
    stack.contains("do_syscall_64") && !compat.iter().any(|c| stack.contains(c))
}

#[cfg(target_arch = "x86_64")]
fn classify(syscall: &str) -> Intent {
    let mut fields = syscall.split_whitespace();
    let Some(Ok(nr)) = fields.next().map(str::parse::<i64>) else {
        return Intent::Unknown;
    };
    let args: Vec<u64> = fields
        .take(6)
        .filter_map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    let open_flags = |flags: Option<&u64>| match flags {
        Some(&f) => {
            let f = f as i32;
            if f & libc::O_ACCMODE != libc::O_RDONLY || f & libc::O_TRUNC != 0 {
                Intent::Write
            } else {
                Intent::Read
            }
        }
        None => Intent::Unknown,
    };
    match nr {
        libc::SYS_open => open_flags(args.get(1)),
        libc::SYS_openat => open_flags(args.get(2)),
        libc::SYS_creat => Intent::Write,
        libc::SYS_execve | libc::SYS_execveat => Intent::Exec,
        libc::SYS_read
        | libc::SYS_pread64
        | libc::SYS_readv
        | libc::SYS_preadv
        | libc::SYS_preadv2 => Intent::Read,
        libc::SYS_write
        | libc::SYS_pwrite64
        | libc::SYS_writev
        | libc::SYS_pwritev
        | libc::SYS_pwritev2
        | libc::SYS_truncate
        | libc::SYS_ftruncate
        | libc::SYS_fallocate => Intent::Write,
        // openat2's flags live in user memory another thread may have
        // rewritten since the kernel copied them; io_uring, splice,
        // sendfile, copy_file_range and page faults do not say which side
        // they touch.
        _ => Intent::Unknown,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn classify(_syscall: &str) -> Intent {
    Intent::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    const NATIVE: &str = "[<0>] fanotify_handle_event+0x1/0x2\n[<0>] __x64_sys_openat+0x1/0x2\n[<0>] do_syscall_64+0x71/0x290\n[<0>] entry_SYSCALL_64_after_hwframe+0x76/0x7e\n";

    #[test]
    fn status_gives_tgid_and_uids() {
        let s = "Name:\tcat\nTgid:\t4242\nPid:\t4243\nUid:\t2001\t2002\t2001\t2001\nGid:\t2001\n";
        assert_eq!(
            parse_status(s),
            Some(Task {
                tgid: 4242,
                uid: 2001,
                euid: 2002
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn start_time_is_field_22_whatever_the_name() {
        let stat =
            "4242 (a) b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(parse_start_time("4242 (x) S 1"), None);
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn a_compat_stack_is_not_native() {
        assert!(native_syscall(NATIVE));
        assert!(!native_syscall(
            "[<0>] __ia32_sys_openat+0x1/0x2\n[<0>] do_int80_emulation+0x1/0x2\n"
        ));
        assert!(!native_syscall(
            "[<0>] __ia32_compat_sys_openat+0x1/0x2\n[<0>] do_syscall_64+0x1/0x2\n"
        ));
        assert!(!native_syscall(""));
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn open_flags_and_syscalls_classify() {
        // openat(AT_FDCWD, path, O_RDONLY)
        assert_eq!(
            classify("257 0xffffff9c 0x7ffc 0x0 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Read
        );
        // openat(AT_FDCWD, path, O_WRONLY|O_TRUNC)
        assert_eq!(
            classify("257 0xffffff9c 0x7ffc 0x201 0x1b6 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Write
        );
        // open(path, O_RDONLY|O_TRUNC) truncates on Linux.
        assert_eq!(
            classify("2 0x7ffc 0x200 0x0 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Write
        );
        assert_eq!(
            classify("2 0x7ffc 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Read
        );
        assert_eq!(
            classify("76 0x7ffc 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Write
        );
        assert_eq!(
            classify("0 0x3 0x7ffc 0x1000 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Read
        );
        assert_eq!(
            classify("59 0x7ffc 0x7ffc 0x7ffc 0x0 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Exec
        );
        // openat2 and anything unrecognised.
        assert_eq!(
            classify("437 0xffffff9c 0x7ffc 0x7ffc 0x18 0x0 0x0 0x7ffd 0x7f00"),
            Intent::Unknown
        );
        assert_eq!(classify("running"), Intent::Unknown);
        assert_eq!(classify("-1 0x7ffd 0x7f00"), Intent::Unknown);
        assert_eq!(classify(""), Intent::Unknown);
    }
}
