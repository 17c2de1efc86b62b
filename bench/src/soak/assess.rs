//! What each generator must end up with, and what it has: its expected reports ("slots":
//! the one report of a ONETIME generator, each window of a PERIODIC one and each
//! organization's, each report the platform made for a mirrored one) matched against the
//! ReportFiles the API server holds, and its reports as the simulator counted them.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use report_operator::api::{FileState, LABEL_GENERATOR, ReportFile};
use report_sim::{RdeTemplate, ReportingApi, SimStats};

use super::plan::{Kind, Ns};
use super::workload::{self, common_name, namespace_name, token};
use super::{Made, Soak};
use crate::BenchError;

/// The ReportFiles of the namespaces that stay, and the Missed Events there.
pub struct Snapshot {
    pub files: Vec<ReportFile>,
    /// Missed Events (with their series counts) per (namespace, generator).
    pub missed: HashMap<(String, String), u32>,
    pub at: DateTime<Utc>,
}

pub async fn snapshot(soak: &Soak) -> Result<Snapshot, BenchError> {
    let mut files = Vec::new();
    let mut missed = HashMap::new();
    for ns in [Ns::A, Ns::B] {
        let name = namespace_name(&soak.run, ns);
        let api: Api<ReportFile> = Api::namespaced(soak.cluster.client.clone(), &name);
        files.extend(api.list(&ListParams::default()).await?.items);
        let events: Api<Event> = Api::namespaced(soak.cluster.client.clone(), &name);
        for e in events
            .list(&ListParams::default().fields("reason=Missed"))
            .await?
            .items
        {
            let generator = e.regarding.and_then(|r| r.name).unwrap_or_default();
            let count = e.series.map_or(1, |s| s.count).max(1) as u32;
            *missed.entry((name.clone(), generator)).or_default() += count;
        }
    }
    Ok(Snapshot {
        files,
        missed,
        at: Utc::now(),
    })
}

/// One report a generator must have.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    Once,
    /// A window: its first day, and the organization of a fan-out.
    Window(NaiveDate, Option<String>),
    /// A report the platform made, by its id.
    Mirrored(String),
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Slot::Once => write!(f, "its report"),
            Slot::Window(day, None) => write!(f, "window {day}"),
            Slot::Window(day, Some(org)) => write!(f, "window {day} of {org}"),
            Slot::Mirrored(id) => write!(f, "platform report {id}"),
        }
    }
}

/// A generator of a namespace that stays, against what it must have.
pub struct State<'a> {
    pub made: &'a Made,
    /// Its slots, each with its ReportFile when there is one.
    pub slots: BTreeMap<Slot, Option<&'a ReportFile>>,
    /// Its ReportFiles that no slot wants, or a second one for a slot.
    pub extra: Vec<String>,
    /// RDE: no template on the platform, or more than one.
    pub templates: usize,
    pub missed_events: u32,
}

impl State<'_> {
    pub fn files(&self) -> impl Iterator<Item = &ReportFile> {
        self.slots.values().flatten().copied()
    }

    pub fn missing(&self) -> Vec<&Slot> {
        self.slots
            .iter()
            .filter(|(_, f)| f.is_none())
            .map(|(s, _)| s)
            .collect()
    }

    fn state_count(&self, state: FileState) -> usize {
        self.files().filter(|f| file_state(f) == Some(state)).count()
    }

    pub fn ready(&self) -> usize {
        self.state_count(FileState::Ready)
    }

    pub fn failed(&self) -> usize {
        self.state_count(FileState::Failed)
    }

    /// READY reports that go to the store, and those whose copy is recorded.
    pub fn copies(&self) -> (usize, usize) {
        if !self.made.plan.stored {
            return (0, 0);
        }
        let ready: Vec<&ReportFile> = self
            .files()
            .filter(|f| file_state(f) == Some(FileState::Ready))
            .collect();
        let copied = ready.iter().filter(|f| delivery_sha(f).is_some()).count();
        (ready.len(), copied)
    }

    /// Every slot filled (or its window missed with an Event), every report finished and
    /// every copy made.
    pub fn settled(&self) -> bool {
        let missing = self.missing().len();
        let finished = self
            .files()
            .all(|f| file_state(f).is_some_and(FileState::is_finished));
        let (to_copy, copied) = self.copies();
        (missing == 0 || missing as u32 <= self.missed_events)
            && finished
            && to_copy == copied
            && self.templates == 1
    }

    /// How far it got, for noticing progress.
    pub fn progress(&self) -> usize {
        let finished = self
            .files()
            .filter(|f| file_state(f).is_some_and(FileState::is_finished))
            .count();
        self.files().count() + finished + self.copies().1
    }
}

pub fn file_state(f: &ReportFile) -> Option<FileState> {
    f.status.as_ref().and_then(|s| s.status)
}

