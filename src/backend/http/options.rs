//! The settings of a backend's HTTP client (timeouts, retries, outbound policy), building the
//! reqwest client from them, and the checks on the base URLs calls are made against.

use std::sync::{Arc, Once};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use url::Url;

use super::answer::error_chain;
use crate::backend::error::{BackendError, redact_url};
use crate::backend::policy::{Guard, OutboundPolicy, http_denied};

/// Timeouts, retry behaviour and outbound policy of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout, the body included: it also ends an answer that drips slowly.
    /// It is also the longest wait between two reads of a request allowed longer (a copy).
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Which destinations the client may reach (default: the strict policy).
    pub policy: Arc<OutboundPolicy>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            policy: Arc::default(),
        }
    }
}

/// Retries of calls that are safe to repeat.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, up to `max_delay`, and
    /// then drawn at random between half of it and all of it.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// A `Retry-After` (or budget wait) longer than this is not slept through: the call fails
    /// with the error, and the controller requeues with that delay.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// The wait before the retry after `attempt` (1: the first). backon's jitter adds up to
    /// the delay again, so its delays start from half of ours: each wait falls between half of
    /// the doubled (and capped) delay and all of it.
    pub(super) fn backoff(&self, attempt: u32) -> Duration {
        let half_max = self.max_delay / 2;
        ExponentialBuilder::new()
            .with_min_delay((self.base_delay / 2).min(half_max))
            .with_max_delay(half_max)
            .without_max_times()
            .with_jitter()
            .build()
            .nth(attempt.saturating_sub(1).min(16) as usize)
            .unwrap_or(self.max_delay)
    }
}

/// Installs rustls' ring provider once per process (reqwest is built without a provider).
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Fails only when a provider is already installed, which is just as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the reqwest client of one backend, resolving names through `guard`. Redirects are
/// never followed: the CONNECT download answers with one whose target is the result, and no
/// other call expects one.
pub(crate) fn build_client(
    ca_pem: Option<&[u8]>,
    insecure_skip_verify: bool,
    options: &ClientOptions,
    guard: &Guard,
) -> Result<reqwest::Client, BackendError> {
    install_crypto_provider();
    if insecure_skip_verify && !options.policy.allows_insecure_tls() {
        return Err(crate::backend::policy::insecure_tls_denied());
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("report-operator/", env!("CARGO_PKG_VERSION")))
        .timeout(options.timeout)
        // A read that waits as long as a whole request may is a stall; this bounds the reads
        // of a request whose whole-request limit is longer (a streamed file, `MAX_COPY_TIME`).
        .read_timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(guard.clone());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|_| BackendError::InvalidSpec {
            message: "the CA bundle is not valid PEM".into(),
        })?;
        if certs.is_empty() {
            return Err(BackendError::InvalidSpec {
                message: "the CA bundle holds no certificate".into(),
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    if insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| BackendError::InvalidSpec {
        message: format!("building the HTTP client: {}", error_chain(e)),
    })
}

/// Parses a base or token URL: https (http only where `policy` allows it), no query string,
/// no "." or ".." segments (which would be resolved away: the URL would not say where calls
/// go). A trailing slash is dropped so that documented paths can be appended as written.
pub(crate) fn parse_base_url(raw: &str, what: &str, policy: &OutboundPolicy) -> Result<Url, BackendError> {
    let invalid = |why: &str| BackendError::InvalidSpec {
        message: format!("{what} {}: {why}", redact_url(raw)),
    };
    if has_dot_segment(raw.trim()) {
        return Err(invalid("must not have \".\" or \"..\" path segments"));
    }
    let mut url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must start with http:// or https://"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("must not have a query string or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not hold user info; credentials belong in the Secret",
        ));
    }
    if url.scheme() == "http" && !policy.allows_http() {
        return Err(http_denied(raw.trim(), what));
    }
    let trimmed = url.path().trim_end_matches('/').to_string();
    url.set_path(&trimmed);
    Ok(url)
}

