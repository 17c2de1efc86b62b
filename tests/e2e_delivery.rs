//! Reports copied into a ReportStore, on the real control plane against a real S3-compatible
//! server (versitygw, `tests/common/s3.rs`): every backend's report lands in the bucket with
//! its size and SHA-256; the presigned URL works after the backend's own URL has expired;
//! a store that is down loses nothing; a 50 MB report is copied with bounded memory; a
//! SIGKILL in the middle of an upload leaves one complete object, and so does a copy whose
//! status was lost after its upload; FUSION files too large for a Secret are streamed into the
//! store; and deleting a ReportFile applies the store's retention.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::e2e::{World, text};
use common::fixtures::{self, sim_api};
use common::s3::S3Server;
use common::wait_for;
use report_operator::api::{BackendType, CONDITION_DELIVERED, ReportFile, ReportStore, find_condition};
use report_sim::SimConfig;
use sha2::{Digest, Sha256};

const DEADLINE: Duration = Duration::from_secs(120);
const BUCKET: &str = "reports";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A ONETIME generator of type `t` named `name` whose reports go to the ReportStore `store`.
fn stored_generator(t: BackendType, name: &str, backend: &str, store: &str) -> String {
    format!(
        "{}  storeRef:\n    name: {store}\n",
        fixtures::onetime(t, name, backend, &format!("Usage {name}"))
    )
}

/// The one ReportFile of `generator` once its `Delivered` condition is True.
async fn delivered(world: &World, generator: &str, deadline: Duration) -> ReportFile {
    let what = format!(
        "the report of {generator} Delivered (operator log: {})",
        world.operator.log.display()
    );
    wait_for(&what, deadline, || async {
        let rf = world.files_of(generator).await.into_iter().next()?;
        let c = find_condition(&rf.status.as_ref()?.conditions, CONDITION_DELIVERED)?;
        (c.status == "True").then_some(rf)
    })
    .await
}

/// The `Delivered` condition's (status, reason) of `generator`'s report, if set.
async fn delivered_condition(world: &World, generator: &str) -> Option<(String, String)> {
    let rf = world.files_of(generator).await.into_iter().next()?;
    let c = find_condition(&rf.status?.conditions, CONDITION_DELIVERED)?.clone();
    Some((c.status, c.reason))
}

/// The object behind a `s3://reports/<key>` location.
fn key_of(location: &str) -> String {
    location
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap_or_else(|| panic!("{location} is not in {BUCKET}"))
        .to_string()
}

/// Checks a delivered report: the object at its location has the size and SHA-256 the
/// status and the Secret say, and the Secret's URL downloads exactly those bytes.
async fn check_copy(world: &World, s3: &S3Server, rf: &ReportFile) -> Vec<u8> {
    let name = rf.metadata.name.clone().expect("name");
    let d = rf
        .status
        .as_ref()
        .and_then(|s| s.delivery.clone())
        .expect("status.delivery");
    let location = d.location.clone().expect("location");
    let object = s3.get(BUCKET, &key_of(&location)).await;
    assert_eq!(d.size, Some(object.len() as i64), "{name}: size in status");
    assert_eq!(
        d.sha256.as_deref(),
        Some(sha256_hex(&object).as_str()),
        "{name}: sha256 in status"
    );
    let data = world.secret_data(&name).await;
    assert_eq!(text(&data, "location"), location, "{name}: Secret location");
    assert_eq!(
        text(&data, "size"),
        object.len().to_string(),
        "{name}: Secret size"
    );
    assert_eq!(
        text(&data, "sha256"),
        sha256_hex(&object),
        "{name}: Secret sha256"
    );
    let url = text(&data, "url");
    assert!(
        url.starts_with(&s3.endpoint()),
        "{name}: the Secret's url is the copy's presigned URL"
    );
    let got = reqwest::get(&url).await.expect("GET presigned URL");
    assert!(
        got.status().is_success(),
        "{name}: presigned GET: {}",
        got.status()
    );
    assert_eq!(
        got.bytes().await.expect("body").as_ref(),
        object.as_slice(),
        "{name}: presigned download"
    );
    object
}

