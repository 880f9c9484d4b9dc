//! Metrics as CloudWatch Embedded Metric Format (EMF): one JSON line per event on stdout, which
//! CloudWatch Logs turns into metrics, so the hot path makes no `PutMetricData` call.
//!
//! Every document publishes its metrics per dimension and in total (no dimension, which is what
//! the template's alarms watch): a job's metrics per job kind (`Kind`) and per lane (`Priority`),
//! a rejection's per problem type (`Reason`).

use std::fmt;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

#[cfg(any(test, feature = "testing"))]
use serde_json::Value;
#[cfg(test)]
use serde_json::json;

use crate::domain::{Job, Timestamp};

/// A metric Spillway publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// A job was accepted (`202`, replays not counted).
    JobsAccepted,
    /// A request was refused (dimension `Reason`: the problem type).
    JobsRejected,
    /// A job succeeded.
    JobsSucceeded,
    /// A job failed permanently.
    JobsFailed,
    /// A job's deadline passed before it could run.
    JobsExpired,
    /// A job's retries ran out.
    JobsDeadLettered,
    /// A job was cancelled.
    JobsCancelled,
    /// An attempt failed and was scheduled again.
    Retries,
    /// A message named a job the table no longer holds (its retention passed): acknowledged,
    /// nothing run.
    JobsForgotten,
    /// A job's message was sent on to wait, every slot of its kind's `max_concurrency` held.
    SlotWaits,
    /// How long a message waited in the queue before this delivery (now − `SentTimestamp`).
    QueueWaitTime,
    /// How long the processor ran.
    ProcessingTime,
    /// From acceptance to a terminal state.
    EndToEndLatency,
}

impl Metric {
    /// The metric's name in CloudWatch.
    pub const fn name(self) -> &'static str {
        match self {
            Self::JobsAccepted => "JobsAccepted",
            Self::JobsRejected => "JobsRejected",
            Self::JobsSucceeded => "JobsSucceeded",
            Self::JobsFailed => "JobsFailed",
            Self::JobsExpired => "JobsExpired",
            Self::JobsForgotten => "JobsForgotten",
            Self::SlotWaits => "SlotWaits",
            Self::JobsDeadLettered => "JobsDeadLettered",
            Self::JobsCancelled => "JobsCancelled",
            Self::Retries => "Retries",
            Self::QueueWaitTime => "QueueWaitTime",
            Self::ProcessingTime => "ProcessingTime",
            Self::EndToEndLatency => "EndToEndLatency",
        }
    }

    /// Its EMF unit.
    pub const fn unit(self) -> &'static str {
        match self {
            Self::QueueWaitTime | Self::ProcessingTime | Self::EndToEndLatency => "Milliseconds",
            _ => "Count",
        }
    }

    /// The count metric of a job reaching `status`, when it is terminal.
    pub const fn terminal(status: crate::domain::JobStatus) -> Option<Self> {
        use crate::domain::JobStatus;
        match status {
            JobStatus::Succeeded => Some(Self::JobsSucceeded),
            JobStatus::Failed => Some(Self::JobsFailed),
            JobStatus::Expired => Some(Self::JobsExpired),
            JobStatus::DeadLettered => Some(Self::JobsDeadLettered),
            JobStatus::Cancelled => Some(Self::JobsCancelled),
            JobStatus::Pending | JobStatus::Running => None,
        }
    }
}

/// A metric's value: a count, or a duration in milliseconds.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Where EMF lines go.
pub trait Sink: Send + Sync + fmt::Debug {
    /// Writes one line.
    fn write_line(&self, line: &str);
}

/// Standard output, where Lambda sends it to CloudWatch Logs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stdout;

impl Sink for Stdout {
    fn write_line(&self, line: &str) {
        let mut stdout = std::io::stdout().lock();
        // A metric that cannot be written is dropped: metrics never fail a request.
        let _ = writeln!(stdout, "{line}");
    }
}

/// The metrics of one process: a namespace and a sink, or off.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    target: Option<(Arc<str>, Arc<dyn Sink>)>,
}

impl Metrics {
    /// No metrics (tests, `spillway dev`).
    pub fn off() -> Self {
        Self::default()
    }

    /// Metrics in `namespace`, written to `sink`.
    pub fn new(namespace: &str, sink: Arc<dyn Sink>) -> Self {
        Self {
            target: Some((namespace.into(), sink)),
        }
    }

    /// Whether anything is published: callers skip gathering values when not.
    pub fn is_on(&self) -> bool {
        self.target.is_some()
    }

