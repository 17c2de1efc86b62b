//! Table tests of the ReportGenerator's pure decisions: what to start, mirror, replace and
//! prune, no cluster. Every Ready reason and every catch-up and concurrency case is a row of
//! `driver_tests.rs`, which runs the driver itself.

use serde_json::json;

use super::super::testing::{self, NOW, backend, caps, dated, file, for_type, generator, own, t};
use super::*;
use crate::api::BackendType;
use crate::backend::RemoteReport;

#[test]
fn fusion_takes_snapshots_never_backfilled_windows() {
    let now = t(NOW);
    // ONETIME without dates: one snapshot, named as one.
    let g = for_type(
        &generator(json!({"parameters": {"startDate": null, "endDate": null}})),
        Some(BackendType::Fusion),
    );
    let status = ReportGeneratorStatus::default();
    match start(
        &g,
        &backend(BackendType::Fusion),
        &caps(BackendType::Fusion),
        &status,
        now,
    ) {
        Ok(Start::Onetime(files)) => {
            assert_eq!(files.len(), 1);
            assert_eq!(files[0].name, "g-snapshot");
            assert_eq!(
                (files[0].parameters.start_date, files[0].parameters.end_date),
                (None, None)
            );
        }
        other => panic!("a FUSION snapshot without dates: {other:?}"),
    }
    // ONETIME with dates: they name the file, which carries none.
    let g = for_type(&generator(json!({})), Some(BackendType::Fusion));
    match start(
        &g,
        &backend(BackendType::Fusion),
        &caps(BackendType::Fusion),
        &status,
        now,
    ) {
        Ok(Start::Onetime(files)) => {
            assert_eq!(files[0].name, "g-20261101-20261101");
            assert_eq!(
                (files[0].parameters.start_date, files[0].parameters.end_date),
                (None, None)
            );
        }
        other => panic!("a FUSION snapshot with dates: {other:?}"),
    }
}

#[test]
fn the_mirror_mark_never_passes_a_report_whose_file_name_is_taken() {
    let (d1, d2, d3) = (
        t("2026-11-01T00:00:00Z"),
        t("2026-11-02T00:00:00Z"),
        t("2026-11-03T00:00:00Z"),
    );
    // (old mark, mirrored, blocked, new mark)
    let cases = [
        (None, vec![], vec![], None),
        (Some(d1), vec![], vec![], Some(d1)),
        (None, vec![d1, d3, d2], vec![], Some(d3)),
        (None, vec![d1, d3], vec![d2], Some(d1)),
        (Some(d1), vec![d3], vec![d2], Some(d1)),
        (None, vec![d2], vec![d2], None),
    ];
    for (old, mirrored, blocked, expected) in cases {
        assert_eq!(
            mirror_mark(old, &mirrored, &blocked),
            expected,
            "{old:?} {mirrored:?} {blocked:?}"
        );
    }
}

#[test]
fn mirrored_reports_are_the_new_ones_only() {
    let g = generator(json!({"eventType": "ON_INVOICE"}));
    let at = |s: &str, id: &str| RemoteReport {
        generate_date: Some(t(s)),
        ..RemoteReport::new(id, crate::backend::ReportState::Ready)
    };
    let remote = [
        at("2026-11-01T00:00:00Z", "old"),
        at("2026-11-03T00:00:00Z", "held"),
        at("2026-11-04T00:00:00Z", "new"),
    ];
    let mut held = (*file("g-held", Some(FileState::Ready))).clone();
    held.spec.external_id = Some("held".into());
    let picked = to_mirror(
        &g,
        &remote,
        &[Arc::new(held)],
        Some(t("2026-11-02T00:00:00Z")),
        None,
        &[],
    );
    let names: Vec<&str> = picked.iter().map(|(_, f)| f.name.as_str()).collect();
    assert_eq!(names, ["g-new"]);
    assert_eq!(picked[0].1.external_id.as_deref(), Some("new"));
}

