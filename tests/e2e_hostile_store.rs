//! Hostile object stores and fat Secrets (issue "Safe in a shared cluster, part 2"), each
//! against an operator process of its own on the real control plane:
//!
//! - a ReportStore whose endpoint answers the bucket listing with a body that never ends: the
//!   operator reads at most its cap, and its peak memory stays bounded;
//! - one whose listing drips a byte a second: the probe ends at its timeout;
//! - one whose endpoint answers `403 SignatureDoesNotMatch` echoing the signed request (session
//!   token and signature included) in a 20 MiB body: the condition, the Events and the log
//!   hold a short, redacted excerpt;
//! - a ReportStore with no `endpoint` whose `region` smuggles a host (`x@127.0.0.2:PORT/`):
//!   refused at admission, and an object admitted before that rule existed reaches nothing (a
//!   sentinel socket sees no connection);
//! - 400 Secrets with 200 KiB of annotations each, which nothing reads: the operator's memory
//!   barely grows, because its Secret cache keeps only what it reads.
//!
//! Memory is read from `/proc/<pid>/status` (VmHWM: the peak; VmRSS: now).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use report_operator::api::{BackendType, ReportStore, find_condition};
use report_sim::SimConfig;

use common::e2e::World;
use common::fixtures;
use common::hostile_s3::{HostileS3, S3Mode, Sentinel, signature_of};
use common::hostile_suite::{MAX_MESSAGE_CHARS, Watchdog, create_secrets, memory_growth, mib};
use common::operator::memory_kib;
use common::{install_crds, stderr, wait_for};

/// How long a store's first probe may take to end in a condition: the probe's own limit
/// (30 s) and room for a busy machine.
const PROBE_DEADLINE: Duration = Duration::from_secs(90);
/// The operator's peak memory (VmHWM) with a hostile store: well under the chart's 256 MiB
/// limit. Without the caps, an endless listing took it past a gigabyte within seconds.
const PEAK_MEMORY_MIB: u64 = 100;
/// What 400 Secrets with 200 KiB of annotations each may add to the operator's memory.
const FAT_SECRETS_GROWTH_KIB: u64 = 5 * 1024;
const FAT_SECRETS: usize = 400;
const FAT_SECRET_ANNOTATION_BYTES: usize = 200 << 10;

/// A ReportStore `name` on `bucket` and its credentials Secret (with a session token
/// `token`), at `endpoint` or, without one, at AWS in `region`.
fn store_yaml(name: &str, bucket: &str, endpoint: Option<&str>, region: Option<&str>, token: &str) -> String {
    let mut spec = format!("  url: s3://{bucket}/reports\n  credentialsSecretRef:\n    name: {name}-s3\n");
    if let Some(endpoint) = endpoint {
        spec.push_str(&format!("  endpoint: {endpoint}\n"));
    }
    if let Some(region) = region {
        spec.push_str(&format!("  region: {region:?}\n"));
    }
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-s3\nstringData:\n  accessKeyId: AKIDHOSTILETEST\n  secretAccessKey: hostile-secret-key\n  sessionToken: {token}\n---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportStore\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// A session token that must never show up in a condition, an Event or the log.
fn marker() -> String {
    format!("hostile-session-token-{:016x}", rand::random::<u64>())
}

/// The Ready condition of ReportStore `name`, once it describes the latest spec.
async fn store_ready(world: &World, name: &str) -> Option<Condition> {
    let stores: Api<ReportStore> = Api::namespaced(world.client.clone(), &world.ns.name);
    let rs = stores.get(name).await.ok()?;
    let c = find_condition(&rs.status?.conditions, "Ready")?.clone();
    (c.observed_generation == rs.metadata.generation).then_some(c)
}

/// Waits until ReportStore `name` is Ready=False with `reason`; panics on Ready=True.
async fn store_refused(world: &World, name: &str, reason: &str) -> Condition {
    let what = format!(
        "ReportStore {name} Ready=False {reason} (operator log: {})",
        world.operator.log.display()
    );
    let c = wait_for(&what, PROBE_DEADLINE, || async {
        let c = store_ready(world, name).await?;
        assert!(c.status != "True", "ReportStore {name} is Ready: {c:?}");
        (c.reason == reason).then_some(c)
    })
    .await;
    eprintln!("ReportStore {name}: Ready=False {}: {}", c.reason, c.message);
    c
}

/// The notes of every Event in the test's namespace.
async fn event_notes(world: &World) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(world.client.clone(), &world.ns.name);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().filter_map(|e| e.note).collect())
        .unwrap_or_default()
}

/// The operator's peak memory (VmHWM) in MiB, with a watchdog that kills it above 1 GiB
/// so that a client which keeps an endless body cannot take the machine's memory.
struct Memory {
    pid: u32,
    watchdog: Watchdog,
}

