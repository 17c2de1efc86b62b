//! The ReportFile driver as it runs: the real reconcile against the fake API server, backend
//! and bucket of [`fixtures`](crate::controller::fixtures), one test per sequence of calls.

use std::sync::Arc;

use serde_json::{Value, json};

use super::reconcile;
use crate::api::{BackendType, ReportFile};
use crate::backend::{RemoteReport, ReportState};
use crate::controller::fixtures::{API_VERSION, NS, World, merge};

/// A ReportFile `name` on backend `b`, created now, with `extra` merged in.
fn report_file(name: &str, extra: Value) -> Value {
    let mut obj = json!({
        "apiVersion": API_VERSION, "kind": "ReportFile",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
            "creationTimestamp": chrono::Utc::now().to_rfc3339()},
        "spec": {"backendRef": {"name": "b"}, "name": "Usage", "eventType": "ONETIME", "format": "CSV",
            "parameters": {"startDate": "2026-01-01T00:00:00Z", "endDate": "2026-01-01T23:59:59Z"}},
    });
    merge(&mut obj, extra);
    obj
}

async fn run(world: &World, name: &str) -> kube::runtime::controller::Action {
    let rf: Arc<ReportFile> = world.cached(name).expect("the ReportFile in the cache");
    reconcile(rf, world.ctx.clone())
        .await
        .expect("the reconcile succeeds")
}

#[tokio::test]
async fn a_new_report_is_marked_then_submitted_then_its_id_recorded() {
    let mut world = World::new();
    let backend = world.backend("b", BackendType::Cmp);
    backend.on_submit(Ok(RemoteReport::new("r-1", ReportState::InProgress)));
    world.put(report_file("r", json!({})));
    run(&world, "r").await;
    assert_eq!(
        world.journal.take(),
        [
            "apply status ReportFile/r",
            "backend submit Usage",
            "apply status ReportFile/r",
            "event Normal Submitted",
        ]
    );
}
