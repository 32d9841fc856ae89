// The trials table (sortable by any column with numbers), the selected trial's panel and
// the CSV of every trial. Rows are the server's trial rows (kind, macros included).
const { el, fixed } = Recycle;

// Colours of the checkpoints in weight bars: a fixed palette, then golden-angle hues.
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
export const checkpointColor = (k) => (k < PALETTE.length ? PALETTE[k] : `hsl(${(k * 137.508) % 360} 55% 55%)`);

const missingLast = (a, b, dir) => (a === null ? (b === null ? 0 : 1) : b === null ? -1 : dir * (a - b));

// The columns a user can sort by: key, header, value of a row, title.
export function sortColumns(objectives, front) {
  return [
    { key: "number", label: "#", value: (t) => t.proposal.number },
    { key: "front", label: "front", value: (t) => (front.has(t.proposal.trial_id) ? 0 : 1), title: "on the Pareto front (search split)" },
    ...objectives.map((o) => ({ key: `task:${o.name}`, label: `${o.name} ${o.direction === "minimize" ? "↓" : "↑"}`,
      value: (t) => (t.scores[o.name] === undefined ? null : t.scores[o.name] * (o.direction === "minimize" ? 1 : -1)),
      title: `raw ${o.name} score on the search split (${o.direction})`, raw: o.name })),
    { key: "macro", label: "macro ↓", value: (t) => t.macro_average, title: "normalized macro on the search split (lower is better)" },
    { key: "held", label: "held-out ↓", value: (t) => t.report_macro_average, title: "normalized macro on the held-out split" },
  ];
}

export function sortRows(rows, columns, sort) {
  const column = columns.find((c) => c.key === sort.key) || columns.find((c) => c.key === "macro");
  return rows.slice().sort((a, b) => missingLast(column.value(a), column.value(b), sort.dir) || a.proposal.number - b.proposal.number);
}

// Weights per layer group (view.weight_groups > 1): K x N values, group-major. Shown per checkpoint
// as the mean over the groups, labelled so; the CSV keeps every value.
function groupsOf(view) {
  return view.weight_groups || 1;
}

export function checkpointWeights(weights, view) {
  const n = view.checkpoints.length;
  const groups = groupsOf(view);
  if (groups === 1) return weights;
  return view.checkpoints.map((_, k) => {
    let sum = 0;
    for (let g = 0; g < groups; g += 1) sum += weights[g * n + k];
    return sum / groups;
  });
}

function weightColumns(view) {
  const groups = groupsOf(view);
  if (groups === 1) return view.checkpoints.map((c) => `weight:${c}`);
  return Array.from({ length: groups }, (_, g) => view.checkpoints.map((c) => `weight:group${g}:${c}`)).flat();
}

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

function kindDot(style) {
  const dot = el("span", { class: "kind-dot", title: style.label });
  dot.style.backgroundColor = style.color;
  return dot;
}

// table: the <table>; rows already chosen and sorted; drawnKind(row) the kind it is drawn as.
export function renderTable(table, { rows, columns, sort, view, front, selectedId, drawnKind, style, onSort, onPick }) {
  const head = el("tr", {}, ...columns.slice(0, 2).map((c) => header(c, sort, onSort)),
    el("th", {}, "source"), ...columns.slice(2).map((c) => header(c, sort, onSort)), el("th", { class: "weights-col" }, "weights"));
  table.tHead.replaceChildren(head);
  table.tBodies[0].replaceChildren(...rows.map((t) => {
    const id = t.proposal.trial_id;
    const row = el("tr", { "data-trial-id": id, class: id === selectedId ? "selected" : "" },
      el("td", { class: "num" }, t.proposal.number),
      el("td", {}, front.has(id) ? "★" : ""),
      el("td", {}, kindDot(style[drawnKind(t)]), t.source_text),
      ...view.objectives.map((o) => el("td", { class: "num" }, fixed(t.scores[o.name]))),
      el("td", { class: "num" }, fixed(t.macro_average)),
      el("td", { class: "num" }, fixed(t.report_macro_average)),
      el("td", { class: "weights-col" }, weightsBar(checkpointWeights(t.proposal.weights, view), view.checkpoints)));
    row.addEventListener("click", () => onPick(id));
    return row;
  }));
}

