//! Enforcement: turning verdicts into effects.
//!
//! - [`compile_maps`] lays the engine's [`KernelPolicy`] out as BPF map
//!   entries (path LPM trie, network LPM tries, rule ids), so the kernel
//!   decides synchronously what the policy lets it decide; [`identify`]
//!   adds what exists on disk — each protected file and directory by
//!   identity (device, inode), and each path's canonical spelling when it
//!   differs (a symlinked directory, merged /usr) — and [`apply`] writes
//!   them, counting what the kernel refused.
//! - [`Approvals`] holds processes stopped for an `ask` verdict and resumes
//!   or kills them on `sentinel approve` / `sentinel deny` or a timeout.
//!   An approval is one-shot and bound to the process (pid and start
//!   time, so a reused pid is never signalled) and to the action.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aya::maps::lpm_trie::Key;
use sentinel_common::{
    approval_kind, decision, inode_scope, path_key_kind, rule_id, ApprovalKey, InodeKey, InodeRule,
    NetKeyData, NetRule, PathKeyData, PathRule, NET_PORT_RANGES, PATH_KEY_PATH_LEN,
};
use sentinel_policy::{Decision, KernelPath, KernelPolicy, NetMatch, PathMatch};
use serde::Serialize;

use crate::observe::{NetTable, Sensor, SensorError};

/// The kernel's maps for one compiled policy.
#[derive(Default)]
pub struct CompiledMaps {
    pub paths: Vec<(Key<PathKeyData>, PathRule)>,
    pub nets: Vec<(Key<NetKeyData>, NetRule)>,
    pub lockdown_nets: Vec<(Key<NetKeyData>, NetRule)>,
    pub lockdown: bool,
    /// Rule id → name, for the events the kernel acted on.
    pub rules: Vec<String>,
    /// Entries the kernel could not hold (too long, too many port ranges).
    pub skipped: Vec<String>,
    /// Protected objects by identity (from [`identify`]).
    pub inodes: Vec<(InodeKey, InodeRule)>,
    /// Rules with an entry the kernel refused when it was written: their
    /// verdicts are not enforced by the kernel.
    pub refused: Vec<String>,
}

impl CompiledMaps {
    /// The name of a rule id reported by the kernel.
    pub fn rule_name(&self, id: u32) -> String {
        match id {
            rule_id::LOCKDOWN => "lockdown".to_string(),
            rule_id::IO_URING => "io-uring".to_string(),
            id => self
                .rules
                .get(id as usize)
                .cloned()
                .unwrap_or_else(|| format!("kernel-rule-{id}")),
        }
    }

    /// The rule protecting an object itself (by `st_dev` and inode, as
    /// [`identify`] found it), whatever name it is reached by now.
    pub fn object_rule(
        &self,
        st_dev: u64,
        ino: u64,
        table: u8,
        writes: bool,
    ) -> Option<(String, Decision)> {
        let dev = kernel_dev(st_dev);
        let i = self
            .inodes
            .binary_search_by_key(&(dev, ino, table), |(k, _)| (k.dev, k.ino, k.table))
            .ok()?;
        let rule = self.inodes[i].1;
        if rule.scope & inode_scope::SELF == 0 || (rule.write_only != 0 && !writes) {
            return None;
        }
        let decision = if rule.decision == decision::ASK {
            Decision::Ask
        } else {
            Decision::Deny
        };
        Some((self.rule_name(rule.rule_id), decision))
    }

    fn rule_id(&mut self, name: &str) -> u32 {
        if let Some(i) = self.rules.iter().position(|r| r == name) {
            return i as u32;
        }
        self.rules.push(name.to_string());
        (self.rules.len() - 1) as u32
    }
}

fn decision_byte(d: Decision) -> u8 {
    match d {
        Decision::Ask => decision::ASK,
        _ => decision::DENY,
    }
}

/// An LPM key for `path` in `table`; an exact match includes the NUL.
fn path_key(table: u8, path: &str, prefix: bool) -> Option<Key<PathKeyData>> {
    let bytes = path.as_bytes();
    let len = bytes.len() + usize::from(!prefix);
    if len > PATH_KEY_PATH_LEN || bytes.contains(&0) {
        return None;
    }
    let mut data = PathKeyData {
        bytes: [0; 1 + PATH_KEY_PATH_LEN],
    };
    data.bytes[0] = table;
    data.bytes[1..1 + bytes.len()].copy_from_slice(bytes);
    Some(Key::new(8 * (1 + len) as u32, data))
}

