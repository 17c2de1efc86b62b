//! The operator's metrics on its real `/metrics`: every backend call counted once with one
//! label set, each finished report counted once by result, each backend's readiness, the
//! build and leadership gauges — what the chart's alerts (charts/report-operator/monitoring)
//! name.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, ALL_TYPES, lower};
use common::operator::Operator;
use common::wait_for;
use report_operator::api::{BackendType, FileState};
use report_operator::backend::BackendError;
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

/// The value of the sample `name{labels}` (labels in the order the operator writes them).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// Every `code` label of `report_operator_backend_calls_total` is "ok" or a documented one.
fn assert_codes_documented(metrics: &str) {
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("report_operator_backend_calls_total{"))
    {
        let code = line
            .split("code=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            code == "ok" || BackendError::METRIC_CODES.contains(&code),
            "undocumented code in {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_counted_as_unauthorized_on_the_probe() {
    let world = World::start("e2e-metrics-auth", SimConfig::default()).await;
    for t in ALL_TYPES {
        let bad: Vec<(&str, &str)> = fixtures::good_credentials(t)
            .into_iter()
            .map(|(k, v)| {
                (
                    k,
                    if v.contains("key") || k.contains("ecret") || k == "password" {
                        "wrong"
                    } else {
                        v
                    },
                )
            })
            .collect();
        world.apply(&fixtures::backend(&world.sim, t, &lower(t), &bad, ""));
    }
    for t in ALL_TYPES {
        let (reason, message) = world.wait_backend(&lower(t), "False").await;
        assert_eq!(reason, "Unauthorized", "{t:?}: {message}");
    }
    let metrics = world.operator.metrics().await;
    for t in ALL_TYPES {
        let labels = format!(r#"type="{}",operation="probe",code="unauthorized""#, t.as_str());
        let n = sample(&metrics, "report_operator_backend_calls_total", &labels);
        assert!(n.is_some_and(|n| n >= 1.0), "{t:?}: no {labels} in\n{metrics}");
        let timed = format!(r#"type="{}",operation="probe""#, t.as_str());
        let count = sample(
            &metrics,
            "report_operator_backend_call_duration_seconds_count",
            &timed,
        );
        assert!(
            count.is_some_and(|c| c >= 1.0),
            "{t:?}: the probe was not timed:\n{metrics}"
        );
    }
    assert_codes_documented(&metrics);
    // The alert on credentials reads this: each backend not Ready.
    for t in ALL_TYPES {
        let labels = format!(
            r#"namespace="{}",backend="{}",type="{}""#,
            world.ns.name,
            lower(t),
            t.as_str()
        );
        assert_eq!(
            sample(&metrics, "report_operator_backend_ready", &labels),
            Some(0.0),
            "{labels}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_report_shows_its_calls_as_ok_and_timed() {
    let world = World::start("e2e-metrics-ok", SimConfig::default()).await;
    // CONNECT: the ReportFile controller submits, polls and downloads; RDE: the generator
    // creates a template and lists its report files, whose state the ReportFile gets.
    for t in [BackendType::Connect, BackendType::Rde] {
        let b = lower(t);
        world.apply(&fixtures::backend(
            &world.sim,
            t,
            &b,
            &fixtures::good_credentials(t),
            "",
        ));
        world.apply(&fixtures::onetime(t, &format!("{b}-once"), &b, "Monthly usage"));
    }
    // The simulators fail a report whose name says FAIL.
    world.apply(&fixtures::onetime(
        BackendType::Connect,
        "connect-fails",
        "connect",
        "FAIL on purpose",
    ));
    for t in [BackendType::Connect, BackendType::Rde] {
        let files = world
            .wait_finished(&format!("{}-once", lower(t)), 1, DEADLINE)
            .await;
        let status = files[0].status.clone().unwrap_or_default();
        assert_eq!(status.status, Some(FileState::Ready), "{t:?}: {status:?}");
    }
    let connect = BackendType::Connect.as_str();
    let expected = [
        (connect, "probe"),
        (connect, "submit"),
        (connect, "get"),
        (connect, "download"),
        ("RDE", "probe"),
        ("RDE", "submit"),
        ("RDE", "list"),
        ("RDE", "get"),
    ];
    let metrics = wait_for("every call counted", DEADLINE, || async {
        let m = world.operator.metrics().await;
        expected
            .iter()
            .all(|(t, op)| {
                sample(
                    &m,
                    "report_operator_backend_calls_total",
                    &format!(r#"type="{t}",operation="{op}",code="ok""#),
                )
                .is_some()
            })
            .then_some(m)
    })
    .await;
    for (t, op) in expected {
        let labels = format!(r#"type="{t}",operation="{op}""#);
        let count = sample(
            &metrics,
            "report_operator_backend_call_duration_seconds_count",
            &labels,
        );
        let ok = sample(
            &metrics,
            "report_operator_backend_calls_total",
            &format!(r#"{labels},code="ok""#),
        );
        assert!(count.is_some_and(|c| c >= 1.0), "{labels} not timed:\n{metrics}");
        assert!(
            ok.is_some_and(|n| n >= 1.0),
            "{labels} not counted ok:\n{metrics}"
        );
        let bucket = format!(r#"report_operator_backend_call_duration_seconds_bucket{{le="+Inf",{labels}}}"#);
        assert!(
            metrics.lines().any(|l| l.starts_with(&bucket)),
            "no {bucket}:\n{metrics}"
        );
    }
    // One template: the generator submitted once. CONNECT: two reports submitted, the READY
    // one downloaded once.
    for (labels, n) in [
        (r#"type="RDE",operation="submit",code="ok""#, 1.0),
        (r#"type="CONNECT",operation="submit",code="ok""#, 2.0),
        (r#"type="CONNECT",operation="download",code="ok""#, 1.0),
    ] {
        assert_eq!(
            sample(&metrics, "report_operator_backend_calls_total", labels),
            Some(n),
            "{labels}:\n{metrics}"
        );
    }
    assert_codes_documented(&metrics);
    // The reports gauge counts this namespace's two ReportFiles, both READY, once the
    // operator's watch has brought their last status.
    let gauge = [("READY", 2.0), ("IN_PROGRESS", 0.0), ("FAILED", 1.0)];
    wait_for(
        "the reports gauge shows both READY and the FAILED one",
        DEADLINE,
        || async {
            let m = world.operator.metrics().await;
            gauge
                .iter()
                .all(|(status, n)| {
                    sample(&m, "report_operator_reports", &format!(r#"status="{status}""#)) == Some(*n)
                })
                .then_some(())
        },
    )
    .await;
    let failed = world.wait_finished("connect-fails", 1, DEADLINE).await;
    assert_eq!(
        failed[0].status.as_ref().and_then(|s| s.status),
        Some(FileState::Failed)
    );
    // Each report counted once, when it finished, by result; the other types from zero.
    let completed = |m: &str, t: &str, result: &str| {
        sample(
            m,
            "report_operator_reports_completed_total",
            &format!(r#"type="{t}",result="{result}""#),
        )
    };
    let expected = [
        (connect, "ready", 1.0),
        (connect, "failed", 1.0),
        ("RDE", "ready", 1.0),
        ("RDE", "failed", 0.0),
        ("FUSION", "failed", 0.0),
    ];
    let metrics = wait_for("the finished reports counted", DEADLINE, || async {
        let m = world.operator.metrics().await;
        expected
            .iter()
            .all(|(t, result, n)| completed(&m, t, result).is_some_and(|c| c >= *n))
            .then_some(m)
    })
    .await;
    for (t, result, n) in expected {
        assert_eq!(
            completed(&metrics, t, result),
            Some(n),
            "{t} {result}:\n{metrics}"
        );
    }
    for b in [BackendType::Connect, BackendType::Rde] {
        let labels = format!(
            r#"namespace="{}",backend="{}",type="{}""#,
            world.ns.name,
            lower(b),
            b.as_str()
        );
        assert_eq!(
            sample(&metrics, "report_operator_backend_ready", &labels),
            Some(1.0),
            "{labels}:\n{metrics}"
        );
    }
    let version = format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        sample(&metrics, "report_operator_build_info", &version),
        Some(1.0),
        "{metrics}"
    );
    // Without leader election this replica is the one that reconciles.
    assert!(
        metrics.lines().any(|l| l == "report_operator_leader 1"),
        "{metrics}"
    );
}

/// Whether `metrics` has a sample of `name` (any labels).
fn has_series(metrics: &str, name: &str) -> bool {
    metrics.lines().any(|l| l.starts_with(&format!("{name}{{")))
}

/// A standby's caches are empty: it must not export gauges read from them (its zeros would
/// fire the alerts on every failover), and says with `leader` that it stands by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_exports_no_cache_gauges_until_it_leads() {
    let mut world = World::start("e2e-metrics-standby", SimConfig::default()).await;
    world.operator.kill();
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "connect",
        &fixtures::good_credentials(t),
        "",
    ));
    let ns = world.ns.name.clone();
    let flags = [
        "--leader-elect",
        "--leader-election-namespace",
        &ns,
        "--leader-election-lease-seconds",
        "6",
    ];
    let mut first = Operator::start_with(world.ns.cp(), &ns, &flags);
    let ready = format!(r#"namespace="{ns}",backend="connect",type="CONNECT""#);
    let leading = wait_for(
        "the first operator to lead and see its backend Ready",
        DEADLINE,
        || async {
            let m = first.metrics().await;
            (m.lines().any(|l| l == "report_operator_leader 1")
                && sample(&m, "report_operator_backend_ready", &ready) == Some(1.0))
            .then_some(m)
        },
    )
    .await;
    assert!(has_series(&leading, "report_operator_reports"), "{leading}");
    let mut second = Operator::start_with(world.ns.cp(), &ns, &flags);
    wait_for("the second operator to stand by", DEADLINE, || async {
        second
            .logs()
            .contains("waiting for the leader-election Lease")
            .then_some(())
    })
    .await;
    let standby = second.metrics().await;
    assert!(
        standby.lines().any(|l| l == "report_operator_leader 0"),
        "{standby}"
    );
    for name in [
        "report_operator_reports",
        "report_operator_backend_ready",
        "report_operator_generator_last_success_timestamp_seconds",
    ] {
        assert!(
            !has_series(&standby, name),
            "a standby exports {name}:\n{standby}"
        );
    }
    assert!(has_series(&standby, "report_operator_build_info"), "{standby}");
    // Once it leads, it exports them from its own caches.
    first.kill();
    wait_for(
        "the standby to take over and export the gauges",
        DEADLINE,
        || async {
            let m = second.metrics().await;
            (m.lines().any(|l| l == "report_operator_leader 1")
                && sample(&m, "report_operator_backend_ready", &ready) == Some(1.0))
            .then_some(())
        },
    )
    .await;
    second.kill();
}
