// A tool's page: its description and schemas, and a form that submits it as a job.
import { api, byId, h, hideError, prettyJson, setupHeader, showError, toolBadges } from "./common.js";
import { buildForm } from "./schema_form.js";

const name = decodeURIComponent(location.pathname.split("/").pop());

function jobOptions() {
  // What a job may carry beyond the tool's arguments.
  const option = (id, label, attrs) => h("label", { class: "field", for: id }, h("span", { class: "field-label" }, label), h("input", { id, ...attrs }));
  return h(
    "details",
    { class: "job-options" },
    h("summary", {}, "Job options"),
    h(
      "div",
      { class: "job-options-body" },
      option("opt-timeout", "Timeout (ms)", { type: "number", min: "1", step: "1", inputmode: "numeric" }),
      option("opt-idempotency", "Idempotency key", { type: "text", maxlength: "200", spellcheck: "false" }),
      option("opt-webhook", "Webhook URL", { type: "url", spellcheck: "false", placeholder: "https://…" }),
    ),
  );
}

function submission(form) {
  const read = form.read();
  if (read.problem) return read;
  const body = { tool: name, arguments: read.arguments };
  const timeout = byId("opt-timeout").value;
  if (timeout) body.timeout_ms = Number(timeout);
  if (byId("opt-idempotency").value) body.idempotency_key = byId("opt-idempotency").value;
  if (byId("opt-webhook").value) body.webhook_url = byId("opt-webhook").value;
  return { body };
}

function markInvalid(form, argument) {
  for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  const el = argument ? form.field(String(argument).split(".")[0]) : null;
  if (el) {
    el.setAttribute("aria-invalid", "true");
    el.focus();
  }
}

async function main() {
  setupHeader();
  const answer = await api("/ui/api/tools");
  if (!answer.ok) {
    showError(byId("tool-error"), answer.error);
    return;
  }
  const tool = answer.data.tools.find((t) => t.name === name);
  if (!tool) {
    showError(byId("tool-error"), { code: "TOOL_NOT_FOUND", message: `There is no tool called ${name}`, suggested_fix: "Pick one from the list of tools." });
    return;
  }
  document.title = `${tool.title || tool.name} · Conveyor`;
  byId("tool").hidden = false;
  byId("tool-title").textContent = tool.title || tool.name;
  byId("tool-name").textContent = tool.name;
  byId("tool-description").textContent = tool.description || "";
  byId("tool-badges").replaceChildren(...toolBadges(tool));
  byId("input-schema").textContent = prettyJson(tool.input_schema);
  byId("output-panel").hidden = !tool.output_schema;
  if (tool.output_schema) byId("output-schema").textContent = prettyJson(tool.output_schema);

  const form = buildForm(byId("tool-fields"), tool.input_schema);
  byId("tool-fields").append(jobOptions());
  byId("tool-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const errorBox = byId("submit-error");
    hideError(errorBox);
    const { body, problem } = submission(form);
    if (problem) {
      showError(errorBox, problem);
      markInvalid(form, problem.argument);
      return;
    }
    byId("submit").disabled = true;
    const sent = await api("/ui/api/jobs/submit", { method: "POST", body });
    byId("submit").disabled = false;
    if (!sent.ok) {
      showError(errorBox, sent.error);
      markInvalid(form, sent.error.argument);
      return;
    }
    location.assign(`/ui/jobs/${encodeURIComponent(sent.data.job_id)}`);
  });
}

main();