/// A bucket, this branch's CRDs, a world named `prefix`, the ReportStore `bucket` (with
/// `store_extra` in its spec), a backend of type `t` named `b` and a generator `g` of it
/// whose reports go to the store.
async fn stored_world(
    prefix: &str,
    config: SimConfig,
    store_extra: &str,
    t: BackendType,
    b: &str,
    g: &str,
) -> (S3Server, World) {
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let world = World::start(prefix, config).await;
    world.apply(&s3.manifest("bucket", BUCKET, store_extra));
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        b,
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&stored_generator(t, g, b, "bucket"));
    (s3, world)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_backends_report_lands_in_the_bucket_with_its_size_and_checksum() {
    let started = Instant::now();
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let world = World::start("e2e-deliver", SimConfig::default()).await;
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    for t in fixtures::ALL_TYPES {
        let b = fixtures::lower(t);
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &b,
            &fixtures::good_credentials(t),
            "",
        ));
        world.apply(&stored_generator(t, &format!("{b}-gen"), &b, "bucket"));
    }
    let mut keys = Vec::new();
    for t in fixtures::ALL_TYPES {
        let generator = format!("{}-gen", fixtures::lower(t));
        let rf = delivered(&world, &generator, DEADLINE).await;
        let object = check_copy(&world, &s3, &rf).await;
        let name = rf.metadata.name.clone().expect("name");
        // The simulator's reports name their backend (CONNECT's and RDE's come wrapped).
        let key = key_of(
            &rf.status
                .and_then(|s| s.delivery)
                .and_then(|d| d.location)
                .expect("location"),
        );
        // A FUSION report is a snapshot: its ReportFile carries no window (the dates only name it).
        let window = if t == BackendType::Fusion {
            "once"
        } else {
            "20261001-20261002"
        };
        assert!(
            key.starts_with(&format!("reports/{}/{generator}/{window}/{name}.", world.ns.name)),
            "{key}"
        );
        match t {
            BackendType::Connect => assert!(
                key.ends_with(".zip") && object.starts_with(b"PK"),
                "{key}: the ZIP as it is"
            ),
            BackendType::Rde => assert!(
                key.ends_with(".json.gz") && object.starts_with(&[0x1f, 0x8b]),
                "{key}: gzipped"
            ),
            // FUSION's license export is its own CSV.
            BackendType::Fusion => assert!(!object.is_empty(), "{key}"),
            _ => assert!(
                String::from_utf8_lossy(&object).contains(t.as_str()),
                "{key}: names its backend"
            ),
        }
        keys.push(key);
    }
    // One object per report, nothing else.
    let listed: Vec<String> = s3.objects(BUCKET).await.into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(listed, keys);
    // The store itself is Ready.
    let stores: kube::Api<ReportStore> = kube::Api::namespaced(world.client.clone(), &world.ns.name);
    let rs = stores.get("bucket").await.expect("ReportStore");
    let ready = find_condition(&rs.status.expect("status").conditions, "Ready")
        .expect("Ready")
        .clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Reachable")
    );
    // Metrics: one object per backend type, and their bytes.
    let metrics = world.operator.metrics().await;
    assert!(
        metrics.contains("report_operator_delivered_objects_total{type=\"SUPPLIER\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("report_operator_delivery_duration_seconds_count{type=\"FUSION\"} 1"),
        "{metrics}"
    );
    // Retention Keep (the default): deleting a ReportFile leaves its object.
    let files = world.files_of("cmp-gen").await;
    common::delete_ignore_missing(&world.files(), files[0].metadata.name.as_deref().expect("name")).await;
    wait_for("the CMP ReportFile gone", DEADLINE, || async {
        world.files_of("cmp-gen").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        s3.objects(BUCKET).await.len(),
        keys.len(),
        "retention Keep leaves the object"
    );
    eprintln!("five backends delivered and checked in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_loses_nothing_and_the_copy_outlives_the_backends_url() {
    let mut s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    s3.stop();
    // SUPPLIER links live 60 s; 3 s here, so that the test sees one expire.
    let mut config = SimConfig::default();
    config.supplier.url_lifetime_secs = 3;
    let world = World::start("e2e-deliver-down", config).await;
    let t = BackendType::Supplier;
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "sup",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&stored_generator(t, "sup-gen", "sup", "bucket"));

    // Down: the store and the report say so, and the Secret holds the backend's URL. The copy
    // is handed to the delivery pool first (Delivered False Copying), then fails.
    let (status, reason) = wait_for(
        "Delivered=False Unreachable on the report while the store is down",
        DEADLINE,
        || async {
            delivered_condition(&world, "sup-gen")
                .await
                .filter(|(s, r)| s == "False" && r == "Unreachable")
        },
    )
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Unreachable"));
    wait_for("the ReportStore Ready=False Unreachable", DEADLINE, || async {
        let stores: kube::Api<ReportStore> = kube::Api::namespaced(world.client.clone(), &world.ns.name);
        let c = find_condition(&stores.get("bucket").await.ok()?.status?.conditions, "Ready")?.clone();
        (c.status == "False" && c.reason == "Unreachable").then_some(())
    })
    .await;
    let rf = world
        .files_of("sup-gen")
        .await
        .into_iter()
        .next()
        .expect("ReportFile");
    let name = rf.metadata.name.clone().expect("name");
    let backend_url = text(&world.secret_data(&name).await, "url");
    assert!(
        backend_url.starts_with(&world.sim.backend_url(sim_api(t))) || backend_url.contains("/storage/"),
        "the backend's URL meanwhile"
    );
    assert!(
        reqwest::get(&backend_url)
            .await
            .expect("GET")
            .status()
            .is_success(),
        "the backend's URL works meanwhile"
    );
    // That URL expires.
    wait_for("the backend's URL to expire", Duration::from_secs(30), || async {
        (reqwest::get(&backend_url).await.ok()?.status() == reqwest::StatusCode::FORBIDDEN).then_some(())
    })
    .await;

    // Back: the report is copied, and the Secret's URL (the copy's) works.
    s3.restart().await;
    let rf = delivered(&world, "sup-gen", DEADLINE).await;
    let object = check_copy(&world, &s3, &rf).await;
    assert!(String::from_utf8_lossy(&object).contains("SUPPLIER"));
    assert_eq!(
        reqwest::get(&backend_url).await.expect("GET").status(),
        reqwest::StatusCode::FORBIDDEN,
        "the backend's URL is dead"
    );
    assert_eq!(s3.objects(BUCKET).await.len(), 1);
    let metrics = world.operator.metrics().await;
    assert!(
        metrics.contains("report_operator_delivery_failures_total{reason=\"unreachable\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_report_file_deletes_its_object_when_the_store_says_delete() {
    let (s3, world) = stored_world(
        "e2e-deliver-retention",
        SimConfig::default(),
        "  retention: Delete\n",
        BackendType::Cmp,
        "cmp",
        "cmp-gen",
    )
    .await;
    let rf = delivered(&world, "cmp-gen", DEADLINE).await;
    check_copy(&world, &s3, &rf).await;
    assert!(
        rf.metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == "reporting.report-operator.io/delivery"),
        "the finalizer"
    );
    assert_eq!(s3.objects(BUCKET).await.len(), 1);
    common::delete_ignore_missing(&world.files(), rf.metadata.name.as_deref().expect("name")).await;
    wait_for("the ReportFile gone", DEADLINE, || async {
        world.files_of("cmp-gen").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        s3.objects(BUCKET).await,
        Vec::new(),
        "retention Delete deletes the object with its ReportFile"
    );
}

/// The bound the book documents (docs/src/object-storage.md) for the operator's peak memory
/// while it copies a 50 MB report.
const PEAK_RSS_BOUND_MIB: u64 = 80;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mb_report_is_copied_with_bounded_memory_and_a_sigkill_mid_upload_leaves_one_object() {
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let config = SimConfig {
        padding_bytes: 50 * 1000 * 1000,
        ..Default::default()
    };
    let mut world = World::start("e2e-deliver-big", config).await;
    let t = BackendType::Supplier;
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "sup",
        &fixtures::good_credentials(t),
        "",
    ));

    // SIGKILL while the first report's upload is in flight: versitygw keeps the parts of an
    // unfinished multipart upload in its temporary directory until it completes.
    world.apply(&stored_generator(t, "killed", "sup", "bucket"));
    let uploads = s3.dir.path().join("data").join(BUCKET).join(".sgwtmp");
    wait_for("a multipart upload in progress", DEADLINE, || async {
        let parts = walk(&uploads).into_iter().filter(|p| p.is_file()).count();
        (parts > 0).then_some(())
    })
    .await;
    world.operator.kill();
    assert_eq!(
        s3.objects(BUCKET).await,
        Vec::new(),
        "killed before the upload completed"
    );
    world.operator.restart();
    let rf = delivered(&world, "killed", DEADLINE).await;
    check_copy(&world, &s3, &rf).await;
    let objects = s3.objects(BUCKET).await;
    assert_eq!(objects.len(), 1, "one object after the restart: {objects:?}");
    assert!(objects[0].1 > 50_000_000, "{objects:?}");

    // A fresh operator copies a second 50 MB report: its peak memory stays bounded.
    world.operator.kill();
    world.operator.restart();
    let started = Instant::now();
    world.apply(&stored_generator(t, "big", "sup", "bucket"));
    let rf = delivered(&world, "big", DEADLINE).await;
    let took = started.elapsed();
    let peak_mib = world.operator.vm_hwm_kib().expect("operator VmHWM") / 1024;
    let d = rf
        .status
        .as_ref()
        .and_then(|s| s.delivery.clone())
        .expect("delivery");
    eprintln!(
        "copied {} bytes; operator peak RSS {peak_mib} MiB; report READY and copied in {took:?}",
        d.size.unwrap_or_default()
    );
    assert!(d.size.unwrap_or_default() > 50_000_000);
    assert!(
        peak_mib < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak_mib} MiB, bound {PEAK_RSS_BOUND_MIB} MiB"
    );
    check_copy(&world, &s3, &rf).await;
}

