//! The latency the LLM API proxy adds per request, side by side in one
//! run: a local stand-in upstream (a loopback HTTP/1.1 server answering an
//! OpenAI-style chat completion and an Anthropic-style message, and
//! checking it got the real key) called directly and through the proxy
//! (virtual key swapped for the vaulted real one, verdict from the engine
//! on the embedded policy, prompt scanned, one `llm_call` record appended
//! to a SQLite audit chain per request).
//!
//! Criterion measures the mean per request; a second pass of `SAMPLES`
//! single requests per path, interleaved in rounds so the machine's noise
//! falls on all of them alike, reports p50 and p99 and what the proxy
//! adds; a third runs `CONCURRENCY` clients at once for `LOAD_FOR` per
//! path and reports requests/s. Clients keep their connection alive; the
//! proxy opens a new connection to the upstream per request (it has no
//! pool), which is part of what it adds.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sentinel_llm::cli::{standalone_gate, LlmProxyArgs};
use sentinel_llm::upstream::Connector;
use sentinel_llm::{LlmProxy, ProxyConfig, Vault};
use sentinel_mcp::FindingAction;
use sentinel_policy::Mode;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

const SAMPLES: usize = 2000;
const CONCURRENCY: usize = 8;
const LOAD_FOR: Duration = Duration::from_secs(3);
const VIRTUAL: &str = "sk-sentinel-bench-virtual";
const REAL: &str = "sk-bench-real-0123456789";

const OPENAI_REQUEST: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a coding agent."},{"role":"user","content":"List the files in the repository and explain what the build script does, briefly."}]}"#;
const OPENAI_ANSWER: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"The build script embeds the eBPF object so one binary is all a user installs."},"finish_reason":"stop"}],"usage":{"prompt_tokens":31,"completion_tokens":17,"total_tokens":48}}"#;
const ANTHROPIC_REQUEST: &str = r#"{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"List the files in the repository and explain what the build script does, briefly."}]}"#;
const ANTHROPIC_ANSWER: &str = r#"{"id":"msg_bench","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"The build script embeds the eBPF object so one binary is all a user installs."}],"stop_reason":"end_turn","usage":{"input_tokens":24,"output_tokens":17}}"#;

/// One API family: its path, request, and how the key is sent.
#[derive(Clone, Copy)]
struct Api {
    name: &'static str,
    path: &'static str,
    request: &'static str,
}

const APIS: [Api; 2] = [
    Api {
        name: "openai chat",
        path: "/v1/chat/completions",
        request: OPENAI_REQUEST,
    },
    Api {
        name: "anthropic messages",
        path: "/v1/messages",
        request: ANTHROPIC_REQUEST,
    },
];

/// The stand-in upstream: answers both APIs, counts requests and those
/// that did not carry the real key.
async fn upstream(listener: TcpListener, wrong_key: Arc<AtomicU64>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let wrong_key = wrong_key.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let wrong_key = wrong_key.clone();
                async move {
                    let bearer = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .map(str::to_string);
                    let x_api_key = req
                        .headers()
                        .get("x-api-key")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let anthropic = req.uri().path() == "/v1/messages";
                    let key = if anthropic { x_api_key } else { bearer };
                    if key.as_deref() != Some(REAL) {
                        wrong_key.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = req.into_body().collect().await;
                    let answer = if anthropic {
                        ANTHROPIC_ANSWER
                    } else {
                        OPENAI_ANSWER
                    };
                    Ok::<_, std::convert::Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(answer.as_bytes())))
                            .expect("a static response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A keep-alive client connection, sending `key`: the real key straight
/// to the upstream, the virtual one to the proxy.
struct Client {
    sender: SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    key: &'static str,
}

impl Client {
    async fn connect(addr: SocketAddr, key: &'static str) -> Client {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Client { sender, addr, key }
    }

    /// One request, its whole answer read; returns the answer's size.
    async fn call(&mut self, api: Api) -> usize {
        let mut request = Request::post(api.path)
            .header("host", self.addr.to_string())
            .header("content-type", "application/json");
        request = if api.path == "/v1/messages" {
            request
                .header("x-api-key", self.key)
                .header("anthropic-version", "2023-06-01")
        } else {
            request.header("authorization", format!("Bearer {}", self.key))
        };
        let request = request
            .body(Full::new(Bytes::from_static(api.request.as_bytes())))
            .expect("a request");
        self.sender.ready().await.expect("connection ready");
        let response = self.sender.send_request(request).await.expect("an answer");
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.into_body().collect().await.expect("a body");
        body.to_bytes().len()
    }
}

/// The upstream and the proxy in front of it, on loopback ports.
struct Bench {
    runtime: Runtime,
    direct: SocketAddr,
    proxied: SocketAddr,
    wrong_key: Arc<AtomicU64>,
    proxy: Arc<LlmProxy>,
    _state: tempfile::TempDir,
}

impl Bench {
    fn start() -> Bench {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let state = tempfile::tempdir().expect("a temp dir");
        let wrong_key = Arc::new(AtomicU64::new(0));
        let (direct, proxied, proxy) = runtime.block_on(async {
            let up = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let direct = up.local_addr().expect("addr");
            tokio::spawn(upstream(up, wrong_key.clone()));
            let vault = Vault::parse(&format!(
                "[[key]]\nvirtual = \"{VIRTUAL}\"\nreal = \"{REAL}\"\nagent = \"bench\"\n"
            ))
            .expect("a vault");
            let args = LlmProxyArgs {
                listen: "127.0.0.1:0".parse().expect("addr"),
                upstream: format!("http://{direct}"),
                vault: state.path().join("vault.toml"),
                agent: Some("bench".into()),
                db: Some(state.path().join("audit.db")),
                policy: None,
                mode: Mode::Alert,
                state_dir: state.path().to_path_buf(),
                on_secret: FindingAction::Block,
                on_injection: FindingAction::Flag,
                upstream_ca: None,
                max_request: 32 << 20,
            };
            let db = args.db.clone().expect("a db");
            let gate = standalone_gate(&args, Path::new(&db)).expect("the standalone gate");
            let config = ProxyConfig {
                upstream: args.upstream.parse().expect("a URI"),
                agent: args.agent.clone(),
                secrets: args.on_secret,
                injection: args.on_injection,
                max_request: args.max_request,
                max_response: 64 << 20,
            };
            let connector = Connector::new(None).expect("a connector");
            let proxy = Arc::new(LlmProxy::new(config, vault, gate, connector));
            let listener = TcpListener::bind(args.listen).await.expect("bind");
            let proxied = listener.local_addr().expect("addr");
            tokio::spawn(sentinel_llm::proxy::serve(listener, proxy.clone()));
            (direct, proxied, proxy)
        });
        Bench {
            runtime,
            direct,
            proxied,
            wrong_key,
            proxy,
            _state: state,
        }
    }

    fn direct_client(&self) -> Client {
        self.runtime.block_on(Client::connect(self.direct, REAL))
    }

    fn proxied_client(&self) -> Client {
        self.runtime
            .block_on(Client::connect(self.proxied, VIRTUAL))
    }

    fn call(&self, client: &mut Client, api: Api) -> usize {
        self.runtime.block_on(client.call(api))
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Requests/s with `CONCURRENCY` keep-alive clients for `LOAD_FOR`.
fn throughput(bench: &Bench, addr: SocketAddr, key: &'static str, api: Api) -> f64 {
    bench.runtime.block_on(async {
        let deadline = Instant::now() + LOAD_FOR;
        let mut tasks = Vec::new();
        for _ in 0..CONCURRENCY {
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(addr, key).await;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    client.call(api).await;
                    n += 1;
                }
                n
            }));
        }
        let start = Instant::now();
        let mut total = 0;
        for t in tasks {
            total += t.await.expect("a load task");
        }
        total as f64 / start.elapsed().as_secs_f64()
    })
}

