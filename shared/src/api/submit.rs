use std::borrow::Cow;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tracing::{info, instrument, warn};

use super::{
    ApiError, ApiResponse, CORRELATION_HEADER, JSON, json_response, set_correlation_id, status_path,
};
use crate::app::App;
use crate::config::Settings;
use crate::domain::{
    CorrelationId, IdempotencyKey, IdempotencyRecord, Job, JobId, JobMessage, JobStatus, Kind,
    NewJob, Owner, PayloadDigest, Priority, Timestamp, Ttl, WholeNumber,
};
use crate::metrics::Metric;
use crate::processor::Rejection;
use crate::queue::{MAX_MESSAGE_BYTES, SendOptions, delay_until};
use crate::store::{Created, StoreError};
use crate::webhook;

/// The body of `POST /jobs`, and one job of `POST /jobs/batch`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
    #[serde(default)]
    priority: Priority,
    #[serde(default)]
    ttl_seconds: Option<WholeNumber>,
    #[serde(default, borrow)]
    run_at: Option<Cow<'a, str>>,
    #[serde(default)]
    delay_seconds: Option<WholeNumber>,
    #[serde(default)]
    callback_url: Option<String>,
    /// A batch's job carries its key here; `POST /jobs` takes it as the `Idempotency-Key` header.
    #[serde(default, borrow)]
    pub(super) idempotency_key: Option<Cow<'a, str>>,
}

/// The body of a `202`.
#[derive(Debug, Serialize)]
pub(super) struct Accepted {
    id: String,
    status: &'static str,
    priority: Priority,
    status_url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    run_at: Option<Timestamp>,
    deadline: Timestamp,
}

impl Accepted {
    /// The `202` document of `job`, at `now` (a job not yet due is `scheduled`).
    pub(super) fn of(job: &Job, now: Timestamp) -> Self {
        Self {
            id: job.id.to_string(),
            status: if job.is_scheduled_at(now) {
                "scheduled"
            } else if job.status == JobStatus::Running
                && job
                    .fanout
                    .as_ref()
                    .is_some_and(|f| !f.children().is_empty())
            {
                // A fan-out parent is `running` from its acceptance: its children are its work.
                "running"
            } else {
                "pending"
            },
            priority: job.priority,
            status_url: status_path(job),
            run_at: job.run_at,
            deadline: job.deadline,
        }
    }
}

/// A job that passed every check that needs no call: its item, its key's record, and its
/// message, measured.
pub(super) struct Prepared {
    pub(super) job: Job,
    pub(super) idempotency: Option<IdempotencyRecord>,
    pub(super) message: String,
}

/// The furthest ahead a job may be scheduled. Each 15 minutes of it costs a hop (a consumer
/// receives the message and sends it on, delayed): docs/architecture.md, "Scheduled jobs".
pub const MAX_SCHEDULE: Duration = Duration::from_secs(86_400);

/// `POST /jobs`: validates the request, writes the job as `pending`, enqueues its message and
/// answers `202`. A request refused with a 4xx writes nothing and enqueues nothing. Every answer
/// carries the request's `X-Correlation-Id` (the caller's, or one made here).
#[instrument(skip_all, fields(job_id, correlation_id))]
pub async fn submit_job(app: &App, owner: Owner, headers: &HeaderMap, body: &[u8]) -> ApiResponse {
    let (correlation_id, invalid) = correlation(headers);
    let result = match invalid {
        Some(invalid) => Err(invalid),
        None => submit(app, owner, headers, body, &correlation_id).await,
    };
    finish(app, result, &correlation_id)
}

/// The request's correlation id (the caller's, or one made here, recorded on the span), and the
/// problem with the caller's when it is not a valid one.
pub(super) fn correlation(headers: &HeaderMap) -> (CorrelationId, Option<ApiError>) {
    let given = headers
        .get(CORRELATION_HEADER)
        .map(|value| CorrelationId::parse(value.as_bytes()));
    let correlation_id = match &given {
        Some(Ok(id)) => id.clone(),
        _ => CorrelationId::generate(),
    };
    tracing::Span::current().record("correlation_id", correlation_id.as_str());
    let invalid = match given {
        Some(Err(invalid)) => Some(ApiError::Invalid(invalid.to_string())),
        _ => None,
    };
    (correlation_id, invalid)
}

/// The response, or the problem of a refused request (logged and counted in `JobsRejected`),
/// with the request's correlation id unless it answers another request's.
pub(super) fn finish(
    app: &App,
    result: Result<ApiResponse, ApiError>,
    correlation_id: &CorrelationId,
) -> ApiResponse {
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            rejected(app, &error);
            error.into_response()
        }
    };
    if !response.headers().contains_key(CORRELATION_HEADER) {
        set_correlation_id(response.headers_mut(), correlation_id);
    }
    response
}

/// Logs a refusal the client caused (a server error is logged where it is answered) and counts
/// it in `JobsRejected` by its reason.
pub(super) fn rejected(app: &App, error: &ApiError) {
    if !error.status().is_server_error() {
        info!(status = error.status().as_u16(), reason = %error.detail(), "rejected");
    }
    app.metrics.emit(
        app.clock.now(),
        &[("Reason", error.slug())],
        &[(Metric::JobsRejected, 1.0)],
    );
}

