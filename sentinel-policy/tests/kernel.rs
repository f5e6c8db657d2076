//! The kernel compiler: which rules become map entries, and which stay in
//! userspace (shadowing by earlier rules, inexpressible globs, agent scope,
//! rate limits, schedules, regexes), plus quarantine and lockdown.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::*;
use ipnet::IpNet;
use sentinel_policy::{
    Decision, Engine, KernelPath, KernelPolicy, Mode, NetMatch, PathMatch, QuarantineEntry,
    QuarantineTarget,
};

fn compile(toml: &str, mode: Mode) -> KernelPolicy {
    let mut engine = Engine::new(policy(toml));
    engine.set_mode(mode);
    engine.kernel_policy(&homes(), at(0))
}

/// `(path, prefix, write_only, uid, decision, rule)` for compact tables.
type Row = (
    &'static str,
    bool,
    bool,
    Option<u32>,
    Decision,
    &'static str,
);

/// (case, policy, expected open entries, expected exec entries, userspace-only rules)
type PathCase = (
    &'static str,
    &'static str,
    Vec<Row>,
    Vec<Row>,
    Vec<&'static str>,
);

/// (case, policy, compiled open (path, rule), userspace-only rules)
type ShadowCase = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
    Vec<&'static str>,
);

fn rows(matches: &[PathMatch]) -> Vec<(String, bool, bool, Option<u32>, Decision, String)> {
    matches
        .iter()
        .map(|m| {
            (
                m.path.clone(),
                m.prefix,
                m.write_only,
                m.uid,
                m.decision,
                m.rule.clone(),
            )
        })
        .collect()
}

fn expect(rows_expected: &[Row]) -> Vec<(String, bool, bool, Option<u32>, Decision, String)> {
    rows_expected
        .iter()
        .map(|(p, prefix, w, uid, d, r)| (p.to_string(), *prefix, *w, *uid, *d, r.to_string()))
        .collect()
}

fn userspace_rules(kernel: &KernelPolicy) -> Vec<&str> {
    kernel
        .userspace_only
        .iter()
        .map(|u| u.rule.as_str())
        .collect()
}

const D: Decision = Decision::Deny;
const A: Decision = Decision::Ask;

