//! The blob store every download URL points into: `{base}/storage/{api}/{container}/{file}`
//! with a signature and an expiry in the query string, as Azure SAS and S3 presigned URLs
//! have. The signature (HMAC-SHA256 over the path and every other query parameter) makes a
//! changed URL fail with 403 `SignatureDoesNotMatch`; a URL past its expiry fails with 403
//! `AccessDenied`, as SUPPLIER's 60-second links do. Errors are S3-style XML.
//!
//! Query parameters: `se` (expiry, RFC 3339, which CMP clients read as Azure's), `sp=r`,
//! `expires` (expiry, epoch seconds) and `sig`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use super::content::{Packaging, ReportContent, file_type};
use super::signing::Signer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Sim, lock};
use crate::ReportingApi;

/// Where the store lives under the simulator's base URL.
pub(crate) const PREFIX: &str = "/storage/";

/// A file in the store: what it is and how it is wrapped.
#[derive(Debug, Clone)]
pub(crate) struct StoredObject {
    pub content: ReportContent,
    pub packaging: Packaging,
}

#[derive(Default)]
pub(crate) struct Storage {
    objects: Mutex<HashMap<String, StoredObject>>,
    /// Files answered inline rather than stored (FUSION's license exports), by file name:
    /// their API, size and SHA-256.
    served: Mutex<HashMap<String, (ReportingApi, u64, String)>>,
}

/// A file as the simulator serves it, for checking a copy made of it elsewhere
/// ([`SimServer::files`](crate::SimServer::files), `GET /_sim/files`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimFile {
    pub backend: String,
    /// A stored file: its path under `/storage/` (which holds the report's id); a file
    /// answered inline (FUSION): its file name.
    pub name: String,
    pub size: u64,
    /// Hex.
    pub sha256: String,
}

