//! Reaching DynamoDB and SQS from the command line: an endpoint, a region, and the deployment's
//! table and queues, a work queue and a dead-letter queue per priority lane.

use aws_config::{Region, SdkConfig};
use spillway_core::domain::Priority;

/// Where the AWS APIs are, and which table and queues to use.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// Use the DynamoDB and SQS APIs at this endpoint (LocalStack, moto, or an AWS endpoint).
    /// `spillway dev` runs in memory without one; the other commands then use AWS itself.
    #[arg(long, env = "AWS_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// AWS region of the table and queues.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,

    /// DynamoDB table. With --create-resources it also names the queues: TABLE-jobs and
    /// TABLE-jobs-dlq (and the high lane's TABLE-jobs-high and TABLE-jobs-high-dlq).
    #[arg(long, env = "SPILLWAY_TABLE", default_value = "spillway-dev")]
    pub table: String,

    /// Work queue URL; found (or, with --create-resources, created) from the table's name when
    /// not given.
    #[arg(long, env = "SPILLWAY_QUEUE_URL", value_name = "URL")]
    pub queue_url: Option<String>,

    /// Dead-letter queue URL; found from the table's name (TABLE-jobs-dlq) when not given.
    #[arg(long, env = "SPILLWAY_DLQ_URL", value_name = "URL")]
    pub dlq_url: Option<String>,

    /// The high priority lane's work queue URL; found from the table's name (TABLE-jobs-high)
    /// when not given.
    #[arg(long, env = "SPILLWAY_HIGH_QUEUE_URL", value_name = "URL")]
    pub high_queue_url: Option<String>,

    /// The high priority lane's dead-letter queue URL; found from the table's name
    /// (TABLE-jobs-high-dlq) when not given.
    #[arg(long, env = "SPILLWAY_HIGH_DLQ_URL", value_name = "URL")]
    pub high_dlq_url: Option<String>,

    /// A deployed Spillway stack: the table and queues are read from its outputs (TableName,
    /// QueueUrl, DeadLetterQueueUrl, HighQueueUrl, HighDeadLetterQueueUrl) and win over --table,
    /// --queue-url, --dlq-url, --high-queue-url and --high-dlq-url.
    #[arg(long, env = "SPILLWAY_STACK", value_name = "NAME")]
    pub stack: Option<String>,

    /// The stack's webhook signing secret, from its output WebhookSecretArn (with --stack).
    #[arg(skip)]
    pub webhook_secret_arn: Option<String>,
}

