//! Kinds declared in configuration: the document `SPILLWAY_KINDS` holds (the template's `Kinds`),
//! read by intake and the consumers at cold start, each kind backed by a target.
//!
//! ```json
//! {
//!   "resize": {"target": {"lambda": "arn:aws:lambda:eu-west-1:123456789012:function:resize:live"},
//!              "timeout_seconds": 60, "max_attempts": 3, "ttl_seconds": 900, "max_concurrency": 5},
//!   "ledger": {"target": {"http": "https://ledger.internal.example/jobs"}},
//!   "echo":   {"target": "builtin"}
//! }
//! ```
//!
//! - `lambda`: a function invoked synchronously with the job as its event ([`LambdaTarget`]).
//! - `http`: an internal endpoint the job is posted to, as a webhook is ([`HttpTarget`]).
//! - `builtin`: a kind Spillway ships, turned on (with the limits given) whatever
//!   `SPILLWAY_DEMO_KINDS` says.
//!
//! A lambda or http kind may not take the name of a kind Spillway ships; a builtin one must.

mod http;
mod lambda;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub use http::HttpTarget;
pub use lambda::{LambdaTarget, PERMANENT_ERROR, answered, client as lambda_client, not_invoked};

use crate::domain::{CorrelationId, Kind, Timestamp};
use crate::processor::{Limits, Processor, Processors, Work};
use crate::webhook::{Allowlist, Webhook};

/// The longest `timeout_seconds`: Lambda's own longest timeout, and far beyond any consumer's.
pub const MAX_TIMEOUT_SECONDS: u64 = 900;
/// The most attempts a kind may ask for, as `SPILLWAY_MAX_ATTEMPTS` allows.
pub const MAX_ATTEMPTS: u32 = 1000;
/// The most of a kind's jobs that `max_concurrency` may let run at once: Lambda's default
/// concurrency per account and region, and a few dozen kilobytes of holds in the kind's slots item.
pub const MAX_CONCURRENCY: u32 = 1000;

/// The kinds a stack declares, by name, checked: each name a valid kind, each target well-formed,
/// each limit within its bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declarations(
    BTreeMap<Kind, Declaration>,
    BTreeMap<Kind, FanoutDeclaration>,
);

/// A fan-out kind: its targets' names, in order, each run by the declared kind
/// `<kind>--<name>` that parsing adds, and its limits, which its children share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanoutDeclaration {
    /// Each target's name and its children's kind.
    pub targets: Vec<(String, Kind)>,
    /// The kind's limits: each child's.
    pub limits: Limits,
}

/// The fewest and most targets a fan-out kind may have.
pub const FANOUT_TARGETS: std::ops::RangeInclusive<usize> = 2..=10;

/// One declared kind: what runs it, and its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    /// What runs its jobs.
    pub target: Target,
    /// What it asks of the pipeline in place of the stack's settings.
    pub limits: Limits,
}

/// What runs a declared kind's jobs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A Lambda function, by its ARN or an alias's (or version's) ARN.
    Lambda(String),
    /// An HTTP endpoint, which the webhook allowlist must let the consumer reach.
    Http(String),
    /// The kind Spillway ships under the same name.
    Builtin,
}

/// A declaration as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    target: Option<Target>,
    targets: Option<BTreeMap<String, Box<RawValue>>>,
    timeout_seconds: Option<u64>,
    max_attempts: Option<u32>,
    ttl_seconds: Option<u64>,
    max_concurrency: Option<u32>,
}

/// A fan-out's target as written: what runs it, and limits of its own, which replace the kind's
/// for its children.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WrittenTarget {
    lambda: Option<String>,
    http: Option<String>,
    timeout_seconds: Option<u64>,
    max_attempts: Option<u32>,
    max_concurrency: Option<u32>,
}

/// The names of the kinds Spillway ships.
fn shipped() -> Vec<String> {
    crate::kinds::builtin()
        .kinds()
        .iter()
        .map(|kind| kind.to_string())
        .collect()
}

