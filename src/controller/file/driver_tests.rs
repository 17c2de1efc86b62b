//! The ReportFile driver as it runs: the real reconcile against the API server, backend and
//! bucket of [`fixtures`](crate::controller::fixtures), one test per sequence of calls. The
//! decisions each step takes are the tables' (`decide_tests.rs`); these tests prove the
//! order in which the driver acts on them.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::reconcile;
use crate::api::{BackendType, ReportFile};
use crate::backend::{BackendError, Download, RemoteReport, ReportState};
use crate::controller::fair_share::Limits;
use crate::controller::fixtures::{API_VERSION, NS, World, merge};
use crate::delivery::StoreError;

/// A ReportFile `name` on backend `b`, created a minute ago, with `extra` merged in.
fn report_file(name: &str, extra: Value) -> Value {
    let created = Utc::now() - chrono::Duration::minutes(1);
    let mut obj = json!({
        "apiVersion": API_VERSION, "kind": "ReportFile",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
            "creationTimestamp": created.to_rfc3339()},
        "spec": {"backendRef": {"name": "b"}, "name": "Usage", "eventType": "ONETIME", "format": "CSV",
            "parameters": {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-01-01T23:59:59Z"}},
    });
    merge(&mut obj, extra);
    obj
}

/// Status of a report the backend is generating as `r-1`, submitted 5 s ago.
fn generating() -> Value {
    let submitted = Utc::now() - chrono::Duration::seconds(5);
    json!({"status": {"status": "IN_PROGRESS", "externalId": "r-1", "submitTime": submitted.to_rfc3339()}})
}

/// Status of a report READY a minute ago, its backend URL good for `expires_in`.
fn ready(expires_in: chrono::Duration) -> Value {
    let (now, done) = (Utc::now(), Utc::now() - chrono::Duration::minutes(1));
    json!({"status": {"status": "READY", "externalId": "r-1", "completionTime": done.to_rfc3339(),
        "generateDate": done.to_rfc3339(), "fileName": "usage.csv", "urlExpiresAt": (now + expires_in).to_rfc3339(),
        "downloadSecretRef": {"name": "r"},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "the report is ready", "lastTransitionTime": done.to_rfc3339()},
            {"type": "Complete", "status": "True", "reason": "Ready", "message": "the report is READY", "lastTransitionTime": done.to_rfc3339()},
            {"type": "Failed", "status": "False", "reason": "Ready", "message": "the report is READY", "lastTransitionTime": done.to_rfc3339()}]}})
}

/// The report Secret `r`, this ReportFile's (its controller owner).
fn our_secret() -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "r", "namespace": NS, "ownerReferences": [{"apiVersion": API_VERSION, "kind": "ReportFile",
            "name": "r", "uid": "uid-r", "controller": true}]},
        "data": {}})
}

fn url(expires_in: chrono::Duration) -> Download {
    Download::Url {
        url: "https://files.example/usage.csv?sig=secret".into(),
        expires_at: Some(Utc::now() + expires_in),
    }
}

fn remote(state: ReportState) -> RemoteReport {
    RemoteReport::new("r-1", state)
}

async fn run(world: &World, name: &str) -> Action {
    let rf: Arc<ReportFile> = world.cached(name).expect("the ReportFile in the cache");
    reconcile(rf, world.ctx.clone())
        .await
        .expect("the reconcile succeeds")
}

/// The `Delivered` condition's (status, reason) of ReportFile `name`.
fn delivered(world: &World, name: &str) -> Option<(String, String)> {
    world
        .condition("ReportFile", name, "Delivered")
        .map(|c| (c.0, c.1))
}

fn ready_condition(world: &World) -> (String, String) {
    let (status, reason, _) = world
        .condition("ReportFile", "r", "Ready")
        .expect("a Ready condition");
    (status, reason)
}

#[tokio::test]
async fn a_new_report_is_marked_then_submitted_then_its_id_recorded() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_submit(Ok(remote(ReportState::InProgress)));
    world.put(report_file("r", json!({})));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "apply status ReportFile/r",
            "backend submit Usage",
            "apply status ReportFile/r",
            "event Normal Submitted",
        ]
    );
    let marks = world.journal.bodies("apply status ReportFile/r");
    assert!(
        marks[0]["status"]["createPendingSince"].is_string(),
        "the mark first"
    );
    assert!(marks[0]["status"]["externalId"].is_null(), "no id yet");
    assert_eq!(marks[1]["status"]["externalId"], "r-1");
    assert!(
        marks[1]["status"]["createPendingSince"].is_null(),
        "the mark cleared"
    );
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "polled after a second"
    );
}

