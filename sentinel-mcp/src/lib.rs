//! The MCP proxy (issue 5): Sentinel between an agent's MCP client and an
//! MCP server, applying the same engine, modes and audit chain to tool calls
//! as to kernel actions.
//!
//! - [`jsonrpc`] and [`framing`]: strict, bounded reading of messages.
//! - [`proxy`]: the message logic (verdicts, filtering, pinning, scanning,
//!   one response per request id).
//! - [`stdio`]: the stdio transport around it; [`http`]: the Streamable
//!   HTTP front (TCP or a Unix socket); [`upstream`]: a Streamable HTTP
//!   server behind the proxy; [`headers`]: the 2026-07-28 routing headers.
//! - [`decider`]: the seam to the decision point; [`local`] (in-process)
//!   and [`daemon`] (the daemon's socket, both halves).
//! - [`store`]: tool pins and approvals in SQLite; [`scan`]: secrets and
//!   prompt-injection markers.
//! - [`cli`]: `sentinel mcp-proxy`.

pub mod cli;
pub mod daemon;
pub mod decider;
pub mod exact;
pub mod framing;
pub mod headers;
pub mod http;
pub mod injection;
pub mod inprocess;
pub mod jsonrpc;
pub mod local;
pub mod methods;
pub mod mrtr;
pub mod proxy;
pub mod scan;
pub mod stdio;
pub mod store;
pub mod upstream;

pub use decider::{
    outcome_ends_call, CallRecord, Clock, DecideError, Decided, Decider, ProxyAlert, SystemClock,
    ToolCall,
};
pub use local::{AuditSink, Evaluate, LocalDecider};
pub use proxy::{Proxy, ProxyConfig};
pub use scan::{FindingAction, McpSettings, ScanPolicy, Scanner};
pub use store::{Approval, CallBinding, PinStatus, Store, StoreError};
