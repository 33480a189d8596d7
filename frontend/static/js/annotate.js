// The annotation page: one task at a time, the σ-ladder slider, answers that survive a lost connection.
//
// The image is the clean PNG plus the example's fixed noise field ε (float32), rendered here at
// each slider position with the same float32 formula as the server (noise_render.js), so a step
// costs one pass over the pixels and no request. The next task is leased and downloaded while
// the annotator works on this one; an answer is queued and retried with its Idempotency-Key
// until the server has it, while the next image is already on screen.

import { ApiError, ConnectionLost, backoffMs, describeError, get, post, randomKey, request, sleep } from "./api.js";
import { LADDER_MAX_INDEX, LADDER_MIN_INDEX, renderRGBA, sigmaLabel, toUnitFloat } from "./noise_render.js";

const PREVIEW_INDICES = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90];
const EMPTY_POLL_MS = 5000;
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 15000];
const BUSY_NOTE = "Busy, retrying"; // the server refused with 503 (overloaded): a quiet note, not an error
const PREVIEW_TARGET_PX = 60;
const MIN_SCALE_SMALL_IMAGES = 8; // at least 8x for 28-32 px images when the screen allows it

const $ = (id) => document.getElementById(id);

const elements = {
  root: $("annotate"),
  instruction: $("instruction"),
  box: $("canvas-box"),
  canvas: $("image-canvas"),
  strip: $("preview-strip"),
  slider: $("sigma"),
  sigmaLabel: $("sigma-label"),
  marker: $("sigma-marker"),
  submit: $("submit-button"),
  skip: $("skip-button"),
  zoom: $("zoom-button"),
  help: $("help-button"),
  dialog: $("keys-dialog"),
  status: $("status"),
  pending: $("pending"),
  progressText: $("progress-text"),
  progressBar: $("progress-bar"),
  projectName: $("task-project"),
  taskPanel: $("task-panel"),
  empty: $("empty"),
};

// Measured in the browser (performance.now, ms) and read by the browser tests.
const timings = { renderStep: [], submitToNextImage: [], taskLoad: [], showTask: [] };
window.aqplTimings = timings;
// Survives as long as the page is not reloaded: the tests check that the next task needs no page load.
window.aqplPageId = randomKey();

const state = {
  current: null, // {task, image, shownAt, idempotencyKey}
  prefetch: null, // Promise of a loaded task (or null) leased while the annotator works
  prefetched: null, // what that promise resolved to, once it has
  prefetchSupported: true, // false once the server answers the same lease to ?exclude=
  finishedIds: new Set(), // tasks answered or skipped here: never shown again
  outbox: [], // answers not yet acknowledged by the server, in order
  sending: null, // the promise of the running flushOutbox, if one runs
  sigmaIndex: 0,
  zoom: false,
  renewTimer: null,
  emptyTimer: null,
  submitStartedAt: null,
  progress: new Map(), // round id -> {answered, total, mine}, never going backwards
};

const sourceCanvas = document.createElement("canvas");
const sourceContext = sourceCanvas.getContext("2d", { willReadFrequently: false });
let sourcePixels = null; // ImageData of the current image size

// ---------------------------------------------------------------- loading tasks

async function leaseTask(excludeId) {
  const query = excludeId ? `?exclude=${encodeURIComponent(excludeId)}` : "";
  return post(`tasks/next${query}`);
}

async function decodeImage(blob, channels) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = document.createElement("canvas");
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, canvas.width, canvas.height).data;
  const pixels = new Uint8Array(canvas.width * canvas.height * channels);
  for (let p = 0; p < canvas.width * canvas.height; p++) {
    for (let c = 0; c < channels; c++) pixels[p * channels + c] = rgba[p * 4 + c];
  }
  return { width: canvas.width, height: canvas.height, pixels };
}

