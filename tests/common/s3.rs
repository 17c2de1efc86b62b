//! A real S3-compatible server for behaviour tests: versitygw (Apache-2.0), built by
//! `hack/s3.sh` (or taken from `REPORT_OPERATOR_S3`), one process per test on a free port
//! with its buckets as directories in a temporary directory. Stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::{repo_root, wait_for};

pub const ACCESS_KEY: &str = "report-operator-test";
pub const SECRET_KEY: &str = "report-operator-test-secret";

pub struct S3Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

/// The versitygw binary: `REPORT_OPERATOR_S3`, else built (or found in the cache) by
/// `hack/s3.sh`.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("REPORT_OPERATOR_S3") {
        return PathBuf::from(path);
    }
    let out = Command::new("bash")
        .arg(repo_root().join("hack/s3.sh"))
        .output()
        .expect("run hack/s3.sh");
    assert!(
        out.status.success(),
        "hack/s3.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl S3Server {
    /// Starts a server with the buckets `buckets` and waits until it answers.
    pub async fn start(buckets: &[&str]) -> S3Server {
        let dir = tempfile::tempdir().expect("temp dir");
        for b in buckets {
            std::fs::create_dir_all(dir.path().join("data").join(b)).expect("bucket dir");
        }
        std::fs::create_dir_all(dir.path().join("meta")).expect("sidecar dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = S3Server {
            child: None,
            port,
            dir,
            log: PathBuf::new(),
        };
        server.restart().await;
        server
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process again (after [`S3Server::stop`]) on the same port and directory.
    pub async fn restart(&mut self) {
        let logs = repo_root().join("target/test-logs");
        std::fs::create_dir_all(&logs).expect("log dir");
        self.log = logs.join(format!(
            "versitygw-{}-{:08x}.log",
            self.port,
            rand::random::<u32>()
        ));
        let log = std::fs::File::create(&self.log).expect("log file");
        let child = Command::new(binary())
            .env("ROOT_ACCESS_KEY", ACCESS_KEY)
            .env("ROOT_SECRET_KEY", SECRET_KEY)
            .args([
                "--port",
                &format!("127.0.0.1:{}", self.port),
                "posix",
                "--sidecar",
            ])
            .arg(self.dir.path().join("meta"))
            .arg(self.dir.path().join("data"))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start versitygw");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_for(
            &format!("versitygw on {addr} (log {})", self.log.display()),
            Duration::from_secs(30),
            || {
                let addr = addr.clone();
                async move { tokio::net::TcpStream::connect(&addr).await.ok().map(drop) }
            },
        )
        .await;
    }

    /// Kills the process: the store is down until [`S3Server::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client of `bucket` with the root credentials, to look at what the operator wrote.
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        let store = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("S3 client");
        Arc::new(store)
    }

    /// The keys of `bucket` with their sizes, by listing it through the S3 API.
    pub async fn objects(&self, bucket: &str) -> Vec<(String, u64)> {
        let store = self.client(bucket);
        let listed: Vec<_> = store.list(None).try_collect().await.expect("list bucket");
        let mut out: Vec<(String, u64)> = listed
            .into_iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect();
        out.sort();
        out
    }

    /// An object's bytes.
    pub async fn get(&self, bucket: &str, key: &str) -> Vec<u8> {
        let store = self.client(bucket);
        let got = store.get(&Path::from(key)).await.expect("get object");
        got.bytes().await.expect("object bytes").to_vec()
    }

    /// A ReportStore named `name` with its credentials Secret, for `bucket` under `prefix`.
    pub fn manifest(&self, name: &str, bucket: &str, extra_spec: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-s3\nstringData:\n  accessKeyId: {ACCESS_KEY}\n  secretAccessKey: {SECRET_KEY}\n---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportStore\nmetadata:\n  name: {name}\nspec:\n  url: s3://{bucket}/reports\n  endpoint: {}\n  credentialsSecretRef:\n    name: {name}-s3\n{extra_spec}",
            self.endpoint()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
