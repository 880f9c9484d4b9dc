//! `spillway`: Spillway's command-line tool.

mod aws;
mod dev;
mod dlq;
mod load;
mod ops;
mod simulate;
mod webhooks;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Spillway: asynchronous request-reply for AWS. Accept work in milliseconds, run it from a queue
/// with retries, backoff and a dead-letter queue, and poll for the result.
#[derive(Debug, Parser)]
#[command(name = "spillway", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline on this machine: the HTTP API on 127.0.0.1:3000, the queue, and the
    /// consumer behind an emulation of Lambda's SQS event source mapping. In memory by default;
    /// against DynamoDB and SQS at an endpoint (LocalStack, moto, AWS) with --endpoint-url.
    Dev(dev::DevArgs),
    /// Inspect and redrive the dead-letter queue of a deployment (at --endpoint-url, or on AWS).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Load a Spillway API (`spillway dev` or a deployed stage) at a fixed rate, with an optional
    /// spike, and report accepted/s, rejections, intake and end-to-end latency, and lost jobs.
    Load(load::LoadArgs),
    /// Inspect a deployment's queues: depth, in flight, delayed, dead letters, oldest message.
    #[command(subcommand)]
    Queue(ops::QueueCommand),
    /// Inspect a deployment's jobs as the table holds them.
    #[command(subcommand)]
    Jobs(ops::JobsCommand),
    /// Plan capacity: simulate a deployment under a scenario (arrivals and spikes, throttle and
    /// backlog limit, queue, event source mapping, retries, polling clients) and print the queue,
    /// latency and concurrency it would see. No AWS account or network needed.
    Simulate(simulate::SimulateArgs),
    /// Webhook signing: the secret an owner's receivers verify with.
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("spillway: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Dlq(command) => dlq::run(command).await,
            Command::Load(args) => load::run(args).await,
            Command::Queue(command) => ops::queue(command).await,
            Command::Jobs(command) => ops::jobs(command).await,
            Command::Webhooks(command) => webhooks::run(command).await,
            // Synchronous: the simulation waits on nothing.
            Command::Simulate(args) => simulate::run(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spillway: {error}");
            ExitCode::FAILURE
        }
    }
}
