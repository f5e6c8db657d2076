//! The MCP circuit breaker: a server that keeps failing is cut off for a
//! cool-down, then tried again with a single probe call.
//!
//! Closed → (N consecutive failures) → Open → (cool-down over) → HalfOpen:
//! one probe call goes through; its success closes the breaker, its failure
//! opens it again. A probe whose outcome never arrives is given up on after
//! another cool-down, so a lost probe cannot wedge the server shut.
//!
//! Breakers are per caller and server: one agent's failing (or lying)
//! proxy cannot open, or reset, another agent's breaker for the same
//! server name.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

/// `[circuit_breaker]` in a policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    pub cooldown: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// A server's breaker state, as reported to the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed { consecutive_failures: u32 },
    Open { until: SystemTime },
    HalfOpen { probe_sent: Option<SystemTime> },
}

/// Whether a call to a server may go through right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Pass,
    /// Passes as the half-open probe.
    Probe,
    /// Cut off; `until` is when the next probe may go (if known).
    Refuse {
        until: Option<SystemTime>,
    },
}

/// A breaker's key: the caller scope (`agent:NAME` or `uid:N`, as for rate
/// limits) and the server name.
pub type BreakerKey = (String, String);

#[derive(Debug, Default)]
pub struct Breakers {
    servers: HashMap<BreakerKey, BreakerState>,
}

fn key(scope: &str, server: &str) -> BreakerKey {
    (scope.to_string(), server.to_string())
}

impl Breakers {
    #[cfg(test)]
    /// Decides admission for a call to `server` and, for a probe, marks it
    /// sent. Use [`Breakers::check`] and [`Breakers::probe_sent`] when the
    /// call may still be stopped by a later step.
    pub fn admit(
        &mut self,
        scope: &str,
        server: &str,
        config: BreakerConfig,
        now: SystemTime,
    ) -> Admission {
        let admission = self.check(scope, server, config, now);
        if admission == Admission::Probe {
            self.probe_sent(scope, server, now);
        }
        admission
    }

    /// Would a call to `server` be let through now? Changes nothing.
    pub fn check(
        &self,
        scope: &str,
        server: &str,
        config: BreakerConfig,
        now: SystemTime,
    ) -> Admission {
        match self.servers.get(&key(scope, server)) {
            None | Some(BreakerState::Closed { .. }) => Admission::Pass,
            Some(&BreakerState::Open { until }) if now < until => {
                Admission::Refuse { until: Some(until) }
            }
            Some(BreakerState::Open { .. }) => Admission::Probe,
            Some(&BreakerState::HalfOpen {
                probe_sent: Some(sent),
            }) if now < sent + config.cooldown => Admission::Refuse {
                until: Some(sent + config.cooldown),
            },
            Some(BreakerState::HalfOpen { .. }) => Admission::Probe,
        }
    }

    /// The half-open probe call to `server` went out at `now`.
    pub fn probe_sent(&mut self, scope: &str, server: &str, now: SystemTime) {
        self.servers.insert(
            key(scope, server),
            BreakerState::HalfOpen {
                probe_sent: Some(now),
            },
        );
    }

    /// Records how a call to `server` ended.
    pub fn record(
        &mut self,
        scope: &str,
        server: &str,
        ok: bool,
        config: BreakerConfig,
        now: SystemTime,
    ) {
        let state = self
            .servers
            .entry(key(scope, server))
            .or_insert(BreakerState::Closed {
                consecutive_failures: 0,
            });
        *state = match (*state, ok) {
            (_, true) => BreakerState::Closed {
                consecutive_failures: 0,
            },
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= config.failures.max(1) {
                    BreakerState::Open {
                        until: now + config.cooldown,
                    }
                } else {
                    BreakerState::Closed {
                        consecutive_failures: failures,
                    }
                }
            }
            (BreakerState::HalfOpen { .. }, false) => BreakerState::Open {
                until: now + config.cooldown,
            },
            // A straggler failing while already open does not extend it.
            (open @ BreakerState::Open { .. }, false) => open,
        };
    }

    pub fn state(&self, scope: &str, server: &str) -> BreakerState {
        self.servers
            .get(&key(scope, server))
            .copied()
            .unwrap_or(BreakerState::Closed {
                consecutive_failures: 0,
            })
    }

    pub fn states(&self) -> impl Iterator<Item = (&BreakerKey, BreakerState)> {
        self.servers.iter().map(|(key, state)| (key, *state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn open_half_open_close() {
        let config = BreakerConfig {
            failures: 3,
            cooldown: Duration::from_secs(30),
        };
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1000 + s);
        let mut b = Breakers::default();
        assert_eq!(b.admit("a", "s", config, t(0)), Admission::Pass);
        b.record("a", "s", false, config, t(0));
        b.record("a", "s", false, config, t(1));
        // A success in between resets the count.
        b.record("a", "s", true, config, t(2));
        b.record("a", "s", false, config, t(3));
        b.record("a", "s", false, config, t(4));
        assert_eq!(b.admit("a", "s", config, t(4)), Admission::Pass);
        b.record("a", "s", false, config, t(5));
        assert_eq!(b.state("a", "s"), BreakerState::Open { until: t(35) });
        assert_eq!(
            b.admit("a", "s", config, t(34)),
            Admission::Refuse { until: Some(t(35)) }
        );
        // Other servers, and the same server for other callers, are
        // unaffected.
        assert_eq!(b.admit("a", "other", config, t(10)), Admission::Pass);
        assert_eq!(b.admit("b", "s", config, t(10)), Admission::Pass);
        // Cool-down over: exactly one probe.
        assert_eq!(b.admit("a", "s", config, t(35)), Admission::Probe);
        assert!(matches!(
            b.admit("a", "s", config, t(36)),
            Admission::Refuse { .. }
        ));
        // The probe fails: open again for a full cool-down.
        b.record("a", "s", false, config, t(37));
        assert_eq!(
            b.admit("a", "s", config, t(66)),
            Admission::Refuse { until: Some(t(67)) }
        );
        assert_eq!(b.admit("a", "s", config, t(67)), Admission::Probe);
        // The probe succeeds: closed.
        b.record("a", "s", true, config, t(68));
        assert_eq!(b.admit("a", "s", config, t(68)), Admission::Pass);
        assert_eq!(
            b.state("a", "s"),
            BreakerState::Closed {
                consecutive_failures: 0
            }
        );
    }

    #[test]
    fn a_lost_probe_is_retried_after_a_cool_down() {
        let config = BreakerConfig {
            failures: 1,
            cooldown: Duration::from_secs(10),
        };
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let mut b = Breakers::default();
        b.record("a", "s", false, config, t(0));
        assert_eq!(b.admit("a", "s", config, t(10)), Admission::Probe);
        assert!(matches!(
            b.admit("a", "s", config, t(19)),
            Admission::Refuse { .. }
        ));
        assert_eq!(b.admit("a", "s", config, t(20)), Admission::Probe);
    }
}
