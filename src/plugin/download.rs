//! `download`: save a READY report's file. An expired (or nearly expired) URL is re-minted
//! through the refresh-url annotation first; FUSION reports hold the file itself. Where the
//! file goes and how it is written is [`super::save`]'s; this module fetches only https (http
//! with `--allow-http`) and follows redirects only on the Secret's URL's own scheme, host and
//! port, so a server cannot send the plugin anywhere else.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use url::Url;

use super::fetch::{annotate, get, wait_until};
use super::progress::{Progress, bytes};
use super::save::{self, Sink, Target};
use super::show::{ready_summary, rfc3339};
use super::terminal::escape;
use super::{Ctx, PluginError, fresh_annotation_value};
use crate::api::{ANNOTATION_REFRESH_URL, FileState, ReportFile};
use crate::backend::redact_url;

/// Default bound on a download: larger than any report the backends document.
pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;
/// A URL with less validity left than this is re-minted first: the request would race it.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the next bytes of the answer (a large file may take long in total).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Same-origin redirects followed at most (storage behind a path rewrite).
const MAX_REDIRECTS: usize = 5;

pub struct Options {
    pub output: Option<String>,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub force_refresh: bool,
    /// Replace an existing file.
    pub force: bool,
    /// Fetch an `http://` URL (the file and its signed URL travel in clear text).
    pub allow_http: bool,
}

pub async fn download(ctx: &Ctx, name: &str, opts: &Options) -> Result<(), PluginError> {
    let rf: ReportFile = get(ctx, "ReportFile", name).await?;
    let status = rf.status.clone().unwrap_or_default();
    if status.status != Some(FileState::Ready) {
        let why = ready_summary(&status.conditions)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        let state = status
            .status
            .map(|s| format!("{s:?}"))
            .unwrap_or_else(|| "new".into());
        return Err(PluginError::NotUsable(format!(
            "ReportFile {name} is not READY but {state}{why}"
        )));
    }
    let secret_name = status
        .download_secret_ref
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| name.to_string());
    let shown_secret = escape(&secret_name).into_owned();
    let mut data = secret_data(ctx, &secret_name).await?;
    let file_name = data
        .get("fileName")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .or(status.file_name.clone());
    let chosen = save::choose(opts.output.as_deref(), file_name.as_deref(), name);
    if let Some(note) = &chosen.note {
        eprintln!("{note}");
    }
    let target = chosen.target;
    // Before anything is fetched or re-minted: a refused download changes nothing.
    save::check_free(&target, opts.force)?;
    if let Some(content) = data.get("content") {
        save::write_all(&target, content, opts.force)?;
        eprintln!(
            "Saved {} ({}) from Secret {shown_secret}",
            target.shown(),
            bytes(content.len() as u64)
        );
        return Ok(());
    }
    if let Some(url) = url_of(&data) {
        check_url(&url, opts.allow_http)?;
    }
    let expires = status.url_expires_at.or_else(|| {
        data.get("expiresAt")
            .and_then(|v| std::str::from_utf8(v).ok()?.parse::<DateTime<Utc>>().ok())
    });
    let now = Utc::now();
    if opts.force_refresh || needs_refresh(expires, now) {
        match expires {
            Some(e) if e <= now => eprintln!(
                "The download URL expired at {}; asking the operator for a fresh one…",
                rfc3339(e)
            ),
            Some(e) => eprintln!(
                "The download URL expires at {}; asking the operator for a fresh one…",
                rfc3339(e)
            ),
            None => eprintln!("Asking the operator for a fresh download URL…"),
        }
        refresh(ctx, name, opts.timeout).await?;
        data = secret_data(ctx, &secret_name).await?;
    }
    let url = url_of(&data).ok_or_else(|| {
        PluginError::NotUsable(format!("Secret {shown_secret} holds neither url nor content"))
    })?;
    let size = fetch_to(&url, &target, opts).await?;
    eprintln!(
        "Saved {} ({}) from Secret {shown_secret}",
        target.shown(),
        bytes(size)
    );
    Ok(())
}

fn url_of(data: &std::collections::BTreeMap<String, Vec<u8>>) -> Option<String> {
    data.get("url").and_then(|v| String::from_utf8(v.clone()).ok())
}

/// The Secret's URL, if the plugin may fetch it: https, or http when allowed.
pub fn check_url(url: &str, allow_http: bool) -> Result<Url, PluginError> {
    let shown = escape(&redact_url(url)).into_owned();
    let parsed = Url::parse(url).map_err(|_| PluginError::Refused(format!("{shown} is not a URL")))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if allow_http => Ok(parsed),
        "http" => Err(PluginError::Refused(format!(
            "{shown} is plain http: the file and its signed URL would travel in clear text (--allow-http fetches it anyway)"
        ))),
        other => Err(PluginError::Refused(format!(
            "{shown}: the plugin fetches https only, not {}",
            escape(other)
        ))),
    }
}

/// Whether a redirect from `from` to `to` stays on the same scheme, host and port.
pub fn same_origin(from: &Url, to: &Url) -> bool {
    from.scheme() == to.scheme()
        && from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default()
}

