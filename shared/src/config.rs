//! Settings read once at cold start from `SPILLWAY_*` environment variables. Each function reads
//! only the variables it uses ([`Function::variables`]), and `infra/template.yaml` gives each
//! exactly those: the deployment test (`tests/deployment`) checks both.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::domain::{JobMessage, Lanes, Priority};
use crate::targets::Declarations;
use crate::webhook::{Allowlist, WebhookSettings};

/// One of Spillway's Lambda functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `POST /jobs`.
    Intake,
    /// The work queue's consumer.
    Consumer,
    /// `GET` and `DELETE /jobs/{id}`.
    Status,
}

impl Function {
    /// The three functions.
    pub const ALL: [Self; 3] = [Self::Intake, Self::Consumer, Self::Status];

    /// The binary's name, as `Cargo.toml` and the template's `BuildProperties` name it.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Consumer => "consumer",
            Self::Status => "status",
        }
    }

    /// Every `SPILLWAY_*` variable the function reads; it reads no other. A required one (the
    /// table for all, the queue URLs for intake and the consumer) stops its cold start when
    /// missing; the others have defaults.
    pub fn variables(self) -> &'static [&'static str] {
        match self {
            Self::Intake => &[
                "SPILLWAY_TABLE",
                "SPILLWAY_QUEUE_URL",
                "SPILLWAY_HIGH_QUEUE_URL",
                "SPILLWAY_DEFAULT_TTL_SECONDS",
                "SPILLWAY_HIGH_DEFAULT_TTL_SECONDS",
                "SPILLWAY_MAX_TTL_SECONDS",
                "SPILLWAY_MAX_PAYLOAD_BYTES",
                "SPILLWAY_RETENTION_SECONDS",
                "SPILLWAY_BACKLOG_LIMIT",
                "SPILLWAY_HIGH_BACKLOG_LIMIT",
                "SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER",
                "SPILLWAY_DEMO_KINDS",
                "SPILLWAY_API_AUTH",
                // Webhook URLs and `callback_url` are checked against the SSRF guard at intake.
                "SPILLWAY_WEBHOOK_ALLOW",
                "SPILLWAY_METRICS_NAMESPACE",
                // The kinds declared in configuration, and the functions they may invoke: intake
                // accepts exactly the kinds the consumers run.
                "SPILLWAY_KINDS",
                "SPILLWAY_LAMBDA_TARGET_ARNS",
            ],
            Self::Consumer => &[
                "SPILLWAY_TABLE",
                // The queue it consumes, and which lane that queue is: the template deploys one
                // consumer per lane.
                "SPILLWAY_QUEUE_URL",
                "SPILLWAY_PRIORITY",
                // The deadline of the callback jobs the consumer creates, by lane.
                "SPILLWAY_DEFAULT_TTL_SECONDS",
                "SPILLWAY_HIGH_DEFAULT_TTL_SECONDS",
                "SPILLWAY_RETENTION_SECONDS",
                "SPILLWAY_MAX_ATTEMPTS",
                "SPILLWAY_MAX_RECEIVE_COUNT",
                "SPILLWAY_BACKOFF_BASE_SECONDS",
                "SPILLWAY_BACKOFF_MAX_SECONDS",
                "SPILLWAY_CONSUMER_CONCURRENCY",
                // Its queue's visibility timeout, which the heartbeats of long jobs renew.
                "SPILLWAY_VISIBILITY_TIMEOUT_SECONDS",
                "SPILLWAY_DEMO_KINDS",
                "SPILLWAY_WEBHOOK_ALLOW",
                "SPILLWAY_WEBHOOK_TIMEOUT_MS",
                "SPILLWAY_WEBHOOK_CONNECT_TIMEOUT_MS",
                "SPILLWAY_WEBHOOK_BREAKER_FAILURES",
                "SPILLWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS",
                "SPILLWAY_WEBHOOK_SECRET_ARN",
                "SPILLWAY_METRICS_NAMESPACE",
                "SPILLWAY_KINDS",
                "SPILLWAY_LAMBDA_TARGET_ARNS",
            ],
            Self::Status => &[
                "SPILLWAY_TABLE",
                "SPILLWAY_API_AUTH",
                // Owners' own webhook secrets are derived from it (GET /webhook-secret).
                "SPILLWAY_WEBHOOK_SECRET_ARN",
                // Reading a job past its deadline, or cancelling it, makes it terminal: its
                // record is then kept this long.
                "SPILLWAY_RETENTION_SECONDS",
                "SPILLWAY_METRICS_NAMESPACE",
            ],
        }
    }
}

/// How API Gateway authorizes the API's routes (`SPILLWAY_API_AUTH`, the template's `ApiAuth`),
/// and so how the functions name a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAuth {
    /// SigV4: the caller is its IAM principal.
    AwsIam,
    /// A JWT authorizer: the caller is its token's issuer and subject.
    Jwt,
    /// No authorization: every caller is one anonymous owner (a demonstration mode).
    None,
}

