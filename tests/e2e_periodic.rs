//! PERIODIC generators end to end: backfill, cron runs, Forbid (one window at a time),
//! history limits, a restart mid-schedule, windows missed while the operator was down, run-now
//! and ON_INVOICE where the backend has no invoice reports. (The SUPPLIER fan-out over many
//! organizations is in `e2e_mirror.rs`.)

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::e2e::World;
use common::fixtures::{self, sim_api};
use common::wait_for;
use report_operator::api::{BackendType, FileState, ReportFile};
use report_sim::SimConfig;

/// The window a ReportFile reports on: its start and end dates.
fn window(rf: &ReportFile) -> (DateTime<Utc>, DateTime<Utc>) {
    let params = rf.spec.parameters.clone().expect("parameters");
    (params.start_date.expect("start"), params.end_date.expect("end"))
}

/// A PERIODIC daily generator starting `days` days before today (UTC midnight).
fn periodic(t: BackendType, name: &str, backend: &str, days: i64, schedule: &str) -> String {
    let start = (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%dT00:00:00Z");
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: {backend}\n  commonName: Daily usage\n  eventType: PERIODIC\n  format: {}\n  parameters:\n    period: P1D\n    startDate: \"{start}\"\n{}  schedule:\n{schedule}",
        fixtures::format_for(t),
        fixtures::required_parameters(t),
    )
}

