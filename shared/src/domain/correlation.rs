use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The id that follows one request through every function and log line: the caller's
/// `X-Correlation-Id`, or one Spillway made. 1 to 128 visible ASCII characters, so it is safe in a
/// header, a log line and a Logs Insights query.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CorrelationId(String);

/// A header value that cannot be a correlation id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("X-Correlation-Id must be 1 to {max} visible ASCII characters", max = CorrelationId::MAX_LEN)]
pub struct InvalidCorrelationId;

impl CorrelationId {
    /// Longest accepted id.
    pub const MAX_LEN: usize = 128;

    /// Parses a header value.
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidCorrelationId> {
        let valid =
            (1..=Self::MAX_LEN).contains(&raw.len()) && raw.iter().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(InvalidCorrelationId);
        }
        Ok(Self(String::from_utf8_lossy(raw).into_owned()))
    }

    /// A new id for a request that brought none (a UUIDv7, so ids sort by time).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().hyphenated().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for CorrelationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::from_text(deserializer, |raw| Self::parse(raw.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_ascii_up_to_the_limit_is_an_id() {
        for raw in ["a", "req-42/retry:1", &"x".repeat(CorrelationId::MAX_LEN)] {
            assert_eq!(CorrelationId::parse(raw.as_bytes()).unwrap().as_str(), raw);
        }
        for raw in [
            "",
            "has space",
            "tab\t",
            "é",
            &"x".repeat(CorrelationId::MAX_LEN + 1),
        ] {
            assert!(CorrelationId::parse(raw.as_bytes()).is_err(), "{raw:?}");
        }
        let made = CorrelationId::generate();
        assert_eq!(CorrelationId::parse(made.as_str().as_bytes()), Ok(made));
    }
}
