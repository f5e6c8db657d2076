//! The LLM API proxy (`sentinel llm-proxy`): Sentinel between an agent and
//! an OpenAI- or Anthropic-compatible API.
//!
//! The agent holds a virtual key; the [`vault`] maps it to the real key,
//! which never leaves the proxy (answers that echo it are scrubbed). Each
//! request is decided by the one policy engine, as an MCP-kind action on
//! server `llm` (so modes, quarantine and lockdown apply as they do to
//! tool calls), its prompt is scanned with the MCP proxy's secret scanner
//! (block or redact), and it becomes one `llm_call` record in the audit
//! chain with the agent, model, sizes and verdict.
//!
//! - [`api`]: endpoints, key headers, error bodies of both API families;
//! - [`vault`]: the root-only key file;
//! - [`proxy`]: one request, top to bottom;
//! - [`upstream`]: HTTP/1.1 to the provider, TLS by rustls;
//! - [`cli`]: the command.

pub mod api;
pub mod cli;
pub mod proxy;
pub mod upstream;
pub mod vault;

pub use cli::{run, LlmProxyArgs};
pub use proxy::{Gate, LlmProxy, ProxyConfig};
pub use vault::Vault;
