//! The CMP simulator over HTTP: token, reports, quotas, invoice reports.

mod sim_support;

use std::time::Duration;

use report_sim::ReportingApi;
use report_sim::{CmpConfig, SimConfig};
use serde_json::{Value, json};
use sim_support::{body_json, client, cmp_token, quick, sleep_past, start, wait_for};

const KEY: &str = "cmp-subscription-key";

fn report_body(name: &str, format: &str) -> Value {
    json!({
        "name": name,
        "customizationName": "string",
        "format": format,
        "startDate": "2026-10-01T00:00:00.000Z",
        "endDate": "2026-10-02T23:59:59.000Z",
    })
}

/// CMP's two credentials on a request.
trait CmpAuth {
    fn cmp_auth(self, token: impl std::fmt::Display) -> Self;
}

impl CmpAuth for reqwest::RequestBuilder {
    fn cmp_auth(self, token: impl std::fmt::Display) -> Self {
        self.bearer_auth(token).header("x-subscription-key", KEY)
    }
}

async fn create(sim: &report_sim::SimServer, token: &str, body: &Value) -> reqwest::Response {
    client()
        .post(api(sim, "/reports"))
        .cmp_auth(token)
        .json(body)
        .send()
        .await
        .expect("create")
}

fn api(sim: &report_sim::SimServer, path: &str) -> String {
    format!("{}{path}", sim.backend_url(ReportingApi::Cmp))
}

#[tokio::test]
async fn a_onetime_report_is_submitted_completed_listed_and_downloadable() {
    let sim = start(quick(800)).await;
    let token = cmp_token(&sim).await;
    let http = client();
    let created = create(&sim, &token, &report_body("Daily report", "json")).await;
    assert_eq!(created.status(), 200);
    assert!(created.headers().contains_key("x-correlation-id"));
    let report = body_json(created).await;
    assert_eq!(report["status"], "submitted");
    assert_eq!(report["type"], "onetime");
    assert_eq!(report["format"], "json");
    assert_eq!(report["customizationName"], "string");
    assert_eq!(report["startDate"], "2026-10-01T00:00:00.000Z");
    assert!(report.get("downloadUrl").is_none());
    let id = report["id"].as_str().expect("id").to_string();

    let get = |id: String| {
        let (http, token, url) = (http.clone(), token.clone(), api(&sim, &format!("/reports/{id}")));
        async move {
            let r = http.get(url).cmp_auth(token).send().await.expect("get");
            body_json(r).await
        }
    };
    let seen = std::cell::RefCell::new(Vec::new());
    let done = wait_for("completed", Duration::from_secs(10), || async {
        let r = get(id.clone()).await;
        seen.borrow_mut()
            .push(r["status"].as_str().unwrap_or_default().to_string());
        (r["status"] == "completed").then_some(r)
    })
    .await;
    assert!(seen.borrow().iter().any(|s| s == "processing"), "{seen:?}");
    let url = done["downloadUrl"].as_str().expect("downloadUrl");
    let parsed = url::Url::parse(url).expect("url");
    let se = parsed
        .query_pairs()
        .find(|(k, _)| k == "se")
        .expect("se")
        .1
        .to_string();
    let expires = chrono::DateTime::parse_from_rfc3339(&se).expect("se is RFC 3339");
    assert!(
        expires > chrono::Utc::now() + chrono::Duration::days(89),
        "about 90 days: {se}"
    );
    let text = client()
        .get(url)
        .send()
        .await
        .expect("download")
        .text()
        .await
        .expect("text");
    assert!(
        text.contains("Daily report") && text.contains("2026-10-01T00:00:00Z"),
        "{text}"
    );

    let list = http
        .get(api(&sim, "/reports"))
        .query(&[
            ("from", chrono::Utc::now().format("%Y-%m-%d").to_string()),
            ("to", chrono::Utc::now().format("%Y-%m-%d").to_string()),
        ])
        .cmp_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    let list = body_json(list).await;
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["pagination"], json!({"offset": 0, "limit": 1, "total": 1}));
    let filtered = http
        .get(api(&sim, "/reports?from=2000-01-01&to=2100-01-01&format=xlsx"))
        .cmp_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(body_json(filtered).await["pagination"]["total"], 0);
    let missing = http
        .get(api(&sim, "/reports"))
        .cmp_auth(&token)
        .send()
        .await
        .expect("list");
    assert_eq!(missing.status(), 400, "from and to are required");
    assert_eq!(sim.stats().token_requests(ReportingApi::Cmp), 1);
}

