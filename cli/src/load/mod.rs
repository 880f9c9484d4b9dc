//! `spillway load`: an open-loop load generator for a Spillway API.
//!
//! Open loop: each request is sent when the schedule says, whether or not earlier ones have been
//! answered, so a slow server shows up as latency (measured from the intended send time) rather
//! than as a politely slower generator. When the generator itself falls behind (a starved CPU),
//! the report says by how much.
//!
//! Against a stage with IAM authorization, every request is signed with SigV4 ([`sigv4`]).

mod report;
mod schedule;
mod sigv4;
mod sleep;

use std::collections::BTreeMap;
use std::error::Error;
use std::io::{IsTerminal, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use clap::Args;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use report::{FollowReport, GroupReport, Percentiles, Report, SleepDistReport, SpikeReport};
use schedule::{Profile, Spike};
use sigv4::{AuthMode, Signer};
use sleep::{SleepDist, SleepDraws};

/// How many lost job ids the report lists.
const LOST_IDS_SHOWN: usize = 10;
/// The longest long poll the status API accepts.
const MAX_WAIT_SECONDS: u64 = 20;
/// A non-terminal answer quicker than this was not a held long poll…
const EAGER_ANSWER: Duration = Duration::from_secs(1);
/// …so the next poll of that job waits this long.
const EAGER_PAUSE: Duration = Duration::from_millis(250);
/// Statuses after which a job never changes.
const TERMINAL: [&str; 5] = [
    "succeeded",
    "failed",
    "expired",
    "dead_lettered",
    "cancelled",
];

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Base URL of the Spillway API: `spillway dev`, or a deployed stage's URL.
    #[arg(long, env = "SPILLWAY_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// How to authenticate. `iam` signs every request (submissions and --follow's polls) with
    /// AWS SigV4 for `execute-api`, as a stage deployed with `ApiAuth=AWS_IAM` (the default)
    /// requires; `none` sends them unsigned; `auto` signs when the URL's host is an API Gateway
    /// host (`ID.execute-api.REGION.amazonaws.com`). Credentials come from the AWS SDK's usual
    /// chain: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, the profile
    /// (AWS_PROFILE), web identity, container or instance credentials; they are refreshed
    /// before they expire. When signing is called for and no credentials can be loaded, the run
    /// does not start.
    #[arg(long, value_enum, default_value_t = AuthMode::Auto)]
    auth: AuthMode,
    /// The region to sign for. Default: the host's region for an API Gateway host, else the
    /// AWS configuration's (AWS_REGION, or the profile's).
    #[arg(long)]
    region: Option<String>,
    /// Jobs submitted per second (outside the spike).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// How long to submit jobs for, e.g. `60s` or `2m`.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Jobs per second inside the spike window. Without it there is no spike.
    #[arg(long)]
    spike_rate: Option<u32>,
    /// When the spike starts, counted from the start of the run.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration, requires = "spike_rate")]
    spike_start: Duration,
    /// How long the spike lasts.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, requires = "spike_rate")]
    spike_length: Duration,
    /// The kind of job submitted.
    #[arg(long, default_value = "echo")]
    kind: String,
    /// Size in bytes of the generated payload `{"data": "xx…"}`, for any kind but `sleep`.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// For `--kind sleep`: how long each job sleeps, in milliseconds.
    #[arg(long, default_value_t = 0)]
    sleep_ms: u64,
    /// For `--kind sleep`: draw each job's sleep from a distribution instead, one draw per
    /// submission in schedule order from a generator seeded with --seed, rounded to whole
    /// milliseconds. The forms are `spillway simulate`'s processing times (the same code draws
    /// them): `fixed:250ms`, `uniform:100ms..300ms`, `exponential:mean=250ms`,
    /// `lognormal:p50=200ms,p99=1s`. So a run against `spillway dev` can be set beside a
    /// simulation of the same scenario (docs/capacity-planning.md).
    #[arg(long, value_name = "DIST", conflicts_with_all = ["sleep_ms", "payload"])]
    sleep_dist: Option<SleepDist>,
    /// The seed of --sleep-dist's draws: the same seed gives the same sleeps in the same order.
    #[arg(long, default_value_t = 1, requires = "sleep_dist")]
    seed: u64,
    /// The payload as JSON, instead of the generated one.
    #[arg(long, value_parser = parse_json)]
    payload: Option<Value>,
    /// The share of jobs submitted with `"priority": "high"`, from 0 to 1, spread evenly over
    /// the schedule (0.05: every twentieth job); the others are `normal`. With --follow the
    /// report gives each lane's queue wait and end-to-end latency.
    #[arg(long, default_value_t = 0.0, value_name = "FRACTION", value_parser = parse_share)]
    high_share: f64,
    /// Submit as this many callers, `owner-0` to `owner-N-1`, named in each request's
    /// `X-Spillway-Caller` header: what `spillway dev --callers-from-header` makes owners of (a
    /// deployed stage names callers by their credentials, and ignores it). The report then gives
    /// each owner's figures.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    owners: Option<u32>,
    /// With --owners: `owner-0` submits this many times each other owner's rate (the noisy
    /// neighbour); the report then also gives the other owners' figures together.
    #[arg(long, default_value_t = 1, value_name = "F", requires = "owners",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    noisy_owner_factor: u32,
    /// After the run, poll every accepted job until it is terminal, and report end-to-end latency,
    /// final states and lost jobs. Exits non-zero when a job is lost.
    #[arg(long)]
    follow: bool,
    /// How long --follow waits in all for the jobs to become terminal.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    follow_timeout: Duration,
    /// Long polls in flight at once while following.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pollers: u32,
    /// Requests outstanding at most. A request due while this many are unanswered is dropped and
    /// counted, never delayed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_in_flight: u32,
    /// Timeout of each submission.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("expected a fraction from 0 to 1, got {text:?}")),
    }
}

