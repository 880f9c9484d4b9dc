//! `spillway simulate` as a user runs it: a documented scenario in, the summary on stdout, the
//! wall time on stderr, and the time series as CSV and JSON files that agree with each other; and
//! `--from-template`, which takes the deployment's settings from infra/template.yaml.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("simulate")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .unwrap()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spillway-simulate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_spike_scenario_prints_its_summary_and_writes_matching_csv_and_json() {
    let dir = temp_dir("spike");
    let csv = dir.join("spike.csv");
    let json = dir.join("spike.json");
    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("s of wall time"), "{stderr}");
    // docs/capacity-planning.md quotes these lines.
    assert!(
        stdout.contains("peak visible messages              1800  at 180.0 s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("drained after the spike           179.6 s"),
        "{stdout}"
    );

    let csv = std::fs::read_to_string(&csv).unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let series = json["async"]["series"].as_array().unwrap();
    assert!(json.get("sync").is_none());
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("mode,t_s,arrivals,accepted,rejected,throttled,visible"));
    assert!(lines[0].ends_with(",e2e_p50_s,e2e_p99_s"), "{}", lines[0]);
    // 600.4 s simulated, one row a second: 600 whole rows and a last partial one.
    assert_eq!(series.len(), 601);
    assert_eq!(lines.len(), series.len() + 1);
    let accepted: u64 = series
        .iter()
        .map(|row| row["accepted"].as_u64().unwrap())
        .sum();
    assert_eq!(json["async"]["summary"]["accepted"], accepted);
    assert_eq!(accepted, 8399);
    // The row where the spike ends holds the peak.
    assert_eq!(series[179]["visible"], 1800);
    // Before the spike every job runs its 0.5 s at once.
    assert_eq!(series[60]["e2e_p99_s"], 0.5);
    assert!(lines[61].ends_with(",0.500,0.500"), "{}", lines[61]);
    assert!(
        lines[180].starts_with("async,179.000,50,50,0,0,1800,"),
        "{}",
        lines[180]
    );

    // --seed overrides the scenario's; the spike's evenly spaced arrivals draw nothing, so only
    // the seed in the summary changes.
    let again = simulate(&["docs/scenarios/spike.toml", "--seed", "9"]);
    let again = String::from_utf8(again.stdout).unwrap();
    assert!(again.contains("(seed 9)"), "{again}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compare_runs_both_designs_on_the_same_arrivals_into_one_csv_and_json() {
    let dir = temp_dir("compare");
    let csv = dir.join("cascade.csv");
    let json = dir.join("cascade.json");
    let output = simulate(&[
        "docs/scenarios/cascade.toml",
        "--compare",
        "--csv",
        csv.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // docs/capacity-planning.md quotes the table.
    for line in [
        "got a result (ended, answered)              1200              80",
        "accepted, then no result                       0            1120",
        "work done for nobody                           0            1120",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    assert!(
        stdout.contains("synchronous: 10 workers, 1000 waiting places"),
        "{stdout}"
    );

    let csv = std::fs::read_to_string(&csv).unwrap();
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = |mode: &str| {
        csv.lines()
            .filter(|l| l.starts_with(&format!("{mode},")))
            .count()
    };
    let (async_rows, sync_rows) = (rows("async"), rows("sync"));
    assert_eq!(csv.lines().count(), 1 + async_rows + sync_rows);
    assert_eq!(
        async_rows,
        json["async"]["series"].as_array().unwrap().len()
    );
    assert_eq!(sync_rows, json["sync"]["series"].as_array().unwrap().len());
    assert_eq!(json["sync"]["summary"]["succeeded"], 80);
    assert_eq!(json["async"]["summary"]["succeeded"], 1200);

    // --mode sync alone prints only the synchronous summary.
    let alone = simulate(&["docs/scenarios/cascade.toml", "--mode", "sync"]);
    let alone = String::from_utf8(alone.stdout).unwrap();
    assert!(
        alone.contains("synchronous") && !alone.contains("accepted (202)"),
        "{alone}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn find_searches_for_the_smallest_concurrency_that_meets_the_target() {
    // spike.toml: 50 jobs/s of 0.5 s during the spike need 50 × 0.5 = 25 invocations of one
    // job; with 24 the queue grows by 50 − 48 = 2 jobs/s for 60 s, and the last of those 120
    // waits 120 / 48 = 2.5 s (p99 end to end over 1 s). So 25 is the answer, and 24 misses.
    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--find",
        "MaximumConcurrency",
        "--target",
        "p99_end_to_end < 1s",
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("smallest consumer.maximum_concurrency that meets every target: 25"),
        "{stdout}"
    );
    assert!(
        stdout.contains("        24  misses  p99_end_to_end 2.920 s no"),
        "{stdout}"
    );
    // The answer's run follows: its fixed capacity moved with the maximum.
    assert!(
        stdout.contains("consumer concurrency       peak 25 of 25"),
        "{stdout}"
    );

    // A target no value meets fails, after showing the largest value's run.
    let never = simulate(&[
        "docs/scenarios/spike.toml",
        "--find",
        "consumer.maximum_concurrency",
        "--target",
        "p50_end_to_end < 0.4s",
    ]);
    assert_eq!(never.status.code(), Some(1));
    let stdout = String::from_utf8(never.stdout).unwrap();
    assert!(
        stdout.contains("      1000  misses  p50_end_to_end 0.500 s no"),
        "{stdout}"
    );
    let stderr = String::from_utf8(never.stderr).unwrap();
    assert!(
        stderr.contains("no value of consumer.maximum_concurrency up to 1000 meets every target"),
        "{stderr}"
    );

    // An unknown figure is named with the ones there are.
    let unknown = simulate(&[
        "docs/scenarios/spike.toml",
        "--find",
        "sync.pool_size",
        "--mode",
        "sync",
        "--target",
        "expired < 1%",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8(unknown.stderr).unwrap();
    assert!(
        stderr.contains("no figure `expired`") && stderr.contains("timed_out"),
        "{stderr}"
    );
}

#[test]
fn a_bad_scenario_fails_naming_the_file_and_the_field() {
    let dir = temp_dir("bad");
    let path = dir.join("bad.toml");
    std::fs::write(&path, "[consumer]\nmaximum_concurrency = 1\n").unwrap();
    let output = simulate(&[path.to_str().unwrap()]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("bad.toml: consumer.maximum_concurrency: must be from 2 to 1000, got 1"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The number on the summary line that starts with `label`.
fn figure(stdout: &str, label: &str) -> f64 {
    let line = stdout
        .lines()
        .find(|line| line.starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} line in {stdout}"));
    line[label.len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn from_template_simulates_what_the_template_deploys_with_its_params() {
    // With ConsumerBatchSize=1 the template deploys the capacity spike.toml describes (10
    // invocations of one job each): the documented figures, although the template also throttles
    // POST /jobs where the scenario does not (50 jobs/s fit under its 100/s).
    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--from-template",
        "infra/template.yaml",
        "--param",
        "ConsumerBatchSize=1",
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("from infra/template.yaml:\n"), "{stderr}");
    assert!(
        stderr.contains(
            "\n  consumer.batch_size = 1  (ConsumerFunction.Properties.Events.Work.Properties.\
             BatchSize = !Ref ConsumerBatchSize; ConsumerBatchSize = 1 from --param)\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "\n  intake.throttle_rate = 100  (HttpApi.Properties.DefaultRouteSettings.\
             ThrottlingRateLimit = !Ref ApiThrottlingRateLimit; ApiThrottlingRateLimit = 100 by \
             default; overrides the scenario's 0)\n"
        ),
        "{stderr}"
    );
    assert!(
        stdout.contains("peak visible messages              1800  at 180.0 s"),
        "{stdout}"
    );

    // Five jobs an invocation, all five at once as the template runs them: five times the
    // capacity, and the spike no longer queues.
    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--from-template",
        "infra/template.yaml",
        "--param",
        "ConsumerBatchSize=5",
    ]);
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "\n  consumer.batch_size = 5  (ConsumerFunction.Properties.Events.Work.Properties.\
             BatchSize = !Ref ConsumerBatchSize; ConsumerBatchSize = 5 from --param; overrides \
             the scenario's 1)\n"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\n  consumer.record_concurrency = 5  ("),
        "{stderr}"
    );
    assert!(figure(&stdout, "peak visible messages") <= 10.0, "{stdout}");
    assert_eq!(figure(&stdout, "drained after the spike"), 0.0, "{stdout}");
}

#[test]
fn a_param_the_template_refuses_fails_naming_the_parameter() {
    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--from-template",
        "infra/template.yaml",
        "--param",
        "ConsumerBatchSize=50",
    ]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "infra/template.yaml: parameter ConsumerBatchSize: 50 is above its MaxValue, 10"
        ),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());

    let output = simulate(&[
        "docs/scenarios/spike.toml",
        "--from-template",
        "infra/template.yaml",
        "--param",
        "ConsumerBatchSise=5",
    ]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--param ConsumerBatchSise: the template has no such parameter"),
        "{stderr}"
    );
    assert!(stderr.contains(" ConsumerBatchSize,"), "{stderr}");
}

#[test]
fn the_flash_sale_with_the_parameters_it_assumes_is_the_same_run() {
    let scenario = simulate(&["docs/scenarios/flash-sale.toml"]);
    let deployed = simulate(&[
        "docs/scenarios/flash-sale.toml",
        "--from-template",
        "infra/template.yaml",
        "--param",
        "ApiThrottlingRateLimit=1000",
        "--param",
        "ApiThrottlingBurstLimit=2000",
        "--param",
        "BacklogLimit=100000",
        "--param",
        "ConsumerMaxConcurrency=50",
        "--param",
        "DefaultTtlSeconds=900",
    ]);
    let stderr = String::from_utf8(deployed.stderr).unwrap();
    assert!(deployed.status.success(), "{stderr}");
    // Every deployment field of the scenario is one the template deploys with these parameters.
    assert_eq!(stderr.matches("\n  ").count(), 17, "{stderr}");
    assert!(!stderr.contains("overrides"), "{stderr}");
    let summary = String::from_utf8(deployed.stdout).unwrap();
    assert!(
        summary.contains("accepted (202)                 405602"),
        "{summary}"
    );
    assert_eq!(summary, String::from_utf8(scenario.stdout).unwrap());
}
