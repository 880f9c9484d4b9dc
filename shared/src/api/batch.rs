//! `POST /jobs/batch`: up to [`MAX_BATCH_JOBS`] jobs in one request, each validated, sent and
//! written as `POST /jobs` would, with one result per job (docs/architecture.md, "Batch submit").

use std::collections::HashMap;

use futures::future::join_all;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{Instrument, info, info_span, instrument};

use super::problem::Problem;
use super::submit::{
    Accepted, MAX_NESTING, Prepared, Written, check_active_jobs, check_content_type, check_nesting,
    correlation, finish, from_json, log_full_lane, prepare, read_job, rejected, replay, send_delay,
    settle, too_many_active_jobs,
};
use super::{ApiError, ApiResponse, json_response};
use crate::app::App;
use crate::domain::{CorrelationId, IdempotencyKey, Job, Owner, Priority};
use crate::metrics::Metric;
use crate::queue::{Outgoing, QueueError, SendOptions};

/// The most jobs one batch holds: ten `SendMessageBatch` calls and four transactions at most.
pub const MAX_BATCH_JOBS: usize = 100;

/// The largest batch body, in bytes: 1,920 KiB. API Gateway hands intake the body as a JSON string
/// inside the Lambda event, and a synchronous invocation takes at most 6 MiB (6,291,456 bytes).
/// A JSON body grows at most threefold as a JSON string (a character outside ASCII written as a
/// `\u` escape: two bytes to six, four to twelve), so 3 × 1,966,080 = 5,898,240 bytes, leaving
/// 393,216 for the headers, the request context and the event's own keys. The body cannot be
/// larger and still reach the function whatever its characters; each job inside it is still
/// bounded by `SPILLWAY_MAX_PAYLOAD_BYTES`.
pub const MAX_BATCH_BYTES: usize = 1_966_080;

/// The body of `POST /jobs/batch`: each job kept as raw JSON, read on its own as `POST /jobs`
/// reads a body, so that one job's mistake is that job's result, not the batch's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody<'a> {
    #[serde(borrow)]
    jobs: Vec<&'a RawValue>,
}

/// The answer: one result per job, in the request's order.
#[derive(Debug, Serialize)]
struct BatchAnswer {
    results: Vec<ItemResult>,
}

/// A job's result: the status `POST /jobs` would have answered, and its `202` document or its
/// problem.
#[derive(Debug, Serialize)]
struct ItemResult {
    index: usize,
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<Accepted>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<Problem>,
    /// A repeat of an `idempotency_key`'s first request: the first job's `202`, nothing sent.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
    /// For a `503` or a `429`, the seconds `POST /jobs` would have said in `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
}

/// Where a job of the batch stands.
enum Outcome {
    /// Passed every check; not yet sent.
    Ready(Box<Prepared>),
    /// Sent as `message_id`; not yet written.
    Sent(Box<Prepared>, String),
    /// Accepted: a new job, or a replayed one.
    Accepted { job: Box<Job>, replayed: bool },
    /// Refused, with nothing sent (or, for a write that failed after its send, a `503` whose
    /// message still runs the job, as for `POST /jobs`).
    Refused(ApiError),
    /// Moved out while the job passes from one state to the next.
    Taken,
}

impl Outcome {
    /// Moves the job on with `step`, which is given its current state.
    fn advance(&mut self, step: impl FnOnce(Outcome) -> Outcome) {
        let current = std::mem::replace(self, Outcome::Taken);
        *self = step(current);
    }
}

/// `POST /jobs/batch`: validates the request as a whole (media type, size, JSON, shape, 1 to
/// [`MAX_BATCH_JOBS`] jobs), then each job as `POST /jobs` does; sends the messages of those that
/// pass with `SendMessageBatch`, then writes their jobs, and answers `200` with each job's result
/// in order. A job is accepted whole (sent, and written or to be written by its consumer) or
/// refused with nothing sent. `Prefer: wait` does not apply. When every job is refused with
/// `503`, nothing could be done, and the whole request is answered with the first one's `503`.
#[instrument(skip_all, fields(correlation_id, jobs))]
pub async fn submit_batch(
    app: &App,
    owner: Owner,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiResponse {
    let (correlation_id, invalid) = correlation(headers);
    let result = match invalid {
        Some(invalid) => Err(invalid),
        None => batch(app, owner, headers, body, &correlation_id).await,
    };
    finish(app, result, &correlation_id)
}

async fn batch(
    app: &App,
    owner: Owner,
    headers: &HeaderMap,
    body: &[u8],
    correlation_id: &CorrelationId,
) -> Result<ApiResponse, ApiError> {
    let jobs = parse(headers, body)?;
    tracing::Span::current().record("jobs", jobs.len());
    let mut outcomes = validate(app, &owner, &jobs, correlation_id);
    check_backlogs(app, &mut outcomes).await;
    replay_known_keys(app, &owner, &mut outcomes).await;
    limit_active_jobs(app, &owner, &mut outcomes).await;
    send(app, &owner, &mut outcomes).await;
    write(app, &owner, &mut outcomes).await;
    answer(app, outcomes)
}

/// The request as a whole: media type, no `Idempotency-Key` header (keys belong to jobs), size,
/// nesting, JSON, shape and count. Any failure here is the whole request's problem.
fn parse<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Vec<&'a RawValue>, ApiError> {
    check_content_type(headers)?;
    if headers.contains_key("idempotency-key") {
        return Err(ApiError::Invalid(
            "a batch takes no Idempotency-Key header; give each job its own `idempotency_key`"
                .to_owned(),
        ));
    }
    if body.len() > MAX_BATCH_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BATCH_BYTES,
        });
    }
    // A job may nest as deep as a body of `POST /jobs`: the envelope and its array add two. A
    // deeper job refuses the whole body, before any parser recurses into it.
    check_nesting(body, MAX_NESTING + 2)?;
    let envelope: BatchBody<'_> = from_json(body)?;
    if envelope.jobs.is_empty() || envelope.jobs.len() > MAX_BATCH_JOBS {
        return Err(ApiError::Invalid(format!(
            "a batch holds 1 to {MAX_BATCH_JOBS} jobs; this one holds {}",
            envelope.jobs.len()
        )));
    }
    Ok(envelope.jobs)
}

