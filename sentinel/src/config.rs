//! The daemon's configuration: built-in defaults, then a TOML file
//! (`--config FILE`, default `/etc/sentinel/sentinel.toml` when present),
//! then every `*.toml` in the overlay directory `NAME.d/` beside
//! `NAME.toml` in file-name order, then the command-line flags. Every key
//! has the name of its `sentinel run` flag.
//!
//! Scalars replace what came before; a list is replaced by `key = [...]`
//! or changed with `key_add = [...]` / `key_remove = [...]` (agents are
//! removed by name). Each value remembers where it came from (`file:line`,
//! `--flag`, or `default`) for `sentinel config show`, and every error —
//! an unknown key, a wrong type, a bad value — names that place. This
//! module parses and checks; [`Settings`] is what the daemon runs with.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sentinel_anomaly::webhook::{PayloadFormat, WebhookConfig};
use sentinel_anomaly::Severity;
use sentinel_audit::{SinkOptions, SinkSpec};
use sentinel_policy::Mode;
use serde_json::json;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// The configuration file used when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG: &str = "/etc/sentinel/sentinel.toml";
pub const DEFAULT_STATE_DIR: &str = "/run/sentinel";
pub const DEFAULT_DB: &str = "/var/lib/sentinel/sentinel.db";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File { path: PathBuf, line: usize },
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// A configuration that cannot be used: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    pub origin: Origin,
    pub message: String,
}

impl ConfigError {
    fn at(origin: &Origin, message: impl Into<String>) -> Self {
        ConfigError {
            origin: origin.clone(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Str,
    Int,
    Bool,
    StrList,
    IntList,
    /// `[[agent]] name = "…" uid = N`
    Agents,
}

impl Type {
    fn describe(self) -> &'static str {
        match self {
            Type::Str => "a string",
            Type::Int => "a non-negative integer",
            Type::Bool => "true or false",
            Type::StrList => "a list of strings",
            Type::IntList => "a list of integers",
            Type::Agents => "[[agent]] tables with name and uid",
        }
    }

    fn is_list(self) -> bool {
        matches!(self, Type::StrList | Type::IntList | Type::Agents)
    }
}

/// One key: its name (the `run` flag's), its type, and whether a running
/// daemon can take a change of it on SIGHUP.
struct KeyDef {
    name: &'static str,
    ty: Type,
    live: bool,
}

const fn key(name: &'static str, ty: Type, live: bool) -> KeyDef {
    KeyDef { name, ty, live }
}

const KEYS: &[KeyDef] = &[
    key("uid", Type::IntList, false),
    key("agent", Type::Agents, false),
    key("mode", Type::Str, true),
    key("policy", Type::Str, true),
    key("state_dir", Type::Str, false),
    key("db", Type::Str, false),
    key("jsonl", Type::StrList, true),
    key("cef", Type::StrList, true),
    key("sink_rotate_bytes", Type::Int, true),
    key("sink_rotate_keep", Type::Int, true),
    key("sink_queue", Type::Int, true),
    key("syslog_ca_file", Type::Str, true),
    key("approval_timeout", Type::Int, false),
    key("no_lsm", Type::Bool, false),
    key("ring_buffer_bytes", Type::Int, false),
    key("metrics", Type::Str, false),
    key("webhook.url", Type::Str, true),
    key("webhook.backup", Type::Str, true),
    key("webhook.min_severity", Type::Str, true),
    key("webhook.retries", Type::Int, true),
    key("webhook.backoff_ms", Type::Int, true),
    key("webhook.timeout_ms", Type::Int, true),
    key("webhook.ca_file", Type::Str, true),
    key("webhook.format", Type::Str, true),
];

/// Tables whose keys are `TABLE.KEY` above.
const TABLES: &[&str] = &["webhook"];

fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|k| k.name == name)
}

fn defaults() -> Vec<(&'static str, toml::Value)> {
    vec![
        ("mode", "alert".into()),
        ("state_dir", DEFAULT_STATE_DIR.into()),
        ("db", DEFAULT_DB.into()),
        ("approval_timeout", 120.into()),
        ("no_lsm", false.into()),
        ("sink_rotate_bytes", (64 * 1024 * 1024).into()),
        ("sink_rotate_keep", 5.into()),
        ("sink_queue", 8192.into()),
    ]
}

/// A value with its origin; a list keeps the origin of each item.
#[derive(Debug, Clone, PartialEq)]
pub enum Setting {
    Scalar(toml::Value, Origin),
    List(Vec<(toml::Value, Origin)>),
}

