use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{JobQueue, QueueError};

/// Intake's view of one lane's queue depth, refreshed at most every few seconds so that the
/// backlog check costs one `GetQueueAttributes` per interval per instance, not one per request;
/// and of how fast the lane drains, so that a refused client is told when to come back.
#[derive(Debug)]
pub struct Backlog {
    limit: u64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Reading>,
    /// Messages per second the lane's consumers took, smoothed over the readings that measured
    /// it; `None` until one did.
    drain: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    waiting: u64,
}

/// A lane over its limit, as intake answers it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Full {
    /// Messages waiting in the lane's queue.
    pub depth: u64,
    /// The lane's limit.
    pub limit: u64,
    /// The lane's measured drain rate, messages per second, if measured.
    pub drain_per_second: Option<f64>,
    /// When the lane is expected to be back under its limit: what `Retry-After` says.
    pub retry_after: Duration,
}

/// How stale the depth may be. SQS's own counts are approximate and lag by about a minute.
const REFRESH: Duration = Duration::from_secs(5);
/// Two readings further apart than this measure no drain rate: the lane may have emptied and
/// filled again between them.
const LONGEST_MEASURE: Duration = Duration::from_secs(60);
/// The longest wait intake asks of a refused client, however slowly the lane drains: consumers
/// that stalled may resume at any time.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How much a new measurement counts against the smoothed rate.
const WEIGHT: f64 = 0.5;

