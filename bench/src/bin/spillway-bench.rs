//! `spillway-bench`: runs the functions' release binaries under the Lambda Runtime API emulator,
//! with `FakeAws` on loopback as their AWS endpoint, and prints each figure against its budget.
//! `scripts/bench` builds the binaries and the zips and runs `spillway load` first; see
//! docs/performance.md.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};
use spillway_bench::{FakeAws, HIGH_QUEUE_URL, QUEUE_URL, RuntimeApi, TABLE, events};
use spillway_core::domain::JobMessage;
use spillway_core::store::{DynamoStore, JobStore};
use tokio::process::{Child, Command};

/// Measure the Lambda binaries: init time against a hello-world baseline, peak memory over many
/// events, and a batch of slow jobs against a single one.
#[derive(Debug, Parser)]
#[command(name = "spillway-bench")]
struct Args {
    /// Where the release binaries `intake`, `status`, `consumer` and `hello` are: as cargo-lambda
    /// leaves them (`<dir>/<function>/bootstrap`) or as cargo does (`<dir>/<function>`).
    #[arg(long)]
    bin_dir: PathBuf,
    /// Where `cargo lambda build --output-format zip` left `<function>/bootstrap.zip`.
    #[arg(long)]
    zip_dir: Option<PathBuf>,
    /// The target the zips were built for, for the table (for example `arm64`).
    #[arg(long, default_value = "arm64")]
    zip_target: String,
    /// Cold starts per function, after one that warms the page cache; the table shows the median.
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Events (intake, status) or records (consumer) for the peak-memory runs.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// `spillway load --json` report of the fixed-rate run against `spillway dev`.
    #[arg(long)]
    load: Option<PathBuf>,
    /// `spillway load --json` report of the spike run against `spillway dev`.
    #[arg(long)]
    spike: Option<PathBuf>,
    /// What `spillway simulate docs/scenarios/steady-1000.toml` printed on standard error (its
    /// wall time), from a release build.
    #[arg(long)]
    simulate: Option<PathBuf>,
    /// The same for `spillway simulate docs/scenarios/steady-1000.toml --compare`, which
    /// simulates both designs.
    #[arg(long)]
    simulate_compare: Option<PathBuf>,
    /// Also write every figure as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Measure only these parts (comma-separated), for iterating on one figure.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Part::ALL)]
    only: Vec<Part>,
    /// CPU per invocation: events (intake, status) per function, in all blocks together.
    #[arg(long, default_value_t = 2000)]
    cpu_requests: usize,
    /// CPU per invocation: the consumer's batches of 10 records, in all blocks together.
    #[arg(long, default_value_t = 300)]
    cpu_batches: usize,
    /// CPU per invocation: the blocks the functions take turns in (the figure is their median).
    #[arg(long, default_value_t = 10)]
    cpu_blocks: usize,
    /// Run each function under this command, for profiling: for example
    /// `--wrap 'perf record -g -o /tmp/init.perf --'` (split on whitespace).
    #[arg(long)]
    wrap: Option<String>,
}

/// The parts of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// The zips' sizes.
    Zip,
    /// Cold starts.
    Init,
    /// Peak resident memory.
    Memory,
    /// A batch of slow jobs against one.
    Batch,
    /// Instructions from exec to the first answer, counted by valgrind's callgrind (skipped
    /// where valgrind is not installed).
    Instructions,
    /// CPU per warm invocation through the Runtime API, against the hello-world floor.
    Cpu,
}

impl Part {
    const ALL: [Part; 6] = [
        Part::Zip,
        Part::Init,
        Part::Instructions,
        Part::Memory,
        Part::Batch,
        Part::Cpu,
    ];
}

/// One line of the table.
struct Row {
    what: String,
    value: String,
    budget: String,
    /// `None` when the line has no budget.
    within: Option<bool>,
}

