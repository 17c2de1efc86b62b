//! The Argo CD resource actions shipped in charts/report-operator/argocd/actions (run now,
//! suspend and resume a ReportGenerator; refresh a ReportFile's download URL), run in Lua 5.1
//! as Argo CD runs them: each `discovery.lua` offers an action only where it does something,
//! and each `action.lua` returns the object with exactly the expected change. The argocd-cm
//! snippet must carry the same scripts verbatim.

mod lua_support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use lua_support::to_lua;
use serde_json::{Value, json};

const GENERATOR: &str = "reportgenerator";
const FILE: &str = "reportfile";
const RUN_NOW: &str = "reporting.report-operator.io/run-now";
const REFRESH_URL: &str = "reporting.report-operator.io/refresh-url";

fn argocd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/report-operator/argocd")
}

fn script(path: &str) -> String {
    std::fs::read_to_string(argocd_dir().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A table an action returns, back to JSON as Argo CD turns it into a patch: a table with
/// only the keys 1..n is an array; whole numbers are integers.
fn from_lua(v: mlua::Value) -> Value {
    match v {
        mlua::Value::Nil => Value::Null,
        mlua::Value::Boolean(b) => Value::Bool(b),
        mlua::Value::Integer(i) => json!(i),
        mlua::Value::Number(n) if n.fract() == 0.0 && n.abs() < 9e15 => json!(n as i64),
        mlua::Value::Number(n) => json!(n),
        mlua::Value::String(s) => Value::String(s.to_str().expect("utf8").to_string()),
        mlua::Value::Table(t) => {
            let pairs: Vec<(mlua::Value, mlua::Value)> =
                t.pairs().collect::<mlua::Result<_>>().expect("table pairs");
            let len = t.raw_len();
            if len > 0 && pairs.len() == len {
                Value::Array((1..=len).map(|i| from_lua(t.raw_get(i).expect("item"))).collect())
            } else {
                let map = pairs
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.as_string()
                                .and_then(|s| s.to_str().ok().map(|s| s.to_string()))
                                .expect("string key"),
                            from_lua(v),
                        )
                    })
                    .collect();
                Value::Object(map)
            }
        }
        other => panic!("a script returned {other:?}"),
    }
}

/// Runs the script at `path` with global `obj`; what it returns, as JSON.
fn run(path: &str, obj: &Value) -> Value {
    let lua = mlua::Lua::new();
    lua.globals()
        .set("obj", to_lua(&lua, obj).expect("obj to Lua"))
        .expect("set obj");
    from_lua(
        lua.load(script(path))
            .set_name(path)
            .eval()
            .unwrap_or_else(|e| panic!("{path}: {e}")),
    )
}

/// The actions `discovery.lua` of `kind` offers on `obj`: name → enabled.
fn offered(kind: &str, obj: &Value) -> BTreeMap<String, bool> {
    let Value::Object(actions) = run(&format!("actions/{kind}/discovery.lua"), obj) else {
        panic!("{kind} discovery returned no table")
    };
    actions
        .into_iter()
        .map(|(name, a)| {
            assert!(
                a["displayName"].is_string() && a["iconClass"].is_string(),
                "{name}: {a}"
            );
            (name, !a["disabled"].as_bool().expect("disabled is a boolean"))
        })
        .collect()
}

fn enabled(pairs: &[(&str, bool)]) -> BTreeMap<String, bool> {
    pairs.iter().map(|(n, e)| (n.to_string(), *e)).collect()
}

/// `action` of `kind` on `obj`: the object it returns.
fn act(kind: &str, action: &str, obj: &Value) -> Value {
    run(&format!("actions/{kind}/{action}/action.lua"), obj)
}

/// An annotation value an action set: a UTC timestamp of now.
fn assert_now(value: &Value) {
    let text = value.as_str().unwrap_or_else(|| panic!("not a string: {value}"));
    let at: DateTime<Utc> = text
        .parse()
        .unwrap_or_else(|e| panic!("{text:?} is no RFC 3339 time: {e}"));
    let off = (Utc::now() - at).num_seconds().abs();
    assert!(off <= 60, "{text} is not now");
    assert!(text.ends_with('Z'), "{text} is not UTC");
}

