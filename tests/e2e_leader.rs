//! Leader election: of two operator processes only the one holding the Lease reconciles, and
//! when it dies the other takes over within the Lease duration without doubling a report. A
//! leader cut off from the API server stops before the other may take over.

mod common;

use std::time::{Duration, Instant};

use common::e2e::World;
use common::fixtures::{self, lower, sim_api};
use common::operator::{LOOPBACK_SIMULATORS, Operator};
use common::proxy::{Cut, Proxy, upstream_of};
use common::{repo_root, wait_for};
use report_operator::api::{BackendType, FileState};
use report_sim::SimConfig;

const LEASE_SECONDS: u64 = 6;

fn leader_flags(ns: &str) -> Vec<String> {
    vec![
        "--leader-elect".into(),
        "--leader-election-namespace".into(),
        ns.into(),
        "--leader-election-lease-seconds".into(),
        LEASE_SECONDS.to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let config = SimConfig::default().for_all(|b| b.generation_ms = 6000);
    let mut world = World::start("e2e-leader", config).await;
    // The World's own operator runs without leader election: stop it, run two electing ones.
    world.operator.kill();
    let flags = leader_flags(&world.ns.name);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut first = Operator::start_with(world.ns.cp(), &world.ns.name, &flags);
    wait_to_lead(&first).await;
    let mut second = Operator::start_with(world.ns.cp(), &world.ns.name, &flags);
    wait_to_stand_by(&second).await;

    let t = submit_report(&world).await;
    assert!(
        first.logs().contains("backend checked"),
        "the leader did not reconcile"
    );
    assert!(
        !second.logs().contains("backend checked"),
        "the standby reconciled:\n{}",
        second.logs()
    );

    // The standby, once it leads, must take up the running report at once: not call its
    // backend missing because its own ReportBackend cache has not listed yet.
    let reasons = world.record_file_reasons();
    wait_for(
        "the watch to see the running report",
        Duration::from_secs(30),
        || async { (!reasons.seen().is_empty()).then_some(()) },
    )
    .await;
    let killed = Instant::now();
    first.kill();
    // The Lease expires LEASE_SECONDS after the last renewal; the deadline allows for the
    // standby's retry interval on top.
    wait_for(
        "the standby to take over",
        Duration::from_secs(LEASE_SECONDS * 3),
        || async {
            second
                .logs()
                .contains("acquired the leader-election Lease")
                .then_some(())
        },
    )
    .await;
    eprintln!("takeover after {:?}", killed.elapsed());
    let files = world.wait_finished("once", 1, Duration::from_secs(60)).await;
    assert_eq!(
        files[0].status.as_ref().and_then(|s| s.status),
        Some(FileState::Ready)
    );
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "a report was generated twice"
    );
    let seen = reasons.seen();
    assert!(
        seen.iter().all(|(_, reason)| reason != "Pending"),
        "the report waited for its backend after the takeover: {seen:?}"
    );
    second.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connections_are_reset_stops_before_the_standby_takes_over() {
    leader_cut_off_stops_before_the_standby_takes_over(Cut::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_connections_hang_stops_before_the_standby_takes_over() {
    leader_cut_off_stops_before_the_standby_takes_over(Cut::Hang).await;
}

/// The first operator reaches the API server through a proxy that the test cuts while it
/// leads and a report is running; the second talks to the API server directly.
async fn leader_cut_off_stops_before_the_standby_takes_over(cut: Cut) {
    let config = SimConfig::default().for_all(|b| b.generation_ms = 6000);
    let mut world = World::start("e2e-leader-cut", config).await;
    world.operator.kill();
    let flags = leader_flags(&world.ns.name);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cp = world.ns.cp().clone();
    let proxy = Proxy::start(upstream_of(&cp.kubeconfig)).await;
    let kubeconfig = proxy.kubeconfig(
        &cp.kubeconfig,
        &repo_root().join(format!("target/test-logs/{}-proxy", world.ns.name)),
    );
    let mut first = Operator::start_with_kubeconfig(&kubeconfig, &world.ns.name, &flags);
    wait_to_lead(&first).await;
    let mut second = Operator::start_with(&cp, &world.ns.name, &flags);
    wait_to_stand_by(&second).await;

    let t = submit_report(&world).await;
    assert!(
        first.logs().contains("backend checked"),
        "the leader did not reconcile"
    );

    let cut_at = Instant::now();
    proxy.cut(cut);
    // Polled in this order, a stop seen here and a standby not yet leading after it means the
    // stop came first.
    let (status, stopped_after) = wait_for(
        "the cut-off leader to stop",
        Duration::from_secs(LEASE_SECONDS * 3),
        || {
            let exited = first.exited().map(|status| (status, cut_at.elapsed()));
            async move { exited }
        },
    )
    .await;
    assert!(
        !second.logs().contains("acquired the leader-election Lease"),
        "the standby took over before the cut-off leader stopped ({stopped_after:?} after the cut)"
    );
    assert!(!status.success(), "the cut-off leader exited with {status}");
    assert!(
        first
            .logs()
            .contains("lost contact with the API server; stopping reconciles"),
        "the cut-off leader stopped for another reason:\n{}",
        first.logs()
    );
    assert!(
        stopped_after < Duration::from_secs(LEASE_SECONDS),
        "the cut-off leader stopped {stopped_after:?} after the cut"
    );
    wait_for(
        "the standby to take over",
        Duration::from_secs(LEASE_SECONDS * 3),
        || async {
            second
                .logs()
                .contains("acquired the leader-election Lease")
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "{cut:?}: the leader stopped {stopped_after:?} after the cut, the standby led {:?} after it",
        cut_at.elapsed()
    );

    let files = world.wait_finished("once", 1, Duration::from_secs(60)).await;
    assert_eq!(
        files[0].status.as_ref().and_then(|s| s.status),
        Some(FileState::Ready)
    );
    assert_eq!(
        world.sim.stats().total_generations(sim_api(t)),
        1,
        "a report was generated twice"
    );
    second.kill();
}

/// A container restarted in its pod keeps the pod's name, and the Lease may still name the
/// predecessor. The new process is a new candidate (its identity has a suffix of its own): it
/// waits for that Lease to run out like any standby, never takes it for its own (the soak saw
/// two leaders at once when it did), and then leads on its own renewals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_restarted_under_the_same_pod_name_waits_for_its_predecessors_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let mut world = World::start("e2e-leader-same-name", SimConfig::default()).await;
    world.operator.kill();
    let ns = world.ns.name.clone();
    // The Lease as a predecessor named by the pod alone leaves it: valid for about ten more
    // seconds, its last renewal 30 s old (older than the watchdog allows).
    let renewed = chrono::Utc::now() - chrono::Duration::seconds(30);
    let expires = renewed + chrono::Duration::seconds(40);
    world.apply(&format!(
        "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: report-operator\n  namespace: {ns}\nspec:\n  holderIdentity: op-same\n  leaseDurationSeconds: 40\n  acquireTime: \"{t}\"\n  renewTime: \"{t}\"\n",
        t = renewed.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
    ));
    let mut flags = leader_flags(&ns);
    flags.extend(["--namespace".to_string(), ns.clone()]);
    flags.extend(LOOPBACK_SIMULATORS.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut op = Operator::start_replica(&world.ns.cp().kubeconfig, "op-same", &flags);
    wait_to_lead(&op).await;
    let lease: Lease = kube::Api::namespaced(world.client.clone(), &ns)
        .get("report-operator")
        .await
        .expect("the Lease");
    let spec = lease.spec.expect("spec");
    let holder = spec.holder_identity.unwrap_or_default();
    assert!(
        holder.starts_with("op-same_"),
        "the holder is this process, not its predecessor: {holder}"
    );
    let acquired = spec.acquire_time.expect("acquireTime").0.as_second();
    assert!(
        acquired >= expires.timestamp(),
        "taken only once the predecessor's Lease ran out ({acquired} < {})",
        expires.timestamp()
    );
    let t = submit_report(&world).await;
    let files = world.wait_finished("once", 1, Duration::from_secs(60)).await;
    assert_eq!(
        files[0].status.as_ref().and_then(|s| s.status),
        Some(FileState::Ready)
    );
    assert_eq!(op.exited(), None, "the operator stopped:\n{}", op.logs());
    assert!(
        !op.logs().contains("stopping reconciles"),
        "the operator stepped down:\n{}",
        op.logs()
    );
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1);
    op.kill();
}

/// A pod started while the API server cannot be reached (restarting, say) waits for it, as a
/// standby waits for the Lease, instead of exiting and crash-looping.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_started_while_the_api_server_is_unreachable_waits_for_it() {
    let mut world = World::start("e2e-leader-no-apiserver", SimConfig::default()).await;
    world.operator.kill();
    let flags = leader_flags(&world.ns.name);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let cp = world.ns.cp().clone();
    let proxy = Proxy::start(upstream_of(&cp.kubeconfig)).await;
    let kubeconfig = proxy.kubeconfig(
        &cp.kubeconfig,
        &repo_root().join(format!("target/test-logs/{}-proxy", world.ns.name)),
    );
    proxy.cut(Cut::Reset);
    let mut op = Operator::start_with_kubeconfig(&kubeconfig, &world.ns.name, &flags);
    wait_for(
        "the operator to wait for the API server",
        Duration::from_secs(30),
        || async {
            op.logs()
                .contains("cannot read the leader-election Lease yet")
                .then_some(())
        },
    )
    .await;
    assert_eq!(op.exited(), None, "the operator exited:\n{}", op.logs());
    proxy.cut(Cut::None);
    wait_to_lead(&op).await;
    submit_report(&world).await;
    assert_eq!(op.exited(), None, "the operator exited:\n{}", op.logs());
    op.kill();
}

async fn wait_to_lead(op: &Operator) {
    wait_for("the first operator to lead", Duration::from_secs(30), || async {
        op.logs()
            .contains("acquired the leader-election Lease")
            .then_some(())
    })
    .await;
}

async fn wait_to_stand_by(op: &Operator) {
    wait_for(
        "the second operator to stand by",
        Duration::from_secs(30),
        || async {
            op.logs()
                .contains("waiting for the leader-election Lease")
                .then_some(())
        },
    )
    .await;
}

/// Applies a CMP backend and a ONETIME generator `once`, and waits until its report is
/// submitted (the simulator takes 6 s to make it, so it is still running then).
async fn submit_report(world: &World) -> BackendType {
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        &lower(t),
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&fixtures::onetime(t, "once", &lower(t), "Monthly usage"));
    wait_for("the report submitted", Duration::from_secs(60), || async {
        let files = world.files_of("once").await;
        files.first()?.status.as_ref()?.external_id.as_ref().map(|_| ())
    })
    .await;
    t
}
