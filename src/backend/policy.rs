//! The operator's outbound policy: which addresses backend calls may reach.
//!
//! A ReportBackend's URL is written by whoever may create ReportBackends in a namespace, and
//! the operator calls it with its own network identity. Without a policy, a `spec.url` of
//! `http://169.254.169.254/` or of the Kubernetes API server would make the operator fetch
//! cloud credentials or call the API server for that person. So by default loopback,
//! link-local (with the cloud metadata address), the IPv6 metadata address, unspecified,
//! multicast and broadcast addresses are denied, and the API server's own sockets always are.
//!
//! The policy is enforced twice, because neither place sees everything: [`Guard`] is the
//! client's DNS resolver (so a name that resolves to a denied address, now or after a DNS
//! change, is never connected to), and [`Guard::check`] runs before every call (reqwest does
//! not resolve IP literals, and only there is the port known, which the API-server rule needs).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

pub use ipnet::IpNet;
use url::{Host, Url};

use super::error::{BackendError, redact_url};

/// The operator flag that adds exceptions to the default deny ranges.
pub const FLAG_ALLOW_CIDR: &str = "--outbound-allow-cidr";
/// The operator flag that denies more ranges.
pub const FLAG_DENY_CIDR: &str = "--outbound-deny-cidr";
/// The operator flag that permits plain http:// backend URLs.
pub const FLAG_ALLOW_HTTP: &str = "--outbound-allow-http";
/// The operator flag that permits `spec.tls.insecureSkipVerify`.
pub const FLAG_ALLOW_INSECURE_TLS: &str = "--outbound-allow-insecure-tls";

/// The cloud metadata service (AWS, GCP, Azure, OpenStack): link-local, named apart so that
/// the message says what it is.
const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// AWS's IPv6 metadata service (a unique-local address, not covered by any other rule).
const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Which destinations backend calls may reach, for the whole operator (set by its flags).
/// The default is the strict policy: https only, certificates verified, the default deny
/// ranges denied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    allow_cidrs: Vec<IpNet>,
    deny_cidrs: Vec<IpNet>,
    denied_sockets: Vec<SocketAddr>,
    allow_http: bool,
    allow_insecure_tls: bool,
}

/// Why an address is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// One of the Kubernetes API server's sockets: denied whatever the CIDRs say.
    ApiServer,
    /// In one of the `deny_cidrs`.
    DenyCidr(IpNet),
    /// In a default deny range (loopback, link-local, …) that no `allow_cidrs` entry allows;
    /// the text names the range.
    Default(&'static str),
}

impl Denial {
    /// What a person reads after the address: the rule and how to change it.
    pub fn explain(&self) -> String {
        match self {
            Denial::ApiServer => {
                "is the Kubernetes API server; the operator's outbound policy always denies it".to_string()
            }
            Denial::DenyCidr(net) => {
                format!("is in {net}, which the operator's outbound policy denies ({FLAG_DENY_CIDR})")
            }
            Denial::Default(what) => {
                format!(
                    "is {what}; the operator's outbound policy denies it: allow it with {FLAG_ALLOW_CIDR}"
                )
            }
        }
    }
}

impl OutboundPolicy {
    /// A policy from the operator's flags. `allow_cidrs` are exceptions to the default deny
    /// ranges (e.g. 127.0.0.1/32 for a demo); `deny_cidrs` deny more and win over
    /// `allow_cidrs`; `denied_sockets` (the API server's addresses) are denied always.
    pub fn new(
        allow_cidrs: Vec<IpNet>,
        deny_cidrs: Vec<IpNet>,
        denied_sockets: Vec<SocketAddr>,
        allow_http: bool,
        allow_insecure_tls: bool,
    ) -> Self {
        let canonical = |s: SocketAddr| SocketAddr::new(s.ip().to_canonical(), s.port());
        OutboundPolicy {
            allow_cidrs: allow_cidrs.into_iter().map(|n| n.trunc()).collect(),
            deny_cidrs: deny_cidrs.into_iter().map(|n| n.trunc()).collect(),
            denied_sockets: denied_sockets.into_iter().map(canonical).collect(),
            allow_http,
            allow_insecure_tls,
        }
    }

    /// Whether plain http:// URLs are permitted.
    pub fn allows_http(&self) -> bool {
        self.allow_http
    }

