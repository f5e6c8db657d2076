//! The behaviour stage of the data path: the anomaly scorer the engine
//! consults (step 6 of the evaluation order), the detector that classifies
//! recorded events and sequences of them (credential access followed by
//! exfiltration, download piped into a shell, ...), and the alert manager
//! that deduplicates and rate-limits what they raise (never a critical
//! alert) before it goes into the audit chain and the sinks.
//!
//! Everything here is `sentinel-anomaly`; this module only connects it to
//! the daemon: one database (the audit database), one mode, one clock.

use std::path::Path;
use std::time::SystemTime;

use sentinel_anomaly::{
    Alert, AlertConfig, AlertManager, AnomalyEngine, Detector, LockdownOrder, NewAlert, Outcome,
    Raised, ScorerConfig, SharedAnomalyEngine,
};
use sentinel_audit::{Body, Event};
use sentinel_policy::{Action, AnomalyScorer, Mode};

pub struct Behaviour {
    scorer: SharedAnomalyEngine,
    detector: Detector,
    alerts: AlertManager,
}

impl Behaviour {
    /// Opens baselines and alerts in `db` (tables prefixed `anomaly_`).
    pub fn open(db: &Path, mode: Mode) -> anyhow::Result<Self> {
        let engine = AnomalyEngine::open(db, ScorerConfig::default()).map_err(|e| {
            anyhow::anyhow!("opening the anomaly baselines in {}: {e}", db.display())
        })?;
        let scorer = SharedAnomalyEngine::new(engine);
        scorer.lock().set_mode(mode);
        let alerts = AlertManager::open(db, AlertConfig::default())
            .map_err(|e| anyhow::anyhow!("opening the alerts in {}: {e}", db.display()))?;
        Ok(Self {
            scorer,
            detector: Detector::default(),
            alerts,
        })
    }

    /// The scorer to plug into the engine's anomaly seam.
    pub fn scorer(&self) -> Box<dyn AnomalyScorer> {
        Box::new(self.scorer.clone())
    }

    /// Keeps the scorer's mode with the engine's; leaving lockdown lifts
    /// the auto-lockdown latch (only the operator can).
    pub fn set_mode(&self, mode: Mode, by: &str) {
        let mut scorer = self.scorer.lock();
        if mode != Mode::Lockdown {
            if let Err(e) = scorer.lift_lockdown(by, SystemTime::now()) {
                tracing::error!("lifting the auto-lockdown latch failed: {e}");
            }
        }
        scorer.set_mode(mode);
    }

    /// Picks up a webhook the operator configured since (`sentinel alerts
    /// webhook set`, `sentinel_alerts_configure_webhooks`): one read of the
    /// database, a new sender only when the configuration changed.
    pub fn reload_webhook(&mut self) {
        if let Err(e) = self.alerts.reload_webhook() {
            tracing::error!("reading the webhook configuration failed: {e}");
        }
    }

    /// Sets the webhook from the configuration file (stored like one set
    /// with `sentinel alerts webhook set`).
    pub fn set_webhook(
        &mut self,
        config: Option<sentinel_anomaly::WebhookConfig>,
    ) -> Result<(), String> {
        self.alerts.set_webhook(config).map_err(|e| e.to_string())
    }

    /// The alert store (list, acknowledge, resolve).
    pub fn alerts(&mut self) -> &mut AlertManager {
        &mut self.alerts
    }

    /// Why the agent is still in auto-lockdown from an earlier run (the
    /// latch survives restarts until the operator lifts it).
    pub fn latched_lockdown(&self) -> Option<String> {
        self.scorer
            .lock()
            .lockdown_state()
            .map(|state| format!("{state:?}"))
    }

    pub fn set_thresholds(&self, t: sentinel_policy::AnomalyThresholds) -> Result<(), String> {
        self.scorer
            .lock()
            .set_thresholds(t.into())
            .map_err(|e| e.to_string())
    }

    /// An auto-lockdown the scorer ordered (once, until lifted).
    pub fn take_lockdown(&self) -> Option<LockdownOrder> {
        self.scorer.lock().take_lockdown()
    }

    /// Feeds what became of an action into the error-rate baseline: a
    /// kernel action that ran or was denied, an MCP call's result, error
    /// or refusal. Only a baseline that also sees successes can tell a
    /// burst of failures from the usual.
    pub fn outcome(&self, action: &Action, outcome: Outcome) {
        self.scorer
            .lock()
            .record_outcome(action, outcome, SystemTime::now());
    }

    /// An MCP tool call (recorded as `call_seq`) is in flight through the
    /// proxy process `proxy_pid`: kernel events of its process tree (the
    /// server it started) are linked to the call until it finishes.
    pub fn call_started(&mut self, call_seq: u64, proxy_pid: u32) {
        self.detector
            .call_started(call_seq, proxy_pid, SystemTime::now());
    }

    pub fn call_finished(&mut self, call_seq: u64) {
        self.detector.call_finished(call_seq);
    }

    /// Classifies one recorded event; returns the new alerts to record
    /// after it (duplicates and rate-limited ones are counted by the
    /// manager) and, for an event caused by an MCP call in flight, the link
    /// ("tools/call read_file → openat(...)").
    pub fn observe(&mut self, event: &Event) -> (Vec<Alert>, Option<String>) {
        let now = SystemTime::now();
        let observation = self.detector.observe(event, now);
        let alerts = observation
            .detections
            .into_iter()
            .filter_map(|d| self.raise(d.to_alert(), now))
            .collect();
        let link = observation
            .link
            .map(|l| format!("{} (mcp_call seq {})", l.summary, l.call_seq));
        (alerts, link)
    }

    /// Raises an alert (a detection, an auto-lockdown order); `Some` when
    /// it is new and must be recorded.
    pub fn raise(&mut self, alert: NewAlert, now: SystemTime) -> Option<Alert> {
        match self.alerts.raise(alert, now) {
            Ok(Raised::New(alert)) => Some(alert),
            Ok(_) => None,
            Err(e) => {
                tracing::error!("raising an alert failed: {e}");
                None
            }
        }
    }
}

/// What an MCP call record says about the call, for the error-rate
/// baseline: results are successes, errors (JSON-RPC errors, results the
/// tool marked `isError`, timeouts, a server that died) failures, and
/// refusals denials. Records of a decision alone (`forwarded`, `ask`, ...)
/// say nothing yet.
pub fn outcome_of_mcp(event: &Event) -> Option<(Action, Outcome)> {
    let Body::McpCall {
        process,
        server,
        tool,
        args,
        outcome,
    } = &event.body
    else {
        return None;
    };
    let outcome = match outcome.as_deref()? {
        "result" | "redacted" => Outcome::Success,
        "error" | "tool-error" | "timeout" | "server-exited" => Outcome::Failure,
        "denied" | "blocked" | "denied-by-elicitation" => Outcome::Denied,
        _ => return None,
    };
    let action = Action {
        agent: process.agent.clone(),
        uid: process.uid,
        pid: process.pid,
        object: sentinel_policy::Object::Mcp {
            server: server.clone(),
            tool: tool.clone(),
            args: args.clone(),
        },
    };
    Some((action, outcome))
}