/// Each job checked as `POST /jobs` checks its body, with the one function both call. A key used
/// by an earlier job of the batch refuses the later one: both would be sent, and the second's
/// message would run nothing.
fn validate(
    app: &App,
    owner: &Owner,
    jobs: &[&RawValue],
    correlation_id: &CorrelationId,
) -> Vec<Outcome> {
    // The keys of the jobs that passed so far, and which job holds each.
    let mut keys: HashMap<IdempotencyKey, usize> = HashMap::new();
    let mut one = |index: usize, raw: &RawValue| -> Result<Prepared, ApiError> {
        let bytes = raw.get().as_bytes();
        let request = read_job(&app.settings, bytes)?;
        let key = request
            .idempotency_key
            .as_deref()
            .map(|key| IdempotencyKey::parse(key.as_bytes()))
            .transpose()
            .map_err(|e| ApiError::Invalid(format!("idempotency_key: {e}")))?;
        if let Some(first) = key.as_ref().and_then(|key| keys.get(key)) {
            return Err(ApiError::Invalid(format!(
                "idempotency_key is the same as job {first}'s; a key names one job"
            )));
        }
        let prepared = prepare(app, owner.clone(), request, key, bytes, correlation_id)?;
        if app.processors.fanout(&prepared.job.kind).is_some() {
            return Err(ApiError::Invalid(format!(
                "kind `{}` fans out to several targets: submit it with POST /jobs",
                prepared.job.kind
            )));
        }
        if let Some(record) = &prepared.idempotency {
            keys.insert(record.key.clone(), index);
        }
        Ok(prepared)
    };
    jobs.iter()
        .enumerate()
        .map(|(index, raw)| match one(index, raw) {
            Ok(prepared) => Outcome::Ready(Box::new(prepared)),
            Err(error) => Outcome::Refused(error),
        })
        .collect()
}

/// Refuses the jobs of a lane over its backlog limit, as `POST /jobs` does: the lane's depth is
/// read once (it is cached for seconds anyway), and a failed read refuses the lane's jobs.
async fn check_backlogs(app: &App, outcomes: &mut [Outcome]) {
    for priority in [Priority::High, Priority::Normal] {
        let in_lane = |outcome: &Outcome| matches!(outcome, Outcome::Ready(prepared) if prepared.job.priority == priority);
        if !outcomes.iter().any(in_lane) {
            continue;
        }
        let queue = app.queues.get(priority).as_ref();
        let verdict = app.backlog.get(priority).over_limit(queue).await;
        let refuse = match verdict {
            Ok(None) => continue,
            Ok(Some(full)) => {
                log_full_lane(priority, &full);
                Refusal::Full(full)
            }
            Err(error) => {
                tracing::error!(error = %crate::error::Chain(&error), %priority, "could not read the lane's depth");
                Refusal::Unavailable
            }
        };
        for outcome in outcomes.iter_mut().filter(|outcome| in_lane(outcome)) {
            *outcome = Outcome::Refused(match refuse {
                Refusal::Full(full) => ApiError::BacklogFull {
                    priority,
                    depth: full.depth,
                    limit: full.limit,
                    retry_after: full.retry_after,
                },
                Refusal::Unavailable => ApiError::Queue(QueueError::Unavailable(
                    "the lane's depth could not be read".into(),
                )),
            });
        }
    }
}

/// The span of one job's replay: a replay's log lines carry the first request's job and
/// correlation id, and those are this job's, not the batch's.
fn replay_span(index: usize) -> tracing::Span {
    info_span!(
        "replay",
        index,
        job_id = tracing::field::Empty,
        correlation_id = tracing::field::Empty
    )
}

/// Why a lane's jobs are refused.
#[derive(Clone, Copy)]
enum Refusal {
    Full(crate::queue::Full),
    Unavailable,
}

