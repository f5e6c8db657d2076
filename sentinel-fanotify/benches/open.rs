//! What the fanotify guard adds to `open`+`close` (criterion; run as root:
//! `cargo bench -p sentinel-fanotify --bench open`, or `cargo xtask bench`).
//!
//! The guard runs in a helper process (this binary, re-executed), because
//! the guard always lets its own process through at once: the measuring
//! process is an ordinary other process, and the helper's decider allows
//! everything. Conditions, in this order:
//! - `unmarked/no_guard`: a file on the same filesystem, no guard;
//! - `unmarked/guard_running`: the same file, the guard running with a
//!   protected file elsewhere on that filesystem (which then has
//!   pre-content watchers, on 6.14+);
//! - `sibling/guard_running`: a file in the directory of a protected
//!   `Object` target (that directory carries the guard's name watch);
//! - `marked_allowed_by_decide/guard_running`: the protected file itself,
//!   allowed by `Decider::decide` (the whole round trip: reader thread,
//!   decider thread, answer);
//! - `marked_allowed_by_quick/guard_running`: the same, answered by
//!   `Decider::quick` on the reader thread (a process plainly unwatched);
//! - `unmarked/no_guard_after`: the first condition again, to show the
//!   run's drift.
//!
//! On a shared, noisy machine the drift between those sequential
//! conditions can exceed the effect, so the bench then prints a paired
//! measurement: 9 rounds, each timing 20,000 `open`+`close` of the
//! unmarked file and of the sibling with the guard off and on (order
//! alternating per round), and reports the median of the per-round ratios.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::Criterion;
use sentinel_fanotify::{Access, Answer, Decider, Guard, Options, Request, Scope, Target, Verdict};

const SERVE: &str = "SENTINEL_FANOTIFY_BENCH_GUARD";
const QUICK: &str = "SENTINEL_FANOTIFY_BENCH_QUICK";

/// Allows everything: on the decider thread, or at once on the reader
/// thread with `quick` (what a daemon does for plainly unwatched
/// processes).
struct AllowAll {
    quick: bool,
}

impl Decider for AllowAll {
    fn decide(&self, _: &Request) -> Answer {
        Answer::Allow
    }
    fn quick(&self, _: &Request) -> Option<Verdict> {
        self.quick.then_some(Verdict::Allow)
    }
}

/// The helper process: a guard protecting `<dir>/prot/marked`, until its
/// stdin closes.
fn serve(dir: &Path, quick: bool) {
    let guard = Guard::start(AllowAll { quick }, Options::default()).expect("starting the guard");
    let report = guard.set_targets(&[Target {
        path: dir.join("prot/marked"),
        scope: Scope::Object,
        access: Access::OPEN,
        tag: 1,
    }]);
    assert_eq!(report.marked, 2, "the file and its directory: {report:?}");
    println!("ready");
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let stats = guard.shutdown();
    eprintln!(
        "guard helper: {} permission events, {} allowed ({} by quick), {} by fallback",
        stats.events, stats.allowed, stats.quick_answers, stats.decide_timeouts
    );
}

/// Starts the helper and waits until its marks are in place.
fn start_helper(dir: &Path, quick: bool) -> Child {
    let exe = std::env::current_exe().expect("the bench binary");
    let mut child = Command::new(exe)
        .env(SERVE, dir)
        .env(QUICK, if quick { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the guard helper");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("reading the helper");
    assert_eq!(line.trim(), "ready", "the guard helper did not start");
    child
}

fn stop_helper(mut helper: Child) {
    drop(helper.stdin.take());
    let _ = helper.wait();
}

fn open_close(path: &Path) {
    drop(File::open(path).expect("opening the bench file"));
}

/// Nanoseconds per `open`+`close` over `n` iterations.
fn per_op(path: &Path, n: u32) -> f64 {
    let started = std::time::Instant::now();
    for _ in 0..n {
        open_close(path);
    }
    started.elapsed().as_nanos() as f64 / f64::from(n)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Guard off and on, alternating, paired per round.
fn interleaved(dir: &Path, unmarked: &Path, sibling: &Path) {
    const ROUNDS: usize = 9;
    const N: u32 = 20_000;
    let (mut off, mut on, mut sib_off, mut sib_on) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        let measure_off = |off: &mut Vec<f64>, sib_off: &mut Vec<f64>| {
            off.push(per_op(unmarked, N));
            sib_off.push(per_op(sibling, N));
        };
        if round % 2 == 0 {
            measure_off(&mut off, &mut sib_off);
        }
        let helper = start_helper(dir, true);
        on.push(per_op(unmarked, N));
        sib_on.push(per_op(sibling, N));
        stop_helper(helper);
        if round % 2 == 1 {
            measure_off(&mut off, &mut sib_off);
        }
    }
    let ratios = |a: &[f64], b: &[f64]| median(a.iter().zip(b).map(|(x, y)| x / y).collect());
    println!(
        "interleaved, {ROUNDS} rounds x {N}: unmarked off {:.0} ns, on {:.0} ns, on/off {:.3}; \
         sibling off {:.0} ns, on {:.0} ns, on/off {:.3}",
        median(off.clone()),
        median(on.clone()),
        ratios(&on, &off),
        median(sib_off.clone()),
        median(sib_on.clone()),
        ratios(&sib_on, &sib_off),
    );
}

fn main() {
    if let Some(dir) = std::env::var_os(SERVE) {
        serve(Path::new(&dir), std::env::var(QUICK).as_deref() == Ok("1"));
        return;
    }
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the fanotify bench places real marks: run it as root"
    );
    // Other developers' kernel tests share this kernel.
    let lock = File::create("/tmp/sentinel-kernel-tests.lock").expect("the kernel-test lock");
    lock.lock().expect("taking the kernel-test lock");
    let dir = tempfile::Builder::new()
        .prefix("sentinel-fanotify-bench-")
        .tempdir_in("/tmp")
        .expect("a scratch dir");
    let file = |rel: &str| -> PathBuf {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&p, "bench").expect("writing a bench file");
        p
    };
    let marked = file("prot/marked");
    let sibling = file("prot/sibling");
    let unmarked = file("plain/unmarked");

    let mut c = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    let mut g = c.benchmark_group("open_close");
    let mut bench = |name: &str, path: &Path| {
        g.bench_function(name, |b| b.iter(|| open_close(path)));
    };
    bench("unmarked/no_guard", &unmarked);
    let helper = start_helper(dir.path(), false);
    bench("unmarked/guard_running", &unmarked);
    bench("sibling/guard_running", &sibling);
    bench("marked_allowed_by_decide/guard_running", &marked);
    stop_helper(helper);
    let helper = start_helper(dir.path(), true);
    bench("marked_allowed_by_quick/guard_running", &marked);
    stop_helper(helper);
    bench("unmarked/no_guard_after", &unmarked);
    g.finish();
    c.final_summary();
    interleaved(dir.path(), &unmarked, &sibling);
}
