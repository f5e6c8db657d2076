//! `[sudo]`: the sudo gate. What a watched process may run through
//! `sudo`, `su`, `pkexec` or `doas`, by command and arguments.
//!
//! ```toml
//! [sudo]
//! elevators = ["/usr/bin/sudo", "/usr/bin/su"]   # default: the usual paths
//! unmatched = "allow"                            # allow | ask | deny
//!
//! [[sudo.rule]]
//! name = "shell-escape"
//! action = "deny"                # allow | ask | deny
//! command = ["vim*", "less"]     # globs on the command's name
//! args = '-exec'                 # optional regex on its arguments
//! risk = 90
//! reason = "..."
//! ```
//!
//! The gate is one rule in the engine, [`GATE_RULE`] (kind `exec`, ask,
//! on the elevator binaries), so the kernel holds every elevator exec
//! before it runs and the engine answers with the gate's verdict on the
//! command the elevator was asked to run ([`SudoGate::decide`]). The
//! command an elevator then starts is checked again by
//! [`SudoGate::decide_command`] (the daemon does that on its exec), so a
//! renamed or symlinked binary is still judged by what it is. First
//! matching gate rule wins; `unmatched` decides the rest.

use regex::Regex;

use crate::action::{Decision, Kind};
use crate::pattern::{NameGlobs, PathGlobs};
use crate::rule::{Matcher, Rule};

/// The engine rule the gate is reached through (and the prefix of the
/// verdicts it gives: `sudo-gate:RULE`).
pub const GATE_RULE: &str = "sudo-gate";

/// Where the elevators usually are.
pub const DEFAULT_ELEVATORS: &[&str] = &[
    "/usr/bin/sudo",
    "/usr/bin/sudoedit",
    "/usr/bin/su",
    "/bin/su",
    "/usr/bin/pkexec",
    "/usr/bin/doas",
    "/usr/local/bin/doas",
];

/// One `[[sudo.rule]]`.
#[derive(Debug, Clone)]
pub struct GateRule {
    pub name: String,
    pub action: Decision,
    pub command: NameGlobs,
    pub args: Option<Regex>,
    pub risk: u8,
    pub reason: Option<String>,
}

/// The merged `[sudo]` section.
#[derive(Debug, Clone)]
pub struct SudoGate {
    pub elevators: Vec<String>,
    pub unmatched: Decision,
    pub rules: Vec<GateRule>,
    /// Whether any file had a `[sudo]` section.
    pub configured: bool,
}

impl Default for SudoGate {
    fn default() -> Self {
        SudoGate {
            elevators: DEFAULT_ELEVATORS.iter().map(|s| s.to_string()).collect(),
            unmatched: Decision::Allow,
            rules: Vec::new(),
            configured: false,
        }
    }
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateVerdict {
    pub action: Decision,
    /// `sudo-gate:RULE` or `sudo-gate:unmatched`.
    pub rule: String,
    pub reason: String,
    pub risk: u8,
    /// The command as the gate understood it (for messages).
    pub command: String,
}

/// What an elevator was asked to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elevated {
    /// The command (as typed: a name or a path); `None` for an interactive
    /// shell (`sudo -s`, `sudo -i`, `su`, `doas -s`, bare `pkexec`).
    pub command: Option<String>,
    pub args: Vec<String>,
    /// Environment assignments given to the elevator (`sudo VAR=x cmd`).
    pub env: Vec<String>,
    /// A query that runs nothing (`sudo -l`, `sudo -v`, `sudo -k`).
    pub harmless: bool,
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Environment variables that make the elevated program load code the
/// caller chose.
const LOADER_ENV: &[&str] = &[
    "LD_PRELOAD",
    "LD_LIBRARY_PATH",
    "LD_AUDIT",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PERL5OPT",
    "PERL5LIB",
    "RUBYOPT",
    "NODE_OPTIONS",
    "BASH_ENV",
    "ENV",
    "GIT_EXEC_PATH",
    "PAGER",
    "EDITOR",
    "VISUAL",
];

impl SudoGate {
    /// Is `binary` (a resolved exe path) an elevator?
    pub fn is_elevator(&self, binary: &str) -> bool {
        self.elevators.iter().any(|e| e == binary)
    }

