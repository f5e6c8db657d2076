//! Golden tests of the export formats: the JSONL line is the live stream's
//! contract, and CEF escapes `\`, `|` (header), `=` (extension) and line
//! breaks exactly as the CEF specification says.

mod common;

use sentinel_audit::cef::{self, escape_header, escape_value};
use sentinel_audit::{Body, Checkpoint, Event, ProcessInfo};
use sentinel_policy::{Decision, RiskFactor, Verdict};
use time::OffsetDateTime;

fn ts() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(1_767_225_600_250_000_000).expect("time")
}

fn tricky_exec() -> Event {
    Event {
        seq: 42,
        ts: ts(),
        body: Body::Exec {
            process: ProcessInfo {
                pid: 77,
                ppid: 1,
                uid: 1000,
                comm: "we|ird=co\\mm".into(),
                exe: "/opt/a=b/bin|x".into(),
                agent: Some("claude".into()),
            },
            argv: vec!["sh".into(), "-c".into(), "a=b|c\\d\ne\rf".into()],
            argv_truncated: false,
            path_requested: None,
        },
        verdict: Some(Verdict {
            action: Decision::Deny,
            rule: Some("no|pipes=ok\\".into()),
            reason: "line one\nline two".into(),
            risk: 85,
            enforced: true,
            alert: true,
            factors: vec![RiskFactor {
                name: "rare-binary".into(),
                score: 40,
            }],
        }),
    }
}

#[test]
fn jsonl_line_uses_the_live_stream_field_names() {
    let line = serde_json::to_string(&tricky_exec()).expect("json");
    assert_eq!(
        line,
        r#"{"seq":42,"ts":"2026-01-01T00:00:00.25Z","kind":"exec","pid":77,"ppid":1,"uid":1000,"comm":"we|ird=co\\mm","exe":"/opt/a=b/bin|x","agent":"claude","argv":["sh","-c","a=b|c\\d\ne\rf"],"verdict":{"action":"deny","rule":"no|pipes=ok\\","reason":"line one\nline two","risk":85,"enforced":true,"alert":true,"factors":[{"name":"rare-binary","score":40}]}}"#
    );
    let back: Event = serde_json::from_str(&line).expect("parse back");
    assert_eq!(back, tricky_exec());
}

#[test]
fn cef_escapes_header_and_extension_per_spec() {
    assert_eq!(escape_header(r"a|b\c=d"), r"a\|b\\c=d");
    assert_eq!(escape_header("one\ntwo\rthree"), "one two three");
    assert_eq!(escape_value(r"a|b\c=d"), r"a|b\\c\=d");
    assert_eq!(escape_value("one\ntwo\rthree"), r"one\ntwo\rthree");
}

#[test]
fn cef_exec_line_is_golden() {
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        cef::event_line(&tricky_exec()),
        format!(
            "CEF:0|Sentinel|sentinel|{version}|exec|exec deny|8|rt=1767225600250 externalId=42 cat=exec spid=77 cn3Label=ppid cn3=1 suid=1000 sproc=we|ird\\=co\\\\mm cs3Label=exe cs3=/opt/a\\=b/bin|x suser=claude cs4Label=argv cs4=[\"sh\",\"-c\",\"a\\=b|c\\\\\\\\d\\\\ne\\\\rf\"] act=deny cn1Label=risk cn1=85 cs2Label=enforced cs2=true reason=line one\\nline two cs1Label=rule cs1=no|pipes\\=ok\\\\"
        )
    );
}

#[test]
fn cef_alert_puts_escaped_reason_in_the_header() {
    let alert = Event {
        seq: 9,
        ts: ts(),
        body: Body::Alert {
            severity: "critical".into(),
            category: "exfil|tration".into(),
            reason: "read ~/.ssh then\nconnect=out".into(),
            related: vec![3, 4],
        },
        verdict: None,
    };
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        cef::event_line(&alert),
        format!(
            "CEF:0|Sentinel|sentinel|{version}|alert:exfil\\|tration|read ~/.ssh then connect=out|9|rt=1767225600250 externalId=9 cat=alert cs5Label=category cs5=exfil|tration cs6Label=alertSeverity cs6=critical cs4Label=related cs4=3,4 msg=read ~/.ssh then\\nconnect\\=out"
        )
    );
}

#[test]
fn cef_connect_and_open_use_standard_keys() {
    let connect = common::connect(common::at(0), "2001:db8::1", 8443, None);
    let line = cef::event_line(&connect);
    assert!(line.contains("|connect|connect|1|"), "{line}");
    assert!(line.contains(" dst=2001:db8::1 dpt=8443 "), "{line}");
    let open = common::open(
        common::at(0),
        "/etc/shadow",
        Some(common::verdict(Decision::Ask, Some("secrets"), 30)),
    );
    let line = cef::event_line(&open);
    assert!(line.contains("|open|open ask|5|"), "{line}");
    assert!(
        line.contains(" filePath=/etc/shadow fname=shadow cn2Label=flags cn2=65 "),
        "{line}"
    );
}

#[test]
fn severity_follows_verdict_risk_and_alert_level() {
    let with = |action, risk| {
        let mut v = common::verdict(action, None, risk);
        v.alert = false;
        common::exec(common::at(0), &["x"], Some(v))
    };
    assert_eq!(cef::severity(&common::exec(common::at(0), &["x"], None)), 1);
    assert_eq!(cef::severity(&with(Decision::Allow, 0)), 1);
    assert_eq!(cef::severity(&with(Decision::Allow, 65)), 6);
    assert_eq!(cef::severity(&with(Decision::LogOnly, 0)), 2);
    assert_eq!(cef::severity(&with(Decision::Ask, 0)), 5);
    assert_eq!(cef::severity(&with(Decision::Deny, 0)), 7);
    assert_eq!(cef::severity(&with(Decision::Deny, 100)), 10);
    let lost = Event {
        seq: 1,
        ts: ts(),
        body: Body::Lost { count: 12 },
        verdict: None,
    };
    assert_eq!(cef::severity(&lost), 7);
    assert_eq!(cef::syslog_severity(10), 2);
    assert_eq!(cef::syslog_severity(7), 3);
    assert_eq!(cef::syslog_severity(5), 4);
    assert_eq!(cef::syslog_severity(1), 6);
}

#[test]
fn checkpoint_exports_as_tagged_jsonl_and_cef() {
    let checkpoint: Checkpoint = serde_json::from_str(
        r#"{"kind":"audit_checkpoint","seq":10,"ts":"2026-01-01T00:00:00.25Z","hash":"ab","epoch":3,"db":"d1","seal":"cd"}"#,
    )
    .expect("checkpoint json");
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        cef::checkpoint_line(&checkpoint),
        format!("CEF:0|Sentinel|sentinel|{version}|audit_checkpoint|audit checkpoint|1|rt=1767225600250 externalId=10 cat=audit_checkpoint cs1Label=hash cs1=ab cs2Label=seal cs2=cd cs3Label=db cs3=d1 cn1Label=epoch cn1=3")
    );
}
