//! Which JSON-RPC methods may travel in which direction, as requests or as
//! notifications, in each MCP protocol revision.
//!
//! The proxy only judges what it recognises. A method it does not know
//! could be anything to the server behind it (a lenient dispatcher may run
//! `tools/call` sent as a notification, or a vendor method that deletes
//! files), so unknown methods are refused unless the policy says
//! `unknown_methods = "forward"`, and a request-only method arriving as a
//! notification (no id, so no answer and no verdict) is always refused.

/// Which way a message travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the agent's client to the MCP server.
    ClientToServer,
    /// From the MCP server to the agent's client.
    ServerToClient,
}

/// What the allow-list says about a method arriving in one shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed in this direction, shape and revision.
    Allowed,
    /// A request-only method sent as a notification (or the reverse).
    WrongShape,
    /// A method defined in MCP, but not in this direction or revision.
    NotInRevision,
    /// Not an MCP method at all.
    Unknown,
}

/// The revisions this proxy knows, oldest first.
pub const REVISIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// (method, first revision, last revision or "" for still current).
type Entry = (&'static str, &'static str, &'static str);

const CLIENT_REQUESTS: &[Entry] = &[
    ("initialize", "2024-11-05", ""),
    ("ping", "2024-11-05", ""),
    ("tools/list", "2024-11-05", ""),
    ("tools/call", "2024-11-05", ""),
    ("resources/list", "2024-11-05", ""),
    ("resources/templates/list", "2024-11-05", ""),
    ("resources/read", "2024-11-05", ""),
    ("resources/subscribe", "2024-11-05", ""),
    ("resources/unsubscribe", "2024-11-05", ""),
    ("prompts/list", "2024-11-05", ""),
    ("prompts/get", "2024-11-05", ""),
    ("completion/complete", "2024-11-05", ""),
    ("logging/setLevel", "2024-11-05", ""),
    ("tasks/get", "2025-11-25", ""),
    ("tasks/result", "2025-11-25", ""),
    ("tasks/list", "2025-11-25", ""),
    ("tasks/cancel", "2025-11-25", ""),
    ("server/discover", "2026-07-28", ""),
];

const CLIENT_NOTIFICATIONS: &[Entry] = &[
    ("notifications/initialized", "2024-11-05", ""),
    ("notifications/cancelled", "2024-11-05", ""),
    ("notifications/progress", "2024-11-05", ""),
    ("notifications/roots/list_changed", "2024-11-05", ""),
    ("notifications/tasks/status", "2025-11-25", ""),
];

const SERVER_REQUESTS: &[Entry] = &[
    ("ping", "2024-11-05", ""),
    ("sampling/createMessage", "2024-11-05", ""),
    ("roots/list", "2024-11-05", ""),
    ("elicitation/create", "2025-06-18", ""),
    ("tasks/get", "2025-11-25", ""),
    ("tasks/result", "2025-11-25", ""),
    ("tasks/list", "2025-11-25", ""),
    ("tasks/cancel", "2025-11-25", ""),
];

const SERVER_NOTIFICATIONS: &[Entry] = &[
    ("notifications/cancelled", "2024-11-05", ""),
    ("notifications/progress", "2024-11-05", ""),
    ("notifications/message", "2024-11-05", ""),
    ("notifications/resources/updated", "2024-11-05", ""),
    ("notifications/resources/list_changed", "2024-11-05", ""),
    ("notifications/tools/list_changed", "2024-11-05", ""),
    ("notifications/prompts/list_changed", "2024-11-05", ""),
    ("notifications/elicitation/complete", "2025-11-25", ""),
    ("notifications/tasks/status", "2025-11-25", ""),
];

fn in_revision(entry: &Entry, revision: &str) -> bool {
    let (_, first, last) = entry;
    revision >= *first && (last.is_empty() || revision <= *last)
}

fn listed(table: &[Entry], method: &str, revision: &str) -> Option<bool> {
    let entry = table.iter().find(|e| e.0 == method)?;
    Some(in_revision(entry, revision))
}

/// The revision to judge by: a known one as given, an unknown or absent
/// one as the newest (the widest table: the proxy does not refuse what a
/// newer peer may legitimately send, but never anything outside MCP).
pub fn effective_revision(revision: Option<&str>) -> &'static str {
    revision
        .and_then(|r| REVISIONS.iter().find(|known| **known == r))
        .copied()
        .unwrap_or(REVISIONS[REVISIONS.len() - 1])
}

/// Judges `method` arriving as a request (`is_request`) or a notification,
/// in `direction`, under `revision`.
pub fn check(direction: Direction, method: &str, is_request: bool, revision: &str) -> Verdict {
    let (requests, notifications) = match direction {
        Direction::ClientToServer => (CLIENT_REQUESTS, CLIENT_NOTIFICATIONS),
        Direction::ServerToClient => (SERVER_REQUESTS, SERVER_NOTIFICATIONS),
    };
    let (same, other) = if is_request {
        (requests, notifications)
    } else {
        (notifications, requests)
    };
    match listed(same, method, revision) {
        Some(true) => return Verdict::Allowed,
        Some(false) => return Verdict::NotInRevision,
        None => {}
    }
    if listed(other, method, revision).is_some() {
        return Verdict::WrongShape;
    }
    // Defined in MCP, but for the other direction.
    let anywhere = [
        CLIENT_REQUESTS,
        CLIENT_NOTIFICATIONS,
        SERVER_REQUESTS,
        SERVER_NOTIFICATIONS,
    ]
    .iter()
    .any(|t| t.iter().any(|e| e.0 == method));
    if anywhere {
        Verdict::NotInRevision
    } else {
        Verdict::Unknown
    }
}

/// Whether `method` is a request anywhere in MCP (so a notification of it
/// is a smuggling attempt, never a legitimate message).
pub fn is_request_method(method: &str) -> bool {
    [CLIENT_REQUESTS, SERVER_REQUESTS]
        .iter()
        .any(|t| t.iter().any(|e| e.0 == method))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_call_is_a_client_request_only() {
        let c = Direction::ClientToServer;
        assert_eq!(check(c, "tools/call", true, "2025-06-18"), Verdict::Allowed);
        assert_eq!(
            check(c, "tools/call", false, "2025-06-18"),
            Verdict::WrongShape
        );
        assert_eq!(
            check(Direction::ServerToClient, "tools/call", true, "2025-06-18"),
            Verdict::NotInRevision
        );
        assert!(is_request_method("tools/call"));
    }

    #[test]
    fn revisions_and_unknown_methods() {
        let c = Direction::ClientToServer;
        assert_eq!(
            check(c, "tasks/get", true, "2025-06-18"),
            Verdict::NotInRevision
        );
        assert_eq!(check(c, "tasks/get", true, "2025-11-25"), Verdict::Allowed);
        assert_eq!(
            check(c, "server/discover", true, "2025-11-25"),
            Verdict::NotInRevision
        );
        assert_eq!(check(c, "admin/wipe", true, "2025-11-25"), Verdict::Unknown);
        assert_eq!(
            check(
                Direction::ServerToClient,
                "elicitation/create",
                true,
                "2025-03-26"
            ),
            Verdict::NotInRevision
        );
        assert_eq!(effective_revision(Some("1999-01-01")), "2026-07-28");
        assert_eq!(effective_revision(Some("2025-03-26")), "2025-03-26");
    }
}
