// What the buttons do: pause, resume, cancel, export the selected trial, download the CSV;
// and which searches can be overlaid on this one.
import { message } from "./facts.js";
import { trialsCsv } from "./tables.js";

const { call, el } = Recycle;
const byId = (id) => document.getElementById(id);

// ctx: {state, api, render, selectedTrial, poll, frontOf, drawnKind} from main.js.
export function lifecycle({ state, api, render, selectedTrial, poll, frontOf, drawnKind }) {
  async function act(action) {
    if (action === "cancel" && !window.confirm(`Cancel search ${state.own.id}? Trials in flight finish; nothing new starts. This cannot be undone.`)) return;
    try {
      const answer = await call("POST", `${api(state.own.id)}/${action}`, { body: {}, mutating: true });
      state.own.view = { ...state.own.view, status: answer.status };
      message(`Search ${answer.status}.`, "info", answer.status); // goes once the status moves on
      render();
    } catch (error) {
      message(`Could not ${action}: ${error.message}`, "error");
    }
    poll();
  }

  async function exportSelected() {
    const t = selectedTrial();
    if (!t) return;
    state.exportBusy = true;
    render();
    message(`Exporting trial #${t.proposal.number}…`);
    try {
      const answer = await call("POST", `${api(state.own.id)}/export`, { body: { trial_id: t.proposal.trial_id }, mutating: true });
      message(`Exported trial #${t.proposal.number} to ${answer.path} (HF directory, mergekit.yaml, recycle.json).`);
      byId("message").dataset.path = answer.path;
    } catch (error) {
      message(`Export failed: ${error.message}`, "error");
    } finally {
      state.exportBusy = false;
      render();
    }
  }

  function downloadCsv() {
    const front = frontOf(state.own);
    const blob = new Blob([trialsCsv(state.own.trials, state.own.view, front, drawnKind(front))], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `${state.own.id}-trials.csv` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  }

  return { act, exportSelected, downloadCsv };
}

// Searches that can be overlaid: same pool, same objectives.
export async function listComparable(view) {
  const { searches } = await call("GET", "/v1/searches", { ask: false });
  const names = JSON.stringify(view.objectives.map((o) => o.name));
  const choices = searches.filter((s) => s.id !== view.id && s.pool === view.pool && JSON.stringify(s.objectives.map((o) => o.name)) === names);
  const picker = byId("compare");
  const current = picker.value;
  picker.replaceChildren(el("option", { value: "" }, "none"),
    ...choices.map((s) => el("option", { value: s.id }, `${s.id} (${s.strategy}, ${s.done} trials)`)));
  picker.value = choices.some((s) => s.id === current) ? current : "";
  byId("compare-label").hidden = choices.length === 0;
}
