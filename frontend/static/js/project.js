// The project page: live status and progress (polling the API), the round buttons, the rounds
// table and charts (an HTML fragment rendered by the server) and the current round's queries.

import { describeError, get, post } from "./api.js";
import { h } from "./dom.js";

const main = document.querySelector("main[data-project-id]");
const projectId = Number(main.dataset.projectId);
const FAST_POLL_MS = 1500; // while something runs
const SLOW_POLL_MS = 5000; // while the project waits for the lead
const RUNNING_ROUND_STATES = new Set(["scoring", "aggregating", "training", "evaluating"]);
const STEP_NAMES = {
  awaiting_upload: "Waiting for the dataset upload",
  importing: "Importing the dataset",
  pretraining: "Pretraining",
  scoring: "Scoring examples",
  selecting: "Selecting queries",
  aggregating: "Aggregating answers",
  training: "Training",
  evaluating: "Evaluating",
};

const $ = (id) => document.getElementById(id);
const ui = {
  status: $("project-status"),
  error: $("project-error"),
  action: $("action-status"),
  launch: $("launch-round"),
  close: $("close-round"),
  retry: $("retry"),
  roundHeading: $("round-heading"),
  stepLine: $("step-progress"),
  stepBar: $("step-bar"),
  stepCaption: $("step-caption"),
  eta: $("round-eta"),
  answerLine: $("answer-progress"),
  answerBar: $("answer-bar"),
  answerCaption: $("answer-caption"),
  stats: $("stats"),
  panels: $("panels"),
  queries: $("queries-section"),
};

let project = null;
let panelsSignature = null;
let queriesSignature = null;
let pollTimer = null;
let busyAction = false;

function roundOf(current) {
  return current?.current_round ?? null;
}

function setBadge(element, value) {
  element.className = `badge ${value}`;
  element.textContent = value;
}

function showProgress(line, bar, caption, progress, label) {
  if (!progress || !progress.total) {
    line.hidden = true;
    return;
  }
  line.hidden = false;
  bar.max = progress.total;
  bar.value = Math.min(progress.done, progress.total);
  const name = STEP_NAMES[progress.step] || progress.step;
  caption.textContent = `${label ? `${label}: ` : ""}${name} ${progress.done} / ${progress.total}`;
}

// "12 s", "3 min 5 s", "2 h 10 min": as the rounds table's timeline (backend/ui/timeline_bar.py).
function durationText(seconds) {
  const whole = Math.round(seconds);
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return whole % 60 ? `${minutes} min ${whole % 60} s` : `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return minutes % 60 ? `${hours} h ${minutes % 60} min` : `${hours} h`;
}

// The API's estimate for a running scoring or training step: (total − done) at the throughput
// measured since the step began (backend/rounds/timeline.py).
function showEta(round) {
  const eta = round && ["scoring", "training"].includes(round.state) ? round.eta_seconds : null;
  ui.eta.hidden = eta === null || eta === undefined;
  if (!ui.eta.hidden) {
    const elapsed = round.state_seconds?.[round.state] ?? 0;
    ui.eta.textContent = `· about ${durationText(eta)} left (${durationText(elapsed)} so far)`;
  }
}

function renderStatus(current) {
  const round = roundOf(current);
  setBadge(ui.status, current.status);
  const errors = [];
  if (current.status === "failed" && current.error) errors.push(`Project failed: ${current.error}`);
  if (round?.state === "failed") errors.push(`Round ${round.number} failed${round.failed_state ? ` while ${round.failed_state}` : ""}: ${round.error || "no message"}`);
  ui.error.hidden = errors.length === 0;
  ui.error.textContent = errors.join(" · ");

  if (round) {
    ui.roundHeading.replaceChildren(`Round ${round.number}: `, h("span", { class: `badge ${round.state}`, id: "round-state" }, round.state));
  } else {
    ui.roundHeading.textContent = current.status === "ready" ? "No round yet: launch the first one." : "Preparing the project…";
  }
  const stepProgress = current.status !== "ready" ? current.progress : round && RUNNING_ROUND_STATES.has(round.state) ? round.progress : null;
  showProgress(ui.stepLine, ui.stepBar, ui.stepCaption, stepProgress, round && current.status === "ready" ? `Round ${round.number}` : "");
  showEta(current.status === "ready" ? round : null);
  if (round && round.counts.queries > 0 && ["annotating", "aggregating"].includes(round.state)) {
    ui.answerLine.hidden = false;
    ui.answerBar.max = round.counts.queries;
    ui.answerBar.value = round.counts.complete_queries;
    ui.answerCaption.textContent = `${round.counts.complete_queries} / ${round.counts.queries} queries complete · ${round.counts.answers} answers from ${round.counts.annotators} annotator${round.counts.annotators === 1 ? "" : "s"}`;
  } else {
    ui.answerLine.hidden = true;
  }

  ui.launch.disabled = busyAction || current.status !== "ready" || (round !== null && round.state !== "published");
  ui.close.disabled = busyAction || round?.state !== "annotating";
  const canRetry = current.status === "failed" || round?.state === "failed";
  ui.retry.hidden = !canRetry;
  ui.retry.disabled = busyAction;
}

function stat(label, value, id) {
  return h("div", { class: "stat", id }, h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
}

function renderStats(current) {
  const config = current.config || {};
  const shape = current.image_shape ? current.image_shape.join("×") : "–";
  ui.stats.replaceChildren(
    stat("training examples", current.num_train, "stat-train"),
    stat("test examples", current.num_test, "stat-test"),
    stat("σ from queries", current.counts.queried, "stat-queried"),
    stat("σ adapted", current.counts.adapted, "stat-adapted"),
    stat("σ initial", current.counts.initial, "stat-initial"),
    stat("image H×W×C", shape),
    stat("model · method", `${config.model ?? "–"} · ${config.method ?? "–"}`),
    stat("strategy", config.strategy ?? "–"),
    stat("M · B · k", `${config.draws ?? "–"} · ${config.budget ?? "–"} · ${config.overlap ?? "–"}`),
    stat("latest checkpoint", current.latest_checkpoint ? `round ${current.latest_checkpoint.round_number}` : "–", "stat-checkpoint"),
  );
}

async function refreshPanels() {
  try {
    const response = await fetch(`/projects/${projectId}/panels`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    // Server-rendered from numbers with every text escaped (backend/ui/charts.py, _project_panels.html).
    ui.panels.innerHTML = await response.text();
  } catch (error) {
    ui.panels.replaceChildren(h("p", { class: "notice error" }, `Could not load the rounds and charts: ${describeError(error)}`));
  }
}

function thumbnail(query) {
  const answers = query.answers.length ? query.answers.map((index) => (index / 100).toFixed(2)).join(", ") : "none yet";
  const result = query.result_sigma_index === null ? "" : ` → ${(query.result_sigma_index / 100).toFixed(2)}`;
  return h(
    "figure",
    { class: "thumb", "data-query-id": String(query.id), "data-example-id": String(query.example_id) },
    h("img", { src: query.image_url, alt: `example ${query.example_id}`, loading: "lazy", width: "108", height: "108" }),
    h("figcaption", {},
      h("div", {}, `H = ${query.score.toFixed(3)}`),
      h("div", {}, `σ ${(query.sigma_index_before / 100).toFixed(2)}${result}`),
      h("div", { class: "answers" }, `answers (${query.answer_count}/${query.required_answers}): ${answers}`),
      // The simulated oracle's σ_o (projects that train F_o; recorded when the round is aggregated).
      query.oracle_sigma_index === null ? null : h("div", { class: "oracle" }, `σ_o ${(query.oracle_sigma_index / 100).toFixed(2)}`),
    ),
  );
}

async function refreshQueries(round) {
  if (!round || round.state === "scoring" || round.counts.queries === 0) {
    ui.queries.hidden = true;
    return;
  }
  try {
    const queries = await get(`rounds/${round.id}/queries`);
    $("queries-title").textContent = `Selected examples of round ${round.number}`;
    const bySide = { excessive: [], deficient: [], other: [] };
    for (const query of queries) (bySide[query.side] || bySide.other).push(query);
    bySide.excessive.sort((a, b) => b.score - a.score);
    bySide.deficient.sort((a, b) => a.score - b.score);
    $("thumbs-excessive").replaceChildren(...(bySide.excessive.length ? bySide.excessive.map(thumbnail) : [h("p", { class: "hint" }, "none")]));
    $("thumbs-deficient").replaceChildren(...(bySide.deficient.length ? bySide.deficient.map(thumbnail) : [h("p", { class: "hint" }, "none")]));
    $("other-queries").hidden = bySide.other.length === 0;
    $("thumbs-other").replaceChildren(...bySide.other.map(thumbnail));
    ui.queries.hidden = false;
  } catch (error) {
    ui.action.textContent = `Could not load the round's queries: ${describeError(error)}`;
  }
}

