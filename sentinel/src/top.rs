//! `sentinel top`: a live terminal dashboard of the running daemon, drawn
//! with ratatui over crossterm. Everything comes from the control socket
//! (root only): status (mode, mechanism per kind, drops, audit), agents
//! and their risk, the newest events (filterable), alerts (acknowledge,
//! resolve), held kernel actions and pending MCP approvals (approve,
//! deny).
//!
//! It stays usable under a flood: each refresh asks for at most
//! [`FEED_BATCH`] new events (the daemon says how many it left out), keeps
//! [`FEED_KEEP`], and redraws at most four times a second whatever the
//! event rate.
//!
//! Keys: Tab / Shift-Tab move between panes, ↑/↓ select, `a` approve and
//! `d` deny the selected held action or approval, `k` acknowledge and `r`
//! resolve the selected alert, `/` filter the feed (Enter applies, Esc
//! clears), `p` pauses the feed, `q` quits.

use std::collections::VecDeque;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, ListState, Paragraph};
use ratatui::Frame;
use serde_json::Value;

use crate::control::{self, Request};
use crate::status::{agent_rows, n};

/// New events asked for per refresh.
const FEED_BATCH: usize = 400;
/// Events kept on screen.
const FEED_KEEP: usize = 1000;
const REFRESH: Duration = Duration::from_millis(250);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Held,
    Alerts,
    Feed,
}

impl Pane {
    fn next(self) -> Pane {
        match self {
            Pane::Held => Pane::Alerts,
            Pane::Alerts => Pane::Feed,
            Pane::Feed => Pane::Held,
        }
    }
    fn prev(self) -> Pane {
        self.next().next()
    }
}

/// One row of the held pane: a held kernel action or an MCP approval.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// What `sentinel approve` takes.
    pub id: String,
    pub what: String,
}

/// What the dashboard shows; filled from the daemon's answers.
#[derive(Debug)]
pub struct App {
    pub status: Value,
    pub feed: VecDeque<Value>,
    pub last_seq: u64,
    /// Matching events the daemon left out since the dashboard started.
    pub skipped: u64,
    pub alerts: Vec<Value>,
    pub pending: Vec<Pending>,
    pub pane: Pane,
    pub selected: [usize; 3],
    pub filter: String,
    /// `Some`: the filter being typed.
    pub editing: Option<String>,
    pub paused: bool,
    pub message: String,
    pub quit: bool,
}

impl Default for App {
    fn default() -> Self {
        App {
            status: Value::Null,
            feed: VecDeque::new(),
            last_seq: 0,
            skipped: 0,
            alerts: Vec::new(),
            pending: Vec::new(),
            pane: Pane::Held,
            selected: [0; 3],
            filter: String::new(),
            editing: None,
            paused: false,
            message: "Tab: pane  ↑↓: select  a/d: approve/deny  k/r: ack/resolve  /: filter  p: pause  q: quit".into(),
            quit: false,
        }
    }
}

/// Sends requests to the daemon; a closure so tests can answer instead.
pub type Ask<'a> = dyn FnMut(&Request) -> Result<Value, String> + 'a;

impl App {
    fn pane_index(&self) -> usize {
        self.pane as usize
    }

    fn pane_len(&self) -> usize {
        match self.pane {
            Pane::Held => self.pending.len(),
            Pane::Alerts => self.alerts.len(),
            Pane::Feed => self.feed.len(),
        }
    }