/** Download the clean image and ε of a task; resolves to {task, image}. */
async function loadAssets(task) {
  const started = performance.now();
  const [height, width, channels] = task.image_shape;
  const [imageResponse, noiseResponse] = await Promise.all([
    request("GET", task.image_url, { raw: true, headers: { Accept: "image/png" } }),
    request("GET", task.noise_url, { raw: true, headers: { Accept: "application/octet-stream" } }),
  ]);
  const shapeHeader = noiseResponse.headers.get("X-Noise-Shape") || "";
  const noiseShape = shapeHeader.split(",").map((part) => Number.parseInt(part, 10));
  const [blob, buffer] = await Promise.all([imageResponse.blob(), noiseResponse.arrayBuffer()]);
  const decoded = await decodeImage(blob, channels);
  if (decoded.width !== width || decoded.height !== height) {
    throw new Error(`image is ${decoded.width}x${decoded.height}, the task says ${width}x${height}`);
  }
  if (noiseShape.join(",") !== [height, width, channels].join(",")) {
    throw new Error(`noise shape ${shapeHeader} does not match the image ${height},${width},${channels}`);
  }
  // The API sends little-endian float32; every browser platform is little-endian.
  const epsilon = new Float32Array(buffer);
  if (epsilon.length !== height * width * channels) throw new Error("noise field has the wrong length");
  timings.taskLoad.push(performance.now() - started);
  return {
    task,
    image: { width, height, channels, unit: toUnitFloat(decoded.pixels), epsilon },
  };
}

async function fetchNextLoaded(excludeId) {
  const task = await leaseTask(excludeId);
  if (!task) return null;
  if (state.finishedIds.has(task.id)) return null;
  if (excludeId && task.id === excludeId) {
    // The server ignored ?exclude= and handed back the live lease: no second lease to prefetch.
    state.prefetchSupported = false;
    return null;
  }
  return loadAssets(task);
}

function startPrefetch() {
  if (!state.current || !state.prefetchSupported || state.prefetch || state.outbox.length) return;
  const excludeId = state.current.task.id;
  state.prefetched = null;
  state.prefetch = fetchNextLoaded(excludeId)
    .catch((error) => {
      console.warn("prefetch failed", error);
      return null;
    })
    .then((loaded) => {
      state.prefetched = loaded;
      return loaded;
    });
}

// ---------------------------------------------------------------- drawing

function fitScale(image) {
  const box = elements.box.getBoundingClientRect();
  const viewportRoom = window.innerHeight - box.top - reservedBelowCanvas();
  const roomWidth = Math.max(box.width, image.width);
  const roomHeight = Math.max(viewportRoom, 160);
  let scale = Math.floor(Math.min(roomWidth / image.width, roomHeight / image.height));
  if (image.width <= 32 && image.height <= 32 && scale < MIN_SCALE_SMALL_IMAGES) {
    const widthAllows = Math.floor(roomWidth / image.width);
    scale = Math.min(MIN_SCALE_SMALL_IMAGES, widthAllows);
  }
  scale = Math.max(1, scale);
  return state.zoom ? scale * 2 : scale;
}

function reservedBelowCanvas() {
  // The preview strip sits under the canvas; on narrow screens the answer panel does too.
  const strip = elements.strip.getBoundingClientRect().height || 90;
  const stacked = window.matchMedia("(max-width: 1023px)").matches;
  const panel = stacked ? elements.taskPanel.getBoundingClientRect().height || 320 : 0;
  return strip + panel + 40;
}

function layoutCanvas() {
  const image = state.current?.image;
  if (!image) return;
  const scale = fitScale(image);
  elements.canvas.width = image.width * scale;
  elements.canvas.height = image.height * scale;
  elements.canvas.style.width = `${image.width * scale}px`;
  elements.canvas.style.height = `${image.height * scale}px`;
  elements.canvas.dataset.scale = String(scale);
  elements.box.classList.toggle("zoomed", state.zoom);
  drawCurrent();
}

/** Render the current image at the slider's σ; returns the milliseconds it took. */
function drawCurrent() {
  const current = state.current;
  if (!current) return 0;
  const started = performance.now();
  const { image } = current;
  renderRGBA(image.unit, image.epsilon, image.channels, state.sigmaIndex, sourcePixels.data);
  sourceContext.putImageData(sourcePixels, 0, 0);
  const context = elements.canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(sourceCanvas, 0, 0, elements.canvas.width, elements.canvas.height);
  return performance.now() - started;
}

