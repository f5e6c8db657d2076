//! Live sinks against real receivers on loopback: RFC 5424 over UDP, RFC
//! 6587 octet-counted RFC 5424 over TCP, a TCP sink whose receiver is down
//! (drops counted, caller never blocked, delivery resumes), and JSONL files
//! rotated by size.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use sentinel_audit::{Checkpoint, Event, Sink, SinkOptions, SinkSpec, Sinks};
use sentinel_policy::Decision;

fn events(n: u64) -> Vec<Event> {
    (1..=n)
        .map(|i| {
            let mut e = common::varied(i);
            e.seq = i;
            e
        })
        .collect()
}

fn checkpoint(seq: u64) -> Checkpoint {
    serde_json::from_value(serde_json::json!({
        "kind": "audit_checkpoint", "seq": seq, "ts": "2026-01-01T00:00:00Z",
        "hash": "00", "epoch": 0, "db": "test", "seal": "00"
    }))
    .expect("checkpoint")
}

fn quick_options() -> SinkOptions {
    SinkOptions {
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(2),
        ..SinkOptions::default()
    }
}

/// Splits an RFC 5424 message into PRI, VERSION, TIMESTAMP, HOST, APP,
/// PROCID, MSGID, SD and MSG.
fn parse_5424(frame: &str) -> (u16, Vec<&str>, &str) {
    let rest = frame.strip_prefix('<').expect("PRI opens with <");
    let (pri, rest) = rest.split_once('>').expect("PRI closes with >");
    let fields: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(fields.len(), 8, "header fields of {frame}");
    (
        pri.parse().expect("numeric PRI"),
        fields[..7].to_vec(),
        fields[7],
    )
}

#[test]
fn udp_sink_sends_rfc5424_cef_datagrams() {
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    receiver
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let port = receiver.local_addr().expect("addr").port();
    let sinks = Sinks::start(
        &[SinkSpec::cef(&format!("udp://127.0.0.1:{port}")).expect("spec")],
        &quick_options(),
    )
    .expect("start");
    let batch = events(3);
    sinks.publish(&batch, &checkpoint(3));

    let mut frames = Vec::new();
    let mut buf = [0u8; 65536];
    for _ in 0..4 {
        let n = receiver.recv(&mut buf).expect("datagram");
        frames.push(String::from_utf8(buf[..n].to_vec()).expect("utf-8"));
    }
    // Event 1 is a denied exec with risk 90 (critical), 2 a denied open
    // with risk 80 (error), 3 a connect without verdict (info).
    let (pri, header, msg) = parse_5424(&frames[0]);
    assert_eq!(pri, 13 * 8 + 2);
    assert_eq!(header[0], "1");
    assert!(header[1].ends_with('Z') && header[1].contains('T'));
    assert_eq!(header[3], "sentinel");
    assert_eq!(header[4], std::process::id().to_string());
    assert_eq!(header[5], "exec");
    assert_eq!(header[6], "-");
    assert!(msg.starts_with("CEF:0|Sentinel|sentinel|"), "{msg}");
    assert!(msg.contains(" externalId=1 "), "{msg}");
    assert!(msg.contains("|exec|exec deny|9|"), "{msg}");
    let (pri, header, msg) = parse_5424(&frames[1]);
    assert_eq!((pri, header[5]), (13 * 8 + 3, "open"));
    assert!(msg.contains("|open|open deny|8|"), "{msg}");
    let (pri, header, _) = parse_5424(&frames[2]);
    assert_eq!((pri, header[5]), (13 * 8 + 6, "connect"));
    let (_, header, msg) = parse_5424(&frames[3]);
    assert_eq!(header[5], "audit_checkpoint");
    assert!(msg.contains("|audit_checkpoint|"), "{msg}");

    let stats = sinks.shutdown();
    assert_eq!(stats[0].1.sent, 4);
    assert_eq!(stats[0].1.dropped, 0);
}

