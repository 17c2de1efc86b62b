//! One call as the backends describe it (method, URL, budget, body, headers, read limit),
//! its authentication, and the answer it gets.

use reqwest::Method;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use url::Url;

use super::HttpClient;
use crate::backend::body::MAX_JSON_BYTES;
use crate::backend::error::BackendError;

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
    /// A 2xx answer's body is left unread for the caller to stream ([`Response::stream`]).
    pub streamed: bool,
}

impl Call {
    fn new(method: Method, url: Url, endpoint: &'static str, idempotent: bool, body: Body) -> Self {
        Call {
            method,
            url,
            endpoint,
            idempotent,
            body,
            headers: Vec::new(),
            limit: MAX_JSON_BYTES,
            redirect_ok: false,
            streamed: false,
        }
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

    /// Leaves a 2xx answer's body unread, for a file of any size to be streamed (FUSION's
    /// file into a ReportStore); error answers are read as usual.
    pub fn streamed(mut self) -> Self {
        self.streamed = true;
        self
    }
}

/// Authentication of a call: the headers of one attempt, renewed once after a 401.
#[async_trait::async_trait]
pub(crate) trait Auth: Send + Sync {
    /// Headers that authenticate one attempt of `method url`.
    async fn authorize(
        &self,
        http: &HttpClient,
        method: &Method,
        url: &Url,
    ) -> Result<Credential, BackendError>;

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
    let mut v = HeaderValue::from_str(value).map_err(|_| BackendError::InvalidSpec {
        message: "a credential holds characters not allowed in a header".into(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// An answer with status 2xx (or 3xx where the call expects one), its body read up to the
/// call's limit, or (a [`Call::streamed`] call) left unread in `stream`.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub stream: Option<reqwest::Response>,
}

impl Response {
    /// The body as JSON. Parse errors name the place, never the values (they could be tokens).
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, BackendError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| BackendError::protocol(format!("{what}: {}", serde_message(&e))))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A serde_json error with quoted values cut out.
fn serde_message(e: &serde_json::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_hide_values() {
        let e = serde_json::from_str::<u32>("\"tok-123\"").expect_err("a string is no number");
        let m = serde_message(&e);
        assert!(!m.contains("tok-123"), "{m}");
    }
}
