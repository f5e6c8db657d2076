//! Posture checks: what on this host would let an agent get around
//! Sentinel or outlast it. `sentinel scan [--json]` runs them once; the
//! daemon runs them periodically and alerts on every finding that appears
//! or changes (and notes those that are fixed).
//!
//! Each check is one function returning [`Finding`]s (severity, what,
//! why it matters, how to fix): agent-writable persistence points, risky
//! sudoers entries for the agent (judged by the policy's own sudo gate),
//! SUID/SGID binaries added since the baseline or sitting in writable
//! places, writable directories in root's PATH, LD_PRELOAD in
//! environments, a container runtime socket the agent can reach, the
//! sentinel's own files, and whether enforcement and auditing are fully
//! active.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sentinel_policy::{Decision, SudoGate};
use serde::{Deserialize, Serialize};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The check that found it.
    pub check: String,
    /// Stable key (check and subject): the same problem keeps its id.
    pub id: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    pub title: String,
    pub explanation: String,
    pub fix: String,
}

fn finding(
    check: &str,
    subject: &str,
    severity: &str,
    title: String,
    explanation: &str,
    fix: String,
) -> Finding {
    Finding {
        check: check.into(),
        id: format!("{check}:{subject}"),
        severity: severity.into(),
        title,
        explanation: explanation.into(),
        fix,
    }
}

/// A watched agent, as the checks need it.
#[derive(Debug, Clone)]
pub struct Agent {
    pub uid: u32,
    pub name: String,
    pub user: String,
    pub home: PathBuf,
    pub gids: Vec<u32>,
}

/// What the daemon says about itself (from `status`), if it runs.
#[derive(Debug, Clone, Default)]
pub struct SentinelFacts {
    pub status: Option<serde_json::Value>,
    pub db: PathBuf,
    pub state_dir: PathBuf,
    pub policy_dir: Option<PathBuf>,
}

/// Everything one scan looks at.
pub struct ScanContext {
    pub agents: Vec<Agent>,
    pub gate: SudoGate,
    pub sentinel: SentinelFacts,
    /// Where the SUID baseline is kept (root-only, next to the database).
    pub suid_baseline: PathBuf,
    /// Directories walked for SUID/SGID files.
    pub suid_roots: Vec<PathBuf>,
    /// Root's PATH as the daemon (or `sentinel scan`) sees it.
    pub root_path: String,
}

/// Directories walked for SUID/SGID files by default.
pub const SUID_ROOTS: &[&str] = &[
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/local",
    "/usr/lib",
    "/usr/libexec",
    "/opt",
    "/tmp",
    "/var/tmp",
    "/dev/shm",
    "/home",
    "/srv",
];

/// Runs every check.
pub fn scan(ctx: &ScanContext) -> Vec<Finding> {
    let mut out = Vec::new();
    persistence(ctx, &mut out);
    sudoers(ctx, &mut out);
    suid(ctx, &mut out);
    root_path(ctx, &mut out);
    ld_preload(&mut out);
    container_sockets(ctx, &mut out);
    sentinel_files(ctx, &mut out);
    enforcement(ctx, &mut out);
    out.sort_by(|a, b| {
        rank(&b.severity)
            .cmp(&rank(&a.severity))
            .then_with(|| a.id.cmp(&b.id))
    });
    out.dedup_by(|a, b| a.id == b.id);
    out
}

pub fn rank(severity: &str) -> u8 {
    sentinel_policy::playbook::severity_rank(severity)
}

/// Can `agent` write `meta`'s file or directory (by its mode bits)?
fn writable_by(meta: &std::fs::Metadata, agent: &Agent) -> bool {
    let mode = meta.mode();
    (meta.uid() == agent.uid && mode & 0o200 != 0)
        || (agent.gids.contains(&meta.gid()) && mode & 0o020 != 0)
        || mode & 0o002 != 0
}

