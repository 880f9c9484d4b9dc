//! The fault-injection suite: thousands of jobs through the pipeline while the store and queue
//! fail, time out, lose responses, duplicate and reorder deliveries, invocations die mid-batch
//! and processors panic. It prints what it saw and fails if any accepted job was lost, ran more
//! often than it was claimed, or ran after it finished.
//!
//! `SPILLWAY_FAULT_SEED=N` replays one seed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use spillway_core::Settings;
use spillway_core::clock::{Clock, SystemClock};
use spillway_core::domain::{JobId, Timestamp};
use spillway_core::queue::{JobQueue, MemoryQueue, SqsQueue};
use spillway_core::store::{DynamoStore, JobStore, MemoryStore};
use spillway_core::testing::faults::{Forget, Outage, Ports, Report, Simulation, TokioClock};
use spillway_tests::{LocalTable, Stack};

/// 2,000 jobs on the in-memory adapters, on one thread with time paused: deterministic. The
/// settings are the template's defaults but for the attempts, and the table is down for an hour,
/// six times the queue's receive budget without the outage backoff (20 receives, 30 s apart).
fn in_memory(seed: u64) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let settings = Settings {
            // Two attempts, so that some jobs reach the DLQ for the redrive after retention.
            max_attempts: 2,
            backoff_base: Duration::from_secs(1),
            retention: Duration::from_secs(6 * 3600),
            visibility_timeout: Duration::from_secs(30),
            ..Settings::default()
        };
        let visibility = settings.visibility_timeout;
        let dlq = Arc::new(MemoryQueue::new(visibility));
        let queue = Arc::new(
            MemoryQueue::new(visibility)
                .with_dead_letter_queue(dlq.clone(), settings.max_receive_count),
        );
        let store = Arc::new(MemoryStore::new());
        let ports = Ports {
            store: store.clone(),
            forget: store,
            queue,
            dlq,
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:simulation".to_owned(),
            settings,
            function_timeout: Duration::from_secs(10),
            // On a whole second: records expire on whole seconds (DynamoDB's TTL attribute), so
            // a start's fraction of a second would move which sweep forgets a record.
            clock: Arc::new(TokioClock::starting_at(Timestamp::from_millis(
                SystemClock.now().as_millis() / 1000 * 1000,
            ))),
        };
        let simulation = Simulation {
            seed,
            jobs: 2_000,
            clients: 50,
            pollers: 8,
            fault_rate: 0.05,
            settle_within: Duration::from_secs(4 * 3600),
            timeout: Duration::from_secs(2),
            ttl: Duration::from_secs(2 * 3600),
            outage: Some(Outage {
                after: Duration::from_secs(2),
                lasting: Duration::from_secs(3600),
            }),
            sweep_every: Duration::from_secs(60),
            redrive_after_retention: true,
        };
        simulation.run(ports).await
    })
}

/// The queues a run in real time uses: the work queue (its ARN, `maxReceiveCount` and
/// visibility timeout) and its DLQ.
struct Queues {
    queue: Arc<dyn JobQueue>,
    dlq: Arc<dyn JobQueue>,
    arn: String,
    max_receive_count: u32,
    visibility_timeout: Duration,
}

/// `jobs` jobs in real time, submitted by `clients` at once, on `store` and `queues`, with the
/// table down for `outage`. Deadlines are a minute and records are kept [`RETENTION`].
async fn in_real_time(
    seed: u64,
    jobs: usize,
    clients: usize,
    store: (Arc<dyn JobStore>, Arc<dyn Forget>),
    queues: Queues,
    outage: Option<Outage>,
) -> Report {
    let ports = Ports {
        store: store.0,
        forget: store.1,
        queue: queues.queue,
        dlq: queues.dlq,
        queue_arn: queues.arn,
        settings: Settings {
            max_attempts: 3,
            max_receive_count: queues.max_receive_count,
            visibility_timeout: queues.visibility_timeout,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(8),
            outage_backoff: Duration::from_millis(500),
            retention: RETENTION,
            ..Settings::default()
        },
        function_timeout: Duration::from_secs(3),
        clock: Arc::new(SystemClock),
    };
    let simulation = Simulation {
        seed,
        jobs,
        clients,
        pollers: 8,
        fault_rate: 0.05,
        settle_within: Duration::from_secs(180),
        timeout: Duration::from_millis(300),
        ttl: Duration::from_secs(60),
        outage,
        sweep_every: Duration::from_secs(2),
        redrive_after_retention: outage.is_some(),
    };
    simulation.run(ports).await
}

