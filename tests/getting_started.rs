//! The book's getting-started page, run as written: after the state the demo leaves (the CMP
//! example's backend and one-time report, pointed at a simulator, READY), every command block
//! the page marks `# tested by tests/getting_started.rs` runs in bash, as a reader would run
//! it, with a home directory of its own and the test's namespace in place of `reports-demo`.
//! `tests/docs.rs` checks that every other block says how it is checked or that it is
//! illustrative.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::e2e::World;
use common::{repo_root, stderr, stdout};
use report_operator::api::FileState;
use report_sim::SimConfig;

const PAGE: &str = "docs/src/getting-started.md";
const MARK: &str = "# tested by tests/getting_started.rs";
/// The namespace the demo uses, as the page names it.
const DEMO_NAMESPACE: &str = "reports-demo";
/// The example the page downloads.
const GENERATOR: &str = "daily-report-november";
const REPORT: &str = "daily-report-november-20261101-20261107";

/// The `sh` blocks of `markdown` whose first line is `mark`.
fn blocks_marked(markdown: &str, mark: &str) -> Vec<String> {
    markdown
        .split("```sh\n")
        .skip(1)
        .filter_map(|rest| rest.split("\n```").next())
        .filter(|block| block.lines().next() == Some(mark))
        .map(str::to_string)
        .collect()
}

// Several threads: the simulator answers the download while bash runs the page's commands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_getting_started_commands_work_as_written() {
    let page = std::fs::read_to_string(repo_root().join(PAGE)).expect("the getting-started page");
    let blocks = blocks_marked(&page, MARK);
    assert!(!blocks.is_empty(), "{PAGE} has no block marked {MARK:?}");

    // What the demo leaves: the CMP example applied with the simulator in place of the
    // placeholder host, as hack/demo.sh does, and its report READY.
    let world = World::start("getting-started", SimConfig::default()).await;
    for file in ["examples/cmp/backend.yaml", "examples/cmp/onetime.yaml"] {
        let yaml = std::fs::read_to_string(repo_root().join(file)).expect("example");
        world.apply(&yaml.replace("https://your-platform.example", &world.sim.base_url()));
    }
    let files = world.wait_finished(GENERATOR, 1, Duration::from_secs(120)).await;
    let status = files[0].status.as_ref().and_then(|s| s.status);
    assert_eq!(status, Some(FileState::Ready), "{:?}", files[0].status);

    // A reader's shell: the control plane's kubectl on PATH, its kubeconfig, a home of its
    // own, and a working directory with the operator binary where `cargo build` puts it.
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::create_dir_all(work.join("target/debug")).expect("work dir");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_report-operator"),
        work.join("target/debug/report-operator"),
    )
    .expect("symlink the binary");
    let cp = world.ns.cp();
    let path = format!(
        "{}:{}",
        cp.bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for block in &blocks {
        let script = block.replace(DEMO_NAMESPACE, &world.ns.name);
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .current_dir(&work)
            .env("HOME", &home)
            .env("PATH", &path)
            .env("KUBECONFIG", &cp.kubeconfig)
            .output()
            .expect("run bash");
        assert!(
            out.status.success(),
            "a block of {PAGE} failed:\n{script}\nstdout:\n{}\nstderr:\n{}",
            stdout(&out),
            stderr(&out)
        );
        println!("{script}\n{}", stdout(&out));
    }

    // The download the page promises: the report's file, named as its Secret says.
    let secret = world.secrets().get(REPORT).await.expect("the report's Secret");
    let data = secret.data.expect("data");
    let name = String::from_utf8(data["fileName"].0.clone()).expect("fileName");
    let saved = Path::new(&work).join(&name);
    let size = std::fs::metadata(&saved)
        .unwrap_or_else(|e| panic!("{} was not downloaded: {e}", saved.display()))
        .len();
    assert!(size > 0, "{} is empty", saved.display());
}

#[test]
fn blocks_are_found_by_their_first_line() {
    let md = "x\n```sh\n# tested by tests/getting_started.rs\nls\n```\n```sh\n# illustrative\nrm\n```\n";
    assert_eq!(
        blocks_marked(md, MARK),
        vec!["# tested by tests/getting_started.rs\nls"]
    );
}
