//! The contract between the guard and whoever decides: what a permission
//! request carries, the answers, and the `Decider` trait with its cheap
//! fallback.

use std::path::PathBuf;

use serde::Serialize;

/// Identifies one pending permission request, for `resolve_hold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which permission event the kernel is waiting on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// `FAN_OPEN_PERM`: an open of the object (also the open an exec does).
    Open,
    /// `FAN_OPEN_EXEC_PERM`: the object is being opened to be executed.
    OpenExec,
    /// `FAN_PRE_ACCESS` (Linux 6.14+): a read, write or truncate of the
    /// byte range `offset..offset+count` is about to happen.
    PreAccess { offset: u64, count: u64 },
}

/// What the process is doing, established from the system call it is
/// blocked in (see the `process` module). `Unknown` must be taken as a
/// possible write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// A read-only open, or a read of content.
    Read,
    /// An open for writing or with O_TRUNC, a write, truncate or fallocate.
    Write,
    /// An exec.
    Exec,
    /// Not established: the system call did not say (openat2, io_uring, a
    /// page fault, a 32-bit call), or it was not needed because the
    /// targets refuse every open of the object whatever it is for.
    Unknown,
}

/// The object identity: device and inode numbers as `stat(2)` gives them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ObjectId {
    pub dev: u64,
    pub ino: u64,
}

/// A permission request: a process is blocked in the kernel until it is
/// answered.
#[derive(Clone, Debug, Serialize)]
pub struct Request {
    pub id: RequestId,
    pub kind: RequestKind,
    pub intent: Intent,
    /// Thread-group id (the process).
    pub pid: u32,
    /// The thread that made the call.
    pub tid: u32,
    /// Real and effective UID of the thread.
    pub uid: u32,
    pub euid: u32,
    /// The object the kernel resolved, as an absolute path (readlink of
    /// the event's descriptor; ends in " (deleted)" for an unlinked file).
    pub path: PathBuf,
    pub object: ObjectId,
    /// Tags of the targets this event concerns. Empty when the event came
    /// through a protected directory the guard could not attribute (the
    /// file was renamed while the event was read): treat it as protected.
    pub tags: Vec<u32>,
}

/// A final answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// What `Decider::decide` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Allow,
    Deny,
    /// Keep the process blocked until `Guard::resolve_hold(request.id, …)`
    /// or the hold deadline (`Options::hold_timeout`, then Deny).
    Hold,
}

/// Decides permission requests. `decide` runs on the guard's decider
/// thread, one request at a time; it may block (ask a human, read files:
/// the guard's own process is never held), but a request not answered
/// within `Options::decide_timeout` is answered by `fallback` instead.
pub trait Decider: Send + Sync + 'static {
    fn decide(&self, request: &Request) -> Answer;

    /// An answer given at once, on the guard's reader thread, before the
    /// request is queued for `decide`: for the clear cases (a process that
    /// is plainly not watched), so they never wait for the decider thread.
    /// Like `fallback` it must be cheap and never block. `None` (the
    /// default) sends the request on to `decide`.
    fn quick(&self, request: &Request) -> Option<Verdict> {
        let _ = request;
        None
    }

    /// The answer when `decide` is late, panics, or the guard shuts down
    /// with the request pending. It runs on the guard's watchdog thread and
    /// must be cheap and never block (no I/O, no lock `decide` may hold):
    /// typically "Deny if the process is watched, else Allow" from a cached
    /// set. The default denies everything, so a timeout never allows.
    fn fallback(&self, request: &Request) -> Verdict {
        let _ = request;
        Verdict::Deny
    }
}
