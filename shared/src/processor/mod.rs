//! Processors: the work behind each job kind, and the registry that maps kinds to them.
//!
//! Adding a kind is one `Processor` impl and one `.with(...)` line in [`Processors::builtin`].

mod echo;
mod sleep;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use serde_json::value::RawValue;

pub use echo::Echo;
pub use sleep::Sleep;

use crate::config::WebhookSettings;
use crate::domain::{JobId, Kind, Owner, Timestamp};
use crate::webhook::Webhook;

/// One run of one job, as its processor sees it.
#[derive(Debug)]
pub struct Work {
    /// The job's id: a processor that calls out should pass it on as an idempotency key, so a
    /// retried attempt is recognised downstream.
    pub job_id: JobId,
    /// The job's kind.
    pub kind: Kind,
    /// The payload exactly as submitted.
    pub payload: Box<RawValue>,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The job's deadline.
    pub deadline: Timestamp,
    /// Who submitted the job: whatever a processor signs or sends on its behalf is scoped to it.
    pub owner: Owner,
}

/// Why a run did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// Worth trying again later (a timeout, a 503, a throttle).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// How long the downstream asked us to wait, if it said; wins over the backoff when
        /// longer.
        retry_after: Option<Duration>,
    },
    /// Will fail the same way every time (a bad payload, a 400).
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl ProcessError {
    /// A retryable error with no delay of its own.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent error.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// Why intake refuses a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The payload is malformed (`400`).
    #[error("{0}")]
    Invalid(String),
    /// The payload is well-formed but asks for something this deployment forbids, such as a
    /// webhook to a private address (`422`).
    #[error("{0}")]
    Forbidden(String),
}

/// The work behind one job kind.
#[async_trait]
pub trait Processor: Send + Sync + std::fmt::Debug {
    /// Checks a payload at intake, so a job that can never run is refused with `400` instead of
    /// being accepted. The default accepts any payload.
    fn validate(&self, payload: &RawValue) -> Result<(), String> {
        let _ = payload;
        Ok(())
    }

    /// What intake calls: [`validate`](Self::validate), its error a `400`. A processor that can
    /// also refuse a well-formed payload as forbidden (`422`) overrides this.
    fn admit(&self, payload: &RawValue) -> Result<(), Rejection> {
        self.validate(payload).map_err(Rejection::Invalid)
    }

    /// Runs the job and returns its result. It may run more than once for one job (at-least-once
    /// delivery), so its effect should be idempotent on `work.job_id`.
    async fn process(&self, work: &Work) -> Result<Value, ProcessError>;
}

/// The processors a deployment knows, by kind.
#[derive(Debug, Clone, Default)]
pub struct Processors {
    by_kind: HashMap<Kind, Arc<dyn Processor>>,
    webhook: Option<Webhook>,
}

impl Processors {
    /// No processors.
    pub fn new() -> Self {
        Self::default()
    }

    /// The processors that ship with Spillway, the `webhook` one on default settings and without
    /// a signing secret. Register your own kinds here.
    pub fn builtin() -> Self {
        Self::builtin_with(Webhook::new(WebhookSettings::default(), None))
    }

    /// The processors a deployed stack runs: `webhook`, and the demonstration kinds `echo` and
    /// `sleep` only when `demo_kinds` is on (`SPILLWAY_DEMO_KINDS`).
    pub fn deployed(webhook: Webhook, demo_kinds: bool) -> Self {
        if demo_kinds {
            return Self::builtin_with(webhook);
        }
        let mut processors = Self::new().with(crate::webhook::KIND, webhook.clone());
        processors.webhook = Some(webhook);
        processors
    }

    /// The processors that ship with Spillway, with this `webhook` processor.
    pub fn builtin_with(webhook: Webhook) -> Self {
        let mut processors = Self::new()
            .with("echo", Echo)
            .with("sleep", Sleep)
            .with(crate::webhook::KIND, webhook.clone());
        processors.webhook = Some(webhook);
        processors
    }

    /// Adds (or replaces) the processor for `kind`.
    ///
    /// # Panics
    /// When `kind` is not a valid kind name: registrations are literals in code, so this fails on
    /// the first run of any test.
    #[allow(clippy::expect_used)]
    pub fn with(mut self, kind: &str, processor: impl Processor + 'static) -> Self {
        let kind = Kind::parse(kind).expect("registered kind names are valid");
        if kind.as_str() == crate::webhook::KIND {
            // Another processor under the webhook kind: callbacks go through it as well, but
            // their URLs are no longer checked by Spillway's guard at intake.
            self.webhook = None;
        }
        self.by_kind.insert(kind, Arc::new(processor));
        self
    }

    /// The processor for `kind`.
    pub fn get(&self, kind: &Kind) -> Option<&Arc<dyn Processor>> {
        self.by_kind.get(kind)
    }

    /// The `webhook` processor, when it is Spillway's own (callbacks are delivered by it).
    pub fn webhook(&self) -> Option<&Webhook> {
        self.webhook.as_ref()
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&Kind> {
        let mut kinds: Vec<_> = self.by_kind.keys().collect();
        kinds.sort();
        kinds
    }
}
