//! `spillway simulate --html`: the report opened in headless Chromium, with no network, draws
//! every chart from the run's data. Without Chromium on `PATH` these tests fail under
//! `scripts/test` (which sets `SPILLWAY_TOOLS`) and are skipped, with a note, by a bare
//! `cargo test`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use spillway_tests::chromium::{Element, dump_dom, elements, path_points};

/// The charts, in the order the report draws them, and the series each draws.
const CHARTS: [(&str, &[&str]); 6] = [
    (
        "arrivals",
        &["arrivals", "accepted", "rejected", "throttled"],
    ),
    ("queue", &["visible", "in_flight", "delayed"]),
    ("age", &["oldest_age_s"]),
    ("concurrency", &["concurrency"]),
    ("endings", &["expired", "dead_lettered"]),
    ("latency", &["e2e_p50_s", "e2e_p99_s"]),
];

/// The plot area inside each chart's 960 × 300 view box.
const PLOT_X: (f64, f64) = (76.0, 936.0);
const PLOT_Y: (f64, f64) = (18.0, 252.0);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spillway-html-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `spillway simulate SCENARIO --html PAGE` and returns the page as written.
fn simulate_html(scenario: &str, page: &Path) -> String {
    simulate_html_with(scenario, page, &[])
}

/// [`simulate_html`] with more arguments.
fn simulate_html_with(scenario: &str, page: &Path, more: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .arg("simulate")
        .arg(scenario)
        .args(more)
        .arg("--html")
        .arg(page)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read_to_string(page).unwrap()
}

/// The page needs nothing from elsewhere: no file, script, style sheet or font to fetch.
fn assert_self_contained(page: &str) {
    for reference in [" src=", " href=", "<link", "@import", "url("] {
        assert!(!page.contains(reference), "the page refers to {reference}");
    }
    assert!(page.contains("<script type=\"application/json\" id=\"spillway-data\">"));
}

/// The body says the script drew every chart, and no error.
fn assert_rendered(dom: &str) {
    let body = elements(dom, "body");
    let body = body.first().expect("a body");
    assert_eq!(body.attr("data-error"), None, "{}", body.open);
    assert_eq!(body.attr("data-rendered"), Some("6"), "{}", body.open);
}

/// The figure of chart `id`.
fn figure<'a>(dom: &'a str, id: &str) -> Element<'a> {
    elements(dom, "figure")
        .into_iter()
        .find(|figure| figure.attr("data-chart") == Some(id))
        .unwrap_or_else(|| panic!("no chart {id}"))
}

/// One series of one run, as a chart draws it.
struct Line {
    run: String,
    series: String,
    points: Vec<(f64, f64)>,
}

/// The lines of a chart, each point checked to be inside the plot area.
fn lines(chart: &Element<'_>) -> Vec<Line> {
    let svg = chart.elements("svg");
    assert_eq!(svg.len(), 1, "{}", chart.open);
    svg[0]
        .elements("path")
        .into_iter()
        .filter(|path| path.attr("class") == Some("series"))
        .map(|path| {
            let d = path.attr("d").unwrap();
            let points = path_points(d).unwrap_or_else(|| panic!("not a path of lines: {d:.200}"));
            for &(x, y) in &points {
                assert!(
                    (PLOT_X.0..=PLOT_X.1).contains(&x) && (PLOT_Y.0..=PLOT_Y.1).contains(&y),
                    "({x}, {y}) is outside the plot: {}",
                    path.open
                );
            }
            Line {
                run: path.attr("data-run").unwrap().to_owned(),
                series: path.attr("data-series").unwrap().to_owned(),
                points,
            }
        })
        .collect()
}

/// The labels of a chart's threshold lines, each checked to be horizontal across the plot.
fn marks(chart: &Element<'_>) -> Vec<String> {
    let svg = chart.elements("svg");
    let lines: Vec<Element<'_>> = svg[0]
        .elements("line")
        .into_iter()
        .filter(|line| line.attr("class") == Some("mark"))
        .collect();
    for line in &lines {
        assert_eq!(line.attr("y1"), line.attr("y2"), "{}", line.open);
        assert_eq!(line.attr("x1"), Some("76"), "{}", line.open);
        assert_eq!(line.attr("x2"), Some("936"), "{}", line.open);
    }
    let labels: Vec<String> = svg[0]
        .elements("text")
        .into_iter()
        .filter(|text| text.attr("class") == Some("mark-label"))
        .map(|text| text.text())
        .collect();
    assert_eq!(labels.len(), lines.len());
    labels
}

/// How far a series spans the plot's height, from 0 (flat) to 1 (bottom to top).
fn height_spanned(points: &[(f64, f64)]) -> f64 {
    let low = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let high = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    (high - low) / (PLOT_Y.1 - PLOT_Y.0)
}

