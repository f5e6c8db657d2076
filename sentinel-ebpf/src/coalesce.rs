//! Folding repeats: a thread that opens the same file the same way again
//! and again (a flood, or a busy loop) sends the first open of each run
//! in full and only a count for the rest, so a flood cannot fill the ring
//! buffer and hide what else the agent does.
//!
//! Only opens the kernel took no action on are folded, and only after the
//! decision ran on them: a denied, killed or held open is always sent on
//! its own, and nothing here changes what the kernel decides. A run is
//! keyed by the dentry and mount (the same name of the same object), the
//! flags, the rule that matched and `config::COALESCE_EPOCH`; it ends —
//! with a [`RepeatEvent`] carrying its count — when the thread opens
//! anything else, when it is older than `COALESCE_WINDOW_NS`, and when
//! the thread exits. The daemon collects runs left idle from `COALESCE`.

use sentinel_common::{
    config, counter, kind, CoalesceRun, OpenEvent, RepeatEvent, COALESCE_WINDOW_NS,
};

use crate::capture::{bump, bump_by, fill_header};
use crate::filter::{config as config_value, Current};
use crate::maps::{COALESCE, CONFIG, EVENTS};

/// True when `ev` (allowed, no kernel action) repeats the thread's run and
/// was counted into it: the caller sends nothing. Otherwise the previous
/// run, if it folded anything, is reported, `ev` starts a new run, and the
/// caller sends `ev`.
#[inline(always)]
pub fn fold(cur: &Current, dentry: u64, mnt: u64, ev: &OpenEvent) -> bool {
    let now = ev.header.ktime_ns;
    let epoch = config_value(config::COALESCE_EPOCH);
    if let Some(run) = COALESCE.get_ptr_mut(&cur.tid) {
        let run = unsafe { &mut *run };
        if run.dentry == dentry
            && run.mnt == mnt
            && run.flags == ev.flags
            && run.rule_id == ev.header.rule_id
            && run.epoch == epoch
            && run.pid == cur.tgid
            && now.wrapping_sub(run.run_ktime_ns) < COALESCE_WINDOW_NS
        {
            run.count += 1;
            run.last_ns = now;
            bump(counter::COALESCED);
            return true;
        }
        report(cur, run);
    }
    let run = CoalesceRun {
        dentry,
        mnt,
        epoch,
        run_ktime_ns: now,
        last_ns: now,
        count: 0,
        obj: ev.obj,
        flags: ev.flags,
        rule_id: ev.header.rule_id,
        pid: cur.tgid,
        uid: cur.uid,
    };
    let _ = COALESCE.insert(&cur.tid, &run, 0);
    false
}

/// Ends the thread's run: at an open that does not fold into it (the
/// caller sends that one itself), and at the thread's exit.
#[inline(always)]
pub fn end(cur: &Current) {
    if let Some(run) = COALESCE.get_ptr_mut(&cur.tid) {
        report(cur, unsafe { &mut *run });
        let _ = COALESCE.remove(&cur.tid);
    }
}

/// Sends the count of a run that folded something, and zeroes it so it
/// is never counted twice. When the ring buffer is full the folded opens
/// are counted as lost, like any record the kernel could not deliver.
#[inline(always)]
fn report(cur: &Current, run: &mut CoalesceRun) {
    if run.count == 0 {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<RepeatEvent>(0) else {
        bump_by(counter::RINGBUF_FULL, run.count);
        run.dentry = 0;
        run.count = 0;
        return;
    };
    let out = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut out.header, kind::REPEAT, cur);
    out.header.pid = run.pid;
    out.run_ktime_ns = run.run_ktime_ns;
    out.count = run.count;
    out.obj = run.obj;
    out.flags = run.flags;
    out._pad = 0;
    entry.submit(0);
    // Ended: the dentry no longer matches anything.
    run.dentry = 0;
    run.count = 0;
}

/// A watched process changed the file system: no open folds into a run
/// started before (a rename can give the same dentry another name).
#[inline(always)]
pub fn new_epoch() {
    if let Some(p) = CONFIG.get_ptr_mut(config::COALESCE_EPOCH) {
        unsafe {
            core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
                p, 1,
            )
        };
    }
}
