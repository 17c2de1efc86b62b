//! `kubectl report download` is safe to run in any directory: whatever a backend or a tenant
//! puts in the file name, the Secret's URL or the status, the plugin writes one plain file in
//! the working directory (or where `-o` says), never replaces a file without `--force`, never
//! writes through a planted symlink, fetches only https (http with `--allow-http`) from the
//! Secret's URL host, and prints what servers wrote with its control characters escaped.

mod common;
mod plugin_support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use common::e2e::World;
use common::{TestNamespace, fixtures};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use plugin_support::{Plugin, ok, refused};
use report_operator::api::{BackendType, ReportFile};
use report_sim::SimConfig;

const DEADLINE: Duration = Duration::from_secs(120);

/// An HTTP server that forwards every request to `upstream` and renames the file in the
/// answer: a FUSION backend that chooses the file name a person's download gets.
struct RenamingBackend {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RenamingBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Rename {
    upstream: String,
    file_name: String,
    client: reqwest::Client,
}

impl RenamingBackend {
    async fn start(upstream: &str, file_name: &str) -> RenamingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Rename {
            upstream: upstream.trim_end_matches('/').to_string(),
            file_name: file_name.to_string(),
            client: reqwest::Client::new(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        RenamingBackend { url, task }
    }
}

async fn forward(State(s): State<Arc<Rename>>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 << 20).await.expect("request body");
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut headers = parts.headers.clone();
    headers.remove(reqwest::header::HOST);
    let answer = s
        .client
        .request(parts.method, format!("{}{path}", s.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("the simulator answers");
    let status = answer.status();
    let content_type = answer.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    let mut bytes = answer.bytes().await.expect("the simulator's body").to_vec();
    if let Ok(mut doc) = serde_json::from_slice::<serde_json::Value>(&bytes)
        && doc.get("fileName").is_some()
    {
        doc["fileName"] = serde_json::Value::String(s.file_name.clone());
        bytes = serde_json::to_vec(&doc).expect("json");
    }
    let mut response = (status, bytes).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(reqwest::header::CONTENT_TYPE, ct);
    }
    response
}

/// The issue's reproduction: a FUSION backend names its license file `.bashrc`, and a person
/// downloads the report in their home directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_named_file_never_replaces_a_dotfile() {
    let world = World::start("plugin-dotfile", SimConfig::default()).await;
    let t = BackendType::Fusion;
    let backend = RenamingBackend::start(&world.sim.base_url(), ".bashrc").await;
    let manifest = fixtures::backend(&world.sim, t, "b", &fixtures::good_credentials(t), "")
        .replace(&world.sim.base_url(), &backend.url);
    world.apply(&manifest);
    world.apply(&fixtures::onetime(t, "licenses-snapshot", "b", "Licenses"));
    let files = world.wait_finished("licenses-snapshot", 1, DEADLINE).await;
    let rf = files[0].metadata.name.clone().expect("name");
    let data = world.secret_data(&rf).await;
    assert_eq!(
        data.get("fileName").map(Vec::as_slice),
        Some(&b".bashrc"[..]),
        "the backend's name reached the Secret"
    );
    let content = data.get("content").expect("FUSION keeps the file in the Secret");

    let plugin = Plugin::new(world.ns.cp(), &world.ns.name);
    let home = tempfile::tempdir().expect("home");
    let bashrc = home.path().join(".bashrc");
    std::fs::write(&bashrc, "alias ll='ls -l'\n").expect("write .bashrc");
    let text = ok(
        plugin.run_in(home.path(), &["download", &rf]),
        "kubectl-report download",
    );