    /// The engine rule that sends elevator execs to the gate.
    pub(crate) fn gate_rule(&self, file_index: usize) -> Option<Rule> {
        // A policy without a [sudo] section has no gate.
        if !self.configured || self.elevators.is_empty() {
            return None;
        }
        let globs = PathGlobs::new(&self.elevators).ok()?;
        Some(Rule {
            name: GATE_RULE.to_string(),
            priority: i64::MIN,
            action: Decision::Ask,
            kind: Kind::Exec,
            enabled: true,
            risk: 50,
            reason: Some("elevated commands go through the sudo gate".into()),
            file: "[sudo]".into(),
            file_index,
            position: 0,
            matcher: Matcher::Exec {
                binary: Some(globs),
                args: None,
            },
            agent: None,
            rate_limit: None,
            schedule: None,
        })
    }

    /// The verdict on an elevator's exec (`argv` including argv[0]).
    pub fn decide(&self, binary: &str, argv: &[String]) -> GateVerdict {
        let elevated = parse_elevator(binary, argv);
        if elevated.harmless {
            return GateVerdict {
                action: Decision::Allow,
                rule: format!("{GATE_RULE}:query"),
                reason: "the elevator only answers a query (-l, -v, -k)".into(),
                risk: 0,
                command: String::new(),
            };
        }
        if let Some(var) = elevated.env.iter().find(|assignment| {
            let name = assignment.split('=').next().unwrap_or("");
            LOADER_ENV.contains(&name)
        }) {
            return GateVerdict {
                action: Decision::Deny,
                rule: format!("{GATE_RULE}:loader-environment"),
                reason: format!(
                    "`{var}` makes the elevated program load code of the caller's choosing"
                ),
                risk: 95,
                command: var.clone(),
            };
        }
        match &elevated.command {
            None => self.judge("sh", &[], "an interactive root shell"),
            Some(command) => {
                let shown = std::iter::once(command.as_str())
                    .chain(elevated.args.iter().map(String::as_str))
                    .collect::<Vec<_>>()
                    .join(" ");
                self.judge(command, &elevated.args, &shown)
            }
        }
    }

    /// The verdict on a command an elevator started: `binary` is what the
    /// kernel resolved, `argv` what it was given. A shell started with
    /// `-c` (by `su -c` or `sudo -s CMD`) is judged by its command string.
    pub fn decide_command(&self, binary: &str, argv: &[String]) -> GateVerdict {
        let name = basename(binary);
        if is_shell(name) {
            if let Some(pos) = argv.iter().position(|a| a == "-c") {
                let line = argv.get(pos + 1).cloned().unwrap_or_default();
                let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                if let Some((first, rest)) = words.split_first() {
                    return self.judge(first, rest, &line);
                }
            }
        }
        let shown = argv.join(" ");
        let args = argv.get(1..).unwrap_or(&[]);
        // The resolved name decides, and so does the name it was called
        // by (`vim` → /usr/bin/vim.basic): the stricter answer wins.
        let by_binary = self.judge(name, args, &shown);
        let by_argv0 = argv
            .first()
            .map(|a0| self.judge(a0, args, &shown))
            .unwrap_or_else(|| by_binary.clone());
        if strictness(by_argv0.action) > strictness(by_binary.action) {
            by_argv0
        } else {
            by_binary
        }
    }

    fn judge(&self, command: &str, args: &[String], shown: &str) -> GateVerdict {
        let name = basename(command);
        let joined = args.join(" ");
        for rule in &self.rules {
            let name_ok = rule.command.is_match(name);
            let args_ok = rule.args.as_ref().is_none_or(|r| r.is_match(&joined));
            if name_ok && args_ok {
                return GateVerdict {
                    action: rule.action,
                    rule: format!("{GATE_RULE}:{}", rule.name),
                    reason: rule
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("sudo gate rule `{}`", rule.name)),
                    risk: rule.risk,
                    command: shown.to_string(),
                };
            }
        }
        GateVerdict {
            action: self.unmatched,
            rule: format!("{GATE_RULE}:unmatched"),
            reason: "no sudo gate rule matched this command".into(),
            risk: match self.unmatched {
                Decision::Deny => 60,
                Decision::Ask => 40,
                _ => 10,
            },
            command: shown.to_string(),
        }
    }
}

