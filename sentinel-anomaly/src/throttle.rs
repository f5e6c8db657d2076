//! Per-source rate limiting of alerts: a token bucket per source, with a
//! count of what it held back so the next alert that passes can say so.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::clock::unix_secs_f64;

/// Sources kept before full (idle) buckets are forgotten.
const MAX_SOURCES: usize = 10_000;

/// Whether an alert from a source may go out now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Yes; `suppressed_before` alerts from this source were held back
    /// since the last one that went out.
    Yes { suppressed_before: u64 },
    /// No: the source is over its rate.
    No,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: f64,
    suppressed: u64,
}

/// Token buckets keyed by alert source.
#[derive(Debug, Clone)]
pub struct Throttle {
    capacity: f64,
    refill_per_sec: f64,
    buckets: HashMap<String, Bucket>,
}

impl Throttle {
    /// `burst` alerts at once, then `per_minute` a minute, per source.
    pub fn new(burst: u32, per_minute: u32) -> Self {
        Throttle {
            capacity: f64::from(burst.max(1)),
            refill_per_sec: f64::from(per_minute) / 60.0,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token for `source` if one is left at `now`.
    pub fn admit(&mut self, source: &str, now: SystemTime) -> Admit {
        let t = unix_secs_f64(now);
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(source) {
            self.forget_idle(t);
        }
        let capacity = self.capacity;
        let bucket = self
            .buckets
            .entry(source.to_owned())
            .or_insert_with(|| Bucket {
                tokens: capacity,
                at: t,
                suppressed: 0,
            });
        let elapsed = (t - bucket.at).max(0.0);
        bucket.tokens = (bucket.tokens + elapsed * self.refill_per_sec).min(capacity);
        bucket.at = bucket.at.max(t);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            let suppressed_before = std::mem::take(&mut bucket.suppressed);
            Admit::Yes { suppressed_before }
        } else {
            bucket.suppressed += 1;
            Admit::No
        }
    }

    fn forget_idle(&mut self, t: f64) {
        let (capacity, rate) = (self.capacity, self.refill_per_sec);
        self.buckets
            .retain(|_, b| b.suppressed > 0 || b.tokens + (t - b.at).max(0.0) * rate < capacity);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn bucket_refills_and_reports_what_it_held_back() {
        let mut throttle = Throttle::new(2, 60);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            throttle.admit("a", t0),
            Admit::Yes {
                suppressed_before: 0
            }
        );
        assert_eq!(
            throttle.admit("a", t0),
            Admit::Yes {
                suppressed_before: 0
            }
        );
        assert_eq!(throttle.admit("a", t0), Admit::No);
        assert_eq!(throttle.admit("a", t0), Admit::No);
        // Another source has its own bucket.
        assert_eq!(
            throttle.admit("b", t0),
            Admit::Yes {
                suppressed_before: 0
            }
        );
        // One token a second.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(
            throttle.admit("a", t1),
            Admit::Yes {
                suppressed_before: 2
            }
        );
        assert_eq!(throttle.admit("a", t1), Admit::No);
    }
}