/// Reads RFC 6587 octet-counted frames until `count` arrived.
fn read_frames(stream: &mut impl BufRead, count: usize) -> Vec<String> {
    let mut frames = Vec::new();
    while frames.len() < count {
        let mut len = Vec::new();
        stream.read_until(b' ', &mut len).expect("length");
        assert!(!len.is_empty(), "connection closed early");
        let len: usize = std::str::from_utf8(&len[..len.len() - 1])
            .expect("ascii")
            .parse()
            .expect("octet count");
        let mut frame = vec![0u8; len];
        stream.read_exact(&mut frame).expect("frame");
        frames.push(String::from_utf8(frame).expect("utf-8"));
    }
    frames
}

#[test]
fn tcp_sink_sends_octet_counted_frames() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let sink = Sink::start(
        SinkSpec::cef(&format!("tcp://127.0.0.1:{port}")).expect("spec"),
        &quick_options(),
    )
    .expect("start");
    for event in events(5) {
        sink.send_event(Arc::new(event));
    }
    let (stream, _) = listener.accept().expect("accept");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let frames = read_frames(&mut BufReader::new(stream), 5);
    for (i, frame) in frames.iter().enumerate() {
        let (_, header, msg) = parse_5424(frame);
        assert_eq!(header[3], "sentinel");
        assert!(msg.contains(&format!(" externalId={} ", i + 1)), "{msg}");
        assert!(!msg.contains('\n'), "one record, one frame");
    }
    let stats = sink.shutdown();
    assert_eq!((stats.sent, stats.dropped), (5, 0));
}

#[test]
fn tcp_sink_on_ipv6_loopback() {
    let Ok(listener) = TcpListener::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let port = listener.local_addr().expect("addr").port();
    let sink = Sink::start(
        SinkSpec::cef(&format!("tcp://[::1]:{port}")).expect("spec"),
        &quick_options(),
    )
    .expect("start");
    sink.send_event(Arc::new(events(1).remove(0)));
    let (stream, peer) = listener.accept().expect("accept");
    assert!(peer.is_ipv6());
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let frames = read_frames(&mut BufReader::new(stream), 1);
    assert!(frames[0].contains("CEF:0|Sentinel|"));
    assert_eq!(sink.shutdown().sent, 1);
}

