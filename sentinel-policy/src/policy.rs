//! Policy files: parsing the TOML directory into a [`Policy`] of compiled
//! rules, the lockdown health allow-list and the circuit-breaker settings.
//!
//! Every mistake is reported with the file, line and column of the value
//! at fault, and nothing half-loaded ever reaches the engine.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

use crate::action::Object;
use crate::action::{Decision, Kind};
use crate::breaker::BreakerConfig;
use crate::error::PolicyError;
use crate::identity::IdentityFiles;
use crate::pattern::{kernel_paths, KernelPath, NameGlobs, PathGlobs, PathIndex};
use crate::playbook::{Playbook, RawPlaybook};
use crate::rate::RateLimit;
use crate::rule::{default_risk, Matcher, Rule, Subject};
use crate::schedule::{parse_clock, parse_days, Schedule};
use crate::sudo::{GateRule, SudoGate};

/// Priority of a rule without a `priority` key.
pub const DEFAULT_PRIORITY: i64 = 100;

/// Names the engine uses for its own steps; rules may not take them.
pub const STEP_NAMES: &[&str] = &[
    "quarantine",
    "lockdown",
    "mode-default",
    "rate-limit",
    "circuit-breaker",
    "anomaly",
];

/// The policy files shipped in `policies/`, embedded in the binary.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "00-sentinel-self.toml",
        include_str!("../../policies/00-sentinel-self.toml"),
    ),
    (
        "10-credentials.toml",
        include_str!("../../policies/10-credentials.toml"),
    ),
    (
        "20-persistence.toml",
        include_str!("../../policies/20-persistence.toml"),
    ),
    (
        "30-execution.toml",
        include_str!("../../policies/30-execution.toml"),
    ),
    ("40-mcp.toml", include_str!("../../policies/40-mcp.toml")),
    (
        "50-agent-guards.toml",
        include_str!("../../policies/50-agent-guards.toml"),
    ),
    (
        "90-lockdown.toml",
        include_str!("../../policies/90-lockdown.toml"),
    ),
];

/// A loaded policy: rules in evaluation order plus the engine settings the
/// files carry.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    rules: Vec<Rule>,
    files: Vec<String>,
    lockdown: LockdownAllow,
    breaker: BreakerConfig,
    mcp: McpSettings,
    identity: IdentityFiles,
    sudo: SudoGate,
    playbooks: Vec<Playbook>,
    /// All exec rules' `binary` globs and all open rules' `path` globs,
    /// indexed by rule position (see [`Policy::path_hits`]).
    exec_index: Option<PathIndex>,
    open_index: Option<PathIndex>,
}

/// `[lockdown]`: what a watched agent may still do in lockdown. Paths must
/// be kernel-expressible (exact, `dir/**` or a trailing `*`) so the kernel
/// and userspace allow exactly the same things. Opens on the list are
/// allowed for reading only.
///
/// ```toml
/// [lockdown]
/// exec = ["/usr/local/bin/sentinel"]        # the agent's MCP proxy
/// open = ["/etc/ld.so.cache", "/usr/lib/**"] # read-only
/// connect = ["127.0.0.1/32"]
/// tools = ["monitoring:health"]             # exact SERVER:TOOL pairs
/// ```
///
/// MCP tools are named by the server that offers them, so a bare tool name
/// (or a glob such as `*status*`) would let any server put any tool on the
/// list by naming it `wipe_status`. Entries are exact `SERVER:TOOL` pairs.
#[derive(Debug, Clone, Default)]
pub struct LockdownAllow {
    pub exec: Vec<KernelPath>,
    pub open: Vec<KernelPath>,
    pub connect: Vec<IpNet>,
    pub tools: Vec<String>,
}

/// What to do when the MCP scanner finds a secret or an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingAction {
    /// Replace the finding and forward the rest.
    Redact,
    /// Replace the whole message with an error.
    Block,
    /// Forward, annotated with what was found (and alert); nothing is
    /// destroyed.
    #[serde(alias = "alert")]
    Flag,
}

/// `pin`: how a server seen for the first time is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PinMode {
    /// Trust on first use: the first complete tool list is pinned.
    #[default]
    Tofu,
    /// Every tool (and the instructions) of a new server waits for
    /// `sentinel approve`.
    Review,
}

