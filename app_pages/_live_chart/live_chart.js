// The Monitor's live charts, drawn in the browser.
//
// The page sends a payload (llmos_core/monitor_series.py): with reset, the layout and the whole window;
// without, only the samples since the last one, which are appended here and the charts redrawn. With a
// feed URL (llmos_core/monitor_feed.py), this frame fetches the new samples itself each second, so the
// page need not rerun; the URL's token lasts two minutes, then this frame asks the page for a new one. The server never builds a figure. Speaks Streamlit's component protocol through
// window.parent.postMessage.
"use strict";

const state = {
  epoch: null,      // which window the data here belongs to
  windowS: 300,
  charts: [],       // layout: [{id, title, unit, y_max, series: [{label, color, width, dash, fill}]}]
  ts: [],           // shared time axis, seconds
  values: {},       // chart id -> one array per line, aligned on ts
  markers: [],      // [{ts, kind, text, alert}]
  plots: {},        // chart id -> uPlot
  height: 240,      // of one chart, in pixels (the page says)
  text: "#31333f",  // the Streamlit theme's text colour: axes, titles, and lines drawn in "text" colour
  renders: 0,       // payloads received, for the tests
  resets: 0,        // of which whole windows (a full page run, a new window or layout)
  acked: null,      // the window this frame told the page it holds
  feed: null,       // URL of the live feed file (llmos_core/monitor_feed.py), when the page gives one
  only: null,       // the chart ids this frame may show (null: all)
  asked: 0,         // when this frame last asked the page for the whole window (ms), 0: not waiting
  asks: 0,
  renewed: 0,       // when this frame last asked the page for a new feed token (ms)
  renewals: 0,
};
window.liveChart = state;

function send(type, extra) {
  window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, extra || {}), "*");
}

window.addEventListener("message", function (event) {
  const data = event.data;
  if (!data || data.type !== "streamlit:render") return;
  const payload = data.args && data.args.payload;
  if (data.args && data.args.chart_height) state.height = data.args.chart_height;
  if (data.theme && data.theme.textColor !== state.text) applyTheme(data.theme);
  if (payload) receive(payload);
});

function receive(p) {
  state.renders += 1;
  if (p.epoch === state.epoch || p.reset) {
    state.feed = p.feed || null;
    state.only = p.only || null;
  }
  if (p.reset && p.epoch === state.epoch && state.acked === p.epoch && state.charts.length) {
    // The window this frame holds, sent again (a second run of the page before it heard this frame's
    // answer): the same layout, so only its newer samples count; nothing is rebuilt.
    append(p);
  } else if (p.reset) {
    state.asked = 0;
    state.resets += 1;
    state.epoch = p.epoch;
    state.windowS = p.window_s;
    state.charts = p.charts;
    state.ts = p.ts.slice();
    state.values = p.values;
    state.markers = p.markers.slice();
    build();
    if (state.acked !== p.epoch) {   // tell the page this window is here: from now on, increments only
      state.acked = p.epoch;
      send("streamlit:setComponentValue", { value: { have: p.epoch }, dataType: "json" });
    }
  } else if (p.epoch !== state.epoch) {
    // Increments of a window this frame does not hold (it was reloaded): say so, and the page sends it whole.
    if (state.acked !== "lost " + p.epoch) {
      state.acked = "lost " + p.epoch;
      send("streamlit:setComponentValue", { value: { have: state.acked }, dataType: "json" });
    }
    return;
  } else {
    append(p);
  }
  redraw();
}

// ---- the live feed: new samples fetched by this frame itself, no rerun of the page ----
function poll() {
  if (!state.feed || !state.epoch || document.hidden) return;   // a hidden tab fetches nothing
  fetch(state.feed, { cache: "no-store", credentials: "same-origin" })
    .then(function (r) {
      if (r.status === 403) { renewFeed(); return null; }   // its token ran out (two minutes), or the login
      return r.ok ? r.json() : null;
    })
    .then(function (feed) { if (feed) takeFeed(feed); })
    .catch(function () {});   // the server restarting: the next poll tries again
}

