//! Settings read once at cold start from `SPILLWAY_*` environment variables.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::webhook::Allowlist;

/// Where Spillway keeps its state and work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    /// DynamoDB table name (`SPILLWAY_TABLE`).
    pub table: String,
    /// Work queue URL (`SPILLWAY_QUEUE_URL`).
    pub queue_url: String,
    /// Dead-letter queue URL (`SPILLWAY_DLQ_URL`), where a function needs it.
    pub dlq_url: Option<String>,
}

/// How the handlers behave. Every field has the default DESIGN.md gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Deadline of a job that asks for none (`SPILLWAY_DEFAULT_TTL_SECONDS`).
    pub default_ttl: Duration,
    /// The longest deadline a client may ask for (`SPILLWAY_MAX_TTL_SECONDS`).
    pub max_ttl: Duration,
    /// Largest accepted request body (`SPILLWAY_MAX_PAYLOAD_BYTES`).
    pub max_payload_bytes: usize,
    /// Attempts before a job is `dead_lettered`; the queue's `maxReceiveCount`
    /// (`SPILLWAY_MAX_ATTEMPTS`).
    pub max_attempts: u32,
    /// First retry delay (`SPILLWAY_BACKOFF_BASE_SECONDS`).
    pub backoff_base: Duration,
    /// Longest retry delay (`SPILLWAY_BACKOFF_MAX_SECONDS`).
    pub backoff_max: Duration,
    /// How long terminal jobs stay readable (`SPILLWAY_RETENTION_SECONDS`).
    pub retention: Duration,
    /// Queue depth above which intake answers 503; 0 turns the check off
    /// (`SPILLWAY_BACKLOG_LIMIT`).
    pub backlog_limit: u64,
    /// How many records of one batch run at once (`SPILLWAY_CONSUMER_CONCURRENCY`).
    pub consumer_concurrency: usize,
    /// How webhooks are delivered.
    pub webhook: WebhookSettings,
}

/// How the `webhook` processor delivers. The signing secret is not here: it is read apart, and
/// never printed (see [`crate::webhook::SigningKeys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// Networks and hosts webhooks may reach despite the SSRF guard (`SPILLWAY_WEBHOOK_ALLOW`).
    pub allow: Allowlist,
    /// Longest wait for a connection (`SPILLWAY_WEBHOOK_CONNECT_TIMEOUT_MS`).
    pub connect_timeout: Duration,
    /// Longest wait for a whole delivery, connection included (`SPILLWAY_WEBHOOK_TIMEOUT_MS`).
    pub timeout: Duration,
    /// Consecutive failures that open a host's circuit; 0 turns the breaker off
    /// (`SPILLWAY_WEBHOOK_BREAKER_FAILURES`).
    pub breaker_failures: u32,
    /// How long an open circuit fails deliveries fast
    /// (`SPILLWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS`).
    pub breaker_cooldown: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            allow: Allowlist::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(3600),
            max_ttl: Duration::from_secs(86_400),
            max_payload_bytes: 262_144,
            max_attempts: 5,
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(900),
            retention: Duration::from_secs(604_800),
            backlog_limit: 0,
            consumer_concurrency: 10,
            webhook: WebhookSettings::default(),
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

/// The largest SQS message is 1 MiB; leave room for the message envelope.
const MAX_PAYLOAD_LIMIT: usize = 1_048_576 - 4_096;
/// SQS refuses visibility timeouts longer than 12 hours.
const MAX_BACKOFF_SECONDS: u64 = 43_200;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let resources = Resources {
            table: env.required("SPILLWAY_TABLE")?,
            queue_url: env.required("SPILLWAY_QUEUE_URL")?,
            dlq_url: env.optional("SPILLWAY_DLQ_URL"),
        };
        Ok(Self {
            resources,
            settings: Settings::from_lookup(&lookup)?,
        })
    }
}

