// Annotators: answer counts, median seconds and bias; and the form that creates accounts.

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

async function refresh() {
  try {
    const annotators = await get("annotators");
    listError.hidden = true;
    if (!annotators.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "4" }, "No annotator yet: create one below.")));
      return;
    }
    table.replaceChildren(
      ...annotators.map((row) =>
        h(
          "tr",
          { "data-username": row.username },
          h("td", {}, row.username),
          h("td", { class: "num" }, String(row.answers)),
          h("td", { class: "num" }, number(row.median_seconds, 1)),
          h("td", { class: "num" }, row.bias === null || row.bias === undefined ? "–" : `${row.bias > 0 ? "+" : ""}${row.bias.toFixed(1)}`),
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
