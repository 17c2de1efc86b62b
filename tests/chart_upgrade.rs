//! The chart's CRDs across `helm upgrade`: the values that turn them off and keep them, and a
//! real upgrade from the previous chart (CRDs in `crds/`, which Helm installs once and never
//! upgrades) to this one (CRDs as templates) on the real control plane, with the one-time
//! adoption step the book documents (docs/src/operations/upgrades.md, "Upgrading from chart
//! 0.1.0 as of before the CRDs were templates").
//!
//! The control plane's CRDs of `reporting.report-operator.io` are shared with every other
//! test and are not a Helm release's. So that this test can install old CRDs, upgrade them and
//! uninstall without disturbing those tests (or leaving CRDs owned by a deleted release, which
//! would make every later install fail), it runs both charts with the API group renamed to
//! one of its own; nothing else in either chart changes. It deletes those CRDs at the end.

mod chart_support;
mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chart_support::{chart_dir, documents, helm_on, render};
use common::{ControlPlane, TestNamespace, stderr, stdout, wait_for};
use serde_json::Value;

/// The last commit whose chart shipped its CRDs in `crds/`: its CRDs lack the current printer
/// columns and list the kinds under the category `reports`, not `reporting`.
const PREVIOUS_CHART_COMMIT: &str = "93500c4";
const GROUP: &str = "reporting.report-operator.io";
const PLURALS: [&str; 4] = [
    "reportbackends",
    "reportgenerators",
    "reportfiles",
    "reportstores",
];
/// The CRDs of the previous chart (ReportStore came after it: the upgrade creates it).
const PREVIOUS_PLURALS: [&str; 3] = ["reportbackends", "reportgenerators", "reportfiles"];

fn crds_of(docs: &[Value]) -> Vec<&Value> {
    docs.iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect()
}

#[test]
fn crds_enabled_false_renders_no_crd() {
    let docs = documents(&render("ops", &["crds.enabled=false"], &[]));
    assert!(crds_of(&docs).is_empty(), "crds.enabled=false still renders CRDs");
    assert!(
        docs.iter().any(|d| d["kind"] == "Deployment"),
        "the rest of the chart still renders"
    );
}

#[test]
fn crds_keep_decides_the_keep_annotation() {
    for (sets, keep) in [
        (&[][..], true),
        (&["crds.keep=true"][..], true),
        (&["crds.keep=false"][..], false),
    ] {
        let docs = documents(&render("ops", sets, &[]));
        let crds = crds_of(&docs);
        assert_eq!(crds.len(), PLURALS.len(), "{sets:?}: one template per CRD");
        for crd in crds {
            let policy = &crd["metadata"]["annotations"]["helm.sh/resource-policy"];
            if keep {
                assert_eq!(policy, "keep", "{sets:?}: {}", crd["metadata"]["name"]);
            } else {
                assert!(
                    policy.is_null(),
                    "{sets:?}: {} keeps the annotation",
                    crd["metadata"]["name"]
                );
            }
            assert_eq!(crd["metadata"]["labels"]["app.kubernetes.io/managed-by"], "Helm");
        }
    }
}

/// Writes every file of `files` (path, content) under `dir`, with the API group renamed.
fn write_chart(dir: &Path, files: &[(String, String)], group: &str) {
    for (path, content) in files {
        let dest = dir.join(path);
        std::fs::create_dir_all(dest.parent().expect("parent")).expect("mkdir");
        std::fs::write(&dest, content.replace(GROUP, group)).expect("write chart file");
    }
}

/// The chart as of `commit`, from git.
fn chart_at(commit: &str) -> Vec<(String, String)> {
    let git = |args: &[&str]| -> Output {
        Command::new("git")
            .args(args)
            .current_dir(common::repo_root())
            .output()
            .expect("run git")
    };
    let listing = git(&["ls-tree", "-r", "--name-only", commit, "--", chart_support::CHART]);
    assert!(
        listing.status.success(),
        "the previous chart ({commit}) is not in this checkout's history: {}",
        stderr(&listing)
    );
    stdout(&listing)
        .lines()
        .map(|path| {
            let show = git(&["show", &format!("{commit}:{path}")]);
            assert!(
                show.status.success(),
                "git show {commit}:{path}: {}",
                stderr(&show)
            );
            let rel = path
                .strip_prefix(&format!("{}/", chart_support::CHART))
                .expect("under the chart");
            (rel.to_string(), stdout(&show))
        })
        .collect()
}

