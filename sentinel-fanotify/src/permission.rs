//! The permission path: every permission event gets exactly one answer,
//! within bounded time.
//!
//! event → (own process? allow) → resolve the object → attribute it to
//! targets → (not concerned? allow) → pending table → decider → answer;
//! the watchdog answers whatever passes its deadline. An entry leaves the
//! pending table exactly once, under its lock, and whoever takes it out
//! answers it: that is what makes "exactly one answer" hold whatever order
//! the decider, `resolve_hold`, the watchdog and shutdown run in.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crate::decide::{Answer, Decider, Intent, ObjectId, Request, RequestId, RequestKind, Verdict};
use crate::event::{self, Info, RawEvent};
use crate::guard::{Shared, StopPipe};
use crate::marks::{concerned, needs_intent, Attribution, Learned};
use crate::process;
use crate::stats::bump;
use crate::sys;

/// A permission event waiting for its answer; its process is blocked.
pub(crate) struct Pending {
    fd: OwnedFd,
    request: Arc<Request>,
    deadline: Instant,
    held: bool,
}

/// One process (pid and start time, so a reused pid is another process)
/// and one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Opener {
    pid: u32,
    start: u64,
    object: ObjectId,
}

/// Opens that were allowed, so the pre-content events of reads and writes
/// through them (Linux 6.14+) are not asked again: a held open the user
/// allowed must not be held again at its first read(2). A descriptor that
/// reaches another process is still asked about. Bounded: when full it is
/// emptied, which only means asking again.
#[derive(Default)]
pub(crate) struct Allowed {
    opens: HashMap<Opener, bool>,
}

const ALLOWED_KEPT: usize = 4096;

impl Allowed {
    /// `write`: the open may write (or its intent was unknown).
    fn record(&mut self, opener: Opener, write: bool) {
        if self.opens.len() >= ALLOWED_KEPT {
            self.opens.clear();
        }
        let w = self.opens.entry(opener).or_insert(write);
        *w |= write;
    }

    fn covers(&self, opener: &Opener, intent: Intent) -> bool {
        match self.opens.get(opener) {
            Some(true) => true,
            Some(false) => matches!(intent, Intent::Read | Intent::Exec),
            None => false,
        }
    }
}

/// Writes the answer and closes the event's descriptor.
fn respond(shared: &Shared, fd: OwnedFd, verdict: Verdict) {
    let response = match verdict {
        Verdict::Allow => {
            bump(&shared.counters.allowed);
            sys::FAN_ALLOW
        }
        Verdict::Deny => {
            bump(&shared.counters.denied);
            sys::FAN_DENY
        }
    };
    if sys::respond(shared.perm.as_fd(), fd.as_fd(), response).is_err() {
        bump(&shared.counters.respond_errors);
    }
}

/// Answers a request taken out of the pending table, remembering an
/// allowed open.
fn answer(shared: &Shared, p: Pending, verdict: Verdict) {
    remember(shared, &p.request, verdict);
    respond(shared, p.fd, verdict);
}

/// Remembers an allowed open (see `Allowed`) where pre-content events
/// (6.14+) can follow it. Called before the answer is written, while the
/// process is still blocked, so its start time names it exactly.
fn remember(shared: &Shared, request: &Request, verdict: Verdict) {
    let open = matches!(request.kind, RequestKind::Open | RequestKind::OpenExec);
    if verdict != Verdict::Allow || !open || !shared.caps.pre_content {
        return;
    }
    if let Some(start) = process::start_time(request.pid) {
        let opener = Opener {
            pid: request.pid,
            start,
            object: request.object,
        };
        let write = !matches!(request.intent, Intent::Read | Intent::Exec);
        shared.allowed().record(opener, write);
    }
}

/// Answers request `id` if it is still pending; false if it was not.
pub(crate) fn finish(shared: &Shared, id: RequestId, verdict: Verdict) -> bool {
    let taken = shared.pending().remove(&id);
    match taken {
        Some(p) => {
            answer(shared, p, verdict);
            true
        }
        None => false,
    }
}

/// The decider's fallback, never panicking: a panic denies.
fn fallback(shared: &Shared, request: &Request) -> Verdict {
    catch_unwind(AssertUnwindSafe(|| shared.decider.fallback(request))).unwrap_or_else(|_| {
        bump(&shared.counters.decider_panics);
        Verdict::Deny
    })
}