    /// Publishes `values` at `at`, per each of `dimensions` (name, value) and in total.
    pub fn emit(&self, at: Timestamp, dimensions: &[(&str, &str)], values: &[(Metric, f64)]) {
        let Some((namespace, sink)) = &self.target else {
            return;
        };
        if values.is_empty() {
            return;
        }
        // Written straight into one line rather than built as a `serde_json::Value` tree and
        // serialized: one buffer instead of a map, a vector and a string per field (a consumer
        // writes two of these per record). serde_json still escapes the strings and formats the
        // numbers (a non-finite one as `null`, as before).
        let mut line = Vec::with_capacity(256);
        line.push(b'{');
        for (name, value) in dimensions {
            json_field(&mut line, name, value);
        }
        for (metric, value) in values {
            json_field(&mut line, metric.name(), value);
        }
        line.extend_from_slice(br#""_aws":{"Timestamp":"#);
        json_value(&mut line, &at.as_millis());
        line.extend_from_slice(br#","CloudWatchMetrics":[{"Namespace":"#);
        json_value(&mut line, &**namespace);
        line.extend_from_slice(br#","Dimensions":["#);
        for (name, _) in dimensions {
            line.push(b'[');
            json_value(&mut line, name);
            line.extend_from_slice(b"],");
        }
        line.extend_from_slice(br#"[]],"Metrics":["#);
        for (index, (metric, _)) in values.iter().enumerate() {
            if index > 0 {
                line.push(b',');
            }
            line.extend_from_slice(br#"{"Name":"#);
            json_value(&mut line, metric.name());
            line.extend_from_slice(br#","Unit":"#);
            json_value(&mut line, metric.unit());
            line.push(b'}');
        }
        line.extend_from_slice(b"]}]}}");
        // Only serde_json's output and ASCII went in, so this always holds.
        if let Ok(line) = String::from_utf8(line) {
            sink.write_line(&line);
        }
    }

    /// Publishes `values` for a job of `kind` in the lane `priority`.
    pub fn for_job(
        &self,
        at: Timestamp,
        kind: &crate::domain::Kind,
        priority: crate::domain::Priority,
        values: &[(Metric, f64)],
    ) {
        self.emit(
            at,
            &[("Kind", kind.as_str()), ("Priority", priority.as_str())],
            values,
        );
    }

    /// Publishes that `job` just reached its state at `at`: the state's count, and for a terminal
    /// state the time since the job was accepted; `extra` joins them in the same document.
    pub fn reached(&self, at: Timestamp, job: &Job, extra: &[(Metric, f64)]) {
        if !self.is_on() {
            return;
        }
        let mut values = extra.to_vec();
        if let Some(count) = Metric::terminal(job.status) {
            values.push((count, 1.0));
            values.push((
                Metric::EndToEndLatency,
                millis(at.saturating_since(job.created_at)),
            ));
        }
        self.for_job(at, &job.kind, job.priority, &values);
    }
}

/// `"key":value,` into `line`.
fn json_field(line: &mut Vec<u8>, key: &str, value: &(impl serde::Serialize + ?Sized)) {
    json_value(line, key);
    line.push(b':');
    json_value(line, value);
    line.push(b',');
}

/// `value` as JSON into `line`: strings escaped, a non-finite number `null`.
fn json_value(line: &mut Vec<u8>, value: &(impl serde::Serialize + ?Sized)) {
    // Writing into a vector fails only on a value that cannot be JSON, which none of these is.
    let _ = serde_json::to_writer(line, value);
}

/// A sink that keeps its lines, for tests.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct Captured(std::sync::Mutex<Vec<String>>);

#[cfg(any(test, feature = "testing"))]
impl Captured {
    /// The lines written so far, parsed.
    #[allow(clippy::unwrap_used)]
    pub fn documents(&self) -> Vec<Value> {
        let lines = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

#[cfg(any(test, feature = "testing"))]
impl Sink for Captured {
    fn write_line(&self, line: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_follows_the_emf_structure() {
        let captured = Arc::new(Captured::default());
        let metrics = Metrics::new("Spillway/test", captured.clone());
        let at = Timestamp::from_millis(1_795_000_000_123);
        metrics.emit(
            at,
            &[("Kind", "echo"), ("Priority", "high")],
            &[(Metric::JobsSucceeded, 1.0), (Metric::ProcessingTime, 12.5)],
        );
        let documents = captured.documents();
        assert_eq!(documents.len(), 1);
        assert_eq!(
            documents[0],
            json!({
                "_aws": {
                    "Timestamp": 1_795_000_000_123_u64,
                    "CloudWatchMetrics": [{
                        "Namespace": "Spillway/test",
                        "Dimensions": [["Kind"], ["Priority"], []],
                        "Metrics": [
                            {"Name": "JobsSucceeded", "Unit": "Count"},
                            {"Name": "ProcessingTime", "Unit": "Milliseconds"}
                        ]
                    }]
                },
                "Kind": "echo",
                "Priority": "high",
                "JobsSucceeded": 1.0,
                "ProcessingTime": 12.5
            })
        );
    }

    #[test]
    fn a_dimension_value_is_escaped_and_a_non_finite_value_is_null() {
        let captured = Arc::new(Captured::default());
        let metrics = Metrics::new("Spillway", captured.clone());
        let at = Timestamp::from_millis(1);
        metrics.emit(
            at,
            &[("Reason", "a \"quoted\"\nreason")],
            &[(Metric::JobsRejected, f64::NAN)],
        );
        metrics.emit(at, &[], &[(Metric::JobsAccepted, 1.0)]);
        metrics.emit(at, &[], &[]);
        let documents = captured.documents();
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0]["Reason"], "a \"quoted\"\nreason");
        assert_eq!(documents[0]["JobsRejected"], Value::Null);
        assert_eq!(
            documents[1]["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([[]])
        );
    }

    #[test]
    fn off_has_nowhere_to_write_and_says_so() {
        let off = Metrics::off();
        // Callers gather no values on this answer...
        assert!(!off.is_on());
        // ...and every way to publish returns before writing: an off value holds no sink, not
        // even standard output.
        assert!(off.target.is_none(), "{off:?}");
    }
}
