//! Types shared by the four kinds.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an object of a known kind in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalObjectReference {
    /// Name of the object, in the same namespace as the referring object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key of a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretKeySelector {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Labels and annotations to put on each Secret the operator writes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretTemplate {
    /// Labels added to the Secret (the operator's own labels win on conflict).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 63},
        "x-kubernetes-validations" = [{"rule": "self.all(k, size(k) <= 317)", "message": "a label key has at most 317 characters (a 253-character prefix, '/', a 63-character name)"}]
    ))]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend(
        "maxProperties" = 64,
        "additionalProperties" = {"type": "string", "maxLength": 4096},
        "x-kubernetes-validations" = [{"rule": "self.all(k, size(k) <= 317)", "message": "an annotation key has at most 317 characters (a 253-character prefix, '/', a 63-character name)"}]
    ))]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// How a report is triggered; mirrors RDE's `eventType`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    /// A single report for the period given by `parameters.startDate` and `endDate`.
    Onetime,
    /// One report for each calendar day, week or month (`parameters.period`).
    Periodic,
    /// One report each time the platform issues an invoice (RDE, CMP).
    OnInvoice,
}

impl EventType {
    /// The name as the CRDs and RDE spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Onetime => "ONETIME",
            EventType::Periodic => "PERIODIC",
            EventType::OnInvoice => "ON_INVOICE",
        }
    }
}

/// File format of a report; each backend supports a subset.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReportFormat {
    Json,
    Xml,
    Csv,
    Xlsx,
}

impl ReportFormat {
    /// Lower-case name, as most APIs and file extensions spell it.
    pub fn lower(self) -> &'static str {
        match self {
            ReportFormat::Json => "json",
            ReportFormat::Xml => "xml",
            ReportFormat::Csv => "csv",
            ReportFormat::Xlsx => "xlsx",
        }
    }

    /// The format a backend names, in either case (RDE `JSON`, CMP `json`).
    pub fn parse(name: &str) -> Option<ReportFormat> {
        [
            ReportFormat::Json,
            ReportFormat::Xml,
            ReportFormat::Csv,
            ReportFormat::Xlsx,
        ]
        .into_iter()
        .find(|f| name.eq_ignore_ascii_case(f.upper()))
    }

    /// Upper-case name, as the CRDs and RDE spell it.
    pub fn upper(self) -> &'static str {
        match self {
            ReportFormat::Json => "JSON",
            ReportFormat::Xml => "XML",
            ReportFormat::Csv => "CSV",
            ReportFormat::Xlsx => "XLSX",
        }
    }
}

/// Length of a periodic report's window, as an ISO 8601 duration.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Period {
    // A calendar day.
    P1D,
    // An ISO week, Monday to Sunday.
    P1W,
    // A calendar month.
    P1M,
}

/// Condition type every kind reports.
pub const CONDITION_READY: &str = "Ready";

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A label value for an object name: names may be 253 characters, label values only 63, so a
/// long name is cut and given a hash of the whole name to stay unique.
pub fn label_value(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_string();
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(name.as_bytes());
    let suffix: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut cut = 54;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = name[..cut].trim_end_matches(['-', '.', '_']);
    format!("{head}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_fit_and_stay_unique() {
        assert_eq!(label_value("nw-finance"), "nw-finance");
        let a = label_value(&"a".repeat(100));
        let b = label_value(&format!("{}b", "a".repeat(99)));
        assert!(a.len() <= 63 && b.len() <= 63);
        assert_ne!(a, b);
    }
}
