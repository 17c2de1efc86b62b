//! Fault injection and control: injected 5xx, 429, lost answers and timeouts over HTTP and
//! from Rust, random faults by rate, latency, `/_sim/stats`, and the config file and CLI flags.

mod sim_support;

use std::time::{Duration, Instant};

use clap::Parser;
use report_sim::ReportingApi;
use report_sim::{Fault, FaultKind, SimArgs, SimConfig, SimStats};
use serde_json::json;
use sim_support::{Rde, body_json, client, cmp_create, cmp_report, quick, start, supplier_token};

const TYPE: &str = "http://www.odin.com/rde/report-template/1.1";

fn template(name: &str) -> serde_json::Value {
    json!({
        "aps": {"type": TYPE}, "commonName": name, "eventType": "ONETIME", "format": "JSON",
        "parameters": {"startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-02T23:59:59Z"},
    })
}

async fn templates_named(rde: &Rde, name: &str) -> usize {
    let path = format!(
        "/aps/2/resources?implementing({TYPE}),eq(commonName,{})",
        name.replace(' ', "%20")
    );
    body_json(rde.get(&path).await)
        .await
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test]
async fn an_injected_5xx_does_nothing_and_strikes_count_times() {
    let sim = start(quick(0)).await;
    let rde = Rde::new(&sim);
    sim.inject(Fault::new(ReportingApi::Rde, "create", FaultKind::ServerError, 2));
    for _ in 0..2 {
        let refused = rde.create(template("NW Finance")).await;
        assert_eq!(refused.status(), 503);
        assert_eq!(body_json(refused).await["code"], 503, "in the APS error shape");
    }
    assert_eq!(
        templates_named(&rde, "NW Finance").await,
        0,
        "a 5xx created nothing"
    );
    assert_eq!(rde.create(template("NW Finance")).await.status(), 202);
    let stats = sim.stats();
    assert_eq!(stats.requests_with_status("RDE", "create", 503), 2);
    assert_eq!(stats.total_generations(ReportingApi::Rde), 1);
}

#[tokio::test]
async fn a_lost_response_creates_but_the_client_gets_no_answer() {
    let sim = start(quick(0)).await;
    let rde = Rde::new(&sim);
    sim.inject(Fault::new(
        ReportingApi::Rde,
        "create",
        FaultKind::LostResponse,
        1,
    ));
    let lost = rde
        .request(reqwest::Method::POST, "/aps/2/resources")
        .json(&template("NW Finance"))
        .send()
        .await;
    assert!(
        lost.is_err(),
        "the connection should close without an answer: {lost:?}"
    );
    // The template exists: a client must look it up before it creates again.
    assert_eq!(templates_named(&rde, "NW Finance").await, 1);
    let stats = sim.stats();
    assert_eq!(stats.total_generations(ReportingApi::Rde), 1);
    assert_eq!(stats.max_duplicates(ReportingApi::Rde), 1);
    assert_eq!(stats.requests_with_status("RDE", "create", 0), 1, "{stats:?}");

    // With a status, the answer is that status instead (a gateway's 504 after the work).
    sim.inject(Fault::new(ReportingApi::Cmp, "create", FaultKind::LostResponse, 1).with_status(504));
    let answer = cmp_create(&sim, "Daily", "json").await.expect("send");
    assert_eq!(answer.status(), 504);
    assert_eq!(sim.stats().total_generations(ReportingApi::Cmp), 1);
}

#[tokio::test]
async fn a_timeout_holds_the_answer_after_carrying_the_call_out() {
    let config = SimConfig {
        hang_ms: 2_000,
        ..quick(0)
    };
    let sim = start(config).await;
    let token = supplier_token(&sim).await;
    sim.inject(Fault::new(
        ReportingApi::Supplier,
        "generate",
        FaultKind::Timeout,
        1,
    ));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let body = json!({"reportType": "REPORT_TYPE_A", "filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": ["1790812800000", "1790985599000"]}]});
    let url = format!(
        "{}/v1/vehicle-suppliers/suppliers/org-1/reports",
        sim.backend_url(ReportingApi::Supplier)
    );
    let started = Instant::now();
    let answer = impatient.post(&url).bearer_auth(&token).json(&body).send().await;
    assert!(
        answer.as_ref().is_err_and(reqwest::Error::is_timeout),
        "{answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(sim.stats().total_generations(ReportingApi::Supplier), 1);
}

