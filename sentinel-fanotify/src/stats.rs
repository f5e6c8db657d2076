//! Counters of everything the guard did, dropped or could not do: nothing
//! is silent. `Counters` is shared by the threads; `Stats` is a snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// A snapshot of the guard's counters (`Guard::stats`).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
        pub struct Stats {
            $($(#[$doc])* pub $name: u64,)*
        }

        #[derive(Default)]
        pub(crate) struct Counters {
            $(pub $name: AtomicU64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Permission events read from the kernel.
    events,
    /// Answered Allow (by the decider, by relevance — the event did not
    /// concern the kind of access the target protects — or by fallback).
    allowed,
    /// Answered Deny (by the decider, a hold deadline, or fallback).
    denied,
    /// Events caused by the guard's own process, allowed without asking.
    own_process,
    /// Requests answered at once by `Decider::quick`.
    quick_answers,
    /// Requests the decider put on hold.
    held,
    /// Holds that reached their deadline and were denied.
    hold_timeouts,
    /// Requests the decider did not answer in time: answered by fallback.
    decide_timeouts,
    /// Times `decide` or `fallback` panicked (then: fallback, or Deny).
    decider_panics,
    /// Requests still pending at shutdown, answered by fallback.
    shutdown_answers,
    /// Events whose thread was already gone (killed while waiting): denied.
    gone,
    /// Answers the kernel refused (the event was no longer waiting).
    respond_errors,
    /// Event buffers or records the parser rejected (each event's
    /// descriptor was still answered: Deny).
    parse_errors,
    /// Objects (inodes) currently marked.
    marks,
    /// Marks the kernel refused.
    mark_failures,
    /// Objects not marked because the mark budget was spent.
    left_out,
    /// Objects marked after the start because they appeared under a
    /// protected directory or at a protected name.
    learned,
    /// FAN_Q_OVERFLOW: the kernel dropped notification events (only when
    /// FAN_UNLIMITED_QUEUE was refused).
    overflows,
    /// Mutations reported.
    mutations,
    /// Mutations dropped because the reader of `mutations()` fell behind.
    mutations_dropped,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
