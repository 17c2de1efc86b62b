//! object_store's HTTP transport. object_store builds its own URLs (from `endpoint`, or from
//! `region` and the bucket for AWS) and reads whole answers; whoever writes a ReportStore
//! chooses the server. So every request goes through here: its URL is checked against the
//! operator's outbound policy before it is sent, a successful answer is read through
//! [`CappedBody`] (at most [`MAX_STORE_ANSWER_BYTES`]), and of an error answer at most
//! [`MAX_ERROR_BODY_BYTES`] is read and only a short redacted excerpt is handed on: an AWS
//! `SignatureDoesNotMatch` answer echoes the signed request, session token included.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody,
    HttpService,
};
use url::Url;

use crate::backend::body::{Capped, CappedBody, MAX_ERROR_BODY_BYTES, MAX_STORE_ANSWER_BYTES};
use crate::backend::transfer::PolicyClient;
use crate::backend::{BackendError, redact_text};

/// The longest excerpt of an error answer that is kept.
pub(super) const EXCERPT_CHARS: usize = 300;

/// Why the transport stopped a request or an answer; found again in object_store's error
/// chain by [`refusal_in`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum Refusal {
    /// The outbound policy denies the request's destination; the message names the address
    /// and the rule.
    #[error("{0}")]
    Denied(String),
    /// The answer was longer than the cap; the connection was dropped there.
    #[error("the store's answer is larger than {limit} bytes; it was not read further")]
    TooLarge { limit: usize },
}

/// The [`Refusal`] behind an object_store error, if the transport made it fail.
pub(super) fn refusal_in(e: &object_store::Error) -> Option<&Refusal> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(refusal) = s.downcast_ref::<Refusal>() {
            return Some(refusal);
        }
        source = s.source();
    }
    None
}

/// The transport of one store: its policy-bound client and the credentials that an error
/// answer must not repeat.
#[derive(Debug, Clone)]
pub(super) struct Transport {
    http: PolicyClient,
    client: reqwest::Client,
    secrets: Arc<[String]>,
}

impl Transport {
    pub fn new(http: PolicyClient, secrets: Vec<String>) -> Self {
        Transport {
            client: http.reqwest(),
            http,
            secrets: secrets.into(),
        }
    }
}

impl HttpConnector for Transport {
    fn connect(&self, _options: &object_store::ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.clone()))
    }
}

#[async_trait]
impl HttpService for Transport {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let url =
            Url::parse(&request.uri().to_string()).map_err(|e| HttpError::new(HttpErrorKind::Unknown, e))?;
        self.http.check(&url).await.map_err(|e| match e {
            BackendError::DestinationDenied { message } => {
                HttpError::new(HttpErrorKind::Unknown, Refusal::Denied(message))
            }
            // A name that does not resolve now may later.
            other @ BackendError::Transient { .. } => HttpError::new(HttpErrorKind::Connect, other),
            other => HttpError::new(HttpErrorKind::Unknown, other),
        })?;
        let response = HttpService::call(&self.client, request).await?;
        let (mut parts, body) = response.into_parts();
        let body = if parts.status.is_success() {
            HttpResponseBody::new(CappedBody::new(body, MAX_STORE_ANSWER_BYTES, |limit| {
                HttpError::new(HttpErrorKind::Decode, Refusal::TooLarge { limit })
            }))
        } else {
            // Dropping the body at the cap drops the connection: the rest is never read.
            let mut read = Capped::new(MAX_ERROR_BODY_BYTES);
            let mut chunks = body.bytes_stream();
            while let Some(Ok(chunk)) = chunks.next().await {
                if !read.push(&chunk) {
                    break;
                }
            }
            parts.headers.remove("content-length");
            HttpResponseBody::from(error_excerpt(&read.bytes, &self.secrets))
        };
        Ok(HttpResponse::from_parts(parts, body))
    }
}