async fn submit(
    app: &App,
    owner: Owner,
    headers: &HeaderMap,
    body: &[u8],
    correlation_id: &CorrelationId,
) -> Result<ApiResponse, ApiError> {
    let (key, request) = parse(&app.settings, headers, body)?;
    let wait = preferred_wait(headers);
    let payload = request.payload;
    let Prepared {
        mut job,
        idempotency,
        message,
    } = prepare(app, owner, request, key, body, correlation_id)?;
    let fanout = app.processors.fanout(&job.kind);
    let (now, deadline) = (job.created_at, job.deadline);
    let priority = job.priority;
    let queue = app.queues.get(priority).as_ref();
    if let Some(full) = app.backlog.get(priority).over_limit(queue).await? {
        return Err(backlog_full(priority, full));
    }
    // A repeat of a keyed request finds the key before anything is sent: the replay costs one
    // read, not a message that would run nothing. (Two requests racing with one key both find it
    // free; the create below settles which job it names.)
    if let Some(record) = &idempotency
        && let Some(first) = app.store.key(&record.owner, &record.key).await?
    {
        let replayed = replay(app, &first, &job.owner, &record.fingerprint).await?;
        if let Some(targets) = fanout {
            super::fanout::finish(app, &replayed, targets, payload, Some(record)).await?;
        }
        return answer(app, replayed, true, wait).await;
    }
    // Only a new job counts against its owner's limit: a replay above has none to add.
    // A fan-out's parent and each of its children are active jobs of their owner.
    let new_jobs = fanout.map_or(1, |targets| 1 + targets.len());
    // All of them or none: a parent missing some of its children would not be the kind's job.
    if check_active_jobs(app, &job.owner, new_jobs).await? < new_jobs {
        return Err(too_many_active_jobs(app.settings.max_active_jobs_per_owner));
    }
    tracing::Span::current().record("job_id", tracing::field::display(job.id));
    let written = match fanout {
        Some(targets) => {
            super::fanout::fan_out(app, &mut job, targets, payload, idempotency.as_ref()).await?
        }
        None => send_and_write(app, &job, &message, idempotency.as_ref()).await?,
    };
    let message_id = match written {
        Written::New { message_id } => message_id,
        Written::KeyTaken(first) => {
            let fingerprint = idempotency.as_ref().map_or("", |r| r.fingerprint.as_str());
            let replayed = replay(app, &first, &job.owner, fingerprint).await?;
            if let Some(targets) = fanout {
                let record = idempotency.as_ref();
                super::fanout::finish(app, &replayed, targets, payload, record).await?;
            }
            return answer(app, replayed, true, wait).await;
        }
    };
    info!(kind = %job.kind, message_id = %message_id, deadline = %deadline, "accepted");
    app.metrics
        .for_job(now, &job.kind, job.priority, &[(Metric::JobsAccepted, 1.0)]);
    answer(app, job, false, wait).await
}

/// Everything about one job that needs no call: what the deployment makes of it (`admit`), its
/// item, its key's record (fingerprinted over `request_bytes`, the bytes a repeat must match),
/// and its message, refused when SQS could not carry it. `POST /jobs` and each job of a batch.
pub(super) fn prepare(
    app: &App,
    owner: Owner,
    request: SubmitBody<'_>,
    key: Option<IdempotencyKey>,
    request_bytes: &[u8],
    correlation_id: &CorrelationId,
) -> Result<Prepared, ApiError> {
    let now = app.clock.now();
    let Admitted { kind, ttl, delay } = admit(app, &request, now)?;
    // A scheduled job's deadline counts from when it is due.
    let run_at = (!delay.is_zero()).then(|| now.saturating_add(delay));
    let deadline = run_at.unwrap_or(now).saturating_add(ttl);
    let job = Job::pending(NewJob {
        id: JobId::generate(),
        kind,
        owner,
        priority: request.priority,
        created_at: now,
        deadline,
        run_at,
        payload: PayloadDigest::of(request.payload.get()),
        // A job whose message never arrives is forgotten once it could no longer run anyway.
        expires_at: deadline.saturating_add(app.settings.retention),
        callback_url: request.callback_url,
        correlation_id: Some(correlation_id.clone()),
    });
    let idempotency = key.map(|key| IdempotencyRecord {
        owner: job.owner.clone(),
        key,
        fingerprint: IdempotencyRecord::fingerprint(request_bytes),
        job_id: job.id,
        expires_at: job.expires_at,
    });
    let message = JobMessage::of(&job, request.payload.to_owned(), idempotency.as_ref()).encode();
    // The body's limit leaves room for the largest envelope, save an owner's identity longer
    // than its budget (docs/architecture.md, "Payload size"): a message SQS would refuse is
    // refused here as too large, before anything is sent, not answered 503 on every retry.
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(ApiError::MessageTooLarge {
            size: message.len(),
        });
    }
    Ok(Prepared {
        job,
        idempotency,
        message,
    })
}

/// What a `429` for an owner at its limit of active jobs says in `Retry-After`. A slot frees when
/// one of the owner's jobs ends, which depends on its jobs, not on anything intake measures; 5 s
/// is the backlog check's refresh interval and the `503`'s wait, short enough that an owner whose
/// jobs take a second loses little, and a refused retry costs only an index read bounded by the
/// limit (docs/architecture.md, "Per-owner limits").
pub const ACTIVE_LIMIT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How many of `wanted` new jobs `owner` may still submit under
/// `SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER` (all of them when the limit is off): its active jobs are
/// counted in the store's index, no further than the limit. `429` when not one may.
pub(super) async fn check_active_jobs(
    app: &App,
    owner: &Owner,
    wanted: usize,
) -> Result<usize, ApiError> {
    let limit = app.settings.max_active_jobs_per_owner;
    if limit == 0 || wanted == 0 {
        return Ok(wanted);
    }
    let active = app.store.active_jobs(owner, limit).await?;
    let room = usize::try_from(limit.saturating_sub(active)).unwrap_or(usize::MAX);
    if room == 0 {
        info!(
            active,
            limit, "owner at its limit of active jobs; refusing its new jobs"
        );
        return Err(too_many_active_jobs(limit));
    }
    Ok(wanted.min(room))
}

/// The `429` of an owner at its limit of active jobs.
pub(super) fn too_many_active_jobs(limit: u32) -> ApiError {
    ApiError::TooManyActiveJobs {
        limit,
        retry_after: ACTIVE_LIMIT_RETRY_AFTER,
    }
}

