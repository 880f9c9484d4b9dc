// Draws the time series embedded in #spillway-data as one SVG chart each, every run laid over
// the others, then marks <body data-rendered="N"> with the number of charts drawn (or
// data-error with what went wrong).
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  // A series longer than this is drawn as the lowest and highest value of each pixel column.
  const MAX_POINTS = 2000;
  const WIDTH = 960;
  const HEIGHT = 300;
  const MARGIN = { left: 76, right: 24, top: 18, bottom: 48 };
  const PLOT_W = WIDTH - MARGIN.left - MARGIN.right;
  const PLOT_H = HEIGHT - MARGIN.top - MARGIN.bottom;
  // Series i of run r takes colour i + r × (the chart's series), so no two lines of a chart
  // share a colour while two runs of up to five series are overlaid; later runs are dashed too.
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
  const DASHES = ["", "8 4", "2 3", "10 3 2 3"];

  const data = JSON.parse(document.getElementById("spillway-data").textContent);
  const runs = data.runs;
  const marks = data.marks;
  const sample = runs[0].sample_s;
  const perRow = "jobs per " + number(sample) + " s row";

  const CHARTS = [
    {
      id: "arrivals", title: "Submissions and intake's answers", unit: perRow,
      series: [["arrivals", "submitted"], ["accepted", "accepted (202)"],
        ["rejected", "rejected, backlog (503)"], ["throttled", "throttled (429)"]],
    },
    {
      id: "queue", title: "Queue depth at the end of each row", unit: "messages", atEnd: true,
      series: [["visible", "visible"], ["in_flight", "in flight"], ["delayed", "delayed"]],
      marks: () => marks.backlog_limit > 0
        ? [50, 75, 90].map((percent) => ({
          value: marks.backlog_limit * percent / 100,
          label: percent + " % of BacklogLimit ("
            + number(marks.backlog_limit * percent / 100) + ")",
        }))
        : [],
      note: () => marks.backlog_limit > 0 ? ""
        : "No BacklogLimit in the scenario, so no threshold lines.",
    },
    {
      id: "age", title: "Age of the oldest visible message", unit: "seconds", atEnd: true,
      series: [["oldest_age_s", "oldest message"]],
      marks: () => [{
        value: marks.age_alarm_s,
        label: "QueueAgeAlarmSeconds (" + number(marks.age_alarm_s) + " s)",
      }],
      note: () => "The template's alarm fires once the age stays above the line for "
        + "QueueAgeAlarmPeriods minutes.",
    },
    {
      id: "concurrency", title: "Workers busy (consumer invocations), averaged over each row",
      unit: "workers", series: [["concurrency", "workers busy"]],
      // One line per capacity; runs with the same capacity share its line and label.
      marks: () => [...new Set(runs.map((run) => run.capacity.value))].map((value) => ({
        value,
        label: [...new Set(runs.filter((run) => run.capacity.value === value)
          .map((run) => run.capacity.label))].join(" · "),
      })),
      note: () => "Messages in flight (held by these invocations) are on the queue chart.",
    },
    {
      id: "endings", title: "Jobs that expired or were dead-lettered", unit: perRow,
      series: [["expired", "expired"], ["dead_lettered", "dead-lettered"]],
    },
    {
      id: "latency", title: "End-to-end latency of the jobs that ended in each row",
      unit: "seconds", series: [["e2e_p50_s", "p50"], ["e2e_p99_s", "p99"]],
      // A row where no job ended has no latency: a gap, not a 0.
      gap: (series, row) => series.completed[row] + series.expired[row]
        + series.dead_lettered[row] === 0,
      note: () => "Gaps are rows in which no job ended.",
    },
  ];

  function svg(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) {
      element.setAttribute(key, String(value));
    }
    if (parent) parent.appendChild(element);
    return element;
  }

  function tag(name, attributes, text, parent) {
    const element = document.createElement(name);
    for (const [key, value] of Object.entries(attributes)) {
      element.setAttribute(key, String(value));
    }
    if (text !== undefined) element.textContent = text;
    if (parent) parent.appendChild(element);
    return element;
  }

  // A number as a person writes it: thousands separated, at most three decimals.
  function number(value) {
    return value.toLocaleString("en-US", { maximumFractionDigits: 3 });
  }

  // Round steps (1, 2, 2.5 or 5 × 10^k) from 0 to at least `top`, about `count` of them.
  function ticks(top, count) {
    const raw = top / count;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const values = [];
    for (let i = 0; i * step <= top * (1 + 1e-9); i++) values.push(i * step);
    if (values[values.length - 1] < top) values.push(values.length * step);
    return { step, values };
  }

  // A tick's label, with as many decimals as its step needs.
  function tickLabel(value, step) {
    if (step >= 1e6) return number(value / 1e6) + "M";
    if (step >= 1e3 && value >= 1e4) return number(value / 1e3) + "k";
    let decimals = 0;
    while (decimals < 6 && Math.abs(Math.round(step * 10 ** decimals) - step * 10 ** decimals) > 1e-6) {
      decimals++;
    }
    return value.toLocaleString("en-US", {
      minimumFractionDigits: decimals, maximumFractionDigits: decimals,
    });
  }

  // The series of one run as [x, y] points, y null in a gap.
  function points(run, spec, key) {
    const series = run.series;
    const shift = spec.atEnd ? run.sample_s : 0;
    const end = run.summary.simulated_s;
    return series[key].map((y, row) => [
      Math.min(series.t_s[row] + shift, end),
      spec.gap && spec.gap(series, row) ? null : y,
    ]);
  }

  // An SVG path through `pts`: every point, or above MAX_POINTS the first, lowest, highest and
  // last value of each pixel column, so that no peak is lost.
  function path(pts, sx, sy) {
    const out = [];
    let pen = false;
    const to = (x, y) => {
      out.push((pen ? "L" : "M") + x.toFixed(1) + " " + sy(y).toFixed(1));
      pen = true;
    };
    if (pts.length <= MAX_POINTS) {
      for (const [x, y] of pts) {
        if (y === null) pen = false;
        else to(sx(x), y);
      }
      return out.join("");
    }
    let column = null;
    let bucket = [];
    const flush = () => {
      if (bucket.length === 0) return;
      let low = 0;
      let high = 0;
      bucket.forEach((y, i) => {
        if (y < bucket[low]) low = i;
        if (y > bucket[high]) high = i;
      });
      const keep = [...new Set([0, Math.min(low, high), Math.max(low, high), bucket.length - 1])];
      for (const i of keep) to(column, bucket[i]);
      bucket = [];
    };
    for (const [x, y] of pts) {
      if (y === null) {
        flush();
        pen = false;
        continue;
      }
      const px = Math.round(sx(x));
      if (px !== column) {
        flush();
        column = px;
      }
      bucket.push(y);
    }
    flush();
    return out.join("");
  }

  function chart(spec, parent) {
    const figure = tag("figure", { id: "chart-" + spec.id, "data-chart": spec.id }, undefined, parent);
    tag("figcaption", {}, spec.title, figure);
    const lines = [];
    runs.forEach((run, r) => spec.series.forEach(([key, name], i) => {
      lines.push({
        run: run.label, key, name,
        colour: PALETTE[(i + r * spec.series.length) % PALETTE.length],
        dash: DASHES[r % DASHES.length],
        pts: points(run, spec, key),
      });
    }));
    const chartMarks = spec.marks ? spec.marks() : [];

    const legend = tag("ul", { class: "legend" }, undefined, figure);
    for (const line of lines) {
      const item = tag("li", { "data-run": line.run, "data-series": line.key }, undefined, legend);
      tag("span", {
        class: "swatch",
        style: "border-top: 3px " + (line.dash ? "dashed" : "solid") + " " + line.colour,
      }, undefined, item);
      tag("b", {}, line.run, item);
      item.appendChild(document.createTextNode(" " + line.name));
    }

    const xMax = Math.max(...runs.map((run) => run.summary.simulated_s), sample);
    let yMax = 0;
    for (const line of lines) {
      for (const [, y] of line.pts) if (y !== null && y > yMax) yMax = y;
    }
    for (const mark of chartMarks) yMax = Math.max(yMax, mark.value);
    // The time axis ends with the longest run; the other rounds up to its last tick.
    const xTicks = ticks(xMax, 10);
    xTicks.values = xTicks.values.filter((value) => value <= xMax * (1 + 1e-9));
    const yTicks = ticks(yMax > 0 ? yMax * 1.05 : 1, 5);
    const xTop = xMax;
    const yTop = yTicks.values[yTicks.values.length - 1];
    const sx = (x) => MARGIN.left + (x / xTop) * PLOT_W;
    const sy = (y) => MARGIN.top + PLOT_H - (y / yTop) * PLOT_H;

    const root = svg("svg", {
      viewBox: "0 0 " + WIDTH + " " + HEIGHT, "data-chart": spec.id, role: "img",
      "aria-label": spec.title,
    }, figure);
    const grid = svg("g", { class: "grid" }, root);
    const axes = svg("g", { class: "axis" }, root);
    for (const value of yTicks.values) {
      const y = sy(value);
      svg("line", { x1: MARGIN.left, x2: MARGIN.left + PLOT_W, y1: y, y2: y }, grid);
      svg("text", { x: MARGIN.left - 8, y: y + 4, "text-anchor": "end" }, axes)
        .textContent = tickLabel(value, yTicks.step);
    }
    for (const value of xTicks.values) {
      const x = sx(value);
      svg("line", { x1: x, x2: x, y1: MARGIN.top, y2: MARGIN.top + PLOT_H }, grid);
      svg("text", { x, y: MARGIN.top + PLOT_H + 18, "text-anchor": "middle" }, axes)
        .textContent = tickLabel(value, xTicks.step);
    }
    svg("rect", { class: "frame", x: MARGIN.left, y: MARGIN.top, width: PLOT_W, height: PLOT_H }, root);
    svg("text", {
      class: "axis-title", x: MARGIN.left + PLOT_W / 2, y: HEIGHT - 8, "text-anchor": "middle",
    }, root).textContent = "time since the start of the run (s)";
    svg("text", {
      class: "axis-title", "text-anchor": "middle",
      transform: "translate(16 " + (MARGIN.top + PLOT_H / 2) + ") rotate(-90)",
    }, root).textContent = spec.unit;

    const drawn = svg("g", { class: "series" }, root);
    for (const line of lines) {
      svg("path", {
        class: "series", "data-run": line.run, "data-series": line.key,
        d: path(line.pts, sx, sy), stroke: line.colour, "stroke-dasharray": line.dash || "none",
      }, drawn);
    }
    for (const mark of chartMarks) {
      const y = sy(mark.value);
      svg("line", {
        class: "mark", "data-value": mark.value,
        x1: MARGIN.left, x2: MARGIN.left + PLOT_W, y1: y, y2: y,
      }, root);
      svg("text", {
        class: "mark-label", x: MARGIN.left + PLOT_W - 6, y: y - 5, "text-anchor": "end",
      }, root).textContent = mark.label;
    }

    const rows = Math.max(...runs.map((run) => run.series.t_s.length));
    const drawing = rows > MAX_POINTS
      ? "Above " + number(MAX_POINTS) + " rows, each pixel column draws the first, lowest, "
        + "highest and last value of its rows (a min/max envelope): no peak is lost."
      : "Every row is drawn.";
    const note = spec.note ? spec.note() : "";
    tag("p", { class: "note" }, number(rows) + " rows of " + number(sample) + " s per run. "
      + drawing + (note ? " " + note : ""), figure);
  }

  try {
    const parent = document.getElementById("charts");
    for (const spec of CHARTS) chart(spec, parent);
    document.getElementById("status").remove();
    document.body.setAttribute("data-rendered", String(CHARTS.length));
  } catch (error) {
    document.body.setAttribute("data-error", String(error));
    document.getElementById("status").textContent = "The charts could not be drawn: " + error;
    throw error;
  }
})();
