//! The end of the run: waiting until every report has finished (as long as reports keep
//! finishing), then the checks, each from a source other than the operator: the API
//! server's objects, the simulators' counts and files, the bucket, the processes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{Patch, PatchParams};
use report_operator::api::{FileState, ReportFile, find_condition};
use report_sim::{ReportingApi, SimFile};
use sha2::{Digest, Sha256};

use super::assess::{self, State, api_of, delivery_sha, external_id, file_state};
use super::chaos::elapsed;
use super::observe::recoveries;
use super::plan::Ns;
use super::replicas::End;
use super::store;
use super::workload::{BUCKET, common_name, namespace_name};
use super::{Soak, table::Table};
use crate::BenchError;
use crate::operator::mib;

/// Waits until every generator of the namespaces that stay has all its reports finished and
/// copied and the doomed namespace is gone; gives up when nothing has moved for `quiet`, or
/// after `limit`. Returns how long it took and whether everything settled.
pub async fn settle(soak: &Soak, quiet: Duration, limit: Duration) -> (Duration, bool) {
    let started = Instant::now();
    let (mut best, mut moved) = (0usize, Instant::now());
    loop {
        note_deletion(soak).await;
        let settled = match assess::snapshot(soak).await {
            Ok(snapshot) => {
                let ledger = soak.ledger();
                let templates = soak.sim.rde_templates();
                let states = assess::assess(&ledger.made, &ledger.invoices, &templates, &snapshot);
                let progress: usize = states.iter().map(State::progress).sum();
                if progress > best {
                    (best, moved) = (progress, Instant::now());
                }
                let gone = ledger.deletion.as_ref().is_some_and(|d| d.gone.is_some());
                let pending = states.iter().filter(|s| !s.settled()).count();
                if pending > 0 && started.elapsed().as_secs() % 30 < 5 {
                    eprintln!("[soak] {} settling: {pending} generators not done", elapsed(soak));
                }
                pending == 0 && gone
            }
            Err(_) => false,
        };
        if settled || moved.elapsed() > quiet || started.elapsed() > limit {
            return (started.elapsed(), settled);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Records when the doomed namespace is gone.
async fn note_deletion(soak: &Soak) {
    let Some((ns, at)) = soak
        .ledger()
        .deletion
        .as_ref()
        .filter(|d| d.gone.is_none())
        .map(|d| (d.namespace.clone(), d.at))
    else {
        return;
    };
    let api: Api<Namespace> = Api::all(soak.cluster.client.clone());
    if let Ok(None) = api.get_opt(&ns).await
        && let Some(d) = soak.ledger().deletion.as_mut()
    {
        d.gone = Some(at.elapsed());
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The simulator's own file of a ReportFile: FUSION's by its name, the others' by the
/// report's id in the storage path.
fn sim_file<'a>(files: &'a [SimFile], f: &ReportFile) -> Option<&'a SimFile> {
    let api = api_of(f)?;
    if api == ReportingApi::Fusion {
        let name = f.status.as_ref()?.file_name.as_deref()?;
        return files.iter().find(|s| s.backend == api.as_str() && s.name == name);
    }
    let id = external_id(f)?;
    files
        .iter()
        .find(|s| s.backend == api.as_str() && s.name.contains(id))
}

fn name_of(f: &ReportFile) -> String {
    format!(
        "{}/{}",
        f.metadata.namespace.as_deref().unwrap_or_default(),
        f.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Every check, as the table's rows.
pub async fn check(soak: &Soak, settle: (Duration, bool)) -> Result<Table, BenchError> {
    let snapshot = assess::snapshot(soak).await?;
    let stats = soak.sim.stats();
    let templates = soak.sim.rde_templates();
    let sim_files = soak.sim.files();
    let (made, invoices) = {
        let l = soak.ledger();
        (l.made.clone(), l.invoices.clone())
    };
    let states = assess::assess(&made, &invoices, &templates, &snapshot);
    let mut t = Table::default();

    // What was asked for and what became of it.
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for m in &made {
        *kinds.entry(m.plan.kind.label()).or_default() += 1;
    }
    let mut kinds: Vec<String> = kinds.into_iter().map(|(k, n)| format!("{n} {k}")).collect();
    kinds.sort();
    t.info(
        "generators made",
        format!("{} ({})", made.len(), kinds.join(", ")),
    );
    let not_made = soak.ledger().not_made.clone();
    t.check(
        "generators the API server refused",
        not_made.len().to_string(),
        not_made.is_empty(),
        &not_made,
    );
    let slots: usize = states.iter().map(|s| s.slots.len()).sum();
    t.info(
        "reports asked for (the namespaces that stay)",
        format!(
            "{slots} from {} generators; the settling took {:.0} s",
            states.len(),
            settle.0.as_secs_f64()
        ),
    );
    let ready: usize = states.iter().map(State::ready).sum();
    let failed: usize = states.iter().map(State::failed).sum();
    t.info("READY", ready.to_string());

    // FAILED only where the simulator failed the report, and the simulator's reports all
    // accounted for.
    let mut mismatched = Vec::new();
    let mut sim_failed = 0;
    for s in &states {
        let api = s.made.plan.kind.api();
        let (generated, sim_fails) = if api == ReportingApi::Fusion {
            (s.files().count() as u64, 0)
        } else {
            assess::generated(&stats, api, s.made.plan.idx)
        };
        sim_failed += sim_fails;
        if generated != s.files().count() as u64 || sim_fails != s.failed() as u64 {
            mismatched.push(format!(
                "{}/{}: {} reports and {} FAILED; the simulator generated {generated} and failed {sim_fails}",
                s.made.namespace,
                s.made.name,
                s.files().count(),
                s.failed()
            ));
        }
    }
    t.check(
        "FAILED, as the simulator decided",
        format!("{failed} (the simulator failed {sim_failed})"),
        mismatched.is_empty(),
        &mismatched,
    );

    let doubled = assess::doubled(&stats, &templates);
    t.check(
        "generated twice (the simulators' counts)",
        doubled.len().to_string(),
        doubled.is_empty(),
        &doubled,
    );

    // Lost: a slot without a report (and without a Missed Event), a report not finished, a
    // report nobody asked for.
    let mut lost = Vec::new();
    let mut missed = 0;
    for s in &states {
        let missing = s.missing();
        if !missing.is_empty() && missing.len() as u32 <= s.missed_events {
            missed += missing.len();
        } else {
            lost.extend(
                missing
                    .iter()
                    .map(|slot| format!("{}/{}: no report of {slot}", s.made.namespace, s.made.name)),
            );
        }
        lost.extend(
            s.files()
                .filter(|f| !file_state(f).is_some_and(FileState::is_finished))
                .map(|f| format!("{}: not finished ({:?})", name_of(f), file_state(f))),
        );
        lost.extend(
            s.extra
                .iter()
                .map(|n| format!("{}/{n}: not asked for", s.made.namespace)),
        );
        if s.templates != 1 {
            lost.push(format!(
                "{}/{}: {} RDE templates",
                s.made.namespace, s.made.name, s.templates
            ));
        }
    }
    t.check(
        "lost (a window, report or platform report without its ReportFile, or not finished)",
        lost.len().to_string(),
        lost.is_empty(),
        &lost,
    );
    t.info("windows missed with a Missed Event", missed.to_string());

    let ready_files: Vec<&ReportFile> = states
        .iter()
        .flat_map(|s| {
            s.files()
                .filter(|f| file_state(f) == Some(FileState::Ready))
                .map(move |f| (s, f))
        })
        .map(|(_, f)| f)
        .collect();
    let stored: Vec<&ReportFile> = states
        .iter()
        .filter(|s| s.made.plan.stored)
        .flat_map(|s| s.files().filter(|f| file_state(f) == Some(FileState::Ready)))
        .collect();
    let objects = copies(soak, &stored, &sim_files, &mut t).await?;
    secrets(soak, &ready_files, &objects, &sim_files, &mut t).await;

    processes(soak, &mut t);
    disturbances(soak, &stats, &mut t).await;
    Ok(t)
}

/// Each copy in the bucket, read from the bucket: equal to the simulator's file and to what
/// the status says. Returns the objects' digests by ReportFile.
async fn copies(
    soak: &Soak,
    stored: &[&ReportFile],
    sim_files: &[SimFile],
    t: &mut Table,
) -> Result<HashMap<String, String>, BenchError> {
    let client = store::client(&soak.store_endpoint)?;
    let checked: Vec<(String, Result<String, String>)> = futures::stream::iter(stored.iter().map(|f| {
        let client = client.clone();
        async move {
            let name = name_of(f);
            let outcome = async {
                let location = f
                    .status
                    .as_ref()
                    .and_then(|s| s.delivery.as_ref())
                    .and_then(|d| d.location.clone())
                    .ok_or("not copied")?;
                let key = location
                    .strip_prefix(&format!("s3://{BUCKET}/"))
                    .ok_or_else(|| format!("copied to {location}"))?;
                let object = store::get(&client, key).await.map_err(|e| e.to_string())?;
                let sha = hex_sha256(&object);
                let want = sim_file(sim_files, f).ok_or("the simulator has no such file")?;
                if sha != want.sha256 {
                    return Err(format!(
                        "{key}: SHA-256 {sha}, the simulator's file {}",
                        want.sha256
                    ));
                }
                if delivery_sha(f) != Some(sha.as_str()) {
                    return Err(format!("{key}: the status says SHA-256 {:?}", delivery_sha(f)));
                }
                Ok(sha)
            }
            .await;
            (name, outcome)
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await;
    let bad = failures(&checked);
    t.check(
        "copies in the bucket equal to the simulator's file (SHA-256)",
        format!("{} of {}", checked.len() - bad.len(), checked.len()),
        bad.is_empty(),
        &bad,
    );
    Ok(checked
        .into_iter()
        .filter_map(|(n, r)| Some((n, r.ok()?)))
        .collect())
}

/// The failed ones of named outcomes, as `name: why`.
fn failures<T>(checked: &[(String, Result<T, String>)]) -> Vec<String> {
    checked
        .iter()
        .filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}")))
        .collect()
}

/// Every READY report's Secret is there, and its URL downloads the report (a SUPPLIER URL
/// that has expired, as documented, after the refresh-url annotation re-mints it); FUSION's
/// file without a store is in the Secret itself.
async fn secrets(
    soak: &Soak,
    ready: &[&ReportFile],
    objects: &HashMap<String, String>,
    sim_files: &[SimFile],
    t: &mut Table,
) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    let checked: Vec<(String, Result<bool, String>)> =
        futures::stream::iter(ready.iter().enumerate().map(|(i, f)| {
            let http = http.clone();
            async move {
                let name = name_of(f);
                let want = objects
                    .get(&name)
                    .cloned()
                    .or_else(|| sim_file(sim_files, f).map(|s| s.sha256.clone()));
                (name, secret_serves(soak, &http, f, want, i).await)
            }
        }))
        .buffer_unordered(8)
        .collect()
        .await;
    let bad = failures(&checked);
    let reminted = checked.iter().filter(|(_, r)| matches!(r, Ok(true))).count();
    t.check(
        "READY reports whose Secret is there and serves the report",
        format!(
            "{} of {} ({reminted} SUPPLIER URLs expired as documented, re-minted on the refresh-url annotation)",
            checked.len() - bad.len(),
            checked.len()
        ),
        bad.is_empty(),
        &bad,
    );
}

/// Checks one READY report's Secret; `Ok(true)` when its URL had to be re-minted first.
async fn secret_serves(
    soak: &Soak,
    http: &reqwest::Client,
    f: &ReportFile,
    want: Option<String>,
    n: usize,
) -> Result<bool, String> {
    let ns = f.metadata.namespace.clone().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(soak.cluster.client.clone(), &ns);
    let secret_name = f
        .status
        .as_ref()
        .and_then(|s| s.download_secret_ref.as_ref())
        .map(|r| r.name.clone())
        .ok_or("no downloadSecretRef")?;
    let data = |s: Secret, key: &str| s.data.and_then(|d| d.get(key).map(|v| v.0.clone()));
    let secret = secrets
        .get(&secret_name)
        .await
        .map_err(|e| format!("Secret: {e}"))?;
    let want = want.ok_or("no file of the simulator's to compare with")?;
    if let Some(content) = data(secret.clone(), "content") {
        return (hex_sha256(&content) == want)
            .then_some(false)
            .ok_or_else(|| "the Secret's content is not the simulator's file".to_string());
    }
    let url = |s: Secret| data(s, "url").map(|u| String::from_utf8_lossy(&u).into_owned());
    let first = url(secret).ok_or("no url in the Secret")?;
    let mut reminted = false;
    let mut got = download(http, &first).await;
    let expired = f
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, "Ready"))
        .is_some_and(|c| c.reason == "UrlExpired");
    if got.is_err() && (expired || api_of(f) == Some(ReportingApi::Supplier)) {
        let fresh = remint(soak, f, &format!("soak-check-{n}")).await?;
        got = download(http, &fresh).await;
        reminted = true;
    }
    let sha = got?;
    (sha == want)
        .then_some(reminted)
        .ok_or_else(|| format!("the URL serves SHA-256 {sha}, not {want}"))
}

/// GETs a URL; the SHA-256 of what it serves.
async fn download(http: &reqwest::Client, url: &str) -> Result<String, String> {
    let answer = http.get(url).send().await.map_err(|e| format!("GET: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("GET answered {status}"));
    }
    let bytes = answer.bytes().await.map_err(|e| format!("GET: {e}"))?;
    Ok(hex_sha256(&bytes))
}

/// Sets the refresh-url annotation to `value`, waits for the status to record it, and reads
/// the Secret's new URL (the way `kubectl report download` does).
async fn remint(soak: &Soak, f: &ReportFile, value: &str) -> Result<String, String> {
    let ns = f.metadata.namespace.clone().unwrap_or_default();
    let name = f.metadata.name.clone().unwrap_or_default();
    let files: Api<ReportFile> = Api::namespaced(soak.cluster.client.clone(), &ns);
    let patch =
        serde_json::json!({"metadata": {"annotations": {"reporting.report-operator.io/refresh-url": value}}});
    files
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("annotate: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Ok(now) = files.get(&name).await else { continue };
        if now.status.as_ref().and_then(|s| s.last_url_refresh.as_deref()) == Some(value) {
            let secret_name = now
                .status
                .and_then(|s| s.download_secret_ref)
                .map(|r| r.name)
                .ok_or("no downloadSecretRef")?;
            let secrets: Api<Secret> = Api::namespaced(soak.cluster.client.clone(), &ns);
            let secret = secrets.get(&secret_name).await.map_err(|e| e.to_string())?;
            return secret
                .data
                .and_then(|d| d.get("url").map(|u| String::from_utf8_lossy(&u.0).into_owned()))
                .ok_or_else(|| "no url after the re-mint".to_string());
        }
    }
    Err("the refresh-url annotation was not acted on within 300 s".into())
}

/// How each operator process ended, and their peak memory.
fn processes(soak: &Soak, t: &mut Table) {
    let processes = soak.replicas().processes.clone();
    let count = |f: fn(&End) -> bool| processes.iter().filter(|p| f(&p.end)).count();
    let unexpected: Vec<String> = processes
        .iter()
        .filter_map(|p| match &p.end {
            End::Unexpected(why) => Some(format!("replica {}: {why} (log {})", p.replica, p.log.display())),
            _ => None,
        })
        .collect();
    t.check(
        "operator exits other than the kills",
        format!(
            "{} ({} processes: {} SIGKILLed by the soak, {} stepped down after losing the Lease as documented, {} stopped at the end)",
            unexpected.len(),
            processes.len(),
            count(|e| *e == End::Killed),
            count(|e| matches!(e, End::SteppedDown(_))),
            count(|e| *e == End::Stopped),
        ),
        unexpected.is_empty(),
        &unexpected,
    );
    let mut peaks: Vec<u64> = processes.iter().map(|p| p.peak_kib).filter(|k| *k > 0).collect();
    peaks.sort_unstable();
    let median = peaks.get(peaks.len() / 2).copied().unwrap_or(0);
    t.info(
        "peak memory (VmHWM) of the operator processes",
        format!(
            "{} at most, median {} ({} processes)",
            mib(peaks.last().copied().unwrap_or(0)),
            mib(median),
            peaks.len()
        ),
    );
}

/// How many disturbances of each kind, and how long from the end of each to the first READY
/// after it.
fn recovery_rows(l: &super::Ledger, ready: &[super::observe::Ready], t: &mut Table) {
    let mut by_kind: HashMap<&str, (usize, Duration)> = HashMap::new();
    let mut longest: Option<(Duration, &str)> = None;
    let mut never = 0;
    for (i, r) in recoveries(&l.episodes, ready) {
        let e = &l.episodes[i];
        let entry = by_kind.entry(e.kind.as_str()).or_default();
        entry.0 += 1;
        match r {
            Some(d) => {
                entry.1 = entry.1.max(d);
                if longest.is_none_or(|(l, _)| d > l) {
                    longest = Some((d, e.what.as_str()));
                }
            }
            None => never += 1,
        }
    }
    let mut kinds: Vec<String> = by_kind
        .into_iter()
        .map(|(k, (n, max))| format!("{n} {k} (≤ {:.1} s)", max.as_secs_f64()))
        .collect();
    kinds.sort();
    t.info(
        "disturbances, by kind (longest end → first READY)",
        kinds.join("; "),
    );
    t.info(
        "longest time from a fault's end to the first READY after it",
        match longest {
            Some((d, what)) => format!(
                "{:.1} s (after {what}); {never} ended with no report left to finish",
                d.as_secs_f64()
            ),
            None => "—".into(),
        },
    );
}

/// The disturbances and the doomed namespace.
async fn disturbances(soak: &Soak, stats: &report_sim::SimStats, t: &mut Table) {
    let ready = soak.ready.seen();
    let deletion = {
        let l = soak.ledger();
        recovery_rows(&l, &ready, t);
        t.info(
            "faults injected that never struck (withdrawn at the end), skipped as already waiting",
            format!("{} calls, {}", l.unstruck, l.faults_skipped),
        );
        t.info(
            "platform triggers (RDE task runs, CMP invoices)",
            format!(
                "{} runs ({} skipped: no template yet), {} invoices",
                l.rde_runs,
                l.rde_runs_skipped,
                l.invoices.len()
            ),
        );
        let own: Vec<String> = stats
            .rate_limited
            .iter()
            .map(|(api, n)| {
                let injected = l.injected_429.get(api.as_str()).copied().unwrap_or(0);
                (api, n.saturating_sub(injected))
            })
            .filter(|(_, n)| *n > 0)
            .map(|(api, n)| format!("{n} {api}"))
            .collect();
        t.info(
            "429s from the simulators' own limits (not injected)",
            if own.is_empty() {
                "0".into()
            } else {
                own.join(", ")
            },
        );
        l.deletion.clone()
    };
    match deletion {
        Some(d) => {
            let doomed: Vec<String> = soak
                .ledger()
                .made
                .iter()
                .filter(|m| m.plan.ns == Ns::Doomed)
                .map(|m| common_name(m.plan.idx))
                .collect();
            let left = soak
                .sim
                .rde_templates()
                .iter()
                .filter(|t| doomed.contains(&t.common_name))
                .count();
            let objects = match store::client(&soak.store_endpoint) {
                Ok(c) => store::keys(&c, &format!("reports/{}", d.namespace))
                    .await
                    .map(|k| k.len())
                    .unwrap_or(0),
                Err(_) => 0,
            };
            t.check(
                "namespace deleted with reports in flight",
                format!(
                    "{} in progress; gone after {}; {left} RDE templates and {objects} copies left behind",
                    d.in_flight,
                    d.gone.map_or("— (still there)".into(), |g| format!(
                        "{:.0} s",
                        g.as_secs_f64()
                    ))
                ),
                d.gone.is_some(),
                &[format!(
                    "{} is still there",
                    namespace_name(&soak.run, Ns::Doomed)
                )],
            );
        }
        None => t.check(
            "namespace deleted with reports in flight",
            "not deleted".into(),
            false,
            &[],
        ),
    }
}
