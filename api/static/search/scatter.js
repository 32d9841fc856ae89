// The Pareto scatter as pure SVG: one marker per trial, the front's line, the trials of a
// second search as hollow rings, and markers that land on one spot fanned out around it.
import { svg, scale, extent, marker, axes, emptyChart } from "./plot.js";

const MARGIN = { left: 70, right: 24, top: 14, bottom: 48 };
const DODGE_PX = 4; // markers closer than this are one spot...
const FAN_PX = 8; // ...and are drawn this far around it, with a leader line

// points: [{id, x, y, kind, classes, title, label}] in draw order (last on top).
// ghosts: [{x, y, title}] from another search; lines: [{points: [[x, y]], color, dashed}].
// domain: {x: [lo, hi], y: [lo, hi]} to zoom, else the data's extent.
export function scatter({ width, height, points, ghosts = [], lines = [], style, domain, xLabel, yLabel, integerX, emptyText }) {
  if (points.length === 0 && ghosts.length === 0) return { root: emptyChart(width, height, emptyText), frame: null };
  const all = points.concat(ghosts);
  const full = { x: extent(all.map((p) => p.x)), y: extent(all.map((p) => p.y)) };
  const shown = domain || full;
  const frame = { left: MARGIN.left, top: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
  const sx = scale(shown.x, [frame.left, frame.left + frame.width]);
  const sy = scale(shown.y, [frame.top + frame.height, frame.top]);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": `scatter of ${points.length} trials`, dataset: { xDomain: shown.x.join(","), yDomain: shown.y.join(",") } });
  root.append(svg("defs", {}, svg("clipPath", { id: "scatter-clip" },
    svg("rect", { x: frame.left, y: frame.top, width: frame.width, height: frame.height }))));
  root.append(axes(frame, sx, sy, { xLabel, yLabel, integerX }));
  const inside = svg("g", { "clip-path": "url(#scatter-clip)" });
  root.append(inside);
  for (const g of ghosts) {
    inside.append(svg("circle", { cx: sx(g.x), cy: sy(g.y), r: 3.2, class: "ghost" }, svg("title", {}, g.title)));
  }
  for (const line of lines) {
    if (line.points.length < 2) continue;
    inside.append(svg("polyline", { points: line.points.map(([x, y]) => `${sx(x)},${sy(y)}`).join(" "),
      class: line.dashed ? "front-line dashed" : "front-line", stroke: line.color }));
  }
  const placed = fanOut(points.map((p) => ({ ...p, px: sx(p.x), py: sy(p.y) })));
  const group = svg("g", { class: "points" });
  for (const p of placed) {
    if (p.fanned) {
      group.append(svg("line", { x1: p.px, y1: p.py, x2: p.fx, y2: p.fy, class: "leader" }));
    }
    const shape = marker(style[p.kind], p.fx, p.fy, { class: ["point", ...p.classes].join(" "),
      dataset: { trialId: p.id, kind: p.kind, ...(p.fanned ? { fanned: "1" } : {}) } });
    shape.append(svg("title", {}, p.title));
    group.append(shape);
    if (p.label) group.append(svg("text", { x: p.fx + 7, y: p.fy - 5, class: "point-label" }, p.label));
  }
  inside.append(group);
  return { root, frame, sx, sy, full };
}

// Markers other than plain trials that share a spot (a greedy step equal to the uniform
// soup, say) are spread on a small circle around it so each stays visible and clickable.
function fanOut(points) {
  const spots = [];
  for (const p of points) {
    p.fx = p.px;
    p.fy = p.py;
    if (p.kind === "trial") continue;
    const spot = spots.find((s) => Math.abs(s.x - p.px) < DODGE_PX && Math.abs(s.y - p.py) < DODGE_PX);
    if (spot) spot.members.push(p);
    else spots.push({ x: p.px, y: p.py, members: [p] });
  }
  for (const { x, y, members } of spots) {
    if (members.length < 2) continue;
    members.forEach((p, k) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * k) / members.length;
      p.fx = x + FAN_PX * Math.cos(angle);
      p.fy = y + FAN_PX * Math.sin(angle);
      p.fanned = true;
    });
  }
  return points;
}
