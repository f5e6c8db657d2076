//! Live export sinks: JSONL (file with size rotation, or stdout) and CEF
//! (file, stdout, or RFC 5424 syslog over UDP, TCP, or TLS as RFC 5425
//! specifies: `tls://HOST:PORT`, the server's certificate checked against
//! the system roots and an optional CA file, never a plaintext fallback).
//!
//! Each sink runs on its own thread behind a bounded queue. The caller only
//! ever `try_send`s: a slow or unreachable sink never blocks enforcement.
//! When the queue is full the record is dropped and counted; TCP reconnects
//! with exponential backoff and re-sends the record it was holding. Nothing
//! is lost silently: [`SinkStats`] counts sent, dropped and errors.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::cef;
use crate::checkpoint::Checkpoint;
use crate::event::Event;
use crate::syslog;

/// Where a sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
    Udp {
        host: String,
        port: u16,
    },
    Tcp {
        host: String,
        port: u16,
    },
    /// RFC 5425: octet-counted RFC 5424 frames over TLS.
    Tls {
        host: String,
        port: u16,
    },
}

/// What a sink writes, and where: `--jsonl PATH|-` or
/// `--cef PATH|-|udp://HOST:PORT|tcp://HOST:PORT|tls://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    Jsonl(Target),
    Cef(Target),
}

/// A sink argument that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkSpecError {
    #[error(
        "empty sink target; give a file path, `-` for stdout, or udp://, tcp:// or tls://HOST:PORT"
    )]
    Empty,
    #[error("`{0}`: JSONL goes to a file or `-`; use --cef for udp://, tcp:// or tls://")]
    JsonlOverNetwork(String),
    #[error("`{0}`: unknown scheme; use a file path, `-`, udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")]
    UnknownScheme(String),
    #[error("`{0}`: expected HOST:PORT after the scheme (IPv6 in brackets: [::1]:514)")]
    BadAddress(String),
    #[error("`{0}`: the port must be a number from 1 to 65535")]
    BadPort(String),
    #[error("`{0}`: expected `jsonl:TARGET` or `cef:TARGET`")]
    UnknownFormat(String),
}

impl SinkSpec {
    /// Parses a `--jsonl` argument.
    pub fn jsonl(arg: &str) -> Result<SinkSpec, SinkSpecError> {
        match parse_target(arg)? {
            Target::Udp { .. } | Target::Tcp { .. } | Target::Tls { .. } => {
                Err(SinkSpecError::JsonlOverNetwork(arg.to_string()))
            }
            target => Ok(SinkSpec::Jsonl(target)),
        }
    }

    /// Parses a `--cef` argument.
    pub fn cef(arg: &str) -> Result<SinkSpec, SinkSpecError> {
        parse_target(arg).map(SinkSpec::Cef)
    }

    pub fn target(&self) -> &Target {
        match self {
            SinkSpec::Jsonl(t) | SinkSpec::Cef(t) => t,
        }
    }
}

/// `jsonl:TARGET` or `cef:TARGET` (for configuration files).
impl FromStr for SinkSpec {
    type Err = SinkSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("jsonl", rest)) => SinkSpec::jsonl(rest),
            Some(("cef", rest)) => SinkSpec::cef(rest),
            _ => Err(SinkSpecError::UnknownFormat(s.to_string())),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bracket = |host: &str| {
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.to_string()
            }
        };
        match self {
            Target::Stdout => f.write_str("-"),
            Target::File(path) => write!(f, "{}", path.display()),
            Target::Udp { host, port } => write!(f, "udp://{}:{port}", bracket(host)),
            Target::Tcp { host, port } => write!(f, "tcp://{}:{port}", bracket(host)),
            Target::Tls { host, port } => write!(f, "tls://{}:{port}", bracket(host)),
        }
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Jsonl(t) => write!(f, "jsonl:{t}"),
            SinkSpec::Cef(t) => write!(f, "cef:{t}"),
        }
    }
}

fn parse_target(arg: &str) -> Result<Target, SinkSpecError> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err(SinkSpecError::Empty);
    }
    if arg == "-" {
        return Ok(Target::Stdout);
    }
    let Some((scheme, rest)) = arg.split_once("://") else {
        return Ok(Target::File(PathBuf::from(arg)));
    };
    let (host, port) = parse_host_port(arg, rest)?;
    match scheme {
        "udp" => Ok(Target::Udp { host, port }),
        "tcp" => Ok(Target::Tcp { host, port }),
        "tls" => Ok(Target::Tls { host, port }),
        _ => Err(SinkSpecError::UnknownScheme(arg.to_string())),
    }
}