/// How long the runs in real time keep a job's record. The template keeps records longer than
/// the queue keeps messages, so no message in the work queue is ever older than the records
/// (docs/guarantees.md, guarantee 8); the in-memory queue keeps messages for ever, so here the
/// retention must outlast any wait the faults can make. A message whose job was never written
/// (its client got a `503` during the outage) waits out the 45 s outage, then 8 s between
/// receives while its store calls fail: each receive makes three of them, one fails with
/// probability 1 − 0.95³ ≈ 0.14. At 75 s, two failed receives after the deadline (p ≈ 0.02,
/// over hundreds of such messages) let one pass the retention unwritten: the consumer then
/// acknowledges it as forgotten, and the suite counted a lost job in about one run in ten. At
/// 150 s, it takes about ten failed receives in a row after the outage (p ≈ 0.14¹⁰ ≈ 3·10⁻⁹),
/// and as many would move it to the DLQ first.
const RETENTION: Duration = Duration::from_secs(150);

/// A multi-threaded runtime for the runs in real time.
fn real_time_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The emulator's DynamoDB and SQS. The suite injects its own faults; the SDK's retries would only
/// blur which call failed (and moto applies two copies of one retried conditional write).
///
/// Two moto behaviours limit what this run can witness (docs/guarantees.md). It evaluates a
/// conditional update and writes it without a lock, so two concurrent claims of one job can both
/// pass. And a `TransactWriteItems` that fails (a client's retry with an Idempotency-Key already
/// taken) restores a copy of the whole table taken when it began, undoing every write other
/// requests made meanwhile: a job another client was just accepted for, or a consumer's recorded
/// outcome. So here one client submits at a time, which keeps every acceptance out of another
/// transaction's window, and the run asserts what moto can keep: every job accepted, and every
/// `202` naming a job that exists. Everything else is asserted on DynamoDB Local, whose
/// transactions and conditional writes are atomic as DynamoDB's are.
fn on_emulator(seed: u64) -> Report {
    real_time_runtime().block_on(async {
        let stack = Stack::create(20, Duration::from_secs(2)).await;
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&stack.sdk)
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&stack.sdk)
                .retry_config(RetryConfig::disabled())
                .build(),
        );
        let store = Arc::new(DynamoStore::new(dynamodb.clone(), &stack.table));
        let forget = Arc::new(Ttl {
            client: dynamodb,
            table: stack.table.clone(),
        });
        let queues: (Arc<dyn JobQueue>, Arc<dyn JobQueue>) = (
            Arc::new(SqsQueue::new(sqs.clone(), &stack.queue_url)),
            Arc::new(SqsQueue::new(sqs, &stack.dlq_url)),
        );
        let queues = Queues {
            queue: queues.0,
            dlq: queues.1,
            arn: stack.queue_arn.clone(),
            max_receive_count: stack.max_receive_count,
            visibility_timeout: stack.visibility_timeout,
        };
        in_real_time(seed, 200, 1, (store, forget), queues, None).await
    })
}

