//! Decisions: lookups in the maps the daemon compiled from the policy —
//! paths (LPM trie on the resolved path), protected objects (by identity,
//! found during the walk), addresses and ports, the lockdown allow-lists
//! and one-shot approvals. Nothing here is policy of its own.

use aya_ebpf::maps::{lpm_trie::Key, LpmTrie};
use sentinel_common::{
    approval_kind, config, decision, path_key_kind, rule_id, ApprovalKey, FileObject, InodeRule,
    NetKeyData, NetRule, PathRule, NET_PORT_RANGES, PATH_KEY_PATH_LEN, RPATH_LEN,
};

use crate::filter::{flag, Current};
use crate::maps::{APPROVED, KEY_SCRATCH, LOCKDOWN_NET_ALLOW, NET_RULES, PATH_RULES};

pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const O_APPEND: u32 = 0o2000;

const RULE_LOCKDOWN: u32 = rule_id::LOCKDOWN;

/// A decision: `decision::DENY` or `ASK` with the rule, or none.
#[derive(Clone, Copy, Default)]
pub struct Decided {
    pub decision: u8,
    pub rule_id: u32,
}

impl Decided {
    #[inline(always)]
    pub fn none() -> Self {
        Decided::default()
    }
    #[inline(always)]
    pub fn is_some(&self) -> bool {
        self.decision == decision::DENY || self.decision == decision::ASK
    }
}

#[inline(always)]
pub fn open_writes(flags: u32) -> bool {
    flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND) != 0
}

/// Looks a path up in the path trie under `table`.
#[inline(always)]
pub fn path_rule(table: u8, path: &[u8; RPATH_LEN]) -> Option<PathRule> {
    let key = KEY_SCRATCH.get_ptr_mut(0)?;
    let key = unsafe { &mut *key };
    key.prefix_len = (8 * (1 + PATH_KEY_PATH_LEN)) as u32;
    key.data.bytes[0] = table;
    unsafe {
        core::ptr::copy_nonoverlapping(
            path.as_ptr(),
            key.data.bytes.as_mut_ptr().add(1),
            PATH_KEY_PATH_LEN,
        );
    }
    PATH_RULES.get(&*key).copied()
}

/// The deny/ask decision for a file: the path trie first (it names the
/// most specific rule), then the protected object the walk found.
#[inline(always)]
pub fn file_decision(
    table: u8,
    writes: bool,
    path: &[u8; RPATH_LEN],
    hit: &InodeRule,
    by_path: bool,
) -> Decided {
    if by_path {
        if let Some(r) = path_rule(table, path) {
            if (r.write_only == 0 || writes)
                && (r.decision == decision::DENY || r.decision == decision::ASK)
            {
                return Decided {
                    decision: r.decision,
                    rule_id: r.rule_id,
                };
            }
        }
    }
    if hit.decision == decision::DENY || hit.decision == decision::ASK {
        return Decided {
            decision: hit.decision,
            rule_id: hit.rule_id,
        };
    }
    Decided::none()
}

#[inline(always)]
fn allowed_in_lockdown(table: u8, path: &[u8; RPATH_LEN]) -> bool {
    matches!(path_rule(table, path), Some(r) if r.decision == decision::ALLOW)
}

#[inline(always)]
fn lockdown() -> Decided {
    Decided {
        decision: decision::DENY,
        rule_id: RULE_LOCKDOWN,
    }
}

/// Executing the resolved binary `path`: deny and ask entries
/// (quarantine, in lockdown) come first, then the lockdown allow-list.
#[inline(always)]
pub fn exec_decision(path: &[u8; RPATH_LEN], hit: &InodeRule) -> Decided {
    let d = file_decision(path_key_kind::EXEC, false, path, hit, true);
    if d.is_some() {
        return d;
    }
    if flag(config::flags::LOCKDOWN)
        && !allowed_in_lockdown(path_key_kind::LOCKDOWN_EXEC_ALLOW, path)
    {
        return lockdown();
    }
    Decided::none()
}