#[test]
fn down_tcp_sink_counts_drops_without_blocking_and_recovers() {
    // A port with nobody listening.
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let sink = Sink::start(
        SinkSpec::cef(&format!("tcp://127.0.0.1:{port}")).expect("spec"),
        &SinkOptions {
            queue_capacity: 8,
            ..quick_options()
        },
    )
    .expect("start");
    let total = 1000u64;
    // try_send only: this loop finishes although nothing can be delivered.
    for event in events(total) {
        sink.send_event(Arc::new(event));
    }
    let stats = sink.stats();
    assert_eq!(stats.sent, 0);
    // At most the queue plus the one record the worker holds for retry.
    assert!(stats.dropped >= total - 9, "{stats:?}");

    // Wait until the worker has failed to connect at least once.
    while sink.stats().errors == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("rebind the port");
    let (stream, _) = listener.accept().expect("sink reconnects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let queued = total - stats.dropped;
    let frames = read_frames(&mut BufReader::new(stream), queued as usize);
    assert_eq!(frames.len() as u64, queued);
    let stats = sink.shutdown();
    assert_eq!(stats.sent + stats.dropped, total, "{stats:?}");
    assert!(stats.errors >= 1);
}

#[test]
fn shutdown_gives_up_on_a_dead_receiver_and_counts_the_rest() {
    let port = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let sink = Sink::start(
        SinkSpec::cef(&format!("tcp://127.0.0.1:{port}")).expect("spec"),
        &SinkOptions {
            queue_capacity: 16,
            shutdown_timeout: Duration::from_millis(200),
            ..quick_options()
        },
    )
    .expect("start");
    for event in events(10) {
        sink.send_event(Arc::new(event));
    }
    let stats = sink.shutdown();
    assert_eq!((stats.sent, stats.dropped), (0, 10), "{stats:?}");
}

#[test]
fn jsonl_file_sink_rotates_by_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.jsonl");
    let sink = Sink::start(
        SinkSpec::jsonl(path.to_str().expect("utf-8")).expect("spec"),
        &SinkOptions {
            rotate_bytes: 1000,
            rotate_keep: 2,
            ..quick_options()
        },
    )
    .expect("start");
    for event in events(40) {
        sink.send_event(Arc::new(event));
    }
    sink.send_checkpoint(Arc::new(checkpoint(40)));
    let stats = sink.shutdown();
    assert_eq!((stats.sent, stats.dropped, stats.errors), (41, 0, 0));

    let rotated = |n: usize| dir.path().join(format!("events.jsonl.{n}"));
    assert!(rotated(1).exists() && rotated(2).exists());
    assert!(!rotated(3).exists(), "only two rotated files kept");
    let mut seqs = Vec::new();
    for file in [rotated(2), rotated(1), path.clone()] {
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(
            text.len() <= 1000,
            "{} is {} bytes",
            file.display(),
            text.len()
        );
        for line in text.lines() {
            let value: serde_json::Value = serde_json::from_str(line).expect("json line");
            seqs.push(value["seq"].as_u64().expect("seq"));
        }
    }
    // The newest records, in order, ending with the checkpoint of seq 40.
    assert_eq!(seqs.last(), Some(&40));
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == w[0]));
    let last = std::fs::read_to_string(&path).expect("read");
    assert!(last.trim_end().ends_with(r#""seal":"00"}"#));
}

/// A FIFO (as `/dev/null` or a pipe to a log shipper would be) is written
/// to but never rotated: renaming a device node away would break the host.
#[test]
fn a_file_sink_on_a_fifo_is_never_rotated() {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("pipe");
    let c_path = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: mkfifo on a NUL-terminated path we own.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::fs::File::open(&reader_path)
            .expect("open fifo")
            .read_to_string(&mut text)
            .expect("read fifo");
        text
    });
    let sink = Sink::start(
        SinkSpec::jsonl(fifo.to_str().expect("utf-8")).expect("spec"),
        &SinkOptions {
            rotate_bytes: 200,
            rotate_keep: 2,
            ..quick_options()
        },
    )
    .expect("start");
    for event in events(20) {
        sink.send_event(Arc::new(event));
    }
    let stats = sink.shutdown();
    assert_eq!((stats.sent, stats.dropped, stats.errors), (20, 0, 0));
    let text = reader.join().expect("reader");
    assert_eq!(
        text.lines().count(),
        20,
        "every record went through the FIFO"
    );
    assert!(std::fs::metadata(&fifo)
        .expect("fifo")
        .file_type()
        .is_fifo());
    assert!(!dir.path().join("pipe.1").exists(), "never renamed");
}

#[test]
fn unwritable_file_sink_fails_at_start_with_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir/events.cef");
    let spec = SinkSpec::cef(path.to_str().expect("utf-8")).expect("spec");
    let message = match Sink::start(spec, &SinkOptions::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started a sink on a missing directory"),
    };
    assert!(message.contains("missing-dir/events.cef"), "{message}");
}

#[test]
fn decisions_reach_the_sink_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("events.cef");
    let sink = Sink::start(
        SinkSpec::cef(path.to_str().expect("utf-8")).expect("spec"),
        &quick_options(),
    )
    .expect("start");
    let event = common::exec(
        common::at(0),
        &["curl", "http://x"],
        Some(common::verdict(Decision::Deny, Some("no-curl"), 70)),
    );
    sink.send_event(Arc::new(event));
    sink.shutdown();
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.contains(" act=deny "), "{text}");
    assert!(text.contains("cs1Label=rule cs1=no-curl"), "{text}");
}
