use std::fmt;

use sha2::{Digest, Sha256};

use super::{JobId, Owner, Timestamp};

/// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// A header value that cannot be an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to 255 printable ASCII characters")]
pub struct InvalidIdempotencyKey;

impl IdempotencyKey {
    /// Longest accepted key.
    pub const MAX_LEN: usize = 255;

    /// Parses a header value.
    pub fn parse(raw: &[u8]) -> Result<Self, InvalidIdempotencyKey> {
        let printable = raw.iter().all(|b| (0x20..=0x7e).contains(b));
        if (1..=Self::MAX_LEN).contains(&raw.len()) && printable {
            // Printable ASCII is UTF-8.
            Ok(Self(String::from_utf8_lossy(raw).into_owned()))
        } else {
            Err(InvalidIdempotencyKey)
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a key was first used for: the job it created and a fingerprint of the request, so a
/// repeat with the same key can be told apart from a different request reusing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// Whose key it is: keys are scoped to the caller.
    pub owner: Owner,
    /// The key.
    pub key: IdempotencyKey,
    /// Lowercase hex SHA-256 of the request body.
    pub fingerprint: String,
    /// The job the first request created.
    pub job_id: JobId,
    /// When the table may forget the key: with its job.
    pub expires_at: Timestamp,
}

impl IdempotencyRecord {
    /// The fingerprint of a request body.
    pub fn fingerprint(body: &[u8]) -> String {
        hex::encode(Sha256::digest(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_printable_ascii_up_to_255_characters() {
        assert!(IdempotencyKey::parse(b"order-42 retry#1").is_ok());
        assert!(IdempotencyKey::parse("x".repeat(255).as_bytes()).is_ok());
        for raw in [
            &b""[..],
            "x".repeat(256).as_bytes(),
            b"tab\there",
            "ключ".as_bytes(),
        ] {
            assert!(IdempotencyKey::parse(raw).is_err(), "{raw:?}");
        }
    }
}
