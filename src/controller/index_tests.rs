use kube::runtime::reflector::store::Writer;
use serde_json::json;

use super::*;

/// An index and its stores, fed as the watches feed them: the index first, then the store.
struct Fixture {
    index: Index,
    files: Writer<ReportFile>,
    generators: Writer<ReportGenerator>,
    backends: Writer<ReportBackend>,
    stores: Writer<ReportStore>,
}

impl Fixture {
    fn new() -> Self {
        let (files, generators, backends, stores) = (
            Writer::default(),
            Writer::default(),
            Writer::default(),
            Writer::default(),
        );
        let index = Index::new(
            files.as_reader(),
            generators.as_reader(),
            backends.as_reader(),
            stores.as_reader(),
        );
        Fixture {
            index,
            files,
            generators,
            backends,
            stores,
        }
    }

    fn file(&mut self, event: Event<ReportFile>) {
        self.index.apply_file(&event);
        self.files.apply_watcher_event(&event);
    }

    fn generator(&mut self, event: Event<ReportGenerator>) {
        self.index.apply_generator(&event);
        self.generators.apply_watcher_event(&event);
    }

    fn backend(&mut self, event: Event<ReportBackend>) {
        self.index.apply_backend(&event);
        self.backends.apply_watcher_event(&event);
    }

    fn store(&mut self, event: Event<ReportStore>) {
        self.index.apply_store(&event);
        self.stores.apply_watcher_event(&event);
    }
}

/// A ReportFile `ns/name` (uid `uid-<name>`) on backend `backend`, controlled by `owner`.
fn rf(
    ns: &str,
    name: &str,
    backend: &str,
    owner: Option<&str>,
    state: Option<&str>,
    ids: (Option<&str>, Option<&str>),
) -> ReportFile {
    let owners: Vec<_> = owner
        .map(|uid| json!({"apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator", "name": "g", "uid": uid, "controller": true}))
        .into_iter()
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"), "ownerReferences": owners},
        "spec": {"backendRef": {"name": backend}, "name": name, "eventType": "ONETIME", "format": "CSV", "externalId": ids.1},
        "status": {"status": state, "externalId": ids.0},
    }))
    .expect("ReportFile")
}

fn generator(ns: &str, name: &str, backend: &str, template: Option<&str>) -> ReportGenerator {
    serde_json::from_value(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportGenerator",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
        "spec": {"backendRef": {"name": backend}, "commonName": name, "eventType": "PERIODIC", "format": "CSV"},
        "status": {"externalId": template},
    }))
    .expect("ReportGenerator")
}

fn backend(ns: &str, name: &str, type_: &str, url: &str, ca: Option<&str>) -> ReportBackend {
    let tls = ca.map(|ca| json!({"caSecretRef": {"name": ca, "key": "ca.crt"}}));
    serde_json::from_value(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportBackend",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
        "spec": {"type": type_, "url": url, "credentialsSecretRef": {"name": format!("{name}-creds")}, "tls": tls},
    }))
    .expect("ReportBackend")
}

fn store(ns: &str, name: &str, credentials: &str) -> ReportStore {
    serde_json::from_value(json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportStore",
        "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}")},
        "spec": {"url": "s3://bucket", "credentialsSecretRef": {"name": credentials}},
    }))
    .expect("ReportStore")
}

#[test]
fn stores_are_found_by_the_secret_they_read() {
    let mut f = Fixture::new();
    f.store(Event::Apply(store("a", "s1", "creds")));
    f.store(Event::Apply(store("a", "s2", "creds")));
    f.store(Event::Apply(store("a", "s3", "other")));
    f.store(Event::Apply(store("b", "s4", "creds")));
    assert_eq!(names(f.index.stores_reading("a", "creds")), ["s1", "s2"]);
    assert_eq!(names(f.index.stores_reading("b", "creds")), ["s4"]);
    assert_eq!(
        names(f.index.stores_reading("a", "nothing")),
        Vec::<String>::new()
    );
    // A changed reference moves the store; a deleted store leaves the index.
    f.store(Event::Apply(store("a", "s2", "other")));
    f.store(Event::Delete(store("a", "s1", "creds")));
    assert_eq!(names(f.index.stores_reading("a", "creds")), Vec::<String>::new());
    assert_eq!(names(f.index.stores_reading("a", "other")), ["s2", "s3"]);
}

fn names<K: kube::Resource>(objects: Vec<Arc<K>>) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
        .collect();
    names.sort();
    names
}

fn sorted(ids: HashSet<String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort();
    ids
}

const NONE: (Option<&str>, Option<&str>) = (None, None);