fn net_key(net: &ipnet::IpNet) -> Key<NetKeyData> {
    let mut data = NetKeyData { bytes: [0; 17] };
    match net {
        ipnet::IpNet::V4(n) => {
            data.bytes[0] = 4;
            data.bytes[1..5].copy_from_slice(&n.network().octets());
            Key::new(8 + u32::from(n.prefix_len()), data)
        }
        ipnet::IpNet::V6(n) => {
            data.bytes[0] = 6;
            data.bytes[1..17].copy_from_slice(&n.network().octets());
            Key::new(8 + u32::from(n.prefix_len()), data)
        }
    }
}

/// Lays a compiled policy out as map entries.
pub fn compile_maps(kp: &KernelPolicy) -> CompiledMaps {
    let mut out = CompiledMaps {
        lockdown: kp.lockdown,
        ..CompiledMaps::default()
    };
    let add_path = |out: &mut CompiledMaps, table: u8, m: &PathMatch| {
        let id = out.rule_id(&m.rule);
        match path_key(table, &m.path, m.prefix) {
            Some(key) => out.paths.push((
                key,
                PathRule {
                    rule_id: id,
                    decision: decision_byte(m.decision),
                    write_only: u8::from(m.write_only),
                    _pad: [0; 2],
                },
            )),
            None => out.skipped.push(format!(
                "{}: path too long for the kernel: {}",
                m.rule, m.path
            )),
        }
    };
    for m in &kp.exec {
        add_path(&mut out, path_key_kind::EXEC, m);
    }
    for m in &kp.open {
        add_path(&mut out, path_key_kind::OPEN, m);
    }
    let allow = |out: &mut CompiledMaps, table: u8, list: &[KernelPath]| {
        for p in list {
            if let Some(key) = path_key(table, &p.path, p.prefix) {
                out.paths.push((
                    key,
                    PathRule {
                        rule_id: rule_id::LOCKDOWN,
                        decision: decision::ALLOW,
                        write_only: 0,
                        _pad: [0; 2],
                    },
                ));
            }
        }
    };
    if kp.lockdown {
        allow(
            &mut out,
            path_key_kind::LOCKDOWN_EXEC_ALLOW,
            &kp.lockdown_exec_allow,
        );
        allow(
            &mut out,
            path_key_kind::LOCKDOWN_OPEN_ALLOW,
            &kp.lockdown_open_allow,
        );
        for net in &kp.lockdown_connect_allow {
            out.lockdown_nets.push((
                net_key(net),
                NetRule {
                    rule_id: rule_id::LOCKDOWN,
                    decision: decision::ALLOW,
                    nports: 0,
                    _pad: [0; 2],
                    ports: [[0; 2]; NET_PORT_RANGES],
                },
            ));
        }
    }
    // One trie entry per network, holding up to NET_PORT_RANGES ranges.
    let mut by_net: Vec<(ipnet::IpNet, Vec<&NetMatch>)> = Vec::new();
    for m in &kp.connect {
        match by_net.iter_mut().find(|(n, _)| *n == m.net) {
            Some((_, v)) => v.push(m),
            None => by_net.push((m.net, vec![m])),
        }
    }
    for (net, matches) in by_net {
        let first = matches[0];
        let id = out.rule_id(&first.rule);
        let all_ports = matches.iter().any(|m| m.ports == (0, u16::MAX));
        let mut rule = NetRule {
            rule_id: id,
            decision: decision_byte(first.decision),
            nports: 0,
            _pad: [0; 2],
            ports: [[0; 2]; NET_PORT_RANGES],
        };
        if !all_ports {
            for m in matches.iter().take(NET_PORT_RANGES) {
                rule.ports[rule.nports as usize] = [m.ports.0, m.ports.1];
                rule.nports += 1;
            }
            for m in matches.iter().skip(NET_PORT_RANGES) {
                out.skipped.push(format!(
                    "{}: more than {NET_PORT_RANGES} port ranges for {net}; decided in userspace",
                    m.rule
                ));
            }
        }
        out.nets.push((net_key(&net), rule));
    }
    out
}

