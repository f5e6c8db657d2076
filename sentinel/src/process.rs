//! The process table: what the daemon knows about each watched process
//! (parent, UID, comm, executable, agent), kept current from fork, exec and
//! exit events and seeded from /proc at start. Attribution lives here: a
//! process belongs to the agent of its UID, or else to the agent of the
//! parent it was forked from, so `sudo` started by an agent stays the
//! agent's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sentinel_audit::ProcessInfo;

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
}

/// Watched processes by pid, and the agent name of each watched UID.
#[derive(Debug, Default)]
pub struct ProcessTable {
    procs: HashMap<u32, ProcEntry>,
    agents: HashMap<u32, Arc<str>>,
    /// Where /proc is; tests point it elsewhere.
    proc_root: PathBuf,
}

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
        }
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

    /// A watched process forked `child`: it inherits the parent's identity
    /// until it execs.
    pub fn on_fork(&mut self, parent: u32, parent_uid: u32, parent_comm: &str, child: u32) {
        let parent_entry = self.entry_or_proc(parent, parent_uid, parent_comm);
        let entry = ProcEntry {
            ppid: parent,
            uid: parent_entry.uid,
            comm: parent_entry.comm.clone(),
            exe: parent_entry.exe.clone(),
            agent: parent_entry.agent.clone(),
        };
        self.procs.insert(child, entry);
    }

    /// A watched process executed `filename`; `exe` is the resolved path
    /// when /proc still had it.
    /// `ppid` is the kernel's record of the parent (0 when it has none).
    /// A process ran a new program: `resolved` is the binary as the
    /// kernel resolved it for this exec (when it could), `filename` the
    /// name it was given.
    pub fn on_exec(
        &mut self,
        pid: u32,
        ppid: u32,
        uid: u32,
        comm: &str,
        resolved: Option<&str>,
        filename: &str,
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
        let entry = self.entry_or_proc(pid, uid, comm);
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

    /// Processes the table attributes to `agent` (its UIDs' and every
    /// descendant's, `sudo` children included).
    pub fn pids_of_agent(&self, agent: &str) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, e)| e.agent.as_deref() == Some(agent))
            .map(|(pid, _)| *pid)
            .collect()
    }

    /// The parent the table knows for `pid`, and that parent's exe.
    pub fn parent_exe(&self, pid: u32) -> Option<String> {
        let ppid = self.procs.get(&pid)?.ppid;
        self.procs.get(&ppid).map(|p| p.exe.to_string())
    }

    /// Every known descendant of `pid` (children, grandchildren, ...).
    pub fn descendants(&self, pid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let mut frontier = vec![pid];
        while let Some(parent) = frontier.pop() {
            for (child, e) in &self.procs {
                if e.ppid == parent && *child != pid && !out.contains(child) {
                    out.push(*child);
                    frontier.push(*child);
                }
            }
        }
        out
    }

    /// Removes an exited process, returning what was known of it. The
    /// table shrinks when a crowd of processes has gone.
    pub fn on_exit(&mut self, pid: u32) -> Option<ProcEntry> {
        let gone = self.procs.remove(&pid);
        if self.procs.capacity() > 1024 && self.procs.len() < self.procs.capacity() / 8 {
            self.procs.shrink_to(self.procs.len() * 2);
        }
        gone
    }

    /// The event's process fields, filling the table from /proc for a
    /// process it has not seen yet.
    pub fn info(&mut self, pid: u32, uid: u32, comm: &str) -> ProcessInfo {
        let entry = self.entry_or_proc(pid, uid, comm);
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

    fn entry_or_proc(&mut self, pid: u32, uid: u32, comm: &str) -> &mut ProcEntry {
        if !self.procs.contains_key(&pid) {
            let ppid = self.read_ppid(pid).unwrap_or(0);
            let entry = ProcEntry {
                ppid,
                uid,
                comm: Arc::from(comm),
                exe: Arc::from(self.read_exe(pid).unwrap_or_default()),
                agent: self.attribute(uid, ppid),
            };
            self.procs.insert(pid, entry);
        }
        self.procs.get_mut(&pid).expect("inserted above")
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
        let mut all: Vec<(u32, u32, u32, String)> = Vec::new();
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
            all.push((pid, ppid, uid, comm));
        }
        all.sort_unstable();
        let mut watched: HashMap<u32, bool> = HashMap::new();
        let by_pid: HashMap<u32, (u32, u32)> =
            all.iter().map(|(p, pp, u, _)| (*p, (*pp, *u))).collect();
        let mut extra = Vec::new();
        for (pid, ppid, uid, comm) in &all {
            if is_watched_lineage(*pid, &by_pid, &self.agents, &mut watched) {
                let agent = self.agents.get(uid).cloned();
                if agent.is_none() {
                    extra.push(*pid);
                }
                let exe = self.read_exe(*pid).unwrap_or_default();
                self.procs.insert(
                    *pid,
                    ProcEntry {
                        ppid: *ppid,
                        uid: *uid,
                        comm: Arc::from(comm.as_str()),
                        exe: Arc::from(exe),
                        agent: None,
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

    fn table() -> ProcessTable {
        let agents = HashMap::from([(1000, "claude".to_string())]);
        // An empty directory as /proc: nothing is read from the host.
        let dir = std::env::temp_dir().join(format!("sentinel-proc-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        ProcessTable::with_proc_root(agents, dir)
    }

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
        t.on_exec(20, 1, 1000, "bash", Some("/usr/bin/bash"), "/bin/bash");
        assert_eq!(t.info(20, 1000, "bash").exe, "/usr/bin/bash");
        // Without a kernel path, /proc is the best there is.
        t.on_exec(20, 1, 1000, "sudo", None, "sudo");
        assert_eq!(t.info(20, 1000, "sudo").exe, "/usr/bin/sudo");
    }

    #[test]
    fn stat_parsing_survives_hostile_comm() {
        let stat = "123 (evil) 1 (x) S 77 123 123 0 -1";
        assert_eq!(parse_stat_ppid(stat), Some(77));
        assert_eq!(parse_stat_comm(stat).as_deref(), Some("evil) 1 (x"));
    }

    #[test]
    fn descendants_keep_the_agent_after_setuid() {
        let mut t = table();
        let info = t.info(10, 1000, "bash");
        assert_eq!(info.agent.as_deref(), Some("claude"));
        t.on_fork(10, 1000, "bash", 11);
        t.on_exec(11, 0, 0, "sudo", None, "/usr/bin/sudo");
        t.on_fork(11, 0, "sudo", 12);
        t.on_exec(12, 11, 0, "id", None, "/usr/bin/id");
        let info = t.info(12, 0, "id");
        assert_eq!(info.ppid, 11);
        let mut d = t.descendants(10);
        d.sort();
        assert_eq!(d, vec![11, 12]);
        assert_eq!(info.uid, 0);
        assert_eq!(info.exe, "/usr/bin/id");
        assert_eq!(info.agent.as_deref(), Some("claude"));
    }

    #[test]
    fn exit_removes_and_unknown_processes_are_unattributed() {
        let mut t = table();
        t.info(10, 1000, "bash");
        assert!(t.on_exit(10).is_some());
        assert!(t.on_exit(10).is_none());
        let info = t.info(99, 4242, "x");
        assert_eq!(info.agent, None);
        assert_eq!(info.ppid, 0);
    }

    #[test]
    fn relative_paths_are_normalized() {
        assert_eq!(crate::paths::lexical(None, "/home/a/../b/./c"), "/home/b/c");
        let t = table();
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