impl ApiAuth {
    /// The name the template and the variable use.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwsIam => "AWS_IAM",
            Self::Jwt => "JWT",
            Self::None => "NONE",
        }
    }
}

/// Where Spillway keeps its state and work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// DynamoDB table name (`SPILLWAY_TABLE`).
    pub table: String,
    /// Each lane's queue URL, where the function is given it: intake sends to both
    /// (`SPILLWAY_QUEUE_URL`, `SPILLWAY_HIGH_QUEUE_URL`); a consumer is given the one it consumes
    /// (`SPILLWAY_QUEUE_URL`, in the lane `SPILLWAY_PRIORITY` names); status none.
    pub queue_urls: Lanes<Option<String>>,
}

/// How the handlers behave. Every field has the default the README's configuration table gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Deadline of a job that asks for none, by lane (`SPILLWAY_DEFAULT_TTL_SECONDS`,
    /// `SPILLWAY_HIGH_DEFAULT_TTL_SECONDS`).
    pub default_ttl: Lanes<Duration>,
    /// The longest deadline a client may ask for (`SPILLWAY_MAX_TTL_SECONDS`).
    pub max_ttl: Duration,
    /// Largest accepted request body (`SPILLWAY_MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Attempts before a job is `dead_lettered`, counted in the job itself
    /// (`SPILLWAY_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// The work queue's `maxReceiveCount` (`SPILLWAY_MAX_RECEIVE_COUNT`): larger than
    /// `max_attempts`, so that deliveries which ran nothing (the table unavailable, a duplicate,
    /// an invocation out of time) do not move a job that still has attempts to the DLQ.
    pub max_receive_count: u32,
    /// How long a message waits after the job store failed on its first receive; it doubles on
    /// each receive after that, up to `backoff_max`. Not read from the environment.
    pub outage_backoff: Duration,
    /// First retry delay (`SPILLWAY_BACKOFF_BASE_SECONDS`).
    pub backoff_base: Duration,
    /// Longest retry delay (`SPILLWAY_BACKOFF_MAX_SECONDS`).
    pub backoff_max: Duration,
    /// How long terminal jobs stay readable (`SPILLWAY_RETENTION_SECONDS`).
    pub retention: Duration,
    /// Each lane's queue depth above which intake answers 503 to that lane's jobs; 0 turns the
    /// check off (`SPILLWAY_BACKLOG_LIMIT`, `SPILLWAY_HIGH_BACKLOG_LIMIT`).
    pub backlog_limit: Lanes<u64>,
    /// The most active (`pending`, scheduled or `running`) jobs one owner may have; a submit
    /// beyond it is answered `429`. 0 turns the limit off
    /// (`SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER`, at most [`MAX_ACTIVE_JOBS_LIMIT`]).
    pub max_active_jobs_per_owner: u32,
    /// How many records of one batch run at once (`SPILLWAY_CONSUMER_CONCURRENCY`).
    pub consumer_concurrency: usize,
    /// The visibility timeout of the queue the consumer consumes
    /// (`SPILLWAY_VISIBILITY_TIMEOUT_SECONDS`, which the template sets from the value the queues
    /// use): how long a claim holds its job and message before a heartbeat renews both.
    pub visibility_timeout: Duration,
    /// Whether the demonstration kinds `echo` and `sleep` are accepted and run
    /// (`SPILLWAY_DEMO_KINDS`). Off in a deployed stack unless its `DemoKinds` parameter turns
    /// them on: `sleep` can hold a consumer for the whole invocation.
    pub demo_kinds: bool,
    /// How callers are authorized, and so named (`SPILLWAY_API_AUTH`): `AWS_IAM` unless told.
    pub api_auth: ApiAuth,
    /// How webhooks are delivered.
    pub webhook: WebhookSettings,
    /// The kinds declared in configuration (`SPILLWAY_KINDS`; see [`crate::targets`]), checked
    /// against the functions the stack may invoke (`SPILLWAY_LAMBDA_TARGET_ARNS`), the webhook
    /// allowlist, the longest TTL and the work queue's receive count.
    pub kinds: Declarations,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            // High-priority work is the kind whose answer is wanted soon, or not at all.
            default_ttl: Lanes {
                high: Duration::from_secs(300),
                normal: Duration::from_secs(3600),
            },
            max_ttl: Duration::from_secs(86_400),
            max_payload_bytes: MAX_PAYLOAD_LIMIT,
            max_attempts: 5,
            max_receive_count: 20,
            outage_backoff: Duration::from_secs(30),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(900),
            retention: Duration::from_secs(1_209_600),
            backlog_limit: Lanes::both(0),
            max_active_jobs_per_owner: 0,
            consumer_concurrency: 10,
            // The template's, for its default consumer timeout of 30 s.
            visibility_timeout: Duration::from_secs(180),
            demo_kinds: false,
            api_auth: ApiAuth::AwsIam,
            webhook: WebhookSettings::default(),
            kinds: Declarations::default(),
        }
    }
}

