//! One ReportStore's bucket: built from its spec and credentials, probed, written with
//! multipart uploads, presigned, and cleaned up, all through the operator's outbound policy.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig, WriteMultipart};
use sha2::{Digest, Sha256};
use url::Url;

use super::transport::{Refusal, Transport, refusal_in};
use crate::api::ReportStoreSpec;
use crate::api::reasons::{Delivered, StoreReady};
use crate::backend::transfer::PolicyClient;
use crate::backend::{BackendError, ClientOptions, Credentials, FileStream, redact_text, redact_url};

/// Bytes per uploaded part: S3's smallest part (the last may be smaller).
pub const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts uploaded at once. With the part being filled, at most `PART_BYTES × (this + 1)` of a
/// report is in memory however large the file: 15 MiB.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Longest a single request to the store (or the download from the backend) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(100);
/// Longest message of a store error: object_store's context (the request) and an excerpt of
/// the answer of at most 300 characters (see [`super::transport`]).
const MAX_MESSAGE_CHARS: usize = 800;

/// Why a store cannot be used; each says whether trying again later can help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    InvalidSpec(String),
    #[error("{0}")]
    CredentialsMissing(String),
    #[error("{0}")]
    DestinationDenied(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    BucketNotFound(String),
    #[error("{0}")]
    Unreachable(String),
    /// The store answered more than the operator reads, or something that is not S3's.
    #[error("{0}")]
    InvalidResponse(String),
    /// Reading the report from its backend failed.
    #[error("reading the report from the backend: {0}")]
    Source(String),
    /// A CONNECT ZIP to unpack is not one the streaming reader can read.
    #[error("{0}")]
    InvalidArchive(String),
}

impl StoreError {
    /// The reason of the store's Ready condition when a probe fails with this (a probe reads
    /// no report, so never fails with `Source` or `InvalidArchive`).
    pub fn reason(&self) -> StoreReady {
        match self {
            StoreError::InvalidSpec(_) => StoreReady::InvalidSpec,
            StoreError::CredentialsMissing(_) => StoreReady::CredentialsMissing,
            StoreError::DestinationDenied(_) => StoreReady::DestinationDenied,
            StoreError::Unauthorized(_) => StoreReady::Unauthorized,
            StoreError::BucketNotFound(_) => StoreReady::BucketNotFound,
            StoreError::InvalidResponse(_) => StoreReady::InvalidResponse,
            StoreError::Unreachable(_) | StoreError::Source(_) | StoreError::InvalidArchive(_) => {
                StoreReady::Unreachable
            }
        }
    }

    /// The reason of a ReportFile's Delivered condition when its copy fails with this.
    pub fn delivered_reason(&self) -> Delivered {
        match self {
            StoreError::InvalidSpec(_) => Delivered::InvalidSpec,
            StoreError::CredentialsMissing(_) => Delivered::CredentialsMissing,
            StoreError::DestinationDenied(_) => Delivered::DestinationDenied,
            StoreError::Unauthorized(_) => Delivered::Unauthorized,
            StoreError::BucketNotFound(_) => Delivered::BucketNotFound,
            StoreError::Unreachable(_) => Delivered::Unreachable,
            StoreError::InvalidResponse(_) => Delivered::InvalidResponse,
            StoreError::Source(_) => Delivered::SourceUnavailable,
            StoreError::InvalidArchive(_) => Delivered::InvalidArchive,
        }
    }

