//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, sent as `webhook-signature: v1,<base64>`, one
//! signature per secret, space-separated, so receivers keep verifying while a secret is rotated.
//!
//! Deliveries are never signed with the stack's secret itself, but with a key derived from it
//! for the job's owner ([`SigningKeys::for_owner`]): a webhook's body is its submitter's, so a
//! signature over it must verify only for that submitter's receivers. Otherwise one owner could
//! have Spillway sign a body shaped like another's events, capture it at its own URL, and replay
//! it to the other's receiver.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::hmac;

use crate::domain::Owner;

/// The prefix of a Standard Webhooks secret.
const PREFIX: &str = "whsec_";
/// Shortest accepted key: the specification asks for 24 to 64 random bytes.
const MIN_KEY_BYTES: usize = 24;
/// Longest accepted key.
const MAX_KEY_BYTES: usize = 64;

/// The label of the owner-key derivation; a new scheme gets a new label.
const OWNER_KEY_LABEL: &[u8] = b"spillway/webhook-signing/v1\n";

/// The signing secrets, newest first. Their bytes never appear in `Debug` output or logs.
#[derive(Clone)]
pub struct SigningKeys {
    keys: Vec<Secret>,
}

/// One secret: its bytes (to derive owners' keys and to hand an owner its own) and its HMAC key.
#[derive(Clone)]
struct Secret {
    bytes: Vec<u8>,
    key: hmac::Key,
}

impl Secret {
    fn new(bytes: Vec<u8>) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        Self { bytes, key }
    }
}

/// A secret that cannot sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Nothing was given.
    #[error("no signing secret given")]
    Empty,
    /// The system's random generator failed, so no secret could be made.
    #[error("the system's random number generator failed")]
    NoRandomness,
    /// Secret number `position` (from 1) is not base64.
    #[error("secret {position} is not `whsec_` followed by base64")]
    NotBase64 {
        /// Which secret, from 1.
        position: usize,
    },
    /// Secret number `position` decodes to a key of the wrong length.
    #[error(
        "secret {position} holds {len} bytes; use {MIN_KEY_BYTES} to {MAX_KEY_BYTES} random bytes"
    )]
    BadLength {
        /// Which secret, from 1.
        position: usize,
        /// Its length in bytes.
        len: usize,
    },
}

impl SigningKeys {
    /// Parses whitespace-separated secrets (`whsec_<base64>`, the prefix optional). During a
    /// rotation list the new secret and the old one; every delivery carries a signature by each.
    pub fn parse(secrets: &str) -> Result<Self, SecretError> {
        let keys = secrets
            .split_whitespace()
            .enumerate()
            .map(|(index, secret)| {
                let position = index + 1;
                let encoded = secret.strip_prefix(PREFIX).unwrap_or(secret);
                let bytes = BASE64
                    .decode(encoded)
                    .map_err(|_| SecretError::NotBase64 { position })?;
                if !(MIN_KEY_BYTES..=MAX_KEY_BYTES).contains(&bytes.len()) {
                    return Err(SecretError::BadLength {
                        position,
                        len: bytes.len(),
                    });
                }
                Ok(Secret::new(bytes))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(SecretError::Empty);
        }
        Ok(Self { keys })
    }

    /// A new random secret (32 bytes from the system's generator), as `whsec_<base64>`, and its
    /// keys.
    pub fn generate() -> Result<(String, Self), SecretError> {
        let mut bytes = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| SecretError::NoRandomness)?;
        let secret = format!("{PREFIX}{}", BASE64.encode(bytes));
        let keys = Self::parse(&secret)?;
        Ok((secret, keys))
    }

    /// The keys that sign `owner`'s deliveries: for each secret, HMAC-SHA256 keyed by the secret
    /// over `spillway/webhook-signing/v1\n` and the owner's stored name (32 bytes). A rotation of
    /// the stack's secrets rotates every owner's keys with it, in the same order.
    pub fn for_owner(&self, owner: &Owner) -> Self {
        let keys = self
            .keys
            .iter()
            .map(|secret| {
                let mut context = hmac::Context::with_key(&secret.key);
                context.update(OWNER_KEY_LABEL);
                context.update(owner.as_str().as_bytes());
                Secret::new(context.sign().as_ref().to_vec())
            })
            .collect();
        Self { keys }
    }

