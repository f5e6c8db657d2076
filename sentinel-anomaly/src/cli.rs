//! `sentinel alerts list|ack|resolve|webhook`: clap types and the runner,
//! working directly on the SQLite database (no daemon needed).
//!
//! Exit codes follow the project contract: 0 success, 2 usage or
//! environment error (unknown id, unreadable database), with one line that
//! says what to do.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand};

use crate::alerts::{
    ack_alert, list_alerts, load_webhook, open_store, resolve_alert, save_webhook, Alert,
    AlertFilter, AlertStatus, Severity,
};
use crate::webhook::{self, WebhookConfig};

/// `sentinel alerts …`
#[derive(Debug, Clone, Args)]
pub struct AlertsArgs {
    #[command(subcommand)]
    pub command: AlertsCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum AlertsCommand {
    /// List alerts, newest first.
    List {
        /// Only alerts in this status (active, acknowledged, resolved).
        #[arg(long)]
        status: Option<AlertStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert: someone is looking at it.
    Ack {
        /// The alert id from `sentinel alerts list`.
        id: i64,
    },
    /// Resolve an alert: it is dealt with.
    Resolve {
        /// The alert id from `sentinel alerts list`.
        id: i64,
    },
    /// Where alerts are posted (operator only: the database is root's).
    #[command(subcommand)]
    Webhook(WebhookCommand),
}

#[derive(Debug, Clone, Subcommand)]
pub enum WebhookCommand {
    /// Post alerts to URL as JSON, with an optional backup.
    Set {
        /// `https://host[:port]/path` (or `http://`)
        url: String,
        /// Tried when every attempt on URL failed.
        #[arg(long)]
        backup: Option<String>,
        /// Lowest severity posted (info, warning, critical).
        #[arg(long, default_value = "warning")]
        min_severity: Severity,
        /// Retries per URL after the first attempt.
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Milliseconds before the first retry (doubled each time).
        #[arg(long, default_value_t = 500)]
        backoff_ms: u64,
        /// CA certificates (PEM) to trust for https:// besides the system's.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<std::path::PathBuf>,
        /// `sentinel` (every field of the alert) or `slack` (text and
        /// blocks, for a Slack incoming webhook).
        #[arg(long, default_value = "sentinel")]
        format: crate::webhook::PayloadFormat,
    },
    /// Stop posting alerts.
    Clear,
    /// Show the webhook configuration.
    Show,
    /// Post a test alert now and report which URL took it.
    Test,
}

/// Runs `cmd` against the database at `db`.
pub fn run(cmd: &AlertsCommand, db: &Path) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match execute(cmd, db, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sentinel alerts: {message}");
            ExitCode::from(2)
        }
    }
}