    /// The metric label of a failed delivery.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::InvalidSpec(_) => "invalid_spec",
            StoreError::CredentialsMissing(_) => "credentials_missing",
            StoreError::DestinationDenied(_) => "destination_denied",
            StoreError::Unauthorized(_) => "unauthorized",
            StoreError::BucketNotFound(_) => "bucket_not_found",
            StoreError::Unreachable(_) => "unreachable",
            StoreError::InvalidResponse(_) => "invalid_response",
            StoreError::Source(_) => "source",
            StoreError::InvalidArchive(_) => "invalid_archive",
        }
    }

    /// Reading the report from its backend failed with `e`.
    pub fn source(e: BackendError) -> Self {
        StoreError::Source(e.to_string())
    }

    fn from_backend(e: BackendError) -> Self {
        match e {
            BackendError::DestinationDenied { message } => StoreError::DestinationDenied(message),
            BackendError::InvalidSpec { message } => StoreError::InvalidSpec(message),
            other => StoreError::Unreachable(other.to_string()),
        }
    }

    /// Maps an object_store error. Its text names the request (signed in headers, so without
    /// a signature) and holds at most a redacted excerpt of an error answer, which the
    /// transport put there instead of the answer.
    fn from_store(e: object_store::Error) -> Self {
        let text = redact_text(&e.to_string(), &[], MAX_MESSAGE_CHARS);
        match refusal_in(&e) {
            Some(Refusal::Denied(message)) => return StoreError::DestinationDenied(message.clone()),
            Some(Refusal::TooLarge { .. }) => return StoreError::InvalidResponse(text),
            None => {}
        }
        match e {
            object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. } => {
                StoreError::Unauthorized(text)
            }
            _ if text.contains("NoSuchBucket") => StoreError::BucketNotFound(text),
            _ if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403 Forbidden",
            ]
            .iter()
            .any(|m| text.contains(m)) =>
            {
                StoreError::Unauthorized(text)
            }
            object_store::Error::NotFound { .. } => StoreError::BucketNotFound(text),
            _ => StoreError::Unreachable(text),
        }
    }
}

/// A report's bytes as they were copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

/// A ReportStore, ready to use.
pub struct Store {
    s3: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
    lifetime: Duration,
    http: PolicyClient,
    /// Where requests go: `spec.endpoint`, or AWS's endpoint of the region.
    endpoint: Url,
}