impl Row {
    fn new(what: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            value: value.into(),
            budget: String::new(),
            within: None,
        }
    }

    fn budget(mut self, budget: impl Into<String>, within: bool) -> Self {
        self.budget = budget.into();
        self.within = Some(within);
        self
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("spillway-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("spillway-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), BoxError> {
    let fake = FakeAws::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", listener.local_addr()?);
    tokio::spawn(Arc::clone(&fake).serve(listener));
    let bench = Bench {
        store: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&fake.sdk_config().await),
            TABLE,
        ),
        endpoint,
        bin_dir: args.bin_dir.clone(),
        wrap: args
            .wrap
            .as_deref()
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let mut rows = Vec::new();
    let mut figures = BTreeMap::<String, Value>::new();

    if let Some(zip_dir) = args
        .zip_dir
        .as_ref()
        .filter(|_| args.only.contains(&Part::Zip))
    {
        for function in FUNCTIONS {
            let path = zip_dir.join(function).join("bootstrap.zip");
            let bytes = std::fs::metadata(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len();
            figures.insert(format!("{function}.zip_bytes"), json!(bytes));
            rows.push(
                Row::new(
                    format!("{function}: bootstrap.zip ({})", args.zip_target),
                    format!("{:.2} MB", bytes as f64 / 1e6),
                )
                .budget("≤ 4 MB", bytes <= 4_000_000),
            );
        }
    }

    if args.only.contains(&Part::Init) {
        eprintln!("init: {} cold starts of each function", args.runs);
        let hello = bench.init_times("hello", args.runs).await?;
        let hello_median = median(&hello);
        figures.insert("hello.init_ms".into(), json!(hello));
        rows.push(Row::new(
            "hello-world lambda_runtime: init, median",
            format!("{hello_median:.2} ms"),
        ));
        for function in FUNCTIONS {
            let times = bench.init_times(function, args.runs).await?;
            let median = median(&times);
            let ratio = median / hello_median;
            figures.insert(format!("{function}.init_ms"), json!(times));
            rows.push(
                Row::new(
                    format!("{function}: init, median"),
                    format!("{median:.2} ms ({ratio:.2}× hello)"),
                )
                .budget("≤ 1.5× hello", ratio <= 1.5),
            );
        }
    }

    if args.only.contains(&Part::Instructions) {
        if valgrind_installed().await {
            eprintln!("init: instructions, under callgrind");
            let hello = bench.instructions("hello").await?;
            figures.insert("hello.init_instructions".into(), json!(hello));
            rows.push(Row::new(
                "hello-world lambda_runtime: init, instructions",
                format!("{:.2} M", hello as f64 / 1e6),
            ));
            for function in FUNCTIONS {
                let count = bench.instructions(function).await?;
                figures.insert(format!("{function}.init_instructions"), json!(count));
                rows.push(Row::new(
                    format!("{function}: init, instructions"),
                    format!(
                        "{:.2} M ({:.2}× hello)",
                        count as f64 / 1e6,
                        count as f64 / hello as f64
                    ),
                ));
            }
        } else {
            eprintln!("init instructions: skipped, valgrind is not installed");
        }
    }

    if args.only.contains(&Part::Memory) {
        for function in ["hello", "intake", "status", "consumer"] {
            eprintln!("peak memory: {function} over {} events", args.records);
            let peak_kib = bench.peak_memory(function, args.records).await?;
            figures.insert(format!("{function}.peak_rss_kib"), json!(peak_kib));
            let what = if function == "consumer" {
                format!("{function}: peak RSS over {} records", args.records)
            } else {
                format!("{function}: peak RSS over {} requests", args.records)
            };
            let row = Row::new(what, format!("{:.1} MB", peak_kib as f64 / 1024.0));
            rows.push(if function == "hello" {
                row
            } else {
                row.budget("≤ 32 MB", peak_kib <= 32 * 1024)
            });
        }
    }

    if args.only.contains(&Part::Batch) {
        eprintln!("consumer: a batch of 10 sleep jobs against one");
        let (single, batch) = bench.batch_against_single(args.runs).await?;
        let ratio = batch / single;
        figures.insert("consumer.single_sleep_ms".into(), json!(single));
        figures.insert("consumer.batch_of_10_sleep_ms".into(), json!(batch));
        rows.push(Row::new(
            "consumer: one sleep-50ms job, median",
            format!("{single:.1} ms"),
        ));
        rows.push(
            Row::new(
                "consumer: batch of 10 sleep-50ms jobs, median",
                format!("{batch:.1} ms ({ratio:.2}× one)"),
            )
            .budget("≤ 2× one", ratio <= 2.0),
        );
    }

    // Last: it stops keeping what the functions write.
    if args.only.contains(&Part::Cpu) {
        let blocks = args.cpu_blocks.max(1);
        eprintln!(
            "CPU per invocation: {} requests, {} batches of 10, in {blocks} interleaved blocks",
            args.cpu_requests, args.cpu_batches
        );
        let cpu = bench
            .cpu_per_invocation(&fake, args.cpu_requests, args.cpu_batches, blocks)
            .await?;
        for (function, budget) in CPU_BUDGETS {
            let (own, floor) = (&cpu[function], &cpu[&format!("hello/{function}")]);
            let (own_us, floor_us) = (median(own), median(floor));
            let ratio = own_us / floor_us;
            figures.insert(format!("{function}.cpu_us_per_invocation"), json!(own));
            figures.insert(
                format!("{function}.floor_cpu_us_per_invocation"),
                json!(floor),
            );
            let what = if function == "consumer" {
                "consumer: CPU per batch of 10 (20 UpdateItem)"
            } else {
                &format!("{function}: CPU per request")
            };
            rows.push(Row::new(
                format!("hello-world lambda_runtime, {function}'s event: CPU per invocation"),
                format!("{floor_us:.0} µs"),
            ));
            rows.push(
                Row::new(
                    what,
                    format!(
                        "{own_us:.0} µs ({ratio:.2}× floor; blocks {:.0}–{:.0} µs)",
                        quartile(own, 1),
                        quartile(own, 3)
                    ),
                )
                .budget(format!("≤ {budget}× floor"), ratio <= budget),
            );
        }
    }

    if let Some(path) = &args.load {
        let report = read_json(path)?;
        rows.extend(load_rows("fixed rate", &report, true));
        figures.insert("load.fixed".into(), report);
    }
    if let Some(path) = &args.spike {
        let report = read_json(path)?;
        rows.extend(load_rows("spike", &report, false));
        figures.insert("load.spike".into(), report);
    }

    for (path, name, budget_s) in [
        (&args.simulate, "simulate.steady_1000", 5.0),
        (&args.simulate_compare, "simulate.steady_1000_compare", 10.0),
    ] {
        if let Some(path) = path {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let (submissions, wall_s) = simulated(&text).ok_or_else(|| {
                format!(
                    "{}: no `simulated N submissions in X s` line",
                    path.display()
                )
            })?;
            let compare = name.ends_with("compare");
            rows.push(
                Row::new(
                    format!(
                        "spillway simulate steady-1000.toml{}: {:.1} M submissions, wall time",
                        if compare {
                            " --compare (both designs)"
                        } else {
                            ""
                        },
                        submissions as f64 / 1e6
                    ),
                    format!("{wall_s:.2} s"),
                )
                .budget(format!("≤ {budget_s} s"), wall_s <= budget_s),
            );
            figures.insert(
                name.into(),
                json!({"submissions": submissions, "wall_s": wall_s}),
            );
        }
    }

    print_table(&rows);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&figures)?)?;
    }
    Ok(())
}

