//! Copies of READY reports in object storage (the ReportStore kind).
//!
//! A backend's URL is only as good as its expiry (SUPPLIER: 60 seconds); a copy in the
//! platform team's bucket stays. The report is streamed from the backend through a SHA-256
//! hasher into a multipart upload ([`store::Store`]), under an object key made from the
//! ReportFile's immutable spec ([`key::object_key`]), so a retry overwrites the same object.
//! The S3 client is `object_store` (Apache Arrow), on the operator's own reqwest client.

pub mod key;
pub mod store;
mod transport;
pub mod unzip;

pub use key::{KeyInputs, object_key};
pub use store::{Store, StoreError, Uploaded};
