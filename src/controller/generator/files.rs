//! The ReportFiles a generator creates: their names, their contents, and creating each one
//! exactly once, only counting a file as this generator's when this generator controls it.

use chrono::{DateTime, Utc};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::info;

use super::names::derived_name;
use crate::api::reasons::EventReason;
use crate::api::{
    LABEL_GENERATOR, LocalObjectReference, ReportFile, ReportFileSpec, ReportFormat, ReportGenerator,
    ReportGeneratorStatus, ReportParameters, label_value,
};
use crate::controller::Error;
use crate::controller::context::Context;

/// The name parts of the one report of a ONETIME generator, after the generator's name: its
/// first and last day, so that a retry or restart finds the same object and a changed period
/// makes a new one.
pub fn onetime_days(params: &ReportParameters) -> [String; 2] {
    let day = |t: Option<DateTime<Utc>>| {
        t.map(|t| t.format("%Y%m%d").to_string())
            .unwrap_or_else(|| "x".into())
    };
    [day(params.start_date), day(params.end_date)]
}

/// The name of a ReportFile mirrored from a report the backend made: the generator and the
/// backend's id.
pub fn mirrored_file_name(generator: &str, external_id: &str) -> String {
    derived_name(&[generator, external_id])
}

/// A ReportFile the generator is about to create.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedFile {
    pub name: String,
    pub parameters: ReportParameters,
    pub organization: Option<String>,
    pub external_id: Option<String>,
    /// A mirrored report: what the backend says of it, which the file carries rather than
    /// the generator's settings (the generator may have changed since the report was made).
    pub made: Option<Made>,
}

/// What a backend says of a report it made.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Made {
    /// The report's name (RDE: its template's commonName then).
    pub name: Option<String>,
    pub format: Option<ReportFormat>,
    /// RDE: the template that made it.
    pub template_id: Option<String>,
}

/// The ReportFiles of one report named by `parts` (the generator and the window): one, or
/// (SUPPLIER `parameters.organizations`) one per organization, each named after it too.
pub fn fan_out(g: &ReportGenerator, parts: &[&str], parameters: ReportParameters) -> Vec<PlannedFile> {
    let orgs = g
        .spec
        .parameters
        .as_ref()
        .and_then(|p| p.organizations.clone())
        .unwrap_or_default();
    if orgs.is_empty() {
        return vec![PlannedFile {
            name: derived_name(parts),
            parameters,
            organization: None,
            external_id: None,
            made: None,
        }];
    }
    orgs.into_iter()
        .map(|org| {
            let mut named: Vec<&str> = parts.to_vec();
            named.push(&org);
            PlannedFile {
                name: derived_name(&named),
                parameters: ReportParameters {
                    organizations: None,
                    ..parameters.clone()
                },
                organization: Some(org.clone()),
                external_id: None,
                made: None,
            }
        })
        .collect()
}

/// ReportFiles one window makes: one per SUPPLIER organization, else one.
pub fn files_per_window(g: &ReportGenerator) -> usize {
    g.spec
        .parameters
        .as_ref()
        .and_then(|p| p.organizations.as_ref())
        .map_or(1, |o| o.len().max(1))
}

/// The ReportFile a generator owns for one report: a snapshot of the request, which is
/// immutable from then on.
pub fn build_file(g: &ReportGenerator, planned: PlannedFile) -> ReportFile {
    let PlannedFile {
        name,
        parameters,
        organization,
        external_id,
        made,
    } = planned;
    let made = made.unwrap_or_default();
    let spec = &g.spec;
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(LABEL_GENERATOR.to_string(), label_value(&g.name_any()));
    ReportFile {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: g.namespace(),
            labels: Some(labels),
            owner_references: g.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        spec: ReportFileSpec {
            generator_ref: Some(LocalObjectReference { name: g.name_any() }),
            backend_ref: spec.backend_ref.clone(),
            name: made.name.unwrap_or_else(|| spec.common_name.clone()),
            event_type: spec.event_type,
            format: made.format.unwrap_or(spec.format),
            notify_by_email: spec.notify_by_email,
            parameters: Some(parameters),
            organization,
            external_id,
            template_id: made
                .template_id
                .or_else(|| g.status.as_ref().and_then(|s| s.external_id.clone())),
            secret_template: spec.secret_template.clone(),
            active_deadline_seconds: spec.active_deadline_seconds,
            store_ref: spec.store_ref.clone(),
        },
        status: None,
    }
}

