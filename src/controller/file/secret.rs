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

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use super::conditions::FIELD_MANAGER;

/// How often a report waiting for someone else's Secret to go looks again: the foreign
/// Secret has no reference to the ReportFile, so its deletion wakes nothing.
/// A look costs one metadata read, so it can be often enough that deleting the Secret
/// feels immediate.
pub const CONFLICT_RETRY: Duration = Duration::from_secs(30);

/// Writes that found the Secret changed under them are retried this often, each after a
/// fresh look.
const WRITE_ATTEMPTS: usize = 3;

/// What is at the report Secret's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    Missing,
    /// Controlled by this ReportFile, at this resourceVersion.
    Ours { resource_version: Option<String> },
    /// Someone else's Secret; `why`, in words for a condition message.
    Foreign { why: String },
}

/// Whom a Secret with metadata `meta` belongs to, seen from the ReportFile with `uid`: ours
/// only with a controller reference carrying that UID. A ReportFile of the same name that was
/// deleted and created again has another UID, and its Secret is not ours (garbage collection
/// removes it).
pub fn classify(meta: Option<&ObjectMeta>, uid: &str) -> Observed {
    let Some(meta) = meta else { return Observed::Missing };
    let controller = meta.owner_references.iter().flatten().find(|o| o.controller == Some(true));
    match controller {
        Some(o) if o.uid == uid => Observed::Ours { resource_version: meta.resource_version.clone() },
        Some(o) if o.kind == "ReportFile" && Some(&o.name) == meta.name.as_ref() => Observed::Foreign {
            why: format!("it belongs to an earlier ReportFile of the same name (UID {})", o.uid),
        },
        Some(o) => Observed::Foreign { why: format!("it is controlled by {} {:?}", o.kind, o.name) },
        None => Observed::Foreign { why: "it was not created by the operator (it has no controlling owner)".into() },
    }
}

/// The condition message for a report whose Secret name is taken: which Secret, and what to do.
pub fn conflict_message(name: &str, why: &str) -> String {
    format!(
        "Secret {name:?} already exists and {why}; the operator leaves it unchanged and has not written the report's download. \
         Delete or rename that Secret: the report Secret is written within {} seconds after",
        CONFLICT_RETRY.as_secs()
    )
}

/// What a write did.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Done,
    /// The name is someone else's Secret; nothing was written.
    Foreign { why: String },
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
                    let params = PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() };
                    self.api.create(&params, secret).await.map(drop)
                }
                Observed::Ours { resource_version } => {
                    let mut conditional = secret.clone();
                    conditional.metadata.resource_version = resource_version;
                    let params = PatchParams::apply(FIELD_MANAGER).force();
                    self.api.patch(name, &params, &Patch::Apply(&conditional)).await.map(drop)
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

#[cfg(test)]
mod tests {
    use super::*;
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
        let ours = Observed::Ours { resource_version: Some("42".into()) };
        let foreign = |why: &str| Observed::Foreign { why: why.into() };
        let rows: Vec<(&str, Option<ObjectMeta>, Observed)> = vec![
            ("missing", None, Observed::Missing),
            ("our controller reference", Some(meta(vec![owner("ReportFile", name, "uid-1", Some(true))])), ours.clone()),
            (
                "ours among other owners",
                Some(meta(vec![owner("ConfigMap", "x", "uid-9", None), owner("ReportFile", name, "uid-1", Some(true))])),
                ours,
            ),
            ("no owner", Some(meta(vec![])), foreign("it was not created by the operator (it has no controlling owner)")),
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
}