/// The merged configuration, key by key, before it is checked into
/// [`Settings`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    values: BTreeMap<&'static str, Setting>,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
}

/// Which file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--config FILE`: it must exist.
    Explicit(PathBuf),
    /// No `--config`: the default file if it exists, else defaults only.
    Default,
}

impl Source {
    pub fn from_flag(config: Option<PathBuf>) -> Self {
        config.map_or(Source::Default, Source::Explicit)
    }
}

/// A value given on the command line: the key, the flag as typed, and
/// the value as TOML.
pub type FlagValue = (&'static str, String, toml::Value);

impl Merged {
    /// Defaults, then the file and its overlays.
    pub fn load(source: &Source) -> Result<Merged, ConfigError> {
        let mut merged = Merged::default();
        for (name, value) in defaults() {
            let setting = match value {
                toml::Value::Array(items) => {
                    Setting::List(items.into_iter().map(|v| (v, Origin::Default)).collect())
                }
                v => Setting::Scalar(v, Origin::Default),
            };
            merged.values.insert(name, setting);
        }
        let file = match source {
            Source::Explicit(path) => {
                if !path.is_file() {
                    return Err(ConfigError::at(
                        &Origin::Flag("--config".into()),
                        format!(
                            "{} does not exist or is not a file; pass an existing configuration file",
                            path.display()
                        ),
                    ));
                }
                Some(path.clone())
            }
            Source::Default => Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| p.is_file()),
        };
        let Some(file) = file else {
            return Ok(merged);
        };
        merged.apply_file(&file)?;
        for overlay in overlays(&file)? {
            merged.apply_file(&overlay)?;
        }
        Ok(merged)
    }

    /// Applies one TOML file on top.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::at(
                &Origin::File {
                    path: path.to_path_buf(),
                    line: 1,
                },
                format!("cannot read it: {e}"),
            )
        })?;
        self.apply_str(path, &text)?;
        self.files.push(path.to_path_buf());
        Ok(())
    }

    /// Applies TOML text read from `path`.
    pub fn apply_str(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let at = |offset: usize| Origin::File {
            path: path.to_path_buf(),
            line: line_of(text, offset),
        };
        let table = DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ConfigError::at(
                &at(offset),
                format!("not valid TOML: {}", e.message().trim()),
            )
        })?;
        for (k, v) in table.get_ref() {
            let name = k.get_ref().as_ref();
            if TABLES.contains(&name) {
                let DeValue::Table(inner) = v.get_ref() else {
                    return Err(ConfigError::at(
                        &at(v.span().start),
                        format!("`{name}` must be a table ([{name}])"),
                    ));
                };
                for (ik, iv) in inner {
                    let full = format!("{name}.{}", ik.get_ref());
                    self.apply_key(&full, ik.span().start, iv, &at)?;
                }
            } else {
                self.apply_key(name, k.span().start, v, &at)?;
            }
        }
        Ok(())
    }

    fn apply_key(
        &mut self,
        name: &str,
        key_offset: usize,
        value: &Spanned<DeValue<'_>>,
        at: &dyn Fn(usize) -> Origin,
    ) -> Result<(), ConfigError> {
        let origin = at(key_offset);
        let (base, op) = if let Some(b) = name.strip_suffix("_add") {
            (b, ListOp::Add)
        } else if let Some(b) = name.strip_suffix("_remove") {
            (b, ListOp::Remove)
        } else {
            (name, ListOp::Replace)
        };
        let def = match key_def(base) {
            Some(def) if op == ListOp::Replace || def.ty.is_list() => def,
            Some(_) => {
                return Err(ConfigError::at(
                    &origin,
                    format!("`{base}` is not a list: set it with `{base} = …`"),
                ))
            }
            None => return Err(ConfigError::at(&origin, unknown_key(name))),
        };
        if def.ty.is_list() {
            let items = list_items(def, value, op, at)?;
            self.apply_list(def.name, op, items);
        } else {
            let v = scalar(def, value.get_ref()).ok_or_else(|| {
                ConfigError::at(
                    &at(value.span().start),
                    format!(
                        "`{}` must be {}, not {}",
                        def.name,
                        def.ty.describe(),
                        value.get_ref().type_str()
                    ),
                )
            })?;
            self.values.insert(def.name, Setting::Scalar(v, origin));
        }
        Ok(())
    }

    fn apply_list(&mut self, name: &'static str, op: ListOp, items: Vec<(toml::Value, Origin)>) {
        let entry = self
            .values
            .entry(name)
            .or_insert_with(|| Setting::List(Vec::new()));
        let Setting::List(list) = entry else {
            *entry = Setting::List(items);
            return;
        };
        match op {
            ListOp::Replace => *list = items,
            ListOp::Add => {
                for item in items {
                    if !list.iter().any(|(v, _)| same_item(v, &item.0)) {
                        list.push(item);
                    }
                }
            }
            ListOp::Remove => list.retain(|(v, _)| !items.iter().any(|(r, _)| same_item(v, r))),
        }
    }

    /// Puts command-line values on top (flags beat files).
    pub fn apply_flags(&mut self, flags: Vec<FlagValue>) {
        for (name, flag, value) in flags {
            let origin = Origin::Flag(flag);
            let setting = match value {
                toml::Value::Array(items) => {
                    Setting::List(items.into_iter().map(|v| (v, origin.clone())).collect())
                }
                v => Setting::Scalar(v, origin),
            };
            self.values.insert(name, setting);
        }
    }

    fn scalar(&self, name: &str) -> Option<(&toml::Value, &Origin)> {
        match self.values.get(name)? {
            Setting::Scalar(v, o) => Some((v, o)),
            Setting::List(_) => None,
        }
    }

    fn list(&self, name: &str) -> &[(toml::Value, Origin)] {
        match self.values.get(name) {
            Some(Setting::List(items)) => items,
            _ => &[],
        }
    }

    fn str(&self, name: &str) -> Option<(&str, &Origin)> {
        self.scalar(name)
            .and_then(|(v, o)| v.as_str().map(|s| (s, o)))
    }

    fn int(&self, name: &str) -> Option<(u64, &Origin)> {
        self.scalar(name)
            .and_then(|(v, o)| v.as_integer().map(|i| (i.max(0) as u64, o)))
    }

    /// The origin of a key's value, for messages.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        match self.values.get(name)? {
            Setting::Scalar(_, o) => Some(o.clone()),
            Setting::List(items) => items.first().map(|(_, o)| o.clone()),
        }
    }

    /// Checks every value and builds what the daemon runs with.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let path = |name: &str| self.str(name).map(|(s, _)| PathBuf::from(s));
        let (mode_text, mode_origin) = self.str("mode").unwrap_or(("alert", &Origin::Default));
        let mode = parse_mode(mode_text).map_err(|e| ConfigError::at(mode_origin, e))?;
        let mut agents = Vec::new();
        for (v, origin) in self.list("agent") {
            let name = v.get("name").and_then(|n| n.as_str()).unwrap_or_default();
            let uid = v.get("uid").and_then(|n| n.as_integer()).unwrap_or(-1);
            let uid = u32::try_from(uid).map_err(|_| {
                ConfigError::at(origin, format!("agent {name:?}: uid {uid} is not a UID"))
            })?;
            agents.push((name.to_string(), uid));
        }
        let mut uids = Vec::new();
        for (v, origin) in self.list("uid") {
            let n = v.as_integer().unwrap_or(-1);
            uids.push(
                u32::try_from(n)
                    .map_err(|_| ConfigError::at(origin, format!("uid {n} is not a UID")))?,
            );
        }
        let mut sinks = Vec::new();
        type Parse = fn(&str) -> Result<SinkSpec, sentinel_audit::sink::SinkSpecError>;
        for (key, parse) in [
            ("jsonl", SinkSpec::jsonl as Parse),
            ("cef", SinkSpec::cef as Parse),
        ] {
            for (v, origin) in self.list(key) {
                let text = v.as_str().unwrap_or_default();
                sinks
                    .push(parse(text).map_err(|e| ConfigError::at(origin, format!("{key}: {e}")))?);
            }
        }
        let ca_file = |name: &str| -> Result<Option<PathBuf>, ConfigError> {
            match self.str(name) {
                Some((p, origin)) => {
                    if !Path::new(p).is_file() {
                        return Err(ConfigError::at(
                            origin,
                            format!(
                                "{name}: no CA file at {p}; give a PEM file of CA certificates"
                            ),
                        ));
                    }
                    Ok(Some(PathBuf::from(p)))
                }
                None => Ok(None),
            }
        };
        let sink_options = SinkOptions {
            queue_capacity: self.int("sink_queue").map_or(8192, |(n, _)| n as usize),
            rotate_bytes: self.int("sink_rotate_bytes").map_or(0, |(n, _)| n),
            rotate_keep: self.int("sink_rotate_keep").map_or(5, |(n, _)| n as usize),
            tls_ca_file: ca_file("syslog_ca_file")?,
            ..SinkOptions::default()
        };
        let ring_buffer_bytes = match self.int("ring_buffer_bytes") {
            Some((n, origin)) => Some(
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n >= 4096 && n.is_power_of_two())
                    .ok_or_else(|| {
                        ConfigError::at(
                            origin,
                            "ring_buffer_bytes must be a power of two of at least 4096",
                        )
                    })?,
            ),
            None => None,
        };
        let metrics = match self.str("metrics") {
            Some((text, origin)) => {
                Some(parse_metrics_addr(text).map_err(|e| ConfigError::at(origin, e))?)
            }
            None => None,
        };
        let webhook = self.webhook(&ca_file)?;
        Ok(Settings {
            agents,
            uids,
            sinks,
            sink_options,
            state_dir: path("state_dir").unwrap_or_else(|| DEFAULT_STATE_DIR.into()),
            db: path("db").unwrap_or_else(|| DEFAULT_DB.into()),
            policy: path("policy"),
            mode,
            approval_timeout: Duration::from_secs(
                self.int("approval_timeout").map_or(120, |(n, _)| n),
            ),
            no_lsm: self
                .scalar("no_lsm")
                .and_then(|(v, _)| v.as_bool())
                .unwrap_or(false),
            ring_buffer_bytes,
            metrics,
            webhook,
        })
    }

    fn webhook(
        &self,
        ca_file: &dyn Fn(&str) -> Result<Option<PathBuf>, ConfigError>,
    ) -> Result<Option<WebhookConfig>, ConfigError> {
        let Some((url, url_origin)) = self.str("webhook.url") else {
            if let Some(origin) = KEYS
                .iter()
                .filter(|k| k.name.starts_with("webhook."))
                .find_map(|k| self.origin(k.name))
            {
                return Err(ConfigError::at(
                    &origin,
                    "[webhook] needs `url = \"https://…\"`",
                ));
            }
            return Ok(None);
        };
        let backup = self.str("webhook.backup");
        let mut config = WebhookConfig::new(url, backup.map(|(b, _)| b)).map_err(|e| {
            let origin = match &e {
                sentinel_anomaly::WebhookError::UnsupportedUrl(u)
                    if Some(u.as_str()) != Some(url) =>
                {
                    backup.map_or(url_origin, |(_, o)| o)
                }
                _ => url_origin,
            };
            ConfigError::at(origin, format!("webhook: {e}"))
        })?;
        if let Some((s, origin)) = self.str("webhook.min_severity") {
            config.min_severity = s
                .parse::<Severity>()
                .map_err(|e| ConfigError::at(origin, format!("webhook.min_severity: {e}")))?;
        }
        if let Some((n, origin)) = self.int("webhook.retries") {
            config.retries = u32::try_from(n)
                .ok()
                .filter(|n| *n <= 20)
                .ok_or_else(|| ConfigError::at(origin, "webhook.retries must be 0 to 20"))?;
        }
        if let Some((n, _)) = self.int("webhook.backoff_ms") {
            config.backoff = Duration::from_millis(n);
        }
        if let Some((n, origin)) = self.int("webhook.timeout_ms") {
            if n == 0 {
                return Err(ConfigError::at(
                    origin,
                    "webhook.timeout_ms must be above 0",
                ));
            }
            config.timeout = Duration::from_millis(n);
        }
        config.ca_file = ca_file("webhook.ca_file")?;
        if let Some((f, origin)) = self.str("webhook.format") {
            config.format = f
                .parse::<PayloadFormat>()
                .map_err(|e| ConfigError::at(origin, format!("webhook.format: {e}")))?;
        }
        Ok(Some(config))
    }

    /// `sentinel config show`: one line a key (a list: one line an item),
    /// each with where it came from.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if self.files.is_empty() {
            out.push_str("# no configuration file: built-in defaults\n");
        } else {
            for f in &self.files {
                out.push_str(&format!("# read {}\n", f.display()));
            }
        }
        for def in KEYS {
            match self.values.get(def.name) {
                None => {}
                Some(Setting::Scalar(v, origin)) => {
                    let line = format!("{} = {}", def.name, inline(v));
                    out.push_str(&format!("{line:<50} # {origin}\n"));
                }
                Some(Setting::List(items)) if def.ty == Type::Agents => {
                    for (v, origin) in items {
                        let line = format!("agent = {}", inline(v));
                        out.push_str(&format!("{line:<50} # {origin}\n"));
                    }
                }
                Some(Setting::List(items)) => {
                    if items.is_empty() {
                        continue;
                    }
                    out.push_str(&format!("{} = [\n", def.name));
                    for (v, origin) in items {
                        let line = format!("    {},", inline(v));
                        out.push_str(&format!("{line:<50} # {origin}\n"));
                    }
                    out.push_str("]\n");
                }
            }
        }
        out
    }

    /// `sentinel config show --json`.
    pub fn render_json(&self) -> serde_json::Value {
        let place = |o: &Origin| match o {
            Origin::File { path, line } => {
                json!({"origin": o.to_string(), "file": path, "line": line})
            }
            _ => json!({"origin": o.to_string()}),
        };
        let mut values = serde_json::Map::new();
        for def in KEYS {
            let entry = match self.values.get(def.name) {
                None => continue,
                Some(Setting::Scalar(v, o)) => {
                    let mut e = place(o);
                    e["value"] = json!(v);
                    e
                }
                Some(Setting::List(items)) => json!({
                    "value": items.iter().map(|(v, _)| json!(v)).collect::<Vec<_>>(),
                    "items": items.iter().map(|(v, o)| {
                        let mut e = place(o);
                        e["value"] = json!(v);
                        e
                    }).collect::<Vec<_>>(),
                }),
            };
            values.insert(def.name.to_string(), entry);
        }
        json!({"files": self.files, "values": values})
    }

    /// The keys whose value differs between `self` (running) and `new`,
    /// split into those a running daemon takes and those that need a
    /// restart.
    pub fn changes(&self, new: &Merged) -> (Vec<&'static str>, Vec<&'static str>) {
        let value_of = |m: &Merged, name: &str| -> Option<toml::Value> {
            match m.values.get(name)? {
                Setting::Scalar(v, _) => Some(v.clone()),
                Setting::List(items) => Some(toml::Value::Array(
                    items.iter().map(|(v, _)| v.clone()).collect(),
                )),
            }
        };
        let mut live = Vec::new();
        let mut restart = Vec::new();
        for def in KEYS {
            if value_of(self, def.name) != value_of(new, def.name) {
                if def.live {
                    live.push(def.name);
                } else {
                    restart.push(def.name);
                }
            }
        }
        (live, restart)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListOp {
    Replace,
    Add,
    Remove,
}

/// What `sentinel run` runs with, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub agents: Vec<(String, u32)>,
    pub uids: Vec<u32>,
    pub sinks: Vec<SinkSpec>,
    pub sink_options: SinkOptions,
    pub state_dir: PathBuf,
    pub db: PathBuf,
    pub policy: Option<PathBuf>,
    pub mode: Mode,
    pub approval_timeout: Duration,
    pub no_lsm: bool,
    pub ring_buffer_bytes: Option<u32>,
    pub metrics: Option<SocketAddr>,
    pub webhook: Option<WebhookConfig>,
}

