//! Rule schedules: on which days and between which local times (in a named
//! time zone) a rule applies. Windows may wrap past midnight.

use std::time::SystemTime;

use chrono::{DateTime, Datelike, Timelike, Utc, Weekday};
use chrono_tz::Tz;

/// `schedule = { days = [...], start = "HH:MM", end = "HH:MM", tz = "Area/City" }`.
///
/// `start` is inclusive and `end` exclusive; `start == end` means the whole
/// day. When the window wraps past midnight (`start > end`), the part after
/// midnight belongs to the day the window started on: `days = ["fri"]`,
/// 22:00–06:00 covers Saturday 03:00.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Empty means every day.
    pub days: Vec<Weekday>,
    /// Minutes after local midnight.
    pub start: u16,
    pub end: u16,
    pub tz: Tz,
}

impl Schedule {
    pub fn contains(&self, now: SystemTime) -> bool {
        let local = DateTime::<Utc>::from(now).with_timezone(&self.tz);
        let minute = (local.hour() * 60 + local.minute()) as u16;
        let today = local.weekday();
        let on = |day: Weekday| self.days.is_empty() || self.days.contains(&day);
        if self.start == self.end {
            return on(today);
        }
        if self.start < self.end {
            return on(today) && (self.start..self.end).contains(&minute);
        }
        (minute >= self.start && on(today)) || (minute < self.end && on(today.pred()))
    }
}

/// Parses `"HH:MM"` (24-hour) into minutes after midnight.
pub fn parse_clock(text: &str) -> Option<u16> {
    let (hours, minutes) = text.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: u16 = hours.parse().ok()?;
    let minutes: u16 = minutes.parse().ok()?;
    (hours < 24 && minutes < 60).then_some(hours * 60 + minutes)
}

/// Parses a day name (`mon`, `Monday`, …) or a group (`weekdays`,
/// `weekends`).
pub fn parse_days(text: &str) -> Option<Vec<Weekday>> {
    use Weekday::*;
    let lower = text.to_ascii_lowercase();
    let days = match lower.as_str() {
        "weekdays" => vec![Mon, Tue, Wed, Thu, Fri],
        "weekends" => vec![Sat, Sun],
        "mon" | "monday" => vec![Mon],
        "tue" | "tuesday" => vec![Tue],
        "wed" | "wednesday" => vec![Wed],
        "thu" | "thursday" => vec![Thu],
        "fri" | "friday" => vec![Fri],
        "sat" | "saturday" => vec![Sat],
        "sun" | "sunday" => vec![Sun],
        _ => return None,
    };
    Some(days)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// 2026-01-05 is a Monday.
    fn utc(day: u64, hour: u64, minute: u64) -> SystemTime {
        let monday_2026_01_05 = 1_767_571_200;
        UNIX_EPOCH + Duration::from_secs(monday_2026_01_05 + (day * 24 + hour) * 3600 + minute * 60)
    }

    fn schedule(days: &[Weekday], start: &str, end: &str, tz: &str) -> Schedule {
        Schedule {
            days: days.to_vec(),
            start: parse_clock(start).unwrap(),
            end: parse_clock(end).unwrap(),
            tz: tz.parse().unwrap(),
        }
    }

    #[test]
    fn monday_fixture_is_a_monday() {
        let local = DateTime::<Utc>::from(utc(0, 0, 0));
        assert_eq!(local.weekday(), Weekday::Mon);
        assert_eq!(local.hour(), 0);
    }

    #[test]
    fn windows_inside_a_day_across_midnight_and_across_time_zones() {
        use Weekday::*;
        let office_ny = schedule(
            &[Mon, Tue, Wed, Thu, Fri],
            "09:00",
            "17:00",
            "America/New_York",
        );
        let night_tokyo = schedule(&[Fri], "22:00", "06:00", "Asia/Tokyo");
        let night_utc = schedule(&[], "22:00", "06:00", "UTC");
        let all_day_sunday = schedule(&[Sun], "00:00", "00:00", "UTC");
        let cases = [
            // New York is UTC-5 in January: 09:00 local = 14:00 UTC.
            ("ny mon 13:59Z", &office_ny, utc(0, 13, 59), false),
            ("ny mon 14:00Z", &office_ny, utc(0, 14, 0), true),
            ("ny mon 21:59Z", &office_ny, utc(0, 21, 59), true),
            ("ny mon 22:00Z", &office_ny, utc(0, 22, 0), false),
            // Saturday 01:00 UTC is Friday 20:00 in New York: a weekday but after hours.
            ("ny sat 01:00Z", &office_ny, utc(5, 1, 0), false),
            // Saturday 15:00 UTC is Saturday 10:00 in New York.
            ("ny sat 15:00Z", &office_ny, utc(5, 15, 0), false),
            // Tokyo is UTC+9: Friday 22:00 JST = Friday 13:00 UTC.
            ("tokyo fri 12:59Z", &night_tokyo, utc(4, 12, 59), false),
            ("tokyo fri 13:00Z", &night_tokyo, utc(4, 13, 0), true),
            // Saturday 05:59 JST = Friday 20:59 UTC: past midnight, started Friday.
            ("tokyo sat 05:59 JST", &night_tokyo, utc(4, 20, 59), true),
            ("tokyo sat 06:00 JST", &night_tokyo, utc(4, 21, 0), false),
            // Thursday 23:00 JST: right hours, wrong day.
            ("tokyo thu 23:00 JST", &night_tokyo, utc(3, 14, 0), false),
            // Saturday 23:00 JST belongs to a Saturday window: not scheduled.
            ("tokyo sat 23:00 JST", &night_tokyo, utc(5, 14, 0), false),
            ("utc 23:30", &night_utc, utc(2, 23, 30), true),
            ("utc 03:00", &night_utc, utc(2, 3, 0), true),
            ("utc 12:00", &night_utc, utc(2, 12, 0), false),
            ("sunday all day", &all_day_sunday, utc(6, 12, 0), true),
            ("monday not sunday", &all_day_sunday, utc(0, 12, 0), false),
        ];
        for (name, schedule, now, expected) in cases {
            assert_eq!(schedule.contains(now), expected, "{name}");
        }
    }

    #[test]
    fn clock_and_day_parsing() {
        assert_eq!(parse_clock("00:00"), Some(0));
        assert_eq!(parse_clock("23:59"), Some(1439));
        for bad in ["24:00", "9:00", "09:60", "0900", "aa:bb"] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
        assert_eq!(parse_days("Weekends").unwrap().len(), 2);
        assert_eq!(parse_days("FRI").unwrap(), vec![Weekday::Fri]);
        assert!(parse_days("funday").is_none());
    }
}