/// Whether the path of the raw URL `raw` has a "." or ".." segment, also percent-encoded
/// (`%2e`), as the URL standard counts them. Checked before parsing, which removes them.
fn has_dot_segment(raw: &str) -> bool {
    let after_scheme = raw.split_once("://").map_or(raw, |(_, rest)| rest);
    let end = after_scheme.find(['?', '#']).unwrap_or(after_scheme.len());
    let Some(start) = after_scheme[..end].find(['/', '\\']) else {
        return false;
    };
    after_scheme[start..end].split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ReportBackendSpec;
    use crate::backend::http::HttpClient;
    use crate::backend::ratelimit::{Limiter, LimiterConfig};

    fn guard() -> Guard {
        Guard::new(Arc::default())
    }
    #[test]
    fn base_urls_keep_their_prefix() {
        let strict = OutboundPolicy::default();
        let base = parse_base_url("https://host/api/", "url", &strict).expect("valid");
        assert_eq!(base.as_str(), "https://host/api");
        assert!(parse_base_url("ftp://host", "url", &strict).is_err());
        assert!(parse_base_url("https://u:p@host", "url", &strict).is_err());
        assert!(parse_base_url("https://host/?x=1", "url", &strict).is_err());
        let spec: ReportBackendSpec = serde_json::from_value(serde_json::json!({
            "type": "RDE", "url": "https://host/api/", "credentialsSecretRef": {"name": "c"}
        }))
        .expect("spec");
        let limiter = Arc::new(Limiter::new(LimiterConfig::unlimited()));
        let http = HttpClient::for_spec(&spec, None, limiter, &ClientOptions::default(), Vec::new())
            .expect("client");
        assert_eq!(
            http.url("/aps/2/resources").as_str(),
            "https://host/api/aps/2/resources"
        );
        let root = HttpClient {
            base: parse_base_url("https://host", "url", &strict).expect("valid"),
            ..http
        };
        assert_eq!(
            root.url("/api/v01/auth/login").as_str(),
            "https://host/api/v01/auth/login"
        );
    }

    #[test]
    fn bad_ca_bundles_are_invalid_specs() {
        for pem in [
            &b"not a certificate"[..],
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ] {
            let err = build_client(Some(pem), false, &ClientOptions::default(), &guard())
                .expect_err("no usable CA");
            assert!(matches!(err, BackendError::InvalidSpec { .. }), "{err:?}");
        }
    }

    #[test]
    fn the_policy_decides_on_http_and_insecure_tls() {
        let strict = ClientOptions::default();
        let err = build_client(None, true, &strict, &guard()).expect_err("insecureSkipVerify is refused");
        assert!(
            matches!(&err, BackendError::DestinationDenied { message } if message.contains("--outbound-allow-insecure-tls")),
            "{err:?}"
        );
        let err =
            parse_base_url("http://host/api?sig=SECRET", "spec.url", &strict.policy).expect_err("plain http");
        assert!(
            matches!(&err, BackendError::InvalidSpec { .. }),
            "a query is refused first: {err:?}"
        );
        let err = parse_base_url("http://host/api", "spec.url", &strict.policy).expect_err("plain http");
        assert!(
            matches!(&err, BackendError::DestinationDenied { message } if message.contains("--outbound-allow-http")),
            "{err:?}"
        );
        let open = OutboundPolicy::new(Vec::new(), Vec::new(), Vec::new(), true, true);
        let options = ClientOptions {
            policy: Arc::new(open.clone()),
            ..ClientOptions::default()
        };
        build_client(None, true, &options, &Guard::new(options.policy.clone()))
            .expect("insecureSkipVerify builds");
        parse_base_url("http://host/api", "spec.url", &open).expect("plain http is allowed");
    }

    #[test]
    fn base_urls_without_dot_segments() {
        let strict = OutboundPolicy::default();
        for raw in [
            "https://host/api/../admin",
            "https://host/api/./x",
            "https://host/..",
            "https://host/api/%2e%2e/admin",
            "https://host/api/%2E/x",
            "https://host/api/.%2E",
            "https://host/api\\..\\admin",
        ] {
            let err = parse_base_url(raw, "spec.url", &strict).expect_err(raw);
            assert!(matches!(err, BackendError::InvalidSpec { .. }), "{raw}: {err:?}");
        }
        for raw in [
            "https://host/api/...",
            "https://host/a.b/v1.0",
            "https://host/api?x=..",
            "https://..host/",
        ] {
            assert!(!has_dot_segment(raw), "{raw}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            ..Default::default()
        };
        assert!(p.backoff(1) <= Duration::from_millis(100) && p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(3) >= Duration::from_millis(200));
        assert!(p.backoff(30) <= Duration::from_secs(1));
    }
}
