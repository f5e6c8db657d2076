//! The MCP proxy (issue 5).