function takeFeed(feed) {
  const last = state.ts.length ? state.ts[state.ts.length - 1] : -Infinity;
  const fresh = [];
  for (let k = 0; k < feed.ts.length; k++) if (feed.ts[k] > last) fresh.push(k);
  if (!fresh.length) return;
  // Samples missed (the feed no longer holds this frame's last one: a tab hidden for a while) or a line
  // this frame has no place for (a new job, a GPU): the page sends the whole window again.
  const missed = state.ts.length > 0 && fresh[0] === 0;
  if (missed || !fitsLayout(feed.lines)) return askWhole();
  const p = { ts: fresh.map(function (k) { return feed.ts[k]; }), values: {}, markers: feed.markers };
  for (const chart of state.charts) {
    const lines = feed.lines[chart.id] || {};
    p.values[chart.id] = chart.series.map(function (line) {
      const column = lines[line.label];
      return fresh.map(function (k) { return column ? column[k] : null; });
    });
  }
  state.renders += 1;
  append(p);
  redraw();
}

function fitsLayout(lines) {
  for (const id in lines) {
    if (state.only && state.only.indexOf(id) < 0) continue;
    const chart = state.charts.find(function (c) { return c.id === id; });
    if (!chart) return false;
    for (const label in lines[id]) {
      if (!chart.series.some(function (s) { return s.label === label; })) return false;
    }
  }
  return true;
}

// The page answers with a rerun of the chart's fragment: the samples since the last, and a new feed URL.
function renewFeed() {
  const now = Date.now();
  if (state.renewed && now - state.renewed < 10000) return;
  state.renewed = now;
  state.renewals += 1;
  send("streamlit:setComponentValue", { value: { have: state.acked, renew: state.renewals }, dataType: "json" });
}

function askWhole() {
  const now = Date.now();
  if (state.asked && now - state.asked < 10000) return;   // asked already: the page answers with a rerun
  state.asked = now;
  state.asks += 1;
  state.acked = "stale " + state.epoch + " " + state.asks;
  send("streamlit:setComponentValue", { value: { have: state.acked }, dataType: "json" });
}

setInterval(poll, 1000);

function faint(alpha) {
  // The text colour, see-through: grid and ticks. Only a #rrggbb colour takes an alpha suffix.
  return /^#[0-9a-f]{6}$/i.test(state.text) ? state.text + alpha.toString(16).padStart(2, "0") : "rgba(128,128,128,0.25)";
}

function applyTheme(theme) {
  state.text = theme.textColor;
  document.body.style.color = theme.textColor;
  if (state.charts.length) build();   // axes take their colours when made
}

function append(p) {
  const last = state.ts.length ? state.ts[state.ts.length - 1] : -Infinity;
  for (let k = 0; k < p.ts.length; k++) {
    if (p.ts[k] <= last) continue;   // already here (a repeated payload)
    state.ts.push(p.ts[k]);
    for (const chart of state.charts) {
      const columns = state.values[chart.id];
      const fresh = p.values[chart.id] || [];
      for (let i = 0; i < columns.length; i++) columns[i].push(fresh[i] ? fresh[i][k] : null);
    }
  }
  for (const m of p.markers) if (!state.markers.some(function (o) { return o.ts === m.ts && o.text === m.text; })) state.markers.push(m);
  trim();
}

function trim() {
  // Keep the window (and a little more): the oldest samples fall off the left edge.
  if (!state.ts.length) return;
  const since = state.ts[state.ts.length - 1] - state.windowS * 1.02;
  let cut = 0;
  while (cut < state.ts.length && state.ts[cut] < since) cut++;
  if (cut > 0) {
    state.ts.splice(0, cut);
    for (const id in state.values) for (const column of state.values[id]) column.splice(0, cut);
  }
  state.markers = state.markers.filter(function (m) { return m.ts >= since; });
}

