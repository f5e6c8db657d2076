//! Per-rule, per-agent rate limits: `rate_limit = { max = N, per_seconds = S }`.
//!
//! A token bucket of `max` tokens where each spent token comes back exactly
//! `per_seconds` after it was spent. That honours the window: no `S`-second
//! window ever holds more than `N` allowed actions (a bucket that refills
//! continuously would let up to `2N - 1` through around a window edge).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

/// A rule's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub max: u32,
    pub per: Duration,
}

/// Spent tokens per (rule, subject), where the subject is the agent name or
/// its UID.
#[derive(Debug, Default)]
pub struct RateLimiter {
    spent: HashMap<(String, String), VecDeque<SystemTime>>,
}

impl RateLimiter {
    /// Takes a token for `subject` under `rule` at `now`; false when the
    /// bucket is empty (the action is over the limit and is not counted).
    pub fn take(&mut self, rule: &str, subject: &str, limit: RateLimit, now: SystemTime) -> bool {
        let key = (rule.to_string(), subject.to_string());
        let spent = self.spent.entry(key).or_default();
        // A token spent at `t` is back at `t + per`. Tokens "spent in the
        // future" (the clock went backwards) stay spent: err towards limiting.
        while let Some(&oldest) = spent.front() {
            if oldest + limit.per <= now {
                spent.pop_front();
            } else {
                break;
            }
        }
        if spent.len() >= limit.max as usize {
            return false;
        }
        spent.push_back(now);
        true
    }

    /// Would [`RateLimiter::take`] succeed? Changes nothing.
    pub fn would_take(&self, rule: &str, subject: &str, limit: RateLimit, now: SystemTime) -> bool {
        let key = (rule.to_string(), subject.to_string());
        match self.spent.get(&key) {
            None => limit.max > 0,
            Some(spent) => {
                let still_out = spent.iter().filter(|&&t| t + limit.per > now).count();
                still_out < limit.max as usize
            }
        }
    }

    /// Forgets buckets of rules that no longer exist (after a reload).
    pub fn retain_rules(&mut self, keep: impl Fn(&str) -> bool) {
        self.spent.retain(|(rule, _), _| keep(rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn the_window_is_honoured() {
        let limit = RateLimit {
            max: 3,
            per: Duration::from_secs(10),
        };
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(1_000_000 + ms);
        let mut limiter = RateLimiter::default();
        // (time in ms, expected)
        let steps = [
            (0, true),
            (1_000, true),
            (2_000, true),
            (3_000, false),  // 4th inside the window
            (9_999, false),  // still inside the first token's window
            (10_000, true),  // the token spent at 0 is back
            (10_500, false), // tokens from 1s and 2s are still out
            (11_000, true),  // the 1s token is back
            (12_000, true),  // the 2s token is back
            (12_001, false), // 10s, 11s and 12s tokens are out
            (30_000, true),  // long idle: full bucket
            (30_000, true),
            (30_000, true),
            (30_000, false),
        ];
        for (ms, expected) in steps {
            assert_eq!(
                limiter.take("r", "agent", limit, at(ms)),
                expected,
                "t={ms}ms"
            );
        }
    }

    #[test]
    fn subjects_and_rules_have_separate_buckets() {
        let limit = RateLimit {
            max: 1,
            per: Duration::from_secs(60),
        };
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let mut limiter = RateLimiter::default();
        assert!(limiter.take("r1", "alice", limit, now));
        assert!(!limiter.take("r1", "alice", limit, now));
        assert!(limiter.take("r1", "bob", limit, now));
        assert!(limiter.take("r2", "alice", limit, now));
        limiter.retain_rules(|rule| rule != "r1");
        assert!(limiter.take("r1", "alice", limit, now));
    }

    #[test]
    fn a_clock_going_backwards_does_not_refill() {
        let limit = RateLimit {
            max: 1,
            per: Duration::from_secs(60),
        };
        let mut limiter = RateLimiter::default();
        assert!(limiter.take("r", "a", limit, UNIX_EPOCH + Duration::from_secs(1000)));
        assert!(!limiter.take("r", "a", limit, UNIX_EPOCH + Duration::from_secs(500)));
    }
}
