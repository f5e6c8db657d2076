//! A small process tree built from the event stream: pid → parent and uid,
//! bounded in size, so the detector can tell whether two events come from
//! the same process tree and whether a process descends from an MCP server.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use sentinel_audit::ProcessInfo;

/// Deepest ancestor walk; also guards against pid-reuse cycles.
const MAX_DEPTH: usize = 32;

#[derive(Debug, Clone)]
struct Node {
    ppid: u32,
    uid: u32,
    last_seen: SystemTime,
    exited: Option<SystemTime>,
}

/// pid → parent, from the `pid`/`ppid` every event carries.
#[derive(Debug, Clone)]
pub struct ProcessTree {
    nodes: HashMap<u32, Node>,
    capacity: usize,
}

impl ProcessTree {
    /// A tree that keeps at most `capacity` processes (oldest forgotten first).
    pub fn new(capacity: usize) -> Self {
        ProcessTree {
            nodes: HashMap::new(),
            capacity: capacity.max(16),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records what an event says about its process.
    pub fn update(&mut self, process: &ProcessInfo, now: SystemTime) {
        if self.nodes.len() >= self.capacity && !self.nodes.contains_key(&process.pid) {
            self.evict_oldest();
        }
        let node = self.nodes.entry(process.pid).or_insert(Node {
            ppid: process.ppid,
            uid: process.uid,
            last_seen: now,
            exited: None,
        });
        node.ppid = process.ppid;
        node.uid = process.uid;
        node.last_seen = now;
        node.exited = None;
    }

    /// Marks `pid` as exited; it is kept for `linger` so sequences that
    /// span its exit still match, then forgotten by [`prune`](Self::prune).
    pub fn exited(&mut self, pid: u32, now: SystemTime) {
        if let Some(node) = self.nodes.get_mut(&pid) {
            node.exited = Some(now);
        }
    }

    /// Forgets processes that exited more than `linger` ago.
    pub fn prune(&mut self, now: SystemTime, linger: Duration) {
        self.nodes.retain(|_, node| match node.exited {
            Some(at) => now.duration_since(at).map_or(true, |d| d <= linger),
            None => true,
        });
    }

    pub fn parent(&self, pid: u32) -> Option<u32> {
        self.nodes.get(&pid).map(|n| n.ppid)
    }

    pub fn uid(&self, pid: u32) -> Option<u32> {
        self.nodes.get(&pid).map(|n| n.uid)
    }

    /// `pid`, its parent, grandparent… up to `max` entries, stopping before
    /// pid 0 and init (pid 1), which every process shares.
    pub fn lineage(&self, pid: u32, max: usize) -> Vec<u32> {
        let mut chain = Vec::new();
        let mut current = pid;
        while current > 1 && chain.len() < max.min(MAX_DEPTH) && !chain.contains(&current) {
            chain.push(current);
            match self.parent(current) {
                Some(parent) => current = parent,
                None => break,
            }
        }
        chain
    }

    /// True when `pid` is `ancestor` or descends from it.
    pub fn descends_from(&self, pid: u32, ancestor: u32) -> bool {
        self.lineage(pid, MAX_DEPTH).contains(&ancestor)
    }

    /// True when `a` and `b` share an ancestor (themselves included) at
    /// most `generations` levels above each: the same process, parent and
    /// child, siblings, cousins… within that distance.
    pub fn related(&self, a: u32, b: u32, generations: usize) -> bool {
        let lineage_a = self.lineage(a, generations + 1);
        let lineage_b = self.lineage(b, generations + 1);
        lineage_a.iter().any(|pid| lineage_b.contains(pid))
    }

    /// True when `a` and `b` have the same (known) parent.
    pub fn siblings(&self, a: u32, b: u32) -> bool {
        match (self.parent(a), self.parent(b)) {
            (Some(pa), Some(pb)) => pa == pb && pa > 1,
            _ => false,
        }
    }

    fn evict_oldest(&mut self) {
        // Prefer exited processes, then the least recently seen.
        let victim = self
            .nodes
            .iter()
            .min_by_key(|(_, n)| (n.exited.is_none(), n.last_seen))
            .map(|(pid, _)| *pid);
        if let Some(pid) = victim {
            self.nodes.remove(&pid);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    fn proc(pid: u32, ppid: u32) -> ProcessInfo {
        ProcessInfo {
            pid,
            ppid,
            uid: 1000,
            ..ProcessInfo::default()
        }
    }

    #[test]
    fn relations_within_generations() {
        let now = UNIX_EPOCH;
        let mut tree = ProcessTree::new(100);
        // 1 → 10 (agent) → 20 (shell) → {30 cat, 31 curl}; 1 → 50 (unrelated)
        for (pid, ppid) in [(10, 1), (20, 10), (30, 20), (31, 20), (50, 1), (60, 50)] {
            tree.update(&proc(pid, ppid), now);
        }
        assert!(tree.related(30, 31, 1));
        assert!(tree.related(30, 30, 0));
        assert!(tree.related(20, 31, 1));
        assert!(!tree.related(30, 60, 3), "init is not a shared ancestor");
        assert!(tree.descends_from(31, 10));
        assert!(!tree.descends_from(60, 10));
        assert!(tree.siblings(30, 31));
        assert_eq!(tree.lineage(31, 10), vec![31, 20, 10]);
    }

    #[test]
    fn capacity_is_bounded_and_exited_processes_go_first() {
        let now = UNIX_EPOCH;
        let mut tree = ProcessTree::new(16);
        for pid in 2..18 {
            tree.update(&proc(pid, 1), now);
        }
        tree.exited(9, now);
        tree.update(&proc(100, 1), now);
        assert_eq!(tree.len(), 16);
        assert_eq!(tree.parent(9), None);
        assert_eq!(tree.parent(100), Some(1));
    }
}
