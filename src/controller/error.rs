//! The two error types: why a reconcile did not finish (and what its owner should hear of
//! it), and why `report-operator run` stopped.

use crate::api::reasons::Trouble;

/// Why a reconcile did not finish. Backend problems that are part of a report's life
/// (failures, rate limits) are not errors: they end up in status and Events. Every error is
/// retried with a backoff per object (`guard::error_policy`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API failed; retrying can help unless [`Error::condition`] says otherwise.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// Something the operator's own code holds true was not (a status field its own writes
    /// always set, a namespace a namespaced object always has): a bug, not the user's
    /// mistake. Users' mistakes are never errors: they are conditions with a reason (see
    /// [`crate::api::reasons`]) that say what to change.
    #[error("{0}")]
    Internal(String),
    /// The reconcile panicked: a bug, confined to the object that caused it.
    #[error("panicked: {0}")]
    Panicked(String),
    /// The reconcile took longer than it may and was stopped (a backend answering slowly).
    #[error("took longer than {0:?} and was stopped")]
    TimedOut(std::time::Duration),
}

impl Error {
    /// The Ready reason and message for an error that retrying alone will not fix, so that the
    /// object's owner hears of it; `None` for a transient one (an outage, a conflict).
    pub fn condition(&self) -> Option<(Trouble, String)> {
        match self {
            Error::Kube(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 413 | 422) => {
                let hint = if e.code == 403 {
                    "; the operator's RBAC does not allow it"
                } else {
                    ""
                };
                Some((
                    Trouble::KubernetesApiError,
                    format!(
                        "the Kubernetes API refused a request for this object: {} {}: {}{hint}; retried with backoff",
                        e.code, e.reason, e.message
                    ),
                ))
            }
            Error::Kube(_) => None,
            Error::Internal(message) => Some((
                Trouble::InternalError,
                format!(
                    "the operator failed on this object (a bug; please report it): {message}; retried with backoff"
                ),
            )),
            Error::TimedOut(limit) => Some((
                Trouble::ReconcileTimeout,
                format!(
                    "handling this object took longer than {} s and was stopped (is a backend answering slowly?); retried with backoff",
                    limit.as_secs()
                ),
            )),
            Error::Panicked(message) => Some((
                Trouble::InternalError,
                format!(
                    "the operator failed on this object (a bug; please report it): {message}; retried with backoff"
                ),
            )),
        }
    }
}

/// Why `report-operator run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The metrics and health server cannot listen (a port in use) or stopped.
    #[error("metrics server on {0}: {1}")]
    Metrics(std::net::SocketAddr, std::io::Error),
    /// No kubeconfig or in-cluster configuration to reach the API server with.
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("leader election: {0}")]
    LeaderElection(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took over, or the Lease could not be renewed in time; this one exits
    /// so that it never reconciles as a follower.
    #[error("lost the leader-election Lease")]
    LostLeadership,
    /// The Lease is too short for a margin between our stop and a standby's takeover.
    #[error("--leader-election-lease-seconds must be at least {min}")]
    LeaseTooShort { min: u64 },
    /// `--sharding` cannot name its Leases.
    #[error("sharding: {0}")]
    Sharding(String),
}
