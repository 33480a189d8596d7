// The project page's webhooks: add one (its signing secret is shown once), list, delete, and the
// delivery log of the chosen one (event, status, attempts, last status code, error, times).

import { del, describeError, get, post } from "./api.js";
import { formatDate, h } from "./dom.js";
import { clearFormErrors, showFieldError, showFormErrors } from "./forms.js";

const projectId = document.getElementById("main").dataset.projectId;
const form = document.getElementById("webhook-form");
const formError = document.getElementById("webhook-form-error");
const listError = document.getElementById("webhooks-error");
const table = document.querySelector("#webhooks-table tbody");
const created = document.getElementById("new-webhook");
const createdSecret = document.getElementById("new-webhook-secret");
const log = document.getElementById("deliveries");
const logTitle = document.getElementById("deliveries-title");
const logBody = document.querySelector("#deliveries-table tbody");

const STATUS_BADGE = { delivered: "ready", failed: "failed", pending: "importing" };
let shown = null; // the webhook whose delivery log is open

function showError(message) {
  listError.textContent = message;
  listError.hidden = false;
}

async function showDeliveries(webhook) {
  shown = webhook;
  try {
    const deliveries = await get(`webhooks/${webhook.id}/deliveries`);
    logTitle.textContent = `Delivery log of ${webhook.url}`;
    log.hidden = false;
    if (!deliveries.length) {
      logBody.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "8" }, "No delivery yet.")));
      return;
    }
    logBody.replaceChildren(
      ...deliveries.map((delivery) =>
        h(
          "tr",
          { "data-delivery-id": String(delivery.id) },
          h("td", {}, h("code", {}, delivery.event)),
          h("td", {}, h("span", { class: `badge ${STATUS_BADGE[delivery.status] ?? ""}` }, delivery.status)),
          h("td", { class: "num" }, String(delivery.attempts)),
          h("td", { class: "num" }, delivery.last_status_code ?? "–"),
          h("td", {}, delivery.error ?? ""),
          h("td", {}, formatDate(delivery.created_at)),
          h("td", {}, formatDate(delivery.last_attempt_at)),
          h("td", {}, formatDate(delivery.next_attempt_at)),
        ),
      ),
    );
  } catch (error) {
    showError(`Could not load the delivery log: ${describeError(error)}`);
  }
}

async function remove(webhook) {
  if (!window.confirm(`Delete the webhook to ${webhook.url} and its delivery log?`)) return;
  try {
    await del(`webhooks/${webhook.id}`);
    if (shown?.id === webhook.id) {
      shown = null;
      log.hidden = true;
    }
    refresh();
  } catch (error) {
    showError(`Could not delete: ${describeError(error)}`);
  }
}

async function refresh() {
  try {
    const webhooks = await get(`projects/${projectId}/webhooks`);
    listError.hidden = true;
    if (!webhooks.length) {
      table.replaceChildren(h("tr", { class: "empty-row" }, h("td", { colspan: "4" }, "No webhook yet.")));
      log.hidden = true;
      return;
    }
    table.replaceChildren(
      ...webhooks.map((webhook) =>
        h(
          "tr",
          { "data-webhook-id": String(webhook.id) },
          h("td", {}, h("code", {}, webhook.url)),
          h("td", {}, webhook.events.map((event) => h("code", {}, event, " "))),
          h("td", {}, formatDate(webhook.created_at)),
          h(
            "td",
            {},
            h("button", { type: "button", onclick: () => showDeliveries(webhook) }, "Deliveries"),
            " ",
            h("button", { type: "button", class: "danger", onclick: () => remove(webhook), "aria-label": `Delete the webhook to ${webhook.url}` }, "Delete"),
          ),
        ),
      ),
    );
    const open = webhooks.find((webhook) => webhook.id === shown?.id) ?? webhooks[0];
    showDeliveries(open);
  } catch (error) {
    showError(`Could not load the webhooks: ${describeError(error)}`);
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFormErrors(form, formError);
  const events = [...form.querySelectorAll('input[name="event"]:checked')].map((box) => box.value);
  const url = form.elements.url.value.trim();
  let ok = true;
  if (!url) {
    showFieldError(form, "url", "Give the URL to send the events to.");
    ok = false;
  }
  if (!events.length) {
    showFieldError(form, "events", "Choose at least one event.");
    ok = false;
  }
  if (!ok) return;
  try {
    const webhook = await post(`projects/${projectId}/webhooks`, { url, events });
    createdSecret.textContent = webhook.secret;
    created.hidden = false;
    form.elements.url.value = "";
    shown = webhook;
    refresh();
  } catch (error) {
    showFormErrors(form, formError, error, (message) => (/url|address|host/i.test(message) ? "url" : null));
  }
});

document.getElementById("refresh-deliveries").addEventListener("click", () => shown && showDeliveries(shown));

refresh();
