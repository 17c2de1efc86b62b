//! The create-once protocol, for everything the operator asks a backend to make (a report
//! for a ReportFile, an RDEReportTemplate for an RDE generator): whatever crashes or answers
//! get lost, nothing is made twice.
//!
//! 1. A create-pending mark without an id means an earlier request may have reached the
//!    backend: look it up (`find`) before asking again, and record what is found.
//! 2. Otherwise write the mark to the API server first, then ask (`submit`), then write the
//!    backend's id at once.
//!
//! A thing whose id is recorded already is not this protocol's business: its owner follows
//! that id.

use std::future::Future;

/// One object's side of the protocol: its marks in status, how it saves them, and the
/// backend calls. `Stop` is whatever ends the reconcile early (a failed call, a refused
/// write).
pub trait CreateOnce {
    /// What the backend answers with: a report, a template.
    type Made;
    type Stop;
    /// Whether a create-pending mark is set (and no id recorded).
    fn pending(&self) -> bool;
    /// Sets the create-pending mark.
    fn mark_pending(&mut self);
    /// Records the backend's id of `made` and clears the mark.
    fn record(&mut self, made: &Self::Made);
    /// Writes the marks to the API server.
    fn save(&mut self) -> impl Future<Output = Result<(), Self::Stop>> + Send;
    /// Looks up what an earlier request may have made.
    fn find(&mut self) -> impl Future<Output = Result<Option<Self::Made>, Self::Stop>> + Send;
    /// Asks the backend to make it.
    fn submit(&mut self) -> impl Future<Output = Result<Self::Made, Self::Stop>> + Send;
}

/// How the thing came to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created<T> {
    /// An earlier request had made it.
    Found(T),
    /// Made now.
    Submitted(T),
}

/// Runs the protocol for `c`; the id is recorded and saved when this returns `Ok`.
pub async fn create_once<C: CreateOnce + Send>(c: &mut C) -> Result<Created<C::Made>, C::Stop> {
    if c.pending()
        && let Some(found) = c.find().await?
    {
        c.record(&found);
        c.save().await?;
        return Ok(Created::Found(found));
    }
    // The mark goes to the API server before the backend hears of the request.
    c.mark_pending();
    c.save().await?;
    let made = c.submit().await?;
    c.record(&made);
    c.save().await?;
    Ok(Created::Submitted(made))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake object and backend that log every step; `crash_after` stops after that many
    /// steps as a crash would, keeping what was saved.
    #[derive(Default)]
    struct Fake {
        saved_pending: bool,
        saved_id: Option<u32>,
        pending: bool,
        id: Option<u32>,
        backend: Vec<u32>,
        log: Vec<&'static str>,
        crash_after: Option<usize>,
    }

    impl Fake {
        fn step(&mut self, what: &'static str) -> Result<(), &'static str> {
            self.log.push(what);
            if self.crash_after == Some(self.log.len()) {
                Err("crash")
            } else {
                Ok(())
            }
        }
    }

    impl CreateOnce for Fake {
        type Made = u32;
        type Stop = &'static str;
        fn pending(&self) -> bool {
            self.pending && self.id.is_none()
        }
        fn mark_pending(&mut self) {
            self.pending = true;
        }
        fn record(&mut self, made: &u32) {
            self.id = Some(*made);
            self.pending = false;
        }
        async fn save(&mut self) -> Result<(), &'static str> {
            self.step("save")?;
            (self.saved_pending, self.saved_id) = (self.pending, self.id);
            Ok(())
        }
        async fn find(&mut self) -> Result<Option<u32>, &'static str> {
            self.step("find")?;
            Ok(self.backend.last().copied())
        }
        async fn submit(&mut self) -> Result<u32, &'static str> {
            let made = self.backend.len() as u32 + 1;
            self.backend.push(made);
            self.step("submit")?;
            Ok(made)
        }
    }

    /// A reconcile after a crash starts from what was saved.
    fn restart(f: &Fake) -> Fake {
        Fake {
            saved_pending: f.saved_pending,
            saved_id: f.saved_id,
            pending: f.saved_pending,
            id: f.saved_id,
            backend: f.backend.clone(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_crash_at_any_step_makes_the_thing_exactly_once() {
        let mut fresh = Fake::default();
        assert_eq!(create_once(&mut fresh).await, Ok(Created::Submitted(1)));
        assert_eq!(fresh.log, ["save", "submit", "save"]);
        for crash_after in 1..=3 {
            let mut first = Fake {
                crash_after: Some(crash_after),
                ..Default::default()
            };
            assert_eq!(
                create_once(&mut first).await,
                Err("crash"),
                "crash after step {crash_after}"
            );
            let mut again = restart(&first);
            let made = match again.saved_id {
                Some(id) => id,
                None => match create_once(&mut again).await {
                    Ok(Created::Found(id) | Created::Submitted(id)) => id,
                    Err(e) => panic!("{e}"),
                },
            };
            assert_eq!(again.backend, [1], "crash after step {crash_after}: made once");
            assert_eq!(made, 1);
            assert_eq!(again.saved_id, Some(1));
        }
        // A lost submit answer after the mark was saved: the restart finds the report.
        let mut lost = Fake {
            crash_after: Some(2),
            ..Default::default()
        };
        let _ = create_once(&mut lost).await;
        let mut again = restart(&lost);
        assert_eq!(create_once(&mut again).await, Ok(Created::Found(1)));
        assert_eq!(again.log, ["find", "save"]);
    }
}
