// A job's page: everything about one job, live until it ends, and its Cancel button.
import {
  TERMINAL, api, byId, formatDuration, h, hideError, isNotOlder, jobDurationMs, prettyJson,
  progressOf, setupHeader, showError, statusBadge, timestamp,
} from "./common.js";

const jobId = decodeURIComponent(location.pathname.split("/").pop());
const MAX_SHOWN_CHARS = 200_000; // a huge result is cut on screen (the API has all of it)
let current = null;
let source = null;
let deliveriesShown = false;

function showJson(el, value) {
  let text = prettyJson(value);
  if (text.length > MAX_SHOWN_CHARS) text = `${text.slice(0, MAX_SHOWN_CHARS)}\n… (cut: ${text.length} characters in all)`;
  el.textContent = text;
}

function render(job) {
  current = job;
  document.title = `${job.tool} · ${job.status} · Conveyor`;
  byId("job").hidden = false;
  byId("job-tool").textContent = job.tool;
  byId("job-id").textContent = job.job_id;
  byId("job-status").replaceWith(Object.assign(statusBadge(job.status), { id: "job-status" }));
  byId("cancel").hidden = TERMINAL.has(job.status);
  renderProgress(job);
  renderOutcome(job);
  renderTimeline(job);
  renderDetails(job);
  renderArguments(job);
  renderSteps(job);
}

function renderProgress(job) {
  const panel = byId("progress-panel");
  const { value, text } = progressOf(job);
  panel.hidden = job.status !== "running" && job.status !== "queued" && !job.progress;
  const bar = byId("job-progress");
  if (value !== null) bar.value = value;
  else if (job.status === "running") bar.removeAttribute("value"); // indeterminate
  else bar.value = 0;
  byId("job-progress-text").textContent = [value !== null ? `${Math.round(value)}%` : "", text].filter(Boolean).join(" · ");
  const queued = job.status === "queued" && job.position_in_queue && job.status_message;
  byId("job-queue-text").textContent = queued ? `#${job.position_in_queue} in the queue` : "";
}

function renderOutcome(job) {
  const error = job.error;
  byId("error-panel").hidden = !error;
  if (error) {
    byId("error-code").textContent = error.code;
    byId("error-message").textContent = error.message;
    const fix = byId("error-fix");
    fix.hidden = !error.suggested_fix;
    fix.textContent = error.suggested_fix ? `Suggested fix: ${error.suggested_fix}` : "";
    const details = byId("error-details");
    details.hidden = !error.details;
    if (error.details) showJson(details, error.details);
  }
  byId("result-panel").hidden = job.status !== "completed";
  if (job.status === "completed") showJson(byId("job-result"), job.result);
}

function renderTimeline(job) {
  const items = [["Submitted", job.created_at]];
  if (job.started_at) items.push(["Started", job.started_at]);
  if (job.cancel_requested_at) items.push(["Cancel requested", job.cancel_requested_at]);
  if (job.completed_at) items.push([`Ended: ${job.status}`, job.completed_at]);
  else if (!job.started_at) items.push(["Waiting for a worker", null]);
  else items.push(["Running…", null]);
  byId("timeline").replaceChildren(
    ...items.map(([what, when]) => h("li", {}, h("span", { class: "what" }, what), h("time", { class: "muted" }, timestamp(when)))),
  );
}

function renderDetails(job) {
  const rows = [
    ["Duration", formatDuration(jobDurationMs(job))],
    ["Estimated", formatDuration(job.estimated_duration_ms)],
    ["Tool version", job.version],
    ["Attempts", job.attempts],
    ["Queue", job.queue],
    ["Timeout", formatDuration(job.timeout_ms)],
    ["Idempotency key", job.idempotency_key],
    ["Trace id", job.trace_id],
  ].filter(([, value]) => value !== null && value !== undefined && value !== "");
  byId("details").replaceChildren(...rows.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, String(value))]));
}

function renderArguments(job) {
  // As the job keeps them: a secret argument's place holds a marker, never its value.
  if (job.arguments === undefined) return; // REST views have none: keep what the stream showed
  byId("arguments-panel").hidden = false;
  showJson(byId("job-arguments"), job.arguments);
}

function renderSteps(job) {
  const steps = job.step_results || [];
  byId("steps-panel").hidden = steps.length === 0;
  byId("steps").replaceChildren(
    ...steps.map((step) => {
      const pre = h("pre", {});
      showJson(pre, step.result ?? null);
      return h("li", {}, h("strong", {}, String(step.step ?? "")), pre);
    }),
  );
}

async function loadDeliveries() {
  const answer = await api(`/ui/api/jobs/${encodeURIComponent(jobId)}/deliveries`);
  if (!answer.ok) return;
  const deliveries = answer.data.deliveries;
  byId("deliveries").hidden = deliveries.length === 0;
  byId("deliveries-empty").hidden = deliveries.length > 0;
  byId("deliveries-body").replaceChildren(
    ...deliveries.map((d) => h(
      "tr",
      {},
      h("td", { "data-label": "Event" }, d.event),
      h("td", { class: "mono wrap", "data-label": "URL" }, d.url),
      h("td", { "data-label": "Status" }, h("span", { class: `badge delivery-${d.status === "delivered" ? "ok" : d.status}` }, d.status)),
      h("td", { "data-label": "Attempts" }, String(d.attempts)),
      h("td", { "data-label": "Last attempt" }, timestamp(d.last_attempt_at)),
      h("td", { class: "wrap", "data-label": "Last error" }, d.last_error || ""),
    )),
  );
}

function update(job) {
  if (current && !isNotOlder(job, current)) return;
  if (current && job.arguments === undefined && current.arguments !== undefined) job = { ...job, arguments: current.arguments };
  render(job);
  if (TERMINAL.has(job.status)) {
    if (source) source.close();
    source = null;
    if (!deliveriesShown) loadDeliveries(); // made when the job ended; Refresh shows later attempts
    deliveriesShown = true;
  }
}

function follow() {
  source = new EventSource(`/ui/events?job_id=${encodeURIComponent(jobId)}`);
  const mine = source;
  source.addEventListener("job", (event) => update(JSON.parse(event.data)));
  source.addEventListener("error", async () => {
    if (mine.readyState !== EventSource.CLOSED || source !== mine) return;
    const answer = await api(`/ui/api/jobs/${encodeURIComponent(jobId)}`);
    if (answer.ok) update(answer.data);
    if (answer.ok && !TERMINAL.has(answer.data.status)) setTimeout(() => source === mine && follow(), 3000);
  });
}

async function cancel() {
  const button = byId("cancel");
  button.disabled = true;
  hideError(byId("cancel-error"));
  const answer = await api(`/ui/api/jobs/${encodeURIComponent(jobId)}`, { method: "DELETE" });
  button.disabled = false;
  if (!answer.ok) {
    showError(byId("cancel-error"), answer.error);
    return;
  }
  const note = byId("cancel-note");
  note.textContent = answer.data.message;
  note.hidden = false;
  const { message: _, ...job } = answer.data;
  update(job);
}

async function main() {
  byId("cancel").addEventListener("click", cancel);
  byId("deliveries-refresh").addEventListener("click", loadDeliveries);
  setupHeader();
  const answer = await api(`/ui/api/jobs/${encodeURIComponent(jobId)}`);
  if (!answer.ok) {
    showError(byId("job-error"), answer.error);
    return;
  }
  update(answer.data);
  follow(); // its first event carries the arguments too; a finished job's stream ends after it
  // A running job's duration moves on with the clock.
  setInterval(() => current && current.status === "running" && renderDetails(current), 1000);
}

main();
