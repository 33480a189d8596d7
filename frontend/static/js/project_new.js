// The "New project" form: builds the ProjectCreate body, shows the API's 422 messages next to the
// fields they concern, then uploads the dataset file when the lead chose an upload.

import { ApiError, describeError, fieldErrors, post, request } from "./api.js";

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
  for (const name of ["model", "method", "strategy"]) body[name] = form.elements[name].value;
  for (const name of ["show_class_name", "show_sigma_marker", "auto_close"]) body[name] = form.elements[name].checked;
  const corruptions = [...form.querySelectorAll('input[name="corruption"]')];
  const chosen = corruptions.filter((box) => box.checked).map((box) => box.value);
  body.evaluation = body.evaluation || {};
  if (chosen.length !== corruptions.length) body.evaluation.corruptions = chosen;
  body.evaluation.severities = [...form.querySelectorAll('input[name="severity"]:checked')].map((box) => Number(box.value));
  return body;
}

function clearErrors() {
  formError.hidden = true;
  formError.textContent = "";
  for (const field of form.querySelectorAll(".field")) {
    field.classList.remove("invalid");
    const message = field.querySelector(".error");
    if (message) message.textContent = "";
  }
}

function showFieldError(key, message) {
  const field = form.querySelector(`[data-field="${CSS.escape(key)}"]`);
  if (!field || field.hidden) return false;
  field.classList.add("invalid");
  field.querySelector(".error").textContent = message;
  return true;
}

function showErrors(error) {
  const byField = fieldErrors(error);
  const unplaced = [];
  for (const [key, message] of Object.entries(byField)) {
    // "evaluation.corruptions.0" and the like belong to their list's field.
    const candidates = [key, key.split(".").slice(0, 2).join("."), key.split(".")[0]];
    if (!candidates.some((candidate) => showFieldError(candidate, message))) unplaced.push(`${key}: ${message}`);
  }
  if (!Object.keys(byField).length) {
    const message = describeError(error);
    // The service's path checks answer a plain message: it belongs next to the path.
    const aboutPath = /path|import root|not found|does not exist/i.test(message) && !pathField.hidden;
    if (aboutPath) showFieldError("dataset.path", message);
    else unplaced.push(message);
  }
  if (unplaced.length) {
    formError.textContent = unplaced.join(" · ");
    formError.hidden = false;
  }
  const firstInvalid = form.querySelector(".field.invalid input, .field.invalid select");
  (firstInvalid || formError).focus?.();
}

function checkLocally(body) {
  let ok = true;
  if (!body.name) {
    showFieldError("name", "Give the project a name.");
    ok = false;
  }
  if (formatSelect.value !== "digits") {
    if (source() === "path" && !body.dataset.path) {
      showFieldError("dataset.path", `A ${formatSelect.value} dataset needs its path under the import root.`);
      ok = false;
    }
    if (source() === "upload" && !form.elements.upload.files.length) {
      showFieldError("upload", "Choose the file to upload.");
      ok = false;
    }
  }
  for (const input of form.querySelectorAll('input[type="number"]')) {
    if (!input.checkValidity()) {
      showFieldError(input.name, input.validationMessage);
      ok = false;
    }
  }
  return ok;
}

async function onSubmit(event) {
  event.preventDefault();
  clearErrors();
  const body = buildBody();
  if (!checkLocally(body)) {
    form.querySelector(".field.invalid input, .field.invalid select")?.focus();
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
    if (error instanceof ApiError || error instanceof Error) showErrors(error);
  }
}

form.addEventListener("submit", onSubmit);
formatSelect.addEventListener("change", syncSourceFields);
for (const radio of form.querySelectorAll('input[name="source"]')) radio.addEventListener("change", syncSourceFields);
syncSourceFields();
