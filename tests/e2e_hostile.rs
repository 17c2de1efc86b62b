//! The hostile-tenant suite (issue "Safe in a shared cluster"): one operator process watching
//! every namespace, tenants that misbehave each in a namespace of their own (hostile HTTP
//! servers behind their ReportBackends, extreme values in their CRs, a foreign Secret where a
//! report's Secret would go, backends aimed at the metadata service and the API server, a
//! thousand big unrelated Secrets), and a well-behaved neighbour whose reports must still be
//! made meanwhile. Throughout, the operator must keep running (same PID) within the chart's
//! memory limit, and each hostile object must get a condition that says what is wrong.
//!
//! All cases run at once against the one operator, in one test, so that they also contend
//! with each other. A failed expectation is collected, not raised at once, so that one run
//! lists every failure; the test fails at the end when any was collected.
//!
//! Safety: nothing here sends traffic outside 127.0.0.0/8. The case aimed at the cloud
//! metadata address runs only when the operator has an outbound policy (`run --help` lists
//! `--outbound-allow-cidr`); redirects to it are safe because the operator never follows
//! redirects. A watchdog kills the operator if its memory passes [`WATCHDOG_KILL_MIB`], so
//! that an operator which buffers an endless body cannot take the machine's memory.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use report_operator::api::{BackendType, FileState, find_condition};
use report_sim::{SimConfig, SimServer};

use common::fixtures::{self, ALL_TYPES, lower};
use common::hostile::{HostileServer, Mode};
use common::hostile_suite::{
    FinalCheck, Findings, Suite, Watchdog, backend_yaml, connect_credentials, create_secrets,
    has_outbound_policy, log_tail, memory_growth, mib, note, sim_backend,
};
use common::operator::{Operator, memory_kib};
use common::{ControlPlane, TestNamespace, control_plane};

/// The outbound policy of the operator under test: only loopback, plain HTTP allowed (the
/// simulators and the hostile server listen on http://127.0.0.1). For a local run against a
/// binary that does not have these flags yet, empty the list.
const OPERATOR_FLAGS: &[&str] = &["--outbound-allow-cidr", "127.0.0.1/32", "--outbound-allow-http"];

// The Ready reasons each hostile object is expected to end with.
/// An answer larger than the operator reads (endless body, 50 MiB JSON).
const REASON_TOO_LARGE: &str = "InvalidResponse";
/// An answer that is not the JSON it should be.
const REASON_MALFORMED: &str = "InvalidResponse";
/// An answer that drips in too slowly: a timeout.
const REASON_TOO_SLOW: &str = "Unreachable";
/// A 500 with a 20 MiB body: too large, or a server error.
const REASONS_HUGE_ERROR: &[&str] = &["InvalidResponse", "Unreachable"];
/// A redirect answer to a probe: never followed, never Authenticated.
const REASONS_REDIRECT: &[&str] = &["InvalidResponse", "Unreachable"];
/// A redirect to the metadata service: the same, or refused for its destination.
const REASONS_REDIRECT_METADATA: &[&str] = &["InvalidResponse", "Unreachable", "DestinationDenied"];
/// A backend URL at the metadata service or the Kubernetes API server.
const REASON_DESTINATION_DENIED: &str = "DestinationDenied";
/// A PERIODIC generator whose backfill starts in year 1.
const REASON_BACKFILL_TOO_LONG: &str = "BackfillTooLong";
/// A report whose Secret name is taken by a Secret the operator does not own.
const REASON_SECRET_CONFLICT: &str = "SecretConflict";
/// Ready reasons that only say "not yet", not what is wrong.
const TRANSIENT_REASONS: &[&str] = &[
    "Pending",
    "InProgress",
    "ReportInProgress",
    "Queued",
    "RateLimited",
    "BackendNotReady",
];

/// The fields admission must name when it refuses the largest integers and 5,000 organizations.
const FIELD_ACTIVE_DEADLINE: &str = "activeDeadlineSeconds";
const FIELD_STARTING_DEADLINE: &str = "startingDeadlineSeconds";
const FIELD_ORGANIZATIONS: &str = "organizations";
const ORGANIZATIONS: usize = 5000;
/// ReportFiles one generator may have at most, should admission let 5,000 organizations in.
const FILES_PER_GENERATOR_CAP: usize = 1000;

/// The chart's memory limit: the operator's peak (VmHWM) must stay under it.
const MEMORY_LIMIT_MIB: u64 = 256;
/// What 1,000 unrelated 100 KiB Secrets may add to the operator's peak memory.
const SECRETS_GROWTH_MIB: u64 = 30;
const UNRELATED_SECRETS: usize = 1000;
const UNRELATED_SECRET_BYTES: usize = 100 << 10;

