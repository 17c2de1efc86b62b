//! Plain HTTP under the operator's outbound policy for what is not a backend API call: the
//! download of a report file from the URL a backend gave (streamed, for the copy into a
//! ReportStore) and the requests to the store itself. Both go to addresses someone else
//! wrote, so both resolve names through the policy's [`Guard`] and check each URL first.

use std::time::Duration;

use url::Url;

use super::error::{BackendError, redact_url};
use super::http::{ClientOptions, build_client};
use super::policy::Guard;

/// The longest the download of one report file may take. A whole-request timeout would end
/// a large file's download however steadily it flows, so a download is bounded by this, and
/// a stall by the client's timeout between two reads.
pub const MAX_COPY_TIME: Duration = Duration::from_secs(3600);

/// A reqwest client whose connections obey the outbound policy of its options.
#[derive(Clone)]
pub struct PolicyClient {
    client: reqwest::Client,
    guard: Guard,
}

impl std::fmt::Debug for PolicyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyClient").finish_non_exhaustive()
    }
}

impl PolicyClient {
    /// A client under `options` (timeouts, policy); `timeout` replaces the whole-request
    /// timeout of the store's requests and is the longest wait between two reads of a
    /// download, whose whole is bounded by [`MAX_COPY_TIME`].
    pub fn new(options: &ClientOptions, timeout: Duration) -> Result<Self, BackendError> {
        let options = ClientOptions {
            timeout,
            ..options.clone()
        };
        let guard = Guard::new(options.policy.clone());
        let client = build_client(None, false, &options, &guard)?;
        Ok(PolicyClient { client, guard })
    }

    /// The reqwest client, for a store's HTTP connector.
    pub fn reqwest(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// Whether the policy lets calls go to `url` (scheme, IP literal and port, resolved names).
    pub async fn check(&self, url: &Url) -> Result<(), BackendError> {
        self.guard.check(url).await
    }

    /// Starts a GET of a report file at `url` and returns the response once its status is a
    /// success, for the caller to read chunk by chunk: the body is never held whole.
    pub async fn open(&self, url: &str) -> Result<reqwest::Response, BackendError> {
        let parsed = Url::parse(url).map_err(|_| {
            BackendError::protocol(format!("the download URL {} is not a URL", redact_url(url)))
        })?;
        self.check(&parsed).await?;
        let response = self
            .client
            .get(parsed)
            .timeout(MAX_COPY_TIME)
            .send()
            .await
            .map_err(|e| BackendError::Transient {
                message: format!(
                    "GET {}: {}",
                    redact_url(url),
                    if e.is_timeout() {
                        "timed out"
                    } else {
                        "cannot connect"
                    }
                ),
                retry_after: None,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let target = format!("GET {}", redact_url(url));
        Err(match status.as_u16() {
            403 | 404 | 410 => BackendError::NotFound {
                what: format!("{target}: HTTP {status} (the download URL expired or the file is gone)"),
            },
            429 | 500..=599 => BackendError::Transient {
                message: format!("{target}: HTTP {status}"),
                retry_after: None,
            },
            _ => BackendError::protocol(format!("{target}: unexpected HTTP {status}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::backend::OutboundPolicy;

    /// A server on loopback that answers one GET with `chunks` bytes, one every `every`.
    async fn dripping(chunks: usize, every: Duration) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            // The request first: an answer sent before it is one the client refuses.
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {chunks}\r\n\r\n");
            let _ = socket.write_all(head.as_bytes()).await;
            for _ in 0..chunks {
                tokio::time::sleep(every).await;
                if socket.write_all(b"x").await.is_err() {
                    return;
                }
            }
        });
        format!("http://{addr}/report.csv")
    }

    /// The bytes of a download through a client whose whole-request timeout is 1 s.
    async fn download(url: &str) -> Result<usize, String> {
        let policy = OutboundPolicy::new(
            vec!["127.0.0.0/8".parse().expect("net")],
            Vec::new(),
            Vec::new(),
            true,
            false,
        );
        let options = ClientOptions {
            policy: Arc::new(policy),
            ..ClientOptions::default()
        };
        let client = PolicyClient::new(&options, Duration::from_secs(1)).expect("client");
        let mut body = client.open(url).await.map_err(|e| e.to_string())?.bytes_stream();
        let mut n = 0;
        while let Some(chunk) = body.next().await {
            n += chunk.map_err(|e| e.to_string())?.len();
        }
        Ok(n)
    }

    #[tokio::test]
    async fn a_download_that_flows_may_outlast_the_request_timeout_but_not_stall() {
        // 2.5 s in all, a byte every 100 ms: longer than the 1 s timeout, and complete.
        assert_eq!(
            download(&dripping(25, Duration::from_millis(100)).await).await,
            Ok(25)
        );
        // A byte after 1.5 s of silence: a stall, ended.
        assert!(
            download(&dripping(2, Duration::from_millis(1500)).await)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn downloads_obey_the_outbound_policy() {
        let strict = PolicyClient::new(&ClientOptions::default(), Duration::from_secs(5)).expect("client");
        let err = strict
            .open("http://127.0.0.1:9/report.csv?sig=SECRET")
            .await
            .expect_err("plain http");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        let err = strict
            .open("https://127.0.0.1:9/report.csv?sig=SECRET")
            .await
            .expect_err("loopback");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        let err = strict
            .open("https://169.254.169.254/latest/meta-data")
            .await
            .expect_err("metadata");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
    }
}