/// Opening (or changing: `writes`) the resolved `path`.
#[inline(always)]
pub fn open_decision(
    path: &[u8; RPATH_LEN],
    hit: &InodeRule,
    writes: bool,
    by_path: bool,
) -> Decided {
    let d = file_decision(path_key_kind::OPEN, writes, path, hit, by_path);
    if d.is_some() {
        return d;
    }
    if flag(config::flags::LOCKDOWN)
        && (writes || !by_path || !allowed_in_lockdown(path_key_kind::LOCKDOWN_OPEN_ALLOW, path))
    {
        return lockdown();
    }
    Decided::none()
}

/// Takes the one-shot approval of this held call, if the daemon gave one.
#[inline(always)]
pub fn take_approval(cur: &Current, key: &ApprovalKey) -> bool {
    let mut key = *key;
    key.pid = cur.tgid;
    if unsafe { APPROVED.get(&key) }.is_some() {
        let _ = APPROVED.remove(&key);
        return true;
    }
    false
}

#[inline(always)]
pub fn file_approval(kind: u32, obj: &FileObject) -> ApprovalKey {
    ApprovalKey {
        pid: 0,
        kind,
        id: obj.ino,
        dev: obj.dev,
        _pad: 0,
        addr: [0; 16],
    }
}

#[inline(always)]
pub fn connect_approval(family: u16, addr: &[u8; 16], port: u16) -> ApprovalKey {
    ApprovalKey {
        pid: 0,
        kind: approval_kind::CONNECT,
        id: u64::from(port),
        dev: u32::from(family),
        _pad: 0,
        addr: *addr,
    }
}

/// The deny/ask decision for a connect to `addr:port`.
#[inline(always)]
pub fn connect_decision(family: u16, addr: &[u8; 16], port: u16) -> Decided {
    if let Some(rule) = net_rule(&NET_RULES, family, addr) {
        if port_matches(&rule, port)
            && (rule.decision == decision::DENY || rule.decision == decision::ASK)
        {
            return Decided {
                decision: rule.decision,
                rule_id: rule.rule_id,
            };
        }
    }
    if flag(config::flags::LOCKDOWN)
        && !matches!(net_rule(&LOCKDOWN_NET_ALLOW, family, addr), Some(r) if r.decision == decision::ALLOW)
    {
        return lockdown();
    }
    Decided::none()
}

#[inline(always)]
fn net_rule(trie: &LpmTrie<NetKeyData, NetRule>, family: u16, addr: &[u8; 16]) -> Option<NetRule> {
    let mut data = NetKeyData { bytes: [0; 17] };
    // An IPv4-mapped IPv6 address is looked up as the IPv4 address it is.
    let mapped = family == AF_INET6
        && addr[..10].iter().all(|b| *b == 0)
        && addr[10] == 0xff
        && addr[11] == 0xff;
    if family == AF_INET || mapped {
        data.bytes[0] = 4;
        let off = if mapped { 12 } else { 0 };
        data.bytes[1] = addr[off];
        data.bytes[2] = addr[off + 1];
        data.bytes[3] = addr[off + 2];
        data.bytes[4] = addr[off + 3];
        let key = Key::new(8 + 32, data);
        trie.get(&key).copied()
    } else {
        data.bytes[0] = 6;
        data.bytes[1..17].copy_from_slice(addr);
        let key = Key::new(8 + 128, data);
        trie.get(&key).copied()
    }
}

#[inline(always)]
fn port_matches(rule: &NetRule, port: u16) -> bool {
    if rule.nports == 0 {
        return true;
    }
    let mut i = 0;
    while i < NET_PORT_RANGES {
        if i < rule.nports as usize && port >= rule.ports[i][0] && port <= rule.ports[i][1] {
            return true;
        }
        i += 1;
    }
    false
}
