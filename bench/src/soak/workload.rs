//! The soak's objects: its namespaces (a ReportBackend of each type and a ReportStore in
//! each) and its generators, and what each generator must end up with.
//!
//! Everything a backend sees of generator `idx` carries its token `g<idx>` (the common name,
//! CONNECT's template, SUPPLIER's organizations) or a window of its own (ONETIME), so that
//! the simulators' report keys tell every report apart: a key counted twice is a report
//! generated twice, and the keys holding a token are that generator's reports.

use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use report_operator::api::{ReportGenerator, ReportStore};
use report_sim::{ReportingApi, SimServer};
use serde_json::{Value, json};

use super::plan::{GeneratorPlan, Kind, Ns};
use crate::BenchError;
use crate::cluster::{Cluster, from_json};

/// The bucket every namespace's ReportStore writes to.
pub const BUCKET: &str = "soak";
pub const ACCESS_KEY: &str = "soak-access";
pub const SECRET_KEY: &str = "soak-secret-key";

/// The ReportBackend of type `api` in each namespace is named like this.
pub fn backend_name(api: ReportingApi) -> String {
    api.as_str().to_ascii_lowercase()
}

pub fn namespace_name(run: &str, ns: Ns) -> String {
    format!("soak-{run}-{}", ns.suffix())
}

pub fn token(idx: usize) -> String {
    format!("g{idx:05}")
}

pub fn generator_name(g: &GeneratorPlan) -> String {
    format!("{}-{}", token(g.idx), g.kind.label())
}

pub fn common_name(idx: usize) -> String {
    format!("soak-{}", token(idx))
}

/// SUPPLIER organizations of generator `idx`: one for a ONETIME report, `orgs` for a fan-out.
pub fn organizations(idx: usize, kind: Kind) -> Vec<String> {
    let n = match kind {
        Kind::Onetime(ReportingApi::Supplier) => 1,
        Kind::FanOut { orgs, .. } => orgs,
        _ => 0,
    };
    (1..=n).map(|o| format!("{}-o{o}", token(idx))).collect()
}

/// The FUSION tenant of generator `idx` (a uuid the simulator knows: not 00000000… or ffffffff…).
pub fn fusion_uuid(idx: usize) -> String {
    format!("5afe0000-0000-4000-8000-{idx:012}")
}

/// The day a ONETIME report of generator `idx` covers: a day of its own.
pub fn onetime_day(idx: usize) -> NaiveDate {
    let first = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap_or_default();
    first.checked_add_days(Days::new(idx as u64)).unwrap_or(first)
}

fn midnight(day: NaiveDate) -> String {
    format!("{}T00:00:00Z", day.format("%Y-%m-%d"))
}

/// The first day of a PERIODIC generator made on `today`.
pub fn periodic_start(kind: Kind, today: NaiveDate) -> Option<NaiveDate> {
    let days = match kind {
        Kind::Periodic(_, days) | Kind::FanOut { days, .. } => days,
        _ => return None,
    };
    today.checked_sub_days(Days::new(u64::from(days)))
}

/// The spec of generator `g`, made on `today`; its reports go to the ReportStore `bucket`
/// when it is stored.
pub fn spec(g: &GeneratorPlan, today: NaiveDate) -> Value {
    let api = g.kind.api();
    let format = match api {
        ReportingApi::Supplier | ReportingApi::Fusion => "CSV",
        _ => "JSON",
    };
    let mut parameters = match api {
        ReportingApi::Connect => json!({"template": format!("RT-{}", token(g.idx))}),
        ReportingApi::Supplier => json!({
            "reportType": "REPORT_TYPE_TRIP_ACTIVITY",
            "organizations": organizations(g.idx, g.kind),
        }),
        ReportingApi::Fusion => json!({
            "dataset": "licenses", "scope": {"level": "tenant", "uuid": fusion_uuid(g.idx)},
        }),
        ReportingApi::Rde | ReportingApi::Cmp => json!({}),
    };
    // Nothing is pruned: every report is checked at the end.
    let history = json!({"successfulReportsHistoryLimit": 1000, "failedReportsHistoryLimit": 1000});
    let (event_type, schedule) = match g.kind {
        Kind::Onetime(_) => {
            let day = onetime_day(g.idx);
            parameters["startDate"] = json!(midnight(day));
            parameters["endDate"] = json!(format!("{}T23:59:59Z", day.format("%Y-%m-%d")));
            ("ONETIME", None)
        }
        Kind::Periodic(..) | Kind::FanOut { .. } => {
            parameters["period"] = json!("P1D");
            if let Some(start) = periodic_start(g.kind, today) {
                parameters["startDate"] = json!(midnight(start));
            }
            let mut schedule = history;
            schedule["cron"] = json!("* * * * *");
            ("PERIODIC", Some(schedule))
        }
        Kind::RdeMirror => {
            parameters["period"] = json!("P1D");
            ("PERIODIC", Some(history))
        }
        Kind::CmpInvoice => ("ON_INVOICE", Some(history)),
    };
    let mut spec = json!({
        "backendRef": {"name": backend_name(api)},
        "commonName": common_name(g.idx),
        "eventType": event_type,
        "format": format,
        "parameters": parameters,
    });
    if let Some(schedule) = schedule {
        spec["schedule"] = schedule;
    }
    if g.stored {
        spec["storeRef"] = json!({"name": "bucket"});
    }
    spec
}

