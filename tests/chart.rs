//! The Helm chart (charts/report-operator) and the Argo CD health checks shipped with it:
//! the chart's CRDs, `helm lint`, rendered manifests accepted by a real API server, the values
//! schema, the RBAC it grants (exactly the rules the operator needs, and enough for the real
//! operator to do its job with nothing else), and the Lua health scripts run in Lua 5.1.
//!
//! helm comes from `REPORT_OPERATOR_HELM` (set by hack/test.sh), or from `hack/helm.sh`.

mod chart_support;
mod common;

mod lua_support;

use std::collections::BTreeSet;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chart_support::{
    CHART, chart_dir, documents, expected_rules, find, flat_rules, helm, render, set_args, token_kubeconfig,
};
use common::fixtures;
use common::{TestNamespace, stderr, stdout, wait_for};
use lua_support::to_lua;
use report_operator::api::{BackendType, FileState, ReportFile, find_condition};
use report_sim::{SimConfig, SimServer};
use serde_json::{Value, json};

fn kinds(docs: &[Value]) -> BTreeSet<String> {
    docs.iter()
        .map(|d| d["kind"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn container_args(docs: &[Value]) -> Vec<String> {
    chart_support::container_args_of(docs, "report-operator")
}

/// What the operator needs, as the book's RBAC page (docs/src/security/rbac.md) documents it.
fn operator_rules() -> BTreeSet<(String, String, String, String)> {
    const G: &str = "reporting.report-operator.io";
    expected_rules(&[
        (
            G,
            &[
                "reportbackends",
                "reportgenerators",
                "reportfiles",
                "reportstores",
            ],
            &["get", "list", "watch"],
        ),
        (G, &["reportgenerators"], &["patch"]),
        (G, &["reportfiles"], &["create", "delete", "patch"]),
        (
            G,
            &[
                "reportbackends/status",
                "reportgenerators/status",
                "reportfiles/status",
                "reportstores/status",
            ],
            &["get", "patch"],
        ),
        (
            G,
            &["reportgenerators/finalizers", "reportfiles/finalizers"],
            &["update"],
        ),
        ("", &["secrets"], &["get", "list", "watch", "create", "patch"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

/// Server-side dry run of rendered manifests; returns kubectl's output.
fn dry_run(cp: &common::ControlPlane, manifests: &str) -> Output {
    cp.kubectl_with_stdin(&["apply", "--dry-run=server", "-f", "-"], Some(manifests))
}

// ---------------------------------------------------------------------------------------
// The chart's files

/// The chart's CRD templates are the binary's `crd` output (hack/update-crds.sh writes them)
/// plus the chart's labels and the keep annotation.
#[test]
fn chart_crds_are_the_binarys_crds() {
    let docs = documents(&render("ops", &[], &[]));
    let mut rendered: Vec<Value> = docs
        .into_iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    for crd in &mut rendered {
        let meta = crd["metadata"].as_object_mut().expect("metadata");
        assert!(meta.remove("labels").is_some(), "the chart labels its CRDs");
        assert!(meta.remove("annotations").is_some(), "crds.keep is on by default");
    }
    let mut generated: Vec<Value> = report_operator::api::crds()
        .iter()
        .map(|c| serde_json::to_value(c).expect("CRD as JSON"))
        .collect();
    let by_name = |a: &Value, b: &Value| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    };
    rendered.sort_by(by_name);
    generated.sort_by(by_name);
    assert!(
        rendered == generated,
        "charts/report-operator/templates/crds/ is stale: run hack/update-crds.sh"
    );
    let files: Vec<_> = std::fs::read_dir(chart_dir().join("templates/crds"))
        .expect("templates/crds/")
        .collect();
    assert_eq!(
        files.len(),
        generated.len(),
        "templates/crds/ holds one template per CRD, nothing else"
    );
    assert!(
        !chart_dir().join("crds").exists(),
        "no crds/ directory: helm would install it once and never upgrade it"
    );
}

#[test]
fn chart_version_and_default_image_follow_the_crate() {
    let chart: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"))
            .expect("Chart.yaml parses");
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion is the crate's version"
    );
    let docs = documents(&render("ops", &[], &[]));
    let deployment = find(&docs, "Deployment", "report-operator").expect("Deployment");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!(
            "ghcr.io/report-operator/report-operator:{}",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn helm_lint_is_clean_with_default_and_overridden_values() {
    let scenarios: &[&[&str]] = &[
        &[],
        &["watchNamespace=billing"],
        &["replicaCount=2", "podDisruptionBudget.enabled=true"],
        &[
            "metrics.serviceMonitor.enabled=true",
            "networkPolicy.enabled=true",
        ],
        &["rbac.aggregateToDefaultRoles=false", "logLevel=debug"],
    ];
    for sets in scenarios {
        let mut args = vec!["lint".to_string(), "--strict".to_string(), CHART.to_string()];
        args.extend(set_args(sets));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = helm(&args);
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(out.status.success(), "helm lint {sets:?} failed:\n{text}");
        assert!(
            !text.contains("[WARNING]") && !text.contains("[ERROR]"),
            "helm lint {sets:?}:\n{text}"
        );
    }
}

#[test]
fn values_schema_rejects_wrong_values_naming_the_field() {
    for (set, field) in [
        ("replicaCount=abc", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("concurrency=0", "/concurrency"),
        ("metrics.port=70000", "/metrics/port"),
        ("metrics.service.type=Ingress", "/metrics/service/type"),
        (
            "metrics.serviceMonitor.interval=soon",
            "/metrics/serviceMonitor/interval",
        ),
        ("watchNamespace=Not_A_Namespace", "/watchNamespace"),
        ("leaderElection.enabled=yes", "/leaderElection/enabled"),
        ("sharding.shards=0", "/sharding/shards"),
        ("sharding.shards=1025", "/sharding/shards"),
        ("logLevel=loud", "/logLevel"),
        (
            "rbac.aggregateToDefaultRoles=maybe",
            "/rbac/aggregateToDefaultRoles",
        ),
        ("replicas=2", "replicas"),
        ("image.name=x", "name"),
    ] {
        let out = helm(&["template", "report-operator", CHART, "--set", set]);
        assert!(!out.status.success(), "--set {set} was accepted");
        let err = stderr(&out);
        assert!(
            err.contains("schema"),
            "--set {set} was refused, but not by the schema:\n{err}"
        );
        assert!(
            err.contains(field),
            "--set {set}: the error does not name {field}:\n{err}"
        );
    }
    // The same values, well formed, are accepted.
    let ok = [
        "replicaCount=3",
        "logFormat=text",
        "image.pullPolicy=Always",
        "metrics.port=9090",
        "watchNamespace=billing",
    ];
    render("ops", &ok, &[]);
}

#[test]
fn notes_tell_the_user_what_to_apply_next() {
    let out = helm(&[
        "install",
        "report-operator",
        CHART,
        "--dry-run=client",
        "--namespace",
        "ops",
        "--set",
        "watchNamespace=billing",
        // The control plane's CRDs are the tests' own, not a Helm release's: Helm would
        // refuse to adopt them (tests/chart_upgrade.rs covers the chart's CRDs).
        "--set",
        "crds.enabled=false",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let notes = text.split("NOTES:").nth(1).expect("helm prints NOTES");
    for needle in [
        "It watches namespace billing only",
        "kubectl -n billing create secret generic",
        "kind: ReportBackend",
        "kind: ReportGenerator",
        "kubectl -n billing get reporting",
        "kubectl apply --server-side",
        "helm uninstall stops (\"job report-operator-finalizers failed\")",
    ] {
        assert!(notes.contains(needle), "NOTES lack {needle:?}:\n{notes}");
    }
}

// ---------------------------------------------------------------------------------------
// What the chart renders, checked by the real API server

#[tokio::test]
async fn default_install_is_accepted_by_the_api_server_with_cluster_wide_rbac() {
    let ns = TestNamespace::new("chart-default").await;
    let manifests = render(&ns.name, &[], &["--include-crds"]);
    let out = dry_run(ns.cp(), &manifests);
    assert!(
        out.status.success(),
        "the API server rejected the default install:\n{}",
        stderr(&out)
    );
    let docs = documents(&manifests);
    assert_eq!(
        kinds(&docs),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            // The uninstall hook's (uninstall.finalizers=refuse), with its own ServiceAccount
            // and ClusterRole.
            "Job",
            "Service",
            "ServiceAccount"
        ]
        .into_iter()
        .map(String::from)
        .collect(),
        "default values render these kinds, no Role, no Lease Role, no extras"
    );
    let args = container_args(&docs);
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "watches all namespaces: {args:?}"
    );
    assert!(
        !args.contains(&"--leader-elect".to_string()),
        "one replica runs without a Lease: {args:?}"
    );
    let deployment = find(&docs, "Deployment", "report-operator").expect("Deployment");
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "Recreate",
        "one replica without a Lease never overlaps another"
    );
}

#[test]
fn the_deployment_runs_locked_down_with_probes_and_pod_identity() {
    let docs = documents(&render("ops", &[], &[]));
    let pod = &find(&docs, "Deployment", "report-operator").expect("Deployment")["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert_eq!(
        c["ports"][0],
        json!({"name": "metrics", "containerPort": 8080, "protocol": "TCP"})
    );
    let env = c["env"].as_array().expect("env");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let var = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(var["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    let args = container_args(&docs);
    assert_eq!(
        &args[..5],
        [
            "run",
            "--metrics-addr=0.0.0.0:8080",
            "--log-format=json",
            "--concurrency=16",
            "--log-level=info"
        ]
    );
    let args = container_args(&documents(&render("ops", &["logLevel=debug"], &[])));
    assert!(
        args.contains(&"--log-level=debug".to_string()),
        "logLevel becomes --log-level: {args:?}"
    );
}

/// The four kinds in the built-in user-facing roles: view reads them and their status, edit
/// and admin also write them, and nobody but the operator writes status.
#[test]
fn aggregated_roles_extend_view_edit_and_admin_without_status_writes() {
    const G: &str = "reporting.report-operator.io";
    const KINDS: &[&str] = &[
        "reportbackends",
        "reportgenerators",
        "reportfiles",
        "reportstores",
    ];
    const STATUS: &[&str] = &[
        "reportbackends/status",
        "reportgenerators/status",
        "reportfiles/status",
        "reportstores/status",
    ];
    const READ: &[&str] = &["get", "list", "watch"];
    let docs = documents(&render("ops", &[], &[]));
    let view = find(&docs, "ClusterRole", "report-operator-view").expect("view ClusterRole");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert_eq!(
        flat_rules(view),
        expected_rules(&[(G, KINDS, READ), (G, STATUS, READ)])
    );
    let edit = find(&docs, "ClusterRole", "report-operator-edit").expect("edit ClusterRole");
    let labels = &edit["metadata"]["labels"];
    assert_eq!(labels["rbac.authorization.k8s.io/aggregate-to-edit"], "true");
    assert_eq!(labels["rbac.authorization.k8s.io/aggregate-to-admin"], "true");
    assert!(
        labels
            .get("rbac.authorization.k8s.io/aggregate-to-view")
            .is_none(),
        "view gets only the view role"
    );
    let write: &[&str] = &[
        "get",
        "list",
        "watch",
        "create",
        "update",
        "patch",
        "delete",
        "deletecollection",
    ];
    assert_eq!(
        flat_rules(edit),
        expected_rules(&[(G, KINDS, write), (G, STATUS, READ)])
    );

    let docs = documents(&render("ops", &["rbac.aggregateToDefaultRoles=false"], &[]));
    for name in ["report-operator-view", "report-operator-edit"] {
        assert!(
            find(&docs, "ClusterRole", name).is_none(),
            "{name} rendered although turned off"
        );
    }
    assert!(
        find(&docs, "ClusterRole", "report-operator").is_some(),
        "the operator's own role stays"
    );
}

#[test]
fn rbac_is_exactly_what_the_operator_needs() {
    let docs = documents(&render("ops", &[], &[]));
    let role = find(&docs, "ClusterRole", "report-operator").expect("ClusterRole");
    assert_eq!(flat_rules(role), operator_rules());
    let binding = find(&docs, "ClusterRoleBinding", "report-operator").expect("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["name"], "report-operator");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "report-operator", "namespace": "ops"}])
    );

    // Leader election: create any Lease, read and renew only its own, in the release namespace.
    let docs = documents(&render("ops", &["leaderElection.enabled=true"], &[]));
    let lease_role = find(&docs, "Role", "report-operator-leader-election").expect("Lease Role");
    assert_eq!(lease_role["metadata"]["namespace"], "ops");
    let mut lease_rules = BTreeSet::new();
    lease_rules.insert((
        "coordination.k8s.io".into(),
        "leases".into(),
        "create".into(),
        "*".into(),
    ));
    for verb in ["get", "patch"] {
        lease_rules.insert((
            "coordination.k8s.io".into(),
            "leases".into(),
            verb.into(),
            "report-operator".into(),
        ));
    }
    assert_eq!(flat_rules(lease_role), lease_rules);
    assert!(find(&docs, "RoleBinding", "report-operator-leader-election").is_some());
    assert!(find(&docs, "Role", "report-operator-shards").is_none());

    // Sharding: list and create any Lease, read back and write only the shard and member
    // Leases, in the release namespace; no leader-election Role.
    let docs = documents(&render("ops", &["replicaCount=3", "sharding.shards=4"], &[]));
    let shard_role = find(&docs, "Role", "report-operator-shards").expect("shard Lease Role");
    assert_eq!(shard_role["metadata"]["namespace"], "ops");
    let mut shard_rules = BTreeSet::new();
    for verb in ["list", "create"] {
        shard_rules.insert((
            "coordination.k8s.io".into(),
            "leases".into(),
            verb.into(),
            "*".into(),
        ));
    }
    for i in 0..4 {
        for name in [
            format!("report-operator-shard-{i}"),
            format!("report-operator-member-{i}"),
        ] {
            for verb in ["get", "update"] {
                shard_rules.insert((
                    "coordination.k8s.io".into(),
                    "leases".into(),
                    verb.into(),
                    name.clone(),
                ));
            }
        }
    }
    assert_eq!(flat_rules(shard_role), shard_rules);
    assert!(find(&docs, "RoleBinding", "report-operator-shards").is_some());
    assert!(find(&docs, "Role", "report-operator-leader-election").is_none());
}

#[tokio::test]
async fn namespaced_install_is_accepted_and_grants_only_the_watched_namespace() {
    let release = TestNamespace::new("chart-ops").await;
    let watched = TestNamespace::new("chart-billing").await;
    let manifests = render(&release.name, &[&format!("watchNamespace={}", watched.name)], &[]);
    let out = dry_run(release.cp(), &manifests);
    assert!(
        out.status.success(),
        "the API server rejected the namespaced install:\n{}",
        stderr(&out)
    );
    let docs = documents(&manifests);
    let k = kinds(&docs);
    assert!(
        !k.contains("ClusterRoleBinding"),
        "namespaced mode binds nothing cluster-wide: {k:?}"
    );
    let cluster_roles: BTreeSet<&str> = docs
        .iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .filter_map(|d| d["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["report-operator-edit", "report-operator-view"]),
        "the operator's own rules are a Role; the only ClusterRoles are the aggregated user roles"
    );
    let role = find(&docs, "Role", "report-operator").expect("Role");
    assert_eq!(role["metadata"]["namespace"], watched.name.as_str());
    assert_eq!(flat_rules(role), operator_rules());
    let binding = find(&docs, "RoleBinding", "report-operator").expect("RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], watched.name.as_str());
    assert_eq!(binding["subjects"][0]["namespace"], release.name.as_str());
    assert!(container_args(&docs).contains(&format!("--namespace={}", watched.name)));
}

#[tokio::test]
async fn two_replicas_with_a_pdb_are_accepted_and_share_the_shards() {
    let ns = TestNamespace::new("chart-ha").await;
    let manifests = render(
        &ns.name,
        &["replicaCount=2", "podDisruptionBudget.enabled=true"],
        &[],
    );
    let out = dry_run(ns.cp(), &manifests);
    assert!(
        out.status.success(),
        "the API server rejected the HA install:\n{}",
        stderr(&out)
    );
    let docs = documents(&manifests);
    let args = container_args(&docs);
    for arg in [
        "--sharding".to_string(),
        "--shards=16".to_string(),
        format!("--leader-election-namespace={}", ns.name),
        "--leader-election-lease-name=report-operator".to_string(),
        "--leader-election-lease-seconds=15".to_string(),
    ] {
        assert!(args.contains(&arg), "{arg} missing: {args:?}");
    }
    assert!(!args.contains(&"--leader-elect".to_string()), "{args:?}");
    let pdb = find(&docs, "PodDisruptionBudget", "report-operator").expect("PodDisruptionBudget");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "report-operator"
    );
    assert!(
        find(&docs, "Role", "report-operator-shards").is_some(),
        "Lease Role"
    );
    let deployment = find(&docs, "Deployment", "report-operator").expect("Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(
        deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );

    // With one watched namespace (one shard), several replicas elect a leader instead.
    let docs = documents(&render(
        &ns.name,
        &["replicaCount=2", "watchNamespace=billing"],
        &[],
    ));
    let args = container_args(&docs);
    assert!(args.contains(&"--leader-elect".to_string()), "{args:?}");
    assert!(!args.contains(&"--sharding".to_string()), "{args:?}");
}

/// The prometheus-operator ServiceMonitor CRD, cut down to the fields the chart sets but with
/// their real types and the real duration pattern, so that a server-side dry run with strict
/// field validation catches a misspelt or mistyped field. Installed in the shared control
/// plane by server-side apply (idempotent).
const SERVICE_MONITOR_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        required: [spec]
        properties:
          apiVersion: {type: string}
          kind: {type: string}
          metadata: {type: object}
          spec:
            type: object
            required: [selector]
            properties:
              jobLabel: {type: string}
              endpoints:
                type: array
                items:
                  type: object
                  properties:
                    port: {type: string}
                    path: {type: string}
                    scheme: {type: string, enum: [http, https, HTTP, HTTPS]}
                    interval: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                    scrapeTimeout: {type: string, pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$'}
                    honorLabels: {type: boolean}
                    relabelings: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
                    metricRelabelings: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
              namespaceSelector:
                type: object
                properties:
                  any: {type: boolean}
                  matchNames: {type: array, items: {type: string}}
              selector:
                type: object
                properties:
                  matchLabels: {type: object, additionalProperties: {type: string}}
                  matchExpressions: {type: array, items: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

#[tokio::test]
async fn service_monitor_and_network_policy_are_accepted() {
    let ns = TestNamespace::new("chart-mon").await;
    let cp = ns.cp();
    let out = cp.kubectl_with_stdin(
        &[
            "apply",
            "--server-side",
            "--field-manager=report-operator-chart-tests",
            "-f",
            "-",
        ],
        Some(SERVICE_MONITOR_CRD),
    );
    assert!(
        out.status.success(),
        "install the ServiceMonitor CRD fixture: {}",
        stderr(&out)
    );
    let out = cp.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        "crd/servicemonitors.monitoring.coreos.com",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let sets = [
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.scrapeTimeout=10s",
        "metrics.serviceMonitor.labels.release=prometheus",
        "networkPolicy.enabled=true",
        "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ];
    let manifests = render(&ns.name, &sets, &[]);
    let out = dry_run(cp, &manifests);
    assert!(
        out.status.success(),
        "the API server rejected the monitored install:\n{}",
        stderr(&out)
    );
    let docs = documents(&manifests);

    let sm = find(&docs, "ServiceMonitor", "report-operator").expect("ServiceMonitor");
    let service = find(&docs, "Service", "report-operator-metrics").expect("metrics Service");
    for (key, value) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects the metrics Service by {key}"
        );
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        service["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");

    let np = find(&docs, "NetworkPolicy", "report-operator").expect("NetworkPolicy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        np["spec"]["ingress"][0]["ports"],
        json!([{"port": "metrics", "protocol": "TCP"}])
    );
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["name"],
        "monitoring"
    );
    let egress = np["spec"]["egress"].as_array().expect("egress");
    let to_cidrs: Vec<&str> = egress
        .iter()
        .flat_map(|r| r["to"].as_array().into_iter().flatten())
        .filter_map(|peer| peer["ipBlock"]["cidr"].as_str())
        .collect();
    assert!(
        to_cidrs.contains(&"10.0.0.1/32"),
        "egress to the API server: {to_cidrs:?}"
    );
    assert!(
        to_cidrs.contains(&"0.0.0.0/0"),
        "egress to the backends: {to_cidrs:?}"
    );
    assert!(
        egress.iter().any(|r| r["ports"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p["port"] == 53))),
        "egress to DNS: {egress:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The real operator under the chart's RBAC and flags

struct Process(std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Installs the chart's ServiceAccount and RBAC (namespaced mode, leader election on), then
/// runs the operator binary with the Deployment's own arguments and environment, as that
/// ServiceAccount: it must take the Lease, check a backend, create a report, write its Secret,
/// publish Events and remove its finalizer, without a single "forbidden".
#[tokio::test]
async fn the_operator_does_its_job_with_only_the_charts_rbac_and_flags() {
    let release = TestNamespace::new("chart-rbac-ops").await;
    let watched = TestNamespace::new("chart-rbac-billing").await;
    let cp = release.cp().clone();
    let manifests = render(
        &release.name,
        // The simulators listen on loopback over plain HTTP.
        // No user-facing ClusterRoles: cluster-wide, they would outlive this test's namespaces.
        &[
            &format!("watchNamespace={}", watched.name),
            "leaderElection.enabled=true",
            "outbound.allowCidrs={127.0.0.1/32}",
            "outbound.allowHttp=true",
            "rbac.aggregateToDefaultRoles=false",
        ],
        // What `helm install` creates: the uninstall hook's objects come at uninstall.
        &["--no-hooks"],
    );
    // No scheduler or deployment controller runs here: the Deployment stays a record, and
    // the operator runs as a local process instead of its pod.
    let out = cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifests));
    assert!(
        out.status.success(),
        "install the chart's objects: {}",
        stderr(&out)
    );
    let out = cp.kubectl(&[
        "-n",
        &release.name,
        "create",
        "token",
        "report-operator",
        "--duration=1h",
    ]);
    assert!(
        out.status.success(),
        "token for the ServiceAccount: {}",
        stderr(&out)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, token_kubeconfig(&cp, stdout(&out).trim())).expect("write kubeconfig");

    let docs = documents(&manifests);
    let args: Vec<String> = container_args(&docs)
        .into_iter()
        .map(|a| {
            if a.starts_with("--metrics-addr=") {
                "--metrics-addr=127.0.0.1:0".to_string()
            } else {
                a
            }
        })
        .collect();
    let pod_name = "report-operator-7d9f8-abcde";
    let log_path = common::repo_root().join(format!("target/test-logs/{}-chart-operator.log", watched.name));
    std::fs::create_dir_all(log_path.parent().expect("log dir")).expect("log dir");
    let log = std::fs::File::create(&log_path).expect("log file");
    let _operator = Process(
        Command::new(env!("CARGO_BIN_EXE_report-operator"))
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", pod_name)
            .env("POD_NAMESPACE", &release.name)
            .env("RUST_LOG", "info,report_operator=debug,kube=warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start report-operator"),
    );
    // Fails at once, with the log, when the API server refused the operator anything (or it
    // stopped), rather than at the end of a wait.
    let no_refusals = || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let refused = text.lines().find(|l| l.to_lowercase().contains("forbidden"));
        assert!(
            refused.is_none(),
            "the operator was refused something:\n{}",
            refused.unwrap_or_default()
        );
        let stopped = text.lines().find(|l| l.contains("\"level\":\"ERROR\""));
        assert!(stopped.is_none(), "the operator failed:\n{text}");
    };

    // The port it picked (port 0: tests running at once never race for one).
    let metrics_addr = wait_for(
        "the operator's metrics address in its log",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            text.lines()
                .find(|l| l.contains("metrics server listening"))
                .and_then(common::operator::listening_addr)
        },
    )
    .await;
    // The probes the Deployment declares answer.
    let deployment = find(&docs, "Deployment", "report-operator").expect("Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .expect("probe path")
            .to_string();
        let url = format!("http://{metrics_addr}{path}");
        wait_for(
            &format!("{probe} {url} (log: {})", log_path.display()),
            Duration::from_secs(30),
            || async {
                no_refusals();
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|r| r.status().is_success())
                    .map(|_| ())
            },
        )
        .await;
    }

    // It holds the Lease in the release namespace, as the pod.
    wait_for(
        "the Lease held by the operator",
        Duration::from_secs(30),
        || async {
            no_refusals();
            let out = cp.kubectl(&[
                "-n",
                &release.name,
                "get",
                "lease",
                "report-operator",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ]);
            // `<pod>_<8 hex>`: the pod name and a suffix of the process.
            stdout(&out)
                .strip_prefix(&format!("{pod_name}_"))
                .is_some_and(|suffix| suffix.len() == 8)
                .then_some(())
        },
    )
    .await;

    // A backend and a report, end to end (RDE: a finalizer, a mirrored ReportFile).
    let sim = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let t = BackendType::Rde;
    for manifest in [
        fixtures::backend(&sim, t, "commerce", &fixtures::good_credentials(t), ""),
        fixtures::onetime(t, "once", "commerce", "Monthly usage"),
    ] {
        let out = watched.kubectl_stdin(&["apply", "-f", "-"], &manifest);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let client = cp.client().await;
    let files: kube::Api<ReportFile> = kube::Api::namespaced(client.clone(), &watched.name);
    let rf = wait_for(
        &format!("a READY ReportFile (log: {})", log_path.display()),
        Duration::from_secs(120),
        || async {
            no_refusals();
            let list = files.list(&Default::default()).await.ok()?;
            list.items
                .into_iter()
                .find(|f| f.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready))
        },
    )
    .await;
    let status = rf.status.clone().expect("status");
    let ready = find_condition(&status.conditions, "Ready").expect("Ready condition");
    assert_eq!(ready.status, "True", "{ready:?}");
    let secret = status.download_secret_ref.expect("downloadSecretRef").name;
    let out = watched.kubectl(&["get", "secret", &secret, "-o", "jsonpath={.data.url}"]);
    assert!(
        out.status.success() && !stdout(&out).is_empty(),
        "report Secret: {}",
        stderr(&out)
    );
    let out = watched.kubectl(&[
        "get",
        "events.events.k8s.io",
        "-o",
        "jsonpath={.items[*].reportingController}",
    ]);
    assert!(
        stdout(&out).contains("report-operator"),
        "no Events published by the operator: {}",
        stderr(&out)
    );

    // Argo CD's view of the real objects: Healthy once the operator has caught up (the
    // generator counts its READY report a moment after the ReportFile turns READY).
    let file_name = rf.metadata.name.clone().expect("name");
    for (kind, name) in [
        ("reportbackend", "commerce"),
        ("reportgenerator", "once"),
        ("reportfile", file_name.as_str()),
    ] {
        wait_for(
            &format!("Argo CD health Healthy for {kind}/{name}"),
            Duration::from_secs(30),
            || {
                let out = watched.kubectl(&["get", kind, name, "-o", "json"]);
                assert!(out.status.success(), "{}", stderr(&out));
                let obj: Value = serde_json::from_str(&stdout(&out)).expect("object json");
                let (health, _message) = lua_health(&format!("health-{kind}.lua"), &obj);
                std::future::ready((health == "Healthy").then_some(()))
            },
        )
        .await;
    }

    // Deleting the generator runs the RDE finalizer, which the operator removes by patch.
    let out = watched.kubectl(&["delete", "reportgenerator", "once", "--wait=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(
        "the generator's finalizer removed",
        Duration::from_secs(60),
        || async {
            no_refusals();
            let out = watched.kubectl(&[
                "get",
                "reportgenerator",
                "once",
                "--ignore-not-found",
                "-o",
                "name",
            ]);
            (out.status.success() && stdout(&out).trim().is_empty()).then_some(())
        },
    )
    .await;

    no_refusals();
}

// ---------------------------------------------------------------------------------------
// Argo CD: the example Application and the health checks

#[test]
fn argocd_application_example_points_at_this_chart_with_valid_values() {
    let app: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("argocd/application.yaml")).expect("application.yaml"),
    )
    .expect("application.yaml parses");
    assert_eq!(app["kind"], "Application");
    let source = &app["spec"]["source"];
    assert_eq!(source["path"], CHART);
    assert!(
        source["repoURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://"))
    );
    assert!(
        app["spec"]["syncPolicy"]["syncOptions"]
            .as_array()
            .expect("syncOptions")
            .contains(&json!("ServerSideApply=true"))
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        serde_yaml::to_string(&source["helm"]["valuesObject"]).expect("values"),
    )
    .expect("write values");
    render(
        "report-operator",
        &[],
        &["--values", values.to_str().expect("utf8 path")],
    );
}

#[test]
fn argocd_cm_snippet_embeds_each_health_script_verbatim() {
    let cm: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("argocd/argocd-cm.yaml")).expect("argocd-cm.yaml"),
    )
    .expect("argocd-cm.yaml parses");
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().expect("data");
    // The resource actions are checked in tests/argocd_actions.rs.
    let health = data
        .keys()
        .filter(|k| k.starts_with("resource.customizations.health."))
        .count();
    assert_eq!(health, 3, "{:?}", data.keys().collect::<Vec<_>>());
    for kind in ["ReportBackend", "ReportGenerator", "ReportFile"] {
        let key = format!("resource.customizations.health.reporting.report-operator.io_{kind}");
        let script =
            std::fs::read_to_string(chart_dir().join(format!("argocd/health-{}.lua", kind.to_lowercase())))
                .expect("health script");
        assert_eq!(
            data.get(&key).and_then(Value::as_str),
            Some(script.as_str()),
            "{key} differs from its .lua file"
        );
    }
}

/// Runs `charts/report-operator/argocd/<script>` with global `obj` and returns its status and
/// message.
fn lua_health(script: &str, obj: &Value) -> (String, String) {
    let path = chart_dir().join("argocd").join(script);
    let source = std::fs::read_to_string(&path).expect("health script");
    let lua = mlua::Lua::new();
    lua.globals()
        .set("obj", to_lua(&lua, obj).expect("obj to Lua"))
        .expect("set obj");
    let hs: mlua::Table = lua
        .load(&source)
        .set_name(script)
        .eval()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let status: String = hs.get("status").expect("hs.status");
    let message: Option<String> = hs.get("message").expect("hs.message");
    assert!(
        [
            "Healthy",
            "Progressing",
            "Degraded",
            "Suspended",
            "Missing",
            "Unknown"
        ]
        .contains(&status.as_str()),
        "{script} returned an unknown status {status}"
    );
    (status, message.unwrap_or_default())
}

/// A fixture object of `kind` at `generation` with `status` (and `spec` where given).
fn object(kind: &str, generation: i64, spec: Value, status: Value) -> Value {
    json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "x", "namespace": "billing", "generation": generation},
        "spec": spec,
        "status": status,
    })
}

fn ready(status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({"type": "Ready", "status": status, "reason": reason, "message": message,
           "observedGeneration": generation, "lastTransitionTime": "2026-11-01T00:00:00Z"})
}

/// Each case: (object, expected status, a piece of the expected message).
fn check_health(script: &str, cases: &[(Value, &str, &str)]) {
    for (obj, want, needle) in cases {
        let (status, message) = lua_health(script, obj);
        assert_eq!(&status, want, "{script} on {obj}: {message}");
        assert!(
            message.contains(needle),
            "{script} on {obj}: message {message:?} lacks {needle:?}"
        );
    }
}

#[test]
fn argocd_health_of_report_backends() {
    let rb = |generation, status| object("ReportBackend", generation, json!({"type": "CMP"}), status);
    check_health(
        "health-reportbackend.lua",
        &[
            (rb(1, Value::Null), "Progressing", "Waiting"),
            (rb(1, json!({"conditions": []})), "Progressing", "Waiting"),
            (
                rb(
                    1,
                    json!({"observedGeneration": 1, "conditions": [ready("True", "Authenticated", "CMP API accepted the credentials", 1)]}),
                ),
                "Healthy",
                "accepted the credentials",
            ),
            (
                rb(
                    1,
                    json!({"observedGeneration": 1, "conditions": [ready("False", "Unauthorized", "the API refused the credentials (401)", 1)]}),
                ),
                "Degraded",
                "Unauthorized: the API refused the credentials (401)",
            ),
            (
                rb(
                    1,
                    json!({"observedGeneration": 1, "conditions": [ready("False", "CredentialsMissing", "Secret commerce-credentials lacks key apiKey", 1)]}),
                ),
                "Degraded",
                "lacks key apiKey",
            ),
            // Spec changed, status not yet: not Healthy, not Degraded either.
            (
                rb(
                    2,
                    json!({"observedGeneration": 1, "conditions": [ready("True", "Authenticated", "ok", 1)]}),
                ),
                "Progressing",
                "generation 2",
            ),
            (
                rb(
                    3,
                    json!({"observedGeneration": 2, "conditions": [ready("False", "Unreachable", "timeout", 2)]}),
                ),
                "Progressing",
                "generation 3",
            ),
            // Without status.observedGeneration, the condition's counts.
            (
                rb(
                    2,
                    json!({"conditions": [ready("True", "Authenticated", "ok", 1)]}),
                ),
                "Progressing",
                "generation 2",
            ),
            (
                rb(
                    2,
                    json!({"conditions": [ready("True", "Authenticated", "ok", 2)]}),
                ),
                "Healthy",
                "ok",
            ),
        ],
    );
}

#[test]
fn argocd_health_of_report_generators() {
    let periodic = |suspend: bool| json!({"eventType": "PERIODIC", "parameters": {"period": "P1D"}, "schedule": {"suspend": suspend}});
    let onetime = json!({"eventType": "ONETIME"});
    let rg = |generation, spec: &Value, status| object("ReportGenerator", generation, spec.clone(), status);
    let st = |cond: Value, observed: i64| json!({"observedGeneration": observed, "conditions": [cond], "reports": {"inProgress": 0, "ready": 1, "failed": 0}});
    check_health(
        "health-reportgenerator.lua",
        &[
            (rg(1, &onetime, Value::Null), "Progressing", "Waiting"),
            (
                rg(
                    1,
                    &onetime,
                    st(ready("True", "ReportReady", "the report is READY", 1), 1),
                ),
                "Healthy",
                "the report is READY",
            ),
            (
                rg(
                    1,
                    &periodic(false),
                    st(
                        ready("True", "Scheduled", "3 READY, 1 in progress, 0 FAILED", 1),
                        1,
                    ),
                ),
                "Healthy",
                "3 READY",
            ),
            (
                rg(
                    1,
                    &onetime,
                    st(
                        ready("False", "ReportInProgress", "the report is being generated", 1),
                        1,
                    ),
                ),
                "Progressing",
                "being generated",
            ),
            (
                rg(
                    1,
                    &onetime,
                    st(
                        ready(
                            "False",
                            "BackendNotFound",
                            "ReportBackend \"commerce\" does not exist",
                            1,
                        ),
                        1,
                    ),
                ),
                "Degraded",
                "BackendNotFound: ReportBackend \"commerce\" does not exist",
            ),
            (
                rg(
                    1,
                    &onetime,
                    st(
                        ready(
                            "False",
                            "ReportFailed",
                            "the report FAILED; see its ReportFile",
                            1,
                        ),
                        1,
                    ),
                ),
                "Degraded",
                "ReportFailed",
            ),
            // Its newest report FAILED: Degraded, as Argo CD shows a CronJob whose last Job failed.
            (
                rg(
                    1,
                    &periodic(false),
                    st(
                        ready(
                            "False",
                            "LastReportFailed",
                            "the latest report, ReportFile \"x-20261104\", FAILED: NO_DATA",
                            1,
                        ),
                        1,
                    ),
                ),
                "Degraded",
                "LastReportFailed: the latest report, ReportFile \"x-20261104\", FAILED",
            ),
            (
                rg(
                    2,
                    &periodic(true),
                    st(ready("False", "LastReportFailed", "FAILED", 2), 2),
                ),
                "Degraded",
                "LastReportFailed",
            ),
            (
                rg(
                    1,
                    &periodic(false),
                    st(ready("False", "UnsupportedPeriod", "P1W is not offered", 1), 1),
                ),
                "Degraded",
                "P1W",
            ),
            (
                rg(
                    2,
                    &periodic(true),
                    st(ready("True", "Scheduled", "0 READY", 2), 2),
                ),
                "Suspended",
                "suspend",
            ),
            // A suspend the backend cannot honour (RDE) is refused, and shows as Degraded, not
            // Suspended: the platform goes on making reports.
            (
                rg(
                    2,
                    &periodic(true),
                    st(
                        ready(
                            "False",
                            "UnsupportedSetting",
                            "schedule.suspend on RDE PERIODIC: an RDEReportTemplate has no suspend flag",
                            2,
                        ),
                        2,
                    ),
                ),
                "Degraded",
                "UnsupportedSetting: schedule.suspend on RDE",
            ),
            // A suspended generator that is broken shows as broken.
            (
                rg(
                    2,
                    &periodic(true),
                    st(ready("False", "BackendNotReady", "backend Unauthorized", 2), 2),
                ),
                "Degraded",
                "BackendNotReady",
            ),
            // A stale status says nothing about the new spec.
            (
                rg(3, &periodic(false), st(ready("True", "Scheduled", "ok", 2), 2)),
                "Progressing",
                "generation 3",
            ),
            (
                rg(
                    3,
                    &periodic(true),
                    st(ready("False", "BackendNotFound", "gone", 2), 2),
                ),
                "Progressing",
                "generation 3",
            ),
        ],
    );
}

#[test]
fn argocd_health_of_report_files() {
    let rf = |status| {
        object(
            "ReportFile",
            1,
            json!({"eventType": "ONETIME", "format": "CSV"}),
            status,
        )
    };
    check_health(
        "health-reportfile.lua",
        &[
            (rf(Value::Null), "Progressing", "Waiting"),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "IN_PROGRESS", "conditions": [ready("False", "Pending", "waiting for the backend: rate limit", 1)]}),
                ),
                "Progressing",
                "Pending: waiting for the backend",
            ),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "IN_PROGRESS", "conditions": [ready("False", "InProgress", "the backend is generating the report", 1)]}),
                ),
                "Progressing",
                "generating",
            ),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "READY", "conditions": [ready("True", "Ready", "the report is ready; Secret \"x\" holds its download", 1)]}),
                ),
                "Healthy",
                "holds its download",
            ),
            // The report exists; only its short-lived URL expired.
            (
                rf(
                    json!({"observedGeneration": 1, "status": "READY", "conditions": [ready("False", "UrlExpired", "cannot re-mint the download URL: budget", 1)]}),
                ),
                "Healthy",
                "download URL expired",
            ),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "READY", "conditions": [ready("False", "UrlExpired", "x", 1)]}),
                ),
                "Healthy",
                "reporting.report-operator.io/refresh-url",
            ),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "FAILED", "failedReason": "REPORT_STATUS_FAILED: no data", "conditions": [ready("False", "Failed", "the backend failed the report", 1)]}),
                ),
                "Degraded",
                "REPORT_STATUS_FAILED: no data",
            ),
            (
                rf(
                    json!({"observedGeneration": 1, "status": "FAILED", "conditions": [ready("False", "DeadlineExceeded", "not READY within 6h", 1)]}),
                ),
                "Degraded",
                "not READY within 6h",
            ),
        ],
    );
    // Status written for an older generation is not trusted.
    let stale = object(
        "ReportFile",
        2,
        json!({}),
        json!({"observedGeneration": 1, "status": "READY", "conditions": [ready("True", "Ready", "ok", 1)]}),
    );
    check_health("health-reportfile.lua", &[(stale, "Progressing", "generation 2")]);
}
