//! Decoding ring-buffer records (`sentinel-common` layouts) into owned,
//! typed [`KernelEvent`]s. Nothing here trusts the record's length: every
//! read is checked against the size of the layout its `kind` names.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use sentinel_common::{
    exec_flags, kernel_action, kind, mutate_op, object_flags, ConnectEvent, EventHeader, ExecEvent,
    ExitEvent, FileObject, ForkEvent, MutateEvent, OpenEvent, RepeatEvent, TamperEvent,
    RET_UNKNOWN,
};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("ring buffer record of {len} bytes is too short for kind {kind}")]
    Short { kind: u32, len: usize },
    #[error("ring buffer record has unknown kind {0}")]
    UnknownKind(u32),
}

/// What the kernel did about an event on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelAction {
    None,
    Denied,
    Killed,
    Held,
}

impl KernelAction {
    fn from_raw(raw: u32) -> Self {
        match raw {
            kernel_action::DENIED => Self::Denied,
            kernel_action::KILLED => Self::Killed,
            kernel_action::HELD => Self::Held,
            _ => Self::None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub ktime_ns: u64,
    pub action: KernelAction,
    pub rule_id: u32,
    pub comm: String,
}

/// A file the kernel resolved, or only named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileRef {
    /// The object's path as the kernel resolved it; empty when nothing was
    /// resolved (then only what was typed is known).
    pub path: String,
    /// Its identity, when it exists.
    pub dev: u32,
    pub ino: u64,
    /// `path` holds only the first bytes of a longer path.
    pub truncated: bool,
    /// The object has no name left (memfd, deleted file).
    pub unlinked: bool,
    /// An `O_PATH` handle.
    pub o_path: bool,
    /// Composed from the resolved directory and the name as typed (no
    /// object existed, or none could be looked up where it was decided).
    pub composed: bool,
}

impl FileRef {
    fn decode(obj: &FileObject, path: &[u8]) -> Self {
        let resolved = obj.flags & (object_flags::RESOLVED | object_flags::COMPOSED) != 0;
        FileRef {
            path: if resolved { c_str(path) } else { String::new() },
            dev: obj.dev,
            ino: obj.ino,
            truncated: obj.flags & object_flags::TRUNCATED != 0,
            unlinked: obj.flags & object_flags::UNLINKED != 0,
            o_path: obj.flags & object_flags::O_PATH != 0,
            composed: obj.flags & object_flags::COMPOSED != 0,
        }
    }
}

/// What a file-system change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Rename,
    Link,
    Unlink,
    Rmdir,
    Truncate,
    Chmod,
    Chown,
    Mkdir,
    Symlink,
    Mknod,
}

