// A step chart as pure SVG: values that change at trial counts (best so far, hypervolume),
// one series per search.
import { svg, scale, extent, axes, emptyChart } from "./plot.js";

const MARGIN = { left: 62, right: 16, top: 10, bottom: 46 };

// series: [{name, color, dashed, points: [[x, y]]}], x ascending, y null before it is known.
export function stepChart({ width, height, series, xLabel, yLabel, emptyText }) {
  const known = series.map((s) => ({ ...s, points: s.points.filter(([, y]) => Number.isFinite(y)) }));
  const all = known.flatMap((s) => s.points);
  if (all.length === 0) return emptyChart(width, height, emptyText);
  const frame = { left: MARGIN.left, top: MARGIN.top, width: width - MARGIN.left - MARGIN.right, height: height - MARGIN.top - MARGIN.bottom };
  const xs = [0, Math.max(...all.map(([x]) => x)) * 1.03]; // room after the last step, off the frame
  const sx = scale(xs[1] > xs[0] ? xs : [0, 1], [frame.left, frame.left + frame.width]);
  const sy = scale(extent(all.map(([, y]) => y)), [frame.top + frame.height, frame.top]);
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": yLabel });
  root.append(axes(frame, sx, sy, { xLabel, yLabel, integerX: true }));
  for (const s of known) {
    if (s.points.length === 0) continue;
    let d = `M${sx(s.points[0][0])},${sy(s.points[0][1])}`;
    for (let k = 1; k < s.points.length; k++) d += `H${sx(s.points[k][0])}V${sy(s.points[k][1])}`;
    root.append(svg("path", { d, class: s.dashed ? "step dashed" : "step", stroke: s.color, dataset: { series: s.name } },
      svg("title", {}, `${s.name}: ${s.points[s.points.length - 1][1].toFixed(4)} after ${s.points[s.points.length - 1][0]} trials`)));
  }
  return root;
}
