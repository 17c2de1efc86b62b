//! The chart's aggregated ClusterRoles on a real control plane: once kube-controller-manager's
//! aggregation controller has folded them into the built-in roles, a person bound to `edit` in
//! a namespace manages ReportGenerators there (but not their status), and one bound to `view`
//! reads them but cannot create them.
//!
//! helm comes from `REPORT_OPERATOR_HELM` (set by hack/test.sh), or from `hack/helm.sh`.

mod chart_support;
mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use chart_support::{documents, render_release};
use common::{TestNamespace, stderr, wait_for};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use report_operator::api::{GROUP, ReportGenerator};
use serde_json::json;

/// Aggregation is asynchronous: the controller notices the labelled ClusterRoles and rewrites
/// the built-in ones, usually within a second.
const AGGREGATION: Duration = Duration::from_secs(60);

/// The ClusterRole aggregation controller of kube-controller-manager, for this test only: the
/// test control plane runs just the garbage collector and namespace controllers. Two of them
/// (another test run's, or a control plane that runs it too) only repeat the same writes.
struct Aggregator(std::process::Child);

impl Aggregator {
    fn start(cp: &common::ControlPlane, log_name: &str) -> Aggregator {
        let log_path = common::repo_root().join(format!("target/test-logs/{log_name}-aggregator.log"));
        std::fs::create_dir_all(log_path.parent().expect("log dir")).expect("log dir");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new(cp.bin_dir.join("kube-controller-manager"))
            .arg("--kubeconfig")
            .arg(&cp.kubeconfig)
            .args([
                "--controllers",
                "clusterrole-aggregation",
                "--leader-elect=false",
                "--secure-port",
                "0",
            ])
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start kube-controller-manager");
        Aggregator(child)
    }
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A client that acts as `user`: the test's admin impersonates it.
async fn client_as(cp: &common::ControlPlane, user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(&cp.kubeconfig).expect("read kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).expect("client")
}

/// The cluster-scoped roles a test installed, deleted whatever its outcome, while the
/// aggregator still runs: it then takes their rules out of the built-in roles again, which
/// would otherwise keep them and grant them to every later test on this control plane.
struct Installed {
    cp: common::ControlPlane,
    names: Vec<String>,
    /// A user bound to `edit`: once it may no longer create ReportGenerators, the built-in
    /// roles have forgotten this test's.
    probe: (String, String),
    _aggregator: Aggregator,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut args = vec!["delete", "clusterrole", "--ignore-not-found"];
        args.extend(self.names.iter().map(String::as_str));
        let _ = self.cp.kubectl(&args);
        let (namespace, user) = &self.probe;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            let out = self.cp.kubectl(&[
                "auth",
                "can-i",
                "create",
                "reportgenerators.reporting.report-operator.io",
                "-n",
                namespace,
                "--as",
                user,
            ]);
            if String::from_utf8_lossy(&out.stdout).trim() == "no" {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "warning: the built-in roles still grant ReportGenerators after deleting {:?}",
            self.names
        );
    }
}

fn generator(name: &str) -> ReportGenerator {
    serde_json::from_value(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": "ReportGenerator",
        "metadata": {"name": name},
        "spec": {
            "backendRef": {"name": "commerce-cmp"},
            "commonName": "Daily report",
            "eventType": "ONETIME",
            "format": "JSON",
            "parameters": {"startDate": "2026-11-01T00:00:00Z", "endDate": "2026-11-01T23:59:59Z"},
        },
    }))
    .expect("ReportGenerator")
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_forbidden())
}

/// Whether the client's own user may `verb` the `resource` (and `subresource`) of this API
/// group in `namespace`.
async fn may(
    client: &Client,
    namespace: &str,
    verb: &str,
    resource: &str,
    subresource: Option<&str>,
) -> bool {
    allowed(
        client,
        ResourceAttributes {
            namespace: Some(namespace.to_string()),
            verb: Some(verb.to_string()),
            group: Some(GROUP.to_string()),
            resource: Some(resource.to_string()),
            subresource: subresource.map(str::to_string),
            ..Default::default()
        },
    )
    .await
}

