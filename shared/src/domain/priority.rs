use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which lane a job runs in. Each lane is its own queue with its own consumers, concurrency,
/// dead-letter queue, default TTL and backlog limit, so a flood in one lane never delays the
/// other (docs/architecture.md, "Priority lanes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Latency-sensitive work (a checkout's payment), kept apart from bulk work.
    High,
    /// Everything else; what a job gets unless it asks.
    #[default]
    Normal,
}

impl Priority {
    /// Every lane, highest first.
    pub const ALL: [Self; 2] = [Self::High, Self::Normal];

    /// The name the API, the table, the message and the metrics use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
        }
    }

    /// Whether this is the default lane (left out of messages, which older builds read).
    pub fn is_normal(&self) -> bool {
        *self == Self::Normal
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority that is neither `high` nor `normal`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority must be `high` or `normal`, not `{0}`")]
pub struct UnknownPriority(pub String);

impl FromStr for Priority {
    type Err = UnknownPriority;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|priority| priority.as_str() == text)
            .ok_or_else(|| UnknownPriority(text.chars().take(32).collect()))
    }
}

/// One value per lane: the lanes' queues, default TTLs, backlog limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lanes<T> {
    /// The high lane's.
    pub high: T,
    /// The normal lane's.
    pub normal: T,
}

impl<T> Lanes<T> {
    /// The same value in both lanes.
    pub fn both(value: T) -> Self
    where
        T: Clone,
    {
        Self {
            high: value.clone(),
            normal: value,
        }
    }

    /// A lane's value.
    pub fn get(&self, priority: Priority) -> &T {
        match priority {
            Priority::High => &self.high,
            Priority::Normal => &self.normal,
        }
    }

    /// Each lane's value made from `f` of the lane.
    pub fn from_fn(mut f: impl FnMut(Priority) -> T) -> Self {
        Self {
            high: f(Priority::High),
            normal: f(Priority::Normal),
        }
    }

    /// Each lane's value through `f`.
    pub fn map<U>(self, mut f: impl FnMut(Priority, T) -> U) -> Lanes<U> {
        Lanes {
            high: f(Priority::High, self.high),
            normal: f(Priority::Normal, self.normal),
        }
    }

    /// The lanes and their values, highest first.
    pub fn iter(&self) -> impl Iterator<Item = (Priority, &T)> {
        [
            (Priority::High, &self.high),
            (Priority::Normal, &self.normal),
        ]
        .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priority_reads_back_as_written_and_nothing_else_reads() {
        for priority in Priority::ALL {
            assert_eq!(priority.as_str().parse::<Priority>(), Ok(priority));
            let json = serde_json::to_string(&priority).unwrap();
            assert_eq!(json, format!("\"{priority}\""));
        }
        assert_eq!(Priority::default(), Priority::Normal);
        for bad in ["HIGH", "low", "", "urgent"] {
            assert!(bad.parse::<Priority>().is_err(), "{bad}");
        }
        let long = "x".repeat(1000).parse::<Priority>().unwrap_err();
        assert!(long.to_string().len() < 100, "{long}");
    }
}
