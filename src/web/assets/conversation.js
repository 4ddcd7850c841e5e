// The open conversation: its history (older pages on scroll), the live event stream (read with
// fetch, resumed with Last-Event-ID), replies streaming in as Markdown, sending with the
// prompt shown at once, retrying what failed, and the controls of the message tree: stop a
// reply, regenerate it, edit a prompt, and switch between versions.

import { hideAdmin, showAdmin } from "./admin.js";
import { call, loadSession, readEvents } from "./api.js";
import { refreshUsage, setUsage, showLimit } from "./account.js";
import { renderAttachments, takeFiles } from "./attachments.js";
import { renderMarkdown } from "./markdown.js";
import { closeSidebar, loadRooms, renderRooms, upsertRoom } from "./rooms.js";
import { state } from "./state.js";
import { $, announce, describe, fieldMessage, h, sleep, stampFormat, toast } from "./ui.js";

export const conversationActions = {
  "new-chat": () => {
    if (window.location.hash === "#/" || !window.location.hash) openNewChat();
    else window.location.hash = "#/";
    closeSidebar();
  },
  resend: (button) => resend(button.dataset.message),
  "retry-reply": (button) => retryReply(button.dataset.message),
  "copy-reply": (button) => copyReply(button.dataset.message),
  "stop-reply": (button) => stopReply(button.dataset.message),
  "regenerate-reply": (button) => regenerateReply(button.dataset.message),
  "edit-prompt": (button) => startEdit(button.dataset.message),
  "save-edit": (button) => saveEdit(button.dataset.message),
  "cancel-edit": (button) => endEdit(button.dataset.message),
  "show-version": (button) => showVersion(button.dataset.message),
};

export function wireConversation() {
  $("composer").addEventListener("submit", submitComposer);
  $("composer-input").addEventListener("keydown", onComposerKey);
  $("composer-input").addEventListener("input", autosize);
  $("messages-scroll").addEventListener("scroll", () => {
    if ($("messages-scroll").scrollTop < 200) loadOlder();
  });
  window.addEventListener("hashchange", () => {
    if (loadSession()) route();
  });
}

