//! The engine's evaluation order, modes, match keys, rate limits,
//! schedules, quarantine, circuit breaker and anomaly seam, table-driven
//! with a fake clock.

mod common;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use common::*;
use ipnet::IpNet;
use sentinel_policy::{
    Action, AnomalyScore, AnomalyScorer, AnomalyThresholds, BreakerState, Decision, Engine, Mode,
    QuarantineEntry, QuarantineTarget, RiskFactor, Verdict,
};
use serde_json::json;

fn engine(toml: &str, mode: Mode) -> Engine {
    let mut engine = Engine::new(policy(toml));
    engine.set_mode(mode);
    engine.set_homes(homes());
    engine
}

fn decided(verdict: &Verdict) -> (Decision, &str) {
    (verdict.action, verdict.rule.as_deref().unwrap_or(""))
}

/// Every match key, one rule each, checked against matching and
/// non-matching actions.
#[test]
fn match_keys() {
    let rules = r#"
        [[rule]]
        name = "exec-binary"
        kind = "exec"
        action = "deny"
        binary = ["/usr/bin/curl", "**/wget"]

        [[rule]]
        name = "exec-args"
        kind = "exec"
        action = "deny"
        binary = "/usr/bin/python3"
        args = '-c\s+import\s+socket'

        [[rule]]
        name = "open-path"
        kind = "open"
        action = "deny"
        path = ["/etc/shadow", "~/.ssh/id_*"]

        [[rule]]
        name = "open-write"
        kind = "open"
        action = "deny"
        path = "/etc/hosts"
        write = true

        [[rule]]
        name = "open-read-only"
        kind = "open"
        action = "log-only"
        path = "/srv/data/**"
        write = false

        [[rule]]
        name = "connect-cidr"
        kind = "connect"
        action = "deny"
        addr = ["10.0.0.0/8", "fd00::/8"]

        [[rule]]
        name = "connect-ip-port"
        kind = "connect"
        action = "deny"
        addr = "192.0.2.7"
        port = 22

        [[rule]]
        name = "connect-port-range"
        kind = "connect"
        action = "ask"
        port = "6000-6010"

        [[rule]]
        name = "mcp-tool-server"
        kind = "mcp"
        action = "deny"
        tool = "delete_*"
        server = "files"

        [[rule]]
        name = "mcp-args"
        kind = "mcp"
        action = "deny"
        args = '"path":"/etc/'

        [[rule]]
        name = "agent-scoped"
        kind = "exec"
        action = "deny"
        agent = "intern-*"
        binary = "/usr/bin/git"
    "#;
    let mut engine = engine(rules, Mode::SilentAllow);
    let cases: Vec<(&str, Action, Decision, &str)> = vec![
        (
            "binary exact",
            exec("/usr/bin/curl", &["curl", "x"]),
            Decision::Deny,
            "exec-binary",
        ),
        (
            "binary glob",
            exec("/opt/x/bin/wget", &["wget"]),
            Decision::Deny,
            "exec-binary",
        ),
        (
            "binary other",
            exec("/usr/bin/ls", &["ls"]),
            Decision::Allow,
            "mode-default",
        ),
        (
            "args regex on joined argv",
            exec("/usr/bin/python3", &["python3", "-c", "import", "socket"]),
            Decision::Deny,
            "exec-args",
        ),
        (
            "args regex no match",
            exec("/usr/bin/python3", &["python3", "app.py"]),
            Decision::Allow,
            "mode-default",
        ),
        (
            "path exact",
            open("/etc/shadow", false),
            Decision::Deny,
            "open-path",
        ),
        (
            "path ~/ in own home",
            open("/home/agent/.ssh/id_rsa", false),
            Decision::Deny,
            "open-path",
        ),
        (
            "path ~/ other home",
            open("/home/other/.ssh/id_rsa", false),
            Decision::Allow,
            "mode-default",
        ),
        (
            "write=true on write",
            open("/etc/hosts", true),
            Decision::Deny,
            "open-write",
        ),
        (
            "write=true on read",
            open("/etc/hosts", false),
            Decision::Allow,
            "mode-default",
        ),
        (
            "write=false on read",
            open("/srv/data/a", false),
            Decision::LogOnly,
            "open-read-only",
        ),
        (
            "write=false on write",
            open("/srv/data/a", true),
            Decision::Allow,
            "mode-default",
        ),
        (
            "cidr v4",
            connect("10.1.2.3", 443),
            Decision::Deny,
            "connect-cidr",
        ),
        (
            "cidr v6",
            connect("fd12::1", 443),
            Decision::Deny,
            "connect-cidr",
        ),
        (
            "v4-mapped v6",
            connect("::ffff:10.9.9.9", 80),
            Decision::Deny,
            "connect-cidr",
        ),
        (
            "ip + port",
            connect("192.0.2.7", 22),
            Decision::Deny,
            "connect-ip-port",
        ),
        (
            "ip other port",
            connect("192.0.2.7", 23),
            Decision::Allow,
            "mode-default",
        ),
        (
            "port range low",
            connect("198.51.100.1", 6000),
            Decision::Ask,
            "connect-port-range",
        ),
        (
            "port range high",
            connect("198.51.100.1", 6010),
            Decision::Ask,
            "connect-port-range",
        ),
        (
            "port range out",
            connect("198.51.100.1", 6011),
            Decision::Allow,
            "mode-default",
        ),
        (
            "tool and server",
            mcp("files", "delete_file", json!({"path": "/srv/x"})),
            Decision::Deny,
            "mcp-tool-server",
        ),
        (
            "tool on other server",
            mcp("git", "delete_branch", json!({})),
            Decision::Allow,
            "mode-default",
        ),
        (
            "args on canonical json (nested, any key order)",
            mcp(
                "files",
                "read",
                json!({"opts": {"z": 1}, "path": "/etc/passwd"}),
            ),
            Decision::Deny,
            "mcp-args",
        ),
        (
            "agent glob",
            as_agent(exec("/usr/bin/git", &["git"]), Some("intern-7"), 1001),
            Decision::Deny,
            "agent-scoped",
        ),
        (
            "agent other",
            exec("/usr/bin/git", &["git"]),
            Decision::Allow,
            "mode-default",
        ),
        (
            "agent none",
            as_agent(exec("/usr/bin/git", &["git"]), None, 1001),
            Decision::Allow,
            "mode-default",
        ),
    ];
    for (name, action, decision, rule) in cases {
        let verdict = engine.evaluate(&action, at(0));
        assert_eq!(decided(&verdict), (decision, rule), "{name}: {verdict:?}");
    }
}

