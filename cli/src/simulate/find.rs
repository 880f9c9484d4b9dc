//! `spillway simulate --find KNOB --target EXPR`: the smallest value of one whole-number setting
//! whose run meets every target, found by bisection, each run printed as it is made.
//!
//! A target compares one figure of the run's summary with a bound: `expired < 0.1%`,
//! `p99_end_to_end < 30s`, `peak_visible <= 5000`, `utilisation < 80%`. The figure is any
//! number of the summary's JSON (`--json` shows them), or a percentile of a latency written
//! `p50_`, `p95_`, `p99_` or `max_` before its name. A bound with `%` is a share: of the
//! accepted jobs for how jobs ended in the asynchronous design (as its summary prints them), of
//! the submissions otherwise; a figure that is already a share (`utilisation`) is compared as a
//! percentage. A bound with `s`, `ms` or `m` is a duration, compared in seconds.
//!
//! The search assumes that a larger value never breaks a target a smaller one met (more
//! concurrency, a larger pool), and checks what it can: the largest value must meet the
//! targets (else there is no answer), and the answer's neighbour below must not.

use std::fmt;

use serde_json::Value;

use super::scenario::Scenario;

/// A whole-number setting `--find` can search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Knob {
    MaximumConcurrency,
    BatchSize,
    RecordConcurrency,
    BacklogLimit,
    PoolSize,
    QueueSize,
}

impl Knob {
    /// Every knob, in the order errors list them.
    pub const ALL: [Self; 6] = [
        Self::MaximumConcurrency,
        Self::BatchSize,
        Self::RecordConcurrency,
        Self::BacklogLimit,
        Self::PoolSize,
        Self::QueueSize,
    ];

    /// Its scenario field, and the template parameter that sets it, if any.
    pub fn names(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::MaximumConcurrency => (
                "consumer.maximum_concurrency",
                Some("ConsumerMaxConcurrency"),
            ),
            Self::BatchSize => ("consumer.batch_size", Some("ConsumerBatchSize")),
            Self::RecordConcurrency => ("consumer.record_concurrency", None),
            Self::BacklogLimit => ("intake.backlog_limit", Some("BacklogLimit")),
            Self::PoolSize => ("sync.pool_size", None),
            Self::QueueSize => ("sync.queue_size", None),
        }
    }

    /// The knob named `name`: its scenario field (`consumer.maximum_concurrency`), the field's
    /// last part (`maximum_concurrency`), or its template parameter (`ConsumerMaxConcurrency`;
    /// `MaximumConcurrency`, the event source mapping's own name, too).
    pub fn named(name: &str) -> Option<Self> {
        if name == "MaximumConcurrency" {
            return Some(Self::MaximumConcurrency);
        }
        Self::ALL.into_iter().find(|knob| {
            let (field, parameter) = knob.names();
            name == field || field.rsplit('.').next() == Some(name) || parameter == Some(name)
        })
    }

    /// The values the scenario accepts for it (as its validation says).
    pub fn range(self) -> (u64, u64) {
        match self {
            Self::MaximumConcurrency => (2, 1000),
            Self::BatchSize | Self::RecordConcurrency => (1, 10_000),
            Self::BacklogLimit => (1, 100_000_000),
            Self::PoolSize => (1, 1_000_000),
            Self::QueueSize => (0, 10_000_000),
        }
    }

    /// The fields to set for it to be `value` in a run of `base`. A maximum concurrency below
    /// the mapping's initial one lowers the initial one with it, and one equal to it (a fixed
    /// capacity) moves with it; a batch size above 10 needs a batching window of a second.
    #[allow(clippy::cast_precision_loss)]
    pub fn fields(self, base: &Scenario, value: u64) -> Vec<(&'static str, f64)> {
        let mut fields = vec![(self.names().0, value as f64)];
        let consumer = &base.consumer;
        match self {
            Self::MaximumConcurrency => {
                let fixed = consumer.initial_concurrency == consumer.maximum_concurrency;
                let initial = if fixed {
                    value
                } else {
                    u64::from(consumer.initial_concurrency).min(value)
                };
                fields.push(("consumer.initial_concurrency", initial as f64));
            }
            Self::BatchSize if value > 10 && consumer.batching_window < 1_000_000 => {
                fields.push(("consumer.batching_window_s", 1.0));
            }
            _ => {}
        }
        fields
    }
}

