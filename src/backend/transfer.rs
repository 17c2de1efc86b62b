//! Plain HTTP under the operator's outbound policy for what is not a backend API call: the
//! download of a report file from the URL a backend gave (streamed, for the copy into a
//! ReportStore) and the requests to the store itself. Both go to addresses someone else
//! wrote, so both resolve names through the policy's [`Guard`] and check each URL first.

use std::time::Duration;

use url::Url;

use super::error::{BackendError, redact_url};
use super::http::{ClientOptions, build_client};
use super::policy::Guard;

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
    /// timeout, which a large file needs longer than an API answer.
    pub fn new(options: &ClientOptions, timeout: Duration) -> Result<Self, BackendError> {
        let options = ClientOptions { timeout, ..options.clone() };
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
        let parsed = Url::parse(url).map_err(|_| BackendError::protocol(format!("the download URL {} is not a URL", redact_url(url))))?;
        self.check(&parsed).await?;
        let response = self.client.get(parsed).send().await.map_err(|e| BackendError::Transient {
            message: format!("GET {}: {}", redact_url(url), if e.is_timeout() { "timed out" } else { "cannot connect" }),
            retry_after: None,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let target = format!("GET {}", redact_url(url));
        Err(match status.as_u16() {
            403 | 404 | 410 => BackendError::NotFound { what: format!("{target}: HTTP {status} (the download URL expired or the file is gone)") },
            429 | 500..=599 => BackendError::Transient { message: format!("{target}: HTTP {status}"), retry_after: None },
            _ => BackendError::protocol(format!("{target}: unexpected HTTP {status}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn downloads_obey_the_outbound_policy() {
        let strict = PolicyClient::new(&ClientOptions::default(), Duration::from_secs(5)).expect("client");
        let err = strict.open("http://127.0.0.1:9/report.csv?sig=SECRET").await.expect_err("plain http");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        let err = strict.open("https://127.0.0.1:9/report.csv?sig=SECRET").await.expect_err("loopback");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        let err = strict.open("https://169.254.169.254/latest/meta-data").await.expect_err("metadata");
        assert!(matches!(&err, BackendError::DestinationDenied { .. }), "{err:?}");
        assert!(!err.to_string().contains("SECRET"));
    }
}
