//! The flags of `report-operator run` and the logging they choose.

use std::net::SocketAddr;

use super::fair_share;

/// The default of `--concurrency`.
pub const DEFAULT_CONCURRENCY: u16 = 16;

/// Flags of `report-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch only this namespace (the chart's namespaced mode); default: all namespaces.
    #[arg(long, env = "REPORT_OPERATOR_NAMESPACE")]
    pub namespace: Option<String>,
    /// Address of the metrics (/metrics) and health (/healthz, /readyz) server.
    #[arg(long, env = "REPORT_OPERATOR_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Log format.
    #[arg(long, env = "REPORT_OPERATOR_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Log level of the operator's own logs: error, warn, info, debug or trace. RUST_LOG, when
    /// set, wins over it (a full filter, e.g. `info,report_operator=debug,kube=debug`).
    #[arg(long, env = "REPORT_OPERATOR_LOG_LEVEL", value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Reconciles of each kind that may run at once. One namespace holds at most three
    /// quarters of them, and any namespace holding fewer than a quarter may start one.
    #[arg(long, env = "REPORT_OPERATOR_CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: u16,
    /// Copies into ReportStores that may run at once, in all (each holds up to about 15 MiB).
    #[arg(long, env = "REPORT_OPERATOR_DELIVERY_CONCURRENCY", default_value_t = fair_share::DEFAULT_TOTAL)]
    pub delivery_concurrency: usize,
    /// Copies into ReportStores of one namespace that may run at once: no namespace holds
    /// more of the delivery pool, however many of its copies wait or hang.
    #[arg(long, env = "REPORT_OPERATOR_DELIVERY_PER_NAMESPACE", default_value_t = fair_share::DEFAULT_PER_NAMESPACE)]
    pub delivery_per_namespace: usize,
    /// Seconds after the deletion of a ReportFile or ReportGenerator during which its cleanup
    /// (its report on CONNECT, its copy kept with retention Delete, its RDE template) is
    /// retried when it cannot be done; then a Warning Event says what stays behind and the
    /// finalizer goes.
    #[arg(long, env = "REPORT_OPERATOR_DELETION_GRACE_SECONDS", default_value_t = super::finalizers::DEFAULT_DELETION_GRACE.as_secs())]
    pub deletion_grace_seconds: u64,
    /// Run only while holding a Lease, so that of several replicas exactly one reconciles.
    #[arg(long, env = "REPORT_OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "REPORT_OPERATOR_LEADER_ELECTION_LEASE_NAME",
        default_value = "report-operator"
    )]
    pub leader_election_lease_name: String,
    /// Seconds a leader's Lease is valid without renewal: how long a new leader may wait
    /// after the old one died.
    #[arg(
        long,
        env = "REPORT_OPERATOR_LEADER_ELECTION_LEASE_SECONDS",
        default_value_t = 15
    )]
    pub leader_election_lease_seconds: u64,
    /// Share the work with the other replicas: namespaces fall into --shards shards, and each
    /// replica reconciles the shards whose Lease it holds (`<lease-name>-shard-<i>` in the
    /// leader-election namespace, with its duration). Instead of --leader-elect.
    #[arg(long, env = "REPORT_OPERATOR_SHARDING", conflicts_with = "leader_elect")]
    pub sharding: bool,
    /// Number of shards with --sharding: the same in every replica. A namespace is in shard
    /// FNV-1a(namespace) mod N.
    #[arg(
        long,
        env = "REPORT_OPERATOR_SHARDS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub shards: u16,
    /// Address ranges backend calls may reach although the outbound policy denies them by
    /// default (loopback, link-local and cloud metadata addresses), e.g. 127.0.0.1/32 for
    /// simulators on the same host. The Kubernetes API server stays denied.
    #[arg(
        long = "outbound-allow-cidr",
        env = "REPORT_OPERATOR_OUTBOUND_ALLOW_CIDRS",
        value_delimiter = ','
    )]
    pub outbound_allow_cidrs: Vec<ipnet::IpNet>,
    /// More address ranges backend calls may not reach (e.g. the cluster's pod and service
    /// ranges), on top of the defaults.
    #[arg(
        long = "outbound-deny-cidr",
        env = "REPORT_OPERATOR_OUTBOUND_DENY_CIDRS",
        value_delimiter = ','
    )]
    pub outbound_deny_cidrs: Vec<ipnet::IpNet>,
    /// Allow backend URLs with http:// (credentials in clear text); default: https only.
    #[arg(long, env = "REPORT_OPERATOR_OUTBOUND_ALLOW_HTTP")]
    pub outbound_allow_http: bool,
    /// Allow ReportBackends to set `tls.insecureSkipVerify`; default: refused.
    #[arg(long, env = "REPORT_OPERATOR_OUTBOUND_ALLOW_INSECURE_TLS")]
    pub outbound_allow_insecure_tls: bool,
}

