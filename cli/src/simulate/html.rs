//! The HTML report: one self-contained page (inline CSS and script, no network needed to open
//! it) with the runs' summaries in a table and their time series as JSON, which the page's
//! script draws as SVG charts when it opens. Several runs share each chart, so that another run
//! (another seed, another mode) can be laid over the first.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::dist::to_seconds;
use super::report::{Percentiles, Results, Row, Summary, SyncSummary};
use super::scenario::Scenario;

const STYLE: &str = include_str!("html/report.css");
const SCRIPT: &str = include_str!("html/report.js");

/// The thresholds drawn over the charts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Marks {
    /// `BacklogLimit`: the queue-depth chart draws 50, 75 and 90 % of it; 0 (off): no lines.
    pub backlog_limit: u64,
    /// `QueueAgeAlarmSeconds`: the oldest message's age chart draws it.
    pub age_alarm_s: f64,
}

impl Marks {
    /// The scenario's thresholds.
    pub fn of(scenario: &Scenario) -> Self {
        Self {
            backlog_limit: scenario.intake.backlog_limit,
            age_alarm_s: to_seconds(scenario.queue.age_alarm),
        }
    }
}

/// What the page's script draws.
#[derive(Serialize)]
struct Data<'a> {
    marks: &'a Marks,
    runs: Vec<Embedded<'a>>,
}

#[derive(Serialize)]
struct Embedded<'a> {
    label: &'a str,
    sample_s: f64,
    summary: &'a Value,
    capacity: Capacity,
    /// The time series by column (`"visible": [0, 3, …]`), every row of it.
    series: Map<String, Value>,
}

/// The most workers a run could have busy, drawn on the concurrency chart.
#[derive(Debug, Clone, Serialize)]
struct Capacity {
    value: u32,
    label: String,
}

/// One run as the page shows it: its label, its summary's figures and its time series.
#[derive(Debug, Clone)]
pub struct Run<'a> {
    label: &'a str,
    sample_s: f64,
    summary: Value,
    capacity: Capacity,
    figures: Vec<(&'static str, String)>,
    series: &'a [Row],
}

impl<'a> Run<'a> {
    /// A run of Spillway's design.
    pub fn asynchronous(label: &'a str, results: &'a Results) -> Result<Self, serde_json::Error> {
        let summary = &results.summary;
        Ok(Self {
            label,
            sample_s: results.sample_s,
            summary: serde_json::to_value(summary)?,
            capacity: Capacity {
                value: summary.maximum_concurrency,
                label: format!("MaximumConcurrency ({})", summary.maximum_concurrency),
            },
            figures: figures(summary).into(),
            series: &results.series,
        })
    }

    /// A run of the synchronous design.
    pub fn synchronous(
        label: &'a str,
        results: &'a Results<SyncSummary>,
    ) -> Result<Self, serde_json::Error> {
        let summary = &results.summary;
        Ok(Self {
            label,
            sample_s: results.sample_s,
            summary: serde_json::to_value(summary)?,
            capacity: Capacity {
                value: summary.pool_size,
                label: format!("{} synchronous workers", summary.pool_size),
            },
            figures: sync_figures(summary).into(),
            series: &results.series,
        })
    }
}