impl Store {
    /// The store `spec` describes, with the data of its credentials Secret, under the
    /// operator's outbound policy (in `options`).
    pub fn open(
        spec: &ReportStoreSpec,
        credentials: &BTreeMap<String, Vec<u8>>,
        options: &ClientOptions,
    ) -> Result<Store, StoreError> {
        let (bucket, prefix) = parse_store_url(&spec.url)?;
        let credentials = Credentials(credentials);
        let key = |k: &str| {
            credentials
                .optional(k)
                .map_err(|e| StoreError::CredentialsMissing(e.to_string()))
        };
        let (Some(access), Some(secret)) = (key("accessKeyId")?, key("secretAccessKey")?) else {
            return Err(StoreError::CredentialsMissing(
                "the credentials Secret needs keys accessKeyId and secretAccessKey".into(),
            ));
        };
        let token = key("sessionToken")?;
        let region = parse_region(spec.region.as_deref())?;
        let endpoint = match &spec.endpoint {
            Some(raw) => parse_endpoint(raw, options)?,
            // object_store's own default, named here so that it is checked like any other.
            None => Url::parse(&format!("https://s3.{region}.amazonaws.com"))
                .map_err(|e| StoreError::InvalidSpec(format!("region {region:?}: {e}")))?,
        };
        let http = PolicyClient::new(options, REQUEST_TIMEOUT).map_err(StoreError::from_backend)?;
        let secrets = [Some(&access), Some(&secret), token.as_ref()]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .collect();
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&bucket)
            .with_region(region)
            .with_endpoint(endpoint.as_str().trim_end_matches('/'))
            .with_allow_http(endpoint.scheme() == "http")
            .with_access_key_id(access.expose())
            .with_secret_access_key(secret.expose())
            // A store that is down is retried by the controller with backoff, not here.
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..Default::default()
            })
            .with_http_connector(Transport::new(http.clone(), secrets));
        if let Some(token) = &token {
            builder = builder.with_token(token.expose());
        }
        let s3 = builder
            .build()
            .map_err(|e| StoreError::InvalidSpec(e.to_string()))?;
        let lifetime = spec.presigned_lifetime();
        Ok(Store {
            s3: Arc::new(s3),
            bucket,
            prefix,
            lifetime,
            http,
            endpoint,
        })
    }

    /// The key prefix of the store's url (may be empty).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `s3://<bucket>/<key>`.
    pub fn location(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    /// How long a presigned URL works.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The endpoint must pass the outbound policy before anything is sent (IP literals are
    /// not seen by the resolver); the transport checks each request again.
    async fn check_endpoint(&self) -> Result<(), StoreError> {
        self.http
            .check(&self.endpoint)
            .await
            .map_err(StoreError::from_backend)
    }

    /// Lists under the prefix: proves the endpoint answers, the bucket exists and the
    /// credentials are accepted. One page is enough, so no more is asked for (a listing that
    /// claims more pages for ever costs one request).
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.check_endpoint().await?;
        let prefix = (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()));
        match self.s3.list(prefix.as_ref()).next().await {
            Some(Err(e)) => Err(StoreError::from_store(e)),
            Some(Ok(_)) | None => Ok(()),
        }
    }

    /// Streams the report at `url` (a backend's download URL) into the object `key`.
    pub async fn copy_from_url(&self, url: &str, key: &str) -> Result<Uploaded, StoreError> {
        let body = self.download(url).await?;
        self.upload(key, body).await
    }

    /// Streams the ZIP at `url` into one object per file under `stem` (see [`super::unzip`]).
    pub async fn extract_from_url(
        &self,
        url: &str,
        stem: &str,
    ) -> Result<Vec<super::unzip::Extracted>, StoreError> {
        let body = self.download(url).await?;
        super::unzip::extract(self, stem, body).await
    }

    /// The body of a GET of `url`, once the store's endpoint has been checked (a copy needs
    /// both ends).
    async fn download(
        &self,
        url: &str,
    ) -> Result<impl Stream<Item = Result<Bytes, StoreError>> + Send + 'static, StoreError> {
        self.check_endpoint().await?;
        let response = self.http.open(url).await.map_err(StoreError::source)?;
        let redacted = redact_url(url);
        Ok(response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| StoreError::Source(format!("GET {redacted}: {}", e.without_url())))
        }))
    }

    /// Unpacks the ZIP `body` (a file the backend sends itself) into one object per file
    /// under `stem`.
    pub async fn extract_stream(
        &self,
        body: FileStream,
        stem: &str,
    ) -> Result<Vec<super::unzip::Extracted>, StoreError> {
        self.check_endpoint().await?;
        super::unzip::extract(self, stem, body.map(|chunk| chunk.map_err(StoreError::source))).await
    }

    /// Streams `body` (a file the backend sends itself) into the object `key`.
    pub async fn copy_stream(&self, body: FileStream, key: &str) -> Result<Uploaded, StoreError> {
        self.check_endpoint().await?;
        self.upload(key, body.map(|chunk| chunk.map_err(StoreError::source)))
            .await
    }

    /// Multipart upload of `body` to `key`, hashing on the way: at most [`PARTS_IN_FLIGHT`]
    /// parts are sent at once, so memory stays bounded. An object appears only when the
    /// upload completes; a failed one is aborted (a crash leaves an incomplete upload, which
    /// a bucket lifecycle rule removes, and no object).
    pub(super) async fn upload<S>(&self, key: &str, body: S) -> Result<Uploaded, StoreError>
    where
        S: Stream<Item = Result<Bytes, StoreError>>,
    {
        let mut upload = self.begin(key).await?;
        let mut body = std::pin::pin!(body);
        while let Some(chunk) = body.next().await {
            let step = match chunk {
                Ok(chunk) => upload.push(chunk).await,
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                upload.abort().await;
                return Err(e);
            }
        }
        upload.finish().await
    }

    /// Starts a multipart upload to `key`.
    pub(super) async fn begin(&self, key: &str) -> Result<Upload, StoreError> {
        let path = Path::parse(key).map_err(|e| StoreError::InvalidSpec(e.to_string()))?;
        let upload = self
            .s3
            .put_multipart(&path)
            .await
            .map_err(StoreError::from_store)?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(upload, PART_BYTES),
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// A GET URL of `key` that works for [`Store::lifetime`] from `now`, and when it stops.
    pub async fn presign(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<(String, DateTime<Utc>), StoreError> {
        let path = Path::parse(key).map_err(|e| StoreError::InvalidSpec(e.to_string()))?;
        let url = self
            .s3
            .signed_url(reqwest::Method::GET, &path, self.lifetime)
            .await
            .map_err(StoreError::from_store)?;
        let expires = now + chrono::Duration::from_std(self.lifetime).unwrap_or_default();
        Ok((url.to_string(), expires))
    }

    /// Deletes the object `key` (already gone is success).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.check_endpoint().await?;
        let path = Path::parse(key).map_err(|e| StoreError::InvalidSpec(e.to_string()))?;
        self.delete_path(&path).await
    }

    /// Deletes the object at `path`, the endpoint already checked.
    async fn delete_path(&self, path: &Path) -> Result<(), StoreError> {
        match self.s3.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StoreError::from_store(e)),
        }
    }
}

