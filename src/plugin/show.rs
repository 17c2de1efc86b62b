//! `get` and `status`: what a generator or report is doing and why, from its status, its
//! conditions and its recent Events.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::fetch::{event_time, events_of, get};
use super::terminal::escape;
use super::{Ctx, Kind, PluginError};
use crate::api::{CONDITION_READY, FileState, ReportFile, ReportGenerator, find_condition};
use crate::controller::conditions::from_k8s_time;

/// `get` without a name: one line per generator and per report.
pub async fn list(ctx: &Ctx) -> Result<(), PluginError> {
    let now = Utc::now();
    let generators: Api<ReportGenerator> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let files: Api<ReportFile> = Api::namespaced(ctx.client.clone(), &ctx.namespace);
    let lp = ListParams::default();
    let generators = generators
        .list(&lp)
        .await
        .map_err(PluginError::kube("listing ReportGenerators"))?
        .items;
    let files = files
        .list(&lp)
        .await
        .map_err(PluginError::kube("listing ReportFiles"))?
        .items;
    if generators.is_empty() && files.is_empty() {
        println!(
            "No ReportGenerators or ReportFiles in namespace {}.",
            ctx.namespace
        );
        return Ok(());
    }
    let mut rows = vec![[
        "NAME".to_string(),
        "STATUS".into(),
        "READY".into(),
        "REASON".into(),
        "AGE".into(),
    ]];
    for g in &generators {
        let s = g.status.clone().unwrap_or_default();
        let counts = format!(
            "{} in progress, {} ready, {} failed",
            s.reports.in_progress, s.reports.ready, s.reports.failed
        );
        rows.push(row(
            format!("rg/{}", g.name_any()),
            counts,
            &s.conditions,
            g.creation_timestamp().map(|t| from_k8s_time(&t)),
            now,
        ));
    }
    for f in &files {
        let s = f.status.clone().unwrap_or_default();
        rows.push(row(
            format!("rf/{}", f.name_any()),
            file_state(s.status).into(),
            &s.conditions,
            f.creation_timestamp().map(|t| from_k8s_time(&t)),
            now,
        ));
    }
    print!("{}", table(&rows));
    Ok(())
}

