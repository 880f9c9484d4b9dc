//! The page as written, and two runs laid over each other in headless Chromium (the
//! command-line tests open the one-run report `spillway simulate --html` writes).

use std::collections::HashSet;

use serde_json::Value;
use spillway_tests::chromium::{dump_dom, elements, path_points};

use super::*;
use crate::simulate::engine::run;
use crate::simulate::test_support::{BUSY, scenario};

/// [`BUSY`] with deadlines short enough for jobs to expire, without polling, and a queue-age
/// alarm its queue passes: every chart has something to draw.
fn busy() -> Scenario {
    let text = BUSY
        .replace("ttl_s = 40", "ttl_s = 20\n[queue]\nage_alarm_s = 15")
        .replace(
            "[clients]\npoll = { kind = \"backoff\", initial_s = 0.5, factor = 2, max_s = 5 }\n",
            "",
        );
    assert_ne!(text, BUSY);
    scenario(&text)
}

/// The JSON the page embeds.
fn embedded(page: &str) -> Value {
    let open = "<script type=\"application/json\" id=\"spillway-data\">";
    let start = page.find(open).unwrap() + open.len();
    let length = page[start..].find("</script>").unwrap();
    serde_json::from_str(&page[start..start + length]).unwrap()
}

#[test]
fn the_page_embeds_every_row_and_escapes_what_it_quotes() {
    let scenario = busy();
    let results = run(&scenario, 7);
    let page = html(
        "a <b>bold</b> & \"quoted\" title",
        &[Run::asynchronous("</script><p>", &results).unwrap()],
        &Marks::of(&scenario),
    )
    .unwrap();
    assert!(page.contains("<h1>a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; title</h1>"));
    assert!(page.contains("<th scope=\"col\">&lt;/script&gt;&lt;p&gt;</th>"));
    assert!(!page.contains("</script><p>"));

    let data = embedded(&page);
    assert_eq!(data["marks"]["backlog_limit"], 800);
    assert_eq!(data["marks"]["age_alarm_s"], 15.0);
    let embedded_run = &data["runs"][0];
    assert_eq!(embedded_run["label"], "</script><p>");
    assert_eq!(
        embedded_run["summary"]["accepted"],
        results.summary.accepted
    );
    // Every row, every column, to the thousandth.
    let series = &embedded_run["series"];
    let row_fields = serde_json::to_value(&results.series[0]).unwrap();
    assert_eq!(
        series.as_object().unwrap().len(),
        row_fields.as_object().unwrap().len()
    );
    for (i, row) in results.series.iter().enumerate() {
        assert_eq!(series["visible"][i], row.visible);
        assert_eq!(series["dead_lettered"][i], row.dead_lettered);
        let close = |name: &str, value: f64| {
            let embedded = series[name][i].as_f64().unwrap();
            assert!(
                (embedded - value).abs() <= 0.000_500_1,
                "{name}[{i}]: {embedded}, {value}"
            );
        };
        close("t_s", row.t_s);
        close("concurrency", row.concurrency);
        close("e2e_p99_s", row.e2e_p99_s);
    }
    assert_eq!(
        series["t_s"].as_array().unwrap().len(),
        results.series.len()
    );
}

#[test]
fn two_runs_are_laid_over_each_other_on_every_chart_in_chromium() {
    let scenario = busy();
    let first = run(&scenario, 7);
    let second = run(&scenario, 8);
    let page = html(
        "two seeds",
        &[
            Run::asynchronous("seed 7", &first).unwrap(),
            Run::asynchronous("seed 8", &second).unwrap(),
        ],
        &Marks::of(&scenario),
    )
    .unwrap();
    let path = std::env::temp_dir().join(format!("spillway-two-runs-{}.html", std::process::id()));
    std::fs::write(&path, &page).unwrap();
    let dom = dump_dom(&path);
    std::fs::remove_file(&path).unwrap();
    let Some(dom) = dom else {
        return;
    };

    let body = &elements(&dom, "body")[0];
    assert_eq!(body.attr("data-error"), None, "{}", body.open);
    assert_eq!(body.attr("data-rendered"), Some("6"));
    let table = &elements(&dom, "table")[0];
    assert!(
        table
            .inner
            .contains("<th scope=\"col\">seed 7</th><th scope=\"col\">seed 8</th>")
    );

    let figures = elements(&dom, "figure");
    assert_eq!(figures.len(), 6);
    for figure in &figures {
        let chart = figure.attr("data-chart").unwrap();
        let paths: Vec<_> = figure.elements("svg")[0]
            .elements("path")
            .into_iter()
            .filter(|path| path.attr("class") == Some("series"))
            .collect();
        let runs: Vec<&str> = paths.iter().map(|p| p.attr("data-run").unwrap()).collect();
        let per_run = paths.len() / 2;
        assert!(per_run > 0, "{chart}");
        assert_eq!(
            runs,
            [vec!["seed 7"; per_run], vec!["seed 8"; per_run]].concat(),
            "{chart}"
        );
        // Each line has its own colour, and each is drawn from the run's rows (121 of them,
        // fewer where the latency chart leaves a gap).
        let colours: HashSet<&str> = paths.iter().map(|p| p.attr("stroke").unwrap()).collect();
        assert_eq!(colours.len(), paths.len(), "{chart}: {colours:?}");
        for path in &paths {
            let points = path_points(path.attr("d").unwrap()).unwrap();
            assert!(points.len() > 60, "{chart}: {} points", points.len());
        }
        // The two seeds drew different arrivals, so the runs' lines differ.
        assert_ne!(
            paths[0].attr("d"),
            paths[per_run].attr("d"),
            "{chart}: both runs drew the same line"
        );
        let legend: Vec<String> = figure.elements("li").iter().map(|li| li.text()).collect();
        assert_eq!(legend.len(), paths.len(), "{chart}");
        for label in ["seed 7", "seed 8"] {
            assert_eq!(
                legend.iter().filter(|item| item.starts_with(label)).count(),
                per_run,
                "{chart}: {legend:?}"
            );
        }
    }
}
