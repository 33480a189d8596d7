// Shared by the forms of the lead's pages: each problem of the API's 422 next to its field, found by
// its `loc` (["body", "dataset", "path"] → the element data-field="dataset.path"); the rest in a summary.

import { ApiError, describeError } from "./api.js";

/** Field key ("dataset.path") → message, from the `errors` ({loc, msg}) that every 422 carries. */
function fieldErrors(error) {
  const errors = {};
  if (!(error instanceof ApiError) || !Array.isArray(error.body?.errors)) return errors;
  for (const item of error.body.errors) {
    const loc = item.loc[0] === "body" ? item.loc.slice(1) : item.loc;
    const key = loc.join(".") || "_";
    errors[key] = errors[key] ? `${errors[key]}; ${item.msg}` : item.msg;
  }
  return errors;
}

export function clearFormErrors(form, summary) {
  summary.hidden = true;
  summary.textContent = "";
  for (const field of form.querySelectorAll(".field")) {
    field.classList.remove("invalid");
    const message = field.querySelector(".error");
    if (message) message.textContent = "";
  }
}

export function showFieldError(form, key, message) {
  const field = form.querySelector(`[data-field="${CSS.escape(key)}"]`);
  if (!field || field.hidden) return false;
  field.classList.add("invalid");
  const slot = field.querySelector(".error");
  if (slot) slot.textContent = message;
  return true;
}

/** The message at the field of `key` or, for an item of a list or object ("evaluation.corruptions.0"), of its parent. */
function placeFieldError(form, key, message) {
  const parts = key.split(".");
  for (let length = parts.length; length > 0; length -= 1) {
    if (showFieldError(form, parts.slice(0, length).join("."), message)) return true;
  }
  return false;
}

export function focusFirstInvalid(form) {
  form.querySelector(".field.invalid input, .field.invalid select")?.focus();
}

/**
 * Put each 422 problem next to its field (by its `loc`); what has no field goes to the summary line.
 * `guess` names the field of an error that does not say it (a 409 on a taken name), from its message.
 */
export function showFormErrors(form, summary, error, guess = () => null) {
  const byField = fieldErrors(error);
  const unplaced = [];
  for (const [key, message] of Object.entries(byField)) {
    if (!placeFieldError(form, key, message)) unplaced.push(`${key}: ${message}`);
  }
  if (!Object.keys(byField).length) {
    const message = describeError(error);
    const key = guess(message);
    if (!key || !showFieldError(form, key, message)) unplaced.push(message);
  }
  if (unplaced.length) {
    summary.textContent = unplaced.join(" · ");
    summary.hidden = false;
  }
  focusFirstInvalid(form);
}
