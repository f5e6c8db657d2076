//! The proxy's own work per message, without pipes or processes: one
//! `tools/call` and its result through [`Proxy`] with the standalone
//! decision point (engine, audit chain queued to its writer thread, pin
//! store), and the scanner stages it runs (secrets and injection over
//! arguments and results, redaction for the audit record). Where the
//! latency of `proxy_latency` goes, stage by stage.

use std::sync::Arc;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use sentinel_mcp::framing::Frame;
use sentinel_mcp::proxy::{Out, Proxy, ProxyConfig};
use sentinel_mcp::{Scanner, SystemClock};
use serde_json::json;

const RESULT_TEXT: &str = "Build finished in 4.2 s. 312 tests passed, 0 failed. \
The release notes for version 2.4 list three fixes: a race in the cache eviction \
path, a wrong default for the retry budget, and a typo in the CLI help for --json. \
See CHANGELOG.md for details and the migration guide for configuration changes.";

fn proxy(dir: &std::path::Path) -> Proxy {
    let policy = dir.join("policy");
    std::fs::create_dir_all(&policy).unwrap();
    std::fs::write(
        policy.join("50-bench.toml"),
        "[[rule]]\nname = \"no-mass-delete\"\naction = \"deny\"\nkind = \"mcp\"\ntool = \"delete_*\"\n",
    )
    .unwrap();
    let decider = sentinel_mcp::inprocess::open_standalone(
        Some(&policy),
        &dir.join("b.db"),
        &dir.join("b.state"),
        sentinel_mcp::ScanPolicy::default(),
    )
    .unwrap();
    let config = ProxyConfig {
        agent: Some("bench".into()),
        server: "bench".into(),
        uid: 1000,
        pid: std::process::id(),
        max_line: 1 << 22,
        request_timeout: Duration::from_secs(600),
        ask_ttl: Duration::from_secs(600),
    };
    let proxy = Proxy::new(config, Arc::new(decider), Arc::new(SystemClock));
    let list = br#"{"jsonrpc":"2.0","id":"l","method":"tools/list"}"#.to_vec();
    proxy.on_client_frame(Frame::Line(list));
    let tools = json!({"jsonrpc":"2.0","id":"l","result":{"tools":[
        {"name":"echo","description":"Echo the text back.","inputSchema":{"type":"object"}},
        {"name":"delete_all","description":"Delete every file.","inputSchema":{"type":"object"}}]}});
    proxy.on_server_frame(Frame::Line(tools.to_string().into_bytes()));
    proxy
}

fn steps(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let proxy = proxy(dir.path());
    let mut id = 0u64;
    c.bench_function("proxy/tools_call_and_result", |b| {
        b.iter(|| {
            id += 1;
            let call = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"benchmark"}}}}}}"#
            );
            let step = proxy.on_client_frame(Frame::Line(call.into_bytes()));
            assert!(matches!(step.out.first(), Some(Out::Server(_))));
            let result = json!({"jsonrpc":"2.0","id":id,"result":{
                "content":[{"type":"text","text":RESULT_TEXT}],"isError":false}});
            let step = proxy.on_server_frame(Frame::Line(result.to_string().into_bytes()));
            assert!(matches!(step.out.first(), Some(Out::Client(_))));
        })
    });

    let scanner = Scanner::new();
    let result = json!({"content":[{"type":"text","text":RESULT_TEXT}],"isError":false});
    c.bench_function("scanner/findings_result_350_bytes", |b| {
        b.iter(|| black_box(scanner.findings(black_box(&result))))
    });
    let args = json!({"text": "benchmark"});
    c.bench_function("scanner/findings_small_args", |b| {
        b.iter(|| black_box(scanner.findings(black_box(&args))))
    });
    c.bench_function("scanner/redact_args_small", |b| {
        b.iter(|| {
            let mut a = args.clone();
            black_box(scanner.redact_args(&mut a))
        })
    });
    c.bench_function("scanner/injection_350_bytes", |b| {
        b.iter(|| black_box(scanner.injection_in(black_box(RESULT_TEXT))))
    });
    // One non-ASCII word: with Unicode word boundaries the lazy DFA gave
    // up there and the regex crate fell back to the PikeVM.
    let accented = format!("{RESULT_TEXT} Résumé attached.");
    c.bench_function("scanner/injection_350_bytes_non_ascii", |b| {
        b.iter(|| black_box(scanner.injection_in(black_box(&accented))))
    });
    // All of it in another script (Cyrillic, about 350 bytes).
    let cyrillic = "Сборка завершена за 4,2 с. Пройдено 312 тестов, 0 с ошибками. \
        В примечаниях к версии 2.4 перечислены три исправления: гонка при вытеснении кэша, \
        неверное значение по умолчанию.";
    c.bench_function("scanner/injection_350_bytes_cyrillic", |b| {
        b.iter(|| black_box(scanner.injection_in(black_box(cyrillic))))
    });
    c.bench_function("scanner/secrets_350_bytes_cyrillic", |b| {
        b.iter(|| black_box(scanner.secrets_in(black_box(cyrillic))))
    });
    c.bench_function("scanner/secrets_350_bytes", |b| {
        b.iter(|| black_box(scanner.secrets_in(black_box(RESULT_TEXT))))
    });
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{RESULT_TEXT}"}}],"isError":false}}}}"#
    );
    c.bench_function("jsonrpc/parse_strict_result", |b| {
        // The parsed message is kept (black_box), the refusal dropped.
        b.iter(|| black_box(sentinel_mcp::jsonrpc::parse_strict(black_box(line.as_bytes())).ok()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(3));
    targets = steps
}
criterion_main!(benches);
