// Pure SVG drawing shared by the charts: numbers and sizes in, SVG nodes out. Nothing here
// reads the page, fetches or listens to events (interact.js does that).

// The SVG element builder is common.js's (loaded first on every page): one copy of it.
export const { svg } = Recycle;

// Round tick steps (1, 2, 5 x 10^k) covering [lo, hi].
export function ticks(lo, hi, count, integers = false) {
  const raw = (hi - lo) / Math.max(1, count) || 1;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].find((m) => m * magnitude >= raw) * magnitude;
  if (integers) step = Math.max(1, Math.round(step));
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const values = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-6; v += step) values.push(v);
  return { values, label: (v) => v.toFixed(Math.min(digits, 8)) };
}

// [lo, hi] of the values with 6% room each side (a single value gets some room too).
export function extent(values) {
  const finite = values.filter(Number.isFinite);
  if (finite.length === 0) return [0, 1];
  const lo = Math.min(...finite);
  const hi = Math.max(...finite);
  const pad = hi > lo ? (hi - lo) * 0.06 : Math.abs(lo) * 0.05 || 0.5;
  return [lo - pad, hi + pad];
}

// A linear map from a data interval onto a pixel interval, with its inverse.
export function scale([d0, d1], [p0, p1]) {
  const map = (v) => p0 + ((v - d0) / (d1 - d0)) * (p1 - p0);
  map.invert = (p) => d0 + ((p - p0) / (p1 - p0)) * (d1 - d0);
  map.domain = [d0, d1];
  return map;
}

// The SVG shape of one marker of a kind's style, centred on (x, y).
export function marker(style, x, y, attributes = {}) {
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

// A frame with grid lines, tick labels and axis titles; `frame` is {left, top, width, height}.
export function axes(frame, sx, sy, { xLabel, yLabel, integerX = false, xTitle = "", yTitle = "" }) {
  const group = svg("g", { class: "axes" });
  const { left, top, width, height } = frame;
  const xt = ticks(sx.domain[0], sx.domain[1], Math.max(3, Math.floor(width / 90)), integerX);
  const yt = ticks(sy.domain[0], sy.domain[1], Math.max(4, Math.floor(height / 50)));
  for (const v of xt.values) {
    group.append(svg("line", { x1: sx(v), x2: sx(v), y1: top, y2: top + height, class: "grid" }),
      svg("text", { x: sx(v), y: top + height + 16, "text-anchor": "middle" }, xt.label(v)));
  }
  for (const v of yt.values) {
    group.append(svg("line", { x1: left, x2: left + width, y1: sy(v), y2: sy(v), class: "grid" }),
      svg("text", { x: left - 6, y: sy(v) + 4, "text-anchor": "end" }, yt.label(v)));
  }
  const middle = top + height / 2;
  group.append(
    svg("rect", { x: left, y: top, width, height, class: "frame" }),
    svg("text", { x: left + width / 2, y: top + height + 38, "text-anchor": "middle", class: "axis-label" }, xLabel, xTitle ? svg("title", {}, xTitle) : null),
    svg("text", { x: 14, y: middle, "text-anchor": "middle", class: "axis-label", transform: `rotate(-90 14 ${middle})` }, yLabel,
      yTitle ? svg("title", {}, yTitle) : null));
  return group;
}

export function emptyChart(width, height, text) {
  return svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": text },
    svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, text));
}