#[tokio::test]
async fn a_connect_report_gets_its_finalizer_before_the_backend_hears_of_it() {
    let mut world = World::new();
    world
        .backend("b", BackendType::Connect)
        .on_submit(Ok(remote(ReportState::InProgress)));
    world.put(report_file("r", json!({})));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "patch ReportFile/r",
            "apply status ReportFile/r",
            "backend submit Usage",
            "apply status ReportFile/r",
            "event Normal Submitted",
        ]
    );
    assert_eq!(
        world.object("ReportFile", "r")["metadata"]["finalizers"],
        json!(["reporting.report-operator.io/connect-report"])
    );
}

#[tokio::test]
async fn a_mark_without_an_id_is_looked_up_before_anything_is_submitted() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_find(Ok(Some(remote(ReportState::InProgress))));
    let marked = json!({"status": {"status": "IN_PROGRESS", "createPendingSince": Utc::now().to_rfc3339(), "attempts": 1}});
    world.put(report_file("r", marked));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["backend find (taken [])", "apply status ReportFile/r"],
        "found: recorded, nothing submitted, no Submitted Event"
    );
    assert_eq!(world.object("ReportFile", "r")["status"]["externalId"], "r-1");
}

#[tokio::test]
async fn a_report_in_progress_is_polled_and_looked_at_again() {
    let mut world = World::new();
    world
        .backend("b", BackendType::Cmp)
        .on_get(Ok(remote(ReportState::InProgress)));
    world.put(report_file("r", generating()));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["backend get r-1", "apply status ReportFile/r"]
    );
    assert_eq!(ready_condition(&world), ("False".into(), "InProgress".into()));
    assert_eq!(action, Action::requeue(Duration::from_secs(1)));
}

#[tokio::test]
async fn a_ready_report_gets_its_secret_before_its_status_says_ready() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_download(Ok(url(chrono::Duration::hours(1))));
    world.put(report_file("r", generating()));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "get meta Secret/r",
            "backend download r-1",
            "create Secret/r",
            "apply status ReportFile/r",
            "event Normal Ready",
        ]
    );
    let secret = world.object("Secret", "r");
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-r");
    assert!(secret["data"]["url"].is_string());
    assert_eq!(world.object("ReportFile", "r")["status"]["status"], "READY");
    assert_eq!(ready_condition(&world), ("True".into(), "Ready".into()));
}

#[tokio::test]
async fn a_backend_error_is_retried_and_a_refusal_fails_the_report() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_get(Err(BackendError::Transient {
        message: "HTTP 503".into(),
        retry_after: Some(Duration::from_secs(7)),
    }));
    world.put(report_file("r", generating()));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "apply status ReportFile/r",
            "event Warning BackendError"
        ]
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(7)));
    assert_eq!(world.object("ReportFile", "r")["status"]["status"], "IN_PROGRESS");

    world.sync();
    backend.on_get(Err(BackendError::Rejected {
        status: 400,
        reason: "bad dates".into(),
    }));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "apply status ReportFile/r",
            "event Warning Failed"
        ]
    );
    assert_eq!(action, Action::await_change());
    assert_eq!(world.object("ReportFile", "r")["status"]["status"], "FAILED");
    assert_eq!(ready_condition(&world), ("False".into(), "Failed".into()));
}

#[tokio::test]
async fn a_backend_that_is_not_ready_is_waited_for_without_a_call() {
    let mut world = World::new();
    world.broken_backend("b", BackendType::Cmp);
    world.put(report_file("r", json!({})));
    let action = run(&world, "r").await;
    assert_eq!(world.journal.take(), ["apply status ReportFile/r"]);
    assert_eq!(ready_condition(&world), ("False".into(), "Pending".into()));
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_foreign_secret_is_left_alone_and_the_backend_not_asked_again_until_it_goes() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_get(Ok(remote(ReportState::Ready)));
    world.put(report_file("r", generating()));
    world.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r", "namespace": NS}, "data": {"mine": "eA=="}}));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "get meta Secret/r",
            "apply status ReportFile/r",
            "event Warning SecretConflict"
        ]
    );
    assert_eq!(ready_condition(&world), ("False".into(), "SecretConflict".into()));
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    assert_eq!(
        world.object("Secret", "r")["data"],
        json!({"mine": "eA=="}),
        "untouched"
    );

    world.sync();
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["get meta Secret/r"],
        "still taken: only looked at, not told again"
    );

    world.api.remove("Secret", NS, "r");
    world.sync();
    backend.on_download(Ok(url(chrono::Duration::hours(1))));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "get meta Secret/r",
            "backend get r-1",
            "get meta Secret/r",
            "backend download r-1",
            "create Secret/r",
            "apply status ReportFile/r",
            "event Normal Ready",
        ]
    );
}

