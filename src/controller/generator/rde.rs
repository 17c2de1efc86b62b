//! RDE: the generator is an RDEReportTemplate on the platform, which schedules the reports
//! itself. The template is made with the [`create_once`] protocol (a lost answer never makes
//! a second one), its report files are mirrored, and a finalizer deletes it when the
//! generator goes.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use super::act::Mirror;
use super::decide::{self, TemplateStep};
use super::files::PlannedFile;
use crate::api::reasons::EventReason;
use crate::api::{
    EventType as ReportEventType, ReportBackend, ReportFile, ReportGenerator, ReportGeneratorStatus,
};
use crate::backend::{BackendError, ListQuery, RemoteReport, ReportRequest, ReportingBackend};
use crate::controller::conditions::from_k8s_time;
use crate::controller::context::Context;
use crate::controller::create_once::{CreateOnce, Created, create_once};
use crate::controller::error::Error;
use crate::controller::finalizers::{self, NotYet, Patience, patience};
use crate::controller::outcome::Outcome;
use crate::controller::registry::Unusable;

/// Finalizer that deletes the RDEReportTemplate on the platform.
pub const RDE_FINALIZER: &str = crate::api::FINALIZER_RDE_TEMPLATE;

/// Makes sure the template exists, follows the platform's schedule and mirrors the report
/// files it made. A call the platform refuses ends the pass as [`decide::backend_failed`]
/// says.
pub async fn run(
    ctx: &Context,
    g: &ReportGenerator,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    status: &mut ReportGeneratorStatus,
    owned: &[Arc<ReportFile>],
) -> Result<Outcome, Error> {
    match follow(ctx, g, rb, backend, status, owned).await {
        Ok(outcome) => Ok(outcome),
        Err(Stop::Backend(operation, e)) => Ok(decide::backend_failed(rb.spec.type_.as_str(), operation, &e)),
        Err(Stop::Kube(e)) => Err(e),
    }
}

async fn follow(
    ctx: &Context,
    g: &ReportGenerator,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    status: &mut ReportGeneratorStatus,
    owned: &[Arc<ReportFile>],
) -> Result<Outcome, Stop> {
    let api: Api<ReportGenerator> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    ensure_finalizer(g, &api).await.map_err(Stop::Kube)?;
    let req = template_request(g);
    let type_ = rb.spec.type_.as_str();
    let template_id = template(ctx, g, rb, backend, &api, &req, status).await?;
    if g.spec.event_type == ReportEventType::Periodic {
        // The platform schedules: its next report date is the generator's.
        let template = ctx
            .metrics
            .call(type_, "get", backend.get(&template_id, &req))
            .await
            .map_err(|e| Stop::Backend("get", e))?;
        status.next_report_date = template.next_report_date;
    }
    let query = ListQuery {
        template_id: Some(template_id),
        ..Default::default()
    };
    let mirror = Mirror {
        ctx,
        g,
        rb,
        backend,
        owned,
        mirrored_now: &[],
    };
    let retired_files = retire(&mirror, status).await.map_err(Stop::Kube)?;
    let mirror = Mirror {
        mirrored_now: &retired_files,
        ..mirror
    };
    mirror_current(&mirror, &query, status).await.map_err(Stop::Kube)
}

/// The id of the generator's template on the platform: the one it has, or a new one (which
/// replaces it when the spec changed) made with the [`create_once`] protocol.
async fn template(
    ctx: &Context,
    g: &ReportGenerator,
    rb: &ReportBackend,
    backend: &dyn ReportingBackend,
    api: &Api<ReportGenerator>,
    req: &ReportRequest,
    status: &mut ReportGeneratorStatus,
) -> Result<String, Stop> {
    let settings = crate::backend::rde::template_settings(req).ok();
    let step = decide::template_step(status, settings.as_deref());
    match &step {
        TemplateStep::Keep(id) => return Ok(id.clone()),
        TemplateStep::Adopt(id) => {
            status.template_settings = settings.clone();
            return Ok(id.clone());
        }
        TemplateStep::Replace(old) => {
            // The old template goes on reporting until the new one exists; it is saved as
            // retired with the create-pending mark, before the platform hears of the new
            // one, so that it is never forgotten.
            status.retired_templates.push(old.clone());
            status.external_id = None;
            status.template_settings = None;
            let message = format!(
                "the spec changed and the platform cannot update a template: replacing RDEReportTemplate {old}"
            );
            ctx.event(g, EventType::Normal, EventReason::Replacing, message)
                .await;
        }
        TemplateStep::Create => {}
    }
    let mut template = Template {
        ctx,
        g,
        rb,
        backend,
        api,
        req,
        settings,
        status,
    };
    let (Created::Found(made) | Created::Submitted(made)) = create_once(&mut template).await?;
    let message = format!("created RDEReportTemplate {}", made.id);
    ctx.event(g, EventType::Normal, EventReason::Submitted, message)
        .await;
    Ok(made.id)
}

