//! A hostile S3 endpoint for tests/e2e_hostile_store.rs: an HTTP/1.1 server on 127.0.0.1,
//! written by hand so that it can misbehave as no S3 server library would. Requests are
//! path-style (`/<bucket>?list-type=2…`, as the operator sends them when a ReportStore has an
//! `endpoint`), and the bucket chooses the behaviour, so one server serves every case.
//!
//! Also [`Sentinel`]: a socket that only counts who connects to it, for destinations the
//! operator must never reach.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::hostile::{CHUNK, read_request, send_drip, send_endless, send_padding};

/// How the endpoint misbehaves; the bucket of a ReportStore's `url` picks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Mode {
    /// The bucket listing: 200 and an XML body that never ends, as fast as the client reads.
    Endless,
    /// The bucket listing: 200 announcing a MiB, then one byte a second.
    Drip,
    /// 403 `SignatureDoesNotMatch`, as AWS answers a bad signature: the body echoes the
    /// request (its session token and signature included), followed by 20 MiB of padding.
    EchoError,
    /// The bucket listing answered (empty, so the store is Ready); every other request (an
    /// upload's start, a part) read and then held open without an answer until the client
    /// gives up.
    HoldUploads,
}

impl S3Mode {
    pub const ALL: [S3Mode; 4] = [
        S3Mode::Endless,
        S3Mode::Drip,
        S3Mode::EchoError,
        S3Mode::HoldUploads,
    ];

    /// The bucket that selects the mode.
    pub fn bucket(self) -> &'static str {
        match self {
            S3Mode::Endless => "endless",
            S3Mode::Drip => "drip",
            S3Mode::EchoError => "echo-error",
            S3Mode::HoldUploads => "hold-uploads",
        }
    }

    fn index(self) -> usize {
        S3Mode::ALL.iter().position(|m| *m == self).unwrap_or(0)
    }
}

/// The size of the echoing error page.
pub const ECHO_ERROR_BYTES: usize = 20 << 20;

#[derive(Default)]
struct Stats {
    requests: [AtomicU64; 4],
    bytes_sent: [AtomicU64; 4],
    /// The head of the last request each mode received (for the echo: what must not leak).
    last_head: [Mutex<String>; 4],
    /// Requests of [`S3Mode::HoldUploads`] held open now.
    held: AtomicU64,
}

pub struct HostileS3 {
    addr: SocketAddr,
    stats: Arc<Stats>,
    accept: tokio::task::JoinHandle<()>,
}

impl HostileS3 {
    pub async fn start() -> HostileS3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind hostile S3");
        let addr = listener.local_addr().expect("hostile S3 address");
        let stats = Arc::new(Stats::default());
        let s = stats.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let s = s.clone();
                // A connection ends when its client goes away (every write fails then).
                tokio::spawn(async move {
                    let _ = serve(stream, &s).await;
                });
            }
        });
        HostileS3 { addr, stats, accept }
    }

    /// The `endpoint` of a ReportStore.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests that reached `mode` so far.
    pub fn requests(&self, mode: S3Mode) -> u64 {
        self.stats.requests[mode.index()].load(Ordering::Relaxed)
    }

    /// Body bytes written to clients of `mode` so far.
    pub fn bytes_sent(&self, mode: S3Mode) -> u64 {
        self.stats.bytes_sent[mode.index()].load(Ordering::Relaxed)
    }

    /// Requests [`S3Mode::HoldUploads`] holds open now (uploads a client is waiting on).
    pub fn held(&self) -> u64 {
        self.stats.held.load(Ordering::Relaxed)
    }

    /// The head of the last request of `mode`.
    pub fn last_head(&self, mode: S3Mode) -> String {
        self.stats.last_head[mode.index()]
            .lock()
            .expect("last head")
            .clone()
    }
}

impl Drop for HostileS3 {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn mode_of(path: &str) -> Option<S3Mode> {
    let bucket = path.trim_start_matches('/').split(['/', '?']).next()?;
    S3Mode::ALL.into_iter().find(|m| m.bucket() == bucket)
}

/// The signature of a request signed with AWS SigV4 in its `Authorization` header.
pub fn signature_of(head: &str) -> String {
    head.split("Signature=")
        .nth(1)
        .and_then(|s| s.split(['\r', '\n', ',']).next())
        .unwrap_or_default()
        .to_string()
}

async fn serve(mut stream: TcpStream, stats: &Stats) -> std::io::Result<()> {
    let Some(request) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let head = request.echo;
    let Some(mode) = mode_of(&request.path) else {
        return stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
    };
    let i = mode.index();
    stats.requests[i].fetch_add(1, Ordering::Relaxed);
    *stats.last_head[i].lock().expect("last head") = head.clone();
    let count = |n: usize| {
        stats.bytes_sent[i].fetch_add(n as u64, Ordering::Relaxed);
    };
    match mode {
        S3Mode::Endless => {
            let open = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>",
                mode.bucket()
            );
            let response_head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{open}\r\n",
                open.len()
            );
            stream.write_all(response_head.as_bytes()).await?;
            let item = "<Contents><Key>reports/endless</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;0&quot;</ETag><Size>1</Size><StorageClass>STANDARD</StorageClass></Contents>";
            send_endless(&mut stream, &item.repeat(CHUNK / item.len()), &count).await
        }
        S3Mode::Drip => {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: 1048576\r\nConnection: close\r\n\r\n<")
                .await?;
            send_drip(&mut stream, b" ", &count).await
        }
        S3Mode::HoldUploads if is_listing(&request.path) => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>",
                mode.bucket()
            );
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            count(body.len());
            stream.write_all(response.as_bytes()).await
        }
        S3Mode::HoldUploads => {
            // Held until the client closes the connection (its read returns 0 or fails).
            stats.held.fetch_add(1, Ordering::Relaxed);
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
            stats.held.fetch_sub(1, Ordering::Relaxed);
            Ok(())
        }
        S3Mode::EchoError => {
            // What AWS echoes (the canonical request, with the session token), and more: the
            // whole request head, in the message a client is most likely to show.
            let echo = xml_escape(&head);
            let signature = signature_of(&head);
            let body_start = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Request: {echo}</Message><SignatureProvided>{signature}</SignatureProvided><CanonicalRequest>{echo}</CanonicalRequest><Padding>"
            );
            let body_end = "</Padding></Error>";
            let padding = ECHO_ERROR_BYTES.saturating_sub(body_start.len() + body_end.len());
            let response_head = format!(
                "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body_start.len() + padding + body_end.len()
            );
            stream.write_all(response_head.as_bytes()).await?;
            stream.write_all(body_start.as_bytes()).await?;
            count(body_start.len());
            send_padding(&mut stream, padding, &count).await?;
            stream.write_all(body_end.as_bytes()).await?;
            count(body_end.len());
            Ok(())
        }
    }
}

/// A ListObjectsV2 request (`GET /<bucket>?list-type=2…`).
fn is_listing(path: &str) -> bool {
    path.split_once('?')
        .is_some_and(|(_, query)| query.split('&').any(|p| p == "list-type=2"))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A listening socket that accepts and counts connections and answers nothing: a destination
/// the operator must never reach.
pub struct Sentinel {
    pub addr: SocketAddr,
    connections: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Sentinel {
    /// Listens on `ip`, port chosen by the system.
    pub async fn start(ip: &str) -> Sentinel {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind sentinel");
        let addr = listener.local_addr().expect("sentinel address");
        let connections = Arc::new(AtomicU64::new(0));
        let seen = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::Relaxed);
                drop(stream);
            }
        });
        Sentinel {
            addr,
            connections,
            accept,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