/// A job whose key was used before gets that request's job, as `POST /jobs` does, and nothing is
/// sent for it. The keys are read together.
async fn replay_known_keys(app: &App, owner: &Owner, outcomes: &mut [Outcome]) {
    let reads = outcomes.iter().enumerate().filter_map(|(index, outcome)| {
        let Outcome::Ready(prepared) = outcome else {
            return None;
        };
        let record = prepared.idempotency.as_ref()?;
        Some(async move {
            let found = match app.store.key(&record.owner, &record.key).await {
                Ok(Some(first)) => replay(app, &first, owner, &record.fingerprint)
                    .instrument(replay_span(index))
                    .await
                    .map(Some),
                Ok(None) => Ok(None),
                Err(error) => Err(ApiError::from(error)),
            };
            (index, found)
        })
    });
    for (index, found) in join_all(reads).await {
        match found {
            Ok(None) => {}
            Ok(Some(job)) => {
                outcomes[index] = Outcome::Accepted {
                    job: Box::new(job),
                    replayed: true,
                }
            }
            Err(error) => outcomes[index] = Outcome::Refused(error),
        }
    }
}

/// Holds the owner to `SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER`: its active jobs are counted once,
/// and the ready jobs are kept in the request's order while they fit under the limit; the rest
/// are refused (`429`), nothing sent for them. Replays were settled before: they add no job and
/// are never refused. A failed count refuses every ready job (`503`), as `POST /jobs` would.
async fn limit_active_jobs(app: &App, owner: &Owner, outcomes: &mut [Outcome]) {
    let ready = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Outcome::Ready(_)))
        .count();
    let limit = app.settings.max_active_jobs_per_owner;
    let (room, counted) = match check_active_jobs(app, owner, ready).await {
        Ok(room) => (room, true),
        Err(ApiError::TooManyActiveJobs { .. }) => (0, true),
        Err(error) => {
            tracing::error!(error = %crate::error::Chain(&error), "could not count the owner's active jobs");
            (0, false)
        }
    };
    let mut kept = 0;
    for outcome in outcomes.iter_mut() {
        if !matches!(outcome, Outcome::Ready(_)) {
            continue;
        }
        if kept < room {
            kept += 1;
            continue;
        }
        *outcome = Outcome::Refused(if counted {
            too_many_active_jobs(limit)
        } else {
            ApiError::Store(crate::store::StoreError::Unavailable(
                "the owner's active jobs could not be counted".into(),
            ))
        });
    }
}

/// Sends the ready jobs' messages, each to its lane's queue in its owner's fairness group (a
/// scheduled job's delayed as `POST /jobs` delays it), with
/// `SendMessageBatch` (the queue cuts the calls); the two lanes are sent together. A message
/// that fails refuses its job, and nothing is written for it.
async fn send(app: &App, owner: &Owner, outcomes: &mut [Outcome]) {
    let group = owner.fairness_key();
    let now = app.clock.now();
    let lanes = [Priority::High, Priority::Normal].map(|priority| {
        let indices: Vec<usize> = outcomes
            .iter()
            .enumerate()
            .filter(|(_, outcome)| {
                matches!(outcome, Outcome::Ready(prepared) if prepared.job.priority == priority)
            })
            .map(|(index, _)| index)
            .collect();
        (priority, indices)
    });
    let sends = lanes.iter().map(|(priority, indices)| {
        let messages: Vec<Outgoing<'_>> = indices
            .iter()
            .filter_map(|&index| match &outcomes[index] {
                Outcome::Ready(prepared) => Some(Outgoing {
                    body: &prepared.message,
                    options: SendOptions {
                        group: Some(&group),
                        delay: send_delay(&prepared.job, now),
                    },
                }),
                _ => None,
            })
            .collect();
        async move {
            if messages.is_empty() {
                return Vec::new();
            }
            app.queues.get(*priority).send_batch(&messages).await
        }
    });
    let sent = join_all(sends).await;
    for ((_, indices), results) in lanes.iter().zip(sent) {
        for (&index, result) in indices.iter().zip(results) {
            outcomes[index].advance(|outcome| match (outcome, result) {
                (Outcome::Ready(prepared), Ok(message_id)) => Outcome::Sent(prepared, message_id),
                (Outcome::Ready(_), Err(error)) => Outcome::Refused(error.into()),
                (other, _) => other,
            });
        }
    }
}

