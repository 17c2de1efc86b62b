//! What each backend type can do and needs, known without a client of it: the controller
//! checks specs against it, and the limiter takes each type's default budgets from it.

use super::ratelimit::DefaultLimits;
use super::{BackendError, ReportRequest, cmp, connect, fusion, rde, supplier};
use crate::api::{BackendType, EventType, Period, ReportFormat, ReportGeneratorSpec, ReportParameters};

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
    /// FUSION: the answer to the request is the file itself, which a copy into a ReportStore
    /// asks for again and streams ([`super::ReportingBackend::stream`]).
    pub file_in_answer: bool,
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
            return Err(BackendError::unsupported(format!(
                "format {} on {}",
                req.format.upper(),
                backend.as_str()
            )));
        }
        if !self.event_types.contains(&req.event_type) {
            return Err(BackendError::unsupported(format!(
                "eventType {:?} on {}",
                req.event_type,
                backend.as_str()
            )));
        }
        if let Some(period) = req.parameters.period
            && req.event_type == EventType::Periodic
            && !self.periods.contains(&period)
        {
            return Err(BackendError::unsupported(format!(
                "period {period:?} on {}",
                backend.as_str()
            )));
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

/// A ReportGenerator setting that a backend type may be unable to honour. Each backend type
/// lists the ones it refuses ([`Refusal`]); the controller refuses a generator that asks for
/// one with Ready=False `UnsupportedSetting`, so that no setting is accepted and then ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Suspend,
    Cron,
    TimeZone,
    StartingDeadline,
    ConcurrencyPolicy,
    CatchUpPolicy,
    /// The run-now annotation, with a value not acted on yet.
    RunNow,
    StartDate,
    EndDate,
    Period,
    CustomizationName,
    Template,
    Values,
    ReportType,
    Filters,
    Organizations,
    Scope,
    Dataset,
    DateParameter,
    /// `notifyByEmail: true`: only RDE can e-mail a report.
    NotifyByEmail,
}

/// Every schedule knob but the history limits (which the operator applies to the ReportFiles
/// of every type): what a type whose platform schedules refuses.
pub const SCHEDULE_KNOBS: [Setting; 7] = [
    Setting::Suspend,
    Setting::Cron,
    Setting::TimeZone,
    Setting::StartingDeadline,
    Setting::ConcurrencyPolicy,
    Setting::CatchUpPolicy,
    Setting::RunNow,
];