/// The runner, writing to `out`; errors are the one line to print.
pub fn execute(cmd: &AlertsCommand, db: &Path, out: &mut dyn Write) -> Result<(), String> {
    if !db.exists() {
        return Err(format!(
            "no database at {}; pass --db FILE or start `sentinel run` first",
            db.display()
        ));
    }
    let conn = open_store(db).map_err(|e| e.to_string())?;
    let now = SystemTime::now();
    let io = |e: std::io::Error| format!("cannot write output: {e}");
    match cmd {
        AlertsCommand::List {
            status,
            limit,
            json,
        } => {
            let alerts = list_alerts(
                &conn,
                AlertFilter {
                    status: *status,
                    limit: *limit,
                },
            )
            .map_err(|e| e.to_string())?;
            if *json {
                for alert in &alerts {
                    let line = serde_json::to_string(alert).map_err(|e| e.to_string())?;
                    writeln!(out, "{line}").map_err(io)?;
                }
            } else {
                write_table(&alerts, out).map_err(io)?;
            }
        }
        AlertsCommand::Ack { id } => {
            let alert = ack_alert(&conn, *id, &operator(), now).map_err(|e| e.to_string())?;
            writeln!(out, "alert {} is {}", alert.id, alert.status).map_err(io)?;
        }
        AlertsCommand::Resolve { id } => {
            let alert = resolve_alert(&conn, *id, &operator(), now).map_err(|e| e.to_string())?;
            writeln!(out, "alert {} is {}", alert.id, alert.status).map_err(io)?;
        }
        AlertsCommand::Webhook(WebhookCommand::Set {
            url,
            backup,
            min_severity,
            retries,
            backoff_ms,
            ca_file,
            format,
        }) => {
            if let Some(ca) = ca_file {
                sentinel_audit::tls::client_config(Some(ca)).map_err(|e| e.to_string())?;
            }
            let mut config =
                WebhookConfig::new(url, backup.as_deref()).map_err(|e| e.to_string())?;
            config.min_severity = *min_severity;
            config.retries = *retries;
            config.backoff = Duration::from_millis(*backoff_ms);
            config.ca_file = ca_file.clone();
            config.format = *format;
            save_webhook(&conn, Some(&config)).map_err(|e| e.to_string())?;
            writeln!(
                out,
                "alerts at {} or above go to {}{} (the daemon picks this up when it reloads)",
                config.min_severity,
                config.primary,
                config
                    .backup
                    .as_deref()
                    .map(|b| format!(", backup {b}"))
                    .unwrap_or_default()
            )
            .map_err(io)?;
        }
        AlertsCommand::Webhook(WebhookCommand::Clear) => {
            save_webhook(&conn, None).map_err(|e| e.to_string())?;
            writeln!(out, "alert webhook cleared").map_err(io)?;
        }
        AlertsCommand::Webhook(WebhookCommand::Show) => {
            match load_webhook(&conn).map_err(|e| e.to_string())? {
                None => writeln!(out, "no alert webhook configured").map_err(io)?,
                Some(c) => writeln!(
                    out,
                    "primary {}\nbackup {}\nmin severity {}\nretries {}\nbackoff {} ms\nca file {}\nformat {}",
                    c.primary,
                    c.backup.as_deref().unwrap_or("-"),
                    c.min_severity,
                    c.retries,
                    c.backoff.as_millis(),
                    c.ca_file
                        .as_ref()
                        .map_or("-".to_string(), |p| p.display().to_string()),
                    c.format
                )
                .map_err(io)?,
            }
        }
        AlertsCommand::Webhook(WebhookCommand::Test) => {
            let config = load_webhook(&conn).map_err(|e| e.to_string())?.ok_or(
                "no alert webhook configured; set one with `sentinel alerts webhook set URL`",
            )?;
            let test = Alert {
                id: 0,
                created: now,
                updated: now,
                severity: Severity::Info,
                category: "test".into(),
                reason: format!("test alert from {}", operator()),
                related: Vec::new(),
                source: "cli".into(),
                status: AlertStatus::Active,
                occurrences: 1,
                acknowledged_by: None,
                resolved_by: None,
            };
            let report = webhook::deliver(&config, &webhook::payload(&test, config.format))
                .map_err(|e| e.to_string())?;
            writeln!(
                out,
                "delivered to {} (HTTP {}) after {} attempt(s)",
                report.url, report.status, report.attempts
            )
            .map_err(io)?;
        }
    }
    Ok(())
}

fn write_table(alerts: &[Alert], out: &mut dyn Write) -> std::io::Result<()> {
    if alerts.is_empty() {
        return writeln!(out, "no alerts");
    }
    writeln!(
        out,
        "{:>6}  {:<20}  {:<8}  {:<12}  {:<20}  {:>5}  REASON",
        "ID", "TIME", "SEVERITY", "STATUS", "CATEGORY", "COUNT"
    )?;
    for a in alerts {
        let ts = time::OffsetDateTime::from(a.created)
            .format(&time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .unwrap_or_default();
        writeln!(
            out,
            "{:>6}  {:<20}  {:<8}  {:<12}  {:<20}  {:>5}  {}",
            a.id, ts, a.severity, a.status, a.category, a.occurrences, a.reason
        )?;
    }
    Ok(())
}

/// Who runs the CLI, from the kernel (the owner of /proc/self), not from
/// the environment.
fn operator() -> String {
    match std::fs::metadata("/proc/self") {
        Ok(meta) => format!("uid {}", meta.uid()),
        Err(_) => "cli".into(),
    }
}
