//! The scenarios of issue 15's table, each in its own namespace with its own simulator and
//! operator.

use std::time::{Duration, Instant};

use report_sim::{ReportingApi, SimConfig, SimServer};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::cluster::{Cluster, Ready};
use crate::operator::{Operator, mib};
use crate::reference;
use crate::{Args, BenchError, Row};

/// How long any one wait may take before the bench gives up.
const DEADLINE: Duration = Duration::from_secs(900);

pub async fn sim(generation_ms: u64) -> Result<SimServer, BenchError> {
    let config = SimConfig::default().for_all(|b| b.generation_ms = generation_ms);
    Ok(SimServer::start(
        config,
        "127.0.0.1:0"
            .parse()
            .map_err(|_| BenchError::Other("address".into()))?,
    )
    .await?)
}

pub fn onetime_connect() -> Value {
    json!({
        "commonName": "Bench", "eventType": "ONETIME", "format": "CSV",
        "parameters": {"startDate": "2026-10-01T00:00:00Z", "endDate": "2026-10-02T23:59:59Z", "template": "RT-0000-0001"},
    })
}

/// Every backend call the simulator answered for `api`.
pub fn calls(sim: &SimServer, api: &str) -> u64 {
    sim.stats()
        .requests
        .iter()
        .filter(|r| r.backend == api)
        .map(|r| r.count)
        .sum()
}

/// The next `n` READY ReportFiles; the time the last was seen.
async fn ready(rx: &mut mpsc::UnboundedReceiver<Ready>, n: usize) -> Result<Instant, BenchError> {
    let mut last = Instant::now();
    for i in 0..n {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(r)) => last = r.at,
            _ => {
                return Err(BenchError::Other(format!(
                    "only {i} of {n} ReportFiles became READY"
                )));
            }
        }
    }
    Ok(last)
}

/// When the ReportFile of generator `name` was seen READY.
pub async fn ready_of(rx: &mut mpsc::UnboundedReceiver<Ready>, name: &str) -> Result<Instant, BenchError> {
    loop {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(r)) if r.generator == name => return Ok(r.at),
            Ok(Some(_)) => {}
            _ => {
                return Err(BenchError::Other(format!(
                    "the report of {name} did not become READY"
                )));
            }
        }
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

/// (a) One ONETIME CONNECT report at a time, generation 2 s: apply → READY seen by the watch.
pub async fn one_report(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let sim = sim(2000).await?;
    let ns = cluster.namespace("a").await?;
    let op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 0)?;
    cluster
        .backend(&ns, &sim, ReportingApi::Connect, json!({}))
        .await?;
    let mut rx = cluster.watch_ready(&ns);
    // One report first, not counted: the backend becomes Ready and its client is built.
    cluster.generator(&ns, "warm-up", onetime_connect()).await?;
    ready(&mut rx, 1).await?;
    let calls_before = calls(&sim, "CONNECT");
    let mut times = Vec::new();
    for i in 0..args.runs {
        let name = format!("one-{i}");
        let started = Instant::now();
        cluster.generator(&ns, &name, onetime_connect()).await?;
        let seen = ready_of(&mut rx, &name).await?;
        times.push(seen - started);
    }
    let per_report = (calls(&sim, "CONNECT") - calls_before) as f64 / args.runs.max(1) as f64;
    times.sort();
    cluster.delete_namespace(&args.operator_command(), &ns, op).await;
    Ok(vec![Row {
        scenario: "(a) one ONETIME report, generation 2 s: apply → READY seen by a watch".into(),
        result: format!(
            "p50 {}, p99 {} over {} runs; {per_report:.1} backend calls per report",
            secs(percentile(&times, 0.5)),
            secs(percentile(&times, 0.99)),
            times.len()
        ),
    }])
}

/// (b) Many ONETIME CONNECT reports applied at once, generation 2 s.
pub async fn many_reports(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let n = args.reports;
    let sim = sim(2000).await?;
    let ns = cluster.namespace("b").await?;
    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 0)?;
    op.synced().await?;
    cluster
        .backend(&ns, &sim, ReportingApi::Connect, json!({}))
        .await?;
    let mut rx = cluster.watch_ready(&ns);
    let cpu_before = op.cpu_ms();
    let first_apply = Instant::now();
    let items = (0..n).map(|i| (format!("r-{i:05}"), onetime_connect())).collect();
    cluster.generators(&ns, items, 16).await?;
    let last_apply = Instant::now();
    let last_ready = ready(&mut rx, n).await?;
    let cpu = op.cpu_ms().saturating_sub(cpu_before);
    let per_min = n as f64 * 60.0 / (last_ready - first_apply).as_secs_f64();
    let result = format!(
        "all READY {} after the last apply (applying took {}); {per_min:.0} reports/min; {:.1} ms operator CPU per report; peak RSS {}; {:.1} backend calls per report",
        secs(last_ready.saturating_duration_since(last_apply)),
        secs(last_apply - first_apply),
        cpu as f64 / n as f64,
        mib(op.hwm_kib()),
        calls(&sim, "CONNECT") as f64 / n as f64,
    );
    cluster.delete_namespace(&args.operator_command(), &ns, op).await;
    Ok(vec![Row {
        scenario: format!("(b) {n} ONETIME reports applied at once (CONNECT, generation 2 s)"),
        result,
    }])
}

