//! report-sim: simulators of the five reporting APIs, faithful to `shared/BACKENDS.md` and the
//! seed documents, in one HTTP server, for tests, demos and benchmarks.
//!
//! Each API lives under its own path prefix, so that clients are also tested for keeping a
//! base URL's path (`docs/src/development/interfaces.md`):
//!
//! | API      | ReportBackend `spec.url`   | endpoint names (for faults and statistics)                   |
//! |----------|----------------------------|--------------------------------------------------------------|
//! | RDE      | `{base}/rde`               | `create`, `lookup`, `get`, `reportFiles`, `delete`           |
//! | CMP      | `{base}/cmp/marketplace`   | `token`, `list`, `create`, `get`                             |
//! | CONNECT  | `{base}/connect/public/v1` | `list`, `create`, `get`, `delete`, `download`, `schedules`   |
//! | FUSION   | `{base}/fusion`            | `login`, `refresh`, `phone_usage`, `product_usage`, `license`|
//! | SUPPLIER | `{base}/supplier`          | `generate`, `get`, `list`, `link`; token: `token`            |
//!
//! SUPPLIER's token endpoint is `{base}/supplier-auth/oauth/v2/token`; every file is
//! downloaded from `{base}/storage/…` with a signed, expiring URL ([`storage`]); control and
//! introspection are under `{base}/_sim/` ([`control`]).
//!
//! Reports progress by wall-clock time (their state is computed from timestamps on each
//! read); a report whose name contains `FAIL` ends failed. State is kept in memory, one lock
//! per API, never held across an await.

// Helpers here return the finished HTTP answer as their error, which the handler returns at
// once; boxing it would only add an allocation to every refused request.
#![allow(clippy::result_large_err)]

mod api;
mod cli;
mod cmp;
mod config;
mod connect;
mod content;
mod control;
mod faults;
mod fusion;
mod http;
mod job;
mod oauth1;
mod rde;
mod rql;
mod server;
mod signing;
mod stats;
mod storage;
mod supplier;
mod window;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};

pub use api::ReportingApi;
pub use cli::{SimArgs, run_cli};
pub use config::{Behaviour, CmpConfig, ConnectConfig, FusionConfig, RdeConfig, SimConfig, SupplierConfig};
pub use faults::{Fault, FaultKind};
pub use server::SimServer;
pub use stats::{GenerationCount, PeakInProgress, RequestCount, STORAGE, SimStats};

/// Why the simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A control request named something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A control request asked for something that cannot be done.
    #[error("{0}")]
    Control(String),
}

/// The path of SUPPLIER's OAuth2 token endpoint.
pub const SUPPLIER_TOKEN_PATH: &str = supplier::TOKEN_PATH;

/// Locks a mutex; a panic elsewhere while it was held leaves the data usable (every update
/// here is a single insert or counter step).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything the handlers share.
pub(crate) struct Sim {
    pub config: SimConfig,
    /// `http://host:port`, without a trailing slash.
    pub base_url: String,
    pub stats: stats::Recorder,
    pub faults: faults::Faults,
    pub storage: storage::Storage,
    pub signer: signing::Signer,
    pub rde: Mutex<rde::Records>,
    pub cmp: Mutex<cmp::Records>,
    pub connect: Mutex<connect::Records>,
    pub supplier: Mutex<supplier::Records>,
}

impl Sim {
    fn new(config: SimConfig, base_url: String) -> Result<Self, SimError> {
        config.validate()?;
        let key = match &config.signing_key {
            Some(k) => k.as_bytes().to_vec(),
            None => uuid::Uuid::new_v4().as_bytes().to_vec(),
        };
        let signer = signing::Signer::new(&key).map_err(|e| SimError::Config(format!("signingKey: {e}")))?;
        Ok(Sim {
            stats: stats::Recorder::default(),
            faults: faults::Faults::new(config.seed),
            storage: storage::Storage::default(),
            signer,
            rde: Mutex::new(rde::Records::default()),
            cmp: Mutex::new(cmp::Records::new(&config.cmp)),
            connect: Mutex::new(connect::Records::default()),
            supplier: Mutex::new(supplier::Records::new(&config.supplier)),
            config,
            base_url,
        })
    }

    /// A new report's life: it fails if a name contains `FAIL` or by the failure rate.
    pub fn new_job<'a>(
        &self,
        backend: ReportingApi,
        names: impl IntoIterator<Item = &'a str>,
        now: DateTime<Utc>,
    ) -> job::Job {
        let behaviour = self.config.behaviour(backend);
        let fails = job::named_to_fail(names) || self.faults.chance(behaviour.failure_rate);
        job::Job::new(now, behaviour.generation(), fails)
    }

    /// The signed URL of a stored file.
    pub fn signed_url(&self, path: &str, expires: DateTime<Utc>) -> String {
        storage::signed_url(&self.signer, &self.base_url, path, expires)
    }
}

/// All routes: the five APIs, storage and control.
fn router(sim: &Arc<Sim>) -> Router {
    Router::new()
        .merge(rde::routes(sim))
        .merge(cmp::routes(sim))
        .merge(connect::routes(sim))
        .merge(fusion::routes(sim))
        .merge(supplier::routes(sim))
        .route(
            &format!("{}{{*path}}", storage::PREFIX),
            http::endpoint(sim, None, "download", get(storage::download)),
        )
        .merge(control::routes())
        .with_state(sim.clone())
}

/// Runs `fut` to completion on a multi-threaded runtime with rustls' ring provider, as the
/// load and bench binaries' `main` do; `Err` is the exit code when no runtime can be built.
pub fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, std::process::ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => Ok(runtime.block_on(fut)),
        Err(e) => {
            eprintln!("error: runtime: {e}");
            Err(std::process::ExitCode::FAILURE)
        }
    }
}
