//! Intake of a fan-out kind: one child job per target, each with its own message sent first,
//! and the parent job that ends when they all have (docs/architecture.md, "Fan-out").

use serde_json::value::RawValue;
use tracing::{info, warn};

use super::ApiError;
use super::submit::{Written, send_delay};
use crate::app::App;
use crate::consumer::callback::CallbackError;
use crate::consumer::fanin;
use crate::domain::{
    Child, Fanout, IdempotencyRecord, Job, JobId, JobMessage, JobStatus, Kind, NewJob, ParentLink,
};
use crate::queue::{MAX_MESSAGE_BYTES, Outgoing, SendOptions};
use crate::store::{Created, StoreError};

/// The error a child records when intake could not send its message: it never runs.
pub const UNSENT_ERROR: &str = "intake could not send its message; it never ran";

/// Accepts `parent` (a fan-out kind's job, as prepared): sends one message per target (each
/// child carrying `payload` and a description of the parent), then writes the parent as
/// `running` with its key, then the children.
///
/// The messages go first, as a job's does: each carries enough to write its child and the
/// parent, so a consumer writes whichever of them intake's writes did not land, and a failure
/// here leaves either nothing sent (`503`, nothing promised) or messages that finish the job.
/// Children whose message could not be sent are written `failed` and counted on the parent at
/// once: a parent never waits on a child that cannot run.
pub(super) async fn fan_out(
    app: &App,
    parent: &mut Job,
    targets: &[(String, Kind)],
    payload: &RawValue,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Written, ApiError> {
    let children: Vec<Job> = targets
        .iter()
        .map(|(target, kind)| child(parent, JobId::generate(), target, kind))
        .collect();
    parent.status = JobStatus::Running;
    parent.started_at = Some(parent.created_at);
    parent.fanout = Some(Fanout::Parent {
        children: children
            .iter()
            .zip(targets)
            .map(|(child, (target, _))| Child {
                id: child.id,
                target: target.clone(),
            })
            .collect(),
        failures: vec![],
    });
    let messages = messages(parent, &children, payload, idempotency)?;
    let sent = send(app, parent, &children, &messages).await;
    let Some(message_id) = sent.iter().find_map(|s| s.as_ref().ok()).cloned() else {
        // Nothing runs and nothing was written: the client may retry as if it never asked.
        return Err(sent.into_iter().find_map(Result::err).map_or_else(
            || ApiError::Invalid("a fan-out kind without targets".to_owned()),
            Into::into,
        ));
    };
    match Created::of(app.store.create(parent, idempotency).await, parent.id) {
        Ok(Created::Written | Created::AlreadyThere) => {}
        // The children sent find the key taken and run nothing.
        Ok(Created::KeyTaken(first)) => return Ok(Written::KeyTaken(first)),
        // The children sent write the parent; a same-key retry finishes the rest.
        Err(error) => return Err(error.into()),
    }
    let (runnable, unsent): (Vec<_>, Vec<_>) = children
        .into_iter()
        .zip(&sent)
        .partition(|(_, sent)| sent.is_ok());
    let runnable: Vec<Job> = runnable.into_iter().map(|(child, _)| child).collect();
    for result in app.store.create_batch(&runnable).await {
        if let Err(error) = result.or_else(already_written) {
            // Its message writes it as it runs; the parent, with the key, is written.
            warn!(error = %crate::error::Chain(&error), "a fan-out child was not written; its message writes it");
        }
    }
    let unsent: Vec<Job> = unsent.into_iter().map(|(child, _)| child).collect();
    if !unsent.is_empty() {
        give_up(app, parent, unsent).await?;
    }
    info!(children = sent.len(), sent = runnable.len(), "fanned out");
    Ok(Written::New { message_id })
}

/// Finishes what an earlier request with the same key left of the fan-out `parent`, which a
/// retry replays: the messages of children the table does not hold are sent again (a request
/// that stopped mid-way sent them, or not), and a parent whose children all ended is settled.
/// Does nothing for a parent that ended, or a job that is no fan-out parent.
pub(super) async fn finish(
    app: &App,
    parent: &Job,
    targets: &[(String, Kind)],
    payload: &RawValue,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<(), ApiError> {
    let listed = parent.fanout.as_ref().map_or(&[][..], Fanout::children);
    if parent.status.is_terminal() || listed.is_empty() {
        return Ok(());
    }
    let mut missing = Vec::new();
    for listed in listed {
        if app.store.get(listed.id).await?.is_none() {
            let Some((_, kind)) = targets.iter().find(|(name, _)| *name == listed.target) else {
                // The kind's declaration changed since: the target is gone, so it cannot run.
                continue;
            };
            missing.push(child(parent, listed.id, &listed.target, kind));
        }
    }
    if missing.is_empty() {
        return fanin::settle(app, parent, None).await.map_err(unavailable);
    }
    let messages = messages(parent, &missing, payload, idempotency)?;
    for sent in send(app, parent, &missing, &messages).await {
        sent?;
    }
    info!(parent_id = %parent.id, resent = missing.len(), "a replayed fan-out's missing children sent again");
    Ok(())
}

/// Each of `children`'s messages, refused with `413` when SQS would not take one.
fn messages(
    parent: &Job,
    children: &[Job],
    payload: &RawValue,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Vec<String>, ApiError> {
    let messages: Vec<String> = children
        .iter()
        .map(|child| JobMessage::of_child(child, parent, payload.to_owned(), idempotency).encode())
        .collect();
    match messages.iter().find(|m| m.len() > MAX_MESSAGE_BYTES) {
        Some(message) => Err(ApiError::MessageTooLarge {
            size: message.len(),
        }),
        None => Ok(messages),
    }
}

/// Sends `parent`'s `children`'s `messages` (in as few `SendMessageBatch` calls as SQS allows), in
/// the parent's lane and its owner's fairness group; each child's message id, or why it was not
/// sent.
async fn send(
    app: &App,
    parent: &Job,
    children: &[Job],
    messages: &[String],
) -> Vec<Result<String, crate::queue::QueueError>> {
    let now = app.clock.now();
    let group = parent.owner.fairness_key();
    let outgoing: Vec<Outgoing<'_>> = children
        .iter()
        .zip(messages)
        .map(|(child, body)| Outgoing {
            body,
            options: SendOptions {
                group: Some(&group),
                delay: send_delay(child, now),
            },
        })
        .collect();
    let sent = app.queues.get(parent.priority).send_batch(&outgoing).await;
    for error in sent.iter().filter_map(|s| s.as_ref().err()) {
        warn!(error = %crate::error::Chain(error), "a fan-out child's message could not be sent");
    }
    sent
}

/// A child another writer wrote first counts as written.
fn already_written(error: StoreError) -> Result<(), StoreError> {
    match error {
        StoreError::AlreadyExists => Ok(()),
        other => Err(other),
    }
}

/// A fan-in that could not be made sure of: `503`, and a same-key retry tries again.
fn unavailable(error: CallbackError) -> ApiError {
    match error {
        CallbackError::Store(error) => ApiError::Store(error),
        CallbackError::Queue(error) => ApiError::Queue(error),
        other => ApiError::Store(StoreError::Unavailable(Box::new(other))),
    }
}

/// The child of `parent` that runs `target`, as `kind`: the parent's payload, owner, lane,
/// deadline and correlation id, and no callback (the parent has it).
fn child(parent: &Job, id: JobId, target: &str, kind: &Kind) -> Job {
    let mut child = Job::pending(NewJob {
        id,
        kind: kind.clone(),
        owner: parent.owner.clone(),
        priority: parent.priority,
        created_at: parent.created_at,
        deadline: parent.deadline,
        run_at: parent.run_at,
        payload: parent.payload.clone(),
        expires_at: parent.expires_at,
        callback_url: None,
        correlation_id: parent.correlation_id.clone(),
    });
    child.fanout = Some(Fanout::Child(ParentLink {
        parent: parent.id,
        target: target.to_owned(),
    }));
    child
}

/// Writes the `unsent` children `failed`, then counts them on `parent`: when every child sent
/// has ended already (or none was sent), no consumer would settle the parent after this.
async fn give_up(app: &App, parent: &Job, unsent: Vec<Job>) -> Result<(), ApiError> {
    let now = app.clock.now();
    let mut failed = unsent;
    for child in &mut failed {
        child.status = JobStatus::Failed;
        child.error = Some(UNSENT_ERROR.to_owned());
        child.updated_at = now;
    }
    for result in app.store.create_batch(&failed).await {
        // `503`: a same-key retry sends them again instead.
        result.or_else(already_written)?;
    }
    fanin::settle(app, parent, failed.first())
        .await
        .map_err(unavailable)
}
