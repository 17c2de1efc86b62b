//! Authentication shared by the clients: OAuth 1.0a HMAC-SHA1 request signing (RDE), a
//! bearer-token cache with single-flight renewal (CMP, FUSION, SUPPLIER), and static header
//! credentials (CONNECT's API key).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use tokio::time::Instant;
use url::Url;

use super::error::BackendError;
use super::http::{Auth, Credential, HttpClient, secret_header};

/// A credential value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The credentials Secret's data, read key by key.
pub(crate) struct Credentials<'a>(pub &'a BTreeMap<String, Vec<u8>>);

impl Credentials<'_> {
    /// A key's value, trimmed (a trailing newline from `kubectl create secret --from-file`
    /// is never part of a credential); absent or empty is `None`.
    pub fn optional(&self, key: &str) -> Result<Option<Secret>, BackendError> {
        match self.0.get(key) {
            None => Ok(None),
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| BackendError::InvalidSpec {
                    message: format!("credentials Secret key {key:?} is not UTF-8 text"),
                })?;
                let text = text.trim();
                Ok((!text.is_empty()).then(|| Secret::new(text)))
            }
        }
    }

    pub fn required(&self, key: &str) -> Result<Secret, BackendError> {
        self.optional(key)?
            .ok_or_else(|| BackendError::CredentialsMissing { key: key.to_string() })
    }

    /// Every value of the Secret, for masking in error excerpts.
    pub fn all_values(&self) -> Vec<String> {
        self.0
            .values()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// OAuth 1.0a, two-legged

/// Signs each request with OAuth 1.0a HMAC-SHA1 (consumer key and secret, no token), as RDE's
/// APS bus expects.
pub(crate) struct OAuth1 {
    consumer_key: Secret,
    consumer_secret: Secret,
}

impl OAuth1 {
    pub fn new(consumer_key: Secret, consumer_secret: Secret) -> Self {
        OAuth1 {
            consumer_key,
            consumer_secret,
        }
    }

    /// The `Authorization` header value for `method url`; `nonce` and `timestamp` are pinned
    /// only in tests.
    pub fn header(&self, method: &Method, url: &Url, nonce: Option<&str>, timestamp: Option<u64>) -> String {
        let client =
            oauth1_request::Credentials::new(self.consumer_key.expose(), self.consumer_secret.expose());
        let mut builder =
            oauth1_request::Builder::<_, &str, &str>::new(client, oauth1_request::HmacSha1::new());
        builder
            .nonce(nonce)
            .timestamp(timestamp.and_then(std::num::NonZeroU64::new));
        let mut base = url.clone();
        base.set_query(None);
        base.set_fragment(None);
        builder.authorize(method.as_str(), base.as_str(), &signature_parameters(url))
    }
}

/// The query parameters of `url` as RFC 5849 section 3.4.1.3 wants them in the signature base
/// string. `oauth1-request` writes keys into the base string as given and encodes values
/// twice itself, so keys go in already encoded twice. That matters for RQL queries such as
/// `implementing(http://…),eq(commonName,NW%20Finance)`, which are one key with no value.
pub(crate) fn signature_parameters(url: &Url) -> oauth1_request::ParameterList<String, String> {
    url.query_pairs()
        .map(|(k, v)| (rfc3986(&rfc3986(&k)), v.into_owned()))
        .collect()
}

const RFC3986_UNRESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(crate) fn rfc3986(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RFC3986_UNRESERVED).to_string()
}

