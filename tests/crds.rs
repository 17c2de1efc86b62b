//! The CRDs on a real API server: installation, admission-time validation, the examples,
//! and what `kubectl` shows a person.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestNamespace, control_plane, stderr, stdout, wait_for};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::{Api, Patch, PatchParams};
use report_operator::api;

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn committed_crds_match_the_code() {
    let committed = std::fs::read_to_string(common::repo_root().join("crds/report-operator.yaml"))
        .expect("crds/report-operator.yaml");
    let generated = api::crds_yaml().expect("render CRDs");
    assert!(
        committed == generated,
        "crds/report-operator.yaml is stale: run `hack/update-crds.sh` and commit the result"
    );
}

#[tokio::test]
async fn crds_are_established_and_listed_under_reporting() {
    let cp = control_plane().await;
    let out = cp.kubectl(&["get", "crd", "-o", "name"]);
    let names = stdout(&out);
    for crd in api::crds() {
        let name = crd.metadata.name.expect("name");
        assert!(names.contains(&name), "{name} not installed: {names}");
        let established = cp.kubectl(&[
            "get",
            "crd",
            &name,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Established\")].status}",
        ]);
        assert_eq!(stdout(&established), "True", "{name} is not Established");
    }
    let out = cp.kubectl(&["api-resources", "--categories", "reporting", "-o", "name"]);
    let mut listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            "reportbackends.reporting.report-operator.io",
            "reportfiles.reporting.report-operator.io",
            "reportgenerators.reporting.report-operator.io",
            "reportstores.reporting.report-operator.io",
        ]
    );
}

/// A printer column: name, type, JSONPath.
type Column = (String, String, String);

fn column(name: &str, type_: &str, path: impl Into<String>) -> Column {
    (name.to_string(), type_.to_string(), path.into())
}

