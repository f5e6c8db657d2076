//! Time conversions and the host's time zone. Nothing here reads the clock:
//! callers pass `now`, so replays with a fake clock are deterministic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{Datelike, Timelike};
use chrono_tz::Tz;
use time::OffsetDateTime;

/// Seconds since the Unix epoch as a float (negative before 1970).
pub fn unix_secs_f64(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// Whole milliseconds since the Unix epoch (what the `anomaly_*` tables store).
pub fn unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// The inverse of [`unix_millis`].
pub fn from_unix_millis(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

/// A `SystemTime` as the audit record's timestamp type.
pub fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

/// Hour of the week in `tz`: 0 = Monday 00:00–00:59 … 167 = Sunday 23:00.
pub fn hour_of_week(t: SystemTime, tz: Tz) -> usize {
    let local = chrono::DateTime::<chrono::Utc>::from(t).with_timezone(&tz);
    local.weekday().num_days_from_monday() as usize * 24 + local.hour() as usize
}

/// The host's configured time zone: `/etc/timezone`, else the target of the
/// `/etc/localtime` link, else UTC.
pub fn host_timezone() -> Tz {
    if let Ok(name) = std::fs::read_to_string("/etc/timezone") {
        if let Ok(tz) = name.trim().parse::<Tz>() {
            return tz;
        }
    }
    if let Ok(target) = std::fs::read_link("/etc/localtime") {
        let target = target.to_string_lossy();
        if let Some((_, name)) = target.split_once("zoneinfo/") {
            if let Ok(tz) = name.parse::<Tz>() {
                return tz;
            }
        }
    }
    Tz::UTC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_of_week_uses_the_time_zone() {
        // 2026-11-23 is a Monday; 03:00 UTC is 04:00 in Paris (CET).
        let t = UNIX_EPOCH + Duration::from_secs(1_795_402_800);
        assert_eq!(hour_of_week(t, Tz::UTC), 3);
        assert_eq!(hour_of_week(t, chrono_tz::Europe::Paris), 4);
    }

    #[test]
    fn millis_round_trip() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(from_unix_millis(unix_millis(t)), t);
    }
}
