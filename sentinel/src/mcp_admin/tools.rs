//! The 36 `sentinel_*` tools: their definitions (name, description, input
//! schema) and what each does. Rules edit the admin policy file and reload
//! the daemon; monitor, policy and quarantine talk to the daemon over the
//! control socket; audit and alerts read (and, for acknowledgements and
//! webhooks, write) the database directly. A tool that nothing real backs
//! says so as a tool error instead of returning made-up data.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sentinel_anomaly::baseline::BaselineStore;
use sentinel_anomaly::{
    webhook, Alert, AlertConfig, AlertFilter, AlertManager, AlertStatus, ScorerConfig, Severity,
    WebhookConfig,
};
use sentinel_audit::{AuditLog, AuditReader, Body, Event, QueryFilter, Retention};
use sentinel_policy::{
    dry_run, homes_from_passwd, parse_net, Action, AnomalyThresholds, Decision, Mode, Object,
    Policy, QuarantineTarget,
};
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

use super::rules;
use super::Context;
use crate::clock::rfc3339;
use crate::control::{self, ClientError, Request};

type Outcome = Result<Value, String>;

/// (name, description, input schema properties, required keys)
struct Def {
    name: &'static str,
    description: &'static str,
    properties: fn() -> Value,
    required: &'static [&'static str],
}

fn none() -> Value {
    json!({})
}

fn rule_props() -> Value {
    json!({
        "name": {"type": "string", "description": "unique rule name"},
        "kind": {"type": "string", "enum": ["exec", "open", "connect", "mcp"]},
        "action": {"type": "string", "enum": ["allow", "deny", "ask", "log-only"]},
        "priority": {"type": "integer", "description": "lower first (default 100)"},
        "enabled": {"type": "boolean"},
        "risk": {"type": "integer", "minimum": 0, "maximum": 100},
        "reason": {"type": "string"},
        "agent": {"type": "array", "items": {"type": "string"}, "description": "agent name globs"},
        "binary": {"type": "array", "items": {"type": "string"}, "description": "exec: path globs"},
        "args": {"type": "string", "description": "exec/mcp: regex on argv or canonical JSON arguments"},
        "path": {"type": "array", "items": {"type": "string"}, "description": "open: path globs"},
        "write": {"type": "boolean", "description": "open: only writes (true) or reads (false)"},
        "addr": {"type": "array", "items": {"type": "string"}, "description": "connect: IPs or CIDRs"},
        "port": {"type": ["integer", "string"], "description": "connect: 443 or \"8000-8999\""},
        "tool": {"type": "array", "items": {"type": "string"}, "description": "mcp: tool name globs"},
        "server": {"type": "array", "items": {"type": "string"}, "description": "mcp: server name globs"},
        "rate_limit": {"type": "object", "properties": {"max": {"type": "integer"}, "per_seconds": {"type": "integer"}}},
        "schedule": {"type": "object", "properties": {"days": {"type": "array", "items": {"type": "string"}}, "start": {"type": "string"}, "end": {"type": "string"}, "tz": {"type": "string"}}}
    })
}

fn update_props() -> Value {
    json!({
        "name": {"type": "string", "description": "the rule to change"},
        "changes": {"type": "object", "description": "keys to set (as in sentinel_rules_create); null removes a key"}
    })
}

fn name_prop() -> Value {
    json!({"name": {"type": "string"}})
}

fn list_props() -> Value {
    json!({"kind": {"type": "string", "enum": ["exec", "open", "connect", "mcp"]}, "file": {"type": "string", "description": "only rules from files whose name contains this"}})
}

fn test_props() -> Value {
    json!({
        "kind": {"type": "string", "enum": ["exec", "open", "connect", "mcp"]},
        "binary": {"type": "string"}, "argv": {"type": "array", "items": {"type": "string"}},
        "path": {"type": "string"}, "write": {"type": "boolean"},
        "addr": {"type": "string"}, "port": {"type": "integer"},
        "tool": {"type": "string"}, "server": {"type": "string"}, "arguments": {"type": "object"},
        "agent": {"type": "string"}, "uid": {"type": "integer"},
        "against": {"type": "string", "enum": ["daemon", "files"], "description": "the running engine (default) or the policy files on disk"}
    })
}

fn import_props() -> Value {
    json!({
        "toml": {"type": "string", "description": "[[rule]] tables, e.g. from sentinel_rules_export"},
        "replace": {"type": "boolean", "description": "replace every admin-managed rule instead of merging"}
    })
}

fn export_props() -> Value {
    json!({"names": {"type": "array", "items": {"type": "string"}}, "admin_only": {"type": "boolean", "description": "only the rules the tools manage"}})
}

fn live_props() -> Value {
    json!({"after_seq": {"type": "integer", "description": "only records after this seq (poll with next_after_seq)"}, "limit": {"type": "integer", "default": 50}, "kind": {"type": "string"}})
}

fn window_props() -> Value {
    json!({"hours": {"type": "number", "default": 24, "description": "look back this many hours"}, "limit": {"type": "integer", "default": 20}})
}

fn bandwidth_props() -> Value {
    let mut p = window_props();
    p["limit"] = json!({"type": "integer", "default": 20, "description": "hosts listed per agent"});
    p["agent"] = json!({"type": "string", "description": "one agent; omit for all"});
    p
}

fn mode_props() -> Value {
    json!({"set": {"type": "string", "enum": ["silent-allow", "alert", "silent-deny", "lockdown"], "description": "switch to this mode; omit to read it"}})
}

fn filter_props() -> Value {
    json!({
        "since": {"type": "string", "description": "RFC 3339"}, "until": {"type": "string", "description": "RFC 3339"},
        "hours": {"type": "number", "description": "since this many hours ago"},
        "kind": {"type": "string"}, "agent": {"type": "string"},
        "verdict": {"type": "string", "enum": ["allow", "deny", "ask", "log-only"]}, "rule": {"type": "string"},
        "limit": {"type": "integer", "default": 100}
    })
}

fn tail_props() -> Value {
    json!({"lines": {"type": "integer", "default": 20}})
}

fn export_audit_props() -> Value {
    let mut p = filter_props();
    p["format"] = json!({"type": "string", "enum": ["jsonl", "cef"], "default": "jsonl"});
    p["out"] = json!({"type": "string", "description": "write to this file (created 0600) instead of returning the text"});
    p
}

fn retention_props() -> Value {
    json!({"older_than_days": {"type": "number"}, "keep_last": {"type": "integer"}, "apply": {"type": "boolean", "description": "remove records now (needs the daemon stopped); without it, only report"}})
}

fn thresholds_props() -> Value {
    json!({"suspicious": {"type": "integer"}, "anomalous": {"type": "integer"}, "critical": {"type": "integer"}, "auto_lockdown": {"type": "integer"}})
}

fn agent_prop() -> Value {
    json!({"agent": {"type": "string", "description": "one agent; omit for all"}})
}

fn alerts_list_props() -> Value {
    json!({"status": {"type": "string", "enum": ["active", "acknowledged", "resolved"]}, "limit": {"type": "integer", "default": 50}})
}