impl Declarations {
    /// Parses the document: a JSON object from kind name to declaration. Blank is no kinds.
    /// The error names the kind and what is wrong with it.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.trim().is_empty() {
            return Ok(Self::default());
        }
        let written: BTreeMap<String, Box<RawValue>> = serde_json::from_str(raw).map_err(|e| {
            format!(r#"expected a JSON object of kinds, {{"name": {{"target": ...}}}}: {e}"#)
        })?;
        let shipped = shipped();
        let mut kinds = BTreeMap::new();
        let mut fanouts = BTreeMap::new();
        for (name, declaration) in written {
            let kind = Kind::parse(&name).map_err(|e| format!("kind `{name}`: {e}"))?;
            if name.contains(crate::domain::CHILD_KIND_SEPARATOR) {
                return Err(format!(
                    "kind `{name}`: `--` is kept for the kinds of fan-out children: name it \
                     otherwise"
                ));
            }
            let parsed = Declaration::parse(declaration.get(), shipped.contains(&name))
                .map_err(|problem| format!("kind `{name}`: {problem}"))?;
            match parsed {
                Parsed::One(declaration) => {
                    kinds.insert(kind, declaration);
                }
                Parsed::Fanout(targets, limits) => {
                    let mut children = Vec::with_capacity(targets.len());
                    for (target_name, (target, limits)) in targets {
                        let child = crate::domain::child_kind(&kind, &target_name)
                            .map_err(|e| format!("kind `{name}`, target `{target_name}`: {e}"))?;
                        kinds.insert(child.clone(), Declaration { target, limits });
                        children.push((target_name, child));
                    }
                    fanouts.insert(
                        kind,
                        FanoutDeclaration {
                            targets: children,
                            limits,
                        },
                    );
                }
            }
        }
        Ok(Self(kinds, fanouts))
    }

    /// Whether no kind is declared.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The declared kinds, by name, fan-out children's kinds among them (not fan-out kinds).
    pub fn iter(&self) -> impl Iterator<Item = (&Kind, &Declaration)> {
        self.0.iter()
    }

    /// The fan-out kinds, by name.
    pub fn fanouts(&self) -> impl Iterator<Item = (&Kind, &FanoutDeclaration)> {
        self.1.iter()
    }

    /// The functions of the `lambda` kinds.
    pub fn functions(&self) -> impl Iterator<Item = (&Kind, &str)> {
        self.iter()
            .filter_map(|(kind, declaration)| match &declaration.target {
                Target::Lambda(function) => Some((kind, function.as_str())),
                _ => None,
            })
    }

    /// `Err` naming the first `lambda` kind whose function is not among `granted`, the
    /// functions the stack's role may invoke: it would fail at its first job, and fails now.
    pub fn check_grants(&self, granted: &[String]) -> Result<(), String> {
        match self
            .functions()
            .find(|(_, function)| !granted.iter().any(|g| g == function))
        {
            Some((kind, function)) => Err(format!(
                "kind `{kind}`: its function {function} is not among the functions this stack \
                 may invoke (SPILLWAY_LAMBDA_TARGET_ARNS, the template's LambdaTargetArns): add \
                 it there"
            )),
            None => Ok(()),
        }
    }

    /// `Err` naming the first declared kind that `compiled` (a crate's own kinds) has too: a
    /// kind has one meaning, whichever way it is given.
    pub fn refuse_compiled(&self, compiled: &Processors) -> Result<(), String> {
        match self
            .0
            .keys()
            .chain(self.1.keys())
            .find(|kind| compiled.get(kind).is_some())
        {
            Some(kind) => Err(format!(
                "kind `{kind}` is compiled into this function too: declare it under another name"
            )),
            None => Ok(()),
        }
    }

    /// `Err` naming the first `http` kind whose URL `allow` (the webhook allowlist) refuses.
    pub fn check_urls(&self, allow: &Allowlist) -> Result<(), String> {
        for (kind, declaration) in self.iter() {
            if let Target::Http(url) = &declaration.target {
                allow.check_url(url).map_err(|refusal| {
                    format!(
                        "kind `{kind}`: its URL is refused: {refusal} (an internal endpoint \
                         must be in SPILLWAY_WEBHOOK_ALLOW, the template's WebhookAllow)"
                    )
                })?;
            }
        }
        Ok(())
    }

    /// The processors of the declared kinds: `builtin` ones taken from `shipped`, `lambda` ones
    /// invoking through the client `lambda` makes (only called when there is one), `http` ones
    /// delivering through `webhook`.
    pub fn processors(
        &self,
        shipped: &Processors,
        webhook: &Webhook,
        lambda: impl FnOnce() -> aws_sdk_lambda::Client,
    ) -> Processors {
        self.build(shipped, webhook, Some(lambda))
    }

    /// The processors intake needs, to admit the declared kinds' payloads: as
    /// [`Declarations::processors`], but a `lambda` kind's invokes nothing and needs no client,
    /// as intake never runs a job.
    pub fn admitting(&self, shipped: &Processors, webhook: &Webhook) -> Processors {
        self.build(shipped, webhook, None::<fn() -> aws_sdk_lambda::Client>)
    }

    fn build(
        &self,
        shipped: &Processors,
        webhook: &Webhook,
        lambda: Option<impl FnOnce() -> aws_sdk_lambda::Client>,
    ) -> Processors {
        let lambda = lambda
            .filter(|_| self.functions().next().is_some())
            .map(|make| make());
        let mut processors = Processors::new();
        for (kind, declaration) in self.iter() {
            let processor: Arc<dyn Processor> = match &declaration.target {
                // Parsing took only shipped names for builtin kinds.
                Target::Builtin => match shipped.get(kind) {
                    Some(processor) => processor.clone(),
                    None => continue,
                },
                Target::Lambda(function) => match &lambda {
                    Some(client) => Arc::new(LambdaTarget::new(client.clone(), function)),
                    None => Arc::new(AdmitOnly),
                },
                Target::Http(url) => Arc::new(HttpTarget::new(webhook.clone(), url)),
            };
            processors.insert(kind.clone(), processor, declaration.limits);
        }
        for (kind, fanout) in self.fanouts() {
            processors.insert_fanout(kind.clone(), fanout.targets.clone(), fanout.limits);
        }
        processors
    }
}