#[tokio::test]
async fn a_secret_made_meanwhile_by_someone_else_is_not_taken_over() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_download(Ok(url(chrono::Duration::hours(1))));
    world.put(report_file("r", generating()));
    // Someone makes the Secret between the operator's look (it was not there) and its create.
    world.api.refuse("get meta Secret/r", 404);
    world.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "r", "namespace": NS}}));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "get meta Secret/r",
            "backend download r-1",
            "create Secret/r",
            "get meta Secret/r",
            "apply status ReportFile/r",
            "event Warning SecretConflict",
        ],
        "the create fails on the name taken; a fresh look finds it someone else's"
    );
    assert!(world.object("Secret", "r").get("data").is_none(), "untouched");
    assert_eq!(ready_condition(&world), ("False".into(), "SecretConflict".into()));
}

#[tokio::test]
async fn the_refresh_annotation_re_mints_the_backends_url() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Supplier);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_download(Ok(url(chrono::Duration::minutes(1))));
    let annotated = json!({"metadata": {"annotations": {"reporting.report-operator.io/refresh-url": "1"}}});
    let mut rf = report_file("r", ready(chrono::Duration::seconds(30)));
    merge(&mut rf, annotated);
    world.put(rf);
    world.put(our_secret());
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "backend download r-1",
            "apply Secret/r",
            "apply status ReportFile/r",
            "event Normal UrlRefreshed",
        ]
    );
    let note = world.journal.note("UrlRefreshed").expect("an Event");
    assert_eq!(note, "wrote the download again on the refresh-url annotation");
    assert_eq!(world.object("ReportFile", "r")["status"]["lastUrlRefresh"], "1");

    world.sync();
    run(&world, "r").await;
    assert_eq!(world.journal.take(), [] as [&str; 0], "served once: no request");
}

#[tokio::test]
async fn a_url_about_to_expire_is_renewed_and_a_deleted_secret_written_again() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Supplier);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_download(Ok(url(chrono::Duration::minutes(1))));
    world.put(report_file("r", ready(chrono::Duration::seconds(5))));
    world.put(our_secret());
    run(&world, "r").await;
    assert_eq!(
        world.journal.note("UrlRefreshed").as_deref(),
        Some("wrote the download again before the URL expired")
    );
    world.journal.take();

    world.api.remove("Secret", NS, "r");
    world.sync();
    backend.on_download(Ok(url(chrono::Duration::minutes(2))));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "get meta Secret/r",
            "backend get r-1",
            "backend download r-1",
            "create Secret/r",
            "apply status ReportFile/r",
            "event Normal UrlRefreshed",
        ]
    );
}

/// A READY report with `storeRef: {name: bucket}`, and that ReportStore (retention Delete).
fn stored(world: &mut World, status: Value) {
    world.store("bucket", json!({"retention": "Delete"}));
    world.put(report_file(
        "r",
        merge_of(json!({"spec": {"storeRef": {"name": "bucket"}}}), status),
    ));
    world.put(our_secret());
}

/// A world with a READY report `r` of backend `b` of `type_` to copy into its store, its
/// backend's URL good for `expires_in`; the backend answers one `get` and `download`.
fn to_copy(type_: BackendType, expires_in: chrono::Duration) -> World {
    let mut world = World::new();
    let backend = world.backend("b", type_);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_download(Ok(url(chrono::Duration::minutes(1))));
    stored(&mut world, ready(expires_in));
    world
}

fn merge_of(mut a: Value, b: Value) -> Value {
    merge(&mut a, b);
    a
}