impl Memory {
    fn watch(world: &World) -> Memory {
        let pid = world.operator.pid().expect("operator pid");
        Memory {
            pid,
            watchdog: Watchdog::start(pid, Arc::new(AtomicBool::new(false))),
        }
    }

    fn peak_mib(&self) -> f64 {
        let now = memory_kib(self.pid).map_or(0, |(hwm, _)| hwm);
        let peak = self.watchdog.peak_kib.load(Ordering::Relaxed).max(now);
        peak as f64 / 1024.0
    }

    fn check(&self, case: &str) {
        let killed = self.watchdog.killed_at_kib.load(Ordering::Relaxed);
        assert_eq!(
            killed,
            0,
            "{case}: the operator was killed by the watchdog at {} MiB",
            killed / 1024
        );
        let peak = self.peak_mib();
        eprintln!("{case}: operator peak memory (VmHWM) {peak:.1} MiB");
        assert!(
            peak < PEAK_MEMORY_MIB as f64,
            "{case}: peak memory {peak:.1} MiB (at most {PEAK_MEMORY_MIB} MiB expected)"
        );
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        self.watchdog.task.abort();
    }
}

/// A condition message says what is wrong, briefly, without the session token.
fn check_message(case: &str, message: &str, token: &str) {
    assert!(!message.trim().is_empty(), "{case}: empty message");
    assert!(
        !message.contains(token),
        "{case}: the message holds the session token: {message}"
    );
    assert!(
        message.chars().count() <= MAX_MESSAGE_CHARS,
        "{case}: a message of {} characters copies too much of the answer",
        message.chars().count()
    );
}

/// One ReportStore at the hostile endpoint in `mode`, with an operator of its own whose memory
/// is watched, once the store is Ready=False with `reason`.
struct HostileStore {
    s3: HostileS3,
    world: World,
    memory: Memory,
    /// The session token in the store's credentials.
    token: String,
    /// The store's Ready condition.
    ready: Condition,
}

