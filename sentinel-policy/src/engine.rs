//! The verdict engine: evaluates one [`Action`] against the policy, the
//! mode, the quarantine list, rate limits, the MCP circuit breaker and the
//! anomaly score, in the one order issue 3 fixes:
//!
//! 1. circuit breaker (MCP only) 2. quarantine 3. mode (lockdown) 4. rules,
//!    first match wins 5. the rule's rate limit 6. anomaly score 7. the
//!    mode's default for unmatched actions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::action::{Action, Decision, Mode, Object, RiskFactor, Verdict};
use crate::breaker::{Admission, BreakerState, Breakers};
use crate::error::PolicyError;
use crate::kernel::KernelPolicy;
use crate::policy::Policy;
use crate::quarantine::{Quarantine, QuarantineEntry, QuarantineTarget};
use crate::rate::RateLimiter;
use crate::rule::{Rule, Subject};

/// Risk of a verdict taken by each engine step.
const RISK_CIRCUIT_BREAKER: u8 = 30;
const RISK_QUARANTINE: u8 = 90;
const RISK_LOCKDOWN_DENY: u8 = 60;
const RISK_RATE_LIMIT: u8 = 50;
const RISK_UNMATCHED_ALLOW: u8 = 10;
const RISK_UNMATCHED_DENY: u8 = 40;

/// An anomaly score for one action (issue 6 plugs in here).
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyScore {
    /// 0–100.
    pub score: u8,
    /// The components worth showing (e.g. those above "suspicious").
    pub factors: Vec<RiskFactor>,
}

/// Scores actions against learned behaviour. Called once per evaluated
/// action, whatever the verdict, so baselines see the whole stream; `None`
/// while there is no baseline yet.
pub trait AnomalyScorer: Send {
    fn score(&mut self, action: &Action, now: SystemTime) -> Option<AnomalyScore>;
}

/// Score thresholds (issue 6 defaults); changeable at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AnomalyThresholds {
    /// Factors at or above this are worth attaching.
    pub suspicious: u8,
    /// An allowed action at or above this alerts (mode alert) or is asked
    /// (mode silent-deny).
    pub anomalous: u8,
    /// An allowed action at or above this is asked (modes alert and
    /// silent-deny).
    pub critical: u8,
    /// At or above this the caller should switch to lockdown.
    pub auto_lockdown: u8,
}

impl Default for AnomalyThresholds {
    fn default() -> Self {
        AnomalyThresholds {
            suspicious: 30,
            anomalous: 60,
            critical: 80,
            auto_lockdown: 90,
        }
    }
}

/// Everything one evaluation found: the verdict, the anomaly score it
/// used, and whether the caller should switch the mode to lockdown.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub verdict: Verdict,
    pub anomaly: Option<AnomalyScore>,
    /// The score reached the auto-lockdown threshold while not in
    /// lockdown: the caller switches the mode, records why and alerts.
    pub lockdown_requested: bool,
}

