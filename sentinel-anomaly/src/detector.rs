//! Behaviour detection on the event stream: single-event rules (see
//! [`crate::rules`]) plus sequences over a time window per process
//! tree, and the link between an MCP tool call and the kernel events its
//! server caused while the call was in flight.
//!
//! Sequences:
//! - a credential file read, then an outbound connect from the same process
//!   tree within `exfil_window` → critical exfiltration;
//! - a download (curl/wget) and, within `pipe_window`, a sibling shell that
//!   reads its program from stdin → critical "download piped into a shell";
//! - a change of user (sudo/su/pkexec, or a process that gained root) then a
//!   write under /etc from the same tree within `escalation_window` →
//!   critical privilege escalation;
//! - `recon_burst` distinct discovery commands in one tree within
//!   `recon_window` → warning reconnaissance.
//!
//! Feed every event in order with [`Detector::observe`]; `now` is the
//! caller's clock, so replays are deterministic.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use sentinel_audit::{Body, Event, ProcessInfo};

use crate::alerts::{NewAlert, Severity};
pub use crate::rules::Category;
use crate::rules::{self, Finding};
use crate::tree::ProcessTree;

/// Facts remembered for sequence rules, most recent last.
const MAX_MARKS: usize = 4096;
/// Tool names remembered per MCP call seq.
const MAX_CALL_NAMES: usize = 4096;

/// Windows and limits of the sequence rules.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// Secret read → connect (default 30 s).
    pub exfil_window: Duration,
    /// Download → shell reading stdin (default 5 s).
    pub pipe_window: Duration,
    /// Change of user → write under /etc (default 120 s).
    pub escalation_window: Duration,
    /// Window for discovery bursts (default 60 s).
    pub recon_window: Duration,
    /// Distinct discovery commands that make a burst (default 5).
    pub recon_burst: usize,
    /// Two processes are in the same tree when they share an ancestor at
    /// most this many generations above each (default 2: same process,
    /// parent/child, siblings, cousins).
    pub tree_generations: usize,
    /// Processes remembered (default 32768).
    pub max_processes: usize,
    /// An MCP call still "in flight" after this is forgotten (default 10 min).
    pub max_call_duration: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            exfil_window: Duration::from_secs(30),
            pipe_window: Duration::from_secs(5),
            escalation_window: Duration::from_secs(120),
            recon_window: Duration::from_secs(60),
            recon_burst: 5,
            tree_generations: 2,
            max_processes: 32_768,
            max_call_duration: Duration::from_secs(600),
        }
    }
}

/// One thing the detector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detection {
    /// The rule's name (`secret-then-connect`, `secret-access`, …).
    pub rule: &'static str,
    pub category: Category,
    pub severity: Severity,
    pub reason: String,
    /// `seq` of the events involved, oldest first (and the MCP call's seq
    /// when the events happened inside one).
    pub related: Vec<u64>,
    pub pid: u32,
    pub agent: Option<String>,
    /// The MCP call in flight whose server tree caused the event.
    pub call: Option<u64>,
}

impl Detection {
    /// The alert for this detection; the source (for dedup and rate limits)
    /// is the rule and the agent (or uid).
    pub fn to_alert(&self) -> NewAlert {
        NewAlert {
            severity: self.severity,
            category: self.category.as_str().to_owned(),
            reason: self.reason.clone(),
            related: self.related.clone(),
            source: format!(
                "detector:{}:{}",
                self.rule,
                self.agent.as_deref().unwrap_or("unknown-agent")
            ),
        }
    }
}

/// An event linked to the MCP call in flight that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLink {
    pub call_seq: u64,
    pub tool: Option<String>,
    /// `tools/call read_file → openat(/home/agent/.ssh/id_ed25519)`.
    pub summary: String,
}

/// What the detector made of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    pub detections: Vec<Detection>,
    pub link: Option<CallLink>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MarkKind {
    SecretRead { path: String },
    Download,
    Escalation { how: String },
    Recon { program: String },
}

#[derive(Debug, Clone)]
struct Mark {
    kind: MarkKind,
    seq: u64,
    pid: u32,
    at: SystemTime,
    /// Set once a sequence rule fired on it, so one read raises one alert.
    used: bool,
}

#[derive(Debug, Clone)]
struct InFlight {
    server_pid: u32,
    started: SystemTime,
}

/// The behaviour detector; feed it every event in order.
pub struct Detector {
    config: DetectorConfig,
    tree: ProcessTree,
    marks: VecDeque<Mark>,
    calls: HashMap<u64, InFlight>,
    call_tools: HashMap<u64, String>,
}

