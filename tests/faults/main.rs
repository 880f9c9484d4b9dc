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
use spillway_core::queue::{JobQueue, MemoryQueue, SqsQueue};
use spillway_core::store::{DynamoStore, JobStore, MemoryStore};
use spillway_core::testing::faults::{Ports, Report, Simulation, TokioClock};
use spillway_tests::{LocalTable, Stack};

fn settings(max_attempts: u32, backoff_max: Duration) -> Settings {
    Settings {
        max_attempts,
        backoff_base: Duration::from_secs(1).min(backoff_max),
        backoff_max,
        ..Settings::default()
    }
}

/// 2,000 jobs on the in-memory adapters, on one thread with time paused: deterministic.
fn in_memory(seed: u64) -> Report {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let settings = settings(5, Duration::from_secs(30));
        let visibility = Duration::from_secs(30);
        let dlq = Arc::new(MemoryQueue::new(visibility));
        let queue = Arc::new(
            MemoryQueue::new(visibility).with_dead_letter_queue(dlq.clone(), settings.max_attempts),
        );
        let ports = Ports {
            store: Arc::new(MemoryStore::new()),
            queue,
            dlq,
            queue_arn: "arn:aws:sqs:us-east-1:000000000000:simulation".to_owned(),
            settings,
            function_timeout: Duration::from_secs(10),
            clock: Arc::new(TokioClock::starting_at(SystemClock.now())),
        };
        let simulation = Simulation {
            seed,
            jobs: 2_000,
            clients: 50,
            pollers: 8,
            fault_rate: 0.05,
            settle_within: Duration::from_secs(4 * 3600),
            timeout: Duration::from_secs(2),
        };
        simulation.run(ports).await
    })
}

/// 200 jobs in real time, submitted by `clients` at once, on `store` and the work queue and DLQ
/// of `stack`.
async fn in_real_time(
    seed: u64,
    clients: usize,
    stack: &Stack,
    store: Arc<dyn JobStore>,
    queues: (Arc<dyn JobQueue>, Arc<dyn JobQueue>),
) -> Report {
    let ports = Ports {
        store,
        queue: queues.0,
        dlq: queues.1,
        queue_arn: stack.queue_arn.clone(),
        settings: settings(stack.max_receive_count, Duration::from_secs(1)),
        function_timeout: Duration::from_secs(3),
        clock: Arc::new(SystemClock),
    };
    let simulation = Simulation {
        seed,
        jobs: 200,
        clients,
        pollers: 4,
        fault_rate: 0.05,
        settle_within: Duration::from_secs(120),
        timeout: Duration::from_millis(300),
    };
    simulation.run(ports).await
}

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
        let stack = Stack::create(5, Duration::from_secs(2)).await;
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
        let store = Arc::new(DynamoStore::new(dynamodb, &stack.table));
        let queues: (Arc<dyn JobQueue>, Arc<dyn JobQueue>) = (
            Arc::new(SqsQueue::new(sqs.clone(), &stack.queue_url)),
            Arc::new(SqsQueue::new(sqs, &stack.dlq_url)),
        );
        in_real_time(seed, 1, &stack, store, queues).await
    })
}

/// The job store on DynamoDB Local (AWS's implementation), SDK retries on; the queues on the
/// emulator's SQS.
fn on_dynamodb_local(seed: u64) -> Report {
    real_time_runtime().block_on(async {
        let stack = Stack::create(5, Duration::from_secs(2)).await;
        let table = LocalTable::create().await;
        let store = Arc::new(DynamoStore::new(table.client.clone(), &table.name));
        in_real_time(seed, 10, &stack, store, (stack.queue(), stack.dlq())).await
    })
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
        format!("on the emulator, seed {seed}: every job accepted, every 202 names a job"),
        report.accepted == report.submitted && report.accepted_without_job == 0,
    );

    let report = on_dynamodb_local(seed);
    println!("fault injection, DynamoDB Local and the emulator's SQS, {report}");
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
