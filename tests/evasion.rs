//! The evasion corpus, against the real host kernel and the embedded default
//! policy: every spelling, descriptor, link, rename and route to a protected
//! file that an agent could try, run as the watched test UID. Each read must
//! fail before a byte of the secret reaches the process (the tests look for
//! the secret in what the process printed, not only at its exit status),
//! with a deny verdict whose `path` is the path the kernel resolved; each
//! change to a protected persistence file must leave it as it was. The same
//! routes as an unwatched UID on its own files succeed.
//!
//! The routes are tried by `sentinel-evasion` (tests/evasion), the same tool
//! the qemu guest runs against BPF LSM (tests/guest/evasion.sh).

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const KEY_SECRET: &str = "SECRET-ED25519-KEY-5a3c";
const AWS_SECRET: &str = "AWS-SECRET-ACCESS-KEY-77f1";
const KEYS_ORIGINAL: &str = "ssh-ed25519 AAAA-ORIGINAL operator@host\n";
const RAN: &str = "TUNNEL-TOOL-RAN";

fn evasion_bin() -> PathBuf {
    let path = std::env::var_os("SENTINEL_EVASION_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/sentinel-evasion")
        });
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build --release -p sentinel-evasion` (cargo xtask test does)",
        path.display()
    );
    path
}

fn home_of(uid: u32) -> PathBuf {
    let out = Command::new("getent")
        .args(["passwd", &uid.to_string()])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    PathBuf::from(line.split(':').nth(5).expect("a home directory").trim())
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid)).unwrap();
}

/// A user's secrets and persistence files, made before the daemon starts
/// and put back as they were when the test ends.
struct Home {
    home: PathBuf,
    /// Writable by every test UID: links and copies go here.
    scratch: tempfile::TempDir,
    tool: PathBuf,
}

impl Home {
    fn new(uid: u32) -> Home {
        let home = home_of(uid);
        for dir in [".ssh", ".aws"] {
            let d = home.join(dir);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            chown(&d, uid);
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        let write = |rel: &str, content: &str, mode: u32| {
            let p = home.join(rel);
            std::fs::write(&p, content).unwrap();
            chown(&p, uid);
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(".ssh/id_ed25519", &format!("{KEY_SECRET}-{uid}\n"), 0o600);
        write(".aws/credentials", &format!("{AWS_SECRET}-{uid}\n"), 0o600);
        write(".ssh/authorized_keys", KEYS_ORIGINAL, 0o600);
        let scratch = scratch_dir();
        // A tunnelling tool at the path the default policy denies in the
        // kernel (a copy of echo, so a run prints its argument).
        let tool = PathBuf::from("/usr/local/bin/chisel");
        std::fs::copy("/bin/echo", &tool).unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        Home {
            home,
            scratch,
            tool,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.home.join(rel)
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for dir in [".ssh", ".aws"] {
            let _ = std::fs::remove_dir_all(self.home.join(dir));
        }
        let _ = std::fs::remove_file(&self.tool);
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Runs `sentinel-evasion ARGS` as `uid`.
fn route(uid: u32, args: &[String]) -> Output {
    let mut cmd = as_user(uid, evasion_bin().to_str().unwrap());
    cmd.args(args);
    run(cmd)
}

/// Runs a shell line as `uid` with `$EVASION` set to the tool.
fn shell(uid: u32, line: &str) -> Output {
    let mut cmd = as_user(uid, "/bin/bash");
    cmd.env("EVASION", evasion_bin()).args(["-c", line]);
    run(cmd)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The newest `seq` in the stream.
fn last_seq(daemon: &Daemon) -> u64 {
    daemon
        .events()
        .iter()
        .filter_map(|e| e["seq"].as_u64())
        .max()
        .unwrap_or(0)
}

/// Waits for a deny verdict after `since` on one of `paths`.
fn deny_after(daemon: &Daemon, since: u64, kinds: &[&str], paths: &[String], what: &str) -> Value {
    daemon.wait_for(what, |e| {
        e["seq"].as_u64().unwrap_or(0) > since
            && kinds.contains(&e["kind"].as_str().unwrap_or(""))
            && e["verdict"]["action"] == "deny"
            && paths.iter().any(|p| e["path"] == p.as_str())
    })
}

/// One read route: it prints nothing of the secret, fails, and is denied
/// on the object's resolved path.
fn assert_read_refused(
    daemon: &Daemon,
    name: &str,
    paths: &[String],
    secret: &str,
    attempt: impl FnOnce() -> Output,
) {
    let since = last_seq(daemon);
    let out = attempt();
    let all = text(&out);
    assert!(
        !all.contains(secret),
        "{name}: the secret reached the process: {all}"
    );
    assert!(!out.status.success(), "{name}: the read succeeded: {all}");
    // Refused with EPERM before the open completed (BPF LSM or the
    // fanotify file guard), not killed after it.
    assert!(
        out.status.code().is_some() && all.contains("Operation not permitted"),
        "{name}: not refused with EPERM ({:?}): {all}",
        out.status
    );
    let ev = deny_after(daemon, since, &["open"], paths, name);
    assert_eq!(ev["verdict"]["enforced"], true, "{name}: {ev}");
}

#[test]
fn every_route_to_a_protected_key_is_refused_before_a_byte_is_read() {
    require_environment();
    let _lock = kernel_lock();
    let h = Home::new(WATCHED_UID);
    let key = s(&h.path(".ssh/id_ed25519"));
    let creds = s(&h.path(".aws/credentials"));
    let ssh = s(&h.path(".ssh"));
    let secret = format!("{KEY_SECRET}-{WATCHED_UID}");
    std::os::unix::fs::symlink(&key, h.scratch("key-link")).unwrap();
    std::os::unix::fs::symlink(&ssh, h.scratch("ssh-dir")).unwrap();
    let daemon = Daemon::start(&[]);
    let key_paths = [key.clone()];

    let read = |path: &str| vec!["read".to_string(), path.to_string()];
    let home = s(&h.home);
    let spellings = [
        ("typed", read(&key)),
        ("dot", read(&format!("{home}/./.ssh/id_ed25519"))),
        ("double slashes", read(&format!("{home}//.ssh//id_ed25519"))),
        ("dot-dot", read(&format!("{home}/.ssh/../.ssh/id_ed25519"))),
        ("proc root", read(&format!("/proc/self/root{key}"))),
        ("symlink", read(&s(&h.scratch("key-link")))),
        (
            "symlinked directory",
            read(&s(&h.scratch("ssh-dir/id_ed25519"))),
        ),
        (
            "openat(dirfd)",
            vec!["read-at".into(), ssh.clone(), "id_ed25519".into()],
        ),
        (
            "/proc/self/fd/N/name",
            vec!["read-fd-dir".into(), ssh.clone(), "id_ed25519".into()],
        ),
        ("O_PATH reopened", vec!["read-opath".into(), key.clone()]),
    ];
    for (name, args) in &spellings {
        assert_read_refused(&daemon, name, &key_paths, &secret, || {
            route(WATCHED_UID, args)
        });
    }
    assert_read_refused(&daemon, "relative to cwd", &key_paths, &secret, || {
        shell(
            WATCHED_UID,
            &format!("cd {ssh} && \"$EVASION\" read ./id_ed25519"),
        )
    });
    assert_read_refused(&daemon, "tar of the directory", &key_paths, &secret, || {
        shell(
            WATCHED_UID,
            &format!("set -o pipefail; tar cf - -C {home} .ssh | cat"),
        )
    });
    assert_read_refused(&daemon, "find -exec cat", &key_paths, &secret, || {
        shell(WATCHED_UID, &format!("find {ssh} -type f -exec cat {{}} +"))
    });

    // A hardlink made by the agent is the same object under a new name.
    let hardlink = s(&h.scratch("creds-link"));
    let aws_secret = format!("{AWS_SECRET}-{WATCHED_UID}");
    assert_read_refused(
        &daemon,
        "hardlink",
        std::slice::from_ref(&hardlink),
        &aws_secret,
        || {
            shell(
                WATCHED_UID,
                &format!("ln {creds} {hardlink} && \"$EVASION\" read {hardlink}"),
            )
        },
    );

    // Moved away, the key is still the key, and is moved back. (Without BPF
    // LSM the rename itself completes before the kill lands: a read of the
    // new name fails, refused or already gone, and the key returns.)
    let moved = s(&h.scratch("moved-key"));
    let _ = shell(WATCHED_UID, &format!("mv {key} {moved}"));
    let out = route(WATCHED_UID, &read(&moved));
    assert!(
        !out.status.success() && !text(&out).contains(&secret),
        "moved then read: {}",
        text(&out)
    );
    eventually("the moved key was not moved back", || {
        std::fs::read_to_string(&key).is_ok_and(|c| c.contains(&secret))
            && !Path::new(&moved).exists()
    });

    // A 32-bit int 0x80 open never fires the 64-bit syscall tracepoints.
    assert_read_refused(&daemon, "int 0x80 open", &key_paths, &secret, || {
        route(WATCHED_UID, &["read-int80".into(), key.clone()])
    });

    // open_by_handle_at needs CAP_DAC_READ_SEARCH: a setuid-root copy of the
    // tool, run by the agent (its real UID stays the agent's).
    let suid = h.scratch("evasion-suid");
    std::fs::copy(evasion_bin(), &suid).unwrap();
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    assert_read_refused(&daemon, "open_by_handle_at", &key_paths, &secret, || {
        run({
            let mut c = as_user(WATCHED_UID, suid.to_str().unwrap());
            c.args(["read-handle", &key]);
            c
        })
    });

    // io_uring opens without the open syscalls: setting one up is fatal.
    let out = route(WATCHED_UID, &["io-uring".into()]);
    assert!(!out.status.success(), "io_uring was set up: {}", text(&out));
}

#[test]
fn the_same_routes_work_for_an_unwatched_uid_on_its_own_files() {
    require_environment();
    let _lock = kernel_lock();
    let h = Home::new(OTHER_UID);
    let key = s(&h.path(".ssh/id_ed25519"));
    let ssh = s(&h.path(".ssh"));
    let secret = format!("{KEY_SECRET}-{OTHER_UID}");
    let _daemon = Daemon::start(&[]);
    let home = s(&h.home);
    for args in [
        vec!["read".to_string(), format!("{home}/./.ssh//id_ed25519")],
        vec!["read-at".into(), ssh.clone(), "id_ed25519".into()],
        vec!["read-fd-dir".into(), ssh.clone(), "id_ed25519".into()],
        vec!["read-opath".into(), key.clone()],
        vec!["read-int80".into(), key.clone()],
    ] {
        let out = route(OTHER_UID, &args);
        assert!(
            out.status.success() && text(&out).contains(&secret),
            "{args:?}: {}",
            text(&out)
        );
    }
    let out = route(OTHER_UID, &["exec".into(), s(&h.tool), RAN.into()]);
    assert!(
        text(&out).contains(RAN),
        "the unwatched UID could not run the tool: {}",
        text(&out)
    );
    let out = route(OTHER_UID, &["io-uring".into()]);
    assert!(
        out.status.success(),
        "io_uring for the unwatched UID: {}",
        text(&out)
    );
}

#[test]
fn every_route_to_a_denied_binary_is_refused_before_it_runs() {
    require_environment();
    let _lock = kernel_lock();
    let h = Home::new(WATCHED_UID);
    let tool = s(&h.tool);
    std::os::unix::fs::symlink(&tool, h.scratch("tool-link")).unwrap();
    let script = h.scratch("tunnel.sh");
    std::fs::write(&script, format!("#!{tool}\n")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let daemon = Daemon::start(&[]);

    let routes: Vec<(&str, Vec<String>)> = vec![
        ("typed", vec!["exec".into(), tool.clone(), RAN.into()]),
        (
            "dots and slashes",
            vec!["exec".into(), "/usr/local//bin/./chisel".into(), RAN.into()],
        ),
        (
            "symlink",
            vec!["exec".into(), s(&h.scratch("tool-link")), RAN.into()],
        ),
        (
            "execveat(AT_EMPTY_PATH)",
            vec!["exec-fd".into(), tool.clone(), RAN.into()],
        ),
        (
            "/proc/self/fd/N",
            vec!["exec-proc-fd".into(), tool.clone(), RAN.into()],
        ),
        (
            "shebang interpreter",
            vec!["exec".into(), s(&script), RAN.into()],
        ),
    ];
    for (name, args) in &routes {
        let since = last_seq(&daemon);
        let out = route(WATCHED_UID, args);
        assert!(
            !text(&out).contains(RAN),
            "{name}: the tool ran: {}",
            text(&out)
        );
        let ev = daemon.wait_for(name, |e| {
            e["seq"].as_u64().unwrap_or(0) > since
                && e["kind"] == "exec"
                && e["verdict"]["action"] == "deny"
                && e["exe"] == tool.as_str()
        });
        assert_eq!(ev["verdict"]["rule"], "tunnelling-tools", "{name}: {ev}");
    }
    // Relative to the working directory.
    let since = last_seq(&daemon);
    let out = shell(
        WATCHED_UID,
        &format!("cd /usr/local/bin && \"$EVASION\" exec ./chisel {RAN}"),
    );
    assert!(
        !text(&out).contains(RAN),
        "relative: the tool ran: {}",
        text(&out)
    );
    daemon.wait_for("relative exec denied", |e| {
        e["seq"].as_u64().unwrap_or(0) > since
            && e["kind"] == "exec"
            && e["verdict"]["action"] == "deny"
    });
    // A copy in memory has no name to match: fileless execution is refused.
    let since = last_seq(&daemon);
    let out = route(
        WATCHED_UID,
        &["exec-memfd".into(), "/bin/echo".into(), RAN.into()],
    );
    assert!(!text(&out).contains(RAN), "memfd: it ran: {}", text(&out));
    let ev = daemon.wait_for("memfd exec denied", |e| {
        e["seq"].as_u64().unwrap_or(0) > since
            && e["kind"] == "exec"
            && e["verdict"]["action"] == "deny"
    });
    assert_eq!(ev["verdict"]["rule"], "fileless-exec", "{ev}");
    assert_eq!(
        ev["verdict"]["enforced"], true,
        "the kernel did not refuse it: {ev}"
    );
    assert!(
        ev["exe"].as_str().unwrap_or("").starts_with("/memfd:"),
        "{ev}"
    );
}

/// Waits until `check` holds (changes the daemon puts back take a moment
/// where the kernel could only kill after the fact).
fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn changes_to_a_protected_persistence_file_are_refused_or_undone() {
    require_environment();
    let _lock = kernel_lock();
    let h = Home::new(WATCHED_UID);
    let keys = h.path(".ssh/authorized_keys");
    let keys_s = s(&keys);
    let mode = std::fs::metadata(&keys).unwrap().mode() & 0o7777;
    let daemon = Daemon::start(&[]);
    let backdoor = "ssh-ed25519 AAAA-BACKDOOR attacker@evil";
    let routes: Vec<(&str, Vec<String>)> = vec![
        (
            "truncating open",
            vec!["write".into(), keys_s.clone(), backdoor.into()],
        ),
        (
            "append",
            vec!["append".into(), keys_s.clone(), backdoor.into()],
        ),
        ("truncate(2)", vec!["truncate".into(), keys_s.clone()]),
        (
            "rename over it",
            vec!["rename-over".into(), keys_s.clone(), backdoor.into()],
        ),
        ("unlink", vec!["unlink".into(), keys_s.clone()]),
        ("chmod", vec!["chmod".into(), keys_s.clone(), "666".into()]),
    ];
    for (name, args) in &routes {
        let since = last_seq(&daemon);
        let _ = route(WATCHED_UID, args);
        deny_after(
            &daemon,
            since,
            &["open", "file_change"],
            std::slice::from_ref(&keys_s),
            name,
        );
        eventually(&format!("{name}: authorized_keys was left changed"), || {
            std::fs::read_to_string(&keys).is_ok_and(|c| c == KEYS_ORIGINAL)
                && std::fs::metadata(&keys).is_ok_and(|m| m.mode() & 0o7777 == mode)
        });
    }
    // The relative and symlinked spellings of a rename over it.
    let link = h.scratch("ssh-link");
    std::os::unix::fs::symlink(h.path(".ssh"), &link).unwrap();
    for (name, line) in [
        (
            "relative rename",
            format!("cd {} && echo {backdoor} > ../x-{WATCHED_UID} ; mv ../x-{WATCHED_UID} ./authorized_keys", s(&h.path(".ssh"))),
        ),
        (
            "rename through a symlinked directory",
            format!("echo {backdoor} > {}/y ; mv {}/y {}/authorized_keys", s(h.scratch.path()), s(h.scratch.path()), s(&link)),
        ),
    ] {
        let since = last_seq(&daemon);
        let _ = shell(WATCHED_UID, &line);
        deny_after(&daemon, since, &["file_change"], std::slice::from_ref(&keys_s), name);
        eventually(&format!("{name}: authorized_keys was left changed"), || {
            std::fs::read_to_string(&keys).is_ok_and(|c| c == KEYS_ORIGINAL)
        });
    }
}
