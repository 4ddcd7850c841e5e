// The sidebar: the chatroom list (newest activity first), renaming and deleting a room, and
// the drawer it becomes on narrow screens.

import { call } from "./api.js";
import { state } from "./state.js";
import { $, announce, describe, fieldError, fieldMessage, h, toast } from "./ui.js";

export const roomActions = {
  "open-sidebar": openSidebar,
  "close-sidebar": closeSidebar,
  "rename-room": () => {
    $("rename-input").value = state.room?.name || "";
    fieldError("rename-error", "");
    $("rename-dialog").showModal();
    $("rename-input").select();
  },
  "delete-room": () => {
    $("delete-name").textContent = state.room?.name || "";
    $("delete-dialog").showModal();
  },
};

export function wireRooms() {
  $("rename-form").addEventListener("submit", renameRoom);
  $("delete-form").addEventListener("submit", deleteRoom);
  $("scrim").addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
}

export async function loadRooms() {
  try {
    const { body } = await call("GET", "/chatroom");
    state.rooms = body.chatrooms;
    renderRooms();
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
  }
}

export function renderRooms() {
  const list = $("room-list");
  list.replaceChildren(
    ...state.rooms.map((room) => {
      const active = state.room?.id === room.id;
      const link = h("a", { href: `#/c/${room.id}`, className: "room-link", title: room.name }, room.name);
      if (active) link.setAttribute("aria-current", "page");
      return h("li", { className: active ? "room active" : "room", dataset: { id: room.id } }, link);
    }),
  );
  $("rooms-empty").hidden = state.rooms.length > 0;
}

export function upsertRoom(room, toTop) {
  const others = state.rooms.filter((r) => r.id !== room.id);
  const index = state.rooms.findIndex((r) => r.id === room.id);
  if (toTop || index === -1) state.rooms = [room, ...others];
  else state.rooms[index] = room;
  renderRooms();
}

async function renameRoom(event) {
  event.preventDefault();
  const name = $("rename-input").value.trim();
  fieldError("rename-error", "");
  if (!name) {
    fieldError("rename-error", "Give the chat a name.");
    return;
  }
  try {
    const { body } = await call("PATCH", `/chatroom/${state.room.id}`, { name });
    state.room = body;
    $("room-title").textContent = body.name;
    upsertRoom(body, false);
    $("rename-dialog").close();
    announce(`Renamed to ${body.name}`);
  } catch (err) {
    fieldError("rename-error", fieldMessage(err, "name", "The name"));
  }
}

async function deleteRoom(event) {
  event.preventDefault();
  const room = state.room;
  try {
    await call("DELETE", `/chatroom/${room.id}`);
    $("delete-dialog").close();
    state.rooms = state.rooms.filter((r) => r.id !== room.id);
    renderRooms();
    toast(`Deleted “${room.name}”.`);
    window.location.hash = "#/";
  } catch (err) {
    $("delete-dialog").close();
    toast(describe(err), "error");
  }
}

function openSidebar() {
  document.body.classList.add("sidebar-open");
  $("scrim").hidden = false;
  for (const button of document.querySelectorAll('[data-action="open-sidebar"]')) button.setAttribute("aria-expanded", "true");
  document.querySelector(".new-chat").focus();
}

export function closeSidebar() {
  if (!document.body.classList.contains("sidebar-open")) return;
  document.body.classList.remove("sidebar-open");
  $("scrim").hidden = true;
  for (const button of document.querySelectorAll('[data-action="open-sidebar"]')) button.setAttribute("aria-expanded", "false");
}
