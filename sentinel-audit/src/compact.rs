//! The compact stored form of an event: what the `event` column holds (and
//! the record hash covers) for records written by this version.
//!
//! A JSON array with the fields in a fixed order instead of a keyed object:
//! `[kind, seq, ts_ns, <body fields>, verdict]`. Strings stay JSON strings
//! (readable with `sqlite3`, and edits of their text are edits of the
//! column), the timestamp is integer nanoseconds, and no key is repeated
//! in every record — about half the bytes of the keyed form, which is
//! what the chain's append rate is bound by (every byte is hashed, written
//! to the WAL, fsynced and checkpointed).
//!
//! Body fields, by kind (`P` = `pid, ppid, uid, comm, exe, agent`):
//! `exec` P, argv, argv_truncated, path_requested · `open` P, path,
//! path_requested, flags, repeats · `file_change` P, op, path,
//! path_requested, source, source_requested · `connect` P, addr, port,
//! family · `exit` P · `mcp_call` P, server, tool, args, outcome ·
//! `llm_call` P, upstream, endpoint, model, stream, request_bytes,
//! response_bytes, status, outcome, findings · `alert` severity,
//! category, reason, related · `lost` count ·
//! `mode_change` from, to, by. The verdict is `null` or `[action, rule,
//! reason, risk, enforced, alert, [[factor, score], ...]]`.
//!
//! Records written before (the keyed JSON of the live stream, starting with
//! `{`) are still read: [`decode`] takes both.

use std::fmt;

use sentinel_policy::{Decision, RiskFactor, Verdict};
use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;

use crate::event::{Body, Event, ProcessInfo};

/// Appends the compact form of `event` to `out`.
pub(crate) fn encode(event: &Event, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    serde_json::to_writer(&mut *out, &Compact(event))
}

/// Reads an `event` column: the compact form, or the keyed JSON of records
/// written before it.
pub(crate) fn decode(text: &str) -> Result<Event, serde_json::Error> {
    if text.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(text);
        let event = CompactSeed.deserialize(&mut de)?;
        de.end()?;
        Ok(event)
    } else {
        serde_json::from_str(text)
    }
}

struct Compact<'a>(&'a Event);

impl Serialize for Compact<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Event {
            seq,
            ts,
            body,
            verdict,
        } = self.0;
        let mut out = serializer.serialize_seq(None)?;
        out.serialize_element(self.0.kind())?;
        out.serialize_element(seq)?;
        out.serialize_element(&ts.unix_timestamp_nanos())?;
        let process = |out: &mut S::SerializeSeq, p: &ProcessInfo| {
            let ProcessInfo {
                pid,
                ppid,
                uid,
                comm,
                exe,
                agent,
            } = p;
            out.serialize_element(pid)?;
            out.serialize_element(ppid)?;
            out.serialize_element(uid)?;
            out.serialize_element(comm)?;
            out.serialize_element(exe)?;
            out.serialize_element(agent)
        };
        match body {
            Body::Exec {
                process: p,
                argv,
                argv_truncated,
                path_requested,
            } => {
                process(&mut out, p)?;
                out.serialize_element(argv)?;
                out.serialize_element(argv_truncated)?;
                out.serialize_element(path_requested)?;
            }
            Body::Open {
                process: p,
                path,
                path_requested,
                flags,
                repeats,
            } => {
                process(&mut out, p)?;
                out.serialize_element(path)?;
                out.serialize_element(path_requested)?;
                out.serialize_element(flags)?;
                out.serialize_element(repeats)?;
            }
            Body::FileChange {
                process: p,
                op,
                path,
                path_requested,
                source,
                source_requested,
            } => {
                process(&mut out, p)?;
                out.serialize_element(op)?;
                out.serialize_element(path)?;
                out.serialize_element(path_requested)?;
                out.serialize_element(source)?;
                out.serialize_element(source_requested)?;
            }
            Body::Connect {
                process: p,
                addr,
                port,
                family,
            } => {
                process(&mut out, p)?;
                out.serialize_element(addr)?;
                out.serialize_element(port)?;
                out.serialize_element(family)?;
            }
            Body::Exit { process: p } => process(&mut out, p)?,
            Body::McpCall {
                process: p,
                server,
                tool,
                args,
                outcome,
            } => {
                process(&mut out, p)?;
                out.serialize_element(server)?;
                out.serialize_element(tool)?;
                out.serialize_element(args)?;
                out.serialize_element(outcome)?;
            }
            Body::LlmCall {
                process: p,
                upstream,
                endpoint,
                model,
                stream,
                request_bytes,
                response_bytes,
                status,
                outcome,
                findings,
            } => {
                process(&mut out, p)?;
                out.serialize_element(upstream)?;
                out.serialize_element(endpoint)?;
                out.serialize_element(model)?;
                out.serialize_element(stream)?;
                out.serialize_element(request_bytes)?;
                out.serialize_element(response_bytes)?;
                out.serialize_element(status)?;
                out.serialize_element(outcome)?;
                out.serialize_element(findings)?;
            }
            Body::Alert {
                severity,
                category,
                reason,
                related,
            } => {
                out.serialize_element(severity)?;
                out.serialize_element(category)?;
                out.serialize_element(reason)?;
                out.serialize_element(related)?;
            }
            Body::Lost { count } => out.serialize_element(count)?,
            Body::ModeChange { from, to, by } => {
                out.serialize_element(from)?;
                out.serialize_element(to)?;
                out.serialize_element(by)?;
            }
        }
        out.serialize_element(&verdict.as_ref().map(CompactVerdict))?;
        out.end()
    }
}

