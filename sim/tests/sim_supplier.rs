//! The SUPPLIER simulator over HTTP: OAuth2 client credentials, generate/get/list/link, the
//! 60-second signed URLs and the documented limits.

mod sim_support;

use std::time::Duration;

use report_sim::ReportingApi;
use report_sim::{SimServer, SupplierConfig};
use serde_json::{Value, json};
use sim_support::{body_json, client, quick, sleep_past, start, supplier_token, url_expiry, wait_for};

const ORG: &str = "6f1c2d3e-0000-4000-8000-000000000001";
/// 2026-10-01T00:00:00Z and 2026-10-02T23:59:59Z in epoch milliseconds.
const START_MS: &str = "1790812800000";
const END_MS: &str = "1790985599000";

fn reports(sim: &SimServer, org: &str, tail: &str) -> String {
    format!(
        "{}/v1/vehicle-suppliers/suppliers/{org}/reports{tail}",
        sim.backend_url(ReportingApi::Supplier)
    )
}

/// A simulator whose reports take `generation_ms`, with `change` made to SUPPLIER's config,
/// and an access token.
async fn started(generation_ms: u64, change: impl FnOnce(&mut SupplierConfig)) -> (SimServer, String) {
    let mut config = quick(generation_ms);
    change(&mut config.supplier);
    let sim = start(config).await;
    let token = supplier_token(&sim).await;
    (sim, token)
}

fn request(report_type: &str, start_ms: &str) -> Value {
    json!({
        "reportType": report_type,
        "filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": [start_ms, END_MS]}],
    })
}

async fn generate(sim: &SimServer, token: &str, org: &str, body: &Value) -> reqwest::Response {
    client()
        .post(reports(sim, org, ""))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("generate")
}

