//! What Sentinel records and exports: the [`Event`] record (the JSONL
//! contract), the tamper-evident audit chain, and the SIEM formats.

pub mod event;

pub use event::{Body, Event, ProcessInfo};
