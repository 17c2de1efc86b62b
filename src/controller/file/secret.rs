//! The report Secret, written only while it is this ReportFile's own.
//!
//! In a shared namespace a Secret with the report's name may already belong to someone else.
//! A forced server-side apply would take it over: add the report's keys to its data and a
//! controller reference to the ReportFile, so that garbage collection deletes it later. So the
//! operator creates the Secret itself, and afterwards writes only a Secret that a ReportFile
//! with this UID controls, each write conditional on the version it looked at.
//!
//! Only metadata is read, live (the cache may not have seen a Secret created a moment ago),
//! so no one else's Secret data ever passes through the operator.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PartialObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};

use crate::api::{BackendType, LABEL_GENERATOR, LABEL_REPORT_FILE, ReportFile, ReportFormat, label_value};
use crate::backend::{Download, MAX_INLINE_BYTES, connect};
use crate::controller::conditions::FIELD_MANAGER;

/// How often a report waiting for someone else's Secret to go looks again: the foreign
/// Secret has no reference to the ReportFile, so its deletion wakes nothing.
/// A look costs one metadata read, so it can be often enough that deleting the Secret
/// feels immediate.
pub const SECRET_CONFLICT_RETRY: Duration = Duration::from_secs(30);

/// Writes that found the Secret changed under them are retried this often, each after a
/// fresh look.
const WRITE_ATTEMPTS: usize = 3;

/// What is at the report Secret's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Missing,
    /// Controlled by this ReportFile, at this resourceVersion.
    Ours {
        resource_version: Option<String>,
    },
    /// Someone else's Secret; `why`, in words for a condition message.
    Foreign {
        why: String,
    },
}

/// Whom a Secret with metadata `meta` belongs to, seen from the ReportFile with `uid`: ours
/// only with a controller reference carrying that UID. A ReportFile of the same name that was
/// deleted and created again has another UID, and its Secret is not ours (garbage collection
/// removes it).
pub fn classify(meta: Option<&ObjectMeta>, uid: &str) -> Observed {
    let Some(meta) = meta else {
        return Observed::Missing;
    };
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if o.uid == uid => Observed::Ours {
            resource_version: meta.resource_version.clone(),
        },
        Some(o) if o.kind == "ReportFile" && Some(&o.name) == meta.name.as_ref() => Observed::Foreign {
            why: format!(
                "it belongs to an earlier ReportFile of the same name (UID {})",
                o.uid
            ),
        },
        Some(o) => Observed::Foreign {
            why: format!("it is controlled by {} {:?}", o.kind, o.name),
        },
        None => Observed::Foreign {
            why: "it was not created by the operator (it has no controlling owner)".into(),
        },
    }
}

/// The condition message for a report whose Secret name is taken: which Secret, and what to do.
pub fn conflict_message(name: &str, why: &str) -> String {
    format!(
        "Secret {name:?} already exists and {why}; the operator leaves it unchanged and has not written the report's download. \
         Delete or rename that Secret: the report Secret is written within {} seconds after",
        SECRET_CONFLICT_RETRY.as_secs()
    )
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The name is someone else's Secret; nothing was written.
    Foreign {
        why: String,
    },
}

/// The report Secrets of one ReportFile's namespace, seen from that ReportFile.
pub struct ReportSecrets<'a> {
    pub api: Api<Secret>,
    pub uid: &'a str,
}