export function route() {
  closeSidebar();
  if (window.location.hash === "#/admin" && state.user?.is_admin) {
    resetConversation();
    state.room = null;
    renderRooms();
    return showAdmin();
  }
  hideAdmin();
  const match = window.location.hash.match(/^#\/c\/([0-9a-fA-F-]{36})$/);
  return match ? openRoom(match[1]) : openNewChat();
}

function resetConversation() {
  closeStream();
  state.generation++;
  state.messages.clear();
  state.nextBefore = null;
  $("messages").replaceChildren();
  $("history-status").textContent = "";
}

function openNewChat() {
  resetConversation();
  state.room = null;
  $("room-title").textContent = "New chat";
  $("room-actions").hidden = true;
  $("welcome").hidden = false;
  renderRooms();
  $("composer-input").focus();
}

async function openRoom(id) {
  resetConversation();
  const generation = state.generation;
  state.room = state.rooms.find((room) => room.id === id) || { id, name: "" };
  $("room-title").textContent = state.room.name || "Loading…";
  $("room-actions").hidden = false;
  $("welcome").hidden = true;
  renderRooms();
  try {
    const [room, page] = await Promise.all([
      state.room.name ? Promise.resolve({ body: state.room }) : call("GET", `/chatroom/${id}`),
      call("GET", `/chatroom/${id}/messages?limit=50`),
    ]);
    if (generation !== state.generation) return;
    state.room = room.body;
    $("room-title").textContent = room.body.name;
    for (const msg of page.body.messages) addMessage(msg, "end");
    state.nextBefore = page.body.next_before;
    historyStatus();
    scrollToEnd();
    const last = page.body.messages.at(-1);
    openStream(id, last ? last.id : null);
    fillViewport();
    $("composer-input").focus();
  } catch (err) {
    if (generation !== state.generation) return;
    if (err.status === 404) {
      toast("That chat does not exist any more.");
      window.location.hash = "#/";
    } else if (err.status !== 401) {
      toast(describe(err), "error");
    }
  }
}

function historyStatus() {
  const any = state.messages.size > 0;
  $("history-status").textContent = state.nextBefore ? "" : any ? "This is the beginning of the chat." : "";
}

/** Loads older pages until the history overflows the view (or there is no more). */
async function fillViewport() {
  const scroller = $("messages-scroll");
  while (state.nextBefore && scroller.scrollHeight <= scroller.clientHeight) {
    if (!(await loadOlder())) return;
  }
}

async function loadOlder() {
  if (!state.nextBefore || state.loadingOlder || !state.room) return false;
  state.loadingOlder = true;
  const generation = state.generation;
  const scroller = $("messages-scroll");
  $("history-status").textContent = "Loading earlier messages…";
  try {
    const before = encodeURIComponent(state.nextBefore);
    const { body } = await call("GET", `/chatroom/${state.room.id}/messages?before=${before}&limit=50`);
    if (generation !== state.generation) return false;
    const height = scroller.scrollHeight;
    for (const msg of [...body.messages].reverse()) addMessage(msg, "start");
    scroller.scrollTop += scroller.scrollHeight - height;
    state.nextBefore = body.next_before;
    historyStatus();
    return true;
  } catch (err) {
    $("history-status").textContent = "Could not load earlier messages.";
    if (err.status !== 401) toast(describe(err), "error");
    return false;
  } finally {
    state.loadingOlder = false;
  }
}

/** Shows a message of the open room, loading older pages until it is there. */
export async function revealMessage(id) {
  const generation = state.generation;
  for (let pages = 0; !state.messages.has(id) && state.nextBefore && pages < 50; pages++) {
    if (!(await loadOlder()) || generation !== state.generation) return;
  }
  const entry = state.messages.get(id);
  if (!entry) return;
  entry.el.scrollIntoView({ block: "center" });
  entry.el.classList.remove("found");
  void entry.el.offsetWidth; // restart the highlight
  entry.el.classList.add("found");
}

function nearEnd() {
  const scroller = $("messages-scroll");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  const scroller = $("messages-scroll");
  scroller.scrollTop = scroller.scrollHeight;
}

/** How far a message has come; a reply only moves forward (a retry starts it again). */
const STAGE = { pending: 0, streaming: 1, completed: 2, failed: 2, cancelled: 2 };

/**
 * Adds a message (or updates the one with its id) and renders it. A late answer (a POST's
 * `pending` reply after the stream already delivered deltas, say) never moves a reply back;
 * only a retry does, through `retryReply`.
 */
function addMessage(msg, where) {
  const existing = state.messages.get(msg.id);
  if (existing) {
    if ((STAGE[msg.status] ?? 2) < (STAGE[existing.msg.status] ?? 2)) return existing;
    existing.msg = { ...existing.msg, ...msg };
    renderMessage(existing);
    return existing;
  }
  const entry = { msg, el: h("li", { className: "message" }), chars: [...(msg.content || "")].length };
  state.messages.set(msg.id, entry);
  const list = $("messages");
  if (where === "start") list.prepend(entry.el);
  else list.append(entry.el);
  $("welcome").hidden = true;
  renderMessage(entry);
  return entry;
}

/** Gives a local (not yet acknowledged) message the id the server gave it. */
function adopt(entry, msg) {
  for (const [id, value] of state.messages) {
    if (value === entry) state.messages.delete(id);
  }
  entry.msg = msg;
  state.messages.set(msg.id, entry);
  renderMessage(entry);
}

function renderMessage(entry) {
  const { msg } = entry;
  const mine = msg.role === "user";
  const el = entry.el;
  el.className = `message ${mine ? "from-user" : "from-model"}`;
  el.dataset.id = msg.id;
  el.dataset.status = msg.local || msg.status;
  if (entry.editing) {
    el.replaceChildren(editor(entry));
    return;
  }
  const who = h("span", { className: "visually-hidden" }, mine ? "You said:" : "gemchat replied:");
  const content = h("div", { className: "content" });
  if (mine) {
    content.textContent = msg.content; // shown exactly as typed
  } else if (msg.status === "pending" || (msg.status === "streaming" && !msg.content)) {
    content.append(h("span", { className: "typing", "aria-label": "gemchat is writing" }, h("span"), h("span"), h("span")));
  } else {
    content.append(renderMarkdown(msg.content || ""));
  }
  if (msg.created_at) el.title = stampFormat.format(new Date(msg.created_at));
  const parts = [who, renderAttachments(msg.attachments), content];
  if (msg.local === "sending") parts.push(h("p", { className: "meta" }, "Sending…"));
  if (msg.local === "unsent") {
    parts.push(
      h("p", { className: "meta error" }, `Not sent: ${msg.failure}`),
      h("button", { type: "button", className: "secondary small-button", dataset: { action: "resend", message: msg.id } }, "Try again"),
    );
  }
  if (msg.status === "failed") {
    parts.push(
      h("p", { className: "meta error" }, `The reply failed: ${msg.error?.message || "unknown error"}`),
      h("button", { type: "button", className: "secondary small-button", dataset: { action: "retry-reply", message: msg.id } }, "Retry"),
    );
  }
  if (msg.status === "cancelled") parts.push(h("p", { className: "meta" }, msg.content ? "Stopped." : "Stopped before it began."));
  if (!mine && msg.usage && msg.status !== "pending") parts.push(usageLine(msg));
  if (!msg.local) parts.push(actions(msg));
  el.replaceChildren(h("div", { className: "bubble" }, ...parts));
}

/** The reply's cost: "gemini-2.5-flash · 1,200 in · 40 out · 300 thinking". */
function usageLine(msg) {
  const count = (n) => Number(n || 0).toLocaleString();
  const parts = [msg.model, `${count(msg.usage.input_tokens)} in`, `${count(msg.usage.output_tokens)} out`];
  if (msg.usage.thinking_tokens) parts.push(`${count(msg.usage.thinking_tokens)} thinking`);
  if (msg.usage.cached_tokens) parts.push(`${count(msg.usage.cached_tokens)} cached`);
  return h("p", { className: "meta usage", title: "Tokens of this reply" }, parts.filter(Boolean).join(" · "));
}

/** The message's controls: its versions, and what can be done with it now. */
function actions(msg) {
  const mine = msg.role === "user";
  const button = (action, label, text, extra = {}) =>
    h("button", { type: "button", className: "copy-button", dataset: { action, message: msg.id }, "aria-label": label, ...extra }, text);
  const row = h("div", { className: "message-actions" });
  const versions = msg.versions?.ids || [];
  if (versions.length > 1) {
    const at = msg.versions.index;
    row.append(
      h(
        "span",
        { className: "versions", role: "group", "aria-label": `Version ${at + 1} of ${versions.length}` },
        h("button", { type: "button", className: "copy-button", dataset: { action: "show-version", message: versions[at - 1] || "" }, "aria-label": "Previous version", disabled: at === 0 }, "‹"),
        h("span", { className: "version-count" }, `${at + 1} / ${versions.length}`),
        h("button", { type: "button", className: "copy-button", dataset: { action: "show-version", message: versions[at + 1] || "" }, "aria-label": "Next version", disabled: at === versions.length - 1 }, "›"),
      ),
    );
  }
  if (mine) row.append(button("edit-prompt", "Edit the prompt", "Edit"));
  if (!mine && (msg.status === "pending" || msg.status === "streaming")) row.append(button("stop-reply", "Stop the reply", "Stop"));
  if (!mine && msg.status === "completed") row.append(button("copy-reply", "Copy the reply", "Copy"));
  if (!mine && ["completed", "failed", "cancelled"].includes(msg.status)) row.append(button("regenerate-reply", "Regenerate the reply", "Regenerate"));
  return row;
}

/** A prompt being edited in place: Enter sends, Shift+Enter breaks the line, Escape cancels. */
function editor(entry) {
  const id = entry.msg.id;
  const box = h("textarea", { className: "edit-box", rows: 3, value: entry.draft ?? entry.msg.content, "aria-label": "Edit the prompt" });
  box.addEventListener("input", () => (entry.draft = box.value));
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      saveEdit(id);
    } else if (event.key === "Escape") {
      event.preventDefault();
      endEdit(id);
    }
  });
  // Once it is in the page (the caller attaches it in this same task), before anything else
  // can act on it: a later cursor move would land in the middle of the user's typing.
  queueMicrotask(() => {
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  });
  return h(
    "div",
    { className: "bubble editing" },
    box,
    entry.editError ? h("p", { className: "meta error" }, entry.editError) : null,
    h(
      "div",
      { className: "message-actions" },
      h("button", { type: "button", className: "primary small-button", dataset: { action: "save-edit", message: id } }, "Send"),
      h("button", { type: "button", className: "secondary small-button", dataset: { action: "cancel-edit", message: id } }, "Cancel"),
    ),
  );
}

