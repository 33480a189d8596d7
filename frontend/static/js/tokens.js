// API tokens: create (the value is shown once), list and revoke.

import { del, describeError, get, post } from "./api.js";
import { formatDate, h } from "./dom.js";
import { clearFormErrors, showFieldError, showFormErrors } from "./forms.js";

const table = document.querySelector("#tokens-table tbody");
const listError = document.getElementById("tokens-error");
const form = document.getElementById("token-form");
const formError = document.getElementById("token-form-error");
const newToken = document.getElementById("new-token");
const newTokenValue = document.getElementById("new-token-value");
const copyStatus = document.getElementById("copy-status");

function stateOf(token) {
  if (token.revoked_at) return "revoked";
  if (token.expires_at && new Date(token.expires_at) <= new Date()) return "expired";
  return "active";
}

async function revoke(token) {
  if (!window.confirm(`Revoke the token "${token.name}"? Clients using it get 401 from now on.`)) return;
  try {
    await del(`tokens/${token.id}`);
    refresh();
  } catch (error) {
    listError.textContent = `Could not revoke: ${describeError(error)}`;
    listError.hidden = false;
  }
}

async function refresh() {
  try {
    const tokens = await get("tokens");
    listError.hidden = true;
    if (!tokens.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "7" }, "No API token yet.")));
      return;
    }
    table.replaceChildren(
      ...tokens.map((token) => {
        const state = stateOf(token);
        return h(
          "tr",
          { "data-token-id": String(token.id) },
          h("td", {}, token.name),
          h("td", {}, token.scopes.map((scope) => h("code", {}, scope, " "))),
          h("td", {}, formatDate(token.created_at)),
          h("td", {}, token.expires_at ? formatDate(token.expires_at) : "never"),
          h("td", {}, token.last_used_at ? formatDate(token.last_used_at) : "never"),
          h("td", {}, h("span", { class: `badge ${state === "active" ? "ready" : "failed"}` }, state)),
          h("td", {}, state === "active" ? h("button", { type: "button", class: "danger", onclick: () => revoke(token), "aria-label": `Revoke ${token.name}` }, "Revoke") : ""),
        );
      }),
    );
  } catch (error) {
    listError.textContent = `Could not load the tokens: ${describeError(error)}`;
    listError.hidden = false;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form, formError);
  const scopes = [...form.querySelectorAll('input[name="scope"]:checked')].map((box) => box.value);
  const body = { name: form.elements.name.value.trim(), scopes };
  const days = form.elements.expires_days.value.trim();
  if (days) body.expires_at = new Date(Date.now() + Number(days) * 86400e3).toISOString();
  let ok = true;
  if (!body.name) {
    showFieldError(form, "name", "Give the token a name.");
    ok = false;
  }
  if (!scopes.length) {
    showFieldError(form, "scopes", "Choose at least one scope.");
    ok = false;
  }
  if (!ok) return;
  try {
    const created = await post("tokens", body);
    newTokenValue.textContent = created.token;
    newToken.hidden = false;
    copyStatus.textContent = "";
    form.reset();
    newToken.scrollIntoView({ block: "nearest" });
    document.getElementById("copy-token").focus();
    refresh();
  } catch (error) {
    showFormErrors(form, formError, error, (message) => (/scope/i.test(message) ? "scopes" : /name/i.test(message) ? "name" : null));
  }
});

document.getElementById("copy-token").addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(newTokenValue.textContent);
    copyStatus.textContent = "Copied.";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(newTokenValue);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    copyStatus.textContent = "Selected: press Ctrl+C to copy.";
  }
});

refresh();