    assert_eq!(
        std::fs::read_to_string(&bashrc).expect(".bashrc"),
        "alias ll='ls -l'\n",
        "the download replaced the person's .bashrc"
    );
    assert_eq!(
        &std::fs::read(home.path().join(&rf)).expect("the file, saved under the report's name"),
        content
    );
    assert!(
        text.contains(".bashrc") && text.contains(&rf),
        "the plugin did not say it chose another name:\n{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Hand-made reports: a ReportFile and its Secret written as a hostile tenant (or backend)
// would leave them, with no operator in the namespace, so that each case is exactly one.

/// A ReportFile `name` with `status` (merged into its status), and its Secret `name` with
/// `data`.
async fn hand_made(ns: &TestNamespace, name: &str, status: serde_json::Value, data: &[(&str, &[u8])]) {
    let client = ns.cp().client().await;
    let files: Api<ReportFile> = Api::namespaced(client.clone(), &ns.name);
    let rf: ReportFile = serde_json::from_value(serde_json::json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": "ReportFile",
        "metadata": {"name": name},
        "spec": {"backendRef": {"name": "b"}, "name": "Licenses", "eventType": "ONETIME", "format": "CSV"},
    }))
    .expect("ReportFile");
    files
        .create(&PostParams::default(), &rf)
        .await
        .expect("create ReportFile");
    files
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": status})),
        )
        .await
        .expect("status");
    let secrets: Api<Secret> = Api::namespaced(client, &ns.name);
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

fn ready(name: &str) -> serde_json::Value {
    serde_json::json!({"status": "READY", "downloadSecretRef": {"name": name}})
}

/// The names in `dir`.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn has_controls(text: &str) -> bool {
    text.chars()
        .any(|c| c == '\x1b' || c == '\r' || c == '\u{9b}' || c == '\x07')
}

#[tokio::test]
async fn hostile_file_names_become_the_reports_name() {
    let ns = TestNamespace::new("plugin-names").await;
    let plugin = Plugin::new(ns.cp(), &ns.name);
    let cases: [(&str, &str, &str); 6] = [
        ("dotfile", ".bashrc", "dotfile"),
        ("parent", "../x", "parent"),
        ("parent-csv", "../x.csv", "parent-csv.csv"),
        ("subdir", "a/b", "subdir"),
        ("escapes", "\x1b[31mred\x1b]0;pwned\x07.csv", "escapes.csv"),
        ("carriage", "ok\r\x1b[2K.csv", "carriage.csv"),
    ];
    for (rf, file_name, _) in cases {
        hand_made(
            &ns,
            rf,
            ready(rf),
            &[("fileName", file_name.as_bytes()), ("content", b"a,b\n1,2\n")],
        )
        .await;
    }
    for (rf, file_name, saved) in cases {
        // A directory of its own inside another, so that `../x` would land in the outer one.
        let outer = tempfile::tempdir().expect("outer");
        let cwd = outer.path().join("cwd");
        std::fs::create_dir(&cwd).expect("cwd");
        std::fs::create_dir(cwd.join("a")).expect("a/");
        let out = plugin.run_in(&cwd, &["download", rf]);
        let text = ok(out, &format!("kubectl-report download {rf}"));
        assert_eq!(
            listing(&cwd),
            vec!["a".to_string(), saved.to_string()],
            "{file_name:?}"
        );
        assert_eq!(
            listing(outer.path()),
            vec!["cwd".to_string()],
            "{file_name:?} wrote outside"
        );
        assert!(listing(&cwd.join("a")).is_empty(), "{file_name:?} wrote into a/");
        assert_eq!(std::fs::read(cwd.join(saved)).expect("saved"), b"a,b\n1,2\n");
        assert!(
            text.contains("not a plain file name") && text.contains(saved),
            "{file_name:?}: the plugin did not say why it chose {saved}:\n{text}"
        );
        assert!(
            !has_controls(&text),
            "{file_name:?} reached the terminal raw:\n{text:?}"
        );
    }
}

