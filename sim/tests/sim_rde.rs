//! The RDE simulator over HTTP: APS resources, report files, RQL, OAuth 1.0a, the platform's
//! periodic task and invoices.

mod sim_support;

use std::time::Duration;

use report_sim::ReportingApi;
use reqwest::Method;
use serde_json::{Value, json};
use sim_support::{Rde, body_json, client, gunzip, oauth, quick, start, wait_for};

const TYPE: &str = "http://www.odin.com/rde/report-template/1.1";

fn onetime(name: &str) -> Value {
    json!({
        "aps": {"type": TYPE},
        "commonName": name,
        "eventType": "ONETIME",
        "format": "JSON",
        "notifyByEmail": false,
        "parameters": {"startDate": "2018-10-09T00:00:00Z", "endDate": "2018-10-10T23:59:59Z"},
    })
}

async fn files_of(rde: &Rde, template: &str) -> Vec<Value> {
    let response = rde.get(&format!("/aps/2/resources/{template}/reportFiles")).await;
    assert_eq!(response.status(), 200);
    body_json(response).await.as_array().expect("array").clone()
}

#[tokio::test]
async fn onetime_template_gets_one_report_file_that_becomes_ready_and_downloads() {
    let sim = start(quick(400)).await;
    let rde = Rde::new(&sim);
    let response = rde.create(onetime("NW Finance")).await;
    assert_eq!(response.status(), 202);
    let template = body_json(response).await;
    assert_eq!(template["aps"]["status"], "aps:provisioning");
    assert_eq!(template["aps"]["type"], TYPE);
    assert_eq!(template["commonName"], "NW Finance");
    assert_eq!(template["eventType"], "ONETIME");
    assert!(template["reportApsActorId"].is_string() && template["tenant"]["aps"]["id"].is_string());
    let id = template["aps"]["id"].as_str().expect("id").to_string();
    assert_eq!(
        template["reportFiles"]["aps"]["href"],
        format!("/aps/2/resources/{id}/reportFiles")
    );
    assert!(sim.rde_template_exists(&id));

    let first = files_of(&rde, &id).await;
    assert_eq!(first.len(), 1);
    assert!(
        ["PENDING", "IN_PROGRESS"].contains(&first[0]["status"].as_str().unwrap_or_default()),
        "{first:?}"
    );
    assert!(first[0].get("filePath").is_none());
    assert_eq!(first[0]["parameters"]["startDate"], "2018-10-09T00:00:00Z");
    assert!(first[0]["generateDate"].is_string());

    let file = wait_for("READY", Duration::from_secs(10), || async {
        let files = files_of(&rde, &id).await;
        (files[0]["status"] == "READY").then(|| files[0].clone())
    })
    .await;
    assert_eq!(file["aps"]["status"], "aps:ready");
    assert!(
        file["tmpPath"].as_str().is_some_and(|p| p.ends_with(".json.gz")),
        "{file}"
    );
    // The file by its own APS id.
    let file_id = file["aps"]["id"].as_str().expect("file id");
    let single = body_json(rde.get(&format!("/aps/2/resources/{file_id}")).await).await;
    assert_eq!(single["status"], "READY");
    assert!(
        single["aps"]["type"]
            .as_str()
            .is_some_and(|t| t.contains("report-file"))
    );
    // The template is provisioned by now.
    let again = body_json(rde.get(&format!("/aps/2/resources/{id}")).await).await;
    assert_eq!(again["aps"]["status"], "aps:ready");

    let url = file["filePath"].as_str().expect("filePath");
    let download = client().get(url).send().await.expect("download");
    assert_eq!(download.status(), 200);
    let text = gunzip(&download.bytes().await.expect("bytes"));
    assert!(text.contains("\"report\": \"NW Finance\""), "{text}");
    assert!(
        text.contains("2018-10-09T00:00:00Z") && text.contains("2018-10-10T23:59:59Z"),
        "{text}"
    );
    assert_eq!(sim.stats().total_generations(ReportingApi::Rde), 1);
}