    /// Reads everything from the daemon once.
    pub fn refresh(&mut self, ask: &mut Ask<'_>) -> Result<(), String> {
        self.status = ask(&Request::Status)?;
        let mut pending: Vec<Pending> = self.status["approvals"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Pending {
                id: p["id"].to_string(),
                what: format!(
                    "held pid {}: {} (rule {})",
                    p["pid"],
                    p["action"].as_str().unwrap_or("?"),
                    p["rule"].as_str().unwrap_or("-")
                ),
            })
            .collect();
        if let Ok(a) = ask(&Request::McpPending) {
            pending.extend(
                a["approvals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| Pending {
                        id: p["id"].as_str().unwrap_or("?").to_string(),
                        what: format!(
                            "MCP {} {}/{}{}",
                            p["kind"].as_str().unwrap_or("?"),
                            p["server"].as_str().unwrap_or("?"),
                            p["tool"].as_str().unwrap_or("?"),
                            p["agent"]
                                .as_str()
                                .map(|a| format!(" for {a}"))
                                .unwrap_or_default()
                        ),
                    }),
            );
        }
        self.pending = pending;
        if let Ok(a) = ask(&Request::Alerts { limit: 50 }) {
            self.alerts = a["alerts"].as_array().cloned().unwrap_or_default();
        }
        if !self.paused {
            let a = ask(&Request::Events {
                after: self.last_seq,
                filter: Some(self.filter.clone()).filter(|f| !f.is_empty()),
                limit: FEED_BATCH,
            })?;
            self.skipped += a["skipped"].as_u64().unwrap_or(0);
            for e in a["events"].as_array().into_iter().flatten() {
                self.feed.push_back(e.clone());
            }
            while self.feed.len() > FEED_KEEP {
                self.feed.pop_front();
            }
            self.last_seq = a["last_seq"].as_u64().unwrap_or(self.last_seq);
        }
        let len = self.pane_len();
        let i = self.pane_index();
        if self.selected[i] >= len {
            self.selected[i] = len.saturating_sub(1);
        }
        Ok(())
    }

    /// Acts on one key.
    pub fn key(&mut self, key: KeyEvent, ask: &mut Ask<'_>) {
        if let Some(text) = self.editing.as_mut() {
            match key.code {
                KeyCode::Enter => {
                    self.filter = text.clone();
                    self.editing = None;
                    self.feed.clear();
                    self.last_seq = 0;
                    self.message = format!("filter: {:?}", self.filter);
                }
                KeyCode::Esc => {
                    self.editing = None;
                    self.filter.clear();
                    self.feed.clear();
                    self.last_seq = 0;
                    self.message = "filter cleared".into();
                }
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return;
        }
        let i = self.pane_index();
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
            KeyCode::Tab => self.pane = self.pane.next(),
            KeyCode::BackTab => self.pane = self.pane.prev(),
            KeyCode::Down | KeyCode::Char('j') if self.selected[i] + 1 < self.pane_len() => {
                self.selected[i] += 1;
            }
            KeyCode::Up => self.selected[i] = self.selected[i].saturating_sub(1),
            KeyCode::Char('/') => self.editing = Some(self.filter.clone()),
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                self.message = if self.paused {
                    "feed paused"
                } else {
                    "feed resumed"
                }
                .into();
            }
            KeyCode::Char(c @ ('a' | 'd')) if self.pane == Pane::Held => {
                let Some(p) = self.pending.get(self.selected[i]).cloned() else {
                    self.message = "nothing held".into();
                    return;
                };
                let request = if c == 'a' {
                    Request::Approve { id: p.id.clone() }
                } else {
                    Request::Deny { id: p.id.clone() }
                };
                self.message = answer_line(
                    &format!("{} {}", if c == 'a' { "approved" } else { "denied" }, p.id),
                    ask(&request),
                );
                let _ = self.refresh(ask);
            }
            KeyCode::Char(c @ ('k' | 'r')) if self.pane == Pane::Alerts => {
                let Some(id) = self
                    .alerts
                    .get(self.selected[i])
                    .and_then(|a| a["id"].as_i64())
                else {
                    self.message = "no alert selected".into();
                    return;
                };
                let request = if c == 'k' {
                    Request::AlertAck { id }
                } else {
                    Request::AlertResolve { id }
                };
                self.message = answer_line(
                    &format!(
                        "alert {id} {}",
                        if c == 'k' { "acknowledged" } else { "resolved" }
                    ),
                    ask(&request),
                );
                let _ = self.refresh(ask);
            }
            _ => {}
        }
    }
}

fn answer_line(done: &str, answer: Result<Value, String>) -> String {
    match answer {
        Ok(a) if a["ok"] == true => done.to_string(),
        Ok(a) => format!("refused: {}", a["error"].as_str().unwrap_or("?")),
        Err(e) => format!("error: {e}"),
    }
}

