//! Backends that attack the operator: endless, slow, huge or malformed answers, error pages,
//! redirects, and URLs that point at what the operator must not call (cloud metadata, the
//! API server, loopback through DNS). No Kubernetes: a tiny hostile HTTP server on 127.0.0.1
//! and a CONNECT client (the simplest authentication), through the public API.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use report_operator::api::{EventType, ReportBackendSpec, ReportFormat};
use report_operator::backend::{
    BackendError, ClientOptions, ErrorAction, Limiter, MAX_JSON_BYTES, OutboundPolicy, ReportRequest,
    ReportingBackend, RetryPolicy, connect_with_options,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// Requests to the redirect's target: must stay zero.
static REDIRECT_TARGET_HITS: AtomicUsize = AtomicUsize::new(0);

/// Starts the hostile server; what it does depends on the first path segment.
async fn hostile_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, addr));
        }
    });
    addr
}

async fn serve(stream: TcpStream, addr: SocketAddr) {
    let mut stream = BufReader::new(stream);
    let mut request_line = String::new();
    if stream.read_line(&mut request_line).await.is_err() {
        return;
    }
    loop {
        let mut line = String::new();
        match stream.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let scenario = path
        .trim_start_matches('/')
        .split(['/', '?'])
        .next()
        .unwrap_or("")
        .to_string();
    let mut out = stream.into_inner();
    // Write errors end the scenario: the client dropped the connection, as it should.
    let _ = match scenario.as_str() {
        "endless" => chunked_forever(&mut out, "200 OK", b'[').await,
        "drip" => drip(&mut out).await,
        "big" => stream_json(&mut out, 50 * 1024 * 1024, true).await,
        "biglength" => stream_json(&mut out, 50 * 1024 * 1024, false).await,
        "malformed" => respond(&mut out, "200 OK", br#"{"id": "RP-1", "status": "#).await,
        "nested" => respond(&mut out, "200 OK", &[b'['; 100_000]).await,
        "errorjson" => error_page(&mut out, br#"{"message": "#, b'x').await,
        "errorhtml" => error_page(&mut out, b"<html><body>", b'x').await,
        "errortext" => error_page(&mut out, b"failure ", b'y').await,
        "errorendless" => chunked_forever(&mut out, "400 Bad Request", b'z').await,
        "redirect" => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{addr}/target/reporting/reports/RP-1\r\nContent-Length: 0\r\n\r\n"
            );
            out.write_all(head.as_bytes()).await
        }
        "target" => {
            REDIRECT_TARGET_HITS.fetch_add(1, Ordering::SeqCst);
            respond(&mut out, "200 OK", br#"{"id": "RP-1", "status": "ready"}"#).await
        }
        _ if path.contains("limit=1") => respond(&mut out, "200 OK", b"[]").await,
        _ => respond(&mut out, "200 OK", br#"{"id": "RP-1", "status": "ready"}"#).await,
    };
}

async fn respond(out: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    out.write_all(head.as_bytes()).await?;
    out.write_all(body).await
}

/// A chunked body of `fill` that never ends.
async fn chunked_forever(out: &mut TcpStream, status: &str, fill: u8) -> std::io::Result<()> {
    let head =
        format!("HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    out.write_all(head.as_bytes()).await?;
    let mut chunk = b"10000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(fill, 0x10000));
    chunk.extend_from_slice(b"\r\n");
    loop {
        out.write_all(&chunk).await?;
    }
}

/// A valid JSON array of `size` bytes, chunked or with its Content-Length.
async fn stream_json(out: &mut TcpStream, size: usize, chunked: bool) -> std::io::Result<()> {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_string()
    } else {
        format!("Content-Length: {size}")
    };
    out.write_all(
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n").as_bytes(),
    )
    .await?;
    let item = br#"{"id": "RP-1", "status": "ready"},"#;
    let per_block = 0x10000 / item.len();
    let block: Vec<u8> = item.repeat(per_block);
    out_frame(out, b"[", chunked).await?;
    let mut sent = 1;
    while sent + block.len() + 64 < size {
        out_frame(out, &block, chunked).await?;
        sent += block.len();
    }
    let mut tail = br#"{"id": "RP-2", "status": "ready"}"#.to_vec();
    tail.resize(size - sent - 1, b' ');
    tail.push(b']');
    out_frame(out, &tail, chunked).await?;
    if chunked {
        out.write_all(b"0\r\n\r\n").await?;
    }
    Ok(())
}

async fn out_frame(out: &mut TcpStream, data: &[u8], chunked: bool) -> std::io::Result<()> {
    if chunked {
        out.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
        out.write_all(data).await?;
        out.write_all(b"\r\n").await
    } else {
        out.write_all(data).await
    }
}

/// Headers, then a byte every 100 ms, for ever.
async fn drip(out: &mut TcpStream) -> std::io::Result<()> {
    out.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await?;
    loop {
        out.write_all(b"1\r\n \r\n").await?;
        out.flush().await?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A 400 whose body starts with `start` and goes on with 10 MiB of `fill`.
async fn error_page(out: &mut TcpStream, start: &[u8], fill: u8) -> std::io::Result<()> {
    let size = 10 * 1024 * 1024;
    out.write_all(
        format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n",
            start.len() + size
        )
        .as_bytes(),
    )
    .await?;
    out.write_all(start).await?;
    let block = vec![fill; 0x10000];
    for _ in 0..size / block.len() {
        out.write_all(&block).await?;
    }
    Ok(())
}

fn cidr(s: &str) -> report_operator::backend::IpNet {
    s.parse().expect("cidr")
}

/// Loopback and http allowed, as for a simulator; short timeouts, one attempt.
fn options_with(policy: OutboundPolicy) -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
        policy: Arc::new(policy),
    }
}

fn loopback() -> OutboundPolicy {
    OutboundPolicy::new(vec![cidr("127.0.0.1/32")], Vec::new(), Vec::new(), true, false)
}

fn spec(url: &str) -> ReportBackendSpec {
    serde_json::from_value(json!({"type": "CONNECT", "url": url, "credentialsSecretRef": {"name": "c"}}))
        .expect("spec")
}

fn credentials() -> BTreeMap<String, Vec<u8>> {
    [(
        "apiKey".to_string(),
        b"SU-000-000-000:connect-secret-key".to_vec(),
    )]
    .into()
}

fn client_at(url: &str, policy: OutboundPolicy) -> Arc<dyn ReportingBackend> {
    let spec = spec(url);
    connect_with_options(
        &spec,
        &credentials(),
        None,
        Limiter::for_backend(&spec),
        &options_with(policy),
    )
    .expect("client")
}

fn client(server: SocketAddr, scenario: &str) -> Arc<dyn ReportingBackend> {
    client_at(&format!("http://{server}/{scenario}"), loopback())
}

/// The process's peak resident memory, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value")
}

async fn get(backend: &dyn ReportingBackend) -> Result<(), BackendError> {
    let req = ReportRequest {
        key: "test/hostile".into(),
        name: "hostile".into(),
        event_type: EventType::Onetime,
        format: ReportFormat::Csv,
        notify_by_email: false,
        parameters: Default::default(),
        organization: None,
        stored: false,
    };
    backend.get("RP-1", &req).await.map(drop)
}

fn assert_too_large(err: &BackendError, limit: usize) {
    assert!(
        matches!(err, BackendError::TooLarge { limit: l, .. } if *l == limit),
        "{err:?}"
    );
    let ErrorAction::FailReport { reason } = err.action() else {
        panic!("{:?}", err.action())
    };
    assert!(
        reason.starts_with("TooLarge") && reason.contains(&limit.to_string()),
        "{reason}"
    );
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap_and_memory_stays_low() {
    let server = hostile_server().await;
    let before = peak_rss_kib();
    let backend = client(server, "endless");
    let err = backend.probe().await.expect_err("an endless probe answer");
    assert_too_large(&err, MAX_JSON_BYTES);
    assert_eq!(err.ready_reason(), "InvalidResponse");
    let err = get(backend.as_ref()).await.expect_err("an endless get answer");
    assert_too_large(&err, MAX_JSON_BYTES);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn a_50_mib_json_answer_is_too_large_with_or_without_its_length() {
    let server = hostile_server().await;
    let before = peak_rss_kib();
    for scenario in ["big", "biglength"] {
        let err = get(client(server, scenario).as_ref()).await.expect_err(scenario);
        assert_too_large(&err, MAX_JSON_BYTES);
    }
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn a_slow_drip_ends_at_the_timeout_as_a_transient_error() {
    let server = hostile_server().await;
    let started = Instant::now();
    let err = get(client(server, "drip").as_ref())
        .await
        .expect_err("a drip that never ends");
    assert!(matches!(err, BackendError::Transient { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn malformed_json_is_a_protocol_error_naming_the_place() {
    let server = hostile_server().await;
    for scenario in ["malformed", "nested"] {
        let err = get(client(server, scenario).as_ref()).await.expect_err(scenario);
        let BackendError::Protocol { message } = &err else {
            panic!("{scenario}: {err:?}")
        };
        assert!(message.starts_with("report: "), "{scenario}: {message}");
    }
}

#[tokio::test]
async fn huge_error_pages_give_a_short_excerpt() {
    let server = hostile_server().await;
    let before = peak_rss_kib();
    // Endless too: only the excerpt's share is read, so it fails at once, not at the timeout.
    for scenario in ["errorjson", "errorhtml", "errortext", "errorendless"] {
        let err = get(client(server, scenario).as_ref()).await.expect_err(scenario);
        let BackendError::Rejected { status: 400, reason } = &err else {
            panic!("{scenario}: {err:?}")
        };
        assert!(
            reason.chars().count() <= 301,
            "{scenario}: {} characters",
            reason.chars().count()
        );
        assert!(err.to_string().len() < 600, "{scenario}: {err}");
    }
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(grown < 64 * 1024, "peak memory grew by {grown} KiB");
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server = hostile_server().await;
    let err = get(client(server, "redirect").as_ref())
        .await
        .expect_err("a redirect");
    assert!(
        matches!(&err, BackendError::Protocol { message } if message.contains("redirect")),
        "{err:?}"
    );
    assert_eq!(
        REDIRECT_TARGET_HITS.load(Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
}

#[tokio::test]
async fn the_metadata_address_is_denied_without_a_connection() {
    let started = Instant::now();
    // http allowed, so that the address is what is refused.
    let http_only = OutboundPolicy::new(Vec::new(), Vec::new(), Vec::new(), true, false);
    let err = client_at("http://169.254.169.254/latest", http_only)
        .probe()
        .await
        .expect_err("metadata");
    let BackendError::DestinationDenied { message } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("169.254.169.254 is link-local (cloud metadata)"),
        "{message}"
    );
    assert!(message.contains("--outbound-allow-cidr"), "{message}");
    assert_eq!(err.ready_reason(), "DestinationDenied");
    assert!(matches!(
        err.action(),
        ErrorAction::BackendNotReady {
            reason: report_operator::api::reasons::BackendReady::DestinationDenied,
            ..
        }
    ));
    // A connection attempt would wait for the 5 s connect timeout.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The strict default refuses the plain http URL before that.
    let spec = spec("http://169.254.169.254/latest");
    let err = connect_with_options(
        &spec,
        &credentials(),
        None,
        Limiter::for_backend(&spec),
        &ClientOptions::default(),
    )
    .err()
    .expect("plain http");
    assert!(
        matches!(&err, BackendError::DestinationDenied { message } if message.contains("--outbound-allow-http")),
        "{err:?}"
    );
}

#[tokio::test]
async fn the_api_server_is_denied_even_in_an_allowed_range() {
    let api_server = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api_addr = api_server.local_addr().expect("addr");
    let policy = OutboundPolicy::new(vec![cidr("127.0.0.0/8")], Vec::new(), vec![api_addr], true, false);
    let err = client_at(&format!("http://{api_addr}/api"), policy)
        .probe()
        .await
        .expect_err("the API server");
    let BackendError::DestinationDenied { message } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains(&format!("{api_addr} is the Kubernetes API server")),
        "{message}"
    );
    // Connections are accepted in order: the first one must be this sentinel's.
    let sentinel = TcpStream::connect(api_addr).await.expect("sentinel");
    let (_, peer) = api_server.accept().await.expect("accept");
    assert_eq!(
        peer,
        sentinel.local_addr().expect("sentinel addr"),
        "the client connected to the API server"
    );
}

#[tokio::test]
async fn a_name_that_resolves_to_loopback_is_denied_unless_allowed() {
    let server = hostile_server().await;
    let url = format!("http://localhost:{}/ok", server.port());
    let http_only = OutboundPolicy::new(Vec::new(), Vec::new(), Vec::new(), true, false);
    let err = client_at(&url, http_only)
        .probe()
        .await
        .expect_err("localhost under the default ranges");
    let BackendError::DestinationDenied { message } = &err else {
        panic!("{err:?}")
    };
    assert!(message.starts_with("localhost resolves to "), "{message}");
    assert!(message.contains("loopback"), "{message}");
    client_at(&url, loopback())
        .probe()
        .await
        .expect("127.0.0.1/32 is allowed");
}