fn strictness(d: Decision) -> u8 {
    match d {
        Decision::Deny => 3,
        Decision::Ask => 2,
        Decision::LogOnly => 1,
        Decision::Allow => 0,
    }
}

fn is_shell(name: &str) -> bool {
    matches!(
        name,
        "sh" | "bash" | "dash" | "zsh" | "ksh" | "mksh" | "ash" | "csh" | "tcsh" | "fish" | "rbash"
    )
}

/// Reads an elevator's command line: `sudo [opts] [VAR=x...] [--] cmd
/// args`, `su [opts] [-] [user] [-c cmd]`, `pkexec [opts] cmd args`,
/// `doas [opts] cmd args`.
pub fn parse_elevator(binary: &str, argv: &[String]) -> Elevated {
    let name = basename(binary);
    let name = if name == "sudo" || name == "sudoedit" {
        argv.first().map_or(name, |a| basename(a))
    } else {
        name
    };
    let args = argv.get(1..).unwrap_or(&[]);
    match name {
        "su" => parse_su(args),
        "pkexec" => parse_generic(args, &["--user", "-u"], &[], false),
        "doas" => parse_generic(args, &["-u", "-C"], &["-s"], false),
        "sudoedit" => Elevated {
            command: Some("sudoedit".into()),
            args: args.to_vec(),
            env: Vec::new(),
            harmless: false,
        },
        _ => parse_sudo(args),
    }
}

fn parse_sudo(args: &[String]) -> Elevated {
    // Options that take a value (short and long).
    const VALUED: &[&str] = &[
        "-u",
        "-g",
        "-h",
        "-p",
        "-C",
        "-r",
        "-t",
        "-T",
        "-U",
        "-D",
        "-R",
        "--user",
        "--group",
        "--host",
        "--prompt",
        "--close-from",
        "--role",
        "--type",
        "--command-timeout",
        "--other-user",
        "--chdir",
        "--chroot",
    ];
    let mut shell = false;
    let mut harmless = false;
    let mut edit = false;
    let mut i = 0;
    let mut env = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (key, has_value) = match long.split_once('=') {
                Some((k, _)) => (k, true),
                None => (long, false),
            };
            match key {
                "shell" | "login" => shell = true,
                "list" | "validate" | "reset-timestamp" | "remove-timestamp" | "version"
                | "help" => harmless = true,
                "edit" => edit = true,
                _ => {}
            }
            if !has_value && VALUED.contains(&format!("--{key}").as_str()) {
                i += 1;
            }
            i += 1;
            continue;
        }
        if a.starts_with('-') && a.len() > 1 {
            // Bundled flags: `-Eu root`, `-iu root`; a valued letter takes
            // the rest of the word or the next word.
            let letters: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < letters.len() {
                let c = letters[j];
                match c {
                    's' | 'i' => shell = true,
                    'l' | 'v' | 'k' | 'K' | 'V' => harmless = true,
                    'e' => edit = true,
                    _ => {}
                }
                if VALUED.contains(&format!("-{c}").as_str()) {
                    if j + 1 == letters.len() {
                        i += 1;
                    }
                    break;
                }
                j += 1;
            }
            i += 1;
            continue;
        }
        if a.contains('=') && !a.starts_with('=') && !a.starts_with('/') {
            env.push(a.clone());
            i += 1;
            continue;
        }
        break;
    }
    let rest = &args[i.min(args.len())..];
    if edit {
        return Elevated {
            command: Some("sudoedit".into()),
            args: rest.to_vec(),
            env,
            harmless: false,
        };
    }
    match rest.split_first() {
        // `sudo -s CMD` runs CMD through the caller's $SHELL, which the
        // caller picks: judged as a shell, whatever CMD is.
        Some((cmd, more)) if !shell => Elevated {
            command: Some(cmd.clone()),
            args: more.to_vec(),
            env,
            harmless: false,
        },
        _ => Elevated {
            command: None,
            args: Vec::new(),
            env,
            harmless: harmless && !shell && rest.is_empty(),
        },
    }
}

