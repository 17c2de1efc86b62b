//! The copy of a READY report into its ReportStore, as I/O: which store and object, where the
//! report is read from ([`Source`]), and the copy itself ([`copy`]), which needs nothing of
//! the reconcile, so that it runs in the [delivery pool](crate::controller::delivery_pool)
//! while the reconcile returns. What the copy means for the report (its states, its retries,
//! its URL) is decided in [`super::renewal`].

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::api::{BackendType, ConnectArchive, ReportFile, ReportStore};
use crate::backend::{Download, FileStream, ReportRequest, ReportingBackend};
use crate::controller::bucket::{Bucket, Copied, OpenBucket};
use crate::controller::context::{Buckets, Context};
use crate::controller::fair_share::Key;
use crate::controller::metrics::Metrics;
use crate::controller::store::open_store;
use crate::delivery::{KeyInputs, StoreError, object_key};

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

/// The report's backend, for a copy to read the report from when it starts (not before it
/// waited its turn: a URL the backend gave earlier may have expired; SUPPLIER's after 60 s).
pub struct Source {
    pub backend: Arc<dyn ReportingBackend>,
    /// The backend's type, as metrics name it.
    pub type_: &'static str,
    pub request: ReportRequest,
    /// The backend's id of the report (not needed where the file is the answer: FUSION).
    pub id: Option<String>,
    pub metrics: Arc<Metrics>,
}

impl Source {
    /// Where the copy reads the report from, asked of the backend now; a file that is the
    /// answer itself (FUSION) is asked for again and streamed.
    async fn open(&self) -> Result<ReadFrom, StoreError> {
        let (backend, req, metrics) = (&self.backend, &self.request, &self.metrics);
        if backend.capabilities().file_in_answer {
            return metrics
                .call(self.type_, "download", backend.stream(req))
                .await
                .map(ReadFrom::Stream)
                .map_err(StoreError::source);
        }
        let id = self
            .id
            .as_deref()
            .ok_or_else(|| StoreError::Source("the report has no backend id".into()))?;
        let report = metrics
            .call(self.type_, "get", backend.get(id, req))
            .await
            .map_err(StoreError::source)?;
        let download = metrics
            .call(self.type_, "download", backend.download(&report, req))
            .await
            .map_err(StoreError::source)?;
        match download {
            Download::Url { url, .. } => Ok(ReadFrom::Url(url)),
            Download::Inline { content, .. } => Ok(ReadFrom::Stream(
                futures::stream::iter([Ok(content.into())]).boxed(),
            )),
            Download::Streamed { .. } => Err(StoreError::Source(format!(
                "{} gave no stream of a file too large to hold",
                self.type_
            ))),
        }
    }
}

/// The copy of the report `from` reads into `key` of `bucket` (unpacked if `extract`), timed
/// and counted; a job for the delivery pool.
pub async fn copy(
    bucket: OpenBucket,
    from: Source,
    key: String,
    extract: bool,
) -> Result<Copied, StoreError> {
    let started = Instant::now();
    let read = from.open().await?;
    let copied = upload(bucket.as_ref(), read, &key, extract).await?;
    let took = started.elapsed().as_secs_f64();
    from.metrics.delivery.delivered(from.type_, copied.total, took);
    Ok(copied)
}

/// Where a copy reads the report from.
pub enum ReadFrom {
    /// The backend's download URL, fetched by the store's client.
    Url(String),
    /// The file as the backend sends it.
    Stream(FileStream),
}

/// Streams the report from `from` into `key` of `bucket`, or (`extract`) unpacks the ZIP into
/// one object per file under the key without `.zip`.
async fn upload(bucket: &dyn Bucket, from: ReadFrom, key: &str, extract: bool) -> Result<Copied, StoreError> {
    if !extract {
        let uploaded = match from {
            ReadFrom::Url(url) => bucket.copy_from_url(&url, key).await,
            ReadFrom::Stream(body) => bucket.copy_stream(body, key).await,
        }?;
        let location = bucket.location(key);
        return Ok(Copied {
            key: key.to_string(),
            locations: vec![location.clone()],
            location,
            unpacked: false,
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
        location: bucket.location(&main.key),
        locations: files.iter().map(|f| bucket.location(&f.key)).collect(),
        unpacked: true,
        uploaded: main.uploaded.clone(),
        total,
    })
}

/// The ReportFile `rf`'s copy, as the delivery pool knows it.
pub fn pool_key(rf: &ReportFile) -> Key {
    Key {
        namespace: rf.namespace().unwrap_or_default(),
        name: rf.name_any(),
        uid: rf.uid().unwrap_or_default(),
    }
}
