//! What each backend type can do and needs, known without a client of it: the controller
//! checks specs against it, and the limiter takes each type's default budgets from it.

use super::ratelimit::DefaultLimits;
use super::{BackendError, ReportRequest, cmp, connect, fusion, rde, supplier};
use crate::api::{BackendType, EventType, Period, ReportFormat, ReportParameters};

/// What a backend type can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub formats: &'static [ReportFormat],
    pub event_types: &'static [EventType],
    /// Periods of PERIODIC reports (RDE knows only P1D and P1M).
    pub periods: &'static [Period],
    /// RDE: the platform schedules PERIODIC and ON_INVOICE reports itself.
    pub platform_scheduled: bool,
    /// SUPPLIER: `get` answers the polls of one organization's reports from one shared
    /// listing, so a round of polls costs a request per organization, not per report.
    pub polls_by_organization: bool,
    /// The API's documented request budgets and in-flight cap, which `spec.limits` overrides.
    pub limits: DefaultLimits,
}

impl Capabilities {
    /// The capabilities of a backend type.
    pub(crate) fn of(type_: BackendType) -> &'static Capabilities {
        match type_ {
            BackendType::Rde => &rde::CAPABILITIES,
            BackendType::Cmp => &cmp::CAPABILITIES,
            BackendType::Connect => &connect::CAPABILITIES,
            BackendType::Fusion => &fusion::CAPABILITIES,
            BackendType::Supplier => &supplier::CAPABILITIES,
        }
    }

    pub fn supports(&self, format: ReportFormat, event_type: EventType) -> bool {
        self.formats.contains(&format) && self.event_types.contains(&event_type)
    }

    /// `Unsupported` unless this backend can make `req`.
    pub(crate) fn check(&self, backend: BackendType, req: &ReportRequest) -> Result<(), BackendError> {
        if !self.formats.contains(&req.format) {
            return Err(BackendError::unsupported(format!("format {} on {}", req.format.upper(), backend.as_str())));
        }
        if !self.event_types.contains(&req.event_type) {
            return Err(BackendError::unsupported(format!("eventType {:?} on {}", req.event_type, backend.as_str())));
        }
        if let Some(period) = req.parameters.period
            && req.event_type == EventType::Periodic
            && !self.periods.contains(&period)
        {
            return Err(BackendError::unsupported(format!("period {period:?} on {}", backend.as_str())));
        }
        Ok(())
    }
}

/// The parameter a report of `type_` needs and `params` lacks, described for a condition
/// message; `None` when nothing is missing. The backends read these parameters with the same
/// functions, so a spec this accepts is one they can send.
pub fn missing_parameter(type_: BackendType, params: &ReportParameters) -> Option<&'static str> {
    match type_ {
        BackendType::Connect => connect::template(params).err(),
        BackendType::Supplier => supplier::report_type(params).err(),
        BackendType::Fusion => fusion::scope(params).err(),
        BackendType::Rde | BackendType::Cmp => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_names_the_parameter_it_lacks() {
        let empty = ReportParameters::default();
        let blank = ReportParameters { template: Some(String::new()), report_type: Some(String::new()), ..empty.clone() };
        let table = [
            (BackendType::Rde, None),
            (BackendType::Cmp, None),
            (BackendType::Connect, Some("parameters.template (the RT-… id)")),
            (BackendType::Supplier, Some("parameters.reportType (e.g. REPORT_TYPE_TRIP_ACTIVITY)")),
            (BackendType::Fusion, Some("parameters.scope (level and uuid)")),
        ];
        for (type_, want) in table {
            assert_eq!(missing_parameter(type_, &empty), want, "{type_:?}");
            assert_eq!(missing_parameter(type_, &blank), want, "{type_:?}: empty strings count as missing");
        }
        let full = ReportParameters {
            template: Some("RT-1".into()),
            report_type: Some("REPORT_TYPE_TRIP_ACTIVITY".into()),
            scope: Some(serde_json::from_value(serde_json::json!({"level": "group", "uuid": "g"})).expect("scope")),
            ..empty
        };
        for (type_, _) in table {
            assert_eq!(missing_parameter(type_, &full), None, "{type_:?}");
        }
    }
}