/// What lets a call the kernel held through once when it restarts: the
/// object (file identity, or address and port) it was held on.
pub fn approval_key(event: &crate::decode::KernelEvent) -> Option<ApprovalKey> {
    use crate::decode::{KernelAction, KernelEvent};
    if event.header().action != KernelAction::Held {
        return None;
    }
    let file = |kind, f: &crate::decode::FileRef| ApprovalKey {
        kind,
        id: f.ino,
        dev: f.dev,
        ..ApprovalKey::default()
    };
    Some(match event {
        KernelEvent::Exec { binary, .. } => file(approval_kind::EXEC, binary),
        KernelEvent::Open { file: f, .. } => file(approval_kind::OPEN, f),
        KernelEvent::Change { .. } => ApprovalKey {
            kind: approval_kind::CHANGE,
            ..ApprovalKey::default()
        },
        KernelEvent::Connect { addr, port, .. } => {
            let (family, bytes) = match addr {
                std::net::IpAddr::V4(a) => {
                    let mut b = [0u8; 16];
                    b[..4].copy_from_slice(&a.octets());
                    (2u32, b)
                }
                std::net::IpAddr::V6(a) => (10u32, a.octets()),
            };
            ApprovalKey {
                kind: approval_kind::CONNECT,
                id: u64::from(*port),
                dev: family,
                addr: bytes,
                ..ApprovalKey::default()
            }
        }
        _ => return None,
    })
}

/// The kernel's `dev_t` (`MAJOR << 20 | MINOR`) of a `st_dev`.
pub fn kernel_dev(st_dev: u64) -> u32 {
    let major = libc::major(st_dev);
    let minor = libc::minor(st_dev);
    (major << 20) | minor
}

/// Adds to compiled maps what exists on disk now: every exec and open
/// entry's object by identity (an exact path: the object; a directory
/// prefix: everything below it; a trailing `*`: each existing entry it
/// matches), and the canonical spelling of each path where it differs.
/// Paths that do not exist yet are still matched by their resolved path.
pub fn identify(kp: &KernelPolicy, maps: &mut CompiledMaps) {
    use std::os::unix::fs::MetadataExt;
    let mut inodes: HashMap<InodeKey, InodeRule> = HashMap::new();
    let mut aliases = Vec::new();
    for (table, list) in [
        (path_key_kind::EXEC, &kp.exec),
        (path_key_kind::OPEN, &kp.open),
    ] {
        for m in list.iter() {
            // An exec rule naming an applet of a multi-call binary (busybox's
            // `su` is busybox's `sh` too) would catch every applet by
            // identity: it is decided on the name only.
            if table == path_key_kind::EXEC && is_applet(&m.path) {
                continue;
            }
            let id = maps.rule_id(&m.rule);
            let rule = |scope| InodeRule {
                rule_id: id,
                decision: decision_byte(m.decision),
                write_only: u8::from(m.write_only),
                scope,
                _pad: 0,
            };
            let mut add = |path: &std::path::Path, scope: u8| {
                if let Ok(meta) = std::fs::metadata(path) {
                    let key = InodeKey {
                        ino: meta.ino(),
                        dev: kernel_dev(meta.dev()),
                        table,
                        _pad: [0; 3],
                    };
                    // The first entry for an object wins, as in the trie.
                    inodes.entry(key).or_insert(rule(scope));
                }
            };
            let objects: Vec<(std::path::PathBuf, u8)> = match (m.prefix, m.path.strip_suffix('/'))
            {
                (false, _) => vec![(m.path.clone().into(), inode_scope::SELF)],
                (true, Some(dir)) => vec![(dir.into(), inode_scope::SUBTREE)],
                (true, None) => {
                    // `dir/name*`: the entries of dir that start with name.
                    let path = std::path::Path::new(&m.path);
                    let (Some(dir), Some(start)) = (path.parent(), path.file_name()) else {
                        continue;
                    };
                    let start = start.to_string_lossy().into_owned();
                    std::fs::read_dir(dir)
                        .into_iter()
                        .flatten()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().starts_with(&start))
                        .map(|e| (e.path(), inode_scope::SELF | inode_scope::SUBTREE))
                        .collect()
                }
            };
            for (path, scope) in objects {
                add(&path, scope);
            }
            // The canonical spelling, when the policy's goes through a
            // symlink: events carry resolved paths.
            let literal = m.path.trim_end_matches('/');
            if let Ok(real) = std::fs::canonicalize(literal) {
                let mut real = real.to_string_lossy().into_owned();
                if m.path.ends_with('/') && real != "/" {
                    real.push('/');
                }
                if real != m.path && m.path.ends_with('/') == real.ends_with('/') {
                    aliases.push((table, real, m.clone()));
                }
            }
        }
    }
    for (table, real, m) in aliases {
        let id = maps.rule_id(&m.rule);
        if let Some(key) = path_key(table, &real, m.prefix) {
            maps.paths.push((
                key,
                PathRule {
                    rule_id: id,
                    decision: decision_byte(m.decision),
                    write_only: u8::from(m.write_only),
                    _pad: [0; 2],
                },
            ));
        }
    }
    let mut inodes: Vec<_> = inodes.into_iter().collect();
    inodes.sort_by_key(|(k, _)| (k.dev, k.ino, k.table));
    maps.inodes = inodes;
}

