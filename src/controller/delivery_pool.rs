//! The delivery pool: copies of READY reports into ReportStores run here, apart from the
//! reconciles, so that a long or hung upload holds no ReportFile worker, and
//! [`fair_share`](super::fair_share) decides which copies may run (a few per namespace, a
//! bounded number in all).
//!
//! A reconcile hands its copy over ([`Deliveries::copy`]) and returns. When the copy ends,
//! the pool wakes its ReportFile, whose next reconcile takes the result and records it, and
//! wakes the waiters a freed slot is kept for. Results live in memory only: one lost with the
//! process, or whose status write failed, is a copy made again, onto the same object (its key
//! comes from the immutable spec).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use kube::runtime::reflector::{ObjectRef, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::bucket::Copied;
use super::fair_share::{Admission, Key, Limits, Slots};
use crate::api::ReportFile;
use crate::backend::transfer::MAX_COPY_TIME;
use crate::delivery::StoreError;

/// A result nobody came for (its ReportFile was deleted, say) is forgotten after this.
const KEEP_RESULT: Duration = Duration::from_secs(600);

/// A copy: reads the report and uploads it, needing nothing of the reconcile that made it.
pub type Job = BoxFuture<'static, Result<Copied, StoreError>>;

/// What [`Deliveries::start`] did with a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Started now.
    Started,
    /// It was running already.
    Running,
    /// It waits for a slot; the ReportFile is woken when one is kept for it.
    Waiting,
}

/// The copies running and waiting, and the results not yet recorded.
pub struct Deliveries {
    /// The ReportFile cache: a waiter whose ReportFile is gone (or being deleted) gets no slot.
    files: Store<ReportFile>,
    state: Mutex<State>,
    wake: mpsc::UnboundedSender<ObjectRef<ReportFile>>,
    /// Taken once by the ReportFile controller ([`Deliveries::wakes`]).
    woken: Mutex<Option<mpsc::UnboundedReceiver<ObjectRef<ReportFile>>>>,
    /// The drivers' fast tests: copies begin only while this is true, so that a test reads
    /// the reconcile's calls apart from the copy's.
    #[cfg(test)]
    gate: tokio::sync::watch::Sender<bool>,
}

struct State {
    slots: Slots,
    tasks: HashMap<Key, JoinHandle<()>>,
    finished: HashMap<Key, (Instant, Result<Copied, StoreError>)>,
}

impl Deliveries {
    /// A pool with `limits`, which reads which ReportFiles exist from `files`.
    pub fn new(limits: Limits, files: Store<ReportFile>) -> Arc<Self> {
        // Unbounded, yet small: each copy that ends sends one wake, and one per waiter a freed
        // slot is kept for; the controller takes them as they come.
        let (wake, woken) = mpsc::unbounded_channel();
        Arc::new(Deliveries {
            files,
            state: Mutex::new(State {
                slots: Slots::new(limits),
                tasks: HashMap::new(),
                finished: HashMap::new(),
            }),
            wake,
            woken: Mutex::new(Some(woken)),
            #[cfg(test)]
            gate: tokio::sync::watch::Sender::new(false),
        })
    }

    pub fn limits(&self) -> Limits {
        self.lock().slots.limits()
    }

