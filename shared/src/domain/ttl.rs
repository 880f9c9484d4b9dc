use std::time::Duration;

/// How long a job may wait before it must have run: from 1 second to the configured maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ttl(Duration);

/// A time to live outside the accepted range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ttl_seconds must be between 1 and {max}, got {got}")]
pub struct InvalidTtl {
    got: u64,
    max: u64,
}

impl Ttl {
    /// Accepts `seconds` when it lies in `1..=max_seconds`.
    pub fn from_seconds(seconds: u64, max_seconds: u64) -> Result<Self, InvalidTtl> {
        if (1..=max_seconds).contains(&seconds) {
            Ok(Self(Duration::from_secs(seconds)))
        } else {
            Err(InvalidTtl {
                got: seconds,
                max: max_seconds,
            })
        }
    }

    /// The time to live.
    pub fn duration(self) -> Duration {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_outside_one_second_to_the_maximum_are_refused() {
        assert!(Ttl::from_seconds(0, 60).is_err());
        assert!(Ttl::from_seconds(61, 60).is_err());
        assert_eq!(
            Ttl::from_seconds(60, 60).map(Ttl::duration),
            Ok(Duration::from_secs(60))
        );
    }
}
