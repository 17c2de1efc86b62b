//! Load benchmark of report-sim: starts the simulators in-process, fires requests at them over
//! 127.0.0.1 with bounded concurrency for a few seconds, and prints requests per second and
//! the start-up time.
//!
//! `cargo run --release -p report-sim --bin sim-load -- --seconds 5 --concurrency 32`
//!
//! The mix rotates over one read per API, each authenticated as its clients are (RDE calls
//! are OAuth-signed per request, the others carry a token or key fetched once) plus a signed
//! storage download, so the number covers auth checks, JSON rendering and the per-API locks.
//! Limits are raised out of the way; the point is the server's throughput, not the 429s.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use report_sim::ReportingApi;
use report_sim::{SimConfig, SimServer};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Load benchmark of the report simulators")]
struct Args {
    /// How long to fire requests.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Stop after this many requests (0: only the time limit).
    #[arg(long, default_value_t = 0)]
    requests: u64,
}

#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("simulator: {0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP: {0}")]
    Http(#[from] reqwest::Error),
    #[error("setup: {0}")]
    Setup(String),
}

/// One request of the mix, ready to send.
#[derive(Clone)]
enum Call {
    Get {
        url: String,
        headers: Vec<(&'static str, String)>,
    },
    /// RDE: signed afresh for every request (a nonce may be used once).
    RdeGet { url: String },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match report_sim::block_on(run(args)) {
        Ok(result) => result,
        Err(code) => return code,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn config() -> SimConfig {
    let mut config = SimConfig::default().for_all(|b| b.generation_ms = 0);
    config.cmp.requests_per_minute = u32::MAX;
    config.cmp.requests_per_day = u32::MAX;
    config.supplier.requests_per_window = u32::MAX;
    config.supplier.token_requests_per_window = u32::MAX;
    config.supplier.max_in_progress = u32::MAX;
    // Links outlive the run.
    config.supplier.url_lifetime_secs = 3600;
    config
}

async fn run(args: Args) -> Result<(), LoadError> {
    let started = Instant::now();
    let sim = SimServer::start(
        config(),
        "127.0.0.1:0"
            .parse()
            .map_err(|e| LoadError::Setup(format!("{e}")))?,
    )
    .await?;
    let startup = started.elapsed();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let first = Instant::now();
    let probe = http.get(format!("{}/_sim/stats", sim.base_url())).send().await?;
    let first_answer = first.elapsed();
    if !probe.status().is_success() {
        return Err(LoadError::Setup(format!("stats answered {}", probe.status())));
    }
    println!(
        "start-up: {:.2} ms to listen, first answer after {:.2} ms",
        startup.as_secs_f64() * 1e3,
        first_answer.as_secs_f64() * 1e3
    );

    let calls = Arc::new(setup(&sim, &http).await?);
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let begin = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..args.concurrency {
        let (http, calls, sent, failed) = (http.clone(), calls.clone(), sent.clone(), failed.clone());
        let limit = args.requests;
        workers.spawn(async move {
            let mut i = worker;
            while Instant::now() < deadline {
                let n = sent.fetch_add(1, Ordering::Relaxed);
                if limit > 0 && n >= limit {
                    break;
                }
                let ok = send(&http, &calls[i % calls.len()]).await;
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let elapsed = begin.elapsed();
    let total = sent.load(Ordering::Relaxed).min(if args.requests > 0 {
        args.requests
    } else {
        u64::MAX
    });
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{total} requests in {:.2} s with concurrency {}: {:.0} requests/s, {failed} failed",
        elapsed.as_secs_f64(),
        args.concurrency,
        total as f64 / elapsed.as_secs_f64()
    );
    let stats = sim.stats();
    let mut by_endpoint: Vec<String> = stats
        .requests
        .iter()
        .filter(|r| r.count > 10)
        .map(|r| format!("{} {} {}: {}", r.backend, r.endpoint, r.status, r.count))
        .collect();
    by_endpoint.sort();
    println!("answers: {}", by_endpoint.join(", "));
    sim.shutdown();
    if failed > 0 {
        return Err(LoadError::Setup(format!("{failed} requests failed")));
    }
    Ok(())
}

async fn send(http: &reqwest::Client, call: &Call) -> bool {
    let request = match call {
        Call::Get { url, headers } => headers.iter().fold(http.get(url), |r, (k, v)| r.header(*k, v)),
        Call::RdeGet { url } => http.get(url).header("authorization", rde_sign("GET", url)),
    };
    match request.send().await {
        Ok(r) => {
            let ok = r.status().is_success() || r.status().is_redirection();
            r.bytes().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

const RFC3986: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Signs as the RDE client does (see `backend::auth::OAuth1`).
fn rde_sign(method: &str, url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return String::new();
    };
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, RFC3986).to_string();
    let params: oauth1_request::ParameterList<String, String> = parsed
        .query_pairs()
        .map(|(k, v)| (enc(&enc(&k)), v.into_owned()))
        .collect();
    let mut base = parsed.clone();
    base.set_query(None);
    let credentials = oauth1_request::Credentials::new("rde-consumer-key", "rde-consumer-secret");
    let builder = oauth1_request::Builder::<_, &str, &str>::new(credentials, oauth1_request::HmacSha1::new());
    builder.authorize(method, base.as_str(), &params)
}

async fn json_of(response: reqwest::Response) -> Result<Value, LoadError> {
    let status = response.status();
    let text = response.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| LoadError::Setup(format!("answer {status} is not JSON ({e}): {text}")))
}

/// Creates one report per API and returns the mix of reads.
async fn setup(sim: &SimServer, http: &reqwest::Client) -> Result<Vec<Call>, LoadError> {
    let url = |t: ReportingApi, path: &str| format!("{}{path}", sim.backend_url(t));
    let mut calls = Vec::new();

    // RDE: a ONETIME template; read its report files.
    let create = url(ReportingApi::Rde, "/aps/2/resources");
    let body = json!({"aps": {"type": "http://www.odin.com/rde/report-template/1.1"}, "commonName": "Load", "eventType": "ONETIME", "format": "JSON",
        "parameters": {"startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-01T23:59:59Z"}});
    let signed = rde_sign("POST", &create);
    let template = json_of(
        http.post(&create)
            .header("authorization", signed)
            .json(&body)
            .send()
            .await?,
    )
    .await?;
    let id = template["aps"]["id"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("RDE: {template}")))?;
    calls.push(Call::RdeGet {
        url: url(ReportingApi::Rde, &format!("/aps/2/resources/{id}/reportFiles")),
    });

    // CMP: a token and a report.
    let token = json_of(
        http.post(url(ReportingApi::Cmp, "/token"))
            .basic_auth("cmp-user", Some("cmp-password"))
            .header("x-subscription-key", "cmp-subscription-key")
            .json(&json!({"marketplace": "us"}))
            .send()
            .await?,
    )
    .await?;
    let token = token["token"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("CMP token: {token}")))?
        .to_string();
    let cmp_headers = vec![
        ("authorization", format!("Bearer {token}")),
        ("x-subscription-key", "cmp-subscription-key".to_string()),
    ];
    let report = json_of(
        cmp_headers
            .iter()
            .fold(http.post(url(ReportingApi::Cmp, "/reports")), |r, (k, v)| r.header(*k, v))
            .json(&json!({"name": "Load", "format": "csv", "startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-02T00:00:00Z"}))
            .send()
            .await?,
    )
    .await?;
    let cmp_id = report["id"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("CMP: {report}")))?;
    calls.push(Call::Get {
        url: url(ReportingApi::Cmp, &format!("/reports/{cmp_id}")),
        headers: cmp_headers.clone(),
    });

    // CONNECT: a report; read it, and list.
    let connect_headers = vec![(
        "authorization",
        "ApiKey SU-000-000-000:connect-secret-key".to_string(),
    )];
    let report = json_of(
        http.post(url(ReportingApi::Connect, "/reporting/reports"))
            .header("authorization", "ApiKey SU-000-000-000:connect-secret-key")
            .json(&json!({"template": {"id": "RT-0000-0001"}, "renderer": "json", "parameters": {}}))
            .send()
            .await?,
    )
    .await?;
    let connect_id = report["id"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("CONNECT: {report}")))?;
    calls.push(Call::Get {
        url: url(ReportingApi::Connect, &format!("/reporting/reports/{connect_id}")),
        headers: connect_headers.clone(),
    });
    calls.push(Call::Get {
        url: url(ReportingApi::Connect, "/reporting/reports?limit=10"),
        headers: connect_headers,
    });

    // FUSION: phone usage of a group.
    let login = json_of(
        http.post(url(ReportingApi::Fusion, "/api/v01/auth/login"))
            .json(&json!({"username": "fusion-user", "password": "fusion-password"}))
            .send()
            .await?,
    )
    .await?;
    let access = login["data"]["access_token"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("FUSION: {login}")))?;
    calls.push(Call::Get {
        url: url(
            ReportingApi::Fusion,
            "/api/v01/draas/draas_v1/groups/53fd92c7-fbef-44fd-af76-d92334432ac9/sdrs/phone_usage",
        ),
        headers: vec![("authorization", format!("Bearer {access}"))],
    });

    // SUPPLIER: a token and a report; read it, and download it by a fresh link.
    let token = json_of(
        http.post(sim.supplier_token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "supplier-client"),
                ("client_secret", "supplier-secret"),
            ])
            .send()
            .await?,
    )
    .await?;
    let access = token["access_token"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("SUPPLIER token: {token}")))?
        .to_string();
    let reports = url(
        ReportingApi::Supplier,
        "/v1/vehicle-suppliers/suppliers/org-1/reports",
    );
    let report = json_of(
        http.post(&reports)
            .bearer_auth(&access)
            .json(&json!({"reportType": "REPORT_TYPE_LOAD", "filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": ["1790812800000", "1790985599000"]}]}))
            .send()
            .await?,
    )
    .await?;
    let supplier_id = report["report"]["id"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("SUPPLIER: {report}")))?;
    calls.push(Call::Get {
        url: format!("{reports}/{supplier_id}"),
        headers: vec![("authorization", format!("Bearer {access}"))],
    });
    let link = json_of(
        http.post(format!("{reports}/{supplier_id}/link"))
            .bearer_auth(&access)
            .send()
            .await?,
    )
    .await?;
    let file = link["data"]["signedUrl"]["value"]
        .as_str()
        .ok_or_else(|| LoadError::Setup(format!("SUPPLIER link: {link}")))?;
    // A 60-second link: long enough for the run.
    calls.push(Call::Get {
        url: file.to_string(),
        headers: Vec::new(),
    });
    Ok(calls)
}
