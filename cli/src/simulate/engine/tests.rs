//! The engine against results that can be worked out by hand. Each test states its arithmetic
//! and its tolerance; docs/capacity-planning.md walks through the same examples.

use super::*;
use crate::simulate::test_support::{BUSY, erlang_c, scenario, within};

/// Every accepted job is accounted for once the run has drained.
fn assert_accounted(summary: &Summary) {
    assert_eq!(summary.unfinished, 0, "the run did not drain: {summary:#?}");
    assert_eq!(
        summary.accepted,
        summary.succeeded
            + summary.failed
            + summary.expired
            + summary.dead_lettered
            + summary.lost_to_retention
            + summary.stranded_in_dlq,
        "{summary:#?}"
    );
    assert_eq!(
        summary.arrivals,
        summary.accepted + summary.rejected_backlog + summary.throttled
    );
}

#[test]
fn the_same_seed_gives_the_same_csv_and_another_seed_another() {
    let busy = scenario(BUSY);
    let first = run(&busy, 7);
    let again = run(&busy, 7);
    let other = run(&busy, 8);
    assert_eq!(first.csv_rows(), again.csv_rows());
    assert_eq!(
        serde_json::to_string(&first).unwrap(),
        serde_json::to_string(&again).unwrap()
    );
    assert_ne!(first.csv_rows(), other.csv_rows());
    // The run exercised what it is meant to.
    let summary = &first.summary;
    assert!(summary.throttled > 0 && summary.retries > 0 && summary.failed > 0);
    assert!(summary.status_requests > 0);
    assert_accounted(summary);
}

#[test]
fn littles_law_gives_the_mean_concurrency() {
    // L = λ · W: 100 jobs/s, each holding an invocation (batch size 1) for exactly 0.5 s, so on
    // average 100 × 0.5 = 50 invocations run. Concurrency is ample (1,000 from the start), so
    // no job waits. Over 600 s (60,000 jobs) the time average's standard error is about
    // √(50 · 2 · 0.5 / 600) ≈ 0.3, well inside ±5 % (±2.5).
    let results = run(
        &scenario(include_str!("../../../../docs/scenarios/littles-law.toml")),
        1,
    );
    let summary = &results.summary;
    within(summary.mean_concurrency, 50.0, 2.5, "mean concurrency");
    within(summary.waited_share, 0.0, 0.0, "share of jobs that waited");
    assert_accounted(summary);
}

#[test]
fn a_spike_over_capacity_queues_its_excess_and_drains_at_the_spare_rate() {
    // 10 concurrent invocations (fixed: MaximumConcurrency = initial = 10), batch size 1, 0.5 s
    // a job: capacity C/s = 10 / 0.5 = 20 jobs/s. Baseline 10 jobs/s; a spike at λ = 50 jobs/s
    // for T = 60 s (from 120 s to 180 s) queues (λ − C/s) · T = (50 − 20) · 60 = 1,800 jobs
    // (±5 %), which drain at C/s − λ_base = 20 − 10 = 10 jobs/s: in 1,800 / 10 = 180 s after the
    // spike (±10 %). Arrivals are evenly spaced, so only the edges differ from the arithmetic.
    let results = run(
        &scenario(include_str!("../../../../docs/scenarios/spike.toml")),
        1,
    );
    let summary = &results.summary;
    #[allow(clippy::cast_precision_loss)]
    let peak = summary.peak_visible as f64;
    within(peak, 1800.0, 90.0, "jobs queued by the spike");
    within(
        summary.peak_visible_at_s,
        180.0,
        1.0,
        "when the queue peaked",
    );
    let drained = summary.drained_after_spike_s.unwrap();
    within(drained, 180.0, 18.0, "drain time after the spike");
    assert_accounted(summary);
}