function isBusy(current) {
  const round = roundOf(current);
  return (
    ["importing", "pretraining"].includes(current.status) ||
    (round !== null && (RUNNING_ROUND_STATES.has(round.state) || round.state === "annotating"))
  );
}

async function poll() {
  clearTimeout(pollTimer);
  let delay = FAST_POLL_MS;
  try {
    project = await get(`projects/${projectId}`);
    renderStatus(project);
    renderStats(project);
    const round = roundOf(project);
    const nextPanels = JSON.stringify([project.status, round?.number, round?.state, round?.counts.answers, round?.counts.complete_queries, project.latest_checkpoint?.id]);
    if (nextPanels !== panelsSignature) {
      panelsSignature = nextPanels;
      refreshPanels();
    }
    const nextQueries = JSON.stringify([round?.id, round?.state, round?.counts.answers, round?.counts.queries]);
    if (nextQueries !== queriesSignature) {
      queriesSignature = nextQueries;
      refreshQueries(round);
    }
    delay = isBusy(project) ? FAST_POLL_MS : SLOW_POLL_MS;
  } catch (error) {
    ui.action.textContent = `Connection problem: ${describeError(error)} (retrying)`;
    delay = SLOW_POLL_MS;
  }
  pollTimer = setTimeout(poll, delay);
}

async function act(button, label, call) {
  busyAction = true;
  button.disabled = true;
  ui.action.textContent = `${label}…`;
  try {
    await call();
    ui.action.textContent = `${label}: done.`;
  } catch (error) {
    ui.action.textContent = `${label} failed: ${describeError(error)}`;
  } finally {
    busyAction = false;
    await poll();
  }
}

ui.launch.addEventListener("click", () => act(ui.launch, "Launching a round", () => post(`projects/${projectId}/rounds`)));

ui.close.addEventListener("click", () => {
  const round = roundOf(project);
  if (!round) return;
  const missing = round.counts.queries - round.counts.complete_queries;
  if (missing > 0 && !window.confirm(`${missing} of ${round.counts.queries} queries still lack answers. Close the round anyway? Their σ stays as it is.`)) {
    return;
  }
  act(ui.close, `Closing round ${round.number}`, () => post(`rounds/${round.id}/close`));
});

ui.retry.addEventListener("click", () => {
  const round = roundOf(project);
  if (project.status === "failed") act(ui.retry, "Retrying the project", () => post(`projects/${projectId}/retry`));
  else if (round?.state === "failed") act(ui.retry, `Retrying round ${round.number}`, () => post(`rounds/${round.id}/retry`));
});

poll();