impl ChangeOp {
    fn from_raw(raw: u32) -> Option<Self> {
        Some(match raw {
            mutate_op::RENAME => Self::Rename,
            mutate_op::LINK => Self::Link,
            mutate_op::UNLINK => Self::Unlink,
            mutate_op::RMDIR => Self::Rmdir,
            mutate_op::TRUNCATE => Self::Truncate,
            mutate_op::CHMOD => Self::Chmod,
            mutate_op::CHOWN => Self::Chown,
            mutate_op::MKDIR => Self::Mkdir,
            mutate_op::SYMLINK => Self::Symlink,
            mutate_op::MKNOD => Self::Mknod,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Rename => "rename",
            Self::Link => "link",
            Self::Unlink => "unlink",
            Self::Rmdir => "rmdir",
            Self::Truncate => "truncate",
            Self::Chmod => "chmod",
            Self::Chown => "chown",
            Self::Mkdir => "mkdir",
            Self::Symlink => "symlink",
            Self::Mknod => "mknod",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Exec {
        header: Header,
        /// The parent's pid as the kernel recorded it at fork (0: unknown).
        ppid: u32,
        /// The binary the kernel runs (a script's interpreter).
        binary: FileRef,
        /// The filename as passed to execve (or the kernel's name for it).
        filename: String,
        argv: Vec<String>,
        argv_truncated: bool,
        /// Reported at syscall entry because the kernel acted on it.
        at_entry: bool,
    },
    Open {
        header: Header,
        file: FileRef,
        /// The path as passed to the call.
        requested: String,
        flags: u32,
        dfd: i32,
        /// The new fd or a negative errno; `None` when reported before the
        /// call returned.
        ret: Option<i32>,
    },
    /// A file-system change: `target` is the object changed or the name
    /// created; `source` rename's and link's other name.
    Change {
        header: Header,
        op: ChangeOp,
        arg: u32,
        target: FileRef,
        target_requested: String,
        source: Option<FileRef>,
        source_requested: String,
    },
    Connect {
        header: Header,
        addr: IpAddr,
        port: u16,
        protocol: u32,
    },
    Fork {
        header: Header,
        child_pid: u32,
    },
    Exit {
        header: Header,
    },
    /// A watched process tried io_uring and was killed.
    IoUring {
        header: Header,
    },
    /// The end of a run of identical opens the kernel folded: `count` in
    /// all were folded into the thread's open record stamped
    /// `run_ktime_ns`.
    Repeat {
        header: Header,
        run_ktime_ns: u64,
        count: u64,
        file: FileRef,
        flags: u32,
    },
    /// A watched process signalled, ptraced or called bpf() against the
    /// sentinel (`header.action`: refused or killed).
    Tamper {
        header: Header,
        /// `tamper_op::*`.
        op: u32,
        signal: u32,
        target: i64,
    },
}

impl KernelEvent {
    pub fn header(&self) -> &Header {
        match self {
            Self::Exec { header, .. }
            | Self::Open { header, .. }
            | Self::Change { header, .. }
            | Self::Connect { header, .. }
            | Self::Fork { header, .. }
            | Self::Exit { header }
            | Self::IoUring { header }
            | Self::Repeat { header, .. }
            | Self::Tamper { header, .. } => header,
        }
    }
}

/// Reads a `T` from the front of `bytes`, if there are enough of them.
fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    if bytes.len() < std::mem::size_of::<T>() {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
        });
    }
    // SAFETY: the length is checked above; every `sentinel-common` record
    // is repr(C) plain old data, valid for any bit pattern.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// An address as the kernel records it: AF_INET (2) with the IPv4 address
/// in the first four bytes, else IPv6.
pub fn ip_addr(family: u16, addr: [u8; 16]) -> IpAddr {
    if family == 2 {
        IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(addr))
    }
}