function buildPreviewStrip(image) {
  const scale = Math.max(1, Math.floor(PREVIEW_TARGET_PX / Math.max(image.width, image.height)));
  const rgba = new ImageData(image.width, image.height);
  const buttons = PREVIEW_INDICES.map((index) => {
    renderRGBA(image.unit, image.epsilon, image.channels, index, rgba.data);
    sourceContext.putImageData(rgba, 0, 0);
    const preview = document.createElement("canvas");
    preview.width = image.width * scale;
    preview.height = image.height * scale;
    const context = preview.getContext("2d");
    context.imageSmoothingEnabled = false;
    context.drawImage(sourceCanvas, 0, 0, preview.width, preview.height);
    const label = document.createElement("span");
    label.textContent = `σ ${(index / 100).toFixed(1)}`;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "preview";
    button.dataset.sigmaIndex = String(index);
    button.setAttribute("aria-label", `Set σ to ${sigmaLabel(index)}`);
    button.append(preview, label);
    button.addEventListener("click", () => setSigma(index, { focusSlider: true }));
    return button;
  });
  elements.strip.replaceChildren(...buttons);
}

function highlightPreview() {
  for (const button of elements.strip.children) {
    button.classList.toggle("active", Number(button.dataset.sigmaIndex) === state.sigmaIndex);
  }
}

// ---------------------------------------------------------------- showing a task

function setSigma(index, { focusSlider = false } = {}) {
  const clamped = Math.max(LADDER_MIN_INDEX, Math.min(LADDER_MAX_INDEX, Math.round(index)));
  state.sigmaIndex = clamped;
  elements.slider.value = String(clamped);
  elements.slider.setAttribute("aria-valuetext", `σ = ${sigmaLabel(clamped)}`);
  elements.sigmaLabel.textContent = `σ = ${sigmaLabel(clamped)}`;
  const elapsed = drawCurrent();
  if (state.current) timings.renderStep.push(elapsed);
  highlightPreview();
  if (focusSlider) elements.slider.focus();
}

function instructionFor(task) {
  const sentence = document.createDocumentFragment();
  sentence.append("Move the slider to the strongest noise at which you can still recognise ");
  if (task.class_name) {
    sentence.append("the ");
    const name = document.createElement("strong");
    name.textContent = task.class_name;
    sentence.append(name, ".");
  } else {
    sentence.append("what the image shows.");
  }
  return sentence;
}

function updateProgress(task) {
  const known = state.progress.get(task.round_id) || { answered: 0, total: 0, mine: 0 };
  const progress = {
    answered: Math.max(known.answered, task.progress?.answered ?? 0),
    total: Math.max(known.total, task.progress?.total ?? 0),
    mine: Math.max(known.mine, task.progress?.mine ?? 0),
  };
  state.progress.set(task.round_id, progress);
  renderProgress(task, progress);
}

function renderProgress(task, progress) {
  elements.projectName.textContent = `${task.project_name} · round ${task.round_number}`;
  elements.progressBar.max = Math.max(progress.total, 1);
  elements.progressBar.value = Math.min(progress.answered, progress.total);
  elements.progressText.textContent = `${progress.answered} / ${progress.total} answers in this round · yours: ${progress.mine}`;
}

function countOwnAnswer(task) {
  const progress = state.progress.get(task.round_id);
  if (!progress) return;
  progress.answered += 1;
  progress.mine += 1;
  if (state.current?.task.round_id === task.round_id) renderProgress(state.current.task, progress);
}