/// How log lines are written: text for people, JSON for log collectors.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// How much the operator logs, when RUST_LOG does not say.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The tracing filter for this level. The Kubernetes client and HTTP stack stay at warn
    /// (or quieter): at info and more verbose they log every request and watch.
    pub fn filter(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info,kube=warn,tower=warn,hyper=warn",
            LogLevel::Debug => "info,kube=warn,tower=warn,hyper=warn,report_operator=debug,report_sim=debug",
            LogLevel::Trace => "info,kube=warn,tower=warn,hyper=warn,report_operator=trace,report_sim=trace",
        }
    }
}

impl RunArgs {
    /// The delivery pool's limits the flags ask for.
    pub fn delivery_limits(&self) -> fair_share::Limits {
        fair_share::Limits {
            total: self.delivery_concurrency,
            per_namespace: self.delivery_per_namespace,
        }
    }

    /// Installs the tracing subscriber for `run`, with `--log-level` unless RUST_LOG is set.
    pub fn init_logging(&self) {
        init_logging_at(self.log_format, self.log_level);
    }
}

fn init_logging_at(format: LogFormat, level: LogLevel) {
    let rust_log = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV).ok();
    let (filter, ignored) = choose_filter(rust_log.as_deref(), level);
    if let Some(why) = ignored {
        eprintln!("warning: ignoring RUST_LOG ({why}); logging at --log-level");
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// RUST_LOG, when set and valid, wins over `level`; an invalid one is reported (the second
/// value), not fatal: a typo in a filter should not stop the operator.
fn choose_filter(rust_log: Option<&str>, level: LogLevel) -> (tracing_subscriber::EnvFilter, Option<String>) {
    match rust_log
        .filter(|v| !v.trim().is_empty())
        .map(tracing_subscriber::EnvFilter::try_new)
    {
        Some(Ok(filter)) => (filter, None),
        Some(Err(e)) => (
            tracing_subscriber::EnvFilter::new(level.filter()),
            Some(e.to_string()),
        ),
        None => (tracing_subscriber::EnvFilter::new(level.filter()), None),
    }
}

#[cfg(test)]
mod tests {
    use clap::{Args, Command};

    use super::*;

    /// Every flag of `run` can be set from the environment (a Deployment's `env`, a
    /// ConfigMap's `envFrom`), under the name the book's command-line reference documents. A
    /// new flag without an environment variable fails here.
    #[test]
    fn every_run_flag_has_its_environment_variable() {
        let expected = [
            ("namespace", "REPORT_OPERATOR_NAMESPACE"),
            ("metrics-addr", "REPORT_OPERATOR_METRICS_ADDR"),
            ("log-format", "REPORT_OPERATOR_LOG_FORMAT"),
            ("log-level", "REPORT_OPERATOR_LOG_LEVEL"),
            ("concurrency", "REPORT_OPERATOR_CONCURRENCY"),
            ("delivery-concurrency", "REPORT_OPERATOR_DELIVERY_CONCURRENCY"),
            ("delivery-per-namespace", "REPORT_OPERATOR_DELIVERY_PER_NAMESPACE"),
            ("deletion-grace-seconds", "REPORT_OPERATOR_DELETION_GRACE_SECONDS"),
            ("leader-elect", "REPORT_OPERATOR_LEADER_ELECT"),
            // The downward API's name for the pod's own namespace, which is the default.
            ("leader-election-namespace", "POD_NAMESPACE"),
            (
                "leader-election-lease-name",
                "REPORT_OPERATOR_LEADER_ELECTION_LEASE_NAME",
            ),
            (
                "leader-election-lease-seconds",
                "REPORT_OPERATOR_LEADER_ELECTION_LEASE_SECONDS",
            ),
            ("sharding", "REPORT_OPERATOR_SHARDING"),
            ("shards", "REPORT_OPERATOR_SHARDS"),
            // Repeatable flags: the variable holds a comma-separated list.
            ("outbound-allow-cidr", "REPORT_OPERATOR_OUTBOUND_ALLOW_CIDRS"),
            ("outbound-deny-cidr", "REPORT_OPERATOR_OUTBOUND_DENY_CIDRS"),
            ("outbound-allow-http", "REPORT_OPERATOR_OUTBOUND_ALLOW_HTTP"),
            (
                "outbound-allow-insecure-tls",
                "REPORT_OPERATOR_OUTBOUND_ALLOW_INSECURE_TLS",
            ),
        ];
        let command = RunArgs::augment_args(Command::new("run"));
        let actual: Vec<(String, Option<String>)> = command
            .get_arguments()
            .filter_map(|a| {
                a.get_long().map(|long| {
                    (
                        long.to_string(),
                        a.get_env().map(|e| e.to_string_lossy().into_owned()),
                    )
                })
            })
            .collect();
        let expected: Vec<(String, Option<String>)> = expected
            .iter()
            .map(|(flag, env)| (flag.to_string(), Some(env.to_string())))
            .collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn sharding_takes_a_bounded_shard_count_and_excludes_the_single_lease() {
        let parse = |args: &[&str]| {
            RunArgs::augment_args(Command::new("run"))
                .no_binary_name(true)
                .try_get_matches_from(args)
                .map(|m| <RunArgs as clap::FromArgMatches>::from_arg_matches(&m).expect("args"))
        };
        let default = parse(&["--sharding"]).expect("sharding");
        assert!(default.sharding && !default.leader_elect);
        assert_eq!(default.shards, 16);
        assert_eq!(
            parse(&["--sharding", "--shards", "1024"]).expect("max").shards,
            1024
        );
        for bad in [
            &["--shards", "0"][..],
            &["--shards", "1025"],
            &["--sharding", "--leader-elect"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_levels_choose_a_valid_filter_that_keeps_the_client_quiet() {
        let table = [
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info,kube=warn,tower=warn,hyper=warn"),
            (
                "debug",
                "info,kube=warn,tower=warn,hyper=warn,report_operator=debug,report_sim=debug",
            ),
            (
                "trace",
                "info,kube=warn,tower=warn,hyper=warn,report_operator=trace,report_sim=trace",
            ),
        ];
        for (flag, filter) in table {
            let args = <RunArgs as clap::FromArgMatches>::from_arg_matches(
                &RunArgs::augment_args(Command::new("run"))
                    .no_binary_name(true)
                    .get_matches_from(["--log-level", flag]),
            )
            .expect("parse");
            assert_eq!(args.log_level.filter(), filter, "--log-level={flag}");
            assert!(
                tracing_subscriber::EnvFilter::try_new(filter).is_ok(),
                "{filter} parses"
            );
        }
        let unknown = RunArgs::augment_args(Command::new("run"))
            .no_binary_name(true)
            .try_get_matches_from(["--log-level", "loud"]);
        assert!(unknown.is_err(), "an unknown level is refused");
    }

    #[test]
    fn rust_log_wins_over_the_level_when_set_and_valid() {
        let table = [
            (None, LogLevel::Debug, LogLevel::Debug.filter(), false),
            (Some(""), LogLevel::Warn, "warn", false),
            (Some("  "), LogLevel::Info, LogLevel::Info.filter(), false),
            (Some("info,kube=debug"), LogLevel::Error, "info,kube=debug", false),
            (Some("trace"), LogLevel::Info, "trace", false),
            (Some("info,kube=loud"), LogLevel::Warn, "warn", true),
        ];
        for (rust_log, level, expected, ignored) in table {
            let (filter, why) = choose_filter(rust_log, level);
            assert_eq!(
                filter.to_string(),
                tracing_subscriber::EnvFilter::new(expected).to_string(),
                "{rust_log:?} {level:?}"
            );
            assert_eq!(why.is_some(), ignored, "{rust_log:?}: {why:?}");
        }
    }
}