/// One line for a feed event.
fn event_line(e: &Value) -> Line<'static> {
    let kind = e["kind"].as_str().unwrap_or("?").to_string();
    let what = match kind.as_str() {
        "exec" => e["argv"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        "open" => e["path"].as_str().unwrap_or("").to_string(),
        "connect" => format!("{}:{}", e["addr"].as_str().unwrap_or("?"), e["port"]),
        "mcp_call" => format!(
            "{}/{}",
            e["server"].as_str().unwrap_or("?"),
            e["tool"].as_str().unwrap_or("?")
        ),
        "alert" => e["reason"].as_str().unwrap_or("").to_string(),
        _ => e["comm"].as_str().unwrap_or("").to_string(),
    };
    let action = e["verdict"]["action"].as_str().unwrap_or("").to_string();
    let style = match action.as_str() {
        "deny" => Style::default().fg(Color::Red),
        "ask" => Style::default().fg(Color::Yellow),
        _ if kind == "alert" => Style::default().fg(Color::Magenta),
        _ => Style::default(),
    };
    Line::from(vec![
        Span::raw(format!("{:>8} ", e["seq"])),
        Span::styled(
            format!("{kind:<8} "),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(format!(
            "{:<10} ",
            e["agent"]
                .as_str()
                .unwrap_or("-")
                .chars()
                .take(10)
                .collect::<String>()
        )),
        Span::styled(format!("{action:<8} "), style),
        Span::raw(what),
    ])
}

/// Draws the whole screen from `app`.
pub fn draw(frame: &mut Frame, app: &App) {
    let s = &app.status;
    let [header, agents_area, middle, feed_area, footer] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length((s["agents"].as_object().map_or(0, |m| m.len()) as u16).clamp(1, 6) + 2),
        Constraint::Length(8),
        Constraint::Min(5),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let mechanisms: Vec<String> = s["enforcement"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}:{}", v.as_str().unwrap_or("?")))
                .collect()
        })
        .unwrap_or_default();
    let ev = &s["events"];
    let au = &s["audit"];
    let head = vec![
        Line::from(format!(
            "sentinel pid {}  mode {}  enforcement {}  programs {}",
            s["pid"],
            s["mode"].as_str().unwrap_or("?"),
            mechanisms.join(" "),
            s["attached"].as_array().map_or(0, Vec::len)
        )),
        Line::from(format!(
            "events {} seen, {} lost, {} undecodable   audit {} records, {} dropped, {} failed   feed {}{}",
            n(&ev["seen"]),
            n(&ev["lost"]),
            n(&ev["decode_errors"]),
            n(&au["recorded"]),
            n(&au["dropped"]),
            n(&au["failed"]),
            if app.paused { "PAUSED" } else { "live" },
            if app.skipped > 0 {
                format!(" ({} skipped under load)", app.skipped)
            } else {
                String::new()
            }
        )),
    ];
    frame.render_widget(
        Paragraph::new(head).block(Block::default().borders(Borders::BOTTOM)),
        header,
    );

    let agents: Vec<ListItem> = agent_rows(s)
        .into_iter()
        .map(|row| {
            ListItem::new(format!(
                "{:<16} uid {:<7} mode {:<12} risk {:>3} (max {:>3})  {} events",
                row.name,
                row.uid,
                s["mode"].as_str().unwrap_or("?"),
                n(&row.risk["last"]),
                n(&row.risk["max"]),
                n(&row.risk["events"])
            ))
        })
        .collect();
    frame.render_widget(
        List::new(agents).block(Block::default().borders(Borders::ALL).title("Agents")),
        agents_area,
    );

    let [held_area, alerts_area] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(middle);
    let held: Vec<ListItem> = app
        .pending
        .iter()
        .map(|p| ListItem::new(format!("{:<10} {}", p.id, p.what)))
        .collect();
    list(
        frame,
        app,
        Pane::Held,
        held,
        "Held actions & approvals (a: approve, d: deny)",
        held_area,
    );
    let alerts: Vec<ListItem> = app
        .alerts
        .iter()
        .map(|a| {
            ListItem::new(format!(
                "#{:<5} {:<8} {:<12} {:<14} {}",
                a["id"],
                a["severity"].as_str().unwrap_or("?"),
                a["status"].as_str().unwrap_or("?"),
                a["category"].as_str().unwrap_or("?"),
                a["reason"].as_str().unwrap_or("")
            ))
        })
        .collect();
    list(
        frame,
        app,
        Pane::Alerts,
        alerts,
        "Alerts (k: acknowledge, r: resolve)",
        alerts_area,
    );

    // The newest events at the bottom; only what fits is built.
    let rows = feed_area.height.saturating_sub(2) as usize;
    let feed: Vec<ListItem> = app
        .feed
        .iter()
        .skip(app.feed.len().saturating_sub(rows.max(1) * 4))
        .map(|e| ListItem::new(event_line(e)))
        .collect();
    let title = match (&app.editing, app.filter.is_empty()) {
        (Some(text), _) => format!("Events — filter: {text}▏ (Enter applies, Esc clears)"),
        (None, true) => "Events (/: filter, p: pause)".to_string(),
        (None, false) => format!("Events — filter: {}", app.filter),
    };
    list(frame, app, Pane::Feed, feed, &title, feed_area);

    frame.render_widget(Paragraph::new(app.message.clone()), footer);
}

