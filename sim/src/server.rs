//! The running simulator: the listener, the connection loop, and the Rust handle tests use.
//!
//! Connections are served by hyper directly rather than `axum::serve`, because a lost answer
//! must close the connection without a response, which an infallible axum service cannot do:
//! an answer marked [`DropConnection`] becomes a service error, on which hyper closes the
//! connection unanswered.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use chrono::{DateTime, Utc};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tower_service::Service;

use super::http::DropConnection;
use super::{Fault, Sim, SimConfig, SimError, SimStats, cmp, lock, rde, router, supplier};
use crate::ReportingApi;

/// The error that makes hyper close a connection instead of answering.
#[derive(Debug, thiserror::Error)]
#[error("answer dropped on purpose (simulated lost response)")]
struct AnswerDropped;

/// A simulator listening on a local port. Dropping it stops it.
pub struct SimServer {
    sim: Arc<Sim>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl SimServer {
    /// Binds `listen` (port 0 picks a free port) and serves until [`SimServer::shutdown`] or
    /// drop. Returns once the socket listens, so the URLs work at once.
    pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<SimServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let sim = Sim::new(config, format!("http://{addr}")).map_err(|e| match e {
            SimError::Io(io) => io,
            other => std::io::Error::new(std::io::ErrorKind::InvalidInput, other.to_string()),
        })?;
        let sim = Arc::new(sim);
        let app = router(&sim);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(serve(listener, app, stopped));
        Ok(SimServer {
            sim,
            addr,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.sim.base_url.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The value for a ReportBackend's `spec.url`.
    pub fn backend_url(&self, t: ReportingApi) -> String {
        format!("{}{}", self.sim.base_url, t.path())
    }

    /// The value for a SUPPLIER ReportBackend's `spec.supplier.tokenUrl`.
    pub fn supplier_token_url(&self) -> String {
        format!("{}{}", self.sim.base_url, supplier::TOKEN_PATH)
    }

    /// The form of a client-credentials token request of the configured SUPPLIER client.
    pub fn supplier_token_form(&self) -> [(&'static str, String); 4] {
        let c = &self.sim.config.supplier;
        [
            ("grant_type", "client_credentials".to_string()),
            ("client_id", c.client_id.clone()),
            ("client_secret", c.client_secret.clone()),
            ("scope", c.scopes.join(" ")),
        ]
    }

    pub fn config(&self) -> &SimConfig {
        &self.sim.config
    }

    /// The same data as `GET /_sim/stats`.
    pub fn stats(&self) -> SimStats {
        self.sim.stats.snapshot()
    }

    /// Makes the next `fault.count` calls of an endpoint fail (as `POST /_sim/faults`).
    pub fn inject(&self, fault: Fault) {
        self.sim.faults.inject(fault);
    }

    /// Forgets injected faults that have not struck yet.
    pub fn clear_faults(&self) {
        self.sim.faults.clear();
    }

    /// Whether RDE has the RDEReportTemplate `id` (not deleted).
    pub fn rde_template_exists(&self, id: &str) -> bool {
        rde::template_exists(&self.sim, id)
    }

    /// Runs a PERIODIC RDE template's platform task as on the day of `at` (default now): a
    /// report file for the previous day (P1D) or month (P1M). Returns the file's APS id.
    pub fn rde_run_template(&self, id: &str, at: Option<DateTime<Utc>>) -> Result<String, SimError> {
        rde::run_template(&self.sim, id, at.unwrap_or_else(Utc::now)).map(|file| file.id)
    }

    /// A new invoice on the RDE platform: every ON_INVOICE template gets a report file.
    /// Returns the new files' APS ids.
    pub fn rde_invoice(&self) -> Vec<String> {
        rde::invoice(&self.sim, Utc::now())
            .files
            .into_iter()
            .map(|f| f.id)
            .collect()
    }

    /// A new invoice on CMP: a completed `on_invoice` report named `name` for the previous
    /// month. Returns its id.
    pub fn cmp_invoice(&self, name: &str) -> String {
        cmp::invoice_report(&self.sim, name, None, Utc::now())
    }

    /// Stops listening and closes every connection. Idempotent; also done on drop.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Accepts connections until `stopped`; aborting this task (or stopping) ends every
/// connection, because the connections live in its `JoinSet`.
async fn serve(listener: TcpListener, app: Router, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(stream, app.clone()));
                }
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Router) {
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut app = app.clone();
        async move {
            let response = match app.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                return Err(AnswerDropped);
            }
            Ok(response)
        }
    });
    // A connection error (client gone, answer dropped on purpose) ends only this connection.
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
