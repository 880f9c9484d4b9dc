//! The behaviour every `JobStore` must show, run against each adapter: the in-memory one in unit
//! tests, DynamoDB (moto and DynamoDB Local) in the integration tests. Each clause is a function
//! of its own, and [`store_contract_tests!`](crate::store_contract_tests) makes each a test, so
//! one broken clause never hides another.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::json;

use super::{ApplyError, JobStore, Slot, StoreError};
use crate::domain::{
    Change, Child, Failure, Fanout, IdempotencyKey, IdempotencyRecord, Job, JobId, JobStatus, Kind,
    NewJob, Owner, ParentLink, PayloadDigest, Priority, Progress, Timestamp, Transition,
};

const RETENTION: Duration = Duration::from_secs(600);

/// Defines one `#[tokio::test]` per clause of the store contract, each on a store of its own from
/// `$store` (an expression that dereferences to a `JobStore`; it is evaluated once per test, so a
/// guard that deletes a table when dropped cleans up after each clause).
///
/// The concurrency clauses need conditional writes that are atomic under concurrent requests.
/// An emulator that does not give that (moto applies a conditional update without a lock) passes
/// `concurrency: ignore = "why"`, which marks those tests ignored with the reason, so they show in
/// the test output instead of failing at random.
#[macro_export]
macro_rules! store_contract_tests {
    ($store:expr) => {
        $crate::store_contract_tests!(@clauses $store, []);
    };
    ($store:expr, concurrency: ignore = $why:literal) => {
        $crate::store_contract_tests!(@clauses $store, [#[ignore = $why]]);
    };
    (@clauses $store:expr, [$(#[$concurrent:meta])?]) => {
        $crate::store_contract_tests!(@test $store, a_created_job_reads_back_unchanged);
        $crate::store_contract_tests!(@test $store, an_id_cannot_be_created_twice);
        $crate::store_contract_tests!(@test $store, a_batch_create_writes_each_new_job_and_overwrites_none);
        $crate::store_contract_tests!(@test $store, unknown_jobs_read_as_none_and_refuse_changes);
        $crate::store_contract_tests!(@test $store, a_claim_holds_the_job_until_its_lease_lapses);
        $crate::store_contract_tests!(@test $store, only_the_current_attempt_finishes_a_job);
        $crate::store_contract_tests!(@test $store, a_heartbeat_extends_the_lease_of_its_own_attempt_only);
        $crate::store_contract_tests!(@test $store, a_terminal_job_accepts_nothing);
        $crate::store_contract_tests!(@test $store, a_retry_returns_the_job_to_pending_with_its_error);
        $crate::store_contract_tests!(@test $store, pending_jobs_expire_and_cancel);
        $crate::store_contract_tests!(@test $store, an_idempotency_key_is_written_with_its_job_or_not_at_all);
        $crate::store_contract_tests!(@test $store, a_redrive_returns_a_dead_lettered_or_abandoned_job_to_pending);
        $crate::store_contract_tests!(@test $store, active_jobs_are_counted_per_owner_and_no_further_than_asked);
        $crate::store_contract_tests!(@test $store, a_fanout_parent_settles_once_with_its_failures);
        $crate::store_contract_tests!(@test $store, a_kind_has_as_many_slots_as_its_limit);
        $crate::store_contract_tests!(@test $store, a_lapsed_slot_is_taken_by_the_next_holder);
        $crate::store_contract_tests!(@test $store, concurrent_claims_have_exactly_one_winner $(#[$concurrent])?);
        $crate::store_contract_tests!(@test $store, concurrent_creates_with_one_key_have_exactly_one_winner $(#[$concurrent])?);
        $crate::store_contract_tests!(@test $store, concurrent_holders_get_no_more_slots_than_the_limit $(#[$concurrent])?);
    };
    (@test $store:expr, $clause:ident $(#[$attr:meta])?) => {
        #[tokio::test]
        $(#[$attr])?
        async fn $clause() {
            let store = $store;
            $crate::store::contract::$clause(&*store).await;
        }
    };
}

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

fn change(transition: Transition, at: Timestamp) -> Change {
    Change::new(transition, at, RETENTION)
}

fn new_job() -> Job {
    let created_at = now();
    Job::pending(NewJob {
        id: JobId::generate(),
        kind: Kind::parse("echo").unwrap(),
        owner: Owner::authenticated("arn:aws:iam::123456789012:user/contract"),
        priority: Priority::High,
        created_at,
        deadline: created_at.saturating_add(Duration::from_secs(300)),
        run_at: None,
        payload: PayloadDigest::of(r#"{"hello":"world"}"#),
        expires_at: created_at.saturating_add(Duration::from_secs(900)),
        callback_url: None,
        correlation_id: None,
    })
}

async fn pending_job(store: &dyn JobStore) -> Job {
    let job = new_job();
    store.create(&job, None).await.unwrap();
    job
}

fn key_for(job: &Job, key: &str, fingerprint: &str) -> IdempotencyRecord {
    IdempotencyRecord {
        owner: job.owner.clone(),
        key: IdempotencyKey::parse(key.as_bytes()).unwrap(),
        fingerprint: fingerprint.to_owned(),
        job_id: job.id,
        expires_at: job.expires_at,
    }
}

async fn claim(
    store: &dyn JobStore,
    id: JobId,
    at: Timestamp,
    lease: Duration,
) -> Result<Job, ApplyError> {
    store
        .apply(
            id,
            &change(
                Transition::Claim {
                    lease_until: at.saturating_add(lease),
                    max_attempts: 5,
                },
                at,
            ),
        )
        .await
}

fn rejected_status(result: Result<Job, ApplyError>) -> JobStatus {
    match result {
        Err(ApplyError::Rejected(job)) => job.status,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

/// A clause of the store contract.
pub async fn a_created_job_reads_back_unchanged(store: &dyn JobStore) {
    let job = pending_job(store).await;
    assert_eq!(store.get(job.id).await.unwrap(), Some(job));
}

/// A clause of the store contract.
pub async fn an_id_cannot_be_created_twice(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let mut again = job.clone();
    again.kind = Kind::parse("sleep").unwrap();
    assert!(matches!(
        store.create(&again, None).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(
        store.get(job.id).await.unwrap(),
        Some(job),
        "the first write was overwritten"
    );
}

/// A clause of the store contract.
pub async fn unknown_jobs_read_as_none_and_refuse_changes(store: &dyn JobStore) {
    let id = JobId::generate();
    assert_eq!(store.get(id).await.unwrap(), None);
    let result = store.apply(id, &change(Transition::Cancel, now())).await;
    assert!(matches!(result, Err(ApplyError::NotFound)), "{result:?}");
    assert_eq!(
        store.get(id).await.unwrap(),
        None,
        "a refused change created an item"
    );
}

/// A clause of the store contract.
pub async fn a_claim_holds_the_job_until_its_lease_lapses(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    let claimed = claim(store, job.id, t0, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!((claimed.status, claimed.attempts), (JobStatus::Running, 1));
    assert_eq!(
        claimed.lease_until,
        Some(t0.saturating_add(Duration::from_secs(30)))
    );

    let during = t0.saturating_add(Duration::from_secs(10));
    assert_eq!(
        rejected_status(claim(store, job.id, during, Duration::from_secs(30)).await),
        JobStatus::Running
    );

    let after = t0.saturating_add(Duration::from_secs(31));
    let reclaimed = claim(store, job.id, after, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        reclaimed.attempts, 2,
        "a lapsed lease is claimed again as a new attempt"
    );
    assert_eq!(
        (claimed.started_at, reclaimed.started_at),
        (Some(t0), Some(t0)),
        "the first claim is when the job started; later ones keep it"
    );
    assert_eq!(store.get(job.id).await.unwrap(), Some(reclaimed.clone()));

    // Abandoned on its last attempt (two of two): a lapsed lease is not claimed again.
    let much_later = after.saturating_add(Duration::from_secs(31));
    let last = Transition::Claim {
        lease_until: much_later.saturating_add(Duration::from_secs(30)),
        max_attempts: 2,
    };
    assert_eq!(
        rejected_status(store.apply(job.id, &change(last, much_later)).await),
        JobStatus::Running
    );
}

/// A clause of the store contract.
pub async fn only_the_current_attempt_finishes_a_job(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    claim(store, job.id, t0, Duration::ZERO).await.unwrap();
    let t1 = t0.saturating_add(Duration::from_secs(1));
    claim(store, job.id, t1, Duration::from_secs(60))
        .await
        .unwrap();

    let result = json!({"nested": {"list": [1, 2.5, "três", null, true]}, "empty": {}});
    let stale = change(
        Transition::Succeed {
            attempt: 1,
            result: result.clone(),
        },
        t1,
    );
    assert_eq!(
        rejected_status(store.apply(job.id, &stale).await),
        JobStatus::Running
    );

    let current = change(
        Transition::Succeed {
            attempt: 2,
            result: result.clone(),
        },
        t1,
    );
    let done = store.apply(job.id, &current).await.unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.lease_until, None);
    assert_eq!(
        done.expires_at,
        t1.saturating_add(RETENTION).ceil_to_second()
    );
    let stored = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(stored, done);
    assert_eq!(stored.result, Some(result));
}

/// A clause of the store contract.
pub async fn a_heartbeat_extends_the_lease_of_its_own_attempt_only(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    claim(store, job.id, t0, Duration::from_secs(10))
        .await
        .unwrap();
    let heartbeat = |attempt, at: Timestamp, progress| {
        change(
            Transition::Heartbeat {
                attempt,
                lease_until: at.saturating_add(Duration::from_secs(10)),
                progress,
            },
            at,
        )
    };

    let t1 = t0.saturating_add(Duration::from_secs(5));
    let progress = Progress::new(0.4, "resizing: 4 of 10 done", t1);
    let beat = store
        .apply(job.id, &heartbeat(1, t1, Some(progress.clone())))
        .await
        .unwrap();
    assert_eq!((beat.status, beat.attempts), (JobStatus::Running, 1));
    assert_eq!(
        beat.lease_until,
        Some(t1.saturating_add(Duration::from_secs(10)))
    );
    assert_eq!(beat.progress, Some(progress.clone()));
    assert_eq!(store.get(job.id).await.unwrap(), Some(beat.clone()));

    // Past the first lease, the extended one still holds the job against a second claim.
    let t2 = t0.saturating_add(Duration::from_secs(12));
    assert_eq!(
        rejected_status(claim(store, job.id, t2, Duration::from_secs(10)).await),
        JobStatus::Running
    );
    let quiet = store.apply(job.id, &heartbeat(1, t2, None)).await.unwrap();
    assert_eq!(
        quiet.progress,
        Some(progress),
        "a beat without a report keeps the last"
    );

    // Once the lease lapsed and another consumer claimed the job, the first attempt's heartbeat
    // is refused and changes nothing.
    let t3 = t2.saturating_add(Duration::from_secs(11));
    let taken = claim(store, job.id, t3, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(taken.attempts, 2);
    assert_eq!(
        taken.progress, None,
        "a new attempt starts without progress"
    );
    let stale = heartbeat(1, t3, Some(Progress::new(0.9, "stale", t3)));
    let refused = store.apply(job.id, &stale).await;
    assert!(
        matches!(&refused, Err(ApplyError::Rejected(job)) if job.attempts == 2),
        "{refused:?}"
    );
    assert_eq!(store.get(job.id).await.unwrap(), Some(taken));
}

/// A clause of the store contract.
pub async fn a_terminal_job_accepts_nothing(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    claim(store, job.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    let fail = change(
        Transition::Fail {
            attempt: 1,
            error: "permanent".into(),
        },
        t0,
    );
    let failed = store.apply(job.id, &fail).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("permanent"));

    let later = t0.saturating_add(Duration::from_secs(3600));
    for transition in [
        Transition::Claim {
            lease_until: later,
            max_attempts: 5,
        },
        Transition::Succeed {
            attempt: 1,
            result: json!(1),
        },
        Transition::Retry {
            attempt: 1,
            error: "again".into(),
        },
        Transition::DeadLetter {
            attempt: 1,
            error: "again".into(),
        },
        Transition::Heartbeat {
            attempt: 1,
            lease_until: later,
            progress: None,
        },
        Transition::Expire,
        Transition::Cancel,
    ] {
        let result = store.apply(job.id, &change(transition, later)).await;
        assert_eq!(rejected_status(result), JobStatus::Failed);
    }
    assert_eq!(store.get(job.id).await.unwrap(), Some(failed));
}

/// A clause of the store contract.
pub async fn a_retry_returns_the_job_to_pending_with_its_error(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    claim(store, job.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    let retry = change(
        Transition::Retry {
            attempt: 1,
            error: "downstream 503".into(),
        },
        t0,
    );
    let pending = store.apply(job.id, &retry).await.unwrap();
    assert_eq!((pending.status, pending.attempts), (JobStatus::Pending, 1));
    assert_eq!(pending.error.as_deref(), Some("downstream 503"));
    assert_eq!(pending.lease_until, None);
    assert_eq!(
        pending.expires_at, job.expires_at,
        "a live job keeps its expiry"
    );

    let again = claim(store, job.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.attempts, 2);
    let dead = change(
        Transition::DeadLetter {
            attempt: 2,
            error: "still 503".into(),
        },
        t0,
    );
    assert_eq!(
        store.apply(job.id, &dead).await.unwrap().status,
        JobStatus::DeadLettered
    );
}

/// A clause of the store contract.
pub async fn pending_jobs_expire_and_cancel(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let before = store
        .apply(job.id, &change(Transition::Expire, job.deadline))
        .await;
    assert_eq!(
        rejected_status(before),
        JobStatus::Pending,
        "a job expired before its deadline passed"
    );
    let past = job.deadline.saturating_add(Duration::from_millis(1));
    let expired = store
        .apply(job.id, &change(Transition::Expire, past))
        .await
        .unwrap();
    assert_eq!(expired.status, JobStatus::Expired);
    assert!(expired.error.is_some());

    let job = pending_job(store).await;
    let cancelled = store
        .apply(job.id, &change(Transition::Cancel, now()))
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);

    let job = pending_job(store).await;
    claim(store, job.id, now(), Duration::from_secs(60))
        .await
        .unwrap();
    let result = store
        .apply(job.id, &change(Transition::Cancel, now()))
        .await;
    assert_eq!(
        rejected_status(result),
        JobStatus::Running,
        "a running job was cancelled"
    );
}

/// A clause of the store contract.
pub async fn concurrent_claims_have_exactly_one_winner(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    let claims = (0..8).map(|_| claim(store, job.id, t0, Duration::from_secs(60)));
    let results = futures::future::join_all(claims).await;
    let winners = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(winners, 1, "{results:?}");
    assert_eq!(store.get(job.id).await.unwrap().unwrap().attempts, 1);
}

/// A clause of the store contract.
pub async fn an_idempotency_key_is_written_with_its_job_or_not_at_all(store: &dyn JobStore) {
    let key = format!("contract-{}", JobId::generate());
    let first = new_job();
    let record = key_for(&first, &key, "body-1");
    store.create(&first, Some(&record)).await.unwrap();

    let second = new_job();
    match store
        .create(&second, Some(&key_for(&second, &key, "body-2")))
        .await
    {
        Err(StoreError::KeyTaken(found)) => assert_eq!(*found, record),
        other => panic!("expected the key's first use, got {other:?}"),
    }
    assert_eq!(
        store.get(second.id).await.unwrap(),
        None,
        "the job of a refused key was written"
    );

    let mut elsewhere = new_job();
    elsewhere.owner = Owner::authenticated("someone-else");
    store
        .create(&elsewhere, Some(&key_for(&elsewhere, &key, "body-1")))
        .await
        .unwrap();

    let fresh_key = format!("contract-{}", JobId::generate());
    let clash = key_for(&first, &fresh_key, "body-3");
    assert!(matches!(
        store.create(&first, Some(&clash)).await,
        Err(StoreError::AlreadyExists)
    ));
    let third = new_job();
    store
        .create(&third, Some(&key_for(&third, &fresh_key, "body-3")))
        .await
        .expect("a key refused along with its job was not kept");
}

/// A clause of the store contract.
pub async fn concurrent_creates_with_one_key_have_exactly_one_winner(store: &dyn JobStore) {
    let key = format!("contract-{}", JobId::generate());
    let jobs: Vec<Job> = (0..20).map(|_| new_job()).collect();
    let records: Vec<_> = jobs
        .iter()
        .map(|job| key_for(job, &key, "same body"))
        .collect();
    let creates = jobs
        .iter()
        .zip(&records)
        .map(|(job, record)| store.create(job, Some(record)));
    let results = futures::future::join_all(creates).await;

    let winners: Vec<usize> = (0..20).filter(|&i| results[i].is_ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    let winner = jobs[winners[0]].id;
    for result in &results {
        match result {
            Ok(()) => {}
            Err(StoreError::KeyTaken(first)) => assert_eq!(first.job_id, winner),
            Err(other) => panic!("{other:?}"),
        }
    }
    for job in &jobs {
        assert_eq!(store.get(job.id).await.unwrap().is_some(), job.id == winner);
    }
}

/// A clause of the store contract.
pub async fn a_redrive_returns_a_dead_lettered_or_abandoned_job_to_pending(store: &dyn JobStore) {
    let job = pending_job(store).await;
    let t0 = now();
    claim(store, job.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    let dead = change(
        Transition::DeadLetter {
            attempt: 1,
            error: "gave up".into(),
        },
        t0,
    );
    store.apply(job.id, &dead).await.unwrap();
    let redriven = store
        .apply(job.id, &change(Transition::Redrive { deadline: None }, t0))
        .await
        .unwrap();
    assert_eq!(
        (redriven.status, redriven.attempts),
        (JobStatus::Pending, 1)
    );
    assert_eq!(
        redriven.error.as_deref(),
        Some("gave up"),
        "the last error stays visible"
    );
    let again = store
        .apply(job.id, &change(Transition::Redrive { deadline: None }, t0))
        .await;
    assert_eq!(
        rejected_status(again),
        JobStatus::Pending,
        "a redrive applies once"
    );

    let abandoned = pending_job(store).await;
    claim(store, abandoned.id, t0, Duration::from_secs(1))
        .await
        .unwrap();
    let during = store
        .apply(
            abandoned.id,
            &change(Transition::Redrive { deadline: None }, t0),
        )
        .await;
    assert_eq!(
        rejected_status(during),
        JobStatus::Running,
        "a live lease is not redriven"
    );
    let after = t0.saturating_add(Duration::from_secs(2));
    let redriven = store
        .apply(
            abandoned.id,
            &change(Transition::Redrive { deadline: None }, after),
        )
        .await
        .unwrap();
    assert_eq!(redriven.status, JobStatus::Pending);

    let finished = pending_job(store).await;
    store
        .apply(finished.id, &change(Transition::Cancel, t0))
        .await
        .unwrap();
    let result = store
        .apply(
            finished.id,
            &change(Transition::Redrive { deadline: None }, t0),
        )
        .await;
    assert_eq!(rejected_status(result), JobStatus::Cancelled);
}

/// A clause of the store contract: a batch create writes each job whose id is free, across
/// chunks, and reports a job already there without touching it (a consumer may have written it
/// from its message and claimed it).
pub async fn a_batch_create_writes_each_new_job_and_overwrites_none(store: &dyn JobStore) {
    let claimed = pending_job(store).await;
    let running = claim(store, claimed.id, now(), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(running.status, JobStatus::Running);
    // More than one chunk of the DynamoDB adapter (25), the claimed job in the second.
    let mut jobs: Vec<Job> = (0..30).map(|_| new_job()).collect();
    jobs[27] = claimed.clone();
    let created = store.create_batch(&jobs).await;
    assert_eq!(created.len(), jobs.len());
    for (index, (job, outcome)) in jobs.iter().zip(&created).enumerate() {
        if index == 27 {
            assert!(
                matches!(outcome, Err(StoreError::AlreadyExists)),
                "{outcome:?}"
            );
            let kept = store.get(job.id).await.unwrap().unwrap();
            assert_eq!(kept.status, JobStatus::Running, "not overwritten");
        } else {
            assert!(outcome.is_ok(), "job {index}: {outcome:?}");
            assert_eq!(store.get(job.id).await.unwrap().as_ref(), Some(job));
        }
    }
    assert!(store.create_batch(&[]).await.is_empty());
}

/// Waits until `store` counts `expected` active jobs of `owner` when asked for at most
/// `at_most`: DynamoDB's index is eventually consistent (the emulators' is not, but the clause
/// holds either way).
async fn counts(store: &dyn JobStore, owner: &Owner, at_most: u32, expected: u32) {
    let mut counted = None;
    for _ in 0..50 {
        let now = store.active_jobs(owner, at_most).await.unwrap();
        if now == expected {
            return;
        }
        counted = Some(now);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{owner}: counted {counted:?} active jobs (at most {at_most}), expected {expected}");
}

/// A clause of the store contract: `active_jobs` counts an owner's `pending` (scheduled ones
/// included) and `running` jobs, however they were written, drops a job that ends (cancelled,
/// succeeded, failed, expired, dead-lettered), counts a redriven one again, keeps owners apart
/// (two whose names differ only in an escape) and counts no further than asked.
pub async fn active_jobs_are_counted_per_owner_and_no_further_than_asked(store: &dyn JobStore) {
    let run = JobId::generate();
    let a = Owner::jwt("https://idp.example", &format!("tenant#{run}"));
    let b = Owner::jwt("https://idp.example", &format!("tenant%23{run}"));
    let of = |owner: &Owner| {
        let mut job = new_job();
        job.owner = owner.clone();
        job
    };
    counts(store, &a, 10, 0).await;

    // Owner a: one pending, one scheduled, one running.
    let pending = of(&a);
    store.create(&pending, None).await.unwrap();
    let mut scheduled = of(&a);
    scheduled.run_at = Some(scheduled.created_at.saturating_add(Duration::from_secs(60)));
    store.create(&scheduled, None).await.unwrap();
    let running = of(&a);
    store.create(&running, None).await.unwrap();
    let t0 = now();
    claim(store, running.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    // Owner b: one written in a batch, one with an idempotency key.
    let batched = of(&b);
    let created = store.create_batch(std::slice::from_ref(&batched)).await;
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let keyed = of(&b);
    let key = format!("contract-{run}");
    store
        .create(&keyed, Some(&key_for(&keyed, &key, "body")))
        .await
        .unwrap();
    counts(store, &a, 10, 3).await;
    counts(store, &b, 10, 2).await;
    // No further than asked.
    counts(store, &a, 3, 3).await;
    counts(store, &a, 2, 2).await;
    counts(store, &a, 1, 1).await;
    counts(store, &a, 0, 0).await;

    // Each way of ending leaves the index; a retry does not.
    store
        .apply(pending.id, &change(Transition::Cancel, t0))
        .await
        .unwrap();
    counts(store, &a, 10, 2).await;
    let retry = Transition::Retry {
        attempt: 1,
        error: "again".into(),
    };
    store.apply(running.id, &change(retry, t0)).await.unwrap();
    counts(store, &a, 10, 2).await;
    claim(store, running.id, t0, Duration::from_secs(60))
        .await
        .unwrap();
    let succeed = Transition::Succeed {
        attempt: 2,
        result: json!(1),
    };
    store.apply(running.id, &change(succeed, t0)).await.unwrap();
    counts(store, &a, 10, 1).await;
    let past = scheduled.deadline.saturating_add(Duration::from_millis(1));
    store
        .apply(scheduled.id, &change(Transition::Expire, past))
        .await
        .unwrap();
    counts(store, &a, 10, 0).await;
    counts(store, &b, 10, 2).await;

    // b: one fails, one is dead-lettered and then redriven.
    for job in [&batched, &keyed] {
        claim(store, job.id, t0, Duration::from_secs(60))
            .await
            .unwrap();
    }
    let fail = Transition::Fail {
        attempt: 1,
        error: "permanent".into(),
    };
    store.apply(keyed.id, &change(fail, t0)).await.unwrap();
    let dead = Transition::DeadLetter {
        attempt: 1,
        error: "gave up".into(),
    };
    store.apply(batched.id, &change(dead, t0)).await.unwrap();
    counts(store, &b, 10, 0).await;
    store
        .apply(
            batched.id,
            &change(Transition::Redrive { deadline: None }, t0),
        )
        .await
        .unwrap();
    counts(store, &b, 10, 1).await;
    counts(store, &a, 10, 0).await;

    // Many active jobs: the count stops at the bound, across pages of the index.
    let many: Vec<Job> = (0..30).map(|_| of(&a)).collect();
    let created = store.create_batch(&many).await;
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    counts(store, &a, 100, 30).await;
    counts(store, &a, 30, 30).await;
    counts(store, &a, 29, 29).await;
    counts(store, &a, 7, 7).await;
    counts(store, &b, 100, 1).await;
}

/// A fan-out parent and its child read back with their places in the fan-out; the parent, never
/// claimed, is settled once, keeping its failures, and a second settle (another child's
/// consumer) is refused with the settled parent.
pub async fn a_fanout_parent_settles_once_with_its_failures(store: &dyn JobStore) {
    let (mut parent, mut child) = (new_job(), new_job());
    child.fanout = Some(Fanout::Child(ParentLink {
        parent: parent.id,
        target: "b".to_owned(),
    }));
    parent.status = JobStatus::Running;
    parent.started_at = Some(parent.created_at);
    parent.fanout = Some(Fanout::Parent {
        children: vec![
            Child {
                id: JobId::generate(),
                target: "a".to_owned(),
            },
            Child {
                id: child.id,
                target: "b".to_owned(),
            },
        ],
        failures: vec![],
    });
    store.create(&parent, None).await.unwrap();
    store.create(&child, None).await.unwrap();
    assert_eq!(store.get(parent.id).await.unwrap(), Some(parent.clone()));
    assert_eq!(store.get(child.id).await.unwrap(), Some(child.clone()));

    let failures = vec![Failure {
        id: child.id,
        target: "b".to_owned(),
        status: JobStatus::Failed,
        error: Some("boom".to_owned()),
    }];
    let settle = change(
        Transition::Settle {
            failures: failures.clone(),
            error: Some("1 of 2 targets did not succeed: b".to_owned()),
        },
        now(),
    );
    let settled = store.apply(parent.id, &settle).await.unwrap();
    assert_eq!(settled.status, JobStatus::Failed);
    assert_eq!(
        settled.fanout.as_ref().unwrap().failures(),
        failures.as_slice()
    );
    assert_eq!(store.get(parent.id).await.unwrap(), Some(settled.clone()));

    let again = change(
        Transition::Settle {
            failures: vec![],
            error: None,
        },
        now(),
    );
    assert_eq!(
        rejected_status(store.apply(parent.id, &again).await),
        JobStatus::Failed
    );
    assert_eq!(store.get(parent.id).await.unwrap(), Some(settled));
    assert_eq!(
        rejected_status(store.apply(child.id, &again).await),
        JobStatus::Pending,
        "only a parent, never claimed, is settled"
    );
}

/// A kind of its own for each slot clause, so that clauses sharing a table share no slots.
fn slot_kind() -> Kind {
    Kind::parse(&format!("slots-{}", JobId::generate())).unwrap()
}

/// `holder`'s slot among `kind`'s `limit`.
fn slot(kind: &Kind, limit: u32, holder: &str) -> Slot {
    Slot {
        kind: kind.clone(),
        limit,
        holder: holder.to_owned(),
    }
}

/// A clause of the store contract.
pub async fn a_kind_has_as_many_slots_as_its_limit(store: &dyn JobStore) {
    let kind = slot_kind();
    let t0 = now();
    let until = t0.saturating_add(Duration::from_secs(60));
    let hold = |holder: &'static str| {
        let slot = slot(&kind, 2, holder);
        async move { store.hold_slot(&slot, until, t0).await.unwrap() }
    };
    assert!(hold("a").await);
    assert!(hold("b").await);
    assert!(!hold("c").await, "a third slot of two");
    assert!(
        hold("a").await,
        "a holder renews its own slot when all are held"
    );
    let other_kind = slot(&slot_kind(), 1, "c");
    assert!(
        store.hold_slot(&other_kind, until, t0).await.unwrap(),
        "another kind's slots are its own"
    );
    store.release_slot(&slot(&kind, 2, "a")).await.unwrap();
    store.release_slot(&slot(&kind, 2, "a")).await.unwrap();
    store
        .release_slot(&slot(&kind, 2, "never-held"))
        .await
        .unwrap();
    assert!(hold("c").await, "a released slot is free");
    assert!(!hold("d").await);
}

/// A clause of the store contract.
pub async fn a_lapsed_slot_is_taken_by_the_next_holder(store: &dyn JobStore) {
    let kind = slot_kind();
    let t0 = now();
    let later = |secs| t0.saturating_add(Duration::from_secs(secs));
    let hold = |holder: &'static str, until: u64, at: u64| {
        let slot = slot(&kind, 2, holder);
        async move {
            store
                .hold_slot(&slot, later(until), later(at))
                .await
                .unwrap()
        }
    };
    assert!(hold("a", 10, 0).await);
    assert!(hold("b", 60, 0).await);
    assert!(!hold("c", 70, 9).await);
    // `a` stopped without giving its slot back: at 11 s its hold has lapsed.
    assert!(hold("c", 70, 11).await);
    assert!(!hold("d", 70, 11).await, "`b` and `c` hold both slots");
    // `a`, still running after all, finds its slot taken.
    assert!(!hold("a", 70, 12).await);
}

/// A clause of the store contract.
pub async fn concurrent_holders_get_no_more_slots_than_the_limit(store: &dyn JobStore) {
    let kind = slot_kind();
    let t0 = now();
    let until = t0.saturating_add(Duration::from_secs(60));
    // One lapsed hold to clear, so the racing holders take both ways to a slot.
    let lapsed = t0.saturating_add(Duration::from_secs(1));
    assert!(
        store
            .hold_slot(&slot(&kind, 3, "lapsed"), lapsed, t0)
            .await
            .unwrap()
    );
    let later = t0.saturating_add(Duration::from_secs(2));
    let slots: Vec<Slot> = (0..12)
        .map(|i| slot(&kind, 3, &format!("holder-{i}")))
        .collect();
    let holds = slots.iter().map(|slot| store.hold_slot(slot, until, later));
    let results = futures::future::join_all(holds).await;
    let held = results.iter().filter(|r| matches!(r, Ok(true))).count();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert!(held <= 3, "{held} slots of 3 held: {results:?}");
    assert!(held >= 1, "no slot held though all were free: {results:?}");
}
