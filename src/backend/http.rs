//! One HTTP client per backend: TLS settings, timeouts, User-Agent, the base URL with its path
//! prefix, the request budget, authentication with one renewal on 401, retries of idempotent
//! calls with exponential backoff and jitter (honouring `Retry-After`), and the mapping of
//! answers to [`BackendError`].
//!
//! A create (a non-idempotent call) is retried only when the backend cannot have acted on it
//! (no connection, 429, 401, 503). After any other failure it returns [`BackendError::Ambiguous`],
//! because repeating it could make a second report.

use std::sync::{Arc, Once};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use url::Url;

use super::body::{Capped, MAX_ERROR_BODY_BYTES, MAX_JSON_BYTES};
use super::error::{BackendError, redact_text, redact_url};
use super::policy::{Guard, OutboundPolicy, ResolveDenied, http_denied};
use super::ratelimit::Limiter;
use crate::api::BackendType;

/// Timeouts, retry behaviour and outbound policy of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whole-request timeout, the body included: it also ends an answer that drips slowly.
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
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let capped = exp.min(self.max_delay);
        capped.mul_f64(rand::random_range(0.5..=1.0))
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
        return Err(super::policy::insecure_tls_denied());
    }
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("report-operator/", env!("CARGO_PKG_VERSION")))
        .timeout(options.timeout)
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(guard.clone());
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|_| BackendError::InvalidSpec { message: "the CA bundle is not valid PEM".into() })?;
        if certs.is_empty() {
            return Err(BackendError::InvalidSpec { message: "the CA bundle holds no certificate".into() });
        }
        builder = builder.tls_certs_merge(certs);
    }
    if insecure_skip_verify {
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|e| BackendError::InvalidSpec { message: format!("building the HTTP client: {}", error_chain(e)) })
}

/// Parses a base or token URL: https (http only where `policy` allows it), no query string,
/// no "." or ".." segments (which would be resolved away: the URL would not say where calls
/// go). A trailing slash is dropped so that documented paths can be appended as written.
pub(crate) fn parse_base_url(raw: &str, what: &str, policy: &OutboundPolicy) -> Result<Url, BackendError> {
    let invalid = |why: &str| BackendError::InvalidSpec { message: format!("{what} {}: {why}", redact_url(raw)) };
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
        return Err(invalid("must not hold user info; credentials belong in the Secret"));
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
    let Some(start) = after_scheme[..end].find(['/', '\\']) else { return false };
    after_scheme[start..end].split(['/', '\\']).any(|segment| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".."
    })
}

/// `reqwest`'s error and its sources, without the URL (which may be signed).
fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// A request body.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Json(serde_json::Value),
    Form(Vec<(&'static str, String)>),
}

/// One call, described once and sent as many times as the retry policy allows.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub method: Method,
    pub url: Url,
    /// The budget the call counts against and its name in logs ("generate", "get", …).
    pub endpoint: &'static str,
    /// Safe to send twice (reads, deletes, minting a download link).
    pub idempotent: bool,
    pub body: Body,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Most bytes of a 2xx answer read; a longer one is [`BackendError::TooLarge`].
    pub limit: usize,
    /// A 3xx answer is the result (the CONNECT download); for any other call it is an error.
    pub redirect_ok: bool,
}

impl Call {
    fn new(method: Method, url: Url, endpoint: &'static str, idempotent: bool, body: Body) -> Self {
        Call { method, url, endpoint, idempotent, body, headers: Vec::new(), limit: MAX_JSON_BYTES, redirect_ok: false }
    }

    pub fn get(url: Url, endpoint: &'static str) -> Self {
        Call::new(Method::GET, url, endpoint, true, Body::Empty)
    }

    /// A POST that creates something: never repeated after an ambiguous failure.
    pub fn create(url: Url, endpoint: &'static str, body: serde_json::Value) -> Self {
        Call::new(Method::POST, url, endpoint, false, Body::Json(body))
    }