#[tokio::test]
async fn a_ready_reports_copy_is_handed_to_the_pool_and_recorded_by_a_later_reconcile() {
    let mut world = to_copy(BackendType::Cmp, chrono::Duration::hours(1));
    let mut wakes = world.ctx.deliveries.wakes().expect("the pool's wakes");
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "patch ReportFile/r",
            "apply status ReportFile/r",
        ],
        "the retention finalizer before the object exists; the copy handed over, not made here"
    );
    assert_eq!(delivered(&world, "r"), Some(("False".into(), "Copying".into())));
    let rf = world.object("ReportFile", "r");
    assert!(
        rf["status"]["delivery"]["location"].is_null(),
        "nothing recorded before the copy completed: {}",
        rf["status"]
    );
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(300)),
        "the pool wakes it sooner"
    );

    world.ctx.deliveries.run_copies().await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "backend download r-1",
            "bucket copy reports/team/r/20260101-20260101/r.csv",
        ],
        "the pool reads the report from the backend when the copy starts"
    );
    let woken = wakes.next().await.expect("a wake");
    assert_eq!(woken.name, "r", "the copy's end wakes its ReportFile");

    world.sync();
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "bucket presign reports/team/r/20260101-20260101/r.csv",
            "apply Secret/r",
            "apply status ReportFile/r",
            "event Normal Delivered",
        ],
        "the result recorded: the Secret before the status"
    );
    let rf = world.object("ReportFile", "r");
    assert_eq!(
        rf["metadata"]["finalizers"],
        json!(["reporting.report-operator.io/delivery"])
    );
    let location = "s3://b/reports/team/r/20260101-20260101/r.csv";
    assert_eq!(rf["status"]["delivery"]["location"], location);
    assert_eq!(rf["status"]["delivery"]["objects"], json!([location]));
    assert_eq!(rf["status"]["delivery"]["attempts"], 1);
    assert_eq!(delivered(&world, "r"), Some(("True".into(), "Delivered".into())));
    let secret_url = &world.object("Secret", "r")["data"]["url"];
    assert!(secret_url.is_string(), "the copy's URL in the Secret");
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(45 * 60)),
        "a quarter of the hour left"
    );
}

#[tokio::test]
async fn a_namespace_at_its_share_of_the_pool_waits_and_is_woken_when_a_slot_is_kept_for_it() {
    let mut world = World::with_delivery_limits(Limits {
        total: 4,
        per_namespace: 1,
    });
    let mut wakes = world.ctx.deliveries.wakes().expect("the pool's wakes");
    let backend = world.backend("b", BackendType::Cmp);
    for _ in 0..2 {
        backend.on_get(Ok(remote(ReportState::Ready)));
        backend.on_download(Ok(url(chrono::Duration::minutes(1))));
    }
    stored(&mut world, ready(chrono::Duration::hours(1)));
    world.put(report_file(
        "s",
        merge_of(
            json!({"spec": {"storeRef": {"name": "bucket"}}}),
            ready(chrono::Duration::hours(1)),
        ),
    ));
    run(&world, "r").await;
    run(&world, "s").await;
    assert_eq!(
        delivered(&world, "s"),
        Some(("False".into(), "Queued".into())),
        "r holds the namespace's one slot"
    );
    let queued = world
        .condition("ReportFile", "s", "Delivered")
        .map(|c| c.2)
        .unwrap_or_default();
    assert!(
        queued.contains("at most 1 copies of a namespace run at once, 4 in all"),
        "{queued}"
    );
    world.journal.take();

    world.ctx.deliveries.run_copies().await;
    let woken: Vec<String> = vec![
        wakes.next().await.expect("a wake").name,
        wakes.next().await.expect("a wake").name,
    ];
    assert_eq!(
        woken,
        ["r", "s"],
        "r's end wakes r, and s, for which its slot is kept"
    );
    world.sync();
    run(&world, "s").await;
    world.ctx.deliveries.run_copies().await;
    assert!(
        world
            .journal
            .take()
            .contains(&"bucket copy reports/team/s/20260101-20260101/s.csv".to_string()),
        "s copied in the slot kept for it"
    );
}

