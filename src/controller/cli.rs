//! The flags of `report-operator run` and the logging they choose.

use std::net::SocketAddr;

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
    /// Reconciles of each kind that may run at once.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u16,
    /// Run only while holding a Lease, so that of several replicas exactly one reconciles.
    #[arg(long, env = "REPORT_OPERATOR_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "report-operator")]
    pub leader_election_lease_name: String,
    /// Seconds a leader's Lease is valid without renewal: how long a new leader may wait
    /// after the old one died.
    #[arg(long, default_value_t = 15)]
    pub leader_election_lease_seconds: u64,
    /// Address ranges backend calls may reach although the outbound policy denies them by
    /// default (loopback, link-local and cloud metadata addresses), e.g. 127.0.0.1/32 for
    /// simulators on the same host. The Kubernetes API server stays denied.
    #[arg(long = "outbound-allow-cidr", env = "REPORT_OPERATOR_OUTBOUND_ALLOW_CIDRS", value_delimiter = ',')]
    pub outbound_allow_cidrs: Vec<ipnet::IpNet>,
    /// More address ranges backend calls may not reach (e.g. the cluster's pod and service
    /// ranges), on top of the defaults.
    #[arg(long = "outbound-deny-cidr", env = "REPORT_OPERATOR_OUTBOUND_DENY_CIDRS", value_delimiter = ',')]
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

/// Installs the tracing subscriber for `run` and `sim`.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn,tower=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
