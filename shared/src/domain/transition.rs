use std::time::Duration;

use serde_json::Value;

use super::{Failure, Fanout, Job, JobStatus, Progress, Timestamp};

/// A move from one job state to another. Each is applied as one conditional write, so a duplicate
/// delivery or a second consumer can never apply it twice or move a terminal job.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// `pending` (or `running` under a lapsed lease, with attempts left) → `running`, one more
    /// attempt.
    Claim {
        /// Until when the claiming consumer holds the job.
        lease_until: Timestamp,
        /// `SPILLWAY_MAX_ATTEMPTS`: a job abandoned on its last attempt is not claimed again (the
        /// consumer dead-letters it). A `pending` job is claimed whatever its count: past the
        /// limit only after a redrive, which grants one more attempt.
        max_attempts: u32,
    },
    /// `running` → `running`, for the attempt that holds the claim: its processor is still at work.
    /// Moves the lease to `lease_until` and keeps `progress` when given; a job another consumer
    /// claimed since (a later attempt) or that ended is left as it is.
    Heartbeat {
        /// The attempt number the claim returned.
        attempt: u32,
        /// Until when the attempt now holds the job.
        lease_until: Timestamp,
        /// What the processor last reported, when it reported something since the last write.
        progress: Option<Progress>,
    },
    /// `running` → `succeeded`, for the attempt that holds the claim.
    Succeed {
        /// The attempt number the claim returned.
        attempt: u32,
        /// The processor's output.
        result: Value,
    },
    /// `running` → `failed` (a permanent error).
    Fail {
        /// The attempt number the claim returned.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// `running` → `pending`, to be retried when the message becomes visible again.
    Retry {
        /// The attempt number the claim returned.
        attempt: u32,
        /// Why this attempt failed.
        error: String,
    },
    /// `running` → `dead_lettered`: the last attempt failed.
    DeadLetter {
        /// The attempt number the claim returned.
        attempt: u32,
        /// Why the last attempt failed.
        error: String,
    },
    /// `pending` (or `running` under a lapsed lease) → `expired`: the deadline passed.
    Expire,
    /// `pending` → `cancelled`: the client withdrew it.
    Cancel,
    /// `dead_lettered` (or `running` under a lapsed lease, whose last outcome was never
    /// recorded) → `pending`: an operator redrives its message from the DLQ.
    Redrive {
        /// A new deadline, when the operator extends it (`spillway dlq redrive --extend`).
        deadline: Option<Timestamp>,
    },
    /// A fan-out parent (`running`, never claimed) → `succeeded` when `failures` is empty, else
    /// `failed`: its last child ended.
    Settle {
        /// The children that did not succeed.
        failures: Vec<Failure>,
        /// The parent's error, when some did not.
        error: Option<String>,
    },
}

/// One thing a transition requires of the job as it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// The job is in this state.
    Status(JobStatus),
    /// Its lease, if it has one, ended before the change's moment.
    LeaseLapsed,
    /// Its attempt count is this one: the claim that attempt returned still holds the job.
    Attempt(u32),
    /// Its deadline is before the change's moment.
    DeadlinePassed,
    /// Its attempt count is below this one.
    AttemptsBelow(u32),
    /// It is not scheduled, or its time has come by the change's moment.
    Due,
}

impl Requirement {
    /// Whether `job` meets the requirement for a change at `at`.
    pub fn holds(&self, job: &Job, at: Timestamp) -> bool {
        match self {
            Self::Status(status) => job.status == *status,
            Self::LeaseLapsed => job.lease_until.is_none_or(|until| until < at),
            Self::Attempt(attempt) => job.attempts == *attempt,
            Self::DeadlinePassed => job.deadline < at,
            Self::AttemptsBelow(limit) => job.attempts < *limit,
            Self::Due => job.run_at.is_none_or(|due| due <= at),
        }
    }
}

/// The message a job carries once it expired.
pub const EXPIRED_ERROR: &str = "the deadline passed before the job could run";

