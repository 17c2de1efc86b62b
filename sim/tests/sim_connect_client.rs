//! The CONNECT simulator as CloudBlue's own Python client for Connect sees it
//! (`connect-openapi-client` from PyPI): the pytest tests in `sim/tests/connect_client/` run in
//! the virtual environment of `hack/pyclient.sh` (`REPORT_OPERATOR_PYCLIENT`, set by
//! hack/test.sh, or made here) against the simulator over HTTP on loopback; the test fails with
//! pytest's output when any of them does.

mod sim_support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use report_sim::ReportingApi;
use sim_support::{quick, start};

/// The whole pytest run (a few seconds when the simulator answers).
const DEADLINE: Duration = Duration::from_secs(180);

fn sim_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtual environment with the client and pytest.
fn venv() -> PathBuf {
    if let Some(path) = std::env::var_os("REPORT_OPERATOR_PYCLIENT").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(sim_dir().join("../hack/pyclient.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run hack/pyclient.sh");
    assert!(out.status.success(), "hack/pyclient.sh failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[tokio::test]
async fn connects_own_python_client_works_against_the_simulator() {
    let python = venv().join("bin/python");
    let config = quick(300);
    let api_key = format!("ApiKey {}", config.connect.api_key);
    let sim = start(config).await;

    let logs = tempfile::tempdir().expect("temp dir");
    let log = logs.path().join("pytest.log");
    let file = File::create(&log).expect("log file");
    let mut child = Command::new(&python)
        .args([
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-v",
            "tests/connect_client",
        ])
        .current_dir(sim_dir())
        .env("REPORT_SIM_CONNECT_URL", sim.backend_url(ReportingApi::Connect))
        .env("REPORT_SIM_CONNECT_API_KEY", api_key)
        // Only pytest itself: no plugin of the environment's packages joins the run.
        .env("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log file"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", python.display()));

    // The simulator serves on this thread's runtime, so the wait must not block it.
    let end = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for pytest") {
            break Some(status);
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    match status {
        Some(s) if s.success() => println!("{output}"),
        Some(s) => panic!("connect-openapi-client against report-sim failed ({s}):\n{output}"),
        None => panic!("pytest did not finish within {DEADLINE:?}:\n{output}"),
    }
}
