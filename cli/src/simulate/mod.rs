//! `spillway simulate`: capacity planning for a Spillway deployment, without deploying it. A
//! discrete-event simulation of a scenario (arrivals and spikes, the API's throttle and backlog
//! limit, the queue, Lambda's event source mapping and the consumer's retries, clients polling)
//! that prints what the queue, the consumer and the clients would see.
//!
//! - [`scenario`]: the TOML file, read into a validated [`scenario::Scenario`];
//! - [`dist`]: processing-time distributions and the other random draws;
//! - [`engine`]: the simulation itself, free of I/O;
//! - [`report`]: the summary table, and the time series as CSV and JSON;
//! - [`html`]: the summary and the time series as charts, in one self-contained HTML page.

mod dist;
mod engine;
mod html;
mod report;
mod scenario;

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

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
    /// Write a report to this file: one HTML page, needing no network, with the summary and a
    /// chart of each time series.
    #[arg(long)]
    html: Option<PathBuf>,
}

/// Runs the scenario, prints the summary on standard output and the simulation's wall time on
/// standard error, and writes the CSV, JSON and HTML files asked for.
pub fn run(args: &SimulateArgs) -> Result<(), Box<dyn Error>> {
    let scenario = scenario::load(&args.scenario)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    let started = Instant::now();
    let results = engine::run(&scenario, seed);
    let wall = started.elapsed();
    eprintln!(
        "simulated {} submissions in {:.3} s of wall time",
        results.summary.arrivals,
        wall.as_secs_f64()
    );
    #[allow(clippy::print_stdout)]
    {
        print!("{}", results.summary);
    }
    if let Some(path) = &args.csv {
        std::fs::write(path, results.to_csv())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.json {
        std::fs::write(path, results.to_json()?)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let title = format!(
            "spillway simulate {} (seed {seed})",
            args.scenario.display()
        );
        let page = html::html(&title, &[("async", &results)], &html::Marks::of(&scenario))?;
        std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