/// How long a hostile backend may take to be found out; the slow ones (a 30 s request
/// timeout, retried) longer.
const BACKEND_DEADLINE: Duration = Duration::from_secs(60);
const SLOW_BACKEND_DEADLINE: Duration = Duration::from_secs(150);
/// How long a condition on a generator or report may take.
const CONDITION_DEADLINE: Duration = Duration::from_secs(60);
/// How long a healthy report may take while the hostile cases run.
const REPORT_DEADLINE: Duration = Duration::from_secs(90);

/// The ReportFile of a [`fixtures::onetime`] generator named `generator`.
fn onetime_file_name(generator: &str) -> String {
    format!("{generator}-20261001-20261002")
}

/// A CONNECT and a FUSION backend at the hostile server in `mode`: each must be refused.
async fn hostile_backends(s: Arc<Suite>, ns: String, mode: Mode) {
    let case = format!("hostile server, {}", mode.name());
    let url = s.hostile.url(mode);
    let connect = connect_credentials(&s.marker);
    let connect: Vec<(&str, &str)> = connect.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let yaml = format!(
        "{}---\n{}",
        backend_yaml("connect", BackendType::Connect, &url, &connect),
        backend_yaml(
            "fusion",
            BackendType::Fusion,
            &url,
            &[("username", "hostile-user"), ("password", &s.marker)]
        )
    );
    if let Err(e) = s.apply(&ns, &yaml).await {
        return s.findings.fail(&case, format!("kubectl apply failed: {e}"));
    }
    let (expected, deadline): (&[&str], Duration) = match mode {
        Mode::Endless => (&[REASON_TOO_LARGE], SLOW_BACKEND_DEADLINE),
        Mode::HugeJson => (&[REASON_TOO_LARGE], BACKEND_DEADLINE),
        Mode::Drip => (&[REASON_TOO_SLOW], SLOW_BACKEND_DEADLINE),
        Mode::Malformed => (&[REASON_MALFORMED], BACKEND_DEADLINE),
        Mode::HugeError => (REASONS_HUGE_ERROR, BACKEND_DEADLINE),
        Mode::RedirectLoop => (REASONS_REDIRECT, BACKEND_DEADLINE),
        Mode::RedirectMetadata => (REASONS_REDIRECT_METADATA, BACKEND_DEADLINE),
    };
    futures::join!(
        s.expect_backend_refused(&case, &ns, "connect", expected, deadline),
        s.expect_backend_refused(&case, &ns, "fusion", expected, deadline),
    );
}

/// A CONNECT backend aimed at a destination the outbound policy denies.
async fn denied_destination(s: Arc<Suite>, ns: String, case: &'static str, url: String) {
    let connect = connect_credentials(&s.marker);
    let connect: Vec<(&str, &str)> = connect.iter().map(|(k, v)| (*k, v.as_str())).collect();
    if let Err(e) = s
        .apply(&ns, &backend_yaml("denied", BackendType::Connect, &url, &connect))
        .await
    {
        return s.findings.fail(case, format!("kubectl apply failed: {e}"));
    }
    s.expect_backend_refused(
        case,
        &ns,
        "denied",
        &[REASON_DESTINATION_DENIED],
        BACKEND_DEADLINE,
    )
    .await;
}

/// The Kubernetes API server's URL from the kubeconfig, when it is on loopback.
fn api_server_url(cp: &ControlPlane) -> Option<String> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cp.kubeconfig).ok()?;
    let server = kubeconfig.clusters.first()?.cluster.as_ref()?.server.clone()?;
    let host = url::Url::parse(&server)
        .ok()?
        .host_str()?
        .trim_matches(['[', ']'])
        .to_string();
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback.then_some(server)
}

