//! (f) Failover: two replicas over one namespace of generators and finished ReportFiles; the
//! one that reconciles is SIGKILLed, and the time from the kill to the other's first
//! reconcile is measured, once with one Lease (`--leader-elect`: the standby starts its
//! watches when it wins the Lease, so it lists everything first) and once with shards
//! (`--sharding`: the standby keeps every object cached and takes the shard's Lease once it
//! lapses). Both with a Lease of [`LEASE_SECONDS`].

use std::time::{Duration, Instant};

use report_sim::ReportingApi;
use serde_json::json;

use crate::cluster::Cluster;
use crate::operator::Operator;
use crate::scale::{make_objects, settle};
use crate::scenarios::{secs, sim};
use crate::{Args, BenchError, Row};

/// The Lease duration of both modes (the chart's default).
const LEASE_SECONDS: u64 = 15;

pub async fn failover(cluster: &Cluster, args: &Args) -> Result<Vec<Row>, BenchError> {
    let (generators, files) = (args.failover_generators.max(1), args.failover_files.max(1));
    let sim = sim(2000).await?;
    let ns = cluster.namespace("f").await?;
    cluster
        .backend(&ns, &sim, ReportingApi::Connect, json!({}))
        .await?;
    make_objects(cluster, &ns, generators, files).await?;
    let mut rows = Vec::new();
    let seconds = LEASE_SECONDS.to_string();
    for (mode, flag, lease) in [
        ("one Lease (--leader-elect)", "--leader-elect", "bench-leader"),
        ("warm standbys (--sharding)", "--sharding", "bench-shards"),
    ] {
        let extra = [
            flag,
            "--leader-election-namespace",
            &ns,
            "--leader-election-lease-name",
            lease,
            "--leader-election-lease-seconds",
            &seconds,
        ];
        let n = rows.len() as u32 * 2;
        let mut replicas = [
            Operator::start_with(&args.operator_command(), &cluster.kubeconfig, &ns, n, &extra)?,
            Operator::start_with(&args.operator_command(), &cluster.kubeconfig, &ns, n + 1, &extra)?,
        ];
        // The replica that reconciles (the namespace's one shard, or the Lease) is the one
        // whose counter moves; once both are quiet, it is killed.
        let started = Instant::now();
        let holder = loop {
            let mut moved = None;
            for (i, r) in replicas.iter().enumerate() {
                if r.reconciles().await.unwrap_or(0) > 0 {
                    moved = Some(i);
                }
            }
            if let Some(i) = moved {
                break i;
            }
            if started.elapsed() > Duration::from_secs(600) {
                return Err(BenchError::Other(format!("{mode}: nobody reconciled")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        settle(&replicas[holder], started).await?;
        let standby = 1 - holder;
        let before = replicas[standby].reconciles().await.unwrap_or(0);
        let killed = Instant::now();
        replicas[holder].kill();
        let first = loop {
            if replicas[standby].reconciles().await.unwrap_or(0) > before {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(600) {
                return Err(BenchError::Other(format!("{mode}: the standby never reconciled")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let settled = settle(&replicas[standby], killed).await?;
        rows.push(Row {
            scenario: format!(
                "(f) failover over {generators} generators and {files} ReportFiles, {mode}, Lease {LEASE_SECONDS} s"
            ),
            result: format!(
                "SIGKILL → first reconcile by the other replica {}; settled {} after the kill",
                secs(first),
                secs(settled)
            ),
        });
    }
    // An operator of its own removes the objects' finalizers while the namespace goes.
    let cmd = args.operator_command();
    let op = Operator::start(&cmd, &cluster.kubeconfig, &ns, rows.len() as u32 * 2)?;
    cluster.delete_namespace(&cmd, &ns, op).await;
    Ok(rows)
}