#[tokio::test]
async fn faults_are_injected_listed_and_cleared_over_http() {
    let sim = start(quick(0)).await;
    let http = client();
    let faults = format!("{}/_sim/faults", sim.base_url());
    let injected = http
        .post(&faults)
        .json(&json!({"backend": "SUPPLIER", "endpoint": "generate", "kind": "429", "count": 2, "retryAfterSecs": 7}))
        .send()
        .await
        .expect("inject");
    assert_eq!(injected.status(), 201);
    assert_eq!(
        http.post(&faults)
            .json(&json!({"backend": "NOPE", "kind": "5xx"}))
            .send()
            .await
            .expect("inject")
            .status(),
        400
    );
    let pending = body_json(http.get(&faults).send().await.expect("list")).await;
    assert_eq!(pending[0]["count"], 2);

    let token = supplier_token(&sim).await;
    let url = format!(
        "{}/v1/vehicle-suppliers/suppliers/org-1/reports",
        sim.backend_url(ReportingApi::Supplier)
    );
    let body = json!({"reportType": "REPORT_TYPE_A", "filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": ["1790812800000", "1790985599000"]}]});
    let refused = http
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("generate");
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "7");
    assert_eq!(
        body_json(refused).await,
        json!({"message": "Exceeded rate limit", "code": "rate_limited"})
    );
    assert_eq!(
        body_json(http.get(&faults).send().await.expect("list")).await[0]["count"],
        1
    );
    assert_eq!(http.delete(&faults).send().await.expect("clear").status(), 200);
    assert_eq!(
        http.post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("generate")
            .status(),
        200
    );

    // A wildcard endpoint hits every endpoint of its API.
    sim.inject(Fault::new(ReportingApi::Supplier, "*", FaultKind::ServerError, 1).with_status(502));
    assert_eq!(
        http.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("list")
            .status(),
        502
    );

    let over_http: SimStats = serde_json::from_value(
        body_json(
            http.get(format!("{}/_sim/stats", sim.base_url()))
                .send()
                .await
                .expect("stats"),
        )
        .await,
    )
    .expect("stats");
    assert_eq!(over_http, sim.stats());
    assert_eq!(over_http.rate_limited(ReportingApi::Supplier), 1);
    assert_eq!(over_http.requests_with_status("SUPPLIER", "list", 502), 1);
}

#[tokio::test]
async fn rates_and_latency_come_from_the_config() {
    let mut config = quick(0);
    config.cmp.behaviour.error_rate = 1.0;
    config.connect.behaviour.latency_ms = 250;
    let sim = start(config).await;
    let http = client();
    let token = http
        .post(format!("{}/token", sim.backend_url(ReportingApi::Cmp)))
        .basic_auth("cmp-user", Some("cmp-password"))
        .header("x-subscription-key", "cmp-subscription-key")
        .json(&json!({"marketplace": "us"}))
        .send()
        .await
        .expect("token");
    assert_eq!(token.status(), 503);
    assert!(token.headers().contains_key("x-correlation-id"));
    let started = Instant::now();
    let list = http
        .get(format!(
            "{}/reporting/reports",
            sim.backend_url(ReportingApi::Connect)
        ))
        .header("authorization", "ApiKey SU-000-000-000:connect-secret-key")
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(250));
}

#[tokio::test]
async fn random_lost_answers_still_create() {
    let mut config = quick(0);
    config.supplier.behaviour.lost_response_rate = 1.0;
    config.seed = Some(42);
    let sim = start(config).await;
    let token_call = client()
        .post(sim.supplier_token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "supplier-client"),
            ("client_secret", "supplier-secret"),
        ])
        .send()
        .await;
    assert!(token_call.is_err(), "every answer is lost");
    assert_eq!(sim.stats().requests_with_status("SUPPLIER", "token", 0), 1);
    assert_eq!(sim.stats().token_requests(ReportingApi::Supplier), 1);
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    sim: SimArgs,
}

