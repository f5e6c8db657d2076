//! `sentinel audit verify|tail|query|stats|export`: clap types and the
//! command runner the `sentinel` binary mounts. Exit codes: 0 ok (or
//! intact), 1 tampering found, 2 usage or environment error.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sentinel_policy::Decision;
use time::OffsetDateTime;

use crate::cef;
use crate::error::AuditError;
use crate::log::{AuditLog, Retention};
use crate::store::{AuditReader, QueryFilter, Stats};
use crate::verify::{recorded_key_dir, verify_found, verify_with_progress, AnchorStatus};

pub const DEFAULT_DB: &str = "/var/lib/sentinel/sentinel.db";
pub const DEFAULT_STATE_DIR: &str = "/run/sentinel";

/// Where the audit trail lives.
#[derive(Debug, Clone, Args)]
pub struct Location {
    /// The audit database.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_DB)]
    pub db: PathBuf,
    /// The state directory holding the audit keys and the anchor.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,
}

/// Which records to show.
#[derive(Debug, Clone, Default, Args)]
pub struct Filters {
    /// Records at or after TIME (RFC 3339, or an age such as 30m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Records before TIME (RFC 3339, or an age such as 30m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// exec, open, connect, exit, mcp_call, alert, lost, mode_change.
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub agent: Option<String>,
    /// allow, deny, ask or log-only.
    #[arg(long, value_name = "ACTION", value_parser = parse_decision)]
    pub verdict: Option<Decision>,
    #[arg(long)]
    pub rule: Option<String>,
    /// At most N records (the oldest matching).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Filters {
    pub fn to_query(&self) -> QueryFilter {
        QueryFilter {
            since: self.since,
            until: self.until,
            kind: self.kind.clone(),
            agent: self.agent.clone(),
            verdict: self.verdict,
            rule: self.rule.clone(),
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One event per line, the live stream's field names.
    Jsonl,
    /// CEF:0 lines.
    Cef,
}

/// `sentinel audit ...`
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain, the seals and the anchor; exit 1 on tampering.
    Verify {
        #[command(flatten)]
        location: Location,
        /// A verification key file, e.g. a copy kept off the host (default:
        /// STATE_DIR/audit.verify-key). Repeat to merge key segments.
        #[arg(long, value_name = "FILE")]
        key: Vec<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The newest records.
    Tail {
        #[command(flatten)]
        location: Location,
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Records matching filters, oldest first.
    Query {
        #[command(flatten)]
        location: Location,
        #[command(flatten)]
        filters: Filters,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Counts by kind, verdict and rule.
    Stats {
        #[command(flatten)]
        location: Location,
        #[command(flatten)]
        filters: Filters,
        #[arg(long)]
        json: bool,
    },
    /// Remove old records, leaving a sealed checkpoint of what was removed
    /// so the rest still verifies. Needs the writer: stop the daemon first.
    Retain {
        #[command(flatten)]
        location: Location,
        /// Remove records older than this age (e.g. 30d, 12h).
        #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with = "keep_last", required_unless_present = "keep_last")]
        older_than: Option<time::Duration>,
        /// Keep only the newest N records.
        #[arg(long, value_name = "N")]
        keep_last: Option<u64>,
    },
    /// Export records for a SIEM.
    Export {
        #[command(flatten)]
        location: Location,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Write here (created 0600) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        filters: Filters,
    },
}

/// Runs one `sentinel audit` command.
pub fn run(cmd: AuditCommand) -> ExitCode {
    let name = match &cmd {
        AuditCommand::Verify { .. } => "verify",
        AuditCommand::Tail { .. } => "tail",
        AuditCommand::Query { .. } => "query",
        AuditCommand::Stats { .. } => "stats",
        AuditCommand::Export { .. } => "export",
        AuditCommand::Retain { .. } => "retain",
    };
    match execute(cmd) {
        Ok(code) => code,
        Err(CliError::Audit(e)) => {
            eprintln!("sentinel audit {name}: {e}");
            ExitCode::from(2)
        }
        Err(CliError::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(CliError::Io(e)) => {
            eprintln!("sentinel audit {name}: {e}");
            ExitCode::from(2)
        }
    }
}

enum CliError {
    Audit(AuditError),
    Io(io::Error),
}

impl From<AuditError> for CliError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Io { source, path } if source.kind() == io::ErrorKind::BrokenPipe => {
                let _ = path;
                CliError::Io(source)
            }
            e => CliError::Audit(e),
        }
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        CliError::Io(e)
    }
}

fn execute(cmd: AuditCommand) -> Result<ExitCode, CliError> {
    let stdout = io::stdout();
    match cmd {
        AuditCommand::Verify {
            location,
            key,
            json,
        } => {
            let report = if !key.is_empty() || location.state_dir != Path::new(DEFAULT_STATE_DIR) {
                let bar = progress_bar(&location.db, "verifying");
                let tick = bar.clone();
                let mut report = verify_with_progress(
                    &location.db,
                    &location.state_dir,
                    &key,
                    Some(Box::new(move |n| tick.set_position(n))),
                )?;
                bar.finish_and_clear();
                report.key_source = Some(if key.is_empty() {
                    format!("{} (--state-dir)", location.state_dir.display())
                } else {
                    "--key".into()
                });
                report
            } else {
                // Not told: the daemon's state directory, then where the
                // database's writer says it keeps its keys, then beside
                // the database (a standalone proxy's DB.state).
                let mut beside = location.db.as_os_str().to_owned();
                beside.push(".state");
                let mut candidates = vec![(
                    PathBuf::from(DEFAULT_STATE_DIR),
                    "the daemon's state directory".to_string(),
                )];
                if let Some(dir) = recorded_key_dir(&location.db) {
                    candidates.push((dir, "recorded in the database by its writer".into()));
                }
                candidates.push((PathBuf::from(beside), "beside the database".into()));
                verify_found(&location.db, &candidates)?
            };
            let mut out = stdout.lock();
            if json {
                serde_json::to_writer(&mut out, &report).map_err(io::Error::from)?;
                writeln!(out)?;
            } else if let Some((seq, problem)) = &report.first_bad {
                writeln!(
                    out,
                    "audit trail TAMPERED at seq {seq}: {problem} ({} records verified before it)",
                    report.count
                )?;
            } else {
                let range = match (report.first_seq, report.last_seq) {
                    (Some(first), Some(last)) => format!(" (seq {first}..{last})"),
                    _ => String::new(),
                };
                let anchor = match report.anchor {
                    AnchorStatus::Matched { seq } => format!("matches the anchor at seq {seq}"),
                    _ => "no anchor beside the key: truncation of the tail not checked".to_string(),
                };
                let retained = report
                    .retained_through
                    .map(|s| format!(", records through seq {s} removed by retention"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "audit trail intact: {} records{range}{retained}; {anchor}",
                    report.count
                )?;
                if let Some(source) = &report.key_source {
                    writeln!(out, "verification key: {source}")?;
                }
                if report.unsealed > 0 {
                    writeln!(
                        out,
                        "warning: {} records predate the available verification keys (keys lost, e.g. at a reboot): their hash chain is intact but their seals were not checked; pass the earlier key with --key FILE",
                        report.unsealed
                    )?;
                }
            }
            out.flush()?;
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        AuditCommand::Tail {
            location,
            lines,
            format,
        } => {
            let reader = AuditReader::open(&location.db)?;
            let mut out = BufWriter::new(stdout.lock());
            for event in reader.tail(lines)? {
                write_event(&mut out, format, &event)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query {
            location,
            filters,
            format,
        } => {
            let reader = AuditReader::open(&location.db)?;
            let mut out = BufWriter::new(stdout.lock());
            stream(&reader, &filters, format, &mut out, &ProgressBar::hidden())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Stats {
            location,
            filters,
            json,
        } => {
            let reader = AuditReader::open(&location.db)?;
            let stats = reader.stats(&filters.to_query())?;
            let mut out = stdout.lock();
            if json {
                serde_json::to_writer(&mut out, &stats).map_err(io::Error::from)?;
                writeln!(out)?;
            } else {
                print_stats(&mut out, &stats)?;
            }
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Retain {
            location,
            older_than,
            keep_last,
        } => {
            let policy = match (older_than, keep_last) {
                (Some(age), _) => Retention::OlderThan(age),
                (None, Some(n)) => Retention::KeepLast(n),
                (None, None) => {
                    eprintln!("sentinel audit retain: pass --older-than AGE or --keep-last N");
                    return Ok(ExitCode::from(2));
                }
            };
            let mut log = AuditLog::open(&location.db, &location.state_dir)?;
            let mut out = stdout.lock();
            match log.retain(policy)? {
                Some(summary) => writeln!(
                    out,
                    "removed {} records (seq {}..{}); a sealed checkpoint keeps the chain verifiable",
                    summary.removed, summary.first_seq, summary.last_seq
                )?,
                None => writeln!(out, "nothing to remove")?,
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export {
            location,
            format,
            out,
            filters,
        } => {
            let reader = AuditReader::open(&location.db)?;
            let bar = progress_bar(&location.db, "exporting");
            match out {
                Some(path) => {
                    let file = OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .map_err(|e| AuditError::io(&path, e))?;
                    let mut out = BufWriter::new(file);
                    stream(&reader, &filters, format, &mut out, &bar)?;
                    out.into_inner()
                        .map_err(|e| AuditError::io(&path, e.into_error()))?
                        .sync_all()
                        .map_err(|e| AuditError::io(&path, e))?;
                }
                None => {
                    let mut out = BufWriter::new(stdout.lock());
                    stream(&reader, &filters, format, &mut out, &bar)?;
                    out.flush()?;
                }
            }
            bar.finish_and_clear();
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A progress bar on stderr for a long operation over the chain in `db`,
/// drawn only when stderr is a terminal (quiet in pipes and logs).
fn progress_bar(db: &std::path::Path, what: &'static str) -> ProgressBar {
    use std::io::IsTerminal;
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total = AuditReader::open(db)
        .and_then(|r| r.stats(&QueryFilter::default()))
        .map(|s| s.records)
        .unwrap_or(0);
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} records ({per_sec}, {eta} left)")
    {
        bar.set_style(style);
    }
    bar.set_message(what);
    bar
}

fn stream(
    reader: &AuditReader,
    filters: &Filters,
    format: ExportFormat,
    out: &mut impl Write,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let mut write_error = None;
    let result = reader.query_each(&filters.to_query(), |event| {
        bar.inc(1);
        write_event(out, format, &event).map_err(|e| {
            let message = e.to_string();
            write_error = Some(e);
            AuditError::io("output", io::Error::other(message))
        })
    });
    if let Some(e) = write_error {
        return Err(CliError::Io(e));
    }
    result.map_err(CliError::from)
}

fn write_event(
    out: &mut impl Write,
    format: ExportFormat,
    event: &crate::event::Event,
) -> io::Result<()> {
    match format {
        ExportFormat::Jsonl => serde_json::to_writer(&mut *out, event).map_err(io::Error::from)?,
        ExportFormat::Cef => out.write_all(cef::event_line(event).as_bytes())?,
    }
    out.write_all(b"\n")
}

fn print_stats(out: &mut impl Write, stats: &Stats) -> io::Result<()> {
    match (stats.first_seq, stats.last_seq) {
        (Some(first), Some(last)) => {
            writeln!(out, "records: {} (seq {first}..{last})", stats.records)?
        }
        _ => writeln!(out, "records: {}", stats.records)?,
    }
    if let Some(seq) = stats.retained_through {
        writeln!(out, "removed by retention: seq 1..{seq}")?;
    }
    let sections = [
        ("by kind", &stats.by_kind),
        ("by verdict", &stats.by_verdict),
        ("by rule", &stats.by_rule),
    ];
    for (title, counts) in sections {
        if counts.is_empty() {
            continue;
        }
        writeln!(out, "{title}:")?;
        for (name, count) in counts {
            writeln!(out, "  {count:>10}  {name}")?;
        }
    }
    Ok(())
}

/// RFC 3339, or an age (`90s`, `30m`, `2h`, `7d`) before now.
/// An age such as `30d`, `12h`, `45m` or `90s`.
pub fn parse_age(text: &str) -> Result<time::Duration, String> {
    let (num, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not an age such as 30d, 12h, 45m or 90s"))?;
    match unit {
        "d" => Ok(time::Duration::days(n)),
        "h" => Ok(time::Duration::hours(n)),
        "m" => Ok(time::Duration::minutes(n)),
        "s" => Ok(time::Duration::seconds(n)),
        _ => Err(format!(
            "{text:?} is not an age such as 30d, 12h, 45m or 90s"
        )),
    }
}

pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(ts) = OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        return Ok(ts);
    }
    let bad = || {
        format!("`{text}`: expected RFC 3339 (2026-01-31T12:00:00Z) or an age such as 30m, 2h, 7d")
    };
    let unit_at = text.len().checked_sub(1).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let number: i64 = number.parse().map_err(|_| bad())?;
    let age = match unit {
        "s" => time::Duration::seconds(number),
        "m" => time::Duration::minutes(number),
        "h" => time::Duration::hours(number),
        "d" => time::Duration::days(number),
        _ => return Err(bad()),
    };
    Ok(OffsetDateTime::now_utc() - age)
}

/// `allow`, `deny`, `ask` or `log-only`.
pub fn parse_decision(text: &str) -> Result<Decision, String> {
    match text {
        "allow" => Ok(Decision::Allow),
        "deny" => Ok(Decision::Deny),
        "ask" => Ok(Decision::Ask),
        "log-only" => Ok(Decision::LogOnly),
        _ => Err(format!("`{text}`: expected allow, deny, ask or log-only")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: AuditCommand,
    }

    #[test]
    fn parses_the_documented_command_lines() {
        let top = Top::try_parse_from(["audit", "verify", "--db", "/tmp/x.db"]).unwrap();
        let AuditCommand::Verify { location, .. } = top.cmd else {
            panic!("not verify")
        };
        assert_eq!(location.db, PathBuf::from("/tmp/x.db"));
        assert_eq!(location.state_dir, PathBuf::from(DEFAULT_STATE_DIR));

        let top = Top::try_parse_from([
            "audit",
            "query",
            "--since",
            "2h",
            "--kind",
            "exec",
            "--verdict",
            "log-only",
        ])
        .unwrap();
        let AuditCommand::Query { filters, .. } = top.cmd else {
            panic!("not query")
        };
        assert_eq!(filters.verdict, Some(Decision::LogOnly));
        assert!(filters.since.is_some());

        assert!(Top::try_parse_from(["audit", "export"]).is_err());
        assert!(Top::try_parse_from(["audit", "query", "--verdict", "maybe"]).is_err());
        let top = Top::try_parse_from(["audit", "tail", "-n", "5"]).unwrap();
        assert!(matches!(top.cmd, AuditCommand::Tail { lines: 5, .. }));
    }

    #[test]
    fn parses_times_and_ages() {
        let ts = parse_time("2026-01-31T12:00:00Z").unwrap();
        assert_eq!(ts.unix_timestamp(), 1_769_860_800);
        let parsed = parse_time("2h").unwrap();
        let age = OffsetDateTime::now_utc() - parsed;
        assert!(age >= time::Duration::hours(2) && age < time::Duration::hours(3));
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("").is_err());
    }
}