/// Re-reads the configuration on SIGHUP with the same command-line
/// flags on top (they still beat the files).
#[derive(Debug, Clone)]
pub struct Reloader {
    source: Source,
    flags: Vec<FlagValue>,
    /// What the daemon started with: keys that need a restart compare
    /// against it.
    started: Merged,
    /// What the last reload put in force.
    running: Merged,
}

impl Reloader {
    pub fn new(source: Source, flags: Vec<FlagValue>, started: Merged) -> Self {
        Reloader {
            source,
            flags,
            running: started.clone(),
            started,
        }
    }

    /// The new settings, the changed keys the daemon can take now, and
    /// the changed keys that need a restart; an error leaves the running
    /// configuration as it was.
    #[allow(clippy::type_complexity)]
    pub fn reload(
        &mut self,
    ) -> Result<(Settings, Vec<&'static str>, Vec<&'static str>), ConfigError> {
        let mut merged = Merged::load(&self.source)?;
        merged.apply_flags(self.flags.clone());
        let settings = merged.settings()?;
        let (live, _) = self.running.changes(&merged);
        let (_, restart) = self.started.changes(&merged);
        self.running = merged;
        Ok((settings, live, restart))
    }
}

/// The overlay files of `file` (`NAME.toml` → `NAME.d/*.toml`), in
/// file-name order.
pub fn overlays(file: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let dir = file.with_file_name(format!("{stem}.d"));
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::at(
                &Origin::File {
                    path: dir.clone(),
                    line: 0,
                },
                format!("cannot read the overlay directory: {e}"),
            ))
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn unknown_key(name: &str) -> String {
    let known: Vec<String> = KEYS
        .iter()
        .map(|k| k.name.to_string())
        .filter(|k| !k.starts_with("webhook."))
        .chain(std::iter::once("[webhook]".to_string()))
        .collect();
    format!("unknown key `{name}`; known keys: {}", known.join(", "))
}

