//! The simulator's configuration: per-API timing, fault rates, credentials and limits.
//!
//! Every field has a default (`SimConfig::default()` is what `docs/src/development/interfaces.md`
//! promises), so a config file names only what it changes. Limits are plain numbers so that
//! tests can make them small (a 3-request window is reached in a test; a 600-request one is
//! not). Files are YAML or JSON (YAML parses both).

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::SimError;
use crate::ReportingApi;

const DAY_SECS: u64 = 86_400;

/// Timing and fault knobs every simulated API has.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct Behaviour {
    /// Milliseconds from a report's creation to its terminal state. The first quarter of it
    /// the report is queued (pending/submitted), the rest it is running.
    pub generation_ms: u64,
    /// Milliseconds added before every answer of this API.
    pub latency_ms: u64,
    /// Share of calls (0 to 1) answered 503 without being carried out.
    pub error_rate: f64,
    /// Share of calls (0 to 1) carried out whose answer is lost: the connection closes.
    pub lost_response_rate: f64,
    /// Share of reports (0 to 1) that end failed, besides those whose name contains `FAIL`.
    pub failure_rate: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            generation_ms: 1500,
            latency_ms: 0,
            error_rate: 0.0,
            lost_response_rate: 0.0,
            failure_rate: 0.0,
        }
    }
}

impl Behaviour {
    pub fn generation(&self) -> Duration {
        Duration::from_millis(self.generation_ms)
    }

    fn validate(&self, api: &str) -> Result<(), SimError> {
        for (name, rate) in [
            ("errorRate", self.error_rate),
            ("lostResponseRate", self.lost_response_rate),
            ("failureRate", self.failure_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(SimError::Config(format!(
                    "{api}.{name} must be between 0 and 1, not {rate}"
                )));
            }
        }
        Ok(())
    }
}

/// RDE (seed 000): OAuth 1.0a consumer credentials and the APS template types accepted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct RdeConfig {
    #[serde(flatten)]
    pub behaviour: Behaviour,
    pub consumer_key: String,
    pub consumer_secret: String,
    /// OAuth timestamps further than this from the simulator's clock are refused as stale.
    pub timestamp_tolerance_secs: u64,
    /// `aps.type` values a create may name (the type id differs by platform release).
    pub template_types: Vec<String>,
    /// How long a report file's `filePath` works after the file is READY (storage keeps
    /// reports 90 days).
    pub url_lifetime_secs: u64,
}

impl Default for RdeConfig {
    fn default() -> Self {
        RdeConfig {
            behaviour: Behaviour::default(),
            consumer_key: "rde-consumer-key".into(),
            consumer_secret: "rde-consumer-secret".into(),
            timestamp_tolerance_secs: 300,
            template_types: vec![
                "http://www.odin.com/rde/report-template/1.1".into(),
                "http://www.odin.com/rde/report-template/1.5".into(),
            ],
            url_lifetime_secs: 90 * DAY_SECS,
        }
    }
}

/// CMP (seed 001): subscription key, token login, gateway quotas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct CmpConfig {
    #[serde(flatten)]
    pub behaviour: Behaviour,
    pub subscription_key: String,
    pub username: String,
    pub password: String,
    /// `expiresInSeconds` of tokens from `POST /token`.
    pub token_lifetime_secs: u64,
    /// How long a `downloadUrl` works (a storage SAS URL: about 90 days).
    pub url_lifetime_secs: u64,
    /// Calls per subscription in any 60 seconds.
    pub requests_per_minute: u32,
    /// Calls per subscription in any 24 hours.
    pub requests_per_day: u32,
}

impl Default for CmpConfig {
    fn default() -> Self {
        CmpConfig {
            behaviour: Behaviour::default(),
            subscription_key: "cmp-subscription-key".into(),
            username: "cmp-user".into(),
            password: "cmp-password".into(),
            token_lifetime_secs: 1500,
            url_lifetime_secs: 90 * DAY_SECS,
            requests_per_minute: 60,
            requests_per_day: 5000,
        }
    }
}

