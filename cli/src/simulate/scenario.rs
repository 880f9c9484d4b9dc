//! A scenario file (TOML) read into a validated [`Scenario`]: every duration in whole
//! microseconds, every default filled in (the template's and the consumer's own), and every
//! mistake reported with the name of its field (`consumer.batch_size: …`).

use std::borrow::Cow;
use std::fmt;
use std::path::Path;

use serde::Deserialize;
use spillway_core::api::MAX_WAIT_SECONDS;
use spillway_core::config::Settings;
use toml::Spanned;

use super::cost::{ARM64_GB_S, Prices, X86_64_GB_S};
use super::dist::{ProcessingTime, lognormal_from_percentiles, seconds_to_micros};

/// The most jobs a scenario may expect to generate: each costs about 40 bytes of memory.
const MAX_EXPECTED_JOBS: f64 = 200_000_000.0;
/// The most time-series rows a run may produce.
const MAX_ROWS: f64 = 10_000_000.0;
/// SQS's longest visibility timeout and message retention, and its shortest retention.
const MAX_VISIBILITY_S: f64 = 43_200.0;
const MIN_RETENTION_S: f64 = 60.0;
const MAX_RETENTION_S: f64 = 1_209_600.0;

/// A scenario field that is missing a usable value. Its message starts with the field's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The field, as a dotted path: `consumer.batch_size`, `arrivals.spikes[1].rate`.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ScenarioError {}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ScenarioError {
    ScenarioError {
        field: field.into(),
        problem: problem.into(),
    }
}

/// Everything a simulation needs, validated. Times are microseconds from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The seed used when the command line gives none.
    pub seed: u64,
    /// How long jobs arrive.
    pub duration: u64,
    /// How long after the arrivals end the run may go on draining the queue.
    pub drain_limit: u64,
    /// The width of one time-series row.
    pub sample: u64,
    /// Jobs arriving.
    pub arrivals: Arrivals,
    /// API Gateway and the intake function.
    pub intake: Intake,
    /// The work queue.
    pub queue: Queue,
    /// The event source mapping and the consumer function.
    pub consumer: Consumer,
    /// What each attempt of a job does.
    pub processing: Processing,
    /// How clients poll `GET /jobs/{id}`.
    pub polling: Polling,
    /// The status route's throttle rate (`StatusThrottlingRateLimit`) the polls are compared
    /// with; 0: no comparison.
    pub status_throttle_rate: f64,
    /// The synchronous design the same traffic is compared with (`--mode sync`, `--compare`).
    pub sync: SyncGateway,
    /// The prices a run is costed at.
    pub prices: Prices,
}

/// A synchronous endpoint doing the job's work inline: each request holds one of `pool_size`
/// workers (threads, connections) for the whole processing time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncGateway {
    /// Workers; a request finding all busy waits in the accept queue, or is refused.
    pub pool_size: u32,
    /// Requests that may wait for a worker; beyond it a request is refused (`503`).
    pub queue_size: u32,
    /// How long a client waits for its answer (µs) before it gives up on the request.
    pub client_timeout: u64,
    /// How many times a client sends its request again after a timeout or a `5xx`.
    pub client_retries: u32,
    /// The wait before a client's first retry (µs), doubled before each next one.
    pub retry_delay: u64,
}

/// When jobs arrive: a baseline rate, and spikes during which another rate applies.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrivals {
    /// Jobs per second outside the spikes.
    pub rate: f64,
    /// Poisson arrivals, or evenly spaced ones.
    pub process: ArrivalProcess,
    /// Spikes, sorted by start, not overlapping; or the segments of a rate curve.
    pub spikes: Vec<Spike>,
    /// Whether `spikes` are a rate curve's segments (`arrivals.curve`), which have no "after the
    /// last spike".
    pub curve: bool,
}

/// How arrivals are spaced at a given rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArrivalProcess {
    /// Exponential gaps: independent clients.
    Poisson,
    /// Equal gaps: a metronome, for exact arithmetic.
    Even,
}

/// A window with its own arrival rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spike {
    /// When it starts (µs).
    pub start: u64,
    /// How long it lasts (µs).
    pub length: u64,
    /// Jobs per second during it, instead of the baseline.
    pub rate: f64,
}

impl Spike {
    /// When it ends (µs).
    pub fn end(&self) -> u64 {
        self.start + self.length
    }
}

/// API Gateway's throttle and intake's checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Intake {
    /// Visible messages above which intake answers `503` (`BacklogLimit`); 0: off.
    pub backlog_limit: u64,
    /// API Gateway's token bucket for `POST /jobs`; `None`: no throttle.
    pub throttle: Option<Throttle>,
    /// Each job's deadline, from its acceptance (µs).
    pub ttl: u64,
}

/// A token bucket: `rate` tokens per second, at most `burst` saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    /// Requests per second (`ApiThrottlingRateLimit`).
    pub rate: f64,
    /// Bucket size (`ApiThrottlingBurstLimit`).
    pub burst: f64,
}

/// The work queue's attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    /// How long a received message stays hidden unless the consumer changes it (µs).
    pub visibility_timeout: u64,
    /// Receives after which SQS moves a message to the DLQ instead of delivering it again.
    pub max_receive_count: u32,
    /// How long SQS keeps a message from when it was sent (µs).
    pub retention: u64,
    /// `QueueAgeAlarmSeconds`: the template alarms when the oldest message is older (µs). Not
    /// simulated; the HTML report draws it.
    pub age_alarm: u64,
}

