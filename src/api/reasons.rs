//! Every reason a user can see: on the conditions of the four kinds and on the Events the
//! operator publishes, each with what it means and what to do about it. The operator writes
//! no reason that is not here (the controller takes these types, never strings), and the
//! book's "condition reasons" page and the status docs (`kubectl explain`) come from or are
//! checked against [`all`] and [`events`].
//!
//! A reason's string is its variant's name: `FileReady::SecretConflict` is
//! `"SecretConflict"`. Enums are per condition, so that a reason of one cannot be written
//! into another; the same word on two kinds (`Unauthorized` on a ReportBackend and on a
//! ReportStore) is two variants, each saying what it means there.

/// A reason a condition or an Event carries: a variant of one of the enums below.
pub trait Reason: Copy {
    /// The reason as Kubernetes shows it.
    fn as_str(self) -> &'static str;
}

/// A reason of any of the enums below, kept as what it says: a condition's reason, or the
/// reason of a Warning that repeats it. Made only from a [`Reason`], never from a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AnyReason(&'static str);

impl AnyReason {
    pub fn of(reason: impl Reason) -> Self {
        AnyReason(reason.as_str())
    }

    pub const fn as_str(self) -> &'static str {
        self.0
    }
}

impl Reason for AnyReason {
    fn as_str(self) -> &'static str {
        self.0
    }
}

impl PartialEq<str> for AnyReason {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AnyReason {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl std::fmt::Display for AnyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// One reason where a user sees it, for the book and for `kubectl explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonDoc {
    /// ReportFile, ReportGenerator, ReportBackend or ReportStore.
    pub kind: &'static str,
    /// Ready, Complete, Failed, Delivered, or Event.
    pub condition: &'static str,
    pub reason: &'static str,
    pub meaning: &'static str,
    /// What the user does about it ("nothing" where it resolves by itself).
    pub action: &'static str,
}

/// Declares a vocabulary enum: each variant with its meaning and what a user does about it,
/// which are also its doc comment.
macro_rules! vocabulary {
    ($(#[$doc:meta])* pub enum $name:ident { $($variant:ident => ($meaning:literal, $action:literal),)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(#[doc = $meaning] #[doc = ""] #[doc = concat!("What to do: ", $action)] $variant,)*
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => stringify!($variant),)* }
            }

            /// What the reason means.
            pub const fn meaning(self) -> &'static str {
                match self { $($name::$variant => $meaning,)* }
            }

            /// What a user does about it.
            pub const fn action(self) -> &'static str {
                match self { $($name::$variant => $action,)* }
            }

            /// The variant whose string is `s`.
            pub fn parse(s: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|r| r.as_str() == s)
            }

            fn doc(self, kind: &'static str, condition: &'static str) -> ReasonDoc {
                ReasonDoc { kind, condition, reason: self.as_str(), meaning: self.meaning(), action: self.action() }
            }
        }

        impl Reason for $name {
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        /// Compared with what Kubernetes shows.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// The `Ready` condition of a ReportFile: whether the download works now.
    pub enum FileReady {
        Pending => ("The report is not asked for yet: the backend is not Ready, or the request waits for its turn (the backend's cap on reports in progress).", "nothing while it waits its turn; if the message names the ReportBackend, see its Ready condition"),
        InProgress => ("The backend is generating the report.", "nothing; the report is polled until READY or FAILED"),
        Ready => ("The report is READY and its Secret holds the download (URL or file).", "read the Secret named in status.downloadSecretRef"),
        Failed => ("The backend failed or refused the report; the message and status.failedReason give the backend's reason.", "fix what the backend's reason names (dates, parameters, template) and create the report again"),
        DeadlineExceeded => ("The report was not READY within activeDeadlineSeconds.", "raise activeDeadlineSeconds if the backend is slow, and create the report again"),
        TooLarge => ("The report or its download is over the operator's size limit (a file in a Secret holds at most 1,000,000 bytes).", "give the generator a storeRef, so that the file goes to a ReportStore"),
        SecretConflict => ("A Secret of the report's name that the operator does not own is in the way; the operator leaves it unchanged.", "delete or rename that Secret; the report's Secret is written within 30 seconds after"),
        UrlExpired => ("The report is complete but its download URL expired, or cannot be renewed now (the backend is not Ready).", "set the annotation reporting.report-operator.io/refresh-url to a new value for a fresh URL"),
    }
}