#[async_trait::async_trait]
impl Auth for OAuth1 {
    async fn authorize(
        &self,
        _: &HttpClient,
        method: &Method,
        url: &Url,
    ) -> Result<Credential, BackendError> {
        let value = secret_header(&self.header(method, url, None, None))?;
        Ok(Credential {
            headers: vec![(AUTHORIZATION, value)],
            generation: 0,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Static headers

/// Fixed credential headers (CONNECT's `Authorization: ApiKey …`, or CMP with a static token).
pub(crate) struct StaticHeaders(pub Vec<(HeaderName, HeaderValue)>);

#[async_trait::async_trait]
impl Auth for StaticHeaders {
    async fn authorize(&self, _: &HttpClient, _: &Method, _: &Url) -> Result<Credential, BackendError> {
        Ok(Credential {
            headers: self.0.clone(),
            generation: 0,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Bearer tokens

/// What a token request gives.
#[derive(Clone, Debug)]
pub(crate) struct Tokens {
    pub access: Option<Secret>,
    /// Renew this long before the access token expires, so that no call goes out with a token
    /// that expires on the way.
    pub expires_at: Option<Instant>,
    /// FUSION: the refresh token.
    pub refresh: Option<Secret>,
}

impl Tokens {
    /// An access token valid for `lifetime` from now, renewed a little before that: a tenth of
    /// the lifetime, at least a second (servers count expiry in whole seconds, rounded down)
    /// and at most a minute; half of a lifetime too short for that.
    pub fn expiring(access: Secret, lifetime: Option<Duration>, refresh: Option<Secret>) -> Self {
        let margin = |l: Duration| {
            let m = (l / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
            if m >= l { l / 2 } else { m }
        };
        let expires_at = lifetime.map(|l| Instant::now() + l.saturating_sub(margin(l)));
        Tokens {
            access: Some(access),
            expires_at,
            refresh,
        }
    }

    fn usable(&self) -> Option<&Secret> {
        match (&self.access, self.expires_at) {
            (Some(a), Some(exp)) if Instant::now() < exp => Some(a),
            (Some(a), None) => Some(a),
            _ => None,
        }
    }
}

/// A token request the server refused outright (OAuth2 servers answer 400 `invalid_client`):
/// the credentials are wrong.
pub(crate) fn token_refused(e: BackendError) -> BackendError {
    match e {
        BackendError::Rejected {
            status: 400 | 401 | 403,
            reason,
        } => BackendError::Unauthorized { message: reason },
        other => other,
    }
}

/// How a backend gets a token.
#[async_trait::async_trait]
pub(crate) trait TokenSource: Send + Sync {
    /// A new access token. `previous` is what the cache held (FUSION refreshes with its
    /// refresh token).
    async fn fetch(&self, http: &HttpClient, previous: Option<&Tokens>) -> Result<Tokens, BackendError>;
}

/// Caches the token of one client. One task renews at a time; the others wait for its
/// result rather than asking the token endpoint themselves (SUPPLIER allows ~100 token
/// requests an hour).
pub(crate) struct BearerAuth<S> {
    source: S,
    state: tokio::sync::Mutex<TokenState>,
    /// Headers sent with every call besides the token (CMP's `X-Subscription-Key`).
    extra: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Default)]
struct TokenState {
    tokens: Option<Tokens>,
    generation: u64,
}

impl<S: TokenSource> BearerAuth<S> {
    pub fn new(source: S, initial: Option<Tokens>, extra: Vec<(HeaderName, HeaderValue)>) -> Self {
        BearerAuth {
            source,
            state: tokio::sync::Mutex::new(TokenState {
                tokens: initial,
                generation: 1,
            }),
            extra,
        }
    }

    /// A usable access token, fetched if there is none; with the cache generation.
    pub async fn token(&self, http: &HttpClient) -> Result<(Secret, u64), BackendError> {
        let mut state = self.state.lock().await;
        if let Some(access) = state.tokens.as_ref().and_then(Tokens::usable) {
            return Ok((access.clone(), state.generation));
        }
        let fresh = self.source.fetch(http, state.tokens.as_ref()).await?;
        let access = fresh
            .access
            .clone()
            .ok_or_else(|| BackendError::protocol("the token answer holds no access token"))?;
        state.tokens = Some(fresh);
        state.generation += 1;
        tracing::debug!(generation = state.generation, "new access token");
        Ok((access, state.generation))
    }
}

#[async_trait::async_trait]
impl<S: TokenSource> Auth for BearerAuth<S> {
    async fn authorize(&self, http: &HttpClient, _: &Method, _: &Url) -> Result<Credential, BackendError> {
        let (token, generation) = self.token(http).await?;
        let mut headers = self.extra.clone();
        headers.push((
            AUTHORIZATION,
            secret_header(&format!("Bearer {}", token.expose()))?,
        ));
        Ok(Credential { headers, generation })
    }

    async fn rejected(&self, used: &Credential) -> bool {
        let mut state = self.state.lock().await;
        if state.generation == used.generation
            && let Some(tokens) = state.tokens.as_mut()
        {
            // Keep the refresh token: FUSION renews with it.
            tokens.access = None;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};

    use super::*;

    /// RFC 5849's base string, written out independently of `oauth1-request`.
    fn base_string(method: &str, url: &Url, oauth: &[(&str, &str)]) -> String {
        let mut params: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| (rfc3986(&k), rfc3986(&v)))
            .collect();
        params.extend(oauth.iter().map(|(k, v)| (rfc3986(k), rfc3986(v))));
        params.sort();
        let normalized = params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut base = url.clone();
        base.set_query(None);
        format!("{}&{}&{}", method, rfc3986(base.as_str()), rfc3986(&normalized))
    }

    fn sign(base: &str, consumer_secret: &str) -> String {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{}&", rfc3986(consumer_secret)).as_bytes())
            .expect("any key length");
        mac.update(base.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    }

    fn signature_of(header: &str) -> String {
        let start = header.find("oauth_signature=\"").expect("signature") + "oauth_signature=\"".len();
        let end = header[start..].find('"').expect("closing quote") + start;
        percent_encoding::percent_decode_str(&header[start..end])
            .decode_utf8()
            .expect("utf8")
            .into_owned()
    }

    fn check(url: &str, method: Method) {
        let url = Url::parse(url).expect("url");
        let signer = OAuth1::new(Secret::new("rde-consumer-key"), Secret::new("rde secret&x"));
        let header = signer.header(&method, &url, Some("abc123"), Some(1_539_077_032));
        let base = base_string(
            method.as_str(),
            &url,
            &[
                ("oauth_consumer_key", "rde-consumer-key"),
                ("oauth_nonce", "abc123"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "1539077032"),
            ],
        );
        assert_eq!(
            signature_of(&header),
            sign(&base, "rde secret&x"),
            "base string: {base}"
        );
        assert!(header.starts_with("OAuth "), "{header}");
        assert!(!header.contains("rde secret"), "{header}");
    }

    #[test]
    fn oauth1_signatures_match_rfc5849_base_strings() {
        check("http://127.0.0.1:8080/rde/aps/2/resources", Method::POST);
        check(
            "http://127.0.0.1:8080/rde/aps/2/resources/07cd68e6/reportFiles",
            Method::GET,
        );
        check("https://h/aps/2/resources?b=2&a=1%202&a=0", Method::GET);
        check(
            "https://h/p/aps/2/resources?implementing(http://www.odin.com/rde/report-template/1.1),eq(commonName,NW%20Finance)",
            Method::GET,
        );
    }

    #[test]
    fn rfc5849_base_string_example() {
        // The example of RFC 5849 section 3.4.1.1 (with its token, which RDE does not use).
        let url = Url::parse("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b").expect("url");
        let base = base_string(
            "POST",
            &url,
            &[
                ("oauth_consumer_key", "9djdj82h48djs9d2"),
                ("oauth_token", "kkk9d7dh3k39sjv7"),
                ("oauth_signature_method", "HMAC-SHA1"),
                ("oauth_timestamp", "137131201"),
                ("oauth_nonce", "7d8f3e4a"),
            ],
        );
        // The RFC's example also has body parameters c2 and a3=2q; without them the start is:
        assert!(base.starts_with("POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26oauth_consumer_key"), "{base}");
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
        let data: BTreeMap<String, Vec<u8>> = [
            ("apiKey".to_string(), b" SU-1:k\n".to_vec()),
            ("empty".to_string(), Vec::new()),
        ]
        .into();
        let creds = Credentials(&data);
        assert_eq!(creds.required("apiKey").expect("present").expose(), "SU-1:k");
        assert_eq!(
            creds.required("empty"),
            Err(BackendError::CredentialsMissing { key: "empty".into() })
        );
        assert!(matches!(
            creds.required("other"),
            Err(BackendError::CredentialsMissing { .. })
        ));
    }
}