#[test]
fn path_rules_compile_or_stay_in_userspace() {
    // (case, policy, expected open entries, expected exec entries, userspace rules)
    let cases: Vec<PathCase> = vec![
        (
            "exact, prefix, trailing star, braces",
            r#"
            [[rule]]
            name = "r"
            kind = "open"
            action = "deny"
            path = ["/etc/shadow", "/etc/cron.d/**", "/root/.ssh/id_*", "/etc/{a,b}"]
            "#,
            vec![
                ("/etc/shadow", false, false, None, D, "r"),
                ("/etc/cron.d/", true, false, None, D, "r"),
                ("/root/.ssh/id_", true, false, None, D, "r"),
                ("/etc/a", false, false, None, D, "r"),
                ("/etc/b", false, false, None, D, "r"),
            ],
            vec![],
            vec![],
        ),
        (
            "write-only bit and ask",
            r#"
            [[rule]]
            name = "w"
            kind = "open"
            action = "ask"
            write = true
            path = "/etc/hosts"
            "#,
            vec![("/etc/hosts", false, true, None, A, "w")],
            vec![],
            vec![],
        ),
        (
            "~/ compiles per watched uid",
            r#"
            [[rule]]
            name = "keys"
            kind = "open"
            action = "deny"
            path = "~/.aws/credentials"
            "#,
            vec![
                (
                    "/home/agent/.aws/credentials",
                    false,
                    false,
                    Some(1001),
                    D,
                    "keys",
                ),
                (
                    "/home/other/.aws/credentials",
                    false,
                    false,
                    Some(1002),
                    D,
                    "keys",
                ),
            ],
            vec![],
            vec![],
        ),
        (
            "inner wildcard stays in userspace, the rest compiles",
            r#"
            [[rule]]
            name = "mixed"
            kind = "exec"
            action = "deny"
            binary = ["/usr/bin/ngrok", "**/ngrok", "/opt/*/bin/x"]
            "#,
            vec![],
            vec![("/usr/bin/ngrok", false, false, None, D, "mixed")],
            vec!["mixed", "mixed"],
        ),
        (
            "no path key: everything",
            r#"
            [[rule]]
            name = "all"
            kind = "exec"
            action = "deny"
            "#,
            vec![],
            vec![("/", true, false, None, D, "all")],
            vec![],
        ),
        (
            "allow and log-only never compile",
            r#"
            [[rule]]
            name = "a"
            kind = "open"
            action = "allow"
            path = "/x"
            [[rule]]
            name = "l"
            kind = "open"
            action = "log-only"
            path = "/y"
            "#,
            vec![],
            vec![],
            vec![],
        ),
        (
            "agent, rate limit, schedule, args, write=false: userspace",
            r#"
            [[rule]]
            name = "agent"
            kind = "open"
            action = "deny"
            agent = "claude"
            path = "/a"
            [[rule]]
            name = "rate"
            kind = "open"
            action = "deny"
            rate_limit = { max = 1, per_seconds = 1 }
            path = "/b"
            [[rule]]
            name = "sched"
            kind = "open"
            action = "deny"
            schedule = { start = "01:00", end = "02:00" }
            path = "/c"
            [[rule]]
            name = "args"
            kind = "exec"
            action = "deny"
            binary = "/bin/sh"
            args = "x"
            [[rule]]
            name = "reads"
            kind = "open"
            action = "deny"
            write = false
            path = "/d"
            [[rule]]
            name = "disabled"
            enabled = false
            kind = "open"
            action = "deny"
            path = "/e"
            "#,
            vec![],
            vec![],
            vec!["agent", "rate", "sched", "args", "reads"],
        ),
    ];
    for (case, toml, open, exec, userspace) in cases {
        let kernel = compile(toml, Mode::Alert);
        assert_eq!(rows(&kernel.open), expect(&open), "{case}: open");
        assert_eq!(rows(&kernel.exec), expect(&exec), "{case}: exec");
        assert_eq!(
            userspace_rules(&kernel),
            userspace,
            "{case}: {:?}",
            kernel.userspace_only
        );
        assert!(!kernel.lockdown);
    }
}

