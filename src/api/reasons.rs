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
        Pending => ("Waiting for the backend (not Ready, or its budget used up) or for the request to be accepted; retries say so in the message.", "fix the backend if it is not Ready; otherwise wait"),
        InProgress => ("The backend is generating the report.", "wait; `activeDeadlineSeconds` (default 6 hours) bounds it"),
        Ready => ("The Secret of the same name holds the download.", "read the Secret, or `kubectl report download`"),
        Failed => ("The backend failed or refused the report; `status.failedReason` has its reason.", "fix what the backend's reason names; a new report needs a new ReportFile (delete this one, or change the generator)"),
        DeadlineExceeded => ("Not READY within `activeDeadlineSeconds`.", "raise `activeDeadlineSeconds` on the generator if the backend is just slow"),
        TooLarge => ("The report or its download is over the operator's size limit (an inline FUSION file over 1,000,000 bytes, an API answer over 4 MiB).", "give the generator a `storeRef` (a ReportStore), or ask for a smaller report"),
        SecretConflict => ("A Secret of the report's name that the operator does not own is in the way; it is left as it is.", "delete or rename that Secret; the report is written within 30 s"),
        UrlExpired => ("The download URL expired, or cannot be renewed now; the report stays READY and `Complete`.", "set the annotation `reporting.report-operator.io/refresh-url` to a new value, or `kubectl report download`, which does it"),
        Deleting => ("The ReportFile is being deleted and its finalizer waits: for its report on CONNECT to be removed (the platform not Ready, erroring, or still making it) or for its copy in a ReportStore to be deleted (the store unreachable); the message says which. After the deletion grace (`--deletion-grace-seconds`, default 2 minutes) a Warning Event (`ReportLeft` or `DeliveryCleanupSkipped`) says what stays behind and the finalizer goes.", "fix the platform or store the message names, or wait out the grace; with no operator running, `kubectl report release-finalizers`"),
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
        Delivered => ("The copy is in the bucket; the Secret holds its presigned URL.", "nothing"),
        Copying => ("The copy is being made, apart from the reconciles (in the delivery pool); the Secret keeps the backend's download meanwhile.", "nothing"),
        Queued => ("The copy waits for a slot in the delivery pool: at most a few copies of one namespace (`--delivery-per-namespace`, default 2) and of all (`--delivery-concurrency`, default 8) run at once; the namespaces with copies waiting take turns.", "nothing; if it lasts, see which copies of the namespace are running (`Delivered` reason Copying)"),
        StoreNotFound => ("The ReportStore of `storeRef` does not exist in the namespace.", "create it"),
        InvalidSpec => ("The store's spec cannot be used (the message says why).", "fix the ReportStore"),
        CredentialsMissing => ("The store's credentials Secret or a key is missing.", "create it with `accessKeyId` and `secretAccessKey`"),
        DestinationDenied => ("The outbound policy forbids the store's endpoint or the backend's download host.", "allow it with the operator's `--outbound-*` flags"),
        Unauthorized => ("The store refused the credentials.", "fix them"),
        BucketNotFound => ("The bucket does not exist.", "create it"),
        Unreachable => ("The store did not answer (or a copy took over an hour).", "check `endpoint` and the network; retried after 5 s, doubling to 5 minutes"),
        InvalidResponse => ("The store's answer is larger than the operator reads (1 MiB of a listing, 64 KiB of an error).", "check that `endpoint` is an S3 API"),
        SourceUnavailable => ("The backend's download failed (or stalled) during the copy.", "usually nothing: retried; see the backend"),
        InvalidArchive => ("A CONNECT ZIP that `connectArchive: Extract` cannot unpack as a stream (entry sizes only after the data).", "use `connectArchive: Store`"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportGenerator: whether it is valid and producing reports.
    /// It also shows the [`BackendReady`] reasons of a backend it cannot use for its own calls
    /// (RDE templates, listing reports to mirror), and the [`Trouble`] of a failed reconcile.
    pub enum GeneratorReady {
        ReportReady => ("ONETIME: its report is READY (or was, if its ReportFile was deleted since: a ONETIME report is made once).", "download it from the ReportFile's Secret"),
        ReportInProgress => ("ONETIME: its report is being generated.", "wait"),
        ReportFailed => ("ONETIME: its report FAILED (also after its ReportFile was deleted: it is not made again).", "read the ReportFile's `status.failedReason` and conditions; change the spec to ask again"),
        Scheduled => ("PERIODIC and ON_INVOICE: working; `status.nextReportDate` says when the next report is due.", "nothing"),
        Throttled => ("PERIODIC: 200 reports of this generator are in progress; the next windows start, oldest first, as reports finish.", "nothing; see whether the backend is slow"),
        LastReportFailed => ("PERIODIC and ON_INVOICE: the newest finished report (by window end, then completion time) FAILED; the message names it.", "read that ReportFile's failure; Ready again once a newer report is READY"),
        BackendNotFound => ("The ReportBackend of `backendRef` does not exist in the namespace.", "create it, or fix `backendRef`"),
        BackendNotReady => ("The ReportBackend is not Ready (its reason is in the message) or not checked yet.", "fix the backend: see its Ready condition"),
        BackendError => ("A call on the generator's own behalf (an RDE template, listing reports to mirror) failed and is retried.", "usually nothing; if it lasts, see the backend and the operator's log"),
        Rejected => ("The backend refused the RDE report template, with its reason.", "fix what the backend's reason names"),
        FileConflict => ("A ReportFile of the name a window needs exists but is not this generator's (left by an earlier generator of the same name, or made by someone else).", "delete it, or rename the generator; one being deleted goes by itself"),
        UnsupportedEventType => ("The backend type does not offer this `eventType` (ON_INVOICE on CONNECT, FUSION, SUPPLIER).", "use another event type or backend type"),
        UnsupportedFormat => ("The backend type does not offer this `format`; the message lists the ones it does.", "use one of them"),
        UnsupportedPeriod => ("The backend type does not offer this `period` (RDE: P1D and P1M only).", "use one it offers"),
        InvalidParameters => ("A parameter the backend type needs is missing (a ONETIME report without dates on any backend but FUSION, a CONNECT `template`, a SUPPLIER `reportType`, a FUSION `scope`, a PERIODIC `period`), or `activeDeadlineSeconds` is out of range.", "add or fix the parameter the message names"),
        InvalidSchedule => ("`schedule.cron` or `timeZone` cannot be read, or `startingDeadlineSeconds` is out of range.", "fix the field the message names"),
        BackfillTooLong => ("`parameters.startDate` is more than 1,000 windows back; nothing was created.", "set `startDate` to the earliest date the message gives, or later, or use a longer period"),
        UnsupportedSetting => ("A setting the backend type cannot honour; the message names the field, the type and what to do.", "remove the setting, as the message says"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportBackend: whether the credentials work against the API.
    pub enum BackendReady {
        Authenticated => ("The credentials worked against the API.", "nothing; probed again every 5 minutes"),
        Unauthorized => ("The API refused the credentials (also an HTTP 401 or 403).", "fix the credentials in the Secret; the backend is probed again when the Secret changes"),
        TwoFactorRequired => ("Fusion asks this user for a second factor.", "log in once from the operator's address, or use `accessToken` + `refreshToken`"),
        CredentialsMissing => ("The credentials Secret or one of its keys is missing (named in the message).", "create the Secret in the backend's namespace with the keys its type needs"),
        InvalidSpec => ("The spec cannot be used (a URL, a CA Secret without its key, …; the message says which).", "fix the field the message names"),
        DestinationDenied => ("The operator's outbound policy forbids the address.", "allow it with the flag the message names"),
        InvalidResponse => ("The answer is not the API's: malformed, too large, or a redirect.", "check that `spec.url` is the API's base URL, with its path prefix"),
        Unreachable => ("The API did not answer (connection, timeout, 5xx), or a Secret could not be read.", "check `spec.url` and the network (with the chart's NetworkPolicy, `networkPolicy.backends`); probed again after 30 s, then less often, up to every 5 minutes"),
    }
}

vocabulary! {
    /// The `Ready` condition of a ReportStore: whether the bucket answers with the credentials.
    pub enum StoreReady {
        Reachable => ("The bucket answers with these credentials.", "nothing"),
        InvalidSpec => ("The spec cannot be used (the message says why; such as a `region` that is not 1 to 64 lower-case letters, digits and `-`, in an object admitted before the CRD refused it).", "fix the field it names"),
        CredentialsMissing => ("The credentials Secret or a key is missing.", "create it"),
        DestinationDenied => ("The outbound policy forbids the endpoint.", "allow it with the operator's `--outbound-*` flags"),
        Unauthorized => ("The store refused the credentials.", "fix them"),
        BucketNotFound => ("The bucket does not exist.", "create it"),
        Unreachable => ("The store did not answer (within 30 s).", "check `endpoint` and the network"),
        InvalidResponse => ("The store's answer is larger than the operator reads: \"the store's answer is larger than 1048576 bytes; it was not read further\".", "check that `endpoint` is an S3 API"),
    }
}

vocabulary! {
    /// The `Ready` condition of any kind when a reconcile could not finish; retried with
    /// backoff per object.
    pub enum Trouble {
        KubernetesApiError => ("The Kubernetes API refused a request for this object (400, 403, 413, 422), with its message: a Secret label value the API server rejects, missing RBAC.", "fix what the message names (for a 403, the operator's RBAC)"),
        ReconcileTimeout => ("Handling the object took longer than 120 s and was stopped (a copy into a ReportStore runs apart, within an hour).", "see whether a backend answers slowly"),
        InternalError => ("The operator failed on this object: a bug.", "report it, with the message"),
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
        DeliveryCleanupSkipped => ("A deleted ReportFile's copy could not be deleted (the store is gone, refused, or stayed unreachable through the deletion grace); the object stays.", "delete the object by hand if it should go"),
        ReportLeft => ("A deleted ReportFile's report stays on CONNECT: failed, held by another ReportFile, still being made or the backend not Ready or erroring through the deletion grace, or the backend is gone.", "remove it on Connect by hand if it should go"),
        ReportRemoved => ("A deleted ReportFile's report was removed on CONNECT.", "nothing"),
        Created => ("A generator created a ReportFile.", "nothing"),
        Missed => ("A window got no report (suspended, past startingDeadlineSeconds, or skipped by catchUpPolicy).", "use the run-now annotation or a backfill if it is needed"),
        Replacing => ("An RDE generator's spec changed: its template is replaced by a new one.", "nothing"),
        Deleted => ("An RDE template was deleted on the platform.", "nothing"),
        TemplateLeft => ("A deleted generator's RDE template could not be deleted: its backend is gone, or still not Ready or failing at the end of the deletion grace.", "delete it on the platform by hand"),
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
