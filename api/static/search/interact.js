// Mouse handling for the charts, attached once to their (persistent) holders; each render
// replaces the SVG inside and these read its current geometry through `current()`.

const CLICK_PX = 3; // a press that moves less than this is a click
const ZOOM_STEP = 1.25; // per wheel notch

function local(holder, event) {
  const box = holder.querySelector("svg").getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
}

// Scatter: Ctrl+wheel zooms around the pointer, drag pans, double-click resets, click selects.
// current() -> {frame, sx, sy, full} of the drawing; onDomain({x, y} | null); onPick(trialId).
export function zoomAndPan(holder, current, onDomain, onPick) {
  let press = null;
  const domainOf = (c) => ({ x: c.sx.domain.slice(), y: c.sy.domain.slice() });
  holder.addEventListener("wheel", (event) => {
    const c = current();
    // Only with Ctrl (or Cmd) held: a plain wheel keeps scrolling the page past the plot.
    if (!c || !c.frame || !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    const [px, py] = local(holder, event);
    const factor = event.deltaY > 0 ? ZOOM_STEP : 1 / ZOOM_STEP;
    const [cx, cy] = [c.sx.invert(px), c.sy.invert(py)];
    const around = ([lo, hi], at) => [at + (lo - at) * factor, at + (hi - at) * factor];
    onDomain({ x: around(c.sx.domain, cx), y: around(c.sy.domain, cy) });
  }, { passive: false });
  holder.addEventListener("mousedown", (event) => {
    const c = current();
    if (!c || !c.frame || event.button !== 0) return;
    press = { at: local(holder, event), domain: domainOf(c), moved: false, target: event.target };
    event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    const c = current();
    if (!press || !c || !c.frame) return;
    const [px, py] = local(holder, event);
    const [dx, dy] = [px - press.at[0], py - press.at[1]];
    if (!press.moved && Math.hypot(dx, dy) < CLICK_PX) return;
    press.moved = true;
    const perX = (press.domain.x[1] - press.domain.x[0]) / c.frame.width;
    const perY = (press.domain.y[1] - press.domain.y[0]) / c.frame.height;
    onDomain({ x: press.domain.x.map((v) => v - dx * perX), y: press.domain.y.map((v) => v + dy * perY) });
  });
  window.addEventListener("mouseup", () => {
    if (press && !press.moved) {
      const point = press.target.closest && press.target.closest("[data-trial-id]");
      if (point) onPick(point.dataset.trialId);
    }
    press = null;
  });
  holder.addEventListener("dblclick", () => onDomain(null));
}

// Parallel coordinates: drag along an axis keeps a range of it, a click on an axis clears
// its range, a click on a line selects its trial.
// current() -> layout (axes with name, y scale); onBrush(name, [lo, hi] | null); onPick(trialId).
export function brushAxes(holder, current, onBrush, onPick) {
  let press = null;
  holder.addEventListener("mousedown", (event) => {
    if (event.button !== 0) return;
    const hit = event.target.closest("[data-axis]");
    const axis = hit && (current() || []).find((a) => a.name === hit.dataset.axis);
    press = { axis, y: local(holder, event)[1], moved: false, target: event.target };
    if (axis) event.preventDefault();
  });
  window.addEventListener("mousemove", (event) => {
    if (!press || !press.axis) return;
    const y = local(holder, event)[1];
    if (!press.moved && Math.abs(y - press.y) < CLICK_PX) return;
    press.moved = true;
    const clamp = (v) => Math.min(press.axis.bottom, Math.max(press.axis.top, v));
    const values = [press.axis.y.invert(clamp(press.y)), press.axis.y.invert(clamp(y))].sort((a, b) => a - b);
    onBrush(press.axis.name, values);
  });
  window.addEventListener("mouseup", () => {
    if (press && !press.moved) {
      if (press.axis) onBrush(press.axis.name, null);
      else {
        const line = press.target.closest && press.target.closest("[data-trial-id]");
        if (line) onPick(line.dataset.trialId);
      }
    }
    press = null;
  });
}