impl ReportSecrets<'_> {
    /// Looks at the Secret `name` now (metadata only).
    pub async fn observe(&self, name: &str) -> Result<Observed, kube::Error> {
        let meta = self.api.get_metadata_opt(name).await?;
        Ok(classify(meta.as_ref().map(|m| &m.metadata), self.uid))
    }

    /// The Secret `name` as the operator's Secret watch has it, when that says it is ours; looked
    /// at now otherwise. A READY report at rest (a restart reconciles every one) costs no
    /// request. Trusting the cache only for `Ours` loses nothing: a write starts from its
    /// resourceVersion and a stale one fails and looks again ([`ReportSecrets::write`]), and
    /// the watch wakes the report when the Secret is deleted or changed. Missing or someone
    /// else's is always looked at now (the cache keeps only the operator's owner references,
    /// not the ones a conflict message names).
    pub async fn observe_cached(
        &self,
        cached: Option<&PartialObjectMeta<Secret>>,
        name: &str,
    ) -> Result<Observed, kube::Error> {
        match cached.map(|m| classify(Some(&m.metadata), self.uid)) {
            Some(ours @ Observed::Ours { .. }) => Ok(ours),
            _ => self.observe(name).await,
        }
    }

    /// Writes `secret` (which carries this ReportFile's controller reference) if its name is
    /// free or ours, starting from what `seen` observed: a new Secret is created (a POST fails
    /// when someone made one meanwhile), ours is applied at the version observed (the apply
    /// fails when it changed). Either failure means: look again.
    pub async fn write(&self, secret: &Secret, mut seen: Observed) -> Result<Written, kube::Error> {
        let name = secret.metadata.name.as_deref().unwrap_or_default();
        let mut attempt = 1;
        loop {
            let result = match seen {
                Observed::Foreign { why } => return Ok(Written::Foreign { why }),
                Observed::Missing => {
                    let params = PostParams {
                        field_manager: Some(FIELD_MANAGER.into()),
                        ..Default::default()
                    };
                    self.api.create(&params, secret).await.map(drop)
                }
                Observed::Ours { resource_version } => {
                    let mut conditional = secret.clone();
                    conditional.metadata.resource_version = resource_version;
                    let params = PatchParams::apply(FIELD_MANAGER).force();
                    self.api
                        .patch(name, &params, &Patch::Apply(&conditional))
                        .await
                        .map(drop)
                }
            };
            match result {
                Ok(()) => return Ok(Written::Done),
                // Still changing under us after the last attempt: the reconcile is retried.
                Err(kube::Error::Api(status)) if status.code == 409 && attempt < WRITE_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
            attempt += 1;
            seen = self.observe(name).await?;
        }
    }
}

/// What the Secret says of the file besides where it is, so that a consumer is never misled
/// by `format`: how it is packed, and whether it is a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// CONNECT: the download is a ZIP (`archive: zip`) holding the report as `archiveReport`
    /// (in `format`) and Connect's metadata as `archiveMetadata` (`summary.json`).
    pub archive: Option<Archive>,
    /// FUSION: the data is as it was at this time (`snapshotTime`); a snapshot covers no window.
    pub snapshot_time: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub kind: &'static str,
    pub report: String,
    pub metadata: &'static str,
}

impl FileFacts {
    /// The facts of a report of `type_` in `format` generated (FUSION: taken) at `generated`.
    pub fn of(type_: BackendType, format: ReportFormat, generated: DateTime<Utc>) -> FileFacts {
        match type_ {
            BackendType::Connect => {
                let (kind, metadata) = connect::ARCHIVE;
                FileFacts {
                    archive: Some(Archive {
                        kind,
                        report: format!("report.{}", format.lower()),
                        metadata,
                    }),
                    snapshot_time: None,
                }
            }
            BackendType::Fusion => FileFacts {
                archive: None,
                snapshot_time: Some(generated),
            },
            BackendType::Rde | BackendType::Cmp | BackendType::Supplier => FileFacts::default(),
        }
    }
}