/// The lane of the `n`-th submission (from 0) when `share` of them are high: evenly spread, so
/// that any stretch of the schedule carries its share.
fn lane_of(n: u64, share: f64) -> Lane {
    #[allow(clippy::cast_precision_loss)]
    let before = (n as f64 * share).floor();
    #[allow(clippy::cast_precision_loss)]
    let after = ((n + 1) as f64 * share).floor();
    if after > before {
        Lane::High
    } else {
        Lane::Normal
    }
}

/// The owner of the `n`-th submission (from 0) among `owners`, of whom `owner-0` submits
/// `noisy_factor` times each other's share: a cycle of `noisy_factor` of its jobs, then one of
/// each other owner's.
fn owner_of(n: u64, owners: u32, noisy_factor: u32) -> u32 {
    let noisy = u64::from(noisy_factor);
    let at = n % (noisy + u64::from(owners.saturating_sub(1)));
    if at < noisy {
        0
    } else {
        u32::try_from(at - noisy + 1).unwrap_or(0)
    }
}

/// How an owner is named in requests and in the report.
fn owner_name(owner: u32) -> String {
    format!("owner-{owner}")
}

/// What a submission is grouped by in the report.
#[derive(Debug, Clone, Copy)]
struct Tags {
    lane: Lane,
    owner: Option<u32>,
}

/// A job's priority, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Lane {
    High,
    Normal,
}

impl Lane {
    const fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
        }
    }
}

fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))
}

/// Runs the load, prints the report, and fails when an accepted job was lost.
pub async fn run(args: LoadArgs) -> Result<(), Box<dyn Error>> {
    let base = args.url.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(format!(
            "--url must be an http:// or https:// URL, got {:?}",
            args.url
        )
        .into());
    }
    let parsed = reqwest::Url::parse(&base).map_err(|e| format!("--url {:?}: {e}", args.url))?;
    let signer = sigv4::signer_for(args.auth, &parsed, args.region.as_deref()).await?;
    if let Some(signer) = &signer {
        eprintln!(
            "signing every request with AWS SigV4 for execute-api in {}",
            signer.region()
        );
    }
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .pool_max_idle_per_host(usize::MAX)
        .tcp_nodelay(true)
        .build()?;
    let api = Arc::new(Api {
        client,
        jobs_url: reqwest::Url::parse(&format!("{base}/jobs"))
            .map_err(|e| format!("--url {:?}: {e}", args.url))?,
        base: base.clone(),
        signer,
        sign_failed: Once::new(),
    });
    let profile = Profile {
        rate: args.rate,
        duration: args.duration,
        spike: args.spike_rate.map(|rate| Spike {
            rate,
            start: args.spike_start,
            length: args.spike_length,
        }),
    };
    let bodies = match &args.sleep_dist {
        Some(_) if args.kind != "sleep" => {
            return Err(format!("--sleep-dist is for --kind sleep, not {:?}", args.kind).into());
        }
        Some(dist) => Bodies::Sleep {
            draws: dist.draws(args.seed),
            high_share: args.high_share,
            n: 0,
        },
        None => Bodies::Same {
            normal: Body::new(request_body(&args, Lane::Normal).to_string()),
            high: Body::new(request_body(&args, Lane::High).to_string()),
            high_share: args.high_share,
            n: 0,
        },
    };

    let owners = args.owners.map(|owners| (owners, args.noisy_owner_factor));
    let submissions = submit_all(&api, bodies, owners, &profile, args.max_in_flight).await;
    let mut report = summarize(&args, &base, &profile, &submissions);
    if args.follow {
        let accepted: Vec<(String, Tags)> = submissions
            .records
            .iter()
            .filter_map(|r| match &r.outcome {
                Outcome::Accepted(id) => Some((id.clone(), r.tags)),
                _ => None,
            })
            .collect();
        let (followed, samples) = follow(&api, accepted, &args).await;
        report.follow = Some(followed);
        for (lane, figures) in &mut report.lanes {
            figures.latencies(&samples, |tags| tags.lane.as_str() == lane);
        }
        for (owner, figures) in &mut report.owners {
            figures.latencies(&samples, |tags| {
                tags.owner.map(owner_name).as_ref() == Some(owner)
            });
        }
        if let Some(quiet) = &mut report.quiet_owners {
            quiet.latencies(&samples, |tags| tags.owner.is_some_and(|owner| owner != 0));
        }
    }

    #[allow(clippy::print_stdout)]
    {
        print!("{}", report.to_text());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    match &report.follow {
        Some(follow) if follow.lost > 0 => {
            Err(format!("{} accepted jobs were lost", follow.lost).into())
        }
        _ => Ok(()),
    }
}

