//! The process table: what the daemon knows about each watched process
//! (parent, UID, comm, executable, agent), kept current from fork, exec and
//! exit events and seeded from /proc at start. Attribution lives here: a
//! process belongs to the agent of its UID, or else to the agent of the
//! parent it was forked from, so `sudo` started by an agent stays the
//! agent's.
//!
//! Identity and bounds:
//! - An entry names one process by (pid, start time): the start time is
//!   read from /proc when the process is first seen, and kept only if that
//!   process can have produced the event (it started before it). An
//!   exited entry is never taken for a later process at the same pid, and
//!   a process whose start time was never learnt is never signalled
//!   ([`crate::identity`]).
//! - Threads are tracked by their group: a fork that created a thread adds
//!   nothing (the kernel reports thread exits to no one, so per-thread
//!   entries would never be removed). A child the daemon could not check
//!   in time (gone already) is kept provisionally, still attributed, and
//!   dropped by the next [`ProcessTable::sweep`] once /proc shows it gone,
//!   a thread, or reused.
//! - Exited processes stay for [`EXITED_RETENTION`] so late lookups (byte
//!   counts of their sockets, trees being killed) still find them.
//! - At most [`MAX_TRACKED`] entries: at the cap the oldest exited entry
//!   goes first, then the oldest entry of any kind; both are counted in
//!   [`TableStats`].

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sentinel_audit::ProcessInfo;
use serde::Serialize;

use crate::procid::{self, ProcId};

/// Most processes the table holds (100,000 live processes fit).
pub const MAX_TRACKED: usize = 131_072;
/// How long an exited process stays in the table.
pub const EXITED_RETENTION: Duration = Duration::from_secs(30);

/// One watched process. The strings are shared (a forked child holds its
/// parent's until it execs): a table of 100,000 processes is one hash
/// table of small entries, not 300,000 string allocations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub ppid: u32,
    pub uid: u32,
    pub comm: Arc<str>,
    pub exe: Arc<str>,
    pub agent: Option<Arc<str>>,
    /// Start time (ticks since boot); `None` until the daemon could read
    /// it for this very process.
    pub start: Option<u64>,
    /// Kernel time the process was first seen.
    since: u64,
    /// When the exit was handled, and its kernel time.
    exited: Option<(Instant, u64)>,
    /// Insertion number, to find the oldest entry at the cap.
    generation: u64,
}

impl ProcEntry {
    pub fn id(&self, pid: u32) -> Option<ProcId> {
        self.start.map(|start| ProcId { pid, start })
    }
}

/// What the table holds and what it let go, for `status`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct TableStats {
    /// Entries now (live, provisional and recently exited).
    pub tracked: usize,
    pub exited: usize,
    /// Entries whose start time is not known yet.
    pub provisional: usize,
    pub capacity: usize,
    /// Exited entries dropped early because the table was full.
    pub evicted_exited: u64,
    /// Entries of running processes dropped because the table was full.
    pub evicted_live: u64,
    /// Thread creations seen (not tracked: threads belong to their group).
    pub threads_seen: u64,
    /// Entries dropped by the sweep: gone without an exit event (lost, or
    /// a thread that was gone before the daemon could tell).
    pub swept: u64,
}

/// Watched processes by pid, and the agent name of each watched UID.
#[derive(Debug)]
pub struct ProcessTable {
    procs: HashMap<u32, ProcEntry>,
    agents: HashMap<u32, Arc<str>>,
    /// Where /proc is; tests point it elsewhere.
    proc_root: PathBuf,
    /// (pid, generation) in insertion order, and in exit order; stale
    /// pairs are skipped when popped and compacted away now and then.
    order: VecDeque<(u32, u64)>,
    exits: VecDeque<(u32, u64)>,
    next_generation: u64,
    capacity: usize,
    stats: TableStats,
    /// Pids to check against /proc at the next sweeps.
    to_check: VecDeque<u32>,
}

/// Most /proc reads one sweep makes.
pub const SWEEP_BUDGET: usize = 4096;

impl ProcessTable {
    /// `agents` maps each watched UID to its agent name (the UID itself as
    /// a string when the operator gave none).
    pub fn new(agents: HashMap<u32, String>) -> Self {
        Self::with_proc_root(agents, PathBuf::from("/proc"))
    }

