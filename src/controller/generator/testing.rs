//! Generators, backends and reports that the generator's table tests (`decide_tests.rs`,
//! `driver_tests.rs`) are made of.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::api::reasons::FileReady;
use crate::api::{
    ANNOTATION_RUN_NOW, BackendType, FileState, ReportBackend, ReportFile, ReportFileStatus, ReportGenerator,
    ReportParameters,
};
use crate::backend::Capabilities;
use crate::controller::conditions::{Cond, set_condition};
use crate::controller::fixtures::{NS, merge};

pub fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
}

pub const CREATED: &str = "2026-11-01T00:00:00Z";
pub const NOW: &str = "2026-11-05T10:00:00Z";

/// A generator with `spec` merged over a valid ONETIME CONNECT one.
pub fn generator(spec: Value) -> ReportGenerator {
    let mut base = json!({
        "backendRef": {"name": "b"}, "commonName": "Usage", "eventType": "ONETIME", "format": "CSV",
        "parameters": {"startDate": "2026-11-01T00:00:00Z", "endDate": "2026-11-01T23:59:59Z", "template": "RT-1",
                       "reportType": "REPORT_TYPE_TRIP_ACTIVITY", "scope": {"level": "tenant", "uuid": "u"}},
    });
    merge(&mut base, spec);
    let mut g = ReportGenerator::new("g", serde_json::from_value(base).expect("spec"));
    g.metadata.namespace = Some(NS.into());
    g.metadata.uid = Some("uid-g".into());
    g.metadata.generation = Some(1);
    g.metadata.creation_timestamp = Some(crate::controller::conditions::to_k8s_time(t(CREATED)));
    g
}

pub fn periodic(extra: Value) -> ReportGenerator {
    let mut spec =
        json!({"eventType": "PERIODIC", "parameters": {"startDate": null, "endDate": null, "period": "P1D"}});
    merge(&mut spec, extra);
    generator(spec)
}

/// A generator with `spec` merged over a valid ONETIME RDE or CMP one: without the other types'
/// parameters, which those two refuse.
/// `g` without the base's parameters (see [`generator`]) that a CONNECT, FUSION or SUPPLIER
/// backend does not take, which it would refuse (`UnsupportedSetting`); a row that sets one of
/// them to another value keeps it.
pub fn for_type(g: &ReportGenerator, type_: Option<BackendType>) -> ReportGenerator {
    let mut g = g.clone();
    let Some(p) = g.spec.parameters.as_mut() else {
        return g;
    };
    let base_scope = || Some(serde_json::from_value(json!({"level": "tenant", "uuid": "u"})).expect("scope"));
    let (template, report_type, scope) = match type_ {
        Some(BackendType::Connect) => (false, true, true),
        Some(BackendType::Fusion) => (true, true, false),
        Some(BackendType::Supplier) => (true, false, true),
        _ => return g,
    };
    if template && p.template.as_deref() == Some("RT-1") {
        p.template = None;
    }
    if report_type && p.report_type.as_deref() == Some("REPORT_TYPE_TRIP_ACTIVITY") {
        p.report_type = None;
    }
    if scope && p.scope == base_scope() {
        p.scope = None;
    }
    g
}

pub fn own(spec: Value) -> ReportGenerator {
    let mut base = json!({"parameters": {"template": null, "reportType": null, "scope": null}});
    merge(&mut base, spec);
    generator(base)
}

pub fn backend(type_: BackendType) -> ReportBackend {
    let spec =
        json!({"type": type_.as_str(), "url": "https://api.example", "credentialsSecretRef": {"name": "c"}});
    ReportBackend::new("b", serde_json::from_value(spec).expect("backend"))
}

/// What a backend type can do: its own capabilities.
pub fn caps(type_: BackendType) -> Capabilities {
    Capabilities::of(type_).clone()
}

pub fn file(name: &str, state: Option<FileState>) -> Arc<ReportFile> {
    let spec = serde_json::from_value(
        json!({"backendRef": {"name": "b"}, "name": "Usage", "eventType": "ONETIME", "format": "CSV"}),
    )
    .expect("file");
    let mut rf = ReportFile::new(name, spec);
    rf.status = Some(ReportFileStatus {
        status: state,
        completion_time: Some(t(NOW)),
        ..Default::default()
    });
    Arc::new(rf)
}

/// A finished file of the window ending at `end`, completed at `done`.
pub fn dated(name: &str, state: FileState, end: &str, done: &str) -> Arc<ReportFile> {
    let mut rf = (*file(name, Some(state))).clone();
    rf.spec.parameters = Some(ReportParameters {
        end_date: Some(t(end)),
        ..Default::default()
    });
    let why = (state == FileState::Failed).then(|| "COMMERCE failed the report: NO_DATA".to_string());
    let status = rf.status.get_or_insert_default();
    status.completion_time = Some(t(done));
    if let Some(why) = why {
        set_condition(
            &mut status.conditions,
            Cond::ready(false, FileReady::Failed, why),
            Some(1),
            t(done),
        );
    }
    Arc::new(rf)
}

/// A PERIODIC RDE generator with `extra` merged in.
pub fn rde_periodic(extra: Value) -> ReportGenerator {
    let mut spec = json!({"parameters": {"template": null, "reportType": null, "scope": null}});
    merge(&mut spec, extra);
    periodic(spec)
}

/// `g` with the run-now annotation set to `value`.
pub fn run_now(mut g: ReportGenerator, value: &str) -> ReportGenerator {
    g.metadata.annotations = Some([(ANNOTATION_RUN_NOW.to_string(), value.to_string())].into());
    g
}
