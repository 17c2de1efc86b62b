//! The FUSION simulator over HTTP: login, refresh, two-factor, SDRs, license downloads and
//! the documented error codes.

mod sim_support;

use base64::Engine as _;
use report_sim::ReportingApi;
use report_sim::{Fault, FaultKind, FusionConfig, SimConfig, SimServer};
use serde_json::{Value, json};
use sim_support::{body_json, client, fusion_login, quick, sleep_past, start};

const TENANT: &str = "53fd92c7-fbef-44fd-af76-d92334432ac9";

fn url(sim: &SimServer, path: &str) -> String {
    format!("{}/api/v01{path}", sim.backend_url(ReportingApi::Fusion))
}

async fn license(sim: &SimServer, token: &str, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(url(sim, path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("license")
}

fn decode(file: &Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(file["fileBody"].as_str().expect("fileBody"))
        .expect("base64");
    String::from_utf8(bytes).expect("utf8")
}

#[tokio::test]
async fn license_files_of_every_level_have_the_seeds_headers_and_names() {
    let sim = start(quick(0)).await;
    let (token, _) = fusion_login(&sim).await;
    let today = chrono::Utc::now().format("%Y%m%d").to_string();
    let cases = [
        (
            "groups",
            "group",
            "name,distributor_name,distributor_uuid,reseller_name,reseller_uuid,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned",
        ),
        (
            "distributors",
            "distributor",
            "name,reseller_name,reseller_uuid,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned",
        ),
        (
            "resellers",
            "reseller",
            "name,tenant_name,tenant_uuid,ms_assigned,ms_used,sip_assigned",
        ),
        ("tenants", "tenant", "name,ms_assigned,ms_used,sip_assigned"),
    ];
    for (collection, level, header) in cases {
        let response = license(
            &sim,
            &token,
            &format!("/draas/draas_v1/{collection}/{TENANT}/downloads/report"),
            json!({"format": "csv"}),
        )
        .await;
        assert_eq!(response.status(), 200, "{level}");
        let file = body_json(response).await;
        assert_eq!(file["fileName"], format!("licenses_{level}_{TENANT}_{today}.csv"));
        let csv = decode(&file);
        assert_eq!(csv.lines().next(), Some(header), "{level}: {csv}");
        assert!(csv.lines().count() > 1, "{level}: rows");
        let json_file = body_json(
            license(
                &sim,
                &token,
                &format!("/draas/draas_v1/{collection}/{TENANT}/downloads/report"),
                json!({"format": "json"}),
            )
            .await,
        )
        .await;
        assert_eq!(
            json_file["fileName"],
            format!("licenses_{level}_{TENANT}_{today}.json")
        );
        let doc: Value = serde_json::from_str(&decode(&json_file)).expect("json file");
        assert!(
            doc["msTeamsUsers"]["assigned"].is_u64() && doc["sipTrunkChannels"]["assigned"].is_u64(),
            "{doc}"
        );
    }
    let sub = body_json(
        license(
            &sim,
            &token,
            &format!("/draas/draas_v1/tenants/{TENANT}/subscriptions/2/downloads/report"),
            json!({"format": "csv"}),
        )
        .await,
    )
    .await;
    assert_eq!(
        sub["fileName"],
        format!("licenses_tenant_{TENANT}_subscription_2_{today}.csv")
    );
    let csv = decode(&sub);
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.starts_with("name,ms_assigned,ms_used,sip_assigned\n"));
    // The same scope gives the same file.
    let again = body_json(
        license(
            &sim,
            &token,
            &format!("/draas/draas_v1/tenants/{TENANT}/subscriptions/2/downloads/report"),
            json!({"format": "csv"}),
        )
        .await,
    )
    .await;
    assert_eq!(again["fileBody"], sub["fileBody"]);
    assert_eq!(
        sim.stats().generations_of(
            ReportingApi::Fusion,
            &format!("licenses|tenant|{TENANT}|subscription 2|csv")
        ),
        2
    );
}

#[tokio::test]
async fn usage_sdrs_are_json_arrays() {
    let sim = start(quick(0)).await;
    let (token, _) = fusion_login(&sim).await;
    let phones = client()
        .get(url(
            &sim,
            &format!("/draas/draas_v1/groups/{TENANT}/sdrs/phone_usage"),
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("get");
    assert_eq!(phones.status(), 200);
    let phones = body_json(phones).await;
    let first = &phones["phoneUsages"][0];
    for key in [
        "distributor",
        "group",
        "phoneNumber",
        "reseller",
        "subscription",
        "tenant",
        "username",
    ] {
        assert!(first[key].is_string(), "{key}: {first}");
    }
    let products = body_json(
        client()
            .get(url(
                &sim,
                &format!("/draas/draas_v1/groups/{TENANT}/sdrs/product_usage"),
            ))
            .bearer_auth(&token)
            .send()
            .await
            .expect("get"),
    )
    .await;
    let rows = products["productUsages"].as_array().expect("productUsages");
    assert!(
        rows.iter()
            .all(|r| r["sku"].is_string() && r["quantity"].is_u64())
    );
    assert!(
        rows.iter().any(|r| r.get("used").is_none()),
        "used is conditional"
    );
}

#[tokio::test]
async fn login_refresh_and_two_factor() {
    let config = SimConfig {
        fusion: FusionConfig {
            access_token_lifetime_secs: 1,
            refresh_token_lifetime_secs: 2,
            ..Default::default()
        },
        ..quick(0)
    };
    let sim = start(config).await;
    let http = client();
    let login = |user: &str, password: &str| {
        http.post(url(&sim, "/auth/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
    };
    assert_eq!(login("fusion-user", "wrong").await.expect("login").status(), 401);
    assert_eq!(
        login("nobody", "fusion-password").await.expect("login").status(),
        401
    );
    let challenge = body_json(login("fusion-2fa-user", "fusion-password").await.expect("login")).await;
    assert!(
        challenge["2fa_payload"].is_string() && challenge.get("data").is_none(),
        "{challenge}"
    );
    let (access, refresh) = fusion_login(&sim).await;
    let scope = format!("/draas/draas_v1/tenants/{TENANT}/downloads/report");
    assert_eq!(
        license(&sim, &access, &scope, json!({"format": "csv"}))
            .await
            .status(),
        200
    );
    // A refresh token is no access token, and the other way round.
    assert_eq!(
        license(&sim, &refresh, &scope, json!({"format": "csv"}))
            .await
            .status(),
        401
    );
    let refreshed = http
        .get(url(&sim, "/auth/access_token"))
        .bearer_auth(&refresh)
        .send()
        .await
        .expect("refresh");
    assert_eq!(refreshed.status(), 200);
    let fresh = body_json(refreshed).await["data"]["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    assert_eq!(
        http.get(url(&sim, "/auth/access_token"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("refresh")
            .status(),
        401
    );
    // The access token expires; the new one works until it expires too.
    sleep_past(exp(&access)).await;
    assert_eq!(
        license(&sim, &access, &scope, json!({"format": "csv"}))
            .await
            .status(),
        401
    );
    // The refresh token expires: a 401 there means logging in again.
    sleep_past(exp(&refresh)).await;
    assert_eq!(
        http.get(url(&sim, "/auth/access_token"))
            .bearer_auth(&refresh)
            .send()
            .await
            .expect("refresh")
            .status(),
        401
    );
    assert!(!fresh.is_empty());
    assert_eq!(sim.stats().token_requests(ReportingApi::Fusion), 7);
}

/// The `exp` claim of a JWT-shaped token.
fn exp(token: &str) -> i64 {
    let claims = token.split('.').nth(1).expect("claims");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .expect("base64");
    serde_json::from_slice::<Value>(&raw).expect("json")["exp"]
        .as_i64()
        .expect("exp")
}

#[tokio::test]
async fn the_documented_error_codes() {
    let sim = start(quick(0)).await;
    let (token, _) = fusion_login(&sim).await;
    let tenant = |uuid: &str| format!("/draas/draas_v1/tenants/{uuid}/downloads/report");
    let cases = [
        ("bad format", tenant(TENANT), json!({"format": "pdf"}), 400),
        ("no format", tenant(TENANT), json!({}), 400),
        (
            "missing role",
            tenant("ffffffff-0000-4000-8000-000000000000"),
            json!({"format": "csv"}),
            403,
        ),
        (
            "unknown uuid",
            tenant("00000000-0000-4000-8000-000000000000"),
            json!({"format": "csv"}),
            404,
        ),
        ("not a uuid", tenant("tenant-1"), json!({"format": "csv"}), 404),
        (
            "unknown instance",
            format!("/draas/draas_v9/tenants/{TENANT}/downloads/report"),
            json!({"format": "csv"}),
            404,
        ),
        (
            "unknown subscription",
            format!("/draas/draas_v1/tenants/{TENANT}/subscriptions/9/downloads/report"),
            json!({"format": "csv"}),
            404,
        ),
        (
            "subscription not a number",
            format!("/draas/draas_v1/tenants/{TENANT}/subscriptions/x/downloads/report"),
            json!({"format": "csv"}),
            400,
        ),
    ];
    for (what, path, body, status) in cases {
        let response = license(&sim, &token, &path, body).await;
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(body_json(response).await["code"], status, "{what}");
    }
    sim.inject(Fault::new(ReportingApi::Fusion, "license", FaultKind::ServerError, 1).with_status(500));
    assert_eq!(
        license(&sim, &token, &tenant(TENANT), json!({"format": "csv"}))
            .await
            .status(),
        500
    );
    assert_eq!(
        license(&sim, &token, &tenant(TENANT), json!({"format": "csv"}))
            .await
            .status(),
        200
    );
    assert_eq!(
        license(&sim, "garbage", &tenant(TENANT), json!({"format": "csv"}))
            .await
            .status(),
        401
    );
}