#[test]
fn an_m_m_c_queue_waits_as_often_as_erlang_c_says() {
    // λ = 8 jobs/s (Poisson), exponential service with mean 1/μ = 1 s, c = 10 invocations of
    // one job each: a = λ/μ = 8, ρ = 0.8. Erlang C: a^c/c! · c/(c − a) = 1479.47,
    // Σ_{k<10} 8^k/k! = 2136.23, so P(wait) = 1479.47 / (2136.23 + 1479.47) = 0.409. The
    // simulated share of jobs first received more than 1 ms after acceptance must be within
    // ±0.03 of it, over 20,000 s (160,000 jobs; the seed is the file's).
    let expected = erlang_c(8.0, 10);
    within(expected, 0.409, 0.001, "Erlang C itself");
    let erlang = scenario(include_str!("../../../../docs/scenarios/erlang-c.toml"));
    let results = run(&erlang, erlang.seed);
    within(results.summary.waited_share, expected, 0.03, "P(wait)");
    // In M/M/c a job waits longer than t with probability P(wait) · e^−(cμ − λ)t, so the
    // 95th percentile of the wait is ln(0.409 / 0.05) / (10 − 8) = 1.051 s (±10 %).
    let p95 = results.summary.queue_wait.unwrap().p95_s;
    let expected_p95 = (expected / 0.05).ln() / 2.0;
    within(
        p95,
        expected_p95,
        0.1 * expected_p95,
        "p95 of the queue wait",
    );
    assert_accounted(&results.summary);
}

#[test]
fn jobs_older_than_their_deadline_expire_and_every_job_is_accounted_for() {
    // Capacity 10 jobs/s (10 invocations, 1 s each), 20 jobs/s arriving for 60 s: the queue
    // grows by 10 jobs/s, so waits pass the 10 s deadline after about 20 s. The consumer is busy
    // from the start until the last deadline (60 + 10 s), running 10 jobs/s: about 700 succeed
    // and the other 1,200 − 700 = 500 expire (±5 %), since an expired job takes no time.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 60
            [arrivals]
            rate = 20
            process = "even"
            [intake]
            throttle_rate = 0
            ttl_s = 10
            [consumer]
            batch_size = 1
            maximum_concurrency = 10
            initial_concurrency = 10
            [processing]
            time = { kind = "fixed", seconds = 1.0 }
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_eq!(summary.accepted, 1200);
    #[allow(clippy::cast_precision_loss)]
    let expired = summary.expired as f64;
    within(expired, 500.0, 25.0, "expired jobs");
    assert_accounted(summary);
}

#[test]
fn retries_dead_letter_a_share_of_p_to_the_n() {
    // Each attempt fails retryably with p = 0.5 and there are n = 3 attempts: a job is
    // dead-lettered when all three fail, p^n = 0.125 of them. Of 20,000 jobs the share's
    // standard error is √(0.125 · 0.875 / 20000) = 0.0023; the tolerance is ±0.01. Retries (a
    // failure on attempt 1 or 2) average p + p² = 0.75 per job (±0.02).
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 200
            [arrivals]
            rate = 100
            process = "even"
            [intake]
            throttle_rate = 0
            [queue]
            max_receive_count = 10
            [consumer]
            batch_size = 1
            maximum_concurrency = 1000
            initial_concurrency = 1000
            max_attempts = 3
            backoff_base_s = 1
            backoff_max_s = 2
            [processing]
            time = { kind = "fixed", seconds = 0.1 }
            retryable = 0.5
            "#,
        ),
        5,
    );
    let summary = &results.summary;
    #[allow(clippy::cast_precision_loss)]
    let accepted = summary.accepted as f64;
    #[allow(clippy::cast_precision_loss)]
    let dead = summary.dead_lettered as f64 / accepted;
    within(dead, 0.125, 0.01, "dead-lettered share");
    #[allow(clippy::cast_precision_loss)]
    let retries = summary.retries as f64 / accepted;
    within(retries, 0.75, 0.02, "retries per job");
    assert_eq!(summary.stranded_in_dlq, 0);
    assert_accounted(summary);
}

#[test]
fn the_throttle_admits_its_burst_then_its_rate() {
    // A bucket of 100 tokens refilled at 50/s, offered 100 requests/s evenly for 60 s (6,000):
    // it admits the 100 saved plus 50 × 60 = 3,000 refilled, 3,100 (±1 %), and throttles the
    // other 2,900.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 60
            [arrivals]
            rate = 100
            process = "even"
            [intake]
            throttle_rate = 50
            throttle_burst = 100
            [consumer]
            maximum_concurrency = 100
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_eq!(summary.arrivals, 6000);
    #[allow(clippy::cast_precision_loss)]
    let accepted = summary.accepted as f64;
    within(accepted, 3100.0, 31.0, "admitted requests");
    assert_accounted(summary);
}