fn ack_props() -> Value {
    json!({"id": {"type": "integer"}, "resolve": {"type": "boolean", "description": "resolve instead of acknowledge"}})
}

fn webhook_props() -> Value {
    json!({
        "url": {"type": "string", "description": "http://host[:port]/path"}, "backup": {"type": "string"},
        "min_severity": {"type": "string", "enum": ["info", "warning", "critical"]},
        "retries": {"type": "integer"}, "backoff_ms": {"type": "integer"},
        "clear": {"type": "boolean", "description": "stop posting alerts"}
    })
}

fn history_props() -> Value {
    json!({"hours": {"type": "number", "description": "only alerts created in the last hours"}, "limit": {"type": "integer", "default": 200}})
}

fn quarantine_props(what: &'static str) -> fn() -> Value {
    match what {
        "host" => {
            || json!({"addr": {"type": "string", "description": "IP or CIDR"}, "expires_in_seconds": {"type": "integer"}, "reason": {"type": "string"}})
        }
        "tool" => {
            || json!({"tool": {"type": "string", "description": "tool name glob"}, "expires_in_seconds": {"type": "integer"}, "reason": {"type": "string"}})
        }
        _ => {
            || json!({"agent": {"type": "string", "description": "agent name glob"}, "expires_in_seconds": {"type": "integer"}, "reason": {"type": "string"}})
        }
    }
}

fn lift_props() -> Value {
    json!({"type": {"type": "string", "enum": ["host", "tool", "agent", "binary", "path"]}, "pattern": {"type": "string"}})
}

const fn def(
    name: &'static str,
    description: &'static str,
    properties: fn() -> Value,
    required: &'static [&'static str],
) -> Def {
    Def {
        name,
        description,
        properties,
        required,
    }
}

fn defs() -> Vec<Def> {
    vec![
        def("sentinel_rules_create", "Create a policy rule (keys as in the policy files) in the admin-managed file; the whole policy is validated first, then the daemon reloads it.", rule_props, &["name", "kind", "action"]),
        def("sentinel_rules_update", "Change keys of a rule (in a hand-written file only its own [[rule]] table is rewritten); validated, then the daemon reloads.", update_props, &["name", "changes"]),
        def("sentinel_rules_delete", "Delete a rule (in a hand-written file only its own [[rule]] table is removed); validated, then the daemon reloads.", name_prop, &["name"]),
        def("sentinel_rules_list", "Every rule of the policy in evaluation order, with the file it comes from and whether it is in the admin-managed file.", list_props, &[]),
        def("sentinel_rules_test", "Dry-run one action: the verdict the running engine (or the policy files) would give it.", test_props, &["kind"]),
        def("sentinel_rules_import", "Import [[rule]] tables (e.g. from sentinel_rules_export) into the admin-managed file; validated, then reloaded.", import_props, &["toml"]),
        def("sentinel_rules_export", "Export rules as [[rule]] TOML tables that sentinel_rules_import takes back unchanged.", export_props, &[]),
        def("sentinel_monitor_live", "The newest events from the audit chain (poll with after_seq).", live_props, &[]),
        def("sentinel_monitor_stats", "The daemon's counters: events seen, emitted, lost, kernel decisions, sinks, audit writer.", none, &[]),
        def("sentinel_monitor_top_tools", "MCP tools called most in a time window, with verdict counts.", window_props, &[]),
        def("sentinel_monitor_hosts", "Hosts (address:port) agents connected to in a time window, with verdict counts.", window_props, &[]),
        def("sentinel_monitor_bandwidth", "Bytes and packets sent and received per agent in a time window, and the hosts they went to (IP packets of the agents' sockets, counted in the kernel).", bandwidth_props, &[]),
        def("sentinel_monitor_mode", "Read or switch the daemon's mode (recorded in the audit chain).", mode_props, &[]),
        def("sentinel_audit_query", "Audit records matching filters, oldest first.", filter_props, &[]),
        def("sentinel_audit_tail", "The newest audit records.", tail_props, &[]),
        def("sentinel_audit_stats", "Audit record counts by kind, verdict and rule.", filter_props, &[]),
        def("sentinel_audit_verify", "Verify the hash chain, seals and anchor of the audit trail.", none, &[]),
        def("sentinel_audit_export", "Export audit records as JSONL or CEF.", export_audit_props, &[]),
        def("sentinel_approvals_list", "Pending MCP approvals: asks with the tool, server, agent and the arguments they bind (credentials redacted), and tool pins with the definition. Approve one with `sentinel approve ID`.", none, &[]),
        def("sentinel_audit_retention", "Report the retained range of the audit trail, or remove old records (sealed checkpoint kept) with apply.", retention_props, &[]),
        def("sentinel_policy_status", "The running policy: mode, files, rules, what the kernel decides, quarantines, thresholds, circuit breakers.", none, &[]),
        def("sentinel_policy_baseline", "What the anomaly scorer has learned per agent (samples, error rates, busiest action keys).", agent_prop, &[]),
        def("sentinel_policy_thresholds", "Read or set the engine's anomaly score thresholds.", thresholds_props, &[]),
        def("sentinel_policy_schedule", "Rules with a schedule and whether each is in force now.", none, &[]),
        def("sentinel_policy_agent_trust", "Per watched agent: quarantine, baseline maturity, denials and alerts in the last 24 h, and the trust level they add up to.", agent_prop, &[]),
        def("sentinel_policy_report", "A posture report: mode, policy, quarantines, verdicts and top rules over a window, open alerts, audit integrity.", window_props, &[]),
        def("sentinel_alerts_list", "Alerts, newest first (default: active ones).", alerts_list_props, &[]),
        def("sentinel_alerts_acknowledge", "Acknowledge (or resolve) an alert.", ack_props, &["id"]),
        def("sentinel_alerts_configure_webhooks", "Show, set or clear the alert webhook (Slack-compatible JSON).", webhook_props, &[]),
        def("sentinel_alerts_test", "Post a test alert to the configured webhook and report which URL took it.", none, &[]),
        def("sentinel_alerts_history", "Every alert in every status, newest first.", history_props, &[]),
        def("sentinel_quarantine_host", "Block connects to an address or network for every watched agent (in the kernel).", quarantine_props("host"), &["addr"]),
        def("sentinel_quarantine_tool", "Block MCP calls of matching tools on every server.", quarantine_props("tool"), &["tool"]),
        def("sentinel_quarantine_agent", "Block every action of matching agents.", quarantine_props("agent"), &["agent"]),
        def("sentinel_quarantine_list", "Active quarantines.", none, &[]),
        def("sentinel_quarantine_lift", "Lift a quarantine.", lift_props, &["type", "pattern"]),
    ]
}

pub fn definitions() -> Vec<Value> {
    defs()
        .into_iter()
        .map(|d| {
            json!({
                "name": d.name,
                "description": d.description,
                "inputSchema": {"type": "object", "properties": (d.properties)(), "required": d.required},
            })
        })
        .collect()
}

pub fn exists(name: &str) -> bool {
    defs().iter().any(|d| d.name == name)
}

