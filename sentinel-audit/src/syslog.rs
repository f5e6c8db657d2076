//! RFC 5424 syslog framing for network sinks, and RFC 6587 octet counting
//! for TCP: `<PRI>1 TIMESTAMP HOST sentinel PROCID MSGID - MSG`.

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, UtcOffset};

/// Facility 13, "log audit".
pub const FACILITY_LOG_AUDIT: u8 = 13;
pub const APP_NAME: &str = "sentinel";

const TIMESTAMP: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// The parts of a syslog header that stay the same for one sender.
#[derive(Debug, Clone)]
pub struct Sender {
    pub facility: u8,
    pub hostname: String,
    pub procid: u32,
}

impl Sender {
    /// This host and process, facility "log audit".
    pub fn local() -> Sender {
        Sender {
            facility: FACILITY_LOG_AUDIT,
            hostname: local_hostname(),
            procid: std::process::id(),
        }
    }

    /// One RFC 5424 message (no structured data, no trailing newline).
    pub fn frame(&self, severity: u8, ts: OffsetDateTime, msgid: &str, msg: &str) -> String {
        let pri = u16::from(self.facility.min(23)) * 8 + u16::from(severity.min(7));
        let timestamp = ts
            .to_offset(UtcOffset::UTC)
            .format(TIMESTAMP)
            .unwrap_or_else(|_| "-".to_string());
        format!(
            "<{pri}>1 {timestamp} {} {APP_NAME} {} {} - {msg}",
            header_token(&self.hostname, 255),
            self.procid,
            header_token(msgid, 32)
        )
    }
}

/// RFC 6587 octet-counting: `LEN SP MSG`.
pub fn octet_counted(frame: &str) -> Vec<u8> {
    let mut out = format!("{} ", frame.len()).into_bytes();
    out.extend_from_slice(frame.as_bytes());
    out
}

/// A header field: printable US-ASCII without spaces, bounded, `-` if empty.
fn header_token(value: &str, max: usize) -> String {
    let token: String = value
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if token.is_empty() {
        "-".to_string()
    } else {
        token
    }
}

/// The kernel's host name, `-` if it cannot be read.
pub fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_has_rfc5424_layout() {
        let sender = Sender {
            facility: FACILITY_LOG_AUDIT,
            hostname: "host one".into(),
            procid: 42,
        };
        let ts = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789).unwrap();
        let frame = sender.frame(3, ts, "exec", "CEF:0|x");
        assert_eq!(
            frame,
            "<107>1 2023-11-14T22:13:20.123456Z hostone sentinel 42 exec - CEF:0|x"
        );
        assert_eq!(octet_counted("abc"), b"3 abc".to_vec());
    }
}
