//! Carrying out a kernel decision where it was taken: a hook that can
//! refuse the call returns EPERM (deny) or a restart code with the
//! process stopped (ask: resuming it restarts the call, which then finds
//! its approval); a tracepoint, which cannot refuse, kills (deny) or stops
//! (ask) the process before it returns to user space.

use sentinel_common::{counter, decision, kernel_action, ApprovalKey};

use crate::capture::{bump, send_signal};
use crate::decide::{take_approval, Decided};
use crate::filter::{hold, Current, SIGKILL, SIGSTOP};

pub const EPERM: i32 = 1;
/// The kernel restarts a call that returns this once the process handles
/// its signals (here: once it is resumed from the stop).
pub const ERESTARTNOINTR: i32 = 513;

/// From a hook that can refuse: `(return value, kernel_action)`.
#[inline(always)]
pub fn refuse(cur: &Current, d: &Decided, approval: &ApprovalKey) -> (i32, u32) {
    if !d.is_some() {
        return (0, kernel_action::NONE);
    }
    if d.decision == decision::ASK {
        if take_approval(cur, approval) {
            return (0, kernel_action::NONE);
        }
        bump(counter::KERNEL_DECISIONS);
        hold(cur);
        send_signal(SIGSTOP);
        return (-ERESTARTNOINTR, kernel_action::HELD);
    }
    bump(counter::KERNEL_DECISIONS);
    (-EPERM, kernel_action::DENIED)
}

/// From a tracepoint: returns the `kernel_action` taken.
#[inline(always)]
pub fn signal(cur: &Current, d: &Decided, approval: &ApprovalKey) -> u32 {
    if !d.is_some() {
        return kernel_action::NONE;
    }
    if d.decision == decision::ASK {
        if take_approval(cur, approval) {
            return kernel_action::NONE;
        }
        bump(counter::KERNEL_DECISIONS);
        hold(cur);
        send_signal(SIGSTOP);
        return kernel_action::HELD;
    }
    bump(counter::KERNEL_DECISIONS);
    send_signal(SIGKILL);
    kernel_action::KILLED
}