/// The `503` of a lane over its backlog limit, logged.
pub(super) fn backlog_full(priority: Priority, full: crate::queue::Full) -> ApiError {
    log_full_lane(priority, &full);
    ApiError::BacklogFull {
        priority,
        depth: full.depth,
        limit: full.limit,
        retry_after: full.retry_after,
    }
}

/// Logs that a lane is over its backlog limit and its new jobs are refused.
pub(super) fn log_full_lane(priority: Priority, full: &crate::queue::Full) {
    warn!(
        %priority,
        depth = full.depth,
        limit = full.limit,
        drain_per_second = full.drain_per_second,
        retry_after_s = full.retry_after.as_secs(),
        "lane over its backlog limit; refusing its new jobs"
    );
}

/// The answer to an accepted (or replayed) job: `202`, or with `Prefer: wait=N` the job's
/// document (`200`) should it finish within `N` seconds, and the `202` if it does not. Either way
/// the job stands: a read that fails while waiting still answers `202`, as the job was accepted.
async fn answer(
    app: &App,
    job: Job,
    replayed: bool,
    wait: Option<Duration>,
) -> Result<ApiResponse, ApiError> {
    let Some(wait) = wait else {
        return Ok(accepted(&job, replayed, app.clock.now()));
    };
    let waited = match super::status::wait_for_end(app, &job.owner, job.id, wait).await {
        Ok(latest) => latest,
        Err(error) => {
            warn!(error = %crate::error::Chain(&error), "could not read the job while waiting; answering 202");
            job
        }
    };
    let mut response = if waited.status.is_terminal() {
        info!(status = %waited.status, "finished while the client waited");
        let mut response = super::job_response(&waited, app.clock.now());
        if let Ok(location) = HeaderValue::from_str(&status_path(&waited)) {
            response
                .headers_mut()
                .insert(header::CONTENT_LOCATION, location);
        }
        response
    } else {
        accepted(&waited, replayed, app.clock.now())
    };
    if let Ok(applied) = HeaderValue::from_str(&format!("wait={}", wait.as_secs())) {
        response.headers_mut().insert("preference-applied", applied);
    }
    Ok(response)
}

/// The `wait` preference of RFC 7240's `Prefer` header, in whole seconds, at most the long-poll
/// limit: a client that asks for more waits that long. A `Prefer` header without a well-formed
/// `wait` asks for nothing (RFC 7240 has a server ignore a preference it cannot honour), and
/// `wait=0` is no wait.
fn preferred_wait(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|preference| {
            // A preference is `token [= value] *( ; parameter )`.
            let head = preference.split(';').next().unwrap_or_default();
            let (name, value) = head.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()?;
    (seconds > 0).then(|| Duration::from_secs(seconds.min(super::MAX_WAIT_SECONDS)))
}

/// The request's form: its media type, `Idempotency-Key`, size, nesting, JSON and characters SQS
/// can carry. Nothing here depends on the deployment's kinds.
fn parse<'a>(
    settings: &Settings,
    headers: &HeaderMap,
    body: &'a [u8],
) -> Result<(Option<IdempotencyKey>, SubmitBody<'a>), ApiError> {
    check_content_type(headers)?;
    let key = headers
        .get("idempotency-key")
        .map(|value| IdempotencyKey::parse(value.as_bytes()))
        .transpose()
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    let request = read_job(settings, body)?;
    if request.idempotency_key.is_some() {
        return Err(ApiError::Invalid(
            "`idempotency_key` is a field of a batch's jobs; send this job's key as the \
             Idempotency-Key header"
                .to_owned(),
        ));
    }
    Ok((key, request))
}

/// Reads one job's request from its JSON (a body of `POST /jobs`, or one job of a batch): its
/// size, nesting, JSON and characters SQS can carry.
pub(super) fn read_job<'a>(
    settings: &Settings,
    body: &'a [u8],
) -> Result<SubmitBody<'a>, ApiError> {
    if body.len() > settings.max_payload_bytes {
        return Err(ApiError::PayloadTooLarge {
            limit: settings.max_payload_bytes,
        });
    }
    check_nesting(body, MAX_NESTING)?;
    let request: SubmitBody<'_> = from_json(body)?;
    // Valid JSON is valid UTF-8, but SQS refuses a few characters (U+FFFE, U+FFFF) that JSON
    // carries: such a job could never be sent, so it is refused before anything is written.
    if let Some(c) = crate::queue::unsendable(request.payload.get()) {
        return Err(ApiError::Invalid(format!(
            "the payload holds U+{:04X}, which SQS cannot carry; escape it as \\u{:04x}",
            u32::from(c),
            u32::from(c)
        )));
    }
    Ok(request)
}

/// Parses a body: `400 malformed-json` when it is not JSON, `400 invalid-request` when it is JSON
/// of the wrong shape.
pub(super) fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::Invalid(e.to_string())
        } else {
            ApiError::MalformedJson(e)
        }
    })
}

/// What a request asks for, once admitted.
struct Admitted {
    kind: Kind,
    ttl: Duration,
    /// How long from now until the job is due; zero when it is not scheduled.
    delay: Duration,
}

