//! The simulator checked against the running system. docs/scenarios/dev-check.toml is simulated,
//! and run for real: `spillway dev` configured from the same file, loaded by `spillway load` with
//! the same arrivals, spike, deadline and processing-time distribution (`sleep` jobs whose sleeps
//! `--sleep-dist` draws from the simulator's own distributions). Accepted jobs, expired jobs,
//! the peak of visible messages and the end-to-end p50 and p99 must agree within the tolerances
//! below; docs/capacity-planning.md ("Checked against `spillway dev`") has the figures.
//!
//! The run takes the scenario's 30 s of arrivals and a few seconds more. Nothing here asserts how
//! fast anything is: the figures compared are counts and the jobs' own timestamps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

mod support;

use std::fmt;
use std::path::Path;

use serde_json::Value;
use support::DevServer;

const SCENARIO: &str = "docs/scenarios/dev-check.toml";

/// The figures compared, each with how far the measurement may be from the simulation.
///
/// The simulator draws its processing times from its own generator and `spillway load` from
/// another: the same distribution, other values. So the two runs differ by their draws as well as
/// by what the simulator leaves out. Over seeds 1 to 20 the simulator alone gives expired 216 to
/// 241, peak visible 362 to 386, p50 0.318 to 0.348 s and p99 2.296 to 2.331 s, and
/// `spillway dev` under `spillway load --seed 1` to `5` spreads as widely (docs/capacity-planning.md
/// has the figures); each tolerance is about that spread, so it holds for any pair of seeds, not
/// only for the two this test uses. What the simulator leaves out
/// is smaller: HTTP between the generator and the server, the in-memory store's writes and the
/// log, and `sleep` waking on tokio's 1 ms timer each make a job a millisecond or two longer
/// than its draw. Nothing here is a wall-clock time: the latencies are the jobs' own
/// `created_at` to `updated_at`, which a slow machine lengthens only by that overhead.
///
/// The tolerances still catch a simulator wrong by about a tenth: jobs 10 % longer (p50 0.22 s)
/// move the simulated p50 by 0.076 s, two consumers fewer (14 of 16) by 0.19 s and expired by
/// 46, and jobs twice as long miss all but `accepted`. One consumer fewer (6 %) is at the edge:
/// the p50 moves by 0.046 s.
const CHECKS: [Check; 5] = [
    // No throttle and no backlog limit: every submission is accepted in both.
    Check {
        name: "accepted",
        tolerance: 0.0,
        seconds: false,
        of: |f| f.accepted,
    },
    Check {
        name: "expired",
        tolerance: 40.0,
        seconds: false,
        of: |f| f.expired,
    },
    // `spillway dev` samples the queue every 100 ms, between which at most 20 jobs arrive.
    Check {
        name: "peak visible messages",
        tolerance: 35.0,
        seconds: false,
        of: |f| f.peak_visible,
    },
    Check {
        name: "end to end p50",
        tolerance: 0.05,
        seconds: true,
        of: |f| f.p50_s,
    },
    // The p99 is a job that waited nearly the 2 s deadline, then ran: about 2 s plus a draw
    // from the tail of the processing time, which varies most between draws.
    Check {
        name: "end to end p99",
        tolerance: 0.08,
        seconds: true,
        of: |f| f.p99_s,
    },
];

#[tokio::test]
async fn the_simulator_agrees_with_spillway_dev_under_the_same_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let scenario = Scenario::read(&root.join(SCENARIO));
    let dir = std::env::temp_dir().join(format!("spillway-simulate-vs-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let simulated = simulate(&root, &dir.join("simulated.json"));
    let (measured, load) = run_against_dev(&scenario, &dir.join("load.json")).await;
    std::fs::remove_dir_all(&dir).ok();

    println!("{SCENARIO}, seed {}:\n", scenario.seed);
    println!("{}", Comparison(simulated, measured));
    let follow = &load["follow"];
    assert_eq!(follow["lost"], 0, "{load}");
    assert_eq!(load["dropped"], 0, "{load}");
    assert_eq!(load["rejected"], serde_json::json!({}), "{load}");
    assert_eq!(load["errors"], serde_json::json!({}), "{load}");
    assert_eq!(
        measured.succeeded + measured.expired,
        measured.accepted,
        "every job succeeded or expired: {follow}"
    );
    let misses: Vec<String> = CHECKS
        .iter()
        .filter(|check| ((check.of)(&measured) - (check.of)(&simulated)).abs() > check.tolerance)
        .map(|check| {
            format!(
                "{}: simulated {}, measured {}, tolerance {}",
                check.name,
                check.show((check.of)(&simulated)),
                check.show((check.of)(&measured)),
                check.show_tolerance()
            )
        })
        .collect();
    assert!(
        misses.is_empty(),
        "the running system is off the simulation:\n{}",
        misses.join("\n")
    );
}

/// The figures of one run.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Figures {
    accepted: f64,
    succeeded: f64,
    expired: f64,
    peak_visible: f64,
    p50_s: f64,
    p99_s: f64,
}

