//! (e) Scale: generators and finished ReportFiles made before the operator starts, a first
//! start that reconciles them once (each generator's first status), then the operator's
//! restart over them (time to its first reconcile and to a settled state, backend
//! calls, memory) and the cost of reconciling a new report among them (the mean reconcile
//! time from the operator's own histogram, and apply → READY).

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use report_operator::api::{LABEL_GENERATOR, ReportFile, ReportGenerator};
use report_sim::ReportingApi;
use serde_json::{Value, json};

use crate::cluster::{Cluster, from_json};
use crate::operator::{Operator, mib};
use crate::scenarios::{calls, onetime_connect, percentile, ready_of, secs, sim};
use crate::{Args, BenchError, Row};

/// Requests in flight while the objects are made (the operator is not running then).
const CONCURRENCY: usize = 48;

/// How long the operator is down between the first start and the restart.
const DOWN: Duration = Duration::from_secs(65);

/// How long the reconcile counters must stand still for the operator to count as settled.
const QUIET: Duration = Duration::from_secs(5);

/// Runs the scale scenario once for each `(generators, files)`.
pub async fn scale(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let mut rows = Vec::new();
    for (generators, files) in [
        (args.scale_generators / 50, args.scale_files / 50),
        (args.scale_generators, args.scale_files),
    ] {
        rows.extend(one(cluster, args, generators.max(1), files.max(1)).await?);
    }
    Ok(rows)
}