    /// The ReportFiles to reconcile because their copy ended or a slot is kept for them; the
    /// first call gets the stream, later ones `None`.
    pub fn wakes(&self) -> Option<BoxStream<'static, ObjectRef<ReportFile>>> {
        let rx = self.woken.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        Some(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|o| (o, rx)) }).boxed())
    }

    /// The result of the copy of `key`, if it ended since the last look: the caller's to
    /// record.
    pub fn take_result(&self, key: &Key) -> Option<Result<Copied, StoreError>> {
        let now = Instant::now();
        let mut state = self.lock();
        state
            .finished
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < KEEP_RESULT);
        state.finished.remove(key).map(|(_, result)| result)
    }

    /// Whether the copy of `key` is running.
    pub fn is_running(&self, key: &Key) -> bool {
        self.lock().tasks.contains_key(key)
    }

    /// Starts the copy of `key` with `job()` if a slot is free for it; otherwise it goes on
    /// running or waits its turn.
    pub fn start(self: &Arc<Self>, key: &Key, job: impl FnOnce() -> Job) -> Start {
        let mut state = self.lock();
        let (admission, woken) = state.slots.admit(key, Instant::now(), |k| self.alive(k));
        let start = match admission {
            Admission::Start => {
                // The task's end takes the lock, so it finds its handle in `tasks`.
                let ending = Ending {
                    pool: self.clone(),
                    key: key.clone(),
                    result: None,
                };
                let task = tokio::spawn(run(ending, job()));
                state.tasks.insert(key.clone(), task);
                Start::Started
            }
            Admission::Running => Start::Running,
            Admission::Wait => Start::Waiting,
        };
        drop(state);
        self.wake_all(woken);
        start
    }

    /// The ReportFile of `key` is being deleted: its copy is stopped (or no longer waits),
    /// and what it wrote, if it ended without being recorded, is returned.
    pub async fn cancel(&self, key: &Key) -> Option<Result<Copied, StoreError>> {
        let task = {
            let mut state = self.lock();
            let woken = state.slots.forget(key, Instant::now(), |k| self.alive(k));
            self.wake_all(woken);
            state.tasks.remove(key)
        };
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        self.lock().finished.remove(key).map(|(_, result)| result)
    }

    /// The copy of `key` ended with `result`: kept for its ReportFile, which is woken with
    /// the waiters its slot goes to.
    fn ended(&self, key: Key, result: Result<Copied, StoreError>) {
        let now = Instant::now();
        let woken = {
            let mut state = self.lock();
            state.tasks.remove(&key);
            let woken = state.slots.finish(&key, now, |k| self.alive(k));
            state.finished.insert(key.clone(), (now, result));
            woken
        };
        self.wake_all(std::iter::once(key).chain(woken));
    }

    /// Whether the ReportFile of `key` exists and is not being deleted.
    fn alive(&self, key: &Key) -> bool {
        let obj = ObjectRef::new(&key.name).within(&key.namespace);
        self.files.get(&obj).is_some_and(|rf| {
            rf.metadata.uid.as_deref() == Some(key.uid.as_str()) && rf.metadata.deletion_timestamp.is_none()
        })
    }

    fn wake_all(&self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            // Fails only once the controller is gone, as the process stops.
            let _ = self.wake.send(ObjectRef::new(&key.name).within(&key.namespace));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the copies started so far run to their end (the drivers' fast tests); later
    /// ones wait for the next call.
    #[cfg(test)]
    pub async fn run_copies(&self) {
        self.gate.send_replace(true);
        while !self.lock().tasks.is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.gate.send_replace(false);
    }
}

/// Runs `job` to its end (within [`MAX_COPY_TIME`]); `ending` records how it ended, also
/// when the task is stopped (before it began, too) or panics.
async fn run(mut ending: Ending, job: Job) {
    #[cfg(test)]
    let _ = ending.pool.gate.subscribe().wait_for(|open| *open).await;
    let result = match tokio::time::timeout(MAX_COPY_TIME, job).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Unreachable(format!(
            "the copy took longer than {} s and was stopped",
            MAX_COPY_TIME.as_secs()
        ))),
    };
    ending.result = Some(result);
}