/// The Secret of a READY report: owned by the ReportFile, labelled for both, with
/// `secretTemplate`'s labels and annotations, and the keys of API.md.
pub fn build_secret(
    rf: &ReportFile,
    download: &Download,
    generate_date: DateTime<Utc>,
    file_name: Option<&str>,
    facts: &FileFacts,
) -> Result<Secret, String> {
    let name = rf.name_any();
    let template = rf.spec.secret_template.clone().unwrap_or_default();
    let mut labels = template.labels.unwrap_or_default();
    labels.insert(LABEL_REPORT_FILE.to_string(), label_value(&name));
    if let Some(generator) = &rf.spec.generator_ref {
        labels.insert(LABEL_GENERATOR.to_string(), label_value(&generator.name));
    }
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put("format", rf.spec.format.upper());
    put(
        "generateDate",
        &generate_date.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    if let Some(f) = file_name {
        put("fileName", f);
    }
    if let Some(a) = &facts.archive {
        put("archive", a.kind);
        put("archiveReport", &a.report);
        put("archiveMetadata", a.metadata);
    }
    if let Some(t) = facts.snapshot_time {
        put(
            "snapshotTime",
            &t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
    }
    match download {
        Download::Url { url, expires_at } => {
            put("url", url);
            if let Some(e) = expires_at {
                put("expiresAt", &e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
        }
        Download::Inline { file_name, content } => {
            if content.len() > MAX_INLINE_BYTES {
                return Err(format!(
                    "the report file {file_name:?} has {} bytes, more than a Secret can hold ({MAX_INLINE_BYTES}); it was not truncated",
                    content.len()
                ));
            }
            put("fileName", file_name);
            data.insert("content".into(), ByteString(content.clone()));
        }
        // Too large for a Secret: the copy into the store adds its `url` and `location`.
        Download::Streamed { file_name } => put("fileName", file_name),
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: rf.namespace(),
            labels: Some(labels),
            annotations: template.annotations.filter(|a| !a.is_empty()),
            owner_references: rf.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    })
}

/// The keys a copy in a ReportStore adds to the Secret (whose `url` and `expiresAt` are then
/// the copy's presigned URL): `location` (`s3://bucket/key`), `size` (bytes) and `sha256`.
pub fn add_delivery(secret: &mut Secret, location: &str, size: i64, sha256: &str) {
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (k, v) in [
        ("location", location.to_string()),
        ("size", size.to_string()),
        ("sha256", sha256.to_string()),
    ] {
        data.insert(k.to_string(), ByteString(v.into_bytes()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{
        EventType as ReportEventType, LocalObjectReference, ReportFileSpec, ReportFormat, SecretTemplate,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn owner(kind: &str, name: &str, uid: &str, controller: Option<bool>) -> OwnerReference {
        OwnerReference {
            api_version: "reporting.report-operator.io/v1alpha1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            controller,
            block_owner_deletion: None,
        }
    }

    fn meta(owners: Vec<OwnerReference>) -> ObjectMeta {
        ObjectMeta {
            name: Some("victim-20240301-20240301".into()),
            resource_version: Some("42".into()),
            owner_references: (!owners.is_empty()).then_some(owners),
            ..Default::default()
        }
    }

    #[test]
    fn only_a_secret_this_report_file_controls_is_ours() {
        let name = "victim-20240301-20240301";
        let ours = Observed::Ours {
            resource_version: Some("42".into()),
        };
        let foreign = |why: &str| Observed::Foreign { why: why.into() };
        let rows: Vec<(&str, Option<ObjectMeta>, Observed)> = vec![
            ("missing", None, Observed::Missing),
            (
                "our controller reference",
                Some(meta(vec![owner("ReportFile", name, "uid-1", Some(true))])),
                ours.clone(),
            ),
            (
                "ours among other owners",
                Some(meta(vec![
                    owner("ConfigMap", "x", "uid-9", None),
                    owner("ReportFile", name, "uid-1", Some(true)),
                ])),
                ours,
            ),
            (
                "no owner",
                Some(meta(vec![])),
                foreign("it was not created by the operator (it has no controlling owner)"),
            ),
            (
                "our UID, but only as a plain owner",
                Some(meta(vec![owner("ReportFile", name, "uid-1", None)])),
                foreign("it was not created by the operator (it has no controlling owner)"),
            ),
            (
                "another controller",
                Some(meta(vec![owner("SealedSecret", "vault", "uid-7", Some(true))])),
                foreign("it is controlled by SealedSecret \"vault\""),
            ),
            (
                "an earlier ReportFile of the same name",
                Some(meta(vec![owner("ReportFile", name, "uid-0", Some(true))])),
                foreign("it belongs to an earlier ReportFile of the same name (UID uid-0)"),
            ),
        ];
        for (what, m, want) in rows {
            assert_eq!(classify(m.as_ref(), "uid-1"), want, "{what}");
        }
    }

    #[test]
    fn the_conflict_message_names_the_secret_and_the_way_out() {
        let m = conflict_message("victim-20240301-20240301", "it has no controlling owner");
        assert!(m.contains("\"victim-20240301-20240301\""), "{m}");
        assert!(m.contains("Delete or rename"), "{m}");
    }

    fn report_file() -> ReportFile {
        let mut rf = ReportFile::new(
            "nw-finance-20181008",
            ReportFileSpec {
                generator_ref: Some(LocalObjectReference {
                    name: "nw-finance".into(),
                }),
                backend_ref: LocalObjectReference {
                    name: "commerce".into(),
                },
                name: "NW Finance".into(),
                event_type: ReportEventType::Periodic,
                format: ReportFormat::Json,
                notify_by_email: None,
                parameters: None,
                organization: None,
                external_id: None,
                template_id: None,
                secret_template: Some(SecretTemplate {
                    labels: Some([("team".to_string(), "finance".to_string())].into()),
                    annotations: Some([("note".to_string(), "x".to_string())].into()),
                }),
                active_deadline_seconds: None,
                store_ref: None,
            },
        );
        rf.metadata.namespace = Some("billing".into());
        rf.metadata.uid = Some("uid-1".into());
        rf
    }

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn secret_has_the_contract_keys_labels_and_owner() {
        let d = Download::Url {
            url: "https://s/f.json?sig=abc".into(),
            expires_at: Some(t("2026-01-01T00:01:00Z")),
        };
        let s = build_secret(
            &report_file(),
            &d,
            t("2026-01-01T00:00:00Z"),
            Some("f.json"),
            &FileFacts::default(),
        )
        .expect("secret");
        let data = s.data.expect("data");
        let get = |k: &str| String::from_utf8(data.get(k).expect(k).0.clone()).expect("utf8");
        assert_eq!(get("url"), "https://s/f.json?sig=abc");
        assert_eq!(get("fileName"), "f.json");
        assert_eq!(get("format"), "JSON");
        assert_eq!(get("generateDate"), "2026-01-01T00:00:00Z");
        assert_eq!(get("expiresAt"), "2026-01-01T00:01:00Z");
        let labels = s.metadata.labels.expect("labels");
        assert_eq!(labels[LABEL_GENERATOR], "nw-finance");
        assert_eq!(labels[LABEL_REPORT_FILE], "nw-finance-20181008");
        assert_eq!(labels["team"], "finance");
        assert_eq!(s.metadata.annotations.expect("annotations")["note"], "x");
        let owner = &s.metadata.owner_references.expect("owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReportFile", Some(true))
        );
    }

    #[test]
    fn inline_files_go_under_content_and_too_large_ones_are_refused() {
        let small = Download::Inline {
            file_name: "l.csv".into(),
            content: b"a,b\n".to_vec(),
        };
        let s = build_secret(
            &report_file(),
            &small,
            t("2026-01-01T00:00:00Z"),
            None,
            &FileFacts::default(),
        )
        .expect("secret");
        let data = s.data.expect("data");
        assert_eq!(data["content"].0, b"a,b\n");
        assert_eq!(data["fileName"].0, b"l.csv");
        assert!(!data.contains_key("url"));
        let big = Download::Inline {
            file_name: "l.csv".into(),
            content: vec![b'x'; MAX_INLINE_BYTES + 1],
        };
        let err = build_secret(
            &report_file(),
            &big,
            t("2026-01-01T00:00:00Z"),
            None,
            &FileFacts::default(),
        )
        .expect_err("too large");
        assert!(err.contains("not truncated"), "{err}");
    }

    #[test]
    fn the_secret_says_what_the_file_is() {
        let at = t("2026-01-01T00:00:00Z");
        let d = Download::Url {
            url: "https://s/RP-1.zip?sig=abc".into(),
            expires_at: None,
        };
        let keys = |type_: BackendType| {
            let facts = FileFacts::of(type_, ReportFormat::Csv, at);
            let s = build_secret(&report_file(), &d, at, Some("RP-1.zip"), &facts).expect("secret");
            s.data
                .expect("data")
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf8")))
                .collect::<BTreeMap<_, _>>()
        };
        let connect = keys(BackendType::Connect);
        assert_eq!(connect["archive"], "zip");
        assert_eq!(connect["archiveReport"], "report.csv");
        assert_eq!(connect["archiveMetadata"], "summary.json");
        assert!(!connect.contains_key("snapshotTime"));
        let fusion = keys(BackendType::Fusion);
        assert_eq!(fusion["snapshotTime"], "2026-01-01T00:00:00Z");
        assert!(!fusion.contains_key("archive"));
        for plain in [BackendType::Rde, BackendType::Cmp, BackendType::Supplier] {
            let k = keys(plain);
            assert!(
                !k.contains_key("archive") && !k.contains_key("snapshotTime"),
                "{plain:?}"
            );
        }
    }
}
