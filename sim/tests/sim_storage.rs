//! Signed storage URLs: real downloads in each format, tampering and expiry.

mod sim_support;

use std::time::Duration;

use report_sim::ReportingApi;
use report_sim::{ConnectConfig, SimConfig, SimServer};
use serde_json::json;
use sim_support::{body_json, client, cmp_token, quick, sleep_past, start, unzip, url_expiry, wait_for};

/// A completed CMP report's downloadUrl.
async fn cmp_url(sim: &SimServer, name: &str, format: &str) -> String {
    let token = cmp_token(sim).await;
    let base = sim.backend_url(ReportingApi::Cmp);
    let body = json!({"name": name, "format": format, "startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-31T23:59:59Z"});
    let http = client();
    let created = body_json(
        http.post(format!("{base}/reports"))
            .bearer_auth(&token)
            .header("x-subscription-key", "cmp-subscription-key")
            .json(&body)
            .send()
            .await
            .expect("create"),
    )
    .await;
    let id = created["id"].as_str().expect("id").to_string();
    wait_for("downloadUrl", Duration::from_secs(10), || async {
        let r = http
            .get(format!("{base}/reports/{id}"))
            .bearer_auth(&token)
            .header("x-subscription-key", "cmp-subscription-key")
            .send()
            .await
            .ok()?;
        body_json(r).await["downloadUrl"].as_str().map(str::to_string)
    })
    .await
}

async fn fetch(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect("get");
    (r.status().as_u16(), r.text().await.expect("text"))
}

#[tokio::test]
async fn every_format_downloads_with_content_naming_the_report() {
    let sim = start(quick(0)).await;
    let xlsx = cmp_url(&sim, "Monthly usage", "xlsx").await;
    let response = client().get(&xlsx).send().await.expect("get");
    assert_eq!(
        response.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let entries = unzip(&response.bytes().await.expect("bytes"));
    let sheet = entries
        .iter()
        .find(|(n, _)| n == "xl/worksheets/sheet1.xml")
        .expect("a worksheet");
    let sheet = String::from_utf8_lossy(&sheet.1);
    assert!(
        sheet.contains("Monthly usage") && sheet.contains("2026-10-31T23:59:59Z"),
        "{sheet}"
    );
    assert!(entries.iter().any(|(n, _)| n == "[Content_Types].xml"));

    let (status, xml) = fetch(&cmp_url(&sim, "Monthly usage", "xml").await).await;
    assert_eq!(status, 200);
    assert!(
        xml.starts_with("<?xml")
            && xml.contains("name=\"Monthly usage\"")
            && xml.contains("periodEnd=\"2026-10-31T23:59:59Z\""),
        "{xml}"
    );
    let (_, json_text) = fetch(&cmp_url(&sim, "Monthly usage", "json").await).await;
    let doc: serde_json::Value = serde_json::from_str(&json_text).expect("json");
    assert_eq!(doc["periodStart"], "2026-10-01T00:00:00Z");
    assert_eq!(doc["backend"], "CMP");
    let (_, csv) = fetch(&cmp_url(&sim, "Monthly usage", "csv").await).await;
    assert_eq!(csv.lines().count(), 4, "header and three rows: {csv}");
    // The same report content on every download.
    let (_, again) = fetch(&cmp_url(&sim, "Monthly usage", "csv").await).await;
    assert_eq!(csv, again);
    assert_eq!(sim.stats().requests_with_status("STORAGE", "download", 200), 5);
}

#[tokio::test]
async fn a_changed_url_is_refused() {
    let sim = start(quick(0)).await;
    let url = cmp_url(&sim, "Monthly usage", "json").await;
    assert_eq!(fetch(&url).await.0, 200);
    let parsed = url::Url::parse(&url).expect("url");
    let sig = parsed
        .query_pairs()
        .find(|(k, _)| k == "sig")
        .expect("sig")
        .1
        .to_string();
    let expires = url_expiry(&url).to_string();
    let cases = [
        ("another file", url.replace(".json?", "x.json?")),
        (
            "a later expiry",
            url.replace(
                &format!("expires={expires}"),
                &format!("expires={}", url_expiry(&url) + 3600),
            ),
        ),
        ("another signature", url.replace(&sig, "AAAA")),
        ("no signature", url.replace(&format!("&sig={sig}"), "")),
    ];
    for (what, changed) in cases {
        assert_ne!(changed, url, "{what}");
        let (status, body) = fetch(&changed).await;
        assert_eq!(status, 403, "{what}");
        assert!(body.contains("<Error><Code>"), "{what}: {body}");
    }
    assert!(
        fetch(&url.replace(&sig, "AAAA"))
            .await
            .1
            .contains("SignatureDoesNotMatch")
    );
}

#[tokio::test]
async fn a_url_stops_working_at_its_expiry() {
    let config = SimConfig {
        connect: ConnectConfig {
            url_lifetime_secs: 1,
            ..quick(0).connect
        },
        ..quick(0)
    };
    let sim = start(config).await;
    let http = client();
    let base = sim.backend_url(ReportingApi::Connect);
    let key = "ApiKey SU-000-000-000:connect-secret-key";
    let created = http
        .post(format!("{base}/reporting/reports"))
        .header("authorization", key)
        .json(&json!({"template": {"id": "RT-0000-0001"}, "renderer": "json", "parameters": {}}))
        .send()
        .await
        .expect("create");
    let id = body_json(created).await["id"].as_str().expect("id").to_string();
    let redirect = http
        .get(format!("{base}/reporting/reports/{id}/download"))
        .header("authorization", key)
        .send()
        .await
        .expect("download");
    let location = redirect.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(fetch(&location).await.0, 200);
    sleep_past(url_expiry(&location)).await;
    let (status, body) = fetch(&location).await;
    assert_eq!(status, 403);
    assert!(
        body.contains("<Code>AccessDenied</Code>") && body.contains("expired"),
        "{body}"
    );
}