#[test]
fn a_mirrored_file_describes_the_report_the_platform_made_not_the_generator() {
    // The generator says JSON, "Usage", 2026-11-01; the platform made a CSV report named
    // "NW Finance" for 2026-11-04 (an older template's, before the generator was edited).
    let g = own(
        json!({"eventType": "PERIODIC", "parameters": {"period": "P1D", "startDate": null, "endDate": null}, "format": "JSON"}),
    );
    let report = RemoteReport {
        name: Some("NW Finance".into()),
        format: Some(crate::api::ReportFormat::Csv),
        start_date: Some(t("2026-11-04T00:00:00Z")),
        end_date: Some(t("2026-11-04T23:59:59Z")),
        ..RemoteReport::new("r-1", crate::backend::ReportState::Ready)
    };
    let picked = to_mirror(
        &g,
        std::slice::from_ref(&report),
        &[],
        None,
        Some("tmpl-old"),
        &[],
    );
    let rf = super::super::files::build_file(&g, picked[0].1.clone());
    assert_eq!(
        (rf.spec.name.as_str(), rf.spec.format),
        ("NW Finance", crate::api::ReportFormat::Csv)
    );
    let p = rf.spec.parameters.clone().expect("parameters");
    assert_eq!(
        (p.start_date, p.end_date, p.period),
        (report.start_date, report.end_date, Some(crate::api::Period::P1D))
    );
    assert_eq!(rf.spec.template_id.as_deref(), Some("tmpl-old"));
    // A report that says nothing of itself takes the generator's name and format, and no dates.
    let bare = RemoteReport::new("r-2", crate::backend::ReportState::Ready);
    let picked = to_mirror(&g, std::slice::from_ref(&bare), &[], None, None, &[]);
    let rf = super::super::files::build_file(&g, picked[0].1.clone());
    assert_eq!(
        (rf.spec.name.as_str(), rf.spec.format),
        ("Usage", crate::api::ReportFormat::Json)
    );
    assert_eq!(rf.spec.parameters.and_then(|p| p.start_date), None);
}

#[test]
fn a_period_another_template_reported_on_is_not_mirrored_twice() {
    let g = own(
        json!({"eventType": "PERIODIC", "parameters": {"period": "P1D", "startDate": null, "endDate": null}}),
    );
    let day = |id: &str, d: &str| RemoteReport {
        start_date: Some(t(&format!("{d}T00:00:00Z"))),
        end_date: Some(t(&format!("{d}T23:59:59Z"))),
        ..RemoteReport::new(id, crate::backend::ReportState::Ready)
    };
    let mut old = (*file("g-a", Some(FileState::Ready))).clone();
    old.spec.template_id = Some("tmpl-old".into());
    old.spec.parameters = Some(ReportParameters {
        start_date: day("", "2026-11-04").start_date,
        end_date: day("", "2026-11-04").end_date,
        ..Default::default()
    });
    let owned = [Arc::new(old)];
    let remote = [day("b", "2026-11-04"), day("c", "2026-11-05")];
    let ids = |template: Option<&str>| {
        to_mirror(&g, &remote, &owned, None, template, &[])
            .iter()
            .map(|(r, _)| r.id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(Some("tmpl-new")),
        ["c"],
        "the new template's report of Nov 4 is the old one's period"
    );
    assert_eq!(
        ids(Some("tmpl-old")),
        ["b", "c"],
        "one template's own reports are all its own"
    );
    assert_eq!(
        ids(None),
        ["b", "c"],
        "CMP invoice reports are not matched by period"
    );
    let onetime = own(json!({}));
    assert_eq!(
        to_mirror(&onetime, &remote, &owned, None, Some("tmpl-new"), &[]).len(),
        2,
        "an edited ONETIME generator reports again"
    );
    // The old template's report of Nov 5 was mirrored earlier in this pass: not in the cache yet.
    let nov5 = [day("d", "2026-11-05")];
    let just_now = to_mirror(&g, &nov5, &[], None, Some("tmpl-old"), &[]);
    let planned: Vec<PlannedFile> = just_now.into_iter().map(|(_, f)| f).collect();
    assert!(
        to_mirror(&g, &remote, &owned, None, Some("tmpl-new"), &planned).is_empty(),
        "Nov 4 and Nov 5 are reported on"
    );
}

#[test]
fn an_rde_template_is_replaced_when_its_settings_change() {
    let st = |id: Option<&str>, settings: Option<&str>| ReportGeneratorStatus {
        external_id: id.map(str::to_string),
        template_settings: settings.map(str::to_string),
        ..Default::default()
    };
    // (status, settings the spec makes now, step)
    let cases = [
        (st(None, None), Some("a"), TemplateStep::Create),
        (
            st(Some("t1"), Some("a")),
            Some("a"),
            TemplateStep::Keep("t1".into()),
        ),
        (
            st(Some("t1"), Some("a")),
            Some("b"),
            TemplateStep::Replace("t1".into()),
        ),
        (st(Some("t1"), None), Some("b"), TemplateStep::Adopt("t1".into())),
        (st(Some("t1"), Some("a")), None, TemplateStep::Keep("t1".into())),
    ];
    for (status, settings, step) in cases {
        assert_eq!(template_step(&status, settings), step, "{status:?} {settings:?}");
    }
    // Every field sent to the platform is in the settings.
    let req = |f: fn(&mut crate::backend::ReportRequest)| {
        let mut r = crate::backend::ReportRequest {
            key: "ns/g".into(),
            name: "NW Finance".into(),
            event_type: EventType::Periodic,
            format: crate::api::ReportFormat::Json,
            notify_by_email: false,
            parameters: ReportParameters {
                period: Some(crate::api::Period::P1D),
                ..Default::default()
            },
            organization: None,
            stored: false,
        };
        f(&mut r);
        crate::backend::rde::template_settings(&r).expect("settings")
    };
    let base = req(|_| {});
    for (what, changed) in [
        ("commonName", req(|r| r.name = "Other".into())),
        ("format", req(|r| r.format = crate::api::ReportFormat::Csv)),
        ("notifyByEmail", req(|r| r.notify_by_email = true)),
        (
            "period",
            req(|r| r.parameters.period = Some(crate::api::Period::P1M)),
        ),
        ("eventType", req(|r| r.event_type = EventType::OnInvoice)),
    ] {
        assert_ne!(base, changed, "{what}");
    }
}

#[test]
fn a_replaced_template_is_deleted_only_once_its_reports_are_finished() {
    use crate::backend::ReportState;
    let remote = |state: ReportState| vec![RemoteReport::new("r", state)];
    let mirrored = |state: Option<FileState>, template: &str| {
        let mut rf = (*file("g-r", state)).clone();
        rf.spec.template_id = Some(template.into());
        vec![Arc::new(rf)]
    };
    // (reports on the platform, created in this pass, files, deletable)
    let cases = [
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::Ready), "old"),
            true,
        ),
        (vec![], 0, vec![], true),
        (remote(ReportState::InProgress), 0, vec![], false),
        (remote(ReportState::Ready), 1, vec![], false),
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::InProgress), "old"),
            false,
        ),
        (remote(ReportState::Ready), 0, mirrored(None, "old"), false),
        (
            remote(ReportState::Ready),
            0,
            mirrored(Some(FileState::InProgress), "new"),
            true,
        ),
    ];
    for (i, (remote, created, owned, done)) in cases.into_iter().enumerate() {
        assert_eq!(
            retired_template_done("old", &remote, created, &owned),
            done,
            "case {i}"
        );
    }
}