impl Detector {
    pub fn new(config: DetectorConfig) -> Self {
        Detector {
            tree: ProcessTree::new(config.max_processes),
            config,
            marks: VecDeque::new(),
            calls: HashMap::new(),
            call_tools: HashMap::new(),
        }
    }

    /// A `tools/call` (recorded as event `call_seq`) was forwarded to the
    /// MCP server process `server_pid`: kernel events from its process tree
    /// are linked to the call until [`call_finished`](Self::call_finished).
    pub fn call_started(&mut self, call_seq: u64, server_pid: u32, now: SystemTime) {
        self.calls.insert(
            call_seq,
            InFlight {
                server_pid,
                started: now,
            },
        );
    }

    /// The call's response came back (or it failed).
    pub fn call_finished(&mut self, call_seq: u64) {
        self.calls.remove(&call_seq);
        self.call_tools.remove(&call_seq);
    }

    /// Classifies one event; returns the detections and the MCP call link.
    pub fn observe(&mut self, event: &Event, now: SystemTime) -> Observation {
        self.expire(now);
        if let Body::McpCall { tool, .. } = &event.body {
            if self.call_tools.len() >= MAX_CALL_NAMES {
                // Keep the names of calls in flight; forget the rest.
                let calls = &self.calls;
                self.call_tools.retain(|seq, _| calls.contains_key(seq));
                if self.call_tools.len() >= MAX_CALL_NAMES {
                    self.call_tools.clear();
                }
            }
            self.call_tools.insert(event.seq, tool.clone());
            return Observation::default();
        }
        if let Body::Lost { count } = &event.body {
            let detection = Detection {
                rule: "sensor-overflow",
                category: Category::DefenseEvasion,
                severity: Severity::Warning,
                reason: format!(
                    "the kernel dropped {count} events (ring buffer full): the sensor was blind for a moment, possibly flooded on purpose"
                ),
                related: vec![event.seq],
                pid: 0,
                agent: None,
                call: None,
            };
            return Observation {
                detections: vec![detection],
                link: None,
            };
        }
        let Some(process) = event.process() else {
            return Observation::default();
        };
        let previous_uid = self.tree.uid(process.pid);
        let parent_uid = self.tree.uid(process.ppid);
        self.tree.update(process, now);

        let link = self.link(event, process);
        let mut findings: Vec<(Finding, Vec<u64>)> = Vec::new();
        match &event.body {
            Body::Exec { argv, .. } => self.exec(
                event.seq,
                process,
                argv,
                previous_uid.or(parent_uid),
                now,
                &mut findings,
            ),
            Body::Open { path, flags, .. } => {
                self.open(event.seq, process, path, *flags, now, &mut findings)
            }
            Body::Connect { addr, port, .. } => {
                self.connect(event.seq, process, addr, *port, now, &mut findings)
            }
            Body::Exit { .. } => self.tree.exited(process.pid, now),
            _ => {}
        }

        let detections = findings
            .into_iter()
            .map(|(f, mut related)| {
                let mut reason = f.reason;
                if let Some(link) = &link {
                    related.push(link.call_seq);
                    reason = format!("{reason} (during {})", link.summary);
                }
                Detection {
                    rule: f.rule,
                    category: f.category,
                    severity: f.severity,
                    reason,
                    related,
                    pid: process.pid,
                    agent: process.agent.clone(),
                    call: link.as_ref().map(|l| l.call_seq),
                }
            })
            .collect();
        Observation { detections, link }
    }