#[test]
fn earlier_non_deny_rules_shadow_later_deny_rules() {
    // (case, policy, compiled open paths (rule names), userspace-only rules)
    let cases: Vec<ShadowCase> = vec![
        (
            "an earlier allow of /etc/hosts shadows deny /etc/**",
            r#"
            [[rule]]
            name = "allow-hosts"
            priority = 1
            kind = "open"
            action = "allow"
            path = "/etc/hosts"
            [[rule]]
            name = "deny-etc"
            kind = "open"
            action = "deny"
            path = ["/etc/**", "/var/secret"]
            "#,
            vec![("/var/secret", "deny-etc")],
            vec!["deny-etc"],
        ),
        (
            "a later allow does not shadow",
            r#"
            [[rule]]
            name = "deny-etc"
            priority = 1
            kind = "open"
            action = "deny"
            path = "/etc/**"
            [[rule]]
            name = "allow-hosts"
            kind = "open"
            action = "allow"
            path = "/etc/hosts"
            "#,
            vec![("/etc/", "deny-etc")],
            vec![],
        ),
        (
            "an earlier allow on a disjoint path does not shadow",
            r#"
            [[rule]]
            name = "allow-tmp"
            priority = 1
            kind = "open"
            action = "allow"
            path = "/tmp/**"
            [[rule]]
            name = "deny-etc"
            kind = "open"
            action = "deny"
            path = "/etc/**"
            "#,
            vec![("/etc/", "deny-etc")],
            vec![],
        ),
        (
            "an earlier allow with an inner wildcard that may reach in",
            r#"
            [[rule]]
            name = "allow-conf"
            priority = 1
            kind = "open"
            action = "allow"
            path = "/etc/*/app.conf"
            [[rule]]
            name = "deny-etc-app"
            kind = "open"
            action = "deny"
            path = ["/etc/app/**", "/etc/app.conf"]
            "#,
            vec![("/etc/app.conf", "deny-etc-app")],
            vec!["deny-etc-app"],
        ),
        (
            "an agent-scoped earlier allow still shadows (it could match)",
            r#"
            [[rule]]
            name = "allow-trusted"
            priority = 1
            kind = "open"
            action = "allow"
            agent = "trusted"
            path = "/srv/**"
            [[rule]]
            name = "deny-srv"
            kind = "open"
            action = "deny"
            path = "/srv/db"
            "#,
            vec![],
            vec!["deny-srv"],
        ),
        (
            "an earlier read-only allow cannot shadow a write-only deny",
            r#"
            [[rule]]
            name = "allow-read"
            priority = 1
            kind = "open"
            action = "allow"
            write = false
            path = "/etc/**"
            [[rule]]
            name = "deny-write"
            kind = "open"
            action = "deny"
            write = true
            path = "/etc/passwd"
            "#,
            vec![("/etc/passwd", "deny-write")],
            vec![],
        ),
        (
            "an earlier ask shadows a later deny, and the reverse",
            r#"
            [[rule]]
            name = "ask-home"
            priority = 1
            kind = "open"
            action = "ask"
            path = "/home/**"
            [[rule]]
            name = "deny-keys"
            priority = 2
            kind = "open"
            action = "deny"
            path = "/home/agent/.ssh/id_rsa"
            [[rule]]
            name = "deny-root"
            priority = 3
            kind = "open"
            action = "deny"
            path = "/root/**"
            [[rule]]
            name = "ask-root-file"
            priority = 4
            kind = "open"
            action = "ask"
            path = "/root/x"
            "#,
            vec![("/home/", "ask-home"), ("/root/", "deny-root")],
            vec!["deny-keys", "ask-root-file"],
        ),
        (
            "an earlier deny does not shadow a later deny",
            r#"
            [[rule]]
            name = "deny-a"
            priority = 1
            kind = "open"
            action = "deny"
            path = "/a/**"
            [[rule]]
            name = "deny-a-b"
            priority = 2
            kind = "open"
            action = "deny"
            path = "/a/b"
            "#,
            // /a/b is covered by /a/ with the same decision: not repeated.
            vec![("/a/", "deny-a")],
            vec![],
        ),
        (
            "an earlier home-relative allow shadows per watched home",
            r#"
            [[rule]]
            name = "allow-own-project"
            priority = 1
            kind = "open"
            action = "allow"
            path = "~/project/**"
            [[rule]]
            name = "deny-home"
            kind = "open"
            action = "deny"
            path = ["/home/agent/**", "/home/nobody/**"]
            "#,
            vec![("/home/nobody/", "deny-home")],
            vec!["deny-home"],
        ),
        (
            "other kinds never shadow",
            r#"
            [[rule]]
            name = "allow-exec"
            priority = 1
            kind = "exec"
            action = "allow"
            [[rule]]
            name = "deny-open"
            kind = "open"
            action = "deny"
            path = "/x"
            "#,
            vec![("/x", "deny-open")],
            vec![],
        ),
    ];
    for (case, toml, open, userspace) in cases {
        let kernel = compile(toml, Mode::Alert);
        let compiled: Vec<(&str, &str)> = kernel
            .open
            .iter()
            .map(|m| (m.path.as_str(), m.rule.as_str()))
            .collect();
        assert_eq!(compiled, open, "{case}");
        assert_eq!(
            userspace_rules(&kernel),
            userspace,
            "{case}: {:?}",
            kernel.userspace_only
        );
        if let Some(first) = kernel.userspace_only.first() {
            assert!(first.why.contains("earlier rule"), "{case}: {}", first.why);
        }
    }
}