#[tokio::test]
async fn each_credential_is_checked() {
    let config = SimConfig {
        cmp: CmpConfig {
            token_lifetime_secs: 1,
            ..quick(0).cmp
        },
        ..quick(0)
    };
    let sim = start(config).await;
    let http = client();
    let token_with = |user: &str, key: Option<&str>| {
        let mut r = http
            .post(api(&sim, "/token"))
            .basic_auth(user, Some("cmp-password"))
            .json(&json!({"marketplace": "us"}));
        if let Some(k) = key {
            r = r.header("x-subscription-key", k);
        }
        r.send()
    };
    let missing_key = token_with("cmp-user", None).await.expect("token");
    assert_eq!(missing_key.status(), 401);
    assert!(
        body_json(missing_key).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("missing subscription key"))
    );
    assert_eq!(
        token_with("cmp-user", Some("wrong"))
            .await
            .expect("token")
            .status(),
        401
    );
    assert_eq!(
        token_with("intruder", Some(KEY)).await.expect("token").status(),
        401
    );
    let ok = token_with("cmp-user", Some(KEY)).await.expect("token");
    assert_eq!(ok.status(), 200);
    let answer = body_json(ok).await;
    assert_eq!(answer["expiresInSeconds"], 1);
    let token = answer["token"].as_str().expect("token").to_string();
    assert_eq!(token.split('.').count(), 3, "JWT-shaped");

    let list = |token: Option<String>, key: &str| {
        let mut r = http
            .get(api(&sim, "/reports?from=2026-01-01&to=2026-01-02"))
            .header("x-subscription-key", key);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(list(Some(token.clone()), KEY).await.expect("list").status(), 200);
    assert_eq!(list(None, KEY).await.expect("list").status(), 401);
    assert_eq!(
        list(Some("not-a-token".into()), KEY)
            .await
            .expect("list")
            .status(),
        401
    );
    assert_eq!(
        list(Some(token.clone()), "wrong").await.expect("list").status(),
        401
    );
    // The token expires after expiresInSeconds.
    let claims = token.split('.').nth(1).expect("claims");
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, claims).expect("b64"),
    )
    .expect("json");
    sleep_past(claims["exp"].as_i64().expect("exp")).await;
    let expired = list(Some(token), KEY).await.expect("list");
    assert_eq!(expired.status(), 401);
    assert!(expired.headers().contains_key("x-correlation-id"));
    assert!(
        body_json(expired).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired"))
    );
}

#[tokio::test]
async fn the_per_minute_quota_answers_429_with_retry_after() {
    let config = SimConfig {
        cmp: CmpConfig {
            requests_per_minute: 3,
            ..quick(0).cmp
        },
        ..quick(0)
    };
    let sim = start(config).await;
    let token = cmp_token(&sim).await; // 1 of 3
    let http = client();
    let list = || {
        http.get(api(&sim, "/reports?from=2026-01-01&to=2026-01-02"))
            .cmp_auth(&token)
            .send()
    };
    assert_eq!(list().await.expect("list").status(), 200);
    assert_eq!(list().await.expect("list").status(), 200);
    let refused = list().await.expect("list");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((55..=60).contains(&retry), "Retry-After {retry}");
    assert!(
        body_json(refused).await["message"]
            .as_str()
            .is_some_and(|m| m.contains("Rate limit is exceeded"))
    );
    assert_eq!(sim.stats().rate_limited(ReportingApi::Cmp), 1);
}

#[tokio::test]
async fn the_daily_quota_holds_too() {
    let config = SimConfig {
        cmp: report_sim::CmpConfig {
            requests_per_minute: 100,
            requests_per_day: 2,
            ..Default::default()
        },
        ..quick(0)
    };
    let sim = start(config).await;
    let token = cmp_token(&sim).await;
    let http = client();
    let list = || {
        http.get(api(&sim, "/reports?from=2026-01-01&to=2026-01-02"))
            .cmp_auth(&token)
            .send()
    };
    assert_eq!(list().await.expect("list").status(), 200);
    let refused = list().await.expect("list");
    assert_eq!(refused.status(), 429);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry > 86_000, "Retry-After {retry}");
}

#[tokio::test]
async fn invoice_reports_are_listed_by_type_and_fail_reports_end_in_error() {
    let sim = start(quick(50)).await;
    let token = cmp_token(&sim).await;
    let http = client();
    let made = client()
        .post(format!("{}/_sim/cmp/invoice", sim.base_url()))
        .json(&json!({"name": "NW Finance"}))
        .send()
        .await
        .expect("invoice");
    assert_eq!(made.status(), 201);
    let made = body_json(made).await;
    assert_eq!(
        (made["type"].as_str(), made["status"].as_str()),
        (Some("on_invoice"), Some("completed"))
    );
    sim.cmp_invoice("Other");
    let failing = create(&sim, &token, &report_body("FAIL on purpose", "csv")).await;
    let id = body_json(failing).await["id"].as_str().expect("id").to_string();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let list = |query: String| {
        let r = http
            .get(api(&sim, &format!("/reports?from={today}&to={today}{query}")))
            .cmp_auth(&token);
        async move { body_json(r.send().await.expect("list")).await }
    };
    let invoices = list("&type=on_invoice&name=NW%20Finance".into()).await;
    assert_eq!(invoices["data"].as_array().map(Vec::len), Some(1), "{invoices}");
    assert!(invoices["data"][0]["downloadUrl"].is_string());
    let errored = wait_for("error", Duration::from_secs(10), || async {
        let l = list("&status=error".into()).await;
        l["data"].as_array().and_then(|d| d.first().cloned())
    })
    .await;
    assert_eq!(errored["id"], id.as_str());
    assert!(errored["errorMessage"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(errored.get("downloadUrl").is_none());
    assert_eq!(sim.stats().total_generations(ReportingApi::Cmp), 3);
}

#[tokio::test]
async fn invalid_reports_are_refused() {
    let sim = start(quick(0)).await;
    let token = cmp_token(&sim).await;
    let http = client();
    let cases = [
        (
            "no name",
            json!({"format": "json", "startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-02T00:00:00Z"}),
        ),
        ("bad format", report_body("x", "pdf")),
        (
            "end before start",
            json!({"name": "x", "format": "json", "startDate": "2026-10-02T00:00:00Z", "endDate": "2026-10-01T00:00:00Z"}),
        ),
        ("no dates", json!({"name": "x", "format": "json"})),
    ];
    for (what, body) in cases {
        let r = create(&sim, &token, &body).await;
        assert_eq!(r.status(), 400, "{what}");
        assert_eq!(body_json(r).await["statusCode"], 400, "{what}");
    }
    let r = http
        .get(api(&sim, "/reports/nope"))
        .cmp_auth(&token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}