#[tokio::test]
async fn a_copy_that_fails_keeps_the_backends_download_and_is_retried_after_its_backoff() {
    // The backend's URL expires in 5 s: while the copy fails, it is renewed as without a store.
    let mut world = to_copy(BackendType::Supplier, chrono::Duration::seconds(5));
    world
        .bucket
        .fail_next(StoreError::Unreachable("connection refused".into()));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "event Warning DeliveryFailed",
            "backend get r-1",
            "backend download r-1",
            "apply Secret/r",
            "apply status ReportFile/r",
            "event Normal UrlRefreshed",
        ]
    );
    assert_eq!(
        delivered(&world, "r"),
        Some(("False".into(), "Unreachable".into()))
    );
    assert_eq!(
        ready_condition(&world),
        ("True".into(), "Ready".into()),
        "the download works"
    );
    assert!(
        world.object("Secret", "r")["data"].get("location").is_none(),
        "no copy in the Secret"
    );
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(5)),
        "the copy's retry comes first"
    );

    // Woken again at once (by its own status write): the copy is not tried before its time.
    world.sync();
    run(&world, "r").await;
    assert_eq!(world.journal.take(), [] as [&str; 0], "backing off: no request");

    world.ctx.set_now(Utc::now() + chrono::Duration::seconds(6));
    world
        .bucket
        .fail_next(StoreError::Unreachable("connection refused".into()));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["bucket open bucket", "apply status ReportFile/r"],
        "tried again after 5 s; the same failure is not told again"
    );
    assert_eq!(
        world.object("ReportFile", "r")["status"]["delivery"]["attempts"],
        2
    );
}

#[tokio::test]
async fn an_upload_that_fails_in_the_pool_is_recorded_as_a_failed_copy() {
    let mut world = to_copy(BackendType::Cmp, chrono::Duration::hours(1));
    world
        .bucket
        .fail_next_of("copy", StoreError::Unauthorized("AccessDenied".into()));
    run(&world, "r").await;
    world.ctx.deliveries.run_copies().await;
    world.journal.take();
    world.sync();
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["event Warning DeliveryFailed", "apply status ReportFile/r"]
    );
    let rf = world.object("ReportFile", "r");
    assert_eq!(
        delivered(&world, "r"),
        Some(("False".into(), "Unauthorized".into()))
    );
    assert!(rf["status"]["delivery"]["lastFailureTime"].is_string());
    assert!(
        rf["status"]["delivery"]["location"].is_null(),
        "a failed copy records no object"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
}

#[tokio::test]
async fn a_delivered_copys_url_is_signed_again_without_asking_the_backend() {
    let mut world = World::new();
    world.backend("b", BackendType::Supplier);
    let in_a_minute = (Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let delivery = json!({"status": {"delivery": {"location": "s3://b/reports/team/r/20260101-20260101/r.csv", "size": 3, "sha256": "ab",
        "deliveredTime": Utc::now().to_rfc3339(), "attempts": 1, "urlExpiresAt": in_a_minute}}});
    stored(
        &mut world,
        merge_of(ready(chrono::Duration::minutes(1)), delivery),
    );
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "bucket presign reports/team/r/20260101-20260101/r.csv",
            "apply Secret/r",
            "apply status ReportFile/r",
            "event Normal UrlRefreshed",
        ]
    );
    assert_eq!(
        world.journal.note("UrlRefreshed").as_deref(),
        Some("wrote a fresh presigned URL before the URL expired")
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(45 * 60)));
}

#[tokio::test]
async fn a_report_past_its_deadline_fails_without_asking_the_backend() {
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.put(report_file(
        "r",
        merge_of(json!({"spec": {"activeDeadlineSeconds": 30}}), generating()),
    ));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["apply status ReportFile/r", "event Warning Failed"]
    );
    assert_eq!(
        ready_condition(&world),
        ("False".into(), "DeadlineExceeded".into())
    );
}

#[tokio::test]
async fn a_fusion_file_is_asked_for_again_and_streamed_into_the_store() {
    let mut world = World::new();
    world
        .backend("b", BackendType::Fusion)
        .on_stream(Ok(b"a,b\n".to_vec()));
    stored(&mut world, ready(chrono::Duration::hours(1)));
    run(&world, "r").await;
    world.ctx.deliveries.run_copies().await;
    let lines = world.journal.take();
    assert_eq!(
        lines,
        [
            "bucket open bucket",
            "patch ReportFile/r",
            "apply status ReportFile/r",
            "backend stream",
            "bucket copy stream reports/team/r/20260101-20260101/r.csv",
        ]
    );
    let stored = world
        .bucket
        .objects
        .lock()
        .expect("lock")
        .values()
        .next()
        .cloned();
    assert_eq!(stored.as_deref(), Some(&b"a,b\n"[..]));
}

