//! The dependencies every handler shares, built once per process.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, Function, Settings};
use crate::direct::{Direct, Service};
use crate::domain::{Change, Lanes, Transition};
use crate::kinds::{self, TakenKind};
use crate::metrics::{Metrics, Stdout};
use crate::processor::Processors;
use crate::queue::{Backlog, JobQueue, NoQueue, SqsQueue};
use crate::store::{DynamoStore, JobStore};
use crate::webhook::{SigningKeys, Webhook};

/// What the handlers run on: the ports, the processors and the settings. Cheap to clone.
#[derive(Debug, Clone)]
pub struct App {
    /// Job state.
    pub store: Arc<dyn JobStore>,
    /// Each lane's work queue (a lane the function is not given refuses every call).
    pub queues: Lanes<Arc<dyn JobQueue>>,
    /// The processors, by kind.
    pub processors: Arc<Processors>,
    /// Behaviour.
    pub settings: Arc<Settings>,
    /// The time source.
    pub clock: Arc<dyn Clock>,
    /// Where metrics go (off unless set).
    pub metrics: Metrics,
    /// The stack's webhook signing secret, from which each owner's is derived.
    pub signing: StackSecret,
    pub(crate) backlog: Arc<Lanes<Backlog>>,
}

impl App {
    /// An app on the given ports, with the built-in processors and the system clock.
    pub fn new(
        store: Arc<dyn JobStore>,
        queues: Lanes<Arc<dyn JobQueue>>,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            queues,
            processors: Arc::new(kinds::builtin_with(Webhook::new(
                settings.webhook.clone(),
                None,
            ))),
            backlog: Arc::new(settings.backlog_limit.map(|_, limit| Backlog::new(limit))),
            settings: Arc::new(settings),
            clock: Arc::new(SystemClock),
            metrics: Metrics::off(),
            signing: StackSecret::fixed(None),
        }
    }

    /// The same app with the stack's webhook signing secret `signing`.
    pub fn with_signing(mut self, signing: StackSecret) -> Self {
        self.signing = signing;
        self
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

    /// Attempts before a job of `kind` is dead-lettered: the kind's own limit, or the stack's.
    pub fn max_attempts(&self, kind: &crate::domain::Kind) -> u32 {
        self.processors
            .limits(kind)
            .max_attempts
            .unwrap_or(self.settings.max_attempts)
    }

    /// `transition` now, by this app's clock, with its retention.
    pub fn change(&self, transition: Transition) -> Change {
        Change::new(transition, self.clock.now(), self.settings.retention)
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
    ///
    /// Its processors are the deployed ones, `custom`, the kinds of a crate of its own (see
    /// [`kinds::deployed_with`]), and the kinds `SPILLWAY_KINDS` declares ([`crate::targets`]);
    /// a custom kind named like a shipped one, or a declaration it cannot use, stops it here.
    pub async fn for_function(function: Function, custom: Processors) -> Result<Self, StartError> {
        kinds::refuse_builtin_names(&custom)?;
        let config = Config::from_env(function)?;
        let sdk = crate::sdk::loader(crate::sdk::Roots::for_lambda())
            .load()
            .await;
        let (signing, keys) = match function {
            // The consumer signs every delivery: it reads its secret at cold start.
            Function::Consumer => {
                let keys = webhook_keys(&sdk, only(function)).await?;
                if keys.is_none() {
                    tracing::warn!(
                        "no webhook signing secret configured; webhook jobs and callbacks will wait"
                    );
                }
                (StackSecret::fixed(keys.clone()), keys)
            }
            // The status function hands owners their secrets: it reads the secret at the first
            // such request, not at every cold start of a function that mostly serves polls.
            Function::Status => (StackSecret::from_env(&sdk, only(function)), None),
            Function::Intake => (StackSecret::fixed(None), None),
        };
        let webhook = Webhook::new(config.settings.webhook.clone(), keys);
        let shipped = kinds::builtin_with(webhook.clone());
        let declared = match function {
            // Intake admits the declared kinds' jobs and invokes no function.
            Function::Intake => config.settings.kinds.admitting(&shipped, &webhook),
            _ => config
                .settings
                .kinds
                .processors(&shipped, &webhook, || crate::targets::lambda_client(&sdk)),
        };
        config
            .settings
            .kinds
            .refuse_compiled(&custom)
            .map_err(|problem| ConfigError {
                variable: "SPILLWAY_KINDS",
                problem,
            })?;
        let processors =
            kinds::deployed_with(webhook, config.settings.demo_kinds, custom)?.and(declared);
        let direct =
            crate::direct::Direct::from_sdk(&sdk, crate::sdk::Roots::for_lambda(), |name| {
                std::env::var(name).ok()
            });
        match direct {
            Some(_) => tracing::info!("hot DynamoDB and SQS calls through the direct client"),
            None => tracing::info!(
                "hot DynamoDB and SQS calls through the AWS SDK: no credentials in the \
                 environment, or an endpoint setting the direct client does not serve"
            ),
        }
        Ok(Self::on_aws_with(&sdk, &config, direct.as_ref())
            .with_processors(processors)
            .with_signing(signing)
            .with_metrics(metrics_from_env()))
    }

    /// The app on DynamoDB and SQS, with clients made from `sdk`. A lane whose queue the
    /// function is not given gets a queue that refuses every call (see [`NoQueue`]).
    pub fn on_aws(sdk: &aws_config::SdkConfig, config: &Config) -> Self {
        Self::on_aws_with(sdk, config, None)
    }

    /// [`App::on_aws`], with the hot DynamoDB and SQS operations sent by `direct`'s clients
    /// when given (docs/performance.md).
    fn on_aws_with(sdk: &aws_config::SdkConfig, config: &Config, direct: Option<&Direct>) -> Self {
        let table = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &config.resources.table);
        let store: Arc<dyn JobStore> = match direct {
            Some(direct) => Arc::new(table.direct(direct.client(Service::DynamoDb))),
            None => Arc::new(table),
        };
        let sqs = direct.map(|direct| direct.client(Service::Sqs));
        let queues =
            config
                .resources
                .queue_urls
                .clone()
                .map(|priority, url| -> Arc<dyn JobQueue> {
                    match (url, &sqs) {
                        (Some(url), Some(client)) => {
                            Arc::new(SqsQueue::from_sdk(sdk, &url).direct(client.clone()))
                        }
                        (Some(url), None) => Arc::new(SqsQueue::from_sdk(sdk, &url)),
                        (None, _) => Arc::new(NoQueue(priority)),
                    }
                });
        Self::new(store, queues, config.settings.clone())
    }
}