function show(loaded) {
  const started = performance.now();
  clearTimeout(state.emptyTimer);
  const { task, image } = loaded;
  state.current = { ...loaded, idempotencyKey: randomKey(), shownAt: 0 };
  elements.empty.hidden = true;
  elements.taskPanel.hidden = false;
  elements.root.classList.remove("is-empty");
  if (sourceCanvas.width !== image.width || sourceCanvas.height !== image.height) {
    sourceCanvas.width = image.width;
    sourceCanvas.height = image.height;
  }
  sourcePixels = new ImageData(image.width, image.height);
  elements.instruction.replaceChildren(instructionFor(task));
  elements.canvas.setAttribute(
    "aria-label",
    `Image of example ${task.example_id}${task.class_name ? ` (${task.class_name})` : ""} with noise`,
  );
  elements.canvas.dataset.taskId = String(task.id);
  elements.canvas.dataset.exampleId = String(task.example_id);
  buildPreviewStrip(image);
  state.sigmaIndex = LADDER_MIN_INDEX;
  setControlsEnabled(true);
  layoutCanvas();
  setSigma(LADDER_MIN_INDEX, { focusSlider: true });
  showMarker(task.current_sigma_index);
  updateProgress(task);
  state.current.shownAt = performance.now();
  // What a prefetched task costs from submit to screen: everything here, no request.
  timings.showTask.push(state.current.shownAt - started);
  if (state.submitStartedAt !== null) {
    timings.submitToNextImage.push(state.current.shownAt - state.submitStartedAt);
    state.submitStartedAt = null;
  }
  scheduleRenew();
  startPrefetch();
}

function showMarker(sigmaIndex) {
  if (sigmaIndex === null || sigmaIndex === undefined) {
    elements.marker.hidden = true;
    return;
  }
  elements.marker.hidden = false;
  elements.marker.style.setProperty("--marker-position", `${(sigmaIndex / LADDER_MAX_INDEX) * 100}%`);
  elements.marker.textContent = `model's current σ = ${sigmaLabel(sigmaIndex)}`;
}

function showEmpty() {
  state.current = null;
  clearTimeout(state.renewTimer);
  elements.taskPanel.hidden = true;
  elements.empty.hidden = false;
  elements.root.classList.add("is-empty");
  setControlsEnabled(false);
  state.emptyTimer = setTimeout(() => loadNext(), EMPTY_POLL_MS);
}

function setControlsEnabled(enabled) {
  for (const control of [elements.slider, elements.submit, elements.skip]) control.disabled = !enabled;
}

function setStatus(message, kind = "info") {
  elements.status.textContent = message;
  elements.status.dataset.kind = kind;
}

async function loadNext(attempt = 0) {
  try {
    const loaded = await fetchNextLoaded(null);
    if (attempt > 0) setStatus("");
    if (loaded) show(loaded);
    else showEmpty();
  } catch (error) {
    if (error instanceof ApiError && error.busy) {
      // Overloaded: come back when the server says, a little later each time, and say so quietly.
      setStatus(`${BUSY_NOTE}…`, "busy");
      state.emptyTimer = setTimeout(() => loadNext(attempt + 1), backoffMs(attempt, RETRY_DELAYS_MS, error.retryAfter));
      return;
    }
    if (error instanceof ConnectionLost) {
      setStatus("Connection lost: trying again in a few seconds…", "warning");
      state.emptyTimer = setTimeout(() => loadNext(), EMPTY_POLL_MS);
      return;
    }
    setStatus(`Could not load a task: ${describeError(error)}`, "error");
    state.emptyTimer = setTimeout(() => loadNext(), EMPTY_POLL_MS);
  }
}

/** Show the prefetched task if one is ready, else lease one now (after the answers are in). */
async function advance() {
  const prefetched = state.prefetch ? await state.prefetch : null;
  state.prefetch = null;
  state.prefetched = null;
  if (prefetched && !state.finishedIds.has(prefetched.task.id)) {
    show(prefetched);
    return;
  }
  state.current = null;
  setControlsEnabled(false);
  await flushOutbox();
  await loadNext();
}

// ---------------------------------------------------------------- answers

