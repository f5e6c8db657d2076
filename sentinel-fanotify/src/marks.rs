//! The mark table: which objects (inodes) carry a mark in the permission
//! group and in the notification group, why (the targets' tags and
//! access), and how the guard names them (path, file handle).
//!
//! Only inode marks are used — never mount or filesystem marks — so work on
//! unmarked objects pays nothing. A protected file gets a mark of its own,
//! so it stays protected when it is moved out of its directory or reached
//! through another hard link; a protected directory gets `FAN_EVENT_ON_CHILD`
//! so children created later are covered from their first open, and the
//! guard gives them marks of their own as soon as it sees them (their first
//! permission event, or the notification of their creation).
//!
//! Directories themselves are never marked for permission events with
//! `FAN_ONDIR`: listing a directory is not refused (names are not content),
//! and the guard's own directory walks can never wait on its own answers.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::decide::{Intent, ObjectId, RequestKind};
use crate::event::FileId;
use crate::sys;

/// One thing to protect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub scope: Scope,
    pub access: Access,
    /// Returned in every request and mutation this target causes.
    pub tag: u32,
}

/// How far a target reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The file itself (a directory here only has its own mutations
    /// reported). If it does not exist yet, its directory is watched and
    /// it is marked when it appears — also when something is renamed over
    /// it.
    Object,
    /// The files directly in this directory, including ones created or
    /// moved in later.
    Children,
    /// Every file below this directory, recursively, including later ones
    /// (bounded by `Options::mark_budget`).
    Subtree,
}

/// What to refuse. `open` covers every open, including the one an exec
/// does, and where the kernel has pre-content events (6.14+) every read or
/// write through a descriptor however it was obtained; `content_write`
/// refuses opening for writing or with O_TRUNC, and with pre-content events
/// also `truncate(2)` and writes through any descriptor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Access {
    pub open: bool,
    pub exec: bool,
    pub content_write: bool,
}

impl Access {
    pub const OPEN: Access = Access {
        open: true,
        exec: false,
        content_write: false,
    };
    pub const EXEC: Access = Access {
        open: false,
        exec: true,
        content_write: false,
    };
    pub const CONTENT_WRITE: Access = Access {
        open: false,
        exec: false,
        content_write: true,
    };

    pub fn union(self, other: Access) -> Access {
        Access {
            open: self.open || other.open,
            exec: self.exec || other.exec,
            content_write: self.content_write || other.content_write,
        }
    }

    fn any(self) -> bool {
        self.open || self.exec || self.content_write
    }
}

/// What `Guard::set_targets` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct MarkReport {
    pub targets: Vec<TargetReport>,
    /// Objects marked now, all targets together.
    pub marked: usize,
    /// Objects whose marks were removed: no target wants them any more.
    pub removed: usize,
    /// Objects whose marks could not be removed (moved out of reach):
    /// their events are allowed without asking until they go away.
    pub stale: usize,
    pub failed: usize,
    pub left_out: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    pub tag: u32,
    /// The target's path with every symlink resolved.
    pub path: PathBuf,
    pub state: TargetState,
    /// Objects marked for this target (files and directories).
    pub objects: usize,
    /// Of those, objects whose filesystem refused pre-content events:
    /// their truncates and writes are only reported after the fact.
    pub without_pre_content: usize,
    /// Of those, objects whose notification mark was refused (a
    /// filesystem without file handles, say): protected, but their
    /// mutations are not reported and children created later are only
    /// marked at their first open.
    pub without_mutation_reports: usize,
    /// Objects not marked because the mark budget was spent.
    pub left_out: usize,
    /// The first objects that could not be protected (`failed` counts them
    /// all).
    pub failures: Vec<MarkFailure>,
    pub failed: usize,
    /// The first reasons behind `without_mutation_reports`.
    pub mutation_failures: Vec<MarkFailure>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Marked.
    Marked,
    /// The object does not exist yet: its directory is watched and it is
    /// marked when it appears.
    Waiting,
    /// Nothing could be marked.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MarkFailure {
    pub path: PathBuf,
    pub error: String,
}

/// Keeps at most this many failures per target in the report.
const FAILURES_KEPT: usize = 16;

/// The two groups and what the kernel supports, as the table needs them.
pub(crate) struct Groups<'a> {
    pub perm: BorrowedFd<'a>,
    pub notif: Option<BorrowedFd<'a>>,
    pub open_exec_perm: bool,
    pub pre_content: bool,
}

type Tags = Vec<(u32, Access)>;

fn add_tag(tags: &mut Tags, tag: u32, access: Access) {
    match tags.iter_mut().find(|(t, _)| *t == tag) {
        Some((_, a)) => *a = a.union(access),
        None => tags.push((tag, access)),
    }
}

fn union(tags: &Tags) -> Access {
    tags.iter()
        .fold(Access::default(), |acc, (_, a)| acc.union(*a))
}