/// One multipart upload in progress, hashing what it sends.
pub(super) struct Upload {
    writer: WriteMultipart,
    hasher: Sha256,
    size: u64,
}

impl Upload {
    /// Adds `chunk`, first waiting while [`PARTS_IN_FLIGHT`] parts are being sent.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), StoreError> {
        self.writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(StoreError::from_store)?;
        self.hasher.update(&chunk);
        self.size = self.size.saturating_add(chunk.len() as u64);
        self.writer.put(chunk);
        Ok(())
    }

    /// Completes the upload: the object appears now.
    pub async fn finish(self) -> Result<Uploaded, StoreError> {
        self.writer.finish().await.map_err(StoreError::from_store)?;
        let sha256 = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Uploaded {
            size: self.size,
            sha256,
        })
    }

    /// Gives the upload up (best effort: an upload left behind is removed by the bucket's
    /// lifecycle rule).
    pub async fn abort(self) {
        let _ = self.writer.abort().await;
    }
}

/// `s3://bucket/prefix` → (bucket, prefix without slashes at its ends).
pub fn parse_store_url(raw: &str) -> Result<(String, String), StoreError> {
    let invalid = |why: &str| StoreError::InvalidSpec(format!("url {raw:?}: {why}"));
    // Before parsing, which resolves "." and ".." away.
    let raw_prefix = raw
        .trim()
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, p)| p);
    if raw_prefix
        .trim_end_matches('/')
        .split('/')
        .any(|s| matches!(s.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | ".."))
    {
        return Err(invalid("the prefix must not have \".\" or \"..\" segments"));
    }
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "s3" => {}
        "gs" | "az" => return Err(invalid("only s3:// stores are supported so far")),
        _ => return Err(invalid("must be s3://<bucket>[/<prefix>]")),
    }
    let bucket = url.host_str().unwrap_or_default().to_string();
    if bucket.is_empty() || url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must be s3://<bucket>[/<prefix>], without query or user info",
        ));
    }
    let prefix = url.path().trim_matches('/').to_string();
    if prefix.split('/').any(|s| matches!(s, "." | "..")) || prefix.contains("//") {
        return Err(invalid(
            "the prefix must not have empty, \".\" or \"..\" segments",
        ));
    }
    Ok((bucket, prefix))
}

