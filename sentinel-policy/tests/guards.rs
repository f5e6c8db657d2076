//! The agent guards' sections with the embedded defaults: identity files
//! compile into one deny-write rule the kernel compiler takes, the sudo
//! gate's verdicts on GTFOBins-style escapes and their other spellings,
//! playbooks, and the errors bad sections give.

mod common;

use common::*;
use sentinel_policy::{Decision, Engine, Mode, Policy, ResponseAction, GATE_RULE, PROTECTED_RULE};

fn defaults() -> Engine {
    let mut engine = Engine::new(Policy::embedded_defaults());
    engine.set_mode(Mode::Alert);
    engine.set_homes(homes());
    engine
}

#[test]
fn protected_identity_files_are_one_kernel_compiled_deny_write_rule() {
    let mut engine = defaults();
    for file in [
        "SOUL.md",
        "AGENTS.md",
        "CLAUDE.md",
        ".claude.json",
        ".mcp.json",
        ".codex/config.toml",
        ".config/claude/x/settings.json",
    ] {
        let path = format!("{AGENT_HOME}/{file}");
        let v = engine.evaluate(&open(&path, true), at(0));
        assert_eq!(v.action, Decision::Deny, "{path}");
        assert_eq!(v.rule.as_deref(), Some(PROTECTED_RULE), "{path}");
        // Reading stays allowed: the agent needs its instructions.
        assert_ne!(
            engine.evaluate(&open(&path, false), at(0)).action,
            Decision::Deny
        );
    }
    // Watched (memory) files are not refused.
    assert_ne!(
        engine
            .evaluate(&open(&format!("{AGENT_HOME}/MEMORY.md"), true), at(0))
            .action,
        Decision::Deny
    );
    let kernel = engine.kernel_policy(&homes(), at(0));
    let soul: Vec<_> = kernel
        .open
        .iter()
        .filter(|m| m.path.ends_with("/SOUL.md"))
        .collect();
    assert_eq!(soul.len(), 2, "one entry per watched home: {soul:?}");
    assert!(soul.iter().all(|m| m.rule == PROTECTED_RULE
        && m.write_only
        && m.decision == Decision::Deny
        && !m.prefix));
    assert!(kernel
        .open
        .iter()
        .any(|m| m.path == format!("{AGENT_HOME}/.config/claude/") && m.prefix));
    assert!(
        !kernel
            .userspace_only
            .iter()
            .any(|u| u.rule == PROTECTED_RULE),
        "{:?}",
        kernel.userspace_only
    );
    let identity = engine.policy().identity();
    assert!(identity.watched.iter().any(|w| w == "~/MEMORY.md"));
}

