// One search: status, progress, the live Pareto scatter (inline SVG), the best trials
// with their weights, and the lifecycle and export buttons. Data comes from the JSON
// API only (/v1/searches/<id> and its /trials, fetched incrementally).
"use strict";

(() => {
  const { config, call, el, svg, fixed, rate, duration, macro, FINISHED, progressBar } = Recycle;
  const STYLE = config.plot_style;
  const KINDS = config.plot_order; // legend order, as in the PNG
  const searchId = config.search_id;
  const base = `/v1/searches/${encodeURIComponent(searchId)}`;

  const state = {
    view: null,
    trials: [], // TrialResult JSON, in the order the store recorded them
    byId: new Map(),
    pair: [0, 1],
    split: "scores",
    rows: "best",
    selected: null, // a trial id; null follows the best trial
    drawn: "", // what the plot and tables last showed, to redraw only on change
  };

  // ---- data -------------------------------------------------------------------

  async function tick() {
    const view = await call("GET", base);
    // Trials after the view: every trial the view counts is then fetched too.
    for (;;) {
      const page = await call("GET", `${base}/trials?offset=${state.trials.length}&limit=10000`);
      for (const trial of page.trials) {
        if (!state.byId.has(trial.proposal.trial_id)) {
          state.trials.push(trial);
          state.byId.set(trial.proposal.trial_id, trial);
        }
      }
      if (page.trials.length === 0 || state.trials.length >= page.total) break;
    }
    const first = state.view === null;
    state.view = view;
    if (first) setUpControls(view);
    render();
  }

  const trialId = (trial) => trial.proposal.trial_id;
  const ok = (trial) => trial.status === "ok";
  const frontIds = () => new Set((state.view && state.view.front) || []);

  function kindOf(trial, front) {
    const source = trial.proposal.source;
    if (source.startsWith("single:")) return "single";
    if (source === "uniform" || source === "greedy") return source;
    return front.has(trialId(trial)) ? "front" : "trial";
  }

  function selectedTrial() {
    const id = state.selected || (state.view && state.view.best && state.view.best.trial_id);
    return (id && state.byId.get(id)) || null;
  }

  // ---- rendering --------------------------------------------------------------

  function render() {
    renderFacts();
    const view = state.view;
    const key = JSON.stringify([state.trials.length, view.front, view.status, state.pair, state.split, state.rows,
      state.selected, view.best && view.best.trial_id, document.getElementById("plot").clientWidth]);
    if (key === state.drawn) return;
    state.drawn = key;
    renderPlot();
    renderTable();
    renderSelected();
  }

  function renderFacts() {
    const view = state.view;
    const status = document.getElementById("status");
    status.textContent = view.status;
    status.dataset.status = view.status;
    document.title = `recycle: ${searchId} (${view.status})`;
    document.getElementById("pause").disabled = view.status !== "running";
    document.getElementById("resume").disabled = view.status !== "paused";
    document.getElementById("cancel").disabled = !(view.status === "running" || view.status === "paused");
    const chosen = selectedTrial();
    const exportButton = document.getElementById("export");
    exportButton.disabled = !chosen || !ok(chosen) || exportButton.dataset.busy === "1";
    exportButton.textContent = chosen ? `Export #${chosen.proposal.number}` : "Export";

    progressBar(document.getElementById("progress"), view);
    const settled = view.done + view.failed;
    document.getElementById("progress-text").textContent =
      `${settled} of ${view.budget} trials` + (view.failed ? ` (${view.failed} failed)` : "") +
      (view.in_flight ? `, ${view.in_flight} in flight` : "");
    document.getElementById("rate").textContent = rate(view.trials_per_s);
    const left = view.budget - settled;
    document.getElementById("eta").textContent =
      view.status === "running" && view.trials_per_s && left > 0 ? `about ${duration(left / view.trials_per_s)} left` : "";
    const best = view.best;
    document.getElementById("best").textContent = best ? fixed(best.macro_average) : "–";
    const bestTrial = best && state.byId.get(best.trial_id);
    document.getElementById("best-detail").textContent = best
      ? `trial #${bestTrial ? bestTrial.proposal.number : "?"} (${best.source})` +
        (best.report_macro_average !== null && best.report_macro_average !== undefined ? `, held-out ${fixed(best.report_macro_average)}` : "")
      : "";
    document.getElementById("hypervolume").textContent = fixed(view.hypervolume);
    document.getElementById("setup").textContent =
      `${view.strategy}, pool ${view.pool} (${view.checkpoints.length} checkpoints), ` +
      `${view.objectives.length} objective${view.objectives.length === 1 ? "" : "s"}, concurrency ${view.concurrency}`;
  }

  // Round tick steps (1, 2, 5 x 10^k) covering [lo, hi].
  function ticks(lo, hi, count, integers = false) {
    const raw = (hi - lo) / count;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    let step = [1, 2, 5, 10].find((m) => m * magnitude >= raw) * magnitude;
    if (integers) step = Math.max(1, Math.round(step));
    const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    const values = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-6; v += step) values.push(v);
    return { values, label: (v) => v.toFixed(digits) };
  }

  function extent(values) {
    let lo = Math.min(...values);
    let hi = Math.max(...values);
    const pad = hi > lo ? (hi - lo) * 0.06 : Math.abs(lo) * 0.05 || 0.5;
    return [lo - pad, hi + pad];
  }

  // The SVG shape of one marker, centred on (x, y).
  function marker(kind, x, y, attributes) {
    const style = STYLE[kind];
    const r = 0.85 * Math.sqrt(style.size);
    const common = { fill: style.color, ...attributes };
    switch (style.marker) {
      case "square":
        return svg("rect", { x: x - r * 0.85, y: y - r * 0.85, width: 1.7 * r, height: 1.7 * r, ...common });
      case "triangle":
        return svg("path", { d: `M${x},${y - 1.15 * r}L${x + r},${y + 0.7 * r}L${x - r},${y + 0.7 * r}Z`, ...common });
      case "diamond":
        return svg("path", { d: `M${x},${y - r}L${x + 0.8 * r},${y}L${x},${y + r}L${x - 0.8 * r},${y}Z`, ...common });
      default:
        return svg("circle", { cx: x, cy: y, r, ...common });
    }
  }

  function axisLabel(objective) {
    return `${objective.name} (${objective.direction})`;
  }

  function renderPlot() {
    const view = state.view;
    const objectives = view.objectives;
    const front = frontIds();
    const holder = document.getElementById("plot");
    const single = objectives.length === 1;
    const [i, j] = single ? [null, 0] : state.pair;
    const shown = state.trials.filter((t) => ok(t) && t[state.split] && Object.keys(t[state.split]).length);
    const x = (t) => (single ? t.proposal.number : t[state.split][objectives[i].name]);
    const y = (t) => t[state.split][objectives[j].name];
    const points = shown.filter((t) => Number.isFinite(x(t)) && Number.isFinite(y(t)));

    const width = Math.max(holder.clientWidth, 360);
    const height = Math.round(Math.min(520, Math.max(320, width * 0.55)));
    const margin = { left: 70, right: 24, top: 14, bottom: 48 };
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
      "aria-label": `scatter of ${points.length} trials` });
    holder.replaceChildren(root);
    holder.dataset.points = String(points.length);
    renderLegend(points, front);
    if (points.length === 0) {
      root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" },
        state.split === "report" ? "no held-out scores yet" : "no finished trials yet"));
      return;
    }
    const [x0, x1] = extent(points.map(x));
    const [y0, y1] = extent(points.map(y));
    const plotW = width - margin.left - margin.right;
    const plotH = height - margin.top - margin.bottom;
    const sx = (v) => margin.left + ((v - x0) / (x1 - x0)) * plotW;
    const sy = (v) => margin.top + (1 - (v - y0) / (y1 - y0)) * plotH;

    const axes = svg("g", { class: "axes" });
    const xt = ticks(x0, x1, Math.max(3, Math.floor(plotW / 90)), single);
    const yt = ticks(y0, y1, Math.max(3, Math.floor(plotH / 60)));
    for (const v of xt.values) {
      axes.append(svg("line", { x1: sx(v), x2: sx(v), y1: margin.top, y2: margin.top + plotH, class: "grid" }),
        svg("text", { x: sx(v), y: margin.top + plotH + 16, "text-anchor": "middle" }, xt.label(v)));
    }
    for (const v of yt.values) {
      axes.append(svg("line", { x1: margin.left, x2: margin.left + plotW, y1: sy(v), y2: sy(v), class: "grid" }),
        svg("text", { x: margin.left - 6, y: sy(v) + 4, "text-anchor": "end" }, yt.label(v)));
    }
    axes.append(
      svg("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "frame" }),
      svg("text", { x: margin.left + plotW / 2, y: height - 8, "text-anchor": "middle", class: "axis-label" },
        single ? "trial number" : axisLabel(objectives[i])),
      svg("text", { x: 14, y: margin.top + plotH / 2, "text-anchor": "middle", class: "axis-label",
        transform: `rotate(-90 14 ${margin.top + plotH / 2})` }, axisLabel(objectives[j])));
    root.append(axes);

    // Draw order as in the PNG: plain trials, the front line, front points, soups, singles on top.
    const layer = { trial: [], front: [], greedy: [], uniform: [], single: [] };
    for (const t of points) layer[kindOf(t, front)].push(t);
    if (drawsFrontLine()) {
      const line = points.filter((t) => front.has(trialId(t))).sort((a, b) => x(a) - x(b));
      if (line.length > 1) {
        root.append(svg("polyline", { points: line.map((t) => `${sx(x(t))},${sy(y(t))}`).join(" "),
          class: "front-line", stroke: STYLE.front.color }));
      }
    }
    const chosen = selectedTrial();
    const group = svg("g", { class: "points" });
    for (const kind of ["trial", "front", "greedy", "uniform", "single"]) {
      for (const t of layer[kind]) {
        const classes = ["point", front.has(trialId(t)) ? "on-front" : "", chosen && trialId(chosen) === trialId(t) ? "selected" : ""];
        const shape = marker(kind, sx(x(t)), sy(y(t)), { class: classes.join(" ").trim(), dataset: { trialId: trialId(t), kind } });
        shape.style.setProperty("--ring", STYLE.front.color); // a baseline on the front gets a ring of its colour
        shape.append(svg("title", {}, tooltip(t, kind, front)));
        shape.addEventListener("click", () => select(trialId(t)));
        group.append(shape);
        if (kind === "single") {
          group.append(svg("text", { x: sx(x(t)) + 7, y: sy(y(t)) - 5, class: "point-label" },
            t.proposal.source.slice("single:".length)));
        }
      }
    }
    root.append(group);
  }

  // The front is a line only where it is the front of what is drawn: two objectives, search
  // split (as report.plot_front). Otherwise its members are points of the front's colour.
  function drawsFrontLine() {
    return state.view.objectives.length === 2 && state.split === "scores";
  }

  function tooltip(t, kind, front) {
    const objectives = state.view.objectives;
    const lines = [`trial #${t.proposal.number}: ${t.proposal.source}${front.has(trialId(t)) ? ", on the front" : ""}`];
    for (const o of objectives) {
      const held = t.report && t.report[o.name];
      lines.push(`${o.name}: ${fixed(t.scores[o.name])}` + (held === undefined ? "" : ` (held-out ${fixed(held)})`));
    }
    lines.push(`macro: ${fixed(macro(t.scores, objectives))}`);
    return lines.join("\n");
  }

  function legendMarker(kind) {
    const box = svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" });
    if (kind === "front" && drawsFrontLine()) box.append(svg("line", { x1: 0, x2: 14, y1: 7, y2: 7, stroke: STYLE.front.color, "stroke-width": 1.5 }));
    box.append(marker(kind, 7, 7, {}));
    return box;
  }

  // The PNG's legend: singles and front always, soups when present; plain trials.
  function renderLegend(points, front) {
    const present = new Set(points.map((t) => kindOf(t, front)));
    const entries = KINDS.filter((k) => k === "single" || k === "front" || k === "trial" || present.has(k));
    document.getElementById("legend").replaceChildren(
      ...entries.map((k) => el("span", { class: "entry", "data-kind": k }, legendMarker(k), STYLE[k].label)));
  }

  // ---- tables -----------------------------------------------------------------

  // Colours of the checkpoints in weight bars: a fixed palette, then golden-angle hues.
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const checkpointColor = (k) => (k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.508) % 360} 55% 55%)`);

  function weightsBar(weights, names) {
    const total = weights.reduce((s, w) => s + Math.abs(w), 0) || 1;
    const bar = el("div", { class: "weights", title: names.map((n, k) => `${n}: ${weights[k].toFixed(3)}`).join("\n") });
    weights.forEach((w, k) => {
      if (Math.abs(w) / total < 0.001) return;
      const segment = el("span", { class: w < 0 ? "neg" : "" });
      segment.style.width = `${(100 * Math.abs(w)) / total}%`;
      segment.style.backgroundColor = checkpointColor(k);
      bar.append(segment);
    });
    return bar;
  }

  function kindDot(kind) {
    const dot = el("span", { class: "kind-dot", title: STYLE[kind].label });
    dot.style.backgroundColor = STYLE[kind].color;
    return dot;
  }

  function rowsToShow() {
    const objectives = state.view.objectives;
    const done = state.trials.filter(ok);
    const byMacro = (a, b) => macro(a.scores, objectives) - macro(b.scores, objectives);
    const front = frontIds();
    switch (state.rows) {
      case "front":
        return done.filter((t) => front.has(trialId(t))).sort(byMacro);
      case "baselines":
        return done.filter((t) => ["single", "uniform", "greedy"].includes(kindOf(t, front))).sort(byMacro);
      case "all":
        return done.slice().sort(byMacro);
      default:
        return done.slice().sort(byMacro).slice(0, 10);
    }
  }

  function renderTable() {
    const view = state.view;
    const objectives = view.objectives;
    const names = view.checkpoints;
    const front = frontIds();
    const chosen = selectedTrial();
    document.getElementById("weights-legend").replaceChildren("weights: ",
      ...names.map((n, k) => {
        const swatch = el("span", { class: "swatch" });
        swatch.style.backgroundColor = checkpointColor(k);
        return el("span", { class: "entry" }, swatch, n);
      }));
    const head = el("tr", {}, el("th", {}, "#"), el("th", {}, "source"), el("th", { title: "on the Pareto front (search split)" }, "front"),
      el("th", { class: "num" }, "macro search ↓"), el("th", { class: "num" }, "macro held-out ↓"),
      ...objectives.map((o) => el("th", { class: "num", title: `search split, ${o.direction}` }, `${o.name} ${o.direction === "minimize" ? "↓" : "↑"}`)),
      el("th", { class: "weights-col" }, "weights"));
    document.querySelector("#trials thead").replaceChildren(head);
    const rows = rowsToShow().map((t) => el("tr", {
      "data-trial-id": trialId(t), class: chosen && trialId(chosen) === trialId(t) ? "selected" : "",
      onclick: () => select(trialId(t)),
    },
    el("td", {}, String(t.proposal.number)),
    el("td", {}, kindDot(kindOf(t, front)), t.proposal.source),
    el("td", {}, front.has(trialId(t)) ? "★" : ""),
    el("td", { class: "num" }, fixed(macro(t.scores, objectives))),
    el("td", { class: "num" }, fixed(macro(t.report, objectives))),
    ...objectives.map((o) => el("td", { class: "num" }, fixed(t.scores[o.name]))),
    el("td", { class: "weights-col" }, weightsBar(t.proposal.weights, names))));
    document.querySelector("#trials tbody").replaceChildren(...rows);
  }

  function renderSelected() {
    const holder = document.getElementById("selected");
    const t = selectedTrial();
    if (!t) {
      holder.replaceChildren("none yet");
      return;
    }
    const view = state.view;
    const front = frontIds();
    const names = view.checkpoints;
    const weights = t.proposal.weights;
    const largest = Math.max(...weights.map(Math.abs)) || 1;
    const used = weights.filter((w) => w > 0.01).length;
    holder.className = "";
    holder.replaceChildren(
      el("p", {}, el("strong", {}, `trial #${t.proposal.number}`), ` ${t.proposal.source}`,
        front.has(trialId(t)) ? " ★ on the front" : "", state.selected ? "" : " (best by macro-average)"),
      el("p", { class: "small muted" }, trialId(t), t.worker ? ` on ${t.worker}` : "",
        t.total_seconds ? `, ${t.total_seconds.toFixed(2)} s (merge ${t.merge_seconds.toFixed(2)} s)` : ""),
      t.status === "ok"
        ? el("table", { class: "grid compact" },
          el("thead", {}, el("tr", {}, el("th", {}, "task"), el("th", { class: "num" }, "search"), el("th", { class: "num" }, "held-out"))),
          el("tbody", {}, ...view.objectives.map((o) => el("tr", {}, el("td", {}, `${o.name} ${o.direction === "minimize" ? "↓" : "↑"}`),
            el("td", { class: "num" }, fixed(t.scores[o.name])), el("td", { class: "num" }, fixed(t.report && t.report[o.name])))),
          el("tr", { class: "total" }, el("td", {}, "macro ↓"), el("td", { class: "num" }, fixed(macro(t.scores, view.objectives))),
            el("td", { class: "num" }, fixed(macro(t.report, view.objectives))))))
        : el("p", { class: "error" }, `failed: ${t.error}`),
      el("p", { class: "small" }, `weights (${used} of ${names.length} checkpoints above 0.01)`),
      el("div", { class: "weight-rows" }, ...names.map((n, k) => {
        const bar = el("span", { class: `fill${weights[k] < 0 ? " neg" : ""}` });
        bar.style.width = `${(100 * Math.abs(weights[k])) / largest}%`;
        bar.style.backgroundColor = checkpointColor(k);
        return el("div", { class: "weight-row", "data-checkpoint": n },
          el("span", { class: "name", title: n }, n), el("span", { class: "track" }, bar), el("span", { class: "num" }, weights[k].toFixed(3)));
      })));
  }

  function select(id) {
    state.selected = id;
    render();
  }

  // ---- controls ---------------------------------------------------------------

  function message(text, kind = "info") {
    const element = document.getElementById("message");
    element.textContent = text;
    element.dataset.kind = kind;
    element.hidden = !text;
  }

  let poller = null;

  async function act(action) {
    if (action === "cancel" && !window.confirm(`Cancel search ${searchId}? Trials in flight finish; nothing new starts. This cannot be undone.`)) return;
    try {
      const answer = await call("POST", `${base}/${action}`, { body: {}, mutating: true });
      message(`Search ${answer.status}.`);
      state.view = { ...state.view, status: answer.status };
      renderFacts();
    } catch (error) {
      message(`Could not ${action}: ${error.message}`, "error");
    }
    poller.now();
  }

  async function exportSelected() {
    const t = selectedTrial();
    if (!t) return;
    const button = document.getElementById("export");
    button.dataset.busy = "1";
    button.disabled = true;
    message(`Exporting trial #${t.proposal.number}…`);
    try {
      const answer = await call("POST", `${base}/export`, { body: { trial_id: trialId(t) }, mutating: true });
      message(`Exported trial #${t.proposal.number} to ${answer.path} (HF directory, mergekit.yaml, recycle.json).`);
      document.getElementById("message").dataset.path = answer.path;
    } catch (error) {
      message(`Export failed: ${error.message}`, "error");
    } finally {
      button.dataset.busy = "";
      renderFacts();
    }
  }

  function setUpControls(view) {
    const objectives = view.objectives;
    const pairSelect = document.getElementById("pair");
    if (objectives.length >= 3) {
      for (let a = 0; a < objectives.length; a++) {
        for (let b = a + 1; b < objectives.length; b++) {
          pairSelect.append(el("option", { value: `${a},${b}` }, `${objectives[a].name} vs ${objectives[b].name}`));
        }
      }
      document.getElementById("pair-label").hidden = false;
    }
    pairSelect.addEventListener("change", () => {
      state.pair = pairSelect.value.split(",").map(Number);
      render();
    });
    const split = document.getElementById("split");
    split.addEventListener("change", () => {
      state.split = split.value;
      render();
    });
    const rows = document.getElementById("rows");
    rows.addEventListener("change", () => {
      state.rows = rows.value;
      render();
    });
    for (const action of ["pause", "resume", "cancel"]) {
      document.getElementById(action).addEventListener("click", () => act(action));
    }
    document.getElementById("export").addEventListener("click", exportSelected);
    let resizing = null;
    window.addEventListener("resize", () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => state.view && render(), 150);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    poller = Recycle.poll(tick, () => state.view && FINISHED.has(state.view.status) && state.view.in_flight === 0);
  });
})();
