//! (f) Failover: two replicas over one namespace of generators and finished ReportFiles; the
//! one that reconciles is SIGKILLed, and the time from the kill to the other's first
//! reconcile is measured, once with one Lease (`--leader-elect`: the standby starts its
//! watches when it wins the Lease, so it lists everything first) and once with shards
//! (`--sharding`: the standby keeps every object cached and takes the shard's Lease once it
//! lapses). Both with a Lease of [`LEASE_SECONDS`].
//!
//! Where the kill falls in the renewal cycle decides most of the wait (a Lease renewed just
//! before the kill lapses a whole duration later), so each row also gives the time from the
//! Lease's lapse (its last renewal plus the duration, read from the API server right after
//! the kill) to the first reconcile: what the standby itself costs.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use report_operator::controller::shard_of;
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
    for (mode, flag, lease, sharded) in [
        (
            "one Lease (--leader-elect)",
            "--leader-elect",
            "bench-leader",
            false,
        ),
        ("warm standbys (--sharding)", "--sharding", "bench-shards", true),
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
        // The replica that reconciles is the holder of the Lease that covers the namespace (the
        // one Lease, or its shard's); it is killed once quiet and still the holder (a shard may
        // move between the replicas while they share them out at start).
        let started = Instant::now();
        let names = [format!("{ns}-{n}"), format!("{ns}-{}", n + 1)];
        let holder = loop {
            let holder = covering_holder(cluster, &ns, lease, sharded).await?;
            let found = holder.as_ref().and_then(|h| {
                names
                    .iter()
                    .position(|name| h == name || h.starts_with(&format!("{name}_")))
            });
            // Once it has begun (a standby with one Lease lists everything first).
            if let Some(i) = found
                && replicas[i].reconciles().await.unwrap_or(0) > 0
            {
                settle(&replicas[i], started).await?;
                if covering_holder(cluster, &ns, lease, sharded).await? == holder {
                    break i;
                }
            }
            if started.elapsed() > Duration::from_secs(1800) {
                return Err(BenchError::Other(format!("{mode}: nobody held the namespace")));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let standby = 1 - holder;
        let before = replicas[standby].reconciles().await.unwrap_or(0);
        let killed = Instant::now();
        replicas[holder].kill();
        let lapse = lapse_ms(cluster, &ns, lease, sharded).await?;
        let first = loop {
            if replicas[standby].reconciles().await.unwrap_or(0) > before {
                break killed.elapsed();
            }
            if killed.elapsed() > Duration::from_secs(600) {
                return Err(BenchError::Other(format!("{mode}: the standby never reconciled")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let after_lapse = chrono::Utc::now().timestamp_millis() - lapse;
        let settled = settle(&replicas[standby], killed).await?;
        rows.push(Row {
            scenario: format!(
                "(f) failover over {generators} generators and {files} ReportFiles, {mode}, Lease {LEASE_SECONDS} s"
            ),
            result: format!(
                "SIGKILL → first reconcile by the other replica {} ({:.2} s after the Lease lapsed); settled {} after the kill",
                secs(first),
                after_lapse as f64 / 1000.0,
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

/// The name of the Lease that covers `ns`: the one Lease, or its shard's.
fn covering_lease(ns: &str, lease: &str, sharded: bool) -> String {
    match sharded {
        // The chart's and the operator's default shard count.
        true => format!("{lease}-shard-{}", shard_of(ns, 16)),
        false => lease.to_string(),
    }
}

/// Who holds the Lease that covers `ns` now, if anyone.
async fn covering_holder(
    cluster: &Cluster,
    ns: &str,
    lease: &str,
    sharded: bool,
) -> Result<Option<String>, BenchError> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);
    let found = api.get_opt(&covering_lease(ns, lease, sharded)).await?;
    Ok(found.and_then(|l| l.spec?.holder_identity))
}

/// When the Lease the standby waits for lapsed, in milliseconds since the epoch: the last
/// renewal plus the duration of the one Lease, or with shards of the orphaned shard's Lease
/// and the killed replica's member Lease (a replica takes a shard above its share only once
/// the other member is gone).
async fn lapse_ms(cluster: &Cluster, ns: &str, lease: &str, sharded: bool) -> Result<i64, BenchError> {
    let api: Api<Lease> = Api::namespaced(cluster.client.clone(), ns);
    let renewed = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0.as_millisecond())
    };
    let holder = |l: &Lease| l.spec.as_ref().and_then(|s| s.holder_identity.clone());
    let last = if sharded {
        let shard = api.get(&covering_lease(ns, lease, sharded)).await?;
        let member = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|l| l.name_any().starts_with(&format!("{lease}-member-")) && holder(l) == holder(&shard))
            .filter_map(|l| renewed(&l))
            .max();
        renewed(&shard).max(member)
    } else {
        renewed(&api.get(lease).await?)
    };
    let last = last.ok_or_else(|| BenchError::Other(format!("Lease {lease} was never renewed")))?;
    Ok(last + 1000 * LEASE_SECONDS as i64)
}