const FUNCTIONS: [&str; 3] = ["intake", "status", "consumer"];

/// Each function's CPU per warm invocation against the floor's on the same event, at most.
const CPU_BUDGETS: [(&str, f64); 3] = [("intake", 2.2), ("status", 1.6), ("consumer", 10.0)];

/// The CPU time, in nanoseconds, the process `pid` has run on: the sum over its threads of the
/// scheduler's own account (`/proc/<pid>/task/*/schedstat`).
fn cpu_ns(pid: u32) -> Result<u64, BoxError> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else {
            continue; // a thread that ended just now
        };
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .ok_or("an unreadable schedstat")?;
    }
    Ok(total)
}

struct Bench {
    store: DynamoStore,
    endpoint: String,
    bin_dir: PathBuf,
    /// A command (and its arguments) each function runs under; empty for none.
    wrap: Vec<String>,
}

/// A function process under a fresh runtime API; killed when dropped.
struct Function {
    child: Child,
    runtime: RuntimeApi,
}

impl Function {
    async fn invoke(&self, event: impl Into<bytes::Bytes>) -> Result<bytes::Bytes, BoxError> {
        let answer = tokio::time::timeout(Duration::from_secs(60), self.runtime.invoke(event))
            .await
            .map_err(|_| "the function did not answer within a minute")?;
        answer.map_err(|error| match self.runtime.init_error() {
            Some(init) => format!("{error}; at init: {init}").into(),
            None => error.into(),
        })
    }

