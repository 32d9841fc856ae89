// Shared by the status pages: config, the API client (bearer token kept in
// sessionStorage, asked for with a prompt when the server wants one), small
// DOM and number helpers. Plain browser JavaScript, no build step.
"use strict";

const Recycle = (() => {
  const TOKEN_KEY = "recycle.token";
  const config = JSON.parse(document.getElementById("recycle-config").textContent);

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showTokenState() {
    const state = document.getElementById("token-state");
    if (state) state.hidden = !token();
  }

  function forgetToken() {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  }

  // Asks for the token; true when one was given (kept for this tab only).
  function askToken(reason) {
    const given = window.prompt(`${reason}\n\nAPI token (RECYCLE_API_TOKEN), kept in this browser tab only:`);
    if (given && given.trim()) {
      sessionStorage.setItem(TOKEN_KEY, given.trim());
      showTokenState();
      return true;
    }
    return false;
  }

  // One API call. `mutating` calls always need the token; reads need it only when the
  // server says so (401). A rejected token is forgotten and asked for once more.
  // `ask: false` never prompts (polling must not pop dialogs on its own after a refusal).
  async function call(method, path, { body, mutating = false, ask = true } = {}) {
    if (mutating && !token() && !(ask && askToken("This action needs the API token."))) {
      throw new ApiError(401, "no API token given");
    }
    for (let attempt = 0; ; attempt++) {
      const headers = { Accept: "application/json" };
      if (token()) headers.Authorization = `Bearer ${token()}`;
      if (body !== undefined) headers["Content-Type"] = "application/json";
      const response = await fetch(path, {
        method, headers, cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      let payload = null;
      try {
        payload = await response.json();
      } catch (_) {
        payload = null;
      }
      const message = (payload && payload.error) || `${response.status} ${response.statusText}`;
      if (response.status === 401 && attempt === 0 && ask) {
        forgetToken();
        if (askToken(message)) continue;
      }
      if (!response.ok) throw new ApiError(response.status, message);
      return payload;
    }
  }

  // A message across the top of the page, with an optional button; empty text hides it.
  function banner(text, actionLabel, action) {
    const element = document.getElementById("banner");
    element.replaceChildren(text || "");
    if (actionLabel) element.append(" ", el("button", { type: "button", onclick: action }, actionLabel));
    element.hidden = !text;
  }

  // el("td", {class: "num", title: "..."}, child, "text", ...): children are nodes or text.
  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const SVG_NS = "http://www.w3.org/2000/svg";
  function svg(tag, attributes = {}, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === undefined || value === null) continue;
      if (name === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(name, value);
    }
    for (const child of children.flat()) {
      if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fixed(value, digits = 4) {
    return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
  }

  function rate(value) {
    if (value === null || value === undefined) return "–";
    return value >= 10 ? value.toFixed(0) : value >= 1 ? value.toFixed(1) : value.toFixed(2);
  }

  function duration(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return "";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
    return `${(seconds / 3600).toFixed(1)} h`;
  }

  const FINISHED = new Set(["completed", "cancelled", "failed"]);

  // A status badge and a three-part bar (done, failed, in flight) against the budget.
  function statusBadge(status) {
    return el("span", { class: "status", "data-status": status }, status);
  }

  function progressBar(bar, view) {
    const budget = Math.max(view.budget, 1);
    const parts = { done: view.done, failed: view.failed, inflight: view.in_flight };
    for (const [name, count] of Object.entries(parts)) {
      bar.querySelector(`.seg.${name}`).style.width = `${Math.min(100, (100 * count) / budget)}%`;
    }
    bar.setAttribute("aria-valuemax", String(view.budget));
    bar.setAttribute("aria-valuenow", String(view.done + view.failed));
    bar.title = `${view.done} done, ${view.failed} failed, ${view.in_flight} in flight of ${view.budget}`;
  }

  function newProgressBar() {
    return el("div", { class: "bar", role: "progressbar", "aria-valuemin": "0" },
      el("span", { class: "seg done" }), el("span", { class: "seg failed" }), el("span", { class: "seg inflight" }));
  }

  // Polls `tick` every config.poll_seconds (slower when `idle()` says nothing changes any
  // more, paused while the tab is hidden). A 401 the user declines stops polling
  // until they give a token from the banner.
  function poll(tick, idle = () => false) {
    let timer = null;
    let running = false;
    let again = false;
    let stopped = false;
    async function run() {
      if (running) {
        again = true;  // asked for while a tick is under way: one more right after it
        return;
      }
      clearTimeout(timer);
      timer = null;
      if (document.hidden) return;
      running = true;
      try {
        await tick();
        banner("");
      } catch (error) {
        if (error.status === 401) {
          stopped = true;
          banner("This server needs the API token for reads too.", "Enter token", () => {
            if (askToken("Reads need the API token.")) {
              stopped = false;
              run();
            }
          });
        } else {
          banner(`Cannot reach the API: ${error.message}. Retrying…`);
        }
      } finally {
        running = false;
      }
      const delay = again ? 0 : 1000 * config.poll_seconds * (idle() ? 5 : 1);
      again = false;
      if (!stopped && !document.hidden) timer = setTimeout(run, delay);
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !stopped && timer === null) run();
    });
    run();
    return { now: () => { if (!stopped) run(); } };
  }

  document.addEventListener("DOMContentLoaded", () => {
    showTokenState();
    const forget = document.getElementById("token-forget");
    if (forget) forget.addEventListener("click", forgetToken);
  });

  return { config, call, el, svg, fixed, rate, duration, FINISHED, statusBadge, progressBar, newProgressBar, banner, poll, ApiError };
})();
