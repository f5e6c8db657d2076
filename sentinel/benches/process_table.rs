//! Memory of the daemon's process table: 100,000 live watched processes
//! (each with an executable path, a comm and an agent), measured with a
//! counting allocator, plus the time of the two whole-table walks the
//! daemon makes (`descendants` for a tree kill, the once-a-second sweep).
//! Single runs on a shared machine: the bytes are exact, the times only
//! indicative. Run by `cargo xtask bench`.
#![allow(dead_code, unused_imports)]

#[path = "../src/decode.rs"]
mod decode;
#[path = "../src/paths.rs"]
mod paths;
#[path = "../src/process.rs"]
mod process;
#[path = "../src/procid.rs"]
mod procid;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PROCESSES: u32 = 100_000;

fn main() {
    // An empty directory as /proc: the table learns only from events.
    let proc_root =
        std::env::temp_dir().join(format!("sentinel-bench-proc-{}", std::process::id()));
    std::fs::create_dir_all(&proc_root).expect("a scratch /proc");
    let agents = HashMap::from([(2001u32, "testagent".to_string())]);
    let before = LIVE.load(Ordering::Relaxed);
    let mut table = process::ProcessTable::with_proc_root(agents, proc_root.clone());
    let at = procid::now_ktime();
    for pid in 2..PROCESSES + 2 {
        // A tree: each process's parent is an earlier one.
        let ppid = 1 + pid / 8;
        table.info(pid, 2001, "python3", at);
        table.on_exec(
            pid,
            ppid,
            2001,
            "python3",
            Some("/usr/lib/agent/bin/python3.11"),
            "/usr/lib/agent/bin/python3.11",
            at,
        );
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    let stats = table.stats();
    assert_eq!(stats.tracked, PROCESSES as usize);
    println!(
        "process table: {} live processes in {:.1} MiB of heap ({} bytes each; cap {} entries)",
        stats.tracked,
        bytes as f64 / (1024.0 * 1024.0),
        bytes / PROCESSES as usize,
        stats.capacity
    );
    let t = Instant::now();
    let tree = table.descendants(1);
    println!(
        "process table: descendants of the root of a {}-process tree: {} found in {:?}",
        PROCESSES,
        tree.len(),
        t.elapsed()
    );
    // Every entry is provisional here (the scratch /proc knows none of
    // them): the worst case, bounded by the sweep's budget.
    let t = Instant::now();
    table.sweep(false);
    println!(
        "process table: one sweep ({} /proc checks at most) of {} entries in {:?}",
        process::SWEEP_BUDGET,
        PROCESSES,
        t.elapsed()
    );
    let _ = std::fs::remove_dir_all(proc_root);
}