/// The `report_operator_delivered_objects_total` of backend type `t`: uploads completed.
fn uploads(metrics: &str, t: BackendType) -> u64 {
    let line = format!(
        "report_operator_delivered_objects_total{{type=\"{}\"}} ",
        t.as_str()
    );
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(line.as_str())?.parse().ok())
        .unwrap_or(0)
}

/// An admission policy of the real API server that refuses, in namespace `ns` only, any
/// ReportFile status that records a copy's checksum: the state of an operator that crashed
/// after the upload and before the status write, held for as long as the policy stays. It
/// also refuses a ConfigMap named `policy-probe`, to tell when it is in force.
fn refuse_delivered_status(ns: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: {ns}-no-delivery\nspec:\n  failurePolicy: Fail\n  matchConstraints:\n    resourceRules:\n    - apiGroups: [reporting.report-operator.io]\n      apiVersions: ['*']\n      operations: [UPDATE]\n      resources: [reportfiles/status]\n    - apiGroups: ['']\n      apiVersions: [v1]\n      operations: [CREATE]\n      resources: [configmaps]\n  validations:\n  - expression: \"request.resource.resource == 'configmaps' ? object.metadata.name != 'policy-probe' : (!has(object.status) || !has(object.status.delivery) || !has(object.status.delivery.sha256))\"\n    message: the test refuses the copy's status\n---\napiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: {ns}-no-delivery\nspec:\n  policyName: {ns}-no-delivery\n  validationActions: [Deny]\n  matchResources:\n    namespaceSelector:\n      matchLabels:\n        kubernetes.io/metadata.name: {ns}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_whose_status_was_lost_after_the_upload_is_made_again_onto_the_same_object() {
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let world = World::start("e2e-deliver-lost", SimConfig::default()).await;
    let t = BackendType::Cmp;
    let policy = refuse_delivered_status(&world.ns.name);
    world.apply(&policy);
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "cmp",
        &fixtures::good_credentials(t),
        "",
    ));
    // The policy takes effect once the API server has loaded it, for both its rules at once:
    // when it refuses the probe ConfigMap, it refuses a status with a checksum too.
    wait_for("the admission policy in force", DEADLINE, || async {
        let out = world
            .ns
            .kubectl(&["create", "configmap", "policy-probe", "--dry-run=server"]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        err.contains("refuses the copy's status").then_some(())
    })
    .await;
    world.apply(&stored_generator(t, "lost", "cmp", "bucket"));
    // The object is uploaded, its status refused; the retry uploads again, onto the same key.
    wait_for(
        "a second upload of the report whose status was refused",
        DEADLINE,
        || async { (uploads(&world.operator.metrics().await, t) >= 2).then_some(()) },
    )
    .await;
    let objects = s3.objects(BUCKET).await;
    assert_eq!(objects.len(), 1, "two uploads, one object: {objects:?}");
    let rf = world
        .files_of("lost")
        .await
        .into_iter()
        .next()
        .expect("the ReportFile");
    assert!(
        rf.status
            .and_then(|s| s.delivery)
            .and_then(|d| d.sha256)
            .is_none(),
        "the refused status was not written"
    );
    // The status may be written again: the next copy records the one object.
    let out = world.ns.kubectl(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        &format!("{}-no-delivery", world.ns.name),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rf = delivered(&world, "lost", DEADLINE).await;
    check_copy(&world, &s3, &rf).await;
    let objects = s3.objects(BUCKET).await;
    assert_eq!(
        objects.len(),
        1,
        "one object after the copy was recorded: {objects:?}"
    );
}

/// A FUSION generator `name` of the data set `dataset` for the group the simulator knows, as
/// `format`, whose reports go to the ReportStore `store` (none: the Secret only).
fn fusion_generator(name: &str, dataset: &str, format: &str, store: Option<&str>) -> String {
    let scope = match dataset {
        "licenses" => "level: tenant\n      uuid: 53fd92c7-fbef-44fd-af76-d92334432ac9",
        _ => "level: group\n      uuid: aaf9dba1-9469-40fa-be50-22298d68010d",
    };
    let store = store
        .map(|s| format!("  storeRef:\n    name: {s}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: fus\n  commonName: {name}\n  eventType: ONETIME\n  format: {format}\n  parameters:\n    dataset: {dataset}\n    scope:\n      {scope}\n{store}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fusion_files_too_large_for_a_secret_are_streamed_into_the_store() {
    // 20 MB of padding (whitespace) after each file and SDR answer: a license export's
    // answer is then 27 MB of base64 inside JSON.
    let padding = 20 * 1000 * 1000;
    let config = SimConfig {
        padding_bytes: padding,
        ..Default::default()
    };
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let world = World::start("e2e-deliver-fusion", config).await;
    let t = BackendType::Fusion;
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "fus",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fusion_generator("licenses", "licenses", "CSV", Some("bucket")));
    world.apply(&fusion_generator("phones", "phoneUsage", "CSV", Some("bucket")));
    world.apply(&fusion_generator(
        "products",
        "productUsage",
        "JSON",
        Some("bucket"),
    ));
    world.apply(&fusion_generator("unstored", "licenses", "CSV", None));

    // The license export, decoded as it arrived: the CSV and its padding.
    let rf = delivered(&world, "licenses", DEADLINE).await;
    let object = check_copy(&world, &s3, &rf).await;
    assert!(object.len() as u64 > padding, "{} bytes", object.len());
    let csv = String::from_utf8(object).expect("UTF-8");
    assert!(
        csv.starts_with("name,ms_assigned,ms_used,sip_assigned"),
        "the license CSV: {:?}",
        &csv[..80.min(csv.len())]
    );
    let data = world
        .secret_data(rf.metadata.name.as_deref().expect("name"))
        .await;
    assert!(!data.contains_key("content"), "no Secret holds a file this large");
    assert!(
        text(&data, "fileName").starts_with("licenses_tenant_53fd92c7"),
        "the seed's file name"
    );
    // A phone usage SDR as CSV, converted row by row from a 20 MB answer.
    let rf = delivered(&world, "phones", DEADLINE).await;
    let csv = String::from_utf8(check_copy(&world, &s3, &rf).await).expect("UTF-8");
    assert!(
        csv.starts_with("distributor,reseller,tenant,subscription,group,username,phoneNumber\r\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 5, "a header and four users: {csv}");
    // A product usage SDR as JSON: the answer as it came.
    let rf = delivered(&world, "products", DEADLINE).await;
    let json = check_copy(&world, &s3, &rf).await;
    assert!(json.len() as u64 > padding, "{} bytes", json.len());
    let doc: serde_json::Value = serde_json::from_slice(&json).expect("the SDR is JSON");
    assert_eq!(doc["productUsages"].as_array().map(Vec::len), Some(3));
    // Without a store, the same license export cannot be kept: TooLarge, as before.
    let what = "the unstored license report failed TooLarge";
    wait_for(what, DEADLINE, || async {
        let rf = world.files_of("unstored").await.into_iter().next()?;
        let ready = find_condition(&rf.status?.conditions, "Ready")?.clone();
        (ready.reason == "TooLarge").then_some(())
    })
    .await;
    let peak_mib = world.operator.vm_hwm_kib().expect("operator VmHWM") / 1024;
    eprintln!("FUSION files of over {padding} bytes streamed; operator peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < PEAK_RSS_BOUND_MIB,
        "peak RSS {peak_mib} MiB, bound {PEAK_RSS_BOUND_MIB} MiB"
    );
}

/// Every path under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

/// The operator's count of calls to the backend for `operation` (all types and codes).
fn backend_calls(metrics: &str, operation: &str) -> u64 {
    let wanted = format!("operation=\"{operation}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("report_operator_backend_calls_total{") && l.contains(&wanted))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_presigned_url_is_reminted_before_it_expires_without_asking_the_backend() {
    // The shortest lifetime: re-minted in its last quarter, 45 s after it was signed.
    let lifetime = "  presignedUrlLifetimeSeconds: 60\n";
    let (s3, world) = stored_world(
        "e2e-deliver-remint",
        SimConfig::default(),
        lifetime,
        BackendType::Supplier,
        "sup",
        "sup-gen",
    )
    .await;
    let rf = delivered(&world, "sup-gen", DEADLINE).await;
    let name = rf.metadata.name.clone().expect("name");
    check_copy(&world, &s3, &rf).await;
    let first = world.secret_data(&name).await;
    let downloads = backend_calls(&world.operator.metrics().await, "download");
    assert!(downloads >= 1, "the copy asked the backend for the file");

    // On request, at once. (Two URLs signed within the same second are the same URL, so
    // the status says when the request was served.)
    let out = world.ns.kubectl(&[
        "annotate",
        "--overwrite",
        &format!("reportfile/{name}"),
        "reporting.report-operator.io/refresh-url=1",
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    wait_for("the refresh-url annotation served", DEADLINE, || async {
        let s = world.files().get(&name).await.ok()?.status?;
        (s.last_url_refresh.as_deref() == Some("1")).then_some(())
    })
    .await;
    let second = world.secret_data(&name).await;
    assert!(
        reqwest::get(text(&second, "url"))
            .await
            .expect("GET")
            .status()
            .is_success()
    );
    // Before it expires, by itself: a later expiry.
    let expiry = |data: &BTreeMap<String, Vec<u8>>| {
        chrono::DateTime::parse_from_rfc3339(&text(data, "expiresAt")).expect("expiresAt")
    };
    let third = wait_for(
        "a re-minted URL before the 60-second one expires",
        Duration::from_secs(90),
        || async {
            let data = world.secret_data(&name).await;
            (expiry(&data) > expiry(&second)).then_some(data)
        },
    )
    .await;
    let expires = chrono::DateTime::parse_from_rfc3339(&text(&second, "expiresAt")).expect("expiresAt");
    assert!(chrono::Utc::now() < expires, "re-minted before {expires}");
    let got = reqwest::get(text(&third, "url")).await.expect("GET");
    assert!(got.status().is_success(), "{}", got.status());
    assert_eq!(text(&third, "sha256"), text(&first, "sha256"));
    assert_eq!(
        backend_calls(&world.operator.metrics().await, "download"),
        downloads,
        "re-minting asks the backend nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_zip_is_unpacked_when_the_store_says_extract() {
    let extract = "  connectArchive: Extract\n  retention: Delete\n";
    let (s3, world) = stored_world(
        "e2e-deliver-unzip",
        SimConfig::default(),
        extract,
        BackendType::Connect,
        "con",
        "con-gen",
    )
    .await;
    let rf = delivered(&world, "con-gen", DEADLINE).await;
    let object = check_copy(&world, &s3, &rf).await;
    let name = rf.metadata.name.clone().expect("name");
    let stem = format!("reports/{}/con-gen/20261001-20261002/{name}", world.ns.name);
    let keys: Vec<String> = s3.objects(BUCKET).await.into_iter().map(|(k, _)| k).collect();
    // The simulator's CONNECT ZIP: the report and its summary.
    assert_eq!(
        keys,
        [format!("{stem}/report.json"), format!("{stem}/summary.json")]
    );
    let location = rf
        .status
        .and_then(|s| s.delivery)
        .and_then(|d| d.location)
        .expect("location");
    assert_eq!(location, format!("s3://{BUCKET}/{stem}/report.json"));
    assert!(
        String::from_utf8_lossy(&object).contains("CONNECT"),
        "the report itself, unpacked"
    );
    // Retention Delete takes every file of the archive.
    common::delete_ignore_missing(&world.files(), &name).await;
    wait_for("the ReportFile gone", DEADLINE, || async {
        world.files_of("con-gen").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(s3.objects(BUCKET).await, Vec::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_store_credentials_show_on_the_store_and_the_report_until_fixed() {
    let s3 = S3Server::start(&[BUCKET]).await;
    common::install_crds(&common::control_plane().await.client().await).await;
    let world = World::start("e2e-deliver-creds", SimConfig::default()).await;
    let t = BackendType::Cmp;
    let wrong = s3
        .manifest("bucket", BUCKET, "")
        .replace(common::s3::SECRET_KEY, "not-the-secret");
    world.apply(&wrong);
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "cmp",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&stored_generator(t, "cmp-gen", "cmp", "bucket"));
    // The copy is handed to the delivery pool first (Delivered False Queued or Copying).
    let (_, reason) = wait_for("Delivered=False on the report", DEADLINE, || async {
        delivered_condition(&world, "cmp-gen")
            .await
            .filter(|(s, r)| s == "False" && !matches!(r.as_str(), "Queued" | "Copying"))
    })
    .await;
    assert_eq!(reason, "Unauthorized");
    let stores: kube::Api<ReportStore> = kube::Api::namespaced(world.client.clone(), &world.ns.name);
    let message = wait_for("the ReportStore Ready=False Unauthorized", DEADLINE, || async {
        let c = find_condition(&stores.get("bucket").await.ok()?.status?.conditions, "Ready")?.clone();
        (c.status == "False" && c.reason == "Unauthorized").then_some(c.message)
    })
    .await;
    assert!(!message.contains("not-the-secret"), "{message}");
    // The report is READY with the backend's URL meanwhile.
    let rf = world
        .files_of("cmp-gen")
        .await
        .into_iter()
        .next()
        .expect("ReportFile");
    assert_eq!(
        rf.status.as_ref().and_then(|s| s.status),
        Some(report_operator::api::FileState::Ready)
    );
    let url = text(
        &world
            .secret_data(rf.metadata.name.as_deref().expect("name"))
            .await,
        "url",
    );
    assert!(
        !url.starts_with(&s3.endpoint()),
        "the backend's URL until the copy is made"
    );
    // Fixed: the store becomes Ready and the report is copied.
    world.apply(&s3.manifest("bucket", BUCKET, ""));
    let rf = delivered(&world, "cmp-gen", DEADLINE).await;
    check_copy(&world, &s3, &rf).await;
    wait_for("the ReportStore Ready=True", DEADLINE, || async {
        let c = find_condition(&stores.get("bucket").await.ok()?.status?.conditions, "Ready")?.clone();
        (c.status == "True").then_some(())
    })
    .await;
}
