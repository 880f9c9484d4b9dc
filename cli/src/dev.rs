//! `spillway dev`: the HTTP API, the queue and the consumer in one process, calling the very same
//! handlers the Lambdas call.

use std::error::Error;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, Method, StatusCode, Uri};
use spillway_core::api::{self, ApiError, ApiResponse};
use spillway_core::app::StackSecret;
use spillway_core::config::{Config, Resources, Settings};
use spillway_core::domain::{Lanes, Owner, Priority};
use spillway_core::esm::EventSourceMapping;
use spillway_core::kinds;
use spillway_core::queue::{JobQueue, MemoryQueue, SqsQueue};
use spillway_core::store::MemoryStore;
use spillway_core::targets::{self, Declarations};
use spillway_core::webhook::{Allowlist, SigningKeys, Webhook, WebhookSettings};
use spillway_core::{App, provision};
use tokio::sync::watch;
use tracing::{Instrument, info, info_span, warn};

use crate::aws::AwsArgs;

/// Flags of `spillway dev`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "The SPILLWAY_* variables the Lambdas read (see the README) are read here \
too; flags win over them. RUST_LOG filters the log (default: info); the text log is coloured \
only on a terminal, and never when NO_COLOR is set. Webhooks are signed with \
SPILLWAY_WEBHOOK_SECRET, or with a secret made for the run and logged at start, and may reach \
this machine (127.0.0.0/8, ::1, localhost) unless SPILLWAY_WEBHOOK_ALLOW says otherwise."
)]
pub struct DevArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,

    /// Port to listen on; 0 picks a free one (the address is logged).
    #[arg(long, default_value_t = 3000)]
    port: u16,

    #[command(flatten)]
    aws: AwsArgs,

    /// Create the table and queues at --endpoint-url when they are missing.
    #[arg(long, requires = "endpoint_url")]
    create_resources: bool,

    /// Attempts before a job is dead-lettered [default: 3, or SPILLWAY_MAX_ATTEMPTS].
    #[arg(long, value_name = "N")]
    max_attempts: Option<u32>,

    /// The work queue's maxReceiveCount; more than the attempts, so that deliveries which run
    /// nothing never dead-letter a job [default: the attempts + 3, or SPILLWAY_MAX_RECEIVE_COUNT].
    #[arg(long, value_name = "N")]
    max_receive_count: Option<u32>,

    /// First retry delay, in seconds [default: 1, or SPILLWAY_BACKOFF_BASE_SECONDS].
    #[arg(long, value_name = "SECONDS")]
    backoff_base_seconds: Option<u64>,

    /// Longest retry delay, in seconds [default: 4, or SPILLWAY_BACKOFF_MAX_SECONDS].
    #[arg(long, value_name = "SECONDS")]
    backoff_max_seconds: Option<u64>,

    /// Most messages handed to one consumer invocation.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,

    /// How long to gather a batch before invoking the consumer with fewer than --batch-size, in
    /// milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    batching_window_ms: u64,

    /// How long a received message stays hidden, in seconds (the in-memory queue's; an SQS queue
    /// keeps its own, unless --create-resources sets it). Heartbeats renew it, and the job's
    /// lease, while a job runs longer.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    visibility_timeout: u64,

    /// How long one consumer invocation may run, in seconds.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    function_timeout: u64,

    /// Consumer invocations running at once on the normal lane (its event source mapping's
    /// concurrency).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,

    /// Consumer invocations running at once on the high lane, apart from the normal lane's: a
    /// flood of normal jobs never takes them.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    high_concurrency: u16,

    /// How often to log each lane's queue depth (a `queue depth` line: priority, visible, in
    /// flight, delayed), when it has changed since the last line; `0s` never. It shows a queue building
    /// and draining under `spillway load --spike-rate`; `visible` is what `spillway simulate`
    /// reports as visible messages.
    #[arg(long, default_value = "1s", value_name = "DURATION", value_parser = humantime::parse_duration)]
    queue_log_interval: Duration,

    /// Name each caller by its `X-Spillway-Caller` header (callers without one are the anonymous
    /// owner), as if API Gateway had authenticated it: to try what several tenants do to each
    /// other on one machine (fairness, isolation; `spillway load --owners`). Anyone can claim any
    /// name: never let others reach such a server.
    #[arg(long)]
    callers_from_header: bool,

    /// The most pending, scheduled and running jobs one caller may have; a submit beyond it is
    /// answered 429 with Retry-After (0: no limit) [default: 0, or
    /// SPILLWAY_MAX_ACTIVE_JOBS_PER_OWNER]. With --callers-from-header, each caller has its own.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=i64::from(spillway_core::config::MAX_ACTIVE_JOBS_LIMIT)))]
    max_active_jobs_per_owner: Option<u32>,

    /// The kinds to declare, a JSON document as the template's `Kinds` parameter holds it
    /// (docs/architecture.md, "Kinds declared in configuration"), in place of SPILLWAY_KINDS.
    /// `http` kinds are posted to directly and `builtin` ones run here; `lambda` kinds are invoked
    /// through the Lambda Invoke API at --lambda-endpoint-url. Every function the file names may
    /// be invoked (there is no IAM here) unless SPILLWAY_LAMBDA_TARGET_ARNS says otherwise.
    #[arg(long, value_name = "FILE")]
    kinds: Option<PathBuf>,

    /// Where `lambda` kinds are invoked: any server of Lambda's Invoke API, such as
    /// `sam local start-lambda` (http://127.0.0.1:3001) running your functions locally, or
    /// LocalStack [default: the AWS SDK's chain: AWS_ENDPOINT_URL_LAMBDA, AWS_ENDPOINT_URL, or AWS
    /// itself].
    #[arg(long, value_name = "URL")]
    lambda_endpoint_url: Option<String>,

    /// Log format: readable text, or JSON lines as the Lambdas write them.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Readable lines for a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs until SIGINT or SIGTERM, then stops accepting, lets in-flight batches finish (or their