/// (c) Idle PERIODIC generators (their first window ends in the future): memory once
/// settled, CPU at rest, and the same after a restart that lists them all.
pub async fn idle_generators(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let n = args.idle_generators;
    let window = Duration::from_secs(args.idle_seconds);
    let sim = sim(2000).await?;
    let ns = cluster.namespace("c").await?;
    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 0)?;
    op.synced().await?;
    cluster
        .backend(&ns, &sim, ReportingApi::Connect, json!({}))
        .await?;
    let empty_rss = op.rss_kib();
    let mut settled = cluster.watch_settled(&ns);
    let spec = json!({
        "commonName": "Idle", "eventType": "PERIODIC", "format": "CSV",
        "parameters": {"period": "P1M", "startDate": "2099-01-01T00:00:00Z", "template": "RT-0000-0001"},
    });
    let started = Instant::now();
    cluster
        .generators(
            &ns,
            (0..n).map(|i| (format!("idle-{i:05}"), spec.clone())).collect(),
            16,
        )
        .await?;
    let applied = started.elapsed();
    wait_settled(&mut settled, n).await?;
    let settle = started.elapsed();
    let cpu_before = op.cpu_ms();
    tokio::time::sleep(window).await;
    let idle_cpu = op.cpu_ms().saturating_sub(cpu_before);
    let (rss, hwm) = (op.rss_kib(), op.hwm_kib());
    let per_object = rss.saturating_sub(empty_rss).saturating_mul(1024) / n.max(1) as u64;
    drop(op);

    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 1)?;
    let synced = op.synced().await?;
    let cpu_before = op.cpu_ms();
    tokio::time::sleep(window).await;
    let restart_cpu = op.cpu_ms().saturating_sub(cpu_before);
    let (restart_rss, restart_hwm) = (op.rss_kib(), op.hwm_kib());
    let restart_calls = calls(&sim, "CONNECT");
    cluster.delete_namespace(&args.operator_command(), &ns, op).await;
    Ok(vec![
        Row {
            scenario: format!("(c) {n} idle PERIODIC generators, created while the operator runs"),
            result: format!(
                "RSS {} (empty {}, peak {}); {per_object} bytes per generator; {} ms CPU over {} s at rest; applied in {}, settled {} after the first apply",
                mib(rss),
                mib(empty_rss),
                mib(hwm),
                idle_cpu,
                window.as_secs(),
                secs(applied),
                secs(settle)
            ),
        },
        Row {
            scenario: format!("(c) the same {n}, operator restarted"),
            result: format!(
                "caches synced {} after start; RSS {} (peak {}) and {} ms CPU over the {} s after; {restart_calls} backend calls in all",
                secs(synced),
                mib(restart_rss),
                mib(restart_hwm),
                restart_cpu,
                window.as_secs()
            ),
        },
    ])
}

async fn wait_settled(rx: &mut mpsc::UnboundedReceiver<usize>, n: usize) -> Result<(), BenchError> {
    let mut count = 0;
    while count < n {
        match tokio::time::timeout(DEADLINE, rx.recv()).await {
            Ok(Some(c)) => count = c,
            _ => {
                return Err(BenchError::Other(format!(
                    "only {count} of {n} generators settled"
                )));
            }
        }
    }
    Ok(())
}

/// (d) SUPPLIER fan-out: 20 organizations × 6 days, generation 3 s, by the operator and by
/// the hand-written client of seed 004's recipe on the same simulator settings.
pub async fn fan_out(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let generation = Duration::from_secs(3);
    let sim = sim(generation.as_millis() as u64).await?;
    let ns = cluster.namespace("d").await?;
    let mut op = Operator::start(&args.operator_command(), &cluster.kubeconfig, &ns, 0)?;
    op.synced().await?;
    let limits = json!({"limits": {"maxInFlight": 6, "requestsPerWindow": 600, "windowSeconds": 600}});
    cluster.backend(&ns, &sim, ReportingApi::Supplier, limits).await?;
    let mut rx = cluster.watch_ready(&ns);
    let start = (chrono::Utc::now() - chrono::Duration::days(6))
        .format("%Y-%m-%dT00:00:00Z")
        .to_string();
    let spec = json!({
        "commonName": "Fleet", "eventType": "PERIODIC", "format": "CSV",
        "parameters": {"period": "P1D", "startDate": start, "reportType": "REPORT_TYPE_TRIP_ACTIVITY", "organizations": reference::organizations()},
        "schedule": {"successfulReportsHistoryLimit": 200},
    });
    let started = Instant::now();
    cluster.generator(&ns, "fleet", spec).await?;
    let last = ready(&mut rx, reference::REPORTS).await?;
    let took = last - started;
    let stats = sim.stats();
    let peak = stats
        .peak_in_progress
        .iter()
        .filter(|p| p.backend == "SUPPLIER")
        .map(|p| p.peak)
        .max()
        .unwrap_or(0);
    let operator = format!(
        "{} to {} READY; {} requests; {} × 429; peak {peak} in progress per organization; log {}",
        secs(took),
        reference::REPORTS,
        calls(&sim, "SUPPLIER"),
        stats.rate_limited(ReportingApi::Supplier),
        op.log.display()
    );
    cluster.delete_namespace(&args.operator_command(), &ns, op).await;

    let sim = self::sim(generation.as_millis() as u64).await?;
    let client = reference::run(&sim, generation).await?;
    let stats = sim.stats();
    let by_hand = format!(
        "{} to {} READY; {} requests; {} × 429",
        secs(client),
        reference::REPORTS,
        calls(&sim, "SUPPLIER"),
        stats.rate_limited(ReportingApi::Supplier)
    );
    let ratio = took.as_secs_f64() / client.as_secs_f64();
    Ok(vec![
        Row {
            scenario: "(d) SUPPLIER fan-out, 20 organizations × 6 days, generation 3 s: the operator".into(),
            result: format!("{operator}; {ratio:.1}× the hand-written client"),
        },
        Row {
            scenario: "(d) the same by the hand-written client (seed 004's recipe)".into(),
            result: by_hand,
        },
    ])
}