/// The event source mapping, the consumer function and its retry settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Consumer {
    /// Most records per invocation (`ConsumerBatchSize`).
    pub batch_size: u32,
    /// How long the mapping may wait to fill a batch (µs; `ConsumerBatchingWindowSeconds`).
    pub batching_window: u64,
    /// `ScalingConfig.MaximumConcurrency` (`ConsumerMaxConcurrency`).
    pub maximum_concurrency: u32,
    /// Concurrent invocations the mapping starts with (AWS: 5).
    pub initial_concurrency: u32,
    /// How many concurrent invocations the mapping adds per minute while messages wait (AWS: 300).
    pub scale_up_per_minute: u32,
    /// The function's timeout (µs; `ConsumerTimeoutSeconds`).
    pub timeout: u64,
    /// Records of one batch processed at once (`SPILLWAY_CONSUMER_CONCURRENCY`).
    pub record_concurrency: u32,
    /// The consumer's retry settings: attempts and backoff, as `spillway_core` reads them.
    pub settings: Settings,
}

/// What each attempt of a job does.
#[derive(Debug, Clone, PartialEq)]
pub struct Processing {
    /// How long an attempt runs.
    pub time: ProcessingTime,
    /// Probability that an attempt fails with a retryable error.
    pub retryable: f64,
    /// Probability that an attempt fails with a permanent error.
    pub permanent: f64,
}

/// How a client polls its job's status, from its acceptance until it sees the job end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Polling {
    /// Clients do not poll.
    None,
    /// Every `interval` µs.
    Fixed { interval: u64 },
    /// After `initial` µs, then each wait `factor` times the last, at most `max` µs.
    Backoff { initial: u64, factor: f64, max: u64 },
    /// Long polls (`?wait=N`): each request is held until the job ends or `wait` µs pass.
    Long { wait: u64 },
}

