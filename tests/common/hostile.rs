//! A hostile backend for the hostile-tenant suite: an HTTP/1.1 server on 127.0.0.1, written
//! by hand so that it can misbehave in ways a well-behaved server library would not. What it
//! does is chosen by the first segment of the path, so a ReportBackend whose `url` is
//! [`HostileServer::url`] gets that behaviour on every call its client makes (CONNECT's
//! `/reporting/reports`, FUSION's `/api/v01/auth/login`, …).
//!
//! Answers that carry text (the malformed JSON, the huge error page) start with an echo of the
//! request, credentials included, to tempt a client into copying them into a message.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200 with a chunked JSON body that never ends: `[0,0,0,…`.
    Endless,
    /// 200 announcing a megabyte, then one byte a second.
    Drip,
    /// 200 `application/json` that is not JSON.
    Malformed,
    /// 200 with 50 MiB of valid JSON (FUSION login: a 50 MiB access token).
    HugeJson,
    /// 500 with a 20 MiB text body.
    HugeError,
    /// 302 to the same URL, forever.
    RedirectLoop,
    /// 307 to the cloud metadata service (169.254.169.254).
    RedirectMetadata,
}

impl Mode {
    pub const ALL: [Mode; 7] = [
        Mode::Endless,
        Mode::Drip,
        Mode::Malformed,
        Mode::HugeJson,
        Mode::HugeError,
        Mode::RedirectLoop,
        Mode::RedirectMetadata,
    ];

    /// The path segment that selects the mode, also fit for a namespace name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Endless => "endless",
            Mode::Drip => "drip",
            Mode::Malformed => "malformed",
            Mode::HugeJson => "huge-json",
            Mode::HugeError => "huge-error",
            Mode::RedirectLoop => "redirect-loop",
            Mode::RedirectMetadata => "redirect-metadata",
        }
    }

    fn index(self) -> usize {
        Mode::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// The size of the huge JSON answer.
pub const HUGE_JSON_BYTES: usize = 50 << 20;
/// The size of the huge error page.
pub const HUGE_ERROR_BYTES: usize = 20 << 20;
/// The pace of an endless body: fast enough to reach gigabytes within a 30 s request
/// timeout, slow enough that the suite's memory watchdog can stop a client that keeps it all
/// before it takes the machine's memory.
const ENDLESS_BYTES_PER_SEC: u64 = 64 << 20;
/// Where [`Mode::RedirectMetadata`] points.
pub const METADATA_URL: &str = "http://169.254.169.254/latest/meta-data/iam/security-credentials/";

pub const CHUNK: usize = 64 << 10;
const MAX_HEAD: usize = 64 << 10;
const MAX_REQUEST_BODY: usize = 1 << 20;

#[derive(Default)]
struct Stats {
    requests: [AtomicU64; 7],
    bytes_sent: AtomicU64,
}

pub struct HostileServer {
    addr: SocketAddr,
    stats: Arc<Stats>,
    accept: tokio::task::JoinHandle<()>,
}

impl HostileServer {
    pub async fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hostile server");
        let addr = listener.local_addr().expect("hostile server address");
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                // A connection ends when its client goes away (every write fails then).
                tokio::spawn(async move {
                    let _ = serve(stream, addr, &s).await;
                });
            }
        });
        HostileServer { addr, stats, accept }
    }

    /// A base URL with `mode`'s behaviour.
    pub fn url(&self, mode: Mode) -> String {
        format!("http://{}/{}", self.addr, mode.name())
    }

    /// Requests that reached `mode` so far.
    pub fn requests(&self, mode: Mode) -> u64 {
        self.stats.requests[mode.index()].load(Ordering::Relaxed)
    }

    /// Body bytes written to clients so far, all modes together.
    pub fn bytes_sent(&self) -> u64 {
        self.stats.bytes_sent.load(Ordering::Relaxed)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// The request as received: its head and body, lossily as text.
pub struct Request {
    pub path: String,
    pub echo: String,
}

/// Reads one request; `None` when the client went away or sent a head over 64 KiB.
pub async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
        .min(MAX_REQUEST_BODY);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        path,
        echo: String::from_utf8_lossy(&buf).into_owned(),
    }))
}