/// Everything a function reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Table and queues.
    pub resources: Resources,
    /// Behaviour.
    pub settings: Settings,
}

/// A variable that is missing or holds a value Spillway cannot use. Its message names the
/// variable, so a bad deploy stops at cold start with a line that says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// The longest deadline any variable may give a job: a year. Every time a job carries (its
/// deadline, and its record's expiry a retention after it) must stay a date RFC 3339 can write,
/// or its message could not be encoded.
const MAX_TTL_LIMIT: u64 = 31_536_000;

/// The largest `SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER`. Each submit under the limit counts the
/// owner's active jobs in the index up to the limit, so the limit bounds what that read costs:
/// 10,000 entries of the keys-only index are about a megabyte, one `Query` page. A tenant that
/// needs more than this many jobs at once is no runaway to protect against.
pub const MAX_ACTIVE_JOBS_LIMIT: u32 = 10_000;

/// The longest retention: ten years, far beyond any use and far within what a date can hold.
const MAX_RETENTION_LIMIT: u64 = 315_360_000;

/// The largest `SPILLWAY_MAX_PAYLOAD_BYTES`, and its default: 1,040,384 bytes (1016 KiB). A
/// request body travels in its job's SQS message, which SQS limits to
/// [`MAX_MESSAGE_BYTES`](crate::queue::MAX_MESSAGE_BYTES) (1 MiB) and which adds at most
/// [`JobMessage::MAX_ENVELOPE_BYTES`] (7,318) to the body, so a body of this size always fits,
/// with the longest headers and an owner within [`JobMessage::OWNER_BUDGET`]; rounded down to a
/// whole KiB, which leaves 874 bytes spare.
pub const MAX_PAYLOAD_LIMIT: usize =
    (crate::queue::MAX_MESSAGE_BYTES - JobMessage::MAX_ENVELOPE_BYTES) / 1024 * 1024;

impl Config {
    /// Reads `function`'s variables from the process environment.
    pub fn from_env(function: Function) -> Result<Self, ConfigError> {
        Self::for_function(function, |name| std::env::var(name).ok())
    }

    /// Reads `function`'s variables through `lookup`, so tests need not touch the process
    /// environment. Variables the function does not use are not even looked up: what it was not
    /// given cannot change how it behaves.
    pub fn for_function(
        function: Function,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let variables = function.variables();
        let lookup = |name: &str| {
            if variables.contains(&name) {
                lookup(name)
            } else {
                None
            }
        };
        let env = Env::new(&lookup, Some(variables));
        let table = env.required("SPILLWAY_TABLE")?;
        let queue_urls = match function {
            Function::Intake => Lanes {
                high: Some(env.required("SPILLWAY_HIGH_QUEUE_URL")?),
                normal: Some(env.required("SPILLWAY_QUEUE_URL")?),
            },
            Function::Consumer => {
                let url = env.required("SPILLWAY_QUEUE_URL")?;
                let lane = env.priority("SPILLWAY_PRIORITY")?;
                Lanes::from_fn(|priority| (priority == lane).then(|| url.clone()))
            }
            Function::Status => Lanes::default(),
        };
        let resources = Resources { table, queue_urls };
        Ok(Self {
            resources,
            settings: Settings::default().with_env(&env)?,
        })
    }
}

