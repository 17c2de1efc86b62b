//! A reference page per CRD: every field of `spec` and `status` with its type, default,
//! limits (bounds, lengths, pattern, enum, the CEL rules' messages) and description, read from
//! the schema that `report-operator crd` prints.

use serde_json::Value;

use super::{GENERATED, Page, cell, code};
use crate::api;

/// One page per CRD, in the order `report-operator crd` prints them.
pub fn pages() -> Result<Vec<Page>, serde_json::Error> {
    api::crds()
        .into_iter()
        .map(|crd| serde_json::to_value(&crd).map(|v| page(&v)))
        .collect()
}

fn page(crd: &Value) -> Page {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let kind = str_of(&names["kind"]);
    let version = &spec["versions"][0];
    let schema = &version["schema"]["openAPIV3Schema"];
    let group = str_of(&spec["group"]);
    let short: Vec<String> = strings(&names["shortNames"]).iter().map(|s| code(s)).collect();
    let categories: Vec<String> = strings(&names["categories"]).iter().map(|s| code(s)).collect();

    let mut md = format!("{GENERATED}\n\n# {kind}\n\n{}\n\n", paragraphs(schema));
    md.push_str("| | |\n|---|---|\n");
    md.push_str(&format!(
        "| API version | {} |\n",
        code(&format!("{group}/{}", str_of(&version["name"])))
    ));
    md.push_str(&format!("| kind | {} |\n", code(kind)));
    md.push_str(&format!("| plural | {} |\n", code(str_of(&names["plural"]))));
    md.push_str(&format!("| short names | {} |\n", short.join(", ")));
    md.push_str(&format!("| categories | {} |\n", categories.join(", ")));
    md.push_str(&format!("| scope | {} |\n\n", str_of(&spec["scope"])));

    if let Some(columns) = version["additionalPrinterColumns"].as_array() {
        let short = strings(&names["shortNames"]).first().cloned().unwrap_or_default();
        md.push_str(&format!(
            "`kubectl get {short}` shows (`-o wide` adds those of priority 1):\n\n\
             | column | type | from | priority |\n|---|---|---|---|\n"
        ));
        for c in columns {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                str_of(&c["name"]),
                str_of(&c["type"]),
                code(str_of(&c["jsonPath"])),
                c["priority"].as_i64().unwrap_or(0)
            ));
        }
        md.push('\n');
    }

    for section in ["spec", "status"] {
        let Some(props) = schema["properties"].get(section) else {
            continue;
        };
        md.push_str(&format!("## {section}\n\n"));
        let about = paragraphs(props);
        if !about.is_empty() {
            md.push_str(&about);
            md.push_str("\n\n");
        }
        let rules = rules(props);
        if !rules.is_empty() {
            md.push_str("Rules the API server checks on the whole of it:\n\n");
            for r in rules {
                md.push_str(&format!("- {r}\n"));
            }
            md.push('\n');
        }
        md.push_str("| field | description |\n|---|---|\n");
        let mut rows = Vec::new();
        fields(props, section, "", &mut rows);
        for row in rows {
            md.push_str(&row);
        }
        md.push('\n');
    }

    Page {
        file: format!("{}.md", kind.to_lowercase()),
        title: kind.to_string(),
        summary: format!(
            "every field of `spec` and `status`, and what `kubectl get {}` shows",
            short_name(names)
        ),
        markdown: md,
    }
}

/// A table row for each field under `schema` (recursively), `path` relative to the section.
fn fields(schema: &Value, section: &str, path: &str, rows: &mut Vec<String>) {
    let required = strings(&schema["required"]);
    let Some(props) = schema["properties"].as_object() else {
        return;
    };
    for (name, prop) in props {
        let field = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let anchor = format!("{section}-{}", field.replace("[]", "").replace('.', "-")).to_lowercase();
        let mut type_ = type_of(prop);
        if required.contains(name) {
            type_.push_str(", required");
        }
        let mut about = vec![cell(&description(prop))];
        let default = default_of(prop);
        if !default.is_empty() {
            about.push(format!("**Default:** {default}"));
        }
        let limits = limits(prop);
        if !limits.is_empty() {
            about.push(format!("**Limits:** {}", cell(&limits.join("; "))));
        }
        rows.push(format!(
            "| <a id=\"{anchor}\"></a>{}<br>{type_} | {} |\n",
            code(&field),
            about.join("<br>"),
        ));
        // Objects and lists of objects have fields of their own.
        if prop["properties"].is_object() {
            fields(prop, section, &field, rows);
        } else if prop["items"]["properties"].is_object() {
            fields(&prop["items"], section, &format!("{field}[]"), rows);
        } else if prop["additionalProperties"]["properties"].is_object() {
            fields(
                &prop["additionalProperties"],
                section,
                &format!("{field}.*"),
                rows,
            );
        }
    }
}

