//! One HTTP client per backend: TLS settings, timeouts, User-Agent, the base URL with its path
//! prefix, the request budget, authentication with one renewal on 401, retries of idempotent
//! calls with exponential backoff and jitter (honouring `Retry-After`), and the mapping of
//! answers to [`BackendError`].
//!
//! A create (a non-idempotent call) is retried only when the backend cannot have acted on it
//! (no connection, 429, 401, 503). After any other failure it returns [`BackendError::Ambiguous`],
//! because repeating it could make a second report.

mod answer;
mod call;
mod options;

use std::sync::Arc;

use reqwest::StatusCode;
use tokio::time::Instant;
use url::Url;

use call::Response;
pub(crate) use call::{Auth, Body, Call, Credential, NoAuth, secret_header};
pub use options::{ClientOptions, RetryPolicy};
pub(crate) use options::{build_client, parse_base_url};

use super::body::{Capped, MAX_ERROR_BODY_BYTES};
use super::error::{BackendError, redact_text, redact_url};
use super::policy::{Guard, OutboundPolicy, ResolveDenied};
use super::ratelimit::Limiter;
use super::transfer::MAX_COPY_TIME;
use crate::api::{BackendType, ReportBackendSpec};
use answer::{error_chain, error_excerpt, parse_retry_after};

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
    /// The client of the backend `spec` describes, under `options` (its outbound policy checks
    /// the base URL and `spec.tls` here). `secrets` are masked in every error excerpt.
    pub fn for_spec(
        spec: &ReportBackendSpec,
        ca_pem: Option<&[u8]>,
        limiter: Arc<Limiter>,
        options: &ClientOptions,
        secrets: Vec<String>,
    ) -> Result<Self, BackendError> {
        let base = parse_base_url(&spec.url, "spec.url", &options.policy)?;
        let insecure = spec
            .tls
            .as_ref()
            .and_then(|t| t.insecure_skip_verify)
            .unwrap_or(false);
        let guard = Guard::new(options.policy.clone());
        let client = build_client(ca_pem, insecure, options, &guard)?;
        Ok(HttpClient {
            client,
            base,
            limiter,
            retry: options.retry.clone(),
            backend: spec.type_,
            secrets,
            guard,
        })
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
                    correlation = response
                        .header("x-correlation-id")
                        .map(|id| redact_text(id, &self.secrets, 80));
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
                    if response.status.is_success() || (response.status.is_redirection() && call.redirect_ok)
                    {
                        return Ok(response);
                    }
                    if response.status == StatusCode::UNAUTHORIZED
                        && !renewed
                        && auth.rejected(&credential).await
                    {
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
                        StatusCode::TOO_MANY_REQUESTS
                            | StatusCode::UNAUTHORIZED
                            | StatusCode::SERVICE_UNAVAILABLE
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
            if let BackendError::RateLimited {
                retry_after: Some(after),
            } = &error
            {
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
    fn log_failure(
        &self,
        call: &Call,
        attempt: u32,
        error: &BackendError,
        correlation: Option<&str>,
        retrying: bool,
    ) {
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
        self.guard
            .check(&call.url)
            .await
            .map_err(|error| TransportFailure {
                error,
                maybe_sent: false,
            })?;
        let mut request = self.client.request(call.method.clone(), call.url.clone());
        for (name, value) in call.headers.iter().chain(&credential.headers) {
            request = request.header(name, value);
        }
        if call.streamed {
            // A file of any size: bounded by the copy's limit, a stall by the read timeout.
            request = request.timeout(MAX_COPY_TIME);
        }
        request = match &call.body {
            Body::Empty => request,
            Body::Json(v) => request.json(v),
            Body::Form(pairs) => request.form(pairs),
        };
        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(call, e))?;
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
        if call.streamed && status.is_success() {
            return Ok(Response {
                status,
                headers,
                body: Vec::new(),
                stream: Some(response),
            });
        }
        let wanted = status.is_success() || (status.is_redirection() && call.redirect_ok);
        let limit = if wanted {
            call.limit
        } else {
            call.limit.min(MAX_ERROR_BODY_BYTES)
        };
        if wanted && response.content_length().is_some_and(|n| n > call.limit as u64) {
            return Err(too_large());
        }
        // Dropping `response` at the cap drops the connection: the rest is never read.
        let mut body = Capped::new(limit);
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_failure(call, e))?
        {
            if !body.push(&chunk) {
                break;
            }
        }
        if wanted && body.cut {
            return Err(too_large());
        }
        Ok(Response {
            status,
            headers,
            body: body.bytes,
            stream: None,
        })
    }

    fn transport_failure(&self, call: &Call, e: reqwest::Error) -> TransportFailure {
        if let Some(denied) = denied_by_resolver(&e) {
            return TransportFailure {
                error: BackendError::DestinationDenied { message: denied },
                maybe_sent: false,
            };
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
        let message = format!(
            "{} {}: {what}: {}",
            call.method,
            redact_url(call.url.as_str()),
            error_chain(e)
        );
        TransportFailure {
            error: BackendError::Transient {
                message,
                retry_after: None,
            },
            maybe_sent,
        }
    }

    fn status_error(&self, call: &Call, response: &Response) -> BackendError {
        let status = response.status.as_u16();
        let mut reason = error_excerpt(&response.body, &self.secrets);
        if reason.is_empty() {
            reason = response
                .status
                .canonical_reason()
                .unwrap_or("no reason given")
                .to_string();
        }
        let retry_after = response.header("retry-after").and_then(parse_retry_after);
        let target = format!("{} {}", call.method, redact_url(call.url.as_str()));
        match response.status {
            StatusCode::TOO_MANY_REQUESTS => BackendError::RateLimited { retry_after },
            StatusCode::UNAUTHORIZED => BackendError::Unauthorized {
                message: format!("{target}: {reason}"),
            },
            StatusCode::NOT_FOUND => BackendError::NotFound {
                what: format!("{target}: {reason}"),
            },
            StatusCode::REQUEST_TIMEOUT => BackendError::Transient {
                message: format!("{target}: HTTP {status}: {reason}"),
                retry_after,
            },
            s if s.is_server_error() => BackendError::Transient {
                message: format!("{target}: HTTP {status}: {reason}"),
                retry_after,
            },
            s if s.is_client_error() => BackendError::Rejected { status, reason },
            s if s.is_redirection() => BackendError::protocol(format!(
                "{target}: answered with a redirect (HTTP {status}), which is not followed"
            )),
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
