// The Admin view (`#/admin`, shown to admins only; the server refuses everyone else whatever
// this page does): tiles from /admin/stats, the users with search, paging and the Disabled and
// Comp Pro switches (each confirmed first), the failed replies, and the audit log.

import { call } from "./api.js";
import { $, describe, fieldError, h, stampFormat, toast } from "./ui.js";

const numberFormat = new Intl.NumberFormat();
const PAGE = 20;
/** The cursor of the next page of users, or null. */
let nextBefore = null;
/** The switch change waiting for its confirmation: {id, field, value, name}. */
let pending = null;

const CONFIRM = {
  disabled: {
    on: ["Disable this account?", (who) => `${who} is signed out everywhere at once and cannot sign in until the account is enabled again.`, "Disable"],
    off: ["Enable this account?", (who) => `${who} can sign in again (the sessions ended by disabling stay ended).`, "Enable"],
  },
  pro_override: {
    on: ["Give Pro for free?", (who) => `${who} gets Pro, without a daily limit, whatever Stripe says, until you switch it off.`, "Give Pro"],
    off: ["End the free Pro plan?", (who) => `${who} goes back to the plan their Stripe subscription gives (Basic without one).`, "End free Pro"],
  },
};

const ACTIONS = {
  "admin.grant": "made an admin",
  "admin.revoke": "no longer an admin",
  "user.disable": "disabled",
  "user.enable": "enabled",
  "user.pro_override.on": "given Pro for free",
  "user.pro_override.off": "free Pro ended",
};

export const adminActions = {
  "admin-refresh": () => loadAll(),
  "admin-more": () => loadUsers({ more: true }),
};

export function wireAdmin() {
  $("admin-search").addEventListener("submit", (event) => {
    event.preventDefault();
    loadUsers();
  });
  $("admin-users").addEventListener("change", askToSwitch);
  $("admin-confirm-form").addEventListener("submit", confirmSwitch);
  $("admin-confirm-dialog").addEventListener("close", () => {
    pending = null;
  });
}

export function showAdmin() {
  $("conversation-view").hidden = true;
  $("admin-view").hidden = false;
  loadAll();
}

export function hideAdmin() {
  $("admin-view").hidden = true;
  $("conversation-view").hidden = false;
}

function loadAll() {
  // The users first: the failed replies and the audit log name the users already seen.
  return Promise.all([loadStats(), loadUsers().then(() => Promise.all([loadFailed(), loadAudit()]))]);
}

/** A refusal: a non-admin is sent back to the chat; anything else is said. */
function refused(err) {
  if (err.status === 403) {
    toast("The Admin view is for admins only.", "error");
    window.location.hash = "";
  } else if (err.status !== 401) {
    toast(describe(err), "error");
  }
}

/** Names of the users listed so far, by id. */
const names = new Map();

/** A user by name when listed, else by the end of their id (a UUIDv7 begins with its time,
 * the same for ids made together). */
function userLabel(id) {
  return names.get(id) || (id ? `…${id.slice(-8)}` : "");
}