/// Can the agent change `path`: write it, or replace it (its directory is
/// writable and not sticky-protected), or create it when it is missing?
fn changeable(path: &Path, agent: &Agent) -> Option<&'static str> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if writable_by(&meta, agent) {
            return Some("writable");
        }
    }
    let parent = path.parent()?;
    let pmeta = std::fs::metadata(parent).ok()?;
    let sticky = pmeta.mode() & 0o1000 != 0;
    let owns = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.uid() == agent.uid);
    if writable_by(&pmeta, agent) && (!sticky || pmeta.uid() == agent.uid || owns(path)) {
        return Some(if path.exists() {
            "replaceable"
        } else {
            "creatable"
        });
    }
    None
}

const SYSTEM_PERSISTENCE: &[&str] = &[
    "/etc/crontab",
    "/etc/cron.d",
    "/etc/cron.hourly",
    "/etc/cron.daily",
    "/etc/cron.weekly",
    "/etc/cron.monthly",
    "/var/spool/cron/crontabs",
    "/etc/anacrontab",
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/init.d",
    "/etc/rc.local",
    "/etc/ld.so.preload",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/profile",
    "/etc/profile.d",
    "/etc/bash.bashrc",
    "/etc/environment",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/root/.ssh/authorized_keys",
    "/root/.bashrc",
    "/root/.profile",
    "/etc/xdg/autostart",
    "/etc/update-motd.d",
    "/etc/pam.d",
];

const HOME_PERSISTENCE: &[&str] = &[
    ".bashrc",
    ".bash_profile",
    ".bash_login",
    ".profile",
    ".zshrc",
    ".zprofile",
    ".zshenv",
    ".config/fish/config.fish",
    ".config/systemd/user",
    ".config/autostart",
    ".ssh/authorized_keys",
    ".ssh/rc",
    ".pam_environment",
];

fn persistence(ctx: &ScanContext, out: &mut Vec<Finding>) {
    for agent in &ctx.agents {
        for path in SYSTEM_PERSISTENCE {
            let p = Path::new(path);
            if !p.exists() && !p.parent().is_some_and(Path::exists) {
                continue;
            }
            if let Some(how) = changeable(p, agent) {
                out.push(finding(
                    "persistence",
                    &format!("{}:{path}", agent.name),
                    "critical",
                    format!("{path} is {how} by agent {} (uid {})", agent.name, agent.uid),
                    "A system persistence point the agent can change runs its code as root or for every user, after the session and outside Sentinel's view.",
                    format!("chown root:root {path} && chmod go-w {path} (and its directory)"),
                ));
            }
        }
        let mut home_points = Vec::new();
        for rel in HOME_PERSISTENCE {
            let p = agent.home.join(rel);
            if p.exists() && changeable(&p, agent).is_some() {
                home_points.push(p.display().to_string());
            }
        }
        if !home_points.is_empty() {
            out.push(finding(
                "persistence",
                &format!("{}:home", agent.name),
                "warning",
                format!("agent {} can change {} start-up files in its home: {}", agent.name, home_points.len(), home_points.join(", ")),
                "Shell rc files, user units, autostart entries and authorized_keys run code at the next login or let someone in; the policy asks or denies these writes, but a file the agent owns can also be changed while Sentinel is not running.",
                "make them root-owned and read-only (chown root:root FILE; chmod 644 FILE), or keep the user-shell-rc-write and ssh-authorized-keys-write rules enabled".into(),
            ));
        }
        if let Ok(entries) = std::fs::read_dir("/var/spool/cron/crontabs") {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy() == agent.user {
                    out.push(finding(
                        "persistence",
                        &format!("{}:crontab", agent.name),
                        "warning",
                        format!("agent {} has a crontab ({})", agent.name, e.path().display()),
                        "A crontab keeps running the agent's commands on a schedule, whether or not it is supervised.",
                        format!("review it with `crontab -l -u {}`; remove it with `crontab -r -u {}`", agent.user, agent.user),
                    ));
                }
            }
        }
        python_startup(agent, out);
    }
}

