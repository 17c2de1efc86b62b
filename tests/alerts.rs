//! The alerts and the dashboard the chart ships (charts/report-operator/monitoring), checked
//! with the real promtool: the rendered PrometheusRule passes `promtool check rules`, and
//! `promtool test rules` (tests/alerts/report-operator.test.yaml) makes each alert fire on the
//! series of its problem and stay quiet on healthy ones; the book's metrics page lists the same
//! rules; the dashboard's queries parse.
//!
//! helm comes from `REPORT_OPERATOR_HELM`, promtool from `REPORT_OPERATOR_PROMTOOL` (both set
//! by hack/test.sh), or from `hack/helm.sh` and `hack/promtool.sh`.

mod chart_support;
mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use chart_support::{documents, render, render_release};
use common::{repo_root, stderr, stdout};
use serde_json::{Value, json};

const UNIT_TESTS: &str = "tests/alerts/report-operator.test.yaml";
const RULES: &str = "charts/report-operator/monitoring/alerts.yaml";
/// The book's page that lists the rules.
const BOOK_PAGE: &str = "docs/src/operations/metrics.md";

fn promtool_bin() -> &'static Path {
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    // hack/test.sh exports it; empty (its build failed there) or unset: build it here.
    PROMTOOL.get_or_init(
        || match std::env::var_os("REPORT_OPERATOR_PROMTOOL").filter(|p| !p.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => {
                let out = Command::new("bash")
                    .arg(repo_root().join("hack/promtool.sh"))
                    .stderr(Stdio::inherit())
                    .output()
                    .expect("run hack/promtool.sh");
                assert!(out.status.success(), "hack/promtool.sh failed");
                PathBuf::from(stdout(&out).trim())
            }
        },
    )
}