#[tokio::test]
async fn a_missing_store_is_told_and_the_backends_download_kept() {
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.put(report_file(
        "r",
        merge_of(
            json!({"spec": {"storeRef": {"name": "nowhere"}}}),
            ready(chrono::Duration::hours(1)),
        ),
    ));
    world.put(our_secret());
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["event Warning DeliveryFailed", "apply status ReportFile/r"]
    );
    assert_eq!(
        delivered(&world, "r"),
        Some(("False".into(), "StoreNotFound".into()))
    );
}

/// `obj` being deleted, with `finalizers`.
fn deleting(mut obj: Value, finalizers: &[&str]) -> Value {
    obj["metadata"]["deletionTimestamp"] = json!(Utc::now().to_rfc3339());
    obj["metadata"]["finalizers"] = json!(finalizers);
    obj
}

#[tokio::test]
async fn deleting_a_connect_report_file_removes_its_report_then_lets_it_go() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Connect);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_delete(Ok(()));
    let rf = report_file("r", ready(chrono::Duration::hours(1)));
    world.put(deleting(rf, &["reporting.report-operator.io/connect-report"]));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "backend delete report r-1",
            "event Normal ReportRemoved",
            "patch ReportFile/r",
        ]
    );
    assert_eq!(
        world.object("ReportFile", "r")["metadata"]["finalizers"],
        json!([])
    );
}

#[tokio::test]
async fn deleting_a_report_file_deletes_its_copy_first_when_the_store_says_delete() {
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.store("bucket", json!({"retention": "Delete"}));
    let delivery = json!({"spec": {"storeRef": {"name": "bucket"}},
        "status": {"delivery": {"location": "s3://b/reports/team/r/x.csv", "sha256": "ab", "deliveredTime": Utc::now().to_rfc3339()}}});
    let rf = report_file("r", merge_of(ready(chrono::Duration::hours(1)), delivery));
    world.put(deleting(rf, &["reporting.report-operator.io/delivery"]));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "bucket delete reports/team/r/x.csv",
            "patch ReportFile/r"
        ]
    );
}

/// A READY CONNECT report `r-1` on backend `b` (the journal's `backend …` lines are its
/// calls), ReportFile `name` being deleted with the CONNECT finalizer; `extra` merged in.
fn connect_deleting(world: &mut World, name: &str, extra: Value) {
    let rf = report_file(name, merge_of(ready(chrono::Duration::hours(1)), extra));
    world.put(deleting(rf, &["reporting.report-operator.io/connect-report"]));
}

#[tokio::test]
async fn a_hand_made_report_file_never_removes_the_report_whose_id_it_was_given() {
    let mut world = World::new();
    world.backend("b", BackendType::Connect);
    // `r` was written by hand with spec.externalId r-1; no other ReportFile holds r-1 (its
    // maker may be gone, or another team's tool keeps it).
    connect_deleting(&mut world, "r", json!({"spec": {"externalId": "r-1"}}));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["event Warning ReportLeft", "patch ReportFile/r"],
        "the backend is not asked to remove it"
    );
    assert_eq!(
        world.journal.note("ReportLeft").as_deref(),
        Some(
            "report r-1 stays on CONNECT: its id was written into spec.externalId, and the operator removes only reports it made for the ReportFile"
        )
    );
    assert_eq!(
        world.object("ReportFile", "r")["metadata"]["finalizers"],
        json!([])
    );
}

#[tokio::test]
async fn the_report_file_that_made_a_report_removes_it_once_a_holder_being_deleted_too_is_gone() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Connect);
    backend.on_get(Ok(remote(ReportState::Ready)));
    backend.on_delete(Ok(()));
    connect_deleting(&mut world, "o", json!({"spec": {"externalId": "r-1"}}));
    connect_deleting(&mut world, "r", json!({"status": {"attempts": 1}}));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["apply status ReportFile/r"],
        "waits, saying why"
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let (_, reason, message) = world
        .condition("ReportFile", "r", "Ready")
        .expect("a Ready condition");
    assert_eq!(reason, "Deleting");
    assert!(
        message.contains("held by ReportFile team/o, also being deleted"),
        "{message}"
    );

    run(&world, "o").await;
    assert_eq!(
        world.journal.take(),
        ["event Warning ReportLeft", "patch ReportFile/o"],
        "the adopter leaves it to the one that made it"
    );
    world
        .api
        .remove("ReportFile", crate::controller::fixtures::NS, "o");
    world.sync();
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "backend delete report r-1",
            "event Normal ReportRemoved",
            "patch ReportFile/r",
        ]
    );
}