vocabulary! {
    /// The outcome conditions of a ReportFile, `Complete` and `Failed`, as a Job has them: a
    /// FAILED report's carry its reason.
    pub enum FileOutcome {
        InProgress => ("The report is not finished yet (both conditions False).", "nothing; `kubectl wait --for=condition=Complete` waits for it"),
        Ready => ("The report is READY (Complete True).", "read its Secret"),
        Failed => ("The report FAILED on the backend (Failed True).", "see the message for the backend's reason"),
        DeadlineExceeded => ("The report FAILED: not READY within activeDeadlineSeconds (Failed True).", "raise activeDeadlineSeconds and create the report again"),
        TooLarge => ("The report FAILED: it is over the operator's size limit (Failed True).", "give the generator a storeRef and create the report again"),
    }
}

vocabulary! {
    /// The `Delivered` condition of a ReportFile with a `storeRef`: whether its copy is in the
    /// ReportStore. While it is False the Secret keeps the backend's download and the copy is
    /// retried with backoff.
    pub enum Delivered {
        Delivered => ("The report is copied into the ReportStore; the Secret holds the copy's presigned URL, its location, size and SHA-256.", "nothing"),
        StoreNotFound => ("The ReportStore named in storeRef does not exist in the namespace.", "create the ReportStore, or fix storeRef"),
        InvalidSpec => ("The ReportStore's spec cannot work (its url, endpoint or path template).", "fix the ReportStore; its Ready condition says what"),
        CredentialsMissing => ("The ReportStore's credentials Secret is missing or lacks accessKeyId and secretAccessKey.", "create or complete the credentials Secret"),
        DestinationDenied => ("The operator's outbound policy forbids the store's endpoint or the backend's download host.", "allow the host with the operator's --outbound-* flags, or use another endpoint"),
        Unauthorized => ("The store refused the credentials.", "fix the credentials Secret or the bucket's policy"),
        BucketNotFound => ("The store's bucket does not exist.", "create the bucket, or fix the ReportStore's url"),
        Unreachable => ("The store did not answer, or failed.", "nothing if it is a passing outage; otherwise check the endpoint and the network"),
        InvalidResponse => ("The store answered more than the operator reads (a listing or an error over its cap); it was not read further.", "check that endpoint is an S3 API, not something else"),
        SourceUnavailable => ("Reading the report from its backend for the copy failed.", "see the message; the ReportBackend's Ready condition says whether the backend is usable"),
        InvalidArchive => ("A CONNECT ZIP to unpack (connectArchive Extract) could not be read as a stream.", "use connectArchive Keep for this store"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportGenerator: whether it is valid and producing reports.
    /// It also shows the [`BackendReady`] reasons of a backend it cannot use for its own calls
    /// (RDE templates, listing reports to mirror), and the [`Trouble`] of a failed reconcile.
    pub enum GeneratorReady {
        ReportReady => ("ONETIME: the report is READY.", "read the Secret of its ReportFile"),
        ReportInProgress => ("ONETIME: the report is being generated.", "nothing"),
        ReportFailed => ("ONETIME: the report FAILED.", "see the ReportFile's conditions for why"),
        Scheduled => ("PERIODIC or ON_INVOICE: the generator makes its reports, and the newest finished one did not fail.", "nothing"),
        Throttled => ("The generator has the most reports in progress at once that one generator may have (200); the next windows start, oldest first, as reports finish.", "nothing unless it persists; then see why the backend is slow"),
        LastReportFailed => ("PERIODIC or ON_INVOICE: the newest finished report (by window end, then completion) FAILED; Ready again once a newer one is READY.", "see that ReportFile's conditions"),
        BackendNotFound => ("The ReportBackend named in backendRef does not exist in the namespace.", "create the ReportBackend, or fix backendRef"),
        BackendNotReady => ("The ReportBackend is not Ready.", "see the ReportBackend's Ready condition"),
        BackendError => ("A call of the generator's own (an RDE template, a listing of reports to mirror) failed in a way that retrying can fix; retried.", "nothing if it passes; otherwise check the backend"),
        Rejected => ("The backend refused the generator's request (an RDE template).", "fix the spec as the message says"),
        FileConflict => ("A ReportFile of the name the generator would create exists and is not the generator's.", "delete that ReportFile, or rename the generator"),
        UnsupportedEventType => ("The backend type does not support the eventType.", "use an eventType the backend type supports"),
        UnsupportedFormat => ("The backend type does not make reports in the format.", "use a format the message lists"),
        UnsupportedPeriod => ("The backend type does not support the period.", "use a period the backend type supports"),
        InvalidParameters => ("The parameters lack what the backend type needs, or hold a value out of range.", "add or fix the parameter the message names"),
        InvalidSchedule => ("The schedule cannot be used: a cron or time zone that does not parse, or a value out of range.", "fix the schedule field the message names"),
        BackfillTooLong => ("parameters.startDate is more windows back than a generator backfills (1000).", "set parameters.startDate to the date the message gives or later, or use a longer period"),
        UnsupportedSetting => ("The spec sets something the backend type cannot honour; nothing is asked for.", "remove the setting the message names, or use another backend type"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportBackend: whether the credentials work against the API.
    pub enum BackendReady {
        Authenticated => ("The API answers and accepts the credentials.", "nothing"),
        Unauthorized => ("The API refused the credentials.", "fix the credentials Secret"),
        TwoFactorRequired => ("FUSION: the login asks for a second factor (an untrusted device or address).", "trust the operator's address for the login, or use an account without a second factor"),
        CredentialsMissing => ("The credentials Secret is missing, or lacks a key the backend type needs.", "create or complete the credentials Secret"),
        InvalidSpec => ("The ReportBackend's spec cannot work (its URL, CA bundle, or a setting its type needs).", "fix the field the message names"),
        DestinationDenied => ("The operator's outbound policy forbids the API's address.", "allow it with the operator's --outbound-* flags"),
        InvalidResponse => ("The API answered something that is not the API's (malformed, too large, a redirect).", "check that url points at the API itself"),
        Unreachable => ("The API did not answer, or failed.", "nothing if it is a passing outage; otherwise check url and the network"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportStore: whether the bucket answers with the credentials.
    pub enum StoreReady {
        Reachable => ("The bucket answers and accepts the credentials.", "nothing"),
        InvalidSpec => ("The ReportStore's spec cannot work (its url or endpoint).", "fix the field the message names"),
        CredentialsMissing => ("The credentials Secret is missing or lacks accessKeyId and secretAccessKey.", "create or complete the credentials Secret"),
        DestinationDenied => ("The operator's outbound policy forbids the endpoint.", "allow it with the operator's --outbound-* flags"),
        Unauthorized => ("The store refused the credentials.", "fix the credentials Secret or the bucket's policy"),
        BucketNotFound => ("The bucket does not exist.", "create the bucket, or fix url"),
        Unreachable => ("The store did not answer, or failed.", "nothing if it is a passing outage; otherwise check the endpoint and the network"),
        InvalidResponse => ("The store answered more than the operator reads (a listing or an error over its cap); it was not read further.", "check that endpoint is an S3 API, not something else"),
    }
}

vocabulary! {
    /// The `Ready` condition of any kind when a reconcile could not finish; retried with
    /// backoff per object.
    pub enum Trouble {
        KubernetesApiError => ("The Kubernetes API refused a request for this object in a way retrying alone does not fix (400, 403, 413, 422).", "see the message; a 403 means the operator's RBAC lacks a permission"),
        ReconcileTimeout => ("Handling the object took longer than it may and was stopped (a backend answering slowly).", "nothing if it passes; otherwise check the backend"),
        InternalError => ("The operator failed on this object: a bug.", "report it with the message"),
    }
}

vocabulary! {
    /// The reasons of the Events the operator publishes besides the Warnings that repeat a
    /// condition's reason.
    pub enum EventReason {
        Submitted => ("The backend accepted the request (a report, an RDE template).", "nothing"),
        Ready => ("A report is ready in its Secret, or a backend or store checks out.", "nothing"),
        Failed => ("A report FAILED.", "see the ReportFile's conditions"),
        SecretConflict => ("A Secret of the report's name that the operator does not own is in the way.", "delete or rename that Secret"),
        UrlRefreshed => ("The Secret got a fresh download URL (on request, before it expired, or after it was missing).", "nothing"),
        RateLimited => ("The backend's rate limit (or the operator's budget for it) delays a call; retried.", "nothing unless it persists"),
        BackendError => ("A backend call failed; retried (or, for a cleanup, tried again later).", "nothing if it passes; otherwise check the backend"),
        Delivered => ("The report was copied into its ReportStore.", "nothing"),
        DeliveryFailed => ("The copy into the ReportStore failed; retried with backoff, the Secret keeps the backend's download meanwhile.", "see the ReportFile's Delivered condition"),
        DeliveryCleanupSkipped => ("A deleted ReportFile's copy could not be deleted (the store is gone or refused); the object stays.", "delete the object by hand if it should go"),
        ReportLeft => ("A deleted ReportFile's report stays on CONNECT (failed, still running past the deadline, or the backend is gone).", "remove it on Connect by hand if it should go"),
        ReportRemoved => ("A deleted ReportFile's report was removed on CONNECT.", "nothing"),
        Created => ("A generator created a ReportFile.", "nothing"),
        Missed => ("A window got no report (suspended, past startingDeadlineSeconds, or skipped by catchUpPolicy).", "use the run-now annotation or a backfill if it is needed"),
        Replacing => ("An RDE generator's spec changed: its template is replaced by a new one.", "nothing"),
        Deleted => ("An RDE template was deleted on the platform.", "nothing"),
        TemplateLeft => ("A deleted generator's RDE template could not be deleted (its backend is gone).", "delete it on the platform by hand"),
    }
}

const FILE: &str = "ReportFile";
const GENERATOR: &str = "ReportGenerator";
const BACKEND: &str = "ReportBackend";
const STORE: &str = "ReportStore";

/// Every reason a user can see on a condition of any of the four kinds.
pub fn all() -> Vec<ReasonDoc> {
    let mut out = Vec::new();
    out.extend(FileReady::ALL.iter().map(|r| r.doc(FILE, "Ready")));
    for condition in ["Complete", "Failed"] {
        out.extend(FileOutcome::ALL.iter().map(|r| r.doc(FILE, condition)));
    }
    out.extend(Delivered::ALL.iter().map(|r| r.doc(FILE, "Delivered")));
    out.extend(GeneratorReady::ALL.iter().map(|r| r.doc(GENERATOR, "Ready")));
    // A backend the generator cannot use for its own calls shows its own reason.
    out.extend(
        BackendReady::ALL
            .iter()
            .filter(|r| **r != BackendReady::Authenticated)
            .map(|r| r.doc(GENERATOR, "Ready")),
    );
    out.extend(BackendReady::ALL.iter().map(|r| r.doc(BACKEND, "Ready")));
    out.extend(StoreReady::ALL.iter().map(|r| r.doc(STORE, "Ready")));
    for kind in [FILE, GENERATOR, BACKEND, STORE] {
        out.extend(Trouble::ALL.iter().map(|r| r.doc(kind, "Ready")));
    }
    out
}

/// Every Event reason besides the Warnings that repeat a condition's reason (those are in
/// [`all`]): condition "Event", kind the object the Event is about.
pub fn events() -> Vec<ReasonDoc> {
    use EventReason::*;
    let on = |kind, reasons: &[EventReason]| {
        reasons
            .iter()
            .map(move |r| r.doc(kind, "Event"))
            .collect::<Vec<_>>()
    };
    [
        on(
            FILE,
            &[
                Submitted,
                Ready,
                Failed,
                SecretConflict,
                UrlRefreshed,
                RateLimited,
                BackendError,
                Delivered,
                DeliveryFailed,
                DeliveryCleanupSkipped,
                ReportLeft,
                ReportRemoved,
            ],
        ),
        on(
            GENERATOR,
            &[
                Created,
                Missed,
                Submitted,
                Replacing,
                Deleted,
                TemplateLeft,
                BackendError,
            ],
        ),
        on(BACKEND, &[Ready]),
        on(STORE, &[Ready]),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ReportBackend, ReportFile, ReportGenerator, ReportStore};
    use kube::CustomResourceExt;

    #[test]
    fn a_reasons_string_is_its_name_and_every_one_is_documented() {
        assert_eq!(FileReady::SecretConflict.as_str(), "SecretConflict");
        assert_eq!(FileReady::parse("UrlExpired"), Some(FileReady::UrlExpired));
        assert_eq!(FileReady::parse("Nope"), None);
        for doc in all().into_iter().chain(events()) {
            assert!(doc.meaning.ends_with('.') && !doc.action.is_empty(), "{doc:?}");
        }
    }

    /// What `kubectl explain` shows of each kind's conditions names every reason of it.
    #[test]
    fn the_status_docs_name_every_reason() {
        let described = |crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition| {
            let crd = serde_json::to_value(crd).expect("crd json");
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
                ["conditions"]["description"]
                .as_str()
                .expect("status.conditions has a description")
                .split(|c: char| !c.is_ascii_alphanumeric())
                .map(str::to_string)
                .collect::<std::collections::HashSet<_>>()
        };
        let docs = [
            (FILE, described(ReportFile::crd())),
            (GENERATOR, described(ReportGenerator::crd())),
            (BACKEND, described(ReportBackend::crd())),
            (STORE, described(ReportStore::crd())),
        ];
        for doc in all() {
            let (_, words) = docs.iter().find(|(k, _)| *k == doc.kind).expect("a kind");
            assert!(
                words.contains(doc.reason),
                "the {} status doc does not name {} ({})",
                doc.kind,
                doc.reason,
                doc.condition
            );
        }
    }
}
