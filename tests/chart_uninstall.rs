//! The chart's uninstall path and the operator's finalizers (`uninstall.finalizers`), with the
//! real helm on the real control plane: `refuse` (the default) stops `helm uninstall` while
//! objects hold them, `release` removes them once the operator is gone, `keep` adds no hook.
//!
//! No kubelet runs here, so no pod ever starts. A stand-in plays its part for the hook's
//! Job: it runs the operator binary with the Job's own arguments, as the Job's own
//! ServiceAccount (a token from the TokenRequest API, so the hook's RBAC is checked for real),
//! and writes the outcome into the Job's status as the job controller would; helm waits on
//! that status as it would in a cluster.

mod chart_support;
mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chart_support::{CHART, documents, find, flat_rules, helm_on, render, token_kubeconfig};
use common::{ControlPlane, TestNamespace, stderr, stdout};
use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use report_operator::api::{FINALIZER_CONNECT_REPORT, FINALIZER_DELIVERY, FINALIZER_RDE_TEMPLATE};
use serde_json::{Value, json};

const FOREIGN: &str = "example.com/hold";

/// One hook Job the stand-in ran.
#[derive(Clone, Debug)]
struct Run {
    job: String,
    args: Vec<String>,
    succeeded: bool,
    output: String,
    /// Whether the operator's Deployment still existed when the Job ran.
    operator_present: bool,
}

/// Runs the Jobs that appear in `namespace`, as a kubelet and the job controller would.
struct Kubelet {
    runs: Arc<Mutex<Vec<Run>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    async fn start(cp: &ControlPlane, namespace: &str) -> Kubelet {
        let jobs: Api<Job> = Api::namespaced(cp.client().await, namespace);
        let runs = Arc::new(Mutex::new(Vec::new()));
        let (cp, namespace, recorded) = (cp.clone(), namespace.to_string(), runs.clone());
        let task = tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut events =
                std::pin::pin!(watcher(jobs.clone(), watcher::Config::default()).applied_objects());
            while let Ok(Some(job)) = events.try_next().await {
                let finished = job
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| !c.is_empty());
                if finished || !seen.insert(job.uid().unwrap_or_default()) {
                    continue;
                }
                let (cp, namespace) = (cp.clone(), namespace.clone());
                let run = tokio::task::spawn_blocking(move || run_job(&cp, &namespace, &job))
                    .await
                    .expect("run the Job");
                finish(&jobs, &run).await;
                recorded.lock().expect("runs").push(run);
            }
        });
        Kubelet { runs, task }
    }

    fn runs(&self) -> Vec<Run> {
        self.runs.lock().expect("runs").clone()
    }
}

/// The Job's container, run as the operator binary (the image's entrypoint) under the Job's
/// ServiceAccount.
fn run_job(cp: &ControlPlane, namespace: &str, job: &Job) -> Run {
    let pod = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .expect("pod spec");
    let account = pod
        .service_account_name
        .clone()
        .expect("a ServiceAccount of its own");
    let args = pod.containers[0].args.clone().unwrap_or_default();
    let out = cp.kubectl(&["-n", namespace, "create", "token", &account, "--duration=10m"]);
    assert!(out.status.success(), "token for {account}: {}", stderr(&out));
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, token_kubeconfig(cp, stdout(&out).trim())).expect("kubeconfig");
    let operator_present = cp
        .kubectl(&["-n", namespace, "get", "deployments", "-o", "name"])
        .stdout
        .starts_with(b"deployment");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_report-operator"))
        .args(&args)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run report-operator");
    Run {
        job: job.name_any(),
        args,
        succeeded: out.status.success(),
        output: stdout(&out) + &stderr(&out),
        operator_present,
    }
}

/// The Job's status as the job controller writes it when its pod exits.
async fn finish(jobs: &Api<Job>, run: &Run) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let condition = |type_: &str, reason: &str| json!({"type": type_, "status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": reason, "message": reason});
    let status = match run.succeeded {
        true => json!({"startTime": now, "completionTime": now, "succeeded": 1, "conditions": [
            condition("SuccessCriteriaMet", "CompletionsReached"), condition("Complete", "CompletionsReached")]}),
        false => json!({"startTime": now, "failed": 1, "conditions": [
            condition("FailureTarget", "BackoffLimitExceeded"), condition("Failed", "BackoffLimitExceeded")]}),
    };
    jobs.patch_status(
        &run.job,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .expect("Job status");
}

