//! The stdio transport: spawn the server, carry newline-delimited JSON-RPC
//! between our stdin/stdout and its stdin/stdout through [`Proxy`], pass its
//! stderr through, and return its exit status.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;

use crate::framing::{Frame, LineReader};
use crate::proxy::{Out, Proxy, Step};

/// A line for a writer task, or the order to flush and stop.
pub(crate) enum Write {
    Line(Vec<u8>),
    Stop,
}

/// Errors starting or running the stdio proxy.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("cannot start the MCP server `{command}`: {source}; check the command after `--`")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("waiting for the MCP server failed: {0}")]
    Wait(std::io::Error),
}

#[derive(Clone)]
struct Sinks {
    client: mpsc::Sender<Write>,
    server: mpsc::Sender<Write>,
}

impl Sinks {
    async fn apply(&self, proxy: &Arc<Proxy>, step: Step) {
        for timer in step.timers {
            let proxy = Arc::clone(proxy);
            let sinks = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(timer.after).await;
                // A timeout only answers; it never starts another timer.
                sinks.deliver(proxy.on_timeout(&timer).out).await;
            });
        }
        self.deliver(step.out).await;
    }

    async fn deliver(&self, out: Vec<Out>) {
        for out in out {
            // A closed writer means that side is gone; nothing to deliver to.
            let _ = match out {
                Out::Client(line) => self.client.send(Write::Line(line)).await,
                Out::Server(line) => self.server.send(Write::Line(line)).await,
            };
        }
    }
}

pub(crate) async fn writer<W: AsyncWrite + Unpin>(mut sink: W, mut rx: mpsc::Receiver<Write>) {
    while let Some(msg) = rx.recv().await {
        let Write::Line(mut line) = msg else { break };
        line.push(b'\n');
        if sink.write_all(&line).await.is_err() || sink.flush().await.is_err() {
            break;
        }
    }
    let _ = sink.shutdown().await;
}

/// Where the MCP server is: a command to spawn, or an HTTP endpoint.
#[derive(Debug, Clone)]
pub enum Target {
    Command(Vec<String>),
    Http(hyper::Uri),
}

/// Runs the server at `target` behind `proxy`, with `client_in` /
/// `client_out` as the client side (stdin/stdout for `sentinel mcp-proxy`).
/// Returns when the server has exited (for an HTTP server: when the client
/// is gone) and the last messages were written.
pub async fn run<I, O>(
    proxy: Arc<Proxy>,
    target: &Target,
    client_in: I,
    client_out: O,
) -> Result<ExitStatus, StdioError>
where
    I: AsyncRead + Unpin + Send + 'static,
    O: AsyncWrite + Unpin + Send + 'static,
{
    let max_line = proxy.config().max_line;
    // Listening before the server starts: a SIGTERM from then on ends the
    // server too, never only the proxy.
    let termination = Termination::listen();
    let Downstream {
        child,
        mut frames,
        to_server: server_tx,
    } = spawn_downstream(target, max_line)?;
    let (client_tx, client_rx) = mpsc::channel(256);
    let sinks = Sinks {
        client: client_tx,
        server: server_tx,
    };
    let client_writer = tokio::spawn(writer(client_out, client_rx));
    let server_pid = child.as_ref().and_then(Child::id);
    let exited = Arc::new(AtomicBool::new(false));
    if let (Some(pid), Some(termination)) = (server_pid, termination) {
        tokio::spawn(forward_termination(termination, pid, Arc::clone(&exited)));
    }

    {
        let proxy = Arc::clone(&proxy);
        let sinks = sinks.clone();
        let exited = Arc::clone(&exited);
        tokio::spawn(async move {
            let mut reader = LineReader::new(BufReader::new(client_in), max_line);
            while let Ok(Some(frame)) = reader.next_frame().await {
                let step = proxy.on_client_frame(frame);
                sinks.apply(&proxy, step).await;
            }
            // The client is gone: close the server's stdin so it can exit,
            // and end it as the MCP stdio shutdown says if it does not.
            let _ = sinks.server.send(Write::Stop).await;
            if let Some(pid) = server_pid {
                stop_after_grace(pid, &exited).await;
            }
        });
    }

    while let Ok(Some(frame)) = frames.next_frame().await {
        let step = proxy.on_server_frame(frame);
        sinks.apply(&proxy, step).await;
    }
    let step = proxy.on_server_closed();
    sinks.apply(&proxy, step).await;
    let status = wait(child).await;
    exited.store(true, Ordering::SeqCst);
    let status = status?;
    let _ = sinks.client.send(Write::Stop).await;
    let _ = client_writer.await;
    Ok(status)
}

