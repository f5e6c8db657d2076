//! Sentinel's kernel programs.
//!
//! What they own, and nothing more:
//! - [`filter`]: whether the current process is watched (its UID is in
//!   `WATCHED_UIDS`, or an ancestor was watched when it forked), leaving
//!   at once when it is not;
//! - [`capture`]: exec (bounded argv), open, connect, file-system changes,
//!   fork and exit into one ring buffer, counting what it could not take;
//! - [`resolve`]: the object a call is about, as the kernel resolved it —
//!   its path rebuilt from dentries and mounts, its identity, and whether
//!   it or an ancestor is protected ([`kernel`] follows the structures);
//! - [`decide`]: map lookups in what the daemon compiled from the policy;
//! - [`act`]: EPERM (or a held restart) from the LSM and cgroup hooks,
//!   SIGKILL/SIGSTOP from tracepoints where nothing can refuse;
//! - [`coalesce`]: folding a thread's repeated identical opens into the
//!   first record of their run, with a count;
//! - [`count`]: the IP bytes of sockets watched processes use;
//! - [`protect`]: watched processes may not signal, ptrace or `bpf()`
//!   against the sentinel, and its death is noted in the pinned state.
//!
//! The hooks, by concern: [`exec`], [`open`], [`mutate`], [`connect`],
//! [`lifecycle`]. The programs hold no policy of their own: every rule is
//! a map entry written by the daemon from the one policy engine.
#![no_std]
#![no_main]
// `atomic_xadd`: the bpfel target has no atomic types, but the
// instruction set has an atomic add (BPF_XADD).
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod act;
mod capture;
mod coalesce;
mod connect;
mod count;
mod decide;
mod exec;
mod filter;
mod kernel;
mod lifecycle;
mod maps;
mod mutate;
mod open;
mod protect;
mod resolve;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
