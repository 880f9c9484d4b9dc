use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::clock::Clock;
use crate::domain::Progress;

/// The processor's end of progress reporting: keeps the latest report, timed by the app's clock,
/// until the consumer's heartbeat takes it to write it to the job.
#[derive(Debug, Clone, Default)]
pub struct Reporter(Option<Arc<Shared>>);

#[derive(Debug)]
struct Shared {
    clock: Arc<dyn Clock>,
    latest: Mutex<Option<Progress>>,
    reported: Notify,
}

impl Reporter {
    /// A reporter whose reports go nowhere: for a [`Work`](super::Work) built outside the
    /// consumer, as in a processor's own tests.
    pub fn discard() -> Self {
        Self(None)
    }

    /// A reporter whose reports are timed by `clock` and kept for [`Reporter::take`]: the
    /// consumer's, and one a processor's own tests can read its reports from.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self(Some(Arc::new(Shared {
            clock,
            latest: Mutex::default(),
            reported: Notify::new(),
        })))
    }

    pub(super) fn report(&self, fraction: f64, note: String) {
        if let Some(shared) = &self.0 {
            let progress = Progress::new(fraction, note, shared.clock.now());
            *shared.latest() = Some(progress);
            shared.reported.notify_one();
        }
    }

    /// The latest report not yet taken, if any.
    pub fn take(&self) -> Option<Progress> {
        self.0.as_ref().and_then(|shared| shared.latest().take())
    }

    /// Puts back a report taken but not written, unless a newer one came in since.
    pub(crate) fn restore(&self, progress: Progress) {
        if let Some(shared) = &self.0 {
            shared.latest().get_or_insert(progress);
        }
    }

    /// Waits for a report made since the last wait ended (or one made before the first wait);
    /// never ends for a reporter that discards.
    pub(crate) async fn reported(&self) {
        match &self.0 {
            Some(shared) => shared.reported.notified().await,
            None => std::future::pending().await,
        }
    }
}

impl Shared {
    fn latest(&self) -> std::sync::MutexGuard<'_, Option<Progress>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