fn type_of(s: &Value) -> String {
    let base = match str_of(&s["type"]) {
        "array" => format!("[]{}", type_of(&s["items"])),
        "object" if s["additionalProperties"].is_object() => {
            format!("map[string]{}", type_of(&s["additionalProperties"]))
        }
        "" if s["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true) => "any".into(),
        "" if s["x-kubernetes-int-or-string"] == Value::Bool(true) => "integer or string".into(),
        "" => "any".into(),
        t => t.to_string(),
    };
    match str_of(&s["format"]) {
        "" => base,
        f => format!("{base} ({f})"),
    }
}

/// The schema's default, or else the one the description gives ("Default `us`.",
/// "All (default, oldest first)"): the operator applies defaults in code, not in the schema.
fn default_of(s: &Value) -> String {
    if let Some(d) = s.get("default") {
        return code(&d.to_string());
    }
    let text = description(s).split_whitespace().collect::<Vec<_>>().join(" ");
    for sentence in text.split(". ") {
        let sentence = sentence.trim_end_matches('.');
        if let Some(rest) = sentence
            .strip_prefix("Default ")
            .or_else(|| sentence.strip_prefix("Default: "))
        {
            let value = rest.split(';').next().unwrap_or(rest).trim();
            return cell(value);
        }
        if let Some((before, _)) = sentence.split_once(" (default") {
            let word = before.rsplit([' ', '(', ':']).next().unwrap_or_default();
            if !word.is_empty() {
                return code(word.trim_end_matches(','));
            }
        }
    }
    String::new()
}

/// Bounds, lengths, counts, pattern, enum values and the CEL rules' messages.
fn limits(s: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let num = |k: &str| s[k].as_f64().map(|v| v.to_string());
    match (num("minimum"), num("maximum")) {
        (Some(min), Some(max)) => out.push(format!("{min} to {max}")),
        (Some(min), None) => out.push(format!("at least {min}")),
        (None, Some(max)) => out.push(format!("at most {max}")),
        (None, None) => {}
    }
    for (min, max, what) in [
        ("minLength", "maxLength", "characters"),
        ("minItems", "maxItems", "items"),
        ("minProperties", "maxProperties", "entries"),
    ] {
        match (s[min].as_i64(), s[max].as_i64()) {
            (Some(a), Some(b)) => out.push(format!("{a} to {b} {what}")),
            (Some(a), None) => out.push(format!("at least {a} {what}")),
            (None, Some(b)) => out.push(format!("at most {b} {what}")),
            (None, None) => {}
        }
    }
    for (sub, what) in [("items", "each item"), ("additionalProperties", "each value")] {
        match (s[sub]["minLength"].as_i64(), s[sub]["maxLength"].as_i64()) {
            (Some(a), Some(b)) => out.push(format!("{what}: {a} to {b} characters")),
            (None, Some(b)) => out.push(format!("{what}: at most {b} characters")),
            (Some(a), None) => out.push(format!("{what}: at least {a} characters")),
            (None, None) => {}
        }
    }
    if let Some(p) = s["pattern"].as_str() {
        out.push(format!("pattern {}", code(p)));
    }
    if let Some(values) = s["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| code(v.as_str().unwrap_or(&v.to_string())))
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    if let Some(values) = s["items"]["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .map(|v| code(v.as_str().unwrap_or(&v.to_string())))
            .collect();
        out.push(format!("each one of {}", values.join(", ")));
    }
    if s["x-kubernetes-list-type"] == "map" {
        out.push(format!(
            "a list keyed by {}",
            strings(&s["x-kubernetes-list-map-keys"])
                .iter()
                .map(|k| code(k))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out.extend(rules(s));
    out
}

/// The CEL rules of a schema, as "message (`rule`)".
fn rules(s: &Value) -> Vec<String> {
    s["x-kubernetes-validations"]
        .as_array()
        .map(|rules| {
            rules
                .iter()
                .map(|r| {
                    format!(
                        "{} ({})",
                        super::escape_html(str_of(&r["message"])),
                        code(str_of(&r["rule"]))
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn description(s: &Value) -> String {
    str_of(&s["description"]).to_string()
}

/// A description as Markdown paragraphs (outside a table).
fn paragraphs(s: &Value) -> String {
    super::paragraphs(&description(s)).join("\n\n")
}

fn short_name(names: &Value) -> String {
    strings(&names["shortNames"])
        .first()
        .cloned()
        .unwrap_or_else(|| str_of(&names["plural"]).to_string())
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_come_from_the_schema_or_the_description() {
        assert_eq!(default_of(&json!({"default": []})), "`[]`");
        assert_eq!(
            default_of(&json!({"description": "Marketplace sent when requesting a token. Default `us`."})),
            "`us`"
        );
        assert_eq!(
            default_of(&json!({"description": "Seconds. Default 21600 (6 hours); at most 2592000."})),
            "21600 (6 hours)"
        );
        assert_eq!(
            default_of(&json!({"description": "For windows: All (default, oldest first), Latest or None."})),
            "`All`"
        );
        assert_eq!(default_of(&json!({"description": "No default here."})), "");
    }

    #[test]
    fn limits_name_bounds_lengths_enums_and_rules() {
        let s = json!({
            "minimum": 1.0, "maximum": 1000.0, "maxLength": 256, "enum": ["A", "B"],
            "x-kubernetes-validations": [{"rule": "self > 0", "message": "must be positive"}],
        });
        assert_eq!(
            limits(&s),
            vec![
                "1 to 1000",
                "at most 256 characters",
                "one of `A`, `B`",
                "must be positive (`self > 0`)"
            ]
        );
        assert_eq!(
            type_of(&json!({"type": "array", "items": {"type": "string"}})),
            "[]string"
        );
        assert_eq!(
            type_of(&json!({"type": "string", "format": "date-time"})),
            "string (date-time)"
        );
        assert_eq!(
            type_of(&json!({"type": "object", "additionalProperties": {"type": "string"}})),
            "map[string]string"
        );
    }
}
