//! `download`: save a READY report's file. An expired (or nearly expired) URL is re-minted
//! through the refresh-url annotation first; FUSION reports hold the file itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use std::io::Write;

use super::fetch::{annotate, get, wait_until};
use super::progress::{Progress, bytes};
use super::show::rfc3339;
use super::{Ctx, PluginError, fresh_annotation_value};
use crate::api::{ANNOTATION_REFRESH_URL, CONDITION_READY, FileState, ReportFile, find_condition};
use crate::backend::redact_url;

/// Default bound on a download: larger than any report the backends document.
pub const DEFAULT_MAX_BYTES: u64 = 8 << 30;
/// A URL with less validity left than this is re-minted first: the request would race it.
const EXPIRY_MARGIN: chrono::Duration = chrono::Duration::seconds(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait for the next bytes of the answer (a large file may take long in total).
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Same-host redirects followed at most (storage behind a path rewrite); other hosts are not.
const MAX_REDIRECTS: usize = 5;

pub struct Options {
    pub output: Option<String>,
    pub timeout: Duration,
    pub max_bytes: u64,
    pub force_refresh: bool,
}

pub async fn download(ctx: &Ctx, name: &str, opts: &Options) -> Result<(), PluginError> {
    let rf: ReportFile = get(ctx, "ReportFile", name).await?;
    let status = rf.status.clone().unwrap_or_default();
    if status.status != Some(FileState::Ready) {
        let why = find_condition(&status.conditions, CONDITION_READY)
            .map(|c| format!(" ({}: {})", c.reason, c.message))
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
    let mut data = secret_data(ctx, &secret_name).await?;
    let target = target_path(
        opts.output.as_deref(),
        data.get("fileName")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .or(status.file_name.clone()),
        name,
    );
    if let Some(content) = data.get("content") {
        write_all(&target, content).await?;
        eprintln!(
            "Saved {} ({}) from Secret {secret_name}",
            target.display(),
            bytes(content.len() as u64)
        );
        return Ok(());
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
    let url = data
        .get("url")
        .and_then(|v| String::from_utf8(v.clone()).ok())
        .ok_or_else(|| {
            PluginError::NotUsable(format!("Secret {secret_name} holds neither url nor content"))
        })?;
    let size = fetch_to(&url, &target, opts.max_bytes).await?;
    eprintln!(
        "Saved {} ({}) from Secret {secret_name}",
        target.display(),
        bytes(size)
    );
    Ok(())
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
        |rf| {
            let c = find_condition(&rf.status.as_ref()?.conditions, CONDITION_READY)?;
            Some(format!("Ready={} {}: {}", c.status, c.reason, c.message))
        },
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

/// `-o` as given ("-" is standard output), else the report's file name without any
/// directory part (a backend chooses it), else the ReportFile's name.
pub fn target_path(output: Option<&str>, file_name: Option<String>, report: &str) -> PathBuf {
    if let Some(o) = output {
        return PathBuf::from(o);
    }
    file_name
        .as_deref()
        .and_then(|f| {
            Path::new(f.rsplit(['/', '\\']).next().unwrap_or(f))
                .file_name()
                .map(PathBuf::from)
        })
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from(report))
}

fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes through a `.part` file renamed at the end, so an interrupted download never leaves
/// a file that looks complete. Plain blocking writes: a command-line tool has nothing else to
/// do meanwhile (and tokio is built without its fs feature).
struct Sink {
    target: PathBuf,
    part: PathBuf,
    out: std::io::BufWriter<Box<dyn Write + Send>>,
}

impl Sink {
    async fn open(target: &Path) -> Result<Sink, PluginError> {
        if is_stdout(target) {
            let out: Box<dyn Write + Send> = Box::new(std::io::stdout());
            return Ok(Sink {
                target: target.into(),
                part: target.into(),
                out: std::io::BufWriter::new(out),
            });
        }
        let mut part = target.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let file: Box<dyn Write + Send> = Box::new(std::fs::File::create(&part).map_err(io_error(&part))?);
        Ok(Sink {
            target: target.into(),
            part,
            out: std::io::BufWriter::with_capacity(1 << 20, file),
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), PluginError> {
        self.out.write_all(chunk).map_err(io_error(&self.part))
    }

    async fn finish(mut self) -> Result<(), PluginError> {
        self.out.flush().map_err(io_error(&self.part))?;
        if !is_stdout(&self.target) {
            std::fs::rename(&self.part, &self.target).map_err(io_error(&self.target))?;
        }
        Ok(())
    }

    async fn abandon(self) {
        if !is_stdout(&self.target) {
            drop(self.out);
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> PluginError {
    let path = path.display().to_string();
    move |source| PluginError::Io { path, source }
}

async fn write_all(target: &Path, content: &[u8]) -> Result<(), PluginError> {
    let mut sink = Sink::open(target).await?;
    match sink.write(content).await {
        Ok(()) => sink.finish().await,
        Err(e) => {
            sink.abandon().await;
            Err(e)
        }
    }
}

/// Streams `url` into `target`, refusing more than `max` bytes. Errors name the URL without
/// its query string, which holds the signature.
async fn fetch_to(url: &str, target: &Path, max: u64) -> Result<u64, PluginError> {
    let shown = redact_url(url);
    let fail =
        |e: reqwest::Error| PluginError::Download(format!("{shown}: {}", error_chain(&e.without_url())));
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        let same_host = attempt.previous().first().is_some_and(|first| {
            first.host_str() == attempt.url().host_str()
                && first.port_or_known_default() == attempt.url().port_or_known_default()
        });
        if same_host && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
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
    let total = resp.content_length();
    if let Some(t) = total.filter(|t| *t > max) {
        return Err(PluginError::Download(format!(
            "the file is {} (over the limit of {}; see --max-bytes)",
            bytes(t),
            bytes(max)
        )));
    }
    let mut sink = Sink::open(target).await?;
    let mut progress = Progress::new(total);
    let mut done: u64 = 0;
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                sink.abandon().await;
                return Err(fail(e));
            }
        };
        done = done.saturating_add(chunk.len() as u64);
        if done > max {
            sink.abandon().await;
            return Err(PluginError::Download(format!(
                "the file is over the limit of {} (see --max-bytes)",
                bytes(max)
            )));
        }
        if let Err(e) = sink.write(&chunk).await {
            sink.abandon().await;
            return Err(e);
        }
        progress.update(done);
    }
    progress.finish(done);
    sink.finish().await?;
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
    fn file_names_from_the_backend_lose_their_directories() {
        let cases = [
            (Some("out.csv"), Some("r.csv"), "out.csv"),
            (Some("-"), None, "-"),
            (None, Some("report.csv"), "report.csv"),
            (None, Some("../../etc/passwd"), "passwd"),
            (None, Some("C:\\tmp\\r.json"), "r.json"),
            (None, Some(".."), "rf-1"),
            (None, Some(""), "rf-1"),
            (None, None, "rf-1"),
        ];
        for (output, file_name, want) in cases {
            assert_eq!(
                target_path(output, file_name.map(String::from), "rf-1"),
                PathBuf::from(want),
                "{output:?} {file_name:?}"
            );
        }
    }
}