/// Writes the sent jobs: those without a key together (`JobStore::create_batch`), those with one
/// each with its key's record, as `POST /jobs` does (the key's conditional create and its race
/// with another request stay one code path; in a transaction with other jobs, one taken key
/// would cancel all of them). A failed write is a `503` whose message still runs the job, as for
/// `POST /jobs`.
async fn write(app: &App, owner: &Owner, outcomes: &mut [Outcome]) {
    let sent: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Sent(..)))
        .map(|(index, _)| index)
        .collect();
    let prepared = |index: usize| match &outcomes[index] {
        Outcome::Sent(prepared, _) => Some(prepared.as_ref()),
        _ => None,
    };
    let (keyed, plain): (Vec<usize>, Vec<usize>) = sent
        .iter()
        .partition(|&&index| prepared(index).is_some_and(|p| p.idempotency.is_some()));
    let plain_jobs: Vec<Job> = plain
        .iter()
        .filter_map(|&index| prepared(index).map(|p| p.job.clone()))
        .collect();
    let keyed_writes = keyed.iter().filter_map(|&index| {
        let prepared = prepared(index)?;
        Some(async move {
            let created = app
                .store
                .create(&prepared.job, prepared.idempotency.as_ref())
                .await;
            (index, created)
        })
    });
    let (plain_created, keyed_created) = futures::join!(
        async {
            if plain_jobs.is_empty() {
                Vec::new()
            } else {
                app.store.create_batch(&plain_jobs).await
            }
        },
        join_all(keyed_writes)
    );
    let created = plain
        .iter()
        .copied()
        .zip(plain_created)
        .chain(keyed_created);
    let mut settled = Vec::with_capacity(sent.len());
    for (index, result) in created {
        let Outcome::Sent(prepared, message_id) = &outcomes[index] else {
            continue;
        };
        settled.push((index, settle(result, &prepared.job, message_id.clone())));
    }
    for (index, written) in settled {
        let taken = std::mem::replace(&mut outcomes[index], Outcome::Taken);
        let Outcome::Sent(prepared, message_id) = taken else {
            outcomes[index] = taken;
            continue;
        };
        outcomes[index] = match written {
            Ok(Written::New { .. }) => {
                info!(
                    index,
                    job_id = %prepared.job.id,
                    kind = %prepared.job.kind,
                    message_id = %message_id,
                    deadline = %prepared.job.deadline,
                    "accepted"
                );
                Outcome::Accepted {
                    job: Box::new(prepared.job),
                    replayed: false,
                }
            }
            Ok(Written::KeyTaken(first)) => {
                let fingerprint = prepared
                    .idempotency
                    .as_ref()
                    .map_or("", |record| record.fingerprint.as_str());
                match replay(app, &first, owner, fingerprint)
                    .instrument(replay_span(index))
                    .await
                {
                    Ok(job) => Outcome::Accepted {
                        job: Box::new(job),
                        replayed: true,
                    },
                    Err(error) => Outcome::Refused(error),
                }
            }
            Err(error) => Outcome::Refused(error),
        };
    }
}

/// `200` with each job's result in order, counting each accepted job in `JobsAccepted` and each
/// refused one in `JobsRejected`, as `POST /jobs` counts its requests. When every job was refused
/// with `503`, nothing could be done: the whole request gets the first one's `503` (and
/// `Retry-After`), as a client would retry it whole anyway.
fn answer(app: &App, outcomes: Vec<Outcome>) -> Result<ApiResponse, ApiError> {
    let all_unavailable = outcomes.iter().all(|outcome| {
        matches!(outcome, Outcome::Refused(error) if error.status() == StatusCode::SERVICE_UNAVAILABLE)
    });
    if all_unavailable {
        let mut refused = outcomes.into_iter().filter_map(|outcome| match outcome {
            Outcome::Refused(error) => Some(error),
            _ => None,
        });
        if let Some(first) = refused.next() {
            for error in refused {
                rejected(app, &error);
            }
            return Err(first);
        }
        return Err(ApiError::Invalid("the batch holds no jobs".to_owned()));
    }
    let now = app.clock.now();
    let results = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| {
            let _job = info_span!("job", index).entered();
            result(app, now, index, outcome)
        })
        .collect();
    let mut response = json_response(StatusCode::OK, &BatchAnswer { results });
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    Ok(response)
}

/// One job's result, counted in the metrics as `POST /jobs` counts a request.
fn result(app: &App, now: crate::domain::Timestamp, index: usize, outcome: Outcome) -> ItemResult {
    match outcome {
        Outcome::Accepted { job, replayed } => {
            if !replayed {
                app.metrics
                    .for_job(now, &job.kind, job.priority, &[(Metric::JobsAccepted, 1.0)]);
            }
            ItemResult {
                index,
                status: StatusCode::ACCEPTED.as_u16(),
                body: Some(Accepted::of(&job, now)),
                problem: None,
                replayed,
                retry_after: None,
            }
        }
        Outcome::Refused(error) => refused(app, index, &error),
        // Every job ends accepted or refused; a job left midway would be a bug here, and
        // is refused as one rather than reported accepted.
        Outcome::Ready(_) | Outcome::Sent(..) | Outcome::Taken => {
            let error = ApiError::Store(crate::store::StoreError::Corrupt {
                id: format!("batch job {index}"),
                reason: "left unsettled".to_owned(),
            });
            refused(app, index, &error)
        }
    }
}

