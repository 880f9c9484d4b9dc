use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// The name of a job kind, such as `echo` or `webhook`: 1 to 64 characters of lowercase ASCII
/// letters, digits, `-` and `_`, starting with a letter. Whether a processor exists for it is
/// decided by the registry, not here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Kind(String);

/// A string that cannot name a job kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a job kind: use 1 to 64 lowercase letters, digits, `-` or `_`, starting with a letter"
)]
pub struct InvalidKind(String);

impl Kind {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    /// Parses a kind name.
    pub fn parse(raw: &str) -> Result<Self, InvalidKind> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidKind(raw.chars().take(Self::MAX_LEN + 1).collect()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::from_text(deserializer, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercase_names_are_kinds() {
        for raw in ["echo", "sleep", "send-email", "partner_webhook2", "a"] {
            assert_eq!(Kind::parse(raw).map(|k| k.to_string()), Ok(raw.to_owned()));
        }
    }

    #[test]
    fn other_names_are_refused() {
        let too_long = "a".repeat(Kind::MAX_LEN + 1);
        for raw in [
            "",
            "Echo",
            "1echo",
            "-echo",
            "echo job",
            "échо",
            too_long.as_str(),
        ] {
            assert!(Kind::parse(raw).is_err(), "{raw} was accepted");
        }
    }
}