#[test]
fn the_config_file_and_flags_set_the_knobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sim.yaml");
    std::fs::write(
        &path,
        "supplier:\n  urlLifetimeSecs: 5\n  maxInProgress: 2\ncmp:\n  username: alice\n",
    )
    .expect("write");
    let cli = Cli::parse_from([
        "sim",
        "--listen",
        "127.0.0.1:0",
        "--config",
        path.to_str().expect("path"),
        "--generation-ms",
        "7",
        "--error-rate",
        "0.5",
    ]);
    let config = cli.sim.to_config().expect("config");
    assert_eq!(config.supplier.url_lifetime_secs, 5);
    assert_eq!(config.supplier.max_in_progress, 2);
    assert_eq!(config.cmp.username, "alice");
    assert_eq!(config.cmp.password, "cmp-password");
    assert!(
        report_sim::ReportingApi::ALL
            .iter()
            .all(|t| config.behaviour(*t).generation_ms == 7 && config.behaviour(*t).error_rate == 0.5)
    );
    let bad = Cli::parse_from(["sim", "--error-rate", "2"]);
    assert!(bad.sim.to_config().is_err());
    std::fs::write(&path, "supplier: [not, a, map]\n").expect("write");
    assert!(SimConfig::from_file(&path).is_err());
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn a_cut_download_breaks_off_midway_and_only_storage_faults_reach_downloads() {
    let sim = start(quick(0)).await;
    let (id, url) = cmp_report(&sim, "Daily", "csv").await;
    // `*` is the API's own endpoints: a download is not one of them.
    sim.inject(Fault::new(ReportingApi::Cmp, "*", FaultKind::ServerError, 1));
    let whole = client().get(&url).send().await.expect("download");
    assert_eq!(whole.status(), 200);
    let whole = whole.bytes().await.expect("whole body");
    sim.clear_faults();

    sim.inject(Fault::new(
        ReportingApi::Cmp,
        report_sim::STORAGE_ENDPOINT,
        FaultKind::Cut,
        1,
    ));
    // A fault for another API's files leaves this one alone.
    sim.inject(Fault::new(
        ReportingApi::Connect,
        report_sim::STORAGE_ENDPOINT,
        FaultKind::ServerError,
        1,
    ));
    let cut = client().get(&url).send().await.expect("the head arrives");
    assert_eq!(cut.status(), 200);
    assert_eq!(
        cut.content_length(),
        Some(whole.len() as u64),
        "the full length is announced"
    );
    let body = cut.bytes().await;
    assert!(body.is_err(), "the body should break off: {body:?}");
    assert_eq!(
        sim.stats()
            .requests_with_status(report_sim::STORAGE, "download", 200),
        2
    );

    // The next download is whole, and the simulator's own record of the file agrees.
    let again = client().get(&url).send().await.expect("download");
    assert_eq!(again.bytes().await.expect("body"), whole);
    let files = sim.files();
    let file = files
        .iter()
        .find(|f| f.backend == "CMP" && f.name.contains(&id))
        .unwrap_or_else(|| panic!("{id} among {files:?}"));
    assert_eq!(
        (file.size, file.sha256.as_str()),
        (whole.len() as u64, sha256_hex(&whole).as_str())
    );
    let listed: Vec<report_sim::SimFile> = body_json(
        client()
            .get(format!("{}/_sim/files", sim.base_url()))
            .send()
            .await
            .expect("files"),
    )
    .await
    .as_array()
    .expect("array")
    .iter()
    .map(|f| serde_json::from_value(f.clone()).expect("SimFile"))
    .collect();
    assert_eq!(listed, files);
    assert_eq!(sim.stats().rate_limited(ReportingApi::Cmp), 0);
    assert_eq!(
        sim.pending_faults().len(),
        1,
        "the CONNECT storage fault is still waiting"
    );
}

#[tokio::test]
async fn a_cut_api_answer_is_carried_out_and_breaks_off() {
    let sim = start(quick(0)).await;
    sim.inject(Fault::new(ReportingApi::Cmp, "create", FaultKind::Cut, 1));
    let text = match cmp_create(&sim, "Daily", "json").await {
        Ok(r) => r.text().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    assert!(text.is_err(), "the answer should break off: {text:?}");
    assert_eq!(sim.stats().total_generations(ReportingApi::Cmp), 1, "carried out");
}

#[tokio::test]
async fn generations_count_the_reports_the_simulator_fails() {
    let mut config = quick(0);
    config.cmp.behaviour.failure_rate = 1.0;
    let sim = start(config).await;
    let created = cmp_create(&sim, "Daily", "csv").await.expect("create");
    assert_eq!(created.status(), 200);
    let stats = sim.stats();
    let failed: u64 = stats.generations.iter().map(|g| g.failed).sum();
    assert_eq!((stats.total_generations(ReportingApi::Cmp), failed), (1, 1));
    // A name with FAIL fails whatever the rate.
    let sim = start(quick(0)).await;
    for name in ["Daily", "FAIL daily"] {
        cmp_create(&sim, name, "json").await.expect("create");
    }
    let failed: Vec<(String, u64)> = sim
        .stats()
        .generations
        .iter()
        .map(|g| (g.key.split('|').nth(1).unwrap_or_default().to_string(), g.failed))
        .collect();
    assert_eq!(failed, [("Daily".to_string(), 0), ("FAIL daily".to_string(), 1)]);
}