#[tokio::test]
async fn a_connect_backend_that_keeps_erroring_holds_a_deletion_only_for_the_grace() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Connect);
    backend.on_get(Err(BackendError::Transient {
        message: "HTTP 503".into(),
        retry_after: None,
    }));
    connect_deleting(&mut world, "r", json!({}));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["backend get r-1", "apply status ReportFile/r"]
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let (status, reason, message) = world
        .condition("ReportFile", "r", "Ready")
        .expect("a Ready condition");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Deleting"));
    assert!(
        message.starts_with("being deleted: looking up the report on CONNECT failed: transient backend error: HTTP 503; retried until ")
            && message.ends_with("then the finalizer reporting.report-operator.io/connect-report goes"),
        "{message}"
    );

    world.sync();
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["backend get r-1"],
        "the same wait is not written again"
    );

    world.ctx.set_now(Utc::now() + chrono::Duration::minutes(2));
    world.sync();
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "backend get r-1",
            "event Warning ReportLeft",
            "patch ReportFile/r"
        ]
    );
    let note = world.journal.note("ReportLeft").unwrap_or_default();
    assert!(
        note.ends_with("given up 120 s after the deletion: the finalizer goes"),
        "{note}"
    );
    assert_eq!(
        world.object("ReportFile", "r")["metadata"]["finalizers"],
        json!([])
    );
}

#[tokio::test]
async fn a_connect_backend_not_ready_holds_a_deletion_only_for_the_grace() {
    let mut world = World::new();
    world.broken_backend("b", BackendType::Connect);
    connect_deleting(&mut world, "r", json!({}));
    let action = run(&world, "r").await;
    assert_eq!(world.journal.take(), ["apply status ReportFile/r"]);
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    world.ctx.set_now(Utc::now() + chrono::Duration::seconds(119));
    world.sync();
    let action = run(&world, "r").await;
    assert_eq!(
        action,
        Action::requeue(Duration::from_secs(1)),
        "the retry comes at the grace's end"
    );
    world.journal.take();

    world.ctx.set_now(Utc::now() + chrono::Duration::seconds(121));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["event Warning ReportLeft", "patch ReportFile/r"]
    );
}

#[tokio::test]
async fn an_unreachable_store_holds_a_deletion_only_for_the_grace() {
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.store("bucket", json!({"retention": "Delete"}));
    let delivery = json!({"spec": {"storeRef": {"name": "bucket"}},
        "status": {"delivery": {"location": "s3://b/reports/team/r/x.csv", "sha256": "ab", "deliveredTime": Utc::now().to_rfc3339()}}});
    let rf = report_file("r", merge_of(ready(chrono::Duration::hours(1)), delivery));
    world.put(deleting(rf, &["reporting.report-operator.io/delivery"]));
    world
        .bucket
        .fail_next(StoreError::Unreachable("connection refused".into()));
    let action = run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        ["bucket open bucket", "apply status ReportFile/r"]
    );
    assert_eq!(action, Action::requeue(Duration::from_secs(5)));
    let (_, reason, message) = world
        .condition("ReportFile", "r", "Ready")
        .expect("a Ready condition");
    assert_eq!(reason, "Deleting");
    assert!(
        message.contains("the copy s3://b/reports/team/r/x.csv cannot be deleted yet"),
        "{message}"
    );

    world.ctx.set_now(Utc::now() + chrono::Duration::minutes(3));
    world
        .bucket
        .fail_next(StoreError::Unreachable("connection refused".into()));
    world.sync();
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "event Warning DeliveryCleanupSkipped",
            "patch ReportFile/r"
        ]
    );
}