/// What this deployment makes of the request: a kind it runs, a TTL within its limit, a schedule
/// within [`MAX_SCHEDULE`], a callback URL its guard allows, and a payload the kind's processor
/// admits.
fn admit(app: &App, request: &SubmitBody<'_>, now: Timestamp) -> Result<Admitted, ApiError> {
    let kind = Kind::parse(&request.kind).map_err(|e| ApiError::Invalid(e.to_string()))?;
    // A fan-out's children run as their parent's part, never on their own.
    let processor = app
        .processors
        .get(&kind)
        .filter(|_| !app.processors.is_child(&kind));
    let Some(processor) = processor else {
        let known = app
            .processors
            .kinds()
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(ApiError::UnknownKind { kind, known });
    };
    let ttl = match request.ttl_seconds {
        Some(WholeNumber(seconds)) => Ttl::from_seconds(seconds, app.settings.max_ttl.as_secs())
            .map_err(|e| ApiError::Invalid(e.to_string()))?
            .duration(),
        None => app
            .processors
            .limits(&kind)
            .default_ttl
            .unwrap_or(*app.settings.default_ttl.get(request.priority)),
    };
    let delay = schedule(request, now)?;
    if let Some(url) = &request.callback_url {
        check_callback_url(app, url)?;
    }
    processor
        .admit(request.payload)
        .map_err(|rejection| refused(&format!("payload for kind `{kind}`"), rejection))?;
    Ok(Admitted { kind, ttl, delay })
}

/// How long until the job is due: `run_at` (RFC 3339; a time already past is now) or
/// `delay_seconds`, not both, at most [`MAX_SCHEDULE`] ahead.
fn schedule(request: &SubmitBody<'_>, now: Timestamp) -> Result<Duration, ApiError> {
    let delay = match (&request.run_at, request.delay_seconds) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(
                "give run_at or delay_seconds, not both".to_owned(),
            ));
        }
        (Some(run_at), None) => Timestamp::parse_rfc3339(run_at)
            .map_err(|e| ApiError::Invalid(format!("run_at: {e}")))?
            .saturating_since(now),
        (None, Some(WholeNumber(seconds))) => Duration::from_secs(seconds),
        (None, None) => Duration::ZERO,
    };
    if delay > MAX_SCHEDULE {
        return Err(ApiError::Invalid(format!(
            "a job may be scheduled at most {} seconds ahead",
            MAX_SCHEDULE.as_secs()
        )));
    }
    Ok(delay)
}

/// How a new job's send and write ended.
pub(super) enum Written {
    /// Sent, and written (by intake, or already by a consumer from its message).
    New { message_id: String },
    /// Another request took the key first: this job's message finds the key taken and runs
    /// nothing, and the caller gets the first request's job.
    KeyTaken(Box<IdempotencyRecord>),
}

