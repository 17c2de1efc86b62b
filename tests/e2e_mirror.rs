//! Reports the backend makes itself are mirrored into ReportFiles exactly once: RDE's periodic
//! and invoice report files, and CMP's on-invoice reports; and the SUPPLIER fan-out over 20
//! organizations stays within the backend's limits.

mod common;

use std::time::Duration;

use common::e2e::World;
use common::fixtures::{self, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, FileState};
use report_sim::SimConfig;

fn generator(name: &str, backend: &str, event_type: &str, extra: &str) -> String {
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: {backend}\n  commonName: Invoice report\n  eventType: {event_type}\n  format: JSON\n{extra}"
    )
}

fn day(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&chrono::Utc)
}

async fn template_id(world: &World, generator: &str) -> String {
    wait_for("the RDE template created", Duration::from_secs(60), || async {
        world.generators().get(generator).await.ok()?.status?.external_id
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rde_periodic_and_invoice_report_files_are_mirrored_once_each() {
    let world = World::start("e2e-rdemirror", SimConfig::default()).await;
    let t = BackendType::Rde;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&generator(
        "daily",
        "b",
        "PERIODIC",
        "  parameters:\n    period: P1D\n  schedule:\n    successfulReportsHistoryLimit: 10\n",
    ));
    world.apply(&generator("invoices", "b", "ON_INVOICE", ""));
    let daily = template_id(&world, "daily").await;
    template_id(&world, "invoices").await;
    // The platform's schedule shows as the generator's next report date.
    wait_for(
        "nextReportDate mirrored from the template",
        Duration::from_secs(60),
        || async {
            world
                .generators()
                .get("daily")
                .await
                .ok()?
                .status?
                .next_report_date
                .map(|_| ())
        },
    )
    .await;

    // The platform's periodic task runs on two days: one report file each.
    let first = world
        .sim
        .rde_run_template(&daily, Some(day("2026-11-10T06:00:00Z")))
        .expect("run");
    let second = world
        .sim
        .rde_run_template(&daily, Some(day("2026-11-11T06:00:00Z")))
        .expect("run");
    let files = world.wait_finished("daily", 2, Duration::from_secs(120)).await;
    let mut seen: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let start = f
                .spec
                .parameters
                .clone()
                .and_then(|p| p.start_date)
                .expect("start");
            (
                f.spec.external_id.clone().expect("external id"),
                start.format("%Y-%m-%d").to_string(),
            )
        })
        .collect();
    seen.sort();
    let mut want = vec![
        (first, "2026-11-09".to_string()),
        (second, "2026-11-10".to_string()),
    ];
    want.sort();
    assert_eq!(seen, want);
    // A third run: three files, the first two still once each.
    world
        .sim
        .rde_run_template(&daily, Some(day("2026-11-12T06:00:00Z")))
        .expect("run");
    let files = world.wait_finished("daily", 3, Duration::from_secs(120)).await;
    assert!(
        files
            .iter()
            .all(|f| f.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready))
    );

    // A new invoice: the ON_INVOICE template gets a report file, mirrored once.
    world.sim.rde_invoice();
    world.wait_finished("invoices", 1, Duration::from_secs(120)).await;
    world.sim.rde_invoice();
    world.wait_finished("invoices", 2, Duration::from_secs(120)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmp_on_invoice_reports_are_mirrored_exactly_once() {
    let world = World::start("e2e-cmpinvoice", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&generator(
        "invoices",
        "b",
        "ON_INVOICE",
        "  schedule:\n    successfulReportsHistoryLimit: 10\n",
    ));
    wait_for("the generator Ready", Duration::from_secs(60), || async {
        let g = world.generators().get("invoices").await.ok()?;
        let c = report_operator::api::find_condition(&g.status?.conditions, "Ready")?.clone();
        (c.status == "True").then_some(())
    })
    .await;
    let first = world.sim.cmp_invoice("Invoice report");
    // Another report name is not this generator's.
    world.sim.cmp_invoice("Somebody else's report");
    let files = world.wait_finished("invoices", 1, Duration::from_secs(120)).await;
    assert_eq!(files[0].spec.external_id.as_deref(), Some(first.as_str()));
    let second = world.sim.cmp_invoice("Invoice report");
    let files = world.wait_finished("invoices", 2, Duration::from_secs(120)).await;
    let mut ids: Vec<String> = files.iter().filter_map(|f| f.spec.external_id.clone()).collect();
    ids.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(ids, want, "each invoice report mirrored exactly once");
    // Mirroring makes no report on CMP: both were made by the platform.
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplier_fan_out_of_120_reports_over_20_organizations_gets_no_429() {
    common::clear_of_midnight().await;
    // The seed's worked example, with the 10-minute window scaled down to one minute on both
    // sides so that the test runs in minutes.
    let mut config = SimConfig::default().for_all(|b| b.generation_ms = 5000);
    config.supplier.window_secs = 60;
    let world = World::start("e2e-fanout", config).await;
    let t = BackendType::Supplier;
    let limits = "  limits:\n    maxInFlight: 6\n    requestsPerWindow: 600\n    windowSeconds: 60\n";
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        limits,
    ));
    let orgs: String = (1..=20)
        .map(|i| format!("      - 6f1c2d3e-0000-4000-8000-{i:012}\n"))
        .collect();
    let start = (chrono::Utc::now() - chrono::Duration::days(6)).format("%Y-%m-%dT00:00:00Z");
    let g = format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: fleet\nspec:\n  backendRef:\n    name: b\n  commonName: Fleet\n  eventType: PERIODIC\n  format: CSV\n  parameters:\n    period: P1D\n    startDate: \"{start}\"\n    reportType: REPORT_TYPE_TRIP_ACTIVITY\n    organizations:\n{orgs}  schedule:\n    successfulReportsHistoryLimit: 200\n"
    );
    world.apply(&g);
    let started = std::time::Instant::now();
    let files = world.wait_finished("fleet", 120, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();
    let ready = files
        .iter()
        .filter(|f| f.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready))
        .count();
    assert_eq!(ready, 120);
    let stats = world.sim.stats();
    assert_eq!(
        stats.rate_limited(sim_api(t)),
        0,
        "the backend refused calls: {stats:?}"
    );
    assert_eq!(stats.total_generations(sim_api(t)), 120);
    assert_eq!(stats.max_duplicates(sim_api(t)), 1);
    for i in 1..=20 {
        let org = format!("6f1c2d3e-0000-4000-8000-{i:012}");
        assert!(
            stats.peak_in_progress(sim_api(t), &org) <= 6,
            "{org} had more than 6 in progress"
        );
    }
    // The bound the backend's rules allow: generation time × ceil(6 reports per org / 6).
    let calls: Vec<String> = ["token", "generate", "list", "get", "link"]
        .iter()
        .map(|e| format!("{e} {}", stats.requests("SUPPLIER", e)))
        .collect();
    eprintln!(
        "fan-out of 120 reports took {elapsed:?} (backend-bound: 5s generation × 1 round); calls: {}",
        calls.join(", ")
    );
}
