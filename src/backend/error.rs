//! The one error type of the backend clients, what the controller should do about each error,
//! and the redaction helpers every message and log line goes through.

use std::time::Duration;

use crate::api::reasons::BackendReady;

/// Why a backend call failed. Messages never hold credentials, tokens or signed-URL query
/// strings: every URL in them went through [`redact_url`] and every response excerpt through
/// [`redact_text`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Timeout, connection failure or 5xx on a call that is safe to repeat.
    #[error("transient backend error: {message}")]
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The backend answered 429, or our own request budget for it is spent for longer than a
    /// call may wait.
    #[error("rate limited{}", fmt_after(.retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// The organization already has `max` reports in progress (SUPPLIER: 6); the report is
    /// asked for once one of them is finished.
    #[error("{max} reports already in progress for organization {organization:?}; waiting for one to finish")]
    InFlightLimit {
        organization: String,
        max: u32,
        retry_after: Duration,
    },
    /// The backend refused the credentials.
    #[error("unauthorized: {message}")]
    Unauthorized { message: String },
    /// FUSION: the login asks for a second factor (untrusted device or address).
    #[error("the backend asks for two-factor authentication for this login")]
    TwoFactorRequired,
    /// A key the backend type needs is missing from the credentials Secret.
    #[error("credentials Secret has no key {key:?}")]
    CredentialsMissing { key: String },
    /// The ReportBackend spec cannot work (bad URL, CA bundle, missing per-type settings).
    #[error("invalid backend spec: {message}")]
    InvalidSpec { message: String },
    /// The backend refused the request in a way that retrying cannot fix (4xx).
    #[error("rejected by the backend (HTTP {status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// The object does not exist on the backend.
    #[error("not found on the backend: {what}")]
    NotFound { what: String },
    /// This backend type cannot do what was asked (format, event type, operation).
    #[error("not supported: {what}")]
    Unsupported { what: String },
    /// A create failed after the request may have reached the backend: the report may exist.
    /// Call `find` before submitting again.
    #[error("the create may have reached the backend ({message}); look the request up before creating again")]
    Ambiguous { message: String },
    /// The backend answered something this client does not understand.
    #[error("unexpected response from the backend: {message}")]
    Protocol { message: String },
    /// An answer was longer than the operator reads (`limit` bytes); the rest was not read.
    /// Asking again gets the same answer.
    #[error("{what} is larger than {limit} bytes; it was not read further")]
    TooLarge { what: String, limit: usize },
    /// The operator's outbound policy refuses the call: its destination (a denied address,
    /// the API server, plain http) or `insecureSkipVerify`. The message names the host and
    /// the rule, never a URL query.
    #[error("destination denied: {message}")]
    DestinationDenied { message: String },
}

fn fmt_after(after: &Option<Duration>) -> String {
    after
        .map(|d| format!(", retry after {}s", d.as_secs_f64().ceil()))
        .unwrap_or_default()
}

/// What the controller does with an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorAction {
    /// Try again later (after the given time, or with the controller's own backoff).
    Retry { after: Option<Duration> },
    /// The report has failed for good, with the backend's reason.
    FailReport { reason: String },
    /// The backend itself is not usable: its Ready condition is False with `reason`
    /// (CredentialsMissing, Unauthorized, TwoFactorRequired, Unreachable, InvalidSpec,
    /// InvalidResponse or DestinationDenied).
    BackendNotReady { reason: BackendReady, message: String },
}

impl BackendError {
    /// What the controller should do about this error.
    pub fn action(&self) -> ErrorAction {
        use BackendError::*;
        match self {
            Transient { retry_after, .. } | RateLimited { retry_after } => {
                ErrorAction::Retry { after: *retry_after }
            }
            InFlightLimit { retry_after, .. } => ErrorAction::Retry {
                after: Some(*retry_after),
            },
            // The caller looks the request up (`find`) before it submits again.
            Ambiguous { .. } | Protocol { .. } => ErrorAction::Retry { after: None },
            Unauthorized { .. }
            | TwoFactorRequired
            | CredentialsMissing { .. }
            | InvalidSpec { .. }
            | DestinationDenied { .. } => ErrorAction::BackendNotReady {
                reason: self.ready_reason(),
                message: self.to_string(),
            },
            Rejected { status, reason } => ErrorAction::FailReport {
                reason: format!("HTTP {status}: {reason}"),
            },
            NotFound { what } => ErrorAction::FailReport {
                reason: format!("HTTP 404: {what}"),
            },
            Unsupported { .. } => ErrorAction::FailReport {
                reason: self.to_string(),
            },
            TooLarge { what, limit } => ErrorAction::FailReport {
                reason: format!("TooLarge: {what} is larger than {limit} bytes"),
            },
        }
    }

