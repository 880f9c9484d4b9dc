//! Fan-in: a fan-out child that ended is counted on its parent, and the child whose end leaves
//! none running ends the parent (docs/architecture.md, "Fan-out").
//!
//! Each child's end is written before its consumer reads its siblings, and reads are strongly
//! consistent: of two children ending at once, at least the later to read sees both ended, so
//! the last child's consumer always settles the parent. Settling is a conditional write (the
//! parent must still be `running`), so it happens once however many consumers try; whoever
//! finds the parent ended makes sure of its callback, which [`callback::ensure`] creates once.
//! A consumer that stops between its child's end and the parent's is finished by the child's
//! message's next delivery, which finds the child ended and comes here again.

use tracing::{info, warn};

use super::callback::{self, CallbackError};
use crate::app::App;
use crate::domain::{Failure, Fanout, Job, JobStatus, Transition, failure_summary};
use crate::store::ApplyError;

/// Makes sure a terminal child `job` is counted on its parent: the parent ended, with its
/// callback, once its last child has. Does nothing for a job that is no child or not terminal.
pub(crate) async fn ensure(app: &App, job: &Job) -> Result<(), CallbackError> {
    let Some(link) = job.fanout.as_ref().and_then(Fanout::parent) else {
        return Ok(());
    };
    if !job.status.is_terminal() {
        return Ok(());
    }
    let Some(parent) = app.store.get(link.parent).await? else {
        warn!(parent_id = %link.parent, "the parent of an ended child is gone; nothing to settle");
        return Ok(());
    };
    settle(app, &parent, Some(job)).await
}

/// Settles the fan-out `parent` if every child has ended (`ended`, one of them as the caller
/// just wrote it, saves its read), and makes sure of the callback of a parent that ended.
pub(crate) async fn settle(
    app: &App,
    parent: &Job,
    ended: Option<&Job>,
) -> Result<(), CallbackError> {
    if parent.status.is_terminal() {
        return callback::ensure(app, parent).await;
    }
    let children = parent.fanout.as_ref().map_or(&[][..], Fanout::children);
    if children.is_empty() {
        return Ok(());
    }
    let mut failures = Vec::new();
    for child in children {
        let ended = match ended.filter(|job| job.id == child.id) {
            Some(job) => job.clone(),
            None => match app.store.get(child.id).await? {
                Some(sibling) if sibling.status.is_terminal() => sibling,
                // Still running, or not written yet: its own end settles the parent.
                _ => return Ok(()),
            },
        };
        if ended.status != JobStatus::Succeeded {
            failures.push(Failure {
                id: child.id,
                target: child.target.clone(),
                status: ended.status,
                error: ended.error,
            });
        }
    }
    let error = (!failures.is_empty()).then(|| failure_summary(&failures, children.len()));
    let settle = app.change(Transition::Settle { failures, error });
    let settled = match app.store.apply(parent.id, &settle).await {
        Ok(settled) => {
            info!(parent_id = %settled.id, status = %settled.status, "last child ended; parent settled");
            app.metrics.reached(settled.updated_at, &settled, &[]);
            settled
        }
        // Another child's consumer settled it first.
        Err(ApplyError::Rejected(settled)) if settled.status.is_terminal() => *settled,
        Err(ApplyError::Rejected(_)) | Err(ApplyError::NotFound) => return Ok(()),
        Err(ApplyError::Store(error)) => return Err(error.into()),
    };
    callback::ensure(app, &settled).await
}