/** Copies a reply's Markdown source, as written, to the clipboard. */
async function copyReply(id) {
  const entry = state.messages.get(id);
  if (!entry) return;
  try {
    await navigator.clipboard.writeText(entry.msg.content || "");
    toast("Copied.");
  } catch {
    toast("The browser did not allow copying.", "error");
  }
}

/** Re-renders a streaming reply at most once a frame. */
function scheduleRender(entry) {
  if (entry.frame) return;
  entry.frame = requestAnimationFrame(() => {
    entry.frame = null;
    const stick = nearEnd();
    renderMessage(entry);
    if (stick) scrollToEnd();
  });
}

function openStream(roomId, lastEventId) {
  closeStream();
  const controller = new AbortController();
  let ready;
  const stream = { roomId, controller, lastEventId, ready: new Promise((resolve) => (ready = resolve)) };
  state.stream = stream;
  (async () => {
    let attempt = 0;
    while (!controller.signal.aborted) {
      try {
        await readEvents(roomId, {
          lastEventId: stream.lastEventId,
          signal: controller.signal,
          onOpen: () => {
            attempt = 0;
            ready();
          },
          onEvent: (event) => {
            if (event.id) stream.lastEventId = event.id;
            handleEvent(event);
          },
        });
      } catch (err) {
        if (err.status === 401 || err.status === 404) {
          ready();
          return;
        }
      }
      ready(); // a send never waits on a stream that cannot connect
      if (controller.signal.aborted) return;
      attempt++;
      const delay = Math.min(15_000, 500 * 2 ** attempt) * (0.5 + Math.random() / 2);
      await sleep(delay, controller.signal);
    }
  })();
  return stream;
}

