//! The CONNECT simulator over HTTP: reports from templates, RQL listings with Content-Range,
//! the ZIP download behind a redirect, schedules.

mod sim_support;

use std::time::Duration;

use report_sim::ReportingApi;
use report_sim::SimServer;
use serde_json::{Value, json};
use sim_support::{body_json, client, quick, start, unzip, wait_for};

const KEY: &str = "ApiKey SU-000-000-000:connect-secret-key";

fn url(sim: &SimServer, path: &str) -> String {
    format!("{}{path}", sim.backend_url(ReportingApi::Connect))
}

async fn create(sim: &SimServer, name: &str, renderer: &str) -> reqwest::Response {
    client()
        .post(url(sim, "/reporting/reports"))
        .header("authorization", KEY)
        .json(&json!({
            "template": {"id": "RT-0000-0001"},
            "renderer": renderer,
            "parameters": {"date": {"after": "2026-10-01T00:00:00Z", "before": "2026-10-02T23:59:59Z"}},
            "name": name,
        }))
        .send()
        .await
        .expect("create")
}

async fn get(sim: &SimServer, path: &str) -> reqwest::Response {
    client()
        .get(url(sim, path))
        .header("authorization", KEY)
        .send()
        .await
        .expect("get")
}

#[tokio::test]
async fn a_report_succeeds_and_its_download_redirects_to_a_zip() {
    let sim = start(quick(800)).await;
    let created = create(&sim, "Monthly usage [ns/once]", "csv").await;
    assert_eq!(created.status(), 201);
    let report = body_json(created).await;
    assert_eq!(report["status"], "pending");
    assert_eq!(report["template"]["id"], "RT-0000-0001");
    assert_eq!(report["renderer"], "csv");
    assert_eq!(report["progress"]["max"], 100);
    assert!(report["stats"]["created"].is_string());
    let id = report["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("RP-"), "{id}");

    let early = get(&sim, &format!("/reporting/reports/{id}/download")).await;
    assert_eq!(early.status(), 400, "not ready yet");
    assert!(body_json(early).await["error_code"].is_string());

    let statuses = std::cell::RefCell::new(Vec::new());
    let done = wait_for("succeeded", Duration::from_secs(10), || async {
        let r = body_json(get(&sim, &format!("/reporting/reports/{id}")).await).await;
        statuses
            .borrow_mut()
            .push(r["status"].as_str().unwrap_or_default().to_string());
        (r["status"] == "succeeded").then_some(r)
    })
    .await;
    assert!(
        statuses.borrow().iter().any(|s| s == "processing"),
        "{statuses:?}"
    );
    assert_eq!(done["progress"]["value"], 100);
    assert!(done["stats"]["started"].is_string() && done["stats"]["terminated"].is_string());

    let redirect = get(&sim, &format!("/reporting/reports/{id}/download")).await;
    assert_eq!(redirect.status(), 302);
    let location = redirect.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(
        location.starts_with(&format!("{}/storage/", sim.base_url())),
        "{location}"
    );
    let zip = client().get(&location).send().await.expect("download");
    assert_eq!(zip.status(), 200);
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let entries = unzip(&zip.bytes().await.expect("bytes"));
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["report.csv", "summary.json"]);
    let csv = String::from_utf8(entries[0].1.clone()).expect("utf8");
    assert!(
        csv.contains("Monthly usage [ns/once]") && csv.contains("2026-10-01T00:00:00Z"),
        "{csv}"
    );
    let summary: Value = serde_json::from_slice(&entries[1].1).expect("summary");
    assert_eq!(summary["template"]["id"], "RT-0000-0001");
}

#[tokio::test]
async fn listings_filter_by_rql_and_page_with_content_range() {
    let sim = start(quick(0)).await;
    for i in 0..5 {
        assert_eq!(create(&sim, &format!("Report {i}"), "json").await.status(), 201);
    }
    let all = get(&sim, "/reporting/reports?limit=2&offset=1").await;
    assert_eq!(all.headers()["content-range"], "items 1-2/5");
    let page = body_json(all).await;
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    assert_eq!(page[0]["name"], "Report 3", "newest first: {page}");
    let named = body_json(get(&sim, "/reporting/reports?eq(name,Report%202)").await).await;
    assert_eq!(named.as_array().map(Vec::len), Some(1), "{named}");
    assert_eq!(named[0]["name"], "Report 2");
    // As django-rql pages (Connect): always `first-last/total`; limit=0 is the total alone; a
    // limit or offset that is not a number is the default.
    for (query, range) in [
        ("and(eq(status,failed),eq(renderer,json))", "items 0-0/0"),
        ("limit=0", "items 0-0/5"),
        ("limit=2&offset=7", "items 7-7/5"),
        ("limit=x&offset=y", "items 0-4/5"),
    ] {
        let answer = get(&sim, &format!("/reporting/reports?{query}")).await;
        assert_eq!(answer.headers()["content-range"], range, "{query}");
        if query == "limit=0" {
            assert_eq!(body_json(answer).await, json!([]), "no reports with the total");
        }
    }
    let twice = get(&sim, "/reporting/reports?limit=1&limit=2").await;
    assert_eq!(twice.status(), 400, "limit given twice");
    assert_eq!(get(&sim, "/reporting/reports?bogus(1)").await.status(), 400);
}