/// One figure compared.
struct Check {
    name: &'static str,
    /// How far apart the two may be, in the figure's unit.
    tolerance: f64,
    /// Seconds, or a count.
    seconds: bool,
    of: fn(&Figures) -> f64,
}

impl Check {
    fn show(&self, value: f64) -> String {
        if self.seconds {
            format!("{value:.3} s")
        } else {
            format!("{value:.0}")
        }
    }

    fn show_tolerance(&self) -> String {
        if self.tolerance == 0.0 {
            "equal".to_owned()
        } else {
            format!("± {}", self.show(self.tolerance))
        }
    }
}

/// What the comparison reads from the scenario: the flags of both commands.
struct Scenario {
    seed: u64,
    dev_args: Vec<String>,
    dev_env: Vec<(&'static str, String)>,
    load_args: Vec<String>,
}

impl Scenario {
    /// Reads the scenario and turns it into `spillway dev`'s and `spillway load`'s flags,
    /// refusing any feature the two commands cannot reproduce.
    fn read(path: &Path) -> Self {
        let file: toml::Table = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let get = |section: &str, key: &str| -> &toml::Value {
            file[section]
                .get(key)
                .unwrap_or_else(|| panic!("{SCENARIO}: {section}.{key} is not set"))
        };
        let number = |section: &str, key: &str| whole(get(section, key)).to_string();

        assert_eq!(get("arrivals", "process").as_str(), Some("even"));
        assert_eq!(number("intake", "throttle_rate"), "0");
        assert!(
            file["intake"].get("backlog_limit").is_none(),
            "no backlog limit here"
        );
        for failures in ["retryable", "permanent"] {
            assert!(
                file["processing"].get(failures).is_none(),
                "no failures here"
            );
        }
        let concurrency = number("consumer", "maximum_concurrency");
        assert_eq!(
            number("consumer", "initial_concurrency"),
            concurrency,
            "spillway dev's pollers do not scale up"
        );
        let [spike] = get("arrivals", "spikes").as_array().unwrap().as_slice() else {
            panic!("spillway load makes one spike");
        };
        let time = get("processing", "time");
        assert_eq!(time["kind"].as_str(), Some("lognormal"));

        let dev_args = [
            ("--concurrency", concurrency),
            ("--batch-size", number("consumer", "batch_size")),
            (
                "--visibility-timeout",
                number("queue", "visibility_timeout_s"),
            ),
            ("--function-timeout", number("consumer", "timeout_s")),
            ("--max-attempts", number("consumer", "max_attempts")),
            ("--max-receive-count", number("queue", "max_receive_count")),
            (
                "--backoff-base-seconds",
                number("consumer", "backoff_base_s"),
            ),
            ("--backoff-max-seconds", number("consumer", "backoff_max_s")),
            // Ten samples a second, between which at most 20 jobs arrive.
            ("--queue-log-interval", "100ms".to_owned()),
        ];
        let dev_env = vec![
            ("SPILLWAY_DEFAULT_TTL_SECONDS", number("intake", "ttl_s")),
            (
                "SPILLWAY_CONSUMER_CONCURRENCY",
                number("consumer", "record_concurrency"),
            ),
        ];
        let seed = get("run", "seed").as_integer().unwrap().unsigned_abs();
        let load_args = [
            ("--kind", "sleep".to_owned()),
            (
                "--sleep-dist",
                format!(
                    "lognormal:p50={},p99={}",
                    millis(&time["p50_s"]),
                    millis(&time["p99_s"])
                ),
            ),
            ("--seed", seed.to_string()),
            ("--rate", number("arrivals", "rate")),
            ("--duration", millis(get("run", "duration_s"))),
            ("--spike-rate", whole(&spike["rate"]).to_string()),
            ("--spike-start", millis(&spike["start_s"])),
            ("--spike-length", millis(&spike["length_s"])),
        ];
        let flags = |pairs: &[(&str, String)]| {
            pairs
                .iter()
                .flat_map(|(flag, value)| [(*flag).to_owned(), value.clone()])
                .collect()
        };
        Self {
            seed,
            dev_args: flags(&dev_args),
            dev_env,
            load_args: flags(&load_args),
        }
    }
}

/// A whole number of the scenario, which `spillway dev` and `spillway load` need whole.
fn whole(value: &toml::Value) -> u64 {
    value
        .as_integer()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or_else(|| panic!("{value:?}: the comparison needs a whole number here"))
}

/// Seconds of the scenario as a duration in milliseconds, `1500ms`.
fn millis(value: &toml::Value) -> String {
    #[allow(clippy::cast_precision_loss)]
    let seconds = value
        .as_float()
        .or_else(|| value.as_integer().map(|n| n as f64))
        .unwrap_or_else(|| panic!("{value:?}: a number of seconds"));
    format!("{}ms", (seconds * 1000.0).round())
}

/// `spillway simulate` on the scenario.
fn simulate(root: &Path, json: &Path) -> Figures {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["simulate", SCENARIO, "--json"])
        .arg(json)
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let summary = &report["async"]["summary"];
    let count = |key: &str| summary[key].as_f64().unwrap();
    Figures {
        accepted: count("accepted"),
        succeeded: count("succeeded"),
        expired: count("expired"),
        peak_visible: count("peak_visible"),
        p50_s: summary["end_to_end"]["p50_s"].as_f64().unwrap(),
        p99_s: summary["end_to_end"]["p99_s"].as_f64().unwrap(),
    }
}