pub fn call(ctx: &Context, name: &str, a: &Value) -> Outcome {
    match name {
        "sentinel_rules_create" => rules_create(ctx, a),
        "sentinel_rules_update" => rules_update(ctx, a),
        "sentinel_rules_delete" => rules_delete(ctx, a),
        "sentinel_rules_list" => rules_list(ctx, a),
        "sentinel_rules_test" => rules_test(ctx, a),
        "sentinel_rules_import" => rules_import(ctx, a),
        "sentinel_rules_export" => rules_export(ctx, a),
        "sentinel_monitor_live" => monitor_live(ctx, a),
        "sentinel_monitor_stats" => monitor_stats(ctx),
        "sentinel_monitor_top_tools" => monitor_top(ctx, a, "mcp_call"),
        "sentinel_monitor_hosts" => monitor_top(ctx, a, "connect"),
        "sentinel_monitor_bandwidth" => monitor_bandwidth(ctx, a),
        "sentinel_monitor_mode" => monitor_mode(ctx, a),
        "sentinel_audit_query" => audit_query(ctx, a),
        "sentinel_audit_tail" => audit_tail(ctx, a),
        "sentinel_audit_stats" => audit_stats(ctx, a),
        "sentinel_audit_verify" => audit_verify(ctx),
        "sentinel_audit_export" => audit_export(ctx, a),
        "sentinel_approvals_list" => {
            let text =
                sentinel_mcp::store::list_pending(&ctx.db, true, std::time::SystemTime::now())
                    .map_err(|e| e.to_string())?;
            serde_json::from_str::<Value>(&text)
                .map(|pending| json!({"pending": pending}))
                .map_err(|e| e.to_string())
        }
        "sentinel_audit_retention" => audit_retention(ctx, a),
        "sentinel_policy_status" => policy_status(ctx),
        "sentinel_policy_baseline" => policy_baseline(ctx, a),
        "sentinel_policy_thresholds" => policy_thresholds(ctx, a),
        "sentinel_policy_schedule" => policy_schedule(ctx),
        "sentinel_policy_agent_trust" => policy_agent_trust(ctx, a),
        "sentinel_policy_report" => policy_report(ctx, a),
        "sentinel_alerts_list" => alerts_list(ctx, a, false),
        "sentinel_alerts_acknowledge" => alerts_ack(ctx, a),
        "sentinel_alerts_configure_webhooks" => alerts_webhook(ctx, a),
        "sentinel_alerts_test" => alerts_test(ctx),
        "sentinel_alerts_history" => alerts_list(ctx, a, true),
        "sentinel_quarantine_host" => quarantine_add(ctx, a, "host"),
        "sentinel_quarantine_tool" => quarantine_add(ctx, a, "tool"),
        "sentinel_quarantine_agent" => quarantine_add(ctx, a, "agent"),
        "sentinel_quarantine_list" => daemon(ctx, &Request::QuarantineList).map(strip_ok),
        "sentinel_quarantine_lift" => quarantine_lift(ctx, a),
        other => Err(format!("unknown tool `{other}`")),
    }
}

// ---- arguments ----

fn s<'a>(a: &'a Value, key: &str) -> Option<&'a str> {
    a.get(key).and_then(Value::as_str)
}

fn req_str<'a>(a: &'a Value, key: &str) -> Result<&'a str, String> {
    s(a, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("argument `{key}` (a string) is required"))
}

fn uint(a: &Value, key: &str) -> Result<Option<u64>, String> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| format!("argument `{key}` must be a non-negative integer")),
    }
}

fn number(a: &Value, key: &str) -> Result<Option<f64>, String> {
    match a.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(Some)
            .ok_or_else(|| format!("argument `{key}` must be a non-negative number")),
    }
}

fn limit(a: &Value, default: u64, max: u64) -> Result<usize, String> {
    Ok(uint(a, "limit")?.unwrap_or(default).min(max) as usize)
}

fn strip_ok(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("ok");
    }
    v
}

fn hours_ago(hours: f64) -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::seconds_f64(hours * 3600.0)
}

// ---- the daemon ----

enum DaemonError {
    NotRunning(String),
    Refused(String),
}

fn ask(ctx: &Context, request: &Request) -> Result<Value, DaemonError> {
    match control::call(&ctx.state_dir, request) {
        Ok(v) if v["ok"] == true => Ok(v),
        Ok(v) => Err(DaemonError::Refused(
            v["error"]
                .as_str()
                .unwrap_or("the daemon refused the request")
                .to_string(),
        )),
        Err(e @ ClientError::NotRunning { .. }) => Err(DaemonError::NotRunning(e.to_string())),
        Err(e) => Err(DaemonError::Refused(e.to_string())),
    }
}

fn daemon(ctx: &Context, request: &Request) -> Outcome {
    ask(ctx, request).map_err(|e| match e {
        DaemonError::NotRunning(m) | DaemonError::Refused(m) => m,
    })
}

// ---- the policy directory ----

enum PolicySource {
    Dir(PathBuf),
    Embedded,
}

/// The `--policy DIR` the daemon runs from: mcp-admin's own `--policy`,
/// else what the running daemon reports in its status.
fn policy_source(ctx: &Context) -> Result<PolicySource, String> {
    if let Some(dir) = &ctx.policy {
        return Ok(PolicySource::Dir(dir.clone()));
    }
    let status = daemon(ctx, &Request::Status).map_err(|e| {
        format!("{e}; or pass `--policy DIR` to `sentinel mcp-admin` to manage the files directly")
    })?;
    Ok(match status["policy_dir"].as_str() {
        Some(dir) => PolicySource::Dir(PathBuf::from(dir)),
        None => PolicySource::Embedded,
    })
}

fn editable_dir(ctx: &Context) -> Result<PathBuf, String> {
    match policy_source(ctx)? {
        PolicySource::Dir(d) => Ok(d),
        PolicySource::Embedded => Err("the daemon runs the embedded default policy, which is read-only; restart it with `sentinel run --policy DIR` (e.g. a copy of policies/) to manage rules".into()),
    }
}

fn load_policy(ctx: &Context) -> Result<(Policy, Option<PathBuf>), String> {
    match policy_source(ctx)? {
        PolicySource::Dir(d) => Policy::load_dir(&d)
            .map(|p| (p, Some(d)))
            .map_err(|e| e.to_string()),
        PolicySource::Embedded => Ok((Policy::embedded_defaults(), None)),
    }
}

/// Writes the admin file and asks the daemon to load the directory.
fn apply(ctx: &Context, dir: &Path, specs: &[Map<String, Value>], summary: Value) -> Outcome {
    let policy = rules::write_admin(dir, specs)?;
    reload(ctx, dir, &rules::admin_path(dir), &policy, summary)
}