#[test]
fn modes_decide_unmatched_actions_and_alerts() {
    let rules = r#"
        [[rule]]
        name = "deny-shadow"
        kind = "open"
        action = "deny"
        path = "/etc/shadow"
    "#;
    let unmatched = open("/tmp/x", false);
    let denied = open("/etc/shadow", false);
    // (mode, unmatched verdict, unmatched alert, rule-deny alert)
    let cases = [
        (Mode::SilentAllow, Decision::Allow, false, false),
        (Mode::Alert, Decision::Allow, true, true),
        (Mode::SilentDeny, Decision::Deny, false, true),
    ];
    for (mode, decision, alert, deny_alert) in cases {
        let mut engine = engine(rules, mode);
        let verdict = engine.evaluate(&unmatched, at(0));
        assert_eq!(decided(&verdict), (decision, "mode-default"), "{mode:?}");
        assert_eq!(verdict.alert, alert, "{mode:?}");
        let verdict = engine.evaluate(&denied, at(0));
        assert_eq!(
            decided(&verdict),
            (Decision::Deny, "deny-shadow"),
            "{mode:?}"
        );
        assert_eq!(verdict.alert, deny_alert, "{mode:?}");
    }
}

#[test]
fn lockdown_ignores_rules_and_allows_only_the_health_list() {
    let rules = r#"
        [[rule]]
        name = "allow-everything"
        kind = "exec"
        action = "allow"

        [lockdown]
        exec = ["/usr/local/bin/sentinel"]
        open = ["/usr/lib/**", "/etc/ld.so.cache"]
        connect = ["127.0.0.1/32"]
        tools = ["s:get_health"]
    "#;
    let mut engine = engine(rules, Mode::Lockdown);
    let cases = [
        (
            "allow-listed exec",
            exec("/usr/local/bin/sentinel", &["sentinel"]),
            Decision::Allow,
        ),
        ("rule ignored", exec("/usr/bin/ls", &["ls"]), Decision::Deny),
        (
            "allow-listed read",
            open("/usr/lib/x86_64-linux-gnu/libc.so.6", false),
            Decision::Allow,
        ),
        (
            "allow-listed path written",
            open("/usr/lib/evil.so", true),
            Decision::Deny,
        ),
        (
            "exact read",
            open("/etc/ld.so.cache", false),
            Decision::Allow,
        ),
        ("other read", open("/etc/hosts", false), Decision::Deny),
        ("loopback", connect("127.0.0.1", 8080), Decision::Allow),
        ("elsewhere", connect("127.0.0.2", 8080), Decision::Deny),
        (
            "allow-listed SERVER:TOOL",
            mcp("s", "get_health", json!({})),
            Decision::Allow,
        ),
        (
            "the same tool name on another server",
            mcp("t", "get_health", json!({})),
            Decision::Deny,
        ),
        (
            "a tool named like a probe",
            mcp("s", "wipe_health", json!({})),
            Decision::Deny,
        ),
        (
            "other tool",
            mcp("s", "write_file", json!({})),
            Decision::Deny,
        ),
    ];
    for (name, action, decision) in cases {
        let verdict = engine.evaluate(&action, at(0));
        assert_eq!(decided(&verdict), (decision, "lockdown"), "{name}");
    }
    // Quarantine (step 2) beats the allow-list (step 3).
    engine
        .quarantine(QuarantineEntry {
            target: QuarantineTarget::Binary("/usr/local/bin/sentinel".into()),
            expires: None,
            reason: "test".into(),
        })
        .unwrap();
    let verdict = engine.evaluate(&exec("/usr/local/bin/sentinel", &["sentinel"]), at(0));
    assert_eq!(decided(&verdict), (Decision::Deny, "quarantine"));
}

