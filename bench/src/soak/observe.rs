//! What the soak watches while it runs: each ReportFile the first time the API server shows
//! it READY, and the disturbances (episodes) with when each ended; from the two, how long
//! after each disturbance the first report became READY.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::{Api, Client};
use report_operator::api::{FileState, ReportFile};
use report_sim::{Fault, ReportingApi};

use crate::cluster::watch_each;

/// What a report reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    Ready,
    /// Its copy recorded in its status.
    Copied,
}

/// A ReportFile seen reaching a milestone for the first time.
#[derive(Debug, Clone)]
pub struct Ready {
    pub at: Instant,
    /// Its ReportBackend's name, which in the soak is its type in lower case.
    pub backend: String,
    pub milestone: Milestone,
}

/// Every ReportFile's first READY and first recorded copy in the cluster, from a watch
/// (which the API server's restarts interrupt; what happens while it is away is seen when
/// the watch lists again).
pub struct ReadyLog {
    seen: Arc<Mutex<Vec<Ready>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadyLog {
    pub fn start(client: Client) -> ReadyLog {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = seen.clone();
        let mut reached = HashSet::new();
        let task = watch_each(Api::<ReportFile>::all(client), move |file| {
            let status = file.status.as_ref();
            let ready = status.and_then(|s| s.status) == Some(FileState::Ready);
            let copied = status
                .and_then(|s| s.delivery.as_ref())
                .is_some_and(|d| d.sha256.is_some());
            for (reached_it, milestone) in [(ready, Milestone::Ready), (copied, Milestone::Copied)] {
                let key = (
                    file.metadata.namespace.clone(),
                    file.metadata.name.clone(),
                    milestone as u8,
                );
                if reached_it && reached.insert(key) {
                    let backend = file.spec.backend_ref.name.clone();
                    if let Ok(mut seen) = out.lock() {
                        seen.push(Ready {
                            at: Instant::now(),
                            backend,
                            milestone,
                        });
                    }
                }
            }
            true
        });
        ReadyLog { seen, task }
    }

    pub fn seen(&self) -> Vec<Ready> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for ReadyLog {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A disturbance of the run.
#[derive(Debug, Clone)]
pub struct Episode {
    /// What kind of disturbance, for the table: a fault kind, `operator killed`, ….
    pub kind: String,
    pub what: String,
    /// The API it hit; `None`: everything (the operator, the API server, the store).
    pub api: Option<ReportingApi>,
    pub started: Instant,
    /// When it was over: a process back, or an injected fault's last hit (a timeout's held
    /// answer included). `None` while it lasts.
    pub ended: Option<Instant>,
    /// An injected fault, until it has struck every time.
    pub fault: Option<Fault>,
    /// What recovery from it is: a report READY, or (the store's outage) a copy made.
    pub until: Milestone,
}

impl Episode {
    pub fn new(kind: &str, what: String, api: Option<ReportingApi>) -> Episode {
        Episode {
            kind: kind.to_string(),
            what,
            api,
            started: Instant::now(),
            ended: None,
            fault: None,
            until: Milestone::Ready,
        }
    }
}

/// For each ended episode, the time from its end to the first READY (or copy) after it of a
/// report on its API (on any API for an episode that hit everything); `None` when none
/// came after it.
pub fn recoveries(episodes: &[Episode], ready: &[Ready]) -> Vec<(usize, Option<Duration>)> {
    episodes
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let ended = e.ended?;
            let wanted = e.api.map(|a| a.as_str().to_ascii_lowercase());
            let first = ready
                .iter()
                .filter(|r| r.milestone == e.until && r.at >= ended)
                .filter(|r| wanted.as_ref().is_none_or(|w| *w == r.backend))
                .map(|r| r.at)
                .min();
            Some((i, first.map(|f| f - ended)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_is_to_the_first_ready_on_the_episodes_api_after_its_end() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ready = |after: u64, backend: &str| Ready {
            at: t0 + s(after),
            backend: backend.into(),
            milestone: Milestone::Ready,
        };
        let episode = |end: Option<u64>, api: Option<ReportingApi>| Episode {
            kind: "x".into(),
            what: "x".into(),
            api,
            started: t0,
            ended: end.map(|e| t0 + s(e)),
            fault: None,
            until: Milestone::Ready,
        };
        let mut seen = vec![ready(5, "cmp"), ready(12, "connect"), ready(20, "cmp")];
        seen.push(Ready {
            milestone: Milestone::Copied,
            ..ready(30, "rde")
        });
        let mut store = episode(Some(4), None);
        store.until = Milestone::Copied;
        let episodes = [
            episode(Some(4), None),
            episode(Some(6), Some(ReportingApi::Cmp)),
            episode(Some(6), Some(ReportingApi::Connect)),
            episode(Some(21), None),
            episode(None, None),
            store,
        ];
        assert_eq!(
            recoveries(&episodes, &seen),
            vec![
                (0, Some(s(1))),
                (1, Some(s(14))),
                (2, Some(s(6))),
                (3, None),
                (5, Some(s(26)))
            ]
        );
    }
}