    /// The Ready reason of a ReportBackend whose `probe` failed with this error: the
    /// credential, spec and policy problems by name, an answer too large to read or not the
    /// API's (malformed, a redirect) `InvalidResponse`, everything else `Unreachable`.
    pub fn ready_reason(&self) -> BackendReady {
        match self {
            BackendError::Unauthorized { .. } => BackendReady::Unauthorized,
            BackendError::Rejected {
                status: 401 | 403, ..
            } => BackendReady::Unauthorized,
            BackendError::TwoFactorRequired => BackendReady::TwoFactorRequired,
            BackendError::CredentialsMissing { .. } => BackendReady::CredentialsMissing,
            BackendError::InvalidSpec { .. } => BackendReady::InvalidSpec,
            BackendError::DestinationDenied { .. } => BackendReady::DestinationDenied,
            BackendError::TooLarge { .. } | BackendError::Protocol { .. } => BackendReady::InvalidResponse,
            _ => BackendReady::Unreachable,
        }
    }

    /// Every code [`BackendError::metric_code`] returns, for the book's metrics page and its test.
    pub const METRIC_CODES: [&'static str; 14] = [
        "transient",
        "rate_limited",
        "in_flight_limit",
        "unauthorized",
        "two_factor_required",
        "credentials_missing",
        "invalid_spec",
        "rejected",
        "not_found",
        "unsupported",
        "ambiguous",
        "protocol",
        "too_large",
        "destination_denied",
    ];

    /// The `code` label of `report_operator_backend_calls_total` for this error: a small fixed
    /// snake_case set (never the message), so that one alert on `code="unauthorized"` sees
    /// every refused credential, whichever call met it. A 401/403 answer counts as
    /// `unauthorized`, as it does for the Ready reason.
    pub fn metric_code(&self) -> &'static str {
        use BackendError::*;
        match self {
            Transient { .. } => "transient",
            RateLimited { .. } => "rate_limited",
            InFlightLimit { .. } => "in_flight_limit",
            Unauthorized { .. }
            | Rejected {
                status: 401 | 403, ..
            } => "unauthorized",
            TwoFactorRequired => "two_factor_required",
            CredentialsMissing { .. } => "credentials_missing",
            InvalidSpec { .. } => "invalid_spec",
            Rejected { .. } => "rejected",
            NotFound { .. } => "not_found",
            Unsupported { .. } => "unsupported",
            Ambiguous { .. } => "ambiguous",
            Protocol { .. } => "protocol",
            TooLarge { .. } => "too_large",
            DestinationDenied { .. } => "destination_denied",
        }
    }

    /// Whether repeating the same call may succeed (used by the retry loop).
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(
            self,
            BackendError::Transient { .. } | BackendError::RateLimited { .. }
        )
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::Transient { retry_after, .. } | BackendError::RateLimited { retry_after } => {
                *retry_after
            }
            _ => None,
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> Self {
        BackendError::Protocol {
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(what: impl Into<String>) -> Self {
        BackendError::Unsupported { what: what.into() }
    }
}

/// A URL fit for logs and messages: no user info, query string or fragment (signed URLs carry
/// their signature in the query).
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let had_query = u.query().is_some();
            u.set_query(None);
            u.set_fragment(None);
            // Both fail only for URLs that cannot have user info; nothing to strip then.
            let _ = u.set_username("");
            let _ = u.set_password(None);
            let mut s = u.to_string();
            if had_query {
                s.push_str("?…");
            }
            s
        }
        Err(_) => {
            let cut = url.find(['?', '#']).unwrap_or(url.len());
            let mut s = url[..cut].to_string();
            if let Some(scheme_end) = s.find("://")
                && let Some(at) = s[scheme_end + 3..].find('@')
                && !s[scheme_end + 3..scheme_end + 3 + at].contains('/')
            {
                s.replace_range(scheme_end + 3..scheme_end + 3 + at + 1, "");
            }
            if cut < url.len() {
                s.push_str("?…");
            }
            s
        }
    }
}

/// Free text (a response excerpt) with every URL in it redacted and each of `secrets`
/// masked, cut to `max` characters.
pub(crate) fn redact_text(text: &str, secrets: &[String], max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    let mut rest = text;
    while let Some(pos) = find_url_start(rest) {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(tail.len());
        out.push_str(&redact_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret.as_str(), "***");
    }
    if out.chars().count() > max {
        out = out.chars().take(max).collect::<String>() + "…";
    }
    out
}