struct CompactVerdict<'a>(&'a Verdict);

impl Serialize for CompactVerdict<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let Verdict {
            action,
            rule,
            reason,
            risk,
            enforced,
            alert,
            factors,
        } = self.0;
        let factors: Vec<(&str, u8)> = factors.iter().map(|f| (&f.name[..], f.score)).collect();
        (action, rule, reason, risk, enforced, alert, factors).serialize(serializer)
    }
}

/// The verdict as stored: a tuple in the order written above.
#[derive(Deserialize)]
struct StoredVerdict(
    Decision,
    Option<String>,
    String,
    u8,
    bool,
    bool,
    Vec<(String, u8)>,
);

impl From<StoredVerdict> for Verdict {
    fn from(v: StoredVerdict) -> Verdict {
        let StoredVerdict(action, rule, reason, risk, enforced, alert, factors) = v;
        Verdict {
            action,
            rule,
            reason,
            risk,
            enforced,
            alert,
            factors: factors
                .into_iter()
                .map(|(name, score)| RiskFactor { name, score })
                .collect(),
        }
    }
}

struct CompactSeed;

impl<'de> DeserializeSeed<'de> for CompactSeed {
    type Value = Event;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Event, D::Error> {
        deserializer.deserialize_seq(CompactVisitor)
    }
}

struct CompactVisitor;

fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(
    seq: &mut A,
    what: &'static str,
) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::custom(format_args!("compact event ends before {what}")))
}

fn process<'de, A: SeqAccess<'de>>(seq: &mut A) -> Result<ProcessInfo, A::Error> {
    Ok(ProcessInfo {
        pid: next(seq, "pid")?,
        ppid: next(seq, "ppid")?,
        uid: next(seq, "uid")?,
        comm: next(seq, "comm")?,
        exe: next(seq, "exe")?,
        agent: next(seq, "agent")?,
    })
}

