//! Heartbeats: while a processor runs, the consumer renews its message's visibility and its job's
//! lease, and writes the progress the processor reports. See docs/architecture.md, "Heartbeats".

use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{Record, WRAP_UP};
use crate::domain::{Timestamp, Transition};
use crate::processor::Reporter;
use crate::store::{ApplyError, Slot};

/// The least time between two writes of a job's progress: a processor may report as often as it
/// likes, and at most one write a second reaches the table.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// How often a running job's message and lease are renewed: a third of the queue's visibility
/// timeout, so that two heartbeats may fail before the message comes back; at least a second
/// (the granularity of SQS's visibility), unless the timeout is shorter than two.
pub fn interval(visibility_timeout: Duration) -> Duration {
    (visibility_timeout / 3)
        .max(Duration::from_secs(1))
        .min(visibility_timeout / 2)
}

/// The lease a claim or heartbeat at `now` takes: one visibility timeout, as long as the message
/// stays hidden, and never past the invocation's end, so a crashed invocation's job can be
/// claimed again as soon as its message comes back.
pub fn lease_until(
    now: Timestamp,
    visibility_timeout: Duration,
    invocation_deadline: Timestamp,
) -> Timestamp {
    now.saturating_add(visibility_timeout)
        .min(invocation_deadline)
}

/// Why a processor was stopped before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseLost {
    /// The job is no longer this attempt's: another consumer claimed it after the lease lapsed,
    /// or it ended.
    TakenOver,
    /// Heartbeats could not renew the lease (the table failing) before it lapsed.
    Lapsed,
}

impl LeaseLost {
    /// What the attempt's error says.
    pub fn reason(self) -> &'static str {
        match self {
            Self::TakenOver => "the processor was stopped: another consumer took the job over",
            Self::Lapsed => {
                "the processor was stopped: its lease lapsed, and heartbeats could not renew it"
            }
        }
    }
}

/// The heartbeat of one claimed attempt.
pub(super) struct Heartbeat<'r, 'a> {
    pub(super) record: &'r Record<'a>,
    pub(super) job_id: crate::domain::JobId,
    pub(super) attempt: u32,
    /// The lease this attempt holds: the claim's, then each renewal's.
    pub(super) lease_until: Timestamp,
    pub(super) reporter: Reporter,
    /// The slot of the job's kind this attempt holds, renewed with the lease.
    pub(super) slot: Option<&'r Slot>,
}

impl Heartbeat<'_, '_> {
    /// Renews the message and the lease every [`interval`], and writes reported progress at most
    /// every [`PROGRESS_INTERVAL`], until the invocation nears its end ([`WRAP_UP`] before it);
    /// after that it only waits. Returns when the attempt lost its job, and the processor must
    /// stop: at once when the job was taken over, or once the lease it holds lapsed when it could
    /// not be renewed.
    pub(super) async fn keep(mut self) -> LeaseLost {
        let app = self.record.app;
        let every = interval(app.settings.visibility_timeout);
        let stop_at = Instant::now()
            + self
                .record
                .invocation_deadline
                .saturating_since(app.clock.now())
                .saturating_sub(WRAP_UP);
        let mut next_beat = Instant::now() + every;
        let mut last_write: Option<Instant> = None;
        let mut reported = false;
        loop {
            let now = app.clock.now();
            if now > self.lease_until {
                warn!(lease_until = %self.lease_until, "lease lapsed; stopping the processor");
                return LeaseLost::Lapsed;
            }
            if Instant::now() >= stop_at {
                // The processor's own budget ends now, within the lease.
                std::future::pending::<()>().await;
            }
            let lapses =
                Instant::now() + self.lease_until.saturating_since(now) + Duration::from_millis(1);
            let mut wake = next_beat.min(lapses).min(stop_at);
            if reported {
                wake = wake.min(last_write.map_or_else(Instant::now, |at| at + PROGRESS_INTERVAL));
            }
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = self.reporter.reported() => {
                    reported = true;
                    continue;
                }
            }
            let instant = Instant::now();
            let renew = instant >= next_beat;
            let report = reported && last_write.is_none_or(|at| instant >= at + PROGRESS_INTERVAL);
            if !renew && !report {
                continue;
            }
            if renew {
                next_beat = instant + every;
            }
            if report {
                reported = false;
                last_write = Some(instant);
            }
            if let Err(lost) = self.beat(renew).await {
                return lost;
            }
        }
    }

    /// One write: the lease renewed when `renew` (and the message's visibility with it), and the
    /// latest report if one is waiting. A failing table leaves the lease as it was.
    async fn beat(&mut self, renew: bool) -> Result<(), LeaseLost> {
        let app = self.record.app;
        let progress = self.reporter.take();
        if !renew && progress.is_none() {
            return Ok(());
        }
        let now = app.clock.now();
        let lease_until = if renew {
            lease_until(
                now,
                app.settings.visibility_timeout,
                self.record.invocation_deadline,
            )
            .max(self.lease_until)
        } else {
            self.lease_until
        };
        let heartbeat = Transition::Heartbeat {
            attempt: self.attempt,
            lease_until,
            progress: progress.clone(),
        };
        // A write that hangs must not keep the processor running past the lease it holds.
        let held = self.lease_until.saturating_since(now) + Duration::from_millis(1);
        let applied = tokio::time::timeout(held, app.store.apply(self.job_id, &app.change(heartbeat)))
            .await
            .map_err(|_| {
                warn!(lease_until = %self.lease_until, "heartbeat not answered before the lease lapsed; stopping the processor");
                LeaseLost::Lapsed
            })?;
        match applied {
            Ok(_) => {
                self.lease_until = lease_until;
                if renew {
                    info!(lease_until = %lease_until, "heartbeat");
                    if let Some(slot) = self.slot {
                        self.record.renew_slot(slot, lease_until).await;
                    }
                    let left = lease_until.saturating_since(app.clock.now());
                    if tokio::time::timeout(left, self.record.extend_visibility())
                        .await
                        .is_err()
                    {
                        warn!(
                            "ChangeMessageVisibility not answered within the lease; the message may come back early"
                        );
                    }
                }
                Ok(())
            }
            Err(ApplyError::Rejected(job)) => {
                warn!(status = %job.status, attempts = job.attempts, "the job was taken over; stopping the processor");
                Err(LeaseLost::TakenOver)
            }
            Err(ApplyError::NotFound) => Err(LeaseLost::TakenOver),
            Err(ApplyError::Store(error)) => {
                warn!(
                    error = %crate::error::Chain(&error),
                    lease_until = %self.lease_until,
                    "heartbeat not written; the lease stands until it lapses"
                );
                if let Some(progress) = progress {
                    self.reporter.restore(progress);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_comes_every_third_of_the_visibility_timeout_and_at_most_every_second() {
        let secs = Duration::from_secs;
        assert_eq!(interval(secs(180)), secs(60));
        assert_eq!(interval(secs(2)), secs(1));
        assert_eq!(interval(secs(1)), Duration::from_millis(500));
        assert_eq!(interval(secs(3)), secs(1));
    }

    #[test]
    fn a_lease_lasts_one_visibility_timeout_and_never_past_the_invocation() {
        let now = Timestamp::from_millis(1_000_000);
        let deadline = Timestamp::from_millis(1_030_000);
        let lease = |visibility| lease_until(now, Duration::from_secs(visibility), deadline);
        assert_eq!(lease(10), Timestamp::from_millis(1_010_000));
        assert_eq!(lease(180), deadline);
    }
}
