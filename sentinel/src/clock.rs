//! Kernel timestamps to wall-clock time. The programs stamp events with
//! `bpf_ktime_get_ns` (CLOCK_MONOTONIC); the stream wants RFC 3339.

use time::OffsetDateTime;

/// A time as the stream and the reports write it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    /// Wall-clock nanoseconds minus monotonic nanoseconds, at start.
    offset_ns: i128,
}

impl WallClock {
    pub fn now() -> Self {
        let wall = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Self {
            offset_ns: wall - i128::from(monotonic_ns()),
        }
    }

    /// The wall-clock time of a kernel timestamp.
    pub fn wall(&self, ktime_ns: u64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.offset_ns + i128::from(ktime_ns))
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
    }
}

pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_time_maps_close_to_now() {
        let clock = WallClock::now();
        let got = clock.wall(monotonic_ns());
        let diff = (OffsetDateTime::now_utc() - got).abs();
        assert!(diff < time::Duration::seconds(5), "{diff}");
    }
}