/// ONETIME reports of every backend type next to the hostile tenants: all must become READY.
async fn neighbour(s: Arc<Suite>, ns: String) {
    let case = "well-behaved neighbour";
    for t in ALL_TYPES {
        let b = lower(t);
        let yaml = format!(
            "{}\n---\n{}",
            sim_backend(&s, t),
            fixtures::onetime(t, &format!("{b}-once"), &b, "Neighbour report")
        );
        if let Err(e) = s.apply(&ns, &yaml).await {
            return s.findings.fail(case, format!("kubectl apply failed: {e}"));
        }
    }
    let started = Instant::now();
    let waits = ALL_TYPES.map(|t| {
        let s = s.clone();
        let ns = ns.clone();
        async move {
            // By label: an RDE report's name comes from the platform's id.
            let name = format!("{}-once", lower(t));
            let label =
                ListParams::default().labels(&format!("reporting.report-operator.io/generator={name}"));
            let last: Mutex<Option<String>> = Mutex::new(None);
            let state = s
                .poll(REPORT_DEADLINE, || async {
                    let rf = s.files(&ns).list(&label).await.ok()?.items.into_iter().next()?;
                    let status = rf.status?;
                    *last.lock().expect("last") = find_condition(&status.conditions, "Ready")
                        .map(|c| format!("{}: {}", c.reason, c.message));
                    status.status.filter(|f| f.is_finished())
                })
                .await;
            match state {
                Some(FileState::Ready) => {
                    note(case, format!("{t:?} report READY after {:?}", started.elapsed()))
                }
                other => s.findings.fail(
                    case,
                    format!(
                        "{t:?} report of {name} not READY {}: {other:?}, last Ready: {:?}",
                        s.ended(REPORT_DEADLINE),
                        last.lock().expect("last")
                    ),
                ),
            }
        }
    });
    futures::future::join_all(waits).await;
}

/// PERIODIC generators whose daily backfill starts in year 1 (refused at admission, naming
/// startDate) and in 1970 (admitted, then refused by the operator: far more windows than it
/// works through): no report made.
async fn backfill_from_year_one(s: Arc<Suite>, ns: String) {
    let case = "PERIODIC from 0001-01-01";
    let generator = |name: &str, start: &str| {
        format!(
            "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: cmp\n  commonName: Since year one\n  eventType: PERIODIC\n  format: JSON\n  parameters:\n    startDate: \"{start}\"\n    period: P1D\n"
        )
    };
    if let Err(e) = s.apply(&ns, &sim_backend(&s, BackendType::Cmp)).await {
        return s
            .findings
            .fail(case, format!("kubectl apply of the backend failed: {e}"));
    }
    match s.apply(&ns, &generator("year-one", "0001-01-01T00:00:00Z")).await {
        Ok(_) => s.findings.fail(
            case,
            "a startDate in year 1 was admitted (expected a refusal naming startDate)".to_string(),
        ),
        Err(e) => {
            note(case, format!("year 1 refused: {}", e.trim()));
            s.findings.check(case, e.contains("startDate"), || {
                format!("the refusal does not name startDate: {e}")
            });
        }
    }
    if let Err(e) = s
        .apply(&ns, &generator("since-year-one", "1970-01-01T00:00:00Z"))
        .await
    {
        return s.findings.fail(
            case,
            format!(
                "kubectl apply failed (expected admission, then Ready=False {REASON_BACKFILL_TOO_LONG}): {e}"
            ),
        );
    }
    let last: Mutex<Option<String>> = Mutex::new(None);
    let outcome = s
        .poll(CONDITION_DEADLINE, || async {
            let files = s.file_count(&ns).await;
            if files > 0 {
                return Some(Err(format!(
                    "{files} ReportFiles created for a backfill from year 1 (expected none)"
                )));
            }
            let g = s.generators(&ns).get("since-year-one").await.ok()?;
            let c = find_condition(&g.status?.conditions, "Ready")?.clone();
            *last.lock().expect("last") = Some(format!("Ready={} {}: {}", c.status, c.reason, c.message));
            (c.status == "False" && c.reason == REASON_BACKFILL_TOO_LONG).then_some(Ok(c))
        })
        .await;
    match outcome {
        Some(Ok(c)) => {
            s.check_message(case, "ReportGenerator since-year-one", &c.message);
            s.finals.lock().expect("finals").push(FinalCheck::AtMostFiles {
                case: case.to_string(),
                ns,
                max: 0,
            });
        }
        Some(Err(e)) => {
            s.findings.fail(
                case,
                format!("{e}; generator Ready: {:?}", last.lock().expect("last")),
            );
            // Stop the flood of reports from loading the rest of the suite.
            let _ = s
                .generators(&ns)
                .delete("since-year-one", &DeleteParams::default())
                .await;
        }
        None => s.findings.fail(
            case,
            format!(
                "no Ready=False {REASON_BACKFILL_TOO_LONG} {}; last seen: {:?}",
                s.ended(CONDITION_DEADLINE),
                last.lock().expect("last")
            ),
        ),
    }
}