fn find_url_start(s: &str) -> Option<usize> {
    match (s.find("http://"), s.find("https://")) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_strips_query_userinfo_and_fragment() {
        assert_eq!(
            redact_url("https://user:pw@store.example.com/c/r.json?sig=abc&se=2020#x"),
            "https://store.example.com/c/r.json?…"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:8080/a/b"),
            "http://127.0.0.1:8080/a/b"
        );
        assert_eq!(redact_url("not a url?token=x"), "not a url?…");
        assert_eq!(redact_url("weird://u:p@h/x?y"), "weird://h/x?…");
    }

    #[test]
    fn redact_text_masks_urls_and_secrets() {
        let text = r#"{"message":"see https://s.example/f.csv?sig=SECRETSIG, key hunter22"}"#;
        let out = redact_text(text, &["hunter22".to_string()], 500);
        assert!(!out.contains("SECRETSIG"), "{out}");
        assert!(!out.contains("hunter22"), "{out}");
        assert!(out.contains("https://s.example/f.csv"), "{out}");
        assert_eq!(redact_text("abcdef", &[], 3), "abc…");
    }

    #[test]
    fn every_error_has_a_documented_metric_code() {
        let d = Some(Duration::from_secs(1));
        let cases = [
            (
                BackendError::Transient {
                    message: "m".into(),
                    retry_after: d,
                },
                "transient",
            ),
            (BackendError::RateLimited { retry_after: d }, "rate_limited"),
            (
                BackendError::InFlightLimit {
                    organization: "o".into(),
                    max: 6,
                    retry_after: Duration::ZERO,
                },
                "in_flight_limit",
            ),
            (BackendError::Unauthorized { message: "m".into() }, "unauthorized"),
            (BackendError::TwoFactorRequired, "two_factor_required"),
            (
                BackendError::CredentialsMissing { key: "k".into() },
                "credentials_missing",
            ),
            (BackendError::InvalidSpec { message: "m".into() }, "invalid_spec"),
            (
                BackendError::Rejected {
                    status: 400,
                    reason: "r".into(),
                },
                "rejected",
            ),
            (
                BackendError::Rejected {
                    status: 401,
                    reason: "r".into(),
                },
                "unauthorized",
            ),
            (
                BackendError::Rejected {
                    status: 403,
                    reason: "r".into(),
                },
                "unauthorized",
            ),
            (BackendError::NotFound { what: "w".into() }, "not_found"),
            (BackendError::Unsupported { what: "w".into() }, "unsupported"),
            (BackendError::Ambiguous { message: "m".into() }, "ambiguous"),
            (BackendError::Protocol { message: "m".into() }, "protocol"),
            (
                BackendError::TooLarge {
                    what: "w".into(),
                    limit: 1,
                },
                "too_large",
            ),
            (
                BackendError::DestinationDenied { message: "m".into() },
                "destination_denied",
            ),
        ];
        for (e, code) in &cases {
            assert_eq!(e.metric_code(), *code, "{e:?}");
            assert!(
                BackendError::METRIC_CODES.contains(code),
                "{code} is not in METRIC_CODES"
            );
        }
        // Every documented code is reachable, and "ok" is kept for success.
        for code in BackendError::METRIC_CODES {
            assert!(cases.iter().any(|(_, c)| *c == code), "{code} is never returned");
            assert!(
                code != "ok" && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code}"
            );
            assert!(
                include_str!("../../docs/src/operations/metrics.md").contains(&format!("`{code}`")),
                "docs/src/operations/metrics.md does not list {code}"
            );
        }
    }

    #[test]
    fn actions_follow_the_contract() {
        let retry = BackendError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(
            retry.action(),
            ErrorAction::Retry {
                after: Some(Duration::from_secs(3))
            }
        );
        assert!(matches!(
            BackendError::Unauthorized { message: "x".into() }.action(),
            ErrorAction::BackendNotReady {
                reason: BackendReady::Unauthorized,
                ..
            }
        ));
        assert!(matches!(
            BackendError::TwoFactorRequired.action(),
            ErrorAction::BackendNotReady {
                reason: BackendReady::TwoFactorRequired,
                ..
            }
        ));
        assert!(matches!(
            BackendError::CredentialsMissing { key: "apiKey".into() }.action(),
            ErrorAction::BackendNotReady {
                reason: BackendReady::CredentialsMissing,
                ..
            }
        ));
        assert_eq!(
            BackendError::Rejected {
                status: 400,
                reason: "bad range".into()
            }
            .action(),
            ErrorAction::FailReport {
                reason: "HTTP 400: bad range".into()
            }
        );
        assert_eq!(
            BackendError::Ambiguous { message: "x".into() }.action(),
            ErrorAction::Retry { after: None }
        );
        let unreachable = BackendError::Transient {
            message: "connect".into(),
            retry_after: None,
        };
        assert_eq!(unreachable.ready_reason(), BackendReady::Unreachable);
        assert_eq!(
            BackendError::Rejected {
                status: 403,
                reason: String::new()
            }
            .ready_reason(),
            BackendReady::Unauthorized
        );
        let too_large = BackendError::TooLarge {
            what: "the answer to GET https://h/x".into(),
            limit: 4,
        };
        let ErrorAction::FailReport { reason } = too_large.action() else {
            panic!("{:?}", too_large.action())
        };
        assert!(
            reason.starts_with("TooLarge") && reason.contains(" 4 bytes"),
            "{reason}"
        );
        assert_eq!(too_large.ready_reason(), BackendReady::InvalidResponse);
        assert_eq!(
            BackendError::protocol("login: expected a string").ready_reason(),
            BackendReady::InvalidResponse
        );
        let denied = BackendError::DestinationDenied {
            message: "169.254.169.254 is link-local".into(),
        };
        assert!(matches!(
            denied.action(),
            ErrorAction::BackendNotReady {
                reason: BackendReady::DestinationDenied,
                ..
            }
        ));
        assert_eq!(denied.ready_reason(), BackendReady::DestinationDenied);
        assert!(!denied.is_retryable() && !too_large.is_retryable());
    }
}