fn parse_host_port(arg: &str, rest: &str) -> Result<(String, u16), SinkSpecError> {
    let bad = || SinkSpecError::BadAddress(arg.to_string());
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(bad)?,
        None if host.contains(':') => return Err(bad()),
        None => host,
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| SinkSpecError::BadPort(arg.to_string()))?;
    Ok((host.to_string(), port))
}

/// Tunables shared by all sinks.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Records buffered per sink before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// Rotate a file sink when it would grow past this size (0: never).
    pub rotate_bytes: u64,
    /// Rotated files kept: `path.1` (newest) to `path.N`.
    pub rotate_keep: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long `shutdown` keeps trying to deliver what is queued.
    pub shutdown_timeout: Duration,
    /// CA certificates (PEM) trusted for `tls://` besides the system's.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            queue_capacity: 8192,
            rotate_bytes: 64 * 1024 * 1024,
            rotate_keep: 5,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(5),
            tls_ca_file: None,
        }
    }
}

/// Counters of one sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records written (to the file or stdout buffer, or the network).
    pub sent: u64,
    /// Records lost: queue full, sink shut down, or undeliverable.
    pub dropped: u64,
    /// Write, connect or send failures (a retried record counts once per
    /// failure).
    pub errors: u64,
}

/// A sink that could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {target}: {source}")]
    Open {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("sink {target}: {source}")]
    Tls {
        target: String,
        #[source]
        source: crate::tls::TlsError,
    },
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SinkStats {
        SinkStats {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

enum Item {
    Event(Arc<Event>),
    Checkpoint(Arc<Checkpoint>),
}

/// Set when shutdown begins: past it, undeliverable records are dropped
/// instead of retried.
#[derive(Default)]
struct Deadline(Mutex<Option<Instant>>);

impl Deadline {
    fn set(&self, at: Instant) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(at);
    }
    fn get(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn expired(&self) -> bool {
        self.get().is_some_and(|at| Instant::now() >= at)
    }
}

/// One running sink.
pub struct Sink {
    spec: SinkSpec,
    tx: Option<SyncSender<Item>>,
    counters: Arc<Counters>,
    deadline: Arc<Deadline>,
    shutdown_timeout: Duration,
    worker: Option<JoinHandle<()>>,
}

impl Sink {
    /// Starts the sink's thread. Files are opened now so that a bad path
    /// fails at startup; network sinks connect (and reconnect) lazily.
    pub fn start(spec: SinkSpec, options: &SinkOptions) -> Result<Sink, SinkError> {
        let output: Box<dyn Output> = match spec.target() {
            Target::Stdout => Box::new(StdoutOutput(BufWriter::new(io::stdout()))),
            Target::File(path) => Box::new(
                FileOutput::open(path, options.rotate_bytes, options.rotate_keep).map_err(
                    |source| SinkError::Open {
                        target: spec.to_string(),
                        source,
                    },
                )?,
            ),
            Target::Udp { host, port } => Box::new(UdpOutput {
                address: (host.clone(), *port),
                socket: None,
            }),
            Target::Tcp { host, port } => Box::new(StreamOutput {
                address: (host.clone(), *port),
                tls: None,
                stream: None,
            }),
            Target::Tls { host, port } => Box::new(StreamOutput {
                address: (host.clone(), *port),
                tls: Some(
                    crate::tls::client_config(options.tls_ca_file.as_deref()).map_err(
                        |source| SinkError::Tls {
                            target: spec.to_string(),
                            source,
                        },
                    )?,
                ),
                stream: None,
            }),
        };
        let format = match spec {
            SinkSpec::Jsonl(_) => Format::Jsonl,
            SinkSpec::Cef(_) => Format::Cef,
        };
        let (tx, rx) = mpsc::sync_channel(options.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let deadline = Arc::new(Deadline::default());
        let mut worker = Worker {
            format,
            output,
            sender: syslog::Sender::local(),
            counters: Arc::clone(&counters),
            deadline: Arc::clone(&deadline),
            backoff_initial: options.backoff_initial,
            backoff_max: options.backoff_max,
        };
        let handle = std::thread::Builder::new()
            .name(format!("sink {spec}"))
            .spawn(move || worker.run(rx))
            .map_err(|source| SinkError::Open {
                target: spec.to_string(),
                source,
            })?;
        Ok(Sink {
            spec,
            tx: Some(tx),
            counters,
            deadline,
            shutdown_timeout: options.shutdown_timeout,
            worker: Some(handle),
        })
    }

    pub fn spec(&self) -> &SinkSpec {
        &self.spec
    }

    /// Queues an event; never blocks. A full queue drops it (counted).
    pub fn send_event(&self, event: Arc<Event>) {
        self.enqueue(Item::Event(event));
    }

    /// Queues a checkpoint; never blocks.
    pub fn send_checkpoint(&self, checkpoint: Arc<Checkpoint>) {
        self.enqueue(Item::Checkpoint(checkpoint));
    }

    fn enqueue(&self, item: Item) {
        let Some(tx) = &self.tx else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn stats(&self) -> SinkStats {
        self.counters.snapshot()
    }

    /// Delivers what is queued (giving up after the shutdown timeout,
    /// counting what could not be delivered as dropped), flushes, and stops
    /// the thread. Call on SIGINT/SIGTERM before exiting.
    pub fn shutdown(mut self) -> SinkStats {
        self.stop();
        self.counters.snapshot()
    }

    fn stop(&mut self) {
        self.deadline.set(Instant::now() + self.shutdown_timeout);
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            if worker.join().is_err() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// All the sinks of one daemon.
#[derive(Default)]
pub struct Sinks {
    sinks: Vec<Sink>,
}

impl Sinks {
    pub fn start(specs: &[SinkSpec], options: &SinkOptions) -> Result<Sinks, SinkError> {
        let sinks = specs
            .iter()
            .map(|spec| Sink::start(spec.clone(), options))
            .collect::<Result<_, _>>()?;
        Ok(Sinks { sinks })
    }

    /// Sends one committed batch and its checkpoint to every sink.
    pub fn publish(&self, events: &[Event], checkpoint: &Checkpoint) {
        if self.sinks.is_empty() {
            return;
        }
        for event in events {
            let event = Arc::new(event.clone());
            for sink in &self.sinks {
                sink.send_event(Arc::clone(&event));
            }
        }
        let checkpoint = Arc::new(checkpoint.clone());
        for sink in &self.sinks {
            sink.send_checkpoint(Arc::clone(&checkpoint));
        }
    }

    pub fn send_event(&self, event: Arc<Event>) {
        for sink in &self.sinks {
            sink.send_event(Arc::clone(&event));
        }
    }

    /// Per-sink counters, labelled with the sink's spec.
    pub fn stats(&self) -> Vec<(String, SinkStats)> {
        self.monitor().stats()
    }

    /// A handle that reads the counters from any thread, while the sinks
    /// themselves are owned by the writer.
    pub fn monitor(&self) -> SinkMonitor {
        SinkMonitor(
            self.sinks
                .iter()
                .map(|s| (s.spec.to_string(), Arc::clone(&s.counters)))
                .collect(),
        )
    }

    /// Shuts every sink down (see [`Sink::shutdown`]).
    pub fn shutdown(self) -> Vec<(String, SinkStats)> {
        for sink in &self.sinks {
            sink.deadline.set(Instant::now() + sink.shutdown_timeout);
        }
        self.sinks
            .into_iter()
            .map(|s| (s.spec.to_string(), s.shutdown()))
            .collect()
    }
}

/// Reads the counters of a set of sinks; cheap to clone.
#[derive(Clone, Default)]
pub struct SinkMonitor(Vec<(String, Arc<Counters>)>);

impl SinkMonitor {
    pub fn stats(&self) -> Vec<(String, SinkStats)> {
        self.0
            .iter()
            .map(|(name, counters)| (name.clone(), counters.snapshot()))
            .collect()
    }
}

#[derive(Clone, Copy)]
enum Format {
    Jsonl,
    Cef,
}

/// A record rendered for one sink.
struct Rendered {
    line: String,
    syslog_severity: u8,
    ts: OffsetDateTime,
    msgid: &'static str,
}

fn render(format: Format, item: &Item) -> Rendered {
    match item {
        Item::Event(event) => Rendered {
            line: match format {
                Format::Jsonl => serde_json::to_string(event.as_ref()).unwrap_or_default(),
                Format::Cef => cef::event_line(event),
            },
            syslog_severity: cef::syslog_severity(cef::severity(event)),
            ts: event.ts,
            msgid: event.kind(),
        },
        Item::Checkpoint(cp) => Rendered {
            line: match format {
                Format::Jsonl => serde_json::to_string(cp.as_ref()).unwrap_or_default(),
                Format::Cef => cef::checkpoint_line(cp),
            },
            syslog_severity: 6,
            ts: cp.ts,
            msgid: "audit_checkpoint",
        },
    }
}

trait Output: Send {
    fn write(&mut self, record: &Rendered, sender: &syslog::Sender) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
    /// Whether a failed write is worth retrying (a reconnecting stream).
    fn retries(&self) -> bool {
        false
    }
}

struct Worker {
    format: Format,
    output: Box<dyn Output>,
    sender: syslog::Sender,
    counters: Arc<Counters>,
    deadline: Arc<Deadline>,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl Worker {
    fn run(&mut self, rx: Receiver<Item>) {
        while let Ok(first) = rx.recv() {
            self.deliver(&first);
            while let Ok(next) = rx.try_recv() {
                self.deliver(&next);
            }
            // The queue is empty: push buffered lines out now.
            if self.output.flush().is_err() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        if self.output.flush().is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn deliver(&mut self, item: &Item) {
        let record = render(self.format, item);
        let mut backoff = self.backoff_initial;
        loop {
            match self.output.write(&record, &self.sender) {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    let errors = self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if errors == 0 || errors.is_power_of_two() {
                        tracing::warn!("export sink: {e} ({} errors so far)", errors + 1);
                    }
                    // A certificate the roots do not vouch for will not
                    // fix itself by retrying this record: it is dropped
                    // (counted) and the next record tries again.
                    if !self.output.retries()
                        || crate::tls::is_permanent(&e)
                        || self.deadline.expired()
                    {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(self.backoff_max);
                }
            }
        }
    }

    /// Sleeps, waking early once the shutdown deadline passes.
    fn sleep(&self, total: Duration) {
        let until = Instant::now() + total;
        loop {
            let now = Instant::now();
            if now >= until || self.deadline.expired() {
                return;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

struct StdoutOutput(BufWriter<io::Stdout>);

impl Output for StdoutOutput {
    fn write(&mut self, record: &Rendered, _: &syslog::Sender) -> io::Result<()> {
        self.0.write_all(record.line.as_bytes())?;
        self.0.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A file rotated by size: `path` → `path.1` → … → `path.keep`. Only a
/// regular file is rotated: a device or a FIFO (`--jsonl /dev/null`, a
/// pipe to a shipper) is written to as it is, never renamed.
struct FileOutput {
    path: PathBuf,
    file: Option<BufWriter<File>>,
    size: u64,
    regular: bool,
    rotate_bytes: u64,
    keep: usize,
}

impl FileOutput {
    fn open(path: &Path, rotate_bytes: u64, keep: usize) -> io::Result<FileOutput> {
        let mut output = FileOutput {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            regular: true,
            rotate_bytes,
            keep,
        };
        output.reopen()?;
        Ok(output)
    }

    fn reopen(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)?;
        let meta = file.metadata()?;
        self.regular = meta.file_type().is_file();
        self.size = meta.len();
        self.file = Some(BufWriter::new(file));
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut file) = self.file.take() {
            file.flush()?;
        }
        let numbered = |n: usize| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                match std::fs::rename(numbered(n), numbered(n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.reopen()
    }
}

impl Output for FileOutput {
    fn write(&mut self, record: &Rendered, _: &syslog::Sender) -> io::Result<()> {
        let len = record.line.len() as u64 + 1;
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.regular
            && self.rotate_bytes > 0
            && self.size > 0
            && self.size + len > self.rotate_bytes
        {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("file sink is not open"));
        };
        let written = file
            .write_all(record.line.as_bytes())
            .and_then(|()| file.write_all(b"\n"));
        if written.is_err() {
            // Reopen on the next record (the file may have been removed).
            self.file = None;
        }
        written?;
        self.size += len;
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.flush(),
            None => Ok(()),
        }
    }
}

/// RFC 5424 messages, one per datagram.
struct UdpOutput {
    address: (String, u16),
    socket: Option<UdpSocket>,
}

impl UdpOutput {
    fn connect(&self) -> io::Result<UdpSocket> {
        let target = resolve(&self.address)?;
        let local = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(target)?;
        Ok(socket)
    }
}

impl Output for UdpOutput {
    fn write(&mut self, record: &Rendered, sender: &syslog::Sender) -> io::Result<()> {
        let frame = sender.frame(
            record.syslog_severity,
            record.ts,
            record.msgid,
            &record.line,
        );
        // One retry: a connected UDP socket reports an earlier datagram's
        // ICMP "port unreachable" on the next send.
        for attempt in 0..2 {
            if self.socket.is_none() {
                self.socket = Some(self.connect()?);
            }
            let Some(socket) = self.socket.as_ref() else {
                continue;
            };
            match socket.send(frame.as_bytes()) {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 1 => {
                    self.socket = None;
                    return Err(e);
                }
                Err(_) => self.socket = None,
            }
        }
        Err(io::Error::other("udp send failed"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// RFC 5424 messages with RFC 6587 octet-counting framing over TCP, or
/// over TLS (RFC 5425, the same framing). Unbuffered: a frame counts as
/// sent only once the kernel (or the TLS layer) has taken all of it, so a
/// broken connection cannot swallow frames counted as sent from a buffer.
struct StreamOutput {
    address: (String, u16),
    /// `Some`: TLS with this configuration; there is no plaintext fallback.
    tls: Option<Arc<rustls::ClientConfig>>,
    stream: Option<Box<dyn Write + Send>>,
}

impl StreamOutput {
    fn connect(&self) -> io::Result<Box<dyn Write + Send>> {
        let target = resolve(&self.address)?;
        let tcp = TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(config) => {
                tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
                Ok(Box::new(crate::tls::connect(config, &self.address.0, tcp)?))
            }
        }
    }
}

impl Output for StreamOutput {
    fn write(&mut self, record: &Rendered, sender: &syslog::Sender) -> io::Result<()> {
        if self.stream.is_none() {
            self.stream = Some(self.connect()?);
        }
        let frame = sender.frame(
            record.syslog_severity,
            record.ts,
            record.msgid,
            &record.line,
        );
        let bytes = syslog::octet_counted(&frame);
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::other("stream sink is not connected"));
        };
        let written = stream.write_all(&bytes).and_then(|()| stream.flush());
        if written.is_err() {
            self.stream = None;
        }
        written
    }
    fn flush(&mut self) -> io::Result<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Ok(());
        };
        let flushed = stream.flush();
        if flushed.is_err() {
            self.stream = None;
        }
        flushed
    }
    fn retries(&self) -> bool {
        true
    }
}

fn resolve(address: &(String, u16)) -> io::Result<std::net::SocketAddr> {
    (address.0.as_str(), address.1)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} did not resolve", address.0),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sink_arguments() {
        assert_eq!(SinkSpec::jsonl("-"), Ok(SinkSpec::Jsonl(Target::Stdout)));
        assert_eq!(
            SinkSpec::jsonl("/var/log/s.jsonl"),
            Ok(SinkSpec::Jsonl(Target::File("/var/log/s.jsonl".into())))
        );
        assert_eq!(
            SinkSpec::cef("udp://127.0.0.1:514"),
            Ok(SinkSpec::Cef(Target::Udp {
                host: "127.0.0.1".into(),
                port: 514
            }))
        );
        assert_eq!(
            SinkSpec::cef("tcp://[::1]:6514"),
            Ok(SinkSpec::Cef(Target::Tcp {
                host: "::1".into(),
                port: 6514
            }))
        );
        assert_eq!(
            SinkSpec::cef("tls://siem.example:6514"),
            Ok(SinkSpec::Cef(Target::Tls {
                host: "siem.example".into(),
                port: 6514
            }))
        );
        assert!(matches!(
            SinkSpec::jsonl("tls://h:6514"),
            Err(SinkSpecError::JsonlOverNetwork(_))
        ));
        assert_eq!(
            "cef:tcp://siem.example:601"
                .parse::<SinkSpec>()
                .map(|s| s.to_string()),
            Ok("cef:tcp://siem.example:601".to_string())
        );
    }

    #[test]
    fn rejects_bad_sink_arguments_with_a_reason() {
        assert_eq!(SinkSpec::jsonl(""), Err(SinkSpecError::Empty));
        assert!(matches!(
            SinkSpec::jsonl("udp://h:1"),
            Err(SinkSpecError::JsonlOverNetwork(_))
        ));
        assert!(matches!(
            SinkSpec::cef("http://h:1"),
            Err(SinkSpecError::UnknownScheme(_))
        ));
        assert!(matches!(
            SinkSpec::cef("udp://h"),
            Err(SinkSpecError::BadAddress(_))
        ));
        assert!(matches!(
            SinkSpec::cef("udp://::1:514"),
            Err(SinkSpecError::BadAddress(_))
        ));
        assert!(matches!(
            SinkSpec::cef("tcp://h:70000"),
            Err(SinkSpecError::BadPort(_))
        ));
        assert!(matches!(
            SinkSpec::cef("tcp://h:0"),
            Err(SinkSpecError::BadPort(_))
        ));
        assert!(matches!(
            "xml:-".parse::<SinkSpec>(),
            Err(SinkSpecError::UnknownFormat(_))
        ));
    }
}