/// ONETIME generators for years 0001 to 9999: no crash, and a condition that says what is
/// wrong (or a refusal at admission that does).
async fn dates_at_the_ends_of_time(s: Arc<Suite>, ns: String) {
    let case = "ONETIME from 0001 to 9999";
    let backends = format!(
        "{}\n---\n{}",
        sim_backend(&s, BackendType::Cmp),
        sim_backend(&s, BackendType::Supplier)
    );
    if let Err(e) = s.apply(&ns, &backends).await {
        return s
            .findings
            .fail(case, format!("kubectl apply of the backends failed: {e}"));
    }
    let checks = [BackendType::Cmp, BackendType::Supplier].map(|t| {
        let s = s.clone();
        let ns = ns.clone();
        async move {
            let name = format!("years-{}", lower(t));
            let yaml = fixtures::onetime(t, &name, &lower(t), "End of time")
                .replace("2026-10-01T00:00:00Z", "0001-01-01T00:00:00Z")
                .replace("2026-10-02T23:59:59Z", "9999-12-31T23:59:59Z");
            if let Err(e) = s.apply(&ns, &yaml).await {
                note(case, format!("{name} refused at admission: {}", e.trim()));
                s.findings.check(case, !e.trim().is_empty(), || {
                    format!("{name} refused without a message")
                });
                return;
            }
            let label = format!("reporting.report-operator.io/generator={name}");
            let outcome = s
                .poll(CONDITION_DEADLINE, || async {
                    let g = s.generators(&ns).get(&name).await.ok()?;
                    if let Some(c) = g
                        .status
                        .as_ref()
                        .and_then(|st| find_condition(&st.conditions, "Ready"))
                        && c.status == "False"
                        && !TRANSIENT_REASONS.contains(&c.reason.as_str())
                    {
                        return Some(Ok(format!("ReportGenerator {name}: {}: {}", c.reason, c.message)));
                    }
                    let files = s
                        .files(&ns)
                        .list(&ListParams::default().labels(&label))
                        .await
                        .ok()?;
                    for rf in files.items {
                        let status = rf.status.unwrap_or_default();
                        if status.status == Some(FileState::Ready) {
                            return Some(Err(format!(
                                "its ReportFile {} became READY",
                                rf.metadata.name.unwrap_or_default()
                            )));
                        }
                        if let Some(c) = find_condition(&status.conditions, "Ready")
                            && c.status == "False"
                            && !TRANSIENT_REASONS.contains(&c.reason.as_str())
                        {
                            return Some(Ok(format!(
                                "ReportFile {}: {}: {}",
                                rf.metadata.name.unwrap_or_default(),
                                c.reason,
                                c.message
                            )));
                        }
                    }
                    None
                })
                .await;
            match outcome {
                Some(Ok(said)) => {
                    note(case, &said);
                    let message = said.splitn(3, ": ").nth(2).unwrap_or_default();
                    s.check_message(case, &name, message);
                }
                Some(Err(e)) => s.findings.fail(
                    case,
                    format!("{name}: {e}; expected a condition that says what is wrong"),
                ),
                None => s.findings.fail(
                    case,
                    format!(
                        "{name}: no condition saying what is wrong {}",
                        s.ended(CONDITION_DEADLINE)
                    ),
                ),
            }
        }
    });
    futures::future::join_all(checks).await;
}

/// The largest integers in the deadline fields: refused at admission, naming the field. If
/// admitted, they stay, and the PID check at the end shows whether the operator survived them.
async fn largest_integers(s: Arc<Suite>, ns: String) {
    let case = "largest integers";
    if let Err(e) = s.apply(&ns, &sim_backend(&s, BackendType::Cmp)).await {
        return s
            .findings
            .fail(case, format!("kubectl apply of the backend failed: {e}"));
    }
    let active = fixtures::onetime(BackendType::Cmp, "huge-active-deadline", "cmp", "Huge deadline").replace(
        "  eventType: ONETIME\n",
        "  eventType: ONETIME\n  activeDeadlineSeconds: 9223372036854775807\n",
    );
    let starting = "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: huge-starting-deadline\nspec:\n  backendRef:\n    name: cmp\n  commonName: Huge starting deadline\n  eventType: PERIODIC\n  format: JSON\n  parameters:\n    period: P1D\n  schedule:\n    startingDeadlineSeconds: 9223372036854775807\n".to_string();
    for (field, yaml) in [
        (FIELD_ACTIVE_DEADLINE, active),
        (FIELD_STARTING_DEADLINE, starting),
    ] {
        match s.apply(&ns, &yaml).await {
            Ok(_) => s.findings.fail(
                case,
                format!("{field}: 9223372036854775807 was admitted (expected a refusal naming {field})"),
            ),
            Err(e) => {
                note(case, format!("{field} refused: {}", e.trim()));
                s.findings.check(case, e.contains(field), || {
                    format!("the refusal does not name {field}: {}", e.trim())
                });
            }
        }
    }
}