/// How long a server may take to exit after its stdin closed, before
/// SIGTERM; and after SIGTERM, before SIGKILL.
const EXIT_GRACE: Duration = Duration::from_secs(5);
const TERM_GRACE: Duration = Duration::from_secs(2);

fn signal(pid: u32, exited: &AtomicBool, sig: libc::c_int) {
    if exited.load(Ordering::SeqCst) {
        return; // the pid may belong to someone else by now
    }
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Closing stdin was not enough: SIGTERM after a grace period, then SIGKILL.
async fn stop_after_grace(pid: u32, exited: &AtomicBool) {
    tokio::time::sleep(EXIT_GRACE).await;
    signal(pid, exited, libc::SIGTERM);
    tokio::time::sleep(TERM_GRACE).await;
    signal(pid, exited, libc::SIGKILL);
}

/// The signals that end the proxy, caught from before the server starts.
struct Termination {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Termination {
    fn listen() -> Option<Termination> {
        use tokio::signal::unix::{signal as on, SignalKind};
        Some(Termination {
            term: on(SignalKind::terminate()).ok()?,
            int: on(SignalKind::interrupt()).ok()?,
            hup: on(SignalKind::hangup()).ok()?,
        })
    }
}

/// SIGTERM, SIGINT or SIGHUP to the proxy ends the server too, so it does
/// not outlive the proxy; the proxy then exits with the server's status.
async fn forward_termination(mut t: Termination, pid: u32, exited: Arc<AtomicBool>) {
    tokio::select! {
        _ = t.term.recv() => {}
        _ = t.int.recv() => {}
        _ = t.hup.recv() => {}
    }
    signal(pid, &exited, libc::SIGTERM);
    tokio::time::sleep(TERM_GRACE).await;
    signal(pid, &exited, libc::SIGKILL);
}

/// The server: its process (none for HTTP), the frames it writes, and a
/// writer for what it reads (send [`Write::Stop`] to close it).
pub(crate) struct Downstream {
    pub child: Option<Child>,
    pub frames: FrameSource,
    pub to_server: mpsc::Sender<Write>,
}

/// Where server frames come from.
pub(crate) enum FrameSource {
    Stdout(LineReader<BufReader<ChildStdout>>),
    Http(mpsc::Receiver<Frame>),
}

impl FrameSource {
    pub(crate) async fn next_frame(&mut self) -> std::io::Result<Option<Frame>> {
        match self {
            FrameSource::Stdout(reader) => reader.next_frame().await,
            FrameSource::Http(rx) => Ok(rx.recv().await),
        }
    }
}

/// The server's exit status; an HTTP server "exits" cleanly.
pub(crate) async fn wait(child: Option<Child>) -> Result<ExitStatus, StdioError> {
    use std::os::unix::process::ExitStatusExt;
    match child {
        Some(mut child) => child.wait().await.map_err(StdioError::Wait),
        None => Ok(ExitStatus::from_raw(0)),
    }
}

/// Starts the downstream: spawns a command (piped stdin/stdout, inherited
/// stderr) or opens the HTTP link.
pub(crate) fn spawn_downstream(target: &Target, max_line: usize) -> Result<Downstream, StdioError> {
    let command = match target {
        Target::Command(command) => command,
        Target::Http(url) => {
            let (to_server, frames) = crate::upstream::spawn(url.clone(), max_line);
            return Ok(Downstream {
                child: None,
                frames: FrameSource::Http(frames),
                to_server,
            });
        }
    };
    let spawn_error = |source| StdioError::Spawn {
        command: command.join(" "),
        source,
    };
    let (program, args) = command
        .split_first()
        .ok_or_else(|| spawn_error(std::io::Error::other("no command given")))?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(spawn_error(std::io::Error::other("no pipes to the server")));
    };
    let (to_server, rx) = mpsc::channel(256);
    tokio::spawn(writer(stdin, rx));
    Ok(Downstream {
        child: Some(child),
        frames: FrameSource::Stdout(LineReader::new(BufReader::new(stdout), max_line)),
        to_server,
    })
}