/// `approver`: who may answer an MCP `ask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Approver {
    /// Only the operator, with `sentinel approve ask-…`.
    #[default]
    Operator,
    /// The agent's own MCP client may approve through elicitation.
    Client,
}

/// `unknown_methods`: JSON-RPC methods that are not MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnknownMethods {
    /// Answered with -32601 (notifications dropped), and recorded.
    #[default]
    Refuse,
    /// Forwarded, and recorded.
    Forward,
}

/// `[mcp]`: the MCP proxy's settings.
///
/// ```toml
/// [mcp]
/// pin = "tofu"              # or "review"
/// approver = "operator"     # or "client"
/// unknown_methods = "refuse" # or "forward"
/// secrets = "redact"        # redact | block | flag
/// injection = "flag"        # redact | block | flag
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct McpSettings {
    pub pin: PinMode,
    pub approver: Approver,
    pub unknown_methods: UnknownMethods,
    pub secrets: FindingAction,
    pub injection: FindingAction,
}

impl Default for McpSettings {
    fn default() -> Self {
        Self {
            pin: PinMode::Tofu,
            approver: Approver::Operator,
            unknown_methods: UnknownMethods::Refuse,
            secrets: FindingAction::Redact,
            injection: FindingAction::Flag,
        }
    }
}

impl LockdownAllow {
    pub fn allows_exec(&self, binary: &str) -> bool {
        kernel_list_matches(&self.exec, binary)
    }

    pub fn allows_open(&self, path: &str, write: bool) -> bool {
        !write && kernel_list_matches(&self.open, path)
    }

    pub fn allows_connect(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.connect.iter().any(|net| net.contains(&addr))
    }

    /// Whether `server:tool` is on the list (exact match of both).
    pub fn allows_tool(&self, server: &str, tool: &str) -> bool {
        self.tools.iter().any(|entry| {
            entry
                .split_once(':')
                .is_some_and(|(s, t)| s == server && t == tool)
        })
    }
}

fn kernel_list_matches(list: &[KernelPath], path: &str) -> bool {
    list.iter().any(|entry| {
        if entry.prefix {
            path.starts_with(&entry.path)
        } else {
            path == entry.path
        }
    })
}

impl Policy {
    /// Loads every `*.toml` file in `dir` (not recursive), in file-name
    /// order.
    pub fn load_dir(dir: &Path) -> Result<Policy, PolicyError> {
        Policy::from_sources(&Policy::sources_in(dir)?)
    }