#[test]
fn connect_rules_compile_with_shadowing() {
    let toml = r#"
        [[rule]]
        name = "allow-dns"
        priority = 1
        kind = "connect"
        action = "allow"
        addr = "10.0.0.53"
        port = 53
        [[rule]]
        name = "deny-internal"
        kind = "connect"
        action = "deny"
        addr = ["10.0.0.0/8", "192.168.0.0/16"]
        [[rule]]
        name = "deny-smtp"
        kind = "connect"
        action = "deny"
        port = "25-25"
        [[rule]]
        name = "ask-high-ports"
        kind = "connect"
        action = "ask"
        addr = "10.1.0.0/16"
        port = "1024-65535"
    "#;
    let kernel = compile(toml, Mode::Alert);
    let net = |text: &str| -> IpNet { text.parse().unwrap() };
    assert_eq!(
        kernel.connect,
        vec![
            NetMatch {
                net: net("192.168.0.0/16"),
                ports: (0, 65535),
                decision: D,
                rule: "deny-internal".into()
            },
            NetMatch {
                net: net("0.0.0.0/0"),
                ports: (25, 25),
                decision: D,
                rule: "deny-smtp".into()
            },
            NetMatch {
                net: net("::/0"),
                ports: (25, 25),
                decision: D,
                rule: "deny-smtp".into()
            },
        ]
    );
    // 10/8 meets the earlier DNS allow; 10.1/16 on high ports meets the
    // earlier deny of 10/8 (a different decision) — both stay in userspace.
    assert_eq!(
        userspace_rules(&kernel),
        ["deny-internal", "ask-high-ports"]
    );
}

#[test]
fn quarantine_compiles_first_and_wins_over_ask() {
    let toml = r#"
        [[rule]]
        name = "ask-tools"
        kind = "exec"
        action = "ask"
        binary = "/opt/tools/**"
        [[rule]]
        name = "ask-hosts"
        kind = "connect"
        action = "ask"
        addr = "203.0.113.0/25"
    "#;
    let mut engine = Engine::new(policy(toml));
    engine.set_homes(homes());
    let add = |engine: &mut Engine, target, expires| {
        engine
            .quarantine(QuarantineEntry {
                target,
                expires,
                reason: "r".into(),
            })
            .unwrap()
    };
    add(
        &mut engine,
        QuarantineTarget::Binary("/opt/tools/evil".into()),
        Some(at(50)),
    );
    add(
        &mut engine,
        QuarantineTarget::Path("~/drop/**".into()),
        Some(at(40)),
    );
    add(
        &mut engine,
        QuarantineTarget::Host("203.0.113.0/24".parse().unwrap()),
        None,
    );
    add(&mut engine, QuarantineTarget::Agent("claude".into()), None);
    add(&mut engine, QuarantineTarget::Tool("x".into()), None);
    add(
        &mut engine,
        QuarantineTarget::Binary("/opt/*/evil".into()),
        Some(at(10)),
    );
    let kernel = engine.kernel_policy(&homes(), at(0));
    assert_eq!(
        rows(&kernel.exec),
        expect(&[
            ("/opt/tools/evil", false, false, None, D, "quarantine"),
            (
                "/home/agent/drop/",
                true,
                false,
                Some(1001),
                D,
                "quarantine"
            ),
            (
                "/home/other/drop/",
                true,
                false,
                Some(1002),
                D,
                "quarantine"
            ),
        ])
    );
    assert_eq!(
        rows(&kernel.open),
        expect(&[
            (
                "/home/agent/drop/",
                true,
                false,
                Some(1001),
                D,
                "quarantine"
            ),
            (
                "/home/other/drop/",
                true,
                false,
                Some(1002),
                D,
                "quarantine"
            ),
        ])
    );
    assert_eq!(kernel.connect.len(), 1);
    assert_eq!(kernel.connect[0].rule, "quarantine");
    assert_eq!(kernel.connect[0].ports, (0, 65535));
    assert_eq!(
        userspace_rules(&kernel),
        ["quarantine", "quarantine", "ask-tools", "ask-hosts"],
        "{:?}",
        kernel.userspace_only
    );
    assert_eq!(kernel.next_expiry, Some(at(10)));
    // Expired entries drop out of the compilation.
    let later = engine.kernel_policy(&homes(), at(45));
    assert_eq!(later.exec.len(), 1);
    assert_eq!(later.next_expiry, Some(at(50)));
}

