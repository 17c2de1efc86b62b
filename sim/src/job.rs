//! A report's life, computed from its timestamps on every read: queued for the first quarter
//! of the generation time, running for the rest, then succeeded or failed. Nothing runs in the
//! background, so a simulator with thousands of reports costs nothing while idle, and a
//! report's state at any instant is reproducible.

use chrono::{DateTime, Duration, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn is_finished(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Job {
    pub created: DateTime<Utc>,
    pub done_at: DateTime<Utc>,
    /// Decided at creation: the report ends failed.
    pub fails: bool,
}

impl Job {
    pub fn new(created: DateTime<Utc>, generation: std::time::Duration, fails: bool) -> Self {
        let generation = Duration::from_std(generation).unwrap_or(Duration::MAX);
        Job {
            created,
            done_at: created
                .checked_add_signed(generation)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            fails,
        }
    }

    /// When it leaves the queue and starts running.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.created + (self.done_at - self.created) / 4
    }

    pub fn phase(&self, now: DateTime<Utc>) -> Phase {
        if now >= self.done_at {
            if self.fails {
                Phase::Failed
            } else {
                Phase::Succeeded
            }
        } else if now >= self.started_at() {
            Phase::Running
        } else {
            Phase::Queued
        }
    }

    /// Still counts as in progress at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        now < self.done_at
    }

    /// Percent done, 0 to 100.
    pub fn progress(&self, now: DateTime<Utc>) -> u32 {
        let total = (self.done_at - self.created).num_milliseconds();
        if total <= 0 || now >= self.done_at {
            return 100;
        }
        let done = (now - self.created).num_milliseconds().clamp(0, total);
        u32::try_from(done * 100 / total).unwrap_or(100)
    }

    /// When the state last changed, as of `now` (APS `modified`, SUPPLIER `updatedAt`).
    pub fn modified(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.phase(now) {
            Phase::Queued => self.created,
            Phase::Running => self.started_at(),
            Phase::Succeeded | Phase::Failed => self.done_at,
        }
    }
}

/// The documented way to make a simulated report fail: `FAIL` in its name.
pub(crate) fn named_to_fail<'a>(names: impl IntoIterator<Item = &'a str>) -> bool {
    names.into_iter().any(|n| n.contains("FAIL"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_the_clock() {
        let t0 = Utc::now();
        let job = Job::new(t0, std::time::Duration::from_secs(4), false);
        assert_eq!(job.phase(t0), Phase::Queued);
        assert_eq!(job.phase(t0 + Duration::seconds(1)), Phase::Running);
        assert_eq!(job.progress(t0 + Duration::seconds(2)), 50);
        assert_eq!(job.phase(t0 + Duration::seconds(4)), Phase::Succeeded);
        let failing = Job::new(t0, std::time::Duration::ZERO, true);
        assert_eq!(failing.phase(t0), Phase::Failed);
        assert!(!failing.is_active(t0));
        assert!(named_to_fail(["x", "a FAIL"]));
    }
}
