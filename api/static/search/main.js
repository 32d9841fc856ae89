// One search's page: polls the JSON API (the search view, its trial rows, its history,
// the workers), keeps what the user picked (objective pair, split, zoom, brushed ranges,
// selected trial, sort, a second search to overlay) and hands both to the drawing modules.
import { scatter } from "./scatter.js";
import { parallel } from "./parallel.js";
import { stepChart } from "./lines.js";
import { zoomAndPan, brushAxes } from "./interact.js";
import { renderTable, renderSelected, sortColumns, sortRows, weightsLegend } from "./tables.js";
import { renderFacts } from "./facts.js";
import { lifecycle, listComparable } from "./controls.js";
import { workerWatch, workerWarning, renderWorkers } from "./workers.js";
import { renderLegend, seriesLegend, COLORS } from "./legend.js";

const { config, call, el, fixed, FINISHED } = Recycle;
const STYLE = config.plot_style;
const DRAW_ORDER = ["trial", "front", "greedy", "uniform", "single"]; // as in the PNG: baselines on top
const byId = (id) => document.getElementById(id);
const api = (id) => `/v1/searches/${encodeURIComponent(id)}`;

const emptyRun = (id) => ({ id, view: null, trials: [], byId: new Map(), scaled: false, history: null });
const state = {
  own: emptyRun(config.search_id),
  compare: null, // another search on the same pool, overlaid
  workers: { known: null },
  pair: [0, 1], split: "scores", rows: "best", sort: { key: "macro", dir: 1 },
  selected: null, // a trial id; null follows the best trial
  zoom: null, brushes: {}, exportBusy: false, drawn: "",
  geometry: { scatter: null, parallel: null },
};
const watchWorkers = workerWatch();

// ---- data ---------------------------------------------------------------------

// Trial rows in store order, fetched incrementally; all again once the macros are scaled.
async function fetchRun(run) {
  const view = await call("GET", api(run.id));
  for (;;) {
    const page = await call("GET", `${api(run.id)}/trials?offset=${run.trials.length}&limit=10000`);
    if (page.scaled && !run.scaled && run.trials.length > 0) {
      Object.assign(run, { trials: [], byId: new Map(), scaled: true });
      continue;
    }
    run.scaled = page.scaled;
    for (const row of page.trials) {
      if (!run.byId.has(row.proposal.trial_id)) {
        run.trials.push(row);
        run.byId.set(row.proposal.trial_id, row);
      }
    }
    if (page.trials.length === 0 || run.trials.length >= page.total) break;
  }
  if (!run.history || run.history.points.length !== run.trials.length) run.history = await call("GET", `${api(run.id)}/history`);
  run.view = view;
}

async function tick() {
  const first = state.own.view === null;
  await fetchRun(state.own);
  state.workers = await watchWorkers().catch(() => ({ known: false }));
  const other = state.compare;
  if (other && !(other.view && FINISHED.has(other.view.status) && other.view.in_flight === 0)) await fetchRun(other);
  if (first) setUp(state.own.view);
  render();
}

// ---- what is drawn --------------------------------------------------------------

const frontOf = (run) => new Set((run.view && run.view.front) || []);
const drawnKind = (front) => (t) => (t.kind === "trial" && front.has(t.proposal.trial_id) ? "front" : t.kind);
const inBrushes = (t) => Object.entries(state.brushes).every(([name, [lo, hi]]) => t.scores[name] >= lo && t.scores[name] <= hi);
const scored = (run) => run.trials.filter((t) => t.status === "ok" && t[state.split] && Object.keys(t[state.split]).length);

function selectedTrial() {
  const view = state.own.view;
  const id = state.selected || (view && view.best && view.best.trial_id);
  return (id && state.own.byId.get(id)) || null;
}

function tooltip(t, kind, front) {
  const lines = [`trial #${t.proposal.number}: ${t.source_text}${front.has(t.proposal.trial_id) ? ", on the front" : ""}`];
  for (const o of state.own.view.objectives) {
    const held = t.report && t.report[o.name];
    lines.push(`${o.name}: ${fixed(t.scores[o.name])}` + (held === undefined ? "" : ` (held-out ${fixed(held)})`));
  }
  lines.push(`normalized macro: ${fixed(t.macro_average)}`);
  return lines.join("\n");
}

function render() {
  const view = state.own.view;
  const chosen = selectedTrial();
  renderFacts(view, { chosen, exportBusy: state.exportBusy, rowOf: (id) => state.own.byId.get(id) });
  const warning = workerWarning(view, state.workers);
  byId("worker-warning").textContent = warning;
  byId("worker-warning").hidden = !warning;
  renderWorkers(byId("workers"), state.workers, view);
  const other = state.compare;
  const key = JSON.stringify([state.own.trials.length, state.own.scaled, view.front, view.status, state.pair, state.split,
    state.rows, state.sort, state.selected, view.best && view.best.trial_id, state.zoom, state.brushes,
    other && [other.id, other.trials.length], byId("plot").clientWidth]);
  if (key === state.drawn) return;
  state.drawn = key;
  drawScatter(chosen);
  if (view.objectives.length >= 3) drawParallel(chosen);
  drawHistory();
  drawTable(chosen);
  renderSelected(byId("selected"), chosen, { view, front: frontOf(state.own), followsBest: !state.selected });
}