    /// The secrets as receivers configure them, `whsec_<base64>`, newest first: for an owner's
    /// keys, what that owner's receivers verify with.
    pub fn secrets(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|secret| format!("{PREFIX}{}", BASE64.encode(&secret.bytes)))
            .collect()
    }

    /// The `webhook-signature` header value for one delivery.
    pub fn sign(&self, id: &str, timestamp: u64, body: &[u8]) -> String {
        let prefix = format!("{id}.{timestamp}.");
        let mut header = String::new();
        for secret in &self.keys {
            let mut context = hmac::Context::with_key(&secret.key);
            context.update(prefix.as_bytes());
            context.update(body);
            if !header.is_empty() {
                header.push(' ');
            }
            header.push_str("v1,");
            BASE64.encode_string(context.sign().as_ref(), &mut header);
        }
        header
    }

    /// How many secrets sign each delivery.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true: parsing refuses an empty list.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeys({} secret(s), redacted)", self.keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification's reference test suite.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn signatures_match_the_specifications_test_vector() {
        let keys = SigningKeys::parse(SECRET).unwrap();
        let signature = keys.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_secret_of_a_rotation_signs() {
        let other = format!("whsec_{}", BASE64.encode([7u8; 32]));
        let keys = SigningKeys::parse(&format!("{other}  {SECRET}")).unwrap();
        let header = keys.sign("msg_1", 1, b"{}");
        let parts: Vec<_> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.starts_with("v1,")));
        assert_eq!(
            parts[1],
            SigningKeys::parse(SECRET).unwrap().sign("msg_1", 1, b"{}")
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn each_owner_signs_with_a_key_of_its_own_that_its_secret_reproduces() {
        let stack = SigningKeys::parse(SECRET).unwrap();
        let alice = Owner::iam("arn:aws:iam::123456789012:user/alice");
        let bob = Owner::iam("arn:aws:iam::123456789012:user/bob");
        let signed = stack.for_owner(&alice).sign("msg_1", 1, b"{}");
        assert_ne!(signed, stack.for_owner(&bob).sign("msg_1", 1, b"{}"));
        assert_ne!(
            signed,
            stack.sign("msg_1", 1, b"{}"),
            "never the stack's own key"
        );
        // What the owner is handed verifies what it receives, and is the same every time.
        let handed = stack.for_owner(&alice).secrets();
        assert_eq!(handed, stack.for_owner(&alice).secrets());
        let receiver = SigningKeys::parse(&handed.join(" ")).unwrap();
        assert_eq!(receiver.sign("msg_1", 1, b"{}"), signed);
    }

    #[test]
    fn a_rotation_rotates_every_owners_keys_in_the_same_order() {
        let old = SigningKeys::parse(SECRET).unwrap();
        let new = format!("whsec_{}", BASE64.encode([9u8; 32]));
        let both = SigningKeys::parse(&format!("{new} {SECRET}")).unwrap();
        let owner = Owner::anonymous();
        let secrets = both.for_owner(&owner).secrets();
        assert_eq!(secrets.len(), 2);
        assert_eq!(secrets[1], old.for_owner(&owner).secrets()[0]);
        assert_ne!(secrets[0], secrets[1]);
    }

    #[test]
    fn generated_secrets_are_fresh_and_parse() {
        let (first, keys) = SigningKeys::generate().unwrap();
        let (second, _) = SigningKeys::generate().unwrap();
        assert!(first.starts_with("whsec_") && first != second);
        assert_eq!(
            keys.sign("m", 1, b""),
            SigningKeys::parse(&first).unwrap().sign("m", 1, b"")
        );
    }

    #[test]
    fn bad_secrets_are_named_by_position_and_never_printed() {
        assert_eq!(SigningKeys::parse("  ").unwrap_err(), SecretError::Empty);
        assert_eq!(
            SigningKeys::parse(&format!("{SECRET} whsec_***")).unwrap_err(),
            SecretError::NotBase64 { position: 2 }
        );
        assert_eq!(
            SigningKeys::parse("whsec_c2hvcnQ=").unwrap_err(),
            SecretError::BadLength {
                position: 1,
                len: 5
            }
        );
        let keys = SigningKeys::parse(SECRET).unwrap();
        assert!(!format!("{keys:?}").contains("MfKQ"));
    }
}
