//! The proxy's and the daemon's input path: newline framing with a line
//! limit, the strict JSON-RPC reader, and the decision socket's request
//! parser, on arbitrary bytes.
//!
//! Checked besides "no panic": no frame is longer than the limit or holds
//! a newline; a message the strict reader accepts, written back out, is
//! accepted again with the same shape; the error replies Sentinel writes
//! are themselves messages its reader accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sentinel_mcp::daemon::DaemonRequest;
use sentinel_mcp::framing::{Frame, LineReader};
use sentinel_mcp::jsonrpc::{error_response, parse_strict};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, input)) = data.split_first() else {
        return;
    };
    let max_line = usize::from(limit) + 1;
    // One runtime for every input: building one per input costs more
    // than the input itself.
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    });
    let frames = runtime.block_on(async {
        // A small buffer so lines straddle reads.
        let reader = tokio::io::BufReader::with_capacity(7, input);
        let mut lines = LineReader::new(reader, max_line);
        let mut frames = Vec::new();
        while let Some(frame) = lines
            .next_frame()
            .await
            .expect("reading a slice cannot fail")
        {
            frames.push(frame);
        }
        frames
    });
    for frame in &frames {
        if let Frame::Line(line) = frame {
            assert!(line.len() <= max_line, "a frame longer than the limit");
            assert!(!line.contains(&b'\n'), "a frame holding a newline");
        }
    }
    // The whole input as one line, too: the parsers see long messages.
    let whole = Frame::Line(input.to_vec());
    for frame in frames.iter().chain(std::iter::once(&whole)) {
        let Frame::Line(line) = frame else { continue };
        let _ = serde_json::from_slice::<DaemonRequest>(line);
        match parse_strict(line) {
            Ok(msg) => {
                let again = serde_json::Value::Object(msg.value.clone()).to_string();
                let reread = parse_strict(again.as_bytes())
                    .expect("an accepted message, written back out, is accepted again");
                assert_eq!(reread.shape, msg.shape);
            }
            Err(refused) => {
                let reply = error_response(
                    refused.id.as_ref(),
                    refused.rejection.code(),
                    &refused.rejection.to_string(),
                );
                parse_strict(&reply).expect("Sentinel's own error reply is a valid message");
            }
        }
    }
});