#[test]
fn first_match_wins_by_priority_then_file_then_position() {
    let first = r#"
        [[rule]]
        name = "a-late"
        priority = 50
        kind = "open"
        action = "deny"
        path = "/srv/**"

        [[rule]]
        name = "a-tie-1"
        priority = 20
        kind = "open"
        action = "log-only"
        path = "/srv/**"
    "#;
    let second = r#"
        [[rule]]
        name = "b-tie-2"
        priority = 20
        kind = "open"
        action = "ask"
        path = "/srv/**"

        [[rule]]
        name = "b-first"
        priority = 5
        kind = "open"
        action = "allow"
        path = "/srv/public/**"

        [[rule]]
        name = "b-disabled"
        priority = 1
        enabled = false
        kind = "open"
        action = "deny"
        path = "/srv/**"
    "#;
    let policy =
        sentinel_policy::Policy::from_sources(&[("10-a.toml", first), ("20-b.toml", second)])
            .unwrap();
    let names: Vec<&str> = policy.rules().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["b-disabled", "b-first", "a-tie-1", "b-tie-2", "a-late"]
    );
    let mut engine = Engine::new(policy);
    let verdict = engine.evaluate(&open("/srv/public/x", false), at(0));
    assert_eq!(decided(&verdict), (Decision::Allow, "b-first"));
    let verdict = engine.evaluate(&open("/srv/private/x", false), at(0));
    assert_eq!(decided(&verdict), (Decision::LogOnly, "a-tie-1"));
}

#[test]
fn rate_limit_honours_the_window_with_a_fake_clock() {
    let rules = r#"
        [[rule]]
        name = "runs"
        kind = "mcp"
        action = "allow"
        tool = "run_agent"
        rate_limit = { max = 2, per_seconds = 60 }
    "#;
    let mut engine = engine(rules, Mode::SilentDeny);
    let call = mcp("fleet", "run_agent", json!({}));
    let other_agent = as_agent(call.clone(), Some("other"), 1002);
    let steps = [
        (0, &call, Decision::Allow),
        (10, &call, Decision::Allow),
        (20, &call, Decision::Deny),
        (20, &other_agent, Decision::Allow),
        (59, &call, Decision::Deny),
        (60, &call, Decision::Allow), // the token from t=0 is back
        (61, &call, Decision::Deny),  // t=10 and t=60 are still out
        (70, &call, Decision::Allow),
    ];
    for (second, action, decision) in steps {
        let verdict = engine.evaluate(action, at(second));
        assert_eq!(verdict.action, decision, "t={second}");
        assert_eq!(verdict.rule.as_deref(), Some("runs"), "t={second}");
        if decision == Decision::Deny {
            assert!(
                verdict.reason.starts_with("rate limit"),
                "{}",
                verdict.reason
            );
        }
    }
}

