// Shared by every page: requests to the page's own API, DOM built from text only (no markup is
// ever parsed from data: job arguments, results and errors are untrusted), and how times and jobs read.

export const STATUSES = ["queued", "running", "completed", "failed", "canceled", "timeout"];
export const TERMINAL = new Set(["completed", "failed", "canceled", "timeout"]);

// A request to /ui/api/…: { ok, status, data } or { ok: false, status, error } with the coded
// error of the REST API. A 401 means the session ended (signed out, key revoked): to the door.
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    return { ok: false, status: 0, error: { code: "NETWORK_ERROR", message: "Conveyor could not be reached; is it running?" } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok) return { ok: true, status: response.status, data };
  if (response.status === 401) goToSignIn();
  const error = (data && data.error) || { code: `HTTP_${response.status}`, message: response.statusText || "Request failed" };
  return { ok: false, status: response.status, error };
}

export function goToSignIn() {
  location.assign("/ui/login");
}

// h("a", { href: "/ui", class: "x" }, "text", child): an element; strings become text nodes.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function byId(id) {
  return document.getElementById(id);
}

// A coded error where the page shows errors: code, message, and what to do about it.
export function showError(el, error) {
  el.replaceChildren(
    h("span", { class: "code" }, error.code || "ERROR"),
    " ",
    error.message || "",
    error.argument ? h("span", { class: "argument" }, ` (argument: ${error.argument})`) : null,
    error.suggested_fix ? h("span", { class: "fix" }, error.suggested_fix) : null,
  );
  el.hidden = false;
}

export function hideError(el) {
  el.hidden = true;
  el.replaceChildren();
}

export function statusBadge(status) {
  const known = STATUSES.includes(status) ? status : "unknown";
  return h("span", { class: `badge status-${known}` }, status);
}

export function jobLink(job) {
  return `/ui/jobs/${encodeURIComponent(job.job_id)}`;
}

// { value: 0–100 or null (unknown), text } from a job's progress.
export function progressOf(job) {
  const progress = job.progress || {};
  let value = typeof progress.percentage === "number" ? progress.percentage : null;
  if (value === null && typeof progress.current_step === "number" && progress.total_steps) {
    value = (100 * progress.current_step) / progress.total_steps;
  }
  if (job.status === "completed") value = 100;
  if (value !== null) value = Math.max(0, Math.min(100, value));
  let text = progress.message || "";
  if (job.error && job.status !== "completed") text = `${job.error.code}: ${job.error.message}`;
  if (!text && job.status === "queued") {
    text = job.status_message || (job.position_in_queue ? `#${job.position_in_queue} in the queue` : "waiting");
  }
  return { value, text };
}

// A <progress> with its message; without a value while the job runs, the bar is indeterminate.
export function progressBar(job) {
  const { value, text } = progressOf(job);
  const bar = h("progress", { max: "100", "aria-label": "progress" });
  if (value !== null) bar.value = value;
  else if (job.status !== "running") bar.value = 0;
  const label = value !== null ? `${Math.round(value)}%` : "";
  return h("div", { class: "progress" }, bar, h("span", { class: "progress-text" }, [label, text].filter(Boolean).join(" · ")));
}

export function nowSeconds() {
  return Date.now() / 1000;
}

export function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const d = Math.max(0, nowSeconds() - seconds);
  if (d < 5) return "just now";
  if (d < 60) return `${Math.floor(d)} s ago`;
  if (d < 3600) return `${Math.floor(d / 60)} min ago`;
  if (d < 86400) return `${Math.floor(d / 3600)} h ago`;
  return `${Math.floor(d / 86400)} d ago`;
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

// How long the job ran (or has been running); null while it waits.
export function jobDurationMs(job) {
  if (typeof job.execution_time_ms === "number") return job.execution_time_ms;
  if (!job.started_at) return null;
  const end = job.completed_at || (TERMINAL.has(job.status) ? job.started_at : nowSeconds());
  return Math.max(0, end - job.started_at) * 1000;
}

export function timestamp(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

export function prettyJson(value) {
  const text = JSON.stringify(value, null, 2);
  return text === undefined ? String(value) : text;
}

// Events of one job can overtake a page's first look at it: never go back to an earlier state.
const RANK = { queued: 0, running: 1 };
export function isNotOlder(next, prev) {
  if (!prev) return true;
  if (TERMINAL.has(prev.status)) return TERMINAL.has(next.status);
  const rank = (job) => (TERMINAL.has(job.status) ? 2 : RANK[job.status] ?? 0);
  if ((next.attempts ?? 0) !== (prev.attempts ?? 0)) return (next.attempts ?? 0) > (prev.attempts ?? 0);
  return rank(next) >= rank(prev);
}

// The header: who is signed in, the current section, and sign-out.
export async function setupHeader() {
  const page = document.body.dataset.page;
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page || (page === "job" && link.dataset.nav === "jobs") || (page === "tool" && link.dataset.nav === "tools")) {
      link.setAttribute("aria-current", "page");
    }
  }
  const me = await api("/ui/api/me");
  if (!me.ok) return null;
  byId("who-name").textContent = `${me.data.key_id} · ${me.data.role}`;
  byId("who").hidden = false;
  byId("sign-out").addEventListener("click", async () => {
    await api("/ui/logout", { method: "POST" });
    goToSignIn();
  });
  return me.data;
}

// Tags for what a tool declares of itself.
export function toolBadges(tool) {
  const hints = tool.annotations || {};
  return [
    hints.read_only ? "read-only" : null,
    hints.destructive ? "destructive" : null,
    hints.idempotent ? "idempotent" : null,
    hints.open_world ? "open world" : null,
    tool.cancellable ? null : "not cancellable",
  ].filter(Boolean).map((name) => h("span", { class: `tag${name === "destructive" ? " warn" : ""}` }, name));
}