impl Settings {
    /// Reads the `SPILLWAY_*` behaviour variables through `lookup`; missing ones keep the
    /// defaults of `self`.
    pub fn with_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        self.with_env(&Env::new(&lookup, None))
    }

    fn with_env(self, env: &Env<'_>) -> Result<Self, ConfigError> {
        let secs = |name, default: Duration, range| {
            env.number(name, default.as_secs(), range)
                .map(Duration::from_secs)
        };
        let settings = Self {
            default_ttl: Lanes {
                high: secs(
                    "SPILLWAY_HIGH_DEFAULT_TTL_SECONDS",
                    self.default_ttl.high,
                    1..=MAX_TTL_LIMIT,
                )?,
                normal: secs(
                    "SPILLWAY_DEFAULT_TTL_SECONDS",
                    self.default_ttl.normal,
                    1..=MAX_TTL_LIMIT,
                )?,
            },
            max_ttl: secs("SPILLWAY_MAX_TTL_SECONDS", self.max_ttl, 1..=MAX_TTL_LIMIT)?,
            max_payload_bytes: max_payload_bytes(env, self.max_payload_bytes)?,
            max_attempts: env.number("SPILLWAY_MAX_ATTEMPTS", self.max_attempts, 1..=1000)?,
            max_receive_count: env.number(
                "SPILLWAY_MAX_RECEIVE_COUNT",
                self.max_receive_count,
                1..=1000,
            )?,
            outage_backoff: self.outage_backoff,
            backoff_base: secs(
                "SPILLWAY_BACKOFF_BASE_SECONDS",
                self.backoff_base,
                0..=crate::queue::MAX_VISIBILITY.as_secs(),
            )?,
            backoff_max: secs(
                "SPILLWAY_BACKOFF_MAX_SECONDS",
                self.backoff_max,
                0..=crate::queue::MAX_VISIBILITY.as_secs(),
            )?,
            retention: secs(
                "SPILLWAY_RETENTION_SECONDS",
                self.retention,
                1..=MAX_RETENTION_LIMIT,
            )?,
            backlog_limit: Lanes {
                high: env.number(
                    "SPILLWAY_HIGH_BACKLOG_LIMIT",
                    self.backlog_limit.high,
                    0..=u64::MAX,
                )?,
                normal: env.number(
                    "SPILLWAY_BACKLOG_LIMIT",
                    self.backlog_limit.normal,
                    0..=u64::MAX,
                )?,
            },
            max_active_jobs_per_owner: env.number(
                "SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER",
                self.max_active_jobs_per_owner,
                0..=MAX_ACTIVE_JOBS_LIMIT,
            )?,
            consumer_concurrency: env.number(
                "SPILLWAY_CONSUMER_CONCURRENCY",
                self.consumer_concurrency,
                1..=1000,
            )?,
            visibility_timeout: secs(
                "SPILLWAY_VISIBILITY_TIMEOUT_SECONDS",
                self.visibility_timeout,
                1..=crate::queue::MAX_VISIBILITY.as_secs(),
            )?,
            demo_kinds: env.flag("SPILLWAY_DEMO_KINDS", self.demo_kinds)?,
            api_auth: env.api_auth(self.api_auth)?,
            webhook: webhook_settings(self.webhook, env)?,
            kinds: match env.optional("SPILLWAY_KINDS") {
                None => self.kinds,
                Some(raw) => Declarations::parse(&raw).map_err(|problem| ConfigError {
                    variable: "SPILLWAY_KINDS",
                    problem,
                })?,
            },
        };
        check_kinds(&settings, env)?;
        // The consumer reads the default TTL for its callbacks but never the maximum, which only
        // bounds what clients ask intake for.
        for priority in [Priority::Normal, Priority::High] {
            let default_ttl = settings.default_ttl.get(priority);
            if env.reads("SPILLWAY_MAX_TTL_SECONDS") && *default_ttl > settings.max_ttl {
                return Err(ConfigError {
                    variable: match priority {
                        Priority::High => "SPILLWAY_HIGH_DEFAULT_TTL_SECONDS",
                        Priority::Normal => "SPILLWAY_DEFAULT_TTL_SECONDS",
                    },
                    problem: format!(
                        "{} is longer than SPILLWAY_MAX_TTL_SECONDS ({})",
                        default_ttl.as_secs(),
                        settings.max_ttl.as_secs()
                    ),
                });
            }
        }
        if env.reads("SPILLWAY_MAX_RECEIVE_COUNT")
            && settings.max_receive_count <= settings.max_attempts
        {
            return Err(ConfigError {
                variable: "SPILLWAY_MAX_RECEIVE_COUNT",
                problem: format!(
                    "{} leaves no receive above SPILLWAY_MAX_ATTEMPTS ({}) for deliveries that \
                     run nothing; a table outage would dead-letter jobs that never ran",
                    settings.max_receive_count, settings.max_attempts
                ),
            });
        }
        if settings.backoff_base > settings.backoff_max {
            return Err(ConfigError {
                variable: "SPILLWAY_BACKOFF_BASE_SECONDS",
                problem: format!(
                    "{} is longer than SPILLWAY_BACKOFF_MAX_SECONDS ({})",
                    settings.backoff_base.as_secs(),
                    settings.backoff_max.as_secs()
                ),
            });
        }
        Ok(settings)
    }

    /// Reads the `SPILLWAY_*` behaviour variables over the defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::default().with_lookup(lookup)
    }
}

