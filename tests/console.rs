//! The operator's console against the real daemon and real peers:
//! - configuration errors name file:line and nothing starts; `config show`
//!   gives each value's origin; flags beat files;
//! - SIGHUP re-reads the configuration: mode and sinks change in place,
//!   restart-only keys are named, a broken file changes nothing;
//! - metrics pass `promtool check metrics` and are scraped by the real
//!   Prometheus, queried back over its HTTP API with PromQL;
//! - `sentinel top` in a real terminal (tmux): a held exec is approved
//!   from the keyboard and the process completes;
//! - `sentinel status` and `sentinel doctor` in words;
//! - long audit operations draw progress on a terminal, nothing in pipes.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn sentinel(args: &[&str]) -> Output {
    Command::new(sentinel_bin())
        .args(args)
        .output()
        .expect("running sentinel")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET over HTTP/1.0 (no chunking); the body.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

fn wait_until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_bad_configuration_names_file_and_line_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let main = dir.path().join("sentinel.toml");
    std::fs::write(&main, "mode = \"alert\"\n").unwrap();
    std::fs::create_dir(dir.path().join("sentinel.d")).unwrap();
    let overlay = dir.path().join("sentinel.d/20-siem.toml");
    std::fs::write(&overlay, "# SIEM\n\ncef_add = [\"gopher://siem:70\"]\n").unwrap();
    let out = sentinel(&[
        "run",
        "--config",
        main.to_str().unwrap(),
        "--uid",
        "2001",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(&format!(
            "sentinel: {}:3: cef: `gopher://siem:70`: unknown scheme",
            overlay.display()
        )),
        "{err}"
    );
    assert!(!state.exists(), "nothing may start on a bad configuration");

    // The same file, checked by `config show`, fails the same way.
    let out = sentinel(&["config", "show", "--config", main.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("20-siem.toml:3"));

    // A missing --config file is an error too (the default file is
    // optional, an explicit one is not).
    let out = sentinel(&["run", "--config", "/nonexistent/s.toml", "--uid", "2001"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("sentinel: --config: /nonexistent/s.toml does not exist"));
}

#[test]
fn config_show_prints_each_value_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("sentinel.toml");
    std::fs::write(
        &main,
        "mode = \"alert\"\njsonl = [\"/var/log/a.jsonl\"]\n\n[[agent]]\nname = \"claude\"\nuid = 2001\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("sentinel.d")).unwrap();
    std::fs::write(
        dir.path().join("sentinel.d/10-a.toml"),
        "mode = \"silent-deny\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sentinel.d/20-b.toml"),
        "\njsonl_add = [\"/var/log/b.jsonl\"]\n",
    )
    .unwrap();
    let out = sentinel(&[
        "config",
        "show",
        "--config",
        main.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["values"]["mode"]["value"], "silent-deny");
    assert!(v["values"]["mode"]["file"]
        .as_str()
        .unwrap()
        .ends_with("sentinel.d/10-a.toml"));
    assert_eq!(v["values"]["mode"]["line"], 1);
    let items = v["values"]["jsonl"]["items"].as_array().unwrap();
    assert_eq!(items[0]["line"], 2);
    assert!(items[1]["file"].as_str().unwrap().ends_with("20-b.toml"));
    assert_eq!(items[1]["line"], 2);
    assert_eq!(v["values"]["db"]["origin"], "default");
    let out = sentinel(&["config", "show", "--config", main.to_str().unwrap()]);
    let shown = text(&out.stdout);
    assert!(shown.contains("mode = \"silent-deny\""), "{shown}");
    assert!(shown.contains("10-a.toml:1"), "{shown}");
    assert!(
        shown.contains("agent = { name = \"claude\", uid = 2001 }"),
        "{shown}"
    );
}

/// Prometheus from Debian, scraping every second; stopped on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(
            bin.exists(),
            "prometheus is not installed: run `sudo cargo xtask setup`"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: sentinel\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("starting prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// An instant PromQL query over the HTTP API; the result vector.
    fn query(&self, promql: &str) -> Vec<Value> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let Some(body) = http_get(self.port, &format!("/api/v1/query?query={encoded}")) else {
            return Vec::new();
        };
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Turns BPF run-time statistics on for the test and restores the old
/// setting after.
struct BpfStats(String);

impl BpfStats {
    fn on() -> BpfStats {
        let path = "/proc/sys/kernel/bpf_stats_enabled";
        let old = std::fs::read_to_string(path).unwrap_or_else(|_| "0".into());
        std::fs::write(path, "1").expect("enabling kernel.bpf_stats_enabled");
        BpfStats(old.trim().to_string())
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write("/proc/sys/kernel/bpf_stats_enabled", &self.0);
    }
}

#[test]
fn metrics_pass_promtool_and_prometheus_scrapes_them() {
    require_environment();
    let _lock = kernel_lock();
    let _stats = BpfStats::on();
    let port = free_port();
    let mut daemon = Daemon::start_observing(&["--metrics", &port.to_string()]);
    let mark = marker("metrics");
    let out = sh_as(
        WATCHED_UID,
        &format!("echo {mark} > /dev/null; cat /etc/hostname > /dev/null"),
    );
    assert!(out.status.success());
    daemon.wait_for("an exec", |e| e["kind"] == "exec");

    let body = wait_until("metrics with an exec", 15, || {
        http_get(port, "/metrics").filter(|b| b.contains("sentinel_events_total{kind=\"exec\"}"))
    });
    for series in [
        "sentinel_events_lost_total ",
        "sentinel_verdicts_total{",
        "sentinel_audit_records_total ",
        "sentinel_audit_append_seconds_bucket{le=",
        "sentinel_held_actions 0",
        "sentinel_tracked_processes ",
        "sentinel_ringbuf_bytes_used ",
        "sentinel_bpf_program_run_seconds_total{program=\"sched_process_exec\"}",
    ] {
        assert!(body.contains(series), "{series} missing from:\n{body}");
    }
    // promtool, from the same Debian package, accepts the exposition.
    let mut promtool = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: run `sudo cargo xtask setup`");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    // Not an HTTP server for anything else.
    assert!(http_get(port, "/admin").is_some_and(|b| b.contains("not found")));
    // The watched agent does not get to read them (its UID is found in
    // the kernel's socket table).
    let agent = sh_as(
        WATCHED_UID,
        &format!("exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3"),
    );
    let said = text(&agent.stdout);
    assert!(said.starts_with("HTTP/1.1 403"), "{said}");
    assert!(!said.contains("sentinel_events_total"), "{said}");

    // The real Prometheus scrapes the daemon; PromQL over its HTTP API
    // returns the series with the job's label.
    let prometheus = Prometheus::start(port);
    let result = wait_until("Prometheus to scrape sentinel", 60, || {
        let r = prometheus.query("sentinel_events_total{kind=\"exec\",job=\"sentinel\"}");
        (!r.is_empty()).then_some(r)
    });
    let value: f64 = result[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(value >= 1.0, "{result:?}");
    let up = prometheus.query("up{job=\"sentinel\"}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let hist = wait_until("the append histogram", 30, || {
        let r = prometheus.query("sentinel_audit_append_seconds_count");
        (!r.is_empty()).then_some(r)
    });
    assert!(
        hist[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            >= 1.0
    );
    daemon.stop();
}

/// A tmux session running one command; killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, command: &str) -> Tmux {
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                name,
                "-x",
                "200",
                "-y",
                "50",
                command,
            ])
            .status()
            .expect("tmux is not installed: run `sudo cargo xtask setup`");
        assert!(ok.success());
        Tmux(name.to_string())
    }

    fn screen(&self) -> String {
        text(
            &Command::new("tmux")
                .args(["capture-pane", "-p", "-t", &self.0])
                .output()
                .unwrap()
                .stdout,
        )
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn wait_for(&self, needle: &str) -> String {
        wait_until(&format!("{needle:?} on the dashboard"), 20, || {
            let s = self.screen();
            s.contains(needle).then_some(s)
        })
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// A policy that holds one scratch binary for approval.
fn ask_policy(dir: &Path) -> (PathBuf, PathBuf) {
    let tool = dir.join("needs-approval");
    std::fs::copy("/bin/echo", &tool).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = dir.join("policy");
    std::fs::create_dir(&policy).unwrap();
    std::fs::write(
        policy.join("ask.toml"),
        format!(
            "[[rule]]\nname = \"ask-test-exec\"\nkind = \"exec\"\naction = \"ask\"\nbinary = [\"{}\"]\n",
            tool.display()
        ),
    )
    .unwrap();
    (tool, policy)
}

#[test]
fn top_in_a_real_terminal_approves_a_held_exec() {
    require_environment();
    let _lock = kernel_lock();
    let scratch = scratch_dir();
    let (tool, policy) = ask_policy(scratch.path());
    let mut daemon = Daemon::start(&["--policy", policy.to_str().unwrap()]);
    let session = format!("sentinel-top-{}", std::process::id());
    let top = Tmux::start(
        &session,
        &format!(
            "{} top --state-dir {}",
            sentinel_bin().display(),
            daemon.state_dir().display()
        ),
    );
    let screen = top.wait_for("Held actions");
    assert!(screen.contains("mode alert"), "{screen}");
    assert!(screen.contains("testagent"), "{screen}");

    // The agent floods 10,000 opens a second (paced in 5 ms steps) while
    // the operator works; timeout(1) stops it at the latest.
    let floods: Vec<Child> = vec![as_user(WATCHED_UID, "/usr/bin/timeout")
        .args([
            "40",
            "/usr/bin/python3",
            "-c",
            "import time\nstep = 0.005\nnext = time.monotonic()\nwhile True:\n    for _ in range(50):\n        open('/etc/hostname').close()\n    next += step\n    time.sleep(max(0.0, next - time.monotonic()))\n",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap()];
    let seen = |d: &Daemon| d.status()["events"]["seen"].as_u64().unwrap_or(0);
    let (flood_start, seen_before) = (Instant::now(), seen(&daemon));
    std::thread::sleep(Duration::from_secs(2));

    // Through `sh -c exec`: where the file guard holds an exec inside
    // execve, spawning the tool directly would wait for the approval.
    let mut child = as_user(WATCHED_UID, "/bin/sh")
        .args(["-c", &format!("exec {} approved-from-top", tool.display())])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    top.wait_for(&format!("held pid {pid}: exec {}", tool.display()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "held until approved");
    // The held pane has the focus when the dashboard opens: `a`.
    top.keys(&["a"]);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(out.trim(), "approved-from-top");
    top.wait_for("approved ");
    // The feed filters on the daemon's side, under the flood.
    top.keys(&["/"]);
    top.keys(&["-l", "/etc/hostname"]);
    top.keys(&["Enter"]);
    top.wait_for("filter: /etc/hostname");
    let screen = top.wait_for("open     testagent");
    assert!(screen.contains("/etc/hostname"), "{screen}");
    assert!(!screen.contains("lost the daemon"), "{screen}");
    let rate = (seen(&daemon) - seen_before) as f64 / flood_start.elapsed().as_secs_f64();
    for mut flood in floods {
        // SAFETY: signalling the timeout(1) this test started; it stops
        // its loop.
        unsafe { libc::kill(flood.id() as i32, libc::SIGTERM) };
        let _ = flood.wait();
    }
    eprintln!("the dashboard approved and filtered under a flood of {rate:.0} events/s");
    daemon.wait_for("the approval record", |e| {
        e["kind"] == "alert"
            && e["category"] == "approval"
            && str_field(e, "reason").contains(&format!("pid {pid}"))
            // Who approved: the dashboard's own process, by its UID.
            && str_field(e, "reason").contains("Approved by uid 0 (pid")
    });
    top.keys(&["q"]);
    wait_until("top to quit on q", 10, || (!top.alive()).then_some(()));
    daemon.stop();
}

#[test]
fn sighup_reloads_the_configuration_and_names_what_needs_a_restart() {
    require_environment();
    let _lock = kernel_lock();
    let dir = scratch_dir();
    let config = dir.path().join("sentinel.toml");
    let cef = dir.path().join("reloaded.cef");
    // The file's jsonl cannot be opened, but the harness's --jsonl flag
    // beats it, so the daemon starts.
    std::fs::write(
        &config,
        format!(
            "mode = \"alert\"\nmetrics = \"{}\"\njsonl = [\"/nonexistent-dir/never.jsonl\"]\n",
            free_port()
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start_observing(&["--config", config.to_str().unwrap()]);
    let mode = |d: &Daemon| {
        text(
            &sentinel(&[
                "mode",
                "get",
                "--state-dir",
                d.state_dir().to_str().unwrap(),
            ])
            .stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(mode(&daemon), "alert");

    std::fs::write(
        &config,
        format!(
            "mode = \"silent-allow\"\nmetrics = \"{}\"\njsonl = [\"/nonexistent-dir/never.jsonl\"]\ncef = [\"{}\"]\n",
            free_port(),
            cef.display()
        ),
    )
    .unwrap();
    let hup = |d: &Daemon| {
        // SAFETY: signalling the daemon this test started.
        assert_eq!(unsafe { libc::kill(d.pid() as i32, libc::SIGHUP) }, 0);
    };
    hup(&daemon);
    let ev = daemon.wait_for("the reload record", |e| {
        e["kind"] == "alert" && e["category"] == "config"
    });
    let reason = str_field(&ev, "reason");
    assert!(reason.contains("changed in place: mode, sinks"), "{reason}");
    assert!(
        reason.contains("needs a restart to take effect: metrics"),
        "{reason}"
    );
    assert_eq!(mode(&daemon), "silent-allow");
    // The new CEF sink receives what is recorded after the reload.
    sh_as(WATCHED_UID, "true");
    wait_until("CEF records in the reloaded sink", 15, || {
        std::fs::read_to_string(&cef)
            .ok()
            .filter(|t| t.contains("CEF:0|"))
    });

    // A broken file: nothing changes, and the record says where.
    std::fs::write(&config, "mode = \"lockdown\"\nmodee = 1\n").unwrap();
    hup(&daemon);
    let ev = daemon.wait_for("the refused reload", |e| {
        e["kind"] == "alert" && str_field(e, "reason").contains("was not reloaded")
    });
    assert!(
        str_field(&ev, "reason").contains(&format!("{}:2: unknown key `modee`", config.display())),
        "{ev}"
    );
    assert_eq!(mode(&daemon), "silent-allow");
    daemon.stop();
}

#[test]
fn status_and_doctor_speak_in_words() {
    require_environment();
    let _lock = kernel_lock();
    // Without a daemon, doctor loads the sensor itself for a moment.
    let state = tempfile::tempdir().unwrap();
    let out = sentinel(&["doctor", "--state-dir", state.path().to_str().unwrap()]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    for needle in [
        "ok    root",
        "ok    btf",
        "lsm_bpf",
        "cgroup2",
        "fanotify_perm",
        "reported by the sensor, loaded for this check",
        "exec     fanotify+sigkill",
        "to do better: boot a kernel with CONFIG_BPF_LSM=y",
        "connect  cgroup",
    ] {
        assert!(said.contains(needle), "{needle:?} not in:\n{said}");
    }
    let out = sentinel(&[
        "doctor",
        "--json",
        "--state-dir",
        state.path().to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["enforcement"].as_array().unwrap().len() >= 3);

    let mut daemon = Daemon::start_observing(&[]);
    // Now doctor asks the daemon: the same mechanisms, one source.
    let out = sentinel(&[
        "doctor",
        "--state-dir",
        daemon.state_dir().to_str().unwrap(),
    ]);
    assert!(text(&out.stdout).contains(&format!("the running daemon (pid {})", daemon.pid())));
    let out = sentinel(&[
        "status",
        "--state-dir",
        daemon.state_dir().to_str().unwrap(),
    ]);
    let said = text(&out.stdout);
    assert!(out.status.success());
    assert!(
        said.starts_with(&format!(
            "sentinel is running (pid {}) in mode alert",
            daemon.pid()
        )),
        "{said}"
    );
    for needle in [
        "testagent (uid 2001",
        "exec",
        "connect",
        "lost (ring buffer full)",
        "audit:",
    ] {
        assert!(said.contains(needle), "{needle:?} not in:\n{said}");
    }
    daemon.stop();
}

#[test]
fn audit_progress_shows_on_a_terminal_and_not_in_pipes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("audit.db");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    {
        let mut log = sentinel_audit::AuditLog::open(&db, &state).unwrap();
        let mut batch: Vec<sentinel_audit::Event> = (0..25_000)
            .map(|i| sentinel_audit::Event {
                seq: 0,
                ts: time::OffsetDateTime::now_utc(),
                body: sentinel_audit::Body::Lost { count: i },
                verdict: None,
            })
            .collect();
        log.append_batch(&mut batch).unwrap();
    }
    let args = [
        "audit",
        "verify",
        "--db",
        db.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let piped = sentinel(&args);
    assert!(piped.status.success(), "{piped:?}");
    assert!(
        piped.stderr.is_empty(),
        "progress in a pipe: {}",
        text(&piped.stderr)
    );
    assert!(text(&piped.stdout).starts_with("audit trail intact: 25000 records"));
    // On a terminal (script(1) gives it one) the bar is drawn.
    let line = format!("{} {}", sentinel_bin().display(), args.join(" "));
    let tty = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("script(1) from util-linux");
    let shown = text(&tty.stdout);
    assert!(
        shown.contains("verifying"),
        "no progress on a terminal: {shown:?}"
    );
    assert!(
        shown.contains("audit trail intact: 25000 records"),
        "{shown:?}"
    );
    let export = sentinel(&[
        "audit",
        "export",
        "--format",
        "jsonl",
        "--db",
        db.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(export.stderr.is_empty());
    assert_eq!(text(&export.stdout).lines().count(), 25_000);
}