/// Whether a planned ReportFile exists as this generator's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// Created now, or earlier by this generator: the report counts as made.
    Done,
    /// The name is taken by a ReportFile this generator does not control: one left by an
    /// earlier generator of the same name that garbage collection has not removed yet, or one
    /// someone else made. The report is not made.
    Conflict(FileConflict),
}

/// A ReportFile name taken by a file that is not this generator's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileConflict {
    pub name: String,
    /// The file is being deleted (or already gone): waiting a few seconds resolves it.
    pub deleting: bool,
}

/// Whether an existing ReportFile is this generator's (`uid`): its controller owner
/// reference, not its name, says so.
pub fn existing_file(existing: &ReportFile, uid: Option<&str>) -> Ensured {
    let controlled = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
    if controlled {
        return Ensured::Done;
    }
    Ensured::Conflict(FileConflict {
        name: existing.name_any(),
        deleting: existing.metadata.deletion_timestamp.is_some(),
    })
}

/// Creates a ReportFile unless this generator has it already. AlreadyExists counts only when
/// the existing file is this generator's.
pub async fn ensure_file(
    ctx: &Context,
    g: &ReportGenerator,
    file: PlannedFile,
    status: &mut ReportGeneratorStatus,
    now: DateTime<Utc>,
) -> Result<Ensured, Error> {
    let namespace = g.namespace().unwrap_or_default();
    let name = file.name.clone();
    let uid = g.uid();
    if let Some(existing) = ctx.files.get(&ObjectRef::new(&name).within(&namespace)) {
        return Ok(existing_file(&existing, uid.as_deref()));
    }
    let api: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &namespace);
    let file = build_file(g, file);
    match api
        .create(
            &PostParams {
                field_manager: Some(crate::controller::conditions::FIELD_MANAGER.into()),
                ..Default::default()
            },
            &file,
        )
        .await
    {
        Ok(_) => {
            status.last_schedule_time = Some(now);
            info!(generator = %g.name_any(), file = %name, "created ReportFile");
            ctx.event(
                g,
                EventType::Normal,
                EventReason::Created,
                format!("created ReportFile {name:?}"),
            )
            .await;
            Ok(Ensured::Done)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => match api.get_opt(&name).await? {
            Some(existing) => Ok(existing_file(&existing, uid.as_deref())),
            // Deleted in between: the next pass creates it.
            None => Ok(Ensured::Conflict(FileConflict { name, deleting: true })),
        },
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn a_supplier_fan_out_makes_one_snapshot_per_organization_owned_by_the_generator() {
        let spec = serde_json::json!({
            "backendRef": {"name": "supplier"}, "commonName": "Trips", "eventType": "PERIODIC", "format": "CSV",
            "activeDeadlineSeconds": 600,
            "parameters": {"period": "P1D", "reportType": "REPORT_TYPE_TRIP_ACTIVITY", "organizations": ["org-a", "org-b"]},
        });
        let mut g = ReportGenerator::new("trips", serde_json::from_value(spec).expect("spec"));
        g.metadata.namespace = Some("ns".into());
        g.metadata.uid = Some("uid-g".into());
        g.status = Some(ReportGeneratorStatus {
            external_id: Some("tmpl-1".into()),
            ..Default::default()
        });
        let window = ReportParameters {
            start_date: Some(t("2026-11-01T00:00:00Z")),
            end_date: Some(t("2026-11-01T23:59:59Z")),
            ..Default::default()
        };
        let planned = fan_out(&g, &["trips", "20261101"], window.clone());
        let names: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["trips-20261101-org-a", "trips-20261101-org-b"]);
        assert_eq!(files_per_window(&g), 2);
        let rf = build_file(&g, planned[1].clone());
        assert_eq!(rf.spec.organization.as_deref(), Some("org-b"));
        assert_eq!(
            rf.spec.parameters.as_ref().and_then(|p| p.organizations.as_ref()),
            None,
            "one organization per file"
        );
        assert_eq!(
            rf.spec.parameters.as_ref().and_then(|p| p.start_date),
            window.start_date
        );
        assert_eq!(
            (rf.spec.template_id.as_deref(), rf.spec.active_deadline_seconds),
            (Some("tmpl-1"), Some(600))
        );
        assert_eq!(
            rf.labels().get(LABEL_GENERATOR).map(String::as_str),
            Some("trips")
        );
        let owner = &rf.owner_references()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("uid-g", Some(true)));
        let single = ReportGenerator::new(
            "one",
            serde_json::from_value(serde_json::json!({
            "backendRef": {"name": "b"}, "commonName": "x", "eventType": "ONETIME", "format": "CSV"}))
            .expect("spec"),
        );
        assert_eq!(fan_out(&single, &["one", "a", "b"], window).len(), 1);
        assert_eq!(files_per_window(&single), 1);
    }

    #[test]
    fn file_names_are_deterministic() {
        let params = ReportParameters {
            start_date: Some(t("2018-10-09T00:00:00Z")),
            end_date: Some(t("2018-10-10T23:59:59Z")),
            ..Default::default()
        };
        let onetime_file_name = |generator: &str, params: &ReportParameters| {
            let [from, to] = onetime_days(params);
            derived_name(&[generator, &from, &to])
        };
        assert_eq!(
            onetime_file_name("nw-finance", &params),
            "nw-finance-20181009-20181010"
        );
        assert_eq!(
            mirrored_file_name("nw-finance", "A7F79686-f6a6-4319-bb8b-4a40ed2ecbb3"),
            "nw-finance-a7f79686-f6a6-4319-bb8b-4a40ed2ecbb3"
        );
        // Years 1 and 9999 and a generator name of 253 characters still make valid names.
        let extreme = ReportParameters {
            start_date: Some(t("0001-01-01T00:00:00Z")),
            end_date: Some(t("9999-12-31T23:59:59Z")),
            ..Default::default()
        };
        let name = onetime_file_name(&"g".repeat(253), &extreme);
        assert!(super::super::names::is_dns_subdomain(&name), "{name}");
        assert!(name.contains("00010101-99991231"), "{name}");
    }

    fn file(owner: Option<(&str, Option<bool>)>, deleting: bool) -> ReportFile {
        let spec = ReportFileSpec {
            generator_ref: None,
            backend_ref: LocalObjectReference { name: "b".into() },
            name: "x".into(),
            event_type: crate::api::EventType::Periodic,
            format: crate::api::ReportFormat::Json,
            notify_by_email: None,
            parameters: None,
            organization: None,
            external_id: None,
            template_id: None,
            secret_template: None,
            active_deadline_seconds: None,
            store_ref: None,
        };
        let mut rf = ReportFile::new("nw-finance-20181008", spec);
        rf.metadata.owner_references = owner.map(|(uid, controller)| {
            vec![OwnerReference {
                api_version: "reporting.report-operator.io/v1alpha1".into(),
                kind: "ReportGenerator".into(),
                name: "nw-finance".into(),
                uid: uid.into(),
                controller,
                block_owner_deletion: None,
            }]
        });
        if deleting {
            rf.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        rf
    }

    #[test]
    fn an_existing_file_counts_only_when_this_generator_controls_it() {
        let conflict = |deleting| {
            Ensured::Conflict(FileConflict {
                name: "nw-finance-20181008".into(),
                deleting,
            })
        };
        // (owner uid and controller flag, being deleted, verdict)
        let cases = [
            (Some(("me", Some(true))), false, Ensured::Done),
            (Some(("me", Some(true))), true, Ensured::Done),
            (Some(("old", Some(true))), false, conflict(false)),
            (Some(("old", Some(true))), true, conflict(true)),
            (Some(("me", None)), false, conflict(false)),
            (Some(("me", Some(false))), false, conflict(false)),
            (None, false, conflict(false)),
        ];
        for (owner, deleting, verdict) in cases {
            assert_eq!(
                existing_file(&file(owner, deleting), Some("me")),
                verdict,
                "{owner:?} deleting={deleting}"
            );
        }
        assert_eq!(
            existing_file(&file(Some(("me", Some(true))), false), None),
            conflict(false)
        );
    }
}