fn finalizers(ns: &TestNamespace, kind: &str, name: &str) -> Option<Vec<String>> {
    let out = ns.kubectl(&["get", kind, name, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let obj: Value = serde_json::from_str(&stdout(&out)).expect("json");
    Some(
        obj["metadata"]["finalizers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|f| f.as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default(),
    )
}

fn apply_held(ns: &TestNamespace) {
    let spec = "spec:\n  backendRef: {name: b}\n  name: Sales\n  eventType: ONETIME\n  format: CSV\n";
    let yaml = format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: sales\n  finalizers: [{FINALIZER_CONNECT_REPORT}, {FOREIGN}]\n{spec}---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportFile\nmetadata:\n  name: usage\n  finalizers: [{FINALIZER_DELIVERY}]\n{spec}---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: billing\n  finalizers: [{FINALIZER_RDE_TEMPLATE}]\nspec:\n  backendRef: {{name: b}}\n  commonName: Billing\n  eventType: ONETIME\n  format: CSV\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-02T23:59:59Z\"\n"
    );
    let out = ns.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// Install as `release` in `release_ns`, watching `tenant` (a cluster-wide hook would touch
/// every test's namespaces on this shared control plane).
fn install(cp: &ControlPlane, release: &str, release_ns: &str, tenant: &str, sets: &[&str]) {
    let mut args = vec!["install", release, CHART, "--namespace", release_ns];
    let watch = format!("watchNamespace={tenant}");
    // The CRDs are the test run's, not this release's; no cluster-wide roles to leave behind.
    for set in [
        "crds.enabled=false",
        "rbac.aggregateToDefaultRoles=false",
        watch.as_str(),
    ]
    .iter()
    .chain(sets)
    {
        args.extend(["--set", set]);
    }
    let out = helm_on(cp, &args);
    assert!(out.status.success(), "helm install: {}", stderr(&out));
}

fn uninstall(cp: &ControlPlane, release: &str, release_ns: &str) -> std::process::Output {
    helm_on(
        cp,
        &["uninstall", release, "--namespace", release_ns, "--timeout", "2m"],
    )
}

/// The uninstall hook's objects left in the release and tenant namespaces.
fn hook_objects(cp: &ControlPlane, release_ns: &str, tenant: &str) -> Vec<String> {
    let mut left = Vec::new();
    for (ns, kinds) in [
        (release_ns, "serviceaccounts,jobs"),
        (tenant, "roles,rolebindings"),
    ] {
        let out = cp.kubectl(&[
            "-n",
            ns,
            "get",
            kinds,
            "-l",
            "app.kubernetes.io/component=uninstall",
            "-o",
            "name",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        left.extend(stdout(&out).lines().map(str::to_string));
    }
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_stops_an_uninstall_while_finalizers_hold_and_release_clears_them() {
    let release_ns = TestNamespace::new("chart-uninstall").await;
    let tenant = TestNamespace::new("chart-uninstall-tenant").await;
    let cp = release_ns.cp().clone();
    let release = format!("u-{}", release_ns.name.rsplit('-').next().expect("suffix"));
    let kubelet = Kubelet::start(&cp, &release_ns.name).await;
    apply_held(&tenant);

    // refuse, the default: the uninstall fails before anything is deleted.
    install(&cp, &release, &release_ns.name, &tenant.name, &[]);
    let out = uninstall(&cp, &release, &release_ns.name);
    assert!(!out.status.success(), "the uninstall went on:\n{}", stdout(&out));
    assert!(
        stderr(&out).contains(&format!("job {release}-report-operator-finalizers failed")),
        "{}",
        stderr(&out)
    );
    let runs = kubelet.runs();
    let run = runs.last().expect("the hook's Job ran");
    assert!(run.args.contains(&"--check".to_string()), "{run:?}");
    assert!(!run.succeeded && run.operator_present, "{run:?}");
    assert!(
        run.output
            .contains("3 object(s) hold report-operator's finalizers")
            && run.output.contains("helm uninstall --no-hooks")
            && run.output.contains("kubectl report release-finalizers --all -A")
            && !run.output.contains("forbidden"),
        "{}",
        run.output
    );
    // helm records the release as "uninstalling", but deleted nothing: the operator runs on.
    let status = helm_on(&cp, &["status", &release, "--namespace", &release_ns.name]);
    assert!(
        stdout(&status).contains("STATUS: uninstalling"),
        "{}",
        stdout(&status)
    );
    let out = release_ns.kubectl(&["get", "deployment", "-o", "name"]);
    assert!(!stdout(&out).trim().is_empty(), "the operator was deleted");
    assert_eq!(
        finalizers(&tenant, "reportfile", "usage"),
        Some(vec![FINALIZER_DELIVERY.to_string()])
    );
    // Its RBAC is gone; the failed Job stays for its log.
    assert_eq!(
        hook_objects(&cp, &release_ns.name, &tenant.name),
        vec![format!("job.batch/{}", run.job)]
    );

    // The way out the message names: uninstall without the hook; the finalizers stay, to be
    // released by the command (tests/plugin_release.rs).
    let out = helm_on(
        &cp,
        &[
            "uninstall",
            &release,
            "--namespace",
            &release_ns.name,
            "--no-hooks",
        ],
    );
    assert!(
        out.status.success(),
        "helm uninstall --no-hooks: {}",
        stderr(&out)
    );
    assert_eq!(
        finalizers(&tenant, "reportfile", "usage"),
        Some(vec![FINALIZER_DELIVERY.to_string()])
    );

    // release: after the operator and its RBAC are gone, the finalizers go.
    install(
        &cp,
        &release,
        &release_ns.name,
        &tenant.name,
        &["uninstall.finalizers=release"],
    );
    let out = tenant.kubectl(&["delete", "reportfile", "usage", "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = uninstall(&cp, &release, &release_ns.name);
    assert!(out.status.success(), "helm uninstall: {}", stderr(&out));
    let runs = kubelet.runs();
    let run = runs.last().expect("the hook's Job ran");
    assert!(!run.args.contains(&"--check".to_string()), "{run:?}");
    assert!(run.succeeded, "{}", run.output);
    assert!(
        !run.operator_present,
        "the release ran while the operator could add the finalizers back"
    );
    assert!(
        run.output
            .contains("Released the operator's finalizers of 3 objects"),
        "{}",
        run.output
    );
    assert_eq!(
        finalizers(&tenant, "reportfile", "usage"),
        None,
        "the deleted report went"
    );
    assert_eq!(
        finalizers(&tenant, "reportfile", "sales"),
        Some(vec![FOREIGN.to_string()])
    );
    assert_eq!(finalizers(&tenant, "reportgenerator", "billing"), Some(vec![]));
    assert_eq!(
        hook_objects(&cp, &release_ns.name, &tenant.name),
        Vec::<String>::new()
    );

    // With nothing held, refuse lets the uninstall through.
    install(&cp, &release, &release_ns.name, &tenant.name, &[]);
    let out = uninstall(&cp, &release, &release_ns.name);
    assert!(out.status.success(), "helm uninstall: {}", stderr(&out));
    assert!(
        kubelet
            .runs()
            .last()
            .is_some_and(|r| r.succeeded && r.args.contains(&"--check".to_string()))
    );
    assert_eq!(
        hook_objects(&cp, &release_ns.name, &tenant.name),
        Vec::<String>::new()
    );
}

#[test]
fn the_hook_is_chosen_by_uninstall_finalizers_and_holds_only_what_it_needs() {
    let hook = |docs: &[Value], kind: &str| find(docs, kind, "report-operator-finalizers").cloned();
    // Cluster-wide: a ClusterRole, and the command over every namespace.
    for (mode, event, verbs, check) in [
        ("refuse", "pre-delete", vec!["get", "list"], true),
        ("release", "post-delete", vec!["get", "list", "patch"], false),
    ] {
        let docs = documents(&render("ops", &[&format!("uninstall.finalizers={mode}")], &[]));
        let job = hook(&docs, "Job").unwrap_or_else(|| panic!("{mode}: no Job"));
        assert_eq!(job["metadata"]["annotations"]["helm.sh/hook"], event, "{mode}");
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "report-operator-finalizers");
        let mut args = vec!["report", "release-finalizers", "--all", "--all-namespaces"];
        if check {
            args.push("--check");
        }
        assert_eq!(pod["containers"][0]["args"], json!(args), "{mode}");
        assert_eq!(
            pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
        let role = hook(&docs, "ClusterRole").expect("ClusterRole");
        let want: std::collections::BTreeSet<_> = ["reportfiles", "reportgenerators"]
            .iter()
            .flat_map(|r| {
                verbs.iter().map(move |v| {
                    (
                        "reporting.report-operator.io".to_string(),
                        r.to_string(),
                        v.to_string(),
                        "*".to_string(),
                    )
                })
            })
            .collect();
        assert_eq!(flat_rules(&role), want, "{mode}");
        for kind in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding"] {
            let obj = hook(&docs, kind).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!(obj["metadata"]["annotations"]["helm.sh/hook"], event, "{kind}");
            assert_eq!(
                obj["metadata"]["annotations"]["helm.sh/hook-delete-policy"],
                "before-hook-creation,hook-succeeded",
                "{kind}"
            );
        }
        // Not the operator's pods: its Deployment's selector does not take the Job's.
        let selector = &find(&docs, "Deployment", "report-operator").expect("Deployment")["spec"]["selector"]
            ["matchLabels"];
        let labels = &job["spec"]["template"]["metadata"]["labels"];
        assert!(
            selector
                .as_object()
                .expect("selector")
                .iter()
                .any(|(k, v)| &labels[k] != v),
            "{labels}"
        );
    }
    // The default is refuse; keep renders no hook.
    let docs = documents(&render("ops", &[], &[]));
    assert_eq!(
        hook(&docs, "Job").expect("Job")["metadata"]["annotations"]["helm.sh/hook"],
        "pre-delete"
    );
    let docs = documents(&render("ops", &["uninstall.finalizers=keep"], &[]));
    assert!(
        docs.iter()
            .all(|d| d["metadata"]["labels"]["app.kubernetes.io/component"] != "uninstall"),
        "keep renders a hook"
    );
}