/// A generator whose name is as long as Kubernetes allows: its report becomes READY, under
/// derived names that are valid.
async fn longest_name(s: Arc<Suite>, ns: String) {
    let case = "253-character name";
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(61)
    );
    assert_eq!(name.len(), 253);
    let yaml = format!(
        "{}\n---\n{}",
        sim_backend(&s, BackendType::Cmp),
        fixtures::onetime(BackendType::Cmp, &name, "cmp", "Long name")
    );
    if let Err(e) = s.apply(&ns, &yaml).await {
        return s.findings.fail(case, format!("kubectl apply failed: {e}"));
    }
    let ready = s
        .poll(REPORT_DEADLINE, || async {
            let files = s.files(&ns).list(&ListParams::default()).await.ok()?;
            files.items.into_iter().find(|rf| {
                rf.status
                    .as_ref()
                    .and_then(|st| st.status)
                    .is_some_and(FileState::is_finished)
            })
        })
        .await;
    let Some(rf) = ready else {
        let g = s.generators(&ns).get(&name).await.ok().and_then(|g| g.status);
        let said = g
            .as_ref()
            .and_then(|st| find_condition(&st.conditions, "Ready"))
            .map(|c| format!("{}: {}", c.reason, c.message));
        return s.findings.fail(
            case,
            format!(
                "no finished report {} ({} ReportFiles); generator Ready: {said:?}",
                s.ended(REPORT_DEADLINE),
                s.file_count(&ns).await
            ),
        );
    };
    let file_name = rf.metadata.name.clone().unwrap_or_default();
    let status = rf.status.clone().unwrap_or_default();
    s.findings
        .check(case, status.status == Some(FileState::Ready), || {
            format!("report {file_name} is {:?}", status.status)
        });
    s.findings.check(case, file_name.len() <= 253, || {
        format!("ReportFile name of {} characters", file_name.len())
    });
    match status.download_secret_ref {
        Some(secret) => {
            s.findings.check(case, secret.name.len() <= 253, || {
                format!("Secret name of {} characters", secret.name.len())
            });
            let exists = s
                .secrets(&ns)
                .get_opt(&secret.name)
                .await
                .ok()
                .flatten()
                .is_some();
            s.findings.check(case, exists, || {
                format!("the report's Secret {} does not exist", secret.name)
            });
        }
        None => s.findings.fail(case, "the READY report has no downloadSecretRef"),
    }
}

/// A SUPPLIER generator fanning out over 5,000 organizations: refused at admission; if not,
/// no more ReportFiles than the per-generator cap.
async fn thousands_of_organizations(s: Arc<Suite>, ns: String) {
    let case = "5,000 organizations";
    if let Err(e) = s.apply(&ns, &sim_backend(&s, BackendType::Supplier)).await {
        return s
            .findings
            .fail(case, format!("kubectl apply of the backend failed: {e}"));
    }
    let orgs: String = (0..ORGANIZATIONS)
        .map(|i| format!("    - 6f1c2d3e-0000-4000-8000-{i:012}\n"))
        .collect();
    let yaml = format!(
        "{}    organizations:\n{orgs}",
        fixtures::onetime(
            BackendType::Supplier,
            "everyone",
            "supplier",
            "Every organization"
        )
    );
    // `create`, not `apply`: the last-applied annotation of 5,000 ids would pass the 256 KiB
    // annotation limit, and the refusal would be about that.
    match s.kubectl(&ns, "create", &yaml).await {
        Ok(_) => {
            s.findings.fail(case, format!("{ORGANIZATIONS} organizations were admitted (expected a refusal naming {FIELD_ORGANIZATIONS})"));
            let over = s
                .poll(CONDITION_DEADLINE, || async {
                    let n = s.file_count(&ns).await;
                    (n > FILES_PER_GENERATOR_CAP).then_some(n)
                })
                .await;
            match over {
                Some(n) => {
                    s.findings.fail(
                        case,
                        format!("{n} ReportFiles for one generator (cap {FILES_PER_GENERATOR_CAP})"),
                    );
                    // Stop the flood of reports from loading the rest of the suite.
                    let _ = s
                        .generators(&ns)
                        .delete("everyone", &DeleteParams::default())
                        .await;
                }
                None => s.finals.lock().expect("finals").push(FinalCheck::AtMostFiles {
                    case: case.to_string(),
                    ns,
                    max: FILES_PER_GENERATOR_CAP,
                }),
            }
        }
        Err(e) => {
            note(
                case,
                format!("refused: {}", e.trim().chars().take(300).collect::<String>()),
            );
            s.findings.check(case, e.contains(FIELD_ORGANIZATIONS), || {
                format!("the refusal does not name {FIELD_ORGANIZATIONS}: {}", e.trim())
            });
        }
    }
}