#[test]
fn history_keeps_the_newest_of_each_outcome() {
    let g = testing::periodic(
        json!({"schedule": {"successfulReportsHistoryLimit": 1, "failedReportsHistoryLimit": 0}}),
    );
    let files = [
        dated("g-1", FileState::Ready, "2026-11-01T23:59:59Z", NOW),
        dated("g-2", FileState::Ready, "2026-11-02T23:59:59Z", NOW),
        dated("g-3", FileState::Failed, "2026-11-03T23:59:59Z", NOW),
        dated("g-4", FileState::InProgress, "2026-11-04T23:59:59Z", NOW),
    ];
    assert_eq!(to_prune(&g, &files), ["g-1", "g-3"]);
}

#[test]
fn starting_deadlines_no_duration_holds_are_refused_not_a_panic() {
    assert_eq!(starting_deadline(None), Ok(None));
    assert_eq!(starting_deadline(Some(0)), Ok(Some(TimeDelta::zero())));
    assert_eq!(starting_deadline(Some(2_592_000)), Ok(Some(TimeDelta::days(30))));
    for bad in [i64::MAX, i64::MIN, -1, i64::MAX / 1000 + 1] {
        let err = starting_deadline(Some(bad))
            .unwrap_err()
            .ready
            .expect("condition");
        assert_eq!(err.reason, "InvalidSchedule", "{bad}");
        assert!(err.message.contains(&bad.to_string()), "{}", err.message);
    }
}

#[test]
fn backfill_message_names_the_limit_and_what_to_change() {
    let i = backfill_too_long(
        t("0001-01-01T00:00:00Z"),
        crate::api::Period::P1D,
        t("2024-03-01T00:00:00Z"),
    )
    .ready
    .expect("condition");
    assert_eq!(i.reason, "BackfillTooLong");
    for needle in [
        "0001-01-01T00:00:00+00:00",
        "1000 P1D windows",
        "2024-03-01T00:00:00+00:00 or later",
    ] {
        assert!(i.message.contains(needle), "{needle}: {}", i.message);
    }
}