/// Whether a URL expiring at `expires` must be re-minted before it is used at `now`.
pub fn needs_refresh(expires: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires.is_some_and(|e| e.signed_duration_since(now) < EXPIRY_MARGIN)
}

/// Sets the refresh annotation to a new value and waits until the status says it was served
/// (the operator writes the Secret before it records that).
async fn refresh(ctx: &Ctx, name: &str, deadline: Duration) -> Result<(), PluginError> {
    let value = fresh_annotation_value();
    annotate::<ReportFile>(ctx, "ReportFile", name, ANNOTATION_REFRESH_URL, &value).await?;
    wait_until::<ReportFile, ()>(
        ctx,
        name,
        deadline,
        "the operator to re-mint the download URL",
        |rf| (rf.status.as_ref()?.last_url_refresh.as_deref() == Some(value.as_str())).then_some(()),
        |rf| ready_summary(&rf.status.as_ref()?.conditions),
    )
    .await
}

async fn secret_data(
    ctx: &Ctx,
    name: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, PluginError> {
    let secret: Secret = get(ctx, "Secret", name).await?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}

/// Streams `url` into `target`, refusing more than `max_bytes`. Errors name the URL without
/// its query string, which holds the signature.
async fn fetch_to(url: &str, target: &Target, opts: &Options) -> Result<u64, PluginError> {
    let origin = check_url(url, opts.allow_http)?;
    let shown = escape(&redact_url(url)).into_owned();
    let fail = |e: reqwest::Error| {
        let redirect = e.is_redirect();
        let why = format!("{shown}: {}", error_chain(&e.without_url()));
        match redirect {
            true => PluginError::Refused(why),
            false => PluginError::Download(why),
        }
    };
    let policy = reqwest::redirect::Policy::custom(move |attempt| {
        if !same_origin(&origin, attempt.url()) {
            let to = redact_url(attempt.url().as_str());
            return attempt.error(format!(
                "redirected to {to}, away from the scheme, host and port of the Secret's URL"
            ));
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        attempt.follow()
    });
    let client = reqwest::Client::builder()
        .user_agent(concat!("kubectl-report/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(policy)
        .build()
        .map_err(|e| PluginError::Download(format!("building the HTTP client: {}", error_chain(&e))))?;
    let mut resp = client.get(url).send().await.map_err(fail)?;
    if !resp.status().is_success() {
        return Err(PluginError::Download(format!(
            "{shown} answered HTTP {}",
            resp.status()
        )));
    }
    let max = opts.max_bytes;
    let total = resp.content_length();
    if let Some(t) = total.filter(|t| *t > max) {
        return Err(PluginError::Download(format!(
            "the file is {} (over the limit of {}; see --max-bytes)",
            bytes(t),
            bytes(max)
        )));
    }
    let mut sink = Sink::open(target, opts.force)?;
    let mut progress = Progress::new(total);
    let mut done: u64 = 0;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                sink.abandon();
                return Err(fail(e));
            }
        };
        done = done.saturating_add(chunk.len() as u64);
        if done > max {
            sink.abandon();
            return Err(PluginError::Download(format!(
                "the file is over the limit of {} (see --max-bytes)",
                bytes(max)
            )));
        }
        if let Err(e) = sink.write(&chunk) {
            sink.abandon();
            return Err(e);
        }
        progress.update(done);
    }
    progress.finish(done);
    sink.finish()?;
    Ok(done)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_decides_the_refresh() {
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("time");
        let at = |s: i64| Some(now + chrono::Duration::seconds(s));
        for (expires, want) in [
            (None, false),
            (at(-60), true),
            (at(0), true),
            (at(4), true),
            (at(5), false),
            (at(3600), false),
        ] {
            assert_eq!(needs_refresh(expires, now), want, "{expires:?}");
        }
    }

    #[test]
    fn only_https_or_allowed_http_is_fetched() {
        for (url, allow_http, ok) in [
            ("https://s3.example.com/b/k?X-Amz-Signature=s", false, true),
            ("http://s3.example.com/b/k?X-Amz-Signature=s", false, false),
            ("http://s3.example.com/b/k", true, true),
            ("file:///etc/passwd", true, false),
            ("ftp://example.com/r.csv", true, false),
            ("not a url", true, false),
        ] {
            let got = check_url(url, allow_http);
            assert_eq!(got.is_ok(), ok, "{url} allow_http={allow_http}: {got:?}");
            if let Err(e) = got {
                assert!(!e.to_string().contains("Signature=s"), "{e}");
            }
        }
    }

    #[test]
    fn redirects_stay_on_the_origin() {
        let u = |s: &str| Url::parse(s).expect("url");
        let from = u("https://s3.example.com/b/k");
        for (to, same) in [
            ("https://s3.example.com/other/k?x=1", true),
            ("https://s3.example.com:443/b/k", true),
            ("http://s3.example.com/b/k", false),
            ("https://s3.example.com:8443/b/k", false),
            ("https://evil.example.com/b/k", false),
            ("https://169.254.169.254/latest/meta-data/", false),
        ] {
            assert_eq!(same_origin(&from, &u(to)), same, "{to}");
        }
    }
}
