// The tools: what each does, and a link to its form.
import { api, byId, h, setupHeader, showError, toolBadges } from "./common.js";

function item(tool) {
  const href = `/ui/tools/${encodeURIComponent(tool.name)}`;
  const summary = (tool.description || "").split("\n\n")[0];
  return h(
    "li",
    { class: "tool-item", "data-tool": tool.name, "data-search": `${tool.name} ${tool.title} ${tool.description}`.toLowerCase() },
    h("a", { href, class: "tool-name" }, tool.title || tool.name),
    h("span", { class: "mono muted" }, tool.name),
    h("p", { class: "description" }, summary),
    h("p", { class: "badges" }, toolBadges(tool)),
  );
}

async function main() {
  setupHeader();
  const answer = await api("/ui/api/tools");
  if (!answer.ok) {
    showError(byId("tools-error"), answer.error);
    return;
  }
  const list = byId("tool-list");
  list.replaceChildren(...answer.data.tools.map(item));
  byId("tool-search").addEventListener("input", (event) => {
    const words = event.target.value.toLowerCase().split(/\s+/).filter(Boolean);
    for (const li of list.children) li.hidden = !words.every((word) => li.dataset.search.includes(word));
  });
}

main();