/// Multi-call binaries: one file, many programs chosen by the name.
const MULTI_CALL: &[&str] = &["busybox", "toybox", "coreutils"];

/// Whether `path` is a symlink to a multi-call binary.
fn is_applet(path: &str) -> bool {
    let path = std::path::Path::new(path.trim_end_matches('/'));
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::canonicalize(path).is_ok_and(|real| {
            real.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| MULTI_CALL.contains(&n))
        })
}

/// Writes compiled maps into the kernel (replacing what was there). An
/// entry the kernel refuses (a full map) is logged and its rule recorded
/// in `maps.refused`, so its verdicts do not claim kernel enforcement.
pub fn apply(sensor: &mut Sensor, maps: &mut CompiledMaps) -> Result<(), SensorError> {
    let mut refused = Vec::new();
    for i in sensor.replace_path_rules(&maps.paths)? {
        refused.push(maps.rule_name(maps.paths[i].1.rule_id));
    }
    for i in sensor.replace_net_rules(NetTable::Rules, &maps.nets)? {
        refused.push(maps.rule_name(maps.nets[i].1.rule_id));
    }
    for i in sensor.replace_net_rules(NetTable::LockdownAllow, &maps.lockdown_nets)? {
        refused.push(maps.rule_name(maps.lockdown_nets[i].1.rule_id));
    }
    for key in sensor.replace_inode_rules(&maps.inodes)? {
        if let Some((_, rule)) = maps.inodes.iter().find(|(k, _)| *k == key) {
            refused.push(maps.rule_name(rule.rule_id));
        }
    }
    refused.sort();
    refused.dedup();
    for rule in &refused {
        tracing::warn!(
            "the kernel refused map entries of rule {rule}: it is enforced after the fact"
        );
    }
    maps.refused = refused;
    sensor.set_flag(sentinel_common::config::flags::LOCKDOWN, maps.lockdown)
}

/// Sends `sig` to a held process, if it is still the one that was held.
fn signal(pid: u32, start: Option<u64>, sig: i32) -> bool {
    crate::procid::signal_known(pid, start, sig).is_ok()
}

/// Resumes a stopped process if it is still the one that was stopped.
pub fn resume(pid: u32, start: Option<u64>) -> bool {
    signal(pid, start, libc::SIGCONT)
}

/// Writes `message` to a process's stderr when that is a terminal, a pipe
/// or a socket (never a file the daemon would be writing as root).
pub fn tell(pid: u32, message: &str) -> bool {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fd = format!("/proc/{pid}/fd/2");
    let target = std::fs::read_link(&fd)
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_default();
    let safe = ["/dev/pts/", "/dev/tty", "pipe:", "socket:"]
        .iter()
        .any(|p| target.starts_with(p));
    if !safe {
        return false;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&fd)
        .and_then(|mut f| f.write_all(message.as_bytes()))
        .is_ok()
}

/// A process held for an approval.
#[derive(Debug, Clone, Serialize)]
pub struct PendingApproval {
    pub id: u64,
    pub pid: u32,
    #[serde(skip)]
    pub start: Option<u64>,
    /// What it is waiting for, e.g. `exec /usr/bin/curl`.
    pub action: String,
    pub rule: Option<String>,
    #[serde(skip)]
    pub deadline: Instant,
    /// For a call the kernel held before it took effect: what lets it
    /// through once when it restarts.
    #[serde(skip)]
    pub kernel_key: Option<ApprovalKey>,
    /// For an open or exec the file guard keeps waiting in the kernel
    /// (fanotify): its request id, answered instead of signalling.
    #[serde(skip)]
    pub guard_request: Option<u64>,
}