    fn exec(
        &mut self,
        seq: u64,
        process: &ProcessInfo,
        argv: &[String],
        earlier_uid: Option<u32>,
        now: SystemTime,
        out: &mut Vec<(Finding, Vec<u64>)>,
    ) {
        let name = rules::program_name(&process.exe, argv).to_owned();
        let args: Vec<&str> = argv.iter().skip(1).map(String::as_str).collect();
        out.extend(
            rules::classify_exec(&process.exe, argv)
                .into_iter()
                .map(|f| (f, vec![seq])),
        );

        if rules::is_privilege_tool(&name) {
            self.mark(
                MarkKind::Escalation { how: name.clone() },
                seq,
                process.pid,
                now,
            );
        } else if process.uid == 0 && earlier_uid.is_some_and(|uid| uid != 0) {
            let from = earlier_uid.unwrap_or_default();
            out.push((
                Finding {
                    rule: "gained-root",
                    category: Category::PrivilegeEscalation,
                    severity: Severity::Warning,
                    reason: format!(
                        "{} runs as root; its process tree ran as uid {from}",
                        process.exe
                    ),
                },
                vec![seq],
            ));
            self.mark(
                MarkKind::Escalation {
                    how: format!("setuid {}", process.exe),
                },
                seq,
                process.pid,
                now,
            );
        }

        if rules::is_download(&name, &args) {
            self.mark(MarkKind::Download, seq, process.pid, now);
        } else if rules::is_stdin_interpreter(&name, &args) {
            let window = self.config.pipe_window;
            if let Some(download) = self.find_mark(now, window, |m, tree| {
                m.kind == MarkKind::Download && tree.siblings(m.pid, process.pid)
            }) {
                out.push((
                    Finding {
                        rule: "download-to-shell",
                        category: Category::Execution,
                        severity: Severity::Critical,
                        reason: format!(
                            "download piped into a shell: {name} reading stdin started next to a download (event {download})"
                        ),
                    },
                    vec![download, seq],
                ));
            }
        }

        if out.iter().any(|(f, _)| f.rule == "recon-command") {
            self.recon(seq, process.pid, name, now, out);
        }
    }

    fn open(
        &mut self,
        seq: u64,
        process: &ProcessInfo,
        path: &str,
        flags: u32,
        now: SystemTime,
        out: &mut Vec<(Finding, Vec<u64>)>,
    ) {
        let findings = rules::classify_open(process.pid, &process.exe, path, flags);
        let write = rules::is_write(flags);
        if !write && findings.iter().any(|f| f.rule == "secret-access") {
            self.mark(
                MarkKind::SecretRead {
                    path: path.to_owned(),
                },
                seq,
                process.pid,
                now,
            );
        }
        out.extend(findings.into_iter().map(|f| (f, vec![seq])));

        if write && path.starts_with("/etc/") {
            let window = self.config.escalation_window;
            let generations = self.config.tree_generations;
            // The oldest change of user in the window is the one that
            // started it (sudo, rather than the root child it spawned).
            let tree = &self.tree;
            let found = self.marks.iter().position(|m| {
                now.duration_since(m.at).map_or(true, |d| d <= window)
                    && matches!(m.kind, MarkKind::Escalation { .. })
                    && !m.used
                    && (tree.related(m.pid, process.pid, generations)
                        || tree.descends_from(process.pid, m.pid))
            });
            if let Some(index) = found {
                let mark = &mut self.marks[index];
                mark.used = true;
                let how = match &mark.kind {
                    MarkKind::Escalation { how } => how.clone(),
                    _ => String::new(),
                };
                out.push((
                    Finding {
                        rule: "escalation-then-etc-write",
                        category: Category::PrivilegeEscalation,
                        severity: Severity::Critical,
                        reason: format!(
                            "{how} (event {}) followed by a write to {path} by {}",
                            mark.seq, process.exe
                        ),
                    },
                    vec![mark.seq, seq],
                ));
            }
        }
    }

    fn connect(
        &mut self,
        seq: u64,
        process: &ProcessInfo,
        addr: &str,
        port: u16,
        now: SystemTime,
        out: &mut Vec<(Finding, Vec<u64>)>,
    ) {
        out.extend(
            rules::classify_connect(addr, port)
                .into_iter()
                .map(|f| (f, vec![seq])),
        );
        let window = self.config.exfil_window;
        let generations = self.config.tree_generations;
        let mut read_seqs = Vec::new();
        let mut paths = Vec::new();
        for mark in self.marks.iter_mut().rev() {
            if now.duration_since(mark.at).is_ok_and(|d| d > window) {
                break;
            }
            if let MarkKind::SecretRead { path } = &mark.kind {
                if !mark.used && self.tree.related(mark.pid, process.pid, generations) {
                    mark.used = true;
                    read_seqs.push(mark.seq);
                    paths.push(path.clone());
                }
            }
        }
        if !read_seqs.is_empty() {
            read_seqs.reverse();
            paths.reverse();
            let elapsed = self
                .marks
                .iter()
                .find(|m| Some(&m.seq) == read_seqs.first())
                .and_then(|m| now.duration_since(m.at).ok())
                .unwrap_or_default();
            let mut related = read_seqs;
            related.push(seq);
            out.push((
                Finding {
                    rule: "secret-then-connect",
                    category: Category::Exfiltration,
                    severity: Severity::Critical,
                    reason: format!(
                        "credential file {} read, then {} connected to {}:{} {:.1} s later from the same process tree",
                        paths.join(", "),
                        process.exe,
                        addr,
                        port,
                        elapsed.as_secs_f64()
                    ),
                },
                related,
            ));
        }
    }