#[test]
fn lockdown_compiles_allow_lists_and_drops_rules() {
    let toml = r#"
        [[rule]]
        name = "deny-x"
        kind = "exec"
        action = "deny"
        binary = "/usr/bin/x"
        [lockdown]
        exec = ["/usr/local/bin/sentinel"]
        open = ["/usr/lib/**"]
        connect = ["127.0.0.1"]
    "#;
    let kernel = compile(toml, Mode::Lockdown);
    assert!(kernel.lockdown);
    assert!(kernel.exec.is_empty(), "rules are ignored in lockdown");
    assert_eq!(
        kernel.lockdown_exec_allow,
        [KernelPath {
            path: "/usr/local/bin/sentinel".into(),
            prefix: false
        }]
    );
    assert_eq!(
        kernel.lockdown_open_allow,
        [KernelPath {
            path: "/usr/lib/".into(),
            prefix: true
        }]
    );
    assert_eq!(
        kernel.lockdown_connect_allow,
        ["127.0.0.1/32".parse::<IpNet>().unwrap()]
    );
    let normal = compile(toml, Mode::SilentDeny);
    assert!(!normal.lockdown && normal.lockdown_exec_allow.is_empty());
    assert_eq!(normal.exec.len(), 1);
    assert_eq!(userspace_rules(&normal), ["mode-default"]);
}

#[test]
fn without_homes_tilde_patterns_compile_to_nothing() {
    let engine = Engine::new(policy(
        "[[rule]]\nname = \"k\"\nkind = \"open\"\naction = \"deny\"\npath = \"~/.kube/config\"\n",
    ));
    let kernel = engine.kernel_policy(&HashMap::<u32, PathBuf>::new(), at(0));
    assert!(kernel.open.is_empty());
    assert!(kernel.userspace_only.is_empty());
}

/// Whatever the kernel compiles must agree with userspace: for every
/// compiled entry, an action on that exact path gets the same decision
/// from the engine.
#[test]
fn compiled_entries_agree_with_userspace_for_the_defaults() {
    let mut engine = Engine::new(sentinel_policy::Policy::embedded_defaults());
    engine.set_homes(homes());
    let kernel = engine.kernel_policy(&homes(), at(0));
    assert!(kernel.open.len() > 40, "{}", kernel.open.len());
    assert!(!kernel.exec.is_empty());
    for entry in kernel.open.iter().chain(&kernel.exec) {
        let is_exec = kernel.exec.contains(entry);
        let path = if entry.prefix {
            format!("{}probe", entry.path)
        } else {
            entry.path.clone()
        };
        let uid = entry.uid.unwrap_or(AGENT_UID);
        let action = if is_exec {
            as_agent(exec(&path, &["probe"]), Some("claude"), uid)
        } else {
            as_agent(open(&path, entry.write_only), Some("claude"), uid)
        };
        let verdict = engine.evaluate(&action, at(0));
        if entry.rule == sentinel_policy::GATE_RULE {
            // The kernel holds every elevator exec; the gate's verdict on
            // the command (here: none, a root shell) decides.
            assert_eq!(entry.decision, Decision::Ask, "{entry:?}");
            assert!(
                verdict
                    .rule
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("sudo-gate:"),
                "{verdict:?}"
            );
            continue;
        }
        assert_eq!(verdict.action, entry.decision, "{entry:?}");
        assert_eq!(
            verdict.rule.as_deref(),
            Some(entry.rule.as_str()),
            "{entry:?}"
        );
    }
}
