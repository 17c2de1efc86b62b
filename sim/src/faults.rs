//! Faults: injected ones (`POST /_sim/faults`, `SimServer::inject`) that hit the next N calls
//! of an endpoint, and random ones by the configured rates.
//!
//! `5xx` and `429` answer before the call is carried out (nothing happened, as a gateway
//! refusing it). `lost-response` and `timeout` carry the call out first and then lose the
//! answer: the connection closes (or, with `status`, the given status comes back, as a
//! gateway's 504 after the backend did the work), or the answer is held for `hangMs` and then
//! the connection closes. Those two are the ambiguous failures after which a client must look
//! before it creates again.

use std::sync::Mutex;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::config::Behaviour;
use super::lock;
use crate::ReportingApi;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer 5xx (503 unless `status` says) without carrying the call out.
    #[serde(rename = "5xx")]
    ServerError,
    /// Answer 429 with `Retry-After` without carrying the call out.
    #[serde(rename = "429")]
    TooManyRequests,
    /// Carry the call out, then close the connection without an answer (or answer `status`).
    #[serde(rename = "lost-response")]
    LostResponse,
    /// Carry the call out, then hold the answer for `hangMs` and close the connection.
    #[serde(rename = "timeout")]
    Timeout,
}

impl FaultKind {
    /// Whether the call is carried out before the fault strikes.
    pub fn commits(self) -> bool {
        matches!(self, FaultKind::LostResponse | FaultKind::Timeout)
    }
}

/// One injected fault.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub backend: ReportingApi,
    /// An endpoint name as the API's module documents it (`create`, `get`, `token`, …), or
    /// `*` for every endpoint of the API.
    pub endpoint: String,
    pub kind: FaultKind,
    /// How many calls it hits.
    #[serde(default = "one")]
    pub count: u32,
    /// `5xx`: the status (default 503). `lost-response`: answer this status (such as 504)
    /// after carrying the call out, instead of closing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `429`: the `Retry-After` seconds (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn new(backend: ReportingApi, endpoint: &str, kind: FaultKind, count: u32) -> Self {
        Fault {
            backend,
            endpoint: endpoint.to_string(),
            kind,
            count,
            status: None,
            retry_after_secs: None,
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    fn hits(&self, backend: ReportingApi, endpoint: &str) -> bool {
        self.backend == backend && (self.endpoint == endpoint || self.endpoint == "*") && self.count > 0
    }
}

pub(crate) struct Faults {
    queue: Mutex<Vec<Fault>>,
    rng: Mutex<StdRng>,
}

impl Faults {
    pub fn new(seed: Option<u64>) -> Self {
        let rng = match seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        Faults {
            queue: Mutex::new(Vec::new()),
            rng: Mutex::new(rng),
        }
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.queue).push(fault);
    }

    pub fn clear(&self) {
        lock(&self.queue).clear();
    }

    /// Injected faults with calls left to hit.
    pub fn pending(&self) -> Vec<Fault> {
        lock(&self.queue)
            .iter()
            .filter(|f| f.count > 0)
            .cloned()
            .collect()
    }

    /// The fault of this call, if any: the oldest injected one that matches, else one drawn
    /// by the configured rates.
    pub fn take(&self, backend: ReportingApi, endpoint: &str, behaviour: &Behaviour) -> Option<Fault> {
        {
            let mut queue = lock(&self.queue);
            if let Some(at) = queue.iter().position(|f| f.hits(backend, endpoint)) {
                let fault = &mut queue[at];
                fault.count -= 1;
                let taken = Fault {
                    count: 1,
                    ..fault.clone()
                };
                queue.retain(|f| f.count > 0);
                return Some(taken);
            }
        }
        if behaviour.error_rate <= 0.0 && behaviour.lost_response_rate <= 0.0 {
            return None;
        }
        let roll: f64 = lock(&self.rng).random();
        if roll < behaviour.error_rate {
            Some(Fault::new(backend, endpoint, FaultKind::ServerError, 1))
        } else if roll < behaviour.error_rate + behaviour.lost_response_rate {
            Some(Fault::new(backend, endpoint, FaultKind::LostResponse, 1))
        } else {
            None
        }
    }

    /// A draw for "does this report fail" at `rate`.
    pub fn chance(&self, rate: f64) -> bool {
        rate > 0.0 && lock(&self.rng).random::<f64>() < rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_faults_hit_count_calls_of_their_endpoint() {
        let faults = Faults::new(Some(1));
        let calm = Behaviour::default();
        faults.inject(Fault::new(ReportingApi::Cmp, "create", FaultKind::ServerError, 2));
        assert_eq!(faults.take(ReportingApi::Cmp, "get", &calm), None);
        assert_eq!(faults.take(ReportingApi::Rde, "create", &calm), None);
        assert!(faults.take(ReportingApi::Cmp, "create", &calm).is_some());
        assert!(faults.take(ReportingApi::Cmp, "create", &calm).is_some());
        assert_eq!(faults.take(ReportingApi::Cmp, "create", &calm), None);
        assert!(faults.pending().is_empty());
        let parsed: Fault =
            serde_json::from_str(r#"{"backend":"CMP","endpoint":"create","kind":"lost-response"}"#)
                .expect("fault");
        assert_eq!(
            parsed,
            Fault::new(ReportingApi::Cmp, "create", FaultKind::LostResponse, 1)
        );
    }

    #[test]
    fn rates_draw_faults() {
        let faults = Faults::new(Some(7));
        let always = Behaviour {
            error_rate: 1.0,
            ..Behaviour::default()
        };
        assert_eq!(
            faults.take(ReportingApi::Rde, "get", &always).map(|f| f.kind),
            Some(FaultKind::ServerError)
        );
        let lost = Behaviour {
            lost_response_rate: 1.0,
            ..Behaviour::default()
        };
        assert_eq!(
            faults.take(ReportingApi::Rde, "get", &lost).map(|f| f.kind),
            Some(FaultKind::LostResponse)
        );
    }
}
