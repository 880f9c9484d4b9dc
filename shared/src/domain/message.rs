use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{CorrelationId, JobId, Kind, Timestamp};

/// What the queue carries for one job: small, versioned, and self-sufficient, so the consumer
/// needs no read to run the job. Encoded as `{"v": 1, "job_id", "kind", "payload", "deadline"}`.
#[derive(Debug, Clone)]
pub struct JobMessage {
    /// The job this message runs.
    pub job_id: JobId,
    /// Its kind.
    pub kind: Kind,
    /// The payload exactly as the client sent it.
    pub payload: Box<RawValue>,
    /// After this the job is expired, not run.
    pub deadline: Timestamp,
    /// The submitting request's correlation id (absent from messages of older versions).
    pub correlation_id: Option<CorrelationId>,
}

/// A message body that is not a Spillway job message.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// Not JSON, or missing or malformed fields.
    #[error("malformed job message: {0}")]
    Malformed(#[source] serde_json::Error),
    /// Written by a version of Spillway this one does not understand.
    #[error("job message version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u64),
}

/// The wire format of version 1.
#[derive(Serialize, Deserialize)]
struct V1<K, P, C> {
    v: u64,
    job_id: JobId,
    kind: K,
    payload: P,
    deadline: Timestamp,
    // Missing in messages written before it existed: serde reads a missing `Option` as `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<C>,
}

#[derive(Deserialize)]
struct Version {
    v: u64,
}

impl JobMessage {
    /// The version this build writes.
    pub const VERSION: u64 = 1;

    /// The message body.
    pub fn encode(&self) -> String {
        let wire = V1 {
            v: Self::VERSION,
            job_id: self.job_id,
            kind: &self.kind,
            payload: &*self.payload,
            deadline: self.deadline,
            correlation_id: self.correlation_id.as_ref(),
        };
        // Serialising these field types cannot fail: ids, kinds and times are strings and the
        // payload is already JSON.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Reads a message body of any version this build understands.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let Version { v } = serde_json::from_str(body).map_err(MessageError::Malformed)?;
        match v {
            1 => {
                let wire: V1<Kind, Box<RawValue>, CorrelationId> =
                    serde_json::from_str(body).map_err(MessageError::Malformed)?;
                Ok(Self {
                    job_id: wire.job_id,
                    kind: wire.kind,
                    payload: wire.payload,
                    deadline: wire.deadline,
                    correlation_id: wire.correlation_id,
                })
            }
            other => Err(MessageError::UnsupportedVersion(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> JobMessage {
        JobMessage {
            job_id: JobId::generate(),
            kind: Kind::parse("echo").unwrap(),
            payload: RawValue::from_string(r#"{"to": "a@example.com", "n": [1, 2.5]}"#.into())
                .unwrap(),
            deadline: Timestamp::from_millis(1_795_000_000_000),
            correlation_id: Some(CorrelationId::parse(b"req-1").unwrap()),
        }
    }

    #[test]
    fn a_message_round_trips_with_its_payload_byte_for_byte() {
        let original = message();
        let decoded = JobMessage::decode(&original.encode()).unwrap();
        assert_eq!(decoded.job_id, original.job_id);
        assert_eq!(decoded.kind, original.kind);
        assert_eq!(decoded.payload.get(), original.payload.get());
        assert_eq!(decoded.deadline, original.deadline);
        assert_eq!(decoded.correlation_id, original.correlation_id);
    }

    #[test]
    fn a_message_without_a_correlation_id_still_decodes() {
        let mut original = message();
        original.correlation_id = None;
        let body = original.encode();
        assert!(!body.contains("correlation_id"), "{body}");
        assert_eq!(JobMessage::decode(&body).unwrap().correlation_id, None);
    }

    #[test]
    fn the_body_carries_its_version() {
        let body: serde_json::Value = serde_json::from_str(&message().encode()).unwrap();
        assert_eq!(body["v"], 1);
        assert_eq!(body["deadline"], "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn unknown_versions_and_garbage_are_refused() {
        assert!(matches!(
            JobMessage::decode(r#"{"v": 2, "anything": true}"#),
            Err(MessageError::UnsupportedVersion(2))
        ));
        for body in [
            "",
            "not json",
            "{}",
            r#"{"v": 1}"#,
            r#"{"v":1,"job_id":"x","kind":"echo","payload":{},"deadline":"2026-01-01T00:00:00Z"}"#,
        ] {
            assert!(
                matches!(JobMessage::decode(body), Err(MessageError::Malformed(_))),
                "{body}"
            );
        }
    }
}

/// The decoder against whatever a queue could hold: any text decodes or is refused, never a panic,
/// and every message this build writes reads back as itself.
#[cfg(test)]
mod properties {
    #![allow(clippy::unwrap_used)]

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_body_decodes_or_is_refused(body in prop_oneof![
            ".{0,200}",
            r#"\{"v":[0-9]{1,3},"job_id":".{0,40}","kind":".{0,12}","payload":.{0,20},"deadline":".{0,30}"\}"#,
        ]) {
            let _ = JobMessage::decode(&body);
        }

        #[test]
        fn every_message_written_reads_back_as_itself(
            kind in "[a-z][a-z0-9_-]{0,20}",
            payload in prop_oneof![
                Just("null".to_owned()),
                any::<i64>().prop_map(|n| n.to_string()),
                ".{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                prop::collection::vec(any::<i32>(), 0..5).prop_map(|v| serde_json::to_string(&v).unwrap()),
            ],
            deadline in 0u64..4_102_444_800_000,
            correlation in prop::option::of("[!-~]{1,128}"),
        ) {
            let message = JobMessage {
                job_id: JobId::generate(),
                kind: Kind::parse(&kind).unwrap(),
                payload: RawValue::from_string(payload).unwrap(),
                deadline: Timestamp::from_millis(deadline),
                correlation_id: correlation.map(|c| CorrelationId::parse(c.as_bytes()).unwrap()),
            };
            let decoded = JobMessage::decode(&message.encode()).unwrap();
            prop_assert_eq!(decoded.job_id, message.job_id);
            prop_assert_eq!(decoded.kind, message.kind);
            prop_assert_eq!(decoded.payload.get(), message.payload.get());
            prop_assert_eq!(decoded.deadline, message.deadline);
            prop_assert_eq!(decoded.correlation_id, message.correlation_id);
        }
    }
}