    /// The `*.toml` files in `dir` (not recursive) as `(name, text)`, in
    /// file-name order: what [`Policy::load_dir`] parses.
    pub fn sources_in(dir: &Path) -> Result<Vec<(String, String)>, PolicyError> {
        let io = |source| PolicyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Io {
                path: path.clone(),
                source,
            })?;
            sources.push((path.display().to_string(), text));
        }
        Ok(sources)
    }

    /// The defaults from `policies/`, compiled into the binary.
    pub fn embedded_defaults() -> Policy {
        // The embedded files are fixed at build time and a unit test parses
        // them, so this cannot fail on user input.
        Policy::from_sources(&Policy::embedded_sources())
            .expect("embedded default policies parse (see unit test)")
    }

    /// The embedded defaults as `(name, text)`.
    pub fn embedded_sources() -> Vec<(String, String)> {
        EMBEDDED
            .iter()
            .map(|(name, text)| (format!("policies/{name}"), text.to_string()))
            .collect()
    }

    /// Parses files given as `(name, text)`, in the order given.
    pub fn from_sources<N: AsRef<str>, T: AsRef<str>>(
        sources: &[(N, T)],
    ) -> Result<Policy, PolicyError> {
        let mut policy = Policy::default();
        let mut seen: HashMap<String, (String, usize, usize)> = HashMap::new();
        let mut breaker_from: Option<String> = None;
        let mut mcp_from: Option<String> = None;
        for (file_index, (name, text)) in sources.iter().enumerate() {
            let (name, text) = (name.as_ref(), text.as_ref());
            let file = FileParser { name, text };
            let raw: RawFile = toml::from_str(text).map_err(|e| file.toml_error(&e))?;
            for (position, raw_rule) in raw.rule.into_iter().enumerate() {
                let name_span = raw_rule.name.span();
                let rule = file.rule(raw_rule, file_index, position)?;
                if let Some((other, line, column)) = seen.get(&rule.name) {
                    return Err(file.error(
                        name_span,
                        format!(
                            "duplicate rule name `{}` (first defined at {other}:{line}:{column}); rule names must be unique",
                            rule.name
                        ),
                    ));
                }
                let (line, column) = crate::error::line_column(text, name_span.start);
                seen.insert(rule.name.clone(), (name.to_string(), line, column));
                policy.rules.push(rule);
            }
            if let Some(lockdown) = raw.lockdown {
                file.lockdown(lockdown, &mut policy.lockdown)?;
            }
            if let Some(breaker) = raw.circuit_breaker {
                if let Some(other) = &breaker_from {
                    return Err(file.error(
                        breaker.span(),
                        format!("[circuit_breaker] is already set in {other}; keep one"),
                    ));
                }
                policy.breaker = file.breaker(breaker)?;
                breaker_from = Some(name.to_string());
            }
            if let Some(mcp) = raw.mcp {
                if let Some(other) = &mcp_from {
                    return Err(file.error(
                        mcp.span(),
                        format!("[mcp] is already set in {other}; keep one"),
                    ));
                }
                policy.mcp = mcp.into_inner().settings();
                mcp_from = Some(name.to_string());
            }
            if let Some(identity) = raw.identity {
                file.identity(identity, &mut policy.identity)?;
            }
            if let Some(sudo) = raw.sudo {
                file.sudo(sudo, &mut policy.sudo)?;
            }
            for raw_playbook in raw.playbook {
                let span = raw_playbook.span();
                let playbook = raw_playbook
                    .into_inner()
                    .compile()
                    .map_err(|m| file.error(span.clone(), m))?;
                if policy.playbooks.iter().any(|p| p.name == playbook.name) {
                    return Err(
                        file.error(span, format!("duplicate playbook name `{}`", playbook.name))
                    );
                }
                policy.playbooks.push(playbook);
            }
            policy.files.push(name.to_string());
        }
        // The agent guards become ordinary rules, ahead of the files' own.
        let guards = [
            policy.identity.protected_rule(sources.len()),
            policy.sudo.gate_rule(sources.len()),
        ];
        for rule in guards.into_iter().flatten() {
            if let Some((other, line, column)) = seen.get(&rule.name) {
                return Err(PolicyError::Invalid {
                    file: other.clone(),
                    line: *line,
                    column: *column,
                    message: format!(
                        "rule name `{}` is reserved for the {} section; rename the rule",
                        rule.name, rule.file
                    ),
                });
            }
            policy.rules.push(rule);
        }
        // Stable: ties keep file order, then position in the file.
        policy.rules.sort_by_key(|rule| rule.priority);
        let globs_of = |kind: Kind| {
            let rules = &policy.rules;
            PathIndex::build(rules.iter().enumerate().filter_map(move |(index, rule)| {
                match (&rule.matcher, kind) {
                    (
                        Matcher::Exec {
                            binary: Some(g), ..
                        },
                        Kind::Exec,
                    ) => Some((index, g)),
                    (Matcher::Open { path: Some(g), .. }, Kind::Open) => Some((index, g)),
                    _ => None,
                }
            }))
        };
        policy.exec_index = globs_of(Kind::Exec);
        policy.open_index = globs_of(Kind::Open);
        Ok(policy)
    }

    /// For exec and open actions: the positions (in [`Policy::rules`]) of
    /// the rules whose `binary`/`path` globs match the action's path, found
    /// with one lookup in a combined index. `None` for other kinds.
    pub(crate) fn path_hits(&self, subject: &Subject<'_>) -> Option<Vec<usize>> {
        let index = match subject.action.object {
            Object::Exec { .. } => self.exec_index.as_ref()?,
            Object::Open { .. } => self.open_index.as_ref()?,
            _ => return None,
        };
        Some(index.hits(subject.path()?))
    }

    /// Rules in evaluation order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The files the policy came from, in load order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    pub fn lockdown(&self) -> &LockdownAllow {
        &self.lockdown
    }

    pub fn breaker(&self) -> BreakerConfig {
        self.breaker
    }

    /// The `[mcp]` settings (defaults when no file sets them).
    pub fn mcp(&self) -> McpSettings {
        self.mcp
    }

    /// `[identity]`: the protected and watched identity files.
    pub fn identity(&self) -> &IdentityFiles {
        &self.identity
    }

    /// `[sudo]`: the sudo gate.
    pub fn sudo(&self) -> &SudoGate {
        &self.sudo
    }

    /// `[[playbook]]`: responses to alerts, in file order.
    pub fn playbooks(&self) -> &[Playbook] {
        &self.playbooks
    }
}

