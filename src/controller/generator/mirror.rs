//! The decisions about reports a backend makes itself (RDE report files, CMP invoice reports),
//! pure: which to mirror into ReportFiles, with what; and when an RDE generator's template is
//! replaced and its old one deleted. Their table tests are in `decide_tests.rs`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::ResourceExt;

use super::files::{Made, PlannedFile, mirrored_file_name};
use crate::api::{
    EventType, FileState, ReportFile, ReportGenerator, ReportGeneratorStatus, ReportParameters,
};
use crate::backend::{RemoteReport, ReportState};

/// The reports the backend made that are not mirrored yet: not held by one of `owned`, not
/// older than the newest mirrored one (those were mirrored before and since pruned), and (RDE,
/// listing `template`) not a second report of a period that another template of this
/// generator reported on already: when a template is replaced around the platform's run
/// time, the old and the new one may both report on that period.
pub fn to_mirror<'a>(
    g: &ReportGenerator,
    remote: &'a [RemoteReport],
    owned: &[Arc<ReportFile>],
    mark: Option<DateTime<Utc>>,
    template: Option<&str>,
    mirrored_now: &[PlannedFile],
) -> Vec<(&'a RemoteReport, PlannedFile)> {
    remote
        .iter()
        .filter(|report| {
            !owned
                .iter()
                .any(|rf| rf.spec.external_id.as_deref() == Some(report.id.as_str()))
        })
        .filter(|report| !matches!((report.generate_date, mark), (Some(t), Some(m)) if t < m))
        .filter(|report| {
            template.is_none()
                || g.spec.event_type == EventType::Onetime
                || !reported_by_another(report, owned, mirrored_now, template)
        })
        .map(|report| {
            let file = PlannedFile {
                name: mirrored_file_name(&g.name_any(), &report.id),
                parameters: mirrored_parameters(g, report),
                organization: None,
                external_id: Some(report.id.clone()),
                made: Some(Made {
                    name: report.name.clone(),
                    format: report.format,
                    template_id: template.map(str::to_string),
                }),
            };
            (report, file)
        })
        .collect()
}

/// Whether a ReportFile of another template than `template` (one of `owned`, or one created
/// in this pass, `mirrored_now`, which the cache may not hold yet) covers the same period as
/// `report`.
fn reported_by_another(
    report: &RemoteReport,
    owned: &[Arc<ReportFile>],
    mirrored_now: &[PlannedFile],
    template: Option<&str>,
) -> bool {
    let (Some(start), Some(end)) = (report.start_date, report.end_date) else {
        return false;
    };
    let same = |p: Option<&ReportParameters>, of: Option<&str>| {
        of != template
            && p.and_then(|p| p.start_date) == Some(start)
            && p.and_then(|p| p.end_date) == Some(end)
    };
    owned
        .iter()
        .any(|rf| same(rf.spec.parameters.as_ref(), rf.spec.template_id.as_deref()))
        || mirrored_now.iter().any(|f| {
            same(
                Some(&f.parameters),
                f.made.as_ref().and_then(|m| m.template_id.as_deref()),
            )
        })
}

/// The parameters of a mirrored report: its dates are the backend's (the report's, not the
/// generator's), the rest the generator's.
fn mirrored_parameters(g: &ReportGenerator, remote: &RemoteReport) -> ReportParameters {
    let params = g.spec.parameters.clone().unwrap_or_default();
    ReportParameters {
        start_date: remote.start_date,
        end_date: remote.end_date,
        ..params
    }
}

/// The new `status.lastMirroredTime`: the newest generation time of the reports mirrored, but
/// not at or past one whose file name is taken (`blocked`): that report is not mirrored yet,
/// and a mark past it would skip it for good.
pub fn mirror_mark(
    old: Option<DateTime<Utc>>,
    mirrored: &[DateTime<Utc>],
    blocked: &[DateTime<Utc>],
) -> Option<DateTime<Utc>> {
    let limit = blocked.iter().min();
    mirrored
        .iter()
        .filter(|t| limit.is_none_or(|l| *t < l))
        .copied()
        .chain(old)
        .max()
}

/// What to do about an RDE generator's template, given the settings its spec makes now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateStep {
    /// No template yet (or the last one was retired): make one.
    Create,
    /// The template matches the spec.
    Keep(String),
    /// A template made before its settings were recorded: taken as matching, and its
    /// settings recorded from now on.
    Adopt(String),
    /// The spec changed: retire this template and make a new one.
    Replace(String),
}

/// Whether the template in `status` still matches the settings the spec makes (`settings`;
/// `None` when the spec makes none the platform takes, which validation refuses first).
pub fn template_step(status: &ReportGeneratorStatus, settings: Option<&str>) -> TemplateStep {
    match (status.external_id.clone(), status.template_settings.as_deref()) {
        (None, _) => TemplateStep::Create,
        (Some(id), None) => TemplateStep::Adopt(id),
        (Some(id), Some(made)) if settings.is_none_or(|s| s == made) => TemplateStep::Keep(id),
        (Some(id), Some(_)) => TemplateStep::Replace(id),
    }
}

/// Whether the retired template `template` can be deleted: none of its reports (`remote`,
/// as just listed) is in progress on the platform, none was mirrored in this pass
/// (`mirrored_now`: its ReportFile has not fetched it yet), and every ReportFile mirrored from
/// it is finished (deleting the template deletes its report files on the platform, which a
/// ReportFile in progress still reads).
pub fn retired_template_done(
    template: &str,
    remote: &[RemoteReport],
    mirrored_now: usize,
    owned: &[Arc<ReportFile>],
) -> bool {
    let platform_idle = remote.iter().all(|r| !matches!(r.state, ReportState::InProgress));
    let files_done = owned
        .iter()
        .filter(|rf| rf.spec.template_id.as_deref() == Some(template))
        .all(|rf| {
            rf.status
                .as_ref()
                .and_then(|s| s.status)
                .is_some_and(FileState::is_finished)
        });
    platform_idle && mirrored_now == 0 && files_done
}
