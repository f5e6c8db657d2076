//! Rules as the operator's tools see them: a loaded [`Rule`] as a JSON
//! spec whose keys are the policy file's keys, the spec written back as a
//! TOML `[[rule]]` table, and the admin-managed policy file
//! (`90-admin.toml` in the daemon's policy directory) that rule edits
//! rewrite atomically after the whole directory validated. Rules in other
//! files are changed by rewriting only their own `[[rule]]` table.

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sentinel_policy::{Matcher, Policy, Rule};
use serde_json::{json, Map, Value};

/// The file in the policy directory that the management tools own.
pub const ADMIN_FILE: &str = "90-admin.toml";

/// The canonical order of a rule's keys in specs and TOML.
const KEY_ORDER: &[&str] = &[
    "name",
    "kind",
    "action",
    "priority",
    "enabled",
    "risk",
    "reason",
    "agent",
    "binary",
    "args",
    "path",
    "write",
    "addr",
    "port",
    "tool",
    "server",
    "rate_limit",
    "schedule",
];

fn enum_name<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

fn strings(list: &[String]) -> Value {
    Value::Array(list.iter().cloned().map(Value::String).collect())
}

/// A loaded rule as its spec: every key explicit (defaults filled in), so
/// a spec written back loads into the same rule.
pub fn rule_to_spec(rule: &Rule) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("name".into(), json!(rule.name));
    m.insert("kind".into(), enum_name(&rule.kind));
    m.insert("action".into(), enum_name(&rule.action));
    m.insert("priority".into(), json!(rule.priority));
    m.insert("enabled".into(), json!(rule.enabled));
    m.insert("risk".into(), json!(rule.risk));
    if let Some(reason) = &rule.reason {
        m.insert("reason".into(), json!(reason));
    }
    if let Some(agent) = &rule.agent {
        m.insert("agent".into(), strings(agent.sources()));
    }
    match &rule.matcher {
        Matcher::Exec { binary, args } => {
            if let Some(b) = binary {
                m.insert("binary".into(), strings(b.sources()));
            }
            if let Some(a) = args {
                m.insert("args".into(), json!(a.as_str()));
            }
        }
        Matcher::Open { path, write } => {
            if let Some(p) = path {
                m.insert("path".into(), strings(p.sources()));
            }
            if let Some(w) = write {
                m.insert("write".into(), json!(w));
            }
        }
        Matcher::Connect { addr, ports } => {
            if let Some(nets) = addr {
                let list: Vec<Value> = nets.iter().map(|n| json!(n.to_string())).collect();
                m.insert("addr".into(), Value::Array(list));
            }
            if let Some((lo, hi)) = ports {
                let port = if lo == hi {
                    json!(lo)
                } else {
                    json!(format!("{lo}-{hi}"))
                };
                m.insert("port".into(), port);
            }
        }
        Matcher::Mcp { tool, server, args } => {
            if let Some(t) = tool {
                m.insert("tool".into(), strings(t.sources()));
            }
            if let Some(s) = server {
                m.insert("server".into(), strings(s.sources()));
            }
            if let Some(a) = args {
                m.insert("args".into(), json!(a.as_str()));
            }
        }
    }
    if let Some(limit) = &rule.rate_limit {
        m.insert(
            "rate_limit".into(),
            json!({"max": limit.max, "per_seconds": limit.per.as_secs()}),
        );
    }
    if let Some(s) = &rule.schedule {
        let clock = |minutes: u16| format!("{:02}:{:02}", minutes / 60, minutes % 60);
        let days: Vec<Value> = s
            .days
            .iter()
            .map(|d| json!(d.to_string().to_ascii_lowercase()))
            .collect();
        m.insert(
            "schedule".into(),
            json!({"days": days, "start": clock(s.start), "end": clock(s.end), "tz": s.tz.to_string()}),
        );
    }
    m
}

fn toml_string(s: &str) -> String {
    let plain = !s.contains('\'') && !s.chars().any(char::is_control);
    if plain {
        return format!("'{s}'");
    }
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn bare_key(key: &str) -> Result<&str, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(key)
    } else {
        Err(format!("`{key}` is not a rule key"))
    }
}