#[test]
fn identity_entries_must_be_kernel_expressible() {
    for bad in [
        "[identity]\nprotected = [\"**/SOUL.md\"]\n",
        "[identity]\nprotected = [\"SOUL.md\"]\n",
        "[identity]\nwatched = [\"/a/*/b\"]\n",
    ] {
        let err = Policy::from_sources(&[("t.toml", bad)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml:"), "{err}");
    }
    let reserved = "[[rule]]\nname = \"identity-protected\"\nkind = \"open\"\naction = \"deny\"\n[identity]\nprotected = [\"/x\"]\n";
    assert!(Policy::from_sources(&[("t.toml", reserved)])
        .unwrap_err()
        .to_string()
        .contains("reserved"));
}

fn sudo(engine: &mut Engine, argv: &[&str]) -> (Decision, String) {
    let v = engine.evaluate(&exec("/usr/bin/sudo", argv), at(0));
    (v.action, v.rule.unwrap_or_default())
}

#[test]
fn the_sudo_gate_refuses_shell_escapes_in_every_spelling() {
    let mut engine = defaults();
    for argv in [
        &["sudo", "vim", "/etc/hosts"][..],
        &["sudo", "/usr/bin/vim.basic"],
        &["sudo", "-u", "root", "--", "less", "/var/log/syslog"],
        &["sudo", "-E", "env", "/bin/sh"],
        &["sudo", "-nEu", "root", "python3", "-c", "import os"],
        &["sudo", "find", ".", "-exec", "/bin/sh", ";"],
        &[
            "sudo",
            "tar",
            "cf",
            "/dev/null",
            "x",
            "--checkpoint=1",
            "--checkpoint-action=exec=sh",
        ],
        &["sudo", "bash"],
        &["sudo", "-s"],
        &["sudo", "-i"],
        &["sudo", "--login"],
        &["sudo", "su"],
        &["sudo", "sudo", "-s"],
        &["sudo", "LD_PRELOAD=/tmp/evil.so", "true"],
        &["sudo", "git", "log"],
        &["sudo", "awk", "BEGIN {system(\"/bin/sh\")}"],
    ] {
        let (action, rule) = sudo(&mut engine, argv);
        assert_eq!(action, Decision::Deny, "{argv:?} -> {rule}");
        assert!(rule.starts_with(GATE_RULE), "{argv:?} -> {rule}");
    }
    for argv in [
        &["sudo", "apt-get", "install", "-y", "curl"][..],
        &["sudo", "systemctl", "restart", "nginx"],
        &["sudo", "tee", "/etc/sudoers.d/x"],
        &["sudo", "-e", "/etc/hosts"],
    ] {
        assert_eq!(sudo(&mut engine, argv).0, Decision::Ask, "{argv:?}");
    }
    for argv in [
        &["sudo", "-l"][..],
        &["sudo", "ls", "/root"],
        &["sudo", "find", "/var", "-name", "x"],
        &["sudo", "-n", "true"],
    ] {
        assert_eq!(sudo(&mut engine, argv).0, Decision::Allow, "{argv:?}");
    }
    // su, doas, pkexec.
    let v = engine.evaluate(&exec("/usr/bin/su", &["su", "-"]), at(0));
    assert_eq!(v.action, Decision::Deny);
    let v = engine.evaluate(
        &exec("/usr/bin/su", &["su", "-c", "less /etc/shadow", "root"]),
        at(0),
    );
    assert_eq!(v.action, Decision::Deny);
    let v = engine.evaluate(&exec("/usr/bin/su", &["su", "-c", "id", "root"]), at(0));
    assert_eq!(v.action, Decision::Allow);
    let v = engine.evaluate(&exec("/usr/bin/pkexec", &["pkexec"]), at(0));
    assert_eq!(v.action, Decision::Deny);
    // The command an elevator starts is judged by what it resolved to.
    let gate = engine.policy().sudo();
    assert_eq!(
        gate.decide_command("/usr/bin/vim.basic", &["/tmp/innocent".into()])
            .action,
        Decision::Deny
    );
    assert_eq!(
        gate.decide_command("/usr/bin/bash", &["bash".into(), "-c".into(), "id".into()])
            .action,
        Decision::Allow
    );
    assert_eq!(
        gate.decide_command(
            "/usr/bin/bash",
            &["bash".into(), "-c".into(), "vim x".into()]
        )
        .action,
        Decision::Deny
    );
    assert_eq!(
        gate.decide_command("/usr/bin/bash", &["bash".into()])
            .action,
        Decision::Deny
    );
    // The gate rule is held in the kernel (an ask on the elevators).
    let kernel = engine.kernel_policy(&homes(), at(0));
    assert!(kernel
        .exec
        .iter()
        .any(|m| m.path == "/usr/bin/sudo" && m.rule == GATE_RULE && m.decision == Decision::Ask));
}

#[test]
fn playbooks_parse_and_match() {
    let p = policy(
        r#"
[[playbook]]
name = "freeze"
on = { severity = "warning", category = ["identity", "sudo*"], agent = "claude*" }
do = "suspend"

[[playbook]]
name = "cut"
do = "cut-network"
approval = "operator"
timeout_seconds = 5
on_timeout = "run"
allow = ["127.0.0.1"]
"#,
    );
    let [freeze, cut] = p.playbooks() else {
        panic!()
    };
    assert!(freeze.matches("critical", "sudo-gate", Some("claude-1")));
    assert!(!freeze.matches("info", "sudo-gate", Some("claude-1")));
    assert!(!freeze.matches("critical", "policy", Some("claude-1")));
    assert!(!freeze.matches("critical", "identity", None));
    assert!(cut.matches("info", "anything", None));
    assert_eq!(cut.action, ResponseAction::CutNetwork);
    assert_eq!(cut.allow.len(), 1);
    for bad in [
        "[[playbook]]\nname = \"x\"\ndo = \"explode\"\n",
        "[[playbook]]\nname = \"x\"\ndo = \"kill\"\nallow = [\"1.2.3.4\"]\n",
        "[[playbook]]\nname = \"x\"\ndo = \"kill\"\non = { severity = \"loud\" }\n",
        "[[playbook]]\nname = \"x\"\ndo = \"kill\"\n[[playbook]]\nname = \"x\"\ndo = \"kill\"\n",
        "[sudo]\nelevators = [\"sudo\"]\n",
        "[[sudo.rule]]\nname = \"a\"\naction = \"log-only\"\ncommand = \"x\"\n",
    ] {
        assert!(Policy::from_sources(&[("t.toml", bad)]).is_err(), "{bad}");
    }
}
