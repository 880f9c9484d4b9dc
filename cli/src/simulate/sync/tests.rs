//! The synchronous design against results that can be worked out by hand; each test states its
//! arithmetic and its tolerance, and docs/capacity-planning.md walks through the same examples.

use super::*;
use crate::simulate::engine;
use crate::simulate::test_support::{erlang_b, scenario, within};

/// Every submission is accounted for once the run has drained.
fn assert_accounted(summary: &SyncSummary) {
    assert_eq!(summary.unfinished, 0, "{summary:#?}");
    assert_eq!(
        summary.arrivals,
        summary.succeeded
            + summary.failed
            + summary.timed_out
            + summary.rejected
            + summary.throttled,
        "{summary:#?}"
    );
}

#[test]
fn under_capacity_every_request_is_answered_in_its_processing_time() {
    // λ = 10/s (Poisson), 1 s each, 40 workers: L = λ · W = 10 busy on average (Little's law,
    // ±5 %), and the chance of 40 or more busy at once is negligible, so nothing waits.
    let results = run(
        &scenario(
            r#"
            [arrivals]
            rate = 10
            [intake]
            throttle_rate = 0
            [processing]
            time = { kind = "fixed", seconds = 1 }
            [sync]
            pool_size = 40
            "#,
        ),
        1,
    );
    let summary = &results.summary;
    assert_accounted(summary);
    assert_eq!(summary.succeeded, summary.arrivals);
    assert_eq!((summary.request_timeouts, summary.wasted_requests), (0, 0));
    let latency = summary.end_to_end.unwrap();
    assert_eq!((latency.p50_s, latency.max_s), (1.0, 1.0));
    within(summary.mean_busy, 10.0, 0.5, "mean workers busy");
}

#[test]
fn with_no_waiting_room_a_full_pool_refuses_as_often_as_erlang_b_says() {
    // λ = 8/s (Poisson), exponential service with mean 1 s, c = 10 workers and no accept queue:
    // the M/M/c/c loss system. Erlang B: (8^10/10!) / Σ_{k≤10} 8^k/k! = 295.89 / 2432.12 =
    // 0.1217 of the requests find every worker busy and are refused; ±0.01 over 20,000 s
    // (160,000 requests). The refused share does not depend on the service time's shape.
    let expected = erlang_b(8.0, 10);
    within(expected, 0.1217, 0.0001, "Erlang B itself");
    for time in [
        r#"{ kind = "exponential", mean_s = 1 }"#,
        r#"{ kind = "uniform", min_s = 0.5, max_s = 1.5 }"#,
    ] {
        let results = run(
            &scenario(&format!(
                r#"
                [run]
                duration_s = 20000
                [arrivals]
                rate = 8
                [intake]
                throttle_rate = 0
                [processing]
                time = {time}
                [sync]
                pool_size = 10
                queue_size = 0
                "#
            )),
            3,
        );
        let summary = &results.summary;
        assert_accounted(summary);
        #[allow(clippy::cast_precision_loss)]
        let refused = summary.rejected as f64 / summary.arrivals as f64;
        within(refused, expected, 0.01, &format!("refused share, {time}"));
    }
}