    fn recon(
        &mut self,
        seq: u64,
        pid: u32,
        program: String,
        now: SystemTime,
        out: &mut Vec<(Finding, Vec<u64>)>,
    ) {
        self.mark(
            MarkKind::Recon {
                program: program.clone(),
            },
            seq,
            pid,
            now,
        );
        let window = self.config.recon_window;
        let generations = self.config.tree_generations;
        let mut programs: Vec<String> = Vec::new();
        let mut seqs = Vec::new();
        let mut indices = Vec::new();
        for (i, mark) in self.marks.iter().enumerate().rev() {
            if now.duration_since(mark.at).is_ok_and(|d| d > window) {
                break;
            }
            if let MarkKind::Recon { program } = &mark.kind {
                if !mark.used && self.tree.related(mark.pid, pid, generations) {
                    if !programs.contains(program) {
                        programs.push(program.clone());
                    }
                    seqs.push(mark.seq);
                    indices.push(i);
                }
            }
        }
        if programs.len() >= self.config.recon_burst {
            for i in indices {
                self.marks[i].used = true;
            }
            seqs.reverse();
            programs.reverse();
            out.push((
                Finding {
                    rule: "recon-burst",
                    category: Category::Reconnaissance,
                    severity: Severity::Warning,
                    reason: format!(
                        "{} discovery commands in {} s from one process tree: {}",
                        programs.len(),
                        window.as_secs(),
                        programs.join(", ")
                    ),
                },
                seqs,
            ));
        }
    }

    /// The MCP call in flight whose server tree `process` belongs to.
    fn link(&self, event: &Event, process: &ProcessInfo) -> Option<CallLink> {
        let (call_seq, _) = self
            .calls
            .iter()
            .filter(|(_, call)| self.tree.descends_from(process.pid, call.server_pid))
            .max_by_key(|(seq, call)| (call.started, **seq))?;
        let tool = self.call_tools.get(call_seq).cloned();
        let what = match &event.body {
            Body::Open { path, .. } => format!("openat({path})"),
            Body::Connect { addr, port, .. } => format!("connect({addr}:{port})"),
            Body::Exec { argv, .. } => format!("execve({})", argv.join(" ")),
            Body::Exit { .. } => format!("exit({})", process.pid),
            _ => event.kind().to_owned(),
        };
        let summary = match &tool {
            Some(tool) => format!("tools/call {tool} → {what}"),
            None => format!("tools/call #{call_seq} → {what}"),
        };
        Some(CallLink {
            call_seq: *call_seq,
            tool,
            summary,
        })
    }

    fn mark(&mut self, kind: MarkKind, seq: u64, pid: u32, at: SystemTime) {
        if self.marks.len() >= MAX_MARKS {
            self.marks.pop_front();
        }
        self.marks.push_back(Mark {
            kind,
            seq,
            pid,
            at,
            used: false,
        });
    }

    fn find_mark_index(
        &self,
        now: SystemTime,
        window: Duration,
        matches: impl Fn(&Mark, &ProcessTree) -> bool,
    ) -> Option<usize> {
        for (i, mark) in self.marks.iter().enumerate().rev() {
            if now.duration_since(mark.at).is_ok_and(|d| d > window) {
                return None;
            }
            if matches(mark, &self.tree) {
                return Some(i);
            }
        }
        None
    }

    fn find_mark(
        &self,
        now: SystemTime,
        window: Duration,
        matches: impl Fn(&Mark, &ProcessTree) -> bool,
    ) -> Option<u64> {
        self.find_mark_index(now, window, matches)
            .map(|i| self.marks[i].seq)
    }

    /// Drops marks older than every window, calls past their maximum, and
    /// exited processes no sequence can still reach.
    fn expire(&mut self, now: SystemTime) {
        let c = &self.config;
        let longest = c
            .exfil_window
            .max(c.pipe_window)
            .max(c.escalation_window)
            .max(c.recon_window);
        while let Some(front) = self.marks.front() {
            if now.duration_since(front.at).is_ok_and(|d| d > longest) {
                self.marks.pop_front();
            } else {
                break;
            }
        }
        let max_call = c.max_call_duration;
        self.calls.retain(|_, call| {
            now.duration_since(call.started)
                .map_or(true, |d| d <= max_call)
        });
        self.tree.prune(now, longest);
    }
}

impl Default for Detector {
    fn default() -> Self {
        Detector::new(DetectorConfig::default())
    }
}
