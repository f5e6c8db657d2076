//! `Guard`: owns the two fanotify groups, the mark table and the threads,
//! and their shutdown.
//!
//! Threads (all named `fanotify-*`):
//! - `perm-reader` reads permission events, answers the guard's own
//!   process and events that do not concern a target at once, and queues
//!   the rest for the decider;
//! - `decider` runs `Decider::decide`, one request at a time;
//! - `watchdog` answers every request whose deadline passed (decider late:
//!   `fallback`; hold expired: Deny) and, at shutdown, every request left;
//! - `mutations` reads the notification group, marks objects that appear
//!   under protected names and directories, and reports mutations.
//!
//! Dropping the guard (or `shutdown`) removes every mark, answers what is
//! pending with the fallback, joins the threads and closes both groups. If
//! the process dies instead, the kernel closes the groups: it allows every
//! pending event and drops every mark — the eBPF kill path is the backstop
//! for that window.

use std::collections::HashMap;
use std::io::{PipeReader, PipeWriter, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::decide::{Decider, Request, RequestId, Verdict};
use crate::error::Error;
use crate::marks::{Groups, MarkReport, Marks, Target};
use crate::mutation::{self, Report};
use crate::permission::{self, Allowed, Pending};
use crate::stats::{Counters, Stats};
use crate::sys;

/// Tunables; `Options::default()` is what the daemon should start from.
#[derive(Clone, Debug)]
pub struct Options {
    /// How long `Decider::decide` may take before the watchdog answers with
    /// `Decider::fallback`. This bounds how long an unwatched process can
    /// wait on a protected file.
    pub decide_timeout: Duration,
    /// How long a held request waits for `resolve_hold` before it is
    /// denied.
    pub hold_timeout: Duration,
    /// The most objects (inodes) the guard marks, all targets together,
    /// including ones learned later. Each mark pins its inode in memory
    /// (about 1 KiB of kernel memory per object).
    pub mark_budget: usize,
    /// Capacity of the `mutations()` channel; reports beyond it are
    /// counted as dropped and announced by `Report::Lost`.
    pub mutation_queue: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            decide_timeout: Duration::from_millis(250),
            hold_timeout: Duration::from_secs(30),
            mark_budget: 16_384,
            mutation_queue: 4_096,
        }
    }
}

/// What this kernel gave the guard. The daemon reports it per kind, and
/// never claims a refusal the kernel does not make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The running kernel (`uname -r`).
    pub kernel: String,
    /// `FAN_OPEN_PERM`: opens of protected files are refused before they
    /// happen. Always true for a started guard.
    pub open_perm: bool,
    /// `FAN_OPEN_EXEC_PERM` (Linux 5.0): execs are told apart from opens.
    /// Without it an exec is refused through its open, like a read.
    pub open_exec_perm: bool,
    /// `FAN_PRE_ACCESS` (Linux 6.14): `truncate(2)`, and reads and writes
    /// through already-open descriptors, are refused before they happen.
    /// Without it they are only reported after the fact.
    pub pre_content: bool,
    /// `FAN_UNLIMITED_QUEUE` on the permission group: no permission event
    /// is ever dropped (a dropped one would be allowed by the kernel).
    pub unlimited_queue: bool,
    /// `FAN_UNLIMITED_MARKS`: marks are bounded by `Options::mark_budget`
    /// only, not by fs.fanotify.max_user_marks.
    pub unlimited_marks: bool,
    /// A notification group with file ids and names (Linux 5.9): mutations
    /// are reported, and objects appearing later are marked.
    pub mutations: bool,
    /// `/proc/<tid>/syscall` and `/proc/<tid>/stack` are readable, so reads
    /// are told apart from writes. Without it every open of a
    /// `content_write` target is asked as a possible write.
    pub intent: bool,
}

/// State shared by the guard's threads.
pub(crate) struct Shared {
    pub perm: OwnedFd,
    pub notif: Option<OwnedFd>,
    pub caps: Capabilities,
    pub options: Options,
    pub decider: Arc<dyn Decider>,
    pub marks: Mutex<Marks>,
    pub pending: Mutex<HashMap<RequestId, Pending>>,
    pub allowed: Mutex<Allowed>,
    /// Signalled when a deadline may have moved earlier, or at stop.
    pub pending_changed: Condvar,
    pub counters: Counters,
    /// Set first at shutdown: the readers drain and return.
    pub stopping: AtomicBool,
    /// Set once the readers are gone: the watchdog answers what is left
    /// and returns.
    pub closing: AtomicBool,
    pub own_pid: u32,
    next_id: AtomicU64,
}

