//! What the generated schemas need before they are served, so that `kubectl explain` reads
//! cleanly: descriptions joined into paragraphs (a doc comment wraps at the source's line
//! width, which is not a line break of the text), and no `null` among an enum's values (kube
//! lists it for an optional enum, and `kubectl explain` shows it as `<no value>`; `nullable`
//! says the same).
//!
//! kube's derive builds each CRD's schema with its own schemars settings, so this runs over
//! the generated CRD, every schema in it.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};

/// The CRD with every schema of every version tidied.
pub fn tidy(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
        {
            visit(schema);
        }
    }
    crd
}

fn visit(s: &mut JSONSchemaProps) {
    if let Some(d) = s.description.as_mut() {
        *d = join_lines(d);
    }
    if let Some(values) = s.enum_.as_mut() {
        values.retain(|v| !v.0.is_null());
    }
    let children = s
        .properties
        .iter_mut()
        .chain(s.pattern_properties.iter_mut())
        .chain(s.definitions.iter_mut())
        .flat_map(|m| m.values_mut())
        .chain(
            [&mut s.all_of, &mut s.any_of, &mut s.one_of]
                .into_iter()
                .flatten()
                .flatten(),
        )
        .chain(s.not.as_deref_mut());
    for child in children {
        visit(child);
    }
    match s.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => visit(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => items.iter_mut().for_each(visit),
        None => {}
    }
    for extra in [s.additional_properties.as_mut(), s.additional_items.as_mut()]
        .into_iter()
        .flatten()
    {
        if let JSONSchemaPropsOrBool::Schema(schema) = extra {
            visit(schema);
        }
    }
}

/// A doc comment's lines joined with spaces; an empty line (a paragraph break) stays one.
fn join_lines(text: &str) -> String {
    text.split("\n\n")
        .map(|paragraph| {
            paragraph
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON;

    use super::*;

    #[test]
    fn lines_join_and_paragraphs_stay() {
        assert_eq!(
            join_lines("A knob the backend type cannot honour\nis refused.\n\nSecond\n paragraph."),
            "A knob the backend type cannot honour is refused.\n\nSecond paragraph."
        );
        assert_eq!(join_lines("one line"), "one line");
    }

    /// Every schema of every CRD the operator serves, as `kubectl explain` reads it.
    #[test]
    fn served_crds_have_no_broken_lines_and_no_null_enum_values() {
        fn check(path: &str, s: &JSONSchemaProps, problems: &mut Vec<String>) {
            if let Some(d) = &s.description
                && d.replace("\n\n", "").contains('\n')
            {
                problems.push(format!("{path}: a line break inside a paragraph: {d:?}"));
            }
            if s.enum_.iter().flatten().any(|v| v.0.is_null()) {
                problems.push(format!("{path}: null among the enum values"));
            }
            for (name, child) in s.properties.iter().flatten() {
                check(&format!("{path}.{name}"), child, problems);
            }
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = &s.items {
                check(&format!("{path}[]"), item, problems);
            }
            if let Some(JSONSchemaPropsOrBool::Schema(value)) = &s.additional_properties {
                check(&format!("{path}.*"), value, problems);
            }
        }
        let mut problems = Vec::new();
        for crd in crate::api::crds() {
            for v in &crd.spec.versions {
                let schema = v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
                check(&crd.spec.names.kind, schema.expect("a schema"), &mut problems);
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    #[test]
    fn nested_schemas_lose_null_enum_values_and_line_breaks() {
        let leaf = JSONSchemaProps {
            description: Some("All, Latest\nor None.".into()),
            enum_: Some(vec![JSON("All".into()), JSON(serde_json::Value::Null)]),
            nullable: Some(true),
            ..Default::default()
        };
        let mut root = JSONSchemaProps {
            items: Some(JSONSchemaPropsOrArray::Schema(Box::new(JSONSchemaProps {
                properties: Some([("policy".to_string(), leaf)].into()),
                ..Default::default()
            }))),
            ..Default::default()
        };
        visit(&mut root);
        let Some(JSONSchemaPropsOrArray::Schema(item)) = &root.items else {
            panic!("items")
        };
        let policy = &item.properties.as_ref().expect("properties")["policy"];
        assert_eq!(policy.description.as_deref(), Some("All, Latest or None."));
        assert_eq!(policy.enum_, Some(vec![JSON("All".into())]));
        assert_eq!(policy.nullable, Some(true));
    }
}
