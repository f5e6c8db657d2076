//! Parsing of what `read(2)` returns from a fanotify group: a run of
//! `struct fanotify_event_metadata`, each followed by its info records
//! (file ids with an optional name, the range of a pre-content access).
//! Pure functions over bytes, so every malformed shape is unit-tested.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use crate::sys;

/// Size of `struct fanotify_event_metadata`.
const METADATA_LEN: usize = 24;

/// A filesystem object as fanotify's file-id records name it: the
/// filesystem id and the object's file handle. Stable across renames,
/// never reused while the object lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub fsid: [i32; 2],
    pub handle_type: i32,
    pub handle: Box<[u8]>,
}

/// Which object a file-id record is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FidRole {
    /// `FAN_EVENT_INFO_TYPE_FID`: the object itself (or, for a directory
    /// entry event, the entry's target with FAN_REPORT_TARGET_FID).
    Object,
    /// `FAN_EVENT_INFO_TYPE_DFID` / `_DFID_NAME`: the directory, and the
    /// entry's name when there is one (`.` for an event on the directory
    /// itself).
    Dir,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Info<'a> {
    Fid {
        role: FidRole,
        id: FileId,
        name: Option<&'a OsStr>,
    },
    Range {
        offset: u64,
        count: u64,
    },
    /// A record type this crate does not use.
    Other(u8),
}

/// One event as read from the group.
#[derive(Debug)]
pub(crate) struct RawEvent<'a> {
    pub mask: u64,
    /// The event's descriptor (permission groups), or negative.
    pub fd: i32,
    /// Thread id with FAN_REPORT_TID, else the thread-group id.
    pub pid: i32,
    pub infos: Vec<Info<'a>>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// The kernel speaks a metadata version this crate does not know.
    Version(u8),
    /// A length field points outside the buffer.
    Truncated,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn i32_at(b: &[u8], at: usize) -> Option<i32> {
    Some(i32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Splits a buffer of events. Each event's descriptor is reported even
/// when its info records are malformed, so that the caller can still
/// answer and close it: a parse error never leaves an event unanswered.
pub(crate) fn parse(buf: &[u8]) -> Vec<Result<RawEvent<'_>, (ParseError, i32)>> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= METADATA_LEN {
        let (Some(event_len), Some(metadata_len)) = (u32_at(rest, 0), u16_at(rest, 6)) else {
            break;
        };
        let (event_len, metadata_len) = (event_len as usize, metadata_len as usize);
        let fd = i32_at(rest, 16).unwrap_or(-1);
        if event_len < METADATA_LEN || event_len > rest.len() || metadata_len > event_len {
            out.push(Err((ParseError::Truncated, fd)));
            break;
        }
        let event = &rest[..event_len];
        rest = &rest[event_len..];
        let vers = event[4];
        if vers != sys::FANOTIFY_METADATA_VERSION {
            out.push(Err((ParseError::Version(vers), fd)));
            continue;
        }
        let mask = u64_at(event, 8).unwrap_or(0);
        let pid = i32_at(event, 20).unwrap_or(0);
        match parse_infos(&event[metadata_len.max(METADATA_LEN)..]) {
            Ok(infos) => out.push(Ok(RawEvent {
                mask,
                fd,
                pid,
                infos,
            })),
            Err(e) => out.push(Err((e, fd))),
        }
    }
    out
}

fn parse_infos(mut b: &[u8]) -> Result<Vec<Info<'_>>, ParseError> {
    let mut infos = Vec::new();
    while b.len() >= 4 {
        let kind = b[0];
        let len = u16_at(b, 2).ok_or(ParseError::Truncated)? as usize;
        if len < 4 || len > b.len() {
            return Err(ParseError::Truncated);
        }
        let rec = &b[..len];
        b = &b[len..];
        infos.push(match kind {
            sys::FAN_EVENT_INFO_TYPE_RANGE => Info::Range {
                offset: u64_at(rec, 8).ok_or(ParseError::Truncated)?,
                count: u64_at(rec, 16).ok_or(ParseError::Truncated)?,
            },
            sys::FAN_EVENT_INFO_TYPE_FID
            | sys::FAN_EVENT_INFO_TYPE_DFID
            | sys::FAN_EVENT_INFO_TYPE_DFID_NAME => parse_fid(kind, rec)?,
            other => Info::Other(other),
        });
    }
    Ok(infos)
}