    /// A POST that only reads or mints something (FUSION downloads, SUPPLIER links, logins).
    pub fn post_idempotent(url: Url, endpoint: &'static str, body: Body) -> Self {
        Call::new(Method::POST, url, endpoint, true, body)
    }

    pub fn delete(url: Url, endpoint: &'static str) -> Self {
        Call::new(Method::DELETE, url, endpoint, true, Body::Empty)
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Reads at most `limit` bytes of the answer (instead of [`MAX_JSON_BYTES`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// Returns a 3xx answer as the result.
    pub fn redirect_ok(mut self) -> Self {
        self.redirect_ok = true;
        self
    }
}

/// Authentication of a call: the headers of one attempt, renewed once after a 401.
#[async_trait::async_trait]
pub(crate) trait Auth: Send + Sync {
    /// Headers that authenticate one attempt of `method url`.
    async fn authorize(&self, http: &HttpClient, method: &Method, url: &Url) -> Result<Credential, BackendError>;

    /// The backend answered 401 to an attempt sent with `used`. Returns whether a new
    /// credential may help (after dropping `used` from any cache).
    async fn rejected(&self, _used: &Credential) -> bool {
        false
    }
}

/// The authentication headers of one attempt, with the cache generation they came from so
/// that a 401 drops only the token that failed, not one another task has just renewed.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credential {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub generation: u64,
}

/// Calls that carry no authentication (token requests carry theirs in the call itself).
pub(crate) struct NoAuth;

#[async_trait::async_trait]
impl Auth for NoAuth {
    async fn authorize(&self, _: &HttpClient, _: &Method, _: &Url) -> Result<Credential, BackendError> {
        Ok(Credential::default())
    }
}

/// A header value that holds a secret: marked sensitive so that no debug output shows it.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, BackendError> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| BackendError::InvalidSpec { message: "a credential holds characters not allowed in a header".into() })?;
    v.set_sensitive(true);
    Ok(v)
}

/// An answer with status 2xx (or 3xx where the call expects one), its body read up to the
/// call's limit.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON. Parse errors name the place, never the values (they could be tokens).
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, BackendError> {
        serde_json::from_slice(&self.body).map_err(|e| BackendError::protocol(format!("{what}: {}", serde_message(&e))))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A serde_json error with quoted values cut out.
pub(crate) fn serde_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let mut out = String::with_capacity(text.len());
    let mut in_quote = false;
    for c in text.chars() {
        match (c, in_quote) {
            ('"', false) => {
                in_quote = true;
                out.push_str("\"…");
            }
            ('"', true) => {
                in_quote = false;
                out.push('"');
            }
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// The HTTP side of one backend client.
pub(crate) struct HttpClient {
    client: reqwest::Client,
    base: Url,
    limiter: Arc<Limiter>,
    retry: RetryPolicy,
    backend: BackendType,
    /// Credential values masked in any response excerpt that makes it into an error.
    secrets: Vec<String>,
    /// The outbound policy, checked before each call (the client's resolver is its twin).
    guard: Guard,
}

/// What went wrong on the wire, and whether the request may have reached the backend.
struct TransportFailure {
    error: BackendError,
    maybe_sent: bool,
}

impl HttpClient {
    pub fn new(
        client: reqwest::Client,
        base: Url,
        limiter: Arc<Limiter>,
        retry: RetryPolicy,
        backend: BackendType,
        secrets: Vec<String>,
        guard: Guard,
    ) -> Self {
        HttpClient { client, base, limiter, retry, backend, secrets, guard }
    }

    pub fn limiter(&self) -> &Limiter {
        &self.limiter
    }

    pub fn policy(&self) -> &OutboundPolicy {
        self.guard.policy()
    }

    /// The base URL with `path` (as documented, starting with `/`) appended to its path.
    pub fn url(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(&format!("{}{}", self.base.path().trim_end_matches('/'), path));
        url
    }

    /// Sends `call`, retrying what may be retried. 2xx and 3xx answers are returned.
    pub async fn send(&self, call: &Call, auth: &dyn Auth) -> Result<Response, BackendError> {
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            attempt += 1;
            // The credential first: a token request may count against the same budget.
            let credential = auth.authorize(self, &call.method, &call.url).await?;
            let permit = match self.limiter.acquire(call.endpoint).await {
                Ok(p) => p,
                Err(e) => {
                    self.log_failure(call, attempt, &e, None, false);
                    return Err(e);
                }
            };
            let started = Instant::now();
            let outcome = self.once(call, &credential).await;
            drop(permit);
            let mut correlation = None;
            let (error, not_acted_on) = match outcome {
                Ok(response) => {
                    correlation = response.header("x-correlation-id").map(|id| redact_text(id, &self.secrets, 80));
                    tracing::debug!(
                        backend = self.backend.as_str(),
                        op = call.endpoint,
                        method = %call.method,
                        url = %redact_url(call.url.as_str()),
                        status = response.status.as_u16(),
                        attempt,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        correlation_id = correlation.as_deref(),
                        "backend call"
                    );
                    if response.status.is_success() || (response.status.is_redirection() && call.redirect_ok) {
                        return Ok(response);
                    }
                    if response.status == StatusCode::UNAUTHORIZED && !renewed && auth.rejected(&credential).await {
                        renewed = true;
                        attempt -= 1;
                        continue;
                    }
                    let status = response.status;
                    let error = self.status_error(call, &response);
                    // 429, 401 and 503 (unavailable: refused before any work, as gateways and
                    // the APIs use it) mean the backend did nothing; any other answer may come
                    // after the work was done (500, or a gateway's 502/504).
                    let refused = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::UNAUTHORIZED | StatusCode::SERVICE_UNAVAILABLE
                    );
                    (error, refused)
                }
                Err(failure) => (failure.error, !failure.maybe_sent),
            };
            let error = match error {
                BackendError::Transient { message, .. } if !call.idempotent && !not_acted_on => {
                    BackendError::Ambiguous { message }
                }
                other => other,
            };
            if let BackendError::RateLimited { retry_after: Some(after) } = &error {
                self.limiter.back_off(call.endpoint, *after);
            }
            let may_repeat = call.idempotent || not_acted_on;
            if error.is_retryable() && may_repeat && attempt < self.retry.max_attempts {
                let delay = error.retry_after().unwrap_or_else(|| self.retry.backoff(attempt));
                if delay <= self.retry.max_retry_after {
                    self.log_failure(call, attempt, &error, correlation.as_deref(), true);
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            self.log_failure(call, attempt, &error, correlation.as_deref(), false);
            return Err(error);
        }
    }

    /// The correlation id (CMP) goes to the log, for support; it stays out of the error, whose
    /// message becomes condition messages that would otherwise change on every retry.
    fn log_failure(&self, call: &Call, attempt: u32, error: &BackendError, correlation: Option<&str>, retrying: bool) {
        tracing::warn!(
            backend = self.backend.as_str(),
            op = call.endpoint,
            method = %call.method,
            url = %redact_url(call.url.as_str()),
            attempt,
            retrying,
            correlation_id = correlation,
            error = %error,
            "backend call failed"
        );
    }

    async fn once(&self, call: &Call, credential: &Credential) -> Result<Response, TransportFailure> {
        self.guard.check(&call.url).await.map_err(|error| TransportFailure { error, maybe_sent: false })?;
        let mut request = self.client.request(call.method.clone(), call.url.clone());
        for (name, value) in call.headers.iter().chain(&credential.headers) {
            request = request.header(name, value);
        }
        request = match &call.body {
            Body::Empty => request,
            Body::Json(v) => request.json(v),
            Body::Form(pairs) => request.form(pairs),
        };
        let mut response = request.send().await.map_err(|e| self.transport_failure(call, e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let too_large = || TransportFailure {
            error: BackendError::TooLarge {
                what: format!("the answer to {} {}", call.method, redact_url(call.url.as_str())),
                limit: call.limit,
            },
            maybe_sent: true,
        };
        // Of an error or redirect only an excerpt is kept: read enough for it, never fail.
        let wanted = status.is_success() || (status.is_redirection() && call.redirect_ok);
        let limit = if wanted { call.limit } else { call.limit.min(MAX_ERROR_BODY_BYTES) };
        if wanted && response.content_length().is_some_and(|n| n > call.limit as u64) {
            return Err(too_large());
        }
        // Dropping `response` at the cap drops the connection: the rest is never read.
        let mut body = Capped::new(limit);
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_failure(call, e))? {
            if !body.push(&chunk) {
                break;
            }
        }
        if wanted && body.cut {
            return Err(too_large());
        }
        Ok(Response { status, headers, body: body.bytes })
    }

    fn transport_failure(&self, call: &Call, e: reqwest::Error) -> TransportFailure {
        if let Some(denied) = denied_by_resolver(&e) {
            return TransportFailure { error: BackendError::DestinationDenied { message: denied }, maybe_sent: false };
        }
        let what = if e.is_connect() {
            "cannot connect"
        } else if e.is_timeout() {
            "timed out"
        } else if e.is_body() || e.is_decode() {
            "connection lost while reading the answer"
        } else {
            "request failed"
        };
        let maybe_sent = !e.is_connect();
        let message = format!("{} {}: {what}: {}", call.method, redact_url(call.url.as_str()), error_chain(e));
        TransportFailure { error: BackendError::Transient { message, retry_after: None }, maybe_sent }
    }

    fn status_error(&self, call: &Call, response: &Response) -> BackendError {
        let status = response.status.as_u16();
        let mut reason = error_excerpt(&response.body, &self.secrets);
        if reason.is_empty() {
            reason = response.status.canonical_reason().unwrap_or("no reason given").to_string();
        }
        let retry_after = response.header("retry-after").and_then(parse_retry_after);
        let target = format!("{} {}", call.method, redact_url(call.url.as_str()));
        match response.status {
            StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited { retry_after },
            StatusCode::UNAUTHORIZED => BackendError::Unauthorized { message: format!("{target}: {reason}") },
            StatusCode::NOT_FOUND => BackendError::NotFound { what: format!("{target}: {reason}") },
            StatusCode::REQUEST_TIMEOUT => {
                BackendError::Transient { message: format!("{target}: HTTP {status}: {reason}"), retry_after }
            }
            s if s.is_server_error() => {
                BackendError::Transient { message: format!("{target}: HTTP {status}: {reason}"), retry_after }
            }
            s if s.is_client_error() => BackendError::Rejected { status, reason },
            s if s.is_redirection() => {
                BackendError::protocol(format!("{target}: answered with a redirect (HTTP {status}), which is not followed"))
            }
            _ => BackendError::protocol(format!("{target}: unexpected HTTP {status}")),
        }
    }
}

/// The message of the policy resolver's refusal, if that is what made `e`.
fn denied_by_resolver(e: &reqwest::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(denied) = s.downcast_ref::<ResolveDenied>() {
            return Some(denied.message.clone());
        }
        source = s.source();
    }
    None
}

/// The useful part of an error body: the usual message fields of a JSON body, or the start
/// of a text one, with URLs redacted and credentials masked.
pub(crate) fn error_excerpt(body: &[u8], secrets: &[String]) -> String {
    const MAX: usize = 300;
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut parts = Vec::new();
        collect_messages(&json, &mut parts, 0);
        if !parts.is_empty() {
            parts.dedup();
            return redact_text(&parts.join("; "), secrets, MAX);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.starts_with('<') {
        // An HTML error page says nothing a status code does not.
        return String::new();
    }
    redact_text(text, secrets, MAX)
}

fn collect_messages(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    const KEYS: [&str; 8] =
        ["message", "error_description", "error", "detail", "failedReason", "reason", "code", "error_code"];
    if depth > 3 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for key in KEYS {
                match map.get(key) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => out.push(s.clone()),
                    Some(nested @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
                        collect_messages(nested, out, depth + 1)
                    }
                    _ => {}
                }
            }
            if let Some(errors) = map.get("errors") {
                collect_messages(errors, out, depth + 1);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().take(3) {
                collect_messages(item, out, depth + 1);
            }
        }
        serde_json::Value::String(s) if depth > 0 => out.push(s.clone()),
        _ => {}
    }
}

/// `Retry-After` as delay seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&later).expect("date");
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn excerpts_pick_messages_and_hide_secrets() {
        let body = br#"{"message":"Exceeded rate limit","code":"rate_limited"}"#;
        assert_eq!(error_excerpt(body, &[]), "Exceeded rate limit; rate_limited");
        let body = br#"{"errors":[{"message":"bad token s3cr3t-token"}]}"#;
        assert_eq!(error_excerpt(body, &["s3cr3t-token".into()]), "bad token ***");
        assert_eq!(error_excerpt(b"<html>oops</html>", &[]), "");
        assert_eq!(error_excerpt(b"plain failure", &[]), "plain failure");
    }

    #[test]
    fn serde_messages_hide_values() {
        let e = serde_json::from_str::<u32>("\"tok-123\"").expect_err("a string is no number");
        let m = serde_message(&e);
        assert!(!m.contains("tok-123"), "{m}");
    }

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
        let http = HttpClient::new(
            build_client(None, false, &ClientOptions::default(), &guard()).expect("client"),
            base,
            Arc::new(Limiter::new(super::super::ratelimit::LimiterConfig::unlimited())),
            RetryPolicy::default(),
            BackendType::Rde,
            Vec::new(),
            guard(),
        );
        assert_eq!(http.url("/aps/2/resources").as_str(), "https://host/api/aps/2/resources");
        let root = HttpClient { base: parse_base_url("https://host", "url", &strict).expect("valid"), ..http };
        assert_eq!(root.url("/api/v01/auth/login").as_str(), "https://host/api/v01/auth/login");
    }

    #[test]
    fn bad_ca_bundles_are_invalid_specs() {
        for pem in [&b"not a certificate"[..], b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"] {
            let err = build_client(Some(pem), false, &ClientOptions::default(), &guard()).expect_err("no usable CA");
            assert!(matches!(err, BackendError::InvalidSpec { .. }), "{err:?}");
        }
    }

    #[test]
    fn the_policy_decides_on_http_and_insecure_tls() {
        let strict = ClientOptions::default();
        let err = build_client(None, true, &strict, &guard()).expect_err("insecureSkipVerify is refused");
        assert!(matches!(&err, BackendError::DestinationDenied { message } if message.contains("--outbound-allow-insecure-tls")), "{err:?}");
        let err = parse_base_url("http://host/api?sig=SECRET", "spec.url", &strict.policy).expect_err("plain http");
        assert!(matches!(&err, BackendError::InvalidSpec { .. }), "a query is refused first: {err:?}");
        let err = parse_base_url("http://host/api", "spec.url", &strict.policy).expect_err("plain http");
        assert!(matches!(&err, BackendError::DestinationDenied { message } if message.contains("--outbound-allow-http")), "{err:?}");
        let open = OutboundPolicy::new(Vec::new(), Vec::new(), Vec::new(), true, true);
        let options = ClientOptions { policy: Arc::new(open.clone()), ..ClientOptions::default() };
        build_client(None, true, &options, &Guard::new(options.policy.clone())).expect("insecureSkipVerify builds");
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
        for raw in ["https://host/api/...", "https://host/a.b/v1.0", "https://host/api?x=..", "https://..host/"] {
            assert!(!has_dot_segment(raw), "{raw}");
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1), ..Default::default() };
        assert!(p.backoff(1) <= Duration::from_millis(100) && p.backoff(1) >= Duration::from_millis(50));
        assert!(p.backoff(3) >= Duration::from_millis(200));
        assert!(p.backoff(30) <= Duration::from_secs(1));
    }
}
