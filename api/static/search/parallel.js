// Parallel coordinates as pure SVG: one vertical axis per objective (better at the top),
// one line per trial through its scores, brushed ranges drawn on the axes.
import { svg, scale, ticks, extent, emptyChart } from "./plot.js";

const MARGIN = { left: 56, right: 56, top: 30, bottom: 34 };

// axes: [{name, label, minimize}]; lines: [{id, values (one per axis), kind, classes, title}]
// in draw order; brushes: {name: [lo, hi]} in score units.
export function parallel({ width, height, axes, lines, style, brushes = {}, emptyText }) {
  if (lines.length === 0) return { root: emptyChart(width, height, emptyText), layout: null };
  const top = MARGIN.top;
  const bottom = height - MARGIN.bottom;
  const gap = (width - MARGIN.left - MARGIN.right) / Math.max(1, axes.length - 1);
  const layout = axes.map((axis, k) => {
    const [lo, hi] = extent(lines.map((l) => l.values[k]));
    // Lower scores at the top for a loss, higher for a score to maximize.
    const y = axis.minimize ? scale([lo, hi], [top, bottom]) : scale([lo, hi], [bottom, top]);
    return { ...axis, x: MARGIN.left + k * gap, y, top, bottom };
  });
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `parallel coordinates of ${lines.length} trials over ${axes.length} objectives` });
  const drawn = svg("g", { class: "pc-lines" });
  const hits = svg("g", { class: "pc-hits" });
  for (const line of lines) {
    const points = line.values.map((v, k) => `${layout[k].x},${layout[k].y(v)}`).join(" ");
    drawn.append(svg("polyline", { points, class: ["pc-line", `kind-${line.kind}`, ...line.classes].join(" "),
      stroke: style[line.kind].color, dataset: { trialId: line.id, kind: line.kind } }));
    hits.append(svg("polyline", { points, class: "pc-hit", dataset: { trialId: line.id } }, svg("title", {}, line.title)));
  }
  root.append(drawn, hits);
  for (const axis of layout) root.append(axisGroup(axis, brushes[axis.name]));
  return { root, layout };
}

function axisGroup(axis, brush) {
  const group = svg("g", { class: "pc-axis", dataset: { axis: axis.name } });
  const t = ticks(...axis.y.domain, 5);
  group.append(svg("line", { x1: axis.x, x2: axis.x, y1: axis.top, y2: axis.bottom, class: "pc-spine" }));
  for (const v of t.values) {
    group.append(svg("line", { x1: axis.x - 4, x2: axis.x, y1: axis.y(v), y2: axis.y(v), class: "pc-tick" }),
      svg("text", { x: axis.x - 6, y: axis.y(v) + 3, "text-anchor": "end", class: "pc-tick-label" }, t.label(v)));
  }
  group.append(svg("text", { x: axis.x, y: axis.top - 12, "text-anchor": "middle", class: "axis-label" }, axis.label),
    svg("text", { x: axis.x, y: axis.bottom + 20, "text-anchor": "middle", class: "pc-note" }, "worse"));
  if (brush) {
    const [y0, y1] = [axis.y(brush[0]), axis.y(brush[1])].sort((a, b) => a - b);
    group.append(svg("rect", { x: axis.x - 7, y: y0, width: 14, height: Math.max(2, y1 - y0), class: "pc-brush" }));
  }
  // What a drag starts on: a band around the spine.
  group.append(svg("rect", { x: axis.x - 12, y: axis.top, width: 24, height: axis.bottom - axis.top, class: "pc-brush-hit",
    dataset: { axis: axis.name } }, svg("title", {}, `drag along ${axis.name} to keep a range; click to clear`)));
  return group;
}
