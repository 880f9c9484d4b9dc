//! The HTML report: one self-contained page (inline CSS and script, no network needed to open
//! it) with the runs' summaries in a table and their time series as JSON, which the page's
//! script draws as SVG charts when it opens. Several runs share each chart, so that another run
//! (another seed, another mode) can be laid over the first.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use super::dist::to_seconds;
use super::report::{Percentiles, Results, Summary};
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
    runs: Vec<Run<'a>>,
}

#[derive(Serialize)]
struct Run<'a> {
    label: &'a str,
    sample_s: f64,
    summary: &'a Summary,
    /// The time series by column (`"visible": [0, 3, …]`), every row of it.
    series: Map<String, Value>,
}

/// The page for `runs` (at least one), each a label and its results, under `title` (which should
/// name the scenario file and the seed).
pub fn html(
    title: &str,
    runs: &[(&str, &Results)],
    marks: &Marks,
) -> Result<String, serde_json::Error> {
    let data = Data {
        marks,
        runs: runs
            .iter()
            .map(|&(label, results)| {
                Ok(Run {
                    label,
                    sample_s: results.sample_s,
                    summary: &results.summary,
                    series: columns(results)?,
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

/// The rows of `results` as columns, every value kept; decimals are rounded to the thousandth,
/// as the CSV writes them.
fn columns(results: &Results) -> Result<Map<String, Value>, serde_json::Error> {
    let mut columns = Map::new();
    for row in &results.series {
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
                .or_insert_with(|| Value::Array(Vec::with_capacity(results.series.len())))
            {
                column.push(value);
            }
        }
    }
    Ok(columns)
}

/// The summary of each run, one column a run.
fn summary_table(runs: &[(&str, &Results)]) -> String {
    let columns: Vec<_> = runs
        .iter()
        .map(|(_, results)| figures(&results.summary))
        .collect();
    let mut table = String::from("<table class=\"summary\">\n<thead><tr><th></th>");
    for (label, _) in runs {
        // Writing to a String cannot fail.
        let _ = write!(table, "<th scope=\"col\">{}</th>", escape(label));
    }
    table.push_str("</tr></thead>\n<tbody>\n");
    if let Some(first) = columns.first() {
        for (row, (name, _)) in first.iter().enumerate() {
            let _ = write!(table, "<tr><th scope=\"row\">{name}</th>");
            for column in &columns {
                let _ = write!(table, "<td>{}</td>", escape(&column[row].1));
            }
            table.push_str("</tr>\n");
        }
    }
    table.push_str("</tbody>\n</table>\n");
    table
}

/// The figures of a summary, named, as the table shows them.
fn figures(s: &Summary) -> [(&'static str, String); 22] {
    let share = |n: u64| {
        if s.accepted == 0 {
            n.to_string()
        } else {
            #[allow(clippy::cast_precision_loss)]
            let percent = 100.0 * n as f64 / s.accepted as f64;
            format!("{n} ({percent:.2} %)")
        }
    };
    let percentiles = |p: &Option<Percentiles>| match p {
        Some(p) => format!(
            "{:.3} · {:.3} · {:.3} · {:.3} s",
            p.p50_s, p.p95_s, p.p99_s, p.max_s
        ),
        None => "none".to_owned(),
    };
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
            percentiles(&s.queue_wait),
        ),
        (
            "waited over 1 ms",
            format!("{:.1} %", 100.0 * s.waited_share),
        ),
        (
            "end to end p50 · p95 · p99 · max",
            percentiles(&s.end_to_end),
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