/// `usercustomize.py` and `.pth` files run at every Python start.
fn python_startup(agent: &Agent, out: &mut Vec<Finding>) {
    let mut site_dirs: Vec<(PathBuf, bool)> = Vec::new();
    for base in [agent.home.join(".local/lib")] {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("python") {
                    site_dirs.push((e.path().join("site-packages"), true));
                }
            }
        }
    }
    for base in ["/usr/lib", "/usr/local/lib"] {
        if let Ok(entries) = std::fs::read_dir(base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("python3") {
                    site_dirs.push((e.path().join("dist-packages"), false));
                    site_dirs.push((e.path().join("site-packages"), false));
                }
            }
        }
    }
    for (dir, user_site) in site_dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        if !user_site {
            if let Ok(meta) = std::fs::metadata(&dir) {
                if writable_by(&meta, agent) {
                    out.push(finding(
                        "persistence",
                        &format!("{}:{}", agent.name, dir.display()),
                        "critical",
                        format!("{} is writable by agent {}", dir.display(), agent.name),
                        "A .pth file or sitecustomize.py dropped in a system site-packages runs in every Python process, root's included.",
                        format!("chown -R root:root {d} && chmod -R go-w {d}", d = dir.display()),
                    ));
                }
            }
            continue;
        }
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "usercustomize.py" || name == "sitecustomize.py" || name.ends_with(".pth") {
                out.push(finding(
                    "persistence",
                    &format!("{}:{}", agent.name, e.path().display()),
                    "warning",
                    format!("{} runs at every Python start of agent {}", e.path().display(), agent.name),
                    "usercustomize.py and .pth files in the user site-packages execute code whenever the agent (or anything it starts) runs Python.",
                    format!("inspect {p}; remove it if the agent did not install it on purpose", p = e.path().display()),
                ));
            }
        }
    }
}

/// sudoers lines, continuation lines joined, comments dropped, with the
/// file they came from.
fn sudoers_lines() -> Vec<(String, String)> {
    let mut files = vec![PathBuf::from("/etc/sudoers")];
    if let Ok(entries) = std::fs::read_dir("/etc/sudoers.d") {
        let mut extra: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                // sudo skips names with a dot or ending in ~.
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                !n.contains('.') && !n.ends_with('~')
            })
            .collect();
        extra.sort();
        files.extend(extra);
    }
    let mut out = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut pending = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            let full = full.trim();
            if full.is_empty() || (full.starts_with('#') && !full.starts_with("#include")) {
                continue;
            }
            out.push((file.display().to_string(), full.to_string()));
        }
    }
    out
}

fn sudoers(ctx: &ScanContext, out: &mut Vec<Finding>) {
    let groups = group_names();
    for (file, line) in sudoers_lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.starts_with("Defaults")
            || first.ends_with("_Alias")
            || first.starts_with('@')
            || first.starts_with("#include")
        {
            continue;
        }
        let Some((who, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let Some((_, spec)) = rest.split_once('=') else {
            continue;
        };
        for agent in &ctx.agents {
            let applies = who.split(',').map(str::trim).any(|w| {
                w == "ALL"
                    || w == agent.user
                    || w.strip_prefix('%')
                        .is_some_and(|g| groups.get(g).is_some_and(|gid| agent.gids.contains(gid)))
            });
            if !applies {
                continue;
            }
            // `(runas) TAG: cmd, cmd`
            let spec = spec.trim();
            let spec = match spec.strip_prefix('(') {
                Some(s) => s.split_once(')').map_or(s, |(_, r)| r),
                None => spec,
            };
            let nopasswd = spec.contains("NOPASSWD:");
            let commands: Vec<&str> = spec
                .split(',')
                .map(|c| {
                    let c = c.trim();
                    c.rsplit_once(':').map_or(c, |(_, r)| r).trim()
                })
                .filter(|c| !c.is_empty())
                .collect();
            for cmd in commands {
                let subject = format!("{}:{file}:{cmd}", agent.name);
                if cmd == "ALL" {
                    out.push(finding(
                        "sudoers",
                        &subject,
                        "critical",
                        format!("{file} lets agent {} run any command as root{}", agent.name, if nopasswd { " without a password" } else { "" }),
                        "Unrestricted sudo makes the agent root whenever it wants; only the sudo gate stands between it and the host.",
                        format!("give {} only the commands it needs (`{} ALL=(root) /usr/bin/systemctl restart app`), or none", agent.user, agent.user),
                    ));
                    continue;
                }
                let words: Vec<String> = cmd.split_whitespace().map(str::to_string).collect();
                let Some(binary) = words.first() else {
                    continue;
                };
                let verdict = ctx.gate.decide_command(binary, &words);
                if verdict.action == Decision::Deny {
                    out.push(finding(
                        "sudoers",
                        &subject,
                        "critical",
                        format!("{file} lets agent {} run `{cmd}` as root: {}", agent.name, verdict.reason),
                        "This command can start a shell or run other programs as root (GTFOBins), so the entry is as good as unrestricted sudo.",
                        format!("remove `{cmd}` from {file} (edit with visudo)"),
                    ));
                } else if nopasswd {
                    out.push(finding(
                        "sudoers",
                        &subject,
                        "info",
                        format!("{file} lets agent {} run `{cmd}` as root without a password", agent.name),
                        "Passwordless sudo rules run without a human in the loop; the sudo gate still judges each use.",
                        "keep the list short and the commands exact (with their arguments)".into(),
                    ));
                }
            }
        }
    }
}

fn group_names() -> BTreeMap<String, u32> {
    std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.to_string();
            let gid = f.nth(1)?.parse().ok()?;
            Some((name, gid))
        })
        .collect()
}

