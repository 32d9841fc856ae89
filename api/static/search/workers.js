// Worker liveness: GET /v1/workers where the server has it (its API document lists it;
// a 404 still means unknown); otherwise the search view's `activity` (time since the last result while
// trials are in flight) stands in for it.
const { call, el, duration } = Recycle;

export function workerWatch() {
  let served = null; // does this server have /v1/workers? (its API document says; asked once)
  return async function refresh() {
    if (served === null) {
      const document = await call("GET", "/openapi.json", { ask: false });
      served = "/v1/workers" in (document.paths || {});
    }
    if (!served) return { known: false };
    try {
      return { known: true, ...(await call("GET", "/v1/workers", { ask: false })) };
    } catch (error) {
      if (error.status === 404) return { known: false };
      throw error;
    }
  };
}

// The warning, or "" when there is nothing to warn about.
export function workerWarning(view, workers) {
  if (view.status !== "running" || view.in_flight === 0) return "";
  const waiting = `${view.in_flight} trial${view.in_flight === 1 ? "" : "s"} in flight`;
  if (workers.known) {
    const alive = view.workers_alive ?? workers.workers.filter((w) => w.alive).length;
    if (alive > 0) return "";
    const last = Math.max(0, ...workers.workers.map((w) => w.last_heartbeat || 0));
    const since = last ? ` (last heartbeat ${duration(Date.now() / 1000 - last)} ago)` : "";
    return `No worker is alive${since}: the ${waiting} wait until one runs (recycle worker, or docker compose up worker).`;
  }
  const a = view.activity;
  if (!a || !a.stalled) return "";
  return `No result for ${duration(a.idle_s)} while ${waiting}: is a worker running? ` +
    "(This server does not report worker heartbeats; judged from the time since the last result.)";
}

export function renderWorkers(holder, workers, view) {
  if (!workers.known) {
    const a = view.activity;
    holder.replaceChildren(el("div", { class: "value small-value" }, "unknown"),
      el("div", { class: "small muted" }, a && a.idle_s !== null ? `last result ${duration(a.idle_s)} ago` : "no result yet"));
    return;
  }
  const alive = workers.workers.filter((w) => w.alive);
  const now = Date.now() / 1000;
  holder.replaceChildren(el("div", { class: "value small-value" }, `${alive.length} alive`),
    el("ul", { class: "workers small" }, ...workers.workers.map((w) => el("li", { "data-alive": w.alive ? "1" : "0",
      title: `${w.host} ${w.device}, pools ${(w.pools || []).join(", ") || "any"}; ${w.trials_done} trials done` +
        (w.current_trial ? `; running ${w.current_trial.trial_id}` : "") },
    el("span", { class: "dot" }), `${w.id} `, w.current_trial ? "busy" : "idle",
    el("span", { class: "muted" }, ` · ${duration(now - w.last_heartbeat)}`)))));
}