/// messages return to the queue) and returns.
pub async fn run(args: DevArgs) -> Result<(), Box<dyn Error>> {
    init_logging(args.log_format);
    let settings = settings(&args)?;
    let keys = webhook_keys(&args).await?;
    let webhook = Webhook::new(settings.webhook.clone(), Some(keys.clone()));
    let shipped = kinds::builtin_with(webhook.clone());
    let lambda = lambda_sdk(&args).await;
    let declared = settings
        .kinds
        .processors(&shipped, &webhook, || targets::lambda_client(&lambda));
    let (app, mappings, backend) = match &args.aws.endpoint_url {
        None => embedded(&args, settings),
        Some(url) => on_endpoint(&args, url, settings).await?,
    };
    let app = app
        .with_processors(shipped.and(declared))
        .with_signing(StackSecret::fixed(Some(keys.clone())));
    // Every caller of `spillway dev` is the anonymous owner, whose key signs every delivery.
    let receivers = keys.for_owner(&Owner::anonymous()).secrets().join(" ");
    info!(
        secret = %receivers,
        "receivers verify webhooks with this secret (GET /webhook-secret serves it too)"
    );

    let listener = tokio::net::TcpListener::bind((args.host, args.port))
        .await
        .map_err(|e| format!("cannot listen on {}:{}: {e}", args.host, args.port))?;
    let address = listener.local_addr()?;
    info!(
        address = %format!("http://{address}"),
        backend = %backend,
        max_attempts = app.settings.max_attempts,
        max_active_jobs_per_owner = app.settings.max_active_jobs_per_owner,
        max_receive_count = app.settings.max_receive_count,
        "spillway dev listening"
    );

    let (stop, stopped) = watch::channel(false);
    let concurrency = Lanes {
        high: args.high_concurrency,
        normal: args.concurrency,
    };
    let mut pollers = Vec::new();
    for (priority, esm) in mappings.iter() {
        pollers.extend((0..*concurrency.get(priority)).map(|_| {
            let poller = poll(esm.clone(), app.clone(), stopped.clone());
            tokio::spawn(poller.instrument(info_span!("lane", %priority)))
        }));
        if !args.queue_log_interval.is_zero() {
            tokio::spawn(log_queue_depth(
                priority,
                app.queues.get(priority).clone(),
                args.queue_log_interval,
                stopped.clone(),
            ));
        }
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("stopping: no new requests or batches; letting in-flight work finish");
        let _ = stop.send(true);
    });

    let mut until_stopped = stopped.clone();
    axum::serve(listener, router(app, args.callers_from_header))
        .with_graceful_shutdown(async move {
            let _ = until_stopped.wait_for(|stop| *stop).await;
        })
        .await?;
    let grace = Duration::from_secs(args.function_timeout);
    for poller in pollers {
        if tokio::time::timeout(grace, poller).await.is_err() {
            warn!("a batch outlived the function timeout; its messages return to the queue");
        }
    }
    info!("stopped");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_target(false)
            .with_ansi(colour(
                std::io::stdout().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
        // The Lambdas' own format: one flat object per line.
        LogFormat::Json => {
            let subscriber = spillway_core::logging::json_subscriber(filter, std::io::stdout);
            tracing::subscriber::set_global_default(subscriber).ok();
        }
    }
}