impl HostileStore {
    async fn refused(case: &str, mode: S3Mode, reason: &str) -> HostileStore {
        let s3 = HostileS3::start().await;
        let world = World::start(&format!("hs-{}", mode.bucket()), SimConfig::default()).await;
        let memory = Memory::watch(&world);
        let token = marker();
        let name = mode.bucket();
        world.apply(&store_yaml(
            name,
            mode.bucket(),
            Some(&s3.endpoint()),
            None,
            &token,
        ));
        let started = Instant::now();
        let ready = store_refused(&world, name, reason).await;
        eprintln!("{case}: Ready=False after {:?}", started.elapsed());
        check_message(case, &ready.message, &token);
        HostileStore {
            s3,
            world,
            memory,
            token,
            ready,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_bucket_listing_is_read_only_up_to_its_cap() {
    let case = "endless listing";
    let HostileStore {
        s3, memory, ready: c, ..
    } = HostileStore::refused(case, S3Mode::Endless, "InvalidResponse").await;
    assert!(
        c.message.contains("1048576 bytes"),
        "{case}: the message does not name the cap: {}",
        c.message
    );
    let requests = s3.requests(S3Mode::Endless).max(1);
    eprintln!(
        "{case}: {requests} requests, {:.1} MiB sent per request",
        s3.bytes_sent(S3Mode::Endless) as f64 / requests as f64 / (1 << 20) as f64
    );
    memory.check(case);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dripping_bucket_listing_ends_with_the_probe_timeout() {
    let case = "dripping listing";
    let store = HostileStore::refused(case, S3Mode::Drip, "Unreachable").await;
    store.memory.check(case);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_error_bodies_are_cut_and_redacted() {
    let case = "403 SignatureDoesNotMatch echoing the request";
    let HostileStore {
        s3,
        world,
        memory,
        token,
        ready: c,
    } = HostileStore::refused(case, S3Mode::EchoError, "Unauthorized").await;
    let head = s3.last_head(S3Mode::EchoError);
    assert!(
        head.contains(&token),
        "{case}: the request did not carry the session token, so this case proves nothing:\n{head}"
    );
    let signature = signature_of(&head);
    assert!(
        signature.len() >= 32,
        "{case}: no signature in the request:\n{head}"
    );
    assert!(
        !c.message.contains(&signature),
        "{case}: the condition holds the request's signature: {}",
        c.message
    );
    assert!(
        c.message.contains("SignatureDoesNotMatch"),
        "{case}: the condition does not say what S3 said: {}",
        c.message
    );
    for note in event_notes(&world).await {
        assert!(
            !note.contains(&token) && !note.contains(&signature),
            "{case}: an Event holds the session token or signature: {note}"
        );
    }
    let log = world.operator.logs();
    assert!(
        !log.contains(&token) && !log.contains(&signature),
        "{case}: the operator log holds the session token or signature: {}",
        world.operator.log.display()
    );
    memory.check(case);
}

/// Relaxes the ReportStore CRD's rule on `spec.region`, as a CRD from before the rule was.
async fn crd_without_region_rule(client: &kube::Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "reportstores.reporting.report-operator.io";
    let crd = api.get(name).await.expect("ReportStore CRD");
    let mut value = serde_json::to_value(&crd).expect("CRD as JSON");
    for version in value["spec"]["versions"].as_array_mut().expect("versions") {
        let region = &mut version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["region"];
        if let Some(region) = region.as_object_mut() {
            region.remove("pattern");
            region.remove("x-kubernetes-validations");
        }
    }
    let crd: CustomResourceDefinition = serde_json::from_value(value).expect("CRD");
    api.replace(name, &PostParams::default(), &crd)
        .await
        .expect("replace the ReportStore CRD");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_cannot_aim_the_operator_at_another_host() {
    let case = "smuggled region";
    let sentinel = Sentinel::start("127.0.0.2").await;
    let world = World::start("hs-region", SimConfig::default()).await;
    let token = marker();
    let region = format!("x@{}/", sentinel.addr);
    let yaml = store_yaml("smuggled", "reports", None, Some(&region), &token);

    // Refused at admission, naming the field.
    let out = world.ns.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    let refusal = stderr(&out);
    assert!(
        !out.status.success() && refusal.contains("spec.region"),
        "{case}: region {region:?} was not refused at admission naming spec.region: {refusal}"
    );

    // An object admitted before the rule existed: relax the CRD, create it, restore the CRD.
    crd_without_region_rule(&world.client).await;
    wait_for(
        "the ReportStore admitted by the relaxed CRD",
        Duration::from_secs(30),
        || async {
            world
                .ns
                .kubectl_stdin(&["apply", "-f", "-"], &yaml)
                .status
                .success()
                .then_some(())
        },
    )
    .await;
    install_crds(&world.client).await;

    let c = store_refused(&world, "smuggled", "InvalidSpec").await;
    check_message(case, &c.message, &token);
    assert!(
        c.message.contains("region"),
        "{case}: the message does not name the region: {}",
        c.message
    );
    assert_eq!(
        sentinel.connections(),
        0,
        "{case}: the operator connected to {} (denied by its outbound policy)",
        sentinel.addr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fat_unrelated_secrets_stay_out_of_the_secret_cache() {
    let case = "400 Secrets with 200 KiB of annotations";
    let world = World::start("hs-secrets", SimConfig::default()).await;
    let pid = world.operator.pid().expect("operator pid");
    // Two backends: `ready` is Ready before the Secrets come (its client built, its probe
    // done); `sentinel` gets its credentials after them, so once it is Ready the operator's
    // Secret watch has brought every one of them.
    let manifest = |name: &str| {
        fixtures::backend(
            &world.sim,
            BackendType::Cmp,
            name,
            &fixtures::good_credentials(BackendType::Cmp),
            "",
        )
    };
    world.apply(&manifest("ready"));
    let sentinel = manifest("sentinel");
    let (credentials, backend) = sentinel.split_once("---\n").expect("Secret and ReportBackend");
    world.apply(backend);
    let ready = |name: &'static str, reason: &'static str| {
        let world = &world;
        async move {
            wait_for(
                &format!("ReportBackend {name} {reason}"),
                PROBE_DEADLINE,
                || async {
                    let backends = world.backends();
                    let rb = backends.get(name).await.ok()?;
                    let c = find_condition(&rb.status?.conditions, "Ready")?.clone();
                    (c.reason == reason).then_some(())
                },
            )
            .await
        }
    };
    ready("ready", "Authenticated").await;
    ready("sentinel", "CredentialsMissing").await;
    let before = memory_kib(pid).expect("operator memory");

    let started = Instant::now();
    let annotation = "x".repeat(FAT_SECRET_ANNOTATION_BYTES);
    let created = create_secrets(&world.secrets(), FAT_SECRETS, |i| Secret {
        metadata: ObjectMeta {
            name: Some(format!("fat-{i:04}")),
            labels: Some([("team".to_string(), "unrelated".to_string())].into()),
            annotations: Some([("example.com/blob".to_string(), annotation.clone())].into()),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    assert_eq!(created, FAT_SECRETS, "{case}: not every Secret was created");
    eprintln!("{case}: created in {:?}", started.elapsed());
    world.apply(credentials);
    ready("sentinel", "Authenticated").await;

    let after = memory_kib(pid).expect("operator memory");
    let (growth, readings) = memory_growth(before, after);
    eprintln!("{case}: {readings}");
    assert!(
        growth <= FAT_SECRETS_GROWTH_KIB,
        "{case}: the operator's memory grew by {:.1} MiB (at most {:.1} MiB expected)",
        mib(growth),
        mib(FAT_SECRETS_GROWTH_KIB)
    );
}
