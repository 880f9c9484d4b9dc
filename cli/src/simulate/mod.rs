//! `spillway simulate`: capacity planning for a Spillway deployment, without deploying it. A
//! discrete-event simulation of a scenario (arrivals and spikes, the API's throttle and backlog
//! limit, the queue, Lambda's event source mapping and the consumer's retries, clients polling)
//! that prints what the queue, the consumer and the clients would see.
//!
//! - [`scenario`]: the TOML file, read into a validated [`scenario::Scenario`];
//! - [`template`]: with `--from-template`, the deployment's settings read from a SAM template;
//! - [`dist`]: processing-time distributions and the other random draws;
//! - [`cost`]: what a run would cost on AWS, from a table of prices;
//! - [`arrivals`]: the submissions and API Gateway's throttle, shared by both designs;
//! - [`engine`]: the simulation of Spillway itself, free of I/O;
//! - [`sync`]: the same traffic through a synchronous design, for comparison;
//! - [`series`]: the time series' rows as a run advances;
//! - [`find`]: `--find`, the smallest value of a setting that meets targets;
//! - [`report`]: the summary tables, and the time series as CSV and JSON;
//! - [`html`]: the summaries and the time series as charts, in one self-contained HTML page.

mod arrivals;
mod cost;
// `spillway load --sleep-dist` draws sleeps from the same distributions.
pub mod dist;
mod engine;
mod find;
mod html;
mod report;
mod scenario;
mod series;
mod sync;
mod template;
#[cfg(test)]
mod test_support;

use std::error::Error;
use std::path::{Path, PathBuf};
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
    /// Write a report to this file: one HTML page, needing no network, with the summary and a
    /// chart of each time series (both designs laid over each other with --compare).
    #[arg(long)]
    html: Option<PathBuf>,
    /// The design to simulate: Spillway's (`async`), or the job's work done inline within the
    /// request (`sync`, the scenario's `[sync]` section).
    #[arg(long, value_enum, default_value = "async")]
    mode: DesignArg,
    /// Simulate both designs on the same arrivals and print them side by side.
    #[arg(long, conflicts_with = "mode")]
    compare: bool,
    /// Simulate what this SAM template (infra/template.yaml) deploys: its throttles, backlog
    /// limit, TTL, queue, event source mapping and consumer settings replace the scenario's,
    /// which keeps the traffic. Each value taken is printed on standard error with its source.
    #[arg(long, value_name = "TEMPLATE")]
    from_template: Option<PathBuf>,
    /// A template parameter's value instead of its default, as at deploy time (repeatable).
    #[arg(
        long = "param",
        value_name = "NAME=VALUE",
        value_parser = parse_param,
        requires = "from_template"
    )]
    params: Vec<(String, String)>,
    /// Search this whole-number setting for the smallest value that meets every --target:
    /// consumer.maximum_concurrency (MaximumConcurrency, ConsumerMaxConcurrency),
    /// consumer.batch_size, consumer.record_concurrency, intake.backlog_limit (BacklogLimit),
    /// sync.pool_size or sync.queue_size. Each run is printed, then the answer's summary; the
    /// files asked for are the answer's run.
    #[arg(
        long,
        value_name = "SETTING",
        requires = "target",
        conflicts_with = "compare"
    )]
    find: Option<String>,
    /// A target for --find, e.g. `expired < 0.1%`, `p99_end_to_end < 30s`,
    /// `peak_visible <= 5000`: any figure of the summary (--json names them), or p50_, p95_,
    /// p99_ or max_ before a latency; `%` is a share, `s`, `ms`, `m` a duration. Repeat it for
    /// several.
    #[arg(long, value_name = "EXPR", requires = "find")]
    target: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum DesignArg {
    Async,
    Sync,
}

/// `NAME=VALUE`, as `--param` takes it.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got `{text}`")),
    }
}

