use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::{JobQueue, QueueError};

/// Intake's view of the queue's depth, refreshed at most every few seconds so that the backlog
/// check costs one `GetQueueAttributes` per interval per instance, not one per request.
#[derive(Debug)]
pub struct Backlog {
    limit: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

/// How stale the depth may be. SQS's own counts are approximate and lag by about a minute.
const REFRESH: Duration = Duration::from_secs(5);

impl Backlog {
    /// A backlog check with `limit` messages; 0 turns it off.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            last: Mutex::new(None),
        }
    }

    /// `Some((depth, limit))` when the queue holds more than the limit.
    pub async fn over_limit(&self, queue: &dyn JobQueue) -> Result<Option<(u64, u64)>, QueueError> {
        if self.limit == 0 {
            return Ok(None);
        }
        let cached = *self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let depth = match cached {
            Some((at, depth)) if at.elapsed() < REFRESH => depth,
            _ => {
                let depth = queue.depth().await?;
                let waiting = depth.visible + depth.delayed;
                *self
                    .last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some((Instant::now(), waiting));
                waiting
            }
        };
        Ok((depth > self.limit).then_some((depth, self.limit)))
    }
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
        assert_eq!(backlog.over_limit(&queue).await.unwrap(), Some((2, 1)));
    }
}
