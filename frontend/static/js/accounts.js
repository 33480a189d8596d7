// Accounts (admins only, on the annotators page): change a role, deactivate or reactivate, reset a password.
// The server enforces every rule (admins only, one active admin at least); this page shows its answers.

import { describeError, get, post, request } from "./api.js";
import { h } from "./dom.js";
import { clearFormErrors, showFieldError, showFormErrors } from "./forms.js";

const ROLES = ["annotator", "lead", "admin"];
const table = document.querySelector("#accounts-table tbody");
const listError = document.getElementById("accounts-error");
const status = document.getElementById("accounts-status");
const passwordForm = document.getElementById("password-form");
const passwordError = document.getElementById("password-form-error");
const passwordStatus = document.getElementById("password-status");
const userSelect = document.getElementById("p-user");

function showError(message) {
  listError.textContent = message;
  listError.hidden = false;
}

async function change(user, body, done) {
  status.textContent = "";
  try {
    await request("PATCH", `users/${user.id}`, { json: body });
    status.textContent = done;
    listError.hidden = true;
  } catch (error) {
    showError(`Could not change ${user.username}: ${describeError(error)}`);
  }
  refresh();
}

function setActive(user, active) {
  const question = active
    ? `Let ${user.username} sign in again? Their old tokens stay revoked.`
    : `Deactivate ${user.username}? Their sessions and API tokens stop at once and their tasks go back to the pool.`;
  if (!window.confirm(question)) return;
  change(user, { is_active: active }, `${user.username} is ${active ? "active again" : "deactivated"}.`);
}

function setRole(user, select) {
  const role = select.value;
  if (role === user.role) return;
  if (!window.confirm(`Make ${user.username} ${role === "admin" ? "an" : "a"} ${role}? They are signed out of the browser.`)) {
    select.value = user.role;
    return;
  }
  change(user, { role }, `${user.username} is now ${role}.`);
}

function row(user) {
  const roleSelect = h(
    "select",
    { "aria-label": `Role of ${user.username}`, "data-action": "role" },
    ROLES.map((role) => h("option", { value: role, selected: role === user.role }, role)),
  );
  roleSelect.addEventListener("change", () => setRole(user, roleSelect));
  const toggle = user.is_active
    ? h("button", { type: "button", class: "danger", "data-action": "deactivate", onclick: () => setActive(user, false), "aria-label": `Deactivate ${user.username}` }, "Deactivate")
    : h("button", { type: "button", "data-action": "reactivate", onclick: () => setActive(user, true), "aria-label": `Reactivate ${user.username}` }, "Reactivate");
  return h(
    "tr",
    { "data-username": user.username, "data-active": String(user.is_active) },
    h("td", {}, user.username),
    h("td", {}, roleSelect),
    h("td", {}, h("span", { class: `badge ${user.is_active ? "ready" : "failed"}` }, user.is_active ? "active" : "deactivated")),
    h("td", {}, toggle),
  );
}

async function refresh() {
  try {
    const users = await get("users");
    table.replaceChildren(...users.map(row));
    const chosen = userSelect.value;
    userSelect.replaceChildren(...users.map((user) => h("option", { value: String(user.id) }, user.username)));
    if (chosen) userSelect.value = chosen;
  } catch (error) {
    showError(`Could not load the accounts: ${describeError(error)}`);
  }
}

passwordForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(passwordForm, passwordError);
  passwordStatus.textContent = "";
  const password = passwordForm.elements.password.value;
  if (password.length < 8) {
    showFieldError(passwordForm, "password", "At least 8 characters.");
    return;
  }
  const name = userSelect.selectedOptions[0]?.textContent ?? "";
  try {
    await post(`users/${userSelect.value}/password`, { password });
    passwordStatus.textContent = `New password set for ${name}.`;
    passwordForm.elements.password.value = "";
  } catch (error) {
    showFormErrors(passwordForm, passwordError, error, (message) => (/password/i.test(message) ? "password" : null));
  }
});

// The page's create form (annotators.js) resets itself after creating an account: show it here too.
document.getElementById("user-form").addEventListener("reset", () => refresh());

refresh();