/// Records how a copy's task ended when it is dropped: with its result, or (stopped, or a
/// panic) as a copy that did not finish, so that its slot is always given back.
struct Ending {
    pool: Arc<Deliveries>,
    key: Key,
    result: Option<Result<Copied, StoreError>>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Err(StoreError::Unreachable(
                "the copy was stopped before it finished".into(),
            ))
        });
        self.pool.ended(self.key.clone(), result);
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher;

    use super::*;
    use crate::delivery::Uploaded;

    /// A pool of one slot per namespace, two in all, and a cache holding ReportFiles `names`
    /// of namespace `team`.
    fn pool(names: &[&str]) -> Arc<Deliveries> {
        let mut writer: Writer<ReportFile> = Writer::default();
        for name in names {
            let rf: ReportFile = serde_json::from_value(serde_json::json!({
                "apiVersion": "reporting.report-operator.io/v1alpha1", "kind": "ReportFile",
                "metadata": {"name": name, "namespace": "team", "uid": format!("uid-{name}")},
                "spec": {"backendRef": {"name": "b"}, "name": "x", "eventType": "ONETIME", "format": "CSV"},
            }))
            .expect("a ReportFile");
            writer.apply_watcher_event(&watcher::Event::Apply(rf));
        }
        Deliveries::new(
            Limits {
                total: 2,
                per_namespace: 1,
            },
            writer.as_reader(),
        )
    }

    fn key(name: &str) -> Key {
        Key {
            namespace: "team".into(),
            name: name.into(),
            uid: format!("uid-{name}"),
        }
    }

    fn copied(key: &str) -> Copied {
        Copied {
            key: key.into(),
            location: format!("s3://b/{key}"),
            locations: vec![format!("s3://b/{key}")],
            unpacked: false,
            uploaded: Uploaded {
                size: 1,
                sha256: "ab".into(),
            },
            total: 1,
        }
    }

    fn done(key: &'static str) -> impl FnOnce() -> Job {
        move || Box::pin(async move { Ok(copied(key)) })
    }

    #[tokio::test]
    async fn a_copy_runs_apart_and_its_end_wakes_its_report_file_and_the_next_waiter() {
        let pool = pool(&["r", "s"]);
        let mut wakes = pool.wakes().expect("the wakes");
        assert!(pool.wakes().is_none(), "taken once");
        assert_eq!(pool.start(&key("r"), done("r.csv")), Start::Started);
        assert_eq!(pool.start(&key("r"), done("r.csv")), Start::Running);
        assert_eq!(pool.start(&key("s"), done("s.csv")), Start::Waiting);
        assert!(pool.take_result(&key("r")).is_none(), "not ended yet");
        pool.run_copies().await;
        let woken = [wakes.next().await, wakes.next().await].map(|o| o.map(|o| o.name));
        assert_eq!(woken, [Some("r".into()), Some("s".into())]);
        assert_eq!(
            pool.take_result(&key("r")).map(|r| r.ok().map(|c| c.key)),
            Some(Some("r.csv".into()))
        );
        assert!(pool.take_result(&key("r")).is_none(), "taken once");
        assert_eq!(pool.start(&key("s"), done("s.csv")), Start::Started);
    }

    #[tokio::test]
    async fn a_cancelled_copy_gives_its_slot_back_and_says_it_did_not_finish() {
        let pool = pool(&["r", "s"]);
        let hung = || -> Job { Box::pin(futures::future::pending()) };
        assert_eq!(pool.start(&key("r"), hung), Start::Started);
        pool.gate.send_replace(true);
        let result = pool.cancel(&key("r")).await;
        assert!(
            matches!(&result, Some(Err(StoreError::Unreachable(m))) if m.contains("stopped before it finished")),
            "{result:?}"
        );
        assert!(!pool.is_running(&key("r")));
        assert_eq!(
            pool.start(&key("s"), done("s.csv")),
            Start::Started,
            "the slot is free"
        );
    }

    #[tokio::test]
    async fn a_copy_that_panics_gives_its_slot_back() {
        let pool = pool(&["r"]);
        let panics = || -> Job { Box::pin(async { panic!("a bug") }) };
        assert_eq!(pool.start(&key("r"), panics), Start::Started);
        pool.run_copies().await;
        assert!(matches!(pool.take_result(&key("r")), Some(Err(_))));
        assert_eq!(pool.start(&key("r"), done("r.csv")), Start::Started);
    }
}
