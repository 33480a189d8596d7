// Calls to the JSON API from the pages: the session cookie travels by itself; unsafe methods
// carry the X-CSRF-Token header copied from the aqpl_csrf cookie (__Host-aqpl_csrf in production),
// which holds the session's token as the server derived it with its secret key.

export const API = "/api/v1";

export class ApiError extends Error {
  constructor(status, detail, body, retryAfter = null) {
    super(typeof detail === "string" ? detail : `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
    this.retryAfter = retryAfter; // seconds the server asked us to wait (Retry-After), or null
  }

  /** The server is overloaded, not broken: the same request will do once it has had a moment. */
  get busy() {
    return this.status === 503 || this.status === 429;
  }
}

/** Retry-After as seconds (the header may also be an HTTP date); null when absent or unreadable. */
function retryAfterSeconds(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  return Number.isNaN(date) ? null : Math.max(0, (date - Date.now()) / 1000);
}

/** The fetch itself failed (server down, network lost): worth retrying. */
export class ConnectionLost extends Error {}

export function readCookie(name) {
  for (const part of document.cookie.split(";")) {
    const [key, ...rest] = part.trim().split("=");
    if (key === name) return decodeURIComponent(rest.join("="));
  }
  return "";
}

export function csrfToken() {
  return readCookie("__Host-aqpl_csrf") || readCookie("aqpl_csrf");
}

/** fetch() of an API path; throws ApiError for non-2xx and ConnectionLost when the request never completed. */
export async function request(method, path, { json, body, headers = {}, signal, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin", signal };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path.startsWith("/") ? path : `${API}/${path}`, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ConnectionLost(error.message);
  }
  if (response.status === 401) {
    const next = encodeURIComponent(location.pathname + location.search);
    location.assign(`/login?next=${next}`);
    throw new ApiError(401, "signed out", null);
  }
  if (!response.ok) {
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      payload = null;
    }
    throw new ApiError(response.status, payload?.detail ?? response.statusText, payload, retryAfterSeconds(response));
  }
  if (raw) return response;
  if (response.status === 204) return null;
  const type = response.headers.get("Content-Type") || "";
  return type.includes("json") ? response.json() : response;
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, json, options = {}) => request("POST", path, { ...options, json });
export const del = (path, options) => request("DELETE", path, options);

/** A human message for an error: FastAPI's 422 list of problems or the {"detail": "..."} text. */
export function describeError(error) {
  if (error instanceof ConnectionLost) return "The server cannot be reached; check the connection and try again.";
  if (error instanceof ApiError) {
    if (Array.isArray(error.detail)) {
      return error.detail.map((item) => `${(item.loc || []).slice(1).join(".") || "input"}: ${item.msg}`).join("; ");
    }
    return error.detail || `HTTP ${error.status}`;
  }
  return String(error?.message ?? error);
}

/** A random key for Idempotency-Key (crypto.randomUUID needs a secure context; this does not). */
export function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * How long to wait before attempt `attempt + 1` of a request that failed: at least what the server
 * asked for (Retry-After), growing with each attempt, with ±25 % jitter so that many pages refused
 * at the same moment do not all come back at the same moment.
 */
export function backoffMs(attempt, delaysMs, retryAfterSeconds = null) {
  const base = Math.max(delaysMs[Math.min(attempt, delaysMs.length - 1)], (retryAfterSeconds ?? 0) * 1000);
  return Math.round(base * (0.75 + Math.random() * 0.5));
}