function age(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h`;
}

async function loadStats() {
  try {
    const { body } = await call("GET", "/admin/stats");
    const { input, output, thinking } = body.tokens_today;
    const tiles = [
      ["users", "Users", body.users.total],
      ["pro", "On Pro", body.users.pro],
      ["active", "Active today", body.users.active_today],
      ["prompts", "Prompts today", body.prompts_today],
      ["tokens", "Tokens today", input + output + thinking, `${numberFormat.format(input)} in · ${numberFormat.format(output)} out`],
      ["queue", "In the queue", body.queue.depth, body.queue.depth ? `oldest waiting ${age(body.queue.oldest_age_seconds)}` : "nothing waiting"],
      ["failed", "Failed in 24 h", body.replies.failed_24h, `${body.replies.pending} pending · ${body.replies.streaming} streaming`],
    ];
    $("admin-tiles").replaceChildren(
      ...tiles.map(([key, label, value, detail]) =>
        h(
          "li",
          { className: key === "failed" && value > 0 ? "tile warn" : "tile", dataset: { tile: key } },
          h("span", { className: "figure" }, numberFormat.format(value)),
          h("span", { className: "label" }, label),
          detail ? h("span", { className: "label small" }, h("br"), detail) : null,
        ),
      ),
    );
  } catch (err) {
    refused(err);
  }
}

async function loadUsers({ more = false } = {}) {
  const params = new URLSearchParams({ limit: String(PAGE) });
  const q = $("admin-q").value.trim();
  if (q) params.set("q", q);
  if (more && nextBefore) params.set("before", nextBefore);
  try {
    const { body } = await call("GET", `/admin/users?${params}`);
    nextBefore = body.next_before;
    const rows = body.users.map(userRow);
    if (more) $("admin-users").append(...rows);
    else $("admin-users").replaceChildren(...rows);
    $("admin-users-empty").hidden = $("admin-users").children.length > 0;
    $("admin-more").hidden = !nextBefore;
  } catch (err) {
    refused(err);
  }
}

function userRow(user) {
  const who = user.name || user.mobile_number;
  names.set(user.id, who);
  const plan = user.tier === "pro" ? (user.pro_override ? "Pro (free)" : "Pro") : "Basic";
  const today = user.usage.daily_limit === null ? `${user.usage.used_today}` : `${user.usage.used_today} of ${user.usage.daily_limit}`;
  return h(
    "tr",
    { className: user.disabled ? "disabled" : "", dataset: { id: user.id } },
    h("td", {}, h("strong", {}, user.name || "(no name)"), h("br"), h("span", { className: "muted small" }, user.mobile_number)),
    h("td", {}, plan),
    h("td", {}, today),
    h("td", {}, user.last_seen_at ? stampFormat.format(new Date(user.last_seen_at)) : "never"),
    h("td", {}, toggle(user, "pro_override", `Comp Pro for ${who}`, who)),
    h("td", {}, toggle(user, "disabled", `Disabled: ${who}`, who)),
  );
}

function toggle(user, field, label, who) {
  const input = h("input", { type: "checkbox", checked: Boolean(user[field]), "aria-label": label, dataset: { field, id: user.id, who } });
  return h("label", { className: "switch" }, input);
}

/** A switch flipped: it flips back until the change is confirmed and made. */
function askToSwitch(event) {
  const input = event.target;
  if (input.type !== "checkbox") return;
  const value = input.checked;
  input.checked = !value;
  const { field, id, who } = input.dataset;
  const [title, text, action] = CONFIRM[field][value ? "on" : "off"];
  pending = { id, field, value, who };
  $("admin-confirm-title").textContent = title;
  $("admin-confirm-text").textContent = text(who);
  const button = $("admin-confirm-button");
  button.textContent = action;
  button.className = field === "disabled" && value ? "primary danger" : "primary";
  button.disabled = false;
  fieldError("admin-confirm-error", "");
  $("admin-confirm-dialog").showModal();
}

async function confirmSwitch(event) {
  event.preventDefault();
  if (!pending) return;
  const { id, field, value, who } = pending;
  const button = $("admin-confirm-button");
  button.disabled = true;
  try {
    const { body } = await call("PATCH", `/admin/users/${encodeURIComponent(id)}`, { [field]: value });
    $("admin-confirm-dialog").close();
    const row = [...$("admin-users").children].find((tr) => tr.dataset.id === id);
    row?.replaceWith(userRow(body));
    toast(`${who}: ${ACTIONS[`user.${field === "disabled" ? (value ? "disable" : "enable") : `pro_override.${value ? "on" : "off"}`}`]}.`);
    loadStats();
    loadAudit();
  } catch (err) {
    fieldError("admin-confirm-error", describe(err));
    button.disabled = false;
  }
}

async function loadFailed() {
  try {
    const { body } = await call("GET", "/admin/replies?status=failed&limit=20");
    $("admin-failed").replaceChildren(
      ...body.replies.map((reply) =>
        h(
          "tr",
          {},
          h("td", {}, stampFormat.format(new Date(reply.created_at))),
          h("td", {}, h("code", {}, reply.error?.code || "")),
          h("td", {}, reply.error?.message || ""),
          h("td", { title: reply.user_id }, userLabel(reply.user_id)),
        ),
      ),
    );
    $("admin-failed-empty").hidden = body.replies.length > 0;
  } catch (err) {
    refused(err);
  }
}

async function loadAudit() {
  try {
    const { body } = await call("GET", "/admin/audit?limit=20");
    $("admin-audit").replaceChildren(
      ...body.entries.map((entry) =>
        h(
          "li",
          {},
          h("span", { className: "muted" }, stampFormat.format(new Date(entry.at))),
          " · ",
          h("strong", { title: entry.target }, userLabel(entry.target)),
          ` ${ACTIONS[entry.action] || entry.action} `,
          h("span", { className: "muted" }, entry.admin_id ? `by ${userLabel(entry.admin_id)}` : "on the command line"),
        ),
      ),
    );
    $("admin-audit-empty").hidden = body.entries.length > 0;
  } catch (err) {
    refused(err);
  }
}