#[tokio::test]
async fn an_existing_file_is_replaced_only_with_force() {
    let ns = TestNamespace::new("plugin-exists").await;
    let plugin = Plugin::new(ns.cp(), &ns.name);
    hand_made(
        &ns,
        "r",
        ready("r"),
        &[("fileName", b"r.csv"), ("content", b"new\n")],
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let existing = dir.path().join("r.csv");
    std::fs::write(&existing, "mine\n").expect("write");

    let text = refused(
        plugin.run_in(dir.path(), &["download", "r"]),
        "download over r.csv",
    );
    assert!(
        text.contains("r.csv exists") && text.contains("--force"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(&existing).expect("r.csv"), "mine\n");
    assert_eq!(listing(dir.path()), vec!["r.csv"], "a .part file was left");
    // -o names a file of the user's choosing: the same rule.
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "mine too\n").expect("write");
    refused(
        plugin.run_in(dir.path(), &["download", "r", "-o", "other.csv"]),
        "download -o other.csv",
    );
    assert_eq!(std::fs::read_to_string(&other).expect("other.csv"), "mine too\n");

    ok(
        plugin.run_in(dir.path(), &["download", "r", "--force"]),
        "download --force",
    );
    assert_eq!(std::fs::read_to_string(&existing).expect("r.csv"), "new\n");
    assert_eq!(listing(dir.path()), vec!["other.csv", "r.csv"]);
}

#[tokio::test]
async fn a_planted_part_symlink_is_never_followed() {
    let ns = TestNamespace::new("plugin-part").await;
    let plugin = Plugin::new(ns.cp(), &ns.name);
    hand_made(
        &ns,
        "r",
        ready("r"),
        &[("fileName", b"r.csv"), ("content", b"report\n")],
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let victim_dir = tempfile::tempdir().expect("victim dir");
    let victim = victim_dir.path().join("authorized_keys");
    std::fs::write(&victim, "ssh-ed25519 AAAA mine\n").expect("write victim");
    let part = dir.path().join("r.csv.part");
    std::os::unix::fs::symlink(&victim, &part).expect("plant the symlink");

    let text = refused(
        plugin.run_in(dir.path(), &["download", "r"]),
        "download with a planted .part",
    );
    assert!(text.contains("r.csv.part exists"), "{text}");
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "ssh-ed25519 AAAA mine\n"
    );
    assert!(!dir.path().join("r.csv").exists());

    // --force removes the link itself and writes a file of its own.
    ok(
        plugin.run_in(dir.path(), &["download", "r", "--force"]),
        "download --force",
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "ssh-ed25519 AAAA mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("r.csv")).expect("r.csv"),
        "report\n"
    );
    assert!(
        !std::fs::symlink_metadata(dir.path().join("r.csv"))
            .expect("r.csv")
            .file_type()
            .is_symlink(),
        "the saved file is a symlink"
    );
    assert_eq!(listing(dir.path()), vec!["r.csv"]);
}

#[tokio::test]
async fn text_from_servers_is_printed_with_its_controls_escaped() {
    let ns = TestNamespace::new("plugin-escape").await;
    let plugin = Plugin::new(ns.cp(), &ns.name);
    let reason = "Quota exceeded\x1b]0;pwned\x07\x1b[2J\rREADY";
    let message = "the backend said: \x1b[32mall good\x1b[0m\r";
    let failed = serde_json::json!({
        "status": "FAILED",
        "failedReason": reason,
        "externalId": "RP-1\x1b[8m",
        "conditions": [{
            "type": "Ready", "status": "False", "reason": "Failed", "message": message,
            "lastTransitionTime": "2026-10-01T00:00:00Z",
        }],
    });
    hand_made(&ns, "r", failed, &[]).await;
    let rf_uid = ns
        .kubectl(&["get", "reportfile", "r", "-o", "jsonpath={.metadata.uid}"])
        .stdout;
    let event = serde_json::json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "r.hostile"},
        "eventTime": "2026-10-01T00:00:00.000000Z",
        "reportingController": "reporting.report-operator.io/controller",
        "reportingInstance": "test",
        "action": "Reconcile",
        "type": "Warning",
        "reason": "Failed",
        "note": "backend note \x1b[1A\x1b[2Kfake line\r",
        "regarding": {
            "apiVersion": "reporting.report-operator.io/v1alpha1",
            "kind": "ReportFile",
            "name": "r",
            "namespace": ns.name,
            "uid": String::from_utf8_lossy(&rf_uid),
        },
    });
    let out = ns.kubectl_stdin(&["create", "-f", "-"], &event.to_string());
    assert!(out.status.success(), "create Event: {}", common::stderr(&out));

    let text = ok(plugin.run(&["status", "rf", "r"]), "kubectl-report status rf r");
    assert!(!has_controls(&text), "status printed controls raw:\n{text:?}");
    for shown in [
        "Quota exceeded\\u{1b}]0;pwned\\u{7}\\u{1b}[2J\\rREADY",
        "\\u{1b}[32mall good",
        "RP-1\\u{1b}[8m",
        "\\u{1b}[2Kfake line",
    ] {
        assert!(text.contains(shown), "{shown:?} is missing:\n{text}");
    }
    let text = ok(plugin.run(&["get"]), "kubectl-report get");
    assert!(!has_controls(&text), "get printed controls raw:\n{text:?}");
    // An error that quotes the condition.
    let text = refused(plugin.run(&["download", "r"]), "kubectl-report download r");
    assert!(
        text.contains("not READY") && text.contains("\\u{1b}[32mall good"),
        "{text}"
    );
    assert!(!has_controls(&text), "the error printed controls raw:\n{text:?}");
}