/// Supplementary and primary groups of `user` (from /etc/group, /etc/passwd).
pub fn groups_of(user: &str, primary: u32) -> Vec<u32> {
    let mut gids = vec![primary];
    for line in std::fs::read_to_string("/etc/group")
        .unwrap_or_default()
        .lines()
    {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[3].split(',').any(|m| m == user) {
            if let Ok(gid) = f[2].parse() {
                gids.push(gid);
            }
        }
    }
    gids.sort_unstable();
    gids.dedup();
    gids
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SuidBaseline {
    taken: String,
    files: BTreeSet<String>,
}

const WRITABLE_PLACES: &[&str] = &["/tmp/", "/var/tmp/", "/dev/shm/", "/home/", "/srv/"];

fn suid(ctx: &ScanContext, out: &mut Vec<Finding>) {
    let mut found = BTreeSet::new();
    for root in &ctx.suid_roots {
        let Ok(meta) = std::fs::symlink_metadata(root) else {
            continue;
        };
        let dev = meta.dev();
        let mut stack = vec![(root.clone(), 0u32)];
        let mut seen = 0usize;
        while let Some((dir, depth)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                seen += 1;
                if seen > 300_000 {
                    break;
                }
                let Ok(m) = e.metadata() else { continue };
                if m.dev() != dev {
                    continue;
                }
                if m.is_dir() && !m.file_type().is_symlink() {
                    if depth < 8 {
                        stack.push((e.path(), depth + 1));
                    }
                } else if m.is_file() && m.mode() & 0o6000 != 0 {
                    found.insert(e.path().display().to_string());
                }
            }
        }
    }
    for path in &found {
        if WRITABLE_PLACES.iter().any(|p| path.starts_with(p)) {
            out.push(finding(
                "suid",
                &format!("writable-place:{path}"),
                "critical",
                format!("SUID/SGID binary in a user-writable place: {path}"),
                "A set-id binary under /tmp, /home or another writable tree is how a local user leaves a root back door.",
                format!("chmod ug-s {path} (or remove it) and find out who made it"),
            ));
        }
    }
    let baseline: Option<SuidBaseline> = std::fs::read(&ctx.suid_baseline)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    match baseline {
        None => {
            let b = SuidBaseline {
                taken: crate::clock::rfc3339(time::OffsetDateTime::now_utc()),
                files: found.clone(),
            };
            if let Some(parent) = ctx.suid_baseline.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let written = serde_json::to_vec_pretty(&b)
                .map_err(std::io::Error::other)
                .and_then(|bytes| std::fs::write(&ctx.suid_baseline, bytes))
                .and_then(|()| {
                    std::fs::set_permissions(
                        &ctx.suid_baseline,
                        std::fs::Permissions::from_mode(0o600),
                    )
                });
            if let Err(e) = written {
                out.push(finding(
                    "suid",
                    "baseline",
                    "warning",
                    format!(
                        "the SUID baseline could not be stored in {}: {e}",
                        ctx.suid_baseline.display()
                    ),
                    "Without a baseline, SUID/SGID binaries added later cannot be told apart.",
                    "run the scan as root with a writable database directory".into(),
                ));
            }
        }
        Some(b) => {
            for path in found.difference(&b.files) {
                out.push(finding(
                    "suid",
                    &format!("new:{path}"),
                    "critical",
                    format!("SUID/SGID binary added since the baseline of {}: {path}", b.taken),
                    "A new set-id binary runs with its owner's rights for whoever starts it; packages add them rarely and attackers often.",
                    format!("check which package owns it (dpkg -S {path}); chmod ug-s {path} if none; delete {} to take a new baseline", ctx.suid_baseline.display()),
                ));
            }
        }
    }
}

