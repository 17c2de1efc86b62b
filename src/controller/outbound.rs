//! The operator's outbound policy, from its flags and from where the Kubernetes API server is:
//! backend calls go only where a cluster admin allows, never to the API server itself (with
//! the operator's own credentials a tenant's ReportBackend could otherwise reach it).

use std::net::SocketAddr;

use crate::backend::OutboundPolicy;

use super::cli::RunArgs;

/// The policy of `report-operator run`: its `--outbound-*` flags, and the API server's
/// addresses denied always.
pub async fn policy(args: &RunArgs, config: &kube::Config) -> OutboundPolicy {
    let mut denied = Vec::new();
    if let Some(host) = config.cluster_url.host() {
        let port = config.cluster_url.port_u16().unwrap_or(443);
        denied.extend(resolve(host.trim_start_matches('[').trim_end_matches(']'), port).await);
    }
    // In a pod, the API server's Service address (the kubeconfig may name another route).
    if let (Ok(host), Ok(port)) = (
        std::env::var("KUBERNETES_SERVICE_HOST"),
        std::env::var("KUBERNETES_SERVICE_PORT"),
    ) && let Ok(port) = port.parse()
    {
        denied.extend(resolve(&host, port).await);
    }
    denied.sort();
    denied.dedup();
    OutboundPolicy::new(
        args.outbound_allow_cidrs.clone(),
        args.outbound_deny_cidrs.clone(),
        denied,
        args.outbound_allow_http,
        args.outbound_allow_insecure_tls,
    )
}

/// The addresses `host:port` resolves to now; none when it does not resolve (then there is
/// nothing to deny by address, and the name itself is not reachable either).
async fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            tracing::warn!(host, error = %e, "could not resolve the API server's address for the outbound policy");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_api_server_of_the_kubeconfig_is_denied() {
        let config = kube::Config::new("https://127.0.0.1:6443".parse().expect("url"));
        let args = <RunArgs as clap::FromArgMatches>::from_arg_matches(
            &<RunArgs as clap::Args>::augment_args(clap::Command::new("run")).get_matches_from([
                "run",
                "--outbound-allow-cidr=127.0.0.1/32",
                "--outbound-allow-http",
            ]),
        )
        .expect("flags");
        let policy = policy(&args, &config).await;
        assert!(
            policy
                .socket_denial("127.0.0.1:6443".parse().expect("addr"))
                .is_some(),
            "the API server"
        );
        assert!(
            policy
                .socket_denial("127.0.0.1:18080".parse().expect("addr"))
                .is_none(),
            "an allowed simulator"
        );
        assert!(policy.allows_http());
        assert!(!policy.allows_insecure_tls());
    }
}