/// Parsing context for one file: its name and text, to locate errors.
struct FileParser<'a> {
    name: &'a str,
    text: &'a str,
}

impl FileParser<'_> {
    fn error(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        PolicyError::at(self.name, self.text, span.start, message)
    }

    fn toml_error(&self, error: &toml::de::Error) -> PolicyError {
        let offset = error.span().map_or(0, |span| span.start);
        let message = error.message().trim_end().replace('\n', " ");
        PolicyError::at(self.name, self.text, offset, message)
    }

    fn rule(&self, raw: RawRule, file_index: usize, position: usize) -> Result<Rule, PolicyError> {
        let name = raw.name.get_ref().trim().to_string();
        if name.is_empty() {
            return Err(self.error(raw.name.span(), "rule name is empty; give the rule a name"));
        }
        if STEP_NAMES.contains(&name.as_str()) {
            return Err(self.error(
                raw.name.span(),
                format!("rule name `{name}` is reserved for an engine step; rename the rule"),
            ));
        }
        let kind = *raw.kind.get_ref();
        let action = *raw.action.get_ref();
        // Keys that belong to another kind are mistakes, not silent no-ops.
        let foreign = |key: &str, span: Option<Range<usize>>| -> Result<(), PolicyError> {
            match span {
                Some(span) => Err(self.error(
                    span,
                    format!(
                        "key `{key}` does not apply to kind = \"{}\"",
                        kind_name(kind)
                    ),
                )),
                None => Ok(()),
            }
        };
        let matcher = match kind {
            Kind::Exec => {
                foreign("path", raw.path.as_ref().map(|v| v.span()))?;
                foreign("write", raw.write.as_ref().map(|v| v.span()))?;
                foreign("addr", raw.addr.as_ref().map(|v| v.span()))?;
                foreign("port", raw.port.as_ref().map(|v| v.span()))?;
                foreign("tool", raw.tool.as_ref().map(|v| v.span()))?;
                foreign("server", raw.server.as_ref().map(|v| v.span()))?;
                Matcher::Exec {
                    binary: self.path_globs(raw.binary)?,
                    args: self.regex(raw.args)?,
                }
            }
            Kind::Open => {
                foreign("binary", raw.binary.as_ref().map(|v| v.span()))?;
                foreign("args", raw.args.as_ref().map(|v| v.span()))?;
                foreign("addr", raw.addr.as_ref().map(|v| v.span()))?;
                foreign("port", raw.port.as_ref().map(|v| v.span()))?;
                foreign("tool", raw.tool.as_ref().map(|v| v.span()))?;
                foreign("server", raw.server.as_ref().map(|v| v.span()))?;
                Matcher::Open {
                    path: self.path_globs(raw.path)?,
                    write: raw.write.map(|w| *w.get_ref()),
                }
            }
            Kind::Connect => {
                foreign("binary", raw.binary.as_ref().map(|v| v.span()))?;
                foreign("args", raw.args.as_ref().map(|v| v.span()))?;
                foreign("path", raw.path.as_ref().map(|v| v.span()))?;
                foreign("write", raw.write.as_ref().map(|v| v.span()))?;
                foreign("tool", raw.tool.as_ref().map(|v| v.span()))?;
                foreign("server", raw.server.as_ref().map(|v| v.span()))?;
                Matcher::Connect {
                    addr: raw.addr.map(|a| self.nets(a)).transpose()?,
                    ports: raw.port.map(|p| p.into_inner().0),
                }
            }
            Kind::Mcp => {
                foreign("binary", raw.binary.as_ref().map(|v| v.span()))?;
                foreign("path", raw.path.as_ref().map(|v| v.span()))?;
                foreign("write", raw.write.as_ref().map(|v| v.span()))?;
                foreign("addr", raw.addr.as_ref().map(|v| v.span()))?;
                foreign("port", raw.port.as_ref().map(|v| v.span()))?;
                Matcher::Mcp {
                    tool: self.name_globs(raw.tool)?,
                    server: self.name_globs(raw.server)?,
                    args: self.regex(raw.args)?,
                }
            }
        };
        let risk = match raw.risk {
            None => default_risk(action),
            Some(risk) => match u8::try_from(*risk.get_ref()) {
                Ok(value) if value <= 100 => value,
                _ => return Err(self.error(risk.span(), "risk must be between 0 and 100")),
            },
        };
        Ok(Rule {
            name,
            priority: raw.priority.unwrap_or(DEFAULT_PRIORITY),
            action,
            kind,
            enabled: raw.enabled.unwrap_or(true),
            risk,
            reason: raw.reason,
            file: self.name.to_string(),
            file_index,
            position,
            matcher,
            agent: self.name_globs(raw.agent)?,
            rate_limit: raw.rate_limit.map(|r| self.rate_limit(r)).transpose()?,
            schedule: raw.schedule.map(|s| self.schedule(s)).transpose()?,
        })
    }

    fn path_globs(&self, raw: Option<Spanned<StrList>>) -> Result<Option<PathGlobs>, PolicyError> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let list = raw.into_inner().0;
        if list.is_empty() {
            return Err(self.error(span, "empty pattern list; remove the key to match anything"));
        }
        PathGlobs::new(&list)
            .map(Some)
            .map_err(|e| self.error(span, e.message))
    }

    fn name_globs(&self, raw: Option<Spanned<StrList>>) -> Result<Option<NameGlobs>, PolicyError> {
        let Some(raw) = raw else { return Ok(None) };
        let span = raw.span();
        let list = raw.into_inner().0;
        if list.is_empty() {
            return Err(self.error(span, "empty pattern list; remove the key to match anything"));
        }
        NameGlobs::new(&list)
            .map(Some)
            .map_err(|e| self.error(span, format!("`{}`: {}", list[e.index], e.message)))
    }

    fn regex(&self, raw: Option<Spanned<String>>) -> Result<Option<Regex>, PolicyError> {
        let Some(raw) = raw else { return Ok(None) };
        Regex::new(raw.get_ref()).map(Some).map_err(|e| {
            let detail = e.to_string().replace('\n', " ");
            self.error(raw.span(), format!("invalid regex: {detail}"))
        })
    }

    fn nets(&self, raw: Spanned<StrList>) -> Result<Vec<IpNet>, PolicyError> {
        let span = raw.span();
        raw.into_inner()
            .0
            .iter()
            .map(|text| {
                parse_net(text).ok_or_else(|| {
                    self.error(
                        span.clone(),
                        format!("`{text}` is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1)"),
                    )
                })
            })
            .collect()
    }

    fn rate_limit(&self, raw: Spanned<RawRateLimit>) -> Result<RateLimit, PolicyError> {
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.max == 0 || raw.per_seconds == 0 {
            return Err(self.error(
                span,
                "rate_limit needs max >= 1 and per_seconds >= 1 (use action = \"deny\" to forbid)",
            ));
        }
        Ok(RateLimit {
            max: raw.max,
            per: Duration::from_secs(raw.per_seconds),
        })
    }

    fn schedule(&self, raw: Spanned<RawSchedule>) -> Result<Schedule, PolicyError> {
        let raw = raw.into_inner();
        let clock = |text: &Spanned<String>| {
            parse_clock(text.get_ref()).ok_or_else(|| {
                self.error(
                    text.span(),
                    format!("`{}` is not a 24-hour time HH:MM", text.get_ref()),
                )
            })
        };
        let mut days = Vec::new();
        for day in raw.days.unwrap_or_default() {
            let parsed = parse_days(day.get_ref()).ok_or_else(|| {
                self.error(
                    day.span(),
                    format!(
                        "`{}` is not a day (mon..sun, weekdays, weekends)",
                        day.get_ref()
                    ),
                )
            })?;
            days.extend(parsed);
        }
        let tz = match &raw.tz {
            None => chrono_tz::UTC,
            Some(tz) => tz.get_ref().parse().map_err(|_| {
                self.error(
                    tz.span(),
                    format!(
                        "unknown time zone `{}`; use an IANA name such as Europe/Paris",
                        tz.get_ref()
                    ),
                )
            })?,
        };
        Ok(Schedule {
            days,
            start: clock(&raw.start)?,
            end: clock(&raw.end)?,
            tz,
        })
    }

    fn lockdown(&self, raw: RawLockdown, into: &mut LockdownAllow) -> Result<(), PolicyError> {
        for (list, target) in [(raw.exec, &mut into.exec), (raw.open, &mut into.open)] {
            for entry in list.unwrap_or_default() {
                let forms = kernel_paths(entry.get_ref()).ok_or_else(|| {
                    self.error(
                        entry.span(),
                        format!(
                            "lockdown entry `{}` must be an absolute path, `dir/**` or end in `*` so the kernel can enforce it too",
                            entry.get_ref()
                        ),
                    )
                })?;
                target.extend(forms);
            }
        }
        if let Some(connect) = raw.connect {
            into.connect.extend(self.nets(connect)?);
        }
        if let Some(tools) = raw.tools {
            let span = tools.span();
            for entry in tools.into_inner().0 {
                let exact = entry.split_once(':').is_some_and(|(server, tool)| {
                    !server.is_empty() && !tool.is_empty() && !entry.contains(['*', '?', '[', '{'])
                });
                if !exact {
                    return Err(self.error(
                        span,
                        format!(
                            "lockdown tool `{entry}` must be an exact SERVER:TOOL pair (no globs): a server names its own tools, so a bare or wildcard name would let it put any tool on the list"
                        ),
                    ));
                }
                into.tools.push(entry);
            }
        }
        Ok(())
    }

    fn identity(&self, raw: RawIdentity, into: &mut IdentityFiles) -> Result<(), PolicyError> {
        for (list, target) in [
            (raw.protected, &mut into.protected),
            (raw.watched, &mut into.watched),
        ] {
            for entry in list.unwrap_or_default() {
                crate::identity::check_pattern(entry.get_ref())
                    .map_err(|m| self.error(entry.span(), m))?;
                target.push(entry.into_inner());
            }
        }
        Ok(())
    }

    fn sudo(&self, raw: Spanned<RawSudo>, into: &mut SudoGate) -> Result<(), PolicyError> {
        let span = raw.span();
        let raw = raw.into_inner();
        if into.configured && (raw.elevators.is_some() || raw.unmatched.is_some()) {
            return Err(self.error(
                span,
                "[sudo] elevators/unmatched are already set in another file; keep one (rules may come from several files)",
            ));
        }
        into.configured = true;
        if let Some(elevators) = raw.elevators {
            for e in &elevators {
                if !e.starts_with('/') || e.contains(['*', '?', '[', '{']) {
                    return Err(self.error(
                        span.clone(),
                        format!("[sudo] elevator `{e}` must be an exact absolute path (the kernel holds its exec)"),
                    ));
                }
            }
            into.elevators = elevators;
        }
        if let Some(unmatched) = raw.unmatched {
            into.unmatched = *unmatched.get_ref();
            if into.unmatched == Decision::LogOnly {
                return Err(self.error(
                    unmatched.span(),
                    "[sudo] unmatched takes allow, ask or deny",
                ));
            }
        }
        for rule in raw.rule {
            let name = rule.name.get_ref().trim().to_string();
            if name.is_empty() || into.rules.iter().any(|r| r.name == name) {
                return Err(self.error(
                    rule.name.span(),
                    format!("[[sudo.rule]] name `{name}` is empty or used twice"),
                ));
            }
            let action = *rule.action.get_ref();
            if action == Decision::LogOnly {
                return Err(self.error(
                    rule.action.span(),
                    "[[sudo.rule]] action takes allow, ask or deny",
                ));
            }
            let command = self
                .name_globs(Some(rule.command))?
                .ok_or_else(|| self.error(span.clone(), "[[sudo.rule]] needs `command`"))?;
            let risk = match rule.risk {
                None => crate::rule::default_risk(action),
                Some(r) => u8::try_from(*r.get_ref())
                    .ok()
                    .filter(|r| *r <= 100)
                    .ok_or_else(|| self.error(r.span(), "risk must be between 0 and 100"))?,
            };
            into.rules.push(GateRule {
                name,
                action,
                command,
                args: self.regex(rule.args)?,
                risk,
                reason: rule.reason,
            });
        }
        Ok(())
    }

    fn breaker(&self, raw: Spanned<RawBreaker>) -> Result<BreakerConfig, PolicyError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let defaults = BreakerConfig::default();
        let config = BreakerConfig {
            failures: raw.failures.unwrap_or(defaults.failures),
            cooldown: raw
                .cooldown_seconds
                .map_or(defaults.cooldown, Duration::from_secs),
        };
        if config.failures == 0 || config.cooldown.is_zero() {
            return Err(self.error(
                span,
                "circuit_breaker needs failures >= 1 and cooldown_seconds >= 1",
            ));
        }
        Ok(config)
    }
}