async fn allowed(client: &Client, attributes: ResourceAttributes) -> bool {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(attributes),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview");
    answer.status.is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn edit_and_view_users_get_the_three_kinds_through_the_aggregated_roles() {
    let ns = TestNamespace::new("chart-agg").await;
    let cp = ns.cp().clone();
    // The release is named after the namespace, so that its ClusterRoles are this test's own.
    let manifests = render_release(&ns.name, &ns.name, &[], &[]);
    let roles: Vec<serde_json::Value> = documents(&manifests)
        .into_iter()
        .filter(|d| d["kind"] == "ClusterRole")
        .filter(|d| {
            d["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-view") || n.ends_with("-edit"))
        })
        .collect();
    let names: Vec<String> = roles
        .iter()
        .map(|r| r["metadata"]["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(
        names,
        [
            format!("{}-report-operator-view", ns.name),
            format!("{}-report-operator-edit", ns.name)
        ]
    );
    let editor = format!("editor-{}", ns.name);
    let viewer = format!("viewer-{}", ns.name);
    let admin = format!("admin-{}", ns.name);
    for (binding, role, user) in [
        ("editors", "edit", &editor),
        ("viewers", "view", &viewer),
        ("admins", "admin", &admin),
    ] {
        let out = ns.kubectl(&[
            "create",
            "rolebinding",
            binding,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]);
        assert!(out.status.success(), "bind {role}: {}", stderr(&out));
    }
    let as_editor = client_as(&cp, &editor).await;
    let as_viewer = client_as(&cp, &viewer).await;
    let as_admin = client_as(&cp, &admin).await;
    // A role of the test's own, aggregated into edit, shows when the aggregator has caught up.
    let probe_role = format!("{}-aggregation-probe", ns.name);
    let mut names = names;
    names.push(probe_role.clone());
    let _installed = Installed {
        cp: cp.clone(),
        names,
        probe: (ns.name.clone(), editor.clone()),
        _aggregator: Aggregator::start(&cp, &ns.name),
    };
    let probe = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": probe_role, "labels": {"rbac.authorization.k8s.io/aggregate-to-edit": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [probe_role], "verbs": ["get"]}],
    });
    let out = cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(&probe.to_string()));
    assert!(out.status.success(), "install the probe role: {}", stderr(&out));
    wait_for(
        "the aggregator to fold a probe role into edit",
        AGGREGATION,
        || {
            let (as_editor, ns, name) = (as_editor.clone(), ns.name.clone(), probe_role.clone());
            async move {
                let attributes = ResourceAttributes {
                    namespace: Some(ns),
                    verb: Some("get".into()),
                    resource: Some("configmaps".into()),
                    name: Some(name),
                    ..Default::default()
                };
                allowed(&as_editor, attributes).await.then_some(())
            }
        },
    )
    .await;
    // The aggregator is current: without the chart's roles, edit and view do not cover the
    // four kinds (no earlier run's or other release's rules linger in them).
    wait_for(
        "edit and view without the chart's roles to grant nothing on ReportGenerators",
        AGGREGATION,
        || {
            let (as_editor, as_viewer, ns) = (as_editor.clone(), as_viewer.clone(), ns.name.clone());
            async move {
                let editor = may(&as_editor, &ns, "create", "reportgenerators", None).await;
                let viewer = may(&as_viewer, &ns, "list", "reportgenerators", None).await;
                (!editor && !viewer).then_some(())
            }
        },
    )
    .await;
    let stream: String = roles
        .iter()
        .map(|r| format!("---\n{}", serde_yaml::to_string(r).expect("yaml")))
        .collect();
    let out = cp.kubectl_with_stdin(&["apply", "-f", "-"], Some(&stream));
    assert!(
        out.status.success(),
        "install the aggregated roles: {}",
        stderr(&out)
    );

    // edit: create, once aggregation has happened.
    let generators: Api<ReportGenerator> = Api::namespaced(as_editor.clone(), &ns.name);
    wait_for(
        "the edit role to let its user create a ReportGenerator",
        AGGREGATION,
        || {
            let generators = generators.clone();
            async move {
                match generators
                    .create(&PostParams::default(), &generator("by-editor"))
                    .await
                {
                    Ok(_) => Some(()),
                    Err(e) if is_forbidden(&e) => None,
                    Err(e) => panic!("create as the edit user: {e}"),
                }
            }
        },
    )
    .await;
    for verb in ["update", "patch", "delete", "deletecollection"] {
        assert!(
            may(&as_editor, &ns.name, verb, "reportgenerators", None).await,
            "edit may {verb} reportgenerators"
        );
    }
    wait_for(
        "the admin role to cover ReportGenerators too",
        AGGREGATION,
        || {
            let (as_admin, ns) = (as_admin.clone(), ns.name.clone());
            async move {
                may(&as_admin, &ns, "create", "reportgenerators", None)
                    .await
                    .then_some(())
            }
        },
    )
    .await;
    for resource in ["reportbackends", "reportfiles", "reportstores"] {
        assert!(
            may(&as_editor, &ns.name, "create", resource, None).await,
            "edit may create {resource}"
        );
    }
    for verb in ["update", "patch"] {
        assert!(
            !may(&as_editor, &ns.name, verb, "reportgenerators", Some("status")).await,
            "status is the operator's: edit may not {verb} it"
        );
    }

    // view: list, once aggregation has happened, and nothing more.
    let generators: Api<ReportGenerator> = Api::namespaced(as_viewer.clone(), &ns.name);
    let listed = wait_for(
        "the view role to let its user list ReportGenerators",
        AGGREGATION,
        || {
            let generators = generators.clone();
            async move {
                match generators.list(&ListParams::default()).await {
                    Ok(list) => Some(list),
                    Err(e) if is_forbidden(&e) => None,
                    Err(e) => panic!("list as the view user: {e}"),
                }
            }
        },
    )
    .await;
    let listed: Vec<_> = listed
        .items
        .iter()
        .filter_map(|g| g.metadata.name.clone())
        .collect();
    assert_eq!(listed, ["by-editor"]);
    assert!(
        may(&as_viewer, &ns.name, "get", "reportfiles", Some("status")).await,
        "view may read status"
    );
    match generators
        .create(&PostParams::default(), &generator("by-viewer"))
        .await
    {
        Err(e) if is_forbidden(&e) => {}
        other => panic!("the view user must not create a ReportGenerator: {other:?}"),
    }
}
