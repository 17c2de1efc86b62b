//! The object key of a report: from its immutable spec alone, so that every attempt at a
//! copy (after a crash, a restart, a store outage) writes the same object.

use chrono::{DateTime, Utc};

use crate::api::ReportFormat;

/// What a key can be made of.
#[derive(Debug, Clone, Copy)]
pub struct KeyInputs<'a> {
    pub namespace: &'a str,
    pub report_file: &'a str,
    pub generator: Option<&'a str>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub organization: Option<&'a str>,
    pub format: ReportFormat,
    /// The backend's file name, for the extension of wrapped files (`.zip`, `.gz`).
    pub file_name: Option<&'a str>,
}

/// The key of the object: `prefix` (may be empty) and `template` with its placeholders
/// filled. Values are cut down to characters that need no escaping in a key; a template
/// that leaves an empty, "." or ".." segment, or names an unknown placeholder, is refused.
pub fn object_key(prefix: &str, template: &str, k: &KeyInputs) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("pathTemplate {template:?} has a \"{{\" without \"}}\""))?;
        let value = match &after[..close] {
            "namespace" => safe(k.namespace),
            "reportFile" => safe(k.report_file),
            "generator" => safe(k.generator.unwrap_or(k.report_file)),
            "window" => window(k.start, k.end),
            "organization" => safe(k.organization.unwrap_or("default")),
            "format" => k.format.lower().to_string(),
            "ext" => extension(k.format, k.file_name),
            other => {
                return Err(format!(
                    "pathTemplate {template:?} has an unknown placeholder {{{other}}}"
                ));
            }
        };
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    let key = match prefix.trim_matches('/') {
        "" => out,
        p => format!("{p}/{out}"),
    };
    if key.split('/').any(|s| matches!(s, "" | "." | "..")) {
        return Err(format!(
            "the object key {key:?} has an empty, \".\" or \"..\" segment; fix pathTemplate or the url's prefix"
        ));
    }
    if key.len() > 1024 {
        return Err(format!(
            "the object key has {} bytes, more than S3's 1024",
            key.len()
        ));
    }
    Ok(key)
}

/// `s` with every character but ASCII letters, digits, `-`, `_` and `.` made `-`.
pub(super) fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// `YYYYMMDD-YYYYMMDD` in UTC, or `once` for a report without a window (ON_INVOICE).
fn window(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => format!("{}-{}", s.format("%Y%m%d"), e.format("%Y%m%d")),
        _ => "once".to_string(),
    }
}

/// The file's extension: the archive's where the backend wraps the report (CONNECT's ZIP,
/// RDE's gzip), else the format's.
fn extension(format: ReportFormat, file_name: Option<&str>) -> String {
    let name = file_name.unwrap_or_default().to_ascii_lowercase();
    if name.ends_with(".zip") {
        "zip".into()
    } else if name.ends_with(".gz") {
        format!("{}.gz", format.lower())
    } else {
        format.lower().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).expect("time").with_timezone(&Utc)
    }

    fn inputs() -> KeyInputs<'static> {
        KeyInputs {
            namespace: "billing",
            report_file: "nw-finance-20181008",
            generator: Some("nw-finance"),
            start: Some(t("2018-10-08T00:00:00Z")),
            end: Some(t("2018-10-08T23:59:59Z")),
            organization: None,
            format: ReportFormat::Csv,
            file_name: Some("report.csv"),
        }
    }

    #[test]
    fn keys_from_templates() {
        let default = crate::api::ReportStoreSpec::DEFAULT_PATH_TEMPLATE;
        let zip = KeyInputs {
            file_name: Some("RP-1.ZIP"),
            format: ReportFormat::Json,
            ..inputs()
        };
        let gz = KeyInputs {
            file_name: Some("r.json.gz"),
            format: ReportFormat::Json,
            ..inputs()
        };
        let no_window = KeyInputs {
            start: None,
            end: None,
            generator: None,
            organization: Some("org/1"),
            ..inputs()
        };
        let rows: Vec<(&str, &str, KeyInputs, Result<&str, &str>)> = vec![
            (
                "",
                default,
                inputs(),
                Ok("billing/nw-finance/20181008-20181008/nw-finance-20181008.csv"),
            ),
            (
                "/reports/",
                default,
                inputs(),
                Ok("reports/billing/nw-finance/20181008-20181008/nw-finance-20181008.csv"),
            ),
            ("", "{reportFile}.{ext}", zip, Ok("nw-finance-20181008.zip")),
            ("", "{reportFile}.{ext}", gz, Ok("nw-finance-20181008.json.gz")),
            (
                "p",
                "{generator}/{organization}/{window}.{format}",
                no_window,
                Ok("p/nw-finance-20181008/org-1/once.csv"),
            ),
            ("", "{nope}", inputs(), Err("unknown placeholder {nope}")),
            ("", "{namespace", inputs(), Err("without")),
            ("", "a//{reportFile}", inputs(), Err("empty")),
            ("", "../{reportFile}", inputs(), Err("\"..\"")),
        ];
        for (prefix, template, k, want) in rows {
            let got = object_key(prefix, template, &k);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{template}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{template}: {got}"),
                (got, want) => panic!("{template}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_same_report_always_gets_the_same_key() {
        let a = object_key("p", crate::api::ReportStoreSpec::DEFAULT_PATH_TEMPLATE, &inputs());
        let b = object_key("p", crate::api::ReportStoreSpec::DEFAULT_PATH_TEMPLATE, &inputs());
        assert_eq!(a, b);
    }
}
