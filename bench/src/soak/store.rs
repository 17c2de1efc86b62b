//! The S3 server the ReportStores write to: versitygw (`hack/s3.sh` builds it) with its
//! `posix` backend in a directory of the run, on a fixed port so that it can be stopped and
//! started again under the same endpoint; and a client of its bucket for the checks, which
//! read what the server holds rather than what the operator says it wrote.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ObjectStore as _, ObjectStoreExt as _};

use super::workload::{ACCESS_KEY, BUCKET, SECRET_KEY};
use crate::BenchError;

pub struct ObjectStore {
    binary: PathBuf,
    dir: PathBuf,
    log_dir: PathBuf,
    port: u16,
    child: Option<Child>,
    starts: u32,
}

impl ObjectStore {
    /// Starts versitygw on a free port with the bucket [`BUCKET`] under `dir`.
    pub async fn start(binary: &Path, dir: &Path, log_dir: &Path) -> Result<ObjectStore, BenchError> {
        std::fs::create_dir_all(dir.join("data").join(BUCKET))?;
        std::fs::create_dir_all(dir.join("meta"))?;
        // versitygw compares its directories as given: absolute ones compare reliably.
        let dir = std::fs::canonicalize(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut store = ObjectStore {
            binary: binary.to_path_buf(),
            dir,
            log_dir: log_dir.to_path_buf(),
            port,
            child: None,
            starts: 0,
        };
        store.restart().await?;
        Ok(store)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts the process (again) on the same port and directory; returns once it accepts
    /// connections.
    pub async fn restart(&mut self) -> Result<(), BenchError> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_dir.join(format!("versitygw-{}.log", self.starts)))?;
        let child = Command::new(&self.binary)
            .env("ROOT_ACCESS_KEY", ACCESS_KEY)
            .env("ROOT_SECRET_KEY", SECRET_KEY)
            .args([
                "--port",
                &format!("127.0.0.1:{}", self.port),
                "posix",
                "--sidecar",
            ])
            .arg(self.dir.join("meta"))
            .arg(self.dir.join("data"))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if tokio::time::Instant::now() > deadline {
                return Err(BenchError::Other(format!(
                    "versitygw did not listen on port {} within 60 s",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Kills the process: the store is down until [`ObjectStore::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ObjectStore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A client of the bucket, with the server's root credentials.
pub fn client(endpoint: &str) -> Result<Arc<AmazonS3>, BenchError> {
    let store = AmazonS3Builder::new()
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_access_key_id(ACCESS_KEY)
        .with_secret_access_key(SECRET_KEY)
        .build()
        .map_err(|e| BenchError::Other(format!("S3 client: {e}")))?;
    Ok(Arc::new(store))
}

/// An object's bytes.
pub async fn get(store: &AmazonS3, key: &str) -> Result<Vec<u8>, BenchError> {
    let got = store
        .get(&object_store::path::Path::from(key))
        .await
        .map_err(|e| BenchError::Other(format!("S3 GET {key}: {e}")))?;
    let bytes = got
        .bytes()
        .await
        .map_err(|e| BenchError::Other(format!("S3 GET {key}: {e}")))?;
    Ok(bytes.to_vec())
}

/// The keys under `prefix`.
pub async fn keys(store: &AmazonS3, prefix: &str) -> Result<Vec<String>, BenchError> {
    let prefix = object_store::path::Path::from(prefix);
    let listed: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| BenchError::Other(format!("S3 list: {e}")))?;
    Ok(listed.into_iter().map(|m| m.location.to_string()).collect())
}
