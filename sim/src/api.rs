//! The five simulated reporting APIs, by name.
//!
//! The simulators' own vocabulary, not the operator's `BackendType`: report-sim simulates the
//! platforms and does not link the operator it is used to test. The names are the platforms'
//! (and so also what a ReportBackend's `spec.type` says).

use serde::{Deserialize, Serialize};

use super::{cmp, connect, fusion, rde, supplier};

/// One of the five simulated APIs; in JSON (a fault posted to `/_sim/faults`) by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ReportingApi {
    /// CloudBlue Commerce RDE (APS).
    Rde,
    /// CloudBlue Commerce SimpleAPI `/reports`.
    Cmp,
    /// CloudBlue Connect Reports.
    Connect,
    /// Netaxis Fusion reporting.
    Fusion,
    /// The asynchronous supplier reporting API.
    Supplier,
}

impl ReportingApi {
    /// The five, in the order they are printed.
    pub const ALL: [ReportingApi; 5] = [
        ReportingApi::Rde,
        ReportingApi::Cmp,
        ReportingApi::Connect,
        ReportingApi::Fusion,
        ReportingApi::Supplier,
    ];

    /// The name, as statistics and faults label it (`RDE`, …, `SUPPLIER`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReportingApi::Rde => "RDE",
            ReportingApi::Cmp => "CMP",
            ReportingApi::Connect => "CONNECT",
            ReportingApi::Fusion => "FUSION",
            ReportingApi::Supplier => "SUPPLIER",
        }
    }

    /// The path prefix of this API under the simulator's base URL.
    pub fn path(self) -> &'static str {
        match self {
            ReportingApi::Rde => rde::PREFIX,
            ReportingApi::Cmp => cmp::PREFIX,
            ReportingApi::Connect => connect::PREFIX,
            ReportingApi::Fusion => fusion::PREFIX,
            ReportingApi::Supplier => supplier::PREFIX,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_are_the_printed_names() {
        for api in ReportingApi::ALL {
            assert_eq!(serde_json::to_value(api).expect("json"), api.as_str());
            assert_eq!(
                serde_json::from_value::<ReportingApi>(api.as_str().into()).expect("name"),
                api
            );
        }
    }
}