    /// Stops the process with SIGINT, sent to its process group so that a `--wrap` profiler
    /// (`perf stat`, valgrind) sees its function end and writes its output; kills it if it has
    /// not exited within 30 s.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let asked = Command::new("kill")
                .args(["-INT", "--", &format!("-{pid}")])
                .status()
                .await;
            if asked.is_ok_and(|status| status.success()) {
                let exited = tokio::time::timeout(Duration::from_secs(30), self.child.wait());
                if exited.await.is_ok() {
                    return;
                }
            }
        }
        self.child.start_kill().ok();
    }

    /// The kernel's high-water mark of the process's resident memory, in KiB.
    fn peak_rss_kib(&self) -> Result<u64, BoxError> {
        let pid = self.child.id().ok_or("the function has exited")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| "no VmHWM in /proc/<pid>/status".into())
    }
}

impl Bench {
    /// Starts `function` the way Lambda does: only the runtime's variables, credentials in the
    /// environment, and logs to a pipe nobody reads faster than needed.
    async fn start(&self, function: &str) -> Result<(Function, Instant), BoxError> {
        self.start_under(function, &self.wrap).await
    }

    /// [`Bench::start`] under `wrap` (a command and its arguments; empty for none).
    async fn start_under(
        &self,
        function: &str,
        wrap: &[String],
    ) -> Result<(Function, Instant), BoxError> {
        let runtime = RuntimeApi::start().await?;
        // cargo-lambda's layout (`<function>/bootstrap`), or cargo's (`<function>`).
        let bootstrap = self.bin_dir.join(function).join("bootstrap");
        let binary = if bootstrap.is_file() {
            bootstrap
        } else {
            self.bin_dir.join(function)
        };
        let mut command = match wrap.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let started = Instant::now();
        let child = command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", format!("spillway-{function}"))
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            )
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/24/[$LATEST]bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "AKIDBENCHMARK")
            .env("AWS_SECRET_ACCESS_KEY", "benchmark-secret")
            .env("AWS_SESSION_TOKEN", "benchmark-token")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("SPILLWAY_TABLE", TABLE)
            .env("SPILLWAY_QUEUE_URL", QUEUE_URL)
            .env("SPILLWAY_HIGH_QUEUE_URL", HIGH_QUEUE_URL)
            // As a stack deployed with `DemoKinds=true` gives intake and the consumer: the
            // benchmark's jobs are `echo` and `sleep`.
            .envs(
                ["intake", "consumer"]
                    .contains(&function)
                    .then_some(("SPILLWAY_DEMO_KINDS", "true")),
            )
            .stdin(Stdio::null())
            .stdout(log_file(function)?)
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // A group of its own, which `Function::stop` signals.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        Ok((Function { child, runtime }, started))
    }

    /// A typical first event for `function`.
    async fn event(&self, function: &str) -> Result<Vec<u8>, BoxError> {
        Ok(match function {
            "intake" => events::submit(r#"{"kind": "echo", "payload": {"order": 1042}}"#).into(),
            "status" => {
                events::status(self.jobs(1, "echo", &json!({"n": 1})).await?[0].job_id).into()
            }
            "consumer" => {
                let jobs = self.jobs(1, "echo", &json!({"order": 1042})).await?;
                serde_json::to_vec(&events::sqs_batch(&jobs))?
            }
            _ => br#"{"hello": "world"}"#.to_vec(),
        })
    }

    async fn jobs(
        &self,
        count: usize,
        kind: &str,
        payload: &Value,
    ) -> Result<Vec<JobMessage>, BoxError> {
        Ok(events::pending_jobs(&self.store as &dyn JobStore, count, kind, payload).await?)
    }

    /// Process start to the first event answered, `runs` times.
    /// One start comes first and is not counted: it reads the binary into the page cache, and
    /// took about twice the others.
    async fn init_times(&self, function: &str, runs: usize) -> Result<Vec<f64>, BoxError> {
        let mut times = Vec::with_capacity(runs + 1);
        for _ in 0..=runs {
            let event = self.event(function).await?;
            let (process, started) = self.start(function).await?;
            let answer = process.invoke(event).await?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
            process.stop().await;
            check_answer(function, &answer)?;
        }
        times.remove(0);
        Ok(times)
    }

    /// The instructions `function` runs from exec to its first event answered, counted by
    /// callgrind, median of three starts. Unlike the wall-clock init time, this is nearly the
    /// same figure on every run, busy machine or not (the functions' counts within about 1 %,
    /// hello's within 5 %: hash seeds, and how often a task finds its socket not yet ready,
    /// vary), so it shows what a change did when the timings' noise hides it. It counts user-space instructions only: exec, page faults and other
    /// kernel time are not in it.
    async fn instructions(&self, function: &str) -> Result<u64, BoxError> {
        let dir = std::env::temp_dir().join(format!("spillway-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let mut counts = Vec::new();
        for run in 0..3 {
            let out = dir.join(format!("{function}-{run}.callgrind"));
            let wrap = [
                "valgrind".to_owned(),
                "--tool=callgrind".to_owned(),
                format!("--callgrind-out-file={}", out.display()),
            ];
            let event = self.event(function).await?;
            let (process, _) = self.start_under(function, &wrap).await?;
            let answer = process.invoke(event).await?;
            process.stop().await;
            check_answer(function, &answer)?;
            let profile = std::fs::read_to_string(&out)
                .map_err(|e| format!("{}: {e} (did callgrind finish?)", out.display()))?;
            let count = profile
                .lines()
                .find_map(|line| line.strip_prefix("summary:"))
                .and_then(|count| count.trim().parse().ok())
                .ok_or_else(|| format!("{}: no `summary:` line", out.display()))?;
            counts.push(count);
        }
        std::fs::remove_dir_all(&dir).ok();
        counts.sort_unstable();
        Ok(counts[1])
    }

    /// Peak resident memory over `count` events (consumer: records, in batches of 10).
    async fn peak_memory(&self, function: &str, count: usize) -> Result<u64, BoxError> {
        let (process, _) = self.start(function).await?;
        if function == "consumer" {
            let jobs = self.jobs(count, "echo", &json!({"order": 1042})).await?;
            for batch in jobs.chunks(10) {
                let answer = process
                    .invoke(serde_json::to_vec(&events::sqs_batch(batch))?)
                    .await?;
                check_answer(function, &answer)?;
            }
        } else {
            let event = self.event(function).await?;
            for _ in 0..count {
                let answer = process.invoke(event.clone()).await?;
                check_answer(function, &answer)?;
            }
        }
        process.peak_rss_kib()
    }

    /// CPU per warm invocation, in µs, of each function and of hello on each function's event
    /// (`hello/intake`, …): one figure per block. All seven processes stay up; after a warm-up
    /// they take turns in `blocks` blocks, in an order that rotates each block, so that the
    /// machine's noise falls on all alike. A reading is taken only while the function waits in
    /// `invocation/next`, so each holds whole invocation cycles: the runtime client, the event
    /// parsed, the handler, its AWS calls over loopback HTTP (to `fake`, which stops keeping
    /// writes here), logging, and the answer posted.
    async fn cpu_per_invocation(
        &self,
        fake: &FakeAws,
        requests: usize,
        batches: usize,
        blocks: usize,
    ) -> Result<BTreeMap<String, Vec<f64>>, BoxError> {
        let jobs = self.jobs(10, "echo", &json!({"order": 1042})).await?;
        let batch = serde_json::to_vec(&events::sqs_batch(&jobs))?;
        let status = self.event("status").await?;
        let intake = self.event("intake").await?;
        fake.forget_writes();
        let mut runs = Vec::new();
        for (function, event, count) in [
            ("intake", intake, requests),
            ("status", status, requests),
            ("consumer", batch, batches),
        ] {
            let per_block = count.div_ceil(blocks).max(1);
            for binary in [function, "hello"] {
                let name = if binary == "hello" {
                    format!("hello/{function}")
                } else {
                    function.to_owned()
                };
                let (process, _) = self.start(binary).await?;
                runs.push(CpuRun {
                    name,
                    function,
                    process,
                    event: bytes::Bytes::from(event.clone()),
                    per_block,
                    done: 0,
                    figures: Vec::new(),
                });
            }
        }
        for run in &mut runs {
            // A tenth as warm-up: connections made, caches filled, code paged in.
            for _ in 0..run.per_block {
                run.invoke().await?;
            }
        }
        for block in 0..blocks {
            let (rotated, count) = (block % runs.len(), runs.len());
            for index in (0..count).map(|i| (i + rotated) % count) {
                let run = &mut runs[index];
                let pid = run.process.child.id().ok_or("a function exited")?;
                let before = cpu_ns(pid)?;
                for _ in 0..run.per_block {
                    run.invoke().await?;
                }
                let used = cpu_ns(pid)? - before;
                run.figures.push(used as f64 / 1e3 / run.per_block as f64);
            }
        }
        let mut figures = BTreeMap::new();
        for run in runs {
            run.process.stop().await;
            figures.insert(run.name, run.figures);
        }
        Ok(figures)
    }

    /// The consumer's time for one `sleep` 50 ms job and for a batch of ten, medians in ms.
    async fn batch_against_single(&self, runs: usize) -> Result<(f64, f64), BoxError> {
        let (process, _) = self.start("consumer").await?;
        let warm_up = self.event("consumer").await?;
        process.invoke(warm_up).await?;
        let payload = json!({"ms": 50});
        let (mut single, mut batch) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            for (size, times) in [(1, &mut single), (10, &mut batch)] {
                let jobs = self.jobs(size, "sleep", &payload).await?;
                let event = serde_json::to_vec(&events::sqs_batch(&jobs))?;
                let started = Instant::now();
                let answer = process.invoke(event).await?;
                times.push(started.elapsed().as_secs_f64() * 1e3);
                check_answer("consumer", &answer)?;
            }
        }
        Ok((median(&single), median(&batch)))
    }
}

/// One process of the CPU measurement.
struct CpuRun {
    name: String,
    /// The function whose event it answers (and how its answer is checked).
    function: &'static str,
    process: Function,
    event: bytes::Bytes,
    per_block: usize,
    /// Invocations answered so far.
    done: u64,
    figures: Vec<f64>,
}

impl CpuRun {
    /// One invocation, answered and checked, and the function back in `invocation/next`.
    async fn invoke(&mut self) -> Result<(), BoxError> {
        let answer = self.process.invoke(self.event.clone()).await?;
        self.done += 1;
        if !self.name.starts_with("hello") {
            check_answer(self.function, &answer)?;
        }
        self.process.runtime.parked(self.done + 1).await;
        Ok(())
    }
}

/// Where a function's standard output goes: nowhere, or when `SPILLWAY_BENCH_LOG_DIR` names a
/// directory, `<function>.log` there (appended), to see what a failing run said.
fn log_file(function: &str) -> Result<Stdio, BoxError> {
    match std::env::var_os("SPILLWAY_BENCH_LOG_DIR") {
        Some(dir) => {
            let path = Path::new(&dir).join(format!("{function}.log"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(file.into())
        }
        None => Ok(Stdio::null()),
    }
}

/// Whether `valgrind` runs here.
async fn valgrind_installed() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

/// A benchmark of failures measures nothing: every answer must be the success it should be.
fn check_answer(function: &str, answer: &[u8]) -> Result<(), BoxError> {
    let answer: Value = serde_json::from_slice(answer)?;
    let ok = match function {
        "intake" => answer["statusCode"] == 202,
        "status" => answer["statusCode"] == 200,
        "consumer" => answer["batchItemFailures"]
            .as_array()
            .is_some_and(Vec::is_empty),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{function} answered {answer}").into())
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The `q`th quartile (1 or 3) of `values`, by the nearest rank.
fn quartile(values: &[f64], q: usize) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        n => sorted[((n - 1) * q).div_ceil(4).min(n - 1)],
    }
}

/// The submissions and the wall time, in seconds, of `spillway simulate`'s line on standard
/// error: `simulated 3601193 submissions in 1.602 s of wall time`.
fn simulated(stderr: &str) -> Option<(u64, f64)> {
    stderr.lines().find_map(|line| {
        let rest = line.strip_prefix("simulated ")?;
        let (submissions, rest) = rest.split_once(" submissions in ")?;
        let (seconds, _) = rest.split_once(" s of wall time")?;
        Some((submissions.parse().ok()?, seconds.parse().ok()?))
    })
}

fn read_json(path: &Path) -> Result<Value, BoxError> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// The lines of one `spillway load` report: the fixed-rate run is held to the latency and
/// nothing-lost budgets, the spike run to the throughput budget.
fn load_rows(name: &str, report: &Value, fixed: bool) -> Vec<Row> {
    let number = |value: &Value| value.as_f64().unwrap_or(f64::NAN);
    let accepted = report["accepted"].as_u64().unwrap_or(0);
    let p99 = number(&report["intake_latency"]["p99_ms"]);
    let lost = report["follow"]["lost"].as_u64();
    let mut rows = vec![Row::new(
        format!(
            "spillway load, {name}: {} jobs at {}/s for {} s",
            report["scheduled"], report["rate"], report["duration_s"]
        ),
        format!(
            "{accepted} accepted, {:.0}/s, rejected {}, errors {}",
            number(&report["accepted_per_s"]),
            report["rejected"],
            report["errors"]
        ),
    )];
    if fixed {
        rows.push(
            Row::new(
                format!("spillway load, {name}: p99 intake latency"),
                format!("{p99:.2} ms"),
            )
            .budget("≤ 10 ms", p99 <= 10.0),
        );
    } else {
        let spike = &report["spike"];
        let rate = number(&spike["accepted_per_s"]);
        rows.push(
            Row::new(
                format!(
                    "spillway load, {name}: accepted/s inside the {}/s window",
                    spike["rate"]
                ),
                format!(
                    "{rate:.0}/s (p99 intake {:.2} ms)",
                    number(&spike["intake_latency"]["p99_ms"])
                ),
            )
            .budget("≥ 3,000/s", rate >= 3000.0),
        );
    }
    let row = Row::new(
        format!("spillway load, {name}: jobs lost (followed to the end)"),
        lost.map_or_else(|| "not followed".to_owned(), |lost| lost.to_string()),
    );
    rows.push(if fixed {
        row.budget("0 of ≥ 60,000", lost == Some(0) && accepted >= 60_000)
    } else {
        row
    });
    rows
}

fn print_table(rows: &[Row]) {
    let widest = |column: fn(&Row) -> &str| {
        rows.iter()
            .map(|r| column(r).chars().count())
            .max()
            .unwrap_or(0)
    };
    let width = widest(|r| &r.what);
    let value_width = widest(|r| &r.value);
    let budget_width = widest(|r| &r.budget);
    println!();
    for row in rows {
        let verdict = match row.within {
            Some(true) => "ok",
            Some(false) => "OVER",
            None => "",
        };
        println!(
            "{:<width$}  {:>value_width$}  {:<budget_width$}  {verdict}",
            row.what, row.value, row.budget
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulators_wall_time_is_read_from_its_line() {
        let stderr = "warning: something\nsimulated 3601193 submissions in 1.602 s of wall time\n";
        assert_eq!(simulated(stderr), Some((3_601_193, 1.602)));
        assert_eq!(simulated("simulated soon\n"), None);
        assert_eq!(simulated(""), None);
    }
}