fn row(
    name: String,
    status: String,
    conditions: &[Condition],
    created: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> [String; 5] {
    let ready = find_condition(conditions, CONDITION_READY);
    let age = created.map(|c| ago(c, now)).unwrap_or_default();
    [
        name,
        status,
        ready
            .map(|c| escape(&c.status).into_owned())
            .unwrap_or("-".into()),
        ready
            .map(|c| escape(&c.reason).into_owned())
            .unwrap_or("-".into()),
        age,
    ]
}

/// Left-aligned columns, three spaces apart, as kubectl prints them.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// `get NAME`: the generator and/or report of that name.
pub async fn get_named(ctx: &Ctx, name: &str) -> Result<(), PluginError> {
    let g = get::<ReportGenerator>(ctx, "ReportGenerator", name).await;
    let f = get::<ReportFile>(ctx, "ReportFile", name).await;
    match (g, f) {
        (Err(PluginError::NotFound { .. }), Err(PluginError::NotFound { .. })) => {
            Err(PluginError::NotUsable(format!(
                "no ReportGenerator or ReportFile named {name:?} in namespace {:?}",
                ctx.namespace
            )))
        }
        (g, f) => {
            let mut shown = false;
            for found in [
                g.map(|g| Found::Generator(Box::new(g))),
                f.map(|f| Found::File(Box::new(f))),
            ] {
                match found {
                    Ok(obj) => {
                        if shown {
                            println!();
                        }
                        shown = true;
                        show(ctx, obj).await?;
                    }
                    Err(PluginError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        }
    }
}

/// `status rg|rf NAME`.
pub async fn status(ctx: &Ctx, kind: Kind, name: &str) -> Result<(), PluginError> {
    let obj = match kind {
        Kind::Generator => Found::Generator(Box::new(get(ctx, "ReportGenerator", name).await?)),
        Kind::File => Found::File(Box::new(get(ctx, "ReportFile", name).await?)),
    };
    show(ctx, obj).await
}

enum Found {
    Generator(Box<ReportGenerator>),
    File(Box<ReportFile>),
}

async fn show(ctx: &Ctx, obj: Found) -> Result<(), PluginError> {
    let now = Utc::now();
    let (text, events) = match obj {
        Found::Generator(g) => (
            describe_generator(&g, &ctx.namespace, now),
            events_of(ctx, g.as_ref()).await?,
        ),
        Found::File(f) => (
            describe_file(&f, &ctx.namespace, now),
            events_of(ctx, f.as_ref()).await?,
        ),
    };
    print!("{text}{}", describe_events(&events, now));
    Ok(())
}

/// A generator's spec in one line, its conditions, counts, active reports and times.
pub fn describe_generator(g: &ReportGenerator, namespace: &str, now: DateTime<Utc>) -> String {
    let s = g.status.clone().unwrap_or_default();
    let mut out = format!("ReportGenerator {namespace}/{}\n", g.name_any());
    let spec = &g.spec;
    let period = spec
        .parameters
        .as_ref()
        .and_then(|p| p.period)
        .map(|p| format!(" {p:?}"))
        .unwrap_or_default();
    let suspended = spec.schedule.as_ref().and_then(|s| s.suspend).unwrap_or(false);
    let _ = writeln!(out, "  Backend:      {}", escape(&spec.backend_ref.name));
    let _ = writeln!(
        out,
        "  Kind:         {}{period}, {}{}",
        api_name(&spec.event_type),
        spec.format.upper(),
        if suspended { ", SUSPENDED" } else { "" }
    );
    out.push_str(&describe_conditions(
        &s.conditions,
        g.metadata.generation,
        s.observed_generation,
        now,
    ));
    let r = &s.reports;
    let _ = writeln!(
        out,
        "  Reports:      {} in progress, {} ready, {} failed",
        r.in_progress, r.ready, r.failed
    );
    let active: Vec<String> = s.active.iter().map(|a| escape(&a.name).into_owned()).collect();
    let _ = writeln!(
        out,
        "  Active:       {}",
        if active.is_empty() {
            "none".to_string()
        } else {
            active.join(", ")
        }
    );
    for (label, t) in [
        ("Next report", s.next_report_date),
        ("Last run", s.last_schedule_time),
        ("Last success", s.last_successful_time),
        ("Last failure", s.last_failure_time),
        ("Last missed", s.last_missed_time),
    ] {
        if let Some(t) = t {
            let _ = writeln!(out, "  {:<13} {}", format!("{label}:"), when(t, now));
        }
    }
    if let Some(v) = &s.last_run_now {
        let _ = writeln!(out, "  Last run-now: {}", escape(v));
    }
    out
}

/// A report's window, state, conditions and download (its Secret, never the URL).
pub fn describe_file(f: &ReportFile, namespace: &str, now: DateTime<Utc>) -> String {
    let s = f.status.clone().unwrap_or_default();
    let mut out = format!("ReportFile {namespace}/{}\n", f.name_any());
    let spec = &f.spec;
    let generator = spec
        .generator_ref
        .as_ref()
        .map(|g| g.name.as_str())
        .unwrap_or("none");
    let _ = writeln!(
        out,
        "  Generator:    {} (backend {})",
        escape(generator),
        escape(&spec.backend_ref.name)
    );
    if let Some(p) = &spec.parameters
        && let (Some(start), Some(end)) = (p.start_date, p.end_date)
    {
        let _ = writeln!(out, "  Window:       {} .. {}", rfc3339(start), rfc3339(end));
    }
    let _ = writeln!(out, "  Status:       {}", file_state(s.status));
    out.push_str(&describe_conditions(
        &s.conditions,
        f.metadata.generation,
        s.observed_generation,
        now,
    ));
    if let Some(reason) = &s.failed_reason {
        let _ = writeln!(out, "  Failed:       {}", escape(reason));
    }
    if let Some(id) = &s.external_id {
        let _ = writeln!(out, "  Backend id:   {}", escape(id));
    }
    if let Some(t) = s.generate_date {
        let _ = writeln!(out, "  Generated:    {}", when(t, now));
    }
    if let Some(name) = &s.file_name {
        let _ = writeln!(out, "  File:         {}", escape(name));
    }
    if let Some(secret) = &s.download_secret_ref {
        let expiry = match s.url_expires_at {
            Some(e) if e <= now => format!(
                "; URL expired {} (kubectl report download re-mints it)",
                when(e, now)
            ),
            Some(e) => format!("; URL valid until {}", when(e, now)),
            None => String::new(),
        };
        let _ = writeln!(out, "  Download:     Secret {}{expiry}", escape(&secret.name));
    }
    if let Some(a) = s.attempts {
        let _ = writeln!(out, "  Attempts:     {a}");
    }
    out
}

/// `Ready=False Failed: message`, for messages about an object that is not ready yet.
pub fn ready_summary(conditions: &[Condition]) -> Option<String> {
    let c = find_condition(conditions, CONDITION_READY)?;
    Some(format!(
        "Ready={} {}: {}",
        escape(&c.status),
        escape(&c.reason),
        escape(&c.message)
    ))
}

fn describe_conditions(
    conditions: &[Condition],
    generation: Option<i64>,
    observed: Option<i64>,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    if conditions.is_empty() {
        out.push_str("  Conditions:   none yet (has the operator seen it?)\n");
    }
    for c in conditions {
        let since = from_k8s_time(&c.last_transition_time);
        let _ = writeln!(
            out,
            "  {:<13} {} ({}) since {}",
            format!("{}:", escape(&c.type_)),
            escape(&c.status),
            escape(&c.reason),
            when(since, now)
        );
        if !c.message.is_empty() {
            let _ = writeln!(out, "                {}", escape(&c.message));
        }
    }
    if let (Some(g), Some(o)) = (generation, observed)
        && o < g
    {
        let _ = writeln!(
            out,
            "  Note:         the status describes generation {o}; the operator has not acted on generation {g} yet"
        );
    }
    out
}

fn describe_events(events: &[Event], now: DateTime<Utc>) -> String {
    if events.is_empty() {
        return "Events:         none\n".to_string();
    }
    let mut out = String::from("Events:\n");
    for e in events {
        let age = event_time(e).map(|t| ago(t, now)).unwrap_or_else(|| "?".into());
        let count = e
            .series
            .as_ref()
            .and_then(|s| s.count)
            .or(e.count)
            .filter(|c| *c > 1)
            .map(|c| format!(" (x{c})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {age:>6} ago  {:<7}  {}{count}: {}",
            escape(e.type_.as_deref().unwrap_or("")),
            escape(e.reason.as_deref().unwrap_or("")),
            escape(e.message.as_deref().unwrap_or("").trim())
        );
    }
    out
}

fn file_state(s: Option<FileState>) -> &'static str {
    match s {
        Some(FileState::InProgress) => "IN_PROGRESS",
        Some(FileState::Ready) => "READY",
        Some(FileState::Failed) => "FAILED",
        None => "-",
    }
}

/// An instant with how far it is from now.
fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t <= now {
        format!("{} ({} ago)", rfc3339(t), ago(t, now))
    } else {
        format!("{} (in {})", rfc3339(t), ago(now, t))
    }
}

/// RFC 3339 to the second, in UTC, as kubectl prints times.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An enum value as the API spells it (`ONETIME`), not as Rust does.
fn api_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "?".into(),
    }
}

/// A duration as kubectl's AGE column writes it: 45s, 3m, 5h, 2d.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = now.signed_duration_since(t).num_seconds().max(0);
    match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        let now: DateTime<Utc> = "2026-01-10T00:00:00Z".parse().expect("time");
        for (secs, want) in [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (7199, "119m"),
            (7200, "2h"),
            (172_800, "2d"),
            (-5, "0s"),
        ] {
            assert_eq!(ago(now - chrono::Duration::seconds(secs), now), want, "{secs}s");
        }
    }

    #[test]
    fn columns_line_up() {
        let rows = [
            ["NAME".to_string(), "X".into()],
            ["rg/a-long-name".into(), "READY".into()],
        ];
        assert_eq!(table(&rows), "NAME             X\nrg/a-long-name   READY\n");
    }
}