pub fn delivery_sha(f: &ReportFile) -> Option<&str> {
    f.status.as_ref()?.delivery.as_ref()?.sha256.as_deref()
}

/// The backend's id of a ReportFile's report: a mirrored one's in its spec, a made one's in
/// its status.
pub fn external_id(f: &ReportFile) -> Option<&str> {
    f.spec
        .external_id
        .as_deref()
        .or_else(|| f.status.as_ref()?.external_id.as_deref())
}

/// The API of a ReportFile: its backend's name is its type in lower case.
pub fn api_of(f: &ReportFile) -> Option<ReportingApi> {
    ReportingApi::ALL
        .into_iter()
        .find(|a| workload::backend_name(*a) == f.spec.backend_ref.name)
}

fn slot_of(kind: Kind, f: &ReportFile) -> Option<Slot> {
    match kind {
        Kind::Onetime(_) => Some(Slot::Once),
        Kind::Periodic(..) | Kind::FanOut { .. } => {
            let start = f.spec.parameters.as_ref()?.start_date?;
            Some(Slot::Window(start.date_naive(), f.spec.organization.clone()))
        }
        Kind::RdeMirror | Kind::CmpInvoice => external_id(f).map(|id| Slot::Mirrored(id.to_string())),
    }
}

/// Every generator made in a namespace that stays, against the files of `snapshot`.
pub fn assess<'a>(
    made: &'a [Made],
    invoices: &BTreeMap<usize, String>,
    templates: &[RdeTemplate],
    snapshot: &'a Snapshot,
) -> Vec<State<'a>> {
    let mut by_generator: HashMap<(&str, &str), Vec<&ReportFile>> = HashMap::new();
    for f in &snapshot.files {
        let generator = f
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_GENERATOR))
            .map_or("", String::as_str);
        let ns = f.metadata.namespace.as_deref().unwrap_or_default();
        by_generator.entry((ns, generator)).or_default().push(f);
    }
    made.iter()
        .filter(|m| m.plan.ns != Ns::Doomed)
        .map(|m| {
            let idx = m.plan.idx;
            let mut templates_of = 1;
            let expected: Vec<Slot> = match m.plan.kind {
                Kind::Onetime(_) => vec![Slot::Once],
                Kind::Periodic(..) | Kind::FanOut { .. } => m
                    .start
                    .map(|start| workload::expected_windows(m.plan.kind, idx, start, snapshot.at))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(d, o)| Slot::Window(d, o))
                    .collect(),
                Kind::RdeMirror => {
                    let mine: Vec<&RdeTemplate> = templates
                        .iter()
                        .filter(|t| t.common_name == common_name(idx))
                        .collect();
                    templates_of = mine.len();
                    mine.iter()
                        .flat_map(|t| t.files.iter().map(|id| Slot::Mirrored(id.clone())))
                        .collect()
                }
                Kind::CmpInvoice => invoices
                    .get(&idx)
                    .map(|id| vec![Slot::Mirrored(id.clone())])
                    .unwrap_or_default(),
            };
            let mut slots: BTreeMap<Slot, Option<&ReportFile>> =
                expected.into_iter().map(|s| (s, None)).collect();
            let mut extra = Vec::new();
            for f in by_generator
                .get(&(m.namespace.as_str(), m.name.as_str()))
                .into_iter()
                .flatten()
            {
                let name = f.metadata.name.clone().unwrap_or_default();
                match slot_of(m.plan.kind, f).and_then(|s| slots.get_mut(&s)) {
                    Some(slot @ None) => *slot = Some(*f),
                    _ => extra.push(name),
                }
            }
            State {
                made: m,
                slots,
                extra,
                templates: templates_of,
                missed_events: snapshot
                    .missed
                    .get(&(m.namespace.clone(), m.name.clone()))
                    .copied()
                    .unwrap_or(0),
            }
        })
        .collect()
}

/// The simulator's reports of generator `idx` (the keys holding its token): how many were
/// generated and how many of them it failed. FUSION answers synchronously and is not counted.
pub fn generated(stats: &SimStats, api: ReportingApi, idx: usize) -> (u64, u64) {
    let token = token(idx);
    stats
        .generations
        .iter()
        .filter(|g| g.backend == api.as_str() && g.key.contains(&token))
        .fold((0, 0), |(n, failed), g| (n + g.count, failed + g.failed))
}