/// The (day, organization) windows a PERIODIC generator whose first day is `start` must have
/// reports of by `now`: every day up to yesterday, for each organization (none but a
/// fan-out's).
pub fn expected_windows(
    kind: Kind,
    idx: usize,
    start: NaiveDate,
    now: DateTime<Utc>,
) -> Vec<(NaiveDate, Option<String>)> {
    let orgs: Vec<Option<String>> = match kind {
        Kind::FanOut { .. } => organizations(idx, kind).into_iter().map(Some).collect(),
        _ => vec![None],
    };
    let yesterday = now.date_naive().pred_opt().unwrap_or(start);
    start
        .iter_days()
        .take_while(|d| *d <= yesterday)
        .flat_map(|d| orgs.iter().map(move |o| (d, o.clone())))
        .collect()
}

/// Makes the three namespaces: in each a ReportBackend of every type against `sim` (CMP and
/// SUPPLIER with a third of the budget each, since the three share one subscription and one
/// client), and the ReportStore `bucket` at `store_endpoint`, which in the doomed namespace
/// deletes its objects with their reports.
pub async fn setup(
    cluster: &Cluster,
    sim: &SimServer,
    store_endpoint: &str,
    run: &str,
) -> Result<(), BenchError> {
    for ns in Ns::ALL {
        let name = namespace_name(run, ns);
        let namespace: Namespace = from_json(json!({"metadata": {"name": name}}))?;
        Api::<Namespace>::all(cluster.client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        for api in ReportingApi::ALL {
            let extra = match api {
                ReportingApi::Cmp => json!({"limits": {"requestsPerWindow": 20, "windowSeconds": 60}}),
                // URLs re-minted for 2 minutes after READY, one request a minute each: the
                // check re-mints older ones on the refresh-url annotation.
                ReportingApi::Supplier => json!({
                    "limits": {"maxInFlight": 6, "requestsPerWindow": 200, "windowSeconds": 600},
                    "supplier": {"keepUrlFreshSeconds": 120},
                }),
                _ => json!({}),
            };
            cluster
                .backend_named(&name, &backend_name(api), sim, api, extra)
                .await?;
        }
        let secret: Secret = from_json(json!({
            "metadata": {"name": "bucket-s3"},
            "stringData": {"accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY},
        }))?;
        Api::<Secret>::namespaced(cluster.client.clone(), &name)
            .create(&PostParams::default(), &secret)
            .await?;
        let retention = if ns == Ns::Doomed { "Delete" } else { "Keep" };
        let store: ReportStore = from_json(json!({
            "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportStore",
            "metadata": {"name": "bucket"},
            "spec": {
                "url": format!("s3://{BUCKET}/reports"), "endpoint": store_endpoint,
                "credentialsSecretRef": {"name": "bucket-s3"}, "retention": retention,
            },
        }))?;
        Api::<ReportStore>::namespaced(cluster.client.clone(), &name)
            .create(&PostParams::default(), &store)
            .await?;
    }
    Ok(())
}

/// Creates a generator, again and again while the API server is away (it is restarted
/// during the run); an AlreadyExists answer means an earlier try got through.
pub async fn create(cluster: &Cluster, ns: &str, name: &str, spec: Value) -> Result<(), BenchError> {
    let g: ReportGenerator = from_json(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator",
        "metadata": {"name": name}, "spec": spec,
    }))?;
    let api: Api<ReportGenerator> = Api::namespaced(cluster.client.clone(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        match api.create(&PostParams::default(), &g).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn specs_carry_the_token_or_a_window_of_their_own() {
        let today = day("2026-11-20");
        let table = [
            (
                Kind::Onetime(ReportingApi::Cmp),
                "parameters",
                json!({"startDate": "2020-01-18T00:00:00Z", "endDate": "2020-01-18T23:59:59Z"}),
            ),
            (
                Kind::Onetime(ReportingApi::Connect),
                "parameters",
                json!({"template": "RT-g00017", "startDate": "2020-01-18T00:00:00Z", "endDate": "2020-01-18T23:59:59Z"}),
            ),
            (
                Kind::Onetime(ReportingApi::Supplier),
                "parameters",
                json!({"reportType": "REPORT_TYPE_TRIP_ACTIVITY", "organizations": ["g00017-o1"], "startDate": "2020-01-18T00:00:00Z", "endDate": "2020-01-18T23:59:59Z"}),
            ),
            (
                Kind::Periodic(ReportingApi::Cmp, 2),
                "parameters",
                json!({"period": "P1D", "startDate": "2026-11-18T00:00:00Z"}),
            ),
            (
                Kind::FanOut { orgs: 2, days: 1 },
                "parameters",
                json!({"reportType": "REPORT_TYPE_TRIP_ACTIVITY", "organizations": ["g00017-o1", "g00017-o2"], "period": "P1D", "startDate": "2026-11-19T00:00:00Z"}),
            ),
            (Kind::RdeMirror, "parameters", json!({"period": "P1D"})),
            (Kind::CmpInvoice, "eventType", json!("ON_INVOICE")),
            (
                Kind::Periodic(ReportingApi::Connect, 1),
                "schedule",
                json!({"cron": "* * * * *", "successfulReportsHistoryLimit": 1000, "failedReportsHistoryLimit": 1000}),
            ),
        ];
        for (kind, field, want) in table {
            let g = GeneratorPlan {
                idx: 17,
                kind,
                ns: Ns::A,
                stored: true,
            };
            let spec = spec(&g, today);
            assert_eq!(spec[field], want, "{kind:?}");
            assert_eq!(spec["commonName"], "soak-g00017");
            assert_eq!(spec["backendRef"]["name"], backend_name(kind.api()));
            assert_eq!(spec["storeRef"]["name"], "bucket");
        }
        assert_eq!(
            generator_name(&GeneratorPlan {
                idx: 3,
                kind: Kind::FanOut { orgs: 1, days: 1 },
                ns: Ns::B,
                stored: false
            }),
            "g00003-supplier-fanout"
        );
    }

    #[test]
    fn expected_windows_run_to_yesterday_for_each_organization() {
        let kind = Kind::FanOut { orgs: 2, days: 2 };
        let windows = expected_windows(kind, 4, day("2026-11-18"), at("2026-11-20T10:00:00Z"));
        let want: Vec<(NaiveDate, Option<String>)> = [
            ("2026-11-18", "g00004-o1"),
            ("2026-11-18", "g00004-o2"),
            ("2026-11-19", "g00004-o1"),
            ("2026-11-19", "g00004-o2"),
        ]
        .into_iter()
        .map(|(d, o)| (day(d), Some(o.to_string())))
        .collect();
        assert_eq!(windows, want);
        // Past midnight the new yesterday is due too.
        let cmp = Kind::Periodic(ReportingApi::Cmp, 1);
        assert_eq!(
            expected_windows(cmp, 1, day("2026-11-19"), at("2026-11-21T00:00:30Z")),
            vec![(day("2026-11-19"), None), (day("2026-11-20"), None)]
        );
        assert_eq!(periodic_start(cmp, day("2026-11-20")), Some(day("2026-11-19")));
        assert_eq!(periodic_start(Kind::RdeMirror, day("2026-11-20")), None);
    }
}