impl Transition {
    /// The state the job is in afterwards. A fan-out parent settles `succeeded` when every
    /// child did, `cancelled` when every child that did not was cancelled (its owner cancelled
    /// the fan-out), and `failed` otherwise.
    pub fn target(&self) -> JobStatus {
        match self {
            Self::Claim { .. } | Self::Heartbeat { .. } => JobStatus::Running,
            Self::Succeed { .. } => JobStatus::Succeeded,
            Self::Fail { .. } => JobStatus::Failed,
            Self::Retry { .. } => JobStatus::Pending,
            Self::DeadLetter { .. } => JobStatus::DeadLettered,
            Self::Expire => JobStatus::Expired,
            Self::Cancel => JobStatus::Cancelled,
            Self::Redrive { .. } => JobStatus::Pending,
            Self::Settle { error: None, .. } => JobStatus::Succeeded,
            Self::Settle { failures, .. }
                if failures.iter().all(|f| f.status == JobStatus::Cancelled) =>
            {
                JobStatus::Cancelled
            }
            Self::Settle { error: Some(_), .. } => JobStatus::Failed,
        }
    }

    /// What the job must be for this transition: any one of these lists of requirements, each met
    /// in full. The one home of the state machine's rules: [`Change::permits`] evaluates it in
    /// memory, and the DynamoDB store turns it into the write's condition.
    pub fn precondition(&self) -> Vec<Vec<Requirement>> {
        use Requirement::{Attempt, AttemptsBelow, DeadlinePassed, Due, LeaseLapsed, Status};
        let pending = Status(JobStatus::Pending);
        let abandoned = [Status(JobStatus::Running), LeaseLapsed];
        match self {
            // A scheduled job is never claimed early, whatever message arrives for it.
            Self::Claim { max_attempts, .. } => vec![
                vec![pending, Due],
                [abandoned.as_slice(), &[AttemptsBelow(*max_attempts)]].concat(),
            ],
            // A deadline extended since the message was sent (a redrive with --extend) wins over
            // the message's.
            Self::Expire => vec![
                vec![pending, DeadlinePassed],
                [abandoned.as_slice(), &[DeadlinePassed]].concat(),
            ],
            Self::Cancel => vec![vec![pending]],
            Self::Redrive { .. } => vec![vec![Status(JobStatus::DeadLettered)], abandoned.to_vec()],
            // A parent is written `running` and no consumer ever claims it.
            Self::Settle { .. } => vec![vec![Status(JobStatus::Running), Attempt(0)]],
            Self::Heartbeat { attempt, .. }
            | Self::Succeed { attempt, .. }
            | Self::Fail { attempt, .. }
            | Self::Retry { attempt, .. }
            | Self::DeadLetter { attempt, .. } => {
                vec![vec![Status(JobStatus::Running), Attempt(*attempt)]]
            }
        }
    }

    /// The claim this transition must hold, for those made on an attempt's behalf.
    pub const fn attempt(&self) -> Option<u32> {
        match self {
            Self::Heartbeat { attempt, .. }
            | Self::Succeed { attempt, .. }
            | Self::Fail { attempt, .. }
            | Self::Retry { attempt, .. }
            | Self::DeadLetter { attempt, .. } => Some(*attempt),
            Self::Claim { .. }
            | Self::Expire
            | Self::Cancel
            | Self::Redrive { .. }
            | Self::Settle { .. } => None,
        }
    }

    /// The error text the job records, if any.
    pub fn error(&self) -> Option<&str> {
        match self {
            Self::Fail { error, .. }
            | Self::Retry { error, .. }
            | Self::DeadLetter { error, .. } => Some(error),
            Self::Expire => Some(EXPIRED_ERROR),
            Self::Settle { error, .. } => error.as_deref(),
            Self::Claim { .. }
            | Self::Heartbeat { .. }
            | Self::Succeed { .. }
            | Self::Cancel
            | Self::Redrive { .. } => None,
        }
    }
}

/// A transition with the moment it happens and how long a terminal job stays readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What moves.
    pub transition: Transition,
    /// When.
    pub at: Timestamp,
    /// How long the table keeps the job once it is terminal.
    pub retention: Duration,
}

impl Change {
    /// `transition` at `at`, a terminal job then kept for `retention`.
    pub const fn new(transition: Transition, at: Timestamp, retention: Duration) -> Self {
        Self {
            transition,
            at,
            retention,
        }
    }

