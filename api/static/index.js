// The searches list: one row per search, refreshed by polling /v1/searches.
"use strict";

(() => {
  const { call, el, fixed, rate, statusBadge, progressBar, newProgressBar, poll } = Recycle;

  function row(view) {
    const bar = newProgressBar();
    progressBar(bar, view);
    const best = view.best;
    const held = best && best.report_macro_average;
    return el("tr", { "data-search-id": view.id },
      el("td", {}, el("a", { href: `/searches/${encodeURIComponent(view.id)}` }, view.id)),
      el("td", {}, statusBadge(view.status)),
      el("td", {}, view.pool),
      el("td", {}, view.strategy),
      el("td", { class: "progress-col" }, bar,
        el("span", { class: "small" }, `${view.done + view.failed}/${view.budget}`,
          view.failed ? ` (${view.failed} failed)` : "", view.in_flight ? `, ${view.in_flight} in flight` : "")),
      el("td", { class: "num" }, rate(view.trials_per_s)),
      el("td", { class: "num", title: best ? `trial ${best.trial_id}` : "" }, best ? fixed(best.macro_average) : "–"),
      el("td", { class: "num" }, held === null || held === undefined ? "–" : fixed(held)),
      el("td", { class: "num" }, fixed(view.hypervolume)));
  }

  async function tick() {
    const { searches } = await call("GET", "/v1/searches");
    const body = document.querySelector("#searches tbody");
    body.replaceChildren(...searches.slice().reverse().map(row));
    document.getElementById("empty").hidden = searches.length > 0;
    document.getElementById("searches").hidden = searches.length === 0;
    document.body.dataset.searches = String(searches.length);
  }

  document.addEventListener("DOMContentLoaded", () => poll(tick));
})();