/// CONNECT (seed 002): the API key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct ConnectConfig {
    #[serde(flatten)]
    pub behaviour: Behaviour,
    /// `SU-…:…`, sent as `Authorization: ApiKey …`.
    pub api_key: String,
    /// How long the storage URL the download redirects to works. Connect does not say; a day
    /// is long enough for the operator to hand it on.
    pub url_lifetime_secs: u64,
    /// Per template id (`RT-…`), the id of its date-range parameter when it is not `date`.
    pub date_parameters: std::collections::BTreeMap<String, String>,
}

impl Default for ConnectConfig {
    fn default() -> Self {
        ConnectConfig {
            behaviour: Behaviour::default(),
            api_key: "SU-000-000-000:connect-secret-key".into(),
            url_lifetime_secs: DAY_SECS,
            date_parameters: Default::default(),
        }
    }
}

/// FUSION (seed 003): login users, token lifetimes and the uuids that fail.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct FusionConfig {
    /// Fusion answers synchronously: `generationMs` is not used.
    #[serde(flatten)]
    pub behaviour: Behaviour,
    pub username: String,
    pub password: String,
    /// This user (with `password`) gets a `2fa_payload` instead of tokens.
    pub two_factor_username: String,
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    /// The `draas_instance` path values that exist.
    pub draas_instances: Vec<String>,
    /// A uuid starting with this names nothing: 404.
    pub unknown_uuid_prefix: String,
    /// A uuid starting with this needs a role the user lacks: 403.
    pub forbidden_uuid_prefix: String,
    /// Subscriptions 1..=N exist under every tenant.
    pub subscriptions_per_tenant: u32,
}

impl Default for FusionConfig {
    fn default() -> Self {
        FusionConfig {
            behaviour: Behaviour::default(),
            username: "fusion-user".into(),
            password: "fusion-password".into(),
            two_factor_username: "fusion-2fa-user".into(),
            access_token_lifetime_secs: 3600,
            refresh_token_lifetime_secs: DAY_SECS,
            draas_instances: vec!["draas_v1".into()],
            unknown_uuid_prefix: "00000000".into(),
            forbidden_uuid_prefix: "ffffffff".into(),
            subscriptions_per_tenant: 3,
        }
    }
}

/// SUPPLIER (seed 004): OAuth2 client, URL lifetime and the documented limits.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SupplierConfig {
    #[serde(flatten)]
    pub behaviour: Behaviour,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes a token request may ask for (none asked is fine too).
    pub scopes: Vec<String>,
    pub token_lifetime_secs: u64,
    /// How long a signed URL from `…/link` works.
    pub url_lifetime_secs: u64,
    /// Reports IN_PROGRESS at once per organization.
    pub max_in_progress: u32,
    /// Requests per client on each endpoint in any `windowSecs`.
    pub requests_per_window: u32,
    pub window_secs: u64,
    /// Token requests per client in any `tokenWindowSecs`.
    pub token_requests_per_window: u32,
    pub token_window_secs: u64,
}

impl Default for SupplierConfig {
    fn default() -> Self {
        SupplierConfig {
            behaviour: Behaviour::default(),
            client_id: "supplier-client".into(),
            client_secret: "supplier-secret".into(),
            scopes: vec!["solutions.suppliers.reports".into()],
            token_lifetime_secs: 3600,
            url_lifetime_secs: 60,
            max_in_progress: 6,
            requests_per_window: 600,
            window_secs: 600,
            token_requests_per_window: 100,
            token_window_secs: 3600,
        }
    }
}