impl Shared {
    pub fn groups(&self) -> Groups<'_> {
        Groups {
            perm: self.perm.as_fd(),
            notif: self.notif.as_ref().map(|n| n.as_fd()),
            open_exec_perm: self.caps.open_exec_perm,
            pre_content: self.caps.pre_content,
        }
    }

    pub fn next_id(&self) -> RequestId {
        RequestId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Locks the mark table; a panic in another thread while it held the
    /// lock leaves the table usable (every update is a whole entry).
    pub fn marks(&self) -> MutexGuard<'_, Marks> {
        self.marks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pending(&self) -> MutexGuard<'_, HashMap<RequestId, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn allowed(&self) -> MutexGuard<'_, Allowed> {
        self.allowed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The fanotify guard. See the crate documentation.
pub struct Guard {
    shared: Arc<Shared>,
    stop: PipeWriter,
    /// The readers, joined before the watchdog.
    threads: Vec<JoinHandle<()>>,
    watchdog: Option<JoinHandle<()>>,
    /// Dropped at shutdown, which ends the decider thread once `decide`
    /// returns.
    to_decider: Option<Sender<Arc<Request>>>,
    mutations: Mutex<Option<Receiver<Report>>>,
}

/// Resolves held requests from anywhere (a clone can live in the
/// decider). It does not keep the guard alive.
#[derive(Clone)]
pub struct Resolver {
    shared: Weak<Shared>,
}

impl Resolver {
    /// Answers a pending request — held, or still being decided.
    pub fn resolve(&self, id: RequestId, verdict: Verdict) -> Result<(), Error> {
        let shared = self.shared.upgrade().ok_or(Error::Stopped)?;
        if permission::finish(&shared, id, verdict) {
            Ok(())
        } else {
            Err(Error::NotPending(id))
        }
    }
}

fn init_error(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => Error::Unavailable,
        Some(libc::EPERM) => Error::NotPermitted,
        Some(libc::EMFILE) => Error::TooManyGroups,
        Some(libc::EINVAL) => Error::NoPermissionEvents,
        _ => Error::Sys {
            what: "fanotify_init",
            source: e,
        },
    }
}

/// Creates a group, retrying without FAN_UNLIMITED_* when refused.
fn init_group(base: u32) -> std::io::Result<(OwnedFd, bool, bool)> {
    let event_flags = (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32;
    let unlimited = sys::FAN_UNLIMITED_QUEUE | sys::FAN_UNLIMITED_MARKS;
    match sys::fanotify_init(base | unlimited, event_flags) {
        Ok(fd) => Ok((fd, true, true)),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            sys::fanotify_init(base, event_flags).map(|fd| (fd, false, false))
        }
        Err(e) => Err(e),
    }
}

/// Whether the kernel accepts `mask` on an inode mark: tried on "/" (no
/// FAN_EVENT_ON_CHILD, no FAN_ONDIR: no event can come of it) and removed.
/// EOPNOTSUPP means the kernel knows the event but the root filesystem
/// does not support it — still supported, per filesystem.
fn probe(group: &OwnedFd, mask: u64) -> bool {
    let root = Path::new("/");
    match sys::mark_path(group.as_fd(), sys::FAN_MARK_ADD, mask, root) {
        Ok(()) => {
            let _ = sys::mark_path(group.as_fd(), sys::FAN_MARK_REMOVE, mask, root);
            true
        }
        Err(e) => e.raw_os_error() == Some(libc::EOPNOTSUPP),
    }
}

/// The notification group: file ids, directory ids and names, and the
/// target of directory-entry events where the kernel has it (5.17).
fn init_notif() -> Option<OwnedFd> {
    let base = sys::FAN_CLASS_NOTIF | sys::FAN_CLOEXEC | sys::FAN_NONBLOCK;
    let with_names = sys::FAN_REPORT_DFID_NAME | sys::FAN_REPORT_FID;
    [with_names | sys::FAN_REPORT_TARGET_FID, with_names]
        .into_iter()
        .find_map(|report| init_group(base | report).ok())
        .map(|(fd, _, _)| fd)
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn spawn(name: &'static str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(format!("fanotify-{name}"))
        .spawn(f)
        .map_err(|source| Error::Thread { name, source })
}

impl Guard {
    /// Creates the groups, probes what the kernel supports and starts the
    /// threads. Nothing is marked until `set_targets`.
    pub fn start<D: Decider>(decider: D, options: Options) -> Result<Guard, Error> {
        let perm_flags =
            sys::FAN_CLASS_PRE_CONTENT | sys::FAN_CLOEXEC | sys::FAN_NONBLOCK | sys::FAN_REPORT_TID;
        let (perm, unlimited_queue, unlimited_marks) =
            init_group(perm_flags).map_err(init_error)?;
        let notif = init_notif();
        let caps = Capabilities {
            kernel: kernel_release(),
            open_perm: true,
            open_exec_perm: probe(&perm, sys::FAN_OPEN_EXEC_PERM),
            pre_content: probe(&perm, sys::FAN_PRE_ACCESS),
            unlimited_queue,
            unlimited_marks,
            mutations: notif.is_some(),
            intent: std::fs::read_to_string("/proc/thread-self/stack").is_ok()
                && std::fs::read_to_string("/proc/thread-self/syscall").is_ok(),
        };
        let shared = Arc::new(Shared {
            perm,
            notif,
            caps,
            marks: Mutex::new(Marks::new(options.mark_budget)),
            decider: Arc::new(decider),
            pending: Mutex::new(HashMap::new()),
            allowed: Mutex::new(Allowed::default()),
            pending_changed: Condvar::new(),
            counters: Counters::default(),
            stopping: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            own_pid: std::process::id(),
            next_id: AtomicU64::new(1),
            options,
        });
        let (stop_rx, stop) = std::io::pipe().map_err(Error::sys("pipe"))?;
        let (to_decider, decider_rx) = mpsc::channel();
        let (reports, mutations) = mpsc::sync_channel(shared.options.mutation_queue.max(1));
        let mut guard = Guard {
            shared: shared.clone(),
            stop,
            threads: Vec::new(),
            watchdog: None,
            to_decider: Some(to_decider.clone()),
            mutations: Mutex::new(Some(mutations)),
        };
        // The decider thread holds no strong reference: a `decide` that
        // never returns cannot keep the groups open.
        let weak = Arc::downgrade(&shared);
        let decider = shared.decider.clone();
        spawn("decider", move || {
            permission::decider_loop(weak, decider, decider_rx)
        })?;
        let s = shared.clone();
        guard.watchdog = Some(spawn("watchdog", move || permission::watchdog(s))?);
        let s = shared.clone();
        let rx = stop_rx.try_clone().map_err(Error::sys("dup"))?;
        guard.threads.push(spawn("perm-reader", move || {
            permission::reader(s, rx, to_decider)
        })?);
        if shared.notif.is_some() {
            let s = shared;
            guard.threads.push(spawn("mutations", move || {
                mutation::reader(s, stop_rx, reports)
            })?);
        }
        Ok(guard)
    }

    /// Replaces the protected targets. New marks are placed before old
    /// ones are removed, so nothing is unprotected in between. Permission
    /// events wait while the table is rebuilt (bounded by the mark budget).
    pub fn set_targets(&self, targets: &[Target]) -> MarkReport {
        let g = self.shared.groups();
        let mut marks = self.shared.marks();
        let report = marks.set_targets(&g, targets);
        let c = &self.shared.counters;
        c.marks.store(marks.len() as u64, Ordering::Relaxed);
        c.mark_failures
            .fetch_add(report.failed as u64, Ordering::Relaxed);
        c.left_out
            .fetch_add(report.left_out as u64, Ordering::Relaxed);
        report
    }

    /// Answers a pending request (held, or still being decided).
    pub fn resolve_hold(&self, id: RequestId, verdict: Verdict) -> Result<(), Error> {
        self.resolver().resolve(id, verdict)
    }

    /// A handle that resolves holds and does not keep the guard alive.
    pub fn resolver(&self) -> Resolver {
        Resolver {
            shared: Arc::downgrade(&self.shared),
        }
    }

    pub fn capabilities(&self) -> Capabilities {
        self.shared.caps.clone()
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// The mutation reports; the receiver is handed out once (`None`
    /// after). Read it steadily: reports beyond `Options::mutation_queue`
    /// are dropped and counted.
    pub fn mutations(&self) -> Option<Receiver<Report>> {
        self.mutations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Whether the object at `path` (not following a final symlink) carries
    /// a mark of its own for a target.
    pub fn is_marked(&self, path: &Path) -> bool {
        self.shared.marks().has_own_mark(path)
    }

    /// Stops the guard (see `Drop`) and returns the final counters.
    pub fn shutdown(mut self) -> Stats {
        self.stop_now();
        self.shared.counters.snapshot()
    }

    fn stop_now(&mut self) {
        if self.shared.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        // No new events: every inode mark of both groups goes at once.
        let flush =
            |fd: &OwnedFd| sys::mark_path(fd.as_fd(), sys::FAN_MARK_FLUSH, 0, Path::new("/"));
        let _ = flush(&self.shared.perm);
        if let Some(n) = &self.shared.notif {
            let _ = flush(n);
        }
        let _ = self.stop.write_all(&[1]);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Nothing new can be queued now: the watchdog answers the rest.
        // The flag is set under the lock the watchdog checks it under, so
        // the wake-up cannot fall between its check and its wait.
        {
            let _pending = self.shared.pending();
            self.shared.closing.store(true, Ordering::SeqCst);
        }
        self.shared.pending_changed.notify_all();
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        self.to_decider = None;
        self.shared.counters.marks.store(0, Ordering::Relaxed);
        // The decider thread (or a `Resolver`) holds a strong reference
        // only while it writes an answer: wait for that, so the groups
        // are closed when this returns, not a moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while Arc::strong_count(&self.shared) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Guard {
    /// Removes every mark, answers every pending request with the
    /// decider's fallback, joins the threads and closes the groups (after
    /// waiting, at most a second, for an answer the decider thread or a
    /// `Resolver` is writing; a `decide` still running holds nothing).
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Keeps the reader's stop pipe type in one place.
pub(crate) type StopPipe = PipeReader;