fn toml_value(key: &str, v: &Value) -> Result<String, String> {
    Ok(match v {
        Value::String(s) => toml_string(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        Value::Array(items) => {
            let parts: Result<Vec<String>, String> =
                items.iter().map(|i| toml_value(key, i)).collect();
            format!("[{}]", parts?.join(", "))
        }
        Value::Object(map) => {
            let mut parts = Vec::new();
            for (k, v) in map {
                parts.push(format!("{} = {}", bare_key(k)?, toml_value(k, v)?));
            }
            format!("{{ {} }}", parts.join(", "))
        }
        other => return Err(format!("key `{key}`: {other} is not a value a rule takes")),
    })
}

/// A spec as one `[[rule]]` table (keys in canonical order, then any
/// others, which the loader will reject by name).
pub fn spec_to_toml(spec: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::from("[[rule]]\n");
    let mut keys: Vec<&str> = KEY_ORDER
        .iter()
        .copied()
        .filter(|k| spec.contains_key(*k))
        .collect();
    keys.extend(
        spec.keys()
            .map(String::as_str)
            .filter(|k| !KEY_ORDER.contains(k)),
    );
    for key in keys {
        let value = &spec[key];
        if value.is_null() {
            continue;
        }
        out.push_str(&format!(
            "{} = {}\n",
            bare_key(key)?,
            toml_value(key, value)?
        ));
    }
    Ok(out)
}

/// Specs in the order given, as TOML text.
pub fn specs_to_toml(specs: &[Map<String, Value>]) -> Result<String, String> {
    let tables: Result<Vec<String>, String> = specs.iter().map(spec_to_toml).collect();
    Ok(tables?.join("\n"))
}

/// Parses `[[rule]]` tables (an import, or the admin file) into specs in
/// the order they are written.
pub fn parse_rules(name: &str, text: &str) -> Result<Vec<Map<String, Value>>, String> {
    let policy = Policy::from_sources(&[(name, text)]).map_err(|e| e.to_string())?;
    let mut rules: Vec<&Rule> = policy.rules().iter().collect();
    rules.sort_by_key(|r| r.position);
    Ok(rules.into_iter().map(rule_to_spec).collect())
}

/// Every rule of a loaded policy, in evaluation order, with its file.
pub fn list(policy: &Policy) -> Vec<(String, Map<String, Value>)> {
    policy
        .rules()
        .iter()
        .map(|r| (r.file.clone(), rule_to_spec(r)))
        .collect()
}

/// Serialises rule edits (read, change, validate, replace) between
/// concurrent `mcp-admin` sessions; released when dropped.
pub fn lock_dir(dir: &Path) -> Result<std::fs::File, String> {
    let path = dir.join(".mcp-admin.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// Whether an agent name glob (rule syntax, as in `agent = "..."` and
/// agent quarantines) matches `agent`, decided by the policy loader itself.
pub fn agent_glob_matches(pattern: &str, agent: &str) -> bool {
    let mut spec = Map::new();
    spec.insert("name".into(), json!("probe"));
    spec.insert("kind".into(), json!("mcp"));
    spec.insert("action".into(), json!("allow"));
    spec.insert("agent".into(), json!([pattern]));
    let Ok(text) = spec_to_toml(&spec) else {
        return false;
    };
    Policy::from_sources(&[("probe", text.as_str())])
        .ok()
        .and_then(|p| p.rules().first().and_then(|r| r.agent.clone()))
        .is_some_and(|globs| globs.is_match(agent))
}

pub fn admin_path(dir: &Path) -> PathBuf {
    dir.join(ADMIN_FILE)
}

/// The rules in the admin file, in file order (none when it is absent).
pub fn read_admin(dir: &Path) -> Result<Vec<Map<String, Value>>, String> {
    let path = admin_path(dir);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_rules(&path.display().to_string(), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

const ADMIN_HEADER: &str = "# Rules managed by `sentinel mcp-admin` (the operator's MCP tools).\n\
# The tools rewrite this file as a whole; every other file in this\n\
# directory is left as it is.\n\n";

/// Validates the whole directory with `specs` as the admin file, then
/// replaces the admin file atomically. Returns the policy that will load.
pub fn write_admin(dir: &Path, specs: &[Map<String, Value>]) -> Result<Policy, String> {
    let mut names = HashSet::new();
    for spec in specs {
        let name = spec.get("name").and_then(Value::as_str).unwrap_or("");
        if !names.insert(name.to_string()) {
            return Err(format!("rule `{name}` appears twice"));
        }
    }
    let text = format!("{ADMIN_HEADER}{}", specs_to_toml(specs)?);
    let path = admin_path(dir);
    let policy = validate_with(dir, &path, &text)?;
    replace_file(dir, &path, &text)?;
    Ok(policy)
}

/// Loads the directory as it would be with `path` holding `text`.
fn validate_with(dir: &Path, path: &Path, text: &str) -> Result<Policy, String> {
    let mut sources = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries {
        let p = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if p.extension().is_some_and(|x| x == "toml") && p.is_file() && p != path {
            let body = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            sources.push((p.display().to_string(), body));
        }
    }
    sources.push((path.display().to_string(), text.to_string()));
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    Policy::from_sources(&sources)
        .map_err(|e| format!("the change was not written: the policy would not load: {e}"))
}

/// Replaces `path` with `text` atomically (same mode as before, 0644 for
/// a new file).
fn replace_file(dir: &Path, path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mode = std::fs::metadata(path).map_or(0o644, |m| m.permissions().mode() & 0o7777);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot write {}: {e}", path.display())
    })
}

/// Updates (`Some(spec)`) or deletes (`None`) rule `name` in a policy
/// file the tools do not own, rewriting only that rule's `[[rule]]` table
/// and keeping the rest of the file (comments included) byte for byte.
/// The result must load, with every other rule unchanged, before the file
/// is replaced.
pub fn rewrite_in_file(
    dir: &Path,
    path: &Path,
    name: &str,
    replacement: Option<&Map<String, Value>>,
) -> Result<Policy, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let is_filler = |l: &str| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#')
    };
    let mut found = None;
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "[[rule]]" {
            continue;
        }
        let next = (i + 1..lines.len())
            .find(|&j| is_header(lines[j]))
            .unwrap_or(lines.len());
        // Comments and blank lines before the next table belong to it.
        let mut end = next;
        while end > i + 1 && is_filler(lines[end - 1]) {
            end -= 1;
        }
        let block: String = lines[i..end].concat();
        let parsed = Policy::from_sources(&[("block", block.as_str())]);
        if parsed.is_ok_and(|p| p.rules().len() == 1 && p.rules()[0].name == name) {
            found = Some((i, end));
            break;
        }
    }
    let Some((start, end)) = found else {
        return Err(format!(
            "could not find the [[rule]] table of `{name}` in {} to rewrite it; edit that file by hand",
            path.display()
        ));
    };
    let new_block = match replacement {
        Some(spec) => spec_to_toml(spec)?,
        None => String::new(),
    };
    let mut rest_start = end;
    if replacement.is_none() {
        // Drop one blank separator line after a deleted table.
        if lines.get(rest_start).is_some_and(|l| l.trim().is_empty()) {
            rest_start += 1;
        }
    }
    let new_text = format!(
        "{}{}{}",
        lines[..start].concat(),
        new_block,
        lines[rest_start..].concat()
    );
    let before = Policy::load_dir(dir).map_err(|e| e.to_string())?;
    let after = validate_with(dir, path, &new_text)?;
    let others = |p: &Policy| -> Vec<(String, Map<String, Value>)> {
        list(p)
            .into_iter()
            .filter(|(_, s)| s["name"] != name)
            .collect()
    };
    let new_name = replacement
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str);
    let mut expected_others = others(&before);
    if let Some(n) = new_name {
        expected_others.retain(|(_, s)| s["name"] != n);
    }
    let mut got_others = others(&after);
    if let Some(n) = new_name {
        got_others.retain(|(_, s)| s["name"] != n);
    }
    if got_others != expected_others {
        return Err(format!(
            "rewriting `{name}` in {} would change other rules; edit that file by hand",
            path.display()
        ));
    }
    if let Some(spec) = replacement {
        let want = parse_rules("replacement", &spec_to_toml(spec)?)?;
        let got: Vec<Map<String, Value>> = list(&after)
            .into_iter()
            .filter(|(_, s)| Some(&s["name"]) == spec.get("name"))
            .map(|(_, s)| s)
            .collect();
        if got != want {
            return Err(format!(
                "rewriting `{name}` in {} did not give the rule asked for; edit that file by hand",
                path.display()
            ));
        }
    }
    replace_file(dir, path, &new_text)?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[[rule]]