impl fmt::Display for Knob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.names().0)
    }
}

/// How a figure is compared with its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Less,
    AtMost,
    More,
    AtLeast,
}

/// What a bound is measured in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Number,
    Percent,
    Seconds,
}

/// One target: `figure comparison bound`.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// As written, for the printout.
    text: String,
    figure: String,
    comparison: Comparison,
    bound: f64,
    unit: Unit,
}

/// The figures that count outcomes of accepted jobs, whose `%` is of the accepted jobs in the
/// asynchronous design.
const OF_ACCEPTED: [&str; 7] = [
    "succeeded",
    "failed",
    "expired",
    "dead_lettered",
    "lost_to_retention",
    "stranded_in_dlq",
    "unfinished",
];
/// The figures that are already shares (0 to 1).
const SHARES: [&str; 3] = ["utilisation", "waited_share", "wasted_share"];

impl Target {
    /// Parses `expired < 0.1%` and the like.
    pub fn parse(text: &str) -> Result<Self, String> {
        let operators = [
            ("<=", Comparison::AtMost),
            (">=", Comparison::AtLeast),
            ("<", Comparison::Less),
            (">", Comparison::More),
        ];
        let (at, operator, comparison) = operators
            .iter()
            .filter_map(|&(op, comparison)| text.find(op).map(|at| (at, op, comparison)))
            .min_by_key(|&(at, op, _)| (at, std::cmp::Reverse(op.len())))
            .ok_or_else(|| {
                format!("`{text}`: a target is a figure, <, <=, > or >=, and a bound")
            })?;
        let figure = text[..at].trim().to_owned();
        let bound = text[at + operator.len()..].trim();
        if figure.is_empty() {
            return Err(format!(
                "`{text}`: the figure before `{operator}` is missing"
            ));
        }
        let (number, unit, scale) = if let Some(number) = bound.strip_suffix('%') {
            (number, Unit::Percent, 1.0)
        } else if let Some(number) = bound.strip_suffix("ms") {
            (number, Unit::Seconds, 1e-3)
        } else if let Some(number) = bound.strip_suffix('s') {
            (number, Unit::Seconds, 1.0)
        } else if let Some(number) = bound.strip_suffix('m') {
            (number, Unit::Seconds, 60.0)
        } else {
            (bound, Unit::Number, 1.0)
        };
        let value: f64 = number
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite())
            .ok_or_else(|| format!("`{text}`: `{bound}` is not a number"))?;
        Ok(Self {
            text: text.trim().to_owned(),
            figure,
            comparison,
            bound: value * scale,
            unit,
        })
    }

    /// The figure in `summary` (a run's summary as JSON), in the bound's unit; an error names
    /// the figures there are.
    fn figure_in(&self, summary: &Value, asynchronous: bool) -> Result<f64, String> {
        let unknown = || {
            let mut known: Vec<String> = summary
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| v.is_number())
                .map(|(k, _)| k.clone())
                .collect();
            for latency in ["end_to_end", "queue_wait"] {
                if summary.get(latency).is_some() {
                    known.extend(["p50", "p95", "p99", "max"].map(|p| format!("{p}_{latency}")));
                }
            }
            format!(
                "`{}`: no figure `{}` in this run's summary; there are {}",
                self.text,
                self.figure,
                known.join(", ")
            )
        };
        let latency = ["p50", "p95", "p99", "max"].iter().find_map(|p| {
            let name = self.figure.strip_prefix(p)?.strip_prefix('_')?;
            Some((*p, name))
        });
        let value = match latency {
            Some((p, name)) => match summary.get(name) {
                // No job ended, or none was received: no latency to compare.
                Some(Value::Null) => return Ok(f64::NAN),
                Some(percentiles) => percentiles
                    .get(format!("{p}_s"))
                    .and_then(Value::as_f64)
                    .ok_or_else(unknown)?,
                None => return Err(unknown()),
            },
            None => summary
                .get(&self.figure)
                .and_then(Value::as_f64)
                .ok_or_else(unknown)?,
        };
        match self.unit {
            Unit::Percent if SHARES.contains(&self.figure.as_str()) => Ok(100.0 * value),
            Unit::Percent => {
                let of = if asynchronous && OF_ACCEPTED.contains(&self.figure.as_str()) {
                    "accepted"
                } else {
                    "arrivals"
                };
                let total = summary.get(of).and_then(Value::as_f64).unwrap_or(0.0);
                Ok(if total > 0.0 {
                    100.0 * value / total
                } else {
                    0.0
                })
            }
            Unit::Number | Unit::Seconds => Ok(value),
        }
    }

    /// Whether `value` meets the bound; a missing latency (NaN) meets none.
    fn met_by(&self, value: f64) -> bool {
        match self.comparison {
            Comparison::Less => value < self.bound,
            Comparison::AtMost => value <= self.bound,
            Comparison::More => value > self.bound,
            Comparison::AtLeast => value >= self.bound,
        }
    }
}

