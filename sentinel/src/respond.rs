//! Response playbooks: what the policy's `[[playbook]]`s do when an alert
//! matches, and how each action is undone.
//!
//! A matching alert becomes a [`Response`]: carried out at once (`approval
//! = "auto"`) or pending until `sentinel respond approve ID` (`operator`),
//! with a timeout after which it is skipped or run (`on_timeout`). The
//! pipeline records every step in the audit chain with the alert's `seq`;
//! `sentinel respond undo ID` reverses what can be reversed.
//!
//! The mechanics, one function each: [`suspend`] (SIGSTOP, and the kernel's
//! hold mark, so a process resumed by anyone but the daemon is killed at
//! its next hooked syscall), [`kill`], and [`Netfilter`] for `cut-network`
//! (an nftables chain per response: the agent's UIDs may reach only the
//! allow-list; anything else is refused in the kernel's output hook).
//! `quarantine-agent` and `lockdown` are engine changes the pipeline makes.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use sentinel_policy::{Mode, OnTimeout, Playbook, ResponseAction};
use serde::Serialize;

use crate::procid::start_time;

/// Where a response stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum State {
    /// Waiting for the operator until the deadline.
    Pending {
        #[serde(skip)]
        deadline: Instant,
        timeout_seconds: u64,
    },
    Done,
    Skipped,
    Failed,
    Undone,
}

/// One response to one alert.
#[derive(Debug, Clone, Serialize)]
pub struct Response {
    pub id: u64,
    pub playbook: String,
    pub action: ResponseAction,
    pub agent: Option<String>,
    /// The alert that caused it.
    pub alert_seq: u64,
    #[serde(flatten)]
    pub state: State,
    /// What was done (or why not).
    pub detail: String,
    #[serde(skip)]
    pub on_timeout: OnTimeout,
    #[serde(skip)]
    pub allow: Vec<IpNet>,
    /// Suspended processes (pid, start time), to resume.
    #[serde(skip)]
    pub stopped: Vec<(u32, Option<u64>)>,
    /// The mode before a lockdown, to go back to.
    #[serde(skip)]
    pub previous_mode: Option<Mode>,
    /// The UIDs cut off the network.
    #[serde(skip)]
    pub uids: Vec<u32>,
}

impl Response {
    /// "response 3 (playbook `x`: suspend agent claude)".
    pub fn describe(&self) -> String {
        format!(
            "response {} (playbook `{}`: {} {})",
            self.id,
            self.playbook,
            self.action.name(),
            self.agent
                .as_deref()
                .map_or("on the host".to_string(), |a| format!("agent {a}"))
        )
    }
}

/// Every response since the daemon started.
#[derive(Debug, Default)]
pub struct Responses {
    next_id: u64,
    list: BTreeMap<u64, Response>,
}

impl Responses {
    /// A new response for `playbook` after alert `alert_seq`.
    pub fn open(&mut self, playbook: &Playbook, agent: Option<String>, alert_seq: u64) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        let state = match playbook.approval {
            sentinel_policy::Approval::Auto => State::Done,
            sentinel_policy::Approval::Operator => State::Pending {
                deadline: Instant::now() + Duration::from_secs(playbook.timeout_seconds),
                timeout_seconds: playbook.timeout_seconds,
            },
        };
        self.list.insert(
            id,
            Response {
                id,
                playbook: playbook.name.clone(),
                action: playbook.action,
                agent,
                alert_seq,
                state,
                detail: String::new(),
                on_timeout: playbook.on_timeout,
                allow: playbook.allow.clone(),
                stopped: Vec::new(),
                previous_mode: None,
                uids: Vec::new(),
            },
        );
        id
    }

    pub fn get(&self, id: u64) -> Option<&Response> {
        self.list.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Response> {
        self.list.get_mut(&id)
    }

    pub fn list(&self) -> Vec<&Response> {
        self.list.values().collect()
    }

    /// Pending responses past their deadline.
    pub fn expired(&self) -> Vec<u64> {
        let now = Instant::now();
        self.list
            .values()
            .filter(|r| matches!(r.state, State::Pending { deadline, .. } if deadline <= now))
            .map(|r| r.id)
            .collect()
    }
}