    /// Processes tracked now.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn with_proc_root(agents: HashMap<u32, String>, proc_root: PathBuf) -> Self {
        Self {
            procs: HashMap::new(),
            agents: agents.into_iter().map(|(u, a)| (u, Arc::from(a))).collect(),
            proc_root,
            order: VecDeque::new(),
            exits: VecDeque::new(),
            next_generation: 0,
            capacity: MAX_TRACKED,
            stats: TableStats::default(),
            to_check: VecDeque::new(),
        }
    }

    #[cfg(test)]
    fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    pub fn stats(&self) -> TableStats {
        let mut stats = self.stats;
        stats.tracked = self.procs.len();
        stats.exited = self.procs.values().filter(|e| e.exited.is_some()).count();
        stats.provisional = self.procs.values().filter(|e| e.start.is_none()).count();
        stats.capacity = self.capacity;
        stats
    }

    /// The entry for `pid`, if the table has one.
    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.procs.get(&pid)
    }

    /// The agent of a process with this UID and parent.
    fn attribute(&self, uid: u32, ppid: u32) -> Option<Arc<str>> {
        self.agents
            .get(&uid)
            .cloned()
            .or_else(|| self.procs.get(&ppid).and_then(|p| p.agent.clone()))
    }

    /// The agent of a process the table may not have seen (a socket's
    /// owner): its entry, else the agent of its UID or of its parent.
    pub fn agent_of(&self, pid: u32, uid: u32) -> Option<String> {
        match self.procs.get(&pid) {
            Some(entry) => entry.agent.as_deref().map(str::to_string),
            None => self
                .attribute(uid, self.read_ppid(pid).unwrap_or(0))
                .map(|a| a.to_string()),
        }
    }

    /// The start time of the process now at `pid`, if it can be the one
    /// that acted at kernel time `at` (else the pid was reused since).
    fn start_for(&self, pid: u32, at: u64) -> Option<u64> {
        procid::start_time_in(&self.proc_root, pid).filter(|s| procid::started_by(*s, at))
    }

    /// A watched process forked `child` at kernel time `at`: a new
    /// process inherits the parent's identity until it execs; a new
    /// thread adds nothing (it is part of the parent's group).
    pub fn on_fork(
        &mut self,
        parent: u32,
        parent_uid: u32,
        parent_comm: &str,
        child: u32,
        at: u64,
    ) {
        match self.thread_group_of(child) {
            Some(tgid) if tgid != child => {
                self.stats.threads_seen += 1;
                return;
            }
            _ => {}
        }
        let parent_entry = self
            .entry_or_proc(parent, parent_uid, parent_comm, at)
            .clone();
        let entry = ProcEntry {
            ppid: parent,
            uid: parent_entry.uid,
            comm: parent_entry.comm,
            exe: parent_entry.exe,
            agent: parent_entry.agent,
            // None when the child is already gone (or its pid reused): the
            // sweep drops it unless /proc shows it after all.
            start: self.start_for(child, at),
            since: at,
            exited: None,
            generation: 0,
        };
        self.insert(child, entry);
    }

    /// The thread group of a task id, from /proc (threads have their own
    /// /proc/TID even though `ls /proc` does not list them).
    fn thread_group_of(&self, tid: u32) -> Option<u32> {
        let status =
            std::fs::read_to_string(self.proc_root.join(tid.to_string()).join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("Tgid:"))
            .and_then(|v| v.trim().parse().ok())
    }

    /// A watched process executed `filename`; `exe` is the resolved path
    /// when /proc still had it.
    /// `ppid` is the kernel's record of the parent (0 when it has none).
    /// A process ran a new program: `resolved` is the binary as the
    /// kernel resolved it for this exec (when it could), `filename` the
    /// name it was given.
    #[allow(clippy::too_many_arguments)]
    pub fn on_exec(
        &mut self,
        pid: u32,
        ppid: u32,
        uid: u32,
        comm: &str,
        resolved: Option<&str>,
        filename: &str,
        at: u64,
    ) {
        // The kernel's path is this exec's; /proc has the program the
        // process runs *now*, which is the next one if it exec'd again
        // before this event was read (bash -c 'sudo ...' execs sudo at
        // once: reading /proc made bash's exec look like sudo's). Without
        // a kernel path, /proc, then the filename resolved here.
        let exe = resolved
            .map(str::to_string)
            .or_else(|| self.read_exe(pid))
            .or_else(|| {
                std::fs::canonicalize(filename)
                    .ok()
                    .map(|p| p.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| filename.to_string());
        let entry = self.entry_or_proc(pid, uid, comm, at);
        entry.exe = Arc::from(exe);
        entry.comm = Arc::from(comm);
        entry.uid = uid;
        if ppid != 0 {
            entry.ppid = ppid;
        }
    }

    /// The watched UIDs named `agent`.
    pub fn uids_of(&self, agent: &str) -> Vec<u32> {
        let mut uids: Vec<u32> = self
            .agents
            .iter()
            .filter(|(_, name)| &***name == agent)
            .map(|(uid, _)| *uid)
            .collect();
        uids.sort_unstable();
        uids
    }

    /// The agent name of a watched UID.
    pub fn agent_name(&self, uid: u32) -> Option<&str> {
        self.agents.get(&uid).map(|a| &**a)
    }

    /// Live processes the table attributes to `agent` (its UIDs' and
    /// every descendant's, `sudo` children included), each still the
    /// process the table saw (start time checked).
    pub fn pids_of_agent(&self, agent: &str) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, e)| e.exited.is_none() && e.agent.as_deref() == Some(agent))
            // Only the process the table saw, not a later one on its pid.
            .filter(|(pid, e)| {
                e.start.is_some() && procid::start_time_in(&self.proc_root, **pid) == e.start
            })
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// The parent the table knows for `pid`, and that parent's exe.
    pub fn parent_exe(&self, pid: u32) -> Option<String> {
        let ppid = self.procs.get(&pid)?.ppid;
        self.procs.get(&ppid).map(|p| p.exe.to_string())
    }

    /// Every known descendant of `pid` (children, grandchildren, ...),
    /// exited ones included (their children still count).
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
        for (child, e) in &self.procs {
            if *child != e.ppid {
                children.entry(e.ppid).or_default().push(*child);
            }
        }
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::from([pid]);
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for child in children.get(&parent).into_iter().flatten() {
                if seen.insert(*child) {
                    out.push(*child);
                    frontier.push(*child);
                }
            }
        }
        out
    }

    /// A process exited: its entry stays, marked, for a while (see the
    /// module doc). Returns what was known of it.
    pub fn on_exit(&mut self, pid: u32, at: u64) -> Option<ProcEntry> {
        let entry = self.procs.get_mut(&pid)?;
        if entry.exited.is_none() {
            entry.exited = Some((Instant::now(), at));
            self.exits.push_back((pid, entry.generation));
        }
        Some(entry.clone())
    }

    /// The event's process fields, filling the table from /proc for a
    /// process it has not seen yet. `at` is the event's kernel time.
    pub fn info(&mut self, pid: u32, uid: u32, comm: &str, at: u64) -> ProcessInfo {
        let entry = self.entry_or_proc(pid, uid, comm, at);
        // The UID of the event is the truth at that moment (setuid).
        entry.uid = uid;
        ProcessInfo {
            pid,
            ppid: entry.ppid,
            uid,
            comm: comm.to_string(),
            exe: entry.exe.to_string(),
            agent: entry.agent.as_deref().map(str::to_string),
        }
    }

    fn entry_or_proc(&mut self, pid: u32, uid: u32, comm: &str, at: u64) -> &mut ProcEntry {
        // An event after the exit of the entry at this pid is a new
        // process's (the pid was reused).
        let stale = self
            .procs
            .get(&pid)
            .and_then(|e| e.exited)
            .is_some_and(|(_, exit_at)| at > exit_at);
        if stale || !self.procs.contains_key(&pid) {
            let start = self.start_for(pid, at);
            let ppid = if start.is_some() {
                self.read_ppid(pid).unwrap_or(0)
            } else {
                0
            };
            let entry = ProcEntry {
                ppid,
                uid,
                comm: Arc::from(comm),
                exe: Arc::from(if start.is_some() {
                    self.read_exe(pid).unwrap_or_default()
                } else {
                    String::new()
                }),
                agent: self.attribute(uid, ppid),
                start,
                since: at,
                exited: None,
                generation: 0,
            };
            self.insert(pid, entry);
        }
        self.procs.get_mut(&pid).expect("inserted above")
    }

    /// Inserts (or replaces) the entry for `pid`, making room at the cap.
    fn insert(&mut self, pid: u32, mut entry: ProcEntry) {
        if !self.procs.contains_key(&pid) {
            while self.procs.len() >= self.capacity {
                if !self.evict_one() {
                    break;
                }
            }
        }
        self.next_generation += 1;
        entry.generation = self.next_generation;
        if entry.start.is_none() {
            self.to_check.push_back(pid);
        }
        self.order.push_back((pid, entry.generation));
        self.procs.insert(pid, entry);
        if self.order.len() > 2 * self.procs.len() + 1024 {
            let procs = &self.procs;
            self.order
                .retain(|(p, g)| procs.get(p).is_some_and(|e| e.generation == *g));
            self.exits
                .retain(|(p, g)| procs.get(p).is_some_and(|e| e.generation == *g));
        }
    }

    /// Drops the oldest exited entry, else the oldest entry; false when
    /// the table is empty.
    fn evict_one(&mut self) -> bool {
        while let Some((pid, generation)) = self.exits.pop_front() {
            if self
                .procs
                .get(&pid)
                .is_some_and(|e| e.generation == generation)
            {
                self.procs.remove(&pid);
                self.stats.evicted_exited += 1;
                return true;
            }
        }
        while let Some((pid, generation)) = self.order.pop_front() {
            if self
                .procs
                .get(&pid)
                .is_some_and(|e| e.generation == generation)
            {
                self.procs.remove(&pid);
                self.stats.evicted_live += 1;
                return true;
            }
        }
        false
    }

    /// Housekeeping, once a second: drops exited entries older than the
    /// retention, and checks entries against /proc — every provisional
    /// one once (verified, or dropped when gone, a thread or reused) and,
    /// with `full`, every entry (after the kernel lost events, exits among
    /// them). At most [`SWEEP_BUDGET`] /proc reads per call: the rest wait
    /// for the next tick, so a sweep never holds the daemon up.
    pub fn sweep(&mut self, full: bool) {
        while let Some(&(pid, generation)) = self.exits.front() {
            match self.procs.get(&pid) {
                Some(e) if e.generation == generation => {
                    if e.exited
                        .is_some_and(|(t, _)| t.elapsed() < EXITED_RETENTION)
                    {
                        break;
                    }
                    self.procs.remove(&pid);
                }
                _ => {}
            }
            self.exits.pop_front();
        }
        if full {
            let live = self
                .procs
                .iter()
                .filter(|(_, e)| e.exited.is_none() && e.start.is_some());
            self.to_check.extend(live.map(|(pid, _)| *pid));
        }
        for _ in 0..SWEEP_BUDGET {
            let Some(pid) = self.to_check.pop_front() else {
                break;
            };
            let Some(e) = self.procs.get_mut(&pid).filter(|e| e.exited.is_none()) else {
                continue;
            };
            let now = procid::start_time_in(&self.proc_root, pid);
            let keep = match e.start {
                // Provisional: verified if /proc shows a process (not a
                // thread) that can be the one seen.
                None => {
                    e.start = now
                        .filter(|s| procid::started_by(*s, e.since))
                        .filter(|_| !is_thread(&self.proc_root, pid));
                    e.start.is_some()
                }
                Some(start) => now == Some(start),
            };
            if !keep {
                self.procs.remove(&pid);
                self.stats.swept += 1;
            }
        }
        // The table shrinks when a crowd of processes has gone.
        if self.procs.capacity() > 1024 && self.procs.len() < self.procs.capacity() / 8 {
            self.procs.shrink_to(self.procs.len() * 2);
        }
    }

    fn read_exe(&self, pid: u32) -> Option<String> {
        std::fs::read_link(self.proc_root.join(pid.to_string()).join("exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn read_ppid(&self, pid: u32) -> Option<u32> {
        let stat =
            std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("stat")).ok()?;
        parse_stat_ppid(&stat)
    }

    /// Makes `path` absolute: relative to the process's working directory,
    /// or to the directory `dfd` refers to. Best effort: the process may be
    /// gone, and then the path is returned as the kernel saw it.
    pub fn resolve_path(&self, pid: u32, dfd: i32, path: &str) -> String {
        if path.starts_with('/') || path.is_empty() {
            return path.to_string();
        }
        let base = if dfd == -100 {
            self.proc_root.join(pid.to_string()).join("cwd")
        } else if dfd >= 0 {
            self.proc_root
                .join(pid.to_string())
                .join("fd")
                .join(dfd.to_string())
        } else {
            return path.to_string();
        };
        match std::fs::read_link(&base) {
            Ok(dir) => crate::paths::canonical(Some(&dir), path),
            Err(_) => path.to_string(),
        }
    }

    /// The canonical path of a change's name: the kernel's resolved path,
    /// or what it composed from the directory and the name as typed
    /// (cleaned and its directories resolved here), or, when the kernel
    /// had nothing, the name as typed against the process's directory.
    pub fn change_path(&self, pid: u32, file: &crate::decode::FileRef, typed: &str) -> String {
        if file.path.is_empty() {
            return self.resolve_path(pid, -100, typed);
        }
        if file.composed {
            return crate::paths::canonical(None, &file.path);
        }
        file.path.clone()
    }

    /// Seeds the table from /proc: every process whose UID is watched, and
    /// every descendant of one (whatever its UID now). Returns the pids of
    /// descendants with an unwatched UID, which the kernel must be told
    /// about.
    pub fn seed_from_proc(&mut self) -> Vec<u32> {
        let mut all: Vec<(u32, u32, u32, String, Option<u64>)> = Vec::new();
        let Ok(dir) = std::fs::read_dir(&self.proc_root) else {
            return Vec::new();
        };
        for entry in dir.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let base = entry.path();
            let Ok(stat) = std::fs::read_to_string(base.join("stat")) else {
                continue;
            };
            let Some(ppid) = parse_stat_ppid(&stat) else {
                continue;
            };
            let comm = parse_stat_comm(&stat).unwrap_or_default();
            let Some(uid) = read_status_uid(&base) else {
                continue;
            };
            all.push((pid, ppid, uid, comm, procid::parse_stat_start(&stat)));
        }
        all.sort_unstable();
        let mut watched: HashMap<u32, bool> = HashMap::new();
        let by_pid: HashMap<u32, (u32, u32)> =
            all.iter().map(|(p, pp, u, _, _)| (*p, (*pp, *u))).collect();
        let mut extra = Vec::new();
        for (pid, ppid, uid, comm, start) in &all {
            if is_watched_lineage(*pid, &by_pid, &self.agents, &mut watched) {
                let agent = self.agents.get(uid).cloned();
                if agent.is_none() {
                    extra.push(*pid);
                }
                let exe = self.read_exe(*pid).unwrap_or_default();
                self.insert(
                    *pid,
                    ProcEntry {
                        ppid: *ppid,
                        uid: *uid,
                        comm: Arc::from(comm.as_str()),
                        exe: Arc::from(exe),
                        agent: None,
                        start: *start,
                        since: procid::now_ktime(),
                        exited: None,
                        generation: 0,
                    },
                );
            }
        }
        // Attribute in pid order is not parent-first; walk up instead.
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        for pid in pids {
            let agent = self.agent_up_the_tree(pid);
            if let Some(e) = self.procs.get_mut(&pid) {
                e.agent = agent;
            }
        }
        extra
    }

    fn agent_up_the_tree(&self, mut pid: u32) -> Option<Arc<str>> {
        for _ in 0..64 {
            let e = self.procs.get(&pid)?;
            if let Some(a) = self.agents.get(&e.uid) {
                return Some(a.clone());
            }
            pid = e.ppid;
        }
        None
    }
}