impl Setting {
    /// The field as a user writes it.
    pub fn field(self) -> &'static str {
        match self {
            Setting::Suspend => "schedule.suspend",
            Setting::Cron => "schedule.cron",
            Setting::TimeZone => "schedule.timeZone",
            Setting::StartingDeadline => "schedule.startingDeadlineSeconds",
            Setting::ConcurrencyPolicy => "schedule.concurrencyPolicy",
            Setting::CatchUpPolicy => "schedule.catchUpPolicy",
            Setting::RunNow => "annotation reporting.report-operator.io/run-now",
            Setting::StartDate => "parameters.startDate",
            Setting::EndDate => "parameters.endDate",
            Setting::Period => "parameters.period",
            Setting::CustomizationName => "parameters.customizationName",
            Setting::Template => "parameters.template",
            Setting::Values => "parameters.values",
            Setting::ReportType => "parameters.reportType",
            Setting::Filters => "parameters.filters",
            Setting::Organizations => "parameters.organizations",
            Setting::Scope => "parameters.scope",
            Setting::Dataset => "parameters.dataset",
            Setting::DateParameter => "parameters.dateParameter",
            Setting::NotifyByEmail => "notifyByEmail",
        }
    }

    /// Whether `spec` asks for something with this setting: `suspend: false` and a time zone
    /// of UTC (the default) ask for nothing; a run-now value asks until it was acted on
    /// (`last_run_now`).
    pub fn asked(
        self,
        spec: &ReportGeneratorSpec,
        run_now: Option<&str>,
        last_run_now: Option<&str>,
    ) -> bool {
        let sched = spec.schedule.as_ref();
        let p = spec.parameters.as_ref();
        match self {
            Setting::Suspend => sched.and_then(|s| s.suspend) == Some(true),
            Setting::Cron => sched.is_some_and(|s| s.cron.is_some()),
            Setting::TimeZone => sched
                .and_then(|s| s.time_zone.as_deref())
                .is_some_and(|z| !matches!(z, "UTC" | "Etc/UTC")),
            Setting::StartingDeadline => sched.is_some_and(|s| s.starting_deadline_seconds.is_some()),
            Setting::ConcurrencyPolicy => sched.is_some_and(|s| s.concurrency_policy.is_some()),
            Setting::CatchUpPolicy => sched.is_some_and(|s| s.catch_up_policy.is_some()),
            Setting::RunNow => run_now.is_some_and(|v| Some(v) != last_run_now),
            Setting::StartDate => p.is_some_and(|p| p.start_date.is_some()),
            Setting::EndDate => p.is_some_and(|p| p.end_date.is_some()),
            Setting::Period => p.is_some_and(|p| p.period.is_some()),
            Setting::CustomizationName => p.is_some_and(|p| p.customization_name.is_some()),
            Setting::Template => p.is_some_and(|p| p.template.is_some()),
            Setting::Values => p.is_some_and(|p| p.values.is_some()),
            Setting::ReportType => p.is_some_and(|p| p.report_type.is_some()),
            Setting::Filters => p.is_some_and(|p| p.filters.is_some()),
            Setting::Organizations => p.is_some_and(|p| p.organizations.is_some()),
            Setting::Scope => p.is_some_and(|p| p.scope.is_some()),
            Setting::Dataset => p.is_some_and(|p| p.dataset.is_some()),
            Setting::DateParameter => p.is_some_and(|p| p.date_parameter.is_some()),
            Setting::NotifyByEmail => spec.notify_by_email == Some(true),
        }
    }
}

/// Settings a backend type refuses for some event types, and what to do instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub settings: &'static [Setting],
    pub event_types: &'static [EventType],
    /// Why the type cannot honour them, and what to do instead.
    pub why: &'static str,
}

/// What each backend type refuses.
fn refusals(type_: BackendType) -> &'static [Refusal] {
    match type_ {
        BackendType::Rde => rde::REFUSED,
        BackendType::Cmp => cmp::REFUSED,
        BackendType::Connect => connect::REFUSED,
        BackendType::Fusion => fusion::REFUSED,
        BackendType::Supplier => supplier::REFUSED,
    }
}

/// What every type whose reports the operator requests refuses on a ONETIME generator: it is
/// requested once, so schedule settings and a period mean nothing.
pub const ONETIME_REFUSALS: [Refusal; 2] = [
    Refusal {
        settings: &SCHEDULE_KNOBS,
        event_types: &[EventType::Onetime],
        why: "a ONETIME report is requested once, as soon as the generator is made; schedule settings apply to PERIODIC \
generators; remove the setting",
    },
    Refusal {
        settings: &[Setting::Period],
        event_types: &[EventType::Onetime],
        why: "a ONETIME report covers parameters.startDate to endDate; remove parameters.period",
    },
];

/// The refusals of a type whose reports the operator requests (CONNECT, FUSION, SUPPLIER):
/// the ONETIME ones, the `foreign` parameters of other types (`why_foreign`), and an e-mail,
/// which only RDE sends (`why_mail`).
pub const fn requested_by_operator(
    foreign: &'static [Setting],
    why_foreign: &'static str,
    why_mail: &'static str,
) -> [Refusal; 4] {
    [
        ONETIME_REFUSALS[0],
        ONETIME_REFUSALS[1],
        Refusal {
            settings: foreign,
            event_types: ALL_EVENT_TYPES,
            why: why_foreign,
        },
        Refusal {
            settings: &[Setting::NotifyByEmail],
            event_types: ALL_EVENT_TYPES,
            why: why_mail,
        },
    ]
}