function drawScatter(chosen) {
  const objectives = state.own.view.objectives;
  const front = frontOf(state.own);
  const kindOf = drawnKind(front);
  const one = objectives.length === 1;
  const [i, j] = one ? [null, 0] : state.pair;
  const x = (t) => (one ? t.proposal.number : t[state.split][objectives[i].name]);
  const y = (t) => t[state.split][objectives[j].name];
  const usable = (t) => Number.isFinite(x(t)) && Number.isFinite(y(t));
  const rows = scored(state.own).filter(usable);
  const rank = (t) => DRAW_ORDER.indexOf(kindOf(t));
  const points = rows.slice().sort((a, b) => rank(a) - rank(b)).map((t) => {
    const kind = kindOf(t);
    const id = t.proposal.trial_id;
    const classes = [front.has(id) ? "on-front" : "", chosen && chosen.proposal.trial_id === id ? "selected" : "",
      inBrushes(t) ? "" : "dim"].filter(Boolean);
    return { id, x: x(t), y: y(t), kind, classes, title: tooltip(t, kind, front), label: kind === "single" ? t.checkpoint : null };
  });
  // The front is a line where it is the front of what is drawn: two objectives, search split.
  const frontLine = (run, dashed, color) => {
    const members = scored(run).filter((t) => frontOf(run).has(t.proposal.trial_id) && usable(t)).sort((a, b) => x(a) - x(b));
    return { points: members.map((t) => [x(t), y(t)]), dashed, color };
  };
  const other = state.compare;
  const lines = objectives.length === 2 && state.split === "scores"
    ? [frontLine(state.own, false, STYLE.front.color), ...(other && other.view ? [frontLine(other, true, COLORS.compare)] : [])] : [];
  const ghosts = other ? scored(other).filter(usable).map((t) => ({ x: x(t), y: y(t),
    title: `${other.id} trial #${t.proposal.number}: ${t.source_text}` })) : [];
  const holder = byId("plot");
  const width = Math.max(holder.clientWidth, 300);
  const drawing = scatter({ width, height: Math.round(Math.min(520, Math.max(300, width * 0.5))), points, ghosts, lines,
    style: STYLE, domain: state.zoom, integerX: one, xLabel: one ? "trial number" : axisLabel(objectives[i]),
    yLabel: axisLabel(objectives[j]), emptyText: state.split === "report" ? "no held-out scores yet" : "no finished trials yet" });
  state.geometry.scatter = drawing;
  holder.replaceChildren(drawing.root);
  holder.dataset.points = String(points.length);
  byId("zoom-reset").hidden = !state.zoom;
  renderLegend(byId("legend"), points, { style: STYLE, order: config.plot_order, frontLine: lines.length > 0,
    compare: other && ghosts.length ? `${other.id} (${other.view.strategy})` : null });
}

const axisLabel = (o) => `${o.name} (${o.direction})`;

function drawParallel(chosen) {
  const objectives = state.own.view.objectives;
  const front = frontOf(state.own);
  const kindOf = drawnKind(front);
  const rank = (t) => DRAW_ORDER.indexOf(kindOf(t)) + (chosen && t === chosen ? 10 : 0);
  const rows = scored(state.own).filter((t) => objectives.every((o) => Number.isFinite(t[state.split][o.name])));
  const lines = rows.sort((a, b) => rank(a) - rank(b)).map((t) => ({
    id: t.proposal.trial_id, kind: kindOf(t), values: objectives.map((o) => t[state.split][o.name]),
    classes: [chosen && t === chosen ? "selected" : "", inBrushes(t) ? "" : "dim"].filter(Boolean), title: tooltip(t, kindOf(t), front) }));
  const holder = byId("parallel");
  const drawing = parallel({ width: Math.max(holder.clientWidth, 300), height: 300, lines, style: STYLE, brushes: state.brushes,
    axes: objectives.map((o) => ({ name: o.name, label: `${o.name} ${o.direction === "minimize" ? "↓" : "↑"}`, minimize: o.direction === "minimize" })),
    emptyText: "no finished trials yet" });
  state.geometry.parallel = drawing.layout;
  holder.replaceChildren(drawing.root);
  holder.dataset.lines = String(lines.length);
  const kept = rows.filter(inBrushes).length;
  byId("brush-note").textContent = Object.keys(state.brushes).length
    ? `${kept} of ${rows.length} trials inside the kept ranges (shown in the scatter and the table)` : "drag along an axis to keep a range";
  byId("brush-clear").hidden = Object.keys(state.brushes).length === 0;
}

