//! Bandwidth per agent. The kernel counts the IP packets and bytes
//! (headers included) of every socket a watched process connects or sends
//! a datagram from (`FLOWS`, see `observe`). Once a second the daemon hands
//! the counters to this meter, which attributes each new socket to its
//! agent, adds what changed since the last reading to per-minute buckets
//! keyed by agent and remote host, and names the released sockets whose
//! counts have settled so the daemon can stop counting them. The
//! operator's `sentinel_monitor_bandwidth` tool reads a time window of
//! those buckets.
//!
//! Memory is bounded: buckets older than [`RETENTION_MINUTES`] are dropped,
//! and so are the oldest ones when the buckets hold more than
//! [`MAX_ENTRIES`] (agent, host) rows; a report says from when it counted.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;

use sentinel_common::Flow;
use serde::Serialize;
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::clock::rfc3339;
use crate::decode::ip_addr;

/// A day of per-minute buckets.
pub const RETENTION_MINUTES: i64 = 24 * 60;
/// (agent, host) rows kept over all buckets.
pub const MAX_ENTRIES: usize = 200_000;

const IPPROTO_UDP: u32 = 17;

/// Packets and bytes each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub sent_bytes: u64,
    pub received_bytes: u64,
    pub sent_packets: u64,
    pub received_packets: u64,
}

impl Counts {
    fn of(flow: &Flow) -> Counts {
        Counts {
            sent_bytes: flow.tx_bytes,
            received_bytes: flow.rx_bytes,
            sent_packets: flow.tx_packets,
            received_packets: flow.rx_packets,
        }
    }

    /// What was added since `earlier` (the kernel's counters only grow).
    fn since(self, earlier: Counts) -> Counts {
        Counts {
            sent_bytes: self.sent_bytes.saturating_sub(earlier.sent_bytes),
            received_bytes: self.received_bytes.saturating_sub(earlier.received_bytes),
            sent_packets: self.sent_packets.saturating_sub(earlier.sent_packets),
            received_packets: self
                .received_packets
                .saturating_sub(earlier.received_packets),
        }
    }

    fn add(&mut self, other: Counts) {
        self.sent_bytes += other.sent_bytes;
        self.received_bytes += other.received_bytes;
        self.sent_packets += other.sent_packets;
        self.received_packets += other.received_packets;
    }

    fn is_zero(self) -> bool {
        self == Counts::default()
    }

    fn total_bytes(self) -> u64 {
        self.sent_bytes + self.received_bytes
    }
}

/// Who talked to whom: the row of a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Usage {
    agent: String,
    /// `addr:port`, IPv6 as `[addr]:port`.
    host: String,
    protocol: &'static str,
}

struct Socket {
    usage: Usage,
    last: Counts,
}

struct Minute {
    /// Minutes since the Unix epoch.
    start: i64,
    rows: HashMap<Usage, Counts>,
}

pub struct BandwidthMeter {
    /// Counted sockets by cookie, with the counts last read.
    sockets: HashMap<u64, Socket>,
    minutes: VecDeque<Minute>,
    entries: usize,
    /// When counting began, or the first minute still kept.
    counted_since: OffsetDateTime,
    /// Agents of watched processes that exited since the last reading, so
    /// a socket of a short-lived process is still attributed.
    exited: HashMap<u32, String>,
    /// Everything counted since the daemon started.
    total: Counts,
}

impl BandwidthMeter {
    pub fn new(now: OffsetDateTime) -> BandwidthMeter {
        BandwidthMeter {
            sockets: HashMap::new(),
            minutes: VecDeque::new(),
            entries: 0,
            counted_since: now,
            exited: HashMap::new(),
            total: Counts::default(),
        }
    }

    /// Remembers the agent of a process that exited, until the next reading.
    pub fn process_exited(&mut self, pid: u32, agent: Option<String>) {
        if let Some(agent) = agent {
            self.exited.insert(pid, agent);
        }
    }

    /// Takes one reading of the kernel's counters. `agent_of(pid, uid)`
    /// names the agent of a socket seen for the first time. Returns the
    /// cookies of released sockets whose counts have settled: the caller
    /// removes them from the kernel map.
    pub fn observe(
        &mut self,
        flows: &[(u64, Flow)],
        now: OffsetDateTime,
        mut agent_of: impl FnMut(u32, u32) -> Option<String>,
    ) -> Vec<u64> {
        let minute = now.unix_timestamp().div_euclid(60);
        let mut present = HashSet::with_capacity(flows.len());
        let mut settled = Vec::new();
        for (cookie, flow) in flows {
            let exited = &self.exited;
            let socket = self.sockets.entry(*cookie).or_insert_with(|| Socket {
                usage: Usage {
                    agent: agent_of(flow.pid, flow.uid)
                        .or_else(|| exited.get(&flow.pid).cloned())
                        .unwrap_or_else(|| format!("uid {}", flow.uid)),
                    host: host(flow),
                    protocol: if flow.protocol == IPPROTO_UDP {
                        "udp"
                    } else {
                        "tcp"
                    },
                },
                last: Counts::default(),
            });
            let counts = Counts::of(flow);
            let delta = counts.since(socket.last);
            socket.last = counts;
            if delta.is_zero() {
                if flow.closed != 0 {
                    settled.push(*cookie);
                    continue;
                }
            } else {
                let usage = socket.usage.clone();
                self.add(minute, usage, delta);
            }
            present.insert(*cookie);
        }
        // Forgotten: settled, or evicted from the map by the kernel's LRU.
        self.sockets.retain(|cookie, _| present.contains(cookie));
        self.exited.clear();
        self.expire(minute);
        settled
    }

