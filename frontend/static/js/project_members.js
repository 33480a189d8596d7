// The project page's "Who annotates": every annotator, or only the ticked ones
// (GET/PUT /api/v1/projects/{id}/annotators). The accounts to tick come from /api/v1/users.

import { describeError, get, request } from "./api.js";
import { h } from "./dom.js";

const projectId = document.getElementById("main").dataset.projectId;
const form = document.getElementById("members-form");
const list = document.getElementById("members-list");
const error = document.getElementById("members-error");
const status = document.getElementById("members-status");

function showError(message) {
  error.textContent = message;
  error.hidden = false;
}

function render(members, accounts) {
  form.elements.scope.value = members.all_annotators ? "all" : "listed";
  const listed = new Set(members.annotators.map((member) => member.id));
  // Listed people stay visible even if their account is no longer among the annotators shown.
  const people = new Map(accounts.filter((user) => user.role === "annotator").map((user) => [user.id, user]));
  for (const member of members.annotators) if (!people.has(member.id)) people.set(member.id, member);
  const sorted = [...people.values()].sort((a, b) => a.username.localeCompare(b.username));
  if (!sorted.length) {
    list.replaceChildren(h("span", { class: "hint" }, "No annotator accounts yet (create them on the Annotators page)."));
    return;
  }
  list.replaceChildren(
    ...sorted.map((person) =>
      h(
        "label",
        {},
        h("input", { type: "checkbox", name: "member", value: String(person.id), checked: listed.has(person.id) }),
        ` ${person.username}`,
        person.is_active ? "" : h("span", { class: "hint" }, " (inactive)"),
      ),
    ),
  );
}

async function load() {
  try {
    const [members, accounts] = await Promise.all([get(`projects/${projectId}/annotators`), get("users")]);
    error.hidden = true;
    render(members, accounts);
  } catch (failure) {
    showError(`Could not load the project's annotators: ${describeError(failure)}`);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  error.hidden = true;
  status.textContent = "";
  const ticked = [...list.querySelectorAll("input[name=member]:checked")].map((box) => Number(box.value));
  const allAnnotators = form.elements.scope.value !== "listed";
  if (!allAnnotators && !ticked.length) {
    showError("Tick at least one annotator, or open the project to every annotator.");
    return;
  }
  try {
    const saved = await request("PUT", `projects/${projectId}/annotators`, {
      json: { all_annotators: allAnnotators, annotator_ids: ticked },
    });
    status.textContent = saved.all_annotators
      ? "Saved: every annotator takes this project's tasks."
      : `Saved: ${saved.annotators.length} annotator${saved.annotators.length === 1 ? " takes" : "s take"} this project's tasks.`;
  } catch (failure) {
    showError(`Could not save: ${describeError(failure)}`);
  }
});

load();
