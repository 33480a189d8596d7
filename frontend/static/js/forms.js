// Shared by the small forms of the lead's pages: per-field messages from the API's 422.

import { describeError, fieldErrors } from "./api.js";

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
  if (!field) return false;
  field.classList.add("invalid");
  const slot = field.querySelector(".error");
  if (slot) slot.textContent = message;
  return true;
}

/** Put each 422 problem next to its field; what has no field goes to the summary line. */
export function showFormErrors(form, summary, error, guess = () => null) {
  const byField = fieldErrors(error);
  const unplaced = [];
  for (const [key, message] of Object.entries(byField)) {
    if (!showFieldError(form, key.split(".")[0], message)) unplaced.push(`${key}: ${message}`);
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
  form.querySelector(".field.invalid input, .field.invalid select")?.focus();
}