export function closeStream() {
  state.stream?.controller.abort();
  state.stream = null;
}

function handleEvent({ type, data }) {
  if (!data || typeof data !== "object") return;
  if (type === "chatroom.updated") {
    upsertRoom(data, false);
    if (state.room?.id === data.id) {
      state.room = data;
      $("room-title").textContent = data.name;
    }
    return;
  }
  const stick = nearEnd();
  if (type === "message.created") {
    if (data.role === "user" && !state.messages.has(data.id)) {
      // Our own prompt may be announced before its POST answered: it is the local copy.
      const local = [...state.messages.values()].find((e) => e.msg.local === "sending" && e.msg.content === data.content);
      if (local) {
        adopt(local, data);
        return;
      }
    }
    if (onPath(data)) addMessage(data, "end");
  } else if (type === "reply.delta") {
    let entry = state.messages.get(data.message_id);
    if (!entry) entry = addMessage({ id: data.message_id, role: "model", status: "streaming", content: "" }, "end");
    // A delta for a failed reply means it is being retried (here or on another device).
    if (entry.msg.status === "completed") return;
    applyDelta(entry, data.delta, data.offset || 0);
    entry.msg.status = "streaming";
    scheduleRender(entry);
    return;
  } else if (type === "reply.completed" || type === "reply.failed" || type === "reply.cancelled") {
    if (!state.messages.has(data.id) && !onPath(data)) return; // another branch's
    // A resumed stream may send an end again (one that could have been lost): said once.
    const heard = state.messages.get(data.id)?.msg.status === data.status;
    const entry = addMessage(data, "end");
    entry.chars = [...(data.content || "")].length;
    // A failed reply, or one stopped before it began, gives its prompt back. Read the usage
    // even for an end already heard: the history may have shown it before this event came.
    if (type !== "reply.completed") refreshUsage();
    if (heard) {
      // nothing new to announce
    } else if (type === "reply.cancelled") {
      announce("The reply was stopped.");
    } else if (type === "reply.failed") {
      announce(`The reply failed: ${data.error?.message || ""}`);
    } else {
      announce(`gemchat replied: ${(data.content || "").slice(0, 200)}`);
      catchUpOnTitles();
    }
  }
  if (stick) scrollToEnd();
}

/**
 * A room is titled after its first reply, and the title is announced on that room's own event
 * stream. Someone who opened another chat before it came (a new chat, at once) did not hear
 * it: when a reply ends here and another listed room still has the default name after its
 * first exchange, the list is read again (a cached read on the server).
 */
function catchUpOnTitles() {
  const untitled = state.rooms.some((room) => room.id !== state.room?.id && room.name === "New chat" && room.last_message_at);
  if (untitled) loadRooms();
}