/// `SPILLWAY_MAX_PAYLOAD_BYTES`: a body larger than [`MAX_PAYLOAD_LIMIT`] might not fit in its
/// job's message, and intake would refuse it after all, so such a limit stops the cold start with
/// the reason rather than promising what SQS will not carry.
fn max_payload_bytes(env: &Env<'_>, default: usize) -> Result<usize, ConfigError> {
    const NAME: &str = "SPILLWAY_MAX_PAYLOAD_BYTES";
    env.number(NAME, default, 1..=MAX_PAYLOAD_LIMIT)
        .map_err(|error| {
            let Some(bytes) = env.optional(NAME).and_then(|raw| raw.parse::<u128>().ok()) else {
                return error;
            };
            if usize::try_from(bytes).is_ok_and(|bytes| bytes <= MAX_PAYLOAD_LIMIT) {
                return error;
            }
            ConfigError {
                variable: NAME,
                problem: format!(
                    "{bytes} does not fit in an SQS message: the body travels in its job's \
                     message, which adds up to {} bytes to it and may hold {}; at most \
                     {MAX_PAYLOAD_LIMIT}",
                    JobMessage::MAX_ENVELOPE_BYTES,
                    crate::queue::MAX_MESSAGE_BYTES,
                ),
            }
        })
}

/// The declared kinds checked against the rest of the function's configuration, so that a kind
/// that could never run stops the cold start instead of failing its first job.
fn check_kinds(settings: &Settings, env: &Env<'_>) -> Result<(), ConfigError> {
    let kinds = &settings.kinds;
    let refused = |problem| ConfigError {
        variable: "SPILLWAY_KINDS",
        problem,
    };
    if env.reads("SPILLWAY_LAMBDA_TARGET_ARNS") {
        let granted: Vec<String> = env
            .optional("SPILLWAY_LAMBDA_TARGET_ARNS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|arn| !arn.is_empty())
            .map(str::to_owned)
            .collect();
        kinds.check_grants(&granted).map_err(refused)?;
    }
    kinds.check_urls(&settings.webhook.allow).map_err(refused)?;
    for (kind, declaration) in kinds.iter() {
        let limits = declaration.limits;
        if let Some(ttl) = limits.default_ttl
            && env.reads("SPILLWAY_MAX_TTL_SECONDS")
            && ttl > settings.max_ttl
        {
            return Err(refused(format!(
                "kind `{kind}`: ttl_seconds {} is longer than SPILLWAY_MAX_TTL_SECONDS ({})",
                ttl.as_secs(),
                settings.max_ttl.as_secs()
            )));
        }
        if let Some(attempts) = limits.max_attempts
            && env.reads("SPILLWAY_MAX_RECEIVE_COUNT")
            && attempts >= settings.max_receive_count
        {
            return Err(refused(format!(
                "kind `{kind}`: max_attempts {attempts} leaves no receive below \
                 SPILLWAY_MAX_RECEIVE_COUNT ({}) for deliveries that run nothing",
                settings.max_receive_count
            )));
        }
    }
    Ok(())
}

/// `defaults` with the `SPILLWAY_WEBHOOK_*` variables `env` sets.
fn webhook_settings(
    defaults: WebhookSettings,
    env: &Env<'_>,
) -> Result<WebhookSettings, ConfigError> {
    let millis = |name, default: Duration| {
        let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
        env.number(name, default, 1..=900_000)
            .map(Duration::from_millis)
    };
    let allow = match env.optional("SPILLWAY_WEBHOOK_ALLOW") {
        None => defaults.allow,
        Some(list) => Allowlist::parse(&list).map_err(|problem| ConfigError {
            variable: "SPILLWAY_WEBHOOK_ALLOW",
            problem,
        })?,
    };
    Ok(WebhookSettings {
        allow,
        connect_timeout: millis(
            "SPILLWAY_WEBHOOK_CONNECT_TIMEOUT_MS",
            defaults.connect_timeout,
        )?,
        timeout: millis("SPILLWAY_WEBHOOK_TIMEOUT_MS", defaults.timeout)?,
        breaker_failures: env.number(
            "SPILLWAY_WEBHOOK_BREAKER_FAILURES",
            defaults.breaker_failures,
            0..=1000,
        )?,
        breaker_cooldown: env
            .number(
                "SPILLWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS",
                defaults.breaker_cooldown.as_secs(),
                1..=3600,
            )
            .map(Duration::from_secs)?,
    })
}

/// The variables as one function sees them: `only`, when set, lists the names it reads.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    only: Option<&'static [&'static str]>,
}