function build() {
  const box = document.getElementById("charts");
  for (const id in state.plots) state.plots[id].destroy();
  state.plots = {};
  box.innerHTML = "";
  for (const chart of state.charts) {
    const holder = document.createElement("div");
    holder.className = "chart";
    holder.dataset.chart = chart.id;
    const title = document.createElement("h4");
    title.textContent = chart.title;
    holder.appendChild(title);
    box.appendChild(holder);
    const series = [{}].concat(chart.series.map(function (line) {
      return {
        label: line.label, stroke: line.color || state.text, width: line.width, points: { show: false },
        dash: line.dash ? [6, 4] : undefined, fill: line.fill ? line.color + "33" : undefined,
        value: function (u, v) { return v == null ? "-" : v.toFixed(1) + " " + chart.unit; },
      };
    }));
    const opts = {
      width: chartWidth(), height: state.height, series: series,
      scales: { x: { time: true }, y: chart.y_max ? { range: [0, chart.y_max] } : { auto: true } },
      axes: [{ space: 70, stroke: state.text, grid: { stroke: faint(0x22) }, ticks: { stroke: faint(0x44) },
               values: function (u, splits) { return splits.map(timeLabel); } },
             { size: 48, stroke: state.text, grid: { stroke: faint(0x22) }, ticks: { stroke: faint(0x44) } }],
      legend: { live: true },
      plugins: [markerPlugin()],
    };
    state.plots[chart.id] = new uPlot(opts, dataOf(chart), holder);
  }
  resize();
}

function timeLabel(seconds) {
  // One line per tick, as short as the window allows: 14:03:20 (5 min), 14:03 (1 h, 1 day), Tue 14:00 (1 week).
  const d = new Date(seconds * 1000);
  const clock = d.toTimeString();
  if (state.windowS <= 600) return clock.slice(0, 8);
  if (state.windowS <= 86400) return clock.slice(0, 5);
  return d.toLocaleDateString(undefined, { weekday: "short" }) + " " + clock.slice(0, 5);
}

function dataOf(chart) {
  return [state.ts].concat(state.values[chart.id]);
}

function redraw() {
  for (const chart of state.charts) {
    const plot = state.plots[chart.id];
    if (!plot) continue;
    plot.setData(dataOf(chart));
    const holder = plot.root.parentNode;
    holder.dataset.points = String(state.ts.length);
    holder.dataset.max = String(Math.max.apply(null, state.values[chart.id][0].map(function (v) { return v == null ? -Infinity : v; })));
  }
  document.body.dataset.renders = String(state.renders);
  const alerts = state.markers.filter(function (m) { return m.alert; });
  document.getElementById("note").textContent = alerts.length
    ? "Alerts in this window: " + alerts.map(function (m) { return new Date(m.ts * 1000).toTimeString().slice(0, 8) + " " + m.text; }).join(" · ")
    : "";
  send("streamlit:setFrameHeight", { height: document.body.scrollHeight + 8 });
}

function markerPlugin() {
  // Events (job start/end, model loads, alerts) as dotted vertical lines; alerts in red.
  return {
    hooks: {
      draw: function (u) {
        const ctx = u.ctx;
        const [min, max] = [u.scales.x.min, u.scales.x.max];
        ctx.save();
        ctx.lineWidth = 1;
        for (const m of state.markers) {
          if (m.ts < min || m.ts > max) continue;
          const x = Math.round(u.valToPos(m.ts, "x", true));
          ctx.strokeStyle = m.alert ? "#d62728" : "#888888";
          ctx.setLineDash(m.alert ? [] : [2, 3]);
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      },
    },
  };
}

function chartWidth() {
  const width = document.getElementById("charts").clientWidth || window.innerWidth;
  const perRow = width >= 860 && state.charts.length > 1 ? 2 : 1;
  return Math.max(Math.floor((width - 16 * (perRow - 1)) / perRow) - 4, 200);
}

function resize() {
  const width = chartWidth();
  for (const id in state.plots) state.plots[id].setSize({ width: width, height: state.height });
}

window.addEventListener("resize", resize);
send("streamlit:componentReady", { apiVersion: 1 });