/// Runs promtool in `dir`; fails the test with its output when it fails.
fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(promtool_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The rule groups of the chart's PrometheusRule, rendered with `sets`.
fn rendered_groups(release: &str, sets: &[&str]) -> Value {
    let mut all = vec!["prometheusRule.enabled=true"];
    all.extend(sets);
    let docs = documents(&render_release(release, "monitoring", &all, &[]));
    let rule = docs
        .iter()
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    rule["spec"]["groups"].clone()
}

fn rules(groups: &Value) -> Vec<&Value> {
    groups
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .collect()
}

fn alert_names(groups: &Value) -> BTreeSet<String> {
    rules(groups)
        .iter()
        .filter_map(|r| r["alert"].as_str())
        .map(String::from)
        .collect()
}

fn write_yaml(path: &Path, value: &Value) {
    std::fs::write(path, serde_yaml::to_string(value).expect("YAML")).expect("write");
}

#[test]
fn the_shipped_alerts_pass_promtool_and_fire_only_on_their_problem() {
    let groups = rendered_groups("report-operator", &[]);
    let dir = tempfile::tempdir().expect("tempdir");
    write_yaml(&dir.path().join("rules.yaml"), &json!({ "groups": groups }));
    let checked = promtool(dir.path(), &["check", "rules", "rules.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");

    // Annotations are left out of the rules the unit tests run (promtool compares them as
    // text, values and all); `check rules` above has parsed their templates.
    let mut bare = groups.clone();
    for group in bare.as_array_mut().expect("groups") {
        for rule in group["rules"].as_array_mut().expect("rules") {
            rule.as_object_mut().expect("a rule").remove("annotations");
        }
    }
    write_yaml(&dir.path().join("rules.yaml"), &json!({ "groups": bare }));
    std::fs::copy(repo_root().join(UNIT_TESTS), dir.path().join("unit.yaml")).expect("copy the unit tests");
    let tested = promtool(dir.path(), &["test", "rules", "unit.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");

    // Every alert has a case where it fires and one where it stays quiet.
    let unit: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(UNIT_TESTS)).expect("read"))
            .expect("YAML");
    let (mut fired, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for case in unit["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
    {
        let name = case["alertname"].as_str().expect("alertname").to_string();
        if case["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            fired.insert(name)
        } else {
            quiet.insert(name)
        };
    }
    let alerts = alert_names(&groups);
    assert_eq!(fired, alerts, "an alert without a unit test that makes it fire");
    assert_eq!(quiet, alerts, "an alert without a unit test where it stays quiet");
}

#[test]
fn the_rules_select_the_release_s_job() {
    let groups = rendered_groups("reports", &[]);
    let text = serde_json::to_string(&groups).expect("JSON");
    assert!(!text.contains(r#"job=\"report-operator-metrics\""#), "{text}");
    for rule in rules(&groups) {
        let expr = rule["expr"].as_str().expect("expr");
        assert!(
            expr.contains(r#"job="reports-report-operator-metrics""#),
            "{expr}"
        );
    }
    let groups = rendered_groups(
        "reports",
        &[
            "prometheusRule.job=operator",
            "prometheusRule.labels.release=kube-prometheus",
        ],
    );
    assert!(rules(&groups).iter().all(|r| {
        r["expr"]
            .as_str()
            .is_some_and(|e| e.contains(r#"job="operator""#))
    }));
}

#[test]
fn rules_and_dashboard_are_off_by_default_and_the_dashboard_is_labelled_for_the_sidecar() {
    let docs = documents(&render("monitoring", &[], &[]));
    assert!(!docs.iter().any(|d| d["kind"] == "PrometheusRule"));
    assert!(
        !docs
            .iter()
            .any(|d| d["metadata"]["labels"]["grafana_dashboard"] == "1")
    );
    let docs = documents(&render(
        "monitoring",
        &[
            "grafanaDashboard.enabled=true",
            "grafanaDashboard.namespace=grafana",
        ],
        &[],
    ));
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["labels"]["grafana_dashboard"] == "1")
        .expect("the dashboard");
    assert_eq!(cm["metadata"]["namespace"], "grafana");
    let dashboard: Value =
        serde_json::from_str(cm["data"]["report-operator.json"].as_str().expect("JSON text")).expect("JSON");
    assert_eq!(dashboard["uid"], "report-operator");
}

/// The dashboard's queries, as recording rules for `promtool check rules` to parse, with its
/// `$job` variable filled in.
#[test]
fn the_dashboard_queries_parse() {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("charts/report-operator/monitoring/dashboard.json"))
            .expect("read"),
    )
    .expect("JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("expr")
                .replace("$job", "report-operator-metrics")
        })
        .collect();
    assert!(exprs.len() >= 10, "{exprs:?}");
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({ "record": format!("dashboard:query_{i}"), "expr": e }))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    write_yaml(
        &dir.path().join("dashboard.yaml"),
        &json!({ "groups": [{ "name": "dashboard", "rules": rules }] }),
    );
    promtool(dir.path(), &["check", "rules", "dashboard.yaml"]);
    for metric in [
        "report_operator_reports_completed_total",
        "report_operator_backend_ready",
        "report_operator_leader",
        "report_operator_build_info",
    ] {
        assert!(
            exprs.iter().any(|e| e.contains(metric)),
            "the dashboard does not show {metric}"
        );
    }
}

/// The book's alerts block (docs/src/operations/metrics.md): the shipped rules' names,
/// expressions, `for` and severity.
#[test]
fn the_book_lists_the_shipped_rules() {
    let page = std::fs::read_to_string(repo_root().join(BOOK_PAGE)).expect("the metrics page");
    let section = page.split("## Alerts").nth(1).expect("an Alerts section");
    let block = section
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block");
    let listed: Value = serde_yaml::from_str(block).expect("the book's rules parse");
    let shipped: Value =
        serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(RULES)).expect("read")).expect("YAML");
    let summary = |r: &Value| {
        let expr: String = r["expr"]
            .as_str()
            .expect("expr")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        (
            r["alert"].clone(),
            expr,
            r["for"].clone(),
            r["labels"]["severity"].clone(),
        )
    };
    let listed: Vec<_> = listed
        .as_array()
        .expect("a list of rules")
        .iter()
        .map(summary)
        .collect();
    let shipped: Vec<_> = rules(&shipped["groups"]).into_iter().map(summary).collect();
    assert_eq!(listed, shipped, "{BOOK_PAGE} and {RULES} differ");
}