/// Why a function did not start: a variable it cannot use, or a custom kind it cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// A variable is missing or holds a value Spillway cannot use.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A custom kind has the name of a kind Spillway ships.
    #[error(transparent)]
    Kind(#[from] TakenKind),
}

/// The process environment as `function` sees it: only the variables it reads.
fn only(function: Function) -> impl Fn(&str) -> Option<String> {
    let variables = function.variables();
    move |name| {
        variables
            .contains(&name)
            .then(|| std::env::var(name).ok())
            .flatten()
    }
}

/// The stack's webhook signing secret, as a function holds it: given at start, or read from
/// Secrets Manager at its first use (and again after a failed read).
#[derive(Debug, Clone)]
pub struct StackSecret(Arc<Source>);

#[derive(Debug)]
enum Source {
    Fixed(Option<SigningKeys>),
    SecretsManager {
        sdk: Box<aws_config::SdkConfig>,
        arn: String,
        keys: tokio::sync::OnceCell<SigningKeys>,
    },
}

impl StackSecret {
    /// `keys`, or no secret.
    pub fn fixed(keys: Option<SigningKeys>) -> Self {
        Self(Arc::new(Source::Fixed(keys)))
    }

    /// The secret `SPILLWAY_WEBHOOK_SECRET_ARN` names (through `lookup`), read when first asked
    /// for; no secret when the variable is not set.
    fn from_env(sdk: &aws_config::SdkConfig, lookup: impl Fn(&str) -> Option<String>) -> Self {
        match lookup("SPILLWAY_WEBHOOK_SECRET_ARN").filter(|arn| !arn.trim().is_empty()) {
            Some(arn) => Self(Arc::new(Source::SecretsManager {
                sdk: Box::new(sdk.clone()),
                arn: arn.trim().to_owned(),
                keys: tokio::sync::OnceCell::new(),
            })),
            None => Self::fixed(None),
        }
    }

    /// The keys, if the stack has a secret.
    pub async fn keys(&self) -> Result<Option<SigningKeys>, ConfigError> {
        match self.0.as_ref() {
            Source::Fixed(keys) => Ok(keys.clone()),
            Source::SecretsManager { sdk, arn, keys } => {
                let lookup =
                    |name: &str| (name == "SPILLWAY_WEBHOOK_SECRET_ARN").then(|| arn.clone());
                keys.get_or_try_init(|| async {
                    webhook_keys(sdk, lookup).await?.ok_or_else(|| ConfigError {
                        variable: "SPILLWAY_WEBHOOK_SECRET_ARN",
                        problem: "names no secret".to_owned(),
                    })
                })
                .await
                .map(|keys| Some(keys.clone()))
            }
        }
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
                    crate::error::Chain(&error)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Before it reads anything: the refusal names the kind, whatever the environment holds.
    #[tokio::test]
    async fn a_function_with_a_custom_kind_named_like_a_shipped_one_does_not_start() {
        let custom = Processors::new()
            .with("word-count", kinds::Echo)
            .with("echo", kinds::Echo);
        let error = App::for_function(Function::Consumer, custom)
            .await
            .unwrap_err();
        assert!(matches!(&error, StartError::Kind(TakenKind(kind)) if kind.as_str() == "echo"));
        assert!(error.to_string().contains("`echo`"), "{error}");
    }
}