struct Entry {
    path: PathBuf,
    dir: bool,
    fid: Option<FileId>,
    /// Targets protecting the object itself.
    own: Tags,
    /// Targets protecting this directory's direct children.
    children: Tags,
    /// Subtree targets: subdirectories created later inherit them.
    subtree: Tags,
    /// Object targets named in this directory.
    names: Vec<(OsString, u32, Access)>,
    /// The masks the kernel holds for this object.
    perm_mask: u64,
    notif_mask: u64,
    pre_content_refused: bool,
    /// No target wants it, but its mark could not be removed.
    stale: bool,
}

impl Entry {
    fn new(path: PathBuf, dir: bool, fid: Option<FileId>) -> Entry {
        Entry {
            path,
            dir,
            fid,
            own: Vec::new(),
            children: Vec::new(),
            subtree: Vec::new(),
            names: Vec::new(),
            perm_mask: 0,
            notif_mask: 0,
            pre_content_refused: false,
            stale: false,
        }
    }

    fn perm_mask(&self, g: &Groups) -> u64 {
        let pre_content = g.pre_content && !self.pre_content_refused;
        if self.dir {
            let children = union(&self.children);
            if children.any() {
                content_mask(children, g.open_exec_perm, pre_content) | sys::FAN_EVENT_ON_CHILD
            } else {
                0
            }
        } else {
            content_mask(union(&self.own), g.open_exec_perm, pre_content)
        }
    }

    fn notif_mask(&self) -> u64 {
        let self_events = sys::FAN_ATTRIB | sys::FAN_MOVE_SELF | sys::FAN_DELETE_SELF;
        let dirent = sys::FAN_CREATE | sys::FAN_DELETE | sys::FAN_MOVED_FROM | sys::FAN_MOVED_TO;
        if !self.dir {
            return if self.own.is_empty() {
                0
            } else {
                self_events | sys::FAN_MODIFY
            };
        }
        let mut m = 0;
        if !self.own.is_empty() || !self.children.is_empty() {
            m |= self_events | sys::FAN_ONDIR;
        }
        if !self.children.is_empty() || !self.names.is_empty() {
            m |= dirent | sys::FAN_ONDIR;
        }
        if !self.children.is_empty() {
            // Children not yet learned are covered through their parent.
            m |= sys::FAN_ATTRIB | sys::FAN_MODIFY | sys::FAN_EVENT_ON_CHILD;
        }
        m
    }
}

/// The permission events a file with access `a` needs.
fn content_mask(a: Access, open_exec_perm: bool, pre_content: bool) -> u64 {
    let mut m = 0;
    if a.open || a.content_write {
        m |= sys::FAN_OPEN_PERM;
    }
    if a.exec {
        // Without FAN_OPEN_EXEC_PERM (before 5.0) the exec's open is an
        // ordinary FAN_OPEN_PERM, decided on its intent.
        m |= if open_exec_perm {
            sys::FAN_OPEN_EXEC_PERM
        } else {
            sys::FAN_OPEN_PERM
        };
    }
    // Pre-content events also catch reads and writes through descriptors
    // the open check never saw: opened before the guard started, or by an
    // allowed process and passed on (inherited, SCM_RIGHTS).
    if (a.open || a.content_write) && pre_content {
        m |= sys::FAN_PRE_ACCESS;
    }
    m
}

/// Whether access `a` is concerned by an event of `kind` done with
/// `intent`.
fn concerns(a: Access, kind: RequestKind, intent: Intent, open_exec_perm: bool) -> bool {
    let may_write = !matches!(intent, Intent::Read | Intent::Exec);
    match kind {
        RequestKind::OpenExec => a.exec,
        RequestKind::Open => {
            a.open
                || (a.content_write && may_write)
                || (a.exec && !open_exec_perm && matches!(intent, Intent::Exec | Intent::Unknown))
        }
        RequestKind::PreAccess { .. } => a.open || (a.content_write && intent != Intent::Read),
    }
}

/// Whether deciding if `targets` are concerned by an event of `kind`
/// needs the process's intent (read or write), which costs reading
/// /proc: only for targets that refuse some accesses and not others.
pub(crate) fn needs_intent(
    targets: &[(u32, Access)],
    kind: RequestKind,
    open_exec_perm: bool,
) -> bool {
    targets.iter().any(|(_, a)| match kind {
        RequestKind::OpenExec => false,
        RequestKind::Open => !a.open && (a.content_write || (a.exec && !open_exec_perm)),
        RequestKind::PreAccess { .. } => !a.open && a.content_write,
    })
}

/// The tags of the targets concerned by an event of `kind` done with
/// `intent`.
pub(crate) fn concerned(
    targets: &[(u32, Access)],
    kind: RequestKind,
    intent: Intent,
    open_exec_perm: bool,
) -> Vec<u32> {
    targets
        .iter()
        .filter(|(_, a)| concerns(*a, kind, intent, open_exec_perm))
        .map(|(t, _)| *t)
        .collect()
}

