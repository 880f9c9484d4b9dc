use std::fmt;

use serde::{Deserialize, Serialize};

/// Who submitted a job, as API Gateway's authorizer established it. Jobs are only visible to
/// their owner, idempotency keys are scoped to it, and webhooks are signed with a key derived for
/// it. Identities are opaque to Spillway: they are only compared, and each kind has its own
/// prefix, so no identity of one kind can equal one of another.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// The one owner every caller shares when the API has no authorization (`ApiAuth=NONE`, a
    /// demonstration mode in which a job id is all it takes to read or cancel a job).
    pub fn anonymous() -> Self {
        Self("anonymous".to_owned())
    }

    /// An IAM caller, by the ARN API Gateway's IAM authorization reports. A role's sessions are
    /// one owner, the role: a session name is chosen by whoever assumes the role, so it names no
    /// tenant, and jobs must not vanish when the same role asks again under another session.
    pub fn iam(principal_arn: &str) -> Self {
        Self::authenticated(&role_of_session(principal_arn))
    }

    /// A JWT bearer, by its token's issuer and subject: a `sub` is unique only within its issuer.
    /// The issuer's length is part of the name, so no two (issuer, subject) pairs share it.
    pub fn jwt(issuer: &str, subject: &str) -> Self {
        Self(format!("jwt:{}:{issuer}{subject}", issuer.len()))
    }

    /// An owner named by an identity of the kind the IAM authorizer reports. Prefer
    /// [`Owner::iam`], which also folds a role's sessions into the role.
    pub fn authenticated(identity: &str) -> Self {
        Self(format!("auth:{identity}"))
    }

    /// The owner's key for SQS fair queues (`MessageGroupId`): the first 128 bits of the
    /// SHA-256 of its name, in hex. Opaque, so the queue's console and its API show no tenant's
    /// identity, and always within what SQS accepts (at most 128 characters, and only
    /// alphanumerics and punctuation) whatever an issuer puts in a subject.
    pub fn fairness_key(&self) -> String {
        use sha2::{Digest as _, Sha256};
        hex::encode(&Sha256::digest(self.0.as_bytes())[..16])
    }

    /// The stored form, as produced by the constructors above.
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The owner as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` as the role's
/// `arn:PARTITION:iam::ACCOUNT:role/ROLE`; any other ARN as it is.
fn role_of_session(arn: &str) -> String {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if let [prefix, partition, "sts", "", account, resource] = parts.as_slice()
        && let Some(rest) = resource.strip_prefix("assumed-role/")
        && let Some((role, _session)) = rest.split_once('/')
    {
        return format!("{prefix}:{partition}:iam::{account}:role/{role}");
    }
    arn.to_owned()
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sessions_of_a_role_are_one_owner() {
        let one = Owner::iam("arn:aws:sts::123456789012:assumed-role/orders/ci-run-1");
        let two = Owner::iam("arn:aws:sts::123456789012:assumed-role/orders/i-0abc");
        assert_eq!(one, two);
        assert_eq!(one.as_str(), "auth:arn:aws:iam::123456789012:role/orders");
        assert_ne!(
            one,
            Owner::iam("arn:aws:sts::123456789012:assumed-role/billing/ci-run-1")
        );
        assert_ne!(
            one,
            Owner::iam("arn:aws:sts::210987654321:assumed-role/orders/ci-run-1")
        );
        let china = Owner::iam("arn:aws-cn:sts::123456789012:assumed-role/orders/s");
        assert_eq!(
            china.as_str(),
            "auth:arn:aws-cn:iam::123456789012:role/orders"
        );
    }

    #[test]
    fn users_and_other_principals_keep_their_arn() {
        let user = "arn:aws:iam::123456789012:user/ci";
        assert_eq!(Owner::iam(user), Owner::authenticated(user));
        let federated = "arn:aws:sts::123456789012:federated-user/alice";
        assert_eq!(Owner::iam(federated), Owner::authenticated(federated));
    }

    #[test]
    fn jwt_owners_cannot_be_confused_across_issuers_or_kinds() {
        let a = Owner::jwt("https://idp.example/a", "bc");
        let b = Owner::jwt("https://idp.example/ab", "c");
        assert_ne!(a, b);
        assert_ne!(Owner::jwt("x", "y"), Owner::authenticated("x"));
        assert_ne!(Owner::jwt("anonymous", ""), Owner::anonymous());
    }
}
