//! Helpers of the simulator tests (`sim/tests/sim_*.rs`): an in-process simulator on a free port,
//! a plain-HTTP client, waiting on a condition with a deadline, and OAuth 1.0a signing the way
//! the RDE client signs.
#![allow(dead_code)] // each test binary uses a different part

use std::future::Future;
use std::io::Read;
use std::time::{Duration, Instant};

use report_sim::ReportingApi;
use report_sim::{SimConfig, SimServer};
use serde_json::Value;

pub async fn start(config: SimConfig) -> SimServer {
    SimServer::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("start simulator")
}

/// Plain HTTP (no TLS provider needed), redirects not followed, short timeout.
pub fn client() -> reqwest::Client {
    // reqwest is built without a TLS provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// Polls `check` every 25 ms until it returns `Some`, failing after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sleeps until the unix time `epoch_secs` has passed (an expiry instant the server named).
pub async fn sleep_past(epoch_secs: i64) {
    let now = chrono::Utc::now().timestamp_millis();
    let wait = (epoch_secs * 1000 - now).max(0) as u64 + 50;
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

/// The `expires` query parameter of a signed storage URL.
pub fn url_expiry(url: &str) -> i64 {
    let parsed = url::Url::parse(url).expect("url");
    parsed
        .query_pairs()
        .find(|(k, _)| k == "expires")
        .expect("expires")
        .1
        .parse()
        .expect("epoch")
}

/// A config whose reports take `generation_ms` on every API.
pub fn quick(generation_ms: u64) -> SimConfig {
    SimConfig::default().for_all(|b| b.generation_ms = generation_ms)
}

pub async fn body_json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("answer ({status}) is not JSON: {e}: {text}"))
}

pub fn gunzip(bytes: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .expect("gzip");
    out
}

/// The entries of a ZIP and their contents.
pub fn unzip(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("zip");
    (0..archive.len())
        .map(|i| {
            let mut file = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read entry");
            (file.name().to_string(), data)
        })
        .collect()
}

const RFC3986: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn rfc3986(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, RFC3986).to_string()
}

/// `Authorization: OAuth …` for `method url`, signed as the RDE client signs (with
/// `oauth1-request`; query keys go in encoded twice, see `backend::auth`).
pub fn oauth(method: &str, url: &str, key: &str, secret: &str, timestamp: Option<u64>) -> String {
    let parsed = url::Url::parse(url).expect("url");
    let params: oauth1_request::ParameterList<String, String> = parsed
        .query_pairs()
        .map(|(k, v)| (rfc3986(&rfc3986(&k)), v.into_owned()))
        .collect();
    let mut base = parsed.clone();
    base.set_query(None);
    let credentials = oauth1_request::Credentials::new(key, secret);
    let mut builder =
        oauth1_request::Builder::<_, &str, &str>::new(credentials, oauth1_request::HmacSha1::new());
    builder.timestamp(timestamp.and_then(std::num::NonZeroU64::new));
    builder.authorize(method, base.as_str(), &params)
}

/// An RDE client with the default credentials.
pub struct Rde {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
    pub secret: String,
}

impl Rde {
    pub fn new(sim: &SimServer) -> Self {
        Rde {
            http: client(),
            base: sim.backend_url(ReportingApi::Rde),
            key: "rde-consumer-key".into(),
            secret: "rde-consumer-secret".into(),
        }
    }

    /// A signed request to `{base}{path_and_query}`.
    pub fn request(&self, method: reqwest::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path_and_query}", self.base);
        let header = oauth(method.as_str(), &url, &self.key, &self.secret, None);
        self.http.request(method, url).header("authorization", header)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("send")
    }

    pub async fn create(&self, body: Value) -> reqwest::Response {
        self.request(reqwest::Method::POST, "/aps/2/resources")
            .json(&body)
            .send()
            .await
            .expect("send")
    }
}

/// A CMP client: a token from `/token`, then Bearer + X-Subscription-Key.
pub async fn cmp_token(sim: &SimServer) -> String {
    let http = client();
    let response = http
        .post(format!("{}/token", sim.backend_url(ReportingApi::Cmp)))
        .basic_auth("cmp-user", Some("cmp-password"))
        .header("x-subscription-key", "cmp-subscription-key")
        .json(&serde_json::json!({"marketplace": "us"}))
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);
    body_json(response).await["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// A SUPPLIER access token for the default client.
pub async fn supplier_token(sim: &SimServer) -> String {
    let response = client()
        .post(sim.supplier_token_url())
        .form(&sim.supplier_token_form())
        .send()
        .await
        .expect("token");
    assert_eq!(response.status(), 200);
    body_json(response).await["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

/// A FUSION access and refresh token for the default user.
pub async fn fusion_login(sim: &SimServer) -> (String, String) {
    let response = client()
        .post(format!(
            "{}/api/v01/auth/login",
            sim.backend_url(ReportingApi::Fusion)
        ))
        .json(&serde_json::json!({"username": "fusion-user", "password": "fusion-password"}))
        .send()
        .await
        .expect("login");
    assert_eq!(response.status(), 200);
    let body = body_json(response).await;
    (
        body["data"]["access_token"]
            .as_str()
            .expect("access_token")
            .to_string(),
        body["data"]["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_string(),
    )
}