/// How a permission event relates to the targets.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Attribution {
    /// The targets protecting the object, with what each protects against.
    Targets(Vec<(u32, Access)>),
    /// The event came through a protected directory the guard cannot name
    /// (the file moved while the event was read): ask, with no tags.
    Unattributed,
    /// A mark no target wants any more: allow, and drop the mark.
    Stale,
}

/// What a notification is about, resolved through the table.
pub(crate) struct Resolved {
    pub path: PathBuf,
    pub object: Option<ObjectId>,
    pub tags: Vec<u32>,
}

fn object_id(st: &libc::stat) -> ObjectId {
    ObjectId {
        dev: st.st_dev,
        ino: st.st_ino,
    }
}

fn is_dir(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_file(st: &libc::stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

fn file_id(fd: BorrowedFd) -> Option<FileId> {
    let fsid = sys::fsid(fd).ok()?;
    let (handle_type, handle) = sys::file_handle(fd).ok()?;
    Some(FileId {
        fsid,
        handle_type,
        handle: handle.into(),
    })
}

/// Opens `path` without following a final symlink and without triggering
/// open events.
fn open_object(path: &Path) -> io::Result<(OwnedFd, libc::stat)> {
    let fd = sys::open_path(path, libc::O_NOFOLLOW)?;
    let st = sys::fstat(fd.as_fd())?;
    Ok((fd, st))
}

/// The result of marking one object.
enum Visit {
    Marked {
        pre_content_refused: bool,
        /// Why its mutations will not be reported, if they will not.
        notif_error: Option<String>,
    },
    OverBudget,
}

/// Per-target bookkeeping while targets are applied.
#[derive(Default)]
struct Tally {
    objects: usize,
    without_pre_content: usize,
    without_mutation_reports: usize,
    left_out: usize,
    failures: Vec<MarkFailure>,
    mutation_failures: Vec<MarkFailure>,
    failed: usize,
}

impl Tally {
    fn record(&mut self, path: &Path, result: Result<Visit, String>) -> bool {
        match result {
            Ok(Visit::Marked {
                pre_content_refused,
                notif_error,
            }) => {
                self.objects += 1;
                if pre_content_refused {
                    self.without_pre_content += 1;
                }
                if let Some(error) = notif_error {
                    self.without_mutation_reports += 1;
                    if self.mutation_failures.len() < FAILURES_KEPT {
                        self.mutation_failures.push(MarkFailure {
                            path: path.to_path_buf(),
                            error,
                        });
                    }
                }
                true
            }
            Ok(Visit::OverBudget) => {
                self.left_out += 1;
                false
            }
            Err(error) => {
                self.fail(path, error);
                false
            }
        }
    }

    fn fail(&mut self, path: &Path, error: String) {
        self.failed += 1;
        if self.failures.len() < FAILURES_KEPT {
            self.failures.push(MarkFailure {
                path: path.to_path_buf(),
                error,
            });
        }
    }
}

/// Counters the table reports to the guard's stats.
#[derive(Default)]
pub(crate) struct Learned {
    pub learned: u64,
    pub left_out: u64,
    pub failures: u64,
}

pub(crate) struct Marks {
    entries: HashMap<ObjectId, Entry>,
    by_fid: HashMap<FileId, ObjectId>,
    budget: usize,
    /// A directory on each filesystem, to name objects by handle.
    mount_hints: HashMap<[i32; 2], PathBuf>,
}

impl Marks {
    pub fn new(budget: usize) -> Marks {
        Marks {
            entries: HashMap::new(),
            by_fid: HashMap::new(),
            budget,
            mount_hints: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the object at `path` carries a mark of its own for a
    /// target.
    pub fn has_own_mark(&self, path: &Path) -> bool {
        let Ok((_, st)) = open_object(path) else {
            return false;
        };
        self.entries
            .get(&object_id(&st))
            .is_some_and(|e| !e.own.is_empty() || !e.children.is_empty())
    }

    /// Marks `fd`'s object with what `update` grants it, adding whatever
    /// mask bits it now needs.
    fn visit(
        &mut self,
        g: &Groups,
        fd: BorrowedFd,
        st: &libc::stat,
        path: &Path,
        update: impl FnOnce(&mut Entry),
    ) -> Result<Visit, String> {
        let oid = object_id(st);
        if !self.entries.contains_key(&oid) {
            if self.entries.len() >= self.budget {
                return Ok(Visit::OverBudget);
            }
            let fid = file_id(fd);
            if let Some(fid) = &fid {
                self.by_fid.insert(fid.clone(), oid);
                if is_dir(st) {
                    self.mount_hints
                        .entry(fid.fsid)
                        .or_insert_with(|| path.to_path_buf());
                }
            }
            self.entries
                .insert(oid, Entry::new(path.to_path_buf(), is_dir(st), fid));
        }
        let Some(entry) = self.entries.get_mut(&oid) else {
            return Err("object vanished from the table".into());
        };
        update(entry);
        entry.stale = false;
        let applied = apply(g, fd, entry);
        let pre_content_refused = entry.pre_content_refused;
        // A directory watched only for names has no permission mark: there
        // the notification mark is the one that matters.
        let needs_perm = entry.perm_mask(g) != 0;
        if entry.perm_mask == 0 && entry.notif_mask == 0 {
            // Nothing took: do not keep an entry the kernel knows nothing of.
            self.forget(oid);
        }
        match applied {
            Applied {
                perm_error: Some(e),
                ..
            } => Err(e),
            Applied {
                notif_error: Some(e),
                ..
            } if !needs_perm => Err(e),
            Applied { notif_error, .. } => Ok(Visit::Marked {
                pre_content_refused,
                notif_error,
            }),
        }
    }

    fn forget(&mut self, oid: ObjectId) -> Option<Entry> {
        let entry = self.entries.remove(&oid)?;
        if let Some(fid) = &entry.fid {
            self.by_fid.remove(fid);
        }
        Some(entry)
    }

    /// Replaces the targets: marks what they need, then removes marks no
    /// target wants any more (after the new ones are in place, so there is
    /// no window without protection).
    pub fn set_targets(&mut self, g: &Groups, targets: &[Target]) -> MarkReport {
        let old = std::mem::take(&mut self.entries);
        self.by_fid.clear();
        let mut report = MarkReport::default();
        for target in targets {
            let (path, state, tally) = self.add_target(g, target);
            report.failed += tally.failed;
            report.left_out += tally.left_out;
            report.targets.push(TargetReport {
                tag: target.tag,
                path,
                state,
                objects: tally.objects,
                without_pre_content: tally.without_pre_content,
                without_mutation_reports: tally.without_mutation_reports,
                left_out: tally.left_out,
                failures: tally.failures,
                failed: tally.failed,
                mutation_failures: tally.mutation_failures,
            });
        }
        for (oid, old_entry) in old {
            let still = self.entries.get(&oid).map(|e| (e.perm_mask, e.notif_mask));
            match still {
                Some((perm, notif)) => {
                    let perm_gone = old_entry.perm_mask & !perm;
                    let notif_gone = old_entry.notif_mask & !notif;
                    if perm_gone | notif_gone != 0 {
                        if let Some(fd) = self.reopen(oid, &old_entry) {
                            remove_bits(g, fd.as_fd(), perm_gone, notif_gone);
                        }
                    }
                }
                None => match self.reopen(oid, &old_entry) {
                    Some(fd) => {
                        remove_bits(g, fd.as_fd(), old_entry.perm_mask, old_entry.notif_mask);
                        report.removed += 1;
                    }
                    None => {
                        report.stale += 1;
                        let mut entry = Entry::new(old_entry.path, old_entry.dir, old_entry.fid);
                        entry.perm_mask = old_entry.perm_mask;
                        entry.notif_mask = old_entry.notif_mask;
                        entry.stale = true;
                        if let Some(fid) = &entry.fid {
                            self.by_fid.insert(fid.clone(), oid);
                        }
                        self.entries.insert(oid, entry);
                    }
                },
            }
        }
        report.marked = self.entries.values().filter(|e| !e.stale).count();
        report
    }

    /// Finds an object the table knew again: by its recorded path if that
    /// still names it, else by its file handle.
    fn reopen(&self, oid: ObjectId, entry: &Entry) -> Option<OwnedFd> {
        if let Ok((fd, st)) = open_object(&entry.path) {
            if object_id(&st) == oid {
                return Some(fd);
            }
        }
        let fd = self.open_by_fid(entry.fid.as_ref()?)?;
        let st = sys::fstat(fd.as_fd()).ok()?;
        (object_id(&st) == oid).then_some(fd)
    }

    fn open_by_fid(&self, fid: &FileId) -> Option<OwnedFd> {
        let hints = self
            .mount_hints
            .get(&fid.fsid)
            .map(PathBuf::as_path)
            .into_iter()
            .chain([Path::new("/")]);
        for hint in hints {
            // Never waits on the guard: directories carry no FAN_ONDIR
            // permission marks.
            let Ok(mount) = sys::open_dir(hint) else {
                continue;
            };
            if sys::fsid(mount.as_fd()).ok() != Some(fid.fsid) {
                continue;
            }
            if let Ok(fd) = sys::open_by_handle(mount.as_fd(), fid.handle_type, &fid.handle) {
                return Some(fd);
            }
        }
        None
    }

    fn add_target(&mut self, g: &Groups, t: &Target) -> (PathBuf, TargetState, Tally) {
        let mut tally = Tally::default();
        let path = match canonical(&t.path) {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("cannot resolve {}: {e}", t.path.display());
                return (t.path.clone(), TargetState::Failed(msg), tally);
            }
        };
        let state = match t.scope {
            Scope::Object => self.add_object(g, t, &path, &mut tally),
            Scope::Children | Scope::Subtree => self.add_dir_target(g, t, &path, &mut tally),
        };
        (path, state, tally)
    }

    fn add_object(
        &mut self,
        g: &Groups,
        t: &Target,
        path: &Path,
        tally: &mut Tally,
    ) -> TargetState {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return TargetState::Failed("the root directory cannot be an object target".into());
        };
        // The directory is watched for the name, so a file created or
        // renamed over it is marked in turn.
        let watched = match open_object(parent) {
            Ok((fd, st)) if is_dir(&st) => {
                let name = name.to_os_string();
                let visit = self.visit(g, fd.as_fd(), &st, parent, |e| {
                    if !e
                        .names
                        .iter()
                        .any(|(n, tag, _)| *n == name && *tag == t.tag)
                    {
                        e.names.push((name, t.tag, t.access));
                    }
                });
                match visit {
                    Ok(Visit::Marked { .. }) => Ok(()),
                    Ok(Visit::OverBudget) => Err("the mark budget is spent".to_string()),
                    Err(e) => Err(e),
                }
            }
            Ok(_) => Err("the parent is not a directory".to_string()),
            Err(e) => Err(e.to_string()),
        };
        match open_object(path) {
            Ok((fd, st)) => {
                let visit = self.visit(g, fd.as_fd(), &st, path, |e| {
                    add_tag(&mut e.own, t.tag, t.access)
                });
                if tally.record(path, visit) {
                    if let Err(e) = watched {
                        // Protected, but what is renamed over it later
                        // will not be seen.
                        tally.without_mutation_reports += 1;
                        tally.mutation_failures.push(MarkFailure {
                            path: parent.to_path_buf(),
                            error: format!(
                                "watching the directory for {}: {e}",
                                name.to_string_lossy()
                            ),
                        });
                    }
                    TargetState::Marked
                } else {
                    TargetState::Failed(
                        tally
                            .failures
                            .last()
                            .map(|f| f.error.clone())
                            .unwrap_or_else(|| "the mark budget is spent".into()),
                    )
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match watched {
                Ok(()) => TargetState::Waiting,
                Err(w) => TargetState::Failed(format!(
                    "does not exist and its directory cannot be watched: {w}"
                )),
            },
            Err(e) => {
                tally.fail(path, e.to_string());
                TargetState::Failed(e.to_string())
            }
        }
    }

    fn add_dir_target(
        &mut self,
        g: &Groups,
        t: &Target,
        root: &Path,
        tally: &mut Tally,
    ) -> TargetState {
        match open_object(root) {
            Ok((_, st)) if is_dir(&st) => {}
            Ok(_) => return TargetState::Failed("not a directory".into()),
            Err(e) => return TargetState::Failed(e.to_string()),
        }
        let subtree = t.scope == Scope::Subtree;
        self.walk_dir(g, root, t.tag, t.access, subtree, tally);
        if tally.objects == 0 {
            return TargetState::Failed(
                tally
                    .failures
                    .first()
                    .map(|f| f.error.clone())
                    .unwrap_or_else(|| "the mark budget is spent".into()),
            );
        }
        TargetState::Marked
    }

    /// Marks directory `root` (and, for a subtree, every directory below
    /// it) for its children, and every regular file in them for itself.
    /// Symlinks are never followed.
    fn walk_dir(
        &mut self,
        g: &Groups,
        root: &Path,
        tag: u32,
        access: Access,
        subtree: bool,
        tally: &mut Tally,
    ) {
        let mut dirs = vec![root.to_path_buf()];
        while let Some(dir) = dirs.pop() {
            let (fd, st) = match open_object(&dir) {
                Ok(x) => x,
                Err(e) => {
                    tally.fail(&dir, e.to_string());
                    continue;
                }
            };
            if !is_dir(&st) {
                continue;
            }
            let visit = self.visit(g, fd.as_fd(), &st, &dir, |e| {
                add_tag(&mut e.children, tag, access);
                if subtree {
                    add_tag(&mut e.subtree, tag, access);
                }
            });
            if !tally.record(&dir, visit) {
                continue;
            }
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) => {
                    tally.fail(&dir, format!("listing: {e}"));
                    continue;
                }
            };
            for dirent in entries.flatten() {
                let Ok(ft) = dirent.file_type() else { continue };
                let path = dirent.path();
                if ft.is_file() {
                    match open_object(&path) {
                        Ok((fd, st)) if is_file(&st) => {
                            let visit = self.visit(g, fd.as_fd(), &st, &path, |e| {
                                add_tag(&mut e.own, tag, access)
                            });
                            tally.record(&path, visit);
                        }
                        Ok(_) => {}
                        Err(e) => tally.fail(&path, e.to_string()),
                    }
                } else if ft.is_dir() && subtree {
                    dirs.push(path);
                }
            }
        }
    }

    /// Attributes a permission event on `object` (whose descriptor is
    /// `fd`, resolved to `path`) to the targets protecting it and, if it is
    /// a child of a protected directory without a mark of its own yet,
    /// gives it one. An object with a mark of its own is attributed by its
    /// inode alone: a file in a protected directory got that directory's
    /// tags when it was marked.
    pub fn attribute(
        &mut self,
        g: &Groups,
        fd: BorrowedFd,
        object: ObjectId,
        path: &Path,
        learned: &mut Learned,
    ) -> Attribution {
        let own = self.entries.get(&object).map(|e| (e.own.clone(), e.stale));
        if let Some((own, false)) = &own {
            if !own.is_empty() {
                return Attribution::Targets(own.clone());
            }
        }
        // No mark of its own yet (or a stale one): through its directory.
        let parent_children: Tags = path
            .parent()
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| {
                use std::os::unix::fs::MetadataExt;
                self.entries.get(&ObjectId {
                    dev: m.dev(),
                    ino: m.ino(),
                })
            })
            .map(|e| e.children.clone())
            .unwrap_or_default();
        match own {
            None if parent_children.is_empty() => Attribution::Unattributed,
            Some((_, true)) if parent_children.is_empty() => {
                if let Some(entry) = self.forget(object) {
                    remove_bits(g, fd, entry.perm_mask, entry.notif_mask);
                }
                Attribution::Stale
            }
            None => {
                self.learn(g, fd, path, parent_children.clone(), learned);
                Attribution::Targets(parent_children)
            }
            Some((mut own, _)) => {
                for (tag, access) in parent_children {
                    add_tag(&mut own, tag, access);
                }
                Attribution::Targets(own)
            }
        }
    }

    /// Gives a newly seen child of a protected directory its own mark.
    fn learn(
        &mut self,
        g: &Groups,
        fd: BorrowedFd,
        path: &Path,
        grant: Tags,
        learned: &mut Learned,
    ) {
        let Ok(st) = sys::fstat(fd) else { return };
        if !is_file(&st) {
            return;
        }
        match self.visit(g, fd, &st, path, |e| {
            for (tag, access) in grant {
                add_tag(&mut e.own, tag, access);
            }
        }) {
            Ok(Visit::Marked { .. }) => learned.learned += 1,
            Ok(Visit::OverBudget) => learned.left_out += 1,
            Err(_) => learned.failures += 1,
        }
    }

    /// A directory entry `name` appeared in the marked directory `dir`
    /// (created, moved in, linked): mark it if a target wants it. `target`
    /// is the file id the kernel reported for it; an object found at the
    /// name with another id was replaced since, and its own event follows.
    pub fn entry_appeared(
        &mut self,
        g: &Groups,
        dir: ObjectId,
        name: &OsStr,
        target: Option<&FileId>,
        learned: &mut Learned,
    ) {
        let Some(d) = self.entries.get(&dir) else {
            return;
        };
        let path = d.path.join(name);
        let named: Tags = d
            .names
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, t, a)| (*t, *a))
            .collect();
        let children = d.children.clone();
        let subtree = d.subtree.clone();
        if named.is_empty() && children.is_empty() {
            return;
        }
        let Ok((fd, st)) = open_object(&path) else {
            return;
        };
        if let Some(target) = target {
            if file_id(fd.as_fd()).as_ref() != Some(target) {
                return;
            }
        }
        let mut own = named;
        if is_file(&st) {
            for (tag, access) in children {
                add_tag(&mut own, tag, access);
            }
        }
        if !own.is_empty() {
            match self.visit(g, fd.as_fd(), &st, &path, |e| {
                for (tag, access) in own {
                    add_tag(&mut e.own, tag, access);
                }
            }) {
                Ok(Visit::Marked { .. }) => learned.learned += 1,
                Ok(Visit::OverBudget) => learned.left_out += 1,
                Err(_) => learned.failures += 1,
            }
        }
        if is_dir(&st) && !subtree.is_empty() {
            // A directory made or moved in under a subtree: mark it and
            // whatever it already holds.
            let before = self.entries.len();
            let mut tally = Tally::default();
            for (tag, access) in subtree {
                self.walk_dir(g, &path, tag, access, true, &mut tally);
            }
            learned.learned += self.entries.len().saturating_sub(before) as u64;
            learned.left_out += tally.left_out as u64;
            learned.failures += tally.failed as u64;
        }
    }

    /// The object a file id names, if the table knows it.
    pub fn by_fid(&self, fid: &FileId) -> Option<ObjectId> {
        self.by_fid.get(fid).copied()
    }

    /// Resolves the object of a notification: `object` is the object's own
    /// id (FID record), `dir` and `name` the directory record. Returns the
    /// path (directory + name where the kernel gave one), and the tags of
    /// the targets it concerns.
    pub fn resolve(
        &mut self,
        object: Option<&FileId>,
        dir: Option<&FileId>,
        name: Option<&OsStr>,
        dirent: bool,
    ) -> Resolved {
        let dir_oid = dir.and_then(|d| self.by_fid(d));
        let obj_oid = object.and_then(|o| self.by_fid(o));
        let dir_path = match (dir_oid, dir) {
            (Some(oid), _) => self.entries.get(&oid).map(|e| e.path.clone()),
            (None, Some(fid)) => self.path_by_fid(fid),
            (None, None) => None,
        };
        let mut tags = Tags::new();
        if let Some(e) = obj_oid.and_then(|o| self.entries.get(&o)) {
            tags.extend(e.own.iter().copied());
            if e.dir {
                for (t, a) in &e.children {
                    add_tag(&mut tags, *t, *a);
                }
            }
        }
        let name = name.filter(|n| *n != OsStr::new("."));
        if let (Some(e), Some(n), true) = (dir_oid.and_then(|d| self.entries.get(&d)), name, dirent)
        {
            for (t, a) in &e.children {
                add_tag(&mut tags, *t, *a);
            }
            for (nm, t, a) in &e.names {
                if nm == n {
                    add_tag(&mut tags, *t, *a);
                }
            }
        }
        // An event on a directory itself names it ".".
        let dir_itself = name.is_none() && object.is_none();
        if dir_itself {
            if let Some(e) = dir_oid.and_then(|d| self.entries.get(&d)) {
                tags.extend(e.own.iter().copied());
                for (t, a) in &e.children {
                    add_tag(&mut tags, *t, *a);
                }
            }
        }
        let path = match (&dir_path, name) {
            (Some(d), Some(n)) => d.join(n),
            (Some(d), None) if dir_itself => d.clone(),
            _ => obj_oid
                .and_then(|o| self.entries.get(&o))
                .map(|e| e.path.clone())
                .unwrap_or_default(),
        };
        // Keep the object's recorded path current.
        if let (Some(o), false, Some(_)) = (obj_oid, dirent, name) {
            if !path.as_os_str().is_empty() {
                self.rename_entry(o, &path);
            }
        }
        let object = obj_oid.or(if dir_itself { dir_oid } else { None });
        Resolved {
            path,
            object,
            tags: tags.into_iter().map(|(t, _)| t).collect(),
        }
    }

    /// Names an object the table has no path for, by its handle. Only for
    /// directories the guard never marked (a protected file's new parent),
    /// so the name may be stale by the time it is read.
    fn path_by_fid(&self, fid: &FileId) -> Option<PathBuf> {
        let fd = self.open_by_fid(fid)?;
        let path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .ok()?;
        Some(path)
    }

    /// An object moved (`MOVE_SELF`): find its new path through its handle
    /// and update it, and for a directory every path below it.
    pub fn moved(&mut self, object: ObjectId) {
        let Some(fid) = self.entries.get(&object).and_then(|e| e.fid.clone()) else {
            return;
        };
        if let Some(path) = self.path_by_fid(&fid) {
            self.rename_entry(object, &path);
        }
    }

    fn rename_entry(&mut self, object: ObjectId, new: &Path) {
        let Some(e) = self.entries.get_mut(&object) else {
            return;
        };
        if e.path == new {
            return;
        }
        let old = std::mem::replace(&mut e.path, new.to_path_buf());
        if !e.dir {
            return;
        }
        for entry in self.entries.values_mut() {
            if let Ok(rest) = entry.path.strip_prefix(&old) {
                if !rest.as_os_str().is_empty() {
                    entry.path = new.join(rest);
                }
            }
        }
    }

    /// The object is gone (`DELETE_SELF`): the kernel dropped its marks.
    pub fn deleted(&mut self, object: ObjectId) {
        self.forget(object);
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self, object: ObjectId) -> bool {
        self.entries.get(&object).is_some_and(|e| e.dir)
    }
}

