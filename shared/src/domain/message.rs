use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{
    Child, CorrelationId, Fanout, IdempotencyKey, IdempotencyRecord, Job, JobId, JobStatus, Kind,
    NewJob, Owner, ParentLink, PayloadDigest, Priority, Timestamp,
};

/// What the queue carries for one job: small, versioned, and self-sufficient, so the consumer
/// needs no read to run the job. Encoded as
/// `{"v": 1, "job_id", "kind", "payload", "deadline", "correlation_id"?, "origin"?}`.
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
    /// When the job is due, if it was scheduled: a consumer that receives the message before
    /// sends it on again, delayed.
    pub run_at: Option<Timestamp>,
    /// The submitting request's correlation id (absent from version-1 messages written by builds
    /// before it existed).
    pub correlation_id: Option<CorrelationId>,
    /// How the job was accepted, so that a consumer can write the job itself when intake's write
    /// never landed (absent from version-1 messages written by builds before it existed).
    pub origin: Option<Origin>,
}

/// The rest of what a job is made of when it is accepted. Intake sends a job's message before it
/// writes the job (docs/guarantees.md), so a message may arrive for a job the table does not hold
/// yet, or never will: the consumer then writes it from this, with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Who submitted it.
    pub owner: Owner,
    /// Its lane (left out when `normal`, as builds before lanes wrote it).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When the table may forget it if it is still pending then (its deadline plus the
    /// retention).
    pub expires_at: Timestamp,
    /// Where its final document is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The `Idempotency-Key` it was submitted with, and the request's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<KeyUse>,
    /// The fan-out parent of a child job, and the child's target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentLink>,
    /// The rest of that parent, as intake writes it: carried by the messages intake sends, so
    /// that a consumer writes the parent, too, when intake's write did not land.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_job: Option<ParentJob>,
}

/// A fan-out parent as its children's messages carry it. The parent shares its owner, lane,
/// times, payload and correlation id with each child, so only what differs travels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentJob {
    /// The fan-out kind.
    pub kind: String,
    /// Its children, one per target.
    pub children: Vec<Child>,
    /// Where its final document is delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The `Idempotency-Key` it was submitted with, and the request's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency: Option<KeyUse>,
}

/// An idempotency key's use, as a message carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyUse {
    /// The key.
    pub key: String,
    /// The request's fingerprint.
    pub fingerprint: String,
}

impl KeyUse {
    /// How a message carries `record`.
    fn of(record: &IdempotencyRecord) -> Self {
        Self {
            key: record.key.as_str().to_owned(),
            fingerprint: record.fingerprint.clone(),
        }
    }
}

