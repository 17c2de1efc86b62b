//! One behaviour test's world: a namespace, a simulator and an operator process scoped to
//! that namespace.

use std::time::Duration;

use futures::TryStreamExt;
use kube::runtime::WatchStreamExt;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use report_operator::api::{
    BackendType, FileState, ReportBackend, ReportFile, ReportGenerator, find_condition,
};
use report_sim::{SimConfig, SimServer};

use super::operator::Operator;
use super::{TestNamespace, wait_for};

pub struct World {
    // Dropped in this order: the operator stops before its simulator's port is given back.
    pub operator: Operator,
    pub sim: SimServer,
    pub ns: TestNamespace,
    pub client: kube::Client,
}

impl World {
    pub async fn start(prefix: &str, config: SimConfig) -> World {
        let ns = TestNamespace::new(prefix).await;
        let sim = SimServer::start(config, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("start simulator");
        let operator = Operator::start(ns.cp(), &ns.name);
        let client = ns.cp().client().await;
        World {
            operator,
            sim,
            ns,
            client,
        }
    }

    pub fn apply(&self, yaml: &str) {
        self.ns.apply(yaml);
    }

    pub fn files(&self) -> Api<ReportFile> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn generators(&self) -> Api<ReportGenerator> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn backends(&self) -> Api<ReportBackend> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns.name)
    }

    /// The ReportFiles of a generator, by label.
    pub async fn files_of(&self, generator: &str) -> Vec<ReportFile> {
        let lp = ListParams::default().labels(&format!("reporting.report-operator.io/generator={generator}"));
        self.files().list(&lp).await.expect("list ReportFiles").items
    }

    /// Waits until `generator` has `n` ReportFiles, all finished, and returns them.
    pub async fn wait_finished(&self, generator: &str, n: usize, deadline: Duration) -> Vec<ReportFile> {
        let what = format!(
            "{n} finished ReportFiles of {generator} (operator log: {})",
            self.operator.log.display()
        );
        wait_for(&what, deadline, || async {
            let files = self.files_of(generator).await;
            let done = files
                .iter()
                .filter(|f| {
                    f.status
                        .as_ref()
                        .and_then(|s| s.status)
                        .is_some_and(FileState::is_finished)
                })
                .count();
            (files.len() == n && done == n).then_some(files)
        })
        .await
    }

    /// A ReportBackend `b` of type `t` with good credentials and a ONETIME generator `once`
    /// (`common_name`) on it, until its report is finished: its ReportFile.
    pub async fn onetime_finished(
        &self,
        t: BackendType,
        common_name: &str,
        deadline: Duration,
    ) -> ReportFile {
        self.apply(&super::fixtures::backend(
            &self.sim,
            t,
            "b",
            &super::fixtures::good_credentials(t),
            "",
        ));
        self.apply(&super::fixtures::onetime(t, "once", "b", common_name));
        self.wait_finished("once", 1, deadline).await.remove(0)
    }

    /// Waits for the backend's Ready condition to have `status` ("True"/"False") and returns
    /// its reason and message.
    pub async fn wait_backend(&self, name: &str, status: &str) -> (String, String) {
        wait_for(
            &format!("ReportBackend {name} Ready={status}"),
            Duration::from_secs(60),
            || async {
                let rb = self.backends().get(name).await.ok()?;
                let c = find_condition(&rb.status?.conditions, "Ready")?.clone();
                (c.status == status && c.observed_generation == rb.metadata.generation)
                    .then_some((c.reason, c.message))
            },
        )
        .await
    }

    /// Records, from now on, every reason the Ready condition of a ReportFile in this
    /// namespace takes, as (file, reason) in the order written: a watch sees each status
    /// write, also those a later read would miss.
    pub fn record_file_reasons(&self) -> ReasonLog {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = seen.clone();
        let api = self.files();
        let task = tokio::spawn(async move {
            let mut objects = std::pin::pin!(
                kube::runtime::watcher(api, kube::runtime::watcher::Config::default()).applied_objects()
            );
            while let Ok(Some(rf)) = objects.try_next().await {
                if let Some(c) = rf
                    .status
                    .as_ref()
                    .and_then(|s| find_condition(&s.conditions, "Ready"))
                {
                    out.lock()
                        .expect("reason log")
                        .push((rf.metadata.name.clone().unwrap_or_default(), c.reason.clone()));
                }
            }
        });
        ReasonLog {
            seen,
            _watch: AbortOnDrop(task),
        }
    }

    /// The `externalId` a generator's status holds (RDE: its template), which must be there.
    pub async fn generator_external_id(&self, generator: &str) -> String {
        let g = self.generators().get(generator).await.expect("generator");
        g.status
            .and_then(|s| s.external_id)
            .expect("externalId in the generator's status")
    }

    /// The Events of this namespace with `reason`.
    pub async fn events(&self, reason: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.ns.name);
        api.list(&ListParams::default().fields(&format!("reason={reason}")))
            .await
            .expect("list Events")
            .items
    }

    /// A Secret's data as strings.
    pub async fn secret_data(&self, name: &str) -> std::collections::BTreeMap<String, Vec<u8>> {
        let s = self.secrets().get(name).await.expect("get Secret");
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect()
    }
}

/// The text of `key` in a Secret's data, which must be there.
pub fn text(data: &std::collections::BTreeMap<String, Vec<u8>>, key: &str) -> String {
    String::from_utf8(
        data.get(key)
            .unwrap_or_else(|| panic!("Secret key {key} missing"))
            .clone(),
    )
    .expect("utf8")
}

/// What [`World::record_file_reasons`] saw; the watch stops when this is dropped.
pub struct ReasonLog {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    _watch: AbortOnDrop,
}

impl ReasonLog {
    pub fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("reason log").clone()
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