/// What `apply` achieved: the permission mark is what protects; the
/// notification mark only reports and learns.
#[derive(Default)]
struct Applied {
    perm_error: Option<String>,
    notif_error: Option<String>,
}

/// Adds the bits `entry` needs and does not have yet. Pre-content events
/// refused by the filesystem (EOPNOTSUPP) or the mark shape (EINVAL) are
/// dropped for this object and the rest retried.
fn apply(g: &Groups, fd: BorrowedFd, entry: &mut Entry) -> Applied {
    let mut applied = Applied::default();
    let want = entry.perm_mask(g);
    if want & !entry.perm_mask != 0 {
        let mut result = sys::mark_fd(g.perm, sys::FAN_MARK_ADD, want, fd).map(|()| want);
        if let Err(e) = &result {
            if want & sys::FAN_PRE_ACCESS != 0
                && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP))
            {
                entry.pre_content_refused = true;
                let want = want & !sys::FAN_PRE_ACCESS;
                result = sys::mark_fd(g.perm, sys::FAN_MARK_ADD, want, fd).map(|()| want);
            }
        }
        match result {
            Ok(bits) => entry.perm_mask |= bits,
            Err(e) => applied.perm_error = Some(format!("permission mark: {e}")),
        }
    }
    if let Some(notif) = g.notif {
        let want = entry.notif_mask();
        if want & !entry.notif_mask != 0 {
            match sys::mark_fd(notif, sys::FAN_MARK_ADD, want, fd) {
                Ok(()) => entry.notif_mask |= want,
                Err(e) => applied.notif_error = Some(format!("mutation mark: {e}")),
            }
        }
    }
    applied
}

