// The project page's gold questions: list the gold examples (known σ), add one by hand, add those
// whose answers agreed in earlier rounds, and delete one. σ is typed in as 0.00–0.90 and sent as its
// ladder index (σ × 100).

import { del, describeError, get, post, request } from "./api.js";
import { formatDate, h } from "./dom.js";
import { clearFormErrors, showFieldError, showFormErrors } from "./forms.js";

const projectId = document.getElementById("main").dataset.projectId;
const form = document.getElementById("gold-form");
const formError = document.getElementById("gold-form-error");
const agreementForm = document.getElementById("gold-agreement-form");
const agreementError = document.getElementById("gold-agreement-error");
const agreementStatus = document.getElementById("gold-agreement-status");
const listError = document.getElementById("gold-error");
const table = document.querySelector("#gold-table tbody");

const LADDER_MAX_INDEX = 90; // σ 0.90: aqpl/ladder.py

function showError(message) {
  listError.textContent = message;
  listError.hidden = false;
}

async function remove(gold) {
  if (!window.confirm(`Stop using example ${gold.example_id} as gold? Answers already given keep counting.`)) return;
  try {
    await del(`gold/${gold.id}`);
    refresh();
  } catch (error) {
    showError(`Could not delete: ${describeError(error)}`);
  }
}

async function refresh() {
  try {
    const golds = await get(`projects/${projectId}/gold`);
    listError.hidden = true;
    if (!golds.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "5" }, "No gold example yet.")));
      return;
    }
    table.replaceChildren(
      ...golds.map((gold) =>
        h(
          "tr",
          { "data-gold-id": String(gold.id), "data-example-id": String(gold.example_id) },
          h("td", { class: "num" }, String(gold.example_id)),
          h("td", { class: "num" }, gold.sigma.toFixed(2)),
          h("td", {}, gold.source),
          h("td", {}, formatDate(gold.created_at)),
          h(
            "td",
            {},
            h("button", { type: "button", class: "danger", onclick: () => remove(gold), "aria-label": `Delete gold example ${gold.example_id}` }, "Delete"),
          ),
        ),
      ),
    );
  } catch (error) {
    showError(`Could not load the gold examples: ${describeError(error)}`);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form, formError);
  const exampleId = Number(form.elements.example_id.value);
  const sigma = Number(form.elements.sigma.value);
  const sigmaIndex = Math.round(sigma * 100);
  let ok = true;
  if (!form.elements.example_id.value || !Number.isInteger(exampleId) || exampleId < 1) {
    showFieldError(form, "example_id", "Give the id of a training example of this project.");
    ok = false;
  }
  if (form.elements.sigma.value === "" || !Number.isFinite(sigma) || sigmaIndex < 0 || sigmaIndex > LADDER_MAX_INDEX) {
    showFieldError(form, "sigma_index", "σ is between 0.00 and 0.90.");
    ok = false;
  }
  if (!ok) return;
  try {
    await post(`projects/${projectId}/gold`, { example_id: exampleId, sigma_index: sigmaIndex });
    form.reset();
    refresh();
  } catch (error) {
    showFormErrors(form, formError, error, (message) => (/example/i.test(message) ? "example_id" : null));
  }
});

agreementForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(agreementForm, agreementError);
  agreementStatus.textContent = "";
  const maxMad = Number(agreementForm.elements.max_mad.value);
  const minAnswers = Number(agreementForm.elements.min_answers.value);
  let ok = true;
  if (agreementForm.elements.max_mad.value === "" || !Number.isFinite(maxMad) || maxMad < 0) {
    showFieldError(agreementForm, "max_mad", "A MAD of 0 steps or more.");
    ok = false;
  }
  if (!Number.isInteger(minAnswers) || minAnswers < 1) {
    showFieldError(agreementForm, "min_answers", "At least 1 answer.");
    ok = false;
  }
  if (!ok) return;
  try {
    const result = await post(`projects/${projectId}/gold/from-agreement`, { max_mad: maxMad, min_answers: minAnswers });
    agreementStatus.textContent = `Added ${result.added.length}, ${result.skipped_existing} already gold.`;
    refresh();
  } catch (error) {
    showFormErrors(agreementForm, agreementError, error);
  }
});

const settingsForm = document.getElementById("gold-settings-form");
const settingsError = document.getElementById("gold-settings-error");
const settingsStatus = document.getElementById("gold-settings-status");

settingsForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(settingsForm, settingsError);
  settingsStatus.textContent = "";
  const fields = settingsForm.elements;
  const body = {
    gold_rate: Number(fields.gold_rate.value) / 100,
    gold_max_error: Math.round(Number(fields.gold_max_error.value) * 100),
    gold_min_answers: Number(fields.gold_min_answers.value),
    exclude_flagged: fields.exclude_flagged.checked,
  };
  try {
    const saved = await request("PUT", `projects/${projectId}/gold/settings`, { json: body });
    document.getElementById("gold-config").textContent =
      `Gold rate ${Math.round(saved.gold_rate * 100)}% of tasks` +
      (saved.gold_rate === 0 ? " (no gold is handed out)" : "") +
      ` · flagged past a mean error of σ ${(saved.gold_max_error / 100).toFixed(2)} after ${saved.gold_min_answers} gold answers` +
      ` · flagged annotators' answers are ${saved.exclude_flagged ? "left out of" : "kept in"} aggregation`;
    settingsStatus.textContent = "Saved.";
  } catch (error) {
    showFormErrors(settingsForm, settingsError, error);
  }
});

refresh();
