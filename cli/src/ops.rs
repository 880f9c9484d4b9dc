//! `spillway queue stats` and `spillway jobs get`: what an operator looks at first.
// A command-line tool answers on standard output.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use serde::Serialize;
use serde_json::{Value, json};
use spillway_core::domain::{Job, JobId, Priority};
use spillway_core::error::Chain;
use spillway_core::queue::{JobQueue as _, SqsQueue};
use spillway_core::store::{DynamoStore, JobStore};

use crate::aws::AwsArgs;

/// `spillway queue` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum QueueCommand {
    /// Messages visible, in flight and delayed in a priority lane's work queue and dead-letter
    /// queue, and the age of the oldest message where the endpoint reports it (CloudWatch, on
    /// AWS): `n/a` when CloudWatch has no data, `error` (and why, on standard error) when it
    /// cannot be read.
    Stats {
        #[command(flatten)]
        aws: AwsArgs,
        /// The priority lane whose queues to count.
        #[arg(long, value_name = "normal|high", default_value_t)]
        priority: Priority,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// `spillway jobs` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// A job as the table holds it, whoever owns it: state, attempts, times, lease, error,
    /// result, payload digest, correlation id and callback.
    Get {
        /// The job's id.
        id: JobId,
        #[command(flatten)]
        aws: AwsArgs,
        /// Print JSON instead of aligned fields.
        #[arg(long)]
        json: bool,
    },
}

/// One queue's counts.
#[derive(Debug, Serialize)]
struct QueueStats {
    queue: &'static str,
    url: String,
    visible: u64,
    in_flight: u64,
    delayed: u64,
    /// Seconds, when the endpoint's CloudWatch has the metric.
    oldest_message_age_seconds: Option<f64>,
    /// Why CloudWatch could not be read, when it could not: the age is then unknown, which is not
    /// the same as no data.
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_message_age_error: Option<String>,
}

/// Runs a `spillway queue` subcommand.
pub async fn queue(command: QueueCommand) -> Result<(), Box<dyn Error>> {
    let QueueCommand::Stats {
        mut aws,
        priority,
        json,
    } = command;
    let sdk = aws.deployment().await?;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&sdk);
    let target = aws.target();
    let mut stats = Vec::new();
    for (queue, url) in [
        ("work", aws.lane_queue_url(&sqs, priority).await?),
        (
            "dead-letter",
            aws.lane_dead_letter_queue_url(&sqs, priority).await?,
        ),
    ] {
        let depth = SqsQueue::new(sqs.clone(), &url)
            .depth()
            .await
            .map_err(|e| format!("queue {url}: {}", Chain(&e)))?;
        let name = url.rsplit('/').next().unwrap_or_default().to_owned();
        let (age, error) = match oldest_message_age(&cloudwatch, &name).await {
            Ok(age) => (age, None),
            Err(error) => {
                eprintln!(
                    "no age of the oldest message in {name}: CloudWatch at {target}: {error}"
                );
                (None, Some(error))
            }
        };
        stats.push(QueueStats {
            queue,
            visible: depth.visible,
            in_flight: depth.in_flight,
            delayed: depth.delayed,
            oldest_message_age_seconds: age,
            oldest_message_age_error: error,
            url,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!(
        "{:<12} {:>9} {:>10} {:>8} {:>15}",
        "QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST MESSAGE"
    );
    for queue in &stats {
        let age = match (
            queue.oldest_message_age_seconds,
            &queue.oldest_message_age_error,
        ) {
            (Some(seconds), _) => {
                humantime::format_duration(Duration::from_secs(seconds as u64)).to_string()
            }
            (None, Some(_)) => "error".to_owned(),
            (None, None) => "n/a".to_owned(),
        };
        println!(
            "{:<12} {:>9} {:>10} {:>8} {:>15}",
            queue.queue, queue.visible, queue.in_flight, queue.delayed, age
        );
    }
    Ok(())
}

/// The latest `ApproximateAgeOfOldestMessage` of the last 15 minutes, if CloudWatch has it: SQS
/// publishes it there (each minute, on AWS), never as a queue attribute. Emulators have none, or
/// no CloudWatch at all; an error (no `cloudwatch:GetMetricData` permission, say) is told apart
/// from no data.
async fn oldest_message_age(
    cloudwatch: &aws_sdk_cloudwatch::Client,
    queue: &str,
) -> Result<Option<f64>, String> {
    let now = std::time::SystemTime::now();
    let query = MetricDataQuery::builder()
        .id("age")
        .metric_stat(
            MetricStat::builder()
                .metric(
                    Metric::builder()
                        .namespace("AWS/SQS")
                        .metric_name("ApproximateAgeOfOldestMessage")
                        .dimensions(Dimension::builder().name("QueueName").value(queue).build())
                        .build(),
                )
                .period(60)
                .stat("Maximum")
                .build(),
        )
        .build();
    let answer = cloudwatch
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from(now - Duration::from_secs(900)))
        .end_time(DateTime::from(now))
        .send()
        .await
        .map_err(|e| match e.raw_response() {
            Some(raw) => format!("HTTP {}: {}", raw.status().as_u16(), Chain(&e)),
            None => Chain(&e).to_string(),
        })?;
    // Newest first, as CloudWatch returns them by default.
    Ok(answer
        .metric_data_results()
        .first()
        .and_then(|result| result.values().first().copied()))
}

/// Runs a `spillway jobs` subcommand.
pub async fn jobs(command: JobsCommand) -> Result<(), Box<dyn Error>> {
    let JobsCommand::Get { id, mut aws, json } = command;
    let sdk = aws.deployment().await?;
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &aws.table);
    let job = store
        .get(id)
        .await
        .map_err(|e| format!("table {} at {}: {e}", aws.table, aws.target()))?
        .ok_or_else(|| format!("no job {id} in table {} at {}", aws.table, aws.target()))?;
    let document = document(&job);
    if json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", fields(&document));
    }
    Ok(())
}

/// Everything the table holds about a job.
fn document(job: &Job) -> Value {
    let mut document = json!({
        "id": job.id.to_string(),
        "kind": job.kind.as_str(),
        "status": job.status.as_str(),
        "attempts": job.attempts,
        "owner": job.owner.as_str(),
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "deadline": job.deadline,
        "expires_at": job.expires_at,
        "payload_size": job.payload.size,
        "payload_sha256": job.payload.sha256,
    });
    let optional = [
        ("lease_until", job.lease_until.map(|t| json!(t))),
        (
            "correlation_id",
            job.correlation_id.as_ref().map(|c| json!(c)),
        ),
        ("callback_url", job.callback_url.as_ref().map(|u| json!(u))),
        ("error", job.error.as_ref().map(|e| json!(e))),
        ("result", job.result.clone()),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            document[key] = value;
        }
    }
    document
}

/// `key  value` lines, keys aligned; the result as indented JSON.
fn fields(document: &Value) -> String {
    let Some(object) = document.as_object() else {
        return String::new();
    };
    let width = object.keys().map(String::len).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in object {
        let text = match value {
            Value::String(text) => text.clone(),
            Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(value)
                .unwrap_or_default()
                .replace('\n', "\n  "),
            other => other.to_string(),
        };
        out.push_str(&format!("{key:<width$}  {text}\n"));
    }
    out
}