/// The one verdict engine. Not thread-safe by itself: the daemon owns it
/// (behind a lock or on one task).
pub struct Engine {
    policy: Policy,
    mode: Mode,
    homes: HashMap<u32, PathBuf>,
    quarantine: Quarantine,
    breakers: Breakers,
    limiter: RateLimiter,
    anomaly: Option<Box<dyn AnomalyScorer>>,
    thresholds: AnomalyThresholds,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .field("rules", &self.policy.rules().len())
            .field("anomaly", &self.anomaly.is_some())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine in the default mode (`alert`) with no home directories
    /// known (so `~/` patterns match nothing until [`Engine::set_homes`]).
    pub fn new(policy: Policy) -> Engine {
        Engine {
            policy,
            mode: Mode::default(),
            homes: HashMap::new(),
            quarantine: Quarantine::default(),
            breakers: Breakers::default(),
            limiter: RateLimiter::default(),
            anomaly: None,
            thresholds: AnomalyThresholds::default(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy. Quarantine, mode, breaker state and the rate
    /// buckets of rules that still exist (by name) carry over.
    pub fn reload(&mut self, policy: Policy) {
        self.limiter
            .retain_rules(|name| policy.rules().iter().any(|rule| rule.name == name));
        self.policy = policy;
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// Home directories by UID, for `~/` patterns.
    pub fn set_homes(&mut self, homes: HashMap<u32, PathBuf>) {
        self.homes = homes;
    }

    pub fn homes(&self) -> &HashMap<u32, PathBuf> {
        &self.homes
    }

    /// Adds (or replaces, for the same target) a quarantine entry.
    pub fn quarantine(&mut self, entry: QuarantineEntry) -> Result<(), PolicyError> {
        self.quarantine.add(entry)
    }

    /// Lifts the quarantine on `target`; false when there was none.
    pub fn lift(&mut self, target: &QuarantineTarget) -> bool {
        self.quarantine.lift(target)
    }

    /// Current quarantine entries (expired ones are dropped as evaluation
    /// passes them, or by [`Engine::prune_quarantine`]).
    pub fn quarantines(&self) -> Vec<&QuarantineEntry> {
        self.quarantine.entries().collect()
    }

    pub fn prune_quarantine(&mut self, now: SystemTime) {
        self.quarantine.prune(now);
    }

    /// What the kernel can decide by itself, compiled from the same rules,
    /// quarantine and mode, for the watched UIDs whose homes are given.
    /// Compile again after a reload, a mode or quarantine change, and at
    /// [`KernelPolicy::next_expiry`].
    pub fn kernel_policy(&self, homes: &HashMap<u32, PathBuf>, now: SystemTime) -> KernelPolicy {
        crate::kernel::compile(&self.policy, self.mode, &self.quarantine, homes, now)
    }

    /// Where on disk the deny and ask file rules and the quarantine point,
    /// for a file-system guard (see [`crate::guarded_targets`]).
    pub fn guarded_targets(
        &self,
        homes: &[(u32, PathBuf)],
        now: SystemTime,
    ) -> Vec<crate::GuardTarget> {
        crate::guarded_targets(&self.policy, &self.quarantine, homes, now)
    }

    /// Records how a call to an MCP server ended (for the circuit
    /// breaker of that caller and server; `scope` is
    /// [`Engine::caller_scope`]).
    pub fn record_server_outcome(&mut self, scope: &str, server: &str, ok: bool, now: SystemTime) {
        self.breakers
            .record(scope, server, ok, self.policy.breaker(), now);
    }

    pub fn server_state(&self, scope: &str, server: &str) -> BreakerState {
        self.breakers.state(scope, server)
    }

    /// Every (caller scope, MCP server) with breaker state.
    pub fn server_states(&self) -> Vec<(String, String, BreakerState)> {
        let mut states: Vec<_> = self
            .breakers
            .states()
            .map(|((scope, server), state)| (scope.clone(), server.clone(), state))
            .collect();
        states.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        states
    }

    /// Whose breakers and rate-limit buckets an action uses: `agent:NAME`,
    /// or `uid:N` for a caller without an agent name.
    pub fn caller_scope(agent: Option<&str>, uid: u32) -> String {
        match agent {
            Some(agent) => format!("agent:{agent}"),
            None => format!("uid:{uid}"),
        }
    }

    pub fn set_anomaly(&mut self, scorer: Box<dyn AnomalyScorer>) {
        self.anomaly = Some(scorer);
    }

    pub fn set_anomaly_thresholds(&mut self, thresholds: AnomalyThresholds) {
        self.thresholds = thresholds;
    }

    pub fn anomaly_thresholds(&self) -> AnomalyThresholds {
        self.thresholds
    }

    /// The verdict for `action` at `now`.
    pub fn evaluate(&mut self, action: &Action, now: SystemTime) -> Verdict {
        self.assess(action, now).verdict
    }

    /// The verdict plus the anomaly score and the auto-lockdown request.
    pub fn assess(&mut self, action: &Action, now: SystemTime) -> Assessment {
        let anomaly = self
            .anomaly
            .as_mut()
            .and_then(|scorer| scorer.score(action, now));
        let home = self.homes.get(&action.uid).map(PathBuf::as_path);
        let (mut verdict, rule_index) = decide(self, action, home, anomaly.as_ref(), true, now);
        if let Some(score) = &anomaly {
            verdict.risk = verdict.risk.max(score.score.min(100));
            verdict.factors.clone_from(&score.factors);
        }
        let passes = matches!(
            verdict.action,
            Decision::Allow | Decision::LogOnly | Decision::Ask
        );
        if passes {
            self.commit_side_effects(action, rule_index, now);
        }
        let lockdown_requested = self.mode != Mode::Lockdown
            && anomaly
                .as_ref()
                .is_some_and(|score| score.score >= self.thresholds.auto_lockdown);
        Assessment {
            verdict,
            anomaly,
            lockdown_requested,
        }
    }

    /// The verdict of the policy, the mode and the quarantine alone: no
    /// circuit breaker, rate limit or anomaly score, and nothing changes.
    /// What `tools/list` uses to decide whether a tool is advertised (a
    /// listing must not spend a call's rate-limit token or breaker probe).
    pub fn evaluate_static(&self, action: &Action, now: SystemTime) -> Verdict {
        let home = self.homes.get(&action.uid).map(PathBuf::as_path);
        decide(self, action, home, None, false, now).0
    }

    /// Once an action passes: spend the rate-limit token and, for a
    /// half-open MCP server, mark the probe as sent.
    fn commit_side_effects(&mut self, action: &Action, rule_index: Option<usize>, now: SystemTime) {
        if let Some(rule) = rule_index.and_then(|index| self.policy.rules().get(index)) {
            if let Some(limit) = rule.rate_limit {
                self.limiter
                    .take(&rule.name, &rate_subject(action), limit, now);
            }
        }
        if let Object::Mcp { server, .. } = &action.object {
            let config = self.policy.breaker();
            let scope = rate_subject(action);
            if self.breakers.check(&scope, server, config, now) == Admission::Probe {
                self.breakers.probe_sent(&scope, server, now);
            }
        }
    }
}

/// Rate-limit buckets are per rule and per agent (or UID when unnamed).
fn rate_subject(action: &Action) -> String {
    Engine::caller_scope(action.agent.as_deref(), action.uid)
}

fn verdict(action: Decision, rule: &str, reason: String, risk: u8, alert: bool) -> Verdict {
    Verdict {
        action,
        rule: Some(rule.to_string()),
        reason,
        risk,
        enforced: false,
        alert,
        factors: Vec::new(),
    }
}

/// Steps 1–7. Returns the verdict and the index of the rule that matched
/// (whose rate-limit token is spent if the action passes). Takes no
/// `&mut`: nothing changes until the verdict is known. Without `live`, the
/// circuit breaker and rate limits (state of past calls) are skipped.
fn decide(
    engine: &Engine,
    action: &Action,
    home: Option<&Path>,
    anomaly: Option<&AnomalyScore>,
    live: bool,
    now: SystemTime,
) -> (Verdict, Option<usize>) {
    let mode = engine.mode;
    let alerts = mode != Mode::SilentAllow;

    // 1. Circuit breaker.
    if let (true, Object::Mcp { server, .. }) = (live, &action.object) {
        if let Admission::Refuse { .. } =
            engine
                .breakers
                .check(&rate_subject(action), server, engine.policy.breaker(), now)
        {
            let reason =
                format!("MCP server `{server}` keeps failing; cut off until its cool-down ends");
            return (
                verdict(
                    Decision::Deny,
                    "circuit-breaker",
                    reason,
                    RISK_CIRCUIT_BREAKER,
                    alerts,
                ),
                None,
            );
        }
    }

    // 2. Quarantine.
    let subject = Subject::new(action, home);
    if let Some(entry) = engine.quarantine.find(&subject, now) {
        let reason = format!("quarantined ({}): {}", entry.target, entry.reason);
        return (
            verdict(
                Decision::Deny,
                "quarantine",
                reason,
                RISK_QUARANTINE,
                alerts,
            ),
            None,
        );
    }

    // 3. Mode: lockdown ignores rules; only the health allow-list passes.
    if mode == Mode::Lockdown {
        let allow = engine.policy.lockdown();
        let allowed = match &action.object {
            Object::Exec { binary, .. } => allow.allows_exec(binary),
            Object::Open { path, write } => allow.allows_open(path, *write),
            Object::Connect { addr, .. } => allow.allows_connect(*addr),
            Object::Mcp { server, tool, .. } => allow.allows_tool(server, tool),
        };
        return if allowed {
            let reason = "lockdown: on the health allow-list".to_string();
            (verdict(Decision::Allow, "lockdown", reason, 0, false), None)
        } else {
            // The switch to lockdown is the alert; every refusal would flood.
            let reason = "lockdown: everything but the health allow-list is denied".to_string();
            (
                verdict(
                    Decision::Deny,
                    "lockdown",
                    reason,
                    RISK_LOCKDOWN_DENY,
                    false,
                ),
                None,
            )
        };
    }

    // 4. Rules, first match wins.
    let rules = engine.policy.rules();
    let path_hits = engine.policy.path_hits(&subject);
    let matched = (0..rules.len()).find(|&index| {
        let path_hit = path_hits
            .as_ref()
            .map(|hits| hits.binary_search(&index).is_ok());
        rules[index].matches_with(&subject, now, path_hit)
    });
    let base = match matched.map(|index| &rules[index]) {
        // The sudo gate answers for the elevator execs its rule catches.
        Some(rule) if rule.name == crate::sudo::GATE_RULE => match &action.object {
            Object::Exec { binary, argv } => {
                let gate = engine.policy.sudo().decide(binary, argv);
                let alert = alerts && gate.action != Decision::Allow;
                let reason = format!("{} (`{}`)", gate.reason, gate.command);
                let v = verdict(gate.action, &gate.rule, reason, gate.risk, alert);
                if v.action == Decision::Deny {
                    return (v, matched);
                }
                v
            }
            _ => rule_verdict(rule, alerts),
        },
        Some(rule) if rule.action == Decision::Deny => {
            return (rule_verdict(rule, alerts), matched);
        }
        Some(rule) => {
            // 5. The rule's rate limit.
            if let (true, Some(limit)) = (live, rule.rate_limit) {
                if !engine
                    .limiter
                    .would_take(&rule.name, &rate_subject(action), limit, now)
                {
                    let reason = format!(
                        "rate limit: more than {} per {} s",
                        limit.max,
                        limit.per.as_secs()
                    );
                    let risk = rule.risk.max(RISK_RATE_LIMIT);
                    return (
                        verdict(Decision::Deny, &rule.name, reason, risk, alerts),
                        None,
                    );
                }
            }
            rule_verdict(rule, alerts)
        }
        // 7 (after 6 below): the mode's default for unmatched actions.
        None => mode_default(mode),
    };

    // 6. Anomaly score: escalates actions that would pass.
    let escalated = match anomaly {
        Some(score) if matches!(base.action, Decision::Allow | Decision::LogOnly) => {
            escalate(base, score, mode, engine.thresholds)
        }
        _ => base,
    };
    (escalated, matched)
}

fn rule_verdict(rule: &Rule, alerts: bool) -> Verdict {
    let reason = rule
        .reason
        .clone()
        .unwrap_or_else(|| format!("matched rule `{}`", rule.name));
    // Denials alert (except while learning); asks raise an approval request
    // instead; allow and log-only are quiet.
    let alert = alerts && rule.action == Decision::Deny;
    verdict(rule.action, &rule.name, reason, rule.risk, alert)
}

fn mode_default(mode: Mode) -> Verdict {
    match mode {
        Mode::SilentAllow => verdict(
            Decision::Allow,
            "mode-default",
            "no rule matched; silent-allow mode allows".into(),
            RISK_UNMATCHED_ALLOW,
            false,
        ),
        Mode::Alert => verdict(
            Decision::Allow,
            "mode-default",
            "no rule matched; alert mode allows and alerts".into(),
            RISK_UNMATCHED_ALLOW,
            true,
        ),
        Mode::SilentDeny | Mode::Lockdown => verdict(
            Decision::Deny,
            "mode-default",
            "no rule matched; silent-deny mode denies".into(),
            RISK_UNMATCHED_DENY,
            false,
        ),
    }
}

/// Step 6 for an action that would pass. Learning mode never escalates.
fn escalate(base: Verdict, score: &AnomalyScore, mode: Mode, t: AnomalyThresholds) -> Verdict {
    let ask = match mode {
        Mode::SilentAllow | Mode::Lockdown => false,
        Mode::Alert => score.score >= t.critical,
        Mode::SilentDeny => score.score >= t.anomalous,
    };
    if ask {
        let threshold = if mode == Mode::Alert {
            t.critical
        } else {
            t.anomalous
        };
        let reason = format!(
            "anomaly score {} >= {threshold}{}",
            score.score,
            describe_factors(&score.factors)
        );
        return verdict(Decision::Ask, "anomaly", reason, score.score, true);
    }
    if mode == Mode::Alert && score.score >= t.anomalous {
        return Verdict {
            alert: true,
            reason: format!(
                "{}; anomaly score {}{}",
                base.reason,
                score.score,
                describe_factors(&score.factors)
            ),
            ..base
        };
    }
    base
}

fn describe_factors(factors: &[RiskFactor]) -> String {
    if factors.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = factors
        .iter()
        .map(|factor| format!("{} {}", factor.name, factor.score))
        .collect();
    format!(" ({})", parts.join(", "))
}