/// Every event type, for refusals that hold whatever the generator does.
pub const ALL_EVENT_TYPES: &[EventType] = &[EventType::Onetime, EventType::Periodic, EventType::OnInvoice];

/// The first setting of `spec` (with the run-now annotation's value, and the last value acted
/// on) that a backend of `type_` cannot honour, as a condition message that names the field,
/// the type and what to do; `None` when it honours them all.
pub fn unsupported_setting(
    type_: BackendType,
    spec: &ReportGeneratorSpec,
    run_now: Option<&str>,
    last_run_now: Option<&str>,
) -> Option<String> {
    refusals(type_)
        .iter()
        .filter(|r| r.event_types.contains(&spec.event_type))
        .find_map(|r| {
            let setting = r.settings.iter().find(|s| s.asked(spec, run_now, last_run_now))?;
            Some(format!(
                "{} on {} {}: {}",
                setting.field(),
                type_.as_str(),
                spec.event_type.as_str(),
                r.why
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_setting_is_named_as_written_with_its_type() {
        assert!(Setting::RunNow.field().ends_with(crate::api::ANNOTATION_RUN_NOW));
        let spec: ReportGeneratorSpec = serde_json::from_value(serde_json::json!({
            "backendRef": {"name": "b"}, "commonName": "x", "eventType": "PERIODIC", "format": "JSON",
            "parameters": {"period": "P1D"}, "schedule": {"suspend": true}}))
        .expect("spec");
        let message = unsupported_setting(BackendType::Rde, &spec, None, None).expect("refused");
        assert!(
            message.starts_with("schedule.suspend on RDE PERIODIC: "),
            "{message}"
        );
        // The types the operator schedules honour it.
        for type_ in [
            BackendType::Cmp,
            BackendType::Connect,
            BackendType::Fusion,
            BackendType::Supplier,
        ] {
            assert_eq!(unsupported_setting(type_, &spec, None, None), None, "{type_:?}");
        }
        // A run-now value asks until it is the one acted on.
        let plain: ReportGeneratorSpec = serde_json::from_value(serde_json::json!({
            "backendRef": {"name": "b"}, "commonName": "x", "eventType": "PERIODIC", "format": "JSON", "parameters": {"period": "P1D"}})).expect("spec");
        assert!(unsupported_setting(BackendType::Rde, &plain, Some("2"), Some("1")).is_some());
        assert_eq!(
            unsupported_setting(BackendType::Rde, &plain, Some("1"), Some("1")),
            None
        );
    }

    #[test]
    fn each_type_names_the_parameter_it_lacks() {
        let empty = ReportParameters::default();
        let blank = ReportParameters {
            template: Some(String::new()),
            report_type: Some(String::new()),
            ..empty.clone()
        };
        let table = [
            (BackendType::Rde, None),
            (BackendType::Cmp, None),
            (BackendType::Connect, Some("parameters.template (the RT-… id)")),
            (
                BackendType::Supplier,
                Some("parameters.reportType (e.g. REPORT_TYPE_TRIP_ACTIVITY)"),
            ),
            (BackendType::Fusion, Some("parameters.scope (level and uuid)")),
        ];
        for (type_, want) in table {
            assert_eq!(missing_parameter(type_, &empty), want, "{type_:?}");
            assert_eq!(
                missing_parameter(type_, &blank),
                want,
                "{type_:?}: empty strings count as missing"
            );
        }
        let full = ReportParameters {
            template: Some("RT-1".into()),
            report_type: Some("REPORT_TYPE_TRIP_ACTIVITY".into()),
            scope: Some(
                serde_json::from_value(serde_json::json!({"level": "group", "uuid": "g"})).expect("scope"),
            ),
            ..empty
        };
        for (type_, _) in table {
            assert_eq!(missing_parameter(type_, &full), None, "{type_:?}");
        }
    }
}
