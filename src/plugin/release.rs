//! `release-finalizers`: the way out when the operator is gone. A ReportFile or
//! ReportGenerator that carries one of the operator's finalizers waits for the operator to
//! clean up on a platform before it goes; without the operator (uninstalled, or stopped
//! before its tenants' namespaces are deleted) it waits for ever, and so does its namespace.
//! This command removes the operator's finalizers, and only those, saying for each object what
//! stays behind on the platforms because nobody cleaned it up.
//!
//! Each removal is a JSON patch that first tests the whole finalizer list as it was read and
//! then writes it back without the operator's names: a finalizer another controller added or
//! removed meanwhile makes the test fail, and the object is read again, so no one else's
//! change is ever overwritten.

use std::fmt::Debug;

use futures::StreamExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::terminal::escape;
use super::{Ctx, Kind, PluginError};
use crate::api::{
    FINALIZER_CONNECT_REPORT, FINALIZER_DELIVERY, FINALIZER_RDE_TEMPLATE, FINALIZERS, ReportFile,
    ReportGenerator,
};

/// Objects listed per request: a namespace of 50,000 ReportFiles is read a page at a time.
const PAGE: u32 = 500;
/// Patches in flight at once.
const IN_FLIGHT: usize = 16;
/// Reads of an object whose finalizers keep changing under the patch before giving up.
const ATTEMPTS: usize = 5;

/// What the command does with the objects it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Remove the operator's finalizers.
    Release,
    /// Say what would be removed; change nothing.
    DryRun,
    /// Change nothing, and fail when any object holds the operator's finalizers (the chart's
    /// uninstall check).
    Check,
}

pub struct Options {
    /// `rf/NAME`, `rg/NAME`, or a bare NAME (the ReportFile and the ReportGenerator of that
    /// name, whichever exist).
    pub objects: Vec<String>,
    /// Every ReportFile and ReportGenerator of the namespace.
    pub all: bool,
    /// With `all`: of every namespace.
    pub all_namespaces: bool,
    pub mode: Mode,
}

/// The kinds that carry the operator's finalizers, and what each leaves behind.
trait Holder:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;

    /// What stays on a platform when `finalizer` goes without the operator's cleanup.
    fn left_behind(&self, finalizer: &str) -> String;
}

impl Holder for ReportFile {
    const KIND: &'static str = "ReportFile";

    fn left_behind(&self, finalizer: &str) -> String {
        let status = self.status.clone().unwrap_or_default();
        let backend = escape(&self.spec.backend_ref.name);
        match finalizer {
            FINALIZER_CONNECT_REPORT => match (&status.external_id, status.create_pending_since) {
                (Some(id), _) => format!(
                    "the CONNECT report {} on Connect (ReportBackend {backend})",
                    escape(id)
                ),
                (None, Some(_)) => format!(
                    "perhaps a CONNECT report asked for whose id was never recorded, on Connect (ReportBackend {backend})"
                ),
                (None, None) => "nothing (no CONNECT report was made for it)".into(),
            },
            FINALIZER_DELIVERY => {
                let store = self
                    .spec
                    .store_ref
                    .as_ref()
                    .map(|s| escape(&s.name).into_owned())
                    .unwrap_or_else(|| "?".into());
                match status.delivery.and_then(|d| d.location) {
                    Some(location) => format!("the copy {} (ReportStore {store})", escape(&location)),
                    None => format!("nothing known (no copy into ReportStore {store} was recorded)"),
                }
            }
            other => format!("whatever {} cleans up", escape(other)),
        }
    }
}

impl Holder for ReportGenerator {
    const KIND: &'static str = "ReportGenerator";

    fn left_behind(&self, finalizer: &str) -> String {
        let status = self.status.clone().unwrap_or_default();
        let backend = escape(&self.spec.backend_ref.name);
        match (finalizer, &status.external_id, status.create_pending_since) {
            (FINALIZER_RDE_TEMPLATE, Some(id), _) => format!(
                "the RDE report template {} on the platform (ReportBackend {backend})",
                escape(id)
            ),
            (FINALIZER_RDE_TEMPLATE, None, Some(_)) => format!(
                "perhaps an RDE report template asked for whose id was never recorded, on the platform (ReportBackend {backend})"
            ),
            (FINALIZER_RDE_TEMPLATE, None, None) => "nothing (no RDE report template was made for it)".into(),
            (other, _, _) => format!("whatever {} cleans up", escape(other)),
        }
    }
}