#[test]
fn denied_actions_do_not_spend_rate_limit_tokens() {
    let rules = r#"
        [[rule]]
        name = "runs"
        kind = "mcp"
        action = "allow"
        tool = "run_agent"
        rate_limit = { max = 1, per_seconds = 60 }
    "#;
    let mut engine = engine(rules, Mode::Alert);
    engine
        .quarantine(QuarantineEntry {
            target: QuarantineTarget::Tool("run_agent".into()),
            expires: Some(at(30)),
            reason: "cool off".into(),
        })
        .unwrap();
    let call = mcp("fleet", "run_agent", json!({}));
    assert_eq!(
        decided(&engine.evaluate(&call, at(0))),
        (Decision::Deny, "quarantine")
    );
    // The quarantine expired; the bucket is still full.
    assert_eq!(
        decided(&engine.evaluate(&call, at(30))),
        (Decision::Allow, "runs")
    );
    assert_eq!(engine.evaluate(&call, at(31)).action, Decision::Deny);
}

#[test]
fn schedules_gate_rules_across_midnight_and_time_zones() {
    let rules = r#"
        [[rule]]
        name = "night-deploys-tokyo"
        kind = "mcp"
        action = "deny"
        tool = "deploy"
        schedule = { days = ["fri"], start = "22:00", end = "06:00", tz = "Asia/Tokyo" }

        [[rule]]
        name = "office-hours-ny"
        kind = "mcp"
        action = "allow"
        tool = "deploy"
        schedule = { days = ["weekdays"], start = "09:00", end = "17:00", tz = "America/New_York" }
    "#;
    let mut engine = engine(rules, Mode::SilentDeny);
    let deploy = mcp("ops", "deploy", json!({}));
    let hour = 3600;
    let cases = [
        // Monday 14:00 UTC = Monday 09:00 New York.
        (
            "mon 09:00 NY",
            14 * hour,
            Decision::Allow,
            "office-hours-ny",
        ),
        (
            "mon 08:59 NY",
            14 * hour - 60,
            Decision::Deny,
            "mode-default",
        ),
        // Friday 13:00 UTC = Friday 22:00 Tokyo (and 08:00 in New York).
        (
            "fri 22:00 JST",
            4 * 24 * hour + 13 * hour,
            Decision::Deny,
            "night-deploys-tokyo",
        ),
        // Friday 20:30 UTC = Saturday 05:30 Tokyo: still Friday's window;
        // 15:30 in New York, so the allow rule would match too but is later.
        (
            "sat 05:30 JST",
            4 * 24 * hour + 20 * hour + 1800,
            Decision::Deny,
            "night-deploys-tokyo",
        ),
        // Friday 21:00 UTC = Saturday 06:00 Tokyo: window over; 16:00 NY.
        (
            "sat 06:00 JST",
            4 * 24 * hour + 21 * hour,
            Decision::Allow,
            "office-hours-ny",
        ),
    ];
    for (name, seconds, decision, rule) in cases {
        let verdict = engine.evaluate(&deploy, at(seconds));
        assert_eq!(decided(&verdict), (decision, rule), "{name}");
    }
}