/// One run of the search: the value tried, each target's figure, and whether all were met.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub value: u64,
    pub figures: Vec<f64>,
    pub met: bool,
}

/// What the search found.
#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub knob: Knob,
    pub targets: Vec<Target>,
    /// Every run, in the order made.
    pub probes: Vec<Probe>,
    /// The smallest value that met every target; `None` when even the largest did not.
    pub answer: Option<u64>,
}

/// Searches `knob` over its range for the smallest value whose run meets every target.
/// `summary_for(value)` runs the scenario with `knob` at `value` and returns its summary as
/// JSON, and whether that run is of the asynchronous design.
pub fn search(
    knob: Knob,
    targets: Vec<Target>,
    mut summary_for: impl FnMut(u64) -> Result<(Value, bool), String>,
) -> Result<Search, String> {
    let mut probes = Vec::new();
    let mut probe = |value: u64, probes: &mut Vec<Probe>| -> Result<bool, String> {
        let (summary, asynchronous) = summary_for(value)?;
        let figures = targets
            .iter()
            .map(|target| target.figure_in(&summary, asynchronous))
            .collect::<Result<Vec<f64>, String>>()?;
        let met = targets
            .iter()
            .zip(&figures)
            .all(|(target, &figure)| target.met_by(figure));
        probes.push(Probe {
            value,
            figures,
            met,
        });
        Ok(met)
    };
    let (mut low, mut high) = knob.range();
    if !probe(high, &mut probes)? {
        return Ok(Search {
            knob,
            targets,
            probes,
            answer: None,
        });
    }
    // Invariant: `high` meets the targets; every value below `low` was shown not to, or is
    // below the range.
    while low < high {
        let middle = low + (high - low) / 2;
        if probe(middle, &mut probes)? {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(Search {
        knob,
        targets,
        probes,
        answer: Some(high),
    })
}

impl fmt::Display for Search {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let targets: Vec<&str> = self.targets.iter().map(|t| t.text.as_str()).collect();
        writeln!(f, "searching {} for: {}", self.knob, targets.join(" and "))?;
        for probe in &self.probes {
            let figures: Vec<String> = self
                .targets
                .iter()
                .zip(&probe.figures)
                .map(|(target, figure)| {
                    let unit = match target.unit {
                        Unit::Percent => "%",
                        Unit::Seconds => " s",
                        Unit::Number => "",
                    };
                    let mark = if target.met_by(*figure) { "ok" } else { "no" };
                    format!("{} {figure:.3}{unit} {mark}", target.figure)
                })
                .collect();
            writeln!(
                f,
                "  {:>10}  {}  {}",
                probe.value,
                if probe.met { "meets " } else { "misses" },
                figures.join(", ")
            )?;
        }
        match self.answer {
            Some(answer) => writeln!(
                f,
                "smallest {} that meets every target: {answer}",
                self.knob
            ),
            None => writeln!(
                f,
                "no {} up to {} meets every target",
                self.knob,
                self.knob.range().1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_target_reads_its_figure_comparison_and_unit() {
        let target = Target::parse("expired < 0.1%").unwrap();
        assert_eq!(
            (
                target.figure.as_str(),
                target.comparison,
                target.bound,
                target.unit
            ),
            ("expired", Comparison::Less, 0.1, Unit::Percent)
        );
        let target = Target::parse("p99_end_to_end<=1500ms").unwrap();
        assert_eq!(
            (
                target.figure.as_str(),
                target.comparison,
                target.bound,
                target.unit
            ),
            ("p99_end_to_end", Comparison::AtMost, 1.5, Unit::Seconds)
        );
        assert_eq!(Target::parse("peak_visible >= 2m").unwrap().bound, 120.0);
        for bad in ["expired", "< 3", "expired < many", "expired < inf%"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_share_is_of_the_accepted_jobs_or_of_the_submissions() {
        let summary = json!({
            "arrivals": 1000, "accepted": 500, "expired": 5, "rejected_backlog": 50,
            "utilisation": 0.75, "end_to_end": {"p99_s": 12.5}, "queue_wait": null
        });
        let figure = |text: &str| Target::parse(text).unwrap().figure_in(&summary, true);
        assert_eq!(figure("expired < 1%"), Ok(1.0));
        assert_eq!(figure("rejected_backlog < 1%"), Ok(5.0));
        assert_eq!(figure("utilisation < 80%"), Ok(75.0));
        assert_eq!(figure("p99_end_to_end < 30s"), Ok(12.5));
        assert!(figure("p99_queue_wait < 30s").unwrap().is_nan());
        let error = figure("expird < 1%").unwrap_err();
        assert!(
            error.contains("no figure `expird`") && error.contains("expired"),
            "{error}"
        );
    }

    #[test]
    fn the_search_finds_the_smallest_value_that_meets_the_targets() {
        // A made-up run whose p99 is 1000 / value seconds: under 7 s from value 143 on.
        let targets = vec![Target::parse("p99_end_to_end < 7s").unwrap()];
        let search = search(Knob::MaximumConcurrency, targets, |value| {
            #[allow(clippy::cast_precision_loss)]
            let p99 = 1000.0 / value as f64;
            Ok((json!({"end_to_end": {"p99_s": p99}}), true))
        })
        .unwrap();
        assert_eq!(search.answer, Some(143));
        // Bisection over 2..=1000: the largest value, then about log2(999) ≈ 10 more.
        assert!(search.probes.len() <= 12, "{search}");
        assert!(
            search.probes.iter().any(|p| p.value == 142 && !p.met),
            "{search}"
        );
        let printed = search.to_string();
        assert!(
            printed.contains("smallest consumer.maximum_concurrency that meets every target: 143"),
            "{printed}"
        );

        let never = search_never();
        assert_eq!((never.answer, never.probes.len()), (None, 1));
        assert!(
            never
                .to_string()
                .contains("no consumer.batch_size up to 10000")
        );
    }

    fn search_never() -> Search {
        let targets = vec![Target::parse("expired < 0%").unwrap()];
        search(Knob::BatchSize, targets, |_| {
            Ok((json!({"accepted": 10, "expired": 1}), true))
        })
        .unwrap()
    }
}