async function submitAnswer() {
  const current = state.current;
  if (!current || elements.submit.disabled) return;
  state.submitStartedAt = performance.now();
  const seconds = Math.round((state.submitStartedAt - current.shownAt) / 100) / 10;
  const answer = {
    task: current.task,
    sigmaIndex: state.sigmaIndex,
    seconds,
    key: current.idempotencyKey,
  };
  state.finishedIds.add(current.task.id);
  setControlsEnabled(false);
  state.outbox.push(answer);
  const sent = flushOutbox();
  // The next image goes on screen at once when it was prefetched; the answer is sent meanwhile.
  await advance();
  await sent;
}

async function skipTask() {
  const current = state.current;
  if (!current || elements.skip.disabled) return;
  state.submitStartedAt = performance.now();
  state.finishedIds.add(current.task.id);
  setControlsEnabled(false);
  try {
    await post(`tasks/${current.task.id}/skip`);
    setStatus("Skipped: you will not get this image again.");
  } catch (error) {
    setStatus(`Skip not recorded: ${describeError(error)}`, "error");
  }
  await advance();
}

/** Send queued answers in order; a lost connection retries the same Idempotency-Key until it lands. */
function flushOutbox() {
  // One sender at a time; callers that come while it runs wait for the same promise.
  if (!state.sending && !state.outbox.length) return Promise.resolve();
  if (!state.sending) {
    state.sending = (async () => {
      try {
        while (state.outbox.length) {
          renderPending();
          await sendWithRetry(state.outbox[0]);
          state.outbox.shift();
        }
      } finally {
        state.sending = null;
        renderPending();
      }
      startPrefetch();
    })();
  }
  return state.sending;
}

async function sendWithRetry(answer) {
  let busy = false; // the last attempt was refused as busy (503), not lost
  for (let attempt = 0; ; attempt++) {
    try {
      await post(
        `tasks/${answer.task.id}/annotation`,
        { sigma_index: answer.sigmaIndex, seconds: answer.seconds },
        { headers: { "Idempotency-Key": answer.key } },
      );
      countOwnAnswer(answer.task);
      if (attempt > 0 && !busy) setStatus(`Connection back: your answer σ = ${sigmaLabel(answer.sigmaIndex)} is saved.`, "ok");
      else setStatus(`Saved σ = ${sigmaLabel(answer.sigmaIndex)}.`, "ok");
      return;
    } catch (error) {
      if (error instanceof ApiError && error.busy) {
        // Overloaded, not lost: the same answer, with the same key, once the server has had a moment.
        busy = true;
        const delay = backoffMs(attempt, RETRY_DELAYS_MS, error.retryAfter);
        setStatus(`${BUSY_NOTE}: your answer σ = ${sigmaLabel(answer.sigmaIndex)} is kept and sent again in ${Math.round(delay / 1000) || 1} s.`, "busy");
        await sleep(delay);
        continue;
      }
      busy = false;
      const retryable =
        error instanceof ConnectionLost || (error instanceof ApiError && [408, 502, 504].includes(error.status));
      if (!retryable) {
        const reason =
          error instanceof ApiError && error.status === 409
            ? "the task was given to someone else after its lease ran out"
            : describeError(error);
        setStatus(`Answer σ = ${sigmaLabel(answer.sigmaIndex)} not saved: ${reason}.`, "error");
        return;
      }
      const delay = RETRY_DELAYS_MS[Math.min(attempt, RETRY_DELAYS_MS.length - 1)];
      setStatus(
        `Connection lost: your answer σ = ${sigmaLabel(answer.sigmaIndex)} is kept and sent again in ${Math.round(delay / 1000) || 1} s (attempt ${attempt + 2}).`,
        "warning",
      );
      await sleep(delay);
    }
  }
}

function renderPending() {
  const count = state.outbox.length;
  elements.pending.hidden = count === 0;
  elements.pending.textContent = count === 1 ? "1 answer waiting to be saved" : `${count} answers waiting to be saved`;
}

// ---------------------------------------------------------------- lease renewal

function scheduleRenew() {
  clearTimeout(state.renewTimer);
  const task = state.current?.task;
  if (!task) return;
  const remaining = new Date(task.expires_at).getTime() - Date.now();
  // Renew at a third of the remaining lease, so two renewals can fail before it runs out.
  const delay = Math.min(Math.max(remaining / 3, 5000), 120000);
  state.renewTimer = setTimeout(renewLeases, delay);
}

