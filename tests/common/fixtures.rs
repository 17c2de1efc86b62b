//! Manifests for behaviour tests: a credentials Secret and a ReportBackend per backend type,
//! pointing at an in-process simulator, and generators.

use report_operator::api::BackendType;
use report_sim::{ReportingApi, SimServer};

/// The five backend types, for tests that run once per type.
pub const ALL_TYPES: [BackendType; 5] = [
    BackendType::Rde,
    BackendType::Cmp,
    BackendType::Connect,
    BackendType::Fusion,
    BackendType::Supplier,
];

/// The simulated API that plays backend type `t` (report-sim has its own names: it does not
/// link the operator).
pub fn sim_api(t: BackendType) -> ReportingApi {
    match t {
        BackendType::Rde => ReportingApi::Rde,
        BackendType::Cmp => ReportingApi::Cmp,
        BackendType::Connect => ReportingApi::Connect,
        BackendType::Fusion => ReportingApi::Fusion,
        BackendType::Supplier => ReportingApi::Supplier,
    }
}

pub fn lower(t: BackendType) -> String {
    t.as_str().to_ascii_lowercase()
}

/// The default simulator credentials of `t`, as Secret stringData lines.
pub fn good_credentials(t: BackendType) -> Vec<(&'static str, &'static str)> {
    match t {
        BackendType::Rde => vec![
            ("consumerKey", "rde-consumer-key"),
            ("consumerSecret", "rde-consumer-secret"),
        ],
        BackendType::Cmp => vec![
            ("subscriptionKey", "cmp-subscription-key"),
            ("username", "cmp-user"),
            ("password", "cmp-password"),
        ],
        BackendType::Connect => vec![("apiKey", "SU-000-000-000:connect-secret-key")],
        BackendType::Fusion => vec![("username", "fusion-user"), ("password", "fusion-password")],
        BackendType::Supplier => vec![
            ("clientId", "supplier-client"),
            ("clientSecret", "supplier-secret"),
        ],
    }
}

/// A Secret and a ReportBackend named `name` of type `t` at `sim`, with `credentials`.
pub fn backend(
    sim: &SimServer,
    t: BackendType,
    name: &str,
    credentials: &[(&str, &str)],
    extra_spec: &str,
) -> String {
    let data: String = credentials
        .iter()
        .map(|(k, v)| format!("  {k}: {v:?}\n"))
        .collect();
    let per_type = match t {
        BackendType::Supplier => format!(
            "  supplier:\n    organizationId: 6f1c2d3e-0000-4000-8000-000000000001\n    tokenUrl: {}\n",
            sim.supplier_token_url()
        ),
        _ => String::new(),
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}-credentials\nstringData:\n{data}---\n\
apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportBackend\nmetadata:\n  name: {name}\nspec:\n  type: {}\n  url: {}\n  credentialsSecretRef:\n    name: {name}-credentials\n{per_type}{extra_spec}",
        t.as_str(),
        sim.backend_url(sim_api(t))
    )
}

/// Backend-specific parameters a generator of type `t` needs.
pub fn required_parameters(t: BackendType) -> &'static str {
    match t {
        BackendType::Connect => "    template: RT-0000-0001\n",
        BackendType::Supplier => "    reportType: REPORT_TYPE_TRIP_ACTIVITY\n",
        BackendType::Fusion => {
            "    dataset: licenses\n    scope:\n      level: tenant\n      uuid: 53fd92c7-fbef-44fd-af76-d92334432ac9\n"
        }
        BackendType::Rde | BackendType::Cmp => "",
    }
}

/// A format every backend type supports.
pub fn format_for(t: BackendType) -> &'static str {
    match t {
        BackendType::Supplier | BackendType::Fusion => "CSV",
        _ => "JSON",
    }
}

/// A ONETIME generator for 2026-10-01 .. 2026-10-02.
pub fn onetime(t: BackendType, name: &str, backend: &str, common_name: &str) -> String {
    format!(
        "apiVersion: reporting.report-operator.io/v1alpha1\nkind: ReportGenerator\nmetadata:\n  name: {name}\nspec:\n  backendRef:\n    name: {backend}\n  commonName: {common_name}\n  eventType: ONETIME\n  format: {}\n  parameters:\n    startDate: \"2026-10-01T00:00:00Z\"\n    endDate: \"2026-10-02T23:59:59Z\"\n{}",
        format_for(t),
        required_parameters(t)
    )
}
