//! `spillway simulate`: capacity planning for a Spillway deployment, without deploying it. A
//! discrete-event simulation of a scenario (arrivals and spikes, the API's throttle and backlog
//! limit, the queue, Lambda's event source mapping and the consumer's retries, clients polling)
//! that prints what the queue, the consumer and the clients would see.
//!
//! - [`scenario`]: the TOML file, read into a validated [`scenario::Scenario`];
//! - [`dist`]: processing-time distributions and the other random draws;
//! - [`arrivals`]: the submissions and API Gateway's throttle, shared by both designs;
//! - [`engine`]: the simulation of Spillway itself, free of I/O;
//! - [`sync`]: the same traffic through a synchronous design, for comparison;
//! - [`series`]: the time series' rows as a run advances;
//! - [`report`]: the summary tables, and the time series as CSV and JSON.

mod arrivals;
// `spillway load --sleep-dist` draws sleeps from the same distributions.
pub mod dist;
mod engine;
mod report;
mod scenario;
mod series;
mod sync;
#[cfg(test)]
mod test_support;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, ValueEnum};

use report::Runs;

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario: a TOML file (docs/scenarios/flash-sale.toml explains every field).
    scenario: PathBuf,
    /// The seed of the random draws; the scenario's `run.seed` (or 1) without it. The same
    /// scenario and seed give the same figures, byte for byte.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the time series (one row per `run.sample_s`) to this file as CSV.
    #[arg(long)]
    csv: Option<PathBuf>,
    /// Write the summary and the time series to this file as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The design to simulate: Spillway's (`async`), or the job's work done inline within the
    /// request (`sync`, the scenario's `[sync]` section).
    #[arg(long, value_enum, default_value = "async")]
    mode: DesignArg,
    /// Simulate both designs on the same arrivals and print them side by side.
    #[arg(long, conflicts_with = "mode")]
    compare: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DesignArg {
    Async,
    Sync,
}

/// Runs the scenario, prints the summary on standard output and the simulation's wall time on
/// standard error, and writes the CSV and JSON files asked for.
pub fn run(args: &SimulateArgs) -> Result<(), Box<dyn Error>> {
    let scenario = scenario::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let started = Instant::now();
    let with_async = args.compare || args.mode == DesignArg::Async;
    let with_sync = args.compare || args.mode == DesignArg::Sync;
    let runs = Runs {
        asynchronous: with_async.then(|| engine::run(&scenario, seed)),
        synchronous: with_sync.then(|| sync::run(&scenario, seed)),
    };
    let wall = started.elapsed();
    let submissions = runs.asynchronous.as_ref().map_or_else(
        || runs.synchronous.as_ref().map_or(0, |r| r.summary.arrivals),
        |r| r.summary.arrivals,
    );
    eprintln!(
        "simulated {submissions} submissions in {:.3} s of wall time",
        wall.as_secs_f64()
    );
    #[allow(clippy::print_stdout)]
    {
        let mut printed = Vec::new();
        if let Some(run) = &runs.asynchronous {
            printed.push(run.summary.to_string());
        }
        if let Some(run) = &runs.synchronous {
            printed.push(run.summary.to_string());
        }
        if let (Some(a), Some(s)) = (&runs.asynchronous, &runs.synchronous) {
            printed.push(report::comparison(&a.summary, &s.summary));
        }
        print!("{}", printed.join("\n"));
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, runs.to_csv())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, runs.to_json()?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