    /// Whether `job`, as it stands, accepts this change. Every store evaluates exactly this
    /// condition, atomically with the write.
    pub fn permits(&self, job: &Job) -> bool {
        self.transition.precondition().iter().any(|all| {
            all.iter()
                .all(|requirement| requirement.holds(job, self.at))
        })
    }

    /// When the table may forget the job after this change: `at + retention`, rounded up to the
    /// second, once terminal; unchanged otherwise.
    pub fn expires_at(&self) -> Option<Timestamp> {
        let target = self.transition.target();
        target
            .is_terminal()
            .then(|| self.at.saturating_add(self.retention).ceil_to_second())
    }

    /// When a pending job with `deadline` may be forgotten: `retention` after it.
    pub fn pending_expiry(&self, deadline: Timestamp) -> Timestamp {
        deadline.saturating_add(self.retention).ceil_to_second()
    }

    /// Applies the change to `job`, which must [permit](Self::permits) it.
    pub fn apply(&self, job: &mut Job) {
        job.status = self.transition.target();
        job.updated_at = self.at;
        job.lease_until = None;
        match &self.transition {
            Transition::Claim { lease_until, .. } => {
                job.attempts += 1;
                job.lease_until = Some(*lease_until);
                job.started_at.get_or_insert(self.at);
                job.progress = None;
            }
            Transition::Heartbeat {
                lease_until,
                progress,
                ..
            } => {
                job.lease_until = Some(*lease_until);
                if let Some(progress) = progress {
                    job.progress = Some(progress.clone());
                }
            }
            Transition::Succeed { result, .. } => {
                job.result = Some(result.clone());
                job.error = None;
            }
            Transition::Redrive {
                deadline: Some(deadline),
            } => {
                job.deadline = *deadline;
                job.expires_at = self.pending_expiry(*deadline);
            }
            Transition::Settle { failures, error } => {
                job.error = error.clone();
                if let Some(Fanout::Parent { failures: kept, .. }) = &mut job.fanout {
                    kept.clone_from(failures);
                }
            }
            other => {
                if let Some(error) = other.error() {
                    job.error = Some(error.to_owned());
                }
            }
        }
        if let Some(expires_at) = self.expires_at() {
            job.expires_at = expires_at;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{JobId, Kind, NewJob, Owner, PayloadDigest};

    const T0: Timestamp = Timestamp::from_millis(1_000_000);

    fn job(status: JobStatus, attempts: u32, lease_until: Option<u64>) -> Job {
        let mut job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse("echo").unwrap(),
            owner: Owner::anonymous(),
            priority: crate::domain::Priority::Normal,
            created_at: T0,
            deadline: T0.saturating_add(Duration::from_secs(60)),
            run_at: None,
            payload: PayloadDigest::of("{}"),
            expires_at: T0.saturating_add(Duration::from_secs(3600)),
            callback_url: None,
            correlation_id: None,
        });
        job.status = status;
        job.attempts = attempts;
        job.lease_until = lease_until.map(Timestamp::from_millis);
        job
    }

