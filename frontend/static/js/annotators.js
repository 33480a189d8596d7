// Annotators: answer counts, median seconds, bias, error against gold (and who is flagged); and the
// form that creates accounts.

import { describeError, get, post } from "./api.js";
import { h } from "./dom.js";
import { clearFormErrors, showFieldError, showFormErrors } from "./forms.js";

const table = document.querySelector("#annotators-table tbody");
const listError = document.getElementById("annotators-error");
const form = document.getElementById("user-form");
const formError = document.getElementById("user-form-error");
const status = document.getElementById("user-status");

function number(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

/** A signed number: "+0.12", "-3.0"; "–" when missing. */
function signed(value, digits) {
  return value === null || value === undefined ? "–" : `${value > 0 ? "+" : ""}${value.toFixed(digits)}`;
}

/** Mean absolute error against gold in σ (ladder steps / 100) and which way the person leans. */
function goldError(row) {
  if (row.gold_error === null || row.gold_error === undefined) return "–";
  return `${(row.gold_error / 100).toFixed(2)} (leans ${signed(row.gold_bias / 100, 2)})`;
}

async function refresh() {
  try {
    const annotators = await get("annotators");
    listError.hidden = true;
    if (!annotators.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "6" }, "No annotator yet: create one below.")));
      return;
    }
    table.replaceChildren(
      ...annotators.map((row) =>
        h(
          "tr",
          { "data-username": row.username, "data-flagged": row.flagged ? "true" : "false" },
          h("td", {}, row.username, row.flagged ? [" ", h("span", { class: "badge flagged", title: "Past a project's gold error threshold" }, "flagged")] : null),
          h("td", { class: "num" }, String(row.answers)),
          h("td", { class: "num" }, number(row.median_seconds, 1)),
          h("td", { class: "num" }, signed(row.bias, 1)),
          h("td", { class: "num" }, String(row.gold_answers ?? 0)),
          h("td", { class: "num" }, goldError(row)),
        ),
      ),
    );
  } catch (error) {
    listError.textContent = `Could not load the annotators: ${describeError(error)}`;
    listError.hidden = false;
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form, formError);
  status.textContent = "";
  const body = {
    username: form.elements.username.value.trim(),
    role: form.elements.role.value,
    password: form.elements.password.value,
  };
  let ok = true;
  if (body.username.length < 2) {
    showFieldError(form, "username", "At least 2 characters.");
    ok = false;
  }
  if (body.password.length < 8) {
    showFieldError(form, "password", "At least 8 characters.");
    ok = false;
  }
  if (!ok) return;
  try {
    const user = await post("users", body);
    status.textContent = `Created ${user.role} ${user.username}.`;
    form.reset();
    refresh();
  } catch (error) {
    showFormErrors(form, formError, error, (message) =>
      /username|exists/i.test(message) ? "username" : /password/i.test(message) ? "password" : /role|annotator/i.test(message) ? "role" : null,
    );
  }
});

refresh();