/// Whether the text log (on stdout) is coloured: only on a terminal, never in a file or a pipe,
/// and never when `NO_COLOR` is set to anything but the empty string (<https://no-color.org>).
fn colour(stdout_is_terminal: bool, no_color: Option<OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// What webhooks may reach under `spillway dev` besides the public internet.
const DEV_WEBHOOK_ALLOW: &str = "127.0.0.0/8, ::1, localhost";

/// The Lambdas' settings with dev-friendly defaults (a failing job is dead-lettered in seconds),
/// then the `SPILLWAY_*` variables, then the flags.
fn settings(args: &DevArgs) -> Result<Settings, Box<dyn Error>> {
    let dev_defaults = Settings {
        max_attempts: 3,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
        // Local receivers: webhooks may reach this machine unless SPILLWAY_WEBHOOK_ALLOW says
        // otherwise.
        webhook: WebhookSettings {
            allow: Allowlist::parse(DEV_WEBHOOK_ALLOW)?,
            ..WebhookSettings::default()
        },
        ..Settings::default()
    };
    let receive_count_set = std::env::var_os("SPILLWAY_MAX_RECEIVE_COUNT").is_some();
    let document = match &args.kinds {
        Some(path) => {
            let document = std::fs::read_to_string(path)
                .map_err(|e| format!("--kinds {}: {e}", path.display()))?;
            let declared = Declarations::parse(&document)
                .map_err(|problem| format!("--kinds {}: {problem}", path.display()))?;
            let functions: Vec<&str> = declared.functions().map(|(_, f)| f).collect();
            Some((document, functions.join(",")))
        }
        None => None,
    };
    let mut settings = dev_defaults.with_lookup(|name| match (&document, name) {
        (Some((document, _)), "SPILLWAY_KINDS") => Some(document.clone()),
        (Some((_, functions)), "SPILLWAY_LAMBDA_TARGET_ARNS") => {
            std::env::var(name).ok().or_else(|| Some(functions.clone()))
        }
        _ => std::env::var(name).ok(),
    })?;
    if let Some(attempts) = args.max_attempts {
        settings.max_attempts = attempts.max(1);
    }
    match args.max_receive_count {
        Some(count) => settings.max_receive_count = count,
        None if !receive_count_set => settings.max_receive_count = settings.max_attempts + 3,
        None => {}
    }
    if settings.max_receive_count <= settings.max_attempts {
        return Err(format!(
            "--max-receive-count ({}) must be more than --max-attempts ({}): the receives above \
             the attempts absorb deliveries that run nothing",
            settings.max_receive_count, settings.max_attempts
        )
        .into());
    }
    if let Some(limit) = args.max_active_jobs_per_owner {
        settings.max_active_jobs_per_owner = limit;
    }
    if let Some(seconds) = args.backoff_base_seconds {
        settings.backoff_base = Duration::from_secs(seconds);
    }
    if let Some(seconds) = args.backoff_max_seconds {
        settings.backoff_max = Duration::from_secs(seconds);
        if args.backoff_base_seconds.is_none() {
            settings.backoff_base = settings.backoff_base.min(settings.backoff_max);
        }
    }
    // The consumer renews what the queue it consumes gives: with an SQS queue of its own, that
    // queue's (read when the queue is found).
    settings.visibility_timeout = Duration::from_secs(args.visibility_timeout.max(1));
    if settings.backoff_base > settings.backoff_max {
        return Err("--backoff-base-seconds is longer than --backoff-max-seconds".into());
    }
    Ok(settings)
}

/// The SDK configuration `lambda` kinds are invoked with: `--lambda-endpoint-url`'s, or the
/// SDK's own chain (which reads `AWS_ENDPOINT_URL_LAMBDA`).
async fn lambda_sdk(args: &DevArgs) -> aws_config::SdkConfig {
    let mut aws = args.aws.clone();
    if let Some(url) = &args.lambda_endpoint_url {
        aws.endpoint_url = Some(url.clone());
    }
    aws.sdk_config().await
}

/// The webhook signing secret the Lambdas would read (`SPILLWAY_WEBHOOK_SECRET`, or the secret
/// `SPILLWAY_WEBHOOK_SECRET_ARN` names), or else a new one for this run, logged so a local
/// receiver can verify what it gets.
async fn webhook_keys(args: &DevArgs) -> Result<SigningKeys, Box<dyn Error>> {
    let sdk = args.aws.sdk_config().await;
    if let Some(keys) =
        spillway_core::app::webhook_keys(&sdk, |name| std::env::var(name).ok()).await?
    {
        return Ok(keys);
    }
    let (_, keys) = SigningKeys::generate()?;
    info!("made a webhook signing secret for this run; set SPILLWAY_WEBHOOK_SECRET to keep one");
    Ok(keys)
}

fn mapping(args: &DevArgs, queue: Arc<dyn JobQueue>, queue_arn: String) -> EventSourceMapping {
    EventSourceMapping {
        queue,
        queue_arn,
        region: args.aws.region.clone(),
        batch_size: args.batch_size,
        batching_window: Duration::from_millis(args.batching_window_ms),
        function_timeout: Duration::from_secs(args.function_timeout),
    }
}

/// The name of a lane's queue: the work queue's for the normal lane, with `-high` for the other.
fn lane_queue_name(args: &DevArgs, priority: Priority) -> String {
    args.aws.lane_queue_name(priority)
}

/// Everything in memory: nothing to install, nothing kept after exit. Each lane has its own
/// queue and dead-letter queue.
fn embedded(args: &DevArgs, settings: Settings) -> (App, Lanes<EventSourceMapping>, String) {
    let visibility = Duration::from_secs(args.visibility_timeout);
    let queues = Lanes::from_fn(|_| -> Arc<dyn JobQueue> {
        let dlq = Arc::new(MemoryQueue::new(visibility));
        Arc::new(
            MemoryQueue::new(visibility).with_dead_letter_queue(dlq, settings.max_receive_count),
        )
    });
    let mappings = queues.clone().map(|priority, queue| {
        let queue_arn = format!(
            "arn:aws:sqs:{}:000000000000:{}",
            args.aws.region,
            lane_queue_name(args, priority)
        );
        mapping(args, queue, queue_arn)
    });
    let app = App::new(Arc::new(MemoryStore::new()), queues, settings);
    (app, mappings, "in-memory".to_owned())
}

/// DynamoDB and SQS at an endpoint, created first with --create-resources.
async fn on_endpoint(
    args: &DevArgs,
    endpoint_url: &str,
    mut settings: Settings,
) -> Result<(App, Lanes<EventSourceMapping>, String), Box<dyn Error>> {
    let sdk = args.aws.sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let table = &args.aws.table;
    let unreachable = |what: String| {
        move |e: Box<dyn Error + Send + Sync>| format!("{what} at {endpoint_url}: {e}")
    };

    let (queue_url, high_queue_url) = if args.create_resources {
        provision::ensure_table(&dynamodb, table)
            .await
            .map_err(unreachable(format!("creating table {table}")))?;
        let visibility = Duration::from_secs(args.visibility_timeout);
        let mut urls = Vec::new();
        for priority in [Priority::Normal, Priority::High] {
            let name = lane_queue_name(args, priority);
            let queues =
                provision::ensure_queues(&sqs, &name, settings.max_receive_count, visibility)
                    .await
                    .map_err(unreachable(format!("creating queue {name}")))?;
            urls.push(queues.queue_url);
        }
        let high = urls.pop().unwrap_or_default();
        let normal = urls.pop().unwrap_or_default();
        (
            args.aws.queue_url.clone().unwrap_or(normal),
            args.aws.high_queue_url.clone().unwrap_or(high),
        )
    } else {
        dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "table {table} at {endpoint_url}: {e} (pass --create-resources to create it)"
                )
            })?;
        let normal = args
            .aws
            .work_queue_url(&sqs)
            .await
            .map_err(|e| format!("{e} (pass --queue-url, or --create-resources)"))?;
        let high = args
            .aws
            .lane_queue_url(&sqs, Priority::High)
            .await
            .map_err(|e| format!("{e} (pass --high-queue-url, or --create-resources)"))?;
        (normal, high)
    };
    let queue_arn = provision::queue_arn(&sqs, &queue_url)
        .await
        .map_err(unreachable(format!("queue {queue_url}")))?;
    if let Some(count) = provision::max_receive_count(&sqs, &queue_url)
        .await
        .map_err(unreachable(format!("queue {queue_url}")))?
        && count != settings.max_receive_count
    {
        warn!(
            max_receive_count = count,
            "using the queue's own maxReceiveCount"
        );
        settings.max_receive_count = count;
        if count <= settings.max_attempts {
            settings.max_attempts = count.saturating_sub(1).max(1);
            warn!(
                max_attempts = settings.max_attempts,
                "fewer attempts, to leave one receive above them"
            );
        }
    }

    if let Some(visibility) = provision::visibility_timeout(&sqs, &queue_url)
        .await
        .map_err(unreachable(format!("queue {queue_url}")))?
    {
        settings.visibility_timeout = visibility.max(Duration::from_secs(1));
    }

    let high_queue_arn = provision::queue_arn(&sqs, &high_queue_url)
        .await
        .map_err(unreachable(format!("queue {high_queue_url}")))?;
    let config = Config {
        resources: Resources {
            table: table.clone(),
            queue_urls: Lanes {
                high: Some(high_queue_url.clone()),
                normal: Some(queue_url.clone()),
            },
        },
        settings,
    };
    let app = App::on_aws(&sdk, &config);
    let mappings = Lanes {
        high: mapping(
            args,
            Arc::new(SqsQueue::new(sqs.clone(), &high_queue_url)),
            high_queue_arn,
        ),
        normal: mapping(args, Arc::new(SqsQueue::new(sqs, &queue_url)), queue_arn),
    };
    Ok((
        app,
        mappings,
        format!("{endpoint_url} (table {table}, queues {queue_url} and {high_queue_url})"),
    ))
}

