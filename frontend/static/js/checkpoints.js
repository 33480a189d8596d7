// Checkpoints of every project the lead manages: metrics, sha256 and the download link.

import { describeError, get } from "./api.js";
import { formatDate, h, percent } from "./dom.js";

const table = document.querySelector("#checkpoints-table tbody");
const errorBox = document.getElementById("checkpoints-error");

function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function metric(checkpoint, name) {
  const value = checkpoint.metrics?.[name];
  return typeof value === "number" ? percent(value) : "–";
}

async function refresh() {
  try {
    const projects = await get("projects");
    const lists = await Promise.all(projects.map((project) => get(`projects/${project.id}/checkpoints`).then((items) => items.map((item) => ({ project, item })))));
    const rows = lists.flat().sort((a, b) => new Date(b.item.created_at) - new Date(a.item.created_at));
    if (!rows.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "9" }, "No checkpoint yet: a project publishes one after pretraining and after each round.")));
      return;
    }
    table.replaceChildren(
      ...rows.map(({ project, item }) =>
        h(
          "tr",
          { id: `checkpoint-${item.id}`, "data-checkpoint-id": String(item.id) },
          h("td", {}, h("a", { href: `/projects/${project.id}` }, project.name)),
          h("td", { class: "num" }, String(item.round_number)),
          h("td", {}, formatDate(item.created_at)),
          h("td", { class: "num" }, metric(item, "clean")),
          h("td", { class: "num" }, metric(item, "gaussian")),
          h("td", { class: "num" }, metric(item, "corruptions")),
          h("td", {}, h("code", { class: "sha", title: item.sha256 }, `${item.sha256.slice(0, 16)}…`)),
          h("td", { class: "num" }, size(item.size_bytes)),
          h("td", {}, h("a", { href: item.file_url, download: `project${project.id}_round${String(item.round_number).padStart(3, "0")}.safetensors` }, "download")),
        ),
      ),
    );
    if (location.hash) document.querySelector(location.hash)?.scrollIntoView();
  } catch (error) {
    errorBox.textContent = `Could not load the checkpoints: ${describeError(error)}`;
    errorBox.hidden = false;
  }
}

refresh();