impl Settings {
    /// Reads the `SPILLWAY_*` behaviour variables through `lookup`; missing ones keep the
    /// defaults of `self`.
    pub fn with_lookup(self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let secs = |name, default: Duration, range| {
            env.number(name, default.as_secs(), range)
                .map(Duration::from_secs)
        };
        let settings = Self {
            default_ttl: secs(
                "SPILLWAY_DEFAULT_TTL_SECONDS",
                self.default_ttl,
                1..=u64::MAX,
            )?,
            max_ttl: secs("SPILLWAY_MAX_TTL_SECONDS", self.max_ttl, 1..=31_536_000)?,
            max_payload_bytes: env.number(
                "SPILLWAY_MAX_PAYLOAD_BYTES",
                self.max_payload_bytes,
                1..=MAX_PAYLOAD_LIMIT,
            )?,
            max_attempts: env.number("SPILLWAY_MAX_ATTEMPTS", self.max_attempts, 1..=1000)?,
            backoff_base: secs(
                "SPILLWAY_BACKOFF_BASE_SECONDS",
                self.backoff_base,
                0..=MAX_BACKOFF_SECONDS,
            )?,
            backoff_max: secs(
                "SPILLWAY_BACKOFF_MAX_SECONDS",
                self.backoff_max,
                0..=MAX_BACKOFF_SECONDS,
            )?,
            retention: secs("SPILLWAY_RETENTION_SECONDS", self.retention, 1..=u64::MAX)?,
            backlog_limit: env.number(
                "SPILLWAY_BACKLOG_LIMIT",
                self.backlog_limit,
                0..=u64::MAX,
            )?,
            consumer_concurrency: env.number(
                "SPILLWAY_CONSUMER_CONCURRENCY",
                self.consumer_concurrency,
                1..=1000,
            )?,
            webhook: WebhookSettings::with_env(self.webhook, &env)?,
        };
        if settings.default_ttl > settings.max_ttl {
            return Err(ConfigError {
                variable: "SPILLWAY_DEFAULT_TTL_SECONDS",
                problem: format!(
                    "{} is longer than SPILLWAY_MAX_TTL_SECONDS ({})",
                    settings.default_ttl.as_secs(),
                    settings.max_ttl.as_secs()
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

impl WebhookSettings {
    fn with_env(self, env: &Env<'_>) -> Result<Self, ConfigError> {
        let millis = |name, default: Duration| {
            let default = u64::try_from(default.as_millis()).unwrap_or(u64::MAX);
            env.number(name, default, 1..=900_000)
                .map(Duration::from_millis)
        };
        let allow = match env.optional("SPILLWAY_WEBHOOK_ALLOW") {
            None => self.allow,
            Some(list) => Allowlist::parse(&list).map_err(|problem| ConfigError {
                variable: "SPILLWAY_WEBHOOK_ALLOW",
                problem,
            })?,
        };
        Ok(Self {
            allow,
            connect_timeout: millis("SPILLWAY_WEBHOOK_CONNECT_TIMEOUT_MS", self.connect_timeout)?,
            timeout: millis("SPILLWAY_WEBHOOK_TIMEOUT_MS", self.timeout)?,
            breaker_failures: env.number(
                "SPILLWAY_WEBHOOK_BREAKER_FAILURES",
                self.breaker_failures,
                0..=1000,
            )?,
            breaker_cooldown: env
                .number(
                    "SPILLWAY_WEBHOOK_BREAKER_COOLDOWN_SECONDS",
                    self.breaker_cooldown.as_secs(),
                    1..=3600,
                )
                .map(Duration::from_secs)?,
        })
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A set, non-blank value; blank counts as unset, as CloudFormation writes `""` for an empty
    /// parameter.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
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

    const RESOURCES: [(&str, &str); 2] = [
        ("SPILLWAY_TABLE", "jobs"),
        ("SPILLWAY_QUEUE_URL", "http://localhost/q"),
    ];

    #[test]
    fn defaults_apply_when_only_the_resources_are_set() {
        let config = Config::from_lookup(lookup(&RESOURCES)).unwrap();
        assert_eq!(config.settings, Settings::default());
        assert_eq!(config.resources.table, "jobs");
        assert_eq!(config.resources.dlq_url, None);
    }

    #[test]
    fn a_missing_table_is_named() {
        let err = Config::from_lookup(lookup(&[("SPILLWAY_QUEUE_URL", "q")])).unwrap_err();
        assert_eq!(err.to_string(), "SPILLWAY_TABLE: is not set");
    }

    #[test]
    fn a_bad_number_is_named_with_its_range() {
        let mut pairs = RESOURCES.to_vec();
        pairs.push(("SPILLWAY_MAX_ATTEMPTS", "lots"));
        let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_MAX_ATTEMPTS");
        assert!(
            err.to_string().contains("from 1 to 1000, got `lots`"),
            "{err}"
        );
    }

    #[test]
    fn a_default_ttl_beyond_the_maximum_is_refused() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_DEFAULT_TTL_SECONDS", "100"),
            ("SPILLWAY_MAX_TTL_SECONDS", "50"),
        ]);
        let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_DEFAULT_TTL_SECONDS");
    }

    #[test]
    fn values_are_read_and_blank_ones_ignored() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_MAX_ATTEMPTS", "3"),
            ("SPILLWAY_BACKLOG_LIMIT", " 1000 "),
            ("SPILLWAY_DLQ_URL", ""),
        ]);
        let config = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(config.settings.max_attempts, 3);
        assert_eq!(config.settings.backlog_limit, 1000);
        assert_eq!(config.resources.dlq_url, None);
    }

    #[test]
    fn webhook_settings_are_read_and_a_bad_allowlist_is_named() {
        let mut pairs = RESOURCES.to_vec();
        pairs.extend([
            ("SPILLWAY_WEBHOOK_ALLOW", "127.0.0.1/32, hooks.internal"),
            ("SPILLWAY_WEBHOOK_TIMEOUT_MS", "2500"),
            ("SPILLWAY_WEBHOOK_BREAKER_FAILURES", "0"),
        ]);
        let webhook = Config::from_lookup(lookup(&pairs))
            .unwrap()
            .settings
            .webhook;
        assert_eq!(webhook.timeout, Duration::from_millis(2500));
        assert_eq!(webhook.connect_timeout, Duration::from_secs(5));
        assert_eq!(webhook.breaker_failures, 0);
        assert!(webhook.allow.check_url("http://hooks.internal/x").is_ok());
        let mut bad = RESOURCES.to_vec();
        bad.push(("SPILLWAY_WEBHOOK_ALLOW", "10.0.0.0/99"));
        let err = Config::from_lookup(lookup(&bad)).unwrap_err();
        assert_eq!(err.variable, "SPILLWAY_WEBHOOK_ALLOW");
    }
}