/// Reads permission events until the guard stops, then drains what is
/// left in the queue (answering it by fallback) and returns.
pub(crate) fn reader(shared: Arc<Shared>, stop: StopPipe, to_decider: Sender<Arc<Request>>) {
    // Large enough for many events; each is 24 bytes plus a 24-byte range.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let stopping = match sys::poll_in(shared.perm.as_fd(), stop.as_fd(), -1) {
            Ok((_, stop)) => stop,
            Err(_) => shared.stopping.load(Ordering::SeqCst),
        };
        loop {
            let n = match sys::read(shared.perm.as_fd(), &mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            if n == 0 {
                break;
            }
            for parsed in event::parse(&buf[..n]) {
                match parsed {
                    Ok(ev) => handle(&shared, ev, &to_decider, stopping),
                    Err((_, fd)) => {
                        bump(&shared.counters.parse_errors);
                        if let Some(fd) = sys::take_event_fd(fd) {
                            respond(&shared, fd, Verdict::Deny);
                        }
                    }
                }
            }
            if !stopping {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

fn kind_of(ev: &RawEvent) -> Option<RequestKind> {
    if ev.mask & sys::FAN_OPEN_EXEC_PERM != 0 {
        Some(RequestKind::OpenExec)
    } else if ev.mask & sys::FAN_OPEN_PERM != 0 {
        Some(RequestKind::Open)
    } else if ev.mask & sys::FAN_PRE_ACCESS != 0 {
        let (offset, count) = ev
            .infos
            .iter()
            .find_map(|i| match i {
                Info::Range { offset, count } => Some((*offset, *count)),
                _ => None,
            })
            .unwrap_or((0, 0));
        Some(RequestKind::PreAccess { offset, count })
    } else {
        None
    }
}

fn handle(shared: &Shared, ev: RawEvent, to_decider: &Sender<Arc<Request>>, stopping: bool) {
    if ev.mask & sys::FAN_Q_OVERFLOW != 0 {
        bump(&shared.counters.overflows);
    }
    let Some(fd) = sys::take_event_fd(ev.fd) else {
        return;
    };
    bump(&shared.counters.events);
    let Some(kind) = kind_of(&ev) else {
        // A permission event this guard never asks for.
        respond(shared, fd, Verdict::Allow);
        return;
    };
    let tid = ev.pid.max(0) as u32;
    let Some(task) = process::task(tid) else {
        // The thread was killed while it waited; nothing to decide.
        bump(&shared.counters.gone);
        respond(shared, fd, Verdict::Deny);
        return;
    };
    if task.tgid == shared.own_pid {
        // The guard's own process (the decider reading files, the daemon
        // writing its state) is never held: that could deadlock it.
        bump(&shared.counters.own_process);
        respond(shared, fd, Verdict::Allow);
        return;
    }
    let object = match sys::fstat(fd.as_fd()) {
        Ok(st) => ObjectId {
            dev: st.st_dev,
            ino: st.st_ino,
        },
        Err(_) => ObjectId { dev: 0, ino: 0 },
    };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .unwrap_or_else(|_| PathBuf::new());
    let mut learned = Learned::default();
    let g = shared.groups();
    let attribution = shared
        .marks()
        .attribute(&g, fd.as_fd(), object, &path, &mut learned);
    record_learned(shared, &learned);
    let targets = match attribution {
        Attribution::Stale => {
            respond(shared, fd, Verdict::Allow);
            return;
        }
        Attribution::Targets(targets) => Some(targets),
        Attribution::Unattributed => None,
    };
    // What the process is doing costs /proc reads: established only when
    // the decision depends on it (and for unattributed events, to inform).
    let intent = match (kind, &targets) {
        (RequestKind::OpenExec, _) => Intent::Exec,
        (_, Some(t)) if !needs_intent(t, kind, g.open_exec_perm) => Intent::Unknown,
        _ => process::intent(tid),
    };
    let tags = match &targets {
        Some(t) => {
            let tags = concerned(t, kind, intent, g.open_exec_perm);
            if tags.is_empty() {
                // Protected, but not against this kind of access.
                respond(shared, fd, Verdict::Allow);
                return;
            }
            tags
        }
        None => Vec::new(),
    };
    if let RequestKind::PreAccess { .. } = kind {
        let opener = process::start_time(task.tgid).map(|start| Opener {
            pid: task.tgid,
            start,
            object,
        });
        if opener.is_some_and(|o| shared.allowed().covers(&o, intent)) {
            // A read or write through an open this process was allowed.
            respond(shared, fd, Verdict::Allow);
            return;
        }
    }
    let request = Arc::new(Request {
        id: shared.next_id(),
        kind,
        intent,
        pid: task.tgid,
        tid,
        uid: task.uid,
        euid: task.euid,
        path,
        object,
        tags,
    });
    let quick =
        catch_unwind(AssertUnwindSafe(|| shared.decider.quick(&request))).unwrap_or_else(|_| {
            bump(&shared.counters.decider_panics);
            None
        });
    if let Some(verdict) = quick {
        bump(&shared.counters.quick_answers);
        remember(shared, &request, verdict);
        respond(shared, fd, verdict);
        return;
    }
    if stopping {
        bump(&shared.counters.shutdown_answers);
        let verdict = fallback(shared, &request);
        respond(shared, fd, verdict);
        return;
    }
    let deadline = Instant::now() + shared.options.decide_timeout;
    let id = request.id;
    let was_empty = {
        let mut pending = shared.pending();
        let was_empty = pending.is_empty();
        pending.insert(
            id,
            Pending {
                fd,
                request: request.clone(),
                deadline,
                held: false,
            },
        );
        was_empty
    };
    if was_empty {
        shared.pending_changed.notify_all();
    }
    if to_decider.send(request.clone()).is_err() {
        // The decider thread is gone: the fallback answers now.
        let verdict = fallback(shared, &request);
        finish(shared, id, verdict);
    }
}

pub(crate) fn record_learned(shared: &Shared, learned: &Learned) {
    let c = &shared.counters;
    if learned.learned + learned.left_out + learned.failures == 0 {
        return;
    }
    c.learned.fetch_add(learned.learned, Ordering::Relaxed);
    c.left_out.fetch_add(learned.left_out, Ordering::Relaxed);
    c.mark_failures
        .fetch_add(learned.failures, Ordering::Relaxed);
    c.marks
        .store(shared.marks().len() as u64, Ordering::Relaxed);
}

/// Runs `decide` for each request still pending, one at a time. Holds no
/// strong reference while deciding, so a `decide` that never returns keeps
/// nothing open (its requests are answered by the watchdog).
pub(crate) fn decider_loop(
    shared: Weak<Shared>,
    decider: Arc<dyn Decider>,
    requests: Receiver<Arc<Request>>,
) {
    while let Ok(request) = requests.recv() {
        {
            let Some(s) = shared.upgrade() else { return };
            if !s.pending().contains_key(&request.id) {
                continue;
            }
        }
        let answer = catch_unwind(AssertUnwindSafe(|| decider.decide(&request)));
        let Some(s) = shared.upgrade() else { return };
        match answer {
            Ok(Answer::Allow) => {
                finish(&s, request.id, Verdict::Allow);
            }
            Ok(Answer::Deny) => {
                finish(&s, request.id, Verdict::Deny);
            }
            Ok(Answer::Hold) => {
                // Counted even if `resolve_hold` already answered it (the
                // decider may hand the id out before it returns).
                bump(&s.counters.held);
                let mut pending = s.pending();
                if let Some(p) = pending.get_mut(&request.id) {
                    p.held = true;
                    p.deadline = Instant::now() + s.options.hold_timeout;
                }
                drop(pending);
                s.pending_changed.notify_all();
            }
            Err(_) => {
                bump(&s.counters.decider_panics);
                let verdict = fallback(&s, &request);
                finish(&s, request.id, verdict);
            }
        }
    }
}

/// Answers requests whose deadline passed: a late decision gets the
/// fallback, an expired hold is denied. At shutdown, answers everything
/// left by fallback. The decider's fallback runs outside the lock.
pub(crate) fn watchdog(shared: Arc<Shared>) {
    let mut pending = shared.pending();
    loop {
        let stopping = shared.closing.load(Ordering::SeqCst);
        let now = Instant::now();
        let due: Vec<RequestId> = pending
            .iter()
            .filter(|(_, p)| stopping || p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let taken: Vec<Pending> = due.iter().filter_map(|id| pending.remove(id)).collect();
        if !taken.is_empty() {
            drop(pending);
            for p in taken {
                let verdict = if stopping {
                    bump(&shared.counters.shutdown_answers);
                    fallback(&shared, &p.request)
                } else if p.held {
                    bump(&shared.counters.hold_timeouts);
                    Verdict::Deny
                } else {
                    bump(&shared.counters.decide_timeouts);
                    fallback(&shared, &p.request)
                };
                answer(&shared, p, verdict);
            }
            pending = shared.pending();
            continue;
        }
        if stopping {
            return;
        }
        let next = pending.values().map(|p| p.deadline).min();
        pending = match next {
            Some(deadline) => {
                let wait = deadline.saturating_duration_since(Instant::now());
                shared
                    .pending_changed
                    .wait_timeout(pending, wait)
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
            None => shared
                .pending_changed
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner()),
        };
    }
}
