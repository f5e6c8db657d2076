//! Filling and emitting ring-buffer records, counting what could not be
//! delivered.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    generated::bpf_send_signal,
};
use sentinel_common::{exec_flags, kernel_action, EventHeader, ExecEvent, ARGV_MAX, ARG_LEN};

use crate::filter::Current;
use crate::maps::{COUNTERS, EVENTS};

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn send_signal(sig: u32) {
    unsafe { bpf_send_signal(sig) };
}

#[inline(always)]
pub fn fill_header(h: &mut EventHeader, event_kind: u32, cur: &Current) {
    h.kind = event_kind;
    h.pid = cur.tgid;
    h.tid = cur.tid;
    h.uid = cur.uid;
    h.ktime_ns = unsafe { bpf_ktime_get_ns() };
    h.action = kernel_action::NONE;
    h.rule_id = 0;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
}

#[inline(always)]
pub fn emit<T: 'static>(event: &T) {
    if EVENTS.output::<T>(event, 0).is_err() {
        bump(sentinel_common::counter::RINGBUF_FULL);
    }
}

/// Copies a user-space string; an unreadable one becomes empty.
#[inline(always)]
pub fn read_user_str(src: *const u8, dst: &mut [u8]) {
    if src.is_null() || unsafe { bpf_probe_read_user_str_bytes(src, dst) }.is_err() {
        dst[0] = 0;
    }
}

#[inline(always)]
pub fn read_argv(ev: &mut ExecEvent, argv: *const *const u8) {
    if argv.is_null() {
        return;
    }
    let mut i = 0usize;
    while i < ARGV_MAX {
        let arg: *const u8 =
            unsafe { bpf_probe_read_user(argv.add(i)) }.unwrap_or(core::ptr::null());
        if arg.is_null() {
            return;
        }
        match unsafe { bpf_probe_read_user_str_bytes(arg, &mut ev.argv[i]) } {
            Ok(s) if s.len() >= ARG_LEN - 1 => ev.flags |= exec_flags::ARGV_TRUNCATED,
            Ok(_) => {}
            Err(_) => ev.argv[i][0] = 0,
        }
        i += 1;
        ev.argc = i as u32;
    }
    let more: *const u8 =
        unsafe { bpf_probe_read_user(argv.add(ARGV_MAX)) }.unwrap_or(core::ptr::null());
    if !more.is_null() {
        ev.flags |= exec_flags::ARGV_TRUNCATED;
    }
}