/// Everything the simulator can be told at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, rename_all = "camelCase")]
pub struct SimConfig {
    pub rde: RdeConfig,
    pub cmp: CmpConfig,
    pub connect: ConnectConfig,
    pub fusion: FusionConfig,
    pub supplier: SupplierConfig,
    /// Seed of the random faults, for a repeatable run; unset: a fresh seed.
    pub seed: Option<u64>,
    /// Key of the HMAC-SHA256 signatures on tokens and storage URLs; unset: a random key, so
    /// URLs of an earlier run stop working (as they would after a key rotation).
    pub signing_key: Option<String>,
    /// How long a `timeout` fault holds the answer before closing the connection; 0 means
    /// 60 seconds, longer than any client waits.
    pub hang_ms: u64,
    /// Newlines appended to every unwrapped (not gzipped or zipped) file a storage URL
    /// serves and to every FUSION file and SDR answer, for tests of large reports; 0: none.
    /// The file stays a valid CSV or JSON.
    pub padding_bytes: u64,
}

impl SimConfig {
    /// Reads a YAML or JSON file.
    pub fn from_file(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
        let config: SimConfig =
            serde_yaml::from_str(&text).map_err(|e| SimError::Config(format!("{}: {e}", path.display())))?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values no API could have (rates outside 0..1, empty limits).
    pub fn validate(&self) -> Result<(), SimError> {
        for t in ReportingApi::ALL {
            self.behaviour(t).validate(t.as_str())?;
        }
        let limits = [
            ("cmp.requestsPerMinute", self.cmp.requests_per_minute),
            ("cmp.requestsPerDay", self.cmp.requests_per_day),
            ("supplier.maxInProgress", self.supplier.max_in_progress),
            ("supplier.requestsPerWindow", self.supplier.requests_per_window),
            (
                "supplier.tokenRequestsPerWindow",
                self.supplier.token_requests_per_window,
            ),
        ];
        for (name, value) in limits {
            if value == 0 {
                return Err(SimError::Config(format!("{name} must be at least 1")));
            }
        }
        Ok(())
    }

    pub fn behaviour(&self, t: ReportingApi) -> &Behaviour {
        match t {
            ReportingApi::Rde => &self.rde.behaviour,
            ReportingApi::Cmp => &self.cmp.behaviour,
            ReportingApi::Connect => &self.connect.behaviour,
            ReportingApi::Fusion => &self.fusion.behaviour,
            ReportingApi::Supplier => &self.supplier.behaviour,
        }
    }

    pub fn behaviour_mut(&mut self, t: ReportingApi) -> &mut Behaviour {
        match t {
            ReportingApi::Rde => &mut self.rde.behaviour,
            ReportingApi::Cmp => &mut self.cmp.behaviour,
            ReportingApi::Connect => &mut self.connect.behaviour,
            ReportingApi::Fusion => &mut self.fusion.behaviour,
            ReportingApi::Supplier => &mut self.supplier.behaviour,
        }
    }

    /// Sets the same knobs on all five APIs (what the CLI flags do).
    pub fn for_all(mut self, change: impl Fn(&mut Behaviour)) -> Self {
        for t in ReportingApi::ALL {
            change(self.behaviour_mut(t));
        }
        self
    }

    pub(crate) fn hang(&self) -> Duration {
        Duration::from_millis(if self.hang_ms == 0 { 60_000 } else { self.hang_ms })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_names_only_what_it_changes() {
        let config: SimConfig = serde_yaml::from_str(
            "supplier:\n  urlLifetimeSecs: 2\n  generationMs: 10\ncmp:\n  requestsPerMinute: 3\n",
        )
        .expect("yaml");
        assert_eq!(config.supplier.url_lifetime_secs, 2);
        assert_eq!(config.supplier.behaviour.generation_ms, 10);
        assert_eq!(config.supplier.client_id, "supplier-client");
        assert_eq!(config.cmp.requests_per_minute, 3);
        assert_eq!(config.rde, RdeConfig::default());
    }

    #[test]
    fn rates_out_of_range_are_refused() {
        let config = SimConfig::default().for_all(|b| b.error_rate = 1.5);
        assert!(config.validate().is_err());
    }
}