#[test]
fn quarantine_beats_rules_for_every_target_and_expires() {
    let rules = r#"
        [[rule]]
        name = "allow-all-exec"
        kind = "exec"
        action = "allow"
        [[rule]]
        name = "allow-all-open"
        kind = "open"
        action = "allow"
        [[rule]]
        name = "allow-all-connect"
        kind = "connect"
        action = "allow"
        [[rule]]
        name = "allow-all-mcp"
        kind = "mcp"
        action = "allow"
    "#;
    let net: IpNet = "203.0.113.0/24".parse().unwrap();
    let cases: Vec<(QuarantineTarget, Action, Action)> = vec![
        (
            QuarantineTarget::Agent("claude".into()),
            open("/tmp/a", false),
            as_agent(open("/tmp/a", false), Some("other"), 1002),
        ),
        (
            QuarantineTarget::Binary("/usr/bin/curl".into()),
            exec("/usr/bin/curl", &["curl"]),
            exec("/usr/bin/wget", &["wget"]),
        ),
        (
            QuarantineTarget::Path("~/secrets/**".into()),
            open("/home/agent/secrets/a", false),
            open("/home/other/secrets/a", false),
        ),
        (
            QuarantineTarget::Path("/opt/tool/**".into()),
            exec("/opt/tool/run", &["run"]),
            exec("/opt/other/run", &["run"]),
        ),
        (
            QuarantineTarget::Host(net),
            connect("203.0.113.9", 443),
            connect("203.0.114.9", 443),
        ),
        (
            QuarantineTarget::Tool("exec_*".into()),
            mcp("s", "exec_command", json!({})),
            mcp("s", "read_file", json!({})),
        ),
    ];
    for (target, hit, miss) in cases {
        let mut engine = engine(rules, Mode::SilentAllow);
        engine
            .quarantine(QuarantineEntry {
                target: target.clone(),
                expires: Some(at(100)),
                reason: "incident 42".into(),
            })
            .unwrap();
        let verdict = engine.evaluate(&hit, at(99));
        assert_eq!(
            decided(&verdict),
            (Decision::Deny, "quarantine"),
            "{target}"
        );
        assert!(verdict.reason.contains("incident 42"), "{}", verdict.reason);
        assert_eq!(
            engine.evaluate(&miss, at(99)).action,
            Decision::Allow,
            "{target} miss"
        );
        // Expired at t=100.
        assert_eq!(
            engine.evaluate(&hit, at(100)).action,
            Decision::Allow,
            "{target} expiry"
        );
        engine.prune_quarantine(at(100));
        assert!(engine.quarantines().is_empty());
    }
}

#[test]
fn quarantine_replace_and_lift() {
    let mut engine = engine("", Mode::SilentAllow);
    let target = QuarantineTarget::Tool("push".into());
    for reason in ["first", "second"] {
        engine
            .quarantine(QuarantineEntry {
                target: target.clone(),
                expires: None,
                reason: reason.into(),
            })
            .unwrap();
    }
    assert_eq!(engine.quarantines().len(), 1);
    assert_eq!(engine.quarantines()[0].reason, "second");
    assert!(engine.lift(&target));
    assert!(!engine.lift(&target));
    let bad = engine.quarantine(QuarantineEntry {
        target: QuarantineTarget::Path("relative/[".into()),
        expires: None,
        reason: String::new(),
    });
    let message = bad.unwrap_err().to_string();
    assert!(
        message.contains("invalid quarantine pattern `relative/[`"),
        "{message}"
    );
}

#[test]
fn circuit_breaker_opens_half_opens_and_closes() {
    let rules = r#"
        [[rule]]
        name = "deny-dangerous"
        kind = "mcp"
        action = "deny"
        tool = "dangerous"

        [circuit_breaker]
        failures = 2
        cooldown_seconds = 10
    "#;
    let mut engine = engine(rules, Mode::SilentAllow);
    let call = mcp("flaky", "read", json!({}));
    let other = mcp("healthy", "read", json!({}));
    let me = Engine::caller_scope(call.agent.as_deref(), call.uid);
    // Another agent's calls to the same server name have their own breaker.
    let stranger = as_agent(mcp("flaky", "read", json!({})), Some("stranger"), 4242);
    let theirs = Engine::caller_scope(Some("stranger"), 4242);
    engine.record_server_outcome(&theirs, "flaky", false, at(0));
    engine.record_server_outcome(&theirs, "flaky", false, at(0));
    engine.record_server_outcome(&me, "flaky", false, at(0));
    assert_eq!(engine.evaluate(&call, at(0)).action, Decision::Allow);
    engine.record_server_outcome(&me, "flaky", false, at(1));
    assert_eq!(
        engine.server_state(&me, "flaky"),
        BreakerState::Open { until: at(11) }
    );
    // Step 1 comes first: even before rules and for any tool.
    let verdict = engine.evaluate(&call, at(5));
    assert_eq!(decided(&verdict), (Decision::Deny, "circuit-breaker"));
    assert_eq!(engine.evaluate(&other, at(5)).action, Decision::Allow);
    assert_eq!(engine.evaluate(&stranger, at(0)).action, Decision::Deny);
    // Kernel actions never hit the breaker.
    assert_eq!(
        engine.evaluate(&open("/tmp/x", false), at(5)).action,
        Decision::Allow
    );
    // A call the rules deny is not spent as the half-open probe.
    let dangerous = mcp("flaky", "dangerous", json!({}));
    assert_eq!(
        decided(&engine.evaluate(&dangerous, at(11))),
        (Decision::Deny, "deny-dangerous")
    );
    // Half-open: one probe passes, the next waits.
    assert_eq!(engine.evaluate(&call, at(11)).action, Decision::Allow);
    assert!(matches!(
        engine.server_state(&me, "flaky"),
        BreakerState::HalfOpen { .. }
    ));
    assert_eq!(
        decided(&engine.evaluate(&call, at(12))),
        (Decision::Deny, "circuit-breaker")
    );
    // The probe fails: open again; then a successful probe closes it.
    engine.record_server_outcome(&me, "flaky", false, at(12));
    assert_eq!(engine.evaluate(&call, at(21)).action, Decision::Deny);
    assert_eq!(engine.evaluate(&call, at(22)).action, Decision::Allow);
    engine.record_server_outcome(&me, "flaky", true, at(23));
    assert_eq!(
        engine.server_state(&me, "flaky"),
        BreakerState::Closed {
            consecutive_failures: 0
        }
    );
    assert_eq!(engine.evaluate(&call, at(23)).action, Decision::Allow);
    assert_eq!(engine.evaluate(&call, at(23)).action, Decision::Allow);
    assert_eq!(engine.server_states().len(), 2);
}

