//! Carrying the plan out: each event at its time, the slow ones (an API server restart, the
//! store's outage, a generator created while the API server is away) in tasks of their own
//! so that the schedule keeps going; every disturbance recorded as an episode with its end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use report_operator::api::{FileState, ReportFile};
use report_sim::{Fault, FaultKind};
use tokio::task::JoinSet;

use super::observe::{Episode, Milestone};
use super::plan::{Event, GeneratorPlan, Ns, Planned};
use super::workload::{self, common_name, generator_name, namespace_name};
use super::{Deletion, Made, Soak};

/// How often injected faults are checked for having struck.
const FAULT_POLL: Duration = Duration::from_millis(250);

/// Runs `plan`; returns once the last event is done and every fault still waiting has been
/// withdrawn.
pub async fn run(soak: Arc<Soak>, plan: Vec<Planned>) {
    let mut tasks = JoinSet::new();
    let poller = tokio::spawn(poll_faults(soak.clone()));
    let mut kills = 0usize;
    for p in plan {
        tokio::time::sleep_until((soak.started + p.at).into()).await;
        let soak = soak.clone();
        match p.event {
            Event::Generator(g) => {
                tasks.spawn(make_generator(soak, g));
            }
            Event::Fault(fault) => inject(&soak, fault),
            Event::KillOperator => {
                kills += 1;
                kill(&soak, kills).await;
            }
            Event::RestartApiServer => {
                tasks.spawn(restart_api_server(soak));
            }
            Event::StopObjectStore(outage) => {
                tasks.spawn(store_outage(soak, outage));
            }
            Event::DeleteNamespace => {
                tasks.spawn(delete_namespace(soak));
            }
            Event::RdeRun { idx, run } => {
                tasks.spawn(rde_run(soak, idx, run));
            }
            Event::CmpInvoice { idx } => {
                let id = soak.sim.cmp_invoice(&common_name(idx));
                soak.ledger().invoices.insert(idx, id);
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    // Faults that have not struck by now never will: they are withdrawn, and their
    // episodes end here.
    let left = soak.sim.pending_faults();
    soak.sim.clear_faults();
    poller.abort();
    let now = Instant::now();
    let mut ledger = soak.ledger();
    ledger.unstruck = left.iter().map(|f| u64::from(f.count)).sum();
    for f in left.iter().filter(|f| f.kind == FaultKind::TooManyRequests) {
        if let Some(n) = ledger.injected_429.get_mut(f.backend.as_str()) {
            *n = n.saturating_sub(u64::from(f.count));
        }
    }
    for e in &mut ledger.episodes {
        if e.fault.take().is_some() {
            e.ended.get_or_insert(now);
        }
    }
    drop(ledger);
    eprintln!("[soak] {} the disturbances are over", elapsed(&soak));
}

pub fn elapsed(soak: &Soak) -> String {
    format!("{:>7.1} s", soak.started.elapsed().as_secs_f64())
}

async fn make_generator(soak: Arc<Soak>, g: GeneratorPlan) {
    let namespace = namespace_name(&soak.run, g.ns);
    let name = generator_name(&g);
    let today = Utc::now().date_naive();
    let spec = workload::spec(&g, today);
    match workload::create(&soak.cluster, &namespace, &name, spec).await {
        Ok(()) => soak.ledger().made.push(Made {
            plan: g,
            namespace,
            name,
            start: workload::periodic_start(g.kind, today),
        }),
        Err(e) => {
            eprintln!("[soak] generator {namespace}/{name} not created: {e}");
            soak.ledger().not_made.push(format!("{namespace}/{name}: {e}"));
        }
    }
}

/// Injects `fault` unless the same one is still waiting to strike (its end would be lost).
fn inject(soak: &Soak, fault: Fault) {
    let mut ledger = soak.ledger();
    let open = ledger
        .episodes
        .iter()
        .any(|e| e.fault.as_ref().is_some_and(|f| same(f, &fault)));
    if open {
        ledger.faults_skipped += 1;
        return;
    }
    let what = format!(
        "{:?} ×{} on {} {}",
        fault.kind,
        fault.count,
        fault.backend.as_str(),
        fault.endpoint
    );
    eprintln!("[soak] {} fault: {what}", elapsed(soak));
    if fault.kind == FaultKind::TooManyRequests {
        *ledger.injected_429.entry(fault.backend.as_str()).or_default() += u64::from(fault.count);
    }
    let mut episode = Episode::new(&format!("{:?}", fault.kind), what, Some(fault.backend));
    episode.fault = Some(fault.clone());
    ledger.episodes.push(episode);
    soak.sim.inject(fault);
}

fn same(a: &Fault, b: &Fault) -> bool {
    (a.backend, a.endpoint.as_str(), a.kind) == (b.backend, b.endpoint.as_str(), b.kind)
}

/// Ends the episode of each injected fault once the simulator holds no more of it; a
/// timeout ends when its held answer is dropped.
async fn poll_faults(soak: Arc<Soak>) {
    let hang = Duration::from_millis(match soak.sim.config().hang_ms {
        0 => 60_000,
        ms => ms,
    });
    loop {
        tokio::time::sleep(FAULT_POLL).await;
        let pending = soak.sim.pending_faults();
        let now = Instant::now();
        for e in &mut soak.ledger().episodes {
            let struck = e
                .fault
                .as_ref()
                .is_some_and(|f| !pending.iter().any(|p| same(p, f)));
            if struck && let Some(f) = e.fault.take() {
                e.ended = Some(if f.kind == FaultKind::Timeout {
                    now + hang
                } else {
                    now
                });
            }
        }
    }
}

async fn kill(soak: &Soak, n: usize) {
    // The Lease is read without holding the replicas' lock.
    let targeting = soak.replicas().targeting();
    let victim = targeting
        .victim(&soak.cluster.client, soak.seed.wrapping_add(n as u64))
        .await;
    let mut episode = Episode::new(
        "operator killed",
        format!("operator replica {victim} killed"),
        None,
    );
    let result = soak.replicas().kill(victim);
    episode.ended = Some(Instant::now());
    eprintln!("[soak] {} SIGKILL operator replica {victim}", elapsed(soak));
    if let Err(e) = result {
        eprintln!("[soak] operator replica {victim} not started again: {e}");
    }
    soak.ledger().episodes.push(episode);
}

async fn restart_api_server(soak: Arc<Soak>) {
    let mut episode = Episode::new(
        "kube-apiserver restarted",
        "kube-apiserver restarted".into(),
        None,
    );
    eprintln!("[soak] {} restarting kube-apiserver", elapsed(&soak));
    let script = soak.args.control_plane_script.clone();
    let status = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg("restart-apiserver")
            .status()
    })
    .await;
    episode.ended = Some(Instant::now());
    match status {
        Ok(Ok(s)) if s.success() => eprintln!("[soak] {} kube-apiserver is back", elapsed(&soak)),
        other => eprintln!("[soak] restarting kube-apiserver failed: {other:?}"),
    }
    soak.ledger().episodes.push(episode);
}

async fn store_outage(soak: Arc<Soak>, outage: Duration) {
    let mut episode = Episode::new(
        "object store down",
        format!("object store down {} s", outage.as_secs()),
        None,
    );
    episode.until = Milestone::Copied;
    soak.store.lock().await.stop();
    eprintln!("[soak] {} object store stopped", elapsed(&soak));
    tokio::time::sleep(outage).await;
    if let Err(e) = soak.store.lock().await.restart().await {
        eprintln!("[soak] the object store did not start again: {e}");
    }
    episode.ended = Some(Instant::now());
    eprintln!("[soak] {} object store back", elapsed(&soak));
    soak.ledger().episodes.push(episode);
}

/// Deletes the doomed namespace once a report in it is in progress (waiting up to a minute
/// for one), and records when it is gone.
async fn delete_namespace(soak: Arc<Soak>) {
    let ns = namespace_name(&soak.run, Ns::Doomed);
    let files: Api<ReportFile> = Api::namespaced(soak.cluster.client.clone(), &ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut in_flight = 0;
    while Instant::now() < deadline {
        if let Ok(list) = files.list(&ListParams::default()).await {
            in_flight = list
                .items
                .iter()
                .filter(|f| f.status.as_ref().and_then(|s| s.status) == Some(FileState::InProgress))
                .count();
            if in_flight > 0 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(soak.cluster.client.clone());
    let at = Instant::now();
    let mut deleted = namespaces.delete(&ns, &DeleteParams::background()).await;
    while deleted.is_err() && at.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_secs(2)).await;
        deleted = namespaces.delete(&ns, &DeleteParams::background()).await;
    }
    eprintln!(
        "[soak] {} namespace {ns} deleted with {in_flight} reports in progress",
        elapsed(&soak)
    );
    soak.ledger().deletion = Some(Deletion {
        namespace: ns,
        at,
        in_flight,
        gone: None,
    });
}

/// The RDE platform's task for generator `idx`'s template (found by its common name, once
/// the operator has made it), as on day `run` of January 2025: a window of its own.
async fn rde_run(soak: Arc<Soak>, idx: usize, run: u32) {
    let name = common_name(idx);
    let deadline = Instant::now() + Duration::from_secs(90);
    let template = loop {
        let found = soak
            .sim
            .rde_templates()
            .into_iter()
            .find(|t| t.common_name == name);
        if let Some(t) = found {
            break Some(t.id);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    };
    let at = DateTime::parse_from_rfc3339("2025-01-01T06:00:00Z")
        .map(|t| t.with_timezone(&Utc) + chrono::Duration::days(i64::from(run)))
        .ok();
    match template.map(|id| soak.sim.rde_run_template(&id, at)) {
        Some(Ok(_)) => soak.ledger().rde_runs += 1,
        _ => soak.ledger().rde_runs_skipped += 1,
    }
}