/// The chart of the working tree.
fn current_chart() -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).expect("read chart dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .expect("under the chart")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&path).expect("read chart file")));
            }
        }
    }
    let mut out = Vec::new();
    walk(&chart_dir(), &chart_dir(), &mut out);
    out
}

fn crd_json(cp: &ControlPlane, name: &str) -> Option<Value> {
    let out = cp.kubectl(&["get", "crd", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_str(&stdout(&out)).expect("CRD JSON"))
}

/// Printer columns and categories as this version of the code defines them, per plural.
fn expected_shape(plural: &str) -> (Value, Value) {
    let crd = report_operator::api::crds()
        .into_iter()
        .find(|c| c.spec.names.plural == plural)
        .expect("a CRD of this plural");
    let crd = serde_json::to_value(crd).expect("CRD as JSON");
    (
        crd["spec"]["versions"][0]["additionalPrinterColumns"].clone(),
        crd["spec"]["names"]["categories"].clone(),
    )
}

/// Uninstalls the release and deletes the renamed CRDs, whatever the test got to.
struct Cleanup {
    cp: ControlPlane,
    release: String,
    namespace: String,
    crds: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = helm_on(
            &self.cp,
            &[
                "uninstall",
                &self.release,
                "--namespace",
                &self.namespace,
                "--wait",
                "--no-hooks",
            ],
        );
        let mut args = vec!["delete", "crd", "--ignore-not-found", "--wait=false"];
        args.extend(self.crds.iter().map(String::as_str));
        let _ = self.cp.kubectl(&args);
    }
}