fn parse_su(args: &[String]) -> Elevated {
    let mut command = None;
    let mut i = 0;
    let mut positional = Vec::new();
    while i < args.len() {
        let a = &args[i];
        if a == "-c" || a == "--command" || a == "--session-command" {
            command = args.get(i + 1).cloned();
            i += 2;
            continue;
        }
        if let Some(v) = a
            .strip_prefix("--command=")
            .or_else(|| a.strip_prefix("--session-command="))
        {
            command = Some(v.to_string());
            i += 1;
            continue;
        }
        if a == "-s" || a == "--shell" || a == "-g" || a == "-G" || a == "--group" {
            i += 2;
            continue;
        }
        if !a.starts_with('-') {
            positional.push(a.clone());
        }
        i += 1;
    }
    match command {
        Some(line) => {
            let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            match words.split_first() {
                Some((first, rest)) => Elevated {
                    command: Some(first.clone()),
                    args: rest.to_vec(),
                    env: Vec::new(),
                    harmless: false,
                },
                None => Elevated {
                    command: None,
                    args: Vec::new(),
                    env: Vec::new(),
                    harmless: false,
                },
            }
        }
        None => Elevated {
            command: None,
            args: Vec::new(),
            env: Vec::new(),
            harmless: false,
        },
    }
}

fn parse_generic(args: &[String], valued: &[&str], shell_flags: &[&str], _: bool) -> Elevated {
    let mut i = 0;
    let mut shell = false;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        if shell_flags.contains(&a.as_str()) {
            shell = true;
        }
        if valued.contains(&a.as_str()) {
            i += 1;
        }
        i += 1;
    }
    let rest = &args[i.min(args.len())..];
    match rest.split_first() {
        Some((cmd, more)) if !shell => Elevated {
            command: Some(cmd.clone()),
            args: more.to_vec(),
            env: Vec::new(),
            harmless: false,
        },
        _ => Elevated {
            command: None,
            args: Vec::new(),
            env: Vec::new(),
            harmless: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn reads_elevator_command_lines() {
        let p = |argv: &[&str]| parse_elevator("/usr/bin/sudo", &v(argv));
        assert_eq!(
            p(&["sudo", "vim", "/etc/x"]).command.as_deref(),
            Some("vim")
        );
        assert_eq!(
            p(&["sudo", "-u", "root", "--", "less", "f"])
                .command
                .as_deref(),
            Some("less")
        );
        assert_eq!(
            p(&["sudo", "-Eu", "root", "env"]).command.as_deref(),
            Some("env")
        );
        assert_eq!(
            p(&["sudo", "-nE", "find", "/"]).command.as_deref(),
            Some("find")
        );
        assert_eq!(
            p(&["sudo", "--user=root", "bash"]).command.as_deref(),
            Some("bash")
        );
        assert_eq!(p(&["sudo", "-s"]).command, None);
        assert_eq!(
            p(&["sudo", "-s", "true"]).command,
            None,
            "$SHELL is the caller's"
        );
        assert_eq!(p(&["sudo", "-i"]).command, None);
        assert!(!p(&["sudo", "-i"]).harmless);
        assert!(p(&["sudo", "-l"]).harmless);
        assert!(p(&["sudo", "-v"]).harmless);
        let e = p(&["sudo", "LD_PRELOAD=/tmp/x.so", "true"]);
        assert_eq!(e.env, v(&["LD_PRELOAD=/tmp/x.so"]));
        assert_eq!(e.command.as_deref(), Some("true"));
        assert_eq!(
            p(&["sudo", "-e", "/etc/hosts"]).command.as_deref(),
            Some("sudoedit")
        );
        let su = |argv: &[&str]| parse_elevator("/usr/bin/su", &v(argv));
        assert_eq!(su(&["su"]).command, None);
        assert_eq!(su(&["su", "-", "root"]).command, None);
        assert_eq!(
            su(&["su", "-c", "vim /etc/x", "root"]).command.as_deref(),
            Some("vim")
        );
        let doas = parse_elevator("/usr/bin/doas", &v(&["doas", "-u", "root", "less", "x"]));
        assert_eq!(doas.command.as_deref(), Some("less"));
        assert_eq!(
            parse_elevator("/usr/bin/doas", &v(&["doas", "-s"])).command,
            None
        );
        assert_eq!(
            parse_elevator("/usr/bin/pkexec", &v(&["pkexec"])).command,
            None
        );
        assert_eq!(
            parse_elevator("/usr/bin/pkexec", &v(&["pkexec", "--user", "root", "bash"]))
                .command
                .as_deref(),
            Some("bash")
        );
    }
}