/** Applies a delta at `offset` (counted in characters, as the server counts them). */
function applyDelta(entry, delta, offset) {
  const content = entry.msg.content || "";
  if (offset === 0) {
    entry.msg.content = delta;
  } else if (offset === entry.chars) {
    entry.msg.content = content + delta;
  } else if (offset < entry.chars) {
    const kept = [...content].slice(0, offset).join(""); // a resend overlapping what we have
    entry.msg.content = kept + delta;
  } else {
    return; // a gap: the completed event will carry the whole reply
  }
  entry.chars = offset + [...delta].length;
}

let localIds = 0;

async function send(content, attachments = []) {
  content = content.trim();
  if (!content) return;
  const generation = state.generation;
  const local = { id: `local-${++localIds}`, role: "user", content, attachments, status: "completed", local: "sending" };
  const entry = addMessage(local, "end");
  scrollToEnd();
  try {
    if (!state.room) {
      // Unnamed: the server titles it once the first reply is in (chatroom.updated).
      const { body: room } = await call("POST", "/chatroom", {});
      if (generation !== state.generation) return;
      state.room = room;
      history.pushState(null, "", `#/c/${room.id}`);
      $("room-title").textContent = room.name;
      $("room-actions").hidden = false;
      upsertRoom(room, true);
      openStream(room.id, null);
    }
    const room = state.room;
    // The reply streams on the event stream: be subscribed before it can start.
    await Promise.race([state.stream?.ready, sleep(3000)]);
    const files = attachments.map((file) => file.id);
    const { body } = await call("POST", `/chatroom/${room.id}/message`, files.length ? { content, attachments: files } : { content });
    if (generation !== state.generation) return;
    const known = state.messages.get(body.message.id);
    if (known && known !== entry) {
      entry.el.remove(); // the event stream delivered it first, as another element
      for (const [id, value] of state.messages) if (value === entry) state.messages.delete(id);
    } else if (!known) {
      adopt(entry, body.message);
    }
    addMessage(body.reply, "end");
    setUsage(body.usage);
    // The room as the sidebar knows it now: a title may have arrived while this was sent.
    const current = state.rooms.find((r) => r.id === room.id) || room;
    upsertRoom({ ...current, last_message_at: body.message.created_at }, true);
    scrollToEnd();
  } catch (err) {
    if (generation !== state.generation) return;
    entry.msg = { ...entry.msg, local: "unsent", failure: sendFailure(err) };
    renderMessage(entry);
    if (err.code === "daily_limit_reached") {
      const resetsAt = new Date(Date.now() + (err.retryAfter || 0) * 1000);
      setUsage({ ...(state.usage || {}), remaining: 0, resets_at: resetsAt.toISOString() });
      showLimit(resetsAt);
    }
  }
}

function sendFailure(err) {
  if (err.code === "daily_limit_reached") return "the daily limit is reached.";
  if (err.code === "validation_failed" && err.fieldError("attachments")) return `a file ${err.fieldError("attachments")}.`;
  if (err.code === "validation_failed") return fieldMessage(err, "content", "The message");
  return describe(err);
}

async function resend(id) {
  const entry = state.messages.get(id);
  if (!entry) return;
  entry.el.remove();
  state.messages.delete(id);
  await send(entry.msg.content, entry.msg.attachments);
}

async function retryReply(id) {
  const entry = state.messages.get(id);
  if (!entry || !state.room) return;
  const failed = entry.msg;
  // Pending at once: the new attempt's events may arrive before this request's answer.
  entry.msg = { ...failed, status: "pending", content: "", error: undefined };
  entry.chars = 0;
  renderMessage(entry);
  try {
    const { body } = await call("POST", `/chatroom/${state.room.id}/messages/${id}/retry`);
    setUsage(body.usage);
  } catch (err) {
    if (entry.msg.status === "pending") {
      entry.msg = failed;
      renderMessage(entry);
    }
    toast(err.code === "not_retryable" ? "This reply is no longer failed." : describe(err), "error");
  }
}

function onComposerKey(event) {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
}

export function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  $("send-button").disabled = !input.value.trim();
}

/** Whether today's prompts are known to be used up (until the reset the server gave). */
function limitReached() {
  const usage = state.usage;
  return usage?.remaining === 0 && Date.now() < Date.parse(usage.resets_at);
}

function submitComposer(event) {
  event.preventDefault();
  const input = $("composer-input");
  const content = input.value;
  if (!content.trim()) return;
  if (limitReached()) {
    showLimit(new Date(state.usage.resets_at)); // the draft stays in the box
    return;
  }
  const files = takeFiles();
  if (files === null) return; // a file is still uploading; the draft stays
  input.value = "";
  autosize();
  send(content, files);
}