    fn add(&mut self, minute: i64, usage: Usage, delta: Counts) {
        self.total.add(delta);
        if self.minutes.back().is_none_or(|m| m.start != minute) {
            self.minutes.push_back(Minute {
                start: minute,
                rows: HashMap::new(),
            });
        }
        let Some(bucket) = self.minutes.back_mut() else {
            return;
        };
        let row = bucket.rows.entry(usage).or_insert_with(|| {
            self.entries += 1;
            Counts::default()
        });
        row.add(delta);
    }

    /// Drops buckets past the retention, and the oldest over the cap.
    fn expire(&mut self, minute: i64) {
        while let Some(oldest) = self.minutes.front() {
            let too_old = oldest.start <= minute - RETENTION_MINUTES;
            if !too_old && (self.entries <= MAX_ENTRIES || self.minutes.len() == 1) {
                break;
            }
            self.entries -= oldest.rows.len();
            let next = oldest.start + 1;
            self.minutes.pop_front();
            if let Ok(t) = OffsetDateTime::from_unix_timestamp(next * 60) {
                self.counted_since = self.counted_since.max(t);
            }
        }
    }

    /// Sockets counted right now.
    pub fn sockets(&self) -> usize {
        self.sockets.len()
    }

    /// Everything counted since the daemon started.
    pub fn total(&self) -> Counts {
        self.total
    }

    /// Per agent (largest first), bytes and packets each way in the window
    /// from `since`, and per agent the `limit` hosts that moved the most.
    pub fn report(
        &self,
        since: OffsetDateTime,
        agent: Option<&str>,
        limit: usize,
        now: OffsetDateTime,
    ) -> Value {
        /// An agent's totals, and its counts per (host, protocol).
        type AgentRows<'a> = (Counts, BTreeMap<(&'a str, &'a str), Counts>);
        let from_minute = since.unix_timestamp().div_euclid(60);
        let mut per_agent: BTreeMap<&str, AgentRows> = BTreeMap::new();
        for bucket in self.minutes.iter().filter(|m| m.start >= from_minute) {
            for (usage, counts) in &bucket.rows {
                if agent.is_some_and(|a| a != usage.agent) {
                    continue;
                }
                let (total, hosts) = per_agent.entry(&usage.agent).or_default();
                total.add(*counts);
                hosts
                    .entry((&usage.host, usage.protocol))
                    .or_default()
                    .add(*counts);
            }
        }
        let mut agents: Vec<_> = per_agent.into_iter().collect();
        agents.sort_by_key(|(name, (total, _))| (std::cmp::Reverse(total.total_bytes()), *name));
        let agents: Vec<Value> = agents
            .into_iter()
            .map(|(name, (total, hosts))| {
                let mut hosts: Vec<_> = hosts.into_iter().collect();
                hosts.sort_by_key(|(key, c)| (std::cmp::Reverse(c.total_bytes()), *key));
                let rows: Vec<Value> = hosts
                    .into_iter()
                    .take(limit)
                    .map(|((host, protocol), c)| {
                        let mut row = json!({"host": host, "protocol": protocol});
                        merge(&mut row, &c);
                        row
                    })
                    .collect();
                let mut out = json!({"agent": name});
                merge(&mut out, &total);
                out["hosts"] = Value::Array(rows);
                out
            })
            .collect();
        json!({
            "since": rfc3339(since),
            "until": rfc3339(now),
            "counted_since": rfc3339(self.counted_since),
            "agents": agents,
            "sockets_counted": self.sockets.len(),
            "method": "IP packets and bytes (headers included) of every socket a watched process connected or sent a datagram from, counted in the kernel by cgroup skb hooks and read once a second; a socket is attributed to its first destination",
        })
    }
}

/// Adds the fields of `counts` to a JSON object.
fn merge(out: &mut Value, counts: &Counts) {
    if let (Some(o), Ok(Value::Object(c))) = (out.as_object_mut(), serde_json::to_value(counts)) {
        o.extend(c);
    }
}