/// Mirrors the report files of the current template (`query`). A ONETIME template has one:
/// once it is mirrored there is nothing to list. A retired template not deleted yet is
/// looked at again even when nothing else changes.
async fn mirror_current(
    mirror: &Mirror<'_>,
    query: &ListQuery,
    status: &mut ReportGeneratorStatus,
) -> Result<Outcome, Error> {
    if mirror.g.spec.event_type != ReportEventType::Onetime {
        return mirror.and_prune(query, status).await;
    }
    let current = query.template_id.as_deref();
    let mirrored = mirror
        .owned
        .iter()
        .any(|rf| rf.spec.template_id.as_deref() == current);
    let outcome = if mirrored {
        Outcome::working(None)
    } else {
        mirror.once(query, status).await?
    };
    Ok(if status.retired_templates.is_empty() {
        outcome
    } else {
        outcome.or_requeue(decide::MIRROR_INTERVAL)
    })
}

/// The retired templates: mirrors the reports each made since it was last listed, and
/// deletes it on the platform once none of its reports is in progress. A failed call leaves
/// it for the next pass (with a Warning): the current template is what the generator's
/// Ready is about.
async fn retire(mirror: &Mirror<'_>, status: &mut ReportGeneratorStatus) -> Result<Vec<PlannedFile>, Error> {
    let Mirror {
        ctx,
        g,
        rb,
        backend,
        owned,
        ..
    } = *mirror;
    let type_ = rb.spec.type_.as_str();
    let mut mirrored = Vec::new();
    for id in status.retired_templates.clone() {
        let query = ListQuery {
            template_id: Some(id.clone()),
            ..Default::default()
        };
        let remote = match ctx.metrics.call(type_, "list", backend.list(&query)).await {
            Ok(r) => r,
            // Gone already (deleted by hand, or by an earlier pass whose status write was lost).
            Err(BackendError::NotFound { .. }) => {
                status.retired_templates.retain(|t| *t != id);
                continue;
            }
            Err(e) => {
                ctx.event(
                    g,
                    EventType::Warning,
                    EventReason::BackendError,
                    format!("listing the reports of the replaced RDEReportTemplate {id}: {e}"),
                )
                .await;
                continue;
            }
        };
        let (_, created) = mirror.listed(&remote, Some(&id), status).await?;
        let done = decide::retired_template_done(&id, &remote, created.len(), owned);
        mirrored.extend(created);
        if !done {
            continue;
        }
        match ctx
            .metrics
            .call(type_, "delete", backend.delete_template(&id))
            .await
        {
            Ok(()) => {
                status.retired_templates.retain(|t| *t != id);
                ctx.event(
                    g,
                    EventType::Normal,
                    EventReason::Deleted,
                    format!("deleted the replaced RDEReportTemplate {id}"),
                )
                .await;
            }
            Err(e) => {
                ctx.event(
                    g,
                    EventType::Warning,
                    EventReason::BackendError,
                    format!("deleting the replaced RDEReportTemplate {id}: {e}"),
                )
                .await
            }
        }
    }
    Ok(mirrored)
}

fn template_request(g: &ReportGenerator) -> ReportRequest {
    ReportRequest {
        key: format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any()),
        name: g.spec.common_name.clone(),
        event_type: g.spec.event_type,
        format: g.spec.format,
        notify_by_email: g.spec.notify_by_email.unwrap_or(false),
        parameters: g.spec.parameters.clone().unwrap_or_default(),
        organization: None,
        stored: false,
    }
}

/// The generator's template, as [`create_once`] makes it.
struct Template<'a> {
    ctx: &'a Context,
    g: &'a ReportGenerator,
    rb: &'a ReportBackend,
    backend: &'a dyn ReportingBackend,
    api: &'a Api<ReportGenerator>,
    req: &'a ReportRequest,
    /// What [`TemplateStep`] compares the spec with next time.
    settings: Option<String>,
    status: &'a mut ReportGeneratorStatus,
}

/// Why making the template stopped.
enum Stop {
    Backend(&'static str, BackendError),
    Kube(Error),
}

impl CreateOnce for Template<'_> {
    type Made = RemoteReport;
    type Stop = Stop;

    fn pending(&self) -> bool {
        self.status.create_pending_since.is_some()
    }

    fn mark_pending(&mut self) {
        self.status.create_pending_since = Some(self.ctx.now());
    }

    fn record(&mut self, made: &RemoteReport) {
        self.status.external_id = Some(made.id.clone());
        self.status.template_settings = self.settings.clone();
        self.status.create_pending_since = None;
    }

    async fn save(&mut self) -> Result<(), Stop> {
        self.ctx
            .apply_status(self.api, self.g, &*self.status)
            .await
            .map_err(|e| Stop::Kube(e.into()))
    }

