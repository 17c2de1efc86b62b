//! Helpers of the backend contract tests: simulator, specs, credentials, requests, polling.
#![allow(dead_code)] // each test binary uses its own share

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use report_operator::api::{
    BackendType, EventType, FusionDataset, FusionLevel, FusionScope, ReportBackendSpec, ReportFormat,
    ReportParameters,
};
use report_operator::backend::{
    ClientOptions, Download, Limiter, ListQuery, OutboundPolicy, RemoteReport, ReportRequest, ReportState,
    ReportingBackend, RetryPolicy, connect_with_options,
};
use report_sim::{SimConfig, SimServer};

// The e2e tests' fixtures (credentials, the simulated API of a backend type), shared here
// without the control-plane harness of `common`.
#[path = "../common/fixtures.rs"]
pub mod fixtures;
pub use fixtures::{ALL_TYPES, sim_api};

use serde_json::json;
use tokio::time::Instant;

pub const DEADLINE: Duration = Duration::from_secs(30);
pub const FUSION_GROUP: &str = "aaf9dba1-9469-40fa-be50-22298d68010d";
pub const DEFAULT_ORG: &str = "5d3c1a8e-0000-4000-8000-000000000001";

/// An in-process simulator on a free port.
pub async fn start(config: SimConfig) -> SimServer {
    SimServer::start(config, "127.0.0.1:0".parse().expect("address"))
        .await
        .expect("start simulator")
}

pub fn fast() -> SimConfig {
    SimConfig::default().for_all(|b| b.generation_ms = 300)
}

/// The simulator's default credentials of `t`, as Secret data.
pub fn credentials(t: BackendType) -> BTreeMap<String, Vec<u8>> {
    fixtures::good_credentials(t)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect()
}

/// The same credentials with the secret part wrong.
pub fn wrong_credentials(t: BackendType) -> BTreeMap<String, Vec<u8>> {
    let mut c = credentials(t);
    let key = match t {
        BackendType::Rde => "consumerSecret",
        BackendType::Cmp | BackendType::Fusion => "password",
        BackendType::Connect => "apiKey",
        BackendType::Supplier => "clientSecret",
    };
    c.insert(key.into(), b"not-the-secret-0xdeadbeef".to_vec());
    c
}

pub fn spec(sim: &SimServer, t: BackendType, limits: Option<serde_json::Value>) -> ReportBackendSpec {
    let mut doc = json!({"type": t.as_str(), "url": sim.backend_url(sim_api(t)), "credentialsSecretRef": {"name": "creds"}});
    if t == BackendType::Supplier {
        doc["supplier"] = json!({"organizationId": DEFAULT_ORG, "tokenUrl": sim.supplier_token_url()});
    }
    if let Some(l) = limits {
        doc["limits"] = l;
    }
    serde_json::from_value(doc).expect("spec")
}

/// The simulators listen on 127.0.0.1 over plain http: a policy that allows that, explicitly.
pub fn loopback_policy() -> OutboundPolicy {
    OutboundPolicy::new(
        vec!["127.0.0.1/32".parse().expect("cidr")],
        Vec::new(),
        Vec::new(),
        true,
        false,
    )
}

/// Short timeouts and backoff so that retries take milliseconds; loopback and http allowed.
pub fn options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(30),
            max_delay: Duration::from_millis(300),
            max_retry_after: Duration::from_secs(5),
        },
        policy: Arc::new(loopback_policy()),
    }
}

pub fn client_with(spec: &ReportBackendSpec, creds: &BTreeMap<String, Vec<u8>>) -> Arc<dyn ReportingBackend> {
    connect_with_options(spec, creds, None, Limiter::for_backend(spec), &options()).expect("client builds")
}

pub fn client(sim: &SimServer, t: BackendType) -> Arc<dyn ReportingBackend> {
    client_with(&spec(sim, t, None), &credentials(t))
}

pub fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

/// A ONETIME request `t` can make, named `name`.
pub fn request(t: BackendType, name: &str) -> ReportRequest {
    let mut parameters = ReportParameters {
        start_date: Some(time("2018-10-09T00:00:00Z")),
        end_date: Some(time("2018-10-10T23:59:59Z")),
        ..Default::default()
    };
    let format = match t {
        BackendType::Rde | BackendType::Cmp | BackendType::Fusion => ReportFormat::Json,
        BackendType::Connect | BackendType::Supplier => ReportFormat::Csv,
    };
    match t {
        BackendType::Connect => {
            parameters.template = Some("RT-0001-0001".into());
            // The simulator tells reports apart by their content: give each its own.
            parameters.values = Some([("title".to_string(), json!(name))].into());
        }
        BackendType::Fusion => {
            parameters.scope = Some(FusionScope {
                level: FusionLevel::Group,
                uuid: FUSION_GROUP.into(),
                subscription_id: None,
            });
            parameters.dataset = Some(FusionDataset::Licenses);
        }
        BackendType::Supplier => {
            parameters.report_type = Some(format!("REPORT_TYPE_{}", name.to_uppercase()))
        }
        BackendType::Rde | BackendType::Cmp => {}
    }
    ReportRequest {
        key: format!("test/{}", name.to_lowercase()),
        name: name.into(),
        event_type: EventType::Onetime,
        format,
        notify_by_email: false,
        parameters,
        organization: None,
        stored: false,
    }
}

/// Calls `f` every 100 ms until it gives a value, failing the test at the deadline. Not
/// report-sim's test helper `wait_for` (25 ms): CMP's 60 calls a minute are shared by a whole test.
pub async fn poll<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The report `submitted` stands for (RDE: the template's one report file), once finished.
pub async fn finish(
    backend: &dyn ReportingBackend,
    req: &ReportRequest,
    submitted: RemoteReport,
) -> RemoteReport {
    let id = if backend.backend_type() == BackendType::Rde {
        let query = ListQuery {
            template_id: Some(submitted.id.clone()),
            ..Default::default()
        };
        poll("the template's report file", || async {
            backend
                .list(&query)
                .await
                .expect("list report files")
                .into_iter()
                .next()
                .map(|f| f.id)
        })
        .await
    } else if submitted.state.is_finished() {
        return submitted;
    } else {
        submitted.id
    };
    poll("the report to finish", || async {
        Some(backend.get(&id, req).await.expect("get report")).filter(|r| r.state.is_finished())
    })
    .await
}

/// Submits `req` and follows it to the end; READY reports are downloaded.
pub async fn run(backend: &dyn ReportingBackend, req: &ReportRequest) -> (RemoteReport, Option<Download>) {
    let submitted = backend.submit(req).await.expect("submit");
    let report = finish(backend, req, submitted).await;
    let download = match report.state {
        ReportState::Ready => Some(backend.download(&report, req).await.expect("download")),
        _ => None,
    };
    (report, download)
}

/// Fetches a download URL and returns the body (the simulator's storage checks signatures).
pub async fn fetch(url: &str) -> Vec<u8> {
    let response = reqwest::get(url).await.expect("storage answers");
    assert!(
        response.status().is_success(),
        "storage said {}",
        response.status()
    );
    response.bytes().await.expect("body").to_vec()
}

/// The endpoint names (as the simulator calls them) a report's life goes through.
pub fn endpoints(t: BackendType) -> (&'static str, &'static str) {
    match t {
        BackendType::Rde => ("create", "get"),
        BackendType::Cmp => ("create", "get"),
        BackendType::Connect => ("create", "get"),
        BackendType::Fusion => ("license", "license"),
        BackendType::Supplier => ("generate", "list"),
    }
}
