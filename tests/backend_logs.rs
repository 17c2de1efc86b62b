//! The clients' logs, captured whole (every level, every crate, in a test binary of its own
//! so that the subscriber is the process's only one), hold no credential, token or signature.

mod backend_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use report_operator::api::BackendType;
use report_operator::backend::Download;
use report_sim::{Fault, FaultKind};

use backend_support::*;

/// A writer into a shared buffer, for a tracing subscriber.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;

    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

/// Everything the clients do, with every fault, with all trace output of the process (every
/// level, every crate, the simulator's too) going to a buffer.
#[tokio::test]
async fn logs_never_show_credentials_tokens_or_signatures() {
    let buffer = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(buffer.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber of this binary");
    let mut config = fast();
    config.cmp.token_lifetime_secs = 1;
    config.fusion.access_token_lifetime_secs = 1;
    let sim = start(config).await;
    let mut urls = Vec::new();
    for t in ALL_TYPES {
        let backend = client(&sim, t);
        backend.probe().await.expect("probe");
        let (create, get) = endpoints(t);
        sim.inject(Fault::new(sim_api(t), get, FaultKind::TooManyRequests, 1).with_retry_after(1));
        sim.inject(Fault::new(sim_api(t), get, FaultKind::ServerError, 1));
        let (_, download) = run(backend.as_ref(), &request(t, "Logged")).await;
        if let Some(Download::Url { url, .. }) = download {
            urls.push(url);
        }
        run(backend.as_ref(), &request(t, "Logged FAIL"))
            .await
            .0
            .state
            .is_finished()
            .then_some(())
            .expect("done");
        if t != BackendType::Fusion {
            let req = request(t, "Logged lost");
            sim.inject(Fault::new(sim_api(t), create, FaultKind::LostResponse, 1));
            backend.submit(&req).await.expect_err("lost");
            backend
                .find(&req, &Default::default())
                .await
                .expect("find")
                .expect("found");
        }
        let wrong = client_with(&spec(&sim, t, None), &wrong_credentials(t));
        wrong.probe().await.expect_err("refused");
        wrong
            .submit(&request(t, "Logged refused"))
            .await
            .expect_err("refused");
        tracing::info!(error = %wrong.probe().await.expect_err("refused"), "what the controller would log");
    }
    // A token renewed after expiry (CMP from expiresInSeconds, FUSION on 401).
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for t in [BackendType::Cmp, BackendType::Fusion] {
        run(client(&sim, t).as_ref(), &request(t, "Logged later")).await;
    }
    let logs = String::from_utf8(buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone()).expect("utf8");
    assert!(
        logs.matches("backend call").count() > 50,
        "the capture works:\n{logs}"
    );
    assert!(logs.contains("backend call failed"), "errors were logged");
    assert!(
        logs.lines()
            .any(|l| l.contains("backend call failed") && l.contains("correlation_id")),
        "CMP's correlation ids of failed calls are logged for support"
    );
    let mut forbidden: Vec<String> = ALL_TYPES
        .iter()
        .flat_map(|t| {
            credentials(*t)
                .into_values()
                .chain(wrong_credentials(*t).into_values())
        })
        .map(|v| String::from_utf8(v).expect("utf8"))
        .collect();
    forbidden.extend(
        [
            // The header of every token the simulator mints (base64url of {"alg":"HS256","typ":"JWT"}).
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            "Bearer ",
            "ApiKey ",
            "Basic ",
            "oauth_signature",
            "sig=",
            "client_secret",
        ]
        .map(String::from),
    );
    assert!(!urls.is_empty());
    for url in &urls {
        let query = url
            .split_once('?')
            .map(|(_, q)| q)
            .expect("signed URLs have a query");
        forbidden.push(query.to_string());
    }
    for f in forbidden {
        assert!(!logs.contains(&f), "the logs hold {f:?}:\n{logs}");
    }
}
