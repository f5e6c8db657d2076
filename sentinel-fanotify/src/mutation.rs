//! After-the-fact reports of mutations of protected objects — create,
//! delete, rename, link count and mode changes, content writes — by any
//! route, from a notification group. There are no fanotify permission
//! events for rename, unlink, link or chmod on any kernel: these reports
//! are how the daemon learns of them (and kills, or restores).
//!
//! The same reader keeps the mark table current: it marks what appears
//! under a protected name or directory, follows renames, and forgets
//! deleted objects.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use serde::Serialize;

use crate::decide::ObjectId;
use crate::event::{self, FidRole, FileId, Info, RawEvent};
use crate::guard::{Shared, StopPipe};
use crate::marks::Learned;
use crate::permission::record_learned;
use crate::stats::bump;
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationKind {
    /// A name appeared in a protected directory (create, mkdir, link,
    /// symlink, mknod), or at a protected name.
    Created,
    /// A name was removed from a protected directory.
    Deleted,
    /// A name was renamed out of a protected directory (or a protected
    /// name was renamed away).
    MovedFrom,
    /// A name was renamed into a protected directory, or over a protected
    /// name.
    MovedTo,
    /// Metadata changed: mode, owner, times, link count (a new hard link).
    Attrib,
    /// Content was written or truncated.
    Modified,
    /// The protected object itself was renamed (wherever to).
    MovedSelf,
    /// The protected object's last link is gone.
    DeletedSelf,
}

/// One mutation of a protected object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Mutation {
    pub kind: MutationKind,
    /// The acting process (thread-group id as the kernel recorded it; it
    /// may have exited, and its number been reused, by the time this is
    /// read).
    pub pid: u32,
    /// Directory + name where the kernel gave a name, else the object's
    /// last known path.
    pub path: PathBuf,
    /// The object, when the guard knows it.
    pub object: Option<ObjectId>,
    /// The object is a directory.
    pub dir: bool,
    pub tags: Vec<u32>,
}

/// What `Guard::mutations()` delivers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Report {
    Mutation(Mutation),
    /// `count` reports were lost before this one (the kernel queue
    /// overflowed, or the receiver fell behind).
    Lost {
        count: u64,
    },
}

const KINDS: [(u64, MutationKind); 8] = [
    (sys::FAN_CREATE, MutationKind::Created),
    (sys::FAN_DELETE, MutationKind::Deleted),
    (sys::FAN_MOVED_FROM, MutationKind::MovedFrom),
    (sys::FAN_MOVED_TO, MutationKind::MovedTo),
    (sys::FAN_ATTRIB, MutationKind::Attrib),
    (sys::FAN_MODIFY, MutationKind::Modified),
    (sys::FAN_MOVE_SELF, MutationKind::MovedSelf),
    (sys::FAN_DELETE_SELF, MutationKind::DeletedSelf),
];

const DIRENT: u64 = sys::FAN_CREATE | sys::FAN_DELETE | sys::FAN_MOVED_FROM | sys::FAN_MOVED_TO;

/// Sends reports, counting what the receiver could not take and saying so
/// once it can.
struct Outbox {
    tx: SyncSender<Report>,
    lost: u64,
}

impl Outbox {
    fn send(&mut self, shared: &Shared, report: Report) {
        if self.lost > 0 {
            match self.tx.try_send(Report::Lost { count: self.lost }) {
                Ok(()) => self.lost = 0,
                Err(_) => {
                    self.drop_one(shared);
                    return;
                }
            }
        }
        match self.tx.try_send(report) {
            Ok(()) => bump(&shared.counters.mutations),
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.drop_one(shared)
            }
        }
    }

    fn drop_one(&mut self, shared: &Shared) {
        self.lost += 1;
        bump(&shared.counters.mutations_dropped);
    }
}

/// Reads the notification group until the guard stops.
pub(crate) fn reader(shared: Arc<Shared>, stop: StopPipe, tx: SyncSender<Report>) {
    let Some(group) = shared.notif.as_ref() else {
        return;
    };
    let mut outbox = Outbox { tx, lost: 0 };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sys::poll_in(group.as_fd(), stop.as_fd(), -1) {
            Ok((_, true)) => return,
            Ok(_) => {}
            Err(_) if shared.stopping.load(Ordering::SeqCst) => return,
            Err(_) => continue,
        }
        let n = match sys::read(group.as_fd(), &mut buf) {
            Ok(n) => n,
            Err(_) => continue,
        };
        for parsed in event::parse(&buf[..n]) {
            match parsed {
                Ok(ev) => handle(&shared, &ev, &mut outbox),
                Err(_) => bump(&shared.counters.parse_errors),
            }
        }
    }
}

fn handle(shared: &Shared, ev: &RawEvent, outbox: &mut Outbox) {
    if ev.mask & sys::FAN_Q_OVERFLOW != 0 {
        bump(&shared.counters.overflows);
        outbox.lost += 1;
        return;
    }
    let mut object: Option<&FileId> = None;
    let mut dir: Option<&FileId> = None;
    let mut name: Option<&OsStr> = None;
    for info in &ev.infos {
        if let Info::Fid { role, id, name: n } = info {
            match role {
                FidRole::Object => object = Some(id),
                FidRole::Dir => {
                    dir = Some(id);
                    name = *n;
                }
            }
        }
    }
    let dirent = ev.mask & DIRENT != 0;
    let g = shared.groups();
    let mut learned = Learned::default();
    let resolved = {
        let mut marks = shared.marks();
        if ev.mask & (sys::FAN_CREATE | sys::FAN_MOVED_TO) != 0 {
            if let (Some(d), Some(n)) = (dir.and_then(|d| marks.by_fid(d)), name) {
                marks.entry_appeared(&g, d, n, object, &mut learned);
            }
        }
        // The object a self event is about: its own record, or for a
        // directory the directory record naming it ".".
        let self_object = if dirent {
            None
        } else {
            object
                .or(dir.filter(|_| name.is_none_or(|n| n == ".")))
                .and_then(|o| marks.by_fid(o))
        };
        if let (Some(o), true) = (self_object, ev.mask & sys::FAN_MOVE_SELF != 0) {
            marks.moved(o);
        }
        let resolved = marks.resolve(object, dir, name, dirent);
        let is_dir =
            ev.mask & sys::FAN_ONDIR != 0 || resolved.object.is_some_and(|o| marks.is_dir(o));
        if let (Some(o), true) = (self_object, ev.mask & sys::FAN_DELETE_SELF != 0) {
            marks.deleted(o);
        }
        (resolved, is_dir)
    };
    record_learned(shared, &learned);
    let (resolved, is_dir) = resolved;
    let pid = ev.pid.max(0) as u32;
    if resolved.tags.is_empty() || pid == shared.own_pid {
        return;
    }
    for (bit, kind) in KINDS {
        if ev.mask & bit != 0 {
            outbox.send(
                shared,
                Report::Mutation(Mutation {
                    kind,
                    pid,
                    path: resolved.path.clone(),
                    object: resolved.object,
                    dir: is_dir,
                    tags: resolved.tags.clone(),
                }),
            );
        }
    }
}