async fn one(
    cluster: &Cluster,
    args: &Args,
    generators: usize,
    files: usize,
) -> Result<Vec<Row>, BenchError> {
    let sim = sim(2000).await?;
    let ns = cluster.namespace("e").await?;
    cluster
        .backend(&ns, &sim, ReportingApi::Connect, json!({}))
        .await?;
    let made = Instant::now();
    make_objects(cluster, &ns, generators, files).await?;
    let made = made.elapsed();

    // The first start: every generator is new to the operator and gets its first status.
    let first_start = Instant::now();
    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 0)?;
    let first_synced = op.synced().await?;
    let first_settled = settle(&op, first_start).await?;
    let first_reconciles = op.reconciles().await?;
    op.kill();
    // Down for a minute, as a restart finds the generators: their last check over a minute old.
    tokio::time::sleep(DOWN).await;

    // The restart: the operator starts over everything at once, as the first left it.
    let calls_before = calls(&sim, "CONNECT");
    let started = Instant::now();
    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 1)?;
    let synced = op.synced().await?;
    let first = loop {
        if op.reconciles().await.unwrap_or(0) > 0 {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(600) {
            return Err(BenchError::Other(
                "no reconcile within 10 minutes of the start".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let settled = settle(&op, started).await?;
    let restart_reconciles = op.reconciles().await?;
    let restart_calls = calls(&sim, "CONNECT") - calls_before;
    let (rss, hwm) = (op.rss_kib(), op.hwm_kib());

    // A new report among them, one at a time.
    let mut rx = cluster.watch_ready(&ns);
    cluster.generator(&ns, "warm-up", onetime_connect()).await?;
    ready_of(&mut rx, "warm-up").await?;
    let (before, cpu_before) = (op.reconcile_time("ReportFile").await?, op.cpu_ms());
    let mut times = Vec::new();
    for i in 0..args.runs {
        let name = format!("new-{i}");
        let started = Instant::now();
        cluster.generator(&ns, &name, onetime_connect()).await?;
        times.push(ready_of(&mut rx, &name).await? - started);
    }
    let after = op.reconcile_time("ReportFile").await?;
    let cpu = op.cpu_ms().saturating_sub(cpu_before);
    times.sort();
    let (sum, count) = (after.0 - before.0, after.1.saturating_sub(before.1));
    let mean_ms = if count == 0 {
        0.0
    } else {
        sum * 1000.0 / count as f64
    };
    cluster.delete_namespace(&args.operator_command(), &ns, op).await;
    Ok(vec![
        Row {
            scenario: format!(
                "(e) first start over {generators} new generators and {files} finished ReportFiles"
            ),
            result: format!(
                "made in {}; caches synced {}, settled {} after start; {first_reconciles} reconciles",
                secs(made),
                secs(first_synced),
                secs(first_settled),
            ),
        },
        Row {
            scenario: format!("(e) restart over {generators} generators and {files} finished ReportFiles"),
            result: format!(
                "caches synced {}, first reconcile {}, settled {} after start; {restart_reconciles} reconciles; {restart_calls} backend calls; RSS {} (peak {})",
                secs(synced),
                secs(first),
                secs(settled),
                mib(rss),
                mib(hwm)
            ),
        },
        Row {
            scenario: format!("(e) one new ONETIME report among {files} ReportFiles"),
            result: format!(
                "ReportFile reconcile {mean_ms:.2} ms on average ({count} reconciles); apply → READY p50 {}, p99 {} over {} runs; {:.1} ms operator CPU per report",
                secs(percentile(&times, 0.5)),
                secs(percentile(&times, 0.99)),
                times.len(),
                cpu as f64 / args.runs.max(1) as f64
            ),
        },
    ])
}

/// Waits until no reconcile has happened for [`QUIET`]; the time from `started` to the last
/// reconcile seen.
pub async fn settle(op: &Operator, started: Instant) -> Result<Duration, BenchError> {
    let (mut last_count, mut last_change) = (op.reconciles().await?, started.elapsed());
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < QUIET {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let count = op.reconciles().await?;
        if count != last_count {
            (last_count, last_change, quiet_since) = (count, started.elapsed(), Instant::now());
        }
        if started.elapsed() > Duration::from_secs(1800) {
            return Err(BenchError::Other(
                "the operator did not settle within 30 minutes".into(),
            ));
        }
    }
    Ok(last_change)
}

/// `generators` idle PERIODIC generators (their first window ends in 2099) and `files`
/// FAILED ReportFiles spread over them, owned by them, with the status the operator writes.
pub async fn make_objects(
    cluster: &Cluster,
    ns: &str,
    generators: usize,
    files: usize,
) -> Result<(), BenchError> {
    let gapi: Api<ReportGenerator> = Api::namespaced(cluster.client.clone(), ns);
    let spec = json!({
        "backendRef": {"name": "b"}, "commonName": "Idle", "eventType": "PERIODIC", "format": "CSV",
        "parameters": {"period": "P1M", "startDate": "2099-01-01T00:00:00Z", "template": "RT-0000-0001"},
        // All the files made below are kept: a restart that pruned them would measure deletes.
        "schedule": {"failedReportsHistoryLimit": files.div_ceil(generators.max(1))},
    });
    let made: Vec<(String, String)> = futures::stream::iter((0..generators).map(|i| {
        let (gapi, spec) = (gapi.clone(), spec.clone());
        async move {
            let g: ReportGenerator = from_json(json!({
                "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator",
                "metadata": {"name": format!("idle-{i:05}")}, "spec": spec,
            }))?;
            let g = gapi.create(&PostParams::default(), &g).await?;
            Ok::<_, BenchError>((g.name_any(), g.uid().unwrap_or_default()))
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect()
    .await?;
    let fapi: Api<ReportFile> = Api::namespaced(cluster.client.clone(), ns);
    let made = &made;
    futures::stream::iter((0..files).map(|i| {
        let fapi = fapi.clone();
        let (generator, uid) = made[i % made.len()].clone();
        let name = format!("{generator}-{:05}", i / made.len());
        async move {
            let rf: ReportFile = from_json(json!({
                "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
                "metadata": {
                    "name": name,
                    "labels": {LABEL_GENERATOR: generator},
                    "ownerReferences": [{"apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator", "name": generator, "uid": uid, "controller": true}],
                },
                "spec": {"generatorRef": {"name": generator}, "backendRef": {"name": "b"}, "name": "Old", "eventType": "PERIODIC", "format": "CSV",
                         "parameters": {"startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-31T23:59:59Z", "template": "RT-0000-0001"}},
            }))?;
            fapi.create(&PostParams::default(), &rf).await?;
            fapi.patch_status(&name, &PatchParams::default(), &Patch::Merge(failed_status())).await?;
            Ok::<_, BenchError>(())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// A FAILED report's status as the operator writes it, so that a restart finds nothing to do.
/// Without a backend id (refused when submitted): a CONNECT report the backend made gets the
/// operator's cleanup finalizer, which only a running operator removes, and the namespace of
/// the scenario could not be deleted after the operator stops.
fn failed_status() -> Value {
    let at = "2026-11-01T00:00:00Z";
    let cond = |type_: &str, status: &str| json!({"type": type_, "status": status, "reason": "Failed", "message": "COMMERCE failed the report", "lastTransitionTime": at, "observedGeneration": 1});
    json!({"status": {
        "status": "FAILED", "observedGeneration": 1, "failedReason": "COMMERCE failed the report",
        "conditions": [cond("Ready", "False"), cond("Complete", "False"), cond("Failed", "True")],
    }})
}