#[tokio::test]
async fn upgrade_from_the_previous_chart_upgrades_the_crds() {
    let ns = TestNamespace::new("chart-upgrade").await;
    let cp = ns.cp().clone();
    let suffix = ns.name.rsplit('-').next().expect("random suffix").to_string();
    let group = format!("u{suffix}.upgrade-test.report-operator.io");
    let names: Vec<String> = PLURALS.iter().map(|p| format!("{p}.{group}")).collect();
    let previous_names: Vec<String> = PREVIOUS_PLURALS.iter().map(|p| format!("{p}.{group}")).collect();
    let release = format!("upgrade-{suffix}");
    let _cleanup = Cleanup {
        cp: cp.clone(),
        release: release.clone(),
        namespace: ns.name.clone(),
        crds: names.clone(),
    };

    let work = tempfile::tempdir().expect("tempdir");
    let previous = work.path().join("previous");
    let current = work.path().join("current");
    write_chart(&previous, &chart_at(PREVIOUS_CHART_COMMIT), &group);
    write_chart(&current, &current_chart(), &group);
    let (previous, current) = (
        previous.to_string_lossy().into_owned(),
        current.to_string_lossy().into_owned(),
    );

    // The previous chart: Helm installs its crds/ (first install only), without ownership.
    let out = helm_on(&cp, &["install", &release, &previous, "--namespace", &ns.name]);
    assert!(
        out.status.success(),
        "install the previous chart: {}",
        stderr(&out)
    );
    let mut old_columns = 0;
    for (plural, name) in PREVIOUS_PLURALS.iter().zip(&previous_names) {
        let crd = crd_json(&cp, name).unwrap_or_else(|| panic!("the previous chart installed {name}"));
        let (columns, categories) = expected_shape(plural);
        assert_ne!(
            crd["spec"]["names"]["categories"], categories,
            "{name}: already the new categories"
        );
        old_columns += usize::from(crd["spec"]["versions"][0]["additionalPrinterColumns"] != columns);
        assert!(
            crd["metadata"]["labels"]["app.kubernetes.io/managed-by"].is_null(),
            "crds/ are not Helm-owned"
        );
    }
    assert_eq!(
        old_columns, 2,
        "ReportGenerator and ReportFile had fewer printer columns"
    );

    // Without the adoption step Helm refuses to take over the CRDs it installed from crds/.
    let out = helm_on(&cp, &["upgrade", &release, &current, "--namespace", &ns.name]);
    assert!(
        !out.status.success(),
        "the upgrade adopted CRDs without ownership metadata"
    );
    assert!(
        stderr(&out).contains("invalid ownership metadata"),
        "{}",
        stderr(&out)
    );

    // The one-time step of the book's upgrades page (docs/src/operations/upgrades.md).
    let mut label = vec!["label", "--overwrite", "crd"];
    label.extend(previous_names.iter().map(String::as_str));
    label.push("app.kubernetes.io/managed-by=Helm");
    let out = cp.kubectl(&label);
    assert!(out.status.success(), "label: {}", stderr(&out));
    let release_annotation = format!("meta.helm.sh/release-name={release}");
    let namespace_annotation = format!("meta.helm.sh/release-namespace={}", ns.name);
    let mut annotate = vec!["annotate", "--overwrite", "crd"];
    annotate.extend(previous_names.iter().map(String::as_str));
    annotate.extend([release_annotation.as_str(), namespace_annotation.as_str()]);
    let out = cp.kubectl(&annotate);
    assert!(out.status.success(), "annotate: {}", stderr(&out));

    let out = helm_on(&cp, &["upgrade", &release, &current, "--namespace", &ns.name]);
    assert!(
        out.status.success(),
        "upgrade to the current chart: {}",
        stderr(&out)
    );

    // The API server serves the new schema: columns, categories, and discovery by category.
    for (plural, name) in PLURALS.iter().zip(&names) {
        let crd = crd_json(&cp, name).expect("CRD after the upgrade");
        let (columns, categories) = expected_shape(plural);
        assert_eq!(
            crd["spec"]["versions"][0]["additionalPrinterColumns"], columns,
            "{name}: columns"
        );
        assert_eq!(
            crd["spec"]["names"]["categories"], categories,
            "{name}: categories"
        );
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "{name}"
        );
    }
    let expected: Vec<String> = {
        let mut v = names.clone();
        v.sort();
        v
    };
    wait_for(
        "the new category served by discovery",
        Duration::from_secs(30),
        || {
            let out = cp.kubectl(&[
                "api-resources",
                "--categories",
                "reporting",
                "--api-group",
                &group,
                "-o",
                "name",
            ]);
            let mut listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
            listed.sort();
            std::future::ready((listed == expected).then_some(()))
        },
    )
    .await;

    // From now on the release owns the CRDs: a plain upgrade changes them (here: crds.keep
    // off removes the annotation), and with keep on, uninstalling leaves them in place.
    let out = helm_on(
        &cp,
        &[
            "upgrade",
            &release,
            &current,
            "--namespace",
            &ns.name,
            "--set",
            "crds.keep=false",
        ],
    );
    assert!(
        out.status.success(),
        "upgrade with crds.keep=false: {}",
        stderr(&out)
    );
    let crd = crd_json(&cp, &names[0]).expect("CRD");
    assert!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
        "the release manages the CRDs"
    );
    // Without new values helm would reuse crds.keep=false.
    let out = helm_on(
        &cp,
        &[
            "upgrade",
            &release,
            &current,
            "--namespace",
            &ns.name,
            "--reset-values",
        ],
    );
    assert!(
        out.status.success(),
        "upgrade back to the defaults: {}",
        stderr(&out)
    );
    let crd = crd_json(&cp, &names[0]).expect("CRD");
    assert_eq!(crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep");
    // No hooks: this chart's API group is renamed, which the uninstall hook's command does not
    // know, and no kubelet would run its Job (tests/chart_uninstall.rs tests the hook).
    let out = helm_on(
        &cp,
        &[
            "uninstall",
            &release,
            "--namespace",
            &ns.name,
            "--wait",
            "--no-hooks",
        ],
    );
    assert!(out.status.success(), "uninstall: {}", stderr(&out));
    for name in &names {
        let crd = crd_json(&cp, name).unwrap_or_else(|| panic!("crds.keep: {name} survives helm uninstall"));
        assert!(
            crd["metadata"]["deletionTimestamp"].is_null(),
            "{name} is being deleted"
        );
    }

    // The kept CRDs still name the release: installing it again under the same name and
    // namespace takes them over without any step.
    let out = helm_on(&cp, &["install", &release, &current, "--namespace", &ns.name]);
    assert!(
        out.status.success(),
        "reinstall over the kept CRDs: {}",
        stderr(&out)
    );
}