fn generator(spec: Value, annotations: Value, status: Value) -> Value {
    json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": "ReportGenerator",
        "metadata": {"name": "daily", "namespace": "billing", "generation": 2, "annotations": annotations},
        "spec": spec,
        "status": status,
    })
}

fn periodic(schedule: Value) -> Value {
    json!({"backendRef": {"name": "b"}, "commonName": "Usage", "eventType": "PERIODIC", "format": "CSV",
           "parameters": {"period": "P1D"}, "schedule": schedule})
}

fn report_file(state: Option<&str>, annotations: Value, last_refresh: Option<&str>) -> Value {
    let status = match state {
        Some(s) => {
            json!({"status": s, "lastUrlRefresh": last_refresh, "conditions": [{"type": "Complete", "status": "True"}]})
        }
        None => Value::Null,
    };
    json!({
        "apiVersion": "reporting.report-operator.io/v1alpha1",
        "kind": "ReportFile",
        "metadata": {"name": "daily-20261104", "namespace": "billing", "generation": 1, "annotations": annotations},
        "spec": {"backendRef": {"name": "b"}, "name": "Usage", "eventType": "PERIODIC", "format": "CSV"},
        "status": status,
    })
}

#[test]
fn generator_actions_are_offered_where_they_do_something() {
    let onetime =
        json!({"backendRef": {"name": "b"}, "commonName": "Usage", "eventType": "ONETIME", "format": "CSV"});
    let on_invoice = json!({"backendRef": {"name": "b"}, "commonName": "Usage", "eventType": "ON_INVOICE", "format": "CSV"});
    #[rustfmt::skip]
    let cases = [
        ("PERIODIC, running", generator(periodic(json!({})), Value::Null, Value::Null), [("run-now", true), ("suspend", true), ("resume", false)]),
        ("PERIODIC without a schedule", generator(periodic(Value::Null), Value::Null, Value::Null), [("run-now", true), ("suspend", true), ("resume", false)]),
        ("PERIODIC, suspend false", generator(periodic(json!({"suspend": false})), Value::Null, Value::Null), [("run-now", true), ("suspend", true), ("resume", false)]),
        ("PERIODIC, suspended: run now still works", generator(periodic(json!({"suspend": true})), Value::Null, Value::Null), [("run-now", true), ("suspend", false), ("resume", true)]),
        ("PERIODIC, a run-now waiting for the operator", generator(periodic(json!({})), json!({RUN_NOW: "2026-11-05T10:00:00Z"}), json!({"lastRunNow": "2026-11-04T10:00:00Z"})),
            [("run-now", false), ("suspend", true), ("resume", false)]),
        ("PERIODIC, the last run-now served", generator(periodic(json!({})), json!({RUN_NOW: "2026-11-05T10:00:00Z"}), json!({"lastRunNow": "2026-11-05T10:00:00Z"})),
            [("run-now", true), ("suspend", true), ("resume", false)]),
        ("ONETIME: nothing is scheduled", generator(onetime, Value::Null, Value::Null), [("run-now", false), ("suspend", false), ("resume", false)]),
        ("ON_INVOICE: the backend decides when", generator(on_invoice, Value::Null, Value::Null), [("run-now", false), ("suspend", false), ("resume", false)]),
    ];
    for (what, obj, want) in cases {
        assert_eq!(offered(GENERATOR, &obj), enabled(&want), "{what}");
    }
}