function header(column, sort, onSort) {
  const active = sort.key === column.key;
  const th = el("th", { class: "num sortable", title: column.title, "data-sort": column.key,
    "aria-sort": active ? (sort.dir > 0 ? "ascending" : "descending") : "none" },
  el("button", { type: "button", class: "link sort" }, column.label, active ? (sort.dir > 0 ? " ▲" : " ▼") : ""));
  th.firstChild.addEventListener("click", () => onSort(column.key));
  return th;
}

export function renderSelected(holder, t, { view, front, followsBest }) {
  if (!t) {
    holder.className = "muted";
    holder.replaceChildren("none yet");
    return;
  }
  const names = view.checkpoints;
  const weights = checkpointWeights(t.proposal.weights, view);
  const groups = groupsOf(view);
  const largest = Math.max(...weights.map(Math.abs), 1e-12);
  const used = weights.filter((w) => w > 0.01).length;
  const id = t.proposal.trial_id;
  holder.className = "";
  holder.replaceChildren(
    el("p", {}, el("strong", {}, `trial #${t.proposal.number}`), ` ${t.source_text}`,
      front.has(id) ? " ★ on the front" : "", followsBest ? " (best by normalized macro)" : ""),
    el("p", { class: "small muted" }, id, t.worker ? ` on ${t.worker}` : "",
      t.total_seconds ? `, ${t.total_seconds.toFixed(2)} s (merge ${t.merge_seconds.toFixed(2)} s)` : ""),
    t.status === "ok"
      ? el("table", { class: "grid compact" },
        el("thead", {}, el("tr", {}, el("th", {}, "task (raw)"), el("th", { class: "num" }, "search"), el("th", { class: "num" }, "held-out"))),
        el("tbody", {}, ...view.objectives.map((o) => el("tr", {}, el("td", {}, `${o.name} ${o.direction === "minimize" ? "↓" : "↑"}`),
          el("td", { class: "num" }, fixed(t.scores[o.name])), el("td", { class: "num" }, fixed(t.report && t.report[o.name])))),
        el("tr", { class: "total" }, el("td", { title: view.macro_label }, "normalized macro ↓"), el("td", { class: "num" }, fixed(t.macro_average)),
          el("td", { class: "num" }, fixed(t.report_macro_average)))))
      : el("p", { class: "error" }, `failed: ${t.error}`),
    el("p", { class: "small" }, groups > 1
      ? `weights, mean over ${groups} layer groups (${used} of ${names.length} checkpoints above 0.01)`
      : `weights (${used} of ${names.length} checkpoints above 0.01)`),
    el("div", { class: "weight-rows" }, ...names.map((n, k) => {
      const bar = el("span", { class: `fill${weights[k] < 0 ? " neg" : ""}` });
      bar.style.width = `${(100 * Math.abs(weights[k])) / largest}%`;
      bar.style.backgroundColor = checkpointColor(k);
      return el("div", { class: "weight-row", "data-checkpoint": n },
        el("span", { class: "name", title: n }, n), el("span", { class: "track" }, bar), el("span", { class: "num" }, weights[k].toFixed(3)));
    })));
}

export function weightsLegend(holder, names) {
  holder.replaceChildren("weights: ", ...names.map((n, k) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.backgroundColor = checkpointColor(k);
    return el("span", { class: "entry" }, swatch, n);
  }));
}

// Every trial as CSV (RFC 4180 quoting): what the table shows plus all weights and timings.
export function trialsCsv(trials, view, front, drawnKind) {
  const tasks = view.objectives.map((o) => o.name);
  const header = ["number", "trial_id", "source", "kind", "status", "on_front", "macro_normalized", "held_out_macro_normalized",
    ...tasks.map((t) => `search:${t}`), ...tasks.map((t) => `held_out:${t}`), ...weightColumns(view),
    "worker", "merge_seconds", "total_seconds", "error"];
  const quote = (v) => (v === null || v === undefined ? "" : /[",\n\r]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : String(v));
  const lines = trials.map((t) => [t.proposal.number, t.proposal.trial_id, t.source_text, drawnKind(t), t.status,
    front.has(t.proposal.trial_id) ? 1 : 0, t.macro_average, t.report_macro_average,
    ...tasks.map((n) => t.scores[n]), ...tasks.map((n) => t.report[n]), ...t.proposal.weights,
    t.worker, t.merge_seconds, t.total_seconds, t.error].map(quote).join(","));
  return [header.map(quote).join(","), ...lines].join("\r\n") + "\r\n";
}
