// The head of the page: status, buttons, progress, best trial, hypervolume and what its
// reference point is, and the one-line message under the title.
const { fixed, rate, duration, progressBar } = Recycle;

const byId = (id) => document.getElementById(id);

// A message; `status` ties it to a status ("Search paused."): it goes when the status moves on.
export function message(text, kind = "info", status = "") {
  const element = byId("message");
  element.textContent = text;
  element.dataset.kind = kind;
  element.dataset.forStatus = status;
  delete element.dataset.path;
  element.hidden = !text;
}

export function renderFacts(view, { chosen, rowOf, exportBusy }) {
  const status = byId("status");
  status.textContent = view.status;
  status.dataset.status = view.status;
  document.title = `recycle: ${view.id} (${view.status})`;
  const note = byId("message");
  if (note.dataset.forStatus && note.dataset.forStatus !== view.status) message("");
  byId("pause").disabled = view.status !== "running";
  byId("resume").disabled = view.status !== "paused";
  byId("cancel").disabled = !(view.status === "running" || view.status === "paused");
  const exportButton = byId("export");
  exportButton.disabled = !chosen || chosen.status !== "ok" || exportBusy;
  exportButton.textContent = chosen ? `Export #${chosen.proposal.number}` : "Export";

  progressBar(byId("progress"), view);
  const settled = view.done + view.failed;
  byId("progress-text").textContent = `${settled} of ${view.budget} trials` + (view.failed ? ` (${view.failed} failed)` : "") +
    (view.in_flight ? `, ${view.in_flight} in flight` : "");
  byId("rate").textContent = rate(view.trials_per_s);
  const left = view.budget - settled;
  byId("eta").textContent = view.status === "running" && view.trials_per_s && left > 0 ? `about ${duration(left / view.trials_per_s)} left` : "";

  const best = view.best;
  byId("best-label").textContent = view.macro_label;
  byId("best").textContent = best ? fixed(best.macro_average) : "–";
  byId("best-detail").textContent = best
    ? `trial #${rowOf(best.trial_id)?.proposal.number ?? "?"} (${rowOf(best.trial_id)?.source_text ?? "…"})` +
      (best.report_macro_average !== null && best.report_macro_average !== undefined ? `, held-out ${fixed(best.report_macro_average)}` : "")
    : waitingForAnchors(view);

  byId("hypervolume").textContent = fixed(view.hypervolume);
  const reference = view.reference_point;
  byId("hypervolume-detail").textContent = reference
    ? `normalized tasks, reference point ${referenceText(reference)} (1 = the worst single checkpoint)`
    : waitingForAnchors(view);
  byId("hypervolume-detail").title = view.normalization ? view.normalization.scheme : "";
  byId("setup").textContent = `${view.strategy}, pool ${view.pool} (${view.checkpoints.length} checkpoints), ` +
    `${view.objectives.length} objective${view.objectives.length === 1 ? "" : "s"}, concurrency ${view.concurrency}`;
}

// Why the macro and hypervolume are not there yet: both are on the single checkpoints' scale.
function waitingForAnchors(view) {
  const a = view.anchors;
  return a ? `waits for the single checkpoints' scores (${a.settled} of ${a.needed})` : "";
}

function referenceText(reference) {
  return reference.every((v) => v === reference[0]) ? `${fixed(reference[0], 2)} on each task` : `(${reference.map((v) => fixed(v, 2)).join(", ")})`;
}
