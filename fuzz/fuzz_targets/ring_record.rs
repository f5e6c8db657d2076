//! The ring-buffer record decoder on arbitrary bytes: every record the
//! kernel (or a corrupted buffer) could hand the daemon.
//!
//! The decoder is the daemon's own module, compiled in here as it is in
//! the daemon (the `sentinel` crate is a binary, not a library). Checked
//! besides "no panic": a record shorter than its kind's layout is an
//! error, never a read past the end (ASan would catch that), and argv
//! never has more entries than the layout holds.
#![no_main]

#[allow(dead_code)]
#[path = "../../sentinel/src/decode.rs"]
mod decode;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(decode::KernelEvent::Exec { argv, .. }) = decode::decode(data) {
        assert!(argv.len() <= sentinel_common::ARGV_MAX);
    }
});