/// What a person needs of an S3 error answer: its `Code` and `Message` (or the start of an
/// answer that is not S3's XML), with signing material and `secrets` masked and URLs
/// redacted, in at most [`EXCERPT_CHARS`] characters.
pub(super) fn error_excerpt(body: &[u8], secrets: &[String]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = match (xml_element(&text, "Code"), xml_element(&text, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code,
        _ => text.trim().to_string(),
    };
    redact_text(&mask_signing(&text), secrets, EXCERPT_CHARS)
}

/// The text of the first `<name>…</name>` in `xml`, unescaped.
fn xml_element(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    let text = xml[start..start + len]
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    Some(text.trim().to_string())
}

/// Names after which S3 answers (and echoes of a request) carry signing material: a header
/// (`name: value`), a query parameter (`name=value`) or an XML element (`<Name>value<`).
const SIGNING_NAMES: [&str; 10] = [
    "x-amz-security-token",
    "x-amz-signature",
    "x-amz-credential",
    "authorization",
    "signature",
    "credential",
    "awsaccesskeyid",
    "signatureprovided",
    "stringtosign",
    "canonicalrequest",
];

/// `text` with the value after each of [`SIGNING_NAMES`] replaced by `***`.
fn mask_signing(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for name in SIGNING_NAMES {
        for (at, _) in lower.match_indices(name) {
            let after = at + name.len();
            let rest = &text[after..];
            let value = rest.trim_start_matches([' ', '\t']);
            let sep_at = after + (rest.len() - value.len());
            let Some(sep) = value.chars().next().filter(|c| matches!(c, '>' | ':' | '=')) else {
                continue;
            };
            let start = sep_at + 1;
            let tail = &text[start..];
            let skipped = tail.len() - tail.trim_start_matches([' ', '\t']).len();
            let start = start + skipped;
            let end = match sep {
                // An element's text (a canonical request spans lines).
                '>' => text[start..].find('<'),
                // A header line: the whole rest of it (`Authorization: AWS4-HMAC-SHA256 …`).
                ':' if name == "authorization" => text[start..].find(['\r', '\n', '<']),
                ':' | '=' => text[start..]
                    .find(|c: char| c.is_whitespace() || matches!(c, '&' | ',' | ';' | '<' | '"' | '\'')),
                _ => continue,
            }
            .map_or(text.len(), |n| start + n);
            if end > start {
                ranges.push((start, end));
            }
        }
    }
    ranges.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in ranges {
        if end <= copied {
            continue;
        }
        out.push_str(&text[copied..start.max(copied)]);
        out.push_str("***");
        copied = end;
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "FwoGZXIvYXdzEJr//////////wEaDHhostileTOKEN";

    /// An AWS `SignatureDoesNotMatch` answer, with the request echoed as AWS does.
    fn signature_does_not_match() -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match the signature you provided. Check your key and signing method.</Message><AWSAccessKeyId>AKIDEXAMPLE</AWSAccessKeyId><StringToSign>AWS4-HMAC-SHA256\n20260101T000000Z\n20260101/us-east-1/s3/aws4_request\n5f1d</StringToSign><SignatureProvided>0123456789abcdef0123456789abcdef</SignatureProvided><CanonicalRequest>GET\n/reports\nX-Amz-Credential=AKIDEXAMPLE%2F20260101&amp;X-Amz-Signature=feedbeef\nhost:s3.amazonaws.com\nx-amz-security-token:{TOKEN}\n</CanonicalRequest><RequestId>R</RequestId></Error>"
        )
    }

    #[test]
    fn an_s3_error_shows_its_code_and_message_only() {
        let excerpt = error_excerpt(signature_does_not_match().as_bytes(), &[TOKEN.to_string()]);
        assert_eq!(
            excerpt,
            "SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided. Check your key and signing method."
        );
    }

    #[test]
    fn an_echo_of_the_request_loses_its_signing_material() {
        // A server that puts the echo where the message goes, and one that is not XML.
        let echo = format!(
            "GET /reports?X-Amz-Credential=AKIDEXAMPLE%2F20260101&X-Amz-Signature=feedbeef HTTP/1.1\r\nauthorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0123456789abcdef\r\nx-amz-security-token: {TOKEN}\r\n"
        );
        let xml = format!("<Error><Code>AccessDenied</Code><Message>{echo}</Message></Error>");
        for body in [xml.as_str(), echo.as_str(), signature_does_not_match().as_str()] {
            // Without being told the token: masked by name alone.
            let excerpt = error_excerpt(body.as_bytes(), &[]);
            for secret in [TOKEN, "feedbeef", "0123456789abcdef", "AKIDEXAMPLE"] {
                assert!(!excerpt.contains(secret), "{secret} in {excerpt}");
            }
            assert!(excerpt.chars().count() <= EXCERPT_CHARS + 1, "{excerpt}");
        }
        let masked =
            mask_signing("x-amz-security-token: abc\nnext: line <SignatureProvided>sig</SignatureProvided>");
        assert_eq!(
            masked,
            "x-amz-security-token: ***\nnext: line <SignatureProvided>***</SignatureProvided>"
        );
        // Words that only start like a name are left alone.
        assert_eq!(
            mask_signing("SignatureDoesNotMatch: no"),
            "SignatureDoesNotMatch: no"
        );
    }

    #[test]
    fn a_long_answer_is_cut_and_known_secrets_are_masked() {
        let body = format!("plain text {TOKEN} {}", "E".repeat(70_000));
        let excerpt = error_excerpt(body.as_bytes(), &[TOKEN.to_string()]);
        assert!(!excerpt.contains(TOKEN), "{excerpt}");
        assert_eq!(excerpt.chars().count(), EXCERPT_CHARS + 1, "cut, with a marker");
        assert!(excerpt.ends_with('…'));
    }
}
