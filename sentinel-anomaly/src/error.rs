//! The crate's error types, one per job: scoring, alerts, webhooks.

use std::path::PathBuf;

/// Errors from the anomaly scorer and its baseline store.
#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    #[error("cannot open anomaly baselines in {path}: {source}; check the --db path and that it is writable by root")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("anomaly baseline database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("anomaly baseline row is corrupt ({0}); delete the anomaly_* tables to relearn")]
    Corrupt(String),
    #[error("invalid anomaly thresholds: {0}; they must rise strictly: suspicious < anomalous < critical < auto-lockdown <= 100")]
    Thresholds(String),
}

/// Errors from the alert store.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("cannot open the alert store in {path}: {source}; check the --db path and that it is readable by this user")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("alert database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("no alert with id {0}; run `sentinel alerts list` to see the ids")]
    NotFound(i64),
    #[error("alert {id} has a corrupt {field} column; the row was written by something other than sentinel")]
    Corrupt { id: i64, field: &'static str },
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Errors from webhook configuration and delivery.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook URL {0:?} is not an https:// (or http://) URL")]
    UnsupportedUrl(String),
    #[error("webhook {url}: {reason}")]
    Attempt { url: String, reason: String },
    #[error("webhook delivery failed on every target: {0}")]
    Exhausted(String),
}