/// The page for `runs` (at least one), each a label and its results, under `title` (which should
/// name the scenario file and the seed).
pub fn html(title: &str, runs: &[Run<'_>], marks: &Marks) -> Result<String, serde_json::Error> {
    let data = Data {
        marks,
        runs: runs
            .iter()
            .map(|run| {
                Ok(Embedded {
                    label: run.label,
                    sample_s: run.sample_s,
                    summary: &run.summary,
                    capacity: run.capacity.clone(),
                    series: columns(run.series)?,
                })
            })
            .collect::<Result<_, serde_json::Error>>()?,
    };
    // `<` only ever appears inside a JSON string, where `\u003c` means the same; without it,
    // a label holding `</script>` would end the element.
    let json = serde_json::to_string(&data)?.replace('<', "\\u003c");
    let title = escape(title);
    let mut page = String::with_capacity(json.len() + STYLE.len() + SCRIPT.len() + 8192);
    page.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Writing to a String cannot fail.
    let _ = writeln!(
        page,
        "<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>"
    );
    let _ = writeln!(page, "<body>\n<h1>{title}</h1>");
    page.push_str(
        "<p class=\"lede\">What <code>spillway simulate</code> found: the summary of each run, \
         then its time series over the run's simulated time.</p>\n",
    );
    page.push_str("<h2>Summary</h2>\n");
    page.push_str(&summary_table(runs));
    page.push_str("<h2>Time series</h2>\n<div id=\"charts\">\n");
    page.push_str(
        "<p id=\"status\" class=\"status\">The charts are drawn by this page's script; if this \
         line stays, it did not run.</p>\n</div>\n",
    );
    let _ = writeln!(
        page,
        "<script type=\"application/json\" id=\"spillway-data\">{json}</script>"
    );
    let _ = write!(page, "<script>\n{SCRIPT}</script>\n</body>\n</html>\n");
    Ok(page)
}

/// `series` as columns, every value kept; decimals are rounded to the thousandth, as the CSV
/// writes them.
fn columns(series: &[Row]) -> Result<Map<String, Value>, serde_json::Error> {
    let mut columns = Map::new();
    for row in series {
        let Value::Object(row) = serde_json::to_value(row)? else {
            continue;
        };
        for (name, value) in row {
            let value = match value.as_f64() {
                Some(decimal) if value.is_f64() => Value::from((decimal * 1e3).round() / 1e3),
                _ => value,
            };
            if let Value::Array(column) = columns
                .entry(name)
                .or_insert_with(|| Value::Array(Vec::with_capacity(series.len())))
            {
                column.push(value);
            }
        }
    }
    Ok(columns)
}

/// The summary of each run, one column a run; a figure one run does not have is blank in its
/// column (the two designs have figures of their own).
fn summary_table(runs: &[Run<'_>]) -> String {
    let mut names: Vec<&'static str> = Vec::new();
    for run in runs {
        for (name, _) in &run.figures {
            if !names.contains(name) {
                names.push(name);
            }
        }
    }
    let mut table = String::from("<table class=\"summary\">\n<thead><tr><th></th>");
    for run in runs {
        // Writing to a String cannot fail.
        let _ = write!(table, "<th scope=\"col\">{}</th>", escape(run.label));
    }
    table.push_str("</tr></thead>\n<tbody>\n");
    for name in names {
        let _ = write!(table, "<tr><th scope=\"row\">{name}</th>");
        for run in runs {
            let value = run
                .figures
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("", |(_, v)| v.as_str());
            let _ = write!(table, "<td>{}</td>", escape(value));
        }
        table.push_str("</tr>\n");
    }
    table.push_str("</tbody>\n</table>\n");
    table
}

/// The figures of a synchronous run's summary, named, as the table shows them; those it shares
/// with the asynchronous design have the same names.
fn sync_figures(s: &SyncSummary) -> [(&'static str, String); 14] {
    let share = |n: u64| count_and_share(n, s.arrivals, " of submissions");
    [
        ("seed", s.seed.to_string()),
        ("simulated", format!("{:.1} s", s.simulated_s)),
        ("submissions", s.arrivals.to_string()),
        (
            "requests sent (client retries)",
            format!("{} ({})", s.requests, s.client_retries),
        ),
        ("succeeded", share(s.succeeded)),
        ("failed", share(s.failed)),
        ("timed out (no answer)", share(s.timed_out)),
        ("rejected, pool full (503)", share(s.rejected)),
        ("throttled (429)", s.throttled.to_string()),
        (
            "work done for nobody",
            format!(
                "{} requests ({:.1} % of the workers' time)",
                s.wasted_requests,
                100.0 * s.wasted_share
            ),
        ),
        (
            "peak waiting for a worker",
            format!("{} at {:.1} s", s.peak_waiting, s.peak_waiting_at_s),
        ),
        (
            "end to end p50 · p95 · p99 · max",
            percentiles(s.end_to_end.as_ref()),
        ),
        (
            "workers busy",
            format!(
                "peak {} of {}, mean {:.2}",
                s.peak_busy, s.pool_size, s.mean_busy
            ),
        ),
        ("utilisation", format!("{:.1} %", 100.0 * s.utilisation)),
    ]
}

/// `n` and its share of `of`, "12 (1.20 %{what})", or `n` alone when `of` is 0.
fn count_and_share(n: u64, of: u64, what: &str) -> String {
    if of == 0 {
        return n.to_string();
    }
    #[allow(clippy::cast_precision_loss)]
    let percent = 100.0 * n as f64 / of as f64;
    format!("{n} ({percent:.2} %{what})")
}

/// Percentiles as "p50 · p95 · p99 · max s", or "none".
fn percentiles(p: Option<&Percentiles>) -> String {
    match p {
        Some(p) => format!(
            "{:.3} · {:.3} · {:.3} · {:.3} s",
            p.p50_s, p.p95_s, p.p99_s, p.max_s
        ),
        None => "none".to_owned(),
    }
}

/// The figures of a summary, named, as the table shows them.
fn figures(s: &Summary) -> [(&'static str, String); 23] {
    let share = |n: u64| count_and_share(n, s.accepted, "");
    [
        ("seed", s.seed.to_string()),
        ("simulated", format!("{:.1} s", s.simulated_s)),
        ("submissions", s.arrivals.to_string()),
        ("accepted (202)", s.accepted.to_string()),
        ("rejected, backlog (503)", s.rejected_backlog.to_string()),
        ("throttled (429)", s.throttled.to_string()),
        ("succeeded", share(s.succeeded)),
        ("failed", share(s.failed)),
        ("expired", share(s.expired)),
        ("dead-lettered", share(s.dead_lettered)),
        (
            "lost, stranded in the DLQ, unfinished",
            format!(
                "{} · {} · {}",
                s.lost_to_retention, s.stranded_in_dlq, s.unfinished
            ),
        ),
        (
            "attempts (retries, cut by the timeout)",
            format!("{} ({}, {})", s.attempts, s.retries, s.timed_out),
        ),
        (
            "peak visible messages",
            format!("{} at {:.1} s", s.peak_visible, s.peak_visible_at_s),
        ),
        (
            "drained after the last spike",
            match (s.last_spike_end_s, s.drained_after_spike_s) {
                (Some(end), Some(drain)) => format!("{drain:.1} s (it ended at {end:.1} s)"),
                (Some(end), None) => format!("never (it ended at {end:.1} s)"),
                (None, _) => "no spike".to_owned(),
            },
        ),
        (
            "queue wait p50 · p95 · p99 · max",
            percentiles(s.queue_wait.as_ref()),
        ),
        (
            "waited over 1 ms",
            format!("{:.1} %", 100.0 * s.waited_share),
        ),
        (
            "end to end p50 · p95 · p99 · max",
            percentiles(s.end_to_end.as_ref()),
        ),
        (
            "consumer concurrency",
            format!(
                "peak {} of {}, mean {:.2}",
                s.peak_concurrency, s.maximum_concurrency, s.mean_concurrency
            ),
        ),
        ("utilisation", format!("{:.1} %", 100.0 * s.utilisation)),
        ("status requests", s.status_requests.to_string()),
        (
            "status requests per second",
            format!(
                "{:.1} mean, {:.1} peak at {:.1} s",
                s.status_per_s_mean, s.status_per_s_peak, s.status_per_s_peak_at_s
            ),
        ),
        (
            "rows over the status throttle",
            if s.status_throttle_per_s > 0.0 {
                format!(
                    "{} (over {}/s)",
                    s.status_rows_over_throttle, s.status_throttle_per_s
                )
            } else {
                "not compared".to_owned()
            },
        ),
        (
            "cost on AWS",
            format!(
                "${:.2} per million jobs (${:.2} for the run)",
                s.cost.per_million_jobs_usd, s.cost.total_usd
            ),
        ),
    ]
}

/// `text` with the characters HTML gives a meaning escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests;