/// The JSON patch that removes the operator's finalizers from `current` and keeps every other
/// one, with the names it removes; `None` when `current` holds none of them. It tests the
/// whole list first, so it fails if anyone changed the list since it was read.
pub fn release_patch(current: &[String]) -> Option<(serde_json::Value, Vec<String>)> {
    let (ours, kept): (Vec<String>, Vec<String>) = current
        .iter()
        .cloned()
        .partition(|f| FINALIZERS.contains(&f.as_str()));
    if ours.is_empty() {
        return None;
    }
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/finalizers", "value": current},
        {"op": "replace", "path": "/metadata/finalizers", "value": kept},
    ]);
    Some((patch, ours))
}

/// What became of one object.
enum Outcome {
    /// It holds none of the operator's finalizers.
    Free,
    /// It holds (or held, when released) these, with what each leaves behind.
    Held(String),
}

#[derive(Default)]
struct Tally {
    held: usize,
    failed: usize,
}

pub async fn release(ctx: &Ctx, opts: &Options) -> Result<(), PluginError> {
    let mut tally = Tally::default();
    if opts.all {
        sweep::<ReportFile>(ctx, opts, &mut tally).await?;
        sweep::<ReportGenerator>(ctx, opts, &mut tally).await?;
    } else {
        for spec in &opts.objects {
            named(ctx, spec, opts.mode, &mut tally).await?;
        }
    }
    summary(&tally, opts.mode)
}

fn summary(tally: &Tally, mode: Mode) -> Result<(), PluginError> {
    if tally.failed > 0 {
        return Err(PluginError::NotUsable(format!(
            "the finalizers of {} objects could not be released (see above)",
            tally.failed
        )));
    }
    let n = tally.held;
    let objects = match n {
        1 => "1 object".to_string(),
        n => format!("{n} objects"),
    };
    match mode {
        _ if n == 0 => println!("No object holds the operator's finalizers."),
        Mode::Release => {
            println!("Released the operator's finalizers of {objects}; what stays behind is listed above.");
            println!(
                "An operator still running adds them back to the objects it reconciles: stop it first (helm uninstall, or scale it to 0)."
            );
        }
        Mode::DryRun => println!(
            "{objects} hold the operator's finalizers; nothing was changed (run again without --dry-run to release them)."
        ),
        Mode::Check => return Err(PluginError::Held(n)),
    }
    Ok(())
}

/// Every object of kind `K` in the namespace (or all of them), a page at a time.
async fn sweep<K: Holder>(ctx: &Ctx, opts: &Options, tally: &mut Tally) -> Result<(), PluginError> {
    let api: Api<K> = match opts.all_namespaces {
        true => Api::all(ctx.client.clone()),
        false => Api::namespaced(ctx.client.clone(), &ctx.namespace),
    };
    let mut lp = ListParams::default().limit(PAGE);
    loop {
        let page = match api.list(&lp).await {
            Ok(page) => page,
            // The CRD is not installed (any more): nothing can hold a finalizer.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(e) => return Err(PluginError::kube(format!("listing {}s", K::KIND))(e)),
        };
        let held = page
            .items
            .into_iter()
            .filter(|o| o.finalizers().iter().any(|f| FINALIZERS.contains(&f.as_str())));
        let mut outcomes =
            futures::stream::iter(held.map(|o| one(ctx, o, opts.mode))).buffer_unordered(IN_FLIGHT);
        while let Some(outcome) = outcomes.next().await {
            record(outcome, tally);
        }
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => return Ok(()),
        }
    }
}

/// One object named on the command line.
async fn named(ctx: &Ctx, spec: &str, mode: Mode, tally: &mut Tally) -> Result<(), PluginError> {
    let (kinds, name) = match spec.split_once('/') {
        Some((kind, name)) => {
            let kind = <Kind as clap::ValueEnum>::from_str(kind, true).map_err(|_| {
                PluginError::NotUsable(format!(
                    "{}: the kind is rf (ReportFile) or rg (ReportGenerator)",
                    escape(spec)
                ))
            })?;
            (vec![kind], name)
        }
        None => (vec![Kind::File, Kind::Generator], spec),
    };
    let mut found = false;
    for kind in kinds {
        let outcome = match kind {
            Kind::File => named_one::<ReportFile>(ctx, name, mode).await?,
            Kind::Generator => named_one::<ReportGenerator>(ctx, name, mode).await?,
        };
        found |= outcome.is_some();
        if let Some(outcome) = outcome {
            record(outcome, tally);
        }
    }
    match found {
        true => Ok(()),
        false => Err(PluginError::NotUsable(format!(
            "no ReportFile or ReportGenerator {} in namespace {}",
            escape(spec),
            escape(&ctx.namespace)
        ))),
    }
}