#[test]
fn applied_objects_are_found_under_each_of_their_keys() {
    let mut f = Fixture::new();
    f.file(Event::Apply(rf(
        "a",
        "f1",
        "rb",
        Some("g1"),
        Some("IN_PROGRESS"),
        (Some("r1"), None),
    )));
    f.file(Event::Apply(rf("a", "f2", "rb", Some("g1"), Some("READY"), NONE)));
    f.file(Event::Apply(rf("a", "f3", "other", Some("g2"), None, NONE)));
    f.file(Event::Apply(rf("b", "f4", "rb", None, Some("FAILED"), NONE)));
    f.generator(Event::Apply(generator("a", "g1", "rb", None)));
    f.generator(Event::Apply(generator("b", "g2", "rb", None)));
    f.backend(Event::Apply(backend("a", "rb", "CMP", "http://cmp", Some("ca"))));

    assert_eq!(names(f.index.files_of_owner("g1")), ["f1", "f2"]);
    assert_eq!(names(f.index.files_of_owner("g2")), ["f3"]);
    assert_eq!(names(f.index.files_of_owner("nobody")), Vec::<String>::new());
    assert_eq!(names(f.index.files_of_backend("a", "rb")), ["f1", "f2"]);
    assert_eq!(names(f.index.files_of_backend("b", "rb")), ["f4"]);
    assert_eq!(
        names(f.index.files_in_flight("a", "rb")),
        ["f1"],
        "IN_PROGRESS only; no status yet is not in flight"
    );
    assert_eq!(names(f.index.files_in_flight("a", "other")), Vec::<String>::new());
    assert_eq!(names(f.index.generators_of_backend("a", "rb")), ["g1"]);
    assert_eq!(names(f.index.backends_reading("a", "rb-creds")), ["rb"]);
    assert_eq!(names(f.index.backends_reading("a", "ca")), ["rb"]);
    assert_eq!(
        names(f.index.backends_reading("b", "ca")),
        Vec::<String>::new(),
        "another namespace"
    );
    assert_eq!(
        f.index.reports_by_status(),
        ReportsByStatus {
            in_progress: 2,
            ready: 1,
            failed: 1
        }
    );
}

#[test]
fn a_deleted_object_leaves_every_key() {
    let mut f = Fixture::new();
    let f1 = rf("a", "f1", "rb", Some("g1"), Some("IN_PROGRESS"), NONE);
    f.file(Event::Apply(f1.clone()));
    f.file(Event::Apply(rf("a", "f2", "rb", Some("g1"), Some("READY"), NONE)));
    f.file(Event::Delete(f1));
    assert_eq!(names(f.index.files_of_owner("g1")), ["f2"]);
    assert_eq!(names(f.index.files_of_backend("a", "rb")), ["f2"]);
    assert!(f.index.files_in_flight("a", "rb").is_empty());
    assert_eq!(
        f.index.reports_by_status(),
        ReportsByStatus {
            in_progress: 0,
            ready: 1,
            failed: 0
        }
    );
    let keys = f.index.file_keys.read().expect("lock");
    assert_eq!(keys.live.keys_of.len(), 1, "nothing left of f1");
    assert!(
        !keys
            .live
            .under
            .contains_key(&Key::InFlight("a".into(), "rb".into())),
        "empty sets are dropped"
    );
}

#[test]
fn a_relist_replaces_the_index_when_complete_and_drops_vanished_objects() {
    let mut f = Fixture::new();
    f.file(Event::Apply(rf(
        "a",
        "kept",
        "rb",
        Some("g1"),
        Some("IN_PROGRESS"),
        NONE,
    )));
    f.file(Event::Apply(rf(
        "a",
        "gone",
        "rb",
        Some("g1"),
        Some("IN_PROGRESS"),
        NONE,
    )));
    f.generator(Event::Apply(generator("a", "gone", "rb", None)));

    f.file(Event::Init);
    f.file(Event::InitApply(rf(
        "a",
        "kept",
        "rb",
        Some("g1"),
        Some("READY"),
        NONE,
    )));
    assert_eq!(
        names(f.index.files_of_owner("g1")),
        ["gone", "kept"],
        "until the re-list is complete, the old answer stands"
    );
    f.file(Event::InitDone);
    assert_eq!(names(f.index.files_of_owner("g1")), ["kept"]);
    assert!(f.index.files_in_flight("a", "rb").is_empty(), "kept is READY now");
    assert_eq!(
        f.index.reports_by_status(),
        ReportsByStatus {
            in_progress: 0,
            ready: 1,
            failed: 0
        }
    );

    f.generator(Event::Init);
    f.generator(Event::InitDone);
    assert!(
        f.index.generators_of_backend("a", "rb").is_empty(),
        "an empty re-list empties the index"
    );
    assert!(f.index.generator_keys.read().expect("lock").live.under.is_empty());
}