/// A NUL-terminated (or full) C string buffer as UTF-8, lossily.
pub fn c_str(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn header(h: &EventHeader) -> Header {
    Header {
        pid: h.pid,
        tid: h.tid,
        uid: h.uid,
        ktime_ns: h.ktime_ns,
        action: KernelAction::from_raw(h.action),
        rule_id: h.rule_id,
        comm: c_str(&h.comm),
    }
}

pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let raw: EventHeader = read(bytes, 0)?;
    Ok(match raw.kind {
        kind::EXEC => {
            let ev: ExecEvent = read(bytes, raw.kind)?;
            let argc = (ev.argc as usize).min(ev.argv.len());
            KernelEvent::Exec {
                header: header(&ev.header),
                ppid: ev.ppid,
                binary: FileRef::decode(&ev.obj, &ev.path),
                filename: c_str(&ev.filename),
                argv: ev.argv[..argc].iter().map(|a| c_str(a)).collect(),
                argv_truncated: ev.flags & exec_flags::ARGV_TRUNCATED != 0,
                at_entry: ev.flags & exec_flags::AT_ENTRY != 0,
            }
        }
        kind::OPEN => {
            let ev: OpenEvent = read(bytes, raw.kind)?;
            KernelEvent::Open {
                header: header(&ev.header),
                file: FileRef::decode(&ev.obj, &ev.path),
                requested: c_str(&ev.requested),
                flags: ev.flags,
                dfd: ev.dfd,
                ret: (ev.ret != RET_UNKNOWN).then_some(ev.ret),
            }
        }
        kind::MUTATE => {
            let ev: MutateEvent = read(bytes, raw.kind)?;
            let op = ChangeOp::from_raw(ev.op).ok_or(DecodeError::UnknownKind(raw.kind))?;
            let has_source = matches!(op, ChangeOp::Rename | ChangeOp::Link);
            KernelEvent::Change {
                header: header(&ev.header),
                op,
                arg: ev.arg,
                target: FileRef::decode(&ev.obj, &ev.path),
                target_requested: c_str(&ev.requested),
                source: has_source.then(|| FileRef::decode(&ev.obj2, &ev.path2)),
                source_requested: c_str(&ev.requested2),
            }
        }
        kind::CONNECT => {
            let ev: ConnectEvent = read(bytes, raw.kind)?;
            KernelEvent::Connect {
                header: header(&ev.header),
                addr: ip_addr(ev.family, ev.addr),
                port: ev.port,
                protocol: ev.protocol,
            }
        }
        kind::FORK => {
            let ev: ForkEvent = read(bytes, raw.kind)?;
            KernelEvent::Fork {
                header: header(&ev.header),
                child_pid: ev.child_pid,
            }
        }
        kind::EXIT => {
            let ev: ExitEvent = read(bytes, raw.kind)?;
            KernelEvent::Exit {
                header: header(&ev.header),
            }
        }
        kind::IO_URING => {
            let ev: ExitEvent = read(bytes, raw.kind)?;
            KernelEvent::IoUring {
                header: header(&ev.header),
            }
        }
        kind::REPEAT => {
            let ev: RepeatEvent = read(bytes, raw.kind)?;
            KernelEvent::Repeat {
                header: header(&ev.header),
                run_ktime_ns: ev.run_ktime_ns,
                count: ev.count,
                file: FileRef::decode(&ev.obj, &[]),
                flags: ev.flags,
            }
        }
        kind::TAMPER => {
            let ev: TamperEvent = read(bytes, raw.kind)?;
            KernelEvent::Tamper {
                header: header(&ev.header),
                op: ev.op,
                signal: ev.signal,
                target: ev.target,
            }
        }
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_common::{ARGV_MAX, ARG_LEN, PATH_LEN, RPATH_LEN};

    fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: reading the bytes of a repr(C) POD value.
        unsafe {
            std::slice::from_raw_parts((v as *const T).cast::<u8>(), std::mem::size_of::<T>())
        }
        .to_vec()
    }

    fn raw_header(kind: u32) -> EventHeader {
        let mut comm = [0u8; 16];
        comm[..4].copy_from_slice(b"bash");
        EventHeader {
            kind,
            pid: 42,
            tid: 43,
            uid: 1000,
            ktime_ns: 7,
            action: kernel_action::KILLED,
            rule_id: 3,
            comm,
        }
    }

    fn put(buf: &mut [u8], s: &str) {
        buf[..s.len()].copy_from_slice(s.as_bytes());
        buf[s.len()] = 0;
    }

    #[test]
    fn decodes_exec_with_bounded_argv_and_flags() {
        let mut ev = ExecEvent {
            header: raw_header(kind::EXEC),
            flags: exec_flags::ARGV_TRUNCATED,
            argc: 2,
            ppid: 41,
            _pad: 0,
            obj: FileObject {
                ino: 12,
                dev: 3,
                flags: object_flags::RESOLVED,
            },
            path: [0; RPATH_LEN],
            filename: [0; PATH_LEN],
            argv: [[0xAA; ARG_LEN]; ARGV_MAX],
        };
        put(&mut ev.filename, "/bin/ls");
        put(&mut ev.path, "/usr/bin/ls");
        put(&mut ev.argv[0], "ls");
        put(&mut ev.argv[1], "-l");
        let got = decode(&bytes_of(&ev)).unwrap();
        let KernelEvent::Exec {
            header,
            ppid,
            binary,
            filename,
            argv,
            argv_truncated,
            at_entry,
        } = got
        else {
            panic!("not an exec: {got:?}")
        };
        assert_eq!(header.pid, 42);
        assert_eq!(ppid, 41);
        assert_eq!(header.comm, "bash");
        assert_eq!(header.action, KernelAction::Killed);
        assert_eq!(filename, "/bin/ls");
        assert_eq!(binary.path, "/usr/bin/ls");
        assert_eq!((binary.dev, binary.ino), (3, 12));
        // Stale bytes beyond argc are never read.
        assert_eq!(argv, vec!["ls", "-l"]);
        assert!(argv_truncated);
        assert!(!at_entry);
    }

    #[test]
    fn argc_beyond_bounds_is_clamped() {
        let mut ev = ExecEvent {
            header: raw_header(kind::EXEC),
            flags: 0,
            argc: 9999,
            ppid: 0,
            _pad: 0,
            obj: FileObject::default(),
            path: [0; RPATH_LEN],
            filename: [0; PATH_LEN],
            argv: [[0; ARG_LEN]; ARGV_MAX],
        };
        put(&mut ev.argv[0], "x");
        let KernelEvent::Exec { argv, .. } = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert_eq!(argv.len(), ARGV_MAX);
    }

    #[test]
    fn decodes_open_and_connect() {
        let mut ev = OpenEvent {
            header: raw_header(kind::OPEN),
            flags: 0o1101,
            dfd: -100,
            ret: 3,
            _pad: 0,
            obj: FileObject {
                ino: 99,
                dev: 8,
                flags: object_flags::RESOLVED,
            },
            path: [0; RPATH_LEN],
            requested: [0; PATH_LEN],
        };
        put(&mut ev.path, "/etc/shadow");
        put(&mut ev.requested, "../../etc//shadow");
        let got = decode(&bytes_of(&ev)).unwrap();
        assert!(
            matches!(got, KernelEvent::Open { ref file, ref requested, flags: 0o1101, dfd: -100, ret: Some(3), .. }
                if file.path == "/etc/shadow" && requested == "../../etc//shadow" && (file.dev, file.ino) == (8, 99))
        );
        // Nothing resolved (the open failed): no path, only what was typed.
        ev.obj.flags = 0;
        ev.ret = RET_UNKNOWN;
        let got = decode(&bytes_of(&ev)).unwrap();
        assert!(
            matches!(got, KernelEvent::Open { ref file, ret: None, .. } if file.path.is_empty())
        );

        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        let ev = ConnectEvent {
            header: raw_header(kind::CONNECT),
            family: 2,
            port: 8080,
            protocol: 6,
            addr,
        };
        let got = decode(&bytes_of(&ev)).unwrap();
        assert!(
            matches!(got, KernelEvent::Connect { addr, port: 8080, .. } if addr == IpAddr::V4(Ipv4Addr::LOCALHOST))
        );

        let ev = ConnectEvent {
            header: raw_header(kind::CONNECT),
            family: 10,
            port: 443,
            protocol: 6,
            addr: Ipv6Addr::LOCALHOST.octets(),
        };
        let got = decode(&bytes_of(&ev)).unwrap();
        assert!(
            matches!(got, KernelEvent::Connect { addr, .. } if addr == IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let ev = OpenEvent {
            header: raw_header(kind::OPEN),
            flags: 0,
            dfd: 0,
            ret: 0,
            _pad: 0,
            obj: FileObject::default(),
            path: [0; RPATH_LEN],
            requested: [0; PATH_LEN],
        };
        let bytes = bytes_of(&ev);
        assert_eq!(
            decode(&bytes[..100]),
            Err(DecodeError::Short {
                kind: kind::OPEN,
                len: 100
            })
        );
        assert!(matches!(decode(&[1, 2]), Err(DecodeError::Short { .. })));
        let h = raw_header(99);
        assert_eq!(decode(&bytes_of(&h)), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn decodes_changes_with_both_names() {
        let mut ev = MutateEvent {
            header: raw_header(kind::MUTATE),
            op: mutate_op::RENAME,
            arg: 0,
            ret: RET_UNKNOWN,
            _pad: 0,
            obj: FileObject {
                ino: 0,
                dev: 0,
                flags: object_flags::COMPOSED,
            },
            path: [0; RPATH_LEN],
            obj2: FileObject {
                ino: 5,
                dev: 1,
                flags: object_flags::RESOLVED,
            },
            path2: [0; RPATH_LEN],
            requested: [0; PATH_LEN],
            requested2: [0; PATH_LEN],
        };
        put(&mut ev.path, "/home/a/.bashrc");
        put(&mut ev.path2, "/tmp/evil");
        put(&mut ev.requested, ".bashrc");
        let got = decode(&bytes_of(&ev)).unwrap();
        let KernelEvent::Change {
            op,
            target,
            source,
            target_requested,
            ..
        } = got
        else {
            panic!("not a change: {got:?}")
        };
        assert_eq!(op, ChangeOp::Rename);
        assert_eq!(target.path, "/home/a/.bashrc");
        assert!(target.composed);
        assert_eq!(source.unwrap().path, "/tmp/evil");
        assert_eq!(target_requested, ".bashrc");
        // An unlink has no source.
        ev.op = mutate_op::UNLINK;
        let KernelEvent::Change { source, .. } = decode(&bytes_of(&ev)).unwrap() else {
            panic!()
        };
        assert!(source.is_none());
        ev.op = 999;
        assert!(decode(&bytes_of(&ev)).is_err());
    }
}