function drawHistory() {
  const runs = [[state.own, false, COLORS.own], ...(state.compare ? [[state.compare, true, COLORS.compare]] : [])];
  const series = (field) => runs.filter(([run]) => run.history).map(([run, dashed, color]) => ({
    name: `${run.id} (${run.view.strategy})`, color, dashed, points: run.history.points.map((p) => [p.settled, p[field]]) }));
  const width = Math.max(byId("history-macro").clientWidth, 260);
  const waiting = "waits for the single checkpoints' scores";
  byId("history-macro").replaceChildren(stepChart({ width, height: 220, series: series("best_macro"), xLabel: "trials settled",
    yLabel: "best normalized macro ↓", emptyText: waiting }));
  byId("history-hypervolume").replaceChildren(stepChart({ width, height: 220, series: series("hypervolume"), xLabel: "trials settled",
    yLabel: "hypervolume ↑", emptyText: waiting }));
  seriesLegend(byId("history-legend"), runs.map(([run, dashed, color]) => ({ name: `${run.id} (${run.view ? run.view.strategy : "…"})`, dashed, color })));
}

function drawTable(chosen) {
  const view = state.own.view;
  const front = frontOf(state.own);
  const kindOf = drawnKind(front);
  const ok = state.own.trials.filter((t) => t.status === "ok");
  const byMacro = (rows) => sortRows(rows, columns, { key: "macro", dir: 1 });
  const columns = sortColumns(view.objectives, front);
  const chosenRows = {
    best: () => byMacro(ok).slice(0, 10),
    front: () => ok.filter((t) => front.has(t.proposal.trial_id)),
    baselines: () => ok.filter((t) => t.kind !== "trial"),
    all: () => state.own.trials.slice(),
  }[state.rows]().filter(inBrushes);
  renderTable(byId("trials"), { rows: sortRows(chosenRows, columns, state.sort), columns, sort: state.sort, view, front,
    selectedId: chosen && chosen.proposal.trial_id, drawnKind: kindOf, style: STYLE,
    onSort: (k) => { state.sort = { key: k, dir: state.sort.key === k ? -state.sort.dir : 1 }; render(); }, onPick: select });
  byId("csv").disabled = state.own.trials.length === 0;
}

function select(id) {
  state.selected = id;
  render();
}

// ---- controls -------------------------------------------------------------------

let poller = null;
const controls = lifecycle({ state, api, render, selectedTrial, poll: () => poller.now(), frontOf, drawnKind });

function setUp(view) {
  weightsLegend(byId("weights-legend"), view.checkpoints);
  const objectives = view.objectives;
  const pair = byId("pair");
  if (objectives.length >= 3) {
    for (let a = 0; a < objectives.length; a++) {
      for (let b = a + 1; b < objectives.length; b++) pair.append(el("option", { value: `${a},${b}` }, `${objectives[a].name} vs ${objectives[b].name}`));
    }
    byId("pair-label").hidden = false;
    byId("parallel-panel").hidden = false;
  }
  const onChange = (id, apply) => byId(id).addEventListener("change", (event) => { apply(event.target.value); render(); });
  onChange("pair", (v) => { state.pair = v.split(",").map(Number); state.zoom = null; });
  onChange("split", (v) => { state.split = v; state.zoom = null; });
  onChange("rows", (v) => { state.rows = v; });
  onChange("compare", (v) => { state.compare = v ? emptyRun(v) : null; poller.now(); });
  byId("compare").addEventListener("focus", () => listComparable(view).catch(() => {}));
  listComparable(view).catch(() => {});
  for (const action of ["pause", "resume", "cancel"]) byId(action).addEventListener("click", () => controls.act(action));
  byId("export").addEventListener("click", controls.exportSelected);
  byId("csv").addEventListener("click", controls.downloadCsv);
  byId("zoom-reset").addEventListener("click", () => { state.zoom = null; render(); });
  byId("brush-clear").addEventListener("click", () => { state.brushes = {}; render(); });
  zoomAndPan(byId("plot"), () => state.geometry.scatter, (domain) => { state.zoom = domain; render(); }, select);
  brushAxes(byId("parallel"), () => state.geometry.parallel, (name, range) => {
    if (range) state.brushes = { ...state.brushes, [name]: range };
    else { const { [name]: _, ...rest } = state.brushes; state.brushes = rest; }
    render();
  }, select);
  let resizing = null;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(render, 150);
  });
}

poller = Recycle.poll(tick, () => state.own.view && FINISHED.has(state.own.view.status) && state.own.view.in_flight === 0 &&
  !(state.compare && state.compare.view && !FINISHED.has(state.compare.view.status)));