/// What stands for a `lambda` kind in intake, which admits its jobs and runs none: it takes any
/// payload, as the function behind the kind is the one to judge it.
#[derive(Debug)]
struct AdmitOnly;

#[async_trait::async_trait]
impl Processor for AdmitOnly {
    async fn process(
        &self,
        _work: &Work,
    ) -> Result<serde_json::Value, crate::processor::ProcessError> {
        Err(crate::processor::ProcessError::retryable(
            "a lambda kind runs in a consumer, which invokes its function; this function does not",
        ))
    }
}

/// A declaration as parsed: one target, or a fan-out's named targets with the limits they share.
enum Parsed {
    One(Declaration),
    Fanout(BTreeMap<String, (Target, Limits)>, Limits),
}

impl Declaration {
    fn parse(raw: &str, shipped_name: bool) -> Result<Parsed, String> {
        let written: Written = serde_json::from_str(raw).map_err(|e| {
            format!(
                r#"expected {{"target": {{"lambda": ARN}} | {{"http": URL}} | "builtin" (or "targets": {{NAME: {{"lambda": ARN}} | {{"http": URL}} (with limits of its own), ...}}), "timeout_seconds"?, "max_attempts"?, "ttl_seconds"?, "max_concurrency"?}}: {e}"#
            )
        })?;
        let limits = limits(
            written.timeout_seconds,
            written.max_attempts,
            written.ttl_seconds,
            written.max_concurrency,
        )?;
        let target = match (written.target, written.targets) {
            (Some(target), None) => target,
            (None, Some(targets)) => return Self::fanout(targets, limits),
            _ => return Err(r#"give either "target" or "targets", one of them"#.into()),
        };
        match (&target, shipped_name) {
            (Target::Builtin, false) => {
                return Err(
                    "a builtin target names a kind Spillway ships (webhook, echo, sleep)".into(),
                );
            }
            (Target::Lambda(_) | Target::Http(_), true) => {
                return Err(
                    "the name of a kind Spillway ships (webhook, echo, sleep) may only \
                            be declared with the builtin target: name it otherwise"
                        .into(),
                );
            }
            (Target::Lambda(function), false) => check_function_arn(function)?,
            _ => {}
        }
        Ok(Parsed::One(Self { target, limits }))
    }

    /// A fan-out's targets, checked: 2 to 10, each named as a kind is, each `lambda` or `http`,
    /// each with the kind's `limits` but for those it sets itself.
    fn fanout(written: BTreeMap<String, Box<RawValue>>, limits: Limits) -> Result<Parsed, String> {
        if !FANOUT_TARGETS.contains(&written.len()) {
            return Err(format!(
                "a fan-out has {} to {} targets",
                FANOUT_TARGETS.start(),
                FANOUT_TARGETS.end()
            ));
        }
        let mut targets = BTreeMap::new();
        for (name, raw) in written {
            Kind::parse(&name).map_err(|e| format!("target `{name}`: {e}"))?;
            let target = fanout_target(&raw, limits)
                .map_err(|problem| format!("target `{name}`: {problem}"))?;
            targets.insert(name, target);
        }
        Ok(Parsed::Fanout(targets, limits))
    }
}

/// The limits a declaration (or a fan-out's target) sets, each within its bounds.
fn limits(
    timeout_seconds: Option<u64>,
    max_attempts: Option<u32>,
    ttl_seconds: Option<u64>,
    max_concurrency: Option<u32>,
) -> Result<Limits, String> {
    let bounded = |name: &str, value: Option<u64>, max: u64| match value {
        Some(v) if !(1..=max).contains(&v) => Err(format!("{name} must be 1 to {max}")),
        _ => Ok(value),
    };
    let timeout = bounded("timeout_seconds", timeout_seconds, MAX_TIMEOUT_SECONDS)?;
    let attempts = bounded(
        "max_attempts",
        max_attempts.map(u64::from),
        MAX_ATTEMPTS.into(),
    )?;
    let ttl = bounded("ttl_seconds", ttl_seconds, u64::MAX)?;
    let concurrency = bounded(
        "max_concurrency",
        max_concurrency.map(u64::from),
        MAX_CONCURRENCY.into(),
    )?;
    Ok(Limits {
        max_attempts: attempts.and_then(|a| u32::try_from(a).ok()),
        default_ttl: ttl.map(Duration::from_secs),
        timeout: timeout.map(Duration::from_secs),
        max_concurrency: concurrency.and_then(|c| u32::try_from(c).ok()),
    })
}

/// One fan-out target, checked: `{"lambda": ARN}` or `{"http": URL}`, with `timeout_seconds`,
/// `max_attempts` and `max_concurrency` of its own in place of the kind's (`kind`). A child's
/// deadline is its parent's, so a target sets no `ttl_seconds`.
fn fanout_target(raw: &RawValue, kind: Limits) -> Result<(Target, Limits), String> {
    if matches!(serde_json::from_str(raw.get()), Ok(Target::Builtin)) {
        return Err("a fan-out's targets are lambda or http targets".into());
    }
    let written: WrittenTarget = serde_json::from_str(raw.get()).map_err(|e| {
        format!(
            r#"expected {{"lambda": ARN}} or {{"http": URL}}, with "timeout_seconds"?, "max_attempts"?, "max_concurrency"?: {e}"#
        )
    })?;
    let target = match (written.lambda, written.http) {
        (Some(function), None) => {
            check_function_arn(&function)?;
            Target::Lambda(function)
        }
        (None, Some(url)) => Target::Http(url),
        _ => return Err(r#"give either "lambda" or "http", one of them"#.into()),
    };
    let own = limits(
        written.timeout_seconds,
        written.max_attempts,
        None,
        written.max_concurrency,
    )?;
    let limits = Limits {
        max_attempts: own.max_attempts.or(kind.max_attempts),
        default_ttl: kind.default_ttl,
        timeout: own.timeout.or(kind.timeout),
        max_concurrency: own.max_concurrency.or(kind.max_concurrency),
    };
    Ok((target, limits))
}

/// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME`, with an optional `:QUALIFIER`: the form
/// an IAM policy's `Resource` names, so the grant can be checked against it.
fn check_function_arn(arn: &str) -> Result<(), String> {
    let parts: Vec<&str> = arn.split(':').collect();
    let valid = matches!(
        parts.as_slice(),
        ["arn", partition, "lambda", region, account, "function", name, rest @ ..]
            if !partition.is_empty()
                && !region.is_empty()
                && account.len() == 12
                && account.bytes().all(|b| b.is_ascii_digit())
                && !name.is_empty()
                && rest.len() <= 1
                && rest.iter().all(|q| !q.is_empty())
    );
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{arn}` is not a Lambda function ARN \
             (arn:aws:lambda:REGION:ACCOUNT:function:NAME[:ALIAS])"
        ))
    }
}

/// The event a target receives for one run of a job:
/// `{"id", "kind", "payload", "attempt", "deadline", "correlation_id"}`.
#[derive(Debug, Serialize)]
struct Event<'a> {
    id: String,
    kind: &'a Kind,
    payload: &'a RawValue,
    attempt: u32,
    deadline: Timestamp,
    correlation_id: Option<&'a CorrelationId>,
}

/// [`Event`] of `work`, as JSON.
fn event(work: &Work) -> String {
    let event = Event {
        id: work.job_id.to_string(),
        kind: &work.kind,
        payload: &work.payload,
        attempt: work.attempt,
        deadline: work.deadline,
        correlation_id: work.correlation_id.as_ref(),
    };
    // A struct of strings, numbers and a JSON value always serializes.
    serde_json::to_string(&event).unwrap_or_default()
}

#[cfg(test)]
mod tests;