fn list(frame: &mut Frame, app: &App, pane: Pane, items: Vec<ListItem>, title: &str, area: Rect) {
    let focused = app.pane == pane;
    let border = if focused {
        Style::default().fg(Color::Cyan)
    } else {
        Style::default()
    };
    let len = items.len();
    let widget = List::new(items)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(border)
                .title(if focused {
                    format!("▶ {title}")
                } else {
                    title.to_string()
                }),
        )
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED))
        .highlight_symbol("> ");
    let mut state = ListState::default();
    if len > 0 {
        let selected = if pane == Pane::Feed && !focused {
            len - 1
        } else {
            app.selected[pane as usize].min(len - 1)
        };
        state.select(Some(selected));
    }
    frame.render_stateful_widget(widget, area, &mut state);
}

pub fn run(state_dir: &Path) -> ExitCode {
    if let Err(e) = control::call(state_dir, &Request::Status) {
        eprintln!("sentinel top: {e}");
        return ExitCode::from(2);
    }
    let mut ask = |r: &Request| control::call(state_dir, r).map_err(|e| e.to_string());
    let mut terminal = ratatui::init();
    let mut app = App::default();
    let mut result = Ok(());
    let mut next_refresh = Instant::now();
    while !app.quit {
        if Instant::now() >= next_refresh {
            if let Err(e) = app.refresh(&mut ask) {
                app.message = format!("lost the daemon: {e} (q quits)");
            }
            next_refresh = Instant::now() + REFRESH;
        }
        if let Err(e) = terminal.draw(|f| draw(f, &app)) {
            result = Err(e.to_string());
            break;
        }
        let wait = next_refresh.saturating_duration_since(Instant::now());
        match event::poll(wait) {
            Ok(true) => match event::read() {
                Ok(TermEvent::Key(key)) if key.kind == KeyEventKind::Press => {
                    app.key(key, &mut ask)
                }
                Ok(_) => {}
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            },
            Ok(false) => {}
            Err(e) => {
                result = Err(e.to_string());
                break;
            }
        }
    }
    ratatui::restore();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sentinel top: terminal error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;
    use serde_json::json;

    /// A daemon stand-in that answers like the control socket and records
    /// what it was asked.
    struct FakeDaemon {
        asked: Vec<String>,
        held: bool,
        events: u64,
    }

    impl FakeDaemon {
        fn answer(&mut self, r: &Request) -> Result<Value, String> {
            self.asked.push(
                serde_json::to_value(r).unwrap()["cmd"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
            Ok(match r {
                Request::Status => json!({
                    "ok": true, "pid": 42, "mode": "alert",
                    "agents": {"2001": "claude"},
                    "agent_risk": {"claude": {"last": 35, "max": 80, "events": 12}},
                    "enforcement": {"exec": "sigkill", "open": "sigkill", "connect": "cgroup"},
                    "attached": ["x"],
                    "events": {"seen": 10, "lost": 2, "decode_errors": 0},
                    "audit": {"recorded": 9, "dropped": 0, "failed": 0},
                    "approvals": if self.held { json!([{"id": 7, "pid": 1234, "action": "exec /tmp/needs-approval", "rule": "ask-exec"}]) } else { json!([]) },
                }),
                Request::McpPending => json!({"ok": true, "approvals": [
                    {"id": "ask-abc", "kind": "ask", "server": "fs", "tool": "write_file", "agent": "claude"}
                ]}),
                Request::Alerts { .. } => json!({"ok": true, "alerts": [
                    {"id": 3, "severity": "critical", "status": "active", "category": "exfiltration", "reason": "secret then connect"}
                ]}),
                Request::Events { after, limit, .. } => {
                    // A flood: far more new events than the batch.
                    let newest = self.events;
                    let first = (*after + 1).max(newest.saturating_sub(*limit as u64) + 1);
                    let events: Vec<Value> = (first..=newest).map(|seq| json!({
                        "seq": seq, "kind": "exec", "agent": "claude", "argv": ["curl", format!("http://x/{seq}")],
                        "verdict": {"action": "allow"}
                    })).collect();
                    json!({"ok": true, "events": events, "skipped": (newest - after).saturating_sub(*limit as u64), "last_seq": newest})
                }
                Request::Approve { id } if id == "7" => {
                    self.held = false;
                    json!({"ok": true, "id": 7, "resolution": "approved"})
                }
                Request::AlertAck { id } => json!({"ok": true, "alert": {"id": id}}),
                _ => json!({"ok": false, "error": "unexpected"}),
            })
        }
    }

    fn screen(app: &App) -> String {
        let mut terminal = Terminal::new(TestBackend::new(140, 40)).unwrap();
        terminal.draw(|f| draw(f, app)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn shows_every_panel_and_approves_from_the_keyboard() {
        let mut daemon = FakeDaemon {
            asked: Vec::new(),
            held: true,
            events: 10_000,
        };
        let mut ask = |r: &Request| daemon.answer(r);
        let mut app = App::default();
        app.refresh(&mut ask).unwrap();
        let text = screen(&app);
        for needle in [
            "mode alert",
            "exec:sigkill",
            "connect:cgroup",
            "2 lost",
            "claude",
            "risk  35 (max  80)",
            "held pid 1234: exec /tmp/needs-approval",
            "MCP ask fs/write_file for claude",
            "secret then connect",
            "http://x/10000",
        ] {
            assert!(text.contains(needle), "{needle:?} not on screen:\n{text}");
        }
        // Under a flood only one batch is taken, and the rest is counted.
        assert_eq!(app.feed.len(), FEED_BATCH);
        assert_eq!(app.skipped, 10_000 - FEED_BATCH as u64);

        // The held pane is focused first; `a` approves the selected one.
        app.key(KeyEvent::from(KeyCode::Char('a')), &mut ask);
        assert_eq!(app.message, "approved 7");
        assert!(app.pending.iter().all(|p| p.id != "7"));

        // Alerts: Tab, then `k`.
        app.key(KeyEvent::from(KeyCode::Tab), &mut ask);
        app.key(KeyEvent::from(KeyCode::Char('k')), &mut ask);
        assert_eq!(app.message, "alert 3 acknowledged");

        // A filter restarts the feed with the daemon doing the matching.
        for c in "/curl".chars() {
            app.key(KeyEvent::from(KeyCode::Char(c)), &mut ask);
        }
        assert!(screen(&app).contains("filter: curl"));
        app.key(KeyEvent::from(KeyCode::Enter), &mut ask);
        assert_eq!(app.filter, "curl");
        assert!(app.feed.is_empty());
        assert!(daemon.asked.contains(&"approve".to_string()));
        assert!(daemon.asked.contains(&"alert-ack".to_string()));
    }
}