/// Asks the daemon to load `dir` after `file` was rewritten.
fn reload(ctx: &Context, dir: &Path, file: &Path, policy: &Policy, summary: Value) -> Outcome {
    let mut out = summary;
    out["file"] = json!(file);
    out["rules_in_policy"] = json!(policy.rules().len());
    match ask(
        ctx,
        &Request::Reload {
            dir: dir.to_path_buf(),
        },
    ) {
        Ok(v) => {
            out["daemon"] = json!({"reloaded": true, "decided_in_kernel": v["decided_in_kernel"], "decided_in_userspace": v["decided_in_userspace"]});
        }
        Err(DaemonError::NotRunning(_)) => {
            out["daemon"] = json!({"reloaded": false, "note": "the daemon is not running; it loads the directory when started"});
        }
        Err(DaemonError::Refused(e)) => {
            return Err(format!(
                "written to {} but the daemon kept its old policy: {e}",
                file.display()
            ))
        }
    }
    Ok(out)
}

fn rule_name(spec: &Map<String, Value>) -> &str {
    spec.get("name").and_then(Value::as_str).unwrap_or("")
}

/// Updates (`Some(changes)`) or deletes a rule that lives in a file of
/// the directory other than the admin file, rewriting only its table.
fn edit_elsewhere(
    ctx: &Context,
    dir: &Path,
    name: &str,
    changes: Option<&Map<String, Value>>,
) -> Outcome {
    let policy = Policy::load_dir(dir).map_err(|e| e.to_string())?;
    let rule = policy
        .rules()
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| format!("no rule named `{name}`"))?;
    let file = PathBuf::from(&rule.file);
    let replacement = changes.map(|changes| {
        let mut spec = rules::rule_to_spec(rule);
        merge(&mut spec, changes);
        spec
    });
    let after = rules::rewrite_in_file(dir, &file, name, replacement.as_ref())?;
    let summary = match &replacement {
        Some(spec) => json!({"updated": name, "name": rule_name(spec)}),
        None => json!({"deleted": name}),
    };
    reload(ctx, dir, &file, &after, summary)
}

fn merge(spec: &mut Map<String, Value>, changes: &Map<String, Value>) {
    for (k, v) in changes {
        if v.is_null() {
            spec.remove(k);
        } else {
            spec.insert(k.clone(), v.clone());
        }
    }
}

// ---- rules ----

fn rules_create(ctx: &Context, a: &Value) -> Outcome {
    let dir = editable_dir(ctx)?;
    let _lock = rules::lock_dir(&dir)?;
    let spec = a
        .as_object()
        .cloned()
        .ok_or("the arguments must be an object")?;
    let name = req_str(a, "name")?.to_string();
    let mut specs = rules::read_admin(&dir)?;
    if specs.iter().any(|s| rule_name(s) == name) {
        return Err(format!(
            "rule `{name}` already exists; change it with sentinel_rules_update"
        ));
    }
    specs.push(spec);
    apply(ctx, &dir, &specs, json!({"created": name}))
}

fn rules_update(ctx: &Context, a: &Value) -> Outcome {
    let dir = editable_dir(ctx)?;
    let _lock = rules::lock_dir(&dir)?;
    let name = req_str(a, "name")?;
    let changes = a
        .get("changes")
        .and_then(Value::as_object)
        .ok_or("argument `changes` (an object) is required")?;
    let mut specs = rules::read_admin(&dir)?;
    let Some(spec) = specs.iter_mut().find(|s| rule_name(s) == name) else {
        return edit_elsewhere(ctx, &dir, name, Some(changes));
    };
    merge(spec, changes);
    let new_name = rule_name(spec).to_string();
    apply(
        ctx,
        &dir,
        &specs,
        json!({"updated": name, "name": new_name}),
    )
}

fn rules_delete(ctx: &Context, a: &Value) -> Outcome {
    let dir = editable_dir(ctx)?;
    let _lock = rules::lock_dir(&dir)?;
    let name = req_str(a, "name")?;
    let mut specs = rules::read_admin(&dir)?;
    let before = specs.len();
    specs.retain(|s| rule_name(s) != name);
    if specs.len() == before {
        return edit_elsewhere(ctx, &dir, name, None);
    }
    apply(ctx, &dir, &specs, json!({"deleted": name}))
}

fn rules_list(ctx: &Context, a: &Value) -> Outcome {
    let (policy, dir) = load_policy(ctx)?;
    let admin = dir.as_deref().map(rules::admin_path);
    let kind = s(a, "kind");
    let file = s(a, "file");
    let list: Vec<Value> = rules::list(&policy)
        .into_iter()
        .filter(|(f, spec)| {
            kind.is_none_or(|k| spec["kind"] == k) && file.is_none_or(|x| f.contains(x))
        })
        .map(|(f, spec)| {
            let managed = admin.as_ref().is_some_and(|p| Path::new(&f) == p.as_path());
            json!({"file": f, "admin_managed": managed, "editable": dir.is_some(), "rule": spec})
        })
        .collect();
    Ok(json!({
        "policy_dir": dir,
        "embedded_defaults": dir.is_none(),
        "count": list.len(),
        "rules": list,
    }))
}

fn test_action(a: &Value) -> Result<Action, String> {
    let kind = req_str(a, "kind")?;
    let object = match kind {
        "exec" => {
            let binary = req_str(a, "binary")?.to_string();
            let argv = match a.get("argv") {
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|_| "argument `argv` must be a list of strings")?,
                None => vec![binary.clone()],
            };
            Object::Exec { binary, argv }
        }
        "open" => Object::Open {
            path: req_str(a, "path")?.to_string(),
            write: a.get("write").and_then(Value::as_bool).unwrap_or(false),
        },
        "connect" => Object::Connect {
            addr: req_str(a, "addr")?
                .parse::<IpAddr>()
                .map_err(|_| "argument `addr` must be an IP address")?,
            port: uint(a, "port")?
                .ok_or("argument `port` is required")?
                .try_into()
                .map_err(|_| "argument `port` must be at most 65535")?,
        },
        "mcp" => Object::Mcp {
            server: s(a, "server").unwrap_or("").to_string(),
            tool: req_str(a, "tool")?.to_string(),
            args: a.get("arguments").cloned().unwrap_or(json!({})),
        },
        other => {
            return Err(format!(
                "unknown kind `{other}`: exec, open, connect or mcp"
            ))
        }
    };
    Ok(Action {
        agent: s(a, "agent").map(str::to_string),
        uid: uint(a, "uid")?
            .unwrap_or(0)
            .try_into()
            .map_err(|_| "argument `uid` is too large")?,
        pid: 0,
        object,
    })
}

fn rules_test(ctx: &Context, a: &Value) -> Outcome {
    let action = test_action(a)?;
    let against = s(a, "against").unwrap_or("daemon");
    if against == "daemon" {
        let v = daemon(ctx, &Request::Evaluate { action })?;
        return Ok(
            json!({"against": "the running engine", "mode": v["mode"], "verdict": v["verdict"]}),
        );
    }
    let (policy, dir) = load_policy(ctx)?;
    let mode = match ask(ctx, &Request::ModeGet) {
        Ok(v) => serde_json::from_value(v["mode"].clone()).unwrap_or_default(),
        Err(_) => Mode::default(),
    };
    let homes = homes_from_passwd(Path::new("/etc/passwd")).unwrap_or_default();
    let verdict = dry_run(policy, &action, mode, homes, SystemTime::now());
    Ok(
        json!({"against": dir.map_or("the embedded defaults".to_string(), |d| d.display().to_string()), "mode": mode, "verdict": verdict}),
    )
}