/// Sends the job's message, then writes the job. The message goes first: a failed send leaves
/// nothing behind (`503`), and a job whose write never lands still runs, as its message carries
/// what a consumer needs to write it (docs/guarantees.md, docs/architecture.md).
async fn send_and_write(
    app: &App,
    job: &Job,
    message: &str,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Written, ApiError> {
    let options = SendOptions {
        group: Some(&job.owner.fairness_key()),
        delay: send_delay(job, app.clock.now()),
    };
    let message_id = app
        .queues
        .get(job.priority)
        .send_with(message, options)
        .await?;
    settle(app.store.create(job, idempotency).await, job, message_id)
}

/// How long a job's message is delayed when it is sent at `now`: a scheduled job's by as much as
/// SQS allows; a consumer that receives it before the job is due sends it on again
/// (docs/architecture.md, "Scheduled jobs").
pub(super) fn send_delay(job: &Job, now: Timestamp) -> Duration {
    job.run_at
        .map_or(Duration::ZERO, |due| delay_until(due, now))
}

/// What the write of a job whose message was sent (as `message_id`) comes to.
pub(super) fn settle(
    created: Result<(), StoreError>,
    job: &Job,
    message_id: String,
) -> Result<Written, ApiError> {
    match Created::of(created, job.id) {
        // Written now, or by a consumer from its message first.
        Ok(Created::Written | Created::AlreadyThere) => Ok(Written::New { message_id }),
        Ok(Created::KeyTaken(first)) => Ok(Written::KeyTaken(first)),
        // 503: the client learns nothing was promised. The message that was sent still writes
        // the job and runs it; a retry with the same Idempotency-Key gets whichever of the two
        // jobs takes the key first, and the other's message runs nothing. (Answering 202 here
        // would hand out an id that a same-key retry could leave unwritten for good.)
        Err(error) => Err(error.into()),
    }
}

/// The deepest a request body may nest arrays and objects. The payload travels as raw JSON, past
/// serde's own recursion limit, to whatever parses it later; this bounds it at the door.
pub const MAX_NESTING: usize = 64;

/// Refuses a body that nests deeper than `max` (a job's body: [`MAX_NESTING`]), counting
/// brackets outside strings in one pass, before any parser recurses into it.
pub(super) fn check_nesting(body: &[u8], max: usize) -> Result<(), ApiError> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(ApiError::Invalid(format!(
                        "the body nests arrays and objects deeper than {max} levels"
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// A request repeating an Idempotency-Key: the same request gets the first one's job, and
/// nothing is sent; a different request (or another owner's) is refused.
pub(super) async fn replay(
    app: &App,
    first: &IdempotencyRecord,
    owner: &Owner,
    fingerprint: &str,
) -> Result<Job, ApiError> {
    let span = tracing::Span::current();
    span.record("job_id", tracing::field::display(first.job_id));
    if first.fingerprint != fingerprint || &first.owner != owner {
        return Err(ApiError::KeyReused { job_gone: false });
    }
    let job = app
        .store
        .get(first.job_id)
        .await?
        .filter(|job| &job.owner == owner);
    let job = job.ok_or(ApiError::KeyReused { job_gone: true })?;
    // Its log lines are the first request's job's: they carry that request's correlation id.
    if let Some(first) = &job.correlation_id {
        span.record("correlation_id", first.as_str());
    }
    // Nothing is sent: a job in the table had its message sent before it was written, and that
    // message (or a consumer's copy of its state) carries it to the end. Sending another would
    // skip a backoff it is waiting out, or run it twice at once.
    info!(status = %job.status, attempts = job.attempts, "replayed");
    Ok(job)
}

/// A callback is a `webhook` job, so its URL passes the same guard as a webhook's, with the
/// deployment's allowlist, whichever processor delivers the `webhook` kind.
fn check_callback_url(app: &App, url: &str) -> Result<(), ApiError> {
    if !app.processors.knows(webhook::KIND) {
        return Err(ApiError::Forbidden(
            "this deployment does not deliver callbacks".to_owned(),
        ));
    }
    app.settings
        .webhook
        .allow
        .check_url(url)
        .map(drop)
        .map_err(|rejection| refused("callback_url", rejection))
}

/// A refused part of the request, named by `what`: `400` when malformed, `422` when forbidden.
fn refused(what: &str, rejection: Rejection) -> ApiError {
    match rejection {
        Rejection::Invalid(reason) => ApiError::Invalid(format!("{what}: {reason}")),
        Rejection::Forbidden(reason) => ApiError::Forbidden(format!("{what}: {reason}")),
    }
}

/// The `202`, also for a replay (marked `Idempotent-Replayed: true`), as the draft standard wants
/// the first answer repeated.
fn accepted(job: &Job, replayed: bool, now: Timestamp) -> ApiResponse {
    let location = status_path(job);
    let mut response = json_response(StatusCode::ACCEPTED, &Accepted::of(job, now));
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(
        header::RETRY_AFTER,
        HeaderValue::from(super::poll_after(job, now)),
    );
    if let Some(id) = &job.correlation_id {
        set_correlation_id(headers, id);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Accepts `application/json`, with or without parameters such as `charset=utf-8`.
pub(super) fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let value = headers.get(header::CONTENT_TYPE);
    let essence = value
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim());
    match essence {
        Some(essence) if essence.eq_ignore_ascii_case(JSON.to_str().unwrap_or_default()) => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType(
            value
                .map(|v| format!("`{}`", String::from_utf8_lossy(v.as_bytes())))
                .unwrap_or_else(|| "missing".to_owned()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::api::problem::MAX_DETAIL_CHARS;
    use crate::domain::Priority;
    use crate::kinds::Echo;
    use crate::processor::Processors;
    use crate::testing::{MemoryPipeline, fast_settings, json_headers};

    async fn post(body: &str) -> (StatusCode, Value) {
        post_to(crate::kinds::builtin(), body).await
    }

    async fn post_to(processors: Processors, body: &str) -> (StatusCode, Value) {
        let pipeline = MemoryPipeline::new(fast_settings(), processors);
        let response = submit_job(
            &pipeline.app,
            Owner::anonymous(),
            &json_headers(),
            body.as_bytes(),
        )
        .await;
        let mut queued = 0;
        for (_, queue) in pipeline.app.queues.iter() {
            queued += queue.depth().await.unwrap().total();
        }
        assert_eq!(
            queued,
            u64::from(response.status() == StatusCode::ACCEPTED),
            "a refused request enqueued something"
        );
        (
            response.status(),
            serde_json::from_str(response.body()).unwrap(),
        )
    }

    #[tokio::test]
    async fn a_callback_url_is_guarded_whichever_processor_delivers_webhooks() {
        let to = |url: &str| json!({"kind": "echo", "payload": 1, "callback_url": url}).to_string();
        let replaced = || crate::kinds::builtin().with(webhook::KIND, Echo);
        let (status, problem) = post_to(replaced(), &to("http://10.0.0.7/hook")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
        assert_eq!(
            post_to(replaced(), &to("https://hooks.example.com/x"))
                .await
                .0,
            StatusCode::ACCEPTED
        );
        let without = Processors::new().with("echo", Echo);
        let (status, problem) = post_to(without, &to("https://hooks.example.com/x")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("does not deliver callbacks"),
            "{problem}"
        );
    }

    #[tokio::test]
    async fn a_body_nested_deeper_than_the_limit_is_refused_before_it_is_parsed() {
        let nested = |depth: usize| {
            format!(
                r#"{{"kind":"echo","payload":{}1{}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
        };
        // The body's own object is one level.
        assert_eq!(post(&nested(MAX_NESTING - 1)).await.0, StatusCode::ACCEPTED);
        let (status, problem) = post(&nested(MAX_NESTING)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            problem["detail"].as_str().unwrap().contains("64 levels"),
            "{problem}"
        );
        // Brackets inside strings are text, and an escaped quote does not end a string.
        let quoted = format!(r#"{{"kind":"echo","payload":"\"{}"}}"#, "[".repeat(500));
        assert_eq!(post(&quoted).await.0, StatusCode::ACCEPTED);
        // Far deeper than serde's own limit: refused by the count, not by a stack overflow.
        assert_eq!(post(&nested(100_000)).await.0, StatusCode::BAD_REQUEST);
    }

    /// An `echo` request body of exactly `bytes` bytes.
    fn body_of(bytes: usize) -> String {
        let empty = r#"{"kind":"echo","payload":""}"#;
        format!(
            r#"{{"kind":"echo","payload":"{}"}}"#,
            "x".repeat(bytes - empty.len())
        )
    }

    #[tokio::test]
    async fn a_body_at_the_limit_is_accepted_and_one_byte_over_is_413() {
        let limit = fast_settings().max_payload_bytes;
        assert_eq!(limit, crate::config::MAX_PAYLOAD_LIMIT, "the default");
        let (status, accepted) = post(&body_of(limit)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let (status, problem) = post(&body_of(limit + 1)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(problem["type"], "urn:spillway:problem:payload-too-large");
        assert_eq!(
            problem["detail"],
            "the body is over the limit of 1040384 bytes"
        );
    }

    /// Submits `body` as `owner` with the `extra` headers (and JSON's content type); returns the
    /// status, the answer, and the message queued if any.
    async fn post_as(
        owner: Owner,
        extra: &[(&'static str, String)],
        body: &str,
    ) -> (StatusCode, Value, Option<String>) {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let mut headers = json_headers();
        for (name, value) in extra {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        let response = submit_job(&pipeline.app, owner, &headers, body.as_bytes()).await;
        let queued = pipeline
            .app
            .queues
            .normal
            .receive(1, Duration::ZERO)
            .await
            .unwrap();
        (
            response.status(),
            serde_json::from_str(response.body()).unwrap(),
            queued.into_iter().next().map(|m| m.body),
        )
    }

    #[tokio::test]
    async fn a_body_at_the_limit_fits_in_its_message_with_the_longest_headers_and_owner() {
        // The longest IAM ARN, 2,048 characters, its path all characters JSON escapes.
        let prefix = "arn:aws:iam::123456789012:user/";
        let arn = format!("{prefix}{}/ci", "\"".repeat(2_048 - prefix.len() - 3));
        assert_eq!(arn.len(), 2_048);
        let headers = [
            ("idempotency-key", "\"".repeat(IdempotencyKey::MAX_LEN)),
            ("x-correlation-id", "\\".repeat(CorrelationId::MAX_LEN)),
        ];
        let limit = fast_settings().max_payload_bytes;
        let (status, answer, message) = post_as(Owner::iam(&arn), &headers, &body_of(limit)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
        let message = message.expect("the job's message was queued");
        assert!(
            message.len() <= MAX_MESSAGE_BYTES,
            "{} bytes, over SQS's limit",
            message.len()
        );
    }

    #[tokio::test]
    async fn a_message_over_sqs_limit_is_refused_before_anything_is_sent() {
        // An identity far beyond the owner's budget: a JWT issuer of 10,000 characters.
        let owner = Owner::jwt(&format!("https://{}", "i".repeat(10_000)), "user-1");
        let limit = fast_settings().max_payload_bytes;
        let (status, problem, message) = post_as(owner.clone(), &[], &body_of(limit)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
        assert_eq!(problem["type"], "urn:spillway:problem:payload-too-large");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("over the 1048576 an SQS message holds"),
            "{problem}"
        );
        assert_eq!(message, None, "nothing was sent");
        // The same caller with a body that leaves its identity the room.
        let (status, answer, _) = post_as(owner, &[], &body_of(limit - 10_000)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    }

    #[tokio::test]
    async fn a_ttl_is_a_whole_number_however_it_is_written() {
        let with_ttl = |ttl: &str| format!(r#"{{"kind":"echo","payload":1,"ttl_seconds":{ttl}}}"#);
        // JSON, and the OpenAPI document's `type: integer`, do not tell 300 from 300.0.
        for ttl in ["300", "300.0", "3e2", "null"] {
            let (status, problem) = post(&with_ttl(ttl)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{ttl}: {problem}");
        }
        for ttl in ["1.5", "-1", "0.0", "86401.0", "1e30", r#""300""#] {
            let (status, problem) = post(&with_ttl(ttl)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{ttl}: {problem}");
        }
    }

    #[tokio::test]
    async fn characters_sqs_refuses_are_refused_before_anything_is_written() {
        for raw in ["\u{FFFE}", "\u{FFFF}"] {
            let body = format!(r#"{{"kind":"echo","payload":"a{raw}b"}}"#);
            let (status, problem) = post(&body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
            assert!(
                problem["detail"].as_str().unwrap().contains("SQS"),
                "{problem}"
            );
        }
        // Escaped, the same characters travel as ASCII.
        assert_eq!(
            post(r#"{"kind":"echo","payload":"a\uffffb"}"#).await.0,
            StatusCode::ACCEPTED
        );
    }

    #[tokio::test]
    async fn what_a_client_sent_is_never_echoed_whole() {
        let field = "x".repeat(10_000);
        let (status, problem) =
            post(&format!(r#"{{"kind":"echo","payload":1,"{field}":1}}"#)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.chars().count() <= MAX_DETAIL_CHARS + 1,
            "{} chars",
            detail.len()
        );
        assert!(detail.ends_with('…'), "{detail}");
    }

    #[tokio::test]
    async fn a_job_goes_to_its_lanes_queue_with_its_lanes_default_ttl() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let submit = |body: Value| {
            let app = pipeline.app.clone();
            async move {
                let body = body.to_string();
                submit_job(&app, Owner::anonymous(), &json_headers(), body.as_bytes()).await
            }
        };
        let high = submit(json!({"kind": "echo", "payload": 1, "priority": "high"})).await;
        assert_eq!(high.status(), StatusCode::ACCEPTED, "{}", high.body());
        let accepted: Value = serde_json::from_str(high.body()).unwrap();
        assert_eq!(accepted["priority"], "high");
        let normal = submit(json!({"kind": "echo", "payload": 1})).await;
        assert_eq!(
            serde_json::from_str::<Value>(normal.body()).unwrap()["priority"],
            "normal"
        );
        let depth = |lane: Priority| {
            let queue = pipeline.app.queues.get(lane).clone();
            async move { queue.depth().await.unwrap().visible }
        };
        assert_eq!(depth(Priority::High).await, 1);
        assert_eq!(depth(Priority::Normal).await, 1);

        let messages = pipeline
            .app
            .queues
            .high
            .receive(10, Duration::ZERO)
            .await
            .unwrap();
        let message = JobMessage::decode(&messages[0].body).unwrap();
        assert_eq!(message.priority(), Priority::High);
        let job = pipeline
            .app
            .store
            .get(message.job_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(job.priority, Priority::High);
        let settings = &pipeline.app.settings;
        assert_eq!(
            job.deadline.saturating_since(job.created_at),
            settings.default_ttl.high
        );
        assert_ne!(settings.default_ttl.high, settings.default_ttl.normal);

        for bad in [json!("urgent"), json!("HIGH"), json!(1), json!(null)] {
            let refused = submit(json!({"kind": "echo", "payload": 1, "priority": bad})).await;
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_lane_refuses_only_its_own_jobs_and_says_when_to_come_back() {
        let settings = crate::config::Settings {
            backlog_limit: crate::domain::Lanes {
                high: 0,
                normal: 10,
            },
            ..crate::testing::fast_settings()
        };
        let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
        let normal = pipeline.app.queues.normal.clone();
        for n in 0..50 {
            normal.send(&n.to_string()).await.unwrap();
        }
        let post = |priority: &str| {
            let app = pipeline.app.clone();
            let body = json!({"kind": "echo", "payload": 1, "priority": priority}).to_string();
            async move { submit_job(&app, Owner::anonymous(), &json_headers(), body.as_bytes()).await }
        };
        let refused = post("normal").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Nothing measured yet: come back when the depth is next read.
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        assert!(refused.body().contains("normal lane"), "{}", refused.body());
        assert_eq!(post("high").await.status(), StatusCode::ACCEPTED);

        // The consumers take 10 messages in 5 s (2/s): 40 waiting, 30 over the limit, 15 s.
        for message in normal.receive(10, Duration::ZERO).await.unwrap() {
            normal.delete(&message.receipt_handle).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let refused = post("normal").await;
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "15");
    }

    #[tokio::test]
    async fn an_owner_at_its_limit_is_refused_429_alone_until_a_job_ends() {
        let settings = crate::config::Settings {
            max_active_jobs_per_owner: 2,
            ..fast_settings()
        };
        let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
        let app = &pipeline.app;
        let submit = |owner: Owner, key: Option<&'static str>| async move {
            let mut headers = json_headers();
            if let Some(key) = key {
                headers.insert("idempotency-key", HeaderValue::from_static(key));
            }
            submit_job(app, owner, &headers, br#"{"kind":"echo","payload":1}"#).await
        };
        let queued = || async {
            let mut queued = 0;
            for (_, queue) in app.queues.iter() {
                queued += queue.depth().await.unwrap().total();
            }
            queued
        };
        let (a, b) = (
            Owner::authenticated("tenant-a"),
            Owner::authenticated("tenant-b"),
        );
        let first = submit(a.clone(), Some("first")).await;
        assert_eq!(first.status(), StatusCode::ACCEPTED);
        // A scheduled job is active too.
        let scheduled = submit_job(
            app,
            a.clone(),
            &json_headers(),
            br#"{"kind":"echo","payload":1,"delay_seconds":600}"#,
        )
        .await;
        assert_eq!(scheduled.status(), StatusCode::ACCEPTED);
        let refused = submit(a.clone(), None).await;
        assert_eq!(
            refused.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            refused.body()
        );
        assert_eq!(refused.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            refused.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let problem: Value = serde_json::from_str(refused.body()).unwrap();
        assert_eq!(problem["type"], "urn:spillway:problem:too-many-active-jobs");
        assert_eq!(problem["status"], 429);
        assert!(
            !problem["detail"].as_str().unwrap().contains("tenant-a"),
            "{problem}"
        );
        assert_eq!(queued().await, 2, "the refused job sent no message");
        assert_eq!(app.store.active_jobs(&a, 10).await.unwrap(), 2);
        // A new key is refused too, and is not taken: it is free once the owner has room.
        let keyed = submit(a.clone(), Some("later")).await;
        assert_eq!(keyed.status(), StatusCode::TOO_MANY_REQUESTS);
        // A repeat of a key's request is its first answer, not a 429.
        let replayed = submit(a.clone(), Some("first")).await;
        assert_eq!(
            replayed.status(),
            StatusCode::ACCEPTED,
            "{}",
            replayed.body()
        );
        assert_eq!(replayed.headers()["idempotent-replayed"], "true");
        assert_eq!(
            serde_json::from_str::<Value>(replayed.body()).unwrap()["id"],
            serde_json::from_str::<Value>(first.body()).unwrap()["id"]
        );
        // Another owner is not held to a's count.
        assert_eq!(submit(b.clone(), None).await.status(), StatusCode::ACCEPTED);
        assert_eq!(queued().await, 3);

        // One of a's jobs ends: a may submit one more.
        let id: JobId = serde_json::from_str::<Value>(first.body()).unwrap()["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let cancelled = crate::api::cancel_job(app, &a, &id.to_string()).await;
        assert_eq!(cancelled.status(), StatusCode::OK, "{}", cancelled.body());
        assert_eq!(
            submit(a.clone(), Some("later")).await.status(),
            StatusCode::ACCEPTED
        );
        assert_eq!(
            submit(a.clone(), None).await.status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[tokio::test]
    async fn a_schedule_is_one_of_run_at_or_delay_seconds_within_a_day() {
        let at = |offset: i64| {
            let now = std::time::SystemTime::now();
            let shift = Duration::from_secs(offset.unsigned_abs());
            let then = if offset >= 0 {
                now + shift
            } else {
                now - shift
            };
            humantime::format_rfc3339_seconds(then).to_string()
        };
        let with = |extra: Value| {
            let mut body = json!({"kind": "echo", "payload": 1});
            body.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            body.to_string()
        };
        let (status, accepted) = post(&with(json!({"delay_seconds": 600}))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        assert_eq!(accepted["status"], "scheduled");
        assert!(accepted["run_at"].is_string(), "{accepted}");
        let (status, accepted) = post(&with(json!({"run_at": at(3600)}))).await;
        assert_eq!(
            (status, &accepted["status"]),
            (StatusCode::ACCEPTED, &json!("scheduled"))
        );
        // A time already past is now.
        let (status, accepted) = post(&with(json!({"run_at": at(-60)}))).await;
        assert_eq!(
            (status, &accepted["status"]),
            (StatusCode::ACCEPTED, &json!("pending"))
        );
        assert!(accepted.get("run_at").is_none(), "{accepted}");
        for refused in [
            json!({"delay_seconds": 60, "run_at": at(60)}),
            json!({"delay_seconds": 86_401}),
            json!({"run_at": at(86_500)}),
            json!({"run_at": "tomorrow"}),
            json!({"delay_seconds": -1}),
            json!({"delay_seconds": 1.5}),
        ] {
            let (status, problem) = post(&with(refused.clone())).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {problem}");
        }
    }

    #[test]
    fn prefer_wait_is_read_as_rfc_7240_writes_it() {
        let wait = |values: &[&str]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("prefer", HeaderValue::from_str(value).unwrap());
            }
            preferred_wait(&headers).map(|wait| wait.as_secs())
        };
        assert_eq!(wait(&["wait=3"]), Some(3));
        assert_eq!(wait(&["respond-async, Wait = 4; foo=bar"]), Some(4));
        assert_eq!(wait(&["handling=lenient", "wait=\"5\""]), Some(5));
        // More than the long-poll limit waits that long; nothing to honour is ignored.
        assert_eq!(wait(&["wait=100"]), Some(super::super::MAX_WAIT_SECONDS));
        for ignored in [
            "wait=0",
            "wait=soon",
            "wait=-1",
            "wait",
            "return=minimal",
            "",
        ] {
            assert_eq!(wait(&[ignored]), None, "{ignored}");
        }
        assert_eq!(wait(&[]), None);
    }

    #[tokio::test]
    async fn prefer_wait_answers_a_finished_job_at_once_and_a_slow_one_with_202() {
        let pipeline = MemoryPipeline::new(fast_settings(), crate::kinds::builtin());
        let consumer = pipeline.run_consumer(Duration::from_millis(50));
        let submit = |body: Value, prefer: &'static str| {
            let app = pipeline.app.clone();
            async move {
                let mut headers = json_headers();
                headers.insert("prefer", HeaderValue::from_static(prefer));
                let body = body.to_string();
                submit_job(&app, Owner::anonymous(), &headers, body.as_bytes()).await
            }
        };
        let fast = submit(json!({"kind": "echo", "payload": {"n": 1}}), "wait=5").await;
        assert_eq!(fast.status(), StatusCode::OK, "{}", fast.body());
        let document: Value = serde_json::from_str(fast.body()).unwrap();
        assert_eq!(document["status"], "succeeded");
        assert_eq!(document["result"], json!({"n": 1}));
        assert_eq!(fast.headers()["preference-applied"], "wait=5");
        assert_eq!(
            fast.headers()[header::CONTENT_LOCATION],
            format!("/jobs/{}", document["id"].as_str().unwrap()).as_str()
        );

        let slow = submit(json!({"kind": "sleep", "payload": {"ms": 3000}}), "wait=1").await;
        assert_eq!(slow.status(), StatusCode::ACCEPTED, "{}", slow.body());
        assert_eq!(slow.headers()["preference-applied"], "wait=1");
        assert!(slow.headers().contains_key(header::LOCATION));

        // Without the preference, the answer is the 202 at once.
        let plain = submit(json!({"kind": "echo", "payload": 2}), "respond-async").await;
        assert_eq!(plain.status(), StatusCode::ACCEPTED);
        assert!(!plain.headers().contains_key("preference-applied"));
        consumer.abort();
    }

    #[tokio::test]
    async fn intake_refuses_new_jobs_with_503_while_the_backlog_is_over_the_limit() {
        let settings = crate::config::Settings {
            backlog_limit: crate::domain::Lanes::both(1),
            ..crate::testing::fast_settings()
        };
        let pipeline = MemoryPipeline::new(settings, crate::kinds::builtin());
        for n in 0..2 {
            pipeline
                .app
                .queues
                .normal
                .send(&n.to_string())
                .await
                .unwrap();
        }
        assert_eq!(pipeline.app.queues.normal.depth().await.unwrap().visible, 2);
        let body = json!({"kind": "echo", "payload": 1}).to_string();
        let response = submit_job(
            &pipeline.app,
            crate::domain::Owner::anonymous(),
            &json_headers(),
            body.as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(http::header::RETRY_AFTER));
        assert!(
            response
                .body()
                .contains("urn:spillway:problem:backlog-full"),
            "{}",
            response.body()
        );
    }

    #[tokio::test]
    async fn a_declared_kind_is_known_to_intake_and_its_jobs_get_its_own_ttl() {
        let declared = crate::targets::Declarations::parse(
            r#"{"ledger": {"target": {"http": "https://ledger.example/jobs"}, "ttl_seconds": 120}}"#,
        )
        .unwrap();
        let webhook = crate::webhook::Webhook::new(Default::default(), None);
        let shipped = crate::kinds::builtin_with(webhook.clone());
        let processors =
            crate::kinds::builtin()
                .and(declared.processors(&shipped, &webhook, || unreachable!("no lambda kind")));
        let (status, problem) =
            post_to(processors.clone(), r#"{"kind":"ledgr","payload":{}}"#).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("echo, ledger, sleep, webhook"),
            "{problem}"
        );

        let pipeline = MemoryPipeline::new(fast_settings(), processors);
        let body = r#"{"kind":"ledger","payload":{"entry":1}}"#;
        let response = submit_job(
            &pipeline.app,
            Owner::anonymous(),
            &json_headers(),
            body.as_bytes(),
        )
        .await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{}",
            response.body()
        );
        let accepted: Value = serde_json::from_str(response.body()).unwrap();
        let id = crate::domain::JobId::parse(accepted["id"].as_str().unwrap()).unwrap();
        let job = pipeline.app.store.get(id).await.unwrap().unwrap();
        assert_eq!(
            job.deadline.saturating_since(job.created_at),
            Duration::from_secs(120)
        );
    }
}
