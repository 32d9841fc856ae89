// Legends in HTML next to the charts: the trial kinds (as the PNG's legend) and the searches.
import { svg, marker } from "./plot.js";

const { el } = Recycle;
export const COLORS = { own: "#1f77b4", compare: "#ff7f0e" };

function kindMarker(kind, style, frontLine) {
  const box = svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" });
  if (kind === "front" && frontLine) box.append(svg("line", { x1: 0, x2: 14, y1: 7, y2: 7, stroke: style.front.color, "stroke-width": 1.5 }));
  box.append(marker(style[kind], 7, 7));
  return box;
}

// Singles, front and plain trials always; soups when present; the overlaid search if any.
export function renderLegend(holder, points, { style, order, frontLine, compare }) {
  const present = new Set(points.map((p) => p.kind));
  const entries = order.filter((k) => k === "single" || k === "front" || k === "trial" || present.has(k));
  const ring = svg("svg", { width: 14, height: 14, viewBox: "0 0 14 14", "aria-hidden": "true" }, svg("circle", { cx: 7, cy: 7, r: 3.2, class: "ghost" }));
  const items = entries.map((k) => el("span", { class: "entry", "data-kind": k }, kindMarker(k, style, frontLine), style[k].label));
  if (compare) items.push(el("span", { class: "entry compare", "data-kind": "compare" }, ring, compare));
  holder.replaceChildren(...items);
}

export function seriesLegend(holder, series) {
  holder.replaceChildren(...series.map((s) => el("span", { class: "entry" },
    svg("svg", { width: 22, height: 10, "aria-hidden": "true" }, svg("line", { x1: 0, x2: 22, y1: 5, y2: 5, stroke: s.color, "stroke-width": 2,
      "stroke-dasharray": s.dashed ? "5 3" : null })), s.name)));
}