/// A scorer that returns scripted scores and records what it saw.
struct Scripted {
    scores: Vec<Option<u8>>,
    seen: Arc<Mutex<Vec<(Action, SystemTime)>>>,
}

impl AnomalyScorer for Scripted {
    fn score(&mut self, action: &Action, now: SystemTime) -> Option<AnomalyScore> {
        self.seen
            .lock()
            .expect("test lock")
            .push((action.clone(), now));
        let score = if self.scores.is_empty() {
            None
        } else {
            self.scores.remove(0)
        }?;
        Some(AnomalyScore {
            score,
            factors: vec![RiskFactor {
                name: "novelty".into(),
                score,
            }],
        })
    }
}

/// (mode, action, score, expected decision, rule, alert, lockdown requested)
type AnomalyCase<'a> = (Mode, &'a Action, Option<u8>, Decision, &'a str, bool, bool);

#[test]
fn anomaly_scores_escalate_per_mode_and_request_lockdown() {
    let rules = r#"
        [[rule]]
        name = "allow-ls"
        kind = "exec"
        action = "allow"
        binary = "/usr/bin/ls"

        [[rule]]
        name = "deny-nc"
        kind = "exec"
        action = "deny"
        binary = "/usr/bin/nc"
    "#;
    let ls = exec("/usr/bin/ls", &["ls"]);
    let cat = exec("/usr/bin/cat", &["cat"]);
    let nc = exec("/usr/bin/nc", &["nc"]);
    // (mode, action, score, expected decision, rule, alert, lockdown requested)
    let cases: Vec<AnomalyCase> = vec![
        (
            Mode::Alert,
            &ls,
            None,
            Decision::Allow,
            "allow-ls",
            false,
            false,
        ),
        (
            Mode::Alert,
            &ls,
            Some(59),
            Decision::Allow,
            "allow-ls",
            false,
            false,
        ),
        (
            Mode::Alert,
            &ls,
            Some(60),
            Decision::Allow,
            "allow-ls",
            true,
            false,
        ),
        (
            Mode::Alert,
            &ls,
            Some(80),
            Decision::Ask,
            "anomaly",
            true,
            false,
        ),
        (
            Mode::Alert,
            &ls,
            Some(90),
            Decision::Ask,
            "anomaly",
            true,
            true,
        ),
        (
            Mode::SilentDeny,
            &ls,
            Some(60),
            Decision::Ask,
            "anomaly",
            true,
            false,
        ),
        (
            Mode::SilentDeny,
            &cat,
            Some(95),
            Decision::Deny,
            "mode-default",
            false,
            true,
        ),
        (
            Mode::SilentAllow,
            &ls,
            Some(85),
            Decision::Allow,
            "allow-ls",
            false,
            false,
        ),
        (
            Mode::SilentAllow,
            &cat,
            Some(95),
            Decision::Allow,
            "mode-default",
            false,
            true,
        ),
        (
            Mode::Alert,
            &nc,
            Some(95),
            Decision::Deny,
            "deny-nc",
            true,
            true,
        ),
        (
            Mode::Lockdown,
            &ls,
            Some(99),
            Decision::Deny,
            "lockdown",
            false,
            false,
        ),
    ];
    for (mode, action, score, decision, rule, alert, lockdown) in cases {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut engine = engine(rules, mode);
        engine.set_anomaly(Box::new(Scripted {
            scores: vec![score],
            seen: Arc::clone(&seen),
        }));
        let assessment = engine.assess(action, at(7));
        let verdict = &assessment.verdict;
        let label = format!("{mode:?} {action:?} {score:?}");
        assert_eq!(decided(verdict), (decision, rule), "{label}");
        assert_eq!(verdict.alert, alert, "{label}");
        assert_eq!(assessment.lockdown_requested, lockdown, "{label}");
        if let Some(score) = score {
            assert!(verdict.risk >= score, "{label}: risk {}", verdict.risk);
            assert_eq!(verdict.factors.len(), 1, "{label}");
        }
        // The scorer sees every action, whatever the verdict.
        assert_eq!(seen.lock().unwrap().len(), 1, "{label}");
        assert_eq!(seen.lock().unwrap()[0].1, at(7));
    }
}