async fn named_one<K: Holder>(
    ctx: &Ctx,
    name: &str,
    mode: Mode,
) -> Result<Option<Result<Outcome, PluginError>>, PluginError> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    match api.get_opt(name).await {
        Ok(Some(obj)) => Ok(Some(one(ctx, obj, mode).await)),
        Ok(None) => Ok(None),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(PluginError::kube(format!("reading {} {name}", K::KIND))(e)),
    }
}

fn record(outcome: Result<Outcome, PluginError>, tally: &mut Tally) {
    match outcome {
        Ok(Outcome::Held(text)) => {
            tally.held += 1;
            print!("{text}");
        }
        Ok(Outcome::Free) => {}
        Err(e) => {
            tally.failed += 1;
            eprintln!("error: {}", e.shown());
        }
    }
}

/// Releases (or, in the other modes, describes) the operator's finalizers of `obj`.
async fn one<K: Holder>(ctx: &Ctx, obj: K, mode: Mode) -> Result<Outcome, PluginError> {
    let namespace = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let who = format!("{} {}/{}", K::KIND, escape(&namespace), escape(&name));
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut current = obj;
    for _ in 0..ATTEMPTS {
        let Some((patch, ours)) = release_patch(current.finalizers()) else {
            return Ok(Outcome::Free);
        };
        let describe = |verb: &str, note: &str| {
            let mut text = format!("{who}: {verb} {}{note}\n", ours.join(", "));
            for f in &ours {
                text.push_str(&format!("  stays behind: {}\n", current.left_behind(f)));
            }
            text
        };
        if mode != Mode::Release {
            let verb = if mode == Mode::DryRun {
                "would release"
            } else {
                "holds"
            };
            return Ok(Outcome::Held(describe(verb, "")));
        }
        let patch = serde_json::from_value(patch).map_err(|e| PluginError::NotUsable(e.to_string()))?;
        match api
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
        {
            Ok(after) => {
                let note = deletion_note(&current, after.finalizers());
                return Ok(Outcome::Held(describe("released", &note)));
            }
            // Gone meanwhile: its finalizers were released by someone else.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(Outcome::Free),
            // The test failed: the finalizers changed since they were read; read them again.
            Err(kube::Error::Api(s)) if s.code == 422 || s.code == 409 => match api.get_opt(&name).await {
                Ok(Some(obj)) => current = obj,
                Ok(None) => return Ok(Outcome::Free),
                Err(e) => return Err(PluginError::kube(format!("reading {who}"))(e)),
            },
            Err(e) => return Err(PluginError::kube(format!("releasing the finalizers of {who}"))(e)),
        }
    }
    Err(PluginError::NotUsable(format!(
        "{who}: its finalizers changed {ATTEMPTS} times while being released (is the operator still running?)"
    )))
}

/// For an object being deleted: whether it goes now, or what still holds it.
fn deletion_note<K: Resource>(obj: &K, left: &[String]) -> String {
    if obj.meta().deletion_timestamp.is_none() {
        return String::new();
    }
    match left {
        [] => " (being deleted: it goes now)".into(),
        others => format!(" (being deleted; still held by {})", escape(&others.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn only_the_operators_finalizers_are_released_and_the_list_is_tested_first() {
        let foreign = "example.com/hold";
        for (current, kept, released) in [
            (
                vec![FINALIZER_CONNECT_REPORT],
                vec![],
                vec![FINALIZER_CONNECT_REPORT],
            ),
            (
                vec![foreign, FINALIZER_DELIVERY, FINALIZER_CONNECT_REPORT],
                vec![foreign],
                vec![FINALIZER_DELIVERY, FINALIZER_CONNECT_REPORT],
            ),
            (
                vec![FINALIZER_RDE_TEMPLATE, foreign],
                vec![foreign],
                vec![FINALIZER_RDE_TEMPLATE],
            ),
        ] {
            let (patch, ours) = release_patch(&strings(&current)).expect("a patch");
            assert_eq!(ours, strings(&released));
            assert_eq!(
                patch,
                serde_json::json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": current},
                    {"op": "replace", "path": "/metadata/finalizers", "value": kept},
                ])
            );
        }
        assert!(release_patch(&strings(&[foreign])).is_none());
        assert!(release_patch(&[]).is_none());
    }
}