/// A foreign Secret where a report's Secret would go: the report says SecretConflict and the
/// Secret stays exactly as it was.
async fn foreign_secret(s: Arc<Suite>, ns: String) {
    let case = "foreign Secret";
    let name = onetime_file_name("taken");
    let foreign = Secret {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some([("owner".to_string(), "someone-else".to_string())].into()),
            annotations: Some([("note".to_string(), "not the operator's".to_string())].into()),
            ..Default::default()
        },
        data: Some([("password".to_string(), ByteString(b"hunter2".to_vec()))].into()),
        ..Default::default()
    };
    let before = match s.secrets(&ns).create(&PostParams::default(), &foreign).await {
        Ok(secret) => secret,
        Err(e) => {
            return s
                .findings
                .fail(case, format!("creating the foreign Secret failed: {e}"));
        }
    };
    let yaml = format!(
        "{}\n---\n{}",
        sim_backend(&s, BackendType::Cmp),
        fixtures::onetime(BackendType::Cmp, "taken", "cmp", "Taken")
    );
    if let Err(e) = s.apply(&ns, &yaml).await {
        return s.findings.fail(case, format!("kubectl apply failed: {e}"));
    }
    let last: Mutex<Option<String>> = Mutex::new(None);
    let outcome = s
        .poll(REPORT_DEADLINE, || async {
            let status = s.files(&ns).get(&name).await.ok()?.status?;
            let c = find_condition(&status.conditions, "Ready")?.clone();
            *last.lock().expect("last") = Some(format!(
                "{:?} Ready={} {}: {}",
                status.status, c.status, c.reason, c.message
            ));
            if c.reason == REASON_SECRET_CONFLICT {
                return Some(Ok(c));
            }
            status
                .status
                .filter(|f| f.is_finished())
                .map(|f| Err(format!("the report finished {f:?} ({}: {})", c.reason, c.message)))
        })
        .await;
    match outcome {
        Some(Ok(c)) => s.check_message(case, &format!("ReportFile {name}"), &c.message),
        Some(Err(e)) => s.findings.fail(
            case,
            format!("{e}; expected Ready reason {REASON_SECRET_CONFLICT}"),
        ),
        None => s.findings.fail(
            case,
            format!(
                "no Ready reason {REASON_SECRET_CONFLICT} {}; last seen: {:?}",
                s.ended(REPORT_DEADLINE),
                last.lock().expect("last")
            ),
        ),
    }
    let after = match s.secrets(&ns).get(&name).await {
        Ok(secret) => secret,
        Err(e) => return s.findings.fail(case, format!("the foreign Secret is gone: {e}")),
    };
    let (b, a) = (&before.metadata, &after.metadata);
    s.findings.check(case, before.data == after.data, || {
        format!(
            "data changed: keys now {:?}",
            after.data.as_ref().map(|d| d.keys().collect::<Vec<_>>())
        )
    });
    s.findings.check(case, b.labels == a.labels, || {
        format!("labels changed: {:?} -> {:?}", b.labels, a.labels)
    });
    s.findings.check(case, b.annotations == a.annotations, || {
        format!("annotations changed: {:?} -> {:?}", b.annotations, a.annotations)
    });
    s.findings
        .check(case, b.owner_references == a.owner_references, || {
            format!("ownerReferences changed: {:?}", a.owner_references)
        });
    s.findings
        .check(case, b.resource_version == a.resource_version, || {
            format!(
                "resourceVersion changed {:?} -> {:?}: the Secret was written",
                b.resource_version, a.resource_version
            )
        });
}