fn rules_import(ctx: &Context, a: &Value) -> Outcome {
    let dir = editable_dir(ctx)?;
    let _lock = rules::lock_dir(&dir)?;
    let text = req_str(a, "toml")?;
    let imported = rules::parse_rules("import", text)?;
    let replace = a.get("replace").and_then(Value::as_bool).unwrap_or(false);
    let admin = rules::admin_path(&dir);
    let (policy, _) = load_policy(ctx)?;
    let elsewhere: BTreeMap<String, Map<String, Value>> = rules::list(&policy)
        .into_iter()
        .filter(|(f, _)| Path::new(f) != admin.as_path())
        .map(|(_, spec)| (rule_name(&spec).to_string(), spec))
        .collect();
    let mut specs = if replace {
        Vec::new()
    } else {
        rules::read_admin(&dir)?
    };
    let (mut added, mut replaced, mut unchanged) = (Vec::new(), Vec::new(), Vec::new());
    for spec in imported {
        let name = rule_name(&spec).to_string();
        if let Some(existing) = elsewhere.get(&name) {
            if *existing == spec {
                unchanged.push(name);
                continue;
            }
            return Err(format!("rule `{name}` already exists, differently, in a file these tools do not rewrite; rename it or edit that file"));
        }
        match specs.iter_mut().find(|s| rule_name(s) == name) {
            Some(slot) => {
                *slot = spec;
                replaced.push(name);
            }
            None => {
                specs.push(spec);
                added.push(name);
            }
        }
    }
    apply(
        ctx,
        &dir,
        &specs,
        json!({"added": added, "replaced": replaced, "unchanged_elsewhere": unchanged}),
    )
}

fn rules_export(ctx: &Context, a: &Value) -> Outcome {
    let (policy, dir) = load_policy(ctx)?;
    let admin = dir.as_deref().map(rules::admin_path);
    let admin_only = a
        .get("admin_only")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let names: Option<Vec<String>> = match a.get("names") {
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|_| "argument `names` must be a list of strings")?,
        ),
        None => None,
    };
    let specs: Vec<Map<String, Value>> = rules::list(&policy)
        .into_iter()
        .filter(|(f, _)| !admin_only || admin.as_ref().is_some_and(|p| Path::new(f) == p.as_path()))
        .filter(|(_, spec)| {
            names
                .as_ref()
                .is_none_or(|n| n.iter().any(|x| x == rule_name(spec)))
        })
        .map(|(_, spec)| spec)
        .collect();
    if let Some(n) = &names {
        for wanted in n {
            if !specs.iter().any(|s| rule_name(s) == wanted) {
                return Err(format!("no rule named `{wanted}` to export"));
            }
        }
    }
    Ok(json!({"count": specs.len(), "toml": rules::specs_to_toml(&specs)?}))
}

// ---- monitor ----

fn reader(ctx: &Context) -> Result<AuditReader, String> {
    if !ctx.db.exists() {
        return Err(format!(
            "no audit database at {}; pass --db FILE to `sentinel mcp-admin`",
            ctx.db.display()
        ));
    }
    AuditReader::open(&ctx.db).map_err(|e| e.to_string())
}

fn events_json(events: &[Event]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect()
}

fn monitor_live(ctx: &Context, a: &Value) -> Outcome {
    let after = uint(a, "after_seq")?;
    let limit = limit(a, 50, 1000)?;
    let kind = s(a, "kind");
    let reader = reader(ctx)?;
    let mut events = reader.tail(5000).map_err(|e| e.to_string())?;
    let newest = events.last().map(|e| e.seq);
    events.retain(|e| after.is_none_or(|s| e.seq > s) && kind.is_none_or(|k| e.kind() == k));
    let skip = events.len().saturating_sub(limit);
    let events = &events[skip..];
    Ok(json!({
        "events": events_json(events),
        "next_after_seq": newest.or(after),
    }))
}

fn monitor_stats(ctx: &Context) -> Outcome {
    let v = daemon(ctx, &Request::Status)?;
    Ok(json!({
        "pid": v["pid"], "mode": v["mode"], "watched_uids": v["watched_uids"], "agents": v["agents"],
        "attached_programs": v["attached"].as_array().map_or(0, Vec::len),
        "enforcement": v["enforcement"], "events": v["events"],
        "kernel_decisions": v["kernel_decisions"], "sinks": v["sinks"], "audit": v["audit"],
        "pending_approvals": v["approvals"].as_array().map_or(0, Vec::len),
    }))
}

fn verdict_name(e: &Event) -> String {
    e.verdict
        .as_ref()
        .and_then(|v| serde_json::to_value(v.action).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "none".into())
}

fn monitor_bandwidth(ctx: &Context, a: &Value) -> Outcome {
    let request = Request::Bandwidth {
        hours: number(a, "hours")?.unwrap_or(24.0),
        agent: s(a, "agent").map(str::to_string),
        limit: limit(a, 20, 1000)?,
    };
    daemon(ctx, &request).map(strip_ok)
}

