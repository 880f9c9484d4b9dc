use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A job's identifier: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(Uuid);

/// A string that is not a job id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a job id: expected a UUIDv7 such as 01920000-0000-7000-8000-000000000000")]
pub struct InvalidJobId(String);

impl JobId {
    /// A new, time-ordered id.
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    /// An id derived from this one and `tag`: the same two always give the same id, so a step
    /// that may run more than once (the callback of a terminal job) creates its job once. It keeps
    /// this id's timestamp and takes its random bits from SHA-256 of both.
    pub fn derived(&self, tag: &str) -> Self {
        let digest = Sha256::new()
            .chain_update(self.0.as_bytes())
            .chain_update(tag.as_bytes())
            .finalize();
        let millis = self.0.get_timestamp().map_or(0, |timestamp| {
            let (seconds, nanos) = timestamp.to_unix();
            seconds * 1000 + u64::from(nanos / 1_000_000)
        });
        let mut random = [0; 10];
        random.copy_from_slice(&digest[..10]);
        Self(uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid())
    }

    /// Parses the hyphenated form; only version 7 UUIDs are job ids.
    pub fn parse(raw: &str) -> Result<Self, InvalidJobId> {
        let invalid = || InvalidJobId(raw.chars().take(64).collect());
        // `Uuid::try_parse` also accepts braced and URN forms; ids only ever travel hyphenated.
        if raw.len() != 36 {
            return Err(invalid());
        }
        let uuid = Uuid::try_parse(raw).map_err(|_| invalid())?;
        if uuid.get_version_num() != 7 {
            return Err(invalid());
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobId({self})")
    }
}

impl FromStr for JobId {
    type Err = InvalidJobId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        super::from_text(deserializer, Self::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_round_trip_through_their_text() {
        let id = JobId::generate();
        assert_eq!(JobId::parse(&id.to_string()), Ok(id));
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let first = JobId::generate();
        let second = JobId::generate();
        assert!(first < second);
    }

    #[test]
    fn derived_ids_are_stable_distinct_and_valid() {
        let parent = JobId::generate();
        let a = parent.derived("callback:succeeded:1");
        assert_eq!(a, parent.derived("callback:succeeded:1"));
        assert_ne!(a, parent.derived("callback:failed:1"));
        assert_ne!(a, JobId::generate().derived("callback:succeeded:1"));
        assert_eq!(JobId::parse(&a.to_string()), Ok(a));
        assert_eq!(a.0.get_timestamp(), parent.0.get_timestamp());
    }

    #[test]
    fn other_uuid_versions_and_forms_are_refused() {
        for raw in [
            "",
            "not-a-uuid",
            "6ba7b810-9dad-41d1-80b4-00c04fd430c8", // v4
            "{01920000-0000-7000-8000-000000000000}",
            "urn:uuid:01920000-0000-7000-8000-000000000000",
        ] {
            assert!(JobId::parse(raw).is_err(), "{raw} was accepted");
        }
        assert!(JobId::parse("01920000-0000-7000-8000-000000000000").is_ok());
    }
}