#[tokio::test]
async fn templates_are_found_by_rql_and_deleted() {
    let sim = start(quick(100)).await;
    let rde = Rde::new(&sim);
    for name in ["NW Finance", "Other"] {
        assert_eq!(rde.create(onetime(name)).await.status(), 202);
    }
    let found = rde
        .get(&format!(
            "/aps/2/resources?implementing({TYPE}),eq(commonName,NW%20Finance)"
        ))
        .await;
    assert_eq!(found.status(), 200);
    let found = body_json(found).await;
    let found = found.as_array().expect("array");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["commonName"], "NW Finance");
    let id = found[0]["aps"]["id"].as_str().expect("id").to_string();

    let page = rde
        .get(&format!("/aps/2/resources?implementing({TYPE}),limit(0,1)"))
        .await;
    assert_eq!(page.headers()["content-range"], "items 0-0/2");
    assert_eq!(body_json(page).await.as_array().map(Vec::len), Some(1));
    assert_eq!(rde.get("/aps/2/resources?frobnicate(x)").await.status(), 400);

    let deleted = rde
        .request(Method::DELETE, &format!("/aps/2/resources/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert!(!sim.rde_template_exists(&id));
    let gone = rde.get(&format!("/aps/2/resources/{id}")).await;
    assert_eq!(gone.status(), 404);
    assert_eq!(body_json(gone).await["code"], 404);
    let again = rde
        .request(Method::DELETE, &format!("/aps/2/resources/{id}"))
        .send()
        .await
        .expect("delete");
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn oauth_signatures_are_verified() {
    let sim = start(quick(100)).await;
    let rde = Rde::new(&sim);
    let url = format!(
        "{}/aps/2/resources?implementing({TYPE})",
        sim.backend_url(ReportingApi::Rde)
    );
    let send = |header: Option<String>| {
        let mut request = client().get(&url);
        if let Some(h) = header {
            request = request.header("authorization", h);
        }
        request.send()
    };
    assert_eq!(
        send(Some(oauth("GET", &url, &rde.key, &rde.secret, None)))
            .await
            .expect("send")
            .status(),
        200
    );
    let cases = [
        ("no header", None),
        (
            "bad signature",
            Some(oauth("GET", &url, &rde.key, "wrong-secret", None)),
        ),
        (
            "unknown key",
            Some(oauth("GET", &url, "someone-else", &rde.secret, None)),
        ),
        (
            "stale timestamp",
            Some(oauth("GET", &url, &rde.key, &rde.secret, Some(1_000_000_000))),
        ),
        (
            "signed for another method",
            Some(oauth("POST", &url, &rde.key, &rde.secret, None)),
        ),
        (
            "signed for another query",
            Some(oauth(
                "GET",
                &format!("{url},eq(commonName,x)"),
                &rde.key,
                &rde.secret,
                None,
            )),
        ),
    ];
    for (what, header) in cases {
        let response = send(header).await.expect("send");
        assert_eq!(response.status(), 401, "{what}");
        assert!(response.headers().contains_key("www-authenticate"), "{what}");
        let body = body_json(response).await;
        assert_eq!(body["code"], 401, "{what}: {body}");
        assert!(body["message"].is_string(), "{what}: {body}");
    }
    // A replayed request (same nonce and timestamp) is refused.
    let header = oauth("GET", &url, &rde.key, &rde.secret, None);
    assert_eq!(send(Some(header.clone())).await.expect("send").status(), 200);
    assert_eq!(send(Some(header)).await.expect("send").status(), 401);
    assert_eq!(sim.stats().requests_with_status("RDE", "lookup", 401), 7);
}

#[tokio::test]
async fn a_retried_create_makes_a_second_template() {
    let sim = start(quick(100)).await;
    let rde = Rde::new(&sim);
    let a = body_json(rde.create(onetime("NW Finance")).await).await;
    let b = body_json(rde.create(onetime("NW Finance")).await).await;
    assert_ne!(a["aps"]["id"], b["aps"]["id"]);
    let stats = sim.stats();
    assert_eq!(stats.total_generations(ReportingApi::Rde), 2);
    assert_eq!(stats.max_duplicates(ReportingApi::Rde), 2, "{stats:?}");
}

#[tokio::test]
async fn periodic_templates_report_the_previous_period_when_the_task_runs() {
    let sim = start(quick(0)).await;
    let rde = Rde::new(&sim);
    let daily = json!({"aps": {"type": TYPE}, "commonName": "Daily", "eventType": "PERIODIC", "format": "CSV", "parameters": {"period": "P1D"}});
    let created = body_json(rde.create(daily).await).await;
    assert!(
        created["nextReportDate"]
            .as_str()
            .is_some_and(|d| d.ends_with("T00:00:00Z")),
        "{created}"
    );
    let id = created["aps"]["id"].as_str().expect("id").to_string();
    assert!(
        files_of(&rde, &id).await.is_empty(),
        "no file before the task runs"
    );

    // Over HTTP, as on 2018-10-09 (seed 000's example).
    let run = client()
        .post(format!("{}/_sim/rde/templates/{id}/run", sim.base_url()))
        .json(&json!({"at": "2018-10-09T10:21:25Z"}))
        .send()
        .await
        .expect("run");
    assert_eq!(run.status(), 201);
    let file = body_json(run).await;
    assert_eq!(
        file["parameters"],
        json!({"period": "P1D", "startDate": "2018-10-08T00:00:00Z", "endDate": "2018-10-08T23:59:59Z"})
    );
    assert_eq!(file["eventType"], "PERIODIC");
    let template = body_json(rde.get(&format!("/aps/2/resources/{id}")).await).await;
    assert_eq!(template["nextReportDate"], "2018-10-10T00:00:00Z");
    assert_eq!(template["lastReportDate"], "2018-10-09T10:21:25Z");

    // From Rust, a monthly template.
    let monthly = json!({"aps": {"type": TYPE}, "commonName": "Monthly", "eventType": "PERIODIC", "format": "XML", "parameters": {"period": "P1M"}});
    let monthly = body_json(rde.create(monthly).await).await["aps"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let at = chrono::DateTime::parse_from_rfc3339("2024-03-01T01:00:00Z")
        .expect("time")
        .to_utc();
    let file_id = sim.rde_run_template(&monthly, Some(at)).expect("run");
    let file = body_json(rde.get(&format!("/aps/2/resources/{file_id}")).await).await;
    assert_eq!(file["parameters"]["startDate"], "2024-02-01T00:00:00Z");
    assert_eq!(file["parameters"]["endDate"], "2024-02-29T23:59:59Z");
    let xml = gunzip(
        &client()
            .get(file["filePath"].as_str().expect("filePath"))
            .send()
            .await
            .expect("get")
            .bytes()
            .await
            .expect("body"),
    );
    assert!(
        xml.starts_with("<?xml") && xml.contains("periodStart=\"2024-02-01T00:00:00Z\""),
        "{xml}"
    );
    // Only PERIODIC templates have a periodic task.
    let once = body_json(rde.create(onetime("Once")).await).await["aps"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(sim.rde_run_template(&once, None).is_err());
    let unknown = client()
        .post(format!("{}/_sim/rde/templates/nope/run", sim.base_url()))
        .send()
        .await
        .expect("run");
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn each_invoice_gives_every_on_invoice_template_a_report_file() {
    let sim = start(quick(0)).await;
    let rde = Rde::new(&sim);
    let body =
        json!({"aps": {"type": TYPE}, "commonName": "Invoices", "eventType": "ON_INVOICE", "format": "XLSX"});
    let id = body_json(rde.create(body).await).await["aps"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    rde.create(onetime("Unrelated")).await;
    assert_eq!(sim.rde_invoice().len(), 1);
    let answer = client()
        .post(format!("{}/_sim/rde/invoice", sim.base_url()))
        .send()
        .await
        .expect("invoice");
    assert_eq!(answer.status(), 201);
    assert_eq!(body_json(answer).await["files"].as_array().map(Vec::len), Some(1));
    let files = files_of(&rde, &id).await;
    assert_eq!(files.len(), 2);
    assert!(
        files
            .iter()
            .all(|f| f["eventType"] == "ON_INVOICE" && f["status"] == "READY"),
        "{files:?}"
    );
    // XLSX is a real workbook.
    let bytes = client()
        .get(files[0]["filePath"].as_str().expect("filePath"))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    let entries = sim_support::unzip(&bytes);
    assert!(
        entries.iter().any(|(name, _)| name == "xl/worksheets/sheet1.xml"),
        "{:?}",
        entries.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_template_named_fail_gets_a_failed_report_file() {
    let sim = start(quick(50)).await;
    let rde = Rde::new(&sim);
    let id = body_json(rde.create(onetime("FAIL on purpose")).await).await["aps"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let file = wait_for("FAILED", Duration::from_secs(10), || async {
        let files = files_of(&rde, &id).await;
        (files[0]["status"] == "FAILED").then(|| files[0].clone())
    })
    .await;
    assert!(file.get("filePath").is_none());
    assert!(file["failedReason"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn invalid_templates_are_refused() {
    let sim = start(quick(0)).await;
    let rde = Rde::new(&sim);
    let cases = [
        (
            "unknown type",
            json!({"aps": {"type": "http://x/other/1.0"}, "commonName": "a", "eventType": "ON_INVOICE", "format": "JSON"}),
        ),
        (
            "no name",
            json!({"aps": {"type": TYPE}, "eventType": "ON_INVOICE", "format": "JSON"}),
        ),
        (
            "bad format",
            json!({"aps": {"type": TYPE}, "commonName": "a", "eventType": "ON_INVOICE", "format": "PDF"}),
        ),
        (
            "bad event",
            json!({"aps": {"type": TYPE}, "commonName": "a", "eventType": "HOURLY", "format": "JSON"}),
        ),
        (
            "onetime without dates",
            json!({"aps": {"type": TYPE}, "commonName": "a", "eventType": "ONETIME", "format": "JSON"}),
        ),
        (
            "periodic P1W",
            json!({"aps": {"type": TYPE}, "commonName": "a", "eventType": "PERIODIC", "format": "JSON", "parameters": {"period": "P1W"}}),
        ),
    ];
    for (what, body) in cases {
        let response = rde.create(body).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(body_json(response).await["code"], 400, "{what}");
    }
    assert_eq!(sim.stats().total_generations(ReportingApi::Rde), 0);
}