/// Reports generated more than once: the simulator's keys counted twice or more on the four
/// APIs whose reports are made asynchronously, and RDE templates made twice for one
/// generator.
pub fn doubled(stats: &SimStats, templates: &[RdeTemplate]) -> Vec<String> {
    let mut out: Vec<String> = stats
        .generations
        .iter()
        .filter(|g| g.backend != ReportingApi::Fusion.as_str() && g.count > 1)
        .map(|g| format!("{} {} ×{}", g.backend, g.key, g.count))
        .collect();
    let mut names = BTreeSet::new();
    for t in templates {
        if !names.insert(&t.common_name) {
            out.push(format!("RDE template {} made twice", t.common_name));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::soak::plan::GeneratorPlan;

    fn made(idx: usize, kind: Kind, start: Option<&str>) -> Made {
        let plan = GeneratorPlan {
            idx,
            kind,
            ns: Ns::A,
            stored: true,
        };
        Made {
            plan,
            namespace: "ns".into(),
            name: workload::generator_name(&plan),
            start: start.map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date")),
        }
    }

    fn file(m: &Made, name: &str, spec: serde_json::Value, status: &str, copied: bool) -> ReportFile {
        let mut s = json!({"status": status});
        if copied {
            s["delivery"] = json!({"sha256": "ab"});
        }
        let mut spec_full =
            json!({"backendRef": {"name": "x"}, "name": "n", "eventType": "PERIODIC", "format": "CSV"});
        if let (Some(all), Some(more)) = (spec_full.as_object_mut(), spec.as_object()) {
            all.extend(more.clone());
        }
        serde_json::from_value(json!({
            "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
            "metadata": {"name": name, "namespace": "ns", "labels": {LABEL_GENERATOR: m.name}},
            "spec": spec_full, "status": s,
        }))
        .expect("ReportFile")
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    #[test]
    fn slots_are_matched_and_the_rest_is_missing_or_extra() {
        let daily = made(1, Kind::Periodic(ReportingApi::Cmp, 2), Some("2026-11-18"));
        let mirror = made(2, Kind::RdeMirror, None);
        let invoice = made(3, Kind::CmpInvoice, None);
        let window = |d: &str| json!({"parameters": {"startDate": format!("{d}T00:00:00Z")}});
        let files = vec![
            file(&daily, "d-18", window("2026-11-18"), "READY", true),
            file(&daily, "d-10", window("2026-11-10"), "READY", true),
            file(&mirror, "m-1", json!({"externalId": "f1"}), "FAILED", false),
            file(
                &invoice,
                "i-1",
                json!({"externalId": "inv"}),
                "IN_PROGRESS",
                false,
            ),
        ];
        let snapshot = Snapshot {
            files,
            missed: HashMap::from([(("ns".to_string(), daily.name.clone()), 1)]),
            at: at("2026-11-20T10:00:00Z"),
        };
        let templates = vec![RdeTemplate {
            id: "t".into(),
            common_name: common_name(2),
            event_type: "PERIODIC".into(),
            files: vec!["f1".into(), "f2".into()],
        }];
        let invoices = BTreeMap::from([(3, "inv".to_string())]);
        let made = [daily, mirror, invoice];
        let states = assess(&made, &invoices, &templates, &snapshot);
        let missing: Vec<Vec<String>> = states
            .iter()
            .map(|s| s.missing().iter().map(|m| m.to_string()).collect())
            .collect();
        assert_eq!(
            missing,
            [
                vec!["window 2026-11-19".to_string()],
                vec!["platform report f2".to_string()],
                vec![]
            ]
        );
        assert_eq!(states[0].extra, ["d-10"], "a window before the first day");
        assert_eq!((states[0].ready(), states[0].copies()), (1, (1, 1)));
        // The missing window has its Missed Event; the mirror misses a report; the invoice's
        // report is still in progress.
        let settled: Vec<bool> = states.iter().map(State::settled).collect();
        assert_eq!(settled, [true, false, false]);
        assert_eq!(states[1].failed(), 1);
    }

    #[test]
    fn doubled_reports_are_keys_counted_twice_and_templates_made_twice() {
        let stats: SimStats = serde_json::from_value(json!({
            "requests": [], "peakInProgress": [], "rateLimited": {}, "tokenRequests": {},
            "generations": [
                {"backend": "CMP", "key": "s|soak-g00001|x", "count": 1, "failed": 0},
                {"backend": "CONNECT", "key": "a|RT-g00002|x", "count": 2, "failed": 1},
                {"backend": "FUSION", "key": "licenses|g", "count": 3, "failed": 0},
            ],
        }))
        .expect("stats");
        let template = |id: &str| RdeTemplate {
            id: id.into(),
            common_name: "soak-g00004".into(),
            event_type: "PERIODIC".into(),
            files: vec![],
        };
        assert_eq!(
            doubled(&stats, &[template("a"), template("b")]),
            ["CONNECT a|RT-g00002|x ×2", "RDE template soak-g00004 made twice"]
        );
        assert_eq!(generated(&stats, ReportingApi::Connect, 2), (2, 1));
        assert_eq!(generated(&stats, ReportingApi::Cmp, 2), (0, 0));
    }
}