/// Root's PATH from the daemon's environment, /etc/environment,
/// ENV_SUPATH in /etc/login.defs and sudo's secure_path.
fn root_path_entries(ctx: &ScanContext) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = ctx
        .root_path
        .split(':')
        .map(|d| (d.to_string(), "root's environment".to_string()))
        .collect();
    let mut add = |value: &str, from: &str| {
        for d in value.trim_matches('"').split(':') {
            out.push((d.to_string(), from.to_string()));
        }
    };
    for line in std::fs::read_to_string("/etc/environment")
        .unwrap_or_default()
        .lines()
    {
        if let Some(v) = line.trim().strip_prefix("PATH=") {
            add(v, "/etc/environment");
        }
    }
    for line in std::fs::read_to_string("/etc/login.defs")
        .unwrap_or_default()
        .lines()
    {
        if let Some(v) = line.trim().strip_prefix("ENV_SUPATH") {
            add(
                v.trim().trim_start_matches("PATH="),
                "/etc/login.defs ENV_SUPATH",
            );
        }
    }
    for (file, line) in sudoers_lines() {
        if let Some(pos) = line.find("secure_path=") {
            add(
                line[pos + "secure_path=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or(""),
                &file,
            );
        }
    }
    out
}

fn root_path(ctx: &ScanContext, out: &mut Vec<Finding>) {
    for (dir, from) in root_path_entries(ctx) {
        if dir.is_empty() || !dir.starts_with('/') {
            out.push(finding(
                "path",
                &format!("relative:{dir}"),
                "critical",
                format!("root's PATH ({from}) has a relative entry `{dir}`"),
                "A relative or empty PATH entry makes root run whatever is in the current directory under a common name.",
                format!("remove `{dir}` from the PATH in {from}"),
            ));
            continue;
        }
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue;
        };
        let world = meta.mode() & 0o002 != 0;
        let by_agent: Vec<&str> = ctx
            .agents
            .iter()
            .filter(|a| writable_by(&meta, a))
            .map(|a| a.name.as_str())
            .collect();
        if world || !by_agent.is_empty() {
            out.push(finding(
                "path",
                &dir,
                "critical",
                format!(
                    "{dir} in root's PATH ({from}) is writable by {}",
                    if world { "everyone".to_string() } else { format!("agent {}", by_agent.join(", ")) }
                ),
                "A program dropped there under a common name (ls, git, python3) runs as root the next time root types it.",
                format!("chown root:root {dir} && chmod 755 {dir}"),
            ));
        }
    }
}

