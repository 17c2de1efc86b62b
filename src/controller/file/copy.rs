//! The copy of a READY report into its ReportStore, as I/O: which store and object, where the
//! report is read from, and the upload ([`upload`]), which needs nothing of the reconcile but
//! a bucket and a body (so that it can later run in a pool of its own). What the copy means
//! for the report (its states, its retries, its URL) is decided in [`super::renewal`].

use std::sync::Arc;

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{BackendType, ConnectArchive, ReportFile, ReportStore};
use crate::backend::FileStream;
use crate::controller::bucket::{Bucket, OpenBucket};
use crate::controller::context::{Buckets, Context};
use crate::controller::store::open_store;
use crate::delivery::{KeyInputs, StoreError, Uploaded, object_key};

/// ReportStores' buckets as object_store's S3 client opens them.
pub struct S3Buckets;

#[async_trait::async_trait]
impl Buckets for S3Buckets {
    async fn open(&self, ctx: &Context, namespace: &str, rs: &ReportStore) -> Result<OpenBucket, StoreError> {
        Ok(open_store(ctx, namespace, rs).await?)
    }
}

/// The ReportStore `name` in `namespace`, from the cache.
pub fn report_store(ctx: &Context, namespace: &str, name: &str) -> Option<Arc<ReportStore>> {
    ctx.stores.get(&ObjectRef::new(name).within(namespace))
}

/// Whether a report of backend `type_` is unpacked into the store `rs` (CONNECT, Extract).
pub fn extracts(rs: &ReportStore, type_: Option<BackendType>) -> bool {
    rs.spec.connect_archive() == ConnectArchive::Extract && type_ == Some(BackendType::Connect)
}

/// The object key of `rf` in `bucket` (`rs`'s template).
pub fn key_of(
    rf: &ReportFile,
    rs: &ReportStore,
    bucket: &dyn Bucket,
    file_name: Option<&str>,
) -> Result<String, StoreError> {
    let parameters = rf.spec.parameters.as_ref();
    let name = rf.name_any();
    let inputs = KeyInputs {
        namespace: rf.metadata.namespace.as_deref().unwrap_or_default(),
        report_file: &name,
        generator: rf.spec.generator_ref.as_ref().map(|g| g.name.as_str()),
        start: parameters.and_then(|p| p.start_date),
        end: parameters.and_then(|p| p.end_date),
        organization: rf.spec.organization.as_deref(),
        format: rf.spec.format,
        file_name,
    };
    object_key(bucket.prefix(), rs.spec.path_template(), &inputs).map_err(StoreError::InvalidSpec)
}

/// Where a copy reads the report from.
pub enum ReadFrom {
    /// The backend's download URL, fetched by the store's client.
    Url(String),
    /// The file as the backend sends it.
    Stream(FileStream),
}

/// A copy made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The object the Secret points at: the report itself (of an unpacked archive, its
    /// `report*` file).
    pub key: String,
    pub uploaded: Uploaded,
    /// Bytes uploaded in all (every file of an unpacked archive).
    pub total: u64,
}

/// Streams the report from `from` into `key` of `bucket`, or (`extract`) unpacks the ZIP into
/// one object per file under the key without `.zip`.
pub async fn upload(
    bucket: &dyn Bucket,
    from: ReadFrom,
    key: &str,
    extract: bool,
) -> Result<Copied, StoreError> {
    if !extract {
        let uploaded = match from {
            ReadFrom::Url(url) => bucket.copy_from_url(&url, key).await,
            ReadFrom::Stream(body) => bucket.copy_stream(body, key).await,
        }?;
        return Ok(Copied {
            key: key.to_string(),
            total: uploaded.size,
            uploaded,
        });
    }
    let stem = key.strip_suffix(".zip").unwrap_or(key);
    let files = match from {
        ReadFrom::Url(url) => bucket.extract_from_url(&url, stem).await,
        ReadFrom::Stream(body) => bucket.extract_stream(body, stem).await,
    }?;
    let total = files
        .iter()
        .map(|f| f.uploaded.size)
        .fold(0u64, u64::saturating_add);
    let report = files
        .iter()
        .find(|f| f.key.rsplit('/').next().is_some_and(|n| n.starts_with("report")));
    let main = report
        .or(files.first())
        .ok_or_else(|| StoreError::InvalidArchive("the archive holds no file".into()))?;
    Ok(Copied {
        key: main.key.clone(),
        uploaded: main.uploaded.clone(),
        total,
    })
}