/// Every process whose real UID is in `uids`, from /proc, plus `extra`
/// (descendants the process table knows, e.g. under sudo), without the
/// daemon itself.
pub fn processes(uids: &[u32], extra: &[u32]) -> Vec<u32> {
    let me = std::process::id();
    let mut out: Vec<u32> = extra.to_vec();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                continue;
            };
            let uid = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next())
                .and_then(|u| u.parse::<u32>().ok());
            if uid.is_some_and(|u| uids.contains(&u)) {
                out.push(pid);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out.retain(|pid| *pid != me && *pid > 1);
    out
}

/// Stops every process `find` returns, repeating until no new one appears
/// (a fork between two rounds is caught in the next). Returns the stopped
/// processes with their start times.
pub fn suspend(mut find: impl FnMut() -> Vec<u32>) -> Vec<(u32, Option<u64>)> {
    let mut stopped: Vec<(u32, Option<u64>)> = Vec::new();
    for _ in 0..10 {
        let new: Vec<u32> = find()
            .into_iter()
            .filter(|pid| !stopped.iter().any(|(p, _)| p == pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            // SAFETY: kill has no memory-safety preconditions.
            if unsafe { libc::kill(pid as i32, libc::SIGSTOP) } == 0 {
                stopped.push((pid, start_time(pid)));
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stopped
}

/// Resumes what [`suspend`] stopped (only the same processes: a reused
/// pid is left alone). Returns how many were resumed.
pub fn resume(stopped: &[(u32, Option<u64>)]) -> usize {
    stopped
        .iter()
        .filter(|(pid, start)| crate::enforce::resume(*pid, *start))
        .count()
}

/// Kills every process `find` returns, in rounds like [`suspend`].
pub fn kill(mut find: impl FnMut() -> Vec<u32>) -> usize {
    let mut killed = Vec::new();
    for _ in 0..10 {
        let new: Vec<u32> = find()
            .into_iter()
            .filter(|pid| !killed.contains(pid))
            .collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            // Stop first so the tree cannot fork away while it is killed.
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
            if crate::procid::signal_known(pid, start_time(pid), libc::SIGKILL).is_ok() {
                killed.push(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.len()
}

/// The daemon's nftables table: one output chain per `cut-network`
/// response.
pub struct Netfilter {
    table: String,
}

impl Netfilter {
    pub fn new() -> Self {
        Netfilter {
            table: format!("sentinel_{}", std::process::id()),
        }
    }

    fn nft(&self, script: &str) -> Result<(), String> {
        let mut child = Command::new("nft")
            .arg("-f")
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft ({e}); install nftables"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("nft: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "nft refused the rules: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Refuses every outgoing packet of sockets owned by `uids`, except to
    /// `allow`: TCP connects are answered with a reset by the kernel
    /// (ECONNREFUSED), everything else with an ICMP admin-prohibited.
    pub fn cut(&self, id: u64, uids: &[u32], allow: &[IpNet]) -> Result<(), String> {
        let chain = format!("response_{id}");
        let mut script = format!(
            "add table inet {t}\nadd chain inet {t} {chain} {{ type filter hook output priority -10 ; policy accept ; }}\n",
            t = self.table
        );
        for uid in uids {
            for net in allow {
                let family = if matches!(net, IpNet::V4(_)) {
                    "ip"
                } else {
                    "ip6"
                };
                script.push_str(&format!(
                    "add rule inet {t} {chain} meta skuid {uid} {family} daddr {net} accept\n",
                    t = self.table
                ));
            }
            // Rejected rather than dropped, so a connect fails at once
            // (ECONNREFUSED) instead of timing out.
            script.push_str(&format!(
                "add rule inet {t} {chain} meta skuid {uid} meta l4proto tcp counter reject with tcp reset\nadd rule inet {t} {chain} meta skuid {uid} counter reject with icmpx type admin-prohibited\n",
                t = self.table
            ));
        }
        self.nft(&script)
    }

    pub fn restore(&self, id: u64) -> Result<(), String> {
        self.nft(&format!("delete chain inet {} response_{id}\n", self.table))
    }

    /// Removes the daemon's table (at exit).
    pub fn clear(&self) {
        let _ = self.nft(&format!("delete table inet {}\n", self.table));
    }
}

impl Default for Netfilter {
    fn default() -> Self {
        Self::new()
    }
}