    async fn find(&mut self) -> Result<Option<RemoteReport>, Stop> {
        // A retired template may match the spec too (an edit of notifyByEmail alone): it is
        // not the one being made.
        let mut taken = self
            .ctx
            .index
            .ids_taken_by_generators(self.rb, self.g.metadata.uid.as_deref());
        taken.extend(self.status.retired_templates.iter().cloned());
        let type_ = self.rb.spec.type_.as_str();
        self.ctx
            .metrics
            .call(type_, "find", self.backend.find(self.req, &taken))
            .await
            .map_err(|e| Stop::Backend("find", e))
    }

    async fn submit(&mut self) -> Result<RemoteReport, Stop> {
        let type_ = self.rb.spec.type_.as_str();
        self.ctx
            .metrics
            .call(type_, "submit", self.backend.submit(self.req))
            .await
            .map_err(|e| Stop::Backend("submit", e))
    }
}

/// Adds the RDE finalizer: only RDE generators get one, since only they leave something
/// outside the cluster (the template). The RDE step goes on in the same pass (the template is
/// created without waiting for another reconcile).
async fn ensure_finalizer(g: &ReportGenerator, api: &Api<ReportGenerator>) -> Result<(), Error> {
    finalizers::ensure(g, api, RDE_FINALIZER).await
}

/// The generator `g` is being deleted: runs [`delete_template`] if `g` still has the RDE
/// finalizer and removes the finalizer once that succeeded.
pub async fn finalize(g: Arc<ReportGenerator>, ctx: &Context) -> Result<Action, Error> {
    let api: Api<ReportGenerator> = Api::namespaced(ctx.client.clone(), &g.namespace().unwrap_or_default());
    finalizers::run(g, &api, RDE_FINALIZER, |g| async move {
        delete_template(&g, ctx).await
    })
    .await
}

/// Deletes the RDE template and any replaced ones not deleted yet, so that the finalizer can
/// go. A backend that no longer exists cannot be cleaned up: the finalizer is removed with a
/// Warning rather than blocking forever.
async fn delete_template(g: &ReportGenerator, ctx: &Context) -> Result<Action, NotYet> {
    let namespace = g.namespace().unwrap_or_default();
    let status = g.status.clone().unwrap_or_default();
    let templates: Vec<String> = status
        .external_id
        .into_iter()
        .chain(status.retired_templates)
        .collect();
    if templates.is_empty() {
        return Ok(Action::await_change());
    }
    let (rb, backend) = match ctx.ready_backend(&namespace, &g.spec.backend_ref.name).await {
        Ok(found) => found,
        Err(n) if n.reason == Unusable::NotFound => {
            let ids = templates.join(", ");
            ctx.event(
                g,
                EventType::Warning,
                EventReason::TemplateLeft,
                format!("RDEReportTemplate {ids} was not deleted: {}", n.message),
            )
            .await;
            return Ok(Action::await_change());
        }
        Err(n) => {
            let ids = templates.join(", ");
            ctx.event(
                g,
                EventType::Warning,
                EventReason::BackendError,
                format!("cannot delete RDEReportTemplate {ids} yet: {}", n.message),
            )
            .await;
            return retry_or_leave(g, ctx, &ids, &n.message, Duration::from_secs(30)).await;
        }
    };
    // Deleting one that is gone already succeeds: a retry after a partial pass is harmless.
    for template_id in templates {
        match ctx
            .metrics
            .call(
                rb.spec.type_.as_str(),
                "delete",
                backend.delete_template(&template_id),
            )
            .await
        {
            Ok(()) => {
                ctx.event(
                    g,
                    EventType::Normal,
                    EventReason::Deleted,
                    format!("deleted RDEReportTemplate {template_id}"),
                )
                .await
            }
            Err(e) => {
                ctx.event(
                    g,
                    EventType::Warning,
                    EventReason::BackendError,
                    format!("deleting RDEReportTemplate {template_id}: {e}"),
                )
                .await;
                let why = e.to_string();
                return retry_or_leave(g, ctx, &template_id, &why, Duration::from_secs(10)).await;
            }
        }
    }
    Ok(Action::await_change())
}

/// A template deletion that cannot be done now (`why`): retried after `after`, but only for
/// the deletion grace since the generator's deletion; then the templates `ids` are left with
/// a Warning and the finalizer goes, so that a platform that is down never holds a namespace
/// `Terminating`.
async fn retry_or_leave(
    g: &ReportGenerator,
    ctx: &Context,
    ids: &str,
    why: &str,
    after: Duration,
) -> Result<Action, NotYet> {
    let deleted = g.metadata.deletion_timestamp.as_ref().map(from_k8s_time);
    match patience(deleted, ctx.deletion_grace, ctx.now(), after) {
        Patience::Wait(after) => Err(NotYet(after)),
        Patience::GiveUp => {
            let grace = ctx.deletion_grace.as_secs();
            let note = format!(
                "RDEReportTemplate {ids} was not deleted: {why}; given up {grace} s after the deletion: the finalizer goes"
            );
            ctx.event(g, EventType::Warning, EventReason::TemplateLeft, note)
                .await;
            Ok(Action::await_change())
        }
    }
}