/// A FAILED report, with the outcome conditions the operator writes.
fn failed() -> Value {
    let done = (Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cond = |type_: &str, status: &str| json!({"type": type_, "status": status, "reason": "Failed", "message": "COMMERCE failed the report", "lastTransitionTime": done});
    json!({"status": {"status": "FAILED", "externalId": "r-1", "completionTime": done,
        "conditions": [cond("Ready", "False"), cond("Complete", "False"), cond("Failed", "True")]}})
}

/// `status` as the operator writes it for generation 1: with `observedGeneration` on it and
/// its conditions.
fn observed(mut status: Value) -> Value {
    status["status"]["observedGeneration"] = json!(1);
    for c in status["status"]["conditions"]
        .as_array_mut()
        .into_iter()
        .flatten()
    {
        c["observedGeneration"] = json!(1);
    }
    status
}

/// A world with two reports that need nothing: `f` FAILED, `r` READY with its Secret and a
/// URL good for two hours.
fn at_rest() -> World {
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.put(report_file("f", observed(failed())));
    world.put(report_file("r", observed(ready(chrono::Duration::hours(2)))));
    world.put(our_secret());
    world
}

/// A restart reconciles every ReportFile: one that needs nothing (FAILED; READY with its
/// Secret in place and its URL good for long) makes no request at all, to the API server or
/// the backend, not even a look at its Secret (the Secret watch's cache says it is ours).
#[tokio::test]
async fn a_finished_report_that_needs_nothing_makes_no_request() {
    let world = at_rest();
    for name in ["f", "r"] {
        let action = run(&world, name).await;
        assert_eq!(world.journal.take(), [] as [&str; 0], "{name}: no request");
        assert!(action != Action::requeue(Duration::ZERO), "{name}: {action:?}");
    }
}

/// What a reconcile that needs nothing costs, in the fast tests' world (debug build unless
/// run with `--release`): `cargo test --lib -- --ignored --nocapture idle_reconcile_cost`.
/// It prints; it asserts no time.
#[tokio::test]
#[ignore = "a micro-benchmark: prints the cost of an idle reconcile"]
async fn idle_reconcile_cost() {
    let world = at_rest();
    const N: u32 = 10_000;
    for name in ["f", "r"] {
        let started = std::time::Instant::now();
        for _ in 0..N {
            run(&world, name).await;
        }
        let each = started.elapsed() / N;
        assert_eq!(world.journal.take(), [] as [&str; 0], "{name}: no request");
        eprintln!(
            "idle reconcile of a {} ReportFile: {each:?}",
            if name == "f" { "FAILED" } else { "READY" }
        );
    }
}

#[tokio::test]
async fn a_copy_that_never_completed_deletes_nothing_with_its_report_file() {
    // Its key may name another ReportFile's object: only what a completed copy recorded goes.
    let mut world = World::new();
    world.backend("b", BackendType::Cmp);
    world.store("bucket", json!({"retention": "Delete"}));
    let delivery = json!({"spec": {"storeRef": {"name": "bucket"}},
        "status": {"delivery": {"location": "s3://b/reports/team/other/x.csv", "attempts": 3,
            "lastFailureTime": Utc::now().to_rfc3339()}}});
    let rf = report_file("r", merge_of(ready(chrono::Duration::hours(1)), delivery));
    world.put(deleting(rf, &["reporting.report-operator.io/delivery"]));
    run(&world, "r").await;
    assert_eq!(world.journal.take(), ["patch ReportFile/r"]);
}

#[tokio::test]
async fn an_unpacked_archive_goes_object_by_object_as_recorded_whatever_the_store_says_now() {
    // The store switched to Store since; what the copy wrote is in the record, nothing under
    // a prefix is listed or deleted.
    let mut world = World::new();
    world.backend("b", BackendType::Connect);
    world.store(
        "bucket",
        json!({"retention": "Delete", "connectArchive": "Store"}),
    );
    let objects = [
        "s3://b/reports/team/r/report.csv",
        "s3://b/reports/team/r/summary.csv",
    ];
    let delivery = json!({"spec": {"storeRef": {"name": "bucket"}},
        "status": {"delivery": {"location": objects[0], "objects": objects, "connectArchive": "Extract",
            "sha256": "ab", "deliveredTime": Utc::now().to_rfc3339()}}});
    let rf = report_file("r", merge_of(ready(chrono::Duration::hours(1)), delivery));
    world.put(deleting(rf, &["reporting.report-operator.io/delivery"]));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "bucket open bucket",
            "bucket delete reports/team/r/report.csv",
            "bucket delete reports/team/r/summary.csv",
            "patch ReportFile/r"
        ]
    );
}
