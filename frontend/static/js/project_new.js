// The "New project" form: builds the ProjectCreate body, shows the API's 422 messages next to the
// fields they concern (forms.js), then uploads the dataset file when the lead chose an upload.

import { describeError, post, request } from "./api.js";
import { clearFormErrors, focusFirstInvalid, showFieldError, showFormErrors } from "./forms.js";

const form = document.getElementById("project-form");
const formError = document.getElementById("form-error");
const formStatus = document.getElementById("form-status");
const submitButton = document.getElementById("create-project");
const formatSelect = form.elements["dataset.format"];
const pathField = document.getElementById("path-field");
const uploadField = document.getElementById("upload-field");
const sourceField = form.querySelector('[data-field="source"]');

const OPTIONAL_NUMBERS = ["dataset.train_limit", "dataset.test_limit", "disagreement_threshold", "evaluation.test_limit"];
const NUMBERS = ["draws", "budget", "overlap", "initial_sigma", "epochs", "finetune_epochs", "batch_size", "learning_rate", "seed"];

function source() {
  return form.querySelector('input[name="source"]:checked').value;
}

function syncSourceFields() {
  const needsFile = formatSelect.value !== "digits";
  sourceField.hidden = !needsFile;
  pathField.hidden = !needsFile || source() !== "path";
  uploadField.hidden = !needsFile || source() !== "upload";
}

function setPath(target, dottedKey, value) {
  const keys = dottedKey.split(".");
  let node = target;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys.at(-1)] = value;
}

function readNumber(name) {
  const raw = form.elements[name].value.trim();
  if (raw === "") return null;
  // Integer fields keep "2.5" as 2.5: the API's 422 then says what is wrong with it.
  return Number(raw);
}

function buildBody() {
  const body = { name: form.elements.name.value.trim(), dataset: { format: formatSelect.value } };
  if (formatSelect.value !== "digits" && source() === "path") {
    const path = form.elements["dataset.path"].value.trim();
    if (path) body.dataset.path = path;
  }
  for (const name of OPTIONAL_NUMBERS) {
    const value = readNumber(name);
    if (value !== null) setPath(body, name, value);
  }
  for (const name of NUMBERS) {
    const value = readNumber(name);
    if (value !== null) body[name] = value;
  }
  for (const name of ["model", "method", "strategy", "scoring"]) body[name] = form.elements[name].value;
  for (const name of ["show_class_name", "show_sigma_marker", "auto_close", "oracle_reference"]) body[name] = form.elements[name].checked;
  const corruptions = [...form.querySelectorAll('input[name="corruption"]')];
  const chosen = corruptions.filter((box) => box.checked).map((box) => box.value);
  body.evaluation = body.evaluation || {};
  if (chosen.length !== corruptions.length) body.evaluation.corruptions = chosen;
  body.evaluation.severities = [...form.querySelectorAll('input[name="severity"]:checked')].map((box) => Number(box.value));
  return body;
}

function checkLocally(body) {
  let ok = true;
  if (!body.name) {
    showFieldError(form, "name", "Give the project a name.");
    ok = false;
  }
  if (formatSelect.value !== "digits") {
    if (source() === "path" && !body.dataset.path) {
      showFieldError(form, "dataset.path", `A ${formatSelect.value} dataset needs its path under the import root.`);
      ok = false;
    }
    if (source() === "upload" && !form.elements.upload.files.length) {
      showFieldError(form, "upload", "Choose the file to upload.");
      ok = false;
    }
  }
  for (const input of form.querySelectorAll('input[type="number"]')) {
    if (!input.checkValidity()) {
      showFieldError(form, input.name, input.validationMessage);
      ok = false;
    }
  }
  return ok;
}

async function onSubmit(event) {
  event.preventDefault();
  clearFormErrors(form, formError);
  const body = buildBody();
  if (!checkLocally(body)) {
    focusFirstInvalid(form);
    return;
  }
  submitButton.disabled = true;
  formStatus.textContent = "Creating…";
  try {
    const project = await post("projects", body);
    if (formatSelect.value !== "digits" && source() === "upload") {
      formStatus.textContent = "Uploading the dataset…";
      const data = new FormData();
      data.append("file", form.elements.upload.files[0]);
      try {
        await request("POST", `projects/${project.id}/dataset`, { body: data });
      } catch (error) {
        formError.textContent = `The project was created but the upload failed: ${describeError(error)}. Open the project to try again.`;
        formError.hidden = false;
        formStatus.textContent = "";
        submitButton.disabled = false;
        return;
      }
    }
    location.assign(`/projects/${project.id}`);
  } catch (error) {
    formStatus.textContent = "";
    submitButton.disabled = false;
    showFormErrors(form, formError, error);
  }
}

form.addEventListener("submit", onSubmit);
formatSelect.addEventListener("change", syncSourceFields);
for (const radio of form.querySelectorAll('input[name="source"]')) radio.addEventListener("change", syncSourceFields);
syncSourceFields();