/// How an approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Resolution {
    Approved,
    Denied,
    TimedOut,
    /// The process was gone (or its pid reused) when the answer came.
    Gone,
}

#[derive(Debug)]
pub struct Approvals {
    next_id: u64,
    timeout: Duration,
    pending: HashMap<u64, PendingApproval>,
}

impl Approvals {
    pub fn new(timeout: Duration) -> Self {
        Self {
            next_id: 1,
            timeout,
            pending: HashMap::new(),
        }
    }

    /// Registers a held process (`start`: its start time, as the process
    /// table knows it); returns the approval id. A process that already
    /// waits (adopted before its late event arrived) keeps its id.
    pub fn hold(
        &mut self,
        pid: u32,
        start: Option<u64>,
        action: String,
        rule: Option<String>,
        kernel_key: Option<ApprovalKey>,
    ) -> u64 {
        if let Some(p) = self.pending.values_mut().find(|p| p.pid == pid) {
            p.action = action;
            p.rule = rule;
            if kernel_key.is_some() {
                p.kernel_key = kernel_key;
            }
            return p.id;
        }
        self.insert(pid, start, action, rule, kernel_key, None)
    }

    /// Registers an open or exec the file guard holds in the kernel (the
    /// process is blocked in the call, not stopped); returns the approval
    /// id. Each held call is its own approval.
    pub fn hold_request(
        &mut self,
        pid: u32,
        action: String,
        rule: Option<String>,
        request: u64,
        kernel_key: Option<ApprovalKey>,
    ) -> u64 {
        let start = crate::procid::start_time(pid);
        self.insert(pid, start, action, rule, kernel_key, Some(request))
    }

    /// A new pending approval with the next id.
    fn insert(
        &mut self,
        pid: u32,
        start: Option<u64>,
        action: String,
        rule: Option<String>,
        kernel_key: Option<ApprovalKey>,
        guard_request: Option<u64>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(
            id,
            PendingApproval {
                id,
                pid,
                start,
                action,
                rule,
                deadline: Instant::now() + self.timeout,
                kernel_key,
                guard_request,
            },
        );
        id
    }

    /// Whether `pid` waits for an answer.
    pub fn holds(&self, pid: u32) -> bool {
        self.pending.values().any(|p| p.pid == pid)
    }

