use std::fmt;

use serde::{Deserialize, Serialize};

/// Who submitted a job, as API Gateway's authorizer established it. Jobs are only visible to
/// their owner; requests that reach Spillway without an authorizer all share one owner.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Owner(String);

impl Owner {
    /// The owner of requests that carry no authorizer identity.
    pub fn anonymous() -> Self {
        Self("anonymous".to_owned())
    }

    /// An owner named by an authorizer (a JWT `sub`, an IAM user ARN, a Lambda authorizer's
    /// principal). Identities are opaque to Spillway; they are only compared.
    pub fn authenticated(identity: &str) -> Self {
        Self(format!("auth:{identity}"))
    }

    /// The stored form, as produced by [`Owner::authenticated`] or [`Owner::anonymous`].
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The owner as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