/// A plain HTTP server on `ip` that serves `/file.csv`, redirects `/same` to it and `/away`
/// to `away`, counting the requests it gets.
struct FileServer {
    base: String,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FileServer {
    async fn start(ip: &str, away: Option<String>) -> FileServer {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let app = axum::Router::new()
            .route(
                "/file.csv",
                axum::routing::get(|| async { "day,amount\n2026-10-01,3\n" }),
            )
            .route(
                "/same",
                axum::routing::get(|| async { axum::response::Redirect::temporary("/file.csv") }),
            )
            .route(
                "/away",
                axum::routing::get(move || {
                    let to = away.clone().unwrap_or_default();
                    async move { axum::response::Redirect::temporary(&to) }
                }),
            )
            .layer(axum::middleware::from_fn(
                move |req, next: axum::middleware::Next| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    next.run(req)
                },
            ));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FileServer { base, requests, task }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_https_from_the_secrets_host_is_fetched() {
    let ns = TestNamespace::new("plugin-url").await;
    let plugin = Plugin::new(ns.cp(), &ns.name);
    // Another host: the metadata service, an internal admin page, …
    let elsewhere = FileServer::start("127.0.0.2", None).await;
    let server = FileServer::start("127.0.0.1", Some(format!("{}/file.csv", elsewhere.base))).await;
    let url = |path: &str| format!("{}{path}?X-Amz-Signature=secret", server.base);
    for (rf, u) in [
        ("plain", url("/file.csv")),
        ("same", url("/same")),
        ("away", url("/away")),
        ("local", "file:///etc/passwd".to_string()),
    ] {
        hand_made(
            &ns,
            rf,
            ready(rf),
            &[("fileName", b"usage.csv"), ("url", u.as_bytes())],
        )
        .await;
    }
    let dir = tempfile::tempdir().expect("dir");
    let run = |args: &[&str]| plugin.run_in(dir.path(), args);

    let text = refused(run(&["download", "plain"]), "download of an http URL");
    assert!(text.contains("--allow-http"), "{text}");
    assert!(!text.contains("secret"), "the signature was printed:\n{text}");
    assert_eq!(
        server.requests(),
        0,
        "the http URL was fetched without --allow-http"
    );
    let text = refused(
        run(&["download", "local", "--allow-http"]),
        "download of a file: URL",
    );
    assert!(text.contains("https only"), "{text}");

    let text = refused(
        run(&["download", "away", "--allow-http"]),
        "download redirected away",
    );
    assert!(
        text.contains("redirected to") && text.contains("127.0.0.2"),
        "{text}"
    );
    assert!(!text.contains("secret"), "the signature was printed:\n{text}");
    assert_eq!(
        elsewhere.requests(),
        0,
        "the redirect to another host was followed"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));

    ok(
        run(&["download", "same", "--allow-http"]),
        "download redirected on the same host",
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("usage.csv")).expect("saved"),
        "day,amount\n2026-10-01,3\n"
    );
    ok(
        run(&["download", "plain", "--allow-http", "-o", "plain.csv"]),
        "download of an http URL with --allow-http",
    );
    assert_eq!(listing(dir.path()), vec!["plain.csv", "usage.csv"]);
}