#[test]
fn anomaly_thresholds_are_configurable() {
    let mut engine = engine("", Mode::Alert);
    engine.set_anomaly(Box::new(Scripted {
        scores: vec![Some(40), Some(40)],
        seen: Arc::default(),
    }));
    let action = exec("/usr/bin/ls", &["ls"]);
    assert_eq!(engine.evaluate(&action, at(0)).action, Decision::Allow);
    engine.set_anomaly_thresholds(AnomalyThresholds {
        suspicious: 10,
        anomalous: 20,
        critical: 30,
        auto_lockdown: 40,
    });
    let assessment = engine.assess(&action, at(0));
    assert_eq!(assessment.verdict.action, Decision::Ask);
    assert!(assessment.lockdown_requested);
}

#[test]
fn risk_comes_from_the_rule_or_the_step() {
    let rules = r#"
        [[rule]]
        name = "explicit"
        kind = "open"
        action = "deny"
        path = "/a"
        risk = 33
        reason = "because"
        [[rule]]
        name = "default-deny"
        kind = "open"
        action = "deny"
        path = "/b"
        [[rule]]
        name = "default-allow"
        kind = "open"
        action = "allow"
        path = "/c"
    "#;
    let mut engine = engine(rules, Mode::Alert);
    let verdict = engine.evaluate(&open("/a", false), at(0));
    assert_eq!((verdict.risk, verdict.reason.as_str()), (33, "because"));
    assert_eq!(engine.evaluate(&open("/b", false), at(0)).risk, 70);
    assert_eq!(engine.evaluate(&open("/c", false), at(0)).risk, 0);
    engine
        .quarantine(QuarantineEntry {
            target: QuarantineTarget::Path("/c".into()),
            expires: None,
            reason: "r".into(),
        })
        .unwrap();
    assert_eq!(engine.evaluate(&open("/c", false), at(0)).risk, 90);
}

#[test]
fn reload_swaps_rules_and_keeps_state() {
    let limited = r#"
        [[rule]]
        name = "runs"
        kind = "mcp"
        action = "allow"
        tool = "run"
        rate_limit = { max = 1, per_seconds = 60 }
    "#;
    let mut engine = engine(limited, Mode::SilentDeny);
    let call = mcp("s", "run", json!({}));
    assert_eq!(engine.evaluate(&call, at(0)).action, Decision::Allow);
    assert_eq!(engine.evaluate(&call, at(1)).action, Decision::Deny);
    // Reloading the same rule keeps its bucket (a reload is no way around
    // a limit); the mode and quarantine carry over too.
    engine.reload(policy(limited));
    assert_eq!(engine.evaluate(&call, at(2)).action, Decision::Deny);
    assert_eq!(engine.mode(), Mode::SilentDeny);
    engine.reload(policy(""));
    assert_eq!(
        decided(&engine.evaluate(&call, at(3))),
        (Decision::Deny, "mode-default")
    );
    engine.set_mode(Mode::Alert);
    assert_eq!(engine.evaluate(&call, at(3)).action, Decision::Allow);
}