impl Backlog {
    /// A backlog check with `limit` messages; 0 turns it off.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            state: Mutex::default(),
        }
    }

    /// The lane's state when its queue holds more than the limit; `None` while it is under.
    ///
    /// The drain rate is measured between two readings of which the first was over the limit:
    /// from then on every intake instance refuses the lane's jobs (each reads the same depth), so
    /// the queue's fall is what its consumers took. `Retry-After` is the excess over that rate.
    /// Before any such measurement it is the refresh interval, when this instance next measures.
    pub async fn over_limit(&self, queue: &dyn JobQueue) -> Result<Option<Full>, QueueError> {
        if self.limit == 0 {
            return Ok(None);
        }
        let cached = self.lock().last;
        let waiting = match cached {
            Some(reading) if reading.at.elapsed() < REFRESH => reading.waiting,
            _ => {
                let depth = queue.depth().await?;
                // Only what waits for a consumer now: delayed messages are scheduled jobs not due
                // yet, which no consumer could take however idle it were.
                let reading = Reading {
                    at: Instant::now(),
                    waiting: depth.visible,
                };
                self.record(reading);
                reading.waiting
            }
        };
        if waiting <= self.limit {
            return Ok(None);
        }
        let drain = self.lock().drain;
        Ok(Some(Full {
            depth: waiting,
            limit: self.limit,
            drain_per_second: drain,
            retry_after: retry_after(waiting - self.limit, drain),
        }))
    }

    fn record(&self, reading: Reading) {
        let mut state = self.lock();
        if let Some(previous) = state.last
            && previous.waiting > self.limit
        {
            let elapsed = reading.at.saturating_duration_since(previous.at);
            if !elapsed.is_zero() && elapsed <= LONGEST_MEASURE {
                #[allow(clippy::cast_precision_loss)]
                let fell = previous.waiting as f64 - reading.waiting as f64;
                let rate = (fell / elapsed.as_secs_f64()).max(0.0);
                state.drain = Some(match state.drain {
                    Some(smoothed) => smoothed.mul_add(1.0 - WEIGHT, rate * WEIGHT),
                    None => rate,
                });
            }
        }
        state.last = Some(reading);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long `excess` messages take to drain at `drain` per second: at least a second, at most
/// [`MAX_RETRY_AFTER`]; the refresh interval while the rate is unknown.
fn retry_after(excess: u64, drain: Option<f64>) -> Duration {
    let Some(rate) = drain else {
        return REFRESH;
    };
    if rate <= 0.0 {
        return MAX_RETRY_AFTER;
    }
    #[allow(clippy::cast_precision_loss)]
    let seconds = (excess as f64 / rate).ceil();
    Duration::from_secs_f64(seconds.clamp(1.0, MAX_RETRY_AFTER.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::MemoryQueue;

    #[tokio::test(start_paused = true)]
    async fn the_depth_is_read_at_most_every_few_seconds() {
        let queue = MemoryQueue::new(Duration::from_secs(30));
        let backlog = Backlog::new(1);
        assert_eq!(backlog.over_limit(&queue).await.unwrap(), None);
        queue.send("a").await.unwrap();
        queue.send("b").await.unwrap();
        assert_eq!(
            backlog.over_limit(&queue).await.unwrap(),
            None,
            "the cached depth is used"
        );
        tokio::time::advance(REFRESH).await;
        let full = backlog.over_limit(&queue).await.unwrap().unwrap();
        assert_eq!((full.depth, full.limit), (2, 1));
        assert_eq!(full.retry_after, REFRESH, "no drain measured yet");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_the_excess_over_the_measured_drain_rate() {
        let queue = holding(100).await;
        let backlog = Backlog::new(10);
        assert!(backlog.over_limit(&queue).await.unwrap().is_some());
        // Consumers take 20 messages in 5 s: 4 per second. 80 waiting, 70 over: 18 s.
        take(&queue, 20).await;
        tokio::time::advance(REFRESH).await;
        let full = backlog.over_limit(&queue).await.unwrap().unwrap();
        assert_eq!(full.depth, 80);
        assert_eq!(full.drain_per_second, Some(4.0));
        assert_eq!(full.retry_after, Duration::from_secs(18));
        // Then 40 in 5 s (8/s): the smoothed rate is 6/s, 30 over: 5 s.
        take(&queue, 40).await;
        tokio::time::advance(REFRESH).await;
        let full = backlog.over_limit(&queue).await.unwrap().unwrap();
        assert_eq!(full.drain_per_second, Some(6.0));
        assert_eq!(full.retry_after, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn scheduled_jobs_are_no_backlog() {
        let queue = MemoryQueue::new(Duration::from_secs(300));
        let later = crate::queue::SendOptions {
            group: None,
            delay: Duration::from_secs(600),
        };
        for n in 0..50 {
            queue.send_with(&n.to_string(), later).await.unwrap();
        }
        assert_eq!(queue.depth().await.unwrap().delayed, 50);
        assert_eq!(Backlog::new(10).over_limit(&queue).await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lane_that_does_not_drain_asks_for_the_longest_wait() {
        let queue = holding(20).await;
        let backlog = Backlog::new(10);
        backlog.over_limit(&queue).await.unwrap();
        tokio::time::advance(REFRESH).await;
        let full = backlog.over_limit(&queue).await.unwrap().unwrap();
        assert_eq!(full.drain_per_second, Some(0.0));
        assert_eq!(full.retry_after, MAX_RETRY_AFTER);
    }

    #[tokio::test(start_paused = true)]
    async fn readings_taken_under_the_limit_measure_nothing() {
        // Under the limit intake admits jobs, so the depth's change mixes arrivals with drain.
        let queue = MemoryQueue::new(Duration::from_secs(300));
        let backlog = Backlog::new(10);
        for n in 0..5 {
            queue.send(&n.to_string()).await.unwrap();
        }
        assert_eq!(backlog.over_limit(&queue).await.unwrap(), None);
        for n in 0..20 {
            queue.send(&n.to_string()).await.unwrap();
        }
        tokio::time::advance(REFRESH).await;
        let full = backlog.over_limit(&queue).await.unwrap().unwrap();
        assert_eq!(full.drain_per_second, None);
    }

    /// A queue holding `n` messages.
    async fn holding(n: usize) -> MemoryQueue {
        let queue = MemoryQueue::new(Duration::from_secs(300));
        for n in 0..n {
            queue.send(&n.to_string()).await.unwrap();
        }
        queue
    }

    async fn take(queue: &MemoryQueue, n: usize) {
        let mut taken = 0;
        while taken < n {
            let batch = queue
                .receive(10.min((n - taken) as u32), Duration::ZERO)
                .await
                .unwrap();
            for message in &batch {
                queue.delete(&message.receipt_handle).await.unwrap();
            }
            taken += batch.len();
        }
    }
}