#[test]
fn generator_actions_change_exactly_what_they_say() {
    let obj = generator(
        periodic(json!({"cron": "@daily"})),
        json!({"team": "billing"}),
        json!({"lastRunNow": "1"}),
    );

    let suspended = act(GENERATOR, "suspend", &obj);
    let mut want = obj.clone();
    want["spec"]["schedule"]["suspend"] = json!(true);
    assert_eq!(suspended, want);
    assert_eq!(
        offered(GENERATOR, &suspended),
        enabled(&[("run-now", true), ("suspend", false), ("resume", true)])
    );

    let resumed = act(GENERATOR, "resume", &suspended);
    want["spec"]["schedule"]["suspend"] = json!(false);
    assert_eq!(resumed, want);
    assert_eq!(
        offered(GENERATOR, &resumed),
        enabled(&[("run-now", true), ("suspend", true), ("resume", false)])
    );

    // Without a schedule, one is made.
    let bare = generator(periodic(Value::Null), Value::Null, Value::Null);
    assert_eq!(
        act(GENERATOR, "suspend", &bare)["spec"]["schedule"],
        json!({"suspend": true})
    );

    // Run now: a timestamp in the annotation, other annotations kept; then it waits for the operator.
    let mut ran = act(GENERATOR, "run-now", &obj);
    assert_now(&ran["metadata"]["annotations"][RUN_NOW]);
    assert!(
        !offered(GENERATOR, &ran)["run-now"],
        "offered again before the operator acted"
    );
    ran["metadata"]["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove(RUN_NOW);
    assert_eq!(ran, obj, "run-now changes only its annotation");
    let first = act(
        GENERATOR,
        "run-now",
        &generator(periodic(json!({})), Value::Null, Value::Null),
    );
    // Made where there were none: only the run-now annotation, with the time of its own run
    // (a second may have passed since the first).
    let made = first["metadata"]["annotations"]
        .as_object()
        .expect("annotations made where there were none");
    assert_eq!(
        made.keys().collect::<Vec<_>>(),
        vec![RUN_NOW],
        "annotations made where there were none"
    );
    assert_now(&made[RUN_NOW]);
}

#[test]
fn refresh_url_is_offered_on_ready_reports_and_sets_a_new_value() {
    #[rustfmt::skip]
    let cases = [
        ("no status yet", report_file(None, Value::Null, None), false),
        ("IN_PROGRESS: no URL yet", report_file(Some("IN_PROGRESS"), Value::Null, None), false),
        ("FAILED: no URL ever", report_file(Some("FAILED"), Value::Null, None), false),
        ("READY", report_file(Some("READY"), Value::Null, None), true),
        ("READY, the last refresh served", report_file(Some("READY"), json!({REFRESH_URL: "a"}), Some("a")), true),
        ("READY, a refresh waiting for the operator", report_file(Some("READY"), json!({REFRESH_URL: "b"}), Some("a")), false),
    ];
    for (what, obj, want) in cases {
        assert_eq!(offered(FILE, &obj), enabled(&[("refresh-url", want)]), "{what}");
    }
    let obj = report_file(
        Some("READY"),
        json!({REFRESH_URL: "a", "team": "billing"}),
        Some("a"),
    );
    let mut refreshed = act(FILE, "refresh-url", &obj);
    let value = refreshed["metadata"]["annotations"][REFRESH_URL].clone();
    assert_now(&value);
    assert_ne!(value, json!("a"), "a new value");
    assert!(
        !offered(FILE, &refreshed)["refresh-url"],
        "offered again before the operator acted"
    );
    refreshed["metadata"]["annotations"][REFRESH_URL] = json!("a");
    assert_eq!(refreshed, obj, "refresh-url changes only its annotation");
}

#[test]
fn argocd_cm_snippet_ships_each_action_verbatim() {
    let cm: Value = serde_yaml::from_str(&script("argocd-cm.yaml")).expect("argocd-cm.yaml parses");
    let data = cm["data"].as_object().expect("data");
    let keys: Vec<&String> = data
        .keys()
        .filter(|k| k.starts_with("resource.customizations.actions."))
        .collect();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (kind, dir) in [("ReportGenerator", GENERATOR), ("ReportFile", FILE)] {
        let key = format!("resource.customizations.actions.reporting.report-operator.io_{kind}");
        let value: Value =
            serde_yaml::from_str(data[&key].as_str().expect("a string")).expect("the actions value parses");
        assert_eq!(
            value["discovery.lua"].as_str(),
            Some(script(&format!("actions/{dir}/discovery.lua")).as_str()),
            "{key}"
        );
        let definitions = value["definitions"].as_array().expect("definitions");
        let defined: Vec<&str> = definitions
            .iter()
            .map(|d| d["name"].as_str().expect("name"))
            .collect();
        // Every action discovery offers has a definition, and only those.
        let discovered: Vec<String> = offered(dir, &json!({"metadata": {}, "spec": {}, "status": {}}))
            .into_keys()
            .collect();
        let mut sorted = defined.clone();
        sorted.sort();
        assert_eq!(sorted, discovered, "{key}");
        for d in definitions {
            let name = d["name"].as_str().expect("name");
            let file = script(&format!("actions/{dir}/{name}/action.lua"));
            assert_eq!(d["action.lua"].as_str(), Some(file.as_str()), "{key}: {name}");
        }
    }
}