fn scalar(def: &KeyDef, v: &DeValue<'_>) -> Option<toml::Value> {
    match (def.ty, v) {
        (Type::Str, DeValue::String(s)) => Some(toml::Value::String(s.to_string())),
        (Type::Int, DeValue::Integer(i)) => {
            let n = i64::from_str_radix(i.as_str(), i.radix()).ok()?;
            (n >= 0).then_some(toml::Value::Integer(n))
        }
        (Type::Bool, DeValue::Boolean(b)) => Some(toml::Value::Boolean(*b)),
        _ => None,
    }
}

fn list_items(
    def: &KeyDef,
    value: &Spanned<DeValue<'_>>,
    op: ListOp,
    at: &dyn Fn(usize) -> Origin,
) -> Result<Vec<(toml::Value, Origin)>, ConfigError> {
    let wrong = |offset: usize| {
        ConfigError::at(
            &at(offset),
            format!("`{}` must be {}", def.name, def.ty.describe()),
        )
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err(wrong(value.span().start));
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let origin = at(item.span().start);
        let v = match (def.ty, item.get_ref()) {
            (Type::StrList, DeValue::String(s)) => toml::Value::String(s.to_string()),
            (Type::IntList, DeValue::Integer(i)) => toml::Value::Integer(
                i64::from_str_radix(i.as_str(), i.radix()).map_err(|_| wrong(item.span().start))?,
            ),
            // `agent_remove = ["name"]` removes by name.
            (Type::Agents, DeValue::String(s)) if op == ListOp::Remove => {
                toml::Value::String(s.to_string())
            }
            (Type::Agents, DeValue::Table(t)) => agent(t, &origin)?,
            _ => return Err(wrong(item.span().start)),
        };
        out.push((v, origin));
    }
    Ok(out)
}

