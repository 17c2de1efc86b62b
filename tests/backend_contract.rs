//! Contract tests of the five backend clients against the simulator, over real HTTP.
//!
//! Each test starts its own simulator (fast generation, small limits where a limit is the
//! point) and drives the clients through `report_operator::backend` only. Waiting is always
//! polling with a deadline.

mod backend_support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use report_operator::api::{BackendType, EventType, FusionLevel, FusionScope, ReportFormat};
use report_operator::backend::{
    BackendError, Download, ErrorAction, Limiter, ListQuery, ReportState, connect_with_options,
};
use report_sim::{Fault, FaultKind, SimServer};
use serde_json::json;
use tokio::time::Instant;

use backend_support::*;

#[tokio::test]
async fn happy_path_every_backend() {
    let sim = start(fast()).await;
    for t in ALL_TYPES {
        let backend = client(&sim, t);
        assert_eq!(backend.backend_type(), t);
        backend
            .probe()
            .await
            .unwrap_or_else(|e| panic!("{t:?} probe: {e}"));
        let req = request(t, "Happy");
        assert!(backend.capabilities().supports(req.format, req.event_type));
        let (report, download) = run(backend.as_ref(), &req).await;
        assert_eq!(report.state, ReportState::Ready, "{t:?}");
        match download.unwrap_or_else(|| panic!("{t:?} gave no download")) {
            Download::Url { url, expires_at } => {
                assert!(!fetch(&url).await.is_empty(), "{t:?} file is empty");
                if t == BackendType::Supplier {
                    let expires = expires_at.expect("SUPPLIER URLs expire");
                    assert!(expires <= Utc::now() + chrono::Duration::seconds(60));
                }
            }
            Download::Inline { file_name, content } => {
                assert_eq!(t, BackendType::Fusion);
                assert!(file_name.ends_with(".json"), "{file_name}");
                serde_json::from_slice::<serde_json::Value>(&content).expect("the license file is JSON");
            }
            Download::Streamed { file_name } => {
                panic!("{t:?}: {file_name} left for a store the request does not have")
            }
        }
        assert_eq!(
            sim.stats().max_duplicates(sim_api(t)),
            1,
            "{t:?}: {:?}",
            sim.stats()
        );
    }
    // RDE cleans up its template; a second delete of the same one is fine.
    let rde = client(&sim, BackendType::Rde);
    let template = rde
        .submit(&request(BackendType::Rde, "Doomed"))
        .await
        .expect("template");
    assert!(sim.rde_template_exists(&template.id));
    rde.delete_template(&template.id).await.expect("delete");
    rde.delete_template(&template.id).await.expect("delete again");
    assert!(!sim.rde_template_exists(&template.id));
    assert!(matches!(
        client(&sim, BackendType::Cmp).delete_template("x").await,
        Err(BackendError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn cmp_on_invoice_reports_are_listed() {
    let sim = start(fast()).await;
    let cmp = client(&sim, BackendType::Cmp);
    let id = sim.cmp_invoice("Invoice export");
    let now = Utc::now();
    let query = ListQuery {
        name: Some("Invoice export".into()),
        event_type: Some(EventType::OnInvoice),
        from: Some(now - chrono::Duration::days(1)),
        to: Some(now + chrono::Duration::days(1)),
        ..Default::default()
    };
    let listed = cmp.list(&query).await.expect("list");
    let found = listed
        .iter()
        .find(|r| r.id == id)
        .expect("the invoice report is listed");
    assert_eq!(found.state, ReportState::Ready);
    assert_eq!(found.event_type, Some(EventType::OnInvoice));
    assert!(matches!(found.download, Some(Download::Url { .. })));
}

#[tokio::test]
async fn expired_tokens_are_renewed() {
    let mut config = fast();
    // Renewed a second before expiry (whole seconds): 3 s tokens are renewed after 2 s.
    config.cmp.token_lifetime_secs = 3;
    config.supplier.token_lifetime_secs = 3;
    // FUSION says nothing about lifetimes: its client learns from the 401. With both tokens
    // short-lived, the refresh is refused too and the client logs in again.
    config.fusion.access_token_lifetime_secs = 1;
    config.fusion.refresh_token_lifetime_secs = 1;
    let sim = start(config).await;
    for t in [BackendType::Cmp, BackendType::Fusion, BackendType::Supplier] {
        let backend = client(&sim, t);
        let req = request(t, "Renewed");
        backend.probe().await.expect("first token");
        let first = sim.stats().token_requests(sim_api(t));
        assert_eq!(first, 1, "{t:?}: one token for the first call");
        // Keep calling until the client has had to get a new token; every call must succeed.
        poll("a renewed token", || async {
            run(backend.as_ref(), &req).await;
            Some(()).filter(|_| sim.stats().token_requests(sim_api(t)) > first)
        })
        .await;
        let stats = sim.stats();
        match t {
            // Renewed before expiry, from expiresIn / expires_in: never refused.
            BackendType::Cmp => assert_eq!(stats.requests_with_status("CMP", "get", 401), 0, "{stats:?}"),
            BackendType::Supplier => {
                assert_eq!(stats.requests_with_status("SUPPLIER", "get", 401), 0, "{stats:?}")
            }
            _ => {
                assert!(
                    stats.requests("FUSION", "login") >= 2,
                    "logged in again: {stats:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn fusion_refresh_token_renews_access() {
    let mut config = fast();
    config.fusion.access_token_lifetime_secs = 1;
    let sim = start(config).await;
    let fusion = client(&sim, BackendType::Fusion);
    let req = request(BackendType::Fusion, "Refreshed");
    fusion.submit(&req).await.expect("first report");
    poll("a refreshed access token", || async {
        fusion.submit(&req).await.expect("report");
        Some(()).filter(|_| sim.stats().requests_with_status("FUSION", "refresh", 200) > 0)
    })
    .await;
    assert_eq!(
        sim.stats().requests("FUSION", "login"),
        1,
        "the refresh token did the renewal: {:?}",
        sim.stats()
    );
}

#[tokio::test]
async fn wrong_credentials_make_the_backend_not_ready() {
    let sim = start(fast()).await;
    for t in ALL_TYPES {
        let backend = client_with(&spec(&sim, t, None), &wrong_credentials(t));
        let err = backend.probe().await.expect_err("wrong credentials are refused");
        assert!(matches!(err, BackendError::Unauthorized { .. }), "{t:?}: {err:?}");
        assert!(
            matches!(
                err.action(),
                ErrorAction::BackendNotReady {
                    reason: report_operator::api::reasons::BackendReady::Unauthorized,
                    ..
                }
            ),
            "{t:?}: {:?}",
            err.action()
        );
        // The same refusal reads the same each time (CMP's per-request correlation id stays
        // out of it), so the Ready condition does not change on every probe.
        assert_eq!(
            backend.probe().await.expect_err("refused again").to_string(),
            err.to_string(),
            "{t:?}"
        );
        let err = backend
            .submit(&request(t, "Refused"))
            .await
            .expect_err("no report with wrong credentials");
        assert_eq!(err.ready_reason(), "Unauthorized", "{t:?}: {err:?}");
        assert!(!err.to_string().contains("0xdeadbeef"), "{err}");
        assert_eq!(sim.stats().total_generations(sim_api(t)), 0);
    }
    // FUSION's two-factor user, and a Secret without a key the type needs.
    let mut creds = credentials(BackendType::Fusion);
    creds.insert("username".into(), b"fusion-2fa-user".to_vec());
    let fusion = client_with(&spec(&sim, BackendType::Fusion, None), &creds);
    let err = fusion.probe().await.expect_err("two-factor login");
    assert!(
        matches!(
            err.action(),
            ErrorAction::BackendNotReady {
                reason: report_operator::api::reasons::BackendReady::TwoFactorRequired,
                ..
            }
        ),
        "{err:?}"
    );
    let mut creds = credentials(BackendType::Cmp);
    creds.remove("subscriptionKey");
    let spec = spec(&sim, BackendType::Cmp, None);
    let err = connect_with_options(&spec, &creds, None, Limiter::for_backend(&spec), &options())
        .err()
        .expect("missing key");
    assert_eq!(
        err,
        BackendError::CredentialsMissing {
            key: "subscriptionKey".into()
        }
    );
    assert!(matches!(
        err.action(),
        ErrorAction::BackendNotReady {
            reason: report_operator::api::reasons::BackendReady::CredentialsMissing,
            ..
        }
    ));
}

/// Injects `fault` on the create and the read endpoint of `t` (once where they are one);
/// returns on how many endpoints.
fn on_report_path(sim: &SimServer, t: BackendType, fault: impl Fn(&'static str) -> Fault) -> u64 {
    let (create, get) = endpoints(t);
    sim.inject(fault(create));
    if create == get {
        return 1;
    }
    sim.inject(fault(get));
    2
}

#[tokio::test]
async fn too_many_requests_are_absorbed_honouring_retry_after() {
    let sim = start(fast()).await;
    for t in ALL_TYPES {
        let backend = client(&sim, t);
        let waits = on_report_path(&sim, t, |e| {
            Fault::new(sim_api(t), e, FaultKind::TooManyRequests, 1).with_retry_after(1)
        });
        let started = Instant::now();
        let (report, _) = run(backend.as_ref(), &request(t, "Throttled")).await;
        assert_eq!(report.state, ReportState::Ready, "{t:?}");
        // Each 429 said "1 second", and the client waited that long before asking again.
        assert!(
            started.elapsed() >= Duration::from_secs(waits),
            "{t:?} came back after {:?}",
            started.elapsed()
        );
        let stats = sim.stats();
        assert_eq!(stats.rate_limited(sim_api(t)), waits, "{t:?}: {stats:?}");
        assert_eq!(
            stats.max_duplicates(sim_api(t)),
            1,
            "{t:?}: a 429 on create is not a create: {stats:?}"
        );
    }
}

#[tokio::test]
async fn server_errors_are_retried() {
    let sim = start(fast()).await;
    for t in ALL_TYPES {
        let backend = client(&sim, t);
        let (create, _) = endpoints(t);
        // 503 means the call was not carried out: even a create is repeated. Reads are
        // repeated after any 5xx.
        on_report_path(&sim, t, |e| {
            let fault = Fault::new(sim_api(t), e, FaultKind::ServerError, 2);
            if e == create {
                fault
            } else {
                fault.with_status(502)
            }
        });
        if t == BackendType::Rde {
            sim.inject(Fault::new(sim_api(t), "reportFiles", FaultKind::ServerError, 1).with_status(500));
        }
        let (report, _) = run(backend.as_ref(), &request(t, "Flaky")).await;
        assert_eq!(report.state, ReportState::Ready, "{t:?}");
        let stats = sim.stats();
        assert_eq!(
            stats.requests_with_status(t.as_str(), create, 503),
            2,
            "{t:?}: {stats:?}"
        );
        assert_eq!(stats.max_duplicates(sim_api(t)), 1, "{t:?}: {stats:?}");
    }
    // A 500 on a create may have made the report: the client says so instead of repeating it.
    let cmp = client(&sim, BackendType::Cmp);
    sim.inject(Fault::new(sim_api(BackendType::Cmp), "create", FaultKind::ServerError, 1).with_status(500));
    let err = cmp
        .submit(&request(BackendType::Cmp, "Unsure"))
        .await
        .expect_err("500 on create");
    assert!(matches!(err, BackendError::Ambiguous { .. }), "{err:?}");
    // More 5xx than attempts: a transient error for the controller to retry later.
    sim.inject(Fault::new(
        sim_api(BackendType::Cmp),
        "list",
        FaultKind::ServerError,
        10,
    ));
    let err = cmp.probe().await.expect_err("still failing");
    assert!(matches!(err.action(), ErrorAction::Retry { .. }), "{err:?}");
    assert_eq!(err.ready_reason(), "Unreachable");
    sim.clear_faults();
}

#[tokio::test]
async fn backend_failures_carry_the_backend_reason() {
    let sim = start(fast()).await;
    let reasons = [
        (BackendType::Rde, "Report generation failed"),
        (BackendType::Cmp, "could not be generated"),
        (BackendType::Connect, "failed to render"),
        (
            BackendType::Supplier,
            "REPORT_GENERATION_FAILED_REASON_INTERNAL_ERROR",
        ),
    ];
    for (t, reason) in reasons {
        let backend = client(&sim, t);
        let (report, download) = run(backend.as_ref(), &request(t, "Will FAIL")).await;
        match report.state {
            ReportState::Failed { reason: got } => assert!(got.contains(reason), "{t:?}: {got}"),
            other => panic!("{t:?}: expected FAILED, got {other:?}"),
        }
        assert!(download.is_none());
    }
    // FUSION answers at once: a scope the user may not see is a 403, a report failure for good.
    let fusion = client(&sim, BackendType::Fusion);
    let mut req = request(BackendType::Fusion, "Forbidden");
    req.parameters.scope = Some(FusionScope {
        level: FusionLevel::Tenant,
        uuid: "ffffffff-0000-4000-8000-000000000000".into(),
        subscription_id: None,
    });
    let err = fusion.submit(&req).await.expect_err("403");
    match err.action() {
        ErrorAction::FailReport { reason } => assert!(reason.starts_with("HTTP 403"), "{reason}"),
        other => panic!("{other:?}"),
    }
    req.parameters.scope.as_mut().expect("scope").uuid = "00000000-0000-4000-8000-000000000000".into();
    let err = fusion.submit(&req).await.expect_err("404");
    assert!(
        matches!(&err.action(), ErrorAction::FailReport { reason } if reason.contains("404")),
        "{err:?}"
    );
    // What a backend cannot do at all is refused before any call.
    let cmp = client(&sim, BackendType::Cmp);
    let mut req = request(BackendType::Supplier, "Csv");
    req.format = ReportFormat::Xml;
    let err = client(&sim, BackendType::Supplier)
        .submit(&req)
        .await
        .expect_err("XML on SUPPLIER");
    assert!(matches!(err, BackendError::Unsupported { .. }), "{err:?}");
    let mut req = request(BackendType::Cmp, "Invoice");
    req.event_type = EventType::OnInvoice;
    assert!(matches!(
        cmp.submit(&req).await,
        Err(BackendError::Unsupported { .. })
    ));
}

#[tokio::test]
async fn a_lost_create_is_found_not_repeated() {
    let mut config = fast();
    config.hang_ms = 3000;
    let sim = start(config).await;
    for t in [
        BackendType::Rde,
        BackendType::Cmp,
        BackendType::Connect,
        BackendType::Supplier,
    ] {
        let mut held = HashSet::new();
        for (kind, name) in [(FaultKind::LostResponse, "Lost"), (FaultKind::Timeout, "Slow")] {
            let backend = client(&sim, t);
            let (create, _) = endpoints(t);
            let req = request(t, name);
            sim.inject(Fault::new(sim_api(t), create, kind, 1));
            let err = backend.submit(&req).await.expect_err("the answer is lost");
            assert!(
                matches!(err, BackendError::Ambiguous { .. }),
                "{t:?} {kind:?}: {err:?}"
            );
            assert!(matches!(err.action(), ErrorAction::Retry { .. }));
            let found = backend
                .find(&req, &held)
                .await
                .expect("find")
                .unwrap_or_else(|| panic!("{t:?} {kind:?}: not found"));
            // Once held (by this request, or by a twin of it), a report is never adopted again.
            held.insert(found.id.clone());
            assert_eq!(
                backend.find(&req, &held).await.expect("find"),
                None,
                "{t:?} {kind:?}: adopted a held id"
            );
            let report = finish(backend.as_ref(), &req, found).await;
            assert_eq!(report.state, ReportState::Ready, "{t:?}");
            let stats = sim.stats();
            assert_eq!(
                stats.max_duplicates(sim_api(t)),
                1,
                "{t:?} {kind:?} generated twice: {stats:?}"
            );
        }
        // Nothing made, nothing found.
        let backend = client(&sim, t);
        assert_eq!(
            backend
                .find(&request(t, "Never"), &HashSet::new())
                .await
                .expect("find"),
            None,
            "{t:?}"
        );
    }
    // FUSION's calls only read: a lost answer is simply asked again.
    let fusion = client(&sim, BackendType::Fusion);
    sim.inject(Fault::new(
        sim_api(BackendType::Fusion),
        "license",
        FaultKind::LostResponse,
        1,
    ));
    let report = fusion
        .submit(&request(BackendType::Fusion, "Lost"))
        .await
        .expect("retried");
    assert_eq!(report.state, ReportState::Ready);
    assert_eq!(
        sim.stats().requests_with_status("FUSION", "license", 0),
        1,
        "{:?}",
        sim.stats()
    );
}

#[tokio::test]
async fn supplier_120_reports_for_20_organizations_without_a_429() {
    let mut config = fast();
    // The documented limits, scaled down so that the test runs in seconds and the budget
    // binds: 100 requests per endpoint per second, 6 in progress per organization.
    config.supplier.behaviour.generation_ms = 500;
    config.supplier.requests_per_window = 100;
    config.supplier.window_secs = 1;
    let sim = start(config).await;
    let spec = spec(
        &sim,
        BackendType::Supplier,
        Some(json!({"requestsPerWindow": 100, "windowSeconds": 1})),
    );
    let limiter = Limiter::for_backend(&spec);
    let backend = connect_with_options(
        &spec,
        &credentials(BackendType::Supplier),
        None,
        limiter.clone(),
        &options(),
    )
    .expect("client");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for org in 0..20 {
        for n in 0..6 {
            let backend = backend.clone();
            tasks.spawn(async move {
                let mut req = request(BackendType::Supplier, &format!("trip_{n}"));
                req.key = format!("load/org{org}-{n}");
                req.organization = Some(format!("org-{org:02}"));
                run(backend.as_ref(), &req).await.0.state
            });
        }
    }
    let mut done = 0;
    while let Some(state) = tasks.join_next().await {
        assert_eq!(state.expect("task"), ReportState::Ready);
        done += 1;
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(done, 120);
    assert_eq!(stats.rate_limited(sim_api(BackendType::Supplier)), 0, "{stats:?}");
    assert_eq!(stats.total_generations(sim_api(BackendType::Supplier)), 120);
    assert_eq!(stats.max_duplicates(sim_api(BackendType::Supplier)), 1);
    assert!(
        (0..20).all(|o| stats.peak_in_progress(sim_api(BackendType::Supplier), &format!("org-{o:02}")) <= 6)
    );
    assert_eq!(
        stats.token_requests(sim_api(BackendType::Supplier)),
        1,
        "one token for all"
    );
    assert!(
        (0..20).all(|o| limiter.in_flight(&format!("org-{o:02}")) == 0),
        "every slot given back"
    );
    eprintln!(
        "120 SUPPLIER reports in {elapsed:?}: generate {}, list {}, get {}, link {}, token {}",
        stats.requests("SUPPLIER", "generate"),
        stats.requests("SUPPLIER", "list"),
        stats.requests("SUPPLIER", "get"),
        stats.requests("SUPPLIER", "link"),
        stats.token_requests(sim_api(BackendType::Supplier)),
    );
}

#[tokio::test]
async fn supplier_in_flight_cap_is_kept_by_the_client() {
    let mut config = fast();
    config.supplier.behaviour.generation_ms = 400;
    let sim = start(config).await;
    let spec = spec(&sim, BackendType::Supplier, None);
    let limiter = Limiter::for_backend(&spec);
    let backend = connect_with_options(
        &spec,
        &credentials(BackendType::Supplier),
        None,
        limiter.clone(),
        &options(),
    )
    .expect("client");
    let mut running = Vec::new();
    for n in 0..6 {
        let mut req = request(BackendType::Supplier, &format!("cap_{n}"));
        req.organization = Some("org-cap".into());
        running.push((backend.submit(&req).await.expect("within the cap"), req));
    }
    let mut seventh = request(BackendType::Supplier, "cap_7");
    seventh.organization = Some("org-cap".into());
    let err = backend.submit(&seventh).await.expect_err("a seventh waits");
    assert!(
        matches!(err, BackendError::InFlightLimit { max: 6, .. }),
        "{err:?}"
    );
    assert_eq!(
        sim.stats().requests("SUPPLIER", "generate"),
        6,
        "the seventh never reached the API"
    );
    // After a restart the controller tells a new limiter what runs; the cap holds again.
    let fresh = Limiter::for_backend(&spec);
    for (r, _) in &running {
        fresh.note_in_flight("org-cap", &r.id);
    }
    assert_eq!(fresh.in_flight("org-cap"), 6);
    // Seeing a report finished frees its slot.
    let (first, req) = &running[0];
    finish(backend.as_ref(), req, first.clone()).await;
    assert_eq!(limiter.in_flight("org-cap"), 5);
    backend.submit(&seventh).await.expect("a slot is free");
    assert_eq!(sim.stats().rate_limited(sim_api(BackendType::Supplier)), 0);
}

#[tokio::test]
async fn supplier_polls_of_one_organization_share_one_listing() {
    let sim = start(fast()).await;
    let backend = client(&sim, BackendType::Supplier);
    let mut running = Vec::new();
    for n in 0..6 {
        let mut req = request(BackendType::Supplier, &format!("poll_{n}"));
        req.organization = Some("org-poll".into());
        running.push((backend.submit(&req).await.expect("submitted").id, req));
    }
    let before = sim.stats();
    let polls = futures::future::join_all(running.iter().map(|(id, req)| backend.get(id, req))).await;
    for (poll, (id, _)) in polls.iter().zip(&running) {
        assert_eq!(poll.as_ref().expect("polled").id, *id);
    }
    let after = sim.stats();
    let delta = |endpoint| after.requests("SUPPLIER", endpoint) - before.requests("SUPPLIER", endpoint);
    assert_eq!(
        (delta("list"), delta("get")),
        (1, 0),
        "six polls of one organization cost one listing"
    );
}
