//! TLS to a backend: a certificate from a private CA is trusted with the CA bundle that
//! `spec.tls.caSecretRef` names, refused without it, and accepted with `insecureSkipVerify`
//! where the outbound policy allows it.
//! The simulator speaks plain HTTP, so a TLS-terminating proxy on loopback stands in front.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use report_operator::api::{BackendType, LocalObjectReference, ReportBackendSpec, TlsSettings};
use report_operator::backend::{
    BackendError, ClientOptions, Limiter, OutboundPolicy, ReportingBackend, connect_with_options,
};
use report_sim::{SimConfig, SimServer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private CA and a server certificate for 127.0.0.1 signed by it.
fn private_ca() -> (String, ServerConfig) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key")).expect("ca");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf");
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let config =
        ServerConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .expect("server config");
    (ca.pem(), config)
}

/// Terminates TLS on a loopback port and passes the bytes to `upstream`.
async fn tls_proxy(config: ServerConfig, upstream: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// The proxy is on 127.0.0.1: a policy that allows it (over https only).
fn options(allow_insecure_tls: bool) -> ClientOptions {
    let loopback = vec!["127.0.0.1/32".parse().expect("cidr")];
    ClientOptions {
        policy: Arc::new(OutboundPolicy::new(
            loopback,
            Vec::new(),
            Vec::new(),
            false,
            allow_insecure_tls,
        )),
        ..Default::default()
    }
}

fn connect(
    spec: &ReportBackendSpec,
    credentials: &BTreeMap<String, Vec<u8>>,
    ca: Option<&[u8]>,
    insecure: bool,
) -> Result<Arc<dyn ReportingBackend>, BackendError> {
    connect_with_options(
        spec,
        credentials,
        ca,
        Limiter::for_backend(spec),
        &options(insecure),
    )
}

fn spec(url: String, tls: Option<TlsSettings>) -> ReportBackendSpec {
    ReportBackendSpec {
        type_: BackendType::Connect,
        url,
        credentials_secret_ref: LocalObjectReference { name: "c".into() },
        rde: None,
        cmp: None,
        fusion: None,
        supplier: None,
        limits: None,
        tls,
    }
}

#[tokio::test]
async fn a_private_ca_is_trusted_only_when_given() {
    let sim = SimServer::start(SimConfig::default(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("sim");
    let (ca_pem, server) = private_ca();
    let proxy = tls_proxy(server, sim.local_addr()).await;
    let url = format!("https://{proxy}/connect/public/v1");
    let credentials: BTreeMap<String, Vec<u8>> = [(
        "apiKey".to_string(),
        b"SU-000-000-000:connect-secret-key".to_vec(),
    )]
    .into();

    let untrusted = spec(url.clone(), None);
    let client = connect(&untrusted, &credentials, None, false).expect("client");
    let err = client.probe().await.expect_err("an unknown CA must be refused");
    assert_eq!(err.ready_reason(), "Unreachable", "{err}");

    let trusted = spec(url.clone(), None);
    let client = connect(&trusted, &credentials, Some(ca_pem.as_bytes()), false).expect("client");
    client.probe().await.expect("the private CA is trusted");

    let skip = spec(
        url,
        Some(TlsSettings {
            ca_secret_ref: None,
            insecure_skip_verify: Some(true),
        }),
    );
    let err = connect(&skip, &credentials, None, false)
        .err()
        .expect("the policy refuses insecureSkipVerify");
    assert_eq!(err.ready_reason(), "DestinationDenied", "{err}");
    assert!(err.to_string().contains("--outbound-allow-insecure-tls"), "{err}");
    let client = connect(&skip, &credentials, None, true).expect("client");
    client
        .probe()
        .await
        .expect("insecureSkipVerify skips verification");
}