fn ld_preload(out: &mut Vec<Finding>) {
    if let Ok(text) = std::fs::read_to_string("/etc/ld.so.preload") {
        let libs: Vec<&str> = text.split_whitespace().collect();
        if !libs.is_empty() {
            out.push(finding(
                "ld-preload",
                "/etc/ld.so.preload",
                "critical",
                format!("/etc/ld.so.preload loads {} into every process", libs.join(", ")),
                "ld.so.preload injects a library into every program on the host, root's and the sentinel's included; it is a classic rootkit hook.",
                "make sure every listed library is expected (dpkg -S LIB); empty the file otherwise".into(),
            ));
        }
    }
    for line in std::fs::read_to_string("/etc/environment")
        .unwrap_or_default()
        .lines()
    {
        if line.trim_start().starts_with("LD_PRELOAD=") {
            out.push(finding(
                "ld-preload",
                "/etc/environment",
                "critical",
                format!("/etc/environment sets {}", line.trim()),
                "LD_PRELOAD in the login environment injects a library into every session's programs.",
                "remove the LD_PRELOAD line from /etc/environment".into(),
            ));
        }
    }
    let mut by_value: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            for var in env.split(|b| *b == 0) {
                if let Some(v) = var.strip_prefix(b"LD_PRELOAD=") {
                    if !v.is_empty() {
                        by_value
                            .entry(String::from_utf8_lossy(v).into_owned())
                            .or_default()
                            .push(pid);
                    }
                }
            }
        }
    }
    for (value, pids) in by_value {
        out.push(finding(
            "ld-preload",
            &format!("process:{value}"),
            "warning",
            format!("{} running process(es) have LD_PRELOAD={value} (e.g. pid {})", pids.len(), pids[0]),
            "A preloaded library sees and can change everything those processes do.",
            format!("find out what set it (cat /proc/{}/environ); restart them without it if unexpected", pids[0]),
        ));
    }
}

const CONTAINER_SOCKETS: &[&str] = &[
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/run/podman/podman.sock",
    "/var/run/crio/crio.sock",
];

fn container_sockets(ctx: &ScanContext, out: &mut Vec<Finding>) {
    for sock in CONTAINER_SOCKETS {
        let Ok(meta) = std::fs::metadata(sock) else {
            continue;
        };
        for agent in &ctx.agents {
            if writable_by(&meta, agent) {
                out.push(finding(
                    "docker-socket",
                    &format!("{}:{sock}", agent.name),
                    "critical",
                    format!("agent {} can use the container runtime socket {sock}", agent.name),
                    "Whoever can talk to the container runtime can start a privileged container with the host's root filesystem mounted: that is root.",
                    format!("remove {} from the socket's group (gpasswd -d {} GROUP), or chmod 660 {sock}", agent.user, agent.user),
                ));
            }
        }
    }
}

fn sentinel_files(ctx: &ScanContext, out: &mut Vec<Finding>) {
    let facts = &ctx.sentinel;
    let mut check = |path: &Path, what: &str, private: bool| {
        let Ok(meta) = std::fs::metadata(path) else {
            return;
        };
        let shown = path.display();
        let mode = meta.mode() & 0o7777;
        let bad_owner = meta.uid() != 0;
        let bad_mode = if private {
            mode & 0o077 != 0
        } else {
            mode & 0o022 != 0
        };
        if bad_owner || bad_mode {
            out.push(finding(
                "sentinel-files",
                &path.display().to_string(),
                "critical",
                format!("the sentinel's {what} {shown} is owned by uid {} with mode {mode:o}", meta.uid()),
                "If an agent can change the sentinel's binary, policy, database or anchors, it can switch Sentinel off or rewrite the record.",
                format!(
                    "chown root:root {shown} && chmod {} {shown}",
                    if private { if meta.is_dir() { "700" } else { "600" } } else if meta.is_dir() { "755" } else { "755 (binary) / 644 (file)" }
                ),
            ));
        }
    };
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        // A development build under a user's target/ directory is not an
        // installed sentinel; report only installed locations.
        if !exe.to_string_lossy().contains("/target/") {
            check(&exe, "binary", false);
            if let Some(dir) = exe.parent() {
                check(dir, "binary's directory", false);
            }
        }
    }
    if let Some(dir) = facts.db.parent() {
        check(dir, "database directory", true);
    }
    check(&facts.db, "audit database", true);
    check(&facts.state_dir, "state directory", false);
    if let Some(policy) = &facts.policy_dir {
        check(policy, "policy directory", false);
        if let Ok(entries) = std::fs::read_dir(policy) {
            for e in entries.flatten() {
                check(&e.path(), "policy file", false);
            }
        }
    }
}