    fn change(transition: Transition, at: u64) -> Change {
        Change::new(
            transition,
            Timestamp::from_millis(at),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn a_pending_job_can_be_claimed_and_counts_the_attempt() {
        let mut pending = job(JobStatus::Pending, 0, None);
        let claim = change(
            Transition::Claim {
                lease_until: Timestamp::from_millis(2_000_000),
                max_attempts: 5,
            },
            1_500_000,
        );
        assert!(claim.permits(&pending));
        claim.apply(&mut pending);
        assert_eq!(pending.status, JobStatus::Running);
        assert_eq!(pending.attempts, 1);
        assert_eq!(pending.lease_until, Some(Timestamp::from_millis(2_000_000)));
    }

    #[test]
    fn a_live_lease_blocks_a_second_claim_and_a_lapsed_one_does_not() {
        let running = job(JobStatus::Running, 1, Some(2_000_000));
        let claim = |at| {
            change(
                Transition::Claim {
                    lease_until: Timestamp::from_millis(at + 1),
                    max_attempts: 5,
                },
                at,
            )
        };
        assert!(!claim(1_999_999).permits(&running));
        assert!(!claim(2_000_000).permits(&running));
        assert!(claim(2_000_001).permits(&running));
    }

    #[test]
    fn only_the_attempt_holding_the_claim_may_finish_it() {
        let running = job(JobStatus::Running, 2, Some(2_000_000));
        let succeed = |attempt| {
            change(
                Transition::Succeed {
                    attempt,
                    result: Value::Null,
                },
                1_500_000,
            )
        };
        assert!(succeed(2).permits(&running));
        assert!(!succeed(1).permits(&running));
    }

    #[test]
    fn terminal_jobs_accept_no_transition() {
        let transitions = [
            Transition::Claim {
                lease_until: Timestamp::from_millis(9_000_000),
                max_attempts: 5,
            },
            Transition::Succeed {
                attempt: 1,
                result: Value::Null,
            },
            Transition::Fail {
                attempt: 1,
                error: "x".into(),
            },
            Transition::Retry {
                attempt: 1,
                error: "x".into(),
            },
            Transition::DeadLetter {
                attempt: 1,
                error: "x".into(),
            },
            Transition::Expire,
            Transition::Cancel,
        ];
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            let terminal = job(status, 1, None);
            for transition in &transitions {
                let change = change(transition.clone(), 1_500_000);
                assert!(
                    !change.permits(&terminal),
                    "{status} accepted {transition:?}"
                );
            }
        }
    }

    #[test]
    fn terminal_changes_set_the_retention_and_clear_the_lease() {
        let mut running = job(JobStatus::Running, 1, Some(2_000_000));
        let fail = change(
            Transition::Fail {
                attempt: 1,
                error: "bad input".into(),
            },
            1_500_000,
        );
        fail.apply(&mut running);
        assert_eq!(running.status, JobStatus::Failed);
        assert_eq!(running.error.as_deref(), Some("bad input"));
        assert_eq!(running.lease_until, None);
        assert_eq!(running.expires_at, Timestamp::from_millis(1_510_000));
        let mut other = job(JobStatus::Running, 1, Some(2_000_000));
        change(
            Transition::Fail {
                attempt: 1,
                error: String::new(),
            },
            1_500_001,
        )
        .apply(&mut other);
        assert_eq!(
            other.expires_at,
            Timestamp::from_millis(1_511_000),
            "rounded up to the second"
        );
    }

    #[test]
    fn a_heartbeat_extends_only_the_attempt_holding_the_claim_and_keeps_its_progress() {
        let heartbeat = |attempt, progress| {
            change(
                Transition::Heartbeat {
                    attempt,
                    lease_until: Timestamp::from_millis(3_000_000),
                    progress,
                },
                2_500_000,
            )
        };
        // Its own lease lapsed, but nobody claimed the job since: still its attempt.
        let mut running = job(JobStatus::Running, 2, Some(2_000_000));
        let progress = Progress::new(0.5, "halfway", Timestamp::from_millis(2_400_000));
        let beat = heartbeat(2, Some(progress.clone()));
        assert!(beat.permits(&running));
        beat.apply(&mut running);
        assert_eq!(running.status, JobStatus::Running);
        assert_eq!(running.attempts, 2);
        assert_eq!(running.lease_until, Some(Timestamp::from_millis(3_000_000)));
        assert_eq!(running.progress, Some(progress.clone()));
        heartbeat(2, None).apply(&mut running);
        assert_eq!(
            running.progress,
            Some(progress),
            "a beat without news keeps it"
        );

        assert!(
            !heartbeat(1, None).permits(&running),
            "a later attempt holds it"
        );
        for status in [
            JobStatus::Pending,
            JobStatus::Succeeded,
            JobStatus::DeadLettered,
        ] {
            assert!(
                !heartbeat(2, None).permits(&job(status, 2, None)),
                "{status}"
            );
        }
        let claim = change(
            Transition::Claim {
                lease_until: Timestamp::from_millis(4_000_000),
                max_attempts: 5,
            },
            3_500_000,
        );
        claim.apply(&mut running);
        assert_eq!(running.progress, None, "a new attempt starts without");
    }

    #[test]
    fn only_pending_jobs_can_be_cancelled() {
        assert!(change(Transition::Cancel, 1).permits(&job(JobStatus::Pending, 0, None)));
        assert!(!change(Transition::Cancel, 1).permits(&job(JobStatus::Running, 1, Some(2))));
    }
}