async fn get(sim: &SimServer, token: &str, org: &str, id: &str) -> reqwest::Response {
    client()
        .get(reports(sim, org, &format!("/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("get")
}

async fn link(sim: &SimServer, token: &str, org: &str, id: &str) -> reqwest::Response {
    client()
        .post(reports(sim, org, &format!("/{id}/link")))
        .bearer_auth(token)
        .send()
        .await
        .expect("link")
}

#[tokio::test]
async fn a_report_is_generated_polled_linked_and_downloaded_until_the_link_expires() {
    let (sim, token) = started(300, |c| c.url_lifetime_secs = 1).await;
    let created = generate(&sim, &token, ORG, &request("REPORT_TYPE_TRIP_ACTIVITY", START_MS)).await;
    assert_eq!(created.status(), 200);
    let report = body_json(created).await["report"].clone();
    assert_eq!(report["status"], "REPORT_STATUS_IN_PROGRESS");
    assert_eq!(report["orgId"], ORG);
    assert_eq!(report["reportType"], "REPORT_TYPE_TRIP_ACTIVITY");
    assert_eq!(report["startTime"], "2026-10-01T00:00:00.000Z");
    assert_eq!(report["failedReason"], "REPORT_GENERATION_FAILED_REASON_NONE");
    let id = report["id"].as_str().expect("id").to_string();
    assert_eq!(
        link(&sim, &token, ORG, &id).await.status(),
        400,
        "no link before COMPLETED"
    );

    let done = wait_for("COMPLETED", Duration::from_secs(10), || async {
        let r = body_json(get(&sim, &token, ORG, &id).await).await["report"].clone();
        (r["status"] == "REPORT_STATUS_COMPLETED").then_some(r)
    })
    .await;
    assert!(
        done["completedAt"].is_string() && done["updatedAt"].is_string() && done["createdAt"].is_string()
    );
    assert!(done["fileName"].as_str().is_some_and(|n| n.ends_with(".csv")));
    assert_eq!(
        get(&sim, &token, "another-org", &id).await.status(),
        404,
        "reports belong to their organization"
    );

    let answer = body_json(link(&sim, &token, ORG, &id).await).await;
    let url = answer["data"]["signedUrl"]["value"]
        .as_str()
        .expect("signedUrl")
        .to_string();
    let csv = client().get(&url).send().await.expect("download");
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.expect("text");
    assert!(
        csv.starts_with("report,backend,organization,period_start,period_end"),
        "{csv}"
    );
    assert!(
        csv.contains("REPORT_TYPE_TRIP_ACTIVITY")
            && csv.contains(ORG)
            && csv.contains("2026-10-01T00:00:00Z"),
        "{csv}"
    );

    // The URL stops working at its expiry: 403 Access Denied.
    sleep_past(url_expiry(&url)).await;
    let expired = client().get(&url).send().await.expect("download");
    assert_eq!(expired.status(), 403);
    assert!(
        expired
            .text()
            .await
            .expect("text")
            .contains("<Code>AccessDenied</Code>")
    );
    // A new link works again.
    let fresh = body_json(link(&sim, &token, ORG, &id).await).await["data"]["signedUrl"]["value"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(client().get(&fresh).send().await.expect("download").status(), 200);
}

#[tokio::test]
async fn a_seventh_report_in_progress_is_refused_with_429() {
    let sim = start(quick(60_000)).await;
    let token = supplier_token(&sim).await;
    for i in 0..6 {
        let start = (1_790_812_800_000u64 + i * 3_600_000).to_string();
        assert_eq!(
            generate(&sim, &token, ORG, &request("REPORT_TYPE_TRIP_ACTIVITY", &start))
                .await
                .status(),
            200,
            "report {i}"
        );
    }
    let refused = generate(&sim, &token, ORG, &request("REPORT_TYPE_TRIP_ACTIVITY", START_MS)).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        body_json(refused).await,
        json!({"message": "Exceeded rate limit", "code": "rate_limited"})
    );
    // Other organizations have their own six.
    assert_eq!(
        generate(
            &sim,
            &token,
            "another-org",
            &request("REPORT_TYPE_TRIP_ACTIVITY", START_MS)
        )
        .await
        .status(),
        200
    );
    let stats = sim.stats();
    assert_eq!(stats.peak_in_progress(ReportingApi::Supplier, ORG), 6);
    assert_eq!(stats.total_generations(ReportingApi::Supplier), 7);
    assert_eq!(stats.rate_limited(ReportingApi::Supplier), 1);
}

#[tokio::test]
async fn a_slot_frees_when_a_report_finishes() {
    let (sim, token) = started(300, |c| c.max_in_progress = 1).await;
    let first = body_json(generate(&sim, &token, ORG, &request("REPORT_TYPE_A", START_MS)).await).await["report"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        generate(&sim, &token, ORG, &request("REPORT_TYPE_B", START_MS))
            .await
            .status(),
        429
    );
    wait_for("the first report to finish", Duration::from_secs(10), || async {
        let r = body_json(get(&sim, &token, ORG, &first).await).await;
        (r["report"]["status"] != "REPORT_STATUS_IN_PROGRESS").then_some(())
    })
    .await;
    assert_eq!(
        generate(&sim, &token, ORG, &request("REPORT_TYPE_B", START_MS))
            .await
            .status(),
        200
    );
    assert_eq!(sim.stats().peak_in_progress(ReportingApi::Supplier, ORG), 1);
}

#[tokio::test]
async fn each_endpoint_has_its_own_request_window_per_client() {
    let (sim, token) = started(0, |c| c.requests_per_window = 3).await;
    let id = body_json(generate(&sim, &token, ORG, &request("REPORT_TYPE_A", START_MS)).await).await["report"]["id"].as_str().expect("id").to_string();
    for _ in 0..3 {
        assert_eq!(get(&sim, &token, ORG, &id).await.status(), 200);
    }
    let refused = get(&sim, &token, ORG, &id).await;
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((590..=600).contains(&retry), "Retry-After {retry}");
    // The list and link endpoints still have their budgets.
    let list = client()
        .get(reports(&sim, ORG, "?page_size=5"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    assert_eq!(link(&sim, &token, ORG, &id).await.status(), 200);
    assert_eq!(sim.stats().requests_with_status("SUPPLIER", "get", 429), 1);
}

#[tokio::test]
async fn the_token_endpoint_is_limited_and_checks_the_client() {
    let mut config = quick(0);
    config.supplier.token_requests_per_window = 3;
    config.supplier.token_lifetime_secs = 1;
    let sim = start(config).await;
    let http = client();
    let token = |secret: &str, grant: &str| {
        http.post(sim.supplier_token_url())
            .form(&[
                ("grant_type", grant),
                ("client_id", "supplier-client"),
                ("client_secret", secret),
                ("scope", "solutions.suppliers.reports"),
            ])
            .send()
    };
    let wrong = token("wrong", "client_credentials").await.expect("token");
    assert_eq!(wrong.status(), 401);
    assert_eq!(body_json(wrong).await["error"], "invalid_client");
    assert_eq!(
        token("supplier-secret", "password")
            .await
            .expect("token")
            .status(),
        400
    );
    let ok = token("supplier-secret", "client_credentials")
        .await
        .expect("token");
    assert_eq!(ok.status(), 200);
    let answer = body_json(ok).await;
    assert_eq!(
        (answer["expires_in"].as_u64(), answer["token_type"].as_str()),
        (Some(1), Some("Bearer"))
    );
    let access = answer["access_token"].as_str().expect("access_token").to_string();
    let limited = token("supplier-secret", "client_credentials")
        .await
        .expect("token");
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(sim.stats().token_requests(ReportingApi::Supplier), 4);

    let list = || client().get(reports(&sim, ORG, "")).bearer_auth(&access).send();
    assert_eq!(list().await.expect("list").status(), 200);
    let claims = access.split('.').nth(1).expect("claims");
    let raw =
        base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("base64");
    sleep_past(
        serde_json::from_slice::<Value>(&raw).expect("json")["exp"]
            .as_i64()
            .expect("exp"),
    )
    .await;
    let expired = list().await.expect("list");
    assert_eq!(expired.status(), 401);
    assert_eq!(body_json(expired).await["code"], "unauthenticated");
    let garbage = client()
        .get(reports(&sim, ORG, ""))
        .bearer_auth("x.y.z")
        .send()
        .await
        .expect("list");
    assert_eq!(garbage.status(), 401);
}

#[tokio::test]
async fn listings_are_newest_first_and_paginated() {
    let sim = start(quick(0)).await;
    let token = supplier_token(&sim).await;
    let mut ids = Vec::new();
    for t in ["REPORT_TYPE_A", "REPORT_TYPE_B", "REPORT_TYPE_C"] {
        ids.push(
            body_json(generate(&sim, &token, ORG, &request(t, START_MS)).await).await["report"]["id"]
                .as_str()
                .expect("id")
                .to_string(),
        );
    }
    let page = |token_param: String| {
        let url = reports(&sim, ORG, &format!("?page_size=2{token_param}"));
        let access = token.clone();
        async move { body_json(client().get(url).bearer_auth(access).send().await.expect("list")).await }
    };
    let first = page(String::new()).await;
    let got: Vec<&str> = first["report"]
        .as_array()
        .expect("report")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);
    let next = first["paginationResult"]["nextPageToken"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(!next.is_empty());
    let second = page(format!("&page_token={next}")).await;
    assert_eq!(second["report"][0]["id"], ids[0].as_str());
    assert_eq!(second["paginationResult"]["nextPageToken"], "");
}

#[tokio::test]
async fn failures_and_invalid_requests() {
    let sim = start(quick(50)).await;
    let token = supplier_token(&sim).await;
    let id = body_json(
        generate(
            &sim,
            &token,
            ORG,
            &request("REPORT_TYPE_FAIL_ON_PURPOSE", START_MS),
        )
        .await,
    )
    .await["report"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let failed = wait_for("FAILED", Duration::from_secs(10), || async {
        let r = body_json(get(&sim, &token, ORG, &id).await).await["report"].clone();
        (r["status"] == "REPORT_STATUS_FAILED").then_some(r)
    })
    .await;
    assert_ne!(failed["failedReason"], "REPORT_GENERATION_FAILED_REASON_NONE");
    assert_eq!(link(&sim, &token, ORG, &id).await.status(), 400);
    let cases = [
        (
            "no reportType",
            json!({"filters": [{"field": "dateRange", "operator": "OPERATOR_IN_RANGE", "value": [START_MS, END_MS]}]}),
        ),
        (
            "no dateRange",
            json!({"reportType": "REPORT_TYPE_A", "filters": []}),
        ),
        (
            "wrong operator",
            json!({"reportType": "REPORT_TYPE_A", "filters": [{"field": "dateRange", "operator": "OPERATOR_EQUALS", "value": [START_MS, END_MS]}]}),
        ),
        ("end before start", request("REPORT_TYPE_A", "1890812800000")),
        ("not milliseconds", request("REPORT_TYPE_A", "2026-10-01")),
    ];
    for (what, body) in cases {
        let r = generate(&sim, &token, ORG, &body).await;
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(body_json(r).await["code"], "invalid_argument", "{what}");
    }
}