impl AwsArgs {
    /// SDK configuration: for the endpoint when one is given (an emulator needs no real
    /// credentials: when none are configured in the environment, throwaway ones are used), else
    /// the AWS SDK's own chain, as on AWS.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = spillway_core::sdk::loader(spillway_core::sdk::Roots::System)
            .region(Region::new(self.region.clone()));
        if let Some(endpoint_url) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint_url);
            let has_credentials = [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ]
            .iter()
            .any(|name| std::env::var_os(name).is_some());
            if !has_credentials {
                loader = loader.credentials_provider(aws_sdk_sqs::config::Credentials::new(
                    "spillway-dev",
                    "spillway-dev",
                    None,
                    None,
                    "spillway-dev",
                ));
            }
        }
        loader.load().await
    }

    /// SDK configuration for a deployment's resources: [`AwsArgs::sdk_config`], with the table
    /// and queues taken from the stack's outputs when `--stack` names one.
    pub async fn deployment(&mut self) -> Result<SdkConfig, String> {
        let sdk = self.sdk_config().await;
        self.resolve_stack(&sdk).await?;
        Ok(sdk)
    }

    /// With `--stack`, takes the table and queues from the stack's outputs.
    async fn resolve_stack(&mut self, sdk: &SdkConfig) -> Result<(), String> {
        let Some(stack) = &self.stack else {
            return Ok(());
        };
        let target = self.target();
        let described = aws_sdk_cloudformation::Client::new(sdk)
            .describe_stacks()
            .stack_name(stack)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "stack {stack} at {target}: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                )
            })?;
        let outputs: Vec<_> = described
            .stacks()
            .first()
            .map(|s| s.outputs().to_vec())
            .unwrap_or_default();
        let output = |key: &str| {
            outputs
                .iter()
                .find(|o| o.output_key() == Some(key))
                .and_then(|o| o.output_value())
                .map(str::to_owned)
                .ok_or_else(|| format!("stack {stack} at {target} has no output {key}"))
        };
        self.table = output("TableName")?;
        self.queue_url = Some(output("QueueUrl")?);
        self.dlq_url = Some(output("DeadLetterQueueUrl")?);
        // A stack deployed before the priority lanes has no high lane: the commands that work on
        // the normal lane still serve it, and asking for the high one says what is missing.
        self.high_queue_url = output("HighQueueUrl").ok();
        self.high_dlq_url = output("HighDeadLetterQueueUrl").ok();
        self.webhook_secret_arn = output("WebhookSecretArn").ok();
        Ok(())
    }

    /// Where the calls go, for messages.
    pub fn target(&self) -> String {
        self.endpoint_url
            .clone()
            .unwrap_or_else(|| format!("AWS ({})", self.region))
    }

    /// The URL of the queue named `name` (the `--queue-url`-style override first).
    async fn queue_url(
        &self,
        sqs: &aws_sdk_sqs::Client,
        given: Option<&String>,
        name: &str,
    ) -> Result<String, String> {
        if let Some(url) = given {
            return Ok(url.clone());
        }
        let target = self.target();
        sqs.get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "queue {name} at {target}: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(&e)
                )
            })?
            .queue_url
            .ok_or_else(|| format!("queue {name} at {target} has no URL"))
    }

    /// The work queue's URL: `--queue-url`, or the queue named after the table.
    pub async fn work_queue_url(&self, sqs: &aws_sdk_sqs::Client) -> Result<String, String> {
        self.lane_queue_url(sqs, Priority::Normal).await
    }

    /// `lane`'s work queue URL: `--queue-url` or `--high-queue-url` (with `--stack`, the stack's
    /// output), or the queue named after the table.
    pub async fn lane_queue_url(
        &self,
        sqs: &aws_sdk_sqs::Client,
        lane: Priority,
    ) -> Result<String, String> {
        let given = match lane {
            Priority::Normal => self.queue_url.as_ref(),
            Priority::High => self.stack_gave(self.high_queue_url.as_ref(), "HighQueueUrl")?,
        };
        self.queue_url(sqs, given, &self.lane_queue_name(lane))
            .await
    }

    /// `lane`'s dead-letter queue URL: `--dlq-url` or `--high-dlq-url` (with `--stack`, the
    /// stack's output), or the queue named after the table.
    pub async fn lane_dead_letter_queue_url(
        &self,
        sqs: &aws_sdk_sqs::Client,
        lane: Priority,
    ) -> Result<String, String> {
        let given = match lane {
            Priority::Normal => self.dlq_url.as_ref(),
            Priority::High => {
                self.stack_gave(self.high_dlq_url.as_ref(), "HighDeadLetterQueueUrl")?
            }
        };
        let name = format!("{}-dlq", self.lane_queue_name(lane));
        self.queue_url(sqs, given, &name).await
    }

    /// `given`, a high lane queue's URL; with `--stack` it comes from the stack's `output` or not
    /// at all, since a name derived from the stack's table would name no queue of the stack.
    fn stack_gave<'a>(
        &self,
        given: Option<&'a String>,
        output: &str,
    ) -> Result<Option<&'a String>, String> {
        match (&self.stack, given) {
            (Some(stack), None) => Err(format!(
                "stack {stack} at {} has no output {output} (a stack deployed before the \
                 priority lanes has no high lane)",
                self.target()
            )),
            _ => Ok(given),
        }
    }

    /// `lane`'s work queue name when the table names the resources: TABLE-jobs, TABLE-jobs-high,
    /// as the template names a stack's.
    pub fn lane_queue_name(&self, lane: Priority) -> String {
        match lane {
            Priority::Normal => format!("{}-jobs", self.table),
            Priority::High => format!("{}-jobs-high", self.table),
        }
    }
}