fn mode_of(path: &str) -> Option<Mode> {
    let first = path.trim_start_matches('/').split(['/', '?']).next()?;
    Mode::ALL.into_iter().find(|m| m.name() == first)
}

async fn serve(mut stream: TcpStream, addr: SocketAddr, stats: &Stats) -> std::io::Result<()> {
    let Some(req) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let Some(mode) = mode_of(&req.path) else {
        return stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    };
    stats.requests[mode.index()].fetch_add(1, Ordering::Relaxed);
    let count = |n: usize| {
        stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    };
    match mode {
        Mode::Endless => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n1\r\n[\r\n")
                .await?;
            send_endless(&mut stream, &"0,".repeat(CHUNK / 2), &count).await
        }
        Mode::Drip => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n[")
                .await?;
            send_drip(&mut stream, b"0", &count).await
        }
        Mode::Malformed => {
            let body = format!(
                "{{\"message\": {:?}, \"data\": [1, 2, {{\"access_token\": \"tok",
                req.echo
            );
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(body.as_bytes()).await?;
            count(body.len());
            Ok(())
        }
        Mode::HugeJson => {
            let (open, item, close) = if req.path.ends_with("/auth/login") {
                (
                    "{\"data\":{\"access_token\":\"",
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                    "\",\"refresh_token\":\"r\"}}",
                )
            } else {
                (
                    "[",
                    "{\"id\":\"RP-0000-0000\",\"name\":\"x\",\"status\":\"ready\"},",
                    "{\"id\":\"RP-LAST\"}]",
                )
            };
            let repeats = (HUGE_JSON_BYTES - open.len() - close.len()) / item.len();
            let total = open.len() + repeats * item.len() + close.len();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{open}"
            );
            stream.write_all(head.as_bytes()).await?;
            let block = item.repeat(CHUNK / item.len());
            let per_block = CHUNK / item.len();
            let mut left = repeats;
            while left > 0 {
                let n = left.min(per_block);
                stream.write_all(&block.as_bytes()[..n * item.len()]).await?;
                count(n * item.len());
                left -= n;
            }
            stream.write_all(close.as_bytes()).await?;
            Ok(())
        }
        Mode::HugeError => {
            let echo = format!("Internal error while handling:\n{}\n", req.echo);
            let padding = HUGE_ERROR_BYTES.saturating_sub(echo.len());
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                echo.len() + padding
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(echo.as_bytes()).await?;
            send_padding(&mut stream, padding, &count).await
        }
        Mode::RedirectLoop => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{addr}{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                req.path
            );
            stream.write_all(head.as_bytes()).await
        }
        Mode::RedirectMetadata => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {METADATA_URL}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(head.as_bytes()).await
        }
    }
}

/// Chunks of `block` (a chunked body's frames) for ever, at [`ENDLESS_BYTES_PER_SEC`], until
/// the client goes away; `count` hears of each block's bytes.
pub async fn send_endless(
    stream: &mut TcpStream,
    block: &str,
    count: &(dyn Fn(usize) + Sync),
) -> std::io::Result<()> {
    let frame = format!("{:x}\r\n{block}\r\n", block.len());
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    loop {
        stream.write_all(frame.as_bytes()).await?;
        count(block.len());
        sent += block.len() as u64;
        // Pacing, not synchronisation: hold the rate at ENDLESS_BYTES_PER_SEC.
        let due = Duration::from_secs_f64(sent as f64 / ENDLESS_BYTES_PER_SEC as f64);
        tokio::time::sleep_until(start + due).await;
    }
}

/// `byte` once a second for ever, until the client goes away.
pub async fn send_drip(
    stream: &mut TcpStream,
    byte: &[u8],
    count: &(dyn Fn(usize) + Sync),
) -> std::io::Result<()> {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        stream.write_all(byte).await?;
        count(byte.len());
    }
}

/// `n` bytes of `E`.
pub async fn send_padding(
    stream: &mut TcpStream,
    n: usize,
    count: &(dyn Fn(usize) + Sync),
) -> std::io::Result<()> {
    let block = vec![b'E'; CHUNK];
    let mut left = n;
    while left > 0 {
        let chunk = left.min(CHUNK);
        stream.write_all(&block[..chunk]).await?;
        count(chunk);
        left -= chunk;
    }
    Ok(())
}
