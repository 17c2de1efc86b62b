//! The chart as helm renders it, for the chart tests: helm from `REPORT_OPERATOR_HELM` (set
//! by hack/test.sh) or from `hack/helm.sh`, rendered manifests as JSON, RBAC rules flattened.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

use crate::common::{self, stderr, stdout};

pub const CHART: &str = "charts/report-operator";

pub fn chart_dir() -> PathBuf {
    common::repo_root().join(CHART)
}

pub fn helm_bin() -> &'static Path {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    // hack/test.sh exports it; empty (its build failed there) or unset: build it here.
    HELM.get_or_init(
        || match std::env::var_os("REPORT_OPERATOR_HELM").filter(|p| !p.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => {
                let out = Command::new("bash")
                    .arg(common::repo_root().join("hack/helm.sh"))
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run hack/helm.sh");
                assert!(out.status.success(), "hack/helm.sh failed");
                PathBuf::from(stdout(&out).trim())
            }
        },
    )
}

pub fn helm(args: &[&str]) -> Output {
    Command::new(helm_bin())
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .expect("run helm")
}

/// helm against the test control plane.
pub fn helm_on(cp: &common::ControlPlane, args: &[&str]) -> Output {
    Command::new(helm_bin())
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .args(args)
        .current_dir(common::repo_root())
        .output()
        .expect("run helm")
}

/// A kubeconfig that authenticates with `token` (a ServiceAccount's) against the test
/// control plane.
pub fn token_kubeconfig(cp: &common::ControlPlane, token: &str) -> String {
    let admin: Value = serde_yaml::from_str(&std::fs::read_to_string(&cp.kubeconfig).expect("kubeconfig"))
        .expect("kubeconfig parses");
    let cluster = &admin["clusters"][0]["cluster"];
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "operator"}}],
        "current-context": "local",
    });
    serde_yaml::to_string(&config).expect("kubeconfig yaml")
}

/// `--set` pairs as helm arguments.
pub fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| ["--set".to_string(), s.to_string()])
        .collect()
}

/// `helm template` of the chart as release `report-operator` in `namespace`; fails the test
/// when helm refuses.
pub fn render(namespace: &str, sets: &[&str], extra: &[&str]) -> String {
    render_release("report-operator", namespace, sets, extra)
}

/// `helm template` of the chart as `release` in `namespace`.
pub fn render_release(release: &str, namespace: &str, sets: &[&str], extra: &[&str]) -> String {
    let mut args: Vec<String> = ["template", release, CHART, "--namespace", namespace]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(set_args(sets));
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = helm(&args);
    assert!(
        out.status.success(),
        "helm template {sets:?} failed:\n{}",
        stderr(&out)
    );
    stdout(&out)
}

/// The documents of a multi-document YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("rendered YAML parses"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

pub fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

/// RBAC rules flattened to (apiGroup, resource, verb, resourceName or "*") for comparison.
pub fn flat_rules(role: &Value) -> BTreeSet<(String, String, String, String)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().expect("string").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        let names = match strings(&rule["resourceNames"]) {
            n if n.is_empty() => vec!["*".to_string()],
            n => n,
        };
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

pub fn expected_rules(table: &[(&str, &[&str], &[&str])]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for resource in *resources {
            for verb in *verbs {
                out.insert((
                    group.to_string(),
                    resource.to_string(),
                    verb.to_string(),
                    "*".to_string(),
                ));
            }
        }
    }
    out
}

/// The arguments of the operator container of the Deployment `name` in `docs`.
pub fn container_args_of(docs: &[Value], name: &str) -> Vec<String> {
    let deployment = find(docs, "Deployment", name).expect("Deployment");
    let args = &deployment["spec"]["template"]["spec"]["containers"][0]["args"];
    args.as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}