/// A refused job's result, counted in the metrics as `POST /jobs` counts a refusal.
fn refused(app: &App, index: usize, error: &ApiError) -> ItemResult {
    rejected(app, error);
    ItemResult {
        index,
        status: error.status().as_u16(),
        problem: Some(error.problem()),
        body: None,
        replayed: false,
        retry_after: error.retry_after(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use http::HeaderValue;
    use serde_json::{Value, json};

    use super::*;
    use crate::domain::{Change, IdempotencyRecord, JobId, JobMessage, Lanes};
    use crate::queue::{JobQueue, MemoryQueue, QueueDepth, ReceivedMessage};
    use crate::store::{ApplyError, JobStore, MemoryStore, StoreError};
    use crate::testing::{MemoryPipeline, fast_settings, json_headers};

    async fn post(app: &App, headers: &HeaderMap, body: &str) -> (StatusCode, Value) {
        let response = submit_batch(app, Owner::anonymous(), headers, body.as_bytes()).await;
        (
            response.status(),
            serde_json::from_str(response.body()).unwrap(),
        )
    }

    fn batch_of(jobs: &[Value]) -> String {
        json!({ "jobs": jobs }).to_string()
    }

    /// Every message both lanes hold, decoded, and emptied from the queues.
    async fn drain(app: &App) -> Vec<JobMessage> {
        let mut messages = Vec::new();
        for (_, queue) in app.queues.iter() {
            loop {
                let batch = queue.receive(10, Duration::ZERO).await.unwrap();
                if batch.is_empty() {
                    break;
                }
                for message in batch {
                    queue.delete(&message.receipt_handle).await.unwrap();
                    messages.push(JobMessage::decode(&message.body).unwrap());
                }
            }
        }
        messages
    }

    /// A hundred jobs across both lanes, jobs 10, 50 and 99 invalid in three ways.
    fn hundred_with_three_invalid() -> Vec<Value> {
        (0..100)
            .map(|n| match n {
                10 => json!({"kind": "no-such-kind", "payload": 1}),
                50 => json!({"kind": "echo", "payload": 1, "ttl_seconds": -1}),
                99 => json!({"kind": "echo"}),
                n if n % 4 == 0 => json!({"kind": "echo", "payload": n, "priority": "high"}),
                n => json!({"kind": "echo", "payload": n}),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_hundred_with_three_invalid_accepts_the_ninety_seven_and_holds_exactly_them() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let app = &pipeline.app;
        let (status, answer) = post(
            app,
            &json_headers(),
            &batch_of(&hundred_with_three_invalid()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let results = answer["results"].as_array().unwrap();
        assert_eq!(results.len(), 100);
        let mut accepted = std::collections::HashSet::new();
        for (index, result) in results.iter().enumerate() {
            assert_eq!(result["index"], index);
            match index {
                10 => {
                    assert_eq!(result["status"], 422, "{result}");
                    assert_eq!(
                        result["problem"]["type"],
                        "urn:spillway:problem:unknown-kind"
                    );
                }
                50 | 99 => {
                    assert_eq!(result["status"], 400, "{result}");
                    assert_eq!(
                        result["problem"]["type"],
                        "urn:spillway:problem:invalid-request"
                    );
                    assert_eq!(result["problem"]["status"], 400);
                }
                _ => {
                    assert_eq!(result["status"], 202, "{result}");
                    let body = &result["body"];
                    let lane = if index % 4 == 0 { "high" } else { "normal" };
                    assert_eq!(body["priority"], lane);
                    assert_eq!(body["status"], "pending");
                    let id = body["id"].as_str().unwrap().to_owned();
                    assert_eq!(body["status_url"], format!("/jobs/{id}"));
                    assert!(result.get("problem").is_none());
                    accepted.insert(JobId::parse(&id).unwrap());
                }
            }
        }
        assert_eq!(accepted.len(), 97);
        let store = app.store.as_ref();
        for id in &accepted {
            assert!(store.get(*id).await.unwrap().is_some(), "job {id} written");
        }
        let messages = drain(app).await;
        assert_eq!(messages.len(), 97, "exactly the accepted jobs were sent");
        let sent: std::collections::HashSet<JobId> = messages.iter().map(|m| m.job_id).collect();
        assert_eq!(sent, accepted);
        for message in &messages {
            let job = store.get(message.job_id).await.unwrap().unwrap();
            assert_eq!(message.priority(), job.priority, "each message in its lane");
        }
    }

    #[tokio::test]
    async fn each_job_has_its_own_schedule_and_its_message_waits_for_it() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let app = &pipeline.app;
        let jobs = [
            json!({"kind": "echo", "payload": 1, "delay_seconds": 600}),
            json!({"kind": "echo", "payload": 2}),
            json!({"kind": "echo", "payload": 3, "delay_seconds": 60, "run_at": "2030-01-01T00:00:00Z"}),
        ];
        let (status, answer) = post(app, &json_headers(), &batch_of(&jobs)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let results = &answer["results"];
        assert_eq!(results[0]["body"]["status"], "scheduled", "{answer}");
        assert!(results[0]["body"]["run_at"].is_string(), "{answer}");
        assert_eq!(results[1]["body"]["status"], "pending");
        assert!(results[1]["body"].get("run_at").is_none());
        assert_eq!(
            results[2]["status"], 400,
            "run_at or delay_seconds, not both"
        );
        let depth = app.queues.normal.depth().await.unwrap();
        assert_eq!((depth.visible, depth.delayed), (1, 1), "{depth:?}");
    }

    #[tokio::test]
    async fn the_whole_request_is_refused_for_a_problem_of_its_own() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let app = &pipeline.app;
        let one = json!({"kind": "echo", "payload": 1});
        let cases: Vec<(String, StatusCode, &str)> = vec![
            (batch_of(&[]), StatusCode::BAD_REQUEST, "invalid-request"),
            (
                batch_of(&vec![one.clone(); 101]),
                StatusCode::BAD_REQUEST,
                "invalid-request",
            ),
            (
                "{\"jobs\": [".to_owned(),
                StatusCode::BAD_REQUEST,
                "malformed-json",
            ),
            (
                json!({"jobs": [one], "x": 1}).to_string(),
                StatusCode::BAD_REQUEST,
                "invalid-request",
            ),
            (
                json!([one]).to_string(),
                StatusCode::BAD_REQUEST,
                "invalid-request",
            ),
            (
                format!(
                    "{{\"jobs\":[{{\"kind\":\"echo\",\"payload\":\"{}\"}}]}}",
                    "x".repeat(MAX_BATCH_BYTES)
                ),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
            ),
        ];
        for (body, status, slug) in cases {
            let (got, problem) = post(app, &json_headers(), &body).await;
            assert_eq!(got, status, "{problem}");
            assert_eq!(problem["type"], format!("urn:spillway:problem:{slug}"));
        }
        let mut text = HeaderMap::new();
        text.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
        assert_eq!(
            post(app, &text, &batch_of(std::slice::from_ref(&one)))
                .await
                .0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        let mut keyed = json_headers();
        keyed.insert("idempotency-key", HeaderValue::from_static("k"));
        assert_eq!(
            post(app, &keyed, &batch_of(&[one])).await.0,
            StatusCode::BAD_REQUEST
        );
        assert!(drain(app).await.is_empty(), "nothing was sent");
    }

    #[tokio::test]
    async fn each_job_is_bounded_as_a_body_of_post_jobs_is() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let limit = pipeline.app.settings.max_payload_bytes;
        // A job whose own JSON is one byte over the limit, beside one at it.
        let job_of = |bytes: usize| {
            let empty = r#"{"kind":"echo","payload":""}"#;
            format!(
                r#"{{"kind":"echo","payload":"{}"}}"#,
                "x".repeat(bytes - empty.len())
            )
        };
        let body = format!(r#"{{"jobs":[{},{}]}}"#, job_of(limit), job_of(100));
        let (status, answer) = post(&pipeline.app, &json_headers(), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["results"][0]["status"], 202);
        let body = format!(r#"{{"jobs":[{},{}]}}"#, job_of(100), job_of(limit + 1));
        let (status, answer) = post(&pipeline.app, &json_headers(), &body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["results"][0]["status"], 202);
        assert_eq!(answer["results"][1]["status"], 413);
        // A job nests as deep as a body of POST /jobs may; deeper, and the whole body is refused
        // before it is parsed, as nothing of it can be read safely.
        let nested = |depth: usize| json!({"kind": "echo", "payload": (0..depth).fold(json!(1), |v, _| json!([v]))});
        let deepest = batch_of(&[nested(MAX_NESTING - 1)]);
        let (_, answer) = post(&pipeline.app, &json_headers(), &deepest).await;
        assert_eq!(answer["results"][0]["status"], 202, "{answer}");
        let deeper = batch_of(&[nested(1), nested(MAX_NESTING)]);
        let (status, problem) = post(&pipeline.app, &json_headers(), &deeper).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
        // A key in the body belongs to a batch's jobs, not to POST /jobs.
        let single = json!({"kind": "echo", "payload": 1, "idempotency_key": "k"}).to_string();
        let response = crate::api::submit_job(
            &pipeline.app,
            Owner::anonymous(),
            &json_headers(),
            single.as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn keys_replay_their_jobs_and_name_one_job_per_batch() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let app = &pipeline.app;
        let jobs = [
            json!({"kind": "echo", "payload": 1, "idempotency_key": "a"}),
            json!({"kind": "echo", "payload": 2, "idempotency_key": "b"}),
            json!({"kind": "echo", "payload": 3}),
        ];
        let (_, first) = post(app, &json_headers(), &batch_of(&jobs)).await;
        assert!(
            first["results"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["status"] == 202),
            "{first}"
        );
        assert_eq!(drain(app).await.len(), 3);

        let (_, again) = post(app, &json_headers(), &batch_of(&jobs)).await;
        for index in 0..2 {
            let result = &again["results"][index];
            assert_eq!(result["status"], 202, "{result}");
            assert_eq!(result["replayed"], true);
            assert_eq!(result["body"]["id"], first["results"][index]["body"]["id"]);
        }
        assert!(
            again["results"][2].get("replayed").is_none(),
            "no key, a new job"
        );
        assert_ne!(
            again["results"][2]["body"]["id"],
            first["results"][2]["body"]["id"]
        );
        assert_eq!(drain(app).await.len(), 1, "a replay sends nothing");

        let reused = [
            json!({"kind": "echo", "payload": 9, "idempotency_key": "a"}),
            json!({"kind": "echo", "payload": 1, "idempotency_key": "c"}),
            json!({"kind": "echo", "payload": 1, "idempotency_key": "c"}),
            json!({"kind": "echo", "payload": 1, "idempotency_key": ""}),
        ];
        let (_, answer) = post(app, &json_headers(), &batch_of(&reused)).await;
        let statuses: Vec<&Value> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["status"])
            .collect();
        assert_eq!(
            statuses,
            [&json!(422), &json!(202), &json!(400), &json!(400)],
            "{answer}"
        );
        assert_eq!(drain(app).await.len(), 1);
        // A refused job holds no key: a later job with it stands alone.
        let after_refused = [
            json!({"kind": "nope", "payload": 1, "idempotency_key": "d"}),
            json!({"kind": "echo", "payload": 1, "idempotency_key": "d"}),
        ];
        let (_, answer) = post(app, &json_headers(), &batch_of(&after_refused)).await;
        assert_eq!(answer["results"][0]["status"], 422, "{answer}");
        assert_eq!(answer["results"][1]["status"], 202, "{answer}");
    }

    #[tokio::test]
    async fn a_batch_at_the_owners_limit_is_accepted_up_to_it_and_429_after() {
        let settings = crate::config::Settings {
            max_active_jobs_per_owner: 4,
            ..fast_settings()
        };
        let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
        let app = &pipeline.app;
        let echo = |n: u32| json!({"kind": "echo", "payload": n});
        let keyed = json!({"kind": "echo", "payload": 0, "idempotency_key": "k"});
        let (status, first) =
            post(app, &json_headers(), &batch_of(&[keyed.clone(), echo(1)])).await;
        assert_eq!(status, StatusCode::OK, "{first}");
        assert_eq!(drain(app).await.len(), 2);

        // Two active: the key's repeat replays, two new jobs fit, the rest is refused, and a
        // job refused for another reason takes no room.
        let jobs = [
            echo(2),
            json!({"kind": "nope", "payload": 1}),
            keyed,
            echo(3),
            echo(4),
            json!({"kind": "echo", "payload": 5, "priority": "high"}),
        ];
        let (status, answer) = post(app, &json_headers(), &batch_of(&jobs)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let results = answer["results"].as_array().unwrap();
        let statuses: Vec<u64> = results
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [202, 422, 202, 202, 429, 429], "{answer}");
        assert_eq!(results[2]["replayed"], true);
        assert_eq!(results[2]["body"]["id"], first["results"][0]["body"]["id"]);
        for refused in &results[4..] {
            assert_eq!(refused["retry_after"], 5, "{refused}");
            assert_eq!(
                refused["problem"]["type"],
                "urn:spillway:problem:too-many-active-jobs"
            );
        }
        assert_eq!(
            drain(app).await.len(),
            2,
            "only the accepted jobs were sent"
        );
        let owner = Owner::anonymous();
        assert_eq!(app.store.active_jobs(&owner, 100).await.unwrap(), 4);

        // At the limit, nothing new is accepted, and the request is still answered per job.
        let (status, answer) = post(app, &json_headers(), &batch_of(&[echo(6)])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["results"][0]["status"], 429, "{answer}");
        assert!(drain(app).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_lane_refuses_its_jobs_and_a_batch_that_can_do_nothing_is_503() {
        let settings = crate::config::Settings {
            backlog_limit: Lanes {
                high: 0,
                normal: 10,
            },
            ..fast_settings()
        };
        let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
        let app = &pipeline.app;
        for n in 0..20 {
            app.queues.normal.send(&n.to_string()).await.unwrap();
        }
        let high = json!({"kind": "echo", "payload": 1, "priority": "high"});
        let normal = json!({"kind": "echo", "payload": 1});
        let (status, answer) = post(app, &json_headers(), &batch_of(&[high, normal.clone()])).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["results"][0]["status"], 202);
        let refused = &answer["results"][1];
        assert_eq!(refused["status"], 503, "{answer}");
        assert_eq!(
            refused["problem"]["type"],
            "urn:spillway:problem:backlog-full"
        );
        assert_eq!(refused["retry_after"], 5);

        let response = submit_batch(
            app,
            Owner::anonymous(),
            &json_headers(),
            batch_of(&[normal.clone(), normal]).as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "5");
    }

    /// A queue whose every `SendMessageBatch` refuses its entry `failing` (counted from 0), as SQS
    /// reports one failed entry of a batch.
    #[derive(Debug)]
    struct FailsEntry {
        inner: Arc<MemoryQueue>,
        failing: usize,
    }

    #[async_trait]
    impl JobQueue for FailsEntry {
        async fn send_with(
            &self,
            body: &str,
            options: SendOptions<'_>,
        ) -> Result<String, QueueError> {
            self.inner.send_with(body, options).await
        }
        async fn send_batch(&self, messages: &[Outgoing<'_>]) -> Vec<Result<String, QueueError>> {
            let mut results = Vec::new();
            for (index, message) in messages.iter().enumerate() {
                results.push(if index == self.failing {
                    Err(QueueError::Unavailable(
                        "InternalError (SQS's fault)".into(),
                    ))
                } else {
                    self.inner
                        .send_batch(std::slice::from_ref(message))
                        .await
                        .remove(0)
                });
            }
            results
        }
        async fn change_visibility(
            &self,
            handle: &str,
            timeout: Duration,
        ) -> Result<(), QueueError> {
            self.inner.change_visibility(handle, timeout).await
        }
        async fn receive(
            &self,
            max: u32,
            wait: Duration,
        ) -> Result<Vec<ReceivedMessage>, QueueError> {
            self.inner.receive(max, wait).await
        }
        async fn delete(&self, handle: &str) -> Result<(), QueueError> {
            self.inner.delete(handle).await
        }
        async fn depth(&self) -> Result<QueueDepth, QueueError> {
            self.inner.depth().await
        }
    }

    /// A store whose batch creates write their first `written` jobs and fail the rest, as a
    /// chunk's transaction that fails after the first succeeded.
    #[derive(Debug)]
    struct FailsChunk {
        inner: MemoryStore,
        written: usize,
    }

    #[async_trait]
    impl JobStore for FailsChunk {
        async fn create(
            &self,
            job: &Job,
            key: Option<&IdempotencyRecord>,
        ) -> Result<(), StoreError> {
            self.inner.create(job, key).await
        }
        async fn create_batch(&self, jobs: &[Job]) -> Vec<Result<(), StoreError>> {
            let split = self.written.min(jobs.len());
            let mut created = self.inner.create_batch(&jobs[..split]).await;
            created.extend(
                jobs[split..]
                    .iter()
                    .map(|_| Err(StoreError::Unavailable("throttled".into()))),
            );
            created
        }
        async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
            self.inner.get(id).await
        }
        async fn key(
            &self,
            owner: &Owner,
            key: &IdempotencyKey,
        ) -> Result<Option<IdempotencyRecord>, StoreError> {
            self.inner.key(owner, key).await
        }
        async fn apply(&self, id: JobId, change: &Change) -> Result<Job, ApplyError> {
            self.inner.apply(id, change).await
        }
        async fn active_jobs(&self, owner: &Owner, at_most: u32) -> Result<u32, StoreError> {
            self.inner.active_jobs(owner, at_most).await
        }
        async fn hold_slot(
            &self,
            slot: &crate::store::Slot,
            until: crate::domain::Timestamp,
            now: crate::domain::Timestamp,
        ) -> Result<bool, StoreError> {
            self.inner.hold_slot(slot, until, now).await
        }
        async fn release_slot(&self, slot: &crate::store::Slot) -> Result<(), StoreError> {
            self.inner.release_slot(slot).await
        }
    }

    fn app_on(store: Arc<dyn JobStore>, normal: Arc<dyn JobQueue>) -> App {
        let queues = Lanes {
            high: Arc::new(MemoryQueue::new(Duration::from_secs(30))) as Arc<dyn JobQueue>,
            normal,
        };
        App::new(store, queues, fast_settings()).with_processors(crate::kinds::builtin())
    }

    #[tokio::test]
    async fn a_failed_entry_of_a_send_refuses_only_its_job_and_writes_nothing_for_it() {
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let store = Arc::new(MemoryStore::new());
        let app = app_on(
            store.clone(),
            Arc::new(FailsEntry {
                inner: queue.clone(),
                failing: 2,
            }),
        );
        let jobs: Vec<Value> = (0..5)
            .map(|n| json!({"kind": "echo", "payload": n}))
            .collect();
        let (status, answer) = post(&app, &json_headers(), &batch_of(&jobs)).await;
        assert_eq!(status, StatusCode::OK);
        let results = answer["results"].as_array().unwrap();
        for (index, result) in results.iter().enumerate() {
            let expected = if index == 2 { 503 } else { 202 };
            assert_eq!(result["status"], expected, "{result}");
        }
        assert_eq!(
            results[2]["problem"]["type"],
            "urn:spillway:problem:unavailable"
        );
        assert_eq!(results[2]["retry_after"], 5);
        assert_eq!(store.len(), 4, "the refused job was not written");
        assert_eq!(queue.depth().await.unwrap().visible, 4);
    }

    #[tokio::test]
    async fn a_failed_write_after_the_send_is_503_and_the_message_still_carries_the_job() {
        let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
        let store = Arc::new(FailsChunk {
            inner: MemoryStore::new(),
            written: 3,
        });
        let app = app_on(store.clone(), queue.clone());
        let jobs: Vec<Value> = (0..5)
            .map(|n| json!({"kind": "echo", "payload": n}))
            .collect();
        let (status, answer) = post(&app, &json_headers(), &batch_of(&jobs)).await;
        assert_eq!(status, StatusCode::OK);
        let statuses: Vec<u64> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["status"].as_u64().unwrap())
            .collect();
        assert_eq!(statuses, [202, 202, 202, 503, 503]);
        assert_eq!(store.inner.len(), 3);
        // As for POST /jobs: the messages were sent, and their consumer writes the jobs.
        assert_eq!(queue.depth().await.unwrap().visible, 5);
    }
}