fn bench_proxy(c: &mut Criterion) {
    let bench = Bench::start();
    let mut group = c.benchmark_group("llm_proxy");
    for api in APIS {
        let mut direct = bench.direct_client();
        let mut proxied = bench.proxied_client();
        // Both answer the same bytes (the proxy scrubs nothing here).
        assert_eq!(
            bench.call(&mut direct, api),
            bench.call(&mut proxied, api),
            "{}",
            api.name
        );
        group.bench_function(format!("{} direct", api.name), |b| {
            b.iter(|| bench.call(&mut direct, api))
        });
        group.bench_function(format!("{} through the proxy", api.name), |b| {
            b.iter(|| bench.call(&mut proxied, api))
        });
    }
    group.finish();

    println!("\nper request, {SAMPLES} samples per path, interleaved in rounds of 100:");
    println!(
        "{:<22} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10}",
        "api", "direct p50", "p99", "proxied p50", "p99", "adds p50", "adds p99"
    );
    for api in APIS {
        let mut direct = bench.direct_client();
        let mut proxied = bench.proxied_client();
        let (mut d, mut p) = (Vec::new(), Vec::new());
        while d.len() < SAMPLES {
            for _ in 0..100 {
                let t = Instant::now();
                bench.call(&mut direct, api);
                d.push(t.elapsed());
            }
            for _ in 0..100 {
                let t = Instant::now();
                bench.call(&mut proxied, api);
                p.push(t.elapsed());
            }
        }
        d.sort();
        p.sort();
        let (d50, d99, p50, p99) = (
            percentile(&d, 0.5),
            percentile(&d, 0.99),
            percentile(&p, 0.5),
            percentile(&p, 0.99),
        );
        println!(
            "{:<22} {:>8.0}µs {:>8.0}µs {:>10.0}µs {:>10.0}µs {:>8.0}µs {:>8.0}µs",
            api.name,
            micros(d50),
            micros(d99),
            micros(p50),
            micros(p99),
            micros(p50) - micros(d50),
            micros(p99) - micros(d99),
        );
    }

    println!("\n{CONCURRENCY} concurrent keep-alive clients for {LOAD_FOR:?} per path:");
    for api in APIS {
        let direct = throughput(&bench, bench.direct, REAL, api);
        let proxied = throughput(&bench, bench.proxied, VIRTUAL, api);
        println!(
            "{:<22} direct {:>8.0} req/s, through the proxy {:>8.0} req/s",
            api.name, direct, proxied
        );
    }
    bench.proxy.flush();
    let wrong = bench.wrong_key.load(Ordering::Relaxed);
    assert_eq!(
        wrong, 0,
        "the upstream got {wrong} requests without the real key"
    );
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        println!("\nload average at the end: {}", load.trim());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    targets = bench_proxy
}

criterion_main!(benches);