#[test]
fn past_the_client_timeout_the_pool_works_for_clients_that_have_gone() {
    // docs/scenarios/cascade.toml: capacity 10/s (10 workers, 1 s each), 20/s arriving evenly
    // (one every 50 ms from 50 ms) for 60 s, an accept queue of 1,000, clients waiting 5 s
    // without retrying. The first ten requests take a worker each at once (1 s). From then on
    // the workers free up ten times a second, and the ten requests served in second n had
    // waited n/2 s: their answers take n/2 + 1 s, within 5 s for n ≤ 7 only. So exactly
    // 10 + 7 × 10 = 80 clients get an answer. After that, every request a worker finishes is
    // for a client that has gone: the workers stay busy until the queue drains, and the
    // answers stop.
    let cascade = scenario(include_str!("../../../../docs/scenarios/cascade.toml"));
    let results = run(&cascade, 1);
    let summary = &results.summary;
    assert_accounted(summary);
    assert_eq!(summary.succeeded, 80);
    assert_eq!(summary.end_to_end.unwrap().max_s, 4.5);
    assert_eq!(summary.rejected, 0, "the queue never fills: {summary:#?}");
    assert_eq!(summary.timed_out, summary.arrivals - summary.succeeded);
    // Every request is served in the end, the late ones for nobody.
    assert_eq!(summary.wasted_requests, summary.timed_out);
    assert!(summary.wasted_share > 0.9, "{summary:#?}");
    assert!(summary.utilisation > 0.99, "{summary:#?}");
    // From second 10 on, no answer arrives while all ten workers are busy.
    for row in &results.series[10..60] {
        assert_eq!(row.completed, 0, "{row:?}");
        within(row.concurrency, 10.0, 1e-9, "workers busy");
    }

    // The same arrivals through Spillway, with the same capacity: every job gets its result.
    let asynchronous = engine::run(&cascade, 1);
    assert_eq!(asynchronous.summary.arrivals, summary.arrivals);
    assert_eq!(asynchronous.summary.succeeded, summary.arrivals);
}

#[test]
fn client_retries_add_load_and_waste_more_of_it() {
    // The cascade with two retries, 1 s then 2 s after a timeout: the timed-out clients send
    // their requests again, so the pool is offered more than twice the submissions, the accept
    // queue (which never filled without retries) fills and refuses requests, more of the
    // workers' time goes to clients that have gone; and the retries come too late for any more
    // clients to get an answer.
    let cascade = include_str!("../../../../docs/scenarios/cascade.toml");
    let with_retries = run(
        &scenario(&cascade.replace("client_retries = 0", "client_retries = 2")),
        1,
    );
    let without = run(&scenario(cascade), 1);
    let (with, without) = (&with_retries.summary, &without.summary);
    assert_accounted(with);
    assert_eq!(with.requests, with.arrivals + with.client_retries);
    assert!(with.requests > 2 * with.arrivals, "{with:#?}");
    assert_eq!(without.rejected, 0);
    assert!(with.rejected > 0 && with.peak_waiting == 1000, "{with:#?}");
    assert!(with.wasted_requests > without.wasted_requests, "{with:#?}");
    assert_eq!(with.succeeded, without.succeeded);
    let retried: u64 = with_retries.series.iter().map(|row| row.retries).sum();
    assert_eq!(retried, with.client_retries);
}

#[test]
fn both_designs_see_the_same_arrivals_and_each_run_repeats_for_its_seed() {
    // Poisson arrivals with a spike, log-normal times, failures: the arrivals column is the same
    // in both designs, row by row, and each design's series is the same for the same seed.
    let busy = scenario(
        r#"
        [run]
        duration_s = 120
        [arrivals]
        rate = 40
        [[arrivals.spikes]]
        start_s = 30
        length_s = 20
        rate = 150
        [processing]
        time = { kind = "lognormal", p50_s = 0.3, p99_s = 3.0 }
        retryable = 0.1
        permanent = 0.01
        [sync]
        pool_size = 50
        queue_size = 20
        client_timeout_s = 2
        "#,
    );
    let synchronous = run(&busy, 5);
    let asynchronous = engine::run(&busy, 5);
    let arrivals = |series: &[Row]| -> Vec<u64> { series.iter().map(|r| r.arrivals).collect() };
    let arrived = arrivals(&synchronous.series);
    assert_eq!(arrived[..120], arrivals(&asynchronous.series)[..120]);
    assert_eq!(synchronous.csv_rows(), run(&busy, 5).csv_rows());
    assert_ne!(synchronous.csv_rows(), run(&busy, 6).csv_rows());
    let summary = &synchronous.summary;
    assert_accounted(summary);
    assert!(summary.rejected > 0 && summary.failed > 0 && summary.client_retries > 0);
}