fn monitor_top(ctx: &Context, a: &Value, kind: &str) -> Outcome {
    let hours = number(a, "hours")?.unwrap_or(24.0);
    let limit = limit(a, 20, 1000)?;
    let reader = reader(ctx)?;
    let filter = QueryFilter {
        since: Some(hours_ago(hours)),
        kind: Some(kind.into()),
        ..QueryFilter::default()
    };
    // One MCP call leaves a decision record (outcome forwarded, denied or
    // ask, with the verdict) and follow-ups (started, result, error, ...):
    // calls and verdicts count decision records, outcomes the follow-ups.
    #[derive(Default)]
    struct Tally {
        count: u64,
        verdicts: BTreeMap<String, u64>,
        agents: BTreeMap<String, u64>,
        outcomes: BTreeMap<String, u64>,
    }
    let mut tally: BTreeMap<String, Tally> = BTreeMap::new();
    reader
        .query_each(&filter, |e| {
            let (key, follow_up) = match &e.body {
                Body::McpCall {
                    server,
                    tool,
                    outcome,
                    ..
                } => {
                    let decision = matches!(
                        outcome.as_deref(),
                        None | Some("forwarded" | "denied" | "ask")
                    );
                    let follow_up = (!decision).then(|| outcome.clone().unwrap_or_default());
                    (format!("{server}/{tool}"), follow_up)
                }
                Body::Connect { addr, port, .. } => (format!("{addr}:{port}"), None),
                _ => return Ok(()),
            };
            let t = tally.entry(key).or_default();
            if let Some(outcome) = follow_up {
                *t.outcomes.entry(outcome).or_default() += 1;
                return Ok(());
            }
            let agent = e
                .process()
                .and_then(|p| p.agent.clone())
                .unwrap_or_else(|| e.process().map_or("?".into(), |p| format!("uid {}", p.uid)));
            t.count += 1;
            *t.verdicts.entry(verdict_name(&e)).or_default() += 1;
            *t.agents.entry(agent).or_default() += 1;
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    let mut rows: Vec<(String, Tally)> = tally.into_iter().collect();
    rows.sort_by(|x, y| y.1.count.cmp(&x.1.count).then(x.0.cmp(&y.0)));
    let label = if kind == "connect" { "host" } else { "tool" };
    let rows: Vec<Value> = rows
        .into_iter()
        .take(limit)
        .map(|(k, t)| {
            let mut row =
                json!({label: k, "count": t.count, "verdicts": t.verdicts, "agents": t.agents});
            if kind != "connect" {
                row["outcomes"] = json!(t.outcomes);
            }
            row
        })
        .collect();
    Ok(json!({"since": rfc3339(hours_ago(hours)), "rows": rows}))
}

fn monitor_mode(ctx: &Context, a: &Value) -> Outcome {
    let request = match s(a, "set") {
        None => Request::ModeGet,
        Some(m) => Request::ModeSet {
            mode: serde_json::from_value(json!(m)).map_err(|_| {
                format!("unknown mode `{m}`: silent-allow, alert, silent-deny or lockdown")
            })?,
        },
    };
    daemon(ctx, &request).map(strip_ok)
}

// ---- audit ----

fn time_arg(a: &Value, key: &str) -> Result<Option<OffsetDateTime>, String> {
    match s(a, key) {
        None => Ok(None),
        Some(t) => OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(Some)
            .map_err(|_| format!("argument `{key}` must be an RFC 3339 time")),
    }
}

fn filter(a: &Value, default_limit: Option<u64>) -> Result<QueryFilter, String> {
    let mut since = time_arg(a, "since")?;
    if let Some(h) = number(a, "hours")? {
        since = Some(hours_ago(h));
    }
    let verdict = match s(a, "verdict") {
        None => None,
        Some(v) => Some(
            serde_json::from_value::<Decision>(json!(v))
                .map_err(|_| format!("unknown verdict `{v}`: allow, deny, ask or log-only"))?,
        ),
    };
    Ok(QueryFilter {
        since,
        until: time_arg(a, "until")?,
        kind: s(a, "kind").map(str::to_string),
        agent: s(a, "agent").map(str::to_string),
        verdict,
        rule: s(a, "rule").map(str::to_string),
        limit: match default_limit {
            Some(d) => Some(limit(a, d, 10_000)?),
            None => uint(a, "limit")?.map(|n| n as usize),
        },
    })
}

fn audit_query(ctx: &Context, a: &Value) -> Outcome {
    let f = filter(a, Some(100))?;
    let events = reader(ctx)?.query(&f).map_err(|e| e.to_string())?;
    Ok(json!({"count": events.len(), "events": events_json(&events)}))
}

fn audit_tail(ctx: &Context, a: &Value) -> Outcome {
    let n = uint(a, "lines")?.unwrap_or(20).min(10_000) as usize;
    let events = reader(ctx)?.tail(n).map_err(|e| e.to_string())?;
    Ok(json!({"count": events.len(), "events": events_json(&events)}))
}

fn audit_stats(ctx: &Context, a: &Value) -> Outcome {
    let f = filter(a, None)?;
    let stats = reader(ctx)?.stats(&f).map_err(|e| e.to_string())?;
    serde_json::to_value(stats).map_err(|e| e.to_string())
}

fn audit_verify(ctx: &Context) -> Outcome {
    if !ctx.db.exists() {
        return Err(format!("no audit database at {}", ctx.db.display()));
    }
    let report = sentinel_audit::verify(&ctx.db, &ctx.state_dir).map_err(|e| e.to_string())?;
    serde_json::to_value(report).map_err(|e| e.to_string())
}

/// Text returned inline is capped; larger exports go to a file.
const EXPORT_INLINE_MAX: usize = 4 << 20;

fn audit_export(ctx: &Context, a: &Value) -> Outcome {
    let format = s(a, "format").unwrap_or("jsonl");
    if format != "jsonl" && format != "cef" {
        return Err(format!("unknown format `{format}`: jsonl or cef"));
    }
    let f = filter(a, None)?;
    let reader = reader(ctx)?;
    let mut text = String::new();
    let mut count = 0u64;
    let mut too_big = false;
    let out_path = s(a, "out").map(PathBuf::from);
    reader
        .query_each(&f, |e| {
            let line = if format == "cef" {
                sentinel_audit::cef::event_line(&e)
            } else {
                serde_json::to_string(&e).unwrap_or_default()
            };
            text.push_str(&line);
            text.push('\n');
            count += 1;
            if out_path.is_none() && text.len() > EXPORT_INLINE_MAX {
                too_big = true;
                return Err(sentinel_audit::AuditError::Io {
                    path: PathBuf::from("export"),
                    source: std::io::Error::other("too big"),
                });
            }
            Ok(())
        })
        .or_else(|e| if too_big { Ok(()) } else { Err(e.to_string()) })?;
    if too_big {
        return Err(format!("the export is larger than {} MiB; pass `out` with a file path, or narrow it with filters", EXPORT_INLINE_MAX >> 20));
    }
    match out_path {
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // A new file only: never truncate what is there, and never
            // follow a symlink someone planted at the path (this runs as
            // root).
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .map_err(|e| {
                    format!(
                        "cannot create {}: {e} (the export writes a new file only: pick a path that does not exist and is not a symlink)",
                        path.display()
                    )
                })?;
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(json!({"format": format, "count": count, "out": path, "bytes": text.len()}))
        }
        None => Ok(json!({"format": format, "count": count, "text": text})),
    }
}

fn audit_retention(ctx: &Context, a: &Value) -> Outcome {
    let stats = reader(ctx)?
        .stats(&QueryFilter::default())
        .map_err(|e| e.to_string())?;
    let mut out = json!({"records": stats.records, "first_seq": stats.first_seq, "last_seq": stats.last_seq, "retained_through": stats.retained_through});
    if !a.get("apply").and_then(Value::as_bool).unwrap_or(false) {
        out["note"] = json!("nothing removed; pass apply with older_than_days or keep_last (the daemon must be stopped: it holds the audit writer)");
        return Ok(out);
    }
    let policy = match (number(a, "older_than_days")?, uint(a, "keep_last")?) {
        (Some(d), None) => Retention::OlderThan(time::Duration::seconds_f64(d * 86400.0)),
        (None, Some(n)) => Retention::KeepLast(n),
        _ => return Err("pass exactly one of older_than_days or keep_last".into()),
    };
    let mut log = AuditLog::open(&ctx.db, &ctx.state_dir).map_err(|e| {
        format!("{e} (retention rewrites the chain's start and needs the writer: stop the daemon first)")
    })?;
    let summary = log.retain(policy).map_err(|e| e.to_string())?;
    out["removed"] = match summary {
        Some(s) => {
            json!({"first_seq": s.first_seq, "last_seq": s.last_seq, "removed": s.removed, "last_hash": s.last_hash})
        }
        None => json!(null),
    };
    Ok(out)
}

// ---- policy ----

fn policy_status(ctx: &Context) -> Outcome {
    let mut v = strip_ok(daemon(ctx, &Request::PolicyInfo)?);
    v["policy_dir"] = match policy_source(ctx) {
        Ok(PolicySource::Dir(d)) => json!(d),
        Ok(PolicySource::Embedded) => json!("embedded defaults (read-only)"),
        Err(e) => json!(e),
    };
    Ok(v)
}

/// The anomaly baselines in the database (never created here: a missing
/// database is an error, not an empty one).
fn baselines_store(ctx: &Context) -> Result<BaselineStore, String> {
    if !ctx.db.exists() {
        return Err(format!(
            "no database at {}; pass --db FILE to `sentinel mcp-admin`",
            ctx.db.display()
        ));
    }
    BaselineStore::open(&ctx.db).map_err(|e| e.to_string())
}

fn policy_baseline(ctx: &Context, a: &Value) -> Outcome {
    let store = baselines_store(ctx)?;
    let baselines = store.load().map_err(|e| e.to_string())?;
    let min = ScorerConfig::default().min_samples;
    let only = s(a, "agent");
    let mut agents = Vec::new();
    let mut names: Vec<&String> = baselines.agents.keys().collect();
    names.sort();
    for name in names {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let b = &baselines.agents[name];
        let mut keys: Vec<(&String, f64, u64)> = baselines
            .keys
            .get(name)
            .map(|m| m.iter().map(|(k, kb)| (k, kb.rate, kb.samples)).collect())
            .unwrap_or_default();
        keys.sort_by(|x, y| y.1.total_cmp(&x.1));
        let top: Vec<Value> = keys
            .iter()
            .take(10)
            .map(|(k, rate, samples)| json!({"key": k, "rate_per_hour": rate, "samples": samples}))
            .collect();
        agents.push(json!({
            "agent": name, "samples": b.samples, "learning": b.samples < min,
            "outcomes": b.outcomes, "error_rate_recent": b.error_recent, "error_rate_baseline": b.error_baseline,
            "action_keys": keys.len(), "busiest_keys": top,
        }));
    }
    if let Some(o) = only {
        if agents.is_empty() {
            return Err(format!("no baseline for agent `{o}` yet"));
        }
    }
    Ok(json!({"min_samples": min, "agents": agents}))
}

fn policy_thresholds(ctx: &Context, a: &Value) -> Outcome {
    let keys = ["suspicious", "anomalous", "critical", "auto_lockdown"];
    if !keys.iter().any(|k| a.get(*k).is_some()) {
        return daemon(ctx, &Request::ThresholdsGet).map(strip_ok);
    }
    let current: AnomalyThresholds =
        serde_json::from_value(daemon(ctx, &Request::ThresholdsGet)?["thresholds"].clone())
            .map_err(|e| e.to_string())?;
    let pick = |k: &str, old: u8| -> Result<u8, String> {
        match uint(a, k)? {
            None => Ok(old),
            Some(v) if v <= 100 => Ok(v as u8),
            Some(_) => Err(format!("`{k}` must be 0-100")),
        }
    };
    let t = AnomalyThresholds {
        suspicious: pick("suspicious", current.suspicious)?,
        anomalous: pick("anomalous", current.anomalous)?,
        critical: pick("critical", current.critical)?,
        auto_lockdown: pick("auto_lockdown", current.auto_lockdown)?,
    };
    daemon(ctx, &Request::ThresholdsSet { thresholds: t }).map(strip_ok)
}

fn policy_schedule(ctx: &Context) -> Outcome {
    let (policy, dir) = load_policy(ctx)?;
    let now = SystemTime::now();
    let rows: Vec<Value> = policy
        .rules()
        .iter()
        .filter_map(|r| {
            let sched = r.schedule.as_ref()?;
            let spec = rules::rule_to_spec(r);
            Some(json!({"rule": r.name, "file": r.file, "enabled": r.enabled, "schedule": spec["schedule"], "in_force_now": r.enabled && sched.contains(now)}))
        })
        .collect();
    Ok(
        json!({"policy_dir": dir, "now": rfc3339(OffsetDateTime::now_utc()), "scheduled_rules": rows, "note": "change a schedule with sentinel_rules_update"}),
    )
}

fn policy_agent_trust(ctx: &Context, a: &Value) -> Outcome {
    let status = daemon(ctx, &Request::Status)?;
    let info = daemon(ctx, &Request::PolicyInfo)?;
    let agents: BTreeMap<String, String> =
        serde_json::from_value(status["agents"].clone()).unwrap_or_default();
    let quarantines = info["quarantines"].as_array().cloned().unwrap_or_default();
    let baselines = baselines_store(ctx)?.load().map_err(|e| e.to_string())?;
    let min = ScorerConfig::default().min_samples;
    let reader = reader(ctx)?;
    let since = hours_ago(24.0);
    let only = s(a, "agent");
    let mut rows = Vec::new();
    for (uid, name) in &agents {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let count = |verdict: Option<Decision>, kind: Option<&str>| -> Result<u64, String> {
            reader
                .stats(&QueryFilter {
                    since: Some(since),
                    agent: Some(name.clone()),
                    verdict,
                    kind: kind.map(str::to_string),
                    ..QueryFilter::default()
                })
                .map(|s| s.records)
                .map_err(|e| e.to_string())
        };
        let denials = count(Some(Decision::Deny), None)?;
        let actions = count(None, None)?;
        let quarantined: Vec<&Value> = quarantines
            .iter()
            .filter(|q| {
                q["target"]["type"] == "agent"
                    && q["target"]["pattern"]
                        .as_str()
                        .is_some_and(|p| rules::agent_glob_matches(p, name))
            })
            .collect();
        let samples = baselines.agents.get(name).map_or(0, |b| b.samples);
        let trust = if !quarantined.is_empty() {
            "quarantined"
        } else if denials > 0 {
            "reduced"
        } else if samples < min {
            "learning"
        } else {
            "normal"
        };
        rows.push(json!({
            "agent": name, "uid": uid.parse::<u64>().ok(), "trust": trust,
            "quarantines": quarantined, "baseline_samples": samples, "baseline_learning": samples < min,
            "actions_24h": actions, "denials_24h": denials,
        }));
    }
    if let Some(o) = only {
        if rows.is_empty() {
            return Err(format!("`{o}` is not a watched agent"));
        }
    }
    Ok(
        json!({"agents": rows, "levels": "quarantined (an agent quarantine matches) > reduced (denials in the last 24 h) > learning (baseline below min_samples) > normal; change it with sentinel_quarantine_agent / sentinel_quarantine_lift"}),
    )
}

fn policy_report(ctx: &Context, a: &Value) -> Outcome {
    let hours = number(a, "hours")?.unwrap_or(24.0);
    let info = strip_ok(daemon(ctx, &Request::PolicyInfo)?);
    let reader = reader(ctx)?;
    let stats = reader
        .stats(&QueryFilter {
            since: Some(hours_ago(hours)),
            ..QueryFilter::default()
        })
        .map_err(|e| e.to_string())?;
    let verify = sentinel_audit::verify(&ctx.db, &ctx.state_dir).map_err(|e| e.to_string())?;
    let alerts = open_alerts(ctx)?
        .list(AlertFilter {
            status: Some(AlertStatus::Active),
            limit: 1000,
        })
        .map_err(|e| e.to_string())?;
    let mut by_rule = stats.by_rule.clone();
    by_rule.sort_by_key(|x| std::cmp::Reverse(x.1));
    by_rule.truncate(10);
    Ok(json!({
        "window": {"since": rfc3339(hours_ago(hours)), "hours": hours},
        "mode": info["mode"],
        "policy": {"files": info["files"], "rules": info["rules"], "enabled_rules": info["enabled_rules"],
                   "decided_in_kernel": info["decided_in_kernel"], "decided_in_userspace": info["decided_in_userspace"]},
        "quarantines": info["quarantines"],
        "thresholds": info["thresholds"],
        "activity": {"records": stats.records, "by_kind": stats.by_kind, "by_verdict": stats.by_verdict, "top_rules": by_rule},
        "alerts": {"active": alerts.len(), "critical": alerts.iter().filter(|x| x.severity == Severity::Critical).count()},
        "audit": {"intact": verify.ok, "records": verify.count, "first_bad": verify.first_bad.map(|(seq, p)| format!("seq {seq}: {p}"))},
    }))
}

// ---- alerts ----

fn open_alerts(ctx: &Context) -> Result<AlertManager, String> {
    if !ctx.db.exists() {
        return Err(format!("no database at {}", ctx.db.display()));
    }
    AlertManager::open(&ctx.db, AlertConfig::default()).map_err(|e| e.to_string())
}

fn alerts_list(ctx: &Context, a: &Value, history: bool) -> Outcome {
    let status = if history {
        None
    } else {
        match s(a, "status") {
            None => Some(AlertStatus::Active),
            Some(x) => Some(
                serde_json::from_value::<AlertStatus>(json!(x)).map_err(|_| {
                    format!("unknown status `{x}`: active, acknowledged or resolved")
                })?,
            ),
        }
    };
    let limit = limit(a, if history { 200 } else { 50 }, 10_000)?;
    let mut alerts: Vec<Alert> = open_alerts(ctx)?
        .list(AlertFilter { status, limit })
        .map_err(|e| e.to_string())?;
    if let Some(h) = number(a, "hours")? {
        let since = SystemTime::now() - Duration::from_secs_f64(h * 3600.0);
        alerts.retain(|x| x.created >= since);
    }
    Ok(json!({"count": alerts.len(), "alerts": alerts}))
}

fn alerts_ack(ctx: &Context, a: &Value) -> Outcome {
    let id = a
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("argument `id` (an integer) is required")?;
    let mut m = open_alerts(ctx)?;
    let by = "operator (sentinel mcp-admin, uid 0)";
    let alert = if a.get("resolve").and_then(Value::as_bool).unwrap_or(false) {
        m.resolve(id, by, SystemTime::now())
    } else {
        m.ack(id, by, SystemTime::now())
    }
    .map_err(|e| e.to_string())?;
    Ok(json!({"alert": alert}))
}

fn webhook_json(c: Option<&WebhookConfig>) -> Value {
    match c {
        None => json!(null),
        Some(c) => {
            json!({"url": c.primary, "backup": c.backup, "min_severity": c.min_severity.as_str(), "retries": c.retries, "backoff_ms": c.backoff.as_millis() as u64})
        }
    }
}

fn alerts_webhook(ctx: &Context, a: &Value) -> Outcome {
    let mut m = open_alerts(ctx)?;
    let note = "the running daemon picks the change up within a second";
    if a.get("clear").and_then(Value::as_bool).unwrap_or(false) {
        m.set_webhook(None).map_err(|e| e.to_string())?;
        return Ok(json!({"webhook": null, "note": note}));
    }
    let Some(url) = s(a, "url") else {
        return Ok(json!({"webhook": webhook_json(m.webhook())}));
    };
    let mut config = WebhookConfig::new(url, s(a, "backup")).map_err(|e| e.to_string())?;
    if let Some(sev) = s(a, "min_severity") {
        config.min_severity = serde_json::from_value(json!(sev))
            .map_err(|_| format!("unknown severity `{sev}`: info, warning or critical"))?;
    }
    if let Some(r) = uint(a, "retries")? {
        config.retries = r.min(20) as u32;
    }
    if let Some(b) = uint(a, "backoff_ms")? {
        config.backoff = Duration::from_millis(b);
    }
    m.set_webhook(Some(config.clone()))
        .map_err(|e| e.to_string())?;
    Ok(json!({"webhook": webhook_json(Some(&config)), "note": note}))
}

fn alerts_test(ctx: &Context) -> Outcome {
    let m = open_alerts(ctx)?;
    let config = m
        .webhook()
        .cloned()
        .ok_or("no alert webhook configured; set one with sentinel_alerts_configure_webhooks")?;
    let now = SystemTime::now();
    let test = Alert {
        id: 0,
        created: now,
        updated: now,
        severity: Severity::Info,
        category: "test".into(),
        reason: "test alert from sentinel mcp-admin".into(),
        related: Vec::new(),
        source: "mcp-admin".into(),
        status: AlertStatus::Active,
        occurrences: 1,
        acknowledged_by: None,
        resolved_by: None,
    };
    let report = webhook::deliver(&config, &webhook::payload(&test, config.format))
        .map_err(|e| e.to_string())?;
    Ok(
        json!({"delivered_to": report.url, "http_status": report.status, "attempts": report.attempts}),
    )
}

// ---- quarantine ----

fn target(kind: &str, pattern: &str) -> Result<QuarantineTarget, String> {
    Ok(match kind {
        "host" => QuarantineTarget::Host(
            parse_net(pattern)
                .ok_or_else(|| format!("`{pattern}` is not an IP address or CIDR"))?,
        ),
        "tool" => QuarantineTarget::Tool(pattern.to_string()),
        "agent" => QuarantineTarget::Agent(pattern.to_string()),
        "binary" => QuarantineTarget::Binary(pattern.to_string()),
        "path" => QuarantineTarget::Path(pattern.to_string()),
        other => {
            return Err(format!(
                "unknown quarantine type `{other}`: host, tool, agent, binary or path"
            ))
        }
    })
}

fn quarantine_add(ctx: &Context, a: &Value, kind: &str) -> Outcome {
    let key = if kind == "host" { "addr" } else { kind };
    let target = target(kind, req_str(a, key)?)?;
    let reason = s(a, "reason")
        .unwrap_or("quarantined by the operator")
        .to_string();
    daemon(
        ctx,
        &Request::QuarantineAdd {
            target,
            expires_in_seconds: uint(a, "expires_in_seconds")?,
            reason,
        },
    )
    .map(strip_ok)
}

fn quarantine_lift(ctx: &Context, a: &Value) -> Outcome {
    let target = target(req_str(a, "type")?, req_str(a, "pattern")?)?;
    daemon(ctx, &Request::QuarantineLift { target }).map(strip_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_five_distinct_tools() {
        let d = definitions();
        assert_eq!(d.len(), 36);
        let names: std::collections::BTreeSet<&str> =
            d.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names.len(), 36);
        assert!(names.iter().all(|n| n.starts_with("sentinel_")));
    }
}