#[test]
fn the_backlog_limit_refuses_new_jobs_while_the_queue_is_over_it() {
    // Capacity 10 jobs/s against 30 jobs/s for 120 s: without a limit the queue would reach
    // (30 − 10) · 120 = 2,400. With BacklogLimit 500 it stops just above 500, and about
    // 30 − 10 = 20 jobs/s are refused once it is full.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 120
            [arrivals]
            rate = 30
            process = "even"
            [intake]
            throttle_rate = 0
            backlog_limit = 500
            [consumer]
            batch_size = 1
            maximum_concurrency = 10
            initial_concurrency = 10
            [processing]
            time = { kind = "fixed", seconds = 1.0 }
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_eq!(summary.peak_visible, 501);
    // Full after 500 / 20 = 25 s; refused from then on at about 20 of every 30 arrivals/s:
    // 20 · (120 − 25) = 1,900 (±5 %).
    #[allow(clippy::cast_precision_loss)]
    let refused = summary.rejected_backlog as f64;
    within(refused, 1900.0, 95.0, "refused jobs");
    assert_accounted(summary);
}

#[test]
fn long_polling_clients_ask_once_per_wait_and_hold_the_status_function() {
    // The same 2.5 s jobs, polled with `?wait=20`: the first request is held until the job
    // ends, so one request per job, and the status function is held 2.5 s for each: 1,000 jobs
    // hold it 2,500 s. With `?wait=1`, three requests per job, as with a fixed poll every second.
    let text = |poll: &str| {
        format!(
            r#"
            [run]
            duration_s = 50
            [arrivals]
            rate = 20
            process = "even"
            [intake]
            throttle_rate = 0
            [consumer]
            batch_size = 1
            maximum_concurrency = 100
            initial_concurrency = 100
            [processing]
            time = {{ kind = "fixed", seconds = 2.5 }}
            [clients]
            poll = {poll}
            [cost]
            status_ms = 0
            intake_ms = 0
            "#
        )
    };
    let long = run(&scenario(&text(r#"{ kind = "long", wait_s = 20 }"#)), 1);
    let short = run(&scenario(&text(r#"{ kind = "long", wait_s = 1 }"#)), 1);
    let none = run(&scenario(&text(r#"{ kind = "none" }"#)), 1);
    assert_eq!(long.summary.accepted, 1000);
    assert_eq!(long.summary.status_requests, 1000);
    assert_eq!(short.summary.status_requests, 3000);
    // The held time is billed: 2,500 s × 0.125 GB × the GB-second price, beside the requests'
    // own cost, over what the same run costs without polling.
    let lambda = |r: &Results| r.summary.cost.lambda_usd;
    let held = 2500.0 * 0.125 * crate::simulate::cost::ARM64_GB_S + 1000.0 * 0.20 / 1e6;
    within(
        lambda(&long) - lambda(&none),
        held,
        1e-9,
        "long polls' Lambda cost",
    );
}

#[test]
fn a_rate_curve_from_csv_sets_the_arrivals_second_by_second() {
    // 10 jobs/s for a minute, 50 for the next, none for the last: 600 + 3,000 jobs, evenly
    // spaced, each second holding its rate. A curve has no spike to drain after.
    let csv = "t_s,rate\n0,10\n60,50\n120,0\n";
    let curve = crate::simulate::scenario::parse(
        r#"
        [run]
        duration_s = 180
        [arrivals]
        curve = "rates.csv"
        process = "even"
        [intake]
        throttle_rate = 0
        [consumer]
        maximum_concurrency = 100
        "#,
        |name| {
            assert_eq!(name, "rates.csv");
            Ok(csv.to_owned())
        },
    )
    .unwrap();
    let results = run(&curve, 1);
    assert_eq!(results.summary.arrivals, 3600);
    // Even arrivals come at the end of their gap (the 10th at exactly 1 s opens the next row),
    // so the rows where the rate changes share a job with their neighbours.
    for (second, row) in results.series[..180].iter().enumerate() {
        let rate = match second {
            1..=59 => 10,
            61..=119 => 50,
            121.. => 0,
            _ => continue,
        };
        assert_eq!(row.arrivals, rate, "second {second}");
    }
    assert_eq!(results.summary.last_spike_end_s, None);
}

#[test]
fn clients_polling_every_second_poll_until_they_see_the_end() {
    // Each job takes 2.5 s and starts at once; a client polling every 1 s from acceptance sees
    // it finished at its third poll (1 s, 2 s: pending; 3 s: succeeded): 3 requests per job,
    // exactly, and 3 × 20 = 60 requests/s while the load is steady.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 100
            [arrivals]
            rate = 20
            process = "even"
            [intake]
            throttle_rate = 0
            [consumer]
            batch_size = 1
            maximum_concurrency = 100
            initial_concurrency = 100
            [processing]
            time = { kind = "fixed", seconds = 2.5 }
            [clients]
            poll = { kind = "fixed", interval_s = 1 }
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_eq!(summary.status_requests, 3 * summary.accepted);
    // The rows of the steady part each hold 60 requests, up to rounding of the spread.
    for row in &results.series[10..90] {
        within(row.status_requests, 60.0, 1e-6, "requests per row");
    }
    let total: f64 = results.series.iter().map(|row| row.status_requests).sum();
    #[allow(clippy::cast_precision_loss)]
    let expected = summary.status_requests as f64;
    within(total, expected, 1e-6, "requests in all rows");
    // 60 requests/s is over the status route's default throttle of 50/s in every steady row
    // (seconds 3 to 99, with 1 s to ramp up at either end: at least 95 rows).
    assert_eq!(summary.status_throttle_per_s, 50.0);
    assert!(
        (95..=101).contains(&summary.status_rows_over_throttle),
        "{}",
        summary.status_rows_over_throttle
    );
}

#[test]
fn an_invocation_stops_a_record_at_its_timeout_and_the_job_is_retried() {
    // Every attempt would take 20 s; the function's timeout is 10 s, so the consumer stops each
    // at 10 − 1 = 9 s and records a retryable failure. With 2 attempts every job is
    // dead-lettered after two cut attempts.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 10
            [arrivals]
            rate = 1
            process = "even"
            [intake]
            throttle_rate = 0
            [queue]
            max_receive_count = 4
            [consumer]
            batch_size = 1
            initial_concurrency = 10
            timeout_s = 10
            max_attempts = 2
            backoff_base_s = 1
            backoff_max_s = 1
            [processing]
            time = { kind = "fixed", seconds = 20 }
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_eq!(summary.accepted, 10);
    assert_eq!(summary.dead_lettered, 10);
    assert_eq!(summary.timed_out, 20);
    // Two attempts of 9 s and a backoff of at most 1 s between them.
    let end_to_end = summary.end_to_end.unwrap();
    assert!(
        end_to_end.max_s >= 18.0 && end_to_end.max_s <= 19.0,
        "{end_to_end:?}"
    );
    assert_accounted(summary);
}

/// A queue that never empties (1,000 jobs/s evenly, 10 s each, one per invocation) for 30 s,
/// with `consumer` (TOML lines) setting how the mapping scales.
fn scaling(consumer: &str) -> Scenario {
    scenario(&format!(
        r#"
        [run]
        duration_s = 30
        [arrivals]
        rate = 1000
        process = "even"
        [intake]
        throttle_rate = 0
        [consumer]
        batch_size = 1
        timeout_s = 30
        {consumer}
        [processing]
        time = {{ kind = "fixed", seconds = 10 }}
        "#
    ))
}

#[test]
fn the_mapping_scales_up_by_one_invocation_every_200_ms_while_messages_wait() {
    // 300 a minute is one every 60 / 300 = 0.2 s. From 5, reaching 100 takes 95 × 0.2 = 19 s
    // of a queue that never empties (1,000 jobs/s, 10 s each).
    let results = run(&scaling("maximum_concurrency = 100"), 1);
    let row_at = |second: usize| results.series[second].concurrency;
    // Second 0: 5, 6, 7, 8 and 9 for 0.2 s each, 7 on average.
    within(row_at(0), 7.0, 0.1, "concurrency in the first second");
    // Second 10: 55 (the 50th step comes at 10 s) to 59, 57 on average.
    within(row_at(10), 57.0, 0.1, "concurrency in second 10");
    within(row_at(25), 100.0, 0.0, "concurrency after scaling up");
    assert_eq!(results.summary.peak_concurrency, 100);
}

#[test]
fn provisioned_pollers_start_ready_and_scale_faster_up_to_their_maximum() {
    // Provisioned mode with 10 minimum pollers of 10 invocations: 100 ready at once, busy after
    // the first 100 jobs (100 ms). Then 1,000 a minute is one more every 60 ms while messages
    // wait: the ticks at 120, 180, … 960 ms make 115 by the end of second 0, and second 1's
    // 17 steps (1.02 … 1.98 s) average 115 + 17 × 0.98 − 0.06 × (0 + … + 16) = 123.5. 40
    // maximum pollers cap it at 400, reached at 0.12 + 299 × 0.06 = 18.06 s, below
    // MaximumConcurrency's 1,000.
    let results = run(
        &scaling(
            "maximum_concurrency = 1000\nmode = \"provisioned\"\nminimum_pollers = 10\n\
             maximum_pollers = 40",
        ),
        1,
    );
    within(results.series[1].concurrency, 123.5, 0.01, "second 1");
    within(
        results.series[25].concurrency,
        400.0,
        0.0,
        "after scaling up",
    );
    assert_eq!(results.summary.peak_concurrency, 400);
    assert_eq!(results.summary.maximum_concurrency, 400);
}

#[test]
fn a_run_without_arrivals_lasts_its_duration_and_stays_empty() {
    // Nothing arrives, so nothing is queued, run or polled; the run still lasts its 5 s: five
    // rows of one second.
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 5
            [arrivals]
            rate = 0
            [clients]
            poll = { kind = "fixed", interval_s = 1 }
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    within(summary.simulated_s, 5.0, 0.0, "simulated time");
    assert_eq!(results.series.len(), 5);
    assert_eq!(
        (
            summary.arrivals,
            summary.peak_concurrency,
            summary.status_requests
        ),
        (0, 0, 0)
    );
    assert_eq!(summary.queue_wait, None);
    assert_accounted(summary);
}

#[test]
fn each_row_holds_the_end_to_end_percentiles_of_the_jobs_that_ended_in_it() {
    // spike.toml: before the spike every job runs 0.5 s at once, so each row's p50 and p99 are
    // 0.5 s. The queue is served in order, so the last job of the spike (accepted at 180 s
    // behind 1,800 others served at 20 jobs/s) waits 90 s and ends 90.5 s after acceptance, at
    // 270.5 s: the highest p99 of any row, in the row that starts at 270 s (±1).
    let results = run(
        &scenario(include_str!("../../../../docs/scenarios/spike.toml")),
        1,
    );
    for row in &results.series[1..120] {
        assert_eq!((row.e2e_p50_s, row.e2e_p99_s), (0.5, 0.5), "{row:?}");
    }
    let worst = results
        .series
        .iter()
        .max_by(|a, b| a.e2e_p99_s.total_cmp(&b.e2e_p99_s))
        .unwrap();
    within(worst.e2e_p99_s, 90.5, 0.5, "the highest p99 of a row");
    within(worst.t_s, 270.0, 1.0, "the row of the highest p99");
    within(
        worst.e2e_p99_s,
        results.summary.end_to_end.unwrap().max_s,
        0.05,
        "the highest p99 of a row against the run's max",
    );
    // Rows where nothing ended hold 0: one job a second, 2.5 s each, ends at 3.5 s, 4.5 s, …
    let results = run(
        &scenario(
            r#"
            [run]
            duration_s = 10
            [arrivals]
            rate = 1
            process = "even"
            [intake]
            throttle_rate = 0
            [processing]
            time = { kind = "fixed", seconds = 2.5 }
            "#,
        ),
        1,
    );
    let p50s: Vec<f64> = results.series.iter().map(|row| row.e2e_p50_s).collect();
    assert_eq!(&p50s[..5], &[0.0, 0.0, 0.0, 2.5, 2.5], "{p50s:?}");
}