fn agent(t: &DeTable<'_>, origin: &Origin) -> Result<toml::Value, ConfigError> {
    let mut name = None;
    let mut uid = None;
    for (k, v) in t {
        match (k.get_ref().as_ref(), v.get_ref()) {
            ("name", DeValue::String(s)) if !s.is_empty() => name = Some(s.to_string()),
            ("uid", DeValue::Integer(i)) => uid = i64::from_str_radix(i.as_str(), i.radix()).ok(),
            ("name" | "uid", other) => {
                return Err(ConfigError::at(
                    origin,
                    format!(
                        "agent `{}` must be {}, not {}",
                        k.get_ref(),
                        if k.get_ref() == "name" {
                            "a non-empty string"
                        } else {
                            "an integer UID"
                        },
                        other.type_str()
                    ),
                ))
            }
            (other, _) => {
                return Err(ConfigError::at(
                    origin,
                    format!("unknown key `{other}` in [[agent]]; an agent has name and uid"),
                ))
            }
        }
    }
    match (name, uid) {
        (Some(name), Some(uid)) => {
            let mut table = toml::map::Map::new();
            table.insert("name".into(), name.into());
            table.insert("uid".into(), uid.into());
            Ok(toml::Value::Table(table))
        }
        _ => Err(ConfigError::at(
            origin,
            "an [[agent]] needs both name = \"…\" and uid = N",
        )),
    }
}