/// A task id that /proc shows as a thread of another group.
fn is_thread(proc_root: &Path, tid: u32) -> bool {
    std::fs::read_to_string(proc_root.join(tid.to_string()).join("status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Tgid:"))
                .and_then(|v| v.trim().parse::<u32>().ok())
        })
        .is_some_and(|tgid| tgid != tid)
}

fn is_watched_lineage(
    pid: u32,
    by_pid: &HashMap<u32, (u32, u32)>,
    agents: &HashMap<u32, Arc<str>>,
    memo: &mut HashMap<u32, bool>,
) -> bool {
    let mut chain = Vec::new();
    let mut cur = pid;
    let mut result = false;
    for _ in 0..128 {
        if let Some(known) = memo.get(&cur) {
            result = *known;
            break;
        }
        let Some((ppid, uid)) = by_pid.get(&cur) else {
            break;
        };
        chain.push(cur);
        if agents.contains_key(uid) {
            result = true;
            break;
        }
        if *ppid == 0 || *ppid == cur {
            break;
        }
        cur = *ppid;
    }
    for p in chain {
        memo.insert(p, result);
    }
    result
}

/// `/proc/PID/stat`: the comm is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn parse_stat_comm(stat: &str) -> Option<String> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    Some(stat.get(open + 1..close)?.to_string())
}