/// `addr:port`, IPv6 as `[addr]:port`.
fn host(flow: &Flow) -> String {
    SocketAddr::new(ip_addr(flow.family, flow.addr), flow.port).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    const AF_INET: u16 = 2;

    fn flow(pid: u32, uid: u32, port: u16, tx: u64, rx: u64) -> Flow {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&[127, 0, 0, 1]);
        Flow {
            pid,
            uid,
            family: AF_INET,
            port,
            protocol: 6,
            addr,
            tx_bytes: tx,
            rx_bytes: rx,
            tx_packets: tx / 100,
            rx_packets: rx / 100,
            ..Flow::default()
        }
    }

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000 + secs).unwrap()
    }

    fn claude(_pid: u32, uid: u32) -> Option<String> {
        (uid == 1000).then(|| "claude".to_string())
    }

    #[test]
    fn adds_what_changed_between_readings_per_agent_and_host() {
        let mut m = BandwidthMeter::new(at(0));
        m.observe(&[(1, flow(10, 1000, 443, 1000, 5000))], at(1), claude);
        m.observe(&[(1, flow(10, 1000, 443, 1500, 9000))], at(2), claude);
        m.observe(
            &[
                (1, flow(10, 1000, 443, 1500, 9000)),
                (2, flow(11, 1000, 80, 300, 0)),
            ],
            at(3),
            claude,
        );
        let r = m.report(at(0), None, 10, at(4));
        let a = &r["agents"][0];
        assert_eq!(a["agent"], "claude");
        assert_eq!(a["sent_bytes"], 1800);
        assert_eq!(a["received_bytes"], 9000);
        assert_eq!(a["hosts"][0]["host"], "127.0.0.1:443");
        assert_eq!(a["hosts"][0]["sent_bytes"], 1500);
        assert_eq!(a["hosts"][1]["host"], "127.0.0.1:80");
        assert_eq!(r["sockets_counted"], 2);
        assert_eq!(m.total().sent_bytes, 1800);
    }

    #[test]
    fn released_sockets_are_collected_once_their_counts_settle() {
        let mut m = BandwidthMeter::new(at(0));
        let mut f = flow(10, 1000, 443, 100, 100);
        f.closed = 1;
        // Closed, but the last packets were still being counted.
        assert!(m.observe(&[(7, f)], at(1), claude).is_empty());
        assert_eq!(m.observe(&[(7, f)], at(2), claude), vec![7]);
        assert_eq!(m.sockets(), 0);
        let r = m.report(at(0), None, 10, at(3));
        assert_eq!(r["agents"][0]["sent_bytes"], 100);
    }

    #[test]
    fn a_socket_of_a_process_that_exited_keeps_its_agent() {
        let mut m = BandwidthMeter::new(at(0));
        m.process_exited(42, Some("claude".into()));
        // uid 0: a `sudo` child of the agent, gone before the reading.
        m.observe(&[(1, flow(42, 0, 443, 10, 0))], at(1), |_, _| None);
        m.observe(&[(2, flow(43, 0, 443, 10, 0))], at(1), |_, _| None);
        let r = m.report(at(0), None, 10, at(2));
        let names: Vec<&str> = r["agents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["claude", "uid 0"]);
    }

    #[test]
    fn windows_filters_and_ipv6_hosts() {
        let mut m = BandwidthMeter::new(at(0));
        m.observe(&[(1, flow(10, 1000, 443, 100, 0))], at(10), claude);
        let mut v6 = flow(11, 2000, 8080, 50, 0);
        v6.family = 10;
        v6.addr = Ipv6Addr::LOCALHOST.octets();
        m.observe(
            &[(1, flow(10, 1000, 443, 400, 0)), (2, v6)],
            at(600),
            claude,
        );
        // The last five minutes hold only the second reading.
        let r = m.report(at(300), None, 10, at(600));
        assert_eq!(r["agents"][0]["sent_bytes"], 300);
        assert_eq!(r["agents"][1]["hosts"][0]["host"], "[::1]:8080");
        let only = m.report(at(0), Some("uid 2000"), 10, at(600));
        assert_eq!(only["agents"].as_array().unwrap().len(), 1);
        assert_eq!(only["agents"][0]["sent_bytes"], 50);
    }

    #[test]
    fn old_buckets_are_dropped_and_the_report_says_so() {
        let mut m = BandwidthMeter::new(at(0));
        m.observe(&[(1, flow(10, 1000, 443, 100, 0))], at(0), claude);
        let later = RETENTION_MINUTES * 60 + 120;
        m.observe(&[(1, flow(10, 1000, 443, 150, 0))], at(later), claude);
        let r = m.report(at(0), None, 10, at(later));
        assert_eq!(r["agents"][0]["sent_bytes"], 50);
        assert_ne!(r["counted_since"], rfc3339(at(0)));
        assert_eq!(m.entries, 1);
    }
}
