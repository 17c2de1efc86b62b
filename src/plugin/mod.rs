//! Commands for people: the `kubectl report` plugin (also `report-operator report …`).
//!
//! They read and annotate the custom resources with the user's own kubeconfig, so they can
//! do no more than the user's RBAC allows; the operator does the work. No command prints a
//! download URL's query string: a signed URL is a credential, so the Secret is named instead.

mod download;
mod fetch;
mod progress;
pub mod release;
mod run;
mod save;
mod show;
pub mod terminal;

use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};

/// What a plugin command can fail with; `retry` says whether running it again may help.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No kubeconfig, or one that does not work: fix the configuration first.
    #[error("cannot load the kubeconfig: {0}")]
    Config(String),
    /// The API server refused or failed the request (RBAC, a missing CRD, an outage).
    #[error("{what}: {source}")]
    Kube { what: String, source: kube::Error },
    /// The object is not there.
    #[error("{kind} {name:?} not found in namespace {namespace:?}")]
    NotFound {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    /// The object is not in a state the command can use (not READY, not PERIODIC, …).
    #[error("{0}")]
    NotUsable(String),
    /// The operator did not answer in time (it may be down, or the backend not Ready).
    #[error("{0}")]
    Timeout(String),
    /// Fetching the report's file failed; the message never holds the URL's query string.
    #[error("download failed: {0}")]
    Download(String),
    /// Writing the file failed.
    #[error("writing {path}: {source}")]
    Io { path: String, source: std::io::Error },
    /// The file is there already; `--force` replaces it.
    #[error("{0} exists; --force replaces it")]
    Exists(String),
    /// A `.part` file is in the way (an interrupted download, or planted).
    #[error("{0} exists (left by an interrupted download?); remove it, or --force replaces it")]
    PartExists(String),
    /// The Secret's URL, or a redirect, is one the plugin does not fetch.
    #[error("download refused: {0}")]
    Refused(String),
    /// `release-finalizers --check`: objects hold the operator's finalizers.
    #[error(
        "{0} object(s) hold report-operator's finalizers (listed above); without the operator nothing removes them, \
and their namespaces would never finish deleting. Either delete them while the operator runs (it cleans up on \
the platforms) and try again, or leave what they made behind: stop the operator (helm uninstall --no-hooks), \
then run kubectl report release-finalizers --all -A. See \"Uninstalling\" in the documentation."
    )]
    Held(usize),
}

impl PluginError {
    /// Whether the same command may succeed later without anyone changing anything.
    pub fn retry(&self) -> bool {
        match self {
            PluginError::Kube { source, .. } => {
                !matches!(source, kube::Error::Api(s) if s.code == 401 || s.code == 403 || s.code == 422)
            }
            PluginError::Timeout(_) | PluginError::Download(_) => true,
            PluginError::Config(_)
            | PluginError::NotFound { .. }
            | PluginError::NotUsable(_)
            | PluginError::Io { .. }
            | PluginError::Exists(_)
            | PluginError::PartExists(_)
            | PluginError::Refused(_)
            | PluginError::Held(_) => false,
        }
    }

    /// The message for a terminal: API server and backend text in it escaped.
    pub fn shown(&self) -> String {
        terminal::escape(&self.to_string()).into_owned()
    }

    fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> PluginError {
        let what = what.into();
        move |source| PluginError::Kube { what, source }
    }
}