#[test]
fn an_owner_change_moves_a_file_between_owners() {
    let mut f = Fixture::new();
    f.file(Event::Apply(rf("a", "f1", "rb", Some("old"), None, NONE)));
    f.file(Event::Apply(rf("a", "f1", "rb", Some("new"), None, NONE)));
    assert!(f.index.files_of_owner("old").is_empty());
    assert_eq!(names(f.index.files_of_owner("new")), ["f1"]);
    f.file(Event::Apply(rf("a", "f1", "rb", None, None, NONE)));
    assert!(f.index.files_of_owner("new").is_empty(), "orphaned");
}

#[test]
fn a_backend_change_moves_an_object_between_backends() {
    let mut f = Fixture::new();
    f.file(Event::Apply(rf("a", "f1", "x", None, Some("IN_PROGRESS"), NONE)));
    f.generator(Event::Apply(generator("a", "g1", "x", None)));
    f.backend(Event::Apply(backend("a", "rb", "CMP", "http://cmp", Some("ca"))));

    f.file(Event::Apply(rf("a", "f1", "y", None, Some("IN_PROGRESS"), NONE)));
    f.generator(Event::Apply(generator("a", "g1", "y", None)));
    f.backend(Event::Apply(backend("a", "rb", "CMP", "http://cmp", None)));
    assert!(f.index.files_of_backend("a", "x").is_empty());
    assert!(f.index.files_in_flight("a", "x").is_empty());
    assert_eq!(names(f.index.files_of_backend("a", "y")), ["f1"]);
    assert_eq!(names(f.index.files_in_flight("a", "y")), ["f1"]);
    assert!(f.index.generators_of_backend("a", "x").is_empty());
    assert_eq!(names(f.index.generators_of_backend("a", "y")), ["g1"]);
    assert!(
        f.index.backends_reading("a", "ca").is_empty(),
        "the CA Secret was dropped"
    );
    assert_eq!(names(f.index.backends_reading("a", "rb-creds")), ["rb"]);
}

#[test]
fn an_object_is_answered_only_once_the_store_matches_its_key() {
    // The index hears of a change just before the store applies it.
    let mut f = Fixture::new();
    f.file(Event::Apply(rf("a", "f1", "x", None, None, NONE)));
    f.index
        .apply_file(&Event::Apply(rf("a", "f1", "y", None, None, NONE)));
    assert!(
        f.index.files_of_backend("a", "y").is_empty(),
        "the store still says x"
    );
    f.index
        .apply_file(&Event::Apply(rf("a", "f2", "y", None, None, NONE)));
    assert!(
        f.index.files_of_backend("a", "y").is_empty(),
        "not in the store yet"
    );
    f.files
        .apply_watcher_event(&Event::Apply(rf("a", "f1", "y", None, None, NONE)));
    assert_eq!(names(f.index.files_of_backend("a", "y")), ["f1"]);
}