/// The job store on DynamoDB Local (AWS's implementation), SDK retries on, with every fault; the
/// queues in memory, in real time. Two thousand jobs through the emulator's SQS would measure the
/// emulator (one Python process) rather than Spillway: SQS itself is exercised by the run above.
fn on_dynamodb_local(seed: u64) -> Report {
    real_time_runtime().block_on(async {
        let table = LocalTable::create().await;
        // DynamoDB Local runs TTL deletions itself; the suite plays them instead, so that it
        // knows which records the TTL took.
        table
            .client
            .update_time_to_live()
            .table_name(&table.name)
            .time_to_live_specification(
                aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(false)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("turn DynamoDB Local's TTL off");
        let store = Arc::new(DynamoStore::new(table.client.clone(), &table.name));
        let forget = Arc::new(Ttl {
            client: table.client.clone(),
            table: table.name.clone(),
        });
        let visibility = Duration::from_secs(2);
        let dlq = Arc::new(MemoryQueue::new(visibility));
        let queues = Queues {
            queue: Arc::new(MemoryQueue::new(visibility).with_dead_letter_queue(dlq.clone(), 20)),
            dlq,
            arn: "arn:aws:sqs:us-east-1:000000000000:simulation".to_owned(),
            max_receive_count: 20,
            visibility_timeout: visibility,
        };
        // Longer than the receive budget without the outage backoff: 20 receives, 2 s apart.
        let outage = Outage {
            after: Duration::from_secs(3),
            lasting: Duration::from_secs(45),
        };
        in_real_time(
            seed,
            JOBS_ON_DYNAMODB_LOCAL,
            10,
            (store, forget),
            queues,
            Some(outage),
        )
        .await
    })
}

/// Jobs in the run on DynamoDB Local.
const JOBS_ON_DYNAMODB_LOCAL: usize = 2_000;

/// DynamoDB's TTL on a real table: deletes a job's item.
#[derive(Debug)]
struct Ttl {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

#[async_trait::async_trait]
impl Forget for Ttl {
    async fn forget(&self, id: JobId) {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S(format!("job#{id}")),
            )
            .send()
            .await
            .expect("delete a job's item");
    }
}

fn main() -> ExitCode {
    // The injected panics are expected; report only the others.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info
            .payload()
            .downcast_ref::<&str>()
            .is_some_and(|m| m.contains("asked to panic"));
        if !injected {
            default_hook(info);
        }
    }));
    if std::env::var_os("SPILLWAY_FAULT_LOG").is_some() {
        tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .init();
    }
    let seeds: Vec<u64> = match std::env::var("SPILLWAY_FAULT_SEED") {
        Ok(seed) => vec![seed.parse().expect("SPILLWAY_FAULT_SEED is a number")],
        Err(_) => vec![1, 2, 3],
    };
    let (mut passed, mut failed) = (0, 0);
    let mut check = |name: String, ok: bool| {
        println!("{} {name}", if ok { "ok  " } else { "FAIL" });
        if ok { passed += 1 } else { failed += 1 }
    };

    let emulator_only = std::env::var_os("SPILLWAY_FAULT_EMULATOR_ONLY").is_some();
    for &seed in seeds.iter().filter(|_| !emulator_only) {
        let report = in_memory(seed);
        println!("fault injection, in memory, {report}");
        check(
            format!("in memory, seed {seed}: nothing lost, nothing run twice per claim"),
            report.holds(),
        );
        let replay = in_memory(seed);
        check(
            format!("in memory, seed {seed}: the same seed gives the same run"),
            replay == report,
        );
    }
    let seed = seeds[0];
    let report = on_emulator(seed);
    println!(
        "fault injection, DynamoDB and SQS at {}, {report}",
        spillway_tests::endpoint()
    );
    check(
        format!(
            "on the emulator, seed {seed}: every retrying client's job accepted, every 202 names a job"
        ),
        report.accepted + report.one_shot >= report.submitted && report.accepted_without_job == 0,
    );

    let report = on_dynamodb_local(seed);
    println!("fault injection, DynamoDB Local and in-memory queues, {report}");
    check(
        format!("on DynamoDB Local, seed {seed}: nothing lost, nothing run twice per claim"),
        report.holds(),
    );

    println!("faults: {passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