pub(crate) fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Exec => "exec",
        Kind::Open => "open",
        Kind::Connect => "connect",
        Kind::Mcp => "mcp",
    }
}

/// An IP address (as a host route) or a CIDR.
pub fn parse_net(text: &str) -> Option<IpNet> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Some(net.trunc());
    }
    text.parse::<IpAddr>().ok().map(IpNet::from)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
    lockdown: Option<RawLockdown>,
    circuit_breaker: Option<Spanned<RawBreaker>>,
    mcp: Option<Spanned<RawMcp>>,
    identity: Option<RawIdentity>,
    sudo: Option<Spanned<RawSudo>>,
    #[serde(default)]
    playbook: Vec<Spanned<RawPlaybook>>,
}

#[derive(Deserialize)]
#[serde(transparent)]
struct RawMcp(#[serde(with = "strict_mcp")] McpSettings);

impl RawMcp {
    fn settings(self) -> McpSettings {
        self.0
    }
}

/// `[mcp]` with unknown keys refused (`McpSettings` itself stays lenient on
/// the wire between proxy and daemon).
mod strict_mcp {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Strict {
        pin: Option<PinMode>,
        approver: Option<Approver>,
        unknown_methods: Option<UnknownMethods>,
        secrets: Option<FindingAction>,
        injection: Option<FindingAction>,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<McpSettings, D::Error> {
        let raw = Strict::deserialize(d)?;
        let defaults = McpSettings::default();
        Ok(McpSettings {
            pin: raw.pin.unwrap_or(defaults.pin),
            approver: raw.approver.unwrap_or(defaults.approver),
            unknown_methods: raw.unknown_methods.unwrap_or(defaults.unknown_methods),
            secrets: raw.secrets.unwrap_or(defaults.secrets),
            injection: raw.injection.unwrap_or(defaults.injection),
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    protected: Option<Vec<Spanned<String>>>,
    watched: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSudo {
    elevators: Option<Vec<String>>,
    unmatched: Option<Spanned<Decision>>,
    #[serde(default)]
    rule: Vec<RawGateRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateRule {
    name: Spanned<String>,
    action: Spanned<Decision>,
    command: Spanned<StrList>,
    args: Option<Spanned<String>>,
    risk: Option<Spanned<i64>>,
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    priority: Option<i64>,
    action: Spanned<Decision>,
    kind: Spanned<Kind>,
    enabled: Option<bool>,
    risk: Option<Spanned<i64>>,
    reason: Option<String>,
    binary: Option<Spanned<StrList>>,
    args: Option<Spanned<String>>,
    path: Option<Spanned<StrList>>,
    write: Option<Spanned<bool>>,
    addr: Option<Spanned<StrList>>,
    port: Option<Spanned<PortRange>>,
    tool: Option<Spanned<StrList>>,
    server: Option<Spanned<StrList>>,
    agent: Option<Spanned<StrList>>,
    rate_limit: Option<Spanned<RawRateLimit>>,
    schedule: Option<Spanned<RawSchedule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    max: u32,
    per_seconds: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    days: Option<Vec<Spanned<String>>>,
    start: Spanned<String>,
    end: Spanned<String>,
    tz: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLockdown {
    exec: Option<Vec<Spanned<String>>>,
    open: Option<Vec<Spanned<String>>>,
    connect: Option<Spanned<StrList>>,
    tools: Option<Spanned<StrList>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    failures: Option<u32>,
    cooldown_seconds: Option<u64>,
}

/// A string or a list of strings.
pub(crate) struct StrList(pub(crate) Vec<String>);

pub(crate) type StrListPub = StrList;

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<StrList, E> {
                Ok(StrList(vec![value.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<String>()? {
                    items.push(item);
                }
                Ok(StrList(items))
            }
        }
        deserializer.deserialize_any(ListVisitor)
    }
}

/// `port = 443` or `port = "8000-8999"`.
struct PortRange((u16, u16));

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl<'de> Visitor<'de> for PortVisitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number 0-65535 or a range \"lo-hi\"")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<PortRange, E> {
                let port = u16::try_from(value)
                    .map_err(|_| E::custom(format!("port {value} is out of range 0-65535")))?;
                Ok(PortRange((port, port)))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<PortRange, E> {
                self.visit_i64(i64::try_from(value).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<PortRange, E> {
                let bad = || {
                    E::custom(format!(
                        "`{value}` is not a port or a range \"lo-hi\" with lo <= hi"
                    ))
                };
                let (lo, hi) = value.split_once('-').unwrap_or((value, value));
                let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
                let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
                if lo > hi {
                    return Err(bad());
                }
                Ok(PortRange((lo, hi)))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse() {
        let policy = Policy::embedded_defaults();
        assert!(policy.rules().len() >= 20, "{}", policy.rules().len());
        assert_eq!(policy.files().len(), EMBEDDED.len());
        assert!(policy.lockdown().allows_exec("/usr/local/bin/sentinel"));
        assert!(!policy.lockdown().allows_tool("any", "wipe_status"));
        assert_eq!(policy.breaker().failures, 5);
        // Evaluation order: priorities ascending.
        let priorities: Vec<i64> = policy.rules().iter().map(|r| r.priority).collect();
        let mut sorted = priorities.clone();
        sorted.sort();
        assert_eq!(priorities, sorted);
    }

    /// The combined path index gives the same answer as matching each
    /// rule's globs on its own.
    #[test]
    fn path_index_agrees_with_rule_by_rule_matching() {
        use crate::action::Action;
        use std::path::Path;
        let policy = Policy::embedded_defaults();
        let home = Path::new("/home/agent");
        let paths = [
            "/etc/shadow",
            "/etc/passwd",
            "/home/agent/.ssh/id_rsa",
            "/home/agent/.ssh/id_rsa.pub",
            "/home/agent/.ssh/x.pem",
            "/home/agent/.bashrc",
            "/home/agent/.config/systemd/user/a.service",
            "/home/other/.bashrc",
            "/var/lib/sentinel/sentinel.db",
            "/etc/cron.d/x",
            "/usr/bin/ngrok",
            "/tmp/chisel",
            "/bin/sh",
            "/usr/sbin/bpftool",
            "/usr/bin/pkill",
            "/",
        ];
        for path in paths {
            for object in [
                Object::Open {
                    path: path.into(),
                    write: true,
                },
                Object::Exec {
                    binary: path.into(),
                    argv: vec![],
                },
            ] {
                let action = Action {
                    agent: None,
                    uid: 1001,
                    pid: 1,
                    object,
                };
                let subject = Subject::new(&action, Some(home));
                let hits = policy.path_hits(&subject).unwrap_or_default();
                for (index, rule) in policy.rules().iter().enumerate() {
                    let globs = match &rule.matcher {
                        Matcher::Exec {
                            binary: Some(g), ..
                        } if rule.kind == action.kind() => g,
                        Matcher::Open { path: Some(g), .. } if rule.kind == action.kind() => g,
                        _ => continue,
                    };
                    assert_eq!(
                        hits.contains(&index),
                        globs.is_match(path, Some(home)),
                        "{path} {}",
                        rule.name
                    );
                }
            }
        }
    }

    #[test]
    fn mcp_settings_and_exact_lockdown_tools() {
        let policy = Policy::from_sources(&[(
            "a.toml",
            "[mcp]\npin = \"review\"\napprover = \"client\"\ninjection = \"block\"\n[lockdown]\ntools = [\"mon:health\"]\n",
        )])
        .unwrap();
        let mcp = policy.mcp();
        assert_eq!(mcp.pin, PinMode::Review);
        assert_eq!(mcp.approver, Approver::Client);
        assert_eq!(mcp.injection, FindingAction::Block);
        assert_eq!(mcp.secrets, FindingAction::Redact);
        assert!(policy.lockdown().allows_tool("mon", "health"));
        assert!(!policy.lockdown().allows_tool("other", "health"));
        assert_eq!(Policy::embedded_defaults().mcp(), McpSettings::default());
        for bad in [
            "[mcp]\npinn = \"tofu\"\n",
            "[mcp]\npin = \"never\"\n",
            "[lockdown]\ntools = [\"*status*\"]\n",
            "[lockdown]\ntools = [\"health\"]\n",
            "[lockdown]\ntools = [\"s:*\"]\n",
        ] {
            assert!(Policy::from_sources(&[("b.toml", bad)]).is_err(), "{bad}");
        }
    }
}