/// `{"kind": …, "payload": …, "priority": …}`: the same body for every request of a lane (each
/// makes its own job, as no idempotency key is sent). `normal` is left out, as the API's default.
fn request_body(args: &LoadArgs, lane: Lane) -> Value {
    let payload = match (&args.payload, args.kind.as_str()) {
        (Some(payload), _) => payload.clone(),
        (None, "sleep") => json!({ "ms": args.sleep_ms }),
        (None, _) => {
            let envelope = json!({ "data": "" }).to_string().len();
            json!({ "data": "x".repeat(args.payload_bytes.saturating_sub(envelope)) })
        }
    };
    with_lane(json!({ "kind": args.kind, "payload": payload }), lane)
}

fn with_lane(mut body: Value, lane: Lane) -> Value {
    if lane == Lane::High {
        body["priority"] = json!(lane.as_str());
    }
    body
}

/// The body of each submission in turn.
#[derive(Debug)]
enum Bodies {
    /// The same body for every request of a lane (each makes its own job, as no idempotency key
    /// is sent).
    Same {
        normal: Body,
        high: Body,
        high_share: f64,
        n: u64,
    },
    /// A `sleep` job whose `ms` is drawn for each request (`--sleep-dist`).
    Sleep {
        draws: SleepDraws,
        high_share: f64,
        n: u64,
    },
}

impl Bodies {
    fn next(&mut self) -> (Body, Lane) {
        match self {
            Self::Same {
                normal,
                high,
                high_share,
                n,
            } => {
                let lane = lane_of(*n, *high_share);
                *n += 1;
                let body = if lane == Lane::High { high } else { normal };
                (body.clone(), lane)
            }
            Self::Sleep {
                draws,
                high_share,
                n,
            } => {
                let lane = lane_of(*n, *high_share);
                *n += 1;
                let body = json!({ "kind": "sleep", "payload": { "ms": draws.next_ms() } });
                (Body::new(with_lane(body, lane).to_string()), lane)
            }
        }
    }
}