    /// Whether `spec.tls.insecureSkipVerify` is permitted.
    pub fn allows_insecure_tls(&self) -> bool {
        self.allow_insecure_tls
    }

    /// Why `addr` may not be connected to, or `None` when it may.
    pub fn socket_denial(&self, addr: SocketAddr) -> Option<Denial> {
        let ip = addr.ip().to_canonical();
        if self.denied_sockets.contains(&SocketAddr::new(ip, addr.port())) {
            return Some(Denial::ApiServer);
        }
        self.ip_denial(ip)
    }

    /// Why `ip` may not be connected to on any port (the rules by address alone), or `None`.
    pub fn ip_denial(&self, ip: IpAddr) -> Option<Denial> {
        let ip = ip.to_canonical();
        if let Some(net) = self.deny_cidrs.iter().find(|n| n.contains(&ip)) {
            return Some(Denial::DenyCidr(*net));
        }
        let what = default_denied(ip)?;
        if self.allow_cidrs.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        Some(Denial::Default(what))
    }

    /// Whether `ip` is the address of a denied socket with one of `ports`.
    fn is_denied_socket_ip(&self, ip: IpAddr, ports: &BTreeSet<u16>) -> bool {
        let ip = ip.to_canonical();
        self.denied_sockets
            .iter()
            .any(|s| s.ip() == ip && ports.contains(&s.port()))
    }
}

/// The default deny range `ip` (canonical) is in, by name.
fn default_denied(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4 == METADATA_V4 {
                Some("link-local (cloud metadata)")
            } else if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.octets()[0] == 0 {
                // 0.0.0.0/8: "this host"; a connection to 0.0.0.0 reaches the local machine.
                Some("unspecified")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6 == METADATA_V6 {
                Some("the IPv6 cloud metadata address")
            } else if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_unicast_link_local() {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// The policy as one client applies it: the pre-call check and the DNS resolver. Clones
/// share the ports the client has called, which the resolver needs for the API-server rule.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    policy: Arc<OutboundPolicy>,
    /// Every port this client has called (a base URL and maybe a token URL): the resolver
    /// does not learn the port, so it drops an API server address if its port is among them.
    ports: Arc<Mutex<BTreeSet<u16>>>,
}

/// The resolver's error when every address of a name is denied; found again in reqwest's
/// error chain and turned into [`BackendError::DestinationDenied`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ResolveDenied {
    pub message: String,
}

impl Guard {
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Guard {
            policy,
            ports: Arc::default(),
        }
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    fn ports(&self) -> std::sync::MutexGuard<'_, BTreeSet<u16>> {
        // The set only grows, so a panic elsewhere cannot leave it inconsistent.
        self.ports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks the destination of a call before it is sent: the scheme, an IP literal with its
    /// port, or every address a name resolves to (denied when none is allowed). The resolver
    /// checks again at connect time, so a DNS answer that changes in between gains nothing.
    pub async fn check(&self, url: &Url) -> Result<(), BackendError> {
        if url.scheme() == "http" && !self.policy.allow_http {
            return Err(http_denied(url.as_str(), "the URL"));
        }
        let port = url
            .port_or_known_default()
            .ok_or_else(|| BackendError::protocol("a URL without a port"))?;
        self.ports().insert(port);
        let (name, addrs) = match url.host() {
            Some(Host::Ipv4(ip)) => (None, vec![SocketAddr::new(IpAddr::V4(ip), port)]),
            Some(Host::Ipv6(ip)) => (None, vec![SocketAddr::new(IpAddr::V6(ip), port)]),
            Some(Host::Domain(name)) => {
                let addrs =
                    tokio::net::lookup_host((name, port))
                        .await
                        .map_err(|e| BackendError::Transient {
                            message: format!("cannot resolve {name}: {e}"),
                            retry_after: None,
                        })?;
                (Some(name), addrs.collect())
            }
            None => {
                return Err(BackendError::protocol(format!(
                    "{} has no host",
                    redact_url(url.as_str())
                )));
            }
        };
        let mut first_denial = None;
        for addr in &addrs {
            match self.policy.socket_denial(*addr) {
                None => return Ok(()),
                Some(d) => {
                    first_denial.get_or_insert((*addr, d));
                }
            }
        }
        let Some((addr, denial)) = first_denial else {
            return Err(BackendError::Transient {
                message: format!("{} resolves to no address", name.unwrap_or_default()),
                retry_after: None,
            });
        };
        let subject = match name {
            Some(name) => format!("{name} resolves to {}, which", addr.ip()),
            None if denial == Denial::ApiServer => addr.to_string(),
            None => addr.ip().to_string(),
        };
        Err(BackendError::DestinationDenied {
            message: format!("{subject} {}", denial.explain()),
        })
    }

    /// The addresses of `name` the client may connect to.
    fn admit(&self, name: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, ResolveDenied> {
        let ports = self.ports().clone();
        let mut denied = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| {
                let denial = match self.policy.ip_denial(a.ip()) {
                    Some(d) => Some(d),
                    None if self.policy.is_denied_socket_ip(a.ip(), &ports) => Some(Denial::ApiServer),
                    None => None,
                };
                if let Some(d) = denial {
                    denied.get_or_insert((a.ip(), d));
                }
                denial.is_none()
            })
            .collect();
        match (allowed.is_empty(), denied) {
            (true, Some((ip, d))) => Err(ResolveDenied {
                message: format!("{name} resolves to {ip}, which {}", d.explain()),
            }),
            _ => Ok(allowed),
        }
    }
}

impl reqwest::dns::Resolve for Guard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            // Port 0: reqwest puts the URL's port in afterwards.
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = guard.admit(&host, addrs)?;
            Ok::<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>>(Box::new(allowed.into_iter()))
        })
    }
}

