// The jobs page: the newest jobs, filtered by status and tool, kept live by /ui/events.
import {
  STATUSES, api, ago, byId, formatDuration, h, hideError, isNotOlder, jobDurationMs,
  jobLink, progressBar, setupHeader, showError, statusBadge,
} from "./common.js";

const PAGE = 50;
const RETRY_MS = 3000;
const filters = new URLSearchParams(location.search);
const state = {
  status: STATUSES.includes(filters.get("status")) ? filters.get("status") : "",
  tool: filters.get("tool") || "",
  rows: new Map(), // job_id -> { job, tr }
  shown: PAGE, // how many rows the page keeps: a page, and one more per "show older jobs"
  total: 0,
  source: null,
};
const body = byId("jobs-body");

function matches(job) {
  return (!state.status || job.status === state.status) && (!state.tool || job.tool === state.tool);
}

function renderRow(entry) {
  const { job } = entry;
  const cells = [
    h("td", { class: "status", "data-label": "Status" }, statusBadge(job.status)),
    h("td", { class: "tool", "data-label": "Tool" }, h("a", { href: jobLink(job) }, job.tool)),
    h("td", { class: "id mono", "data-label": "Job" }, h("a", { href: jobLink(job), title: job.job_id }, shortId(job.job_id))),
    h("td", { class: "age", "data-label": "Age", title: new Date(job.created_at * 1000).toLocaleString() }, ago(job.created_at)),
    h("td", { class: "progress-col", "data-label": "Progress" }, progressBar(job)),
    h("td", { class: "duration", "data-label": "Duration" }, formatDuration(jobDurationMs(job))),
  ];
  entry.tr.className = `job-row status-${job.status}`;
  entry.tr.dataset.status = job.status;
  entry.tr.replaceChildren(...cells);
}

function shortId(id) {
  return id.length > 14 ? `${id.slice(0, 12)}…` : id;
}

function add(job, { atEnd = false } = {}) {
  const entry = { job, tr: h("tr", { "data-job-id": job.job_id }) };
  state.rows.set(job.job_id, entry);
  renderRow(entry);
  if (atEnd) {
    body.append(entry.tr);
    return;
  }
  // Newest first: before the first row submitted in the same second or earlier (a job first
  // heard of now is newer than those shown).
  const before = [...body.children].find((tr) => state.rows.get(tr.dataset.jobId).job.created_at <= job.created_at);
  body.insertBefore(entry.tr, before || null);
}

function remove(jobId) {
  const entry = state.rows.get(jobId);
  if (!entry) return;
  entry.tr.remove();
  state.rows.delete(jobId);
}

function oldestShown() {
  let oldest = Infinity;
  for (const { job } of state.rows.values()) oldest = Math.min(oldest, job.created_at);
  return oldest;
}

function onSnapshot(page) {
  state.shown = PAGE;
  state.rows.clear();
  body.replaceChildren();
  for (const job of page.jobs) add(job, { atEnd: true });
  state.total = page.total;
  refreshFooter();
}

function onJob(job) {
  const entry = state.rows.get(job.job_id);
  if (entry) {
    if (!isNotOlder(job, entry.job)) return;
    if (!matches(job)) {
      remove(job.job_id);
      state.total = Math.max(0, state.total - 1);
    } else {
      entry.job = job;
      renderRow(entry);
    }
  } else if (matches(job)) {
    // A job past the page's oldest one stays where "show older jobs" finds it.
    if (state.rows.size >= state.shown && job.created_at < oldestShown()) return;
    add(job);
    state.total += 1;
    while (state.rows.size > state.shown) remove(body.lastElementChild.dataset.jobId); // the oldest go
  }
  refreshFooter();
}

function refreshFooter() {
  byId("jobs-empty").hidden = state.rows.size > 0;
  byId("jobs-table").hidden = state.rows.size === 0;
  byId("load-more").hidden = state.rows.size >= state.total;
}

function onFigures(figures) {
  byId("fig-queue").textContent = figures.queue_depth;
  for (const status of STATUSES) byId(`fig-${status}`).textContent = figures.by_status[status] ?? 0;
  byId("fig-scope").textContent = figures.scope === "server"
    ? "All jobs on this server, as /metrics counts them."
    : "Your jobs; the queue depth is the server's.";
}

function setLive(text, live) {
  const el = byId("live");
  el.textContent = text;
  el.classList.toggle("on", live);
}

function connect() {
  if (state.source) state.source.close();
  const params = new URLSearchParams({ limit: String(PAGE) });
  if (state.status) params.set("status", state.status);
  if (state.tool) params.set("tool", state.tool);
  const source = new EventSource(`/ui/events?${params}`);
  state.source = source;
  source.addEventListener("jobs", (event) => onSnapshot(JSON.parse(event.data)));
  source.addEventListener("job", (event) => onJob(JSON.parse(event.data)));
  source.addEventListener("figures", (event) => onFigures(JSON.parse(event.data)));
  source.addEventListener("open", () => {
    setLive("live", true);
    hideError(byId("jobs-error"));
  });
  source.addEventListener("error", async () => {
    setLive("reconnecting…", false);
    if (source.readyState !== EventSource.CLOSED || state.source !== source) return;
    // Refused outright (the browser will not retry): find out why, then try again.
    const me = await api("/ui/api/me");
    if (!me.ok) showError(byId("jobs-error"), me.error);
    if (me.status !== 401) setTimeout(() => state.source === source && connect(), RETRY_MS);
  });
}

async function loadOlder() {
  const params = new URLSearchParams({ limit: String(PAGE), offset: String(state.rows.size) });
  if (state.status) params.set("status", state.status);
  if (state.tool) params.set("tool", state.tool);
  const answer = await api(`/ui/api/jobs?${params}`);
  if (!answer.ok) {
    showError(byId("jobs-error"), answer.error);
    return;
  }
  for (const job of answer.data.jobs) if (!state.rows.has(job.job_id)) add(job, { atEnd: true });
  state.shown = Math.max(state.shown, state.rows.size);
  state.total = answer.data.pagination.total;
  refreshFooter();
}

async function fillToolFilter() {
  const select = byId("filter-tool");
  const answer = await api("/ui/api/tools");
  const names = answer.ok ? answer.data.tools.map((tool) => tool.name) : [];
  if (state.tool && !names.includes(state.tool)) names.unshift(state.tool);
  for (const name of names) select.append(h("option", { value: name }, name));
  select.value = state.tool;
}

function onFilterChange() {
  state.status = byId("filter-status").value;
  state.tool = byId("filter-tool").value;
  const params = new URLSearchParams();
  if (state.status) params.set("status", state.status);
  if (state.tool) params.set("tool", state.tool);
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
  connect();
}

// Ages and running durations move on with the clock.
function tick() {
  for (const { job, tr } of state.rows.values()) {
    const age = tr.querySelector(".age");
    if (age) age.textContent = ago(job.created_at);
    if (job.status === "running") {
      const duration = tr.querySelector(".duration");
      if (duration) duration.textContent = formatDuration(jobDurationMs(job));
    }
  }
}

async function main() {
  byId("filter-status").value = state.status;
  byId("filters").addEventListener("change", onFilterChange);
  byId("filters").addEventListener("submit", (event) => event.preventDefault());
  byId("load-more").addEventListener("click", loadOlder);
  connect();
  setInterval(tick, 1000);
  await Promise.all([setupHeader(), fillToolFilter()]);
}

main();