/// What `kubectl get` shows, as the API server serves it: the category that lists all three
/// kinds (`reports` is shadowed by any resource of that name, such as Kyverno's OpenReports),
/// the short names, and the printer columns.
#[tokio::test]
async fn the_api_server_serves_the_category_short_names_and_columns() {
    let ready = r#".status.conditions[?(@.type=="Ready")]"#;
    let expected: Vec<(&str, &str, Vec<Column>)> = vec![
        (
            "reportbackends.reporting.report-operator.io",
            "rb",
            vec![
                column("Type", "string", ".spec.type"),
                column("URL", "string", ".spec.url"),
                column("Ready", "string", format!("{ready}.status")),
                column("Reason", "string", format!("{ready}.reason")),
                column("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "reportgenerators.reporting.report-operator.io",
            "rg",
            vec![
                column("Type", "string", ".spec.eventType"),
                column("Backend", "string", ".spec.backendRef.name"),
                column("Format", "string", ".spec.format"),
                column("Suspend", "boolean", ".spec.schedule.suspend"),
                column("Active", "integer", ".status.reports.inProgress"),
                column("Next Report", "date", ".status.nextReportDate"),
                column("Last Success", "date", ".status.lastSuccessfulTime"),
                column("Ready", "string", format!("{ready}.status")),
                column("Reason", "string", format!("{ready}.reason")),
                column("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "reportfiles.reporting.report-operator.io",
            "rf",
            vec![
                column("Status", "string", ".status.status"),
                column("Generator", "string", ".spec.generatorRef.name"),
                column("Start", "string", ".spec.parameters.startDate"),
                column("End", "string", ".spec.parameters.endDate"),
                column("Generated", "date", ".status.generateDate"),
                column("Ready", "string", format!("{ready}.status")),
                column("Reason", "string", format!("{ready}.reason")),
                column("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "reportstores.reporting.report-operator.io",
            "rst",
            vec![
                column("URL", "string", ".spec.url"),
                column("Retention", "string", ".spec.retention"),
                column("Ready", "string", format!("{ready}.status")),
                column("Reason", "string", format!("{ready}.reason")),
                column("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(name, short, cols)| {
            (
                name.to_string(),
                vec!["reporting".to_string()],
                vec![short.to_string()],
                cols,
            )
        })
        .collect();
    let cp = control_plane().await;
    let api: Api<CustomResourceDefinition> = Api::all(cp.client().await);
    // The control plane is shared with other test runs, which may have applied their own
    // version of the CRDs since this process installed them: apply ours again until the
    // API server serves them.
    let params = PatchParams::apply("report-operator-tests").force();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut served = Vec::new();
        for crd in api::crds() {
            let name = crd.metadata.name.clone().expect("crd name");
            api.patch(&name, &params, &Patch::Apply(&crd))
                .await
                .expect("apply CRD");
            let got = api.get(&name).await.expect("get CRD");
            let columns = got.spec.versions[0]
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
                .collect::<Vec<_>>();
            served.push((
                name,
                got.spec.names.categories.clone().unwrap_or_default(),
                got.spec.names.short_names.clone().unwrap_or_default(),
                columns,
            ));
        }
        if served == expected || tokio::time::Instant::now() > deadline {
            assert_eq!(served, expected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn kubectl_get_reporting_lists_all_four_kinds() {
    let ns = TestNamespace::new("crd-get").await;
    let file = r#"
apiVersion: reporting.report-operator.io/v1alpha1
kind: ReportFile
metadata: {name: one-file}
spec:
  backendRef: {name: commerce-cmp}
  name: Daily report
  eventType: ONETIME
  format: JSON
  parameters: {startDate: "2026-11-01T00:00:00Z", endDate: "2026-11-01T23:59:59Z"}
---
apiVersion: reporting.report-operator.io/v1alpha1
kind: ReportStore
metadata: {name: one-store}
spec:
  url: s3://reports/billing
  credentialsSecretRef: {name: store-credentials}
"#;
    let out = ns.kubectl(&[
        "apply",
        "-f",
        "examples/cmp/backend.yaml",
        "-f",
        "examples/cmp/onetime.yaml",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ns.kubectl_stdin(&["apply", "-f", "-"], file);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ns.kubectl(&["get", "reporting"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "reportbackend.reporting.report-operator.io/commerce-cmp",
        "reportgenerator.reporting.report-operator.io/daily-report-november",
        "reportfile.reporting.report-operator.io/one-file",
        "reportstore.reporting.report-operator.io/one-store",
    ] {
        assert!(
            text.contains(needle),
            "`kubectl get reporting` lacks {needle}:\n{text}"
        );
    }
    // The printer columns a person wants.
    let out = ns.kubectl(&["get", "rg"]);
    let header = stdout(&out).lines().next().unwrap_or_default().to_string();
    for column in [
        "TYPE",
        "BACKEND",
        "FORMAT",
        "SUSPEND",
        "ACTIVE",
        "NEXT REPORT",
        "LAST SUCCESS",
        "READY",
        "REASON",
        "AGE",
    ] {
        assert!(header.contains(column), "rg lacks column {column}: {header}");
    }
    let out = ns.kubectl(&["get", "rf"]);
    let header = stdout(&out).lines().next().unwrap_or_default().to_string();
    for column in [
        "STATUS",
        "GENERATOR",
        "START",
        "END",
        "GENERATED",
        "READY",
        "REASON",
        "AGE",
    ] {
        assert!(header.contains(column), "rf lacks column {column}: {header}");
    }
    let out = ns.kubectl(&["get", "rst"]);
    let header = stdout(&out).lines().next().unwrap_or_default().to_string();
    for column in ["URL", "RETENTION", "READY", "REASON", "AGE"] {
        assert!(header.contains(column), "rst lacks column {column}: {header}");
    }
}

#[tokio::test]
async fn every_example_passes_server_side_dry_run() {
    let ns = TestNamespace::new("crd-examples").await;
    let files = yaml_files(&common::repo_root().join("examples"));
    assert!(
        files.len() >= 15,
        "expected an example per backend and event type, found {}",
        files.len()
    );
    for file in files {
        let path = file.to_string_lossy();
        let out = ns.kubectl(&["apply", "--dry-run=server", "-f", &path]);
        assert!(out.status.success(), "{path} was rejected: {}", stderr(&out));
    }
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_a_message_that_says_what_to_fix() {
    let ns = TestNamespace::new("crd-invalid").await;
    let files = yaml_files(&common::repo_root().join("tests/invalid"));
    assert!(
        files.len() >= 15,
        "expected at least 15 invalid manifests, found {}",
        files.len()
    );
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        let expected = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks an `# expect:` first line", file.display()));
        let out = ns.kubectl_stdin(&["create", "--dry-run=server", "-f", "-"], &text);
        let err = stderr(&out);
        assert!(!out.status.success(), "{} was accepted", file.display());
        assert!(
            err.contains(expected),
            "{} was rejected, but not with {expected:?}:\n{err}",
            file.display()
        );
    }
}

#[tokio::test]
async fn report_file_spec_is_immutable() {
    let ns = TestNamespace::new("crd-immutable").await;
    let file = r#"
apiVersion: reporting.report-operator.io/v1alpha1
kind: ReportFile
metadata: {name: frozen}
spec:
  backendRef: {name: commerce-cmp}
  name: Daily report
  eventType: ONETIME
  format: JSON
"#;
    let out = ns.kubectl_stdin(&["create", "-f", "-"], file);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ns.kubectl(&[
        "patch",
        "reportfile",
        "frozen",
        "--type=merge",
        "-p",
        r#"{"spec":{"format":"CSV"}}"#,
    ]);
    assert!(!out.status.success(), "a spec change was accepted");
    assert!(
        stderr(&out).contains("ReportFile spec is immutable: delete the ReportFile and create a new one"),
        "{}",
        stderr(&out)
    );
    // Metadata stays editable: labels and the refresh annotation are how users talk to it.
    let out = ns.kubectl(&[
        "annotate",
        "reportfile",
        "frozen",
        "reporting.report-operator.io/refresh-url=1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn kubectl_explain_teaches_the_fields() {
    let cp = control_plane().await;
    for (field, needle) in [
        (
            "reportgenerator.spec.schedule",
            "When PERIODIC reports run: CronJob-style knobs",
        ),
        (
            "reportgenerator.spec.schedule.catchUpPolicy",
            "missed while the operator was down",
        ),
        ("reportgenerator.spec.parameters.period", "P1D (calendar day)"),
        (
            "reportbackend.spec.credentialsSecretRef",
            "Secret in the same namespace holding the credentials",
        ),
        ("reportfile.status.status", "IN_PROGRESS, READY or FAILED"),
    ] {
        let out = cp.kubectl(&["explain", field]);
        assert!(out.status.success(), "explain {field}: {}", stderr(&out));
        assert!(
            stdout(&out).contains(needle),
            "explain {field} lacks {needle:?}:\n{}",
            stdout(&out)
        );
    }
    // Every Ready reason a ReportFile can show is explained where a person looks it up. The
    // API server publishes a changed CRD's OpenAPI a moment after the change (and another
    // test run may have applied its own version): wait until explain shows this doc.
    let doc = words(&report_file_conditions_doc());
    let shown = wait_for(
        "kubectl explain to show this ReportFile status.conditions doc",
        Duration::from_secs(30),
        || {
            let out = cp.kubectl(&["explain", "reportfile.status.conditions"]);
            assert!(
                out.status.success(),
                "explain reportfile.status.conditions: {}",
                stderr(&out)
            );
            let text = words(&stdout(&out));
            std::future::ready(text.contains(&doc).then_some(text))
        },
    )
    .await;
    for reason in ready_reasons("ReportFile") {
        assert!(
            lists(&shown, reason),
            "explain reportfile.status.conditions lacks {reason}:\n{shown}"
        );
    }
}

/// Whitespace-normalized text: `kubectl explain` wraps lines its own way.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether a doc explains `reason` (followed by its explanation or by the next reason).
fn lists(doc: &str, reason: &str) -> bool {
    doc.contains(&format!("{reason} (")) || doc.contains(&format!("{reason},"))
}

fn report_file_conditions_doc() -> String {
    conditions_doc(api::ReportFile::crd())
}

fn conditions_doc(crd: CustomResourceDefinition) -> String {
    let crd = serde_json::to_value(crd).expect("crd json");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
        ["description"]
        .as_str()
        .expect("status.conditions has a description")
        .to_string()
}

/// The Ready reasons of a kind, from the one vocabulary (src/api/reasons.rs).
fn ready_reasons(kind: &str) -> Vec<&'static str> {
    api::reasons::all()
        .into_iter()
        .filter(|r| r.kind == kind && r.condition == api::CONDITION_READY)
        .map(|r| r.reason)
        .collect()
}

/// The reasons of src/controller/file/decide.rs and of the reconcile errors, in the doc that
/// `kubectl explain` shows, with the outcome conditions `kubectl wait` waits for.
#[test]
fn report_file_conditions_doc_lists_every_ready_reason() {
    let doc = words(&report_file_conditions_doc());
    for reason in ready_reasons("ReportFile") {
        assert!(lists(&doc, reason), "lacks {reason}: {doc}");
    }
    for condition in [api::CONDITION_COMPLETE, api::CONDITION_FAILED] {
        assert!(
            doc.contains(&format!("`{condition}`")),
            "lacks the {condition} condition: {doc}"
        );
    }
}

/// The Ready reasons of src/controller/generator/decide.rs, of the backend it cannot use and
/// of the reconcile errors, in the ReportGenerator's doc.
#[test]
fn report_generator_conditions_doc_lists_every_ready_reason() {
    let doc = words(&conditions_doc(api::ReportGenerator::crd()));
    for reason in ready_reasons("ReportGenerator") {
        assert!(lists(&doc, reason), "lacks {reason}: {doc}");
    }
}

#[test]
fn every_schema_field_has_a_description() {
    fn walk(path: &str, schema: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
            for (name, sub) in props {
                let p = format!("{path}.{name}");
                // metadata, apiVersion and kind are described by Kubernetes itself.
                let builtin = path.is_empty() && ["metadata", "apiVersion", "kind"].contains(&name.as_str());
                if !builtin && sub.get("description").is_none() {
                    missing.push(p.clone());
                }
                walk(&p, sub, missing);
            }
        }
        if let Some(items) = schema.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for crd in api::crds() {
        let value = serde_json::to_value(&crd).expect("crd json");
        let schema = &value["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(&crd.spec.names.kind, schema, &mut missing);
    }
    // Condition's own fields come described from Kubernetes; only our fields are checked.
    assert!(missing.is_empty(), "fields without a description: {missing:?}");
}