/// Runs the scenario, prints the summary on standard output and the simulation's wall time on
/// standard error, and writes the CSV, JSON and HTML files asked for.
pub fn run(args: &SimulateArgs) -> Result<(), Box<dyn Error>> {
    let deployment = match &args.from_template {
        None => Vec::new(),
        Some(template) => from_template(template, &args.params)?,
    };
    let mut scenario = deployed(&args.scenario, args.from_template.as_deref(), &deployment)?;
    let seed = args.seed.unwrap_or(scenario.seed);
    if let Some(name) = &args.find {
        let knob = find::Knob::named(name).ok_or_else(|| {
            let known: Vec<String> = find::Knob::ALL.iter().map(ToString::to_string).collect();
            format!(
                "--find {name}: no such setting; one of {}",
                known.join(", ")
            )
        })?;
        let answer = search(args, &scenario, knob, &deployment, seed)?;
        let mut fields = replacements(&deployment);
        fields.extend(knob.fields(&scenario, answer));
        scenario = scenario::load_replacing(&args.scenario, &fields)?.0;
    }
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
    if let Some(path) = &args.html {
        let title = format!(
            "spillway simulate {} (seed {seed})",
            args.scenario.display()
        );
        let mut shown = Vec::new();
        if let Some(run) = &runs.asynchronous {
            shown.push(html::Run::asynchronous("async", run)?);
        }
        if let Some(run) = &runs.synchronous {
            shown.push(html::Run::synchronous("sync", run)?);
        }
        let page = html::html(&title, &shown, &html::Marks::of(&scenario))?;
        std::fs::write(path, page).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The scenario at `path` with the fields `template` deploys in place of its own. Prints each
/// value taken on standard error, with where it came from and the scenario's value it replaced.
/// The values `template` deploys with `params`, each with where it came from.
fn from_template(
    template: &Path,
    params: &[(String, String)],
) -> Result<Vec<template::Taken>, Box<dyn Error>> {
    let text = std::fs::read_to_string(template)
        .map_err(|e| format!("cannot read {}: {e}", template.display()))?;
    Ok(template::read(&text, params).map_err(|e| format!("{}: {e}", template.display()))?)
}

/// `taken` as the scenario's replaced fields.
fn replacements(taken: &[template::Taken]) -> Vec<(&'static str, f64)> {
    taken.iter().map(|t| (t.field, t.value)).collect()
}

/// The scenario at `path` with the values `taken` from `template` in place of its own, each
/// printed on standard error with where it came from and what it replaced.
fn deployed(
    path: &Path,
    template: Option<&Path>,
    taken: &[template::Taken],
) -> Result<scenario::Scenario, Box<dyn Error>> {
    let loaded = scenario::load_replacing(path, &replacements(taken));
    let Some(template) = template else {
        return Ok(loaded?.0);
    };
    let replaced = match &loaded {
        Ok((_, replaced)) => replaced.clone(),
        // Shown all the same: the error may be about a value taken.
        Err(_) => vec![None; taken.len()],
    };
    eprintln!("from {}:", template.display());
    for (taken, previous) in taken.iter().zip(replaced) {
        let overridden = previous
            .filter(|previous| previous.parse::<f64>() != Ok(taken.value))
            .map(|previous| format!("; overrides the scenario's {previous}"))
            .unwrap_or_default();
        eprintln!(
            "  {} = {}  ({}{overridden})",
            taken.field, taken.value, taken.source
        );
    }
    Ok(loaded?.0)
}

/// `--find`: searches `knob` for the smallest value whose run of `base` (the scenario with the
/// `deployment`'s values) meets every `--target`, prints the search, and returns the answer.
fn search(
    args: &SimulateArgs,
    base: &scenario::Scenario,
    knob: find::Knob,
    deployment: &[template::Taken],
    seed: u64,
) -> Result<u64, Box<dyn Error>> {
    let targets = args
        .target
        .iter()
        .map(|text| find::Target::parse(text))
        .collect::<Result<Vec<_>, String>>()?;
    let asynchronous = args.mode == DesignArg::Async;
    let search = find::search(knob, targets, |value| {
        let mut fields = replacements(deployment);
        fields.extend(knob.fields(base, value));
        let (scenario, _) =
            scenario::load_replacing(&args.scenario, &fields).map_err(|e| e.to_string())?;
        let summary = if asynchronous {
            serde_json::to_value(engine::run(&scenario, seed).summary)
        } else {
            serde_json::to_value(sync::run(&scenario, seed).summary)
        };
        Ok((summary.map_err(|e| e.to_string())?, asynchronous))
    })?;
    #[allow(clippy::print_stdout)]
    {
        println!("{search}");
    }
    search.answer.ok_or_else(|| {
        format!(
            "no value of {knob} up to {} meets every target",
            knob.range().1
        )
        .into()
    })
}
