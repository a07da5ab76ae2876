// Charts of the dashboard, drawn with the vendored uPlot (window.uPlot, loaded by a classic
// script tag). Every chart has a table with the same numbers next to it (canvas is not read
// by screen readers), built by the caller.

const COLORS = {
  bot_confirmed: "#2e7d32", bot_assumed: "#81c784", agent: "#2457d6",
  timeout: "#b0b7c3", abandoned: "#c62828",
};
const PALETTE = ["#2457d6", "#b86e00", "#2e7d32", "#8e24aa", "#c62828", "#00838f"];

function width(el) {
  return Math.max(320, Math.floor(el.getBoundingClientRect().width) - 8);
}

function xValues(labels) {
  // uPlot wants numbers on the x axis: bucket index, labelled by the caller's labels.
  return labels.map((_, i) => i);
}

function axisLabels(labels) {
  // Hour buckets ("2026-03-02T09:00+00:00") show the hour, and the date at midnight;
  // day and week buckets ("2026-03-02") show month-day.
  return (_u, splits) => splits.map((i) => {
    const label = labels[Math.round(i)];
    if (label === undefined || Math.round(i) !== i) return "";
    if (label.length > 10) {
      const hour = label.slice(11, 16);
      return hour === "00:00" ? label.slice(5, 10) : hour;
    }
    return label.slice(5);
  });
}

const X_AXIS = (labels) => ({ values: axisLabels(labels), space: 48 });

// Outcomes per bucket, stacked: each series is drawn as the running total, widest first, so
// the visible band of each colour is its own count.
export function stackedBars(el, labels, series, order) {
  const totals = order.map(() => labels.map(() => 0));
  for (let b = 0; b < labels.length; b++) {
    let sum = 0;
    order.forEach((key, i) => { sum += series[key][b] || 0; totals[i][b] = sum; });
  }
  const bars = window.uPlot.paths.bars({ size: [0.7, 60] });
  const drawOrder = order.map((_, i) => i).reverse();
  const opts = {
    width: width(el), height: 260,
    scales: { x: { time: false } },
    axes: [X_AXIS(labels), {}],
    legend: { live: false },
    series: [{}, ...drawOrder.map((i) => ({
      label: order[i].replace("_", " "), fill: COLORS[order[i]] || PALETTE[i % PALETTE.length],
      stroke: COLORS[order[i]] || PALETTE[i % PALETTE.length], paths: bars, points: { show: false },
    }))],
  };
  return new window.uPlot(opts, [xValues(labels), ...drawOrder.map((i) => totals[i])], el);
}

export function lines(el, labels, named, { unit = "" } = {}) {
  const keys = Object.keys(named);
  const opts = {
    width: width(el), height: 220,
    scales: { x: { time: false } },
    // Wide enough for "2.25m": uPlot's default 50 px cuts the first digit off.
    axes: [X_AXIS(labels), { values: (_u, v) => v.map((x) => `${x}${unit}`), size: 64 }],
    series: [{}, ...keys.map((k, i) => ({ label: k, stroke: PALETTE[i % PALETTE.length], width: 2, spanGaps: true }))],
  };
  return new window.uPlot(opts, [xValues(labels), ...keys.map((k) => named[k].map((v) => (v === null ? null : v)))], el);
}