async function renewLeases() {
  const current = state.current;
  if (!current) return;
  for (const loaded of [current, state.prefetch ? state.prefetched : null]) {
    if (!loaded) continue;
    try {
      const renewed = await post(`tasks/${loaded.task.id}/renew`);
      if (renewed?.expires_at) loaded.task.expires_at = renewed.expires_at;
    } catch (error) {
      if (loaded === current && !(error instanceof ConnectionLost)) {
        setStatus(`This task's lease could not be renewed (${describeError(error)}); your answer may be refused.`, "warning");
      }
    }
  }
  scheduleRenew();
}

// ---------------------------------------------------------------- keyboard and controls

function toggleZoom() {
  state.zoom = !state.zoom;
  elements.zoom.setAttribute("aria-pressed", String(state.zoom));
  layoutCanvas();
}

function toggleHelp() {
  if (elements.dialog.open) elements.dialog.close();
  else elements.dialog.showModal();
}

const STEP_KEYS = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageDown: -10, PageUp: 10 };

function onKeyDown(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.key === "?") {
    event.preventDefault();
    toggleHelp();
    return;
  }
  if (elements.dialog.open) return;
  const target = event.target;
  const typing = target instanceof HTMLInputElement && target.type !== "range";
  if (typing || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return;
  if (!state.current) return;
  if (event.key in STEP_KEYS) {
    event.preventDefault();
    const step = STEP_KEYS[event.key] * (event.shiftKey && Math.abs(STEP_KEYS[event.key]) === 1 ? 10 : 1);
    setSigma(state.sigmaIndex + step);
  } else if (event.key === "Home") {
    event.preventDefault();
    setSigma(LADDER_MIN_INDEX);
  } else if (event.key === "End") {
    event.preventDefault();
    setSigma(LADDER_MAX_INDEX);
  } else if (event.key === "Enter") {
    // Enter on another focused button (Skip, Zoom…) keeps its own meaning.
    if (target instanceof HTMLButtonElement && target !== elements.submit) return;
    event.preventDefault();
    submitAnswer();
  } else if (event.key === "s" || event.key === "S") {
    event.preventDefault();
    skipTask();
  } else if (event.key === "z" || event.key === "Z") {
    event.preventDefault();
    toggleZoom();
  }
}

function onSliderInput() {
  setSigma(Number(elements.slider.value));
}

function onBeforeUnload(event) {
  if (state.outbox.length) {
    event.preventDefault();
    event.returnValue = "";
  }
}

// ---------------------------------------------------------------- test hook

/** Show a synthetic task (no server): used to measure a render step on a given image size. */
function showSynthetic({ width, height, channels, pixels, epsilon, className = null, currentSigmaIndex = null }) {
  state.prefetchSupported = false;
  show({
    task: {
      id: -1,
      example_id: -1,
      project_name: "synthetic",
      round_id: -1,
      round_number: 0,
      class_name: className,
      current_sigma_index: currentSigmaIndex,
      expires_at: new Date(Date.now() + 3600e3).toISOString(),
      progress: { answered: 0, total: 0, mine: 0 },
    },
    image: {
      width,
      height,
      channels,
      unit: toUnitFloat(Uint8Array.from(pixels)),
      epsilon: Float32Array.from(epsilon),
    },
  });
  clearTimeout(state.renewTimer);
}

window.aqplAnnotate = { state, setSigma, submitAnswer, skipTask, toggleZoom, showSynthetic, drawCurrent };

// ---------------------------------------------------------------- start

elements.slider.addEventListener("input", onSliderInput);
elements.submit.addEventListener("click", submitAnswer);
elements.skip.addEventListener("click", skipTask);
elements.zoom.addEventListener("click", toggleZoom);
elements.help.addEventListener("click", toggleHelp);
document.addEventListener("keydown", onKeyDown);
window.addEventListener("beforeunload", onBeforeUnload);
window.addEventListener("resize", () => layoutCanvas());
setControlsEnabled(false);
loadNext();
