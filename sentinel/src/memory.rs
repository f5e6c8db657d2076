//! Giving freed heap memory back to the kernel. The allocator keeps what
//! is freed for reuse, so without this the daemon's resident memory would
//! stay at its high-water mark for good: the start-up peak (loading the
//! eBPF programs parses the kernel's BTF, about 15 MiB freed at once) and
//! every burst since (a flood's queued events, a crowd of exited
//! processes).

/// Returns the allocator's free pages to the kernel (glibc `malloc_trim`).
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only takes the
    // allocator's own locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How often the daemon's tick gives freed memory back, in ticks.
pub const RELEASE_EVERY_TICKS: u64 = 10;