// The file as written: every field optional where a default exists, unknown fields refused.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    run: RunFile,
    #[serde(default)]
    arrivals: ArrivalsFile,
    #[serde(default)]
    intake: IntakeFile,
    #[serde(default)]
    queue: QueueFile,
    #[serde(default)]
    consumer: ConsumerFile,
    #[serde(default)]
    processing: ProcessingFile,
    #[serde(default)]
    clients: ClientsFile,
    #[serde(default)]
    sync: SyncFile,
    #[serde(default)]
    cost: CostFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    duration_s: Option<f64>,
    drain_limit_s: Option<f64>,
    sample_s: Option<f64>,
    seed: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ArrivalsFile {
    rate: Option<f64>,
    process: Option<ArrivalProcess>,
    #[serde(default)]
    spikes: Vec<SpikeFile>,
    curve: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SpikeFile {
    start_s: f64,
    length_s: f64,
    rate: f64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntakeFile {
    backlog_limit: Option<u64>,
    throttle_rate: Option<f64>,
    throttle_burst: Option<f64>,
    ttl_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueFile {
    visibility_timeout_s: Option<f64>,
    max_receive_count: Option<u32>,
    retention_s: Option<f64>,
    age_alarm_s: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsumerFile {
    batch_size: Option<u32>,
    batching_window_s: Option<f64>,
    maximum_concurrency: Option<u32>,
    mode: Option<PollerMode>,
    minimum_pollers: Option<u32>,
    maximum_pollers: Option<u32>,
    initial_concurrency: Option<u32>,
    scale_up_per_minute: Option<u32>,
    timeout_s: Option<f64>,
    record_concurrency: Option<u32>,
    max_attempts: Option<u32>,
    backoff_base_s: Option<u64>,
    backoff_max_s: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProcessingFile {
    time: Option<TimeFile>,
    retryable: Option<f64>,
    permanent: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum TimeFile {
    Fixed { seconds: f64 },
    Uniform { min_s: f64, max_s: f64 },
    Exponential { mean_s: f64 },
    LogNormal { p50_s: f64, p99_s: f64 },
    Empirical { csv: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientsFile {
    poll: Option<PollFile>,
    status_throttle_rate: Option<f64>,
}

/// How the event source mapping's pollers scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum PollerMode {
    /// Lambda's default: 5 concurrent invocations at first, 300 more a minute.
    Standard,
    /// `ProvisionedPollerConfig`: `MinimumPollers` always ready, each running up to
    /// [`INVOCATIONS_PER_POLLER`] invocations, scaling faster, up to `MaximumPollers`.
    Provisioned,
}

/// Concurrent invocations one provisioned event poller runs, and how many invocations a minute a
/// provisioned mapping adds while messages wait, as AWS documents them for SQS.
const INVOCATIONS_PER_POLLER: u32 = 10;
const PROVISIONED_SCALE_UP_PER_MINUTE: u32 = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostFile {
    memory_mb: Option<f64>,
    architecture: Option<Architecture>,
    intake_ms: Option<f64>,
    status_ms: Option<f64>,
    lambda_gb_s_usd: Option<f64>,
    lambda_requests_per_million_usd: Option<f64>,
    sqs_requests_per_million_usd: Option<f64>,
    dynamodb_writes_per_million_usd: Option<f64>,
    dynamodb_reads_per_million_usd: Option<f64>,
    api_requests_per_million_usd: Option<f64>,
}

/// The functions' instruction set, which sets Lambda's price per GB-second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Architecture {
    Arm64,
    #[serde(rename = "x86_64")]
    X86_64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFile {
    pool_size: Option<u32>,
    queue_size: Option<u32>,
    client_timeout_s: Option<f64>,
    client_retries: Option<u32>,
    retry_delay_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
enum PollFile {
    None,
    Fixed {
        interval_s: f64,
    },
    Backoff {
        initial_s: f64,
        factor: f64,
        max_s: f64,
    },
    Long {
        wait_s: f64,
    },
}

/// For each replaced field, the value the scenario file gave it, as written, when it gave one.
pub type Replaced = Vec<Option<String>>;

/// Reads and validates the scenario file at `path` (an `empirical` processing time's CSV is
/// read relative to the scenario's folder), with each of `replacements` (a dotted field,
/// `consumer.batch_size`, and its value) standing in for the file's own value, the last one
/// winning when a field is given twice; beside the scenario, the value the file gave each
/// replaced field, when it gave one.
pub fn load_replacing(
    path: &Path,
    replacements: &[(&str, f64)],
) -> Result<(Scenario, Replaced), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let read_csv = |name: &str| -> Result<String, String> {
        let csv = folder.join(name);
        std::fs::read_to_string(&csv).map_err(|e| format!("cannot read {}: {e}", csv.display()))
    };
    parse_replacing(&text, read_csv, replacements)
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// Parses and validates scenario `text`; `read_csv` returns the text of an `empirical`
/// processing time's CSV file, given its name. The tests' way in; the command reads files.
#[cfg(test)]
pub fn parse(
    text: &str,
    read_csv: impl Fn(&str) -> Result<String, String>,
) -> Result<Scenario, ScenarioError> {
    parse_replacing(text, read_csv, &[]).map(|(scenario, _)| scenario)
}

/// [`parse`], with `replacements` as [`load_replacing`] takes them. A replaced value goes through
/// the same validation as the file's own.
pub fn parse_replacing(
    text: &str,
    read_csv: impl Fn(&str) -> Result<String, String>,
    replacements: &[(&str, f64)],
) -> Result<(Scenario, Replaced), ScenarioError> {
    // A syntax error has no field to name: toml's message shows the line.
    let mut document = toml::de::DeTable::parse(text)
        .map_err(|e| invalid("scenario", e.to_string().trim_end().to_owned()))?;
    let literals: Vec<String> = replacements
        .iter()
        .map(|&(_, value)| toml_number(value))
        .collect();
    let mut replaced = Vec::with_capacity(replacements.len());
    for (&(field, _), literal) in replacements.iter().zip(&literals) {
        let value = toml::de::DeValue::parse(literal)
            .map_err(|e| invalid(field, format!("cannot be {literal}: {e}")))?;
        replaced.push(replace(document.get_mut(), field, value)?);
    }
    let file: File = serde_path_to_error::deserialize(toml::de::Deserializer::from(document))
        .map_err(|e| {
            let field = e.path().to_string();
            let error = e.into_inner();
            let problem = match error.span() {
                // A replaced value's span is in its literal, not in the file.
                Some(span) if !replacements.iter().any(|&(name, _)| name == field) => {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("{} (line {line})", error.message())
                }
                _ => error.message().to_owned(),
            };
            invalid(field, problem)
        })?;
    Ok((validate(file, read_csv)?, replaced))
}

/// `value` as a TOML literal: an integer when it is whole, which the fields counting things need.
fn toml_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        value.to_string()
    }
}

/// Puts `value` at `field` (`section.key`) of `document`; the value it replaces, as written.
fn replace<'i>(
    document: &mut toml::de::DeTable<'i>,
    field: &str,
    value: Spanned<toml::de::DeValue<'i>>,
) -> Result<Option<String>, ScenarioError> {
    let Some((section, key)) = field.split_once('.') else {
        return Err(invalid(field, "is not a field of a section"));
    };
    let table = document
        .entry(Spanned::new(0..0, Cow::Owned(section.to_owned())))
        .or_insert_with(|| Spanned::new(0..0, toml::de::DeValue::Table(Default::default())));
    let toml::de::DeValue::Table(table) = table.get_mut() else {
        return Err(invalid(section, "must be a table"));
    };
    let previous = table.insert(Spanned::new(0..0, Cow::Owned(key.to_owned())), value);
    Ok(previous.map(|previous| match previous.into_inner() {
        toml::de::DeValue::Integer(integer) => integer.to_string(),
        toml::de::DeValue::Float(float) => float.to_string(),
        other => other.type_str().to_owned(),
    }))
}

/// A number of seconds that must be finite and within `min..=max`, in microseconds.
fn seconds(field: &str, value: f64, min: f64, max: f64) -> Result<u64, ScenarioError> {
    if !value.is_finite() || value < min || value > max {
        return Err(invalid(
            field,
            format!("must be a number of seconds from {min} to {max}, got {value}"),
        ));
    }
    Ok(seconds_to_micros(value))
}

fn within<T: PartialOrd + fmt::Display + Copy>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<T, ScenarioError> {
    if value < min || value > max {
        return Err(invalid(
            field,
            format!("must be from {min} to {max}, got {value}"),
        ));
    }
    Ok(value)
}

fn rate(field: &str, value: f64) -> Result<f64, ScenarioError> {
    if !value.is_finite() || value < 0.0 {
        return Err(invalid(
            field,
            format!("must be a rate of 0 or more per second, got {value}"),
        ));
    }
    Ok(value)
}

fn probability(field: &str, value: f64) -> Result<f64, ScenarioError> {
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(
            field,
            format!("must be a probability from 0 to 1, got {value}"),
        ));
    }
    Ok(value)
}

fn validate(
    file: File,
    read_csv: impl Fn(&str) -> Result<String, String>,
) -> Result<Scenario, ScenarioError> {
    let defaults = Settings::default();
    let run = &file.run;
    let duration = seconds(
        "run.duration_s",
        run.duration_s.unwrap_or(600.0),
        0.001,
        30.0 * 86_400.0,
    )?;
    let drain_limit = seconds(
        "run.drain_limit_s",
        run.drain_limit_s.unwrap_or(86_400.0),
        0.0,
        30.0 * 86_400.0,
    )?;
    let sample = seconds("run.sample_s", run.sample_s.unwrap_or(1.0), 0.001, 86_400.0)?;
    #[allow(clippy::cast_precision_loss)]
    let rows = (duration + drain_limit) as f64 / sample as f64;
    if rows > MAX_ROWS {
        return Err(invalid(
            "run.sample_s",
            format!(
                "the run would make {rows:.0} time-series rows, more than {MAX_ROWS}: sample less often"
            ),
        ));
    }

    let arrivals = arrivals(&file.arrivals, duration, &read_csv)?;

    let intake = &file.intake;
    let throttle_rate = rate(
        "intake.throttle_rate",
        intake.throttle_rate.unwrap_or(100.0),
    )?;
    let throttle_burst = rate(
        "intake.throttle_burst",
        intake.throttle_burst.unwrap_or(200.0),
    )?;
    let throttle = (throttle_rate > 0.0).then_some(Throttle {
        rate: throttle_rate,
        burst: throttle_burst.max(1.0),
    });
    let intake = Intake {
        backlog_limit: within(
            "intake.backlog_limit",
            intake
                .backlog_limit
                .unwrap_or(defaults.backlog_limit.normal),
            0,
            100_000_000,
        )?,
        throttle,
        ttl: seconds(
            "intake.ttl_s",
            intake
                .ttl_s
                .unwrap_or(defaults.default_ttl.normal.as_secs_f64()),
            0.001,
            345_600.0,
        )?,
    };

    let consumer_file = &file.consumer;
    let timeout = seconds(
        "consumer.timeout_s",
        consumer_file.timeout_s.unwrap_or(30.0),
        1.0,
        900.0,
    )?;
    let batching_window = seconds(
        "consumer.batching_window_s",
        consumer_file.batching_window_s.unwrap_or(0.0),
        0.0,
        300.0,
    )?;
    let batch_size = within(
        "consumer.batch_size",
        consumer_file.batch_size.unwrap_or(10),
        1,
        10_000,
    )?;
    if batch_size > 10 && batching_window < 1_000_000 {
        return Err(invalid(
            "consumer.batch_size",
            format!(
                "a batch size above 10 ({batch_size}) needs consumer.batching_window_s of at least 1, as Lambda requires"
            ),
        ));
    }
    let maximum_concurrency = within(
        "consumer.maximum_concurrency",
        consumer_file.maximum_concurrency.unwrap_or(10),
        2,
        1000,
    )?;
    let (maximum_concurrency, initial, scale_up) = pollers(consumer_file, maximum_concurrency)?;
    let initial_concurrency = within(
        "consumer.initial_concurrency",
        consumer_file.initial_concurrency.unwrap_or(initial),
        1,
        maximum_concurrency,
    )?;
    let scale_up_per_minute = within(
        "consumer.scale_up_per_minute",
        consumer_file.scale_up_per_minute.unwrap_or(scale_up),
        1,
        60_000,
    )?;
    let record_concurrency = within(
        "consumer.record_concurrency",
        consumer_file
            .record_concurrency
            .unwrap_or(u32::try_from(defaults.consumer_concurrency).unwrap_or(10)),
        1,
        10_000,
    )?;
    let max_attempts = within(
        "consumer.max_attempts",
        consumer_file.max_attempts.unwrap_or(defaults.max_attempts),
        1,
        100,
    )?;
    let backoff_base_s = within(
        "consumer.backoff_base_s",
        consumer_file
            .backoff_base_s
            .unwrap_or(defaults.backoff_base.as_secs()),
        1,
        900,
    )?;
    let backoff_max_s = within(
        "consumer.backoff_max_s",
        consumer_file
            .backoff_max_s
            .unwrap_or(defaults.backoff_max.as_secs()),
        1,
        43_200,
    )?;

    let queue_file = &file.queue;
    // The template derives the visibility timeout as 6× the consumer's timeout.
    let visibility_timeout = seconds(
        "queue.visibility_timeout_s",
        queue_file
            .visibility_timeout_s
            .unwrap_or(6.0 * consumer_file.timeout_s.unwrap_or(30.0)),
        0.0,
        MAX_VISIBILITY_S,
    )?;
    if visibility_timeout < timeout {
        return Err(invalid(
            "queue.visibility_timeout_s",
            "must be at least consumer.timeout_s: Lambda refuses an event source mapping whose queue's visibility timeout is shorter than the function's timeout",
        ));
    }
    let max_receive_count = within(
        "queue.max_receive_count",
        queue_file
            .max_receive_count
            .unwrap_or(defaults.max_receive_count),
        1,
        1000,
    )?;
    if max_receive_count <= max_attempts {
        return Err(invalid(
            "queue.max_receive_count",
            format!(
                "must exceed consumer.max_attempts ({max_attempts}), or Spillway's consumer refuses to start"
            ),
        ));
    }
    let queue = Queue {
        visibility_timeout,
        max_receive_count,
        retention: seconds(
            "queue.retention_s",
            queue_file.retention_s.unwrap_or(345_600.0),
            MIN_RETENTION_S,
            MAX_RETENTION_S,
        )?,
        age_alarm: seconds(
            "queue.age_alarm_s",
            queue_file.age_alarm_s.unwrap_or(300.0),
            1.0,
            MAX_RETENTION_S,
        )?,
    };
    let settings = Settings {
        max_attempts,
        max_receive_count,
        backoff_base: std::time::Duration::from_secs(backoff_base_s),
        backoff_max: std::time::Duration::from_secs(backoff_max_s),
        consumer_concurrency: record_concurrency as usize,
        ..defaults
    };
    let consumer = Consumer {
        batch_size,
        batching_window,
        maximum_concurrency,
        initial_concurrency,
        scale_up_per_minute,
        timeout,
        record_concurrency,
        settings,
    };

    let processing = processing(&file.processing, read_csv)?;
    let polling = polling(file.clients.poll.as_ref())?;
    let status_throttle_rate = rate(
        "clients.status_throttle_rate",
        file.clients.status_throttle_rate.unwrap_or(50.0),
    )?;

    Ok(Scenario {
        seed: run.seed.unwrap_or(1),
        duration,
        drain_limit,
        sample,
        arrivals,
        intake,
        queue,
        consumer,
        processing,
        polling,
        status_throttle_rate,
        sync: sync_gateway(&file.sync)?,
        prices: prices(&file.cost)?,
    })
}

fn arrivals(
    file: &ArrivalsFile,
    duration: u64,
    read_csv: impl Fn(&str) -> Result<String, String>,
) -> Result<Arrivals, ScenarioError> {
    let base = rate("arrivals.rate", file.rate.unwrap_or(10.0))?;
    if let Some(name) = &file.curve {
        if !file.spikes.is_empty() {
            return Err(invalid(
                "arrivals.curve",
                "a rate curve and spikes cannot be combined: put the spikes in the curve",
            ));
        }
        let segments = read_csv(name)
            .and_then(|text| curve(&text, duration))
            .map_err(|problem| invalid("arrivals.curve", format!("{name}: {problem}")))?;
        return bounded(
            Arrivals {
                rate: base,
                process: file.process.unwrap_or(ArrivalProcess::Poisson),
                spikes: segments,
                curve: true,
            },
            duration,
        );
    }
    let mut spikes = Vec::with_capacity(file.spikes.len());
    for (i, spike) in file.spikes.iter().enumerate() {
        let field = |name: &str| format!("arrivals.spikes[{i}].{name}");
        let start = seconds(&field("start_s"), spike.start_s, 0.0, 30.0 * 86_400.0)?;
        if start >= duration {
            return Err(invalid(
                field("start_s"),
                "starts after the arrivals end (run.duration_s)",
            ));
        }
        let length = seconds(&field("length_s"), spike.length_s, 0.001, 30.0 * 86_400.0)?;
        spikes.push(Spike {
            start,
            length: length.min(duration - start),
            rate: rate(&field("rate"), spike.rate)?,
        });
    }
    let mut order: Vec<usize> = (0..spikes.len()).collect();
    order.sort_by_key(|&i| spikes[i].start);
    for pair in order.windows(2) {
        if spikes[pair[1]].start < spikes[pair[0]].end() {
            return Err(invalid(
                format!("arrivals.spikes[{}].start_s", pair[1]),
                format!("overlaps arrivals.spikes[{}]", pair[0]),
            ));
        }
    }
    spikes.sort_by_key(|spike| spike.start);
    bounded(
        Arrivals {
            rate: base,
            process: file.process.unwrap_or(ArrivalProcess::Poisson),
            spikes,
            curve: false,
        },
        duration,
    )
}

/// `arrivals` over `duration` µs, unless they would submit more jobs than a run may hold.
fn bounded(arrivals: Arrivals, duration: u64) -> Result<Arrivals, ScenarioError> {
    let seconds = super::dist::to_seconds;
    let in_spikes: u64 = arrivals.spikes.iter().map(|s| s.length).sum();
    let expected = arrivals.rate * seconds(duration.saturating_sub(in_spikes))
        + arrivals
            .spikes
            .iter()
            .map(|s| s.rate * seconds(s.length))
            .sum::<f64>();
    if expected > MAX_EXPECTED_JOBS {
        return Err(invalid(
            "arrivals.rate",
            format!("the run would submit about {expected:.0} jobs, more than {MAX_EXPECTED_JOBS}"),
        ));
    }
    Ok(arrivals)
}

/// A rate curve's CSV: `t_s,rate` rows (a header line allowed), each rate holding from its
/// time until the next row's (the last until the arrivals end), as segments of the run.
fn curve(text: &str, duration: u64) -> Result<Vec<Spike>, String> {
    let mut points: Vec<(u64, f64)> = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut cells = line.split(',').map(str::trim);
        let (t, value) = (
            cells.next().unwrap_or_default(),
            cells.next().unwrap_or_default(),
        );
        let parsed = t.parse::<f64>().ok().zip(value.parse::<f64>().ok());
        let Some((t, value)) = parsed else {
            if number == 0 {
                continue;
            }
            return Err(format!(
                "line {}: expected `t_s,rate`, got {line:?}",
                number + 1
            ));
        };
        if !t.is_finite() || t < 0.0 || !value.is_finite() || value < 0.0 {
            return Err(format!(
                "line {}: the time and the rate must be 0 or more, got {line:?}",
                number + 1
            ));
        }
        let at = seconds_to_micros(t);
        if points.last().is_some_and(|&(last, _)| at <= last) {
            return Err(format!(
                "line {}: times must increase, got {t} after a later or equal one",
                number + 1
            ));
        }
        if at < duration {
            points.push((at, value));
        }
    }
    if points.is_empty() {
        return Err("holds no `t_s,rate` row before the arrivals end".to_owned());
    }
    Ok(points
        .iter()
        .enumerate()
        .map(|(i, &(start, rate))| {
            let end = points.get(i + 1).map_or(duration, |&(next, _)| next);
            Spike {
                start,
                length: end - start,
                rate,
            }
        })
        .collect())
}

fn processing(
    file: &ProcessingFile,
    read_csv: impl Fn(&str) -> Result<String, String>,
) -> Result<Processing, ScenarioError> {
    let field = "processing.time";
    let time = match &file.time {
        None => ProcessingTime::Fixed { micros: 100_000 },
        Some(TimeFile::Fixed { seconds: s }) => ProcessingTime::Fixed {
            micros: seconds("processing.time.seconds", *s, 0.0, 86_400.0)?,
        },
        Some(TimeFile::Uniform { min_s, max_s }) => {
            let min = seconds("processing.time.min_s", *min_s, 0.0, 86_400.0)?;
            let max = seconds("processing.time.max_s", *max_s, 0.0, 86_400.0)?;
            if max < min {
                return Err(invalid("processing.time.max_s", "is less than min_s"));
            }
            ProcessingTime::Uniform { min, max }
        }
        Some(TimeFile::Exponential { mean_s }) => {
            seconds("processing.time.mean_s", *mean_s, 0.000_001, 86_400.0)?;
            ProcessingTime::Exponential { mean_s: *mean_s }
        }
        Some(TimeFile::LogNormal { p50_s, p99_s }) => {
            seconds("processing.time.p50_s", *p50_s, 0.000_001, 86_400.0)?;
            seconds("processing.time.p99_s", *p99_s, 0.000_001, 86_400.0)?;
            if p99_s < p50_s {
                return Err(invalid("processing.time.p99_s", "is less than p50_s"));
            }
            let (mu, sigma) = lognormal_from_percentiles(*p50_s, *p99_s);
            ProcessingTime::LogNormal { mu, sigma }
        }
        Some(TimeFile::Empirical { csv }) => {
            let text = read_csv(csv).map_err(|e| invalid("processing.time.csv", e))?;
            ProcessingTime::Empirical {
                micros: empirical(&text).map_err(|e| invalid("processing.time.csv", e))?,
            }
        }
    };
    let retryable = probability("processing.retryable", file.retryable.unwrap_or(0.0))?;
    let permanent = probability("processing.permanent", file.permanent.unwrap_or(0.0))?;
    if retryable + permanent > 1.0 {
        return Err(invalid(
            field,
            "processing.retryable + processing.permanent exceed 1",
        ));
    }
    Ok(Processing {
        time,
        retryable,
        permanent,
    })
}

/// The durations of an empirical CSV: the first column of each line, in seconds; a first line
/// that is not a number is a header; blank lines are skipped.
fn empirical(text: &str) -> Result<Vec<u64>, String> {
    let mut micros = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let cell = line.split(',').next().unwrap_or_default().trim();
        if cell.is_empty() {
            continue;
        }
        match cell.parse::<f64>() {
            Ok(value) if value.is_finite() && value >= 0.0 => {
                micros.push(seconds_to_micros(value));
            }
            Err(_) if number == 0 => {}
            _ => {
                return Err(format!(
                    "line {}: expected a duration in seconds, got {cell:?}",
                    number + 1
                ));
            }
        }
    }
    if micros.is_empty() {
        return Err("holds no durations".to_owned());
    }
    Ok(micros)
}

/// The mapping's most concurrent invocations, and its defaults for the initial ones and the
/// scale-up a minute: Lambda's standard mode (5, then 300 a minute), or provisioned mode's
/// minimum pollers ready at once, scaling by 1,000 a minute up to its maximum pollers (each
/// running up to 10 invocations), within `MaximumConcurrency`.
fn pollers(
    file: &ConsumerFile,
    maximum_concurrency: u32,
) -> Result<(u32, u32, u32), ScenarioError> {
    let provisioned = file.mode == Some(PollerMode::Provisioned);
    if !provisioned {
        for (field, value) in [
            ("consumer.minimum_pollers", file.minimum_pollers),
            ("consumer.maximum_pollers", file.maximum_pollers),
        ] {
            if value.is_some() {
                return Err(invalid(field, "needs consumer.mode = \"provisioned\""));
            }
        }
        return Ok((maximum_concurrency, 5.min(maximum_concurrency), 300));
    }
    let maximum_pollers = within(
        "consumer.maximum_pollers",
        file.maximum_pollers.unwrap_or(200),
        2,
        10_000,
    )?;
    let minimum_pollers = within(
        "consumer.minimum_pollers",
        file.minimum_pollers.unwrap_or(2),
        2,
        maximum_pollers.min(200),
    )?;
    let most = maximum_concurrency.min(maximum_pollers.saturating_mul(INVOCATIONS_PER_POLLER));
    let ready = most.min(minimum_pollers.saturating_mul(INVOCATIONS_PER_POLLER));
    Ok((most, ready, PROVISIONED_SCALE_UP_PER_MINUTE))
}

fn prices(file: &CostFile) -> Result<Prices, ScenarioError> {
    let defaults = Prices::default();
    let price = |field: &str, value: Option<f64>, default: f64| {
        let value = value.unwrap_or(default);
        if !value.is_finite() || value < 0.0 {
            return Err(invalid(
                field,
                format!("must be a price of 0 or more, got {value}"),
            ));
        }
        Ok(value)
    };
    let gb_s = match file.architecture {
        None | Some(Architecture::Arm64) => ARM64_GB_S,
        Some(Architecture::X86_64) => X86_64_GB_S,
    };
    Ok(Prices {
        memory_mb: within(
            "cost.memory_mb",
            file.memory_mb.unwrap_or(defaults.memory_mb),
            128.0,
            10_240.0,
        )?,
        intake_ms: price("cost.intake_ms", file.intake_ms, defaults.intake_ms)?,
        status_ms: price("cost.status_ms", file.status_ms, defaults.status_ms)?,
        lambda_gb_s: price("cost.lambda_gb_s_usd", file.lambda_gb_s_usd, gb_s)?,
        lambda_requests_per_million: price(
            "cost.lambda_requests_per_million_usd",
            file.lambda_requests_per_million_usd,
            defaults.lambda_requests_per_million,
        )?,
        sqs_requests_per_million: price(
            "cost.sqs_requests_per_million_usd",
            file.sqs_requests_per_million_usd,
            defaults.sqs_requests_per_million,
        )?,
        dynamodb_writes_per_million: price(
            "cost.dynamodb_writes_per_million_usd",
            file.dynamodb_writes_per_million_usd,
            defaults.dynamodb_writes_per_million,
        )?,
        dynamodb_reads_per_million: price(
            "cost.dynamodb_reads_per_million_usd",
            file.dynamodb_reads_per_million_usd,
            defaults.dynamodb_reads_per_million,
        )?,
        api_requests_per_million: price(
            "cost.api_requests_per_million_usd",
            file.api_requests_per_million_usd,
            defaults.api_requests_per_million,
        )?,
    })
}

fn sync_gateway(file: &SyncFile) -> Result<SyncGateway, ScenarioError> {
    Ok(SyncGateway {
        pool_size: within(
            "sync.pool_size",
            file.pool_size.unwrap_or(200),
            1,
            1_000_000,
        )?,
        queue_size: within(
            "sync.queue_size",
            file.queue_size.unwrap_or(100),
            0,
            10_000_000,
        )?,
        client_timeout: seconds(
            "sync.client_timeout_s",
            file.client_timeout_s.unwrap_or(29.0),
            0.001,
            86_400.0,
        )?,
        client_retries: within(
            "sync.client_retries",
            file.client_retries.unwrap_or(2),
            0,
            20,
        )?,
        retry_delay: seconds(
            "sync.retry_delay_s",
            file.retry_delay_s.unwrap_or(1.0),
            0.0,
            3_600.0,
        )?,
    })
}

fn polling(file: Option<&PollFile>) -> Result<Polling, ScenarioError> {
    Ok(match file {
        None | Some(PollFile::None) => Polling::None,
        Some(PollFile::Fixed { interval_s }) => Polling::Fixed {
            interval: seconds("clients.poll.interval_s", *interval_s, 0.01, 86_400.0)?,
        },
        Some(PollFile::Backoff {
            initial_s,
            factor,
            max_s,
        }) => {
            let initial = seconds("clients.poll.initial_s", *initial_s, 0.01, 86_400.0)?;
            let max = seconds("clients.poll.max_s", *max_s, 0.01, 86_400.0)?;
            if max < initial {
                return Err(invalid("clients.poll.max_s", "is less than initial_s"));
            }
            if !factor.is_finite() || *factor < 1.0 || *factor > 100.0 {
                return Err(invalid(
                    "clients.poll.factor",
                    format!("must be from 1 to 100, got {factor}"),
                ));
            }
            Polling::Backoff {
                initial,
                factor: *factor,
                max,
            }
        }
        Some(PollFile::Long { wait_s }) => Polling::Long {
            wait: seconds(
                "clients.poll.wait_s",
                *wait_s,
                1.0,
                f64::from(u32::try_from(MAX_WAIT_SECONDS).unwrap_or(u32::MAX)),
            )?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_csv(_: &str) -> Result<String, String> {
        Err("no files in this test".to_owned())
    }

    #[test]
    fn the_documented_scenarios_are_valid() {
        for (name, text) in [
            (
                "flash-sale",
                include_str!("../../../docs/scenarios/flash-sale.toml"),
            ),
            (
                "steady-1000",
                include_str!("../../../docs/scenarios/steady-1000.toml"),
            ),
        ] {
            if let Err(error) = parse(text, no_csv) {
                panic!("docs/scenarios/{name}.toml: {error}");
            }
        }
    }

    #[test]
    fn an_empty_file_takes_the_template_defaults() {
        let scenario = parse("", no_csv).unwrap();
        assert_eq!(scenario.consumer.batch_size, 10);
        assert_eq!(scenario.consumer.maximum_concurrency, 10);
        assert_eq!(scenario.consumer.timeout, 30_000_000);
        assert_eq!(scenario.queue.visibility_timeout, 180_000_000);
        assert_eq!(scenario.queue.max_receive_count, 20);
        assert_eq!(scenario.queue.age_alarm, 300_000_000);
        assert_eq!(scenario.consumer.settings.max_attempts, 5);
        assert_eq!(
            scenario.intake.throttle,
            Some(Throttle {
                rate: 100.0,
                burst: 200.0
            })
        );
    }

    #[test]
    fn a_bad_value_is_reported_with_its_field() {
        let error = parse("[consumer]\nbatch_size = 0\n", no_csv).unwrap_err();
        assert_eq!(error.field, "consumer.batch_size");
        assert!(
            error.to_string().starts_with("consumer.batch_size: "),
            "{error}"
        );

        let error = parse(
            "[[arrivals.spikes]]\nstart_s = 10\nlength_s = 5\nrate = -1\n",
            no_csv,
        )
        .unwrap_err();
        assert_eq!(error.field, "arrivals.spikes[0].rate");

        let error = parse("[queue]\nmax_receive_count = 3\n", no_csv).unwrap_err();
        assert_eq!(error.field, "queue.max_receive_count");
        assert!(error.problem.contains("max_attempts"), "{error}");

        let error = parse("[queue]\nvisibility_timeout_s = 10\n", no_csv).unwrap_err();
        assert_eq!(error.field, "queue.visibility_timeout_s");

        let error = parse("[consumer]\nminimum_pollers = 4\n", no_csv).unwrap_err();
        assert_eq!(
            error.to_string(),
            "consumer.minimum_pollers: needs consumer.mode = \"provisioned\""
        );
        let error = parse(
            "[consumer]\nmode = \"provisioned\"\nminimum_pollers = 1\n",
            no_csv,
        )
        .unwrap_err();
        assert_eq!(error.field, "consumer.minimum_pollers");

        let error = parse("[cost]\nmemory_mb = 64\n", no_csv).unwrap_err();
        assert_eq!(
            error.to_string(),
            "cost.memory_mb: must be from 128 to 10240, got 64"
        );
        let error = parse("[cost]\nsqs_requests_per_million_usd = -1\n", no_csv).unwrap_err();
        assert_eq!(error.field, "cost.sqs_requests_per_million_usd");
        let x86 = parse("[cost]\narchitecture = \"x86_64\"\n", no_csv).unwrap();
        assert_eq!(x86.prices.lambda_gb_s, super::super::cost::X86_64_GB_S);

        let error = parse("[queue]\nage_alarm_s = 0\n", no_csv).unwrap_err();
        assert_eq!(error.field, "queue.age_alarm_s");
    }

    #[test]
    fn an_unknown_or_mistyped_field_is_named() {
        let error = parse("[consumer]\nbatch_sise = 5\n", no_csv).unwrap_err();
        assert_eq!(error.field, "consumer.batch_sise");
        assert!(error.problem.contains("unknown field"), "{error}");

        let error = parse("[consumer]\nbatch_size = \"ten\"\n", no_csv).unwrap_err();
        assert_eq!(error.field, "consumer.batch_size");
        assert!(error.problem.contains("line 2"), "{error}");

        let error = parse(
            "[processing]\ntime = { kind = \"gamma\", mean_s = 1 }\n",
            no_csv,
        )
        .unwrap_err();
        assert_eq!(error.field, "processing.time.kind");
        assert!(error.problem.contains("gamma"), "{error}");

        let error = parse(
            "[[arrivals.spikes]]\nstart_s = 1\nlength_s = 2\nrate = \"x\"\n",
            no_csv,
        )
        .unwrap_err();
        assert_eq!(error.field, "arrivals.spikes[0].rate");

        let error = parse("[run\n", no_csv).unwrap_err();
        assert_eq!(error.field, "scenario");
    }

    #[test]
    fn a_replaced_value_stands_in_for_the_files_and_is_validated_like_it() {
        let text = "[consumer]\nbatch_size = 3\n";
        let (scenario, replaced) = parse_replacing(
            text,
            no_csv,
            &[("consumer.batch_size", 7.0), ("queue.retention_s", 600.0)],
        )
        .unwrap();
        assert_eq!(scenario.consumer.batch_size, 7);
        // A section the file does not have is made.
        assert_eq!(scenario.queue.retention, 600_000_000);
        assert_eq!(replaced, vec![Some("3".to_owned()), None]);

        let error = parse_replacing(text, no_csv, &[("consumer.batch_size", 0.0)]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "consumer.batch_size: must be from 1 to 10000, got 0"
        );
        let error = parse_replacing(text, no_csv, &[("consumer.batch_size", 2.5)]).unwrap_err();
        assert_eq!(error.field, "consumer.batch_size");
        assert!(!error.problem.contains("line"), "{error}");
    }

    #[test]
    fn an_empirical_csv_skips_its_header_and_names_a_bad_line() {
        assert_eq!(
            empirical("seconds\n0.5\n\n1.25,x\n").unwrap(),
            vec![500_000, 1_250_000]
        );
        let error = empirical("0.5\nslow\n").unwrap_err();
        assert!(error.contains("line 2"), "{error}");
        let error = parse(
            "[processing]\ntime = { kind = \"empirical\", csv = \"times.csv\" }\n",
            |_| Ok("0.1\n-1\n".to_owned()),
        )
        .unwrap_err();
        assert_eq!(error.field, "processing.time.csv");
    }

    #[test]
    fn a_rate_curve_is_segments_to_the_end_and_names_a_bad_line() {
        let second = 1_000_000;
        let segments = curve("t_s,rate\n0,5\n30,20\n90,1\n", 60 * second).unwrap();
        let spans: Vec<(u64, u64, f64)> = segments
            .iter()
            .map(|s| (s.start / second, s.end() / second, s.rate))
            .collect();
        // The row at 90 s is after the arrivals end, so the 20/s lasts until then.
        assert_eq!(spans, vec![(0, 30, 5.0), (30, 60, 20.0)]);
        for (csv, problem) in [
            ("0,5\nsoon,3\n", "line 2: expected `t_s,rate`"),
            ("0,5\n0,3\n", "line 2: times must increase"),
            ("0,-5\n", "line 1: the time and the rate must be 0 or more"),
            ("t_s,rate\n", "holds no `t_s,rate` row"),
        ] {
            let error = curve(csv, 60 * second).unwrap_err();
            assert!(error.starts_with(problem), "{csv:?}: {error}");
        }
        let error = parse(
            "[arrivals]\ncurve = \"rates.csv\"\n[[arrivals.spikes]]\nstart_s = 1\nlength_s = 1\nrate = 9\n",
            |_| Ok("0,1\n".to_owned()),
        )
        .unwrap_err();
        assert_eq!(error.field, "arrivals.curve");
        let error = parse("[arrivals]\ncurve = \"rates.csv\"\n", |_| {
            Ok("0,1\nx,y\n".to_owned())
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "arrivals.curve: rates.csv: line 2: expected `t_s,rate`, got \"x,y\""
        );
        let error = parse(
            "[clients]\npoll = { kind = \"long\", wait_s = 30 }\n",
            no_csv,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "clients.poll.wait_s: must be a number of seconds from 1 to 20, got 30"
        );
    }
}