/// What became of one submission.
#[derive(Debug)]
enum Outcome {
    Accepted(String),
    Rejected(u16),
    Failed(&'static str),
}

/// One submission, timed from the start of the run.
#[derive(Debug)]
struct Record {
    /// When the schedule said to send it.
    due: Duration,
    /// How late it was actually sent.
    lag: Duration,
    /// When its answer (or error) arrived.
    done: Duration,
    /// Its priority and owner.
    tags: Tags,
    outcome: Outcome,
}

/// Every submission of a run.
#[derive(Debug)]
struct Submissions {
    records: Vec<Record>,
    scheduled: u64,
    dropped: u64,
}

/// Counters the progress line reads while requests are in flight.
#[derive(Debug, Default)]
struct Progress {
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    behind_micros: AtomicU64,
}

async fn submit_all(
    api: &Arc<Api>,
    mut bodies: Bodies,
    owners: Option<(u32, u32)>,
    profile: &Profile,
    max_in_flight: u32,
) -> Submissions {
    let progress = Arc::new(Progress::default());
    let in_flight = Arc::new(Semaphore::new(max_in_flight as usize));
    let (records_tx, mut records_rx) = mpsc::unbounded_channel();
    let start = Instant::now();
    let printer = tokio::spawn(print_progress(progress.clone(), start));

    let mut scheduled = 0;
    for due in profile.schedule() {
        scheduled += 1;
        // Drawn before a request may be dropped, so that request k always gets the k-th body.
        let (body, lane) = bodies.next();
        let owner = owners.map(|(owners, factor)| owner_of(scheduled - 1, owners, factor));
        let tags = Tags { lane, owner };
        let at = start + due;
        if at > Instant::now() {
            tokio::time::sleep_until(at).await;
        }
        let lag = start.elapsed().saturating_sub(due);
        progress.behind_micros.store(
            u64::try_from(lag.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            progress.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let api = api.clone();
        let (records_tx, progress) = (records_tx.clone(), progress.clone());
        tokio::spawn(async move {
            let caller = tags.owner.map(owner_name);
            let outcome = submit(&api, &body, caller.as_deref()).await;
            let counter = match outcome {
                Outcome::Accepted(_) => &progress.accepted,
                Outcome::Rejected(_) => &progress.rejected,
                Outcome::Failed(_) => &progress.failed,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let done = start.elapsed();
            drop(permit);
            let _ = records_tx.send(Record {
                due,
                lag,
                done,
                tags,
                outcome,
            });
        });
    }
    drop(records_tx);
    let mut records = Vec::with_capacity(usize::try_from(scheduled).unwrap_or(0));
    while let Some(record) = records_rx.recv().await {
        records.push(record);
    }
    printer.abort();
    finish_progress_line();
    Submissions {
        records,
        scheduled,
        dropped: progress.dropped.load(Ordering::Relaxed),
    }
}

/// The API under load: where it is, and how requests to it are signed.
#[derive(Debug)]
struct Api {
    client: reqwest::Client,
    /// The base URL, without a trailing `/`.
    base: String,
    /// `{base}/jobs`, parsed once.
    jobs_url: reqwest::Url,
    /// `None` when requests go unsigned.
    signer: Option<Signer>,
    /// Set at the first request that could not be signed, which prints why.
    sign_failed: Once,
}

/// The body of every submission, with its SHA-256 for the signatures: hashed once, not for each
/// request, as it never changes.
#[derive(Debug, Clone)]
struct Body {
    bytes: Bytes,
    sha256: Arc<str>,
}

impl Body {
    fn new(text: String) -> Self {
        let sha256 = hex::encode(Sha256::digest(text.as_bytes())).into();
        Self {
            bytes: Bytes::from(text),
            sha256,
        }
    }
}

/// The SHA-256 of an empty body.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Why a request got no answer.
#[derive(Debug)]
enum SendError {
    /// It could not be signed (the credentials expired and could not be refreshed); why is
    /// printed once, at the first.
    Sign,
    /// The job id the API returned makes no URL.
    Url,
    Http(reqwest::Error),
}

impl SendError {
    /// A short name, for the report's error counts.
    fn reason(&self) -> &'static str {
        match self {
            Self::Sign => "signing",
            Self::Url => "url",
            Self::Http(error) => reason(error),
        }
    }
}

impl Api {
    /// `POST /jobs` with `body`, as `caller` when one is named.
    async fn submit(
        &self,
        body: &Body,
        caller: Option<&str>,
    ) -> Result<reqwest::Response, SendError> {
        let content_type = ("content-type", "application/json");
        let request = self
            .client
            .post(self.jobs_url.clone())
            .header(content_type.0, content_type.1)
            .body(body.bytes.clone());
        self.signed(
            as_caller(request, caller),
            "POST",
            &self.jobs_url,
            &[content_type],
            &body.sha256,
        )
        .await?
        .send()
        .await
        .map_err(SendError::Http)
    }

    /// `GET /jobs/{id}?wait={wait}`, with `timeout` instead of the client's.
    async fn poll(
        &self,
        id: &str,
        caller: Option<&str>,
        wait: u64,
        timeout: Duration,
    ) -> Result<reqwest::Response, SendError> {
        let url = reqwest::Url::parse(&format!("{}/jobs/{id}?wait={wait}", self.base))
            .map_err(|_| SendError::Url)?;
        let request = as_caller(self.client.get(url.clone()).timeout(timeout), caller);
        self.signed(request, "GET", &url, &[], EMPTY_SHA256)
            .await?
            .send()
            .await
            .map_err(SendError::Http)
    }

    /// `request` to `url`, with the signature headers when requests are signed. `headers` are
    /// the request's headers besides `host` that the signature covers.
    async fn signed(
        &self,
        request: reqwest::RequestBuilder,
        method: &str,
        url: &reqwest::Url,
        headers: &[(&str, &str)],
        payload_sha256: &str,
    ) -> Result<reqwest::RequestBuilder, SendError> {
        let Some(signer) = &self.signer else {
            return Ok(request);
        };
        let signature = signer
            .headers(method, url, headers, payload_sha256)
            .await
            .map_err(|error| {
                // Once, not for each of the thousands of requests that will fail alike.
                self.sign_failed.call_once(|| {
                    eprintln!("\nspillway load: {error}; counted as `signing` errors")
                });
                SendError::Sign
            })?;
        Ok(signature
            .into_iter()
            .fold(request, |request, (name, value)| {
                request.header(name, value)
            }))
    }
}

/// `request` naming `caller` in the header `spillway dev --callers-from-header` reads. It is not
/// signed: a deployed stage names callers by their credentials and ignores it.
fn as_caller(request: reqwest::RequestBuilder, caller: Option<&str>) -> reqwest::RequestBuilder {
    match caller {
        Some(caller) => request.header("x-spillway-caller", caller),
        None => request,
    }
}

async fn submit(api: &Api, body: &Body, caller: Option<&str>) -> Outcome {
    #[derive(Deserialize)]
    struct Accepted {
        id: String,
    }
    let response = match api.submit(body, caller).await {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(error.reason()),
    };
    let status = response.status();
    let body = response.bytes().await;
    if status != reqwest::StatusCode::ACCEPTED {
        return Outcome::Rejected(status.as_u16());
    }
    match body {
        Ok(body) => match serde_json::from_slice::<Accepted>(&body) {
            Ok(accepted) => Outcome::Accepted(accepted.id),
            Err(_) => Outcome::Failed("202 without a job id"),
        },
        Err(error) => Outcome::Failed(reason(&error)),
    }
}

/// A short name for why a request got no answer.
fn reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// Prints a progress line on stderr every second (rewritten in place on a terminal).
async fn print_progress(progress: Arc<Progress>, start: Instant) {
    let in_place = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    loop {
        tick.tick().await;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let sent = get(&progress.sent);
        let answered = get(&progress.accepted) + get(&progress.rejected) + get(&progress.failed);
        #[allow(clippy::cast_precision_loss)]
        let behind_ms = get(&progress.behind_micros) as f64 / 1000.0;
        let line = format!(
            "{:>6.1} s  sent {sent}  accepted {}  rejected {}  errors {}  in flight {}  dropped {}  behind {behind_ms:.1} ms",
            start.elapsed().as_secs_f64(),
            get(&progress.accepted),
            get(&progress.rejected),
            get(&progress.failed),
            sent.saturating_sub(answered),
            get(&progress.dropped),
        );
        let mut stderr = std::io::stderr().lock();
        let _ = if in_place {
            write!(stderr, "\r\x1b[2K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
    }
}

fn finish_progress_line() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

fn summarize(args: &LoadArgs, base: &str, profile: &Profile, runs: &Submissions) -> Report {
    let records = &runs.records;
    let accepted: Vec<&Record> = records
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Accepted(_)))
        .collect();
    let mut rejected = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for record in records {
        match record.outcome {
            Outcome::Accepted(_) => {}
            Outcome::Rejected(status) => *rejected.entry(status).or_insert(0) += 1,
            Outcome::Failed(reason) => *errors.entry(reason.to_owned()).or_insert(0) += 1,
        }
    }
    // Per lane only when there is more than one: a run of one lane says it all above.
    let mut lanes = BTreeMap::new();
    let mut owners = BTreeMap::new();
    let mut quiet_owners = (args.noisy_owner_factor > 1).then(GroupReport::default);
    for record in records {
        if args.high_share > 0.0 {
            let lane: &mut GroupReport = lanes
                .entry(record.tags.lane.as_str().to_owned())
                .or_default();
            lane.count(&record.outcome);
        }
        if let Some(owner) = record.tags.owner {
            let figures: &mut GroupReport = owners.entry(owner_name(owner)).or_default();
            figures.count(&record.outcome);
            if let Some(quiet) = quiet_owners.as_mut().filter(|_| owner != 0) {
                quiet.count(&record.outcome);
            }
        }
    }
    let last_answer = records.iter().map(|r| r.done).max().unwrap_or_default();
    let span = profile.duration.max(last_answer).as_secs_f64();
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    for record in &accepted {
        *per_second.entry(record.done.as_secs()).or_insert(0) += 1;
    }
    let latency =
        |records: &[&Record]| Percentiles::of(records.iter().map(|r| r.done - r.due).collect());
    let spike = profile.spike.map(|spike| {
        let window = spike.start.min(profile.duration)
            ..spike
                .start
                .saturating_add(spike.length)
                .min(profile.duration);
        let in_window: Vec<&Record> = accepted
            .iter()
            .copied()
            .filter(|r| window.contains(&r.due))
            .collect();
        let answered_in_window = accepted.iter().filter(|r| window.contains(&r.done)).count();
        let length = (window.end - window.start).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        SpikeReport {
            rate: spike.rate,
            start_s: spike.start.as_secs_f64(),
            length_s: length,
            accepted_per_s: if length > 0.0 {
                answered_in_window as f64 / length
            } else {
                0.0
            },
            intake_latency: latency(&in_window),
        }
    });
    #[allow(clippy::cast_precision_loss)]
    Report {
        url: base.to_owned(),
        kind: args.kind.clone(),
        sleep_dist: args.sleep_dist.as_ref().map(|dist| SleepDistReport {
            dist: dist.to_string(),
            seed: args.seed,
        }),
        rate: args.rate,
        duration_s: profile.duration.as_secs_f64(),
        spike,
        scheduled: runs.scheduled,
        sent: records.len() as u64,
        dropped: runs.dropped,
        accepted: accepted.len() as u64,
        accepted_per_s: if span > 0.0 {
            accepted.len() as f64 / span
        } else {
            0.0
        },
        peak_accepted_per_s: per_second.values().copied().max().unwrap_or(0),
        rejected,
        errors,
        intake_latency: latency(&accepted),
        service_time: Percentiles::of(
            accepted
                .iter()
                .map(|r| r.done.saturating_sub(r.due + r.lag))
                .collect(),
        ),
        lag: Percentiles::of(records.iter().map(|r| r.lag).collect()),
        high_share: args.high_share,
        lanes,
        owners,
        quiet_owners,
        follow: None,
    }
}

/// The last word on one followed job.
#[derive(Debug)]
enum Fate {
    Terminal {
        status: String,
        end_to_end: Option<Duration>,
        queue_wait: Option<Duration>,
    },
    NotTerminal(String),
    NotFound,
}

/// The part of the status document `--follow` reads.
#[derive(Debug, Deserialize)]
struct StatusDocument {
    status: String,
    created_at: String,
    updated_at: String,
    /// When a consumer first claimed the job; absent from one that never ran.
    #[serde(default)]
    started_at: Option<String>,
}

/// One followed job's waits, with what it is grouped by.
#[derive(Debug, Clone, Copy)]
struct Sample {
    tags: Tags,
    queue_wait: Option<Duration>,
    end_to_end: Option<Duration>,
}

impl GroupReport {
    fn count(&mut self, outcome: &Outcome) {
        self.sent += 1;
        match outcome {
            Outcome::Accepted(_) => self.accepted += 1,
            Outcome::Rejected(status) => *self.rejected.entry(*status).or_insert(0) += 1,
            Outcome::Failed(_) => {}
        }
    }

    /// The queue wait and end-to-end latency of the samples `member` picks.
    fn latencies(&mut self, samples: &[Sample], member: impl Fn(&Tags) -> bool) {
        let mine = || samples.iter().filter(|s| member(&s.tags));
        self.queue_wait = Percentiles::of(mine().filter_map(|s| s.queue_wait).collect());
        self.end_to_end_latency = Percentiles::of(mine().filter_map(|s| s.end_to_end).collect());
    }
}

/// Long-polls every accepted job, `--pollers` at a time, until it is terminal or the follow
/// timeout runs out. Polling starts after the run so that it does not load the intake being
/// measured; end-to-end latency comes from each job's own timestamps, so it is not inflated by
/// the wait.
async fn follow(
    api: &Api,
    ids: Vec<(String, Tags)>,
    args: &LoadArgs,
) -> (FollowReport, Vec<Sample>) {
    let started = Instant::now();
    let deadline = started + args.follow_timeout;
    let poll_errors = Arc::new(AtomicU64::new(0));
    let fates: Vec<(String, Tags, Fate)> = futures::stream::iter(ids)
        .map(|(id, tags)| {
            let poll_errors = poll_errors.clone();
            async move {
                let caller = tags.owner.map(owner_name);
                let fate = follow_one(api, &id, caller.as_deref(), deadline, &poll_errors).await;
                (id, tags, fate)
            }
        })
        .buffer_unordered(args.pollers as usize)
        .collect()
        .await;

    let mut report = FollowReport::default();
    let mut end_to_end = Vec::new();
    let mut queue_waits = Vec::new();
    let mut samples = Vec::new();
    for (id, tags, fate) in fates {
        let lost = match fate {
            Fate::Terminal {
                status,
                end_to_end: latency,
                queue_wait,
            } => {
                samples.push(Sample {
                    tags,
                    queue_wait,
                    end_to_end: latency,
                });
                queue_waits.extend(queue_wait);
                end_to_end.extend(latency);
                *report.final_states.entry(status).or_insert(0) += 1;
                false
            }
            Fate::NotTerminal(status) => {
                *report.final_states.entry(status).or_insert(0) += 1;
                report.not_terminal += 1;
                true
            }
            Fate::NotFound => {
                report.not_found += 1;
                true
            }
        };
        if lost && report.lost_ids.len() < LOST_IDS_SHOWN {
            report.lost_ids.push(id);
        }
    }
    report.lost = report.not_found + report.not_terminal;
    report.end_to_end_latency = Percentiles::of(end_to_end);
    report.queue_wait = Percentiles::of(queue_waits);
    report.poll_errors = poll_errors.load(Ordering::Relaxed);
    report.elapsed_s = started.elapsed().as_secs_f64();
    (report, samples)
}

async fn follow_one(
    api: &Api,
    id: &str,
    caller: Option<&str>,
    deadline: Instant,
    poll_errors: &AtomicU64,
) -> Fate {
    let mut last_status = None;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return match last_status {
                Some(status) => Fate::NotTerminal(status),
                None => Fate::NotTerminal("unknown".to_owned()),
            };
        }
        let wait = remaining.as_secs().clamp(1, MAX_WAIT_SECONDS);
        let asked = Instant::now();
        let answer = api
            .poll(
                id,
                caller,
                wait,
                Duration::from_secs(wait) + Duration::from_secs(10),
            )
            .await;
        let response = match answer {
            Ok(response) if response.status() == reqwest::StatusCode::NOT_FOUND => {
                return Fate::NotFound;
            }
            Ok(response) if response.status().is_success() => response,
            _ => {
                poll_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Ok(document) = response.json::<StatusDocument>().await else {
            poll_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        if TERMINAL.contains(&document.status.as_str()) {
            return Fate::Terminal {
                end_to_end: elapsed_between(&document.created_at, &document.updated_at),
                queue_wait: document
                    .started_at
                    .as_deref()
                    .and_then(|started| elapsed_between(&document.created_at, started)),
                status: document.status,
            };
        }
        last_status = Some(document.status);
        // A server that answers at once instead of holding the poll (or a job that just moved
        // from pending to running) is polled again after a pause, not in a tight loop.
        if asked.elapsed() < EAGER_ANSWER {
            tokio::time::sleep(EAGER_PAUSE).await;
        }
    }
}

/// `to − from` for two RFC 3339 timestamps, if both parse and are in order.
fn elapsed_between(from: &str, to: &str) -> Option<Duration> {
    let parse = |text: &str| humantime::parse_rfc3339(text).ok();
    let (from, to): (SystemTime, SystemTime) = (parse(from)?, parse(to)?);
    to.duration_since(from).ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    fn args(extra: &[&str]) -> LoadArgs {
        Cli::try_parse_from(std::iter::once("load").chain(extra.iter().copied()))
            .unwrap()
            .load
    }

    #[test]
    fn the_generated_payload_has_the_requested_size() {
        let body = request_body(&args(&["--payload-bytes", "200"]), Lane::Normal);
        assert_eq!(body["kind"], "echo");
        assert_eq!(body["payload"].to_string().len(), 200);
    }

    #[test]
    fn sleep_jobs_get_a_sleep_payload() {
        let body = request_body(
            &args(&["--kind", "sleep", "--sleep-ms", "50"]),
            Lane::Normal,
        );
        assert_eq!(body, json!({"kind": "sleep", "payload": {"ms": 50}}));
    }

    #[test]
    fn sleep_dist_draws_each_body_in_schedule_order() {
        let parsed = args(&[
            "--kind",
            "sleep",
            "--sleep-dist",
            "uniform:1ms..1s",
            "--seed",
            "3",
        ]);
        let dist = parsed.sleep_dist.clone().unwrap();
        let bodies = |seed| {
            let mut bodies = Bodies::Sleep {
                draws: dist.draws(seed),
                high_share: 0.0,
                n: 0,
            };
            (0..20)
                .map(|_| String::from_utf8(bodies.next().0.bytes.to_vec()).unwrap())
                .collect::<Vec<_>>()
        };
        let first = bodies(parsed.seed);
        assert!(
            first[0].starts_with(r#"{"kind":"sleep","payload":{"ms":"#),
            "{}",
            first[0]
        );
        assert_eq!(first, bodies(3), "one seed, one sequence");
        assert_ne!(first, bodies(4));
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert!(distinct.len() > 10, "a draw for each request: {first:?}");
    }

    #[test]
    fn sleep_dist_excludes_a_fixed_sleep_and_a_payload() {
        assert!(
            Cli::try_parse_from(["load", "--sleep-dist", "fixed:1s", "--sleep-ms", "5"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["load", "--sleep-dist", "fixed:1s", "--payload", "{}"]).is_err()
        );
        assert!(
            Cli::try_parse_from(["load", "--seed", "2"]).is_err(),
            "a seed of nothing"
        );
        let error = Cli::try_parse_from(["load", "--sleep-dist", "gamma:1s"]).unwrap_err();
        assert!(
            error.to_string().contains("unknown distribution"),
            "{error}"
        );
    }

    #[test]
    fn an_explicit_payload_wins() {
        let body = request_body(&args(&["--payload", r#"{"a": [1]}"#]), Lane::Normal);
        assert_eq!(body["payload"], json!({"a": [1]}));
        let error = Cli::try_parse_from(["load", "--payload", "{nope"]).unwrap_err();
        assert!(error.to_string().contains("not JSON"), "{error}");
    }

    #[test]
    fn the_high_share_is_spread_evenly_over_the_schedule() {
        let lanes = |share| (0..100).map(|n| lane_of(n, share)).collect::<Vec<_>>();
        let high = |lanes: &[Lane]| lanes.iter().filter(|l| **l == Lane::High).count();
        assert_eq!(high(&lanes(0.05)), 5);
        assert_eq!(high(&lanes(0.0)), 0);
        assert_eq!(high(&lanes(1.0)), 100);
        // Every twentieth, not five in a row.
        let positions: Vec<usize> = lanes(0.05)
            .iter()
            .enumerate()
            .filter(|(_, l)| **l == Lane::High)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(positions, [19, 39, 59, 79, 99]);
        let parsed = args(&["--high-share", "0.05", "--kind", "sleep", "--sleep-ms", "5"]);
        let mut bodies = Bodies::Same {
            normal: Body::new(request_body(&parsed, Lane::Normal).to_string()),
            high: Body::new(request_body(&parsed, Lane::High).to_string()),
            high_share: parsed.high_share,
            n: 0,
        };
        let sent: Vec<(String, Lane)> = (0..20)
            .map(|_| {
                let (body, lane) = bodies.next();
                (String::from_utf8(body.bytes.to_vec()).unwrap(), lane)
            })
            .collect();
        assert_eq!(
            sent[19],
            (
                r#"{"kind":"sleep","payload":{"ms":5},"priority":"high"}"#.to_owned(),
                Lane::High
            )
        );
        assert_eq!(sent[0].0, r#"{"kind":"sleep","payload":{"ms":5}}"#);
        for bad in ["-0.1", "1.5", "half"] {
            assert!(
                Cli::try_parse_from(["load", "--high-share", bad]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_noisy_owner_submits_its_factor_of_each_others_share() {
        let owners: Vec<u32> = (0..48).map(|n| owner_of(n, 5, 20)).collect();
        let count = |owner| owners.iter().filter(|o| **o == owner).count();
        assert_eq!(count(0), 40);
        for quiet in 1..5 {
            assert_eq!(count(quiet), 2, "{owners:?}");
        }
        assert_eq!(&owners[19..25], [0, 1, 2, 3, 4, 0]);
        assert!((0..10).all(|n| owner_of(n, 3, 1) == (n % 3) as u32));
        assert!((0..10).all(|n| owner_of(n, 1, 1) == 0));
        assert!(
            Cli::try_parse_from(["load", "--noisy-owner-factor", "20"]).is_err(),
            "a factor of no owners"
        );
    }

    #[test]
    fn spike_options_need_a_spike_rate() {
        assert!(Cli::try_parse_from(["load", "--spike-start", "1s"]).is_err());
        let parsed = args(&["--spike-rate", "10", "--spike-start", "1s"]);
        assert_eq!(parsed.spike_start, Duration::from_secs(1));
    }

    #[test]
    fn end_to_end_comes_from_the_documents_timestamps() {
        let elapsed = elapsed_between("2026-12-02T10:00:00.100Z", "2026-12-02T10:00:01.350Z");
        assert_eq!(elapsed, Some(Duration::from_millis(1250)));
        assert_eq!(
            elapsed_between("2026-12-02T10:00:02Z", "2026-12-02T10:00:01Z"),
            None
        );
        assert_eq!(elapsed_between("yesterday", "2026-12-02T10:00:01Z"), None);
    }
}