/// The arguments of `kubectl report` (and of `report-operator report`).
#[derive(Args, Debug)]
pub struct PluginArgs {
    /// Namespace of the objects; default: the kubeconfig context's namespace.
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// The two kinds a person asks about.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A ReportGenerator.
    #[value(
        name = "rg",
        alias = "reportgenerator",
        alias = "reportgenerators",
        alias = "generator"
    )]
    Generator,
    /// A ReportFile.
    #[value(
        name = "rf",
        alias = "reportfile",
        alias = "reportfiles",
        alias = "file",
        alias = "report"
    )]
    File,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// List generators and reports, or show what the one named is doing and why.
    Get {
        /// A ReportGenerator or ReportFile name; none: list both kinds.
        name: Option<String>,
    },
    /// Show what a generator or report is doing and why: status, conditions, recent Events.
    Status {
        /// rg (ReportGenerator) or rf (ReportFile).
        kind: Kind,
        name: String,
    },
    /// Save a READY report's file, re-minting an expired download URL first.
    ///
    /// The file is named as the backend names it when that is a plain name (no directory, no
    /// leading dot, no control character), else as the ReportFile. An existing file is not
    /// replaced without --force. Only https URLs are fetched (http with --allow-http), and
    /// redirects only on the same scheme, host and port.
    Download {
        /// The ReportFile.
        name: String,
        /// Where to write the file ("-": standard output; a directory: the file inside it);
        /// default: the report's file name in the working directory.
        #[arg(short, long)]
        output: Option<String>,
        /// Replace the file (and a leftover .part file) if it exists.
        #[arg(short, long)]
        force: bool,
        /// Fetch a plain http:// URL (an object store without TLS); the file and the URL's
        /// signature travel in clear text.
        #[arg(long)]
        allow_http: bool,
        /// Seconds to wait for the operator to re-mint the URL.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Refuse a file larger than this many bytes.
        #[arg(long, default_value_t = download::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        /// Always ask for a fresh URL, even when the current one is still valid.
        #[arg(long)]
        refresh: bool,
    },
    /// Remove the operator's finalizers, when the operator is gone, so that objects (and
    /// their namespaces) can be deleted; says for each what stays behind on the platforms.
    ///
    /// Only the operator's finalizers go (reporting.report-operator.io/connect-report,
    /// /delivery and /rde-template); other controllers' stay. Stop the operator first: while
    /// it runs it adds them back to the objects it reconciles.
    ReleaseFinalizers {
        /// rf/NAME, rg/NAME, or NAME (the ReportFile and ReportGenerator of that name).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        objects: Vec<String>,
        /// Every ReportFile and ReportGenerator of the namespace.
        #[arg(long)]
        all: bool,
        /// With --all: of every namespace.
        #[arg(short = 'A', long, requires = "all")]
        all_namespaces: bool,
        /// Say what would be released and what would stay behind; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Change nothing, and fail when any object holds the operator's finalizers (the
        /// chart's uninstall check).
        #[arg(long, conflicts_with = "dry_run")]
        check: bool,
    },
    /// Ask a PERIODIC generator to report on its latest complete window now.
    Run {
        /// The ReportGenerator.
        name: String,
        /// Seconds to wait for the operator to take the request (0: do not wait).
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

/// Runs one plugin command with the kubeconfig's client and namespace.
pub async fn run(args: PluginArgs) -> Result<(), PluginError> {
    let config = kube::Config::infer()
        .await
        .map_err(|e| PluginError::Config(e.to_string()))?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
    let ctx = Ctx { client, namespace };
    match args.command {
        PluginCommand::Get { name: None } => show::list(&ctx).await,
        PluginCommand::Get { name: Some(name) } => show::get_named(&ctx, &name).await,
        PluginCommand::Status { kind, name } => show::status(&ctx, kind, &name).await,
        PluginCommand::Download {
            name,
            output,
            force,
            allow_http,
            timeout,
            max_bytes,
            refresh,
        } => {
            let opts = download::Options {
                output,
                timeout: Duration::from_secs(timeout),
                max_bytes,
                force_refresh: refresh,
                force,
                allow_http,
            };
            download::download(&ctx, &name, &opts).await
        }
        PluginCommand::ReleaseFinalizers {
            objects,
            all,
            all_namespaces,
            dry_run,
            check,
        } => {
            let mode = match (dry_run, check) {
                (_, true) => release::Mode::Check,
                (true, false) => release::Mode::DryRun,
                (false, false) => release::Mode::Release,
            };
            let opts = release::Options {
                objects,
                all,
                all_namespaces,
                mode,
            };
            release::release(&ctx, &opts).await
        }
        PluginCommand::Run { name, wait } => run::run_now(&ctx, &name, Duration::from_secs(wait)).await,
    }
}

/// The client and namespace every command works in.
pub struct Ctx {
    pub client: kube::Client,
    pub namespace: String,
}

/// A new annotation value: the current time to the nanosecond, so two requests never share one
/// and a person reading the object sees when it was asked.
fn fresh_annotation_value() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}