fn enforcement(ctx: &ScanContext, out: &mut Vec<Finding>) {
    let Some(status) = &ctx.sentinel.status else {
        out.push(finding(
            "enforcement",
            "not-running",
            "critical",
            "the sentinel daemon is not running".into(),
            "Nothing is watched, enforced or recorded while the daemon is down.",
            "start it: sudo sentinel run --agent NAME=UID (or enable its service)".into(),
        ));
        return;
    };
    if status["attached"].as_array().is_none_or(Vec::is_empty) {
        out.push(finding(
            "enforcement",
            "detached",
            "critical",
            "the daemon runs with no kernel programs attached".into(),
            "Without its programs the daemon sees nothing and enforces nothing.",
            "restart the daemon and read its log for the load error".into(),
        ));
    }
    if let Some(why) = status["lsm_unavailable"].as_str() {
        out.push(finding(
            "enforcement",
            "no-bpf-lsm",
            "info",
            format!("BPF LSM is not in use ({why}): exec and open are enforced by SIGKILL at the syscall"),
            "The fallback kills the process before it can use a denied file or program, but an O_TRUNC or O_CREAT has already taken effect.",
            "boot with `lsm=...,bpf` (CONFIG_BPF_LSM=y) to refuse calls with EPERM before they happen".into(),
        ));
    }
    if status["mode"] == "silent-allow" {
        out.push(finding(
            "enforcement",
            "mode",
            "warning",
            "the daemon is in silent-allow (learning) mode".into(),
            "In silent-allow unmatched actions pass without an alert.",
            "sentinel mode set alert (or silent-deny once the policy is complete)".into(),
        ));
    }
    let lost = status["events"]["lost"].as_u64().unwrap_or(0);
    if lost > 0 {
        out.push(finding(
            "enforcement",
            "lost-events",
            "warning",
            format!("{lost} kernel events were lost (ring buffer full)"),
            "Lost events were neither decided in userspace nor recorded.",
            "raise --ring-buffer-bytes".into(),
        ));
    }
    // `WriterHealth { key_write_errors: 0, ... }`: any non-zero count.
    let health = status["audit"]["health"].as_str().unwrap_or("");
    let failing = health
        .split("errors: ")
        .skip(1)
        .any(|rest| !rest.starts_with('0'));
    if failing {
        out.push(finding(
            "enforcement",
            "audit",
            "critical",
            format!("the audit chain is not healthy ({health})"),
            "Events the chain fails to take are not on the record.",
            "check the database's disk and `sentinel audit verify`".into(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writability_follows_mode_bits_and_sticky_directories() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent {
            uid: 4242,
            name: "a".into(),
            user: "a".into(),
            home: dir.path().into(),
            gids: vec![4242],
        };
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(changeable(&f, &agent), None);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o646)).unwrap();
        assert_eq!(changeable(&f, &agent), Some("writable"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        assert_eq!(changeable(&f, &agent), Some("replaceable"));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(
            changeable(&f, &agent),
            None,
            "sticky: only the owner may replace"
        );
    }
}

/// The findings last alerted, kept next to the database so a finding that
/// appeared while the daemon was down still alerts.
pub struct Tracker {
    path: PathBuf,
    previous: Option<BTreeMap<String, Finding>>,
}

/// A change between two scans.
pub struct Change {
    pub severity: String,
    pub reason: String,
}

impl Tracker {
    pub fn open(path: PathBuf) -> Tracker {
        let previous = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        Tracker { path, previous }
    }

    /// New and changed findings (not `info`) and fixed ones, against the
    /// last scan; remembers this one.
    pub fn update(&mut self, findings: &[Finding]) -> Vec<Change> {
        let now: BTreeMap<String, Finding> =
            findings.iter().map(|f| (f.id.clone(), f.clone())).collect();
        let before = self.previous.take().unwrap_or_default();
        let mut changes = Vec::new();
        for (id, f) in &now {
            if f.severity == "info" || before.get(id) == Some(f) {
                continue;
            }
            let what = if before.contains_key(id) {
                "changed"
            } else {
                "new"
            };
            changes.push(Change {
                severity: f.severity.clone(),
                reason: format!("posture ({what}, {}): {}; fix: {}", f.check, f.title, f.fix),
            });
        }
        for (id, f) in &before {
            if !now.contains_key(id) && f.severity != "info" {
                changes.push(Change {
                    severity: "info".into(),
                    reason: format!("posture (fixed, {}): {}", f.check, f.title),
                });
            }
        }
        let saved = serde_json::to_vec(&now)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&self.path, b))
            .and_then(|()| {
                std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600))
            });
        if let Err(e) = saved {
            tracing::warn!(
                "saving the posture findings to {}: {e}",
                self.path.display()
            );
        }
        self.previous = Some(now);
        changes
    }
}