#[test]
fn the_spike_report_draws_every_chart_from_every_row_in_chromium() {
    let dir = temp_dir("spike");
    let path = dir.join("spike.html");
    let page = simulate_html("docs/scenarios/spike.toml", &path);
    assert_self_contained(&page);
    let Some(dom) = dump_dom(&path) else {
        return;
    };
    assert_rendered(&dom);
    let title = &elements(&dom, "h1")[0].text();
    assert_eq!(
        title,
        "spillway simulate docs/scenarios/spike.toml (seed 1)"
    );

    for (id, series) in CHARTS {
        let chart = figure(&dom, id);
        let drawn = lines(&chart);
        let names: Vec<&str> = drawn.iter().map(|line| line.series.as_str()).collect();
        assert_eq!(names, series, "chart {id}");
        for line in &drawn {
            let (name, points) = (&line.series, &line.points);
            assert_eq!(line.run, "async");
            // 601 rows, each drawn; the latency chart leaves out the rows where no job ended.
            if id == "latency" {
                assert!(points.len() > 550, "{id} {name}: {} points", points.len());
            } else {
                assert_eq!(points.len(), 601, "{id} {name}");
            }
        }
        let legend: Vec<String> = chart.elements("li").iter().map(Element::text).collect();
        assert_eq!(legend.len(), series.len(), "{legend:?}");
        assert!(
            legend.iter().all(|item| item.starts_with("async ")),
            "{legend:?}"
        );
    }

    // The data, not flat lines: the queue peaks at the top of its chart (1,800 messages).
    let queue = lines(&figure(&dom, "queue"));
    assert!(height_spanned(&queue[0].points) > 0.8);
    let latency = lines(&figure(&dom, "latency"));
    assert!(height_spanned(&latency[1].points) > 0.8);
    // spike.toml has no BacklogLimit, so no lines at its shares; the age alarm is the default.
    assert_eq!(marks(&figure(&dom, "queue")), Vec::<String>::new());
    assert_eq!(
        marks(&figure(&dom, "age")),
        ["QueueAgeAlarmSeconds (300 s)"]
    );
    assert_eq!(
        marks(&figure(&dom, "concurrency")),
        ["MaximumConcurrency (10)"]
    );

    let table = &elements(&dom, "table")[0];
    assert!(table.inner.contains("<th scope=\"col\">async</th>"));
    assert!(
        table
            .inner
            .contains("<th scope=\"row\">peak visible messages</th><td>1800 at 180.0 s</td>"),
        "{}",
        table.inner
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn compare_lays_both_designs_over_every_chart_and_tabulates_both() {
    let dir = temp_dir("compare");
    let path = dir.join("cascade.html");
    simulate_html_with("docs/scenarios/cascade.toml", &path, &["--compare"]);
    let Some(dom) = dump_dom(&path) else {
        return;
    };
    assert_rendered(&dom);
    for (id, series) in CHARTS {
        let drawn = lines(&figure(&dom, id));
        let runs: HashSet<&str> = drawn.iter().map(|line| line.run.as_str()).collect();
        assert_eq!(runs, HashSet::from(["async", "sync"]), "chart {id}");
        assert_eq!(drawn.len(), 2 * series.len(), "chart {id}");
    }
    // Both runs have ten workers: one line, labelled for both.
    assert_eq!(
        marks(&figure(&dom, "concurrency")),
        ["MaximumConcurrency (10) · 10 synchronous workers"]
    );
    // The synchronous queue holds 600 waiting requests at 60 s, as the asynchronous queue
    // holds 600 messages: the two lines reach the same height.
    let queue = lines(&figure(&dom, "queue"));
    let visible: Vec<&Line> = queue.iter().filter(|l| l.series == "visible").collect();
    assert_eq!(visible.len(), 2);
    let heights: Vec<f64> = visible.iter().map(|l| height_spanned(&l.points)).collect();
    assert!(
        heights[0] > 0.5 && (heights[0] - heights[1]).abs() < 0.01,
        "{heights:?}"
    );

    let table = &elements(&dom, "table")[0];
    for cell in [
        "<th scope=\"col\">async</th><th scope=\"col\">sync</th>",
        "<th scope=\"row\">succeeded</th><td>1200 (100.00 %)</td><td>80 (6.67 % of submissions)</td>",
        "<th scope=\"row\">work done for nobody</th><td></td><td>1120 requests",
    ] {
        assert!(table.inner.contains(cell), "{cell}\n{}", table.inner);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_backlog_limit_draws_its_thresholds_and_a_long_series_its_envelope() {
    // spike.toml with a BacklogLimit of 1,000, sampled every 0.1 s: 6,004 rows, more than the
    // report draws one by one.
    let dir = temp_dir("limit");
    let scenario = dir.join("limited.toml");
    let spike = std::fs::read_to_string(repo().join("docs/scenarios/spike.toml")).unwrap();
    let limited = spike
        .replace("[run]\n", "[run]\nsample_s = 0.1\nseed = 4\n")
        .replace("[intake]\n", "[intake]\nbacklog_limit = 1000\n");
    assert_ne!(limited, spike);
    std::fs::write(&scenario, limited).unwrap();
    let path = dir.join("limited.html");
    simulate_html(scenario.to_str().unwrap(), &path);
    let Some(dom) = dump_dom(&path) else {
        return;
    };
    assert_rendered(&dom);
    let title = elements(&dom, "h1")[0].text();
    assert!(title.ends_with("limited.toml (seed 4)"), "{title}");

    let queue = figure(&dom, "queue");
    assert_eq!(
        marks(&queue),
        [
            "50 % of BacklogLimit (500)",
            "75 % of BacklogLimit (750)",
            "90 % of BacklogLimit (900)"
        ]
    );
    // The 6,004 rows are drawn as at most four points a pixel column (861 of them), and the
    // report says so.
    for (id, _) in CHARTS {
        let chart = figure(&dom, id);
        for line in lines(&chart) {
            assert!(
                (800..=4 * 861).contains(&line.points.len()),
                "{id} {}: {} points",
                line.series,
                line.points.len()
            );
        }
        let note = chart.elements("p")[0].text();
        assert!(
            note.starts_with("6,004 rows of 0.1 s per run.") && note.contains("min/max envelope"),
            "{note}"
        );
    }
    // The envelope keeps the queue's peak, 1,001 messages, on an axis that ends at 1,250 (the
    // first tick above 1.05 × the peak).
    let visible = &lines(&queue)[0].points;
    assert!(
        height_spanned(visible) > 0.79,
        "{}",
        height_spanned(visible)
    );
    std::fs::remove_dir_all(dir).unwrap();
}
