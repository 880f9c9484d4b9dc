//! `spillway dlq`: see what is in a priority lane's dead-letter queue and send it back to work in
//! the same lane.
// A command-line tool answers on standard output.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::time::Duration;

use spillway_core::clock::{Clock, SystemClock};
use spillway_core::config::Settings;
use spillway_core::dlq::{self, DeadLetter, Reset};
use spillway_core::domain::{JobId, Priority};
use spillway_core::queue::{SqsQueue, move_messages};
use spillway_core::store::DynamoStore;

use crate::aws::AwsArgs;

/// `spillway dlq` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List the messages in a lane's dead-letter queue: message id, job id, receive count, age.
    /// The messages stay where they are.
    List {
        #[command(flatten)]
        aws: AwsArgs,
        /// The priority lane whose dead-letter queue to list.
        #[arg(long, value_name = "normal|high", default_value_t)]
        priority: Priority,
        /// Show at most this many messages.
        #[arg(long, default_value_t = 1_000)]
        limit: usize,
    },
    /// Set a lane's dead-lettered jobs back to pending and move their messages back to the same
    /// lane's work queue: all of them (with an SQS message move task where the endpoint has them,
    /// one by one otherwise), or one job's. Safe to interrupt and run again.
    Redrive {
        #[command(flatten)]
        aws: AwsArgs,
        /// The priority lane whose dead-letter queue to redrive, into its own work queue.
        #[arg(long, value_name = "normal|high", default_value_t)]
        priority: Priority,
        /// Redrive only this job's message.
        #[arg(long, value_name = "ID")]
        job: Option<JobId>,
        /// Give every redriven job a new deadline this far from now (for example `2h`; at most
        /// 4 days, the work queue's retention). Without it each job keeps its own, and one whose
        /// deadline passed while it waited expires when its message is delivered.
        #[arg(long, value_name = "DURATION", value_parser = parse_extend)]
        extend: Option<Duration>,
    },
}

/// The longest `--extend`: a redriven message must outlive the deadline it is given, and the work
/// queue keeps messages 4 days.
const MAX_EXTEND: Duration = Duration::from_secs(345_600);

fn parse_extend(value: &str) -> Result<Duration, String> {
    let extend = humantime::parse_duration(value).map_err(|error| error.to_string())?;
    if extend.is_zero() || extend > MAX_EXTEND {
        return Err(format!(
            "must be more than 0 and at most 4 days (the work queue's retention), got {value}"
        ));
    }
    Ok(extend)
}

/// Runs a `spillway dlq` subcommand.
pub async fn run(command: DlqCommand) -> Result<(), Box<dyn Error>> {
    match command {
        DlqCommand::List {
            mut aws,
            priority,
            limit,
        } => {
            let sqs = aws_sdk_sqs::Client::new(&aws.deployment().await?);
            let dlq_url = aws.lane_dead_letter_queue_url(&sqs, priority).await?;
            let letters = dlq::list(&SqsQueue::new(sqs, &dlq_url), limit).await?;
            print!("{}", table(&letters, SystemClock.now()));
            Ok(())
        }
        DlqCommand::Redrive {
            mut aws,
            priority,
            job,
            extend,
        } => {
            let sdk = aws.deployment().await?;
            let sqs = aws_sdk_sqs::Client::new(&sdk);
            let queue_url = aws.lane_queue_url(&sqs, priority).await?;
            let dlq_url = aws.lane_dead_letter_queue_url(&sqs, priority).await?;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), &aws.table);
            let settings = Settings::default().with_lookup(|name| std::env::var(name).ok())?;
            let (queue, dlq) = (
                SqsQueue::new(sqs.clone(), &queue_url),
                SqsQueue::new(sqs.clone(), &dlq_url),
            );

            let reset = Reset {
                clock: &SystemClock,
                retention: settings.retention,
                extend,
            };
            let mut reset_first = 0;
            if job.is_none() {
                // Everything: reset the jobs, then let SQS move the messages in bulk where it can.
                reset_first = dlq::reset_jobs(&store, &dlq, reset).await?;
                let (dlq_arn, queue_arn) =
                    (arn(&sqs, &dlq_url).await?, arn(&sqs, &queue_url).await?);
                match move_messages(&sqs, &dlq_arn, &queue_arn, Duration::from_secs(2)).await {
                    Ok(moved) => {
                        println!(
                            "moved {moved} message(s) to the work queue ({queue_url}) with an SQS message move task; {reset_first} job(s) set back to pending"
                        );
                        return Ok(());
                    }
                    Err(error) => eprintln!(
                        "no SQS message move task here ({}); moving the messages one by one",
                        aws_sdk_sqs::error::DisplayErrorContext(&error)
                    ),
                }
            }
            let report = dlq::redrive(&store, &queue, &dlq, reset, job).await?;
            println!(
                "moved {} message(s) to the work queue ({queue_url}); {} job(s) set back to pending; {} left in the dead-letter queue",
                report.moved,
                reset_first + report.jobs_reset,
                report.left
            );
            Ok(())
        }
    }
}

async fn arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, Box<dyn Error>> {
    spillway_core::provision::queue_arn(sqs, url)
        .await
        .map_err(|e| format!("queue {url}: {e}").into())
}

/// The listing as aligned columns.
fn table(letters: &[DeadLetter], now: spillway_core::domain::Timestamp) -> String {
    let mut out = format!(
        "{:<38} {:<38} {:>8} {:>10}\n",
        "MESSAGE ID", "JOB ID", "RECEIVES", "AGE"
    );
    for letter in letters {
        let job = letter
            .job_id
            .map_or_else(|| "(not a job message)".to_owned(), |id| id.to_string());
        let age = Duration::from_secs(now.saturating_since(letter.sent_at).as_secs());
        out.push_str(&format!(
            "{:<38} {:<38} {:>8} {:>10}\n",
            letter.message_id,
            job,
            letter.receive_count,
            humantime::format_duration(age).to_string()
        ));
    }
    out.push_str(&format!("{} message(s)\n", letters.len()));
    out
}
