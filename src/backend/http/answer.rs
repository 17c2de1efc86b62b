//! Reading failures: the useful excerpt of an error body, `Retry-After`, and a transport
//! error's chain of causes, each without URL queries or credentials.

use std::time::Duration;

use crate::backend::error::redact_text;

/// `reqwest`'s error and its sources, without the URL (which may be signed).
pub(super) fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The useful part of an error body: the usual message fields of a JSON body, or the start
/// of a text one, with URLs redacted and credentials masked.
pub(super) fn error_excerpt(body: &[u8], secrets: &[String]) -> String {
    const MAX: usize = 300;
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body) {
        let mut parts = Vec::new();
        collect_messages(&json, &mut parts, 0);
        if !parts.is_empty() {
            parts.dedup();
            return redact_text(&parts.join("; "), secrets, MAX);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.starts_with('<') {
        // An HTML error page says nothing a status code does not.
        return String::new();
    }
    redact_text(text, secrets, MAX)
}

fn collect_messages(v: &serde_json::Value, out: &mut Vec<String>, depth: usize) {
    const KEYS: [&str; 8] = [
        "message",
        "error_description",
        "error",
        "detail",
        "failedReason",
        "reason",
        "code",
        "error_code",
    ];
    if depth > 3 {
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            for key in KEYS {
                match map.get(key) {
                    Some(serde_json::Value::String(s)) if !s.is_empty() => out.push(s.clone()),
                    Some(nested @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) => {
                        collect_messages(nested, out, depth + 1)
                    }
                    _ => {}
                }
            }
            if let Some(errors) = map.get("errors") {
                collect_messages(errors, out, depth + 1);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().take(3) {
                collect_messages(item, out, depth + 1);
            }
        }
        serde_json::Value::String(s) if depth > 0 => out.push(s.clone()),
        _ => {}
    }
}

/// `Retry-After` as delay seconds or an HTTP date.
pub(super) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let d = parse_retry_after(&later).expect("date");
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn excerpts_pick_messages_and_hide_secrets() {
        let body = br#"{"message":"Exceeded rate limit","code":"rate_limited"}"#;
        assert_eq!(error_excerpt(body, &[]), "Exceeded rate limit; rate_limited");
        let body = br#"{"errors":[{"message":"bad token s3cr3t-token"}]}"#;
        assert_eq!(error_excerpt(body, &["s3cr3t-token".into()]), "bad token ***");
        assert_eq!(error_excerpt(b"<html>oops</html>", &[]), "");
        assert_eq!(error_excerpt(b"plain failure", &[]), "plain failure");
    }
}