/// The idempotency record of `used`, naming `job_id`, as intake writes it from `origin`:
/// `Some(None)` without a key, `None` for a key that does not parse.
fn key_record(
    origin: &Origin,
    used: Option<&KeyUse>,
    job_id: JobId,
) -> Option<Option<IdempotencyRecord>> {
    let Some(used) = used else {
        return Some(None);
    };
    Some(Some(IdempotencyRecord {
        owner: origin.owner.clone(),
        key: IdempotencyKey::parse(used.key.as_bytes()).ok()?,
        fingerprint: used.fingerprint.clone(),
        job_id,
        expires_at: origin.expires_at,
    }))
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
struct V1<K, P, C, O> {
    v: u64,
    job_id: JobId,
    kind: K,
    payload: P,
    deadline: Timestamp,
    // Missing from a job that was not scheduled, and from messages written before schedules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_at: Option<Timestamp>,
    // Missing in messages written before it existed: serde reads a missing `Option` as `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    correlation_id: Option<C>,
    // Missing in messages written before it existed, as above.
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<O>,
}

#[derive(Deserialize)]
struct Version {
    v: u64,
}

/// What [`JobMessage::encode`] writes besides its fields' values, with every optional field
/// present: the keys, quotes around keys, colons, commas and braces.
const SKELETON: &str = concat!(
    r#"{"v":,"job_id":,"kind":,"payload":,"deadline":,"run_at":,"correlation_id":,"#,
    r#""origin":{"owner":,"priority":,"created_at":,"expires_at":,"callback_url":,"#,
    r#""idempotency":{"key":,"fingerprint":}}}"#,
);

/// The JSON text of a string of `n` bytes that need no escape: `n` and its two quotes.
const fn quoted(n: usize) -> usize {
    n + 2
}

impl JobMessage {
    /// The version this build writes.
    pub const VERSION: u64 = 1;

    /// The most bytes of JSON an owner takes in a message that [`JobMessage::MAX_ENVELOPE_BYTES`]
    /// makes room for, quotes and escapes included. An IAM principal's ARN is at most 2,048
    /// characters, so an IAM owner (`auth:` and the ARN) takes at most 4,103 bytes even were
    /// every character escaped; a JWT owner is its issuer's URL and its subject, which OpenID
    /// Connect limits to 255 ASCII characters. An identity beyond this still fits with a smaller
    /// body: intake measures each message and refuses one over SQS's limit (`413`).
    pub const OWNER_BUDGET: usize = 6_144;

    /// The most a job's message adds to the request body it was accepted from, for an owner
    /// within [`JobMessage::OWNER_BUDGET`]: 7,318 bytes.
    ///
    /// The body is measured whole, the message is not the body, so the two are related here. Of the
    /// body, the message carries the payload byte for byte (it travels as the client's raw JSON),
    /// and the kind and the callback URL serialized again, which is never longer than the client
    /// could have written them: serde_json escapes only `"`, `\` and control characters, which JSON
    /// obliges a client to escape too, never in more bytes than the client's escape, and writes the
    /// rest as it is. These are separate parts of the body, so together they are at most its
    /// length; the body's own keys and punctuation (`{"kind":…,"payload":…}`) are not subtracted, a
    /// margin of at least 20 bytes. Everything else in the message comes from elsewhere and is
    /// bounded by what accepts it: the version, the job id (a hyphenated UUID, 36), four times
    /// (RFC 3339 in milliseconds, 24), the correlation id and the Idempotency-Key (128 and 255
    /// ASCII characters, each of which may be `"` or `\`, escaped in two bytes), the request's
    /// fingerprint (64 hex digits), the owner and the lane (written only when `high`); and the
    /// keys and punctuation of the message
    /// itself ([`SKELETON`]). The SQS adapter sends no message attributes, which SQS would count
    /// too; the X-Ray trace header SQS attaches under tracing is a system attribute, which it does
    /// not count.
    pub const MAX_ENVELOPE_BYTES: usize = SKELETON.len()
        + 1 // `v`: one digit while VERSION is 1
        + quoted(36) // job_id
        + 4 * quoted(24) // deadline, run_at, created_at, expires_at
        + quoted(2 * CorrelationId::MAX_LEN)
        + Self::OWNER_BUDGET
        + quoted(2 * IdempotencyKey::MAX_LEN)
        + quoted(64) // fingerprint: hex SHA-256
        + quoted(Priority::High.as_str().len()); // the lane: `normal` is never written

    /// The message body.
    pub fn encode(&self) -> String {
        let wire = V1 {
            v: Self::VERSION,
            job_id: self.job_id,
            kind: &self.kind,
            payload: &*self.payload,
            deadline: self.deadline,
            run_at: self.run_at,
            correlation_id: self.correlation_id.as_ref(),
            origin: self.origin.as_ref(),
        };
        // Serialising these field types cannot fail: ids, kinds and times are strings and the
        // payload is already JSON.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// The message of `job`, carrying `payload` and, when it was submitted with one, the
    /// idempotency key's use.
    pub fn of(job: &Job, payload: Box<RawValue>, key: Option<&IdempotencyRecord>) -> Self {
        Self {
            job_id: job.id,
            kind: job.kind.clone(),
            payload,
            deadline: job.deadline,
            run_at: job.run_at,
            correlation_id: job.correlation_id.clone(),
            origin: Some(Origin {
                owner: job.owner.clone(),
                priority: job.priority,
                created_at: job.created_at,
                expires_at: job.expires_at,
                callback_url: job.callback_url.clone(),
                idempotency: key.map(KeyUse::of),
                parent: job.fanout.as_ref().and_then(Fanout::parent).cloned(),
                parent_job: None,
            }),
        }
    }

    /// The message intake sends for `child` of the fan-out job `parent`: the child's, carrying
    /// `payload`, and the parent with its idempotency key's use, so that a consumer can write
    /// both.
    pub fn of_child(
        child: &Job,
        parent: &Job,
        payload: Box<RawValue>,
        key: Option<&IdempotencyRecord>,
    ) -> Self {
        let mut message = Self::of(child, payload, None);
        if let Some(origin) = &mut message.origin {
            origin.parent_job = Some(ParentJob {
                kind: parent.kind.as_str().to_owned(),
                children: parent
                    .fanout
                    .as_ref()
                    .map_or(&[][..], Fanout::children)
                    .to_vec(),
                callback_url: parent.callback_url.clone(),
                idempotency: key.map(KeyUse::of),
            });
        }
        message
    }

    /// The job (pending) and the idempotency record its message describes, as intake would
    /// have written them; `None` for a message written by an older build, which does not say.
    pub fn accepted_job(&self) -> Option<(Job, Option<IdempotencyRecord>)> {
        let origin = self.origin.as_ref()?;
        let mut job = Job::pending(NewJob {
            id: self.job_id,
            kind: self.kind.clone(),
            owner: origin.owner.clone(),
            priority: origin.priority,
            created_at: origin.created_at,
            deadline: self.deadline,
            run_at: self.run_at,
            payload: PayloadDigest::of(self.payload.get()),
            expires_at: origin.expires_at,
            callback_url: origin.callback_url.clone(),
            correlation_id: self.correlation_id.clone(),
        });
        job.fanout = origin.parent.clone().map(Fanout::Child);
        let record = key_record(origin, origin.idempotency.as_ref(), self.job_id)?;
        Some((job, record))
    }

    /// The fan-out parent (`running`) and its idempotency record that a child's message
    /// describes, as intake would have written them; `None` for a message that carries no
    /// parent.
    pub fn accepted_parent(&self) -> Option<(Job, Option<IdempotencyRecord>)> {
        let origin = self.origin.as_ref()?;
        let (link, parent) = (origin.parent.as_ref()?, origin.parent_job.as_ref()?);
        let mut job = Job::pending(NewJob {
            id: link.parent,
            kind: Kind::parse(&parent.kind).ok()?,
            owner: origin.owner.clone(),
            priority: origin.priority,
            created_at: origin.created_at,
            deadline: self.deadline,
            run_at: self.run_at,
            payload: PayloadDigest::of(self.payload.get()),
            expires_at: origin.expires_at,
            callback_url: parent.callback_url.clone(),
            correlation_id: self.correlation_id.clone(),
        });
        job.status = JobStatus::Running;
        job.started_at = Some(job.created_at);
        job.fanout = Some(Fanout::Parent {
            children: parent.children.clone(),
            failures: vec![],
        });
        let record = key_record(origin, parent.idempotency.as_ref(), link.parent)?;
        Some((job, record))
    }

    /// The lane the job runs in: the one it was accepted into (`normal` for a message written
    /// before lanes, or by an older build that does not say).
    pub fn priority(&self) -> Priority {
        self.origin
            .as_ref()
            .map_or(Priority::Normal, |origin| origin.priority)
    }

    /// Reads a message body of any version this build understands.
    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let Version { v } = serde_json::from_str(body).map_err(MessageError::Malformed)?;
        match v {
            1 => {
                let wire: V1<Kind, Box<RawValue>, CorrelationId, Origin> =
                    serde_json::from_str(body).map_err(MessageError::Malformed)?;
                Ok(Self {
                    job_id: wire.job_id,
                    kind: wire.kind,
                    payload: wire.payload,
                    deadline: wire.deadline,
                    run_at: wire.run_at,
                    correlation_id: wire.correlation_id,
                    origin: wire.origin,
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
            run_at: None,
            correlation_id: Some(CorrelationId::parse(b"req-1").unwrap()),
            origin: None,
        }
    }

    #[test]
    fn a_message_carries_what_it_takes_to_write_its_job_and_key() {
        let job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse("webhook").unwrap(),
            owner: Owner::iam("arn:aws:iam::123456789012:user/alice"),
            priority: Priority::High,
            created_at: Timestamp::from_millis(1_795_000_000_000),
            deadline: Timestamp::from_millis(1_795_000_600_000),
            run_at: None,
            payload: PayloadDigest::of(r#"{"url":"https://example.com/"}"#),
            expires_at: Timestamp::from_millis(1_796_000_000_000),
            callback_url: Some("https://example.com/cb".to_owned()),
            correlation_id: Some(CorrelationId::parse(b"req-2").unwrap()),
        });
        let record = IdempotencyRecord {
            owner: job.owner.clone(),
            key: IdempotencyKey::parse(b"order#7").unwrap(),
            fingerprint: "ab12".to_owned(),
            job_id: job.id,
            expires_at: job.expires_at,
        };
        let payload = RawValue::from_string(r#"{"url":"https://example.com/"}"#.into()).unwrap();
        let message = JobMessage::of(&job, payload, Some(&record));
        let decoded = JobMessage::decode(&message.encode()).unwrap();
        let (written, key) = decoded.accepted_job().unwrap();
        assert_eq!(written, job, "the job as intake writes it");
        assert_eq!(key, Some(record));
        // A message written by an older build does not say, and writes nothing.
        let mut old = decoded;
        old.origin = None;
        assert!(old.accepted_job().is_none());
    }

    /// The worst message the API can produce: every field the body does not carry at its bound,
    /// each character of the headers' values one that needs an escape, and a body at the
    /// largest limit configuration accepts, carrying the longest kind and callback URL.
    #[test]
    fn the_largest_envelope_is_the_bound_and_fits_in_an_sqs_message_with_the_largest_body() {
        use crate::config::MAX_PAYLOAD_LIMIT;
        use crate::queue::MAX_MESSAGE_BYTES;

        assert_eq!(
            JobMessage::MAX_ENVELOPE_BYTES,
            7_318,
            "update the docs' arithmetic"
        );
        let kind = format!("k{}", "-".repeat(Kind::MAX_LEN - 1));
        let callback = format!("https://hooks.example.com/{}", "c".repeat(2_022));
        assert_eq!(callback.len(), 2_048, "the longest URL intake accepts");
        let quotes = (JobMessage::OWNER_BUDGET - 2) / 2;
        let owner = Owner::from_stored("\"".repeat(quotes));
        assert_eq!(
            serde_json::to_string(&owner).unwrap().len(),
            JobMessage::OWNER_BUDGET
        );
        let body_without_payload = serde_json::json!({
            "kind": kind, "payload": "", "callback_url": callback,
        })
        .to_string();
        let pad = MAX_PAYLOAD_LIMIT - body_without_payload.len();
        let payload = serde_json::to_string(&"x".repeat(pad)).unwrap();
        let body =
            body_without_payload.replace(r#""payload":"""#, &format!(r#""payload":{payload}"#));
        assert_eq!(body.len(), MAX_PAYLOAD_LIMIT);

        let job = Job::pending(NewJob {
            id: JobId::generate(),
            kind: Kind::parse(&kind).unwrap(),
            owner: owner.clone(),
            priority: Priority::High,
            created_at: Timestamp::from_millis(1_795_000_000_000),
            deadline: Timestamp::from_millis(1_795_086_400_000),
            run_at: Some(Timestamp::from_millis(1_795_000_060_000)),
            payload: PayloadDigest::of(&payload),
            // The last year RFC 3339 can write: a time is 24 bytes however late it is.
            expires_at: Timestamp::from_millis(253_402_300_799_000),
            callback_url: Some(callback.clone()),
            correlation_id: Some(
                CorrelationId::parse("\"".repeat(CorrelationId::MAX_LEN).as_bytes()).unwrap(),
            ),
        });
        let record = IdempotencyRecord {
            owner,
            key: IdempotencyKey::parse("\\".repeat(IdempotencyKey::MAX_LEN).as_bytes()).unwrap(),
            fingerprint: IdempotencyRecord::fingerprint(body.as_bytes()),
            job_id: job.id,
            expires_at: job.expires_at,
        };
        let message = JobMessage::of(
            &job,
            RawValue::from_string(payload.clone()).unwrap(),
            Some(&record),
        );
        let encoded = message.encode();

        // Exactly the bound: a field added to the message, or a bound that changed, shows here.
        let from_body = quoted(kind.len()) + payload.len() + quoted(callback.len());
        assert_eq!(encoded.len(), JobMessage::MAX_ENVELOPE_BYTES + from_body);
        assert!(from_body <= body.len());
        assert!(
            encoded.len() <= MAX_MESSAGE_BYTES,
            "{} bytes, over SQS's {MAX_MESSAGE_BYTES}",
            encoded.len()
        );
        assert_eq!(JobMessage::decode(&encoded).unwrap().payload.get(), payload);
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
                run_at: None,
                correlation_id: correlation.map(|c| CorrelationId::parse(c.as_bytes()).unwrap()),
                origin: None,
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