/// The watched agents as the checks see them.
pub fn agents(named: &BTreeMap<u32, String>) -> Vec<Agent> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    named
        .iter()
        .map(|(uid, name)| {
            let entry = passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 7 && f[2].parse::<u32>().ok() == Some(*uid)).then(|| {
                    (
                        f[0].to_string(),
                        f[3].parse::<u32>().unwrap_or(*uid),
                        f[5].to_string(),
                    )
                })
            });
            let (user, gid, home) = entry.unwrap_or((name.clone(), *uid, String::new()));
            Agent {
                uid: *uid,
                name: name.clone(),
                gids: groups_of(&user, gid),
                user,
                home: PathBuf::from(home),
            }
        })
        .collect()
}

/// `sentinel scan` arguments.
#[derive(clap::Args)]
pub struct ScanArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// An agent UID to check for (default: the running daemon's agents).
    #[arg(long = "uid", value_name = "UID")]
    pub uids: Vec<u32>,
    /// The policy whose sudo gate judges sudoers entries (default: the
    /// daemon's, else the embedded defaults).
    #[arg(long, value_name = "DIR")]
    pub policy: Option<PathBuf>,
    #[arg(long, default_value = crate::config::DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
    /// The audit database (the SUID baseline is kept beside it).
    #[arg(long, default_value = crate::config::DEFAULT_DB)]
    pub db: PathBuf,
}

/// `sentinel scan`: exit 0 when nothing worse than `info` was found, 1
/// otherwise, 2 when it cannot run.
pub fn run_cli(args: ScanArgs) -> std::process::ExitCode {
    let status = crate::control::call(&args.state_dir, &crate::control::Request::Status)
        .ok()
        .filter(|s| s["ok"] == true);
    let mut named: BTreeMap<u32, String> = BTreeMap::new();
    for uid in &args.uids {
        let name = crate::preflight::user_name(*uid).unwrap_or_else(|_| uid.to_string());
        named.insert(*uid, name);
    }
    if named.is_empty() {
        if let Some(agents) = status.as_ref().and_then(|s| s["agents"].as_object()) {
            for (uid, name) in agents {
                if let (Ok(uid), Some(name)) = (uid.parse(), name.as_str()) {
                    named.insert(uid, name.to_string());
                }
            }
        }
    }
    let policy_dir = args.policy.clone().or_else(|| {
        status
            .as_ref()
            .and_then(|s| s["policy_dir"].as_str().map(PathBuf::from))
    });
    let policy = match crate::daemon::load_policy(policy_dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sentinel: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let ctx = ScanContext {
        agents: agents(&named),
        gate: policy.sudo().clone(),
        sentinel: SentinelFacts {
            status,
            db: args.db.clone(),
            state_dir: args.state_dir.clone(),
            policy_dir,
        },
        suid_baseline: suid_baseline_path(&args.db),
        suid_roots: SUID_ROOTS.iter().map(PathBuf::from).collect(),
        root_path: std::env::var("PATH").unwrap_or_default(),
    };
    let findings = scan(&ctx);
    if args.json {
        println!(
            "{}",
            serde_json::json!({"agents": named, "findings": findings})
        );
    } else {
        for f in &findings {
            println!(
                "[{}] {}\n    why: {}\n    fix: {}",
                f.severity, f.title, f.explanation, f.fix
            );
        }
        let count = |s: &str| findings.iter().filter(|f| f.severity == s).count();
        println!(
            "{} findings: {} critical, {} warning, {} info",
            findings.len(),
            count("critical"),
            count("warning"),
            count("info")
        );
    }
    if findings.iter().any(|f| rank(&f.severity) >= 2) {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

pub fn suid_baseline_path(db: &Path) -> PathBuf {
    db.parent()
        .unwrap_or(Path::new("/var/lib/sentinel"))
        .join("posture-suid.json")
}