/// One poller of the event source mapping: receive, invoke, delete, until told to stop. A stop
/// interrupts only the wait for messages, never a batch being handled.
async fn poll(esm: EventSourceMapping, app: App, mut stopped: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            received = esm.receive_batch(Duration::from_secs(20)) => received,
        };
        match received {
            Ok(messages) if messages.is_empty() => {}
            Ok(messages) => {
                let report = esm.invoke(&app, &messages).await;
                tracing::debug!(
                    received = report.received,
                    failed = report.failed.len(),
                    deleted = report.deleted,
                    "batch handled"
                );
            }
            Err(error) => {
                warn!(error = %error, "receiving from the queue failed; retrying in a second");
                tokio::select! {
                    _ = stopped.wait_for(|stop| *stop) => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

/// Logs a lane's queue depth every `every` when it has changed, until told to stop. A failing
/// read is logged when it starts failing, not at every tick.
async fn log_queue_depth(
    priority: Priority,
    queue: Arc<dyn JobQueue>,
    every: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stopped.wait_for(|stop| *stop) => return,
            _ = tick.tick() => {}
        }
        match queue.depth().await {
            Ok(depth) => {
                failing = false;
                if last != Some(depth) {
                    info!(
                        %priority,
                        visible = depth.visible,
                        in_flight = depth.in_flight,
                        delayed = depth.delayed,
                        "queue depth"
                    );
                    last = Some(depth);
                }
            }
            Err(error) if !failing => {
                failing = true;
                warn!(%priority, error = %error, "reading the queue's depth failed");
            }
            Err(_) => {}
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// What the handlers share: the app, and how callers are named.
#[derive(Clone)]
struct Dev {
    app: App,
    callers_from_header: bool,
}

/// The header `--callers-from-header` names callers by.
const CALLER_HEADER: &str = "x-spillway-caller";

impl Dev {
    /// The caller's owner: the anonymous one, or with `--callers-from-header` the one its
    /// `X-Spillway-Caller` names.
    fn owner(&self, headers: &HeaderMap) -> Owner {
        let named = headers
            .get(CALLER_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|name| self.callers_from_header && !name.is_empty());
        named.map_or_else(Owner::anonymous, |name| {
            Owner::authenticated(&format!("spillway-dev:{name}"))
        })
    }
}

fn router(app: App, callers_from_header: bool) -> Router {
    // One byte over the limit reaches the handler, which answers 413 as problem+json; larger
    // bodies are cut off by the layer and answered the same way below.
    let limit = app.settings.max_payload_bytes + 1;
    Router::new()
        .route("/jobs", post(submit))
        // A batch's own limit, set on its route, replaces the one below for it.
        .route(
            "/jobs/batch",
            post(submit_batch).layer(DefaultBodyLimit::max(api::MAX_BATCH_BYTES + 1)),
        )
        .route("/jobs/{id}", get(status).delete(cancel))
        .route("/webhook-secret", get(webhook_secret))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(Dev {
            app,
            callers_from_header,
        })
}

fn into_axum(response: ApiResponse) -> Response {
    response.map(Body::from)
}

async fn submit(
    State(dev): State<Dev>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let app = &dev.app;
    match body {
        Ok(body) => into_axum(api::submit_job(app, dev.owner(&headers), &headers, &body).await),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => into_axum(
            ApiError::PayloadTooLarge {
                limit: app.settings.max_payload_bytes,
            }
            .into_response(),
        ),
        Err(rejection) => rejection.into_response(),
    }
}

async fn submit_batch(
    State(dev): State<Dev>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match body {
        Ok(body) => {
            into_axum(api::submit_batch(&dev.app, dev.owner(&headers), &headers, &body).await)
        }
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => into_axum(
            ApiError::PayloadTooLarge {
                limit: api::MAX_BATCH_BYTES,
            }
            .into_response(),
        ),
        Err(rejection) => rejection.into_response(),
    }
}

async fn status(
    State(dev): State<Dev>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let wait = query.as_deref().and_then(|q| query_value(q, "wait"));
    into_axum(api::get_job(&dev.app, &dev.owner(&headers), &id, wait).await)
}

async fn webhook_secret(State(dev): State<Dev>, headers: HeaderMap) -> Response {
    into_axum(api::webhook_secret(&dev.app, &dev.owner(&headers)).await)
}

async fn cancel(State(dev): State<Dev>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    into_axum(api::cancel_job(&dev.app, &dev.owner(&headers), &id).await)
}

async fn no_route(method: Method, uri: Uri) -> Response {
    into_axum(
        ApiError::NoRoute {
            method: method.to_string(),
            path: uri.path().to_owned(),
        }
        .into_response(),
    )
}

/// The value of `key` in a query string; values here are plain numbers, so no percent-decoding.
fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(
            colour(true, Some(OsString::new())),
            "an empty NO_COLOR is unset"
        );
        assert!(!colour(true, Some("1".into())));
        assert!(!colour(false, None), "a file or a pipe");
        assert!(!colour(false, Some("1".into())));
    }
}
