//! The fanotify side of Sentinel's enforcement, for kernels without an
//! active BPF LSM: decisions on the object the kernel resolved, whatever
//! name the process used to reach it.
//!
//! - **Before the effect**: opens (`FAN_OPEN_PERM`), execs
//!   (`FAN_OPEN_EXEC_PERM`) and, on Linux 6.14+, truncates, reads and
//!   writes (`FAN_PRE_ACCESS`) of protected objects wait in the kernel
//!   until a [`Decider`] answers Allow, Deny, or Hold (a later
//!   [`Guard::resolve_hold`]). A denied call fails with EPERM before a byte
//!   moves.
//! - **After the fact**: rename, unlink, link, chmod and create of
//!   protected objects (there are no permission events for them on any
//!   kernel) are reported as [`Mutation`]s with the acting pid.
//!
//! Only inode marks are placed — on the protected files and their
//! directories — so work on anything else costs nothing. A file is matched
//! by its inode, so `./`, `//`, `..`, symlinks, hard links, `/proc/self/root`,
//! dirfds, `/proc/self/fd` reopens and renames all reach the same decision.
//!
//! ```no_run
//! use sentinel_fanotify::{Access, Answer, Decider, Guard, Options, Request, Scope, Target, Verdict};
//!
//! struct Watched(u32);
//! impl Decider for Watched {
//!     fn decide(&self, r: &Request) -> Answer {
//!         if r.uid == self.0 { Answer::Deny } else { Answer::Allow }
//!     }
//!     fn fallback(&self, r: &Request) -> Verdict {
//!         if r.uid == self.0 { Verdict::Deny } else { Verdict::Allow }
//!     }
//! }
//!
//! let guard = Guard::start(Watched(1000), Options::default())?;
//! let report = guard.set_targets(&[Target {
//!     path: "/home/agent/.ssh".into(),
//!     scope: Scope::Subtree,
//!     access: Access::OPEN,
//!     tag: 1,
//! }]);
//! println!("{} objects marked, capabilities {:?}", report.marked, guard.capabilities());
//! # Ok::<(), sentinel_fanotify::Error>(())
//! ```
//!
//! The fail-safe: every permission event gets exactly one answer within
//! bounded time. `decide` runs on its own thread; if it is late
//! (`Options::decide_timeout`) or panics, the watchdog answers with
//! [`Decider::fallback`] (cheap, non-blocking: "deny if watched, else
//! allow"; the default denies). A hold that is never resolved is denied at
//! `Options::hold_timeout`. The guard's own process is always allowed at
//! once. Dropping the guard removes every mark and answers what is pending
//! by fallback; if the process dies, the kernel allows what was pending
//! and drops the marks — the eBPF kill path is the backstop for that.

mod decide;
mod error;
mod event;
mod guard;
mod marks;
mod mutation;
mod permission;
mod process;
mod stats;
mod sys;

pub use decide::{Answer, Decider, Intent, ObjectId, Request, RequestId, RequestKind, Verdict};
pub use error::Error;
pub use guard::{Capabilities, Guard, Options, Resolver};
pub use marks::{Access, MarkFailure, MarkReport, Scope, Target, TargetReport, TargetState};
pub use mutation::{Mutation, MutationKind, Report};
pub use stats::Stats;

impl<D: Decider + ?Sized> Decider for std::sync::Arc<D> {
    fn decide(&self, request: &Request) -> Answer {
        (**self).decide(request)
    }
    fn quick(&self, request: &Request) -> Option<Verdict> {
        (**self).quick(request)
    }
    fn fallback(&self, request: &Request) -> Verdict {
        (**self).fallback(request)
    }
}