impl<'de> Visitor<'de> for CompactVisitor {
    type Value = Event;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a compact event array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Event, A::Error> {
        let kind: String = next(&mut seq, "kind")?;
        let seq_no: u64 = next(&mut seq, "seq")?;
        let ts_ns: i128 = next(&mut seq, "ts")?;
        let ts = OffsetDateTime::from_unix_timestamp_nanos(ts_ns).map_err(de::Error::custom)?;
        let s = &mut seq;
        let body = match kind.as_str() {
            "exec" => Body::Exec {
                process: process(s)?,
                argv: next(s, "argv")?,
                argv_truncated: next(s, "argv_truncated")?,
                path_requested: next(s, "path_requested")?,
            },
            "open" => Body::Open {
                process: process(s)?,
                path: next(s, "path")?,
                path_requested: next(s, "path_requested")?,
                flags: next(s, "flags")?,
                repeats: next(s, "repeats")?,
            },
            "file_change" => Body::FileChange {
                process: process(s)?,
                op: next(s, "op")?,
                path: next(s, "path")?,
                path_requested: next(s, "path_requested")?,
                source: next(s, "source")?,
                source_requested: next(s, "source_requested")?,
            },
            "connect" => Body::Connect {
                process: process(s)?,
                addr: next(s, "addr")?,
                port: next(s, "port")?,
                family: next(s, "family")?,
            },
            "exit" => Body::Exit {
                process: process(s)?,
            },
            "mcp_call" => Body::McpCall {
                process: process(s)?,
                server: next(s, "server")?,
                tool: next(s, "tool")?,
                args: next(s, "args")?,
                outcome: next(s, "outcome")?,
            },
            "llm_call" => Body::LlmCall {
                process: process(s)?,
                upstream: next(s, "upstream")?,
                endpoint: next(s, "endpoint")?,
                model: next(s, "model")?,
                stream: next(s, "stream")?,
                request_bytes: next(s, "request_bytes")?,
                response_bytes: next(s, "response_bytes")?,
                status: next(s, "status")?,
                outcome: next(s, "outcome")?,
                findings: next(s, "findings")?,
            },
            "alert" => Body::Alert {
                severity: next(s, "severity")?,
                category: next(s, "category")?,
                reason: next(s, "reason")?,
                related: next(s, "related")?,
            },
            "lost" => Body::Lost {
                count: next(s, "count")?,
            },
            "mode_change" => Body::ModeChange {
                from: next(s, "from")?,
                to: next(s, "to")?,
                by: next(s, "by")?,
            },
            other => {
                return Err(de::Error::custom(format_args!(
                    "unknown event kind {other:?}"
                )))
            }
        };
        let verdict: Option<StoredVerdict> = next(s, "verdict")?;
        if s.next_element::<IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("compact event has trailing fields"));
        }
        Ok(Event {
            seq: seq_no,
            ts,
            body,
            verdict: verdict.map(Verdict::from),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process() -> ProcessInfo {
        ProcessInfo {
            pid: 77,
            ppid: 1,
            uid: 1000,
            comm: "we\"ird\n".into(),
            exe: "/usr/bin/é".into(),
            agent: Some("claude".into()),
        }
    }

    fn every_kind() -> Vec<Event> {
        let ts =
            OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_123_456_789).expect("time");
        let verdict = Verdict {
            action: Decision::LogOnly,
            rule: Some("r".into()),
            reason: "why\u{0}".into(),
            risk: 99,
            enforced: true,
            alert: true,
            factors: vec![RiskFactor {
                name: "rare".into(),
                score: 40,
            }],
        };
        let bodies = vec![
            Body::Exec {
                process: process(),
                argv: vec!["sh".into(), "-c".into(), "a]b,[c".into()],
                argv_truncated: true,
                path_requested: Some("./sh".into()),
            },
            Body::Open {
                process: process(),
                path: "/etc/shadow".into(),
                path_requested: None,
                flags: 0o101,
                repeats: 0,
            },
            Body::Open {
                process: process(),
                path: "/etc/hostname".into(),
                path_requested: Some("../etc/hostname".into()),
                flags: 0,
                repeats: 999_999,
            },
            Body::FileChange {
                process: process(),
                op: "rename".into(),
                path: "/home/a/.bashrc".into(),
                path_requested: None,
                source: Some("/tmp/x".into()),
                source_requested: Some("x".into()),
            },
            Body::LlmCall {
                process: process(),
                upstream: "api.example".into(),
                endpoint: "messages".into(),
                model: Some("m".into()),
                stream: true,
                request_bytes: 10,
                response_bytes: 20,
                status: 200,
                outcome: "forwarded".into(),
                findings: vec!["aws_key".into()],
            },
            Body::Connect {
                process: ProcessInfo {
                    agent: None,
                    ..process()
                },
                addr: "::1".into(),
                port: 443,
                family: "inet6".into(),
            },
            Body::Exit { process: process() },
            Body::McpCall {
                process: process(),
                server: "fs".into(),
                tool: "read_file".into(),
                args: serde_json::json!({"path": "/x", "n": [1, {"k": null}]}),
                outcome: Some("forwarded".into()),
            },
            Body::Alert {
                severity: "critical".into(),
                category: "exfil".into(),
                reason: "r".into(),
                related: vec![1, 2, 3],
            },
            Body::Lost { count: 12 },
            Body::ModeChange {
                from: "alert".into(),
                to: "lockdown".into(),
                by: "uid 0".into(),
            },
        ];
        bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Event {
                seq: i as u64 + 1,
                ts,
                body,
                verdict: (i % 2 == 0).then(|| verdict.clone()),
            })
            .collect()
    }

    #[test]
    fn every_kind_round_trips_and_is_smaller_than_the_keyed_form() {
        let mut buf = Vec::new();
        for event in every_kind() {
            buf.clear();
            encode(&event, &mut buf).expect("encode");
            let text = std::str::from_utf8(&buf).expect("utf-8");
            assert!(
                text.starts_with(&format!("[\"{}\",", event.kind())),
                "{text}"
            );
            assert_eq!(decode(text).expect("decode"), event, "{text}");
            let keyed = serde_json::to_string(&event).expect("json");
            assert!(buf.len() < keyed.len(), "{text} vs {keyed}");
            // The keyed form of older records is still read.
            assert_eq!(decode(&keyed).expect("decode keyed"), event);
        }
    }

    #[test]
    fn malformed_compact_events_are_errors() {
        for bad in [
            "[]",
            "[\"open\",1,0]",
            "[\"nope\",1,0,null]",
            "[\"lost\",1,0,5,null,7]",
            "[\"lost\",1,0,5,null] x",
            "[\"lost\",1,99999999999999999999999999999,5,null]",
        ] {
            assert!(decode(bad).is_err(), "{bad} decoded");
        }
    }
}
