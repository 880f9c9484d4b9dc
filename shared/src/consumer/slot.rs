//! Concurrency per kind: a job of a kind declared with `max_concurrency` runs only while it holds
//! one of the kind's slots, which the table keeps for every consumer at once. A record that finds
//! them all held sends its message on to wait, as a scheduled job's early message is, and runs
//! nothing. See docs/architecture.md, "Concurrency per kind".

use std::time::Duration;

use tracing::{info, warn};

use super::{Outcome, Record};
use crate::domain::{JobMessage, Timestamp};
use crate::metrics::Metric;
use crate::store::Slot;

/// The shortest and longest wait of a message whose kind's slots are all held, drawn at random
/// between them so that waiting messages come back spread out, not together.
pub const SLOT_WAIT: std::ops::RangeInclusive<u64> = 1..=10;

impl Record<'_> {
    /// A slot of the message's kind, held until `until`, when the kind has a `max_concurrency`:
    /// `Ok(None)` when it has none. `Err` holds what to do with a message that runs nothing now:
    /// sent on to wait when every slot is held, or back after a backoff when the table failed.
    pub(super) async fn take_slot(
        &self,
        message: &JobMessage,
        until: Timestamp,
    ) -> Result<Option<Slot>, Outcome> {
        let Some(limit) = self.app.processors.limits(&message.kind).max_concurrency else {
            return Ok(None);
        };
        // The record holds it alone: a second delivery of the same message never shares (or gives
        // back) the first's slot.
        let slot = Slot {
            kind: message.kind.clone(),
            limit,
            holder: uuid::Uuid::now_v7().to_string(),
        };
        let now = self.app.clock.now();
        match self.app.store.hold_slot(&slot, until, now).await {
            Ok(true) => Ok(Some(slot)),
            Ok(false) => Err(self.wait_for_slot(message, limit).await),
            Err(error) => Err(self.store_failed(&error).await),
        }
    }

    /// Gives `slot` back, if one was taken. Should that fail, it lapses at its `until`.
    pub(super) async fn give_back(&self, slot: Option<Slot>) {
        let Some(slot) = slot else { return };
        if let Err(error) = self.app.store.release_slot(&slot).await {
            warn!(error = %crate::error::Chain(&error), "could not give the kind's slot back; it lapses with the lease");
        }
    }

    /// Renews `slot` until `until`, beside the lease. A slot that lapsed and was taken meanwhile
    /// (heartbeats failing for longer than a lease) leaves the job running, one over the limit
    /// until it ends: stopping work that holds its own lease would waste it.
    pub(super) async fn renew_slot(&self, slot: &Slot, until: Timestamp) {
        let now = self.app.clock.now();
        match self.app.store.hold_slot(slot, until, now).await {
            Ok(true) => {}
            Ok(false) => {
                warn!(kind = %slot.kind, limit = slot.limit, "the kind's slot lapsed and was taken; the job runs on, over the kind's limit");
            }
            Err(error) => {
                warn!(error = %crate::error::Chain(&error), "the kind's slot was not renewed; it stands until it lapses");
            }
        }
    }

    /// Sends the message on, delayed by a [`SLOT_WAIT`] drawn at random, and acknowledges this
    /// delivery: the job's attempts stay as they were and the new message's receive count starts
    /// at 1, so waiting never brings a job nearer the DLQ. Should the send fail, the message stays
    /// and comes back after the same delay.
    async fn wait_for_slot(&self, message: &JobMessage, limit: u32) -> Outcome {
        let delay = Duration::from_secs(fastrand::u64(SLOT_WAIT));
        self.app.metrics.for_job(
            self.app.clock.now(),
            &message.kind,
            message.priority(),
            &[(Metric::SlotWaits, 1.0)],
        );
        match self.send_again(message, delay).await {
            Ok(message_id) => {
                info!(kind = %message.kind, limit, delay_s = delay.as_secs(), message_id = %message_id, "every slot of the kind is held; sent on to wait");
                Outcome::Done
            }
            Err(error) => {
                warn!(error = %crate::error::Chain(&error), "could not send the message on to wait for a slot; it stays");
                self.reschedule(delay).await;
                Outcome::Failed
            }
        }
    }
}
