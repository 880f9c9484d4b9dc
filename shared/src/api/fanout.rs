//! Intake of a fan-out kind: the parent job, written first, and one child job per target, each
//! with its own message (docs/architecture.md, "Fan-out").

use serde_json::value::RawValue;
use tracing::{info, warn};

use super::ApiError;
use super::submit::{Written, send_delay};
use crate::app::App;
use crate::domain::{
    Child, Failure, Fanout, IdempotencyRecord, Job, JobId, JobMessage, JobStatus, Kind, NewJob,
    ParentLink, Transition, failure_summary,
};
use crate::queue::{MAX_MESSAGE_BYTES, SendOptions};
use crate::store::StoreError;

/// The error a child records when intake could not send its message: it never runs.
pub const UNSENT_ERROR: &str = "intake could not send its message; it never ran";

/// Writes `parent` (a fan-out kind's job, as prepared) as `running` with its key, then sends one
/// message per target (each child carrying `payload`), then writes the children.
///
/// The parent goes first, with the children's ids, so that whichever child ends last finds it.
/// A child's message carries its parent's id and its target, so a consumer writes the child
/// when intake's write did not land, as for any job. Should a send fail, the children not sent
/// are written `failed` at once, and the parent ends when the sent ones do (or now, when none
/// was sent): a parent never waits on a child that cannot run.
pub(super) async fn fan_out(
    app: &App,
    parent: &mut Job,
    targets: &[(String, Kind)],
    payload: &RawValue,
    idempotency: Option<&IdempotencyRecord>,
) -> Result<Written, ApiError> {
    let children: Vec<Job> = targets
        .iter()
        .map(|(target, kind)| child(parent, target, kind))
        .collect();
    let messages = children
        .iter()
        .map(|child| JobMessage::of(child, payload.to_owned(), None).encode())
        .collect::<Vec<_>>();
    if let Some(message) = messages.iter().find(|m| m.len() > MAX_MESSAGE_BYTES) {
        return Err(ApiError::MessageTooLarge {
            size: message.len(),
        });
    }
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
    match app.store.create(parent, idempotency).await {
        Ok(()) => {}
        Err(StoreError::KeyTaken(first)) => return Ok(Written::KeyTaken(first)),
        Err(error) => return Err(error.into()),
    }
    let mut sent = 0;
    let mut first_id = None;
    let mut send_error = None;
    for (child, message) in children.iter().zip(&messages) {
        let options = SendOptions {
            group: Some(&child.owner.fairness_key()),
            delay: send_delay(child, app.clock.now()),
        };
        match app
            .queues
            .get(child.priority)
            .send_with(message, options)
            .await
        {
            Ok(message_id) => {
                first_id.get_or_insert(message_id);
                sent += 1;
            }
            Err(error) => {
                warn!(error = %crate::error::Chain(&error), sent, "a fan-out child's message could not be sent");
                send_error = Some(error);
                break;
            }
        }
    }
    let (runnable, unsent) = children.split_at(sent);
    for result in app.store.create_batch(runnable).await {
        match result {
            // A consumer wrote it from its message first.
            Ok(()) | Err(StoreError::AlreadyExists) => {}
            // Its message writes it: the child runs whatever this answer says.
            Err(error) => return Err(error.into()),
        }
    }
    if !unsent.is_empty() {
        give_up(app, parent, unsent).await?;
    }
    match (first_id, send_error) {
        (Some(message_id), _) => {
            info!(children = children.len(), sent, "fanned out");
            Ok(Written::New { message_id })
        }
        // Nothing runs: 503, and the parent says so (`failed`, every child unsent).
        (None, Some(error)) => Err(error.into()),
        (None, None) => Err(ApiError::Invalid(
            "a fan-out kind without targets".to_owned(),
        )),
    }
}

/// The child of `parent` that runs `target`, as `kind`: the parent's payload, owner, lane,
/// deadline and correlation id, and no callback (the parent has it).
fn child(parent: &Job, target: &str, kind: &Kind) -> Job {
    let mut child = Job::pending(NewJob {
        id: JobId::generate(),
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

/// Writes the `unsent` children `failed`; when no child was sent at all, no consumer will ever
/// settle `parent`, so it is settled here, `failed` with all of them, and the client gets `503`.
async fn give_up(app: &App, parent: &mut Job, unsent: &[Job]) -> Result<(), ApiError> {
    let now = app.clock.now();
    let mut failed = unsent.to_vec();
    for child in &mut failed {
        child.status = JobStatus::Failed;
        child.error = Some(UNSENT_ERROR.to_owned());
        child.updated_at = now;
    }
    for result in app.store.create_batch(&failed).await {
        result.or_else(|e| match e {
            StoreError::AlreadyExists => Ok(()),
            other => Err(other),
        })?;
    }
    let children = parent.fanout.as_ref().map_or(0, |f| f.children().len());
    if unsent.len() < children {
        return Ok(());
    }
    let failures: Vec<Failure> = failed
        .iter()
        .filter_map(|child| {
            let link = child.fanout.as_ref()?.parent()?;
            Some(Failure {
                id: child.id,
                target: link.target.clone(),
                status: child.status,
                error: child.error.clone(),
            })
        })
        .collect();
    let error = Some(failure_summary(&failures, children));
    let settled = app
        .store
        .apply(
            parent.id,
            &app.change(Transition::Settle { failures, error }),
        )
        .await
        .map_err(|e| match e {
            crate::store::ApplyError::Store(error) => ApiError::Store(error),
            other => ApiError::Store(StoreError::Unavailable(Box::new(other))),
        })?;
    *parent = settled;
    Ok(())
}
