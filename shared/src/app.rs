//! The dependencies every handler shares, built once per process.

use std::sync::Arc;

use crate::api::Backlog;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Function, Settings};
use crate::metrics::{Metrics, Stdout};
use crate::processor::Processors;
use crate::queue::{JobQueue, NoQueue, SqsQueue};
use crate::store::{DynamoStore, JobStore};
use crate::webhook::{SigningKeys, Webhook};

/// What the handlers run on: the ports, the processors and the settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    /// Job state.
    pub store: Arc<dyn JobStore>,
    /// The work queue.
    pub queue: Arc<dyn JobQueue>,
    /// The processors, by kind.
    pub processors: Arc<Processors>,
    /// Behaviour.
    pub settings: Arc<Settings>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Where metrics go (off unless set).
    pub metrics: Metrics,
    pub(crate) backlog: Arc<Backlog>,
}

impl App {
    /// An app on the given ports, with the built-in processors and the system clock.
    pub fn new(store: Arc<dyn JobStore>, queue: Arc<dyn JobQueue>, settings: Settings) -> Self {
        Self {
            store,
            queue,
            processors: Arc::new(Processors::builtin_with(Webhook::new(
                settings.webhook.clone(),
                None,
            ))),
            backlog: Arc::new(Backlog::new(settings.backlog_limit)),
            settings: Arc::new(settings),
            clock: Arc::new(SystemClock),
            metrics: Metrics::off(),
        }
    }

    /// The same app with other processors.
    pub fn with_processors(mut self, processors: Processors) -> Self {
        self.processors = Arc::new(processors);
        self
    }

    /// The same app publishing metrics to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// The same app with another clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The app `function` runs in Lambda: the variables it reads (and no other) from the
    /// environment, and DynamoDB and SQS clients from the AWS SDK's own configuration chain over
    /// [`crate::sdk`]'s HTTPS client (so `AWS_ENDPOINT_URL` and `AWS_REGION` point the same
    /// binary at AWS, LocalStack or moto). The consumer also reads its webhook signing secret,
    /// once, from the Secrets Manager secret `SPILLWAY_WEBHOOK_SECRET_ARN` names; without one,
    /// webhook jobs wait (retryable) for a consumer that has it.
    pub async fn for_function(function: Function) -> Result<Self, ConfigError> {
        let config = Config::from_env(function)?;
        let sdk = crate::sdk::loader(crate::sdk::Roots::for_lambda())
            .load()
            .await;
        let keys = if function == Function::Consumer {
            let variables = function.variables();
            let lookup = |name: &str| {
                variables
                    .contains(&name)
                    .then(|| std::env::var(name).ok())
                    .flatten()
            };
            let keys = webhook_keys(&sdk, lookup).await?;
            if keys.is_none() {
                tracing::warn!(
                    "no webhook signing secret configured; webhook jobs and callbacks will wait"
                );
            }
            keys
        } else {
            None
        };
        let webhook = Webhook::new(config.settings.webhook.clone(), keys);
        let processors = Processors::deployed(webhook, config.settings.demo_kinds);
        Ok(Self::on_aws(&sdk, &config)
            .with_processors(processors)
            .with_metrics(metrics_from_env()))
    }

    /// The app on DynamoDB and SQS, with clients made from `sdk`. A function given no queue URL
    /// gets a queue that refuses every call (see [`NoQueue`]).
    pub fn on_aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.resources.table);
        let queue: Arc<dyn JobQueue> = match &config.resources.queue_url {
            Some(url) => Arc::new(SqsQueue::from_sdk(sdk, url)),
            None => Arc::new(NoQueue),
        };
        Self::new(Arc::new(store), queue, config.settings.clone())
    }
}

/// The webhook signing secret: the value of `SPILLWAY_WEBHOOK_SECRET` (`spillway dev`), or the
/// Secrets Manager secret `SPILLWAY_WEBHOOK_SECRET_ARN` names (its string: one secret, or several
/// separated by spaces during a rotation).
pub async fn webhook_keys(
    sdk: &aws_config::SdkConfig,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<SigningKeys>, ConfigError> {
    let set = |name| lookup(name).filter(|value| !value.trim().is_empty());
    let (variable, secret) = if let Some(secret) = set("SPILLWAY_WEBHOOK_SECRET") {
        ("SPILLWAY_WEBHOOK_SECRET", secret)
    } else if let Some(arn) = set("SPILLWAY_WEBHOOK_SECRET_ARN") {
        let variable = "SPILLWAY_WEBHOOK_SECRET_ARN";
        let output = aws_sdk_secretsmanager::Client::new(sdk)
            .get_secret_value()
            .secret_id(arn.trim())
            .send()
            .await
            .map_err(|error| ConfigError {
                variable,
                problem: format!(
                    "the secret could not be read: {}",
                    crate::api::Chain(&error)
                ),
            })?;
        let secret = output.secret_string.ok_or(ConfigError {
            variable,
            problem: "the secret holds no string (binary secrets are not supported)".to_owned(),
        })?;
        (variable, secret)
    } else {
        return Ok(None);
    };
    SigningKeys::parse(&secret)
        .map(Some)
        .map_err(|error| ConfigError {
            variable,
            problem: error.to_string(),
        })
}

/// Metrics in the namespace `SPILLWAY_METRICS_NAMESPACE` names (default `Spillway`; blank turns
/// them off), as EMF lines on stdout.
fn metrics_from_env() -> Metrics {
    match std::env::var("SPILLWAY_METRICS_NAMESPACE") {
        Ok(namespace) if namespace.trim().is_empty() => Metrics::off(),
        Ok(namespace) => Metrics::new(namespace.trim(), Arc::new(Stdout)),
        Err(_) => Metrics::new(DEFAULT_METRICS_NAMESPACE, Arc::new(Stdout)),
    }
}

/// The CloudWatch namespace of Spillway's metrics unless `SPILLWAY_METRICS_NAMESPACE` says
/// otherwise.
pub const DEFAULT_METRICS_NAMESPACE: &str = "Spillway";