/// 1,000 unrelated 100 KiB Secrets: the operator watches Secrets as metadata only, so its peak
/// memory barely grows. A sentinel backend whose credentials Secret is created after them
/// becomes Ready only once the operator's Secret watch has brought it, and so the others.
async fn unrelated_secrets(s: Arc<Suite>, ns: String, pid: u32) {
    let case = "1,000 unrelated Secrets";
    let sentinel = sim_backend(&s, BackendType::Cmp);
    let (credentials, backend) = sentinel.split_once("---\n").expect("Secret and ReportBackend");
    if let Err(e) = s.apply(&ns, backend).await {
        return s
            .findings
            .fail(case, format!("kubectl apply of the sentinel failed: {e}"));
    }
    let missing = s
        .poll(CONDITION_DEADLINE, || async {
            let c = s.backend_ready(&ns, "cmp").await?;
            (c.reason == "CredentialsMissing").then_some(())
        })
        .await;
    if missing.is_none() {
        return s.findings.fail(
            case,
            "the sentinel backend never said CredentialsMissing: is the operator running?",
        );
    }
    let Some(before) = memory_kib(pid) else {
        return s.findings.fail(case, "the operator is gone");
    };
    let started = Instant::now();
    let payload = ByteString(vec![b'x'; UNRELATED_SECRET_BYTES]);
    let created = create_secrets(&s.secrets(&ns), UNRELATED_SECRETS, |i| Secret {
        metadata: ObjectMeta {
            name: Some(format!("unrelated-{i:04}")),
            ..Default::default()
        },
        data: Some([("blob".to_string(), payload.clone())].into()),
        ..Default::default()
    })
    .await;
    note(
        case,
        format!("created {created} Secrets in {:?}", started.elapsed()),
    );
    s.findings.check(case, created == UNRELATED_SECRETS, || {
        format!("only {created} of {UNRELATED_SECRETS} Secrets created")
    });
    if let Err(e) = s.apply(&ns, credentials).await {
        return s.findings.fail(
            case,
            format!("kubectl apply of the sentinel's credentials failed: {e}"),
        );
    }
    let ready = s
        .poll(CONDITION_DEADLINE, || async {
            s.backend_ready(&ns, "cmp").await.filter(|c| c.status == "True")
        })
        .await;
    s.findings.check(case, ready.is_some(), || {
        "the sentinel backend did not become Ready after its credentials appeared".into()
    });
    let Some(after) = memory_kib(pid) else {
        return s.findings.fail(case, "the operator is gone");
    };
    let (growth, readings) = memory_growth(before, after);
    note(case, readings);
    s.findings.check(case, growth <= SECRETS_GROWTH_MIB * 1024, || {
        format!("peak memory grew by {:.1} MiB (limit {SECRETS_GROWTH_MIB} MiB): Secrets are not watched as metadata only", mib(growth))
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_tenants_neither_stop_the_operator_nor_their_neighbours() {
    let started = Instant::now();
    let cp = control_plane().await.clone();
    let outbound_policy = has_outbound_policy();
    let mut operator = Operator::start_all_namespaces(&cp, "hostile", OPERATOR_FLAGS);
    let pid = operator.pid().expect("operator pid");
    let gone = Arc::new(AtomicBool::new(false));
    let watchdog = Watchdog::start(pid, gone.clone());
    let suite = Arc::new(Suite {
        client: cp.client().await,
        cp: cp.clone(),
        sim: SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start simulator"),
        hostile: HostileServer::start().await,
        findings: Findings::default(),
        finals: Mutex::new(Vec::new()),
        marker: format!("hostile-credential-{:016x}", rand::random::<u64>()),
        operator_gone: gone,
    });
    let namespace = |prefix: String| async move { TestNamespace::new(&prefix).await };
    let mut prefixes: Vec<String> = Mode::ALL
        .iter()
        .map(|m| format!("hostile-{}", m.name()))
        .collect();
    prefixes.extend(
        [
            "hostile-apiserver",
            "hostile-metadata",
            "hostile-neighbour",
            "hostile-backfill",
            "hostile-dates",
            "hostile-bigint",
            "hostile-longname",
            "hostile-orgs",
            "hostile-conflict",
            "hostile-secrets",
        ]
        .map(String::from),
    );
    let namespaces: Vec<TestNamespace> = futures::future::join_all(prefixes.into_iter().map(namespace)).await;
    let ns = |prefix: &str| {
        namespaces
            .iter()
            .find(|n| n.name.starts_with(&format!("{prefix}-")))
            .expect("namespace")
            .name
            .clone()
    };

    let mut cases = Vec::new();
    let spawn = |f: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>| tokio::spawn(f);
    // The drip holds connections open without using memory: it may run while the Secrets'
    // effect on memory is measured, which keeps the suite short.
    cases.push(spawn(Box::pin(hostile_backends(
        suite.clone(),
        ns("hostile-drip"),
        Mode::Drip,
    ))));
    unrelated_secrets(suite.clone(), ns("hostile-secrets"), pid).await;
    // An operator that did not get going (such as one without the outbound-policy flags)
    // makes every case fail; say why once.
    if let Some(status) = operator.exited() {
        panic!(
            "the operator exited during the first phase ({status}), flags {OPERATOR_FLAGS:?}; log {}, ending:\n{}",
            operator.log.display(),
            log_tail(&operator, 20)
        );
    }
    for mode in Mode::ALL.into_iter().filter(|m| *m != Mode::Drip) {
        cases.push(spawn(Box::pin(hostile_backends(
            suite.clone(),
            ns(&format!("hostile-{}", mode.name())),
            mode,
        ))));
    }
    match api_server_url(&cp) {
        Some(url) => cases.push(spawn(Box::pin(denied_destination(
            suite.clone(),
            ns("hostile-apiserver"),
            "backend at the API server",
            url,
        )))),
        None => note(
            "backend at the API server",
            "skipped: the kubeconfig's server is not on loopback",
        ),
    }
    if outbound_policy {
        let url = "http://169.254.169.254/".to_string();
        cases.push(spawn(Box::pin(denied_destination(
            suite.clone(),
            ns("hostile-metadata"),
            "backend at the metadata address",
            url,
        ))));
    } else {
        note(
            "backend at the metadata address",
            "SKIPPED: `report-operator run --help` has no --outbound-allow-cidr, so nothing would stop the operator from connecting to 169.254.169.254",
        );
    }
    cases.push(spawn(Box::pin(neighbour(suite.clone(), ns("hostile-neighbour")))));
    cases.push(spawn(Box::pin(backfill_from_year_one(
        suite.clone(),
        ns("hostile-backfill"),
    ))));
    cases.push(spawn(Box::pin(dates_at_the_ends_of_time(
        suite.clone(),
        ns("hostile-dates"),
    ))));
    cases.push(spawn(Box::pin(largest_integers(
        suite.clone(),
        ns("hostile-bigint"),
    ))));
    cases.push(spawn(Box::pin(longest_name(
        suite.clone(),
        ns("hostile-longname"),
    ))));
    cases.push(spawn(Box::pin(thousands_of_organizations(
        suite.clone(),
        ns("hostile-orgs"),
    ))));
    cases.push(spawn(Box::pin(foreign_secret(
        suite.clone(),
        ns("hostile-conflict"),
    ))));
    for case in futures::future::join_all(cases).await {
        if let Err(e) = case {
            suite.findings.fail("suite", format!("a case panicked: {e}"));
        }
    }

    // Checks that hold for the whole run.
    let s = &suite;
    let finals = std::mem::take(&mut *s.finals.lock().expect("finals"));
    for check in finals {
        match check {
            FinalCheck::NeverAuthenticated { case, ns, name } => {
                if let Some(c) = s.backend_ready(&ns, &name).await {
                    s.findings.check(&case, c.status != "True", || {
                        format!("ReportBackend {name} is Ready=True ({}) at the end", c.reason)
                    });
                }
            }
            FinalCheck::AtMostFiles { case, ns, max } => {
                let n = s.file_count(&ns).await;
                note(&case, format!("{n} ReportFiles at the end"));
                s.findings.check(&case, n <= max, || {
                    format!("{n} ReportFiles at the end (at most {max} allowed)")
                });
            }
        }
    }
    let final_hwm = operator.vm_hwm_kib();
    watchdog.task.abort();
    let peak = watchdog
        .peak_kib
        .load(Ordering::Relaxed)
        .max(final_hwm.unwrap_or(0));
    let killed = watchdog.killed_at_kib.load(Ordering::Relaxed);
    s.findings.check("operator", killed == 0, || {
        format!("killed by the watchdog at {} MiB RSS", killed / 1024)
    });
    let exit = operator.exited();
    s.findings.check("operator", exit.is_none(), || {
        format!(
            "the operator exited ({exit:?}); log {}, ending:\n{}",
            operator.log.display(),
            log_tail(&operator, 5)
        )
    });
    s.findings.check("operator", operator.pid() == Some(pid), || {
        format!("the operator's PID changed from {pid} to {:?}", operator.pid())
    });
    s.findings.check("operator", peak < MEMORY_LIMIT_MIB * 1024, || {
        format!(
            "peak memory (VmHWM) {:.1} MiB, over the chart's limit of {MEMORY_LIMIT_MIB} MiB",
            peak as f64 / 1024.0
        )
    });
    let log = operator.logs();
    s.findings.check("operator", !log.contains(&s.marker), || {
        format!(
            "the operator log holds a hostile credential: {}",
            operator.log.display()
        )
    });
    eprintln!(
        "[hostile] operator peak memory (VmHWM) {:.1} MiB; suite ran {:?}; hostile server sent {:.1} MiB; requests per mode: {}",
        peak as f64 / 1024.0,
        started.elapsed(),
        s.hostile.bytes_sent() as f64 / (1 << 20) as f64,
        Mode::ALL
            .map(|m| format!("{}={}", m.name(), s.hostile.requests(m)))
            .join(" ")
    );
    let failures = s.findings.all();
    assert!(
        failures.is_empty(),
        "{} hostile-tenant expectations failed:\n- {}",
        failures.len(),
        failures.join("\n- ")
    );
}