/// `spillway dev` started from the scenario, `spillway load --follow` run against it, and the
/// dev server stopped by its PID: the measured figures, and the load report.
async fn run_against_dev(scenario: &Scenario, json: &Path) -> (Figures, Value) {
    let dev_args: Vec<&str> = scenario.dev_args.iter().map(String::as_str).collect();
    let dev = DevServer::start_with_env(&dev_args, &scenario.dev_env).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["load", "--url", &dev.base_url, "--follow", "--json"])
        .arg(json)
        .args(&scenario.load_args)
        .output()
        .await
        .unwrap();
    let logs = dev.logs.clone();
    assert_eq!(dev.stop_with("-TERM").await, Some(0));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let load: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();

    let peak_visible = logs
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line["message"] == "queue depth")
        .filter_map(|line| line["visible"].as_f64())
        .reduce(f64::max)
        .expect("spillway dev logged the queue's depth");
    let follow = &load["follow"];
    let state = |status: &str| follow["final_states"][status].as_f64().unwrap_or(0.0);
    let latency = &follow["end_to_end_latency"];
    let measured = Figures {
        accepted: load["accepted"].as_f64().unwrap(),
        succeeded: state("succeeded"),
        expired: state("expired"),
        peak_visible,
        p50_s: latency["p50_ms"].as_f64().unwrap() / 1000.0,
        p99_s: latency["p99_ms"].as_f64().unwrap() / 1000.0,
    };
    (measured, load)
}

/// The simulated and the measured figures, as a table (docs/capacity-planning.md shows it).
struct Comparison(Figures, Figures);

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, cells: [&str; 4]| {
            writeln!(
                f,
                "{:<24}{:>12}{:>12}{:>14}",
                cells[0], cells[1], cells[2], cells[3]
            )
        };
        row(f, ["", "simulated", "measured", "tolerance"])?;
        for check in &CHECKS {
            row(
                f,
                [
                    check.name,
                    &check.show((check.of)(&self.0)),
                    &check.show((check.of)(&self.1)),
                    &check.show_tolerance(),
                ],
            )?;
        }
        Ok(())
    }
}