/// Agents are the same item when their names are (so `agent_remove`
/// takes names and an overlay can re-add an agent with another uid).
fn same_item(a: &toml::Value, b: &toml::Value) -> bool {
    let name = |v: &toml::Value| match v {
        toml::Value::Table(t) => t.get("name").cloned(),
        toml::Value::String(_) => Some(v.clone()),
        _ => None,
    };
    match (a, b) {
        (toml::Value::Table(_), _) | (_, toml::Value::Table(_)) => {
            name(a).is_some() && name(a) == name(b)
        }
        _ => a == b,
    }
}

fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::Table(t) => {
            let parts: Vec<String> = t.iter().map(|(k, v)| format!("{k} = {v}")).collect();
            format!("{{ {} }}", parts.join(", "))
        }
        v => v.to_string(),
    }
}

pub fn parse_mode(s: &str) -> Result<Mode, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        format!("unknown mode {s:?}: use silent-allow, alert, silent-deny or lockdown")
    })
}

/// `--metrics`: `PORT`, `:PORT`, `HOST:PORT` or `[V6]:PORT`; a bare port
/// listens on loopback.
pub fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    let bad =
        || format!("metrics address {s:?}: expected PORT, :PORT or HOST:PORT (127.0.0.1:9464)");
    let port_only = s.strip_prefix(':').unwrap_or(s);
    if let Ok(port) = port_only.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host == "localhost" {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn overlays_apply_in_file_name_order_with_origins() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "sentinel.toml",
            "mode = \"alert\"\ncef = [\"udp://127.0.0.1:514\", \"/var/log/a.cef\"]\n\n[[agent]]\nname = \"claude\"\nuid = 2001\n",
        );
        write(
            dir.path(),
            "sentinel.d/20-late.toml",
            "mode = \"lockdown\"\n",
        );
        write(
            dir.path(),
            "sentinel.d/10-early.toml",
            "mode = \"silent-deny\"\ncef_add = [\"tcp://[::1]:601\"]\ncef_remove = [\"/var/log/a.cef\"]\n",
        );
        write(dir.path(), "sentinel.d/30-ignored.conf", "nonsense = 1\n");
        let merged = Merged::load(&Source::Explicit(main.clone())).unwrap();
        let s = merged.settings().unwrap();
        assert_eq!(s.mode, Mode::Lockdown);
        let late = dir.path().join("sentinel.d/20-late.toml");
        assert_eq!(
            merged.origin("mode"),
            Some(Origin::File {
                path: late,
                line: 1
            })
        );
        let cef: Vec<String> = s.sinks.iter().map(ToString::to_string).collect();
        assert_eq!(cef, ["cef:udp://127.0.0.1:514", "cef:tcp://[::1]:601"]);
        assert_eq!(s.agents, [("claude".to_string(), 2001)]);
        assert_eq!(merged.files.len(), 3);
        let text = merged.render_text();
        assert!(text.contains("10-early.toml:2"), "{text}");
        assert!(text.contains(&format!("{}:2", main.display())), "{text}");
        assert!(text.contains("state_dir = \"/run/sentinel\""), "{text}");
        let json = merged.render_json();
        assert_eq!(json["values"]["mode"]["line"], 1);
        assert_eq!(json["values"]["cef"]["items"][1]["line"], 2);
        assert_eq!(json["values"]["db"]["origin"], "default");
    }

    #[test]
    fn flags_beat_files() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "s.toml",
            "mode = \"lockdown\"\njsonl = [\"/tmp/x\"]\n",
        );
        let mut merged = Merged::load(&Source::Explicit(main)).unwrap();
        merged.apply_flags(vec![
            ("mode", "--mode".into(), "silent-allow".into()),
            (
                "jsonl",
                "--jsonl".into(),
                toml::Value::Array(vec!["-".into()]),
            ),
        ]);
        let s = merged.settings().unwrap();
        assert_eq!(s.mode, Mode::SilentAllow);
        assert_eq!(s.sinks.len(), 1);
        assert_eq!(merged.origin("mode"), Some(Origin::Flag("--mode".into())));
    }

    #[test]
    fn agents_are_added_and_removed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let main = write(
            dir.path(),
            "s.toml",
            "[[agent]]\nname = \"a\"\nuid = 2001\n[[agent]]\nname = \"b\"\nuid = 2002\n",
        );
        write(
            dir.path(),
            "s.d/1.toml",
            "agent_remove = [\"a\"]\nagent_add = [{ name = \"c\", uid = 2003 }]\n",
        );
        let s = Merged::load(&Source::Explicit(main))
            .unwrap()
            .settings()
            .unwrap();
        assert_eq!(s.agents, [("b".to_string(), 2002), ("c".to_string(), 2003)]);
    }

    fn error_of(files: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            write(dir.path(), name, text);
        }
        let main = dir.path().join(files[0].0);
        let err = Merged::load(&Source::Explicit(main))
            .and_then(|m| m.settings())
            .unwrap_err();
        // The message names the file relative to the scratch directory.
        err.to_string()
            .replace(&format!("{}/", dir.path().display()), "")
    }

    #[test]
    fn every_error_names_file_and_line() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("s.toml", "mode = \"alert\"\nmodee = \"x\"\n")],
                "s.toml:2: unknown key `modee`",
            ),
            (
                &[("s.toml", "\n\nmode = 3\n")],
                "s.toml:3: `mode` must be a string, not integer",
            ),
            (
                &[("s.toml", "mode = \"paranoid\"\n")],
                "s.toml:1: unknown mode \"paranoid\"",
            ),
            (
                &[("s.toml", "cef = \"udp://h:1\"\n")],
                "s.toml:1: `cef` must be a list of strings",
            ),
            (
                &[("s.toml", "cef = [\n  \"ok.cef\",\n  \"http://h:1\",\n]\n")],
                "s.toml:3: cef: `http://h:1`: unknown scheme",
            ),
            (
                &[
                    ("s.toml", "jsonl = [\"/tmp/x\"]\n"),
                    ("s.d/a.toml", "\njsonl_add = [\"udp://h:1\"]\n"),
                ],
                "s.d/a.toml:2: jsonl: `udp://h:1`: JSONL goes to a file",
            ),
            (
                &[("s.toml", "ring_buffer_bytes = 5000\n")],
                "s.toml:1: ring_buffer_bytes must be a power of two",
            ),
            (
                &[("s.toml", "metrics = \"nowhere\"\n")],
                "s.toml:1: metrics address \"nowhere\"",
            ),
            (
                &[("s.toml", "mode = \"alert\"\nmode_add = [\"x\"]\n")],
                "s.toml:2: `mode` is not a list",
            ),
            (
                &[("s.toml", "[[agent]]\nname = \"a\"\n")],
                "s.toml:1: an [[agent]] needs both",
            ),
            (
                &[("s.toml", "[webhook]\nurl = \"ftp://x\"\n")],
                "s.toml:2: webhook: ",
            ),
            (
                &[(
                    "s.toml",
                    "[webhook]\nurl = \"https://x/\"\nformat = \"teams\"\n",
                )],
                "s.toml:3: webhook.format: ",
            ),
            (
                &[("s.toml", "[webhook]\nurl = \"https://x/\"\ncolour = 1\n")],
                "s.toml:3: unknown key `webhook.colour`",
            ),
            (
                &[("s.toml", "[webhook]\nretries = 2\n")],
                "s.toml:2: [webhook] needs `url",
            ),
            (
                &[("s.toml", "approval_timeout = -1\n")],
                "s.toml:1: `approval_timeout` must be a non-negative integer",
            ),
            (
                &[("s.toml", "mode = \"alert\"\nmode = \"x\"\n")],
                "s.toml:2: not valid TOML",
            ),
            (
                &[("s.toml", "syslog_ca_file = \"/nonexistent/ca.pem\"\n")],
                "s.toml:1: syslog_ca_file: no CA file",
            ),
        ];
        for (files, expected) in cases {
            let got = error_of(files);
            assert!(
                got.starts_with(expected),
                "expected {expected:?}, got {got:?}"
            );
        }
    }

    #[test]
    fn a_missing_explicit_file_is_an_error_and_no_default_file_is_fine() {
        let err = Merged::load(&Source::Explicit("/nonexistent/s.toml".into())).unwrap_err();
        assert_eq!(err.origin, Origin::Flag("--config".into()));
    }

    #[test]
    fn changes_split_live_and_restart_keys() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.toml",
            "mode = \"alert\"\nmetrics = \"9464\"\n",
        );
        let b = write(
            dir.path(),
            "b.toml",
            "mode = \"lockdown\"\nmetrics = \"9465\"\n",
        );
        let a = Merged::load(&Source::Explicit(a)).unwrap();
        let b = Merged::load(&Source::Explicit(b)).unwrap();
        assert_eq!(a.changes(&b), (vec!["mode"], vec!["metrics"]));
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(
            parse_metrics_addr("9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            parse_metrics_addr(":9464").unwrap().to_string(),
            "127.0.0.1:9464"
        );
        assert_eq!(
            parse_metrics_addr("[::1]:9").unwrap().to_string(),
            "[::1]:9"
        );
        assert_eq!(
            parse_metrics_addr("localhost:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(parse_metrics_addr("x:y").is_err());
    }
}