/// The bucket's region (default `us-east-1`): lower-case letters, digits and `-`, as the
/// CRD's pattern says. object_store puts it into a host name when there is no `endpoint`, so
/// anything else could make that name another host (`x@127.0.0.2:80/`); an object admitted
/// before the CRD had the pattern is refused here.
fn parse_region(raw: Option<&str>) -> Result<&str, StoreError> {
    let region = raw.unwrap_or("us-east-1");
    let valid = !region.is_empty()
        && region.len() <= 64
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        let shown: String = region.chars().take(64).collect();
        return Err(StoreError::InvalidSpec(format!(
            "region {shown:?} must be 1 to 64 lower-case letters, digits and '-' (such as eu-west-1)"
        )));
    }
    Ok(region)
}

/// An endpoint URL: http(s), no query or user info; http only where the policy allows it.
fn parse_endpoint(raw: &str, options: &ClientOptions) -> Result<Url, StoreError> {
    let invalid = |why: &str| StoreError::InvalidSpec(format!("endpoint {}: {why}", redact_url(raw)));
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("must start with http:// or https://"));
    }
    if url.query().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "must not have a query or user info; credentials belong in the Secret",
        ));
    }
    if url.scheme() == "http" && !options.policy.allows_http() {
        return Err(StoreError::DestinationDenied(format!(
            "endpoint {}: plain http:// is denied by the operator's outbound policy (--outbound-allow-http)",
            redact_url(raw)
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::backend::OutboundPolicy;

    /// A server on `ip` that answers every request with `head` (a chunked answer), `body` as
    /// one chunk (`{request}` replaced by the request's head) and then (if `endless`) chunks
    /// of `x` for ever; counts its connections.
    async fn server(ip: &str, head: &'static str, body: String, endless: bool) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                seen.fetch_add(1, Ordering::Relaxed);
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.ends_with(b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let echoed = body.replace("{request}", &String::from_utf8_lossy(&request));
                    let _ = socket.write_all(head.as_bytes()).await;
                    if !echoed.is_empty() {
                        let chunk = format!("{:x}\r\n{echoed}\r\n", echoed.len());
                        let _ = socket.write_all(chunk.as_bytes()).await;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 65536, "x".repeat(65536));
                    while endless && socket.write_all(chunk.as_bytes()).await.is_ok() {}
                });
            }
        });
        (format!("http://{addr}"), connections)
    }

    /// A store at `endpoint` whose credentials hold `token`, under a policy that allows
    /// 127.0.0.1 only.
    fn store_at(endpoint: &str, token: &str) -> Store {
        let spec: ReportStoreSpec = serde_json::from_value(serde_json::json!({
            "url": "s3://reports/p", "endpoint": endpoint, "credentialsSecretRef": {"name": "c"}
        }))
        .expect("spec");
        let creds: BTreeMap<String, Vec<u8>> = [
            ("accessKeyId".to_string(), b"AKIDTEST".to_vec()),
            ("secretAccessKey".to_string(), b"secret-key".to_vec()),
            ("sessionToken".to_string(), token.as_bytes().to_vec()),
        ]
        .into();
        let policy = OutboundPolicy::new(
            vec!["127.0.0.1/32".parse().expect("net")],
            vec![],
            vec![],
            true,
            false,
        );
        let options = ClientOptions {
            policy: Arc::new(policy),
            ..ClientOptions::default()
        };
        Store::open(&spec, &creds, &options).expect("store")
    }

    #[tokio::test]
    async fn an_endless_listing_is_read_up_to_its_cap() {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/xml\r\ntransfer-encoding: chunked\r\n\r\n";
        let (endpoint, _) = server("127.0.0.1", head, String::new(), true).await;
        let err = store_at(&endpoint, "t0ken").probe().await.expect_err("endless");
        assert!(
            matches!(&err, StoreError::InvalidResponse(m) if m.contains("larger than 1048576 bytes")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn an_error_answer_reaches_the_message_cut_and_redacted() {
        let token = "FwoGZXIvYXdzEJr-session-token-SECRET";
        let head =
            "HTTP/1.1 403 Forbidden\r\ncontent-type: application/xml\r\ntransfer-encoding: chunked\r\n\r\n";
        // The echo of the request as one chunk, then endless padding.
        let echo = "<Error><Code>SignatureDoesNotMatch</Code><Message>Request: {request}</Message></Error>";
        let (endpoint, _) = server("127.0.0.1", head, echo.to_string(), true).await;
        let err = store_at(&endpoint, token).probe().await.expect_err("403");
        let StoreError::Unauthorized(message) = &err else {
            panic!("{err:?}")
        };
        assert!(message.contains("SignatureDoesNotMatch"), "{message}");
        assert!(
            !message.contains("SECRET") && !message.contains("Signature="),
            "{message}"
        );
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1, "{message}");
    }

    #[tokio::test]
    async fn every_request_meets_the_policy_whatever_host_object_store_derives() {
        let head = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        let (endpoint, connections) = server("127.0.0.2", head, String::new(), false).await;
        let store = store_at(&endpoint, "t0ken");
        // object_store's own request, past the store's check of its endpoint.
        let err = store
            .s3
            .list(None)
            .next()
            .await
            .expect("an answer")
            .expect_err("denied");
        let err = StoreError::from_store(err);
        assert!(
            matches!(&err, StoreError::DestinationDenied(m) if m.contains("127.0.0.2")),
            "{err:?}"
        );
        assert_eq!(
            connections.load(Ordering::Relaxed),
            0,
            "a connection to a denied address"
        );
    }

    #[test]
    fn store_urls() {
        assert_eq!(
            parse_store_url("s3://reports").expect("bucket"),
            ("reports".into(), String::new())
        );
        assert_eq!(
            parse_store_url("s3://reports/a/b/").expect("prefix"),
            ("reports".into(), "a/b".into())
        );
        for bad in [
            "https://reports",
            "s3://",
            "gs://b/p",
            "s3://b/a/../c",
            "s3://b/a//c",
            "s3://u:p@b/",
        ] {
            assert!(
                matches!(parse_store_url(bad), Err(StoreError::InvalidSpec(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn regions_are_names_not_hosts() {
        for good in [None, Some("eu-west-1"), Some("us-gov-west-1"), Some("garage")] {
            assert!(parse_region(good).is_ok(), "{good:?}");
        }
        for bad in [
            "x@127.0.0.2:8443/",
            "EU-WEST-1",
            "",
            "eu.west",
            "a/b",
            &"a".repeat(65),
        ] {
            let err = parse_region(Some(bad)).expect_err(bad);
            assert!(
                matches!(&err, StoreError::InvalidSpec(m) if m.starts_with("region ")),
                "{err:?}"
            );
        }
        // The same rule as the CRD's pattern.
        assert_eq!(crate::api::REGION_PATTERN, "^[a-z0-9-]+$");
    }

    #[test]
    fn credentials_and_endpoints_are_checked_before_any_call() {
        let spec: ReportStoreSpec = serde_json::from_value(serde_json::json!({
            "url": "s3://b/p", "endpoint": "http://127.0.0.1:9000", "credentialsSecretRef": {"name": "c"}
        }))
        .expect("spec");
        let creds: BTreeMap<String, Vec<u8>> = [("accessKeyId".to_string(), b"a".to_vec())].into();
        assert!(matches!(
            Store::open(&spec, &creds, &ClientOptions::default()),
            Err(StoreError::CredentialsMissing(_))
        ));
        let creds: BTreeMap<String, Vec<u8>> = [
            ("accessKeyId".to_string(), b"a".to_vec()),
            ("secretAccessKey".to_string(), b"s".to_vec()),
        ]
        .into();
        let err = Store::open(&spec, &creds, &ClientOptions::default())
            .err()
            .expect("http is denied by default");
        assert!(
            matches!(&err, StoreError::DestinationDenied(m) if m.contains("--outbound-allow-http")),
            "{err:?}"
        );
    }
}