impl<'a> Env<'a> {
    fn new(
        lookup: &'a dyn Fn(&str) -> Option<String>,
        only: Option<&'static [&'static str]>,
    ) -> Self {
        Self { lookup, only }
    }

    /// Whether this function reads `name` at all.
    fn reads(&self, name: &str) -> bool {
        self.only.is_none_or(|only| only.contains(&name))
    }

    fn api_auth(&self, default: ApiAuth) -> Result<ApiAuth, ConfigError> {
        let name = "SPILLWAY_API_AUTH";
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        [ApiAuth::AwsIam, ApiAuth::Jwt, ApiAuth::None]
            .into_iter()
            .find(|auth| auth.as_str() == raw)
            .ok_or(ConfigError {
                variable: name,
                problem: format!("expected AWS_IAM, JWT or NONE, got `{raw}`"),
            })
    }

    /// `high` or `normal`; unset is `normal`.
    fn priority(&self, name: &'static str) -> Result<Priority, ConfigError> {
        self.optional(name).map_or(Ok(Priority::Normal), |raw| {
            raw.parse()
                .map_err(|error: crate::domain::UnknownPriority| ConfigError {
                    variable: name,
                    problem: error.to_string(),
                })
        })
    }

    /// `true` or `false` (any case); unset keeps `default`.
    fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) if raw.eq_ignore_ascii_case("true") => Ok(true),
            Some(raw) if raw.eq_ignore_ascii_case("false") => Ok(false),
            Some(raw) => Err(ConfigError {
                variable: name,
                problem: format!("expected `true` or `false`, got `{raw}`"),
            }),
        }
    }

    /// A set, non-blank value; blank counts as unset, as CloudFormation writes `""` for an empty
    /// parameter.
    fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name).ok_or(ConfigError {
            variable: name,
            problem: "is not set".to_owned(),
        })
    }

    fn number<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        let problem = || {
            let (low, high) = (range.start(), range.end());
            format!("expected a whole number from {low} to {high}, got `{raw}`")
        };
        let value: T = raw.parse().map_err(|_| ConfigError {
            variable: name,
            problem: problem(),
        })?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError {
                variable: name,
                problem: problem(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const RESOURCES: [(&str, &str); 3] = [
        ("SPILLWAY_TABLE", "jobs"),
        ("SPILLWAY_QUEUE_URL", "http://localhost/q"),
        ("SPILLWAY_HIGH_QUEUE_URL", "http://localhost/q-high"),
    ];

    fn intake(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::for_function(Function::Intake, lookup(pairs))
    }

    #[test]
    fn defaults_apply_when_only_the_resources_are_set() {
        let config = intake(&RESOURCES).unwrap();
        assert_eq!(config.settings, Settings::default());
        assert_eq!(config.resources.table, "jobs");
        assert_eq!(
            config.resources.queue_urls,
            Lanes {
                high: Some("http://localhost/q-high".to_owned()),
                normal: Some("http://localhost/q".to_owned()),
            }
        );
    }

    #[test]
    fn a_consumer_is_given_the_queue_of_the_lane_it_consumes() {
        let consumer = |priority: Option<&str>| {
            let mut pairs = RESOURCES.to_vec();
            pairs.extend(priority.map(|p| ("SPILLWAY_PRIORITY", p)));
            Config::for_function(Function::Consumer, lookup(&pairs))
        };
        let url = Some("http://localhost/q".to_owned());
        assert_eq!(
            consumer(None).unwrap().resources.queue_urls,
            Lanes {
                high: None,
                normal: url.clone()
            }
        );
        assert_eq!(
            consumer(Some("high")).unwrap().resources.queue_urls,
            Lanes {
                high: url,
                normal: None
            }
        );
        let err = consumer(Some("urgent")).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_PRIORITY");
        assert!(err.to_string().contains("`high` or `normal`"), "{err}");
    }

    #[test]
    fn a_missing_table_is_named() {
        let err = intake(&[("SPILLWAY_QUEUE_URL", "q")]).unwrap_err();
        assert_eq!(err.to_string(), "SPILLWAY_TABLE: is not set");
    }

    #[test]
    fn the_status_function_starts_without_a_queue_and_the_others_need_one() {
        let table = [("SPILLWAY_TABLE", "jobs")];
        let status = Config::for_function(Function::Status, lookup(&table)).unwrap();
        assert_eq!(status.resources.queue_urls, Lanes::default());
        let err = Config::for_function(Function::Consumer, lookup(&table)).unwrap_err();
        assert_eq!(err.to_string(), "SPILLWAY_QUEUE_URL: is not set");
        // Intake sends to both lanes: either queue missing stops its cold start.
        for missing in ["SPILLWAY_QUEUE_URL", "SPILLWAY_HIGH_QUEUE_URL"] {
            let given: Vec<_> = RESOURCES
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = intake(&given).unwrap_err();
            assert_eq!(err.to_string(), format!("{missing}: is not set"));
        }
    }

    #[test]
    fn a_function_ignores_the_variables_it_does_not_use() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_MAX_ATTEMPTS", "not a number"),
            ("SPILLWAY_BACKLOG_LIMIT", "7"),
        ]);
        let status = Config::for_function(Function::Status, lookup(&pairs)).unwrap();
        assert_eq!(status.settings, Settings::default());
        let err = Config::for_function(Function::Consumer, lookup(&pairs)).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_MAX_ATTEMPTS");
    }

    #[test]
    fn the_consumer_reads_the_default_ttl_for_its_callbacks() {
        let mut pairs = RESOURCES.to_vec();
        // Longer than the default maximum, which only intake reads and enforces.
        pairs.extend([
            ("SPILLWAY_DEFAULT_TTL_SECONDS", "200000"),
            ("SPILLWAY_HIGH_DEFAULT_TTL_SECONDS", "60"),
        ]);
        let consumer = Config::for_function(Function::Consumer, lookup(&pairs)).unwrap();
        assert_eq!(
            consumer.settings.default_ttl,
            Lanes {
                high: Duration::from_secs(60),
                normal: Duration::from_secs(200_000)
            }
        );
        let err = intake(&pairs).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_DEFAULT_TTL_SECONDS");
    }

    #[test]
    fn every_function_reads_the_table_and_no_variable_twice() {
        for function in Function::ALL {
            let variables = function.variables();
            assert!(variables.contains(&"SPILLWAY_TABLE"), "{function:?}");
            let mut sorted = variables.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), variables.len(), "{function:?}");
        }
    }

    #[test]
    fn a_bad_number_is_named_with_its_range() {
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("SPILLWAY_MAX_PAYLOAD_BYTES", "lots"));
        let err = intake(&pairs).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_MAX_PAYLOAD_BYTES");
        assert!(
            err.to_string().contains("from 1 to 1040384, got `lots`"),
            "{err}"
        );
    }

    #[test]
    fn the_payload_limit_is_what_fits_and_a_larger_one_is_refused_with_the_reason() {
        assert_eq!(MAX_PAYLOAD_LIMIT, 1_040_384);
        assert_eq!(
            Settings::default().max_payload_bytes,
            MAX_PAYLOAD_LIMIT,
            "the default is the most that fits"
        );
        let with = |value: &str| {
            let mut pairs = RESOURCES.to_vec();
            pairs.push(("SPILLWAY_MAX_PAYLOAD_BYTES", value));
            intake(&pairs)
        };
        let at_limit = with(&MAX_PAYLOAD_LIMIT.to_string()).unwrap();
        assert_eq!(at_limit.settings.max_payload_bytes, MAX_PAYLOAD_LIMIT);
        for over in [
            (MAX_PAYLOAD_LIMIT + 1).to_string(),
            "1048576".to_owned(),
            "99999999999999999999999".to_owned(),
        ] {
            let err = with(&over).unwrap_err();
            assert_eq!(err.variable, "SPILLWAY_MAX_PAYLOAD_BYTES");
            assert!(
                err.problem.contains("does not fit in an SQS message")
                    && err.problem.contains("at most 1040384"),
                "{err}"
            );
        }
        assert_eq!(
            with("0").unwrap_err().variable,
            "SPILLWAY_MAX_PAYLOAD_BYTES"
        );
    }

    /// SQS counts message attributes toward the size of a message, and
    /// [`JobMessage::MAX_ENVELOPE_BYTES`] leaves no room for any: the adapter must send the body
    /// alone.
    #[tokio::test]
    async fn the_sqs_adapter_sends_a_jobs_message_without_attributes() {
        use aws_sdk_sqs::operation::send_message::SendMessageOutput;
        use aws_smithy_mocks::{mock, mock_client};

        use crate::queue::{JobQueue, SqsQueue};

        let send = mock!(aws_sdk_sqs::Client::send_message)
            .match_requests(|r| {
                r.message_attributes().is_none()
                    && r.message_system_attributes().is_none()
                    && r.message_body() == Some("{}")
            })
            .then_output(|| SendMessageOutput::builder().message_id("m-1").build());
        let client = mock_client!(aws_sdk_sqs, [&send]);
        let queue = SqsQueue::new(client, "https://sqs.us-east-1.amazonaws.com/1/q");
        assert_eq!(queue.send("{}").await.unwrap(), "m-1");
        assert_eq!(send.num_calls(), 1);
    }

    #[test]
    fn a_default_ttl_beyond_the_maximum_is_refused() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_DEFAULT_TTL_SECONDS", "100"),
            ("SPILLWAY_MAX_TTL_SECONDS", "50"),
        ]);
        let err = intake(&pairs).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_DEFAULT_TTL_SECONDS");
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_HIGH_DEFAULT_TTL_SECONDS", "100"),
            ("SPILLWAY_MAX_TTL_SECONDS", "50"),
            ("SPILLWAY_DEFAULT_TTL_SECONDS", "50"),
        ]);
        let err = intake(&pairs).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_HIGH_DEFAULT_TTL_SECONDS");
    }

    #[test]
    fn times_no_date_could_hold_are_refused() {
        for (variable, value) in [
            ("SPILLWAY_RETENTION_SECONDS", "18446744073709551615"),
            ("SPILLWAY_RETENTION_SECONDS", "315360001"),
            ("SPILLWAY_DEFAULT_TTL_SECONDS", "31536001"),
            ("SPILLWAY_HIGH_DEFAULT_TTL_SECONDS", "99999999999"),
        ] {
            let mut pairs = RESOURCES.to_vec();
            pairs.push((variable, value));
            let err = Config::for_function(Function::Consumer, lookup(&pairs)).unwrap_err();
            assert_eq!(err.variable, variable, "{err}");
        }
    }

    #[test]
    fn each_lane_has_its_own_backlog_limit() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_BACKLOG_LIMIT", "5000"),
            ("SPILLWAY_HIGH_BACKLOG_LIMIT", "200"),
        ]);
        let limits = intake(&pairs).unwrap().settings.backlog_limit;
        assert_eq!(
            limits,
            Lanes {
                high: 200,
                normal: 5000
            }
        );
    }

    #[test]
    fn the_per_owner_limit_is_off_unless_set_and_bounded() {
        assert_eq!(
            intake(&RESOURCES)
                .unwrap()
                .settings
                .max_active_jobs_per_owner,
            0
        );
        let with = |value: &str| {
            let mut pairs = RESOURCES.to_vec();
            pairs.push(("SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER", value));
            intake(&pairs)
        };
        for (value, limit) in [
            ("0", 0),
            ("1", 1),
            (" 250 ", 250),
            ("", 0),
            ("10000", 10_000),
        ] {
            assert_eq!(
                with(value).unwrap().settings.max_active_jobs_per_owner,
                limit,
                "{value:?}"
            );
        }
        for bad in ["-1", "10001", "1.5", "many", "4294967296"] {
            let err = with(bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER: expected a whole number from 0 to 10000, \
                     got `{bad}`"
                )
            );
        }
        // Only intake enforces it: the other functions never look it up.
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER", "many"));
        for function in [Function::Consumer, Function::Status] {
            let config = Config::for_function(function, lookup(&pairs)).unwrap();
            assert_eq!(config.settings.max_active_jobs_per_owner, 0, "{function:?}");
        }
    }

    #[test]
    fn values_are_read_and_blank_ones_ignored() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_MAX_ATTEMPTS", "3"),
            ("SPILLWAY_BACKOFF_BASE_SECONDS", " "),
            ("SPILLWAY_DEMO_KINDS", "TRUE"),
        ]);
        let config = Config::for_function(Function::Consumer, lookup(&pairs)).unwrap();
        assert_eq!(config.settings.max_attempts, 3);
        assert_eq!(
            config.settings.backoff_base,
            Settings::default().backoff_base
        );
        assert!(config.settings.demo_kinds);
    }

    #[test]
    fn the_consumer_reads_its_queues_visibility_timeout_within_what_sqs_allows() {
        let consumer = |value: &str| {
            let mut pairs = RESOURCES.to_vec();
            pairs.push(("SPILLWAY_VISIBILITY_TIMEOUT_SECONDS", value));
            Config::for_function(Function::Consumer, lookup(&pairs))
        };
        assert_eq!(
            consumer("120").unwrap().settings.visibility_timeout,
            Duration::from_secs(120)
        );
        for bad in ["0", "43201", "soon"] {
            let err = consumer(bad).unwrap_err();
            assert_eq!(err.variable, "SPILLWAY_VISIBILITY_TIMEOUT_SECONDS", "{bad}");
        }
        let unset = Config::for_function(Function::Consumer, lookup(&RESOURCES)).unwrap();
        assert_eq!(unset.settings.visibility_timeout, Duration::from_secs(180));
    }

    #[test]
    fn a_flag_that_is_not_true_or_false_is_named() {
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("SPILLWAY_DEMO_KINDS", "yes"));
        let err = intake(&pairs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SPILLWAY_DEMO_KINDS: expected `true` or `false`, got `yes`"
        );
    }

    #[test]
    fn webhook_settings_are_read_and_a_bad_allowlist_is_named() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_WEBHOOK_ALLOW", "127.0.0.1/32, hooks.internal"),
            ("SPILLWAY_WEBHOOK_TIMEOUT_MS", "2500"),
            ("SPILLWAY_WEBHOOK_BREAKER_FAILURES", "0"),
        ]);
        let webhook = Config::for_function(Function::Consumer, lookup(&pairs))
            .unwrap()
            .settings
            .webhook;
        assert_eq!(webhook.timeout, Duration::from_millis(2500));
        assert_eq!(webhook.connect_timeout, Duration::from_secs(5));
        assert_eq!(webhook.breaker_failures, 0);
        assert!(webhook.allow.check_url("http://hooks.internal/x").is_ok());
        let mut bad = RESOURCES.to_vec();
        bad.push(("SPILLWAY_WEBHOOK_ALLOW", "10.0.0.0/99"));
        let err = intake(&bad).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_WEBHOOK_ALLOW");
    }
}
