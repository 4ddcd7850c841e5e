// Search across the user's chats (`/search`): results with the matched words marked; a hit
// opens its room scrolled to the message.

import { call } from "./api.js";
import { revealMessage, route } from "./conversation.js";
import { closeSidebar } from "./rooms.js";
import { $, describe, h } from "./ui.js";

export const searchActions = {
  "open-result": (link) => openResult(link),
};

export function wireSearch() {
  $("search-input").addEventListener("input", onSearchInput);
  $("search-input").addEventListener("keydown", (event) => {
    if (event.key === "Escape" && $("search-input").value) {
      event.stopPropagation();
      clearSearch();
    }
  });
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(searchTimer);
    search();
  });
}

let searchTimer = null;

let searchSeq = 0;

function onSearchInput() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(search, 250);
}

async function search() {
  const q = $("search-input").value.trim();
  const seq = ++searchSeq;
  $("search-results").hidden = !q;
  $("recent-rooms").hidden = Boolean(q);
  if (!q) return;
  $("results-status").textContent = "Searching…";
  try {
    const { body } = await call("GET", `/search?q=${encodeURIComponent(q)}&limit=20`);
    if (seq !== searchSeq) return; // a newer search is under way
    $("result-list").replaceChildren(...body.results.map(renderResult));
    $("results-status").textContent = body.results.length
      ? `${body.results.length} ${body.results.length === 1 ? "match" : "matches"}`
      : "No messages match.";
  } catch (err) {
    if (seq === searchSeq && err.status !== 401) $("results-status").textContent = describe(err);
  }
}

/** A search hit: the room's name and the snippet, its matched words (between `**`) marked. */
function renderResult(hit) {
  const snippet = h("span", { className: "result-snippet" });
  hit.snippet.split("**").forEach((part, i) => {
    if (part) snippet.append(i % 2 ? h("mark", {}, part) : part);
  });
  const who = h("span", { className: "visually-hidden" }, hit.message.role === "user" ? "You: " : "gemchat: ");
  const link = h(
    "a",
    { href: `#/c/${hit.chatroom.id}`, className: "result-link", dataset: { action: "open-result", message: hit.message.id, role: hit.message.role } },
    h("span", { className: "result-room" }, hit.chatroom.name),
    who,
    snippet,
  );
  return h("li", {}, link);
}

export function clearSearch() {
  $("search-input").value = "";
  search();
}

/** Opens a search hit: its room, scrolled to the message. */
async function openResult(link) {
  closeSidebar();
  const target = link.getAttribute("href");
  if (window.location.hash !== target) {
    history.pushState(null, "", target);
    await route();
  }
  await revealMessage(link.dataset.message);
}