fn ready(files: &[report_operator::api::ReportFile]) -> usize {
    files
        .iter()
        .filter(|f| f.status.as_ref().and_then(|s| s.status) == Some(FileState::Ready))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_from_start_date_makes_one_ready_report_per_day() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-backfill", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&periodic(
        t,
        "daily",
        "b",
        14,
        "    successfulReportsHistoryLimit: 30\n",
    ));
    let files = world.wait_finished("daily", 14, Duration::from_secs(240)).await;
    assert_eq!(ready(&files), 14);
    let mut starts: Vec<String> = Vec::new();
    for rf in &files {
        let (start, end) = window(rf);
        assert_eq!(
            end - start,
            chrono::Duration::seconds(86_399),
            "{}: not one whole day",
            rf.metadata.name.clone().unwrap_or_default()
        );
        // Each Secret downloads that day's report.
        let secret = rf
            .status
            .clone()
            .and_then(|s| s.download_secret_ref)
            .expect("secret")
            .name;
        let url = String::from_utf8(world.secret_data(&secret).await["url"].clone()).expect("url");
        let body = reqwest::get(&url)
            .await
            .expect("download")
            .text()
            .await
            .expect("body");
        let day = start.format("%Y-%m-%d").to_string();
        assert!(
            body.contains(&day),
            "report of {day} does not mention it:\n{body:.300}"
        );
        starts.push(day);
    }
    starts.sort();
    starts.dedup();
    assert_eq!(starts.len(), 14, "a day is missing or doubled");
    let stats = world.sim.stats();
    assert_eq!(stats.total_generations(sim_api(t)), 14, "{stats:?}");
    assert_eq!(stats.max_duplicates(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_cron_with_a_daily_period_reports_the_latest_day_once() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-cron", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = periodic(t, "minutely", "b", 0, "    cron: \"* * * * *\"\n")
        .replace("    startDate: ", "    #startDate: ");
    world.apply(&g);
    let files = world.wait_finished("minutely", 1, Duration::from_secs(120)).await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let start = window(&files[0]).0;
    assert_eq!(start.format("%Y-%m-%d").to_string(), yesterday);
    // Two more runs pass: still one report.
    let first_next = world
        .generators()
        .get("minutely")
        .await
        .expect("g")
        .status
        .and_then(|s| s.next_report_date);
    wait_for("two more cron runs", Duration::from_secs(150), || async {
        let next = world
            .generators()
            .get("minutely")
            .await
            .ok()?
            .status?
            .next_report_date?;
        (first_next.is_some_and(|f| next >= f + chrono::Duration::minutes(2))).then_some(())
    })
    .await;
    assert_eq!(world.files_of("minutely").await.len(), 1);
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbid_runs_windows_one_at_a_time_and_skips_none() {
    common::clear_of_midnight().await;
    let config = SimConfig::default().for_all(|b| b.generation_ms = 2000);
    let world = World::start("e2e-forbid", config).await;
    let t = BackendType::Supplier;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&periodic(
        t,
        "queued",
        "b",
        4,
        "    concurrencyPolicy: Forbid\n    successfulReportsHistoryLimit: 10\n",
    ));
    let files = world.wait_finished("queued", 4, Duration::from_secs(180)).await;
    assert_eq!(ready(&files), 4);
    let stats = world.sim.stats();
    assert_eq!(
        stats.peak_in_progress(sim_api(t), "6f1c2d3e-0000-4000-8000-000000000001"),
        1,
        "{stats:?}"
    );
    assert_eq!(stats.total_generations(sim_api(t)), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_delete_the_oldest_reports_and_their_secrets() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-history", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&periodic(
        t,
        "pruned",
        "b",
        5,
        "    successfulReportsHistoryLimit: 2\n",
    ));
    let kept = wait_for(
        "5 reports made and all but the newest 2 deleted",
        Duration::from_secs(180),
        || async {
            let files = world.files_of("pruned").await;
            (world.sim.stats().total_generations(sim_api(t)) == 5 && files.len() == 2 && ready(&files) == 2)
                .then_some(files)
        },
    )
    .await;
    let newest = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let day_before = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let mut days: Vec<String> = kept
        .iter()
        .map(|f| window(f).0.format("%Y-%m-%d").to_string())
        .collect();
    days.sort();
    assert_eq!(days, vec![day_before, newest]);
    wait_for(
        "Secrets of deleted reports garbage-collected",
        Duration::from_secs(60),
        || async {
            let secrets = world
                .secrets()
                .list(
                    &kube::api::ListParams::default().labels("reporting.report-operator.io/generator=pruned"),
                )
                .await
                .ok()?;
            (secrets.items.len() == 2).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_operator_mid_schedule_leaves_no_gap_and_no_duplicate() {
    common::clear_of_midnight().await;
    let config = SimConfig::default().for_all(|b| b.generation_ms = 3000);
    let mut world = World::start("e2e-restart", config).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    world.apply(&periodic(
        t,
        "daily",
        "b",
        6,
        "    concurrencyPolicy: Forbid\n    successfulReportsHistoryLimit: 10\n",
    ));
    wait_for("two windows done", Duration::from_secs(120), || async {
        (ready(&world.files_of("daily").await) >= 2).then_some(())
    })
    .await;
    world.operator.kill();
    world.operator.restart();
    let files = world.wait_finished("daily", 6, Duration::from_secs(180)).await;
    assert_eq!(ready(&files), 6);
    let stats = world.sim.stats();
    assert_eq!(stats.total_generations(sim_api(t)), 6, "{stats:?}");
    assert_eq!(stats.max_duplicates(sim_api(t)), 1, "{stats:?}");
}

/// Stops the operator, sets the generator's schedule memory back as if the operator had last
/// run at `last_check` with windows up to `last_window_end` done, and starts it again: the
/// same state a real outage across those window boundaries leaves behind.
async fn outage(world: &mut World, generator: &str, days_down: i64) {
    world.operator.kill();
    let today = chrono::Utc::now().date_naive();
    let last_window_end = (today - chrono::Duration::days(days_down + 1))
        .format("%Y-%m-%dT23:59:59Z")
        .to_string();
    let last_check = (today - chrono::Duration::days(days_down))
        .format("%Y-%m-%dT00:00:05Z")
        .to_string();
    let patch = format!(
        r#"{{"status":{{"lastWindowEnd":"{last_window_end}","lastScheduleCheckTime":"{last_check}"}}}}"#
    );
    let out = world.ns.kubectl(&[
        "patch",
        "reportgenerator",
        generator,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    world.operator.restart();
}

async fn wait_checked(world: &World, generator: &str) {
    wait_for("the schedule evaluated", Duration::from_secs(60), || async {
        world
            .generators()
            .get(generator)
            .await
            .ok()?
            .status?
            .last_schedule_check_time
            .map(|_| ())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_missed_while_the_operator_was_down_are_caught_up_once_each() {
    common::clear_of_midnight().await;
    let mut world = World::start("e2e-catchup", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = periodic(t, "daily", "b", 0, "    successfulReportsHistoryLimit: 10\n")
        .replace("    startDate: ", "    #startDate: ");
    world.apply(&g);
    wait_checked(&world, "daily").await;
    // Down for three day boundaries: the runs of the last three days were missed.
    outage(&mut world, "daily", 3).await;
    let files = world.wait_finished("daily", 3, Duration::from_secs(120)).await;
    assert_eq!(ready(&files), 3);
    let mut days: Vec<String> = files
        .iter()
        .map(|f| window(f).0.format("%Y-%m-%d").to_string())
        .collect();
    days.sort();
    let want: Vec<String> = (1..=3)
        .rev()
        .map(|d| {
            (chrono::Utc::now() - chrono::Duration::days(d))
                .format("%Y-%m-%d")
                .to_string()
        })
        .collect();
    assert_eq!(days, want, "a day is missing or doubled");
    let stats = world.sim.stats();
    assert_eq!(stats.total_generations(sim_api(t)), 3, "{stats:?}");
    assert_eq!(stats.max_duplicates(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_policy_latest_runs_only_the_newest_missed_window_and_records_the_rest() {
    common::clear_of_midnight().await;
    let mut world = World::start("e2e-latest", SimConfig::default()).await;
    let t = BackendType::Cmp;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = periodic(t, "daily", "b", 0, "    catchUpPolicy: Latest\n")
        .replace("    startDate: ", "    #startDate: ");
    world.apply(&g);
    wait_checked(&world, "daily").await;
    outage(&mut world, "daily", 3).await;
    let files = world.wait_finished("daily", 1, Duration::from_secs(120)).await;
    let start = window(&files[0]).0;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(start.format("%Y-%m-%d").to_string(), yesterday);
    let status = wait_for("missed windows recorded", Duration::from_secs(30), || async {
        let s = world.generators().get("daily").await.ok()?.status?;
        s.last_missed_time.map(|_| s)
    })
    .await;
    let newest_end = window(&files[0]).1;
    assert_eq!(
        status.last_window_end,
        Some(newest_end),
        "the newest window is the last one done"
    );
    // Events with the same reason about one object are one Event with a series count.
    // Events go out after the status that records them, from a task of their own.
    let missed = wait_for("the Missed Events", Duration::from_secs(30), || async {
        let missed: i32 = world
            .events("Missed")
            .await
            .iter()
            .map(|e| e.series.as_ref().map_or(1, |s| s.count))
            .sum();
        (missed >= 2).then_some(missed)
    })
    .await;
    assert_eq!(missed, 2, "one Missed event per skipped window");
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_now_makes_the_latest_window_of_a_suspended_generator_once() {
    common::clear_of_midnight().await;
    let world = World::start("e2e-runnow", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g =
        periodic(t, "paused", "b", 0, "    suspend: true\n").replace("    startDate: ", "    #startDate: ");
    world.apply(&g);
    wait_checked(&world, "paused").await;
    assert!(
        world.files_of("paused").await.is_empty(),
        "a suspended generator made a report"
    );
    for value in ["1", "1", "2"] {
        let out = world.ns.kubectl(&[
            "annotate",
            "--overwrite",
            "reportgenerator",
            "paused",
            &format!("reporting.report-operator.io/run-now={value}"),
        ]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    let files = world.wait_finished("paused", 1, Duration::from_secs(60)).await;
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    let start = window(&files[0]).0;
    assert_eq!(start.format("%Y-%m-%d").to_string(), yesterday);
    wait_for("run-now value recorded", Duration::from_secs(30), || async {
        let s = world.generators().get("paused").await.ok()?.status?;
        (s.last_run_now.as_deref() == Some("2")).then_some(())
    })
    .await;
    // A second request for the same window makes nothing new.
    assert_eq!(world.files_of("paused").await.len(), 1);
    assert_eq!(world.sim.stats().total_generations(sim_api(t)), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_invoice_on_a_backend_without_invoice_reports_is_refused_with_a_reason() {
    let world = World::start("e2e-noinvoice", SimConfig::default()).await;
    let t = BackendType::Connect;
    world.apply(&fixtures::backend(
        &world.sim,
        t,
        "b",
        &fixtures::good_credentials(t),
        "",
    ));
    let g = "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: invoices\nspec:\n  backendRef:\n    name: b\n  commonName: Invoices\n  eventType: ON_INVOICE\n  format: JSON\n  parameters:\n    template: RT-0000-0001\n";
    world.apply(g);
    let (reason, message) = wait_for("the generator refused", Duration::from_secs(60), || async {
        let s = world.generators().get("invoices").await.ok()?.status?;
        let c = report_operator::api::find_condition(&s.conditions, "Ready")?.clone();
        (c.status == "False" && c.reason != "BackendNotReady").then_some((c.reason, c.message))
    })
    .await;
    assert_eq!(reason, "UnsupportedEventType", "{message}");
    assert!(message.contains("ON_INVOICE"), "{message}");
    // The Event goes out after the status, from a task of its own.
    wait_for("an Event for the refusal", Duration::from_secs(30), || async {
        let events = world.ns.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "reason=UnsupportedEventType",
            "-o",
            "name",
        ]);
        (!common::stdout(&events).trim().is_empty()).then_some(())
    })
    .await;
}
