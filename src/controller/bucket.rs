//! A ReportStore's bucket, as the copies of READY reports use it: the one seam between the
//! controller and object storage, so that the drivers' fast tests run them against a fake
//! bucket (`fixtures`) while the operator uses [`Store`] (object_store's S3 client).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::FileStream;
use crate::delivery::unzip::Extracted;
use crate::delivery::{Store, StoreError, Uploaded};

/// What a copy, a re-mint and a retention cleanup do with a bucket.
#[async_trait::async_trait]
pub trait Bucket: Send + Sync {
    /// The key prefix of the store's url (may be empty).
    fn prefix(&self) -> &str;
    /// `s3://<bucket>/<key>`.
    fn location(&self, key: &str) -> String;
    /// How long a presigned URL works.
    fn lifetime(&self) -> Duration;
    /// Streams the report at `url` (a backend's download URL) into the object `key`.
    async fn copy_from_url(&self, url: &str, key: &str) -> Result<Uploaded, StoreError>;
    /// Streams `body` (a file the backend sends itself) into the object `key`.
    async fn copy_stream(&self, body: FileStream, key: &str) -> Result<Uploaded, StoreError>;
    /// Unpacks the ZIP at `url` into one object per file under `stem`.
    async fn extract_from_url(&self, url: &str, stem: &str) -> Result<Vec<Extracted>, StoreError>;
    /// Unpacks the ZIP `body` into one object per file under `stem`.
    async fn extract_stream(&self, body: FileStream, stem: &str) -> Result<Vec<Extracted>, StoreError>;
    /// A GET URL of `key` that works for [`Bucket::lifetime`] from `now`, and when it stops.
    async fn presign(&self, key: &str, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), StoreError>;
    /// Deletes the object `key` (already gone is success).
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

#[async_trait::async_trait]
impl Bucket for Store {
    fn prefix(&self) -> &str {
        Store::prefix(self)
    }

    fn location(&self, key: &str) -> String {
        Store::location(self, key)
    }

    fn lifetime(&self) -> Duration {
        Store::lifetime(self)
    }

    async fn copy_from_url(&self, url: &str, key: &str) -> Result<Uploaded, StoreError> {
        Store::copy_from_url(self, url, key).await
    }

    async fn copy_stream(&self, body: FileStream, key: &str) -> Result<Uploaded, StoreError> {
        Store::copy_stream(self, body, key).await
    }

    async fn extract_from_url(&self, url: &str, stem: &str) -> Result<Vec<Extracted>, StoreError> {
        Store::extract_from_url(self, url, stem).await
    }

    async fn extract_stream(&self, body: FileStream, stem: &str) -> Result<Vec<Extracted>, StoreError> {
        Store::extract_stream(self, body, stem).await
    }

    async fn presign(&self, key: &str, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), StoreError> {
        Store::presign(self, key, now).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Store::delete(self, key).await
    }
}

/// An open bucket, shared by the steps of one copy.
pub type OpenBucket = Arc<dyn Bucket>;

/// What a copy wrote into a bucket, once its upload completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The key of the object the Secret points at: the report itself (of an unpacked
    /// archive, its `report*` file).
    pub key: String,
    /// `s3://<bucket>/<key>` of that object.
    pub location: String,
    /// `s3://<bucket>/<key>` of every object written, `location` among them (an unpacked
    /// archive's files).
    pub locations: Vec<String>,
    /// A ZIP unpacked into one object per file (`connectArchive: Extract`).
    pub unpacked: bool,
    pub uploaded: Uploaded,
    /// Bytes uploaded in all (every file of an unpacked archive).
    pub total: u64,
}