    pub fn list(&self) -> Vec<PendingApproval> {
        let mut v: Vec<_> = self.pending.values().cloned().collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// Resumes (`approve`) or kills the held process, once.
    pub fn resolve(
        &mut self,
        id: u64,
        approve: bool,
        sensor: &mut Sensor,
    ) -> Option<(PendingApproval, Resolution)> {
        let p = self.pending.remove(&id)?;
        if approve {
            if let Some(mut key) = p.kernel_key {
                key.pid = p.pid;
                if let Err(e) = sensor.approve(key) {
                    tracing::warn!("approval {id}: {e}");
                }
            }
        }
        if p.guard_request.is_some() {
            // The call waits in the kernel: the caller answers it.
            let resolution = if approve {
                Resolution::Approved
            } else {
                Resolution::Denied
            };
            return Some((p, resolution));
        }
        let _ = sensor.release_held(p.pid);
        let resolution = if approve {
            if signal(p.pid, p.start, libc::SIGCONT) {
                Resolution::Approved
            } else {
                Resolution::Gone
            }
        } else if signal(p.pid, p.start, libc::SIGKILL) {
            Resolution::Denied
        } else {
            Resolution::Gone
        };
        Some((p, resolution))
    }

    /// Kills the processes whose approval timed out.
    pub fn expire(&mut self, sensor: &mut Sensor) -> Vec<(PendingApproval, Resolution)> {
        let now = Instant::now();
        let due: Vec<u64> = self
            .pending
            .values()
            .filter(|p| p.deadline <= now)
            .map(|p| p.id)
            .collect();
        due.into_iter()
            .filter_map(|id| {
                self.resolve(id, false, sensor).map(|(p, r)| {
                    (
                        p,
                        if r == Resolution::Denied {
                            Resolution::TimedOut
                        } else {
                            r
                        },
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sentinel_policy::KernelPolicy;

    fn pm(path: &str, prefix: bool, decision: Decision, rule: &str) -> PathMatch {
        PathMatch {
            path: path.into(),
            prefix,
            write_only: false,
            uid: None,
            decision,
            rule: rule.into(),
        }
    }

    #[test]
    fn objects_are_matched_by_identity_whatever_their_name() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id_ed25519");
        let pub_key = dir.path().join("id_ed25519.pub");
        std::fs::write(&key, "k").unwrap();
        std::fs::write(&pub_key, "p").unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("inner"), "i").unwrap();
        let kp = KernelPolicy {
            open: vec![
                pm(key.to_str().unwrap(), false, Decision::Deny, "key"),
                PathMatch {
                    write_only: true,
                    ..pm(
                        &format!("{}/", sub.display()),
                        true,
                        Decision::Ask,
                        "sub-writes",
                    )
                },
            ],
            ..KernelPolicy::default()
        };
        let mut maps = compile_maps(&kp);
        identify(&kp, &mut maps);
        // A hard link elsewhere is the same object: found by identity.
        let link = dir.path().join("elsewhere");
        std::fs::hard_link(&key, &link).unwrap();
        let m = std::fs::metadata(&link).unwrap();
        assert_eq!(
            maps.object_rule(m.dev(), m.ino(), path_key_kind::OPEN, false),
            Some(("key".to_string(), Decision::Deny))
        );
        // Another file in the same directory is not.
        let other = std::fs::metadata(&pub_key).unwrap();
        assert_eq!(
            maps.object_rule(other.dev(), other.ino(), path_key_kind::OPEN, false),
            None
        );
        // The exec table is another table.
        assert_eq!(
            maps.object_rule(m.dev(), m.ino(), path_key_kind::EXEC, false),
            None
        );
        // A directory is matched as an ancestor (by the kernel's walk),
        // not as the object itself; and a write-only rule ignores reads.
        let d = std::fs::metadata(&sub).unwrap();
        assert_eq!(
            maps.object_rule(d.dev(), d.ino(), path_key_kind::OPEN, true),
            None
        );
        let (_, rule) = maps
            .inodes
            .iter()
            .find(|(k, _)| k.ino == d.ino())
            .expect("the directory is known by identity");
        assert_eq!(rule.scope, inode_scope::SUBTREE);
        assert_eq!(rule.write_only, 1);
    }

    #[test]
    fn exact_paths_include_the_nul_and_prefixes_do_not() {
        let kp = KernelPolicy {
            exec: vec![pm("/usr/bin/nc", false, Decision::Deny, "no-nc")],
            open: vec![pm("/etc/cron.d/", true, Decision::Ask, "cron")],
            ..KernelPolicy::default()
        };
        let maps = compile_maps(&kp);
        assert_eq!(maps.paths.len(), 2);
        let (k, v) = &maps.paths[0];
        let prefix_len = k.prefix_len();
        assert_eq!(prefix_len, 8 * (1 + "/usr/bin/nc".len() as u32 + 1));
        assert_eq!(k.data().bytes[0], path_key_kind::EXEC);
        assert_eq!(v.decision, decision::DENY);
        assert_eq!(maps.rule_name(v.rule_id), "no-nc");
        let (k, v) = &maps.paths[1];
        assert_eq!(k.prefix_len(), 8 * (1 + "/etc/cron.d/".len() as u32));
        assert_eq!(v.decision, decision::ASK);
        assert_eq!(maps.rule_name(rule_id::LOCKDOWN), "lockdown");
    }

    #[test]
    fn port_ranges_share_one_entry_per_network() {
        let net: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
        let nm = |lo, hi| NetMatch {
            net,
            ports: (lo, hi),
            decision: Decision::Deny,
            rule: "r".into(),
        };
        let kp = KernelPolicy {
            connect: vec![nm(22, 22), nm(8000, 8999)],
            ..KernelPolicy::default()
        };
        let maps = compile_maps(&kp);
        assert_eq!(maps.nets.len(), 1);
        let (k, v) = &maps.nets[0];
        assert_eq!(k.prefix_len(), 8 + 8);
        assert_eq!(k.data().bytes[..2], [4, 10]);
        assert_eq!(v.nports, 2);
        assert_eq!(v.ports[1], [8000, 8999]);
    }

    #[test]
    fn too_long_paths_are_reported_not_truncated() {
        let long = format!("/{}", "a".repeat(300));
        let kp = KernelPolicy {
            open: vec![pm(&long, false, Decision::Deny, "long")],
            ..KernelPolicy::default()
        };
        let maps = compile_maps(&kp);
        assert!(maps.paths.is_empty());
        assert_eq!(maps.skipped.len(), 1);
    }
}