#[test]
fn ids_taken_are_those_held_on_the_same_api_by_others() {
    let mut f = Fixture::new();
    // `rb` in a and `twin` in b talk to one API; `elsewhere` (another URL) and `kind` (another
    // type) do not.
    let rb = backend("a", "rb", "SUPPLIER", "http://api", None);
    f.backend(Event::Apply(rb.clone()));
    f.backend(Event::Apply(backend("b", "twin", "SUPPLIER", "http://api", None)));
    f.backend(Event::Apply(backend(
        "a",
        "elsewhere",
        "SUPPLIER",
        "http://other",
        None,
    )));
    f.backend(Event::Apply(backend("a", "kind", "CMP", "http://api", None)));
    f.file(Event::Apply(rf(
        "a",
        "me",
        "rb",
        None,
        Some("IN_PROGRESS"),
        (Some("mine"), None),
    )));
    f.file(Event::Apply(rf(
        "a",
        "status",
        "rb",
        None,
        Some("READY"),
        (Some("s1"), Some("ignored")),
    )));
    f.file(Event::Apply(rf(
        "a",
        "spec",
        "rb",
        None,
        None,
        (None, Some("s2")),
    )));
    f.file(Event::Apply(rf(
        "b",
        "twin-file",
        "twin",
        None,
        None,
        (Some("s3"), None),
    )));
    f.file(Event::Apply(rf("a", "no-id", "rb", None, None, NONE)));
    f.file(Event::Apply(rf(
        "a",
        "other-url",
        "elsewhere",
        None,
        None,
        (Some("o1"), None),
    )));
    f.file(Event::Apply(rf(
        "a",
        "other-type",
        "kind",
        None,
        None,
        (Some("o2"), None),
    )));
    f.file(Event::Apply(rf(
        "a",
        "missing",
        "deleted-backend",
        None,
        None,
        (Some("o3"), None),
    )));
    assert_eq!(
        sorted(f.index.ids_taken_by_files(&rb, Some("uid-me"))),
        ["s1", "s2", "s3"]
    );
    assert_eq!(
        sorted(f.index.ids_taken_by_files(&rb, None)),
        ["mine", "s1", "s2", "s3"]
    );

    f.generator(Event::Apply(generator("a", "g-me", "rb", Some("t0"))));
    f.generator(Event::Apply(generator("b", "g-twin", "twin", Some("t1"))));
    f.generator(Event::Apply(generator("a", "g-none", "rb", None)));
    f.generator(Event::Apply(generator("a", "g-other", "elsewhere", Some("t2"))));
    assert_eq!(
        sorted(f.index.ids_taken_by_generators(&rb, Some("uid-g-me"))),
        ["t1"]
    );
    // A template the twin replaced and has not deleted yet is taken too.
    let mut replaced = generator("b", "g-twin", "twin", Some("t1"));
    replaced.status.get_or_insert_default().retired_templates = vec!["t1-old".into()];
    f.generator(Event::Apply(replaced));
    assert_eq!(
        sorted(f.index.ids_taken_by_generators(&rb, Some("uid-g-me"))),
        ["t1", "t1-old"]
    );

    // The twin moves to another API: its reports' ids are no longer in the way.
    f.backend(Event::Apply(backend(
        "b",
        "twin",
        "SUPPLIER",
        "http://moved",
        None,
    )));
    assert_eq!(
        sorted(f.index.ids_taken_by_files(&rb, Some("uid-me"))),
        ["s1", "s2"]
    );
}

/// Prints what one reconcile's questions cost with the index and with a scan of the store, as
/// the number of unrelated reports grows (100 related ones throughout). Timing, so not a test that runs by default:
/// `cargo test --release --lib index::tests::lookups_against_scans -- --ignored --nocapture`.
#[test]
#[ignore = "prints timings"]
fn lookups_against_scans() {
    for total in [1_000, 10_000, 50_000] {
        let mut f = Fixture::new();
        let rb = backend("a", "rb-0", "SUPPLIER", "http://api", None);
        for b in 0..100 {
            f.backend(Event::Apply(backend(
                "a",
                &format!("rb-{b}"),
                "SUPPLIER",
                &format!("http://api-{b}"),
                None,
            )));
        }
        f.backend(Event::Apply(rb.clone()));
        for i in 0..total {
            let state = if i % 10 == 0 { "IN_PROGRESS" } else { "READY" };
            let id = format!("r{i}");
            // The first 100 are the ones asked about; the others are unrelated.
            let (on, owner) = if i < 100 {
                (0, 7)
            } else {
                (1 + i % 99, 8 + i % 500)
            };
            f.file(Event::Apply(rf(
                "a",
                &format!("f{i}"),
                &format!("rb-{on}"),
                Some(&format!("g{owner}")),
                Some(state),
                (Some(&id), None),
            )));
        }
        let rounds = 200;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(f.index.files_in_flight("a", "rb-0"));
            std::hint::black_box(f.index.files_of_owner("g7"));
            std::hint::black_box(f.index.ids_taken_by_files(&rb, Some("uid-f0")));
        }
        let indexed = started.elapsed() / rounds;
        let store = f.files.as_reader();
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let state = store.state();
            let on_rb = |rf: &&Arc<ReportFile>| rf.spec.backend_ref.name == "rb-0";
            std::hint::black_box(
                state
                    .iter()
                    .filter(on_rb)
                    .filter(|rf| rf.status.as_ref().and_then(|s| s.status) == Some(FileState::InProgress))
                    .count(),
            );
            std::hint::black_box(
                state
                    .iter()
                    .filter(|rf| rf.owner_references().iter().any(|o| o.uid == "g7"))
                    .count(),
            );
            std::hint::black_box(
                state
                    .iter()
                    .filter(on_rb)
                    .filter_map(|rf| rf.status.as_ref()?.external_id.clone())
                    .collect::<HashSet<_>>(),
            );
        }
        let scanned = started.elapsed() / rounds;
        println!(
            "{total} reports, 100 related: index {indexed:?}, scans {scanned:?} per reconcile's three questions"
        );
    }
}