/** Whether a message follows the last one shown (so it belongs on the path on screen). */
function onPath(msg) {
  const last = [...state.messages.values()].at(-1);
  return !msg.parent_id || !last || msg.parent_id === last.msg.id || state.messages.has(msg.parent_id);
}

async function stopReply(id) {
  const entry = state.messages.get(id);
  if (!entry || !state.room) return;
  try {
    const { body } = await call("POST", `/chatroom/${state.room.id}/messages/${id}/cancel`);
    const stopped = addMessage(body, "end");
    stopped.chars = [...(body.content || "")].length;
    refreshUsage();
  } catch (err) {
    toast(err.code === "not_cancellable" ? "This reply has already finished." : describe(err), "error");
  }
}

/**
 * Shows a new branch in place of the one that started at `fromId`: that message and what
 * follows it leave the screen (they stay on the server, reachable through the versions).
 */
function replaceBranch(fromId, written) {
  const keep = new Set(written.map((msg) => msg.id));
  let dropping = false;
  for (const [id, entry] of [...state.messages]) {
    if (id === fromId) dropping = true;
    if (dropping && !keep.has(id)) {
      entry.el.remove();
      state.messages.delete(id);
    }
  }
  for (const msg of written) addMessage(msg, "end");
  scrollToEnd();
}

function branchFailure(err) {
  if (err.code === "daily_limit_reached") {
    const resetsAt = new Date(Date.now() + (err.retryAfter || 0) * 1000);
    setUsage({ ...(state.usage || {}), remaining: 0, resets_at: resetsAt.toISOString() });
    showLimit(resetsAt);
    return "The daily limit is reached.";
  }
  if (err.code === "reply_in_progress") return "The reply is still being written: stop it first.";
  if (err.code === "validation_failed" && err.fieldError("attachments")) return `a file ${err.fieldError("attachments")}.`;
  if (err.code === "validation_failed") return fieldMessage(err, "content", "The message");
  return describe(err);
}

async function regenerateReply(id) {
  if (!state.messages.has(id) || !state.room) return;
  try {
    const { body } = await call("POST", `/chatroom/${state.room.id}/messages/${id}/regenerate`);
    replaceBranch(id, [body.reply]);
    setUsage(body.usage);
  } catch (err) {
    toast(branchFailure(err), "error");
  }
}

function startEdit(id) {
  const entry = state.messages.get(id);
  if (!entry) return;
  entry.editing = true;
  entry.draft = entry.msg.content;
  entry.editError = null;
  renderMessage(entry);
}

function endEdit(id) {
  const entry = state.messages.get(id);
  if (!entry) return;
  entry.editing = false;
  entry.draft = null;
  entry.editError = null;
  renderMessage(entry);
  entry.el.querySelector('[data-action="edit-prompt"]')?.focus();
}

async function saveEdit(id) {
  const entry = state.messages.get(id);
  if (!entry || !state.room || entry.saving) return;
  const content = (entry.draft ?? "").trim();
  if (!content) {
    entry.editError = "The message must not be empty.";
    renderMessage(entry);
    return;
  }
  entry.saving = true;
  try {
    const { body } = await call("POST", `/chatroom/${state.room.id}/messages/${id}/edit`, { content });
    entry.editing = false;
    replaceBranch(id, [body.message, body.reply]);
    setUsage(body.usage);
  } catch (err) {
    entry.editError = branchFailure(err);
    renderMessage(entry);
  } finally {
    entry.saving = false;
  }
}

/** Makes the version `id` active and shows its branch. */
async function showVersion(id) {
  if (!id || !state.room) return;
  const generation = state.generation;
  try {
    const { body } = await call("POST", `/chatroom/${state.room.id}/messages/${id}/select`);
    if (generation !== state.generation) return;
    state.messages.clear();
    $("messages").replaceChildren();
    for (const msg of body.messages) addMessage(msg, "end");
    // The answer holds the latest 50 of the path; older ones page in as usual.
    state.nextBefore = body.messages.length >= 50 ? body.messages[0].id : null;
    historyStatus();
    const shown = state.messages.get(id);
    shown?.el.scrollIntoView({ block: "nearest" });
    shown?.el.querySelector(".versions button:not([disabled])")?.focus();
  } catch (err) {
    toast(describe(err), "error");
  }
}
