// The projects list: status of every project the lead manages, refreshed while any is still busy.

import { describeError, get } from "./api.js";
import { formatDate, h } from "./dom.js";

const BUSY = new Set(["importing", "pretraining"]);
const REFRESH_MS = 2000;

const table = document.querySelector("#projects-table tbody");
const errorBox = document.getElementById("projects-error");

function statusBadge(project) {
  return h("span", { class: `badge ${project.status}`, title: project.error || undefined }, project.status);
}

function render(projects) {
  if (!projects.length) {
    table.replaceChildren(
      h("tr", { class: "empty-row" }, h("td", { colspan: "5" }, "No project yet. ", h("a", { href: "/projects/new" }, "Create one"), ".")),
    );
    return;
  }
  table.replaceChildren(
    ...projects.map((project) =>
      h(
        "tr",
        { "data-project-id": String(project.id) },
        h("td", {}, h("a", { href: `/projects/${project.id}` }, project.name)),
        h("td", {}, statusBadge(project), project.error ? h("div", { class: "hint" }, project.error) : null),
        h("td", { class: "num" }, String(project.num_train)),
        h("td", { class: "num" }, String(project.num_test)),
        h("td", {}, formatDate(project.created_at)),
      ),
    ),
  );
}

async function refresh() {
  try {
    const projects = await get("projects");
    errorBox.hidden = true;
    render(projects);
    if (projects.some((project) => BUSY.has(project.status))) setTimeout(refresh, REFRESH_MS);
  } catch (error) {
    errorBox.textContent = `Could not load the projects: ${describeError(error)}`;
    errorBox.hidden = false;
    setTimeout(refresh, REFRESH_MS * 3);
  }
}

refresh();