impl SimFile {
    fn of(backend: ReportingApi, name: String, bytes: &[u8]) -> SimFile {
        SimFile {
            backend: backend.as_str().to_string(),
            name,
            size: bytes.len() as u64,
            sha256: hex_sha256(bytes),
        }
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Storage {
    /// Stores a report under `{api}/{container}/{file name}` and returns that path. The file
    /// name is made URL-safe, so the path is the same in every URL form.
    pub fn put(&self, container: &str, file_stem: &str, object: StoredObject) -> String {
        let (ext, _) = file_type(object.content.format, &object.packaging);
        let path = format!(
            "{}/{}/{}.{ext}",
            object.content.backend.as_str().to_ascii_lowercase(),
            safe_name(container),
            safe_name(file_stem)
        );
        lock(&self.objects).insert(path.clone(), object);
        path
    }

    /// Removes a file (CONNECT deletes a report's): its URLs answer 404 afterwards.
    pub fn remove(&self, path: &str) {
        lock(&self.objects).remove(path);
    }

    fn get(&self, path: &str) -> Option<StoredObject> {
        lock(&self.objects).get(path).cloned()
    }

    /// Notes a file answered inline by `backend` (the last answer under a name counts).
    pub fn note_served(&self, backend: ReportingApi, name: &str, bytes: &[u8]) {
        let file = SimFile::of(backend, name.to_string(), bytes);
        lock(&self.served).insert(file.name, (backend, file.size, file.sha256));
    }

    /// Every stored file as a download serves it, and every file answered inline; sorted.
    pub fn files(&self, padding: u64) -> Vec<SimFile> {
        let objects: Vec<(String, StoredObject)> = lock(&self.objects)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut files: Vec<SimFile> = objects
            .into_iter()
            .filter_map(|(path, object)| {
                let bytes = served_bytes(&object, padding).ok()?;
                Some(SimFile::of(object.content.backend, path, &bytes))
            })
            .collect();
        files.extend(
            lock(&self.served)
                .iter()
                .map(|(name, (backend, size, sha256))| SimFile {
                    backend: backend.as_str().to_string(),
                    name: name.clone(),
                    size: *size,
                    sha256: sha256.clone(),
                }),
        );
        files.sort();
        files
    }
}

/// The bytes a download of `object` serves: packaged, and an unwrapped file padded by
/// `padding` newlines.
fn served_bytes(object: &StoredObject, padding: u64) -> Result<Vec<u8>, super::content::ContentError> {
    let mut bytes = object.content.package(&object.packaging)?;
    if object.packaging == Packaging::Plain {
        let padding = usize::try_from(padding).unwrap_or(usize::MAX);
        bytes.resize(bytes.len().saturating_add(padding), b'\n');
    }
    Ok(bytes)
}

/// A name with everything but letters, digits, `-`, `_` and `.` replaced by `-`.
pub(crate) fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// What is signed: the path and the other query parameters, decoded and sorted, so that any
/// encoding of the same URL verifies.
fn canonical(path: &str, mut params: Vec<(String, String)>) -> String {
    params.sort();
    let query: Vec<String> = params.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("GET\n{path}\n{}", query.join("&"))
}

/// The signed URL of a stored file (by its `put` path), working until `expires`.
pub(crate) fn signed_url(signer: &Signer, base: &str, path: &str, expires: DateTime<Utc>) -> String {
    let url_path = format!("{PREFIX}{path}");
    let se = expires.to_rfc3339_opts(SecondsFormat::Secs, true);
    let epoch = expires.timestamp().to_string();
    let params = vec![
        ("se".to_string(), se.clone()),
        ("sp".into(), "r".into()),
        ("expires".into(), epoch.clone()),
    ];
    let sig = signer.sign(canonical(&url_path, params).as_bytes());
    let se = percent_encoding::utf8_percent_encode(&se, percent_encoding::NON_ALPHANUMERIC);
    format!("{base}{url_path}?se={se}&sp=r&expires={epoch}&sig={sig}")
}

/// The expiry of a URL minted now that must work for at least `lifetime_secs`: whole
/// seconds, rounded up.
pub(crate) fn expiry_after(now: DateTime<Utc>, lifetime_secs: u64) -> DateTime<Utc> {
    let secs = i64::try_from(lifetime_secs).unwrap_or(i64::MAX / 2);
    let rounded = now
        .timestamp()
        .saturating_add(secs)
        .saturating_add(i64::from(now.timestamp_subsec_nanos() > 0));
    DateTime::from_timestamp(rounded, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The API whose file a storage path (`/storage/{api}/…`) holds.
pub(crate) fn api_of(path: &str) -> Option<ReportingApi> {
    let api = path.strip_prefix(PREFIX)?.split('/').next()?;
    ReportingApi::ALL
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(api))
}

pub(crate) fn xml_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>\n"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// `GET /storage/{path}?…&sig=…`.
pub(crate) async fn download(State(sim): State<Arc<Sim>>, uri: Uri) -> Response {
    let path = uri.path();
    let mut params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let Some(at) = params.iter().position(|(k, _)| k == "sig") else {
        return xml_error(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Query-string authentication requires the sig parameter",
        );
    };
    let (_, sig) = params.remove(at);
    let expires = params
        .iter()
        .find(|(k, _)| k == "expires")
        .and_then(|(_, v)| v.parse::<i64>().ok());
    if !sim.signer.verify(canonical(path, params).as_bytes(), &sig) {
        return xml_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided",
        );
    }
    match expires {
        Some(e) if Utc::now().timestamp() < e => {}
        _ => return xml_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired"),
    }
    let key = path.strip_prefix(PREFIX).unwrap_or(path);
    let Some(object) = sim.storage.get(key) else {
        return xml_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let (_, content_type) = file_type(object.content.format, &object.packaging);
    let file_name = key.rsplit('/').next().unwrap_or(key).to_string();
    match served_bytes(&object, sim.config.padding_bytes) {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{file_name}\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => xml_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_path_and_expiry() {
        let signer = Signer::new(b"k").expect("key");
        let expires = DateTime::from_timestamp(2_000_000_000, 0).expect("time");
        let url = signed_url(&signer, "http://h", "cmp/c/f.json", expires);
        let parsed = url::Url::parse(&url).expect("url");
        let mut params: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let (_, sig) = params.pop().expect("sig last");
        assert!(signer.verify(canonical(parsed.path(), params.clone()).as_bytes(), &sig));
        assert!(!signer.verify(
            canonical("/storage/cmp/c/g.json", params.clone()).as_bytes(),
            &sig
        ));
        params[2].1 = "2000000001".into();
        assert!(!signer.verify(canonical(parsed.path(), params).as_bytes(), &sig));
    }

    #[test]
    fn expiry_rounds_up_to_whole_seconds() {
        let now = DateTime::from_timestamp(100, 500_000_000).expect("time");
        assert_eq!(expiry_after(now, 60).timestamp(), 161);
        let whole = DateTime::from_timestamp(100, 0).expect("time");
        assert_eq!(expiry_after(whole, 60).timestamp(), 160);
    }
}