fn read_status_uid(base: &Path) -> Option<u32> {
    let status = std::fs::read_to_string(base.join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table over an empty directory as /proc (nothing is read from the
    /// host); `fake` adds tasks to it.
    fn table(name: &str) -> (ProcessTable, PathBuf) {
        let agents = HashMap::from([(1000, "claude".to_string())]);
        let dir =
            std::env::temp_dir().join(format!("sentinel-proc-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (ProcessTable::with_proc_root(agents, dir.clone()), dir)
    }

    /// A task in the fake /proc: `tgid` is its group, `start` its start
    /// time in ticks.
    fn fake(root: &Path, tid: u32, tgid: u32, ppid: u32, start: u64) {
        let dir = root.join(tid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("stat"),
            format!("{tid} (t) S {ppid} {tgid} {tgid} 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {start} 0 0"),
        )
        .unwrap();
        std::fs::write(
            dir.join("status"),
            format!("Name:\tt\nTgid:\t{tgid}\nUid:\t1000\t1000\t1000\t1000\n"),
        )
        .unwrap();
    }

    const NOW: u64 = u64::MAX / 2;

    #[test]
    fn an_exec_read_late_keeps_the_program_the_kernel_resolved() {
        // bash exec'd sudo before its own exec event was read: /proc
        // already shows sudo, the event's kernel path says bash.
        let proc_root = tempfile::tempdir().unwrap();
        let pid_dir = proc_root.path().join("20");
        std::fs::create_dir_all(&pid_dir).unwrap();
        std::os::unix::fs::symlink("/usr/bin/sudo", pid_dir.join("exe")).unwrap();
        let agents = HashMap::from([(1000, "claude".to_string())]);
        let mut t = ProcessTable::with_proc_root(agents, proc_root.path().to_path_buf());
        t.on_exec(20, 1, 1000, "bash", Some("/usr/bin/bash"), "/bin/bash", NOW);
        assert_eq!(t.info(20, 1000, "bash", NOW).exe, "/usr/bin/bash");
        // Without a kernel path, /proc is the best there is.
        t.on_exec(20, 1, 1000, "sudo", None, "sudo", NOW);
        assert_eq!(t.info(20, 1000, "sudo", NOW).exe, "/usr/bin/sudo");
    }

    #[test]
    fn stat_parsing_survives_hostile_comm() {
        let stat = "123 (evil) 1 (x) S 77 123 123 0 -1";
        assert_eq!(parse_stat_ppid(stat), Some(77));
        assert_eq!(parse_stat_comm(stat).as_deref(), Some("evil) 1 (x"));
    }

    #[test]
    fn descendants_keep_the_agent_after_setuid() {
        let (mut t, _) = table("setuid");
        let info = t.info(10, 1000, "bash", NOW);
        assert_eq!(info.agent.as_deref(), Some("claude"));
        t.on_fork(10, 1000, "bash", 11, NOW);
        t.on_exec(11, 0, 0, "sudo", None, "/usr/bin/sudo", NOW);
        t.on_fork(11, 0, "sudo", 12, NOW);
        t.on_exec(12, 11, 0, "id", None, "/usr/bin/id", NOW);
        let info = t.info(12, 0, "id", NOW);
        assert_eq!(info.ppid, 11);
        let mut d = t.descendants(10);
        d.sort();
        assert_eq!(d, vec![11, 12]);
        assert_eq!(info.uid, 0);
        assert_eq!(info.exe, "/usr/bin/id");
        assert_eq!(info.agent.as_deref(), Some("claude"));
    }

    #[test]
    fn exit_marks_and_unknown_processes_are_unattributed() {
        let (mut t, _) = table("exit");
        t.info(10, 1000, "bash", 100);
        assert!(t.on_exit(10, 200).is_some());
        assert_eq!(t.stats().exited, 1);
        let info = t.info(99, 4242, "x", NOW);
        assert_eq!(info.agent, None);
        assert_eq!(info.ppid, 0);
    }

    #[test]
    fn threads_add_nothing_and_vanished_children_are_swept() {
        let (mut t, root) = table("threads");
        fake(&root, 10, 10, 1, 5);
        t.info(10, 1000, "app", NOW);
        // A live thread of group 10: nothing added.
        fake(&root, 11, 10, 1, 6);
        t.on_fork(10, 1000, "app", 11, NOW);
        // A child already gone when its fork is read: provisional.
        t.on_fork(10, 1000, "app", 12, NOW);
        // A live child process: verified.
        fake(&root, 13, 13, 10, 7);
        t.on_fork(10, 1000, "app", 13, NOW);
        assert!(t.get(11).is_none());
        assert_eq!(t.get(12).map(|e| e.start), Some(None));
        assert_eq!(t.get(13).and_then(|e| e.id(13)).map(|id| id.start), Some(7));
        assert_eq!(t.stats().threads_seen, 1);
        t.sweep(false);
        assert!(t.get(12).is_none(), "gone without an exit event: swept");
        assert_eq!(t.len(), 2);
        assert_eq!(t.stats().swept, 1);
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let (mut t, root) = table("reuse");
        fake(&root, 10, 10, 1, 5);
        t.info(10, 1000, "agent", 100);
        t.on_exit(10, 200);
        // An unwatched process now has pid 10; one of its events comes
        // after the exit: a new entry, with nothing of the old one.
        fake(&root, 10, 10, 1, 9);
        let info = t.info(10, 4242, "other", 300);
        assert_eq!(info.agent, None);
        assert!(t.get(10).unwrap().exited.is_none());
    }

    #[test]
    fn at_the_cap_exited_entries_go_first_then_the_oldest() {
        let (t, _) = table("cap");
        let mut t = t.with_capacity(3);
        for pid in [1, 2, 3] {
            t.info(pid, 1000, "p", NOW);
        }
        t.on_exit(2, NOW);
        t.info(4, 1000, "p", NOW);
        assert!(t.get(2).is_none(), "the exited entry went first");
        assert_eq!(t.stats().evicted_exited, 1);
        t.info(5, 1000, "p", NOW);
        assert!(t.get(1).is_none(), "then the oldest");
        let stats = t.stats();
        assert_eq!((stats.tracked, stats.evicted_live), (3, 1));
    }

    #[test]
    fn relative_paths_are_normalized() {
        assert_eq!(crate::paths::lexical(None, "/home/a/../b/./c"), "/home/b/c");
        let (t, _) = table("paths");
        assert_eq!(t.resolve_path(1, -100, "/etc/passwd"), "/etc/passwd");
        // No /proc entry for the pid: returned as the kernel saw it.
        assert_eq!(t.resolve_path(1, -100, "notes.txt"), "notes.txt");
    }

    #[test]
    fn resolves_against_the_process_cwd() {
        let root = std::env::temp_dir().join(format!("sentinel-proc-cwd-{}", std::process::id()));
        let pid_dir = root.join("5");
        std::fs::create_dir_all(&pid_dir).unwrap();
        let _ = std::fs::remove_file(pid_dir.join("cwd"));
        std::os::unix::fs::symlink("/srv/work", pid_dir.join("cwd")).unwrap();
        let t = ProcessTable::with_proc_root(HashMap::new(), root);
        assert_eq!(t.resolve_path(5, -100, "../secret"), "/srv/secret");
    }
}