fn remove_bits(g: &Groups, fd: BorrowedFd, perm: u64, notif: u64) {
    // A failure means the mark is already gone (ENOENT).
    if perm != 0 {
        let _ = sys::mark_fd(g.perm, sys::FAN_MARK_REMOVE, perm, fd);
    }
    if let (Some(n), true) = (g.notif, notif != 0) {
        let _ = sys::mark_fd(n, sys::FAN_MARK_REMOVE, notif, fd);
    }
}

/// The path with every symlink resolved; for a path that does not exist
/// yet, its parent resolved and the name kept.
fn canonical(path: &Path) -> io::Result<PathBuf> {
    match std::fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(e);
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(std::fs::canonicalize(parent)?.join(name))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_access() {
        assert_eq!(
            content_mask(Access::OPEN, true, true),
            sys::FAN_OPEN_PERM | sys::FAN_PRE_ACCESS
        );
        assert_eq!(content_mask(Access::OPEN, true, false), sys::FAN_OPEN_PERM);
        assert_eq!(
            content_mask(Access::EXEC, true, true),
            sys::FAN_OPEN_EXEC_PERM
        );
        assert_eq!(content_mask(Access::EXEC, false, true), sys::FAN_OPEN_PERM);
        assert_eq!(
            content_mask(Access::CONTENT_WRITE, true, true),
            sys::FAN_OPEN_PERM | sys::FAN_PRE_ACCESS
        );
        assert_eq!(
            content_mask(Access::CONTENT_WRITE, true, false),
            sys::FAN_OPEN_PERM
        );
        assert_eq!(content_mask(Access::default(), true, true), 0);
    }

    #[test]
    fn relevance_by_kind_and_intent() {
        let w = Access::CONTENT_WRITE;
        assert!(!concerns(w, RequestKind::Open, Intent::Read, true));
        assert!(concerns(w, RequestKind::Open, Intent::Write, true));
        assert!(concerns(w, RequestKind::Open, Intent::Unknown, true));
        assert!(!concerns(w, RequestKind::Open, Intent::Exec, true));
        let pre = RequestKind::PreAccess {
            offset: 0,
            count: 1,
        };
        assert!(!concerns(w, pre, Intent::Read, true));
        assert!(concerns(w, pre, Intent::Unknown, true));
        assert!(concerns(Access::OPEN, pre, Intent::Read, true));
        assert!(concerns(
            Access::OPEN,
            RequestKind::Open,
            Intent::Exec,
            true
        ));
        assert!(!concerns(
            Access::OPEN,
            RequestKind::OpenExec,
            Intent::Exec,
            true
        ));
        assert!(concerns(
            Access::EXEC,
            RequestKind::OpenExec,
            Intent::Exec,
            true
        ));
        assert!(!concerns(
            Access::EXEC,
            RequestKind::Open,
            Intent::Read,
            true
        ));
        // Without FAN_OPEN_EXEC_PERM the exec's open stands in for it.
        assert!(concerns(
            Access::EXEC,
            RequestKind::Open,
            Intent::Exec,
            false
        ));
        assert!(!concerns(
            Access::EXEC,
            RequestKind::Open,
            Intent::Read,
            false
        ));
    }

    #[test]
    fn tags_merge_access() {
        let mut tags = Tags::new();
        add_tag(&mut tags, 1, Access::OPEN);
        add_tag(&mut tags, 1, Access::EXEC);
        add_tag(&mut tags, 2, Access::CONTENT_WRITE);
        assert_eq!(tags.len(), 2);
        assert_eq!(
            union(&tags),
            Access {
                open: true,
                exec: true,
                content_write: true
            }
        );
    }

    #[test]
    fn canonical_keeps_a_missing_name() {
        let dir = tempfile::tempdir().unwrap();
        let real = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            canonical(&dir.path().join("absent")).unwrap(),
            real.join("absent")
        );
        assert!(canonical(&dir.path().join("no/such/absent")).is_err());
    }
}
