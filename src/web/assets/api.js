// The client's only door to the server: the public JSON API, with problem+json errors turned
// into ApiError, and the chatroom event stream read with fetch (EventSource cannot send the
// Authorization header).

/** An error answer of the API (RFC 9457 problem details), or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem, retryAfter) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || (status === 0 ? "network_error" : "http_error");
    this.problem = problem;
    this.retryAfter = retryAfter; // seconds, when the server said
  }

  /** The message of the field `name` in a validation error, if any. */
  fieldError(name) {
    const errors = Array.isArray(this.problem.errors) ? this.problem.errors : [];
    const match = errors.find((e) => e.field === name);
    return match ? match.message : null;
  }
}

const TOKEN_KEY = "gemchat.session";

/** The signed-in session ({token, user}) kept in localStorage, or null. */
export function loadSession() {
  try {
    const session = JSON.parse(localStorage.getItem(TOKEN_KEY) || "null");
    return session && typeof session.token === "string" ? session : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  localStorage.setItem(TOKEN_KEY, JSON.stringify({ token: session.token, user: session.user }));
}

export function clearSession() {
  localStorage.removeItem(TOKEN_KEY);
}

/** Called when the server says the token is no longer good (401). */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

function authHeaders() {
  const session = loadSession();
  return session ? { Authorization: `Bearer ${session.token}` } : {};
}

async function problemOf(response) {
  try {
    const body = await response.json();
    if (body && typeof body === "object") return body;
  } catch {
    // Not JSON (a proxy's error page, say): fall through to a generic problem.
  }
  return { title: response.statusText || "Error", detail: `The server answered ${response.status}.` };
}

/**
 * Calls the API. Resolves to {status, body, headers}; rejects with ApiError for any non-2xx
 * answer or a network failure.
 */
export async function call(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(path, init);
  const text = response.status === 204 ? "" : await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null, headers: response.headers };
}

/** Uploads a file (`POST /uploads`, multipart); resolves to its Attachment. */
export async function uploadFile(file) {
  const form = new FormData();
  form.append("file", file, file.name || "pasted file");
  const response = await send("/uploads", { method: "POST", headers: { Accept: "application/json" }, body: form });
  return response.json();
}

/** Downloads `path` as a file: its bytes and the name the server gives it. */
export async function download(path) {
  const response = await send(path, { method: "GET", headers: {} });
  const disposition = response.headers.get("Content-Disposition") || "";
  const name = /filename="([^"]+)"/.exec(disposition)?.[1] || "download";
  return { blob: await response.blob(), name };
}

const fileUrls = new Map();

/**
 * An upload's bytes as an object URL (an <img> cannot send the token itself); each file is
 * fetched once per page.
 */
export function fileUrl(id) {
  if (!fileUrls.has(id)) {
    const url = send(`/uploads/${encodeURIComponent(id)}`, { method: "GET", headers: {} }).then(async (response) =>
      URL.createObjectURL(await response.blob()),
    );
    url.catch(() => fileUrls.delete(id)); // asked again next time
    fileUrls.set(id, url);
  }
  return fileUrls.get(id);
}

/** Sends a request with the session's token; the response when 2xx, else rejects with ApiError. */
async function send(path, init) {
  init = { ...init, headers: { ...init.headers, ...authHeaders() }, cache: "no-store" };
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: "Cannot reach the server. Check your connection and try again." });
  }
  if (response.ok) return response;
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  const error = new ApiError(response.status, await problemOf(response), Number.isNaN(retryAfter) ? null : retryAfter);
  // 401 `unauthorized` is the token failing; 401 `invalid_credentials` (a wrong current
  // password) is not.
  if (error.code === "unauthorized" && init.headers.Authorization) onUnauthorized(error);
  throw error;
}

/**
 * Reads the server-sent events of a chatroom until the stream ends or `signal` aborts.
 * `onOpen` runs once the server has subscribed (the response headers arrived); `onEvent`
 * receives {type, id, data} with `data` parsed from JSON. Rejects with ApiError when the
 * server refuses the stream.
 */
export async function readEvents(roomId, { lastEventId, signal, onOpen, onEvent }) {
  const headers = { Accept: "text/event-stream", ...authHeaders() };
  if (lastEventId) headers["Last-Event-ID"] = lastEventId;
  let response;
  try {
    response = await fetch(`/chatroom/${encodeURIComponent(roomId)}/events`, { headers, signal, cache: "no-store" });
  } catch (err) {
    if (signal.aborted) return;
    throw new ApiError(0, { detail: String(err) });
  }
  if (!response.ok) {
    const error = new ApiError(response.status, await problemOf(response), null);
    if (error.code === "unauthorized") onUnauthorized(error);
    throw error;
  }
  onOpen();
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const parser = new EventParser(onEvent);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.push(value);
    }
  } catch (err) {
    if (!signal.aborted) throw new ApiError(0, { detail: String(err) });
  } finally {
    reader.releaseLock();
  }
}

/** The text/event-stream format (WHATWG HTML, "Server-sent events"), fed in pieces. */
export class EventParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
  }

  reset() {
    this.type = "";
    this.data = [];
    this.id = null;
  }

  push(text) {
    this.buffer += text;
    const lines = this.buffer.split(/\r\n|\r|\n/);
    // The last piece may be an incomplete line (or a lone \r of a \r\n split across reads).
    this.buffer = lines.pop();
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === "") {
      if (this.data.length > 0) {
        let data = this.data.join("\n");
        try {
          data = JSON.parse(data);
        } catch {
          // Keep the text as it is.
        }
        this.onEvent({ type: this.type || "message", id: this.id, data });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // a comment: keep-alive
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
  }
}