/// `struct fanotify_event_info_fid`: header, fsid, then a `struct
/// file_handle` (bytes, type, handle) and, for DFID_NAME, a NUL-terminated
/// name.
fn parse_fid(kind: u8, rec: &[u8]) -> Result<Info<'_>, ParseError> {
    let fsid = [
        i32_at(rec, 4).ok_or(ParseError::Truncated)?,
        i32_at(rec, 8).ok_or(ParseError::Truncated)?,
    ];
    let handle_bytes = u32_at(rec, 12).ok_or(ParseError::Truncated)? as usize;
    let handle_type = i32_at(rec, 16).ok_or(ParseError::Truncated)?;
    let handle = rec
        .get(20..20 + handle_bytes)
        .ok_or(ParseError::Truncated)?;
    let name = if kind == sys::FAN_EVENT_INFO_TYPE_DFID_NAME {
        let tail = &rec[20 + handle_bytes..];
        let end = tail.iter().position(|&c| c == 0).unwrap_or(tail.len());
        Some(OsStr::from_bytes(&tail[..end]))
    } else {
        None
    };
    Ok(Info::Fid {
        role: if kind == sys::FAN_EVENT_INFO_TYPE_FID {
            FidRole::Object
        } else {
            FidRole::Dir
        },
        id: FileId {
            fsid,
            handle_type,
            handle: handle.into(),
        },
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(event_len: u32, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&event_len.to_ne_bytes());
        v.push(sys::FANOTIFY_METADATA_VERSION);
        v.push(0);
        v.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&fd.to_ne_bytes());
        v.extend_from_slice(&pid.to_ne_bytes());
        v
    }

    fn fid_record(kind: u8, handle: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&7i32.to_ne_bytes());
        body.extend_from_slice(&9i32.to_ne_bytes());
        body.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        body.extend_from_slice(&1i32.to_ne_bytes());
        body.extend_from_slice(handle);
        if let Some(n) = name {
            body.extend_from_slice(n.as_bytes());
            body.push(0);
        }
        while (body.len() + 4) % 4 != 0 {
            body.push(0);
        }
        let mut rec = vec![kind, 0];
        rec.extend_from_slice(&((body.len() + 4) as u16).to_ne_bytes());
        rec.extend_from_slice(&body);
        rec
    }

    #[test]
    fn a_permission_event_with_a_range() {
        let mut range = vec![sys::FAN_EVENT_INFO_TYPE_RANGE, 0];
        range.extend_from_slice(&24u16.to_ne_bytes());
        range.extend_from_slice(&[0; 4]);
        range.extend_from_slice(&4096u64.to_ne_bytes());
        range.extend_from_slice(&512u64.to_ne_bytes());
        let mut buf = metadata(24 + 24, sys::FAN_PRE_ACCESS, 5, 1234);
        buf.extend_from_slice(&range);
        let events = parse(&buf);
        assert_eq!(events.len(), 1);
        let ev = events[0].as_ref().unwrap();
        assert_eq!((ev.mask, ev.fd, ev.pid), (sys::FAN_PRE_ACCESS, 5, 1234));
        assert_eq!(
            ev.infos,
            vec![Info::Range {
                offset: 4096,
                count: 512
            }]
        );
    }

    #[test]
    fn a_directory_entry_event_with_name_and_target() {
        let dir = fid_record(
            sys::FAN_EVENT_INFO_TYPE_DFID_NAME,
            &[1; 8],
            Some("id_ed25519"),
        );
        let target = fid_record(sys::FAN_EVENT_INFO_TYPE_FID, &[2; 8], None);
        let len = 24 + dir.len() + target.len();
        let mut buf = metadata(len as u32, sys::FAN_CREATE, -1, 77);
        buf.extend_from_slice(&dir);
        buf.extend_from_slice(&target);
        // Two events back to back.
        let again = buf.clone();
        buf.extend_from_slice(&again);
        let events = parse(&buf);
        assert_eq!(events.len(), 2);
        let ev = events[1].as_ref().unwrap();
        match &ev.infos[..] {
            [Info::Fid {
                role: FidRole::Dir,
                id: d,
                name: Some(n),
            }, Info::Fid {
                role: FidRole::Object,
                id: t,
                name: None,
            }] => {
                assert_eq!(*n, OsStr::new("id_ed25519"));
                assert_eq!(d.fsid, [7, 9]);
                assert_eq!(&*d.handle, &[1; 8]);
                assert_eq!(&*t.handle, &[2; 8]);
            }
            other => panic!("unexpected infos {other:?}"),
        }
    }

    #[test]
    fn truncated_records_still_hand_back_the_descriptor() {
        let mut buf = metadata(24 + 8, libc::FAN_OPEN_PERM, 9, 1);
        // An info header claiming 40 bytes in an 8-byte tail.
        buf.extend_from_slice(&[1, 0, 40, 0, 0, 0, 0, 0]);
        let events = parse(&buf);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].as_ref().unwrap_err(), &(ParseError::Truncated, 9));
    }

    #[test]
    fn an_event_longer_than_the_buffer_is_an_error_not_a_panic() {
        let buf = metadata(4096, libc::FAN_OPEN_PERM, 3, 1);
        let events = parse(&buf);
        assert_eq!(events[0].as_ref().unwrap_err(), &(ParseError::Truncated, 3));
        assert!(parse(&buf[..10]).is_empty());
    }

    #[test]
    fn an_unknown_metadata_version_is_reported() {
        let mut buf = metadata(24, libc::FAN_OPEN_PERM, 4, 1);
        buf[4] = 99;
        assert_eq!(
            parse(&buf)[0].as_ref().unwrap_err(),
            &(ParseError::Version(99), 4)
        );
    }

    #[test]
    fn a_handle_longer_than_its_record_is_truncated() {
        let mut rec = fid_record(sys::FAN_EVENT_INFO_TYPE_FID, &[3; 8], None);
        rec[12..16].copy_from_slice(&200u32.to_ne_bytes());
        let mut buf = metadata((24 + rec.len()) as u32, libc::FAN_ATTRIB, -1, 1);
        buf.extend_from_slice(&rec);
        assert_eq!(
            parse(&buf)[0].as_ref().unwrap_err(),
            &(ParseError::Truncated, -1)
        );
    }
}