#[tokio::test]
async fn api_keys_are_checked_and_errors_have_connects_shape() {
    let sim = start(quick(0)).await;
    let http = client();
    let none = http
        .get(url(&sim, "/reporting/reports"))
        .send()
        .await
        .expect("send");
    assert_eq!(none.status(), 401);
    let wrong = http
        .get(url(&sim, "/reporting/reports"))
        .header("authorization", "ApiKey SU-000-000-000:wrong")
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let body = body_json(wrong).await;
    assert_eq!(body["error_code"], "AUTH_001");
    assert!(body["errors"].as_array().is_some_and(|e| !e.is_empty()));
    let bad = client()
        .post(url(&sim, "/reporting/reports"))
        .header("authorization", KEY)
        .json(&json!({"template": {"id": "RT-1"}, "renderer": "xml"}))
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400, "Connect renders json, csv and xlsx only");
    assert_eq!(
        get(&sim, "/reporting/reports/RP-9999-9999-9999").await.status(),
        404
    );
    assert_eq!(sim.stats().total_generations(ReportingApi::Connect), 0);
}

#[tokio::test]
async fn a_report_named_fail_ends_failed_with_a_reason() {
    let sim = start(quick(50)).await;
    let id = body_json(create(&sim, "FAIL on purpose", "xlsx").await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let failed = wait_for("failed", Duration::from_secs(10), || async {
        let r = body_json(get(&sim, &format!("/reporting/reports/{id}")).await).await;
        (r["status"] == "failed").then_some(r)
    })
    .await;
    assert!(failed["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(
        get(&sim, &format!("/reporting/reports/{id}/download"))
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn schedules_are_listed_and_read() {
    let sim = start(quick(0)).await;
    let list = get(&sim, "/reporting/schedules").await;
    assert_eq!(list.status(), 200);
    assert_eq!(list.headers()["content-range"], "items 0-1/2");
    let list = body_json(list).await;
    let triggers: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["trigger"]["type"].as_str())
        .collect();
    assert_eq!(triggers, ["daily", "monthly"]);
    let one = body_json(get(&sim, "/reporting/schedules/RS-0000-0002").await).await;
    assert_eq!(one["status"], "disabled");
    let enabled = body_json(get(&sim, "/reporting/schedules?eq(status,enabled)").await).await;
    assert_eq!(enabled.as_array().map(Vec::len), Some(1));
    assert_eq!(get(&sim, "/reporting/schedules/RS-404").await.status(), 404);
}

async fn delete(sim: &SimServer, id: &str) -> reqwest::Response {
    client()
        .delete(url(sim, &format!("/reporting/reports/{id}")))
        .header("authorization", KEY)
        .send()
        .await
        .expect("delete")
}

#[tokio::test]
async fn ready_reports_can_be_removed_and_failed_or_running_ones_cannot() {
    let sim = start(quick(800)).await;
    let running = body_json(create(&sim, "Running", "csv").await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let refused = delete(&sim, &running).await;
    assert_eq!(refused.status(), 400, "a report being made cannot be removed");
    assert_eq!(body_json(refused).await["error_code"], "REP_003");
    let failed = body_json(create(&sim, "FAIL on purpose", "csv").await).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    wait_for("both finished", Duration::from_secs(10), || async {
        let a = body_json(get(&sim, &format!("/reporting/reports/{running}")).await).await;
        let b = body_json(get(&sim, &format!("/reporting/reports/{failed}")).await).await;
        (a["status"] == "succeeded" && b["status"] == "failed").then_some(())
    })
    .await;
    assert_eq!(
        delete(&sim, &failed).await.status(),
        400,
        "failed is terminal: no further actions"
    );
    let location = get(&sim, &format!("/reporting/reports/{running}/download"))
        .await
        .headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(delete(&sim, &running).await.status(), 204);
    assert_eq!(
        get(&sim, &format!("/reporting/reports/{running}")).await.status(),
        404
    );
    assert_eq!(delete(&sim, &running).await.status(), 404, "gone");
    assert_eq!(
        client().get(&location).send().await.expect("download").status(),
        404,
        "its file is gone too"
    );
}

#[tokio::test]
async fn a_template_reads_its_window_from_its_own_date_parameter() {
    let mut config = quick(0);
    config
        .connect
        .date_parameters
        .insert("RT-0000-0042".into(), "period".into());
    let sim = start(config).await;
    let window = json!({"after": "2026-10-01T00:00:00Z", "before": "2026-10-02T23:59:59Z"});
    let mut ids = Vec::new();
    for params in [json!({"period": window}), json!({"date": window})] {
        let created = client()
            .post(url(&sim, "/reporting/reports"))
            .header("authorization", KEY)
            .json(&json!({"template": {"id": "RT-0000-0042"}, "renderer": "json", "parameters": params, "name": "Sales"}))
            .send()
            .await
            .expect("create");
        ids.push(body_json(created).await["id"].as_str().expect("id").to_string());
    }
    let mut starts = Vec::new();
    for id in &ids {
        let location = wait_for("a download", Duration::from_secs(10), || async {
            let r = get(&sim, &format!("/reporting/reports/{id}/download")).await;
            (r.status() == 302).then(|| r.headers()["location"].to_str().expect("location").to_string())
        })
        .await;
        let entries = unzip(
            &client()
                .get(&location)
                .send()
                .await
                .expect("download")
                .bytes()
                .await
                .expect("bytes"),
        );
        let report: Value = serde_json::from_slice(&entries[0].1).expect("report.json");
        starts.push(report["periodStart"].clone());
    }
    assert_eq!(
        starts,
        [json!("2026-10-01T00:00:00Z"), json!("")],
        "only the template's own parameter is its window"
    );
}