name = "a"
kind = "exec"
action = "deny"
binary = ["/usr/bin/curl", "/opt/**"]
args = '\bhttps?://'
agent = "claude*"
schedule = { days = ["weekdays"], start = "22:00", end = "06:00", tz = "Europe/Paris" }

[[rule]]
name = "b"
kind = "connect"
action = "ask"
addr = ["10.0.0.0/8", "1.2.3.4"]
port = "8000-8999"
rate_limit = { max = 3, per_seconds = 60 }
reason = "it's \"quoted\""

[[rule]]
name = "c"
kind = "mcp"
action = "log-only"
tool = "*push*"
args = '"force":true'
priority = 5
"#;

    #[test]
    fn specs_round_trip_through_toml() {
        let specs = parse_rules("sample", SAMPLE).unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[0]["binary"], json!(["/usr/bin/curl", "/opt/**"]));
        assert_eq!(specs[0]["schedule"]["days"].as_array().unwrap().len(), 5);
        assert_eq!(specs[1]["port"], json!("8000-8999"));
        assert_eq!(specs[1]["addr"], json!(["10.0.0.0/8", "1.2.3.4/32"]));
        assert_eq!(specs[2]["action"], json!("log-only"));
        let text = specs_to_toml(&specs).unwrap();
        let again = parse_rules("again", &text).unwrap();
        assert_eq!(specs, again);
        assert_eq!(specs_to_toml(&again).unwrap(), text);
    }

    #[test]
    fn a_rule_in_a_hand_written_file_is_rewritten_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("10-hand.toml");
        let text = "# top comment\n[[rule]]\nname = \"x\" # inline\nkind = \"exec\"\naction = \"deny\"\nbinary = \"/x\"\n\n# about y\n[[rule]]\nname = \"y\"\nkind = \"exec\"\naction = \"deny\"\nbinary = \"/y\"\n\n[lockdown]\nexec = [\"/bin/true\"]\n";
        std::fs::write(&file, text).unwrap();
        let mut spec = parse_rules("t", text).unwrap().remove(0);
        spec.insert("binary".into(), json!(["/x2"]));
        rewrite_in_file(dir.path(), &file, "x", Some(&spec)).unwrap();
        let now = std::fs::read_to_string(&file).unwrap();
        assert!(
            now.starts_with("# top comment\n[[rule]]\nname = 'x'"),
            "{now}"
        );
        assert!(
            now.contains("binary = ['/x2']\n\n# about y\n[[rule]]\nname = \"y\""),
            "{now}"
        );
        rewrite_in_file(dir.path(), &file, "y", None).unwrap();
        let now = std::fs::read_to_string(&file).unwrap();
        assert!(
            now.ends_with("# about y\n[lockdown]\nexec = [\"/bin/true\"]\n"),
            "{now}"
        );
        let names: Vec<String> = parse_rules("t", &now)
            .unwrap()
            .iter()
            .map(|s| s["name"].to_string())
            .collect();
        assert_eq!(names, vec!["\"x\"".to_string()]);
        assert!(rewrite_in_file(dir.path(), &file, "nope", None).is_err());
    }

    #[test]
    fn agent_globs_match_like_rules() {
        assert!(agent_glob_matches("test*", "testagent"));
        assert!(!agent_glob_matches("claude", "testagent"));
        assert!(agent_glob_matches("it's", "it's"));
    }

    #[test]
    fn bad_keys_are_refused() {
        let mut spec = Map::new();
        spec.insert("na me".into(), json!(1));
        assert!(spec_to_toml(&spec).is_err());
    }
}