/// The refusal of a plain http:// URL.
pub(crate) fn http_denied(raw: &str, what: &str) -> BackendError {
    BackendError::DestinationDenied {
        message: format!(
            "{what} {} uses plain http://, which the operator's outbound policy refuses: use https://, or start the operator with {FLAG_ALLOW_HTTP}",
            redact_url(raw)
        ),
    }
}

/// The refusal of `spec.tls.insecureSkipVerify`.
pub(crate) fn insecure_tls_denied() -> BackendError {
    BackendError::DestinationDenied {
        message: format!(
            "spec.tls.insecureSkipVerify is refused by the operator's outbound policy: give the backend's CA in spec.tls.caSecretRef, or start the operator with {FLAG_ALLOW_INSECURE_TLS}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().expect("socket")
    }

    #[test]
    fn default_policy_decisions() {
        let strict = OutboundPolicy::default();
        let table: &[(&str, bool)] = &[
            ("127.0.0.1:443", false),
            ("127.8.9.10:443", false),
            ("[::1]:443", false),
            ("169.254.169.254:80", false),
            ("169.254.1.1:443", false),
            ("[fe80::1]:443", false),
            ("[fd00:ec2::254]:80", false),
            ("0.0.0.0:443", false),
            ("0.1.2.3:443", false),
            ("[::]:443", false),
            ("224.0.0.1:443", false),
            ("[ff02::1]:443", false),
            ("255.255.255.255:443", false),
            ("[::ffff:127.0.0.1]:443", false),
            ("[::ffff:169.254.169.254]:80", false),
            ("10.0.0.1:443", true),
            ("192.168.1.1:443", true),
            ("93.184.216.34:443", true),
            ("[2606:4700::1]:443", true),
            ("[fd00:ec2::253]:443", true),
        ];
        for (addr, allowed) in table {
            assert_eq!(strict.socket_denial(sock(addr)).is_none(), *allowed, "{addr}");
        }
    }

    #[test]
    fn configured_policy_decisions() {
        let api = sock("10.96.0.1:443");
        let policy = OutboundPolicy::new(
            vec![net("127.0.0.1/32"), net("10.0.0.0/8"), net("169.254.0.0/16")],
            vec![net("10.1.0.0/16"), net("169.254.169.254/32")],
            vec![api, sock("[::ffff:172.18.0.2]:6443")],
            true,
            false,
        );
        let table: &[(&str, Option<Denial>)] = &[
            ("127.0.0.1:8080", None),
            ("127.0.0.2:8080", Some(Denial::Default("loopback"))),
            ("[::1]:8080", Some(Denial::Default("loopback"))),
            ("10.2.3.4:443", None),
            ("10.1.2.3:443", Some(Denial::DenyCidr(net("10.1.0.0/16")))),
            ("169.254.1.1:443", None),
            (
                "169.254.169.254:80",
                Some(Denial::DenyCidr(net("169.254.169.254/32"))),
            ),
            // The API server: by socket, whatever the CIDRs say, in either address form.
            ("10.96.0.1:443", Some(Denial::ApiServer)),
            ("10.96.0.1:8443", None),
            ("172.18.0.2:6443", Some(Denial::ApiServer)),
            ("[::ffff:10.96.0.1]:443", Some(Denial::ApiServer)),
        ];
        for (addr, want) in table {
            assert_eq!(policy.socket_denial(sock(addr)), *want, "{addr}");
        }
        assert!(policy.allows_http());
        assert!(!policy.allows_insecure_tls());
    }

    #[test]
    fn messages_name_the_rule_and_the_flag() {
        let m = Denial::Default("link-local (cloud metadata)").explain();
        assert!(
            m.contains("link-local (cloud metadata)") && m.contains(FLAG_ALLOW_CIDR),
            "{m}"
        );
        assert!(
            Denial::DenyCidr(net("10.0.0.0/8"))
                .explain()
                .contains(FLAG_DENY_CIDR)
        );
        assert!(
            http_denied("http://h/p?sig=SECRET", "spec.url")
                .to_string()
                .contains(FLAG_ALLOW_HTTP)
        );
        assert!(
            !http_denied("http://h/p?sig=SECRET", "spec.url")
                .to_string()
                .contains("SECRET")
        );
        assert!(
            insecure_tls_denied()
                .to_string()
                .contains(FLAG_ALLOW_INSECURE_TLS)
        );
    }

    #[tokio::test]
    async fn checks_before_a_call() {
        let strict = Guard::new(Arc::new(OutboundPolicy::default()));
        let url = |s: &str| Url::parse(s).expect("url");
        let err = strict
            .check(&url("https://169.254.169.254/latest?token=SECRET"))
            .await
            .expect_err("metadata");
        let BackendError::DestinationDenied { message } = &err else {
            panic!("{err:?}")
        };
        assert!(
            message.starts_with("169.254.169.254 is link-local (cloud metadata)"),
            "{message}"
        );
        assert!(!message.contains("SECRET"), "{message}");
        let err = strict
            .check(&url("http://93.184.216.34/"))
            .await
            .expect_err("plain http");
        assert!(err.to_string().contains(FLAG_ALLOW_HTTP), "{err}");
        strict
            .check(&url("https://93.184.216.34/"))
            .await
            .expect("a public address");
        let err = strict
            .check(&url("https://localhost:1/"))
            .await
            .expect_err("localhost");
        assert!(
            err.to_string()
                .starts_with("destination denied: localhost resolves to "),
            "{err}"
        );

        let api = sock("127.0.0.1:6443");
        let open = Guard::new(Arc::new(OutboundPolicy::new(
            vec![net("127.0.0.0/8")],
            vec![],
            vec![api],
            true,
            false,
        )));
        open.check(&url("http://localhost:6444/"))
            .await
            .expect("loopback is allowed");
        let err = open
            .check(&url("https://127.0.0.1:6443/"))
            .await
            .expect_err("the API server");
        assert!(
            err.to_string()
                .contains("127.0.0.1:6443 is the Kubernetes API server"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_resolver_drops_denied_addresses() {
        use reqwest::dns::Resolve;
        use std::str::FromStr;
        let name = || reqwest::dns::Name::from_str("localhost").expect("name");
        let strict = Guard::new(Arc::new(OutboundPolicy::default()));
        let err = strict.resolve(name()).await.err().expect("localhost is denied");
        let denied = err.downcast_ref::<ResolveDenied>().expect("a policy denial");
        assert!(denied.message.contains("loopback"), "{}", denied.message);

        let v4_only = Guard::new(Arc::new(OutboundPolicy::new(
            vec![net("127.0.0.1/32")],
            vec![],
            vec![],
            true,
            false,
        )));
        let addrs: Vec<SocketAddr> = v4_only
            .resolve(name())
            .await
            .expect("127.0.0.1 is allowed")
            .collect();
        assert!(
            !addrs.is_empty() && addrs.iter().all(|a| a.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );

        // The API server's address is dropped once the client has called its port.
        let api = Guard::new(Arc::new(OutboundPolicy::new(
            vec![net("127.0.0.0/8")],
            vec![],
            vec![sock("127.0.0.1:6443")],
            true,
            false,
        )));
        assert!(api.resolve(name()).await.is_ok());
        api.ports().insert(6443);
        assert!(api.resolve(name()).await.is_err());
    }
}
