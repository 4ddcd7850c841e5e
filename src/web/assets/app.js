// gemchat's web client: sign-in with a one-time code, chatrooms, streamed replies, the daily
// limit and the Pro plan. Plain DOM: every piece of user or model text goes in as text
// (textContent, text nodes) or through the Markdown renderer, which builds elements itself.

import { ApiError, call, clearSession, loadSession, readEvents, saveSession, setUnauthorizedHandler } from "./api.js";
import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);

const state = {
  user: null,
  usage: null,
  subscription: null,
  proPrice: null,
  rooms: [],
  /** The open chatroom, or null for a new chat not yet created. */
  room: null,
  /** Messages of the open room by id (local ones by a temporary id): {msg, el}. */
  messages: new Map(),
  nextBefore: null,
  loadingOlder: false,
  stream: null,
  /** Bumped whenever the open room changes, so late answers for another room are dropped. */
  generation: 0,
  signin: { number: null, cooldownUntil: 0, timer: null },
};

// ---------------------------------------------------------------------------------------
// Small helpers

function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("aria-") || key === "role") node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });
const stampFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function untilText(date) {
  const minutes = Math.max(1, Math.round((date - Date.now()) / 60000));
  const hours = Math.floor(minutes / 60);
  if (hours === 0) return `${minutes} min`;
  return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`;
}

let toastTimer = null;
function toast(text, kind = "info") {
  const node = $("toast");
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    node.hidden = true;
  }, 6000);
}

function announce(text) {
  $("announcer").textContent = text;
}

/** "The number must …": a validation message of `field`, said of `label`, or the detail. */
function fieldMessage(err, field, label) {
  const fragment = err instanceof ApiError ? err.fieldError(field) : null;
  return fragment ? `${label} ${fragment}.` : describe(err);
}

function describe(err) {
  if (err instanceof ApiError) {
    if (err.code === "rate_limited") return `Too many requests; try again in ${err.retryAfter || 60} s.`;
    if (err.code === "unavailable") return "The service is briefly unavailable; try again in a moment.";
    return err.message;
  }
  return "Something went wrong. Try again.";
}

// ---------------------------------------------------------------------------------------
// Sign-in: number, then (new numbers) a name, then the code

function showSignin(notice) {
  closeStream();
  $("chat-view").hidden = true;
  $("signin-view").hidden = false;
  showSigninStep("number-form");
  if (notice) toast(notice);
}

function showSigninStep(id) {
  for (const form of ["number-form", "password-login-form", "signup-form", "code-form"]) $(form).hidden = form !== id;
  const focus = {
    "number-form": "mobile-input",
    "password-login-form": $("login-mobile").value ? "login-password" : "login-mobile",
    "signup-form": "name-input",
    "code-form": "code-input",
  }[id];
  $(focus).focus();
}

function fieldError(id, text) {
  const node = $(id);
  node.textContent = text || "";
  const input = node.id === "mobile-error" ? $("mobile-input") : node.id === "code-error" ? $("code-input") : null;
  if (input) input.setAttribute("aria-invalid", text ? "true" : "false");
}

function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}

async function submitNumber(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const number = $("mobile-input").value.trim();
  fieldError("mobile-error", "");
  if (!number) {
    fieldError("mobile-error", "Enter your mobile number.");
    return;
  }
  busy(form, true);
  try {
    await requestCode(number);
  } catch (err) {
    if (err.code === "user_not_found") {
      state.signin.number = number;
      $("signup-number").textContent = number;
      fieldError("signup-error", "");
      showSigninStep("signup-form");
    } else {
      fieldError("mobile-error", fieldMessage(err, "mobile_number", "This number"));
    }
  } finally {
    busy(form, false);
  }
}

async function submitSignup(event) {
  event.preventDefault();
  const form = event.currentTarget;
  fieldError("signup-error", "");
  const name = $("name-input").value.trim();
  busy(form, true);
  try {
    const body = { mobile_number: state.signin.number };
    if (name) body.name = name;
    await call("POST", "/auth/signup", body);
    await requestCode(state.signin.number);
  } catch (err) {
    if (err.code === "mobile_number_taken") await requestCode(state.signin.number).catch(() => {});
    else fieldError("signup-error", fieldMessage(err, "name", "The name"));
  } finally {
    busy(form, false);
  }
}

/** Asks for a code and shows the code step. A code asked for moments ago still works. */
async function requestCode(number) {
  try {
    const { body } = await call("POST", "/auth/send-otp", { mobile_number: number });
    enterCodeStep(number, body);
  } catch (err) {
    if (err.code !== "otp_cooldown") throw err;
    enterCodeStep(number, null);
    startCooldown(err.retryAfter || 30);
    fieldError("code-error", `A code was sent less than a minute ago. Use it, or ask for a new one in ${err.retryAfter || 30} s.`);
  }
}

function enterCodeStep(number, issued) {
  state.signin.number = number;
  $("code-number").textContent = number;
  $("code-input").value = "";
  fieldError("code-error", "");
  const dev = $("dev-code");
  dev.hidden = !issued?.otp;
  $("dev-code-value").textContent = issued?.otp || "";
  if (issued) {
    const minutes = Math.round((issued.expires_in || 300) / 60);
    $("code-hint").textContent = `The code is valid for ${minutes} minutes.`;
    startCooldown(30);
  }
  showSigninStep("code-form");
}

function startCooldown(seconds) {
  state.signin.cooldownUntil = Date.now() + seconds * 1000;
  clearInterval(state.signin.timer);
  const button = document.querySelector('[data-action="resend-code"]');
  const tick = () => {
    const left = Math.ceil((state.signin.cooldownUntil - Date.now()) / 1000);
    if (left > 0) {
      button.textContent = `Send a new code (${left} s)`;
      button.disabled = true;
    } else {
      button.textContent = "Send a new code";
      button.disabled = false;
      clearInterval(state.signin.timer);
    }
  };
  tick();
  state.signin.timer = setInterval(tick, 1000);
}

async function submitCode(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const otp = $("code-input").value.trim();
  fieldError("code-error", "");
  if (!/^\d{6}$/.test(otp)) {
    fieldError("code-error", "Enter the 6 digits of the code.");
    return;
  }
  busy(form, true);
  try {
    const { body } = await call("POST", "/auth/verify-otp", { mobile_number: state.signin.number, otp });
    saveSession(body);
    clearInterval(state.signin.timer);
    $("number-form").reset();
    $("signup-form").reset();
    await enterChat();
  } catch (err) {
    const text = {
      invalid_otp: "That code is wrong or has expired.",
      otp_attempts_exceeded: "Too many wrong codes: ask for a new one.",
    }[err.code];
    fieldError("code-error", text || describe(err));
  } finally {
    busy(form, false);
    startCooldown(Math.max(0, (state.signin.cooldownUntil - Date.now()) / 1000));
  }
}

async function submitPasswordLogin(event) {
  event.preventDefault();
  const form = event.currentTarget;
  fieldError("login-error", "");
  const mobile = $("login-mobile").value.trim();
  const password = $("login-password").value;
  if (!mobile || !password) {
    fieldError("login-error", "Enter your mobile number and your password.");
    return;
  }
  busy(form, true);
  try {
    const { body } = await call("POST", "/auth/login", { mobile_number: mobile, password });
    saveSession(body);
    form.reset();
    await enterChat();
  } catch (err) {
    const text = err.code === "invalid_credentials" ? "Wrong number or password." : null;
    fieldError("login-error", text || fieldMessage(err, "mobile_number", "This number"));
  } finally {
    busy(form, false);
  }
}

async function resendCode() {
  fieldError("code-error", "");
  try {
    await requestCode(state.signin.number);
    toast("A new code is on its way.");
  } catch (err) {
    fieldError("code-error", describe(err));
  }
}

async function signOut() {
  try {
    await call("POST", "/auth/logout");
  } catch {
    // Signed out here either way; the token expires on its own.
  }
  signedOut();
}

function signedOut(notice) {
  clearSession();
  $("search-input").value = "";
  $("search-results").hidden = true;
  $("recent-rooms").hidden = false;
  state.user = null;
  state.rooms = [];
  state.room = null;
  history.replaceState(null, "", "/");
  showSignin(notice);
}

// ---------------------------------------------------------------------------------------
// The chat view: account, plan and usage

async function enterChat() {
  $("signin-view").hidden = true;
  $("chat-view").hidden = false;
  const session = loadSession();
  if (session?.user) renderAccount(session.user);
  try {
    const { body } = await call("GET", "/user/me");
    renderAccount(body);
    setUsage(body.usage);
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
    if (err.status === 401) return;
  }
  await Promise.all([loadRooms(), route()]);
  loadPlan();
  checkoutReturn();
}

function renderAccount(user) {
  state.user = user;
  $("user-name").textContent = user.name || "You";
  $("user-number").textContent = user.mobile_number;
  $("welcome-title").textContent = user.name ? `Hello, ${user.name}` : "Hello";
}

function setUsage(usage) {
  if (!usage) return;
  state.usage = usage;
  const limited = usage.daily_limit !== null && usage.daily_limit !== undefined;
  const text = $("usage-text");
  const bar = $("usage-bar");
  if (limited) {
    text.textContent = `${usage.remaining} of ${usage.daily_limit} prompts left today`;
    bar.style.width = `${usage.daily_limit ? (100 * usage.remaining) / usage.daily_limit : 0}%`;
    bar.parentElement.hidden = false;
  } else {
    text.textContent = "Unlimited prompts";
    bar.parentElement.hidden = true;
  }
  if (limited && usage.remaining === 0) showLimit(new Date(usage.resets_at));
  else $("limit-banner").hidden = true;
}

function showLimit(resetsAt) {
  const limit = state.usage?.daily_limit ?? 5;
  const plan = state.user?.tier === "pro" ? "Pro" : "Basic";
  $("limit-text").textContent =
    `You have used all ${limit} prompts of today on the ${plan} plan. ` +
    `They come back at ${timeFormat.format(resetsAt)} (in ${untilText(resetsAt)}).` +
    (plan === "Basic" ? " Upgrade to Pro for unlimited prompts." : "");
  $("limit-upgrade").hidden = plan !== "Basic";
  $("limit-banner").hidden = false;
}

async function loadPlan() {
  try {
    const [status, plans] = await Promise.all([
      call("GET", "/subscription/status"),
      call("GET", "/subscription/plans"),
    ]);
    const pro = plans.body.plans.find((plan) => plan.id === "pro");
    state.proPrice = pro?.price || null;
    renderPlan(status.body);
  } catch (err) {
    if (err.status !== 401) $("plan-text").textContent = "Plan details are unavailable right now.";
  }
}

function priceText(price) {
  if (!price) return "";
  const amount = new Intl.NumberFormat(undefined, { style: "currency", currency: price.currency.toUpperCase() }).format(price.amount / 100);
  return `${amount}/${price.interval}`;
}

function renderPlan(status) {
  state.subscription = status;
  if (state.user) state.user.tier = status.tier;
  setUsage(status.usage);
  const pro = status.tier === "pro";
  let text;
  if (!pro) {
    const limit = status.usage.daily_limit;
    text = `Basic plan · ${limit} prompts a day`;
  } else if (status.cancel_at_period_end && status.current_period_end) {
    text = `Pro plan · ends on ${dateFormat.format(new Date(status.current_period_end))}`;
  } else if (status.status === "past_due") {
    text = "Pro plan · payment past due: update your card in billing";
  } else if (status.current_period_end) {
    text = `Pro plan · renews on ${dateFormat.format(new Date(status.current_period_end))}`;
  } else {
    text = "Pro plan";
  }
  $("plan-text").textContent = text;
  $("plan").dataset.tier = status.tier;
  const upgrade = $("upgrade-button");
  upgrade.hidden = pro;
  upgrade.textContent = state.proPrice ? `Upgrade to Pro · ${priceText(state.proPrice)}` : "Upgrade to Pro";
  $("billing-button").hidden = !pro && !status.status;
}

async function upgrade(button) {
  button.disabled = true;
  try {
    const origin = window.location.origin;
    const { body } = await call("POST", "/subscribe/pro", {
      success_url: `${origin}/?checkout=success`,
      cancel_url: `${origin}/?checkout=cancel`,
    });
    window.location.assign(body.checkout_url);
  } catch (err) {
    const text = {
      billing_not_configured: "Upgrading is not available on this server: billing is not configured.",
      billing_unavailable: "The payment service is not answering; try again in a moment.",
      already_subscribed: "You already have Pro.",
    }[err.code];
    toast(text || describe(err), "error");
    if (err.code === "already_subscribed") loadPlan();
  } finally {
    button.disabled = false;
  }
}

async function manageBilling(button) {
  button.disabled = true;
  try {
    const { body } = await call("POST", "/subscription/portal");
    window.location.assign(body.url);
  } catch (err) {
    toast(err.code === "no_subscription" ? "There is no subscription to manage yet." : describe(err), "error");
  } finally {
    button.disabled = false;
  }
}

/** Back from Stripe Checkout: Pro arrives with Stripe's webhook, usually within seconds. */
async function checkoutReturn() {
  const params = new URLSearchParams(window.location.search);
  const outcome = params.get("checkout");
  if (!outcome) return;
  history.replaceState(null, "", `/${window.location.hash}`);
  if (outcome !== "success") {
    toast("Checkout cancelled: you are still on the Basic plan.");
    return;
  }
  toast("Thank you! Your Pro plan starts as soon as the payment is confirmed.");
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && state.user) {
    try {
      const { body } = await call("GET", "/subscription/status");
      if (body.tier === "pro") {
        renderPlan(body);
        toast("You are on Pro now: unlimited prompts.");
        return;
      }
    } catch {
      // Keep waiting; the next round asks again.
    }
    await sleep(2000);
  }
}

// ---------------------------------------------------------------------------------------
// Account: name, password, sessions

function openAccount() {
  const user = state.user || {};
  $("profile-name").value = user.name || "";
  fieldError("profile-error", "");
  fieldError("password-error", "");
  $("password-form").reset();
  renderPasswordForm();
  $("account-dialog").showModal();
  loadSessions();
}

function renderPasswordForm() {
  const has = Boolean(state.user?.has_password);
  $("current-password-row").hidden = !has;
  $("password-help").textContent = has
    ? "Changing your password signs you out everywhere else."
    : "Set a password to sign in without a code. You can always sign in with a code instead.";
}

async function saveProfile(event) {
  event.preventDefault();
  fieldError("profile-error", "");
  try {
    const { body } = await call("PATCH", "/user/me", { name: $("profile-name").value.trim() });
    renderAccount({ ...state.user, ...body });
    toast("Name saved.");
  } catch (err) {
    fieldError("profile-error", fieldMessage(err, "name", "The name"));
  }
}

async function savePassword(event) {
  event.preventDefault();
  fieldError("password-error", "");
  const body = { new_password: $("new-password").value };
  if (state.user?.has_password) body.current_password = $("current-password").value;
  try {
    const { body: session } = await call("POST", "/auth/change-password", body);
    saveSession(session); // every earlier token, this one's included, is revoked
    renderAccount(session.user);
    $("password-form").reset();
    renderPasswordForm();
    loadSessions();
    toast("Password saved. Other devices are signed out.");
  } catch (err) {
    const text = err.code === "invalid_credentials" ? "The current password is wrong." : null;
    fieldError("password-error", text || fieldMessage(err, "new_password", "The password"));
  }
}

const METHODS = { otp: "one-time code", password: "password", reset: "password reset", password_change: "password change" };

function browserName(agent) {
  if (!agent) return "Unknown device";
  const known = [
    [/Edg\//, "Edge"],
    [/OPR\//, "Opera"],
    [/Chrome\//, "Chrome"],
    [/Firefox\//, "Firefox"],
    [/Safari\//, "Safari"],
    [/curl\//, "curl"],
  ].find(([pattern]) => pattern.test(agent));
  const system = [
    [/Android/, "Android"],
    [/iPhone|iPad/, "iOS"],
    [/Windows/, "Windows"],
    [/Mac OS X/, "macOS"],
    [/Linux/, "Linux"],
  ].find(([pattern]) => pattern.test(agent));
  const name = known ? known[1] : agent.slice(0, 40);
  return system ? `${name} on ${system[1]}` : name;
}

async function loadSessions() {
  const list = $("session-list");
  try {
    const { body } = await call("GET", "/auth/sessions");
    list.replaceChildren(
      ...body.sessions.map((session) => {
        const used = session.last_used_at || session.created_at;
        const details = [
          `Signed in with ${METHODS[session.method] || session.method} on ${stampFormat.format(new Date(session.created_at))}`,
          session.ip ? `from ${session.ip}` : null,
          `· last active ${stampFormat.format(new Date(used))}`,
        ].filter(Boolean);
        return h(
          "li",
          { className: "session" },
          h(
            "p",
            {},
            h("strong", {}, browserName(session.user_agent)),
            session.current ? h("span", { className: "badge" }, "This device") : null,
            h("br"),
            h("span", { className: "muted small" }, details.join(" ")),
          ),
          h(
            "button",
            {
              type: "button",
              className: "secondary small-button",
              dataset: { action: "revoke-session", id: session.id, current: String(session.current) },
            },
            session.current ? "Sign out" : "Sign out device",
          ),
        );
      }),
    );
  } catch (err) {
    if (err.status !== 401) list.replaceChildren(h("li", { className: "muted small" }, describe(err)));
  }
}

async function revokeSession(button) {
  const current = button.dataset.current === "true";
  try {
    await call("DELETE", `/auth/sessions/${button.dataset.id}`);
    if (current) {
      $("account-dialog").close();
      signedOut("You are signed out.");
    } else {
      loadSessions();
    }
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
  }
}

// ---------------------------------------------------------------------------------------
// Chatrooms in the sidebar

async function loadRooms() {
  try {
    const { body } = await call("GET", "/chatroom");
    state.rooms = body.chatrooms;
    renderRooms();
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
  }
}

function renderRooms() {
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

function upsertRoom(room, toTop) {
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

/** A chat's name from its first prompt: the first line without Markdown marks, shortened. */
function nameFrom(content) {
  const line = content.split("\n").find((l) => l.trim()) || "";
  const words = line
    .replace(/^\s*(#{1,6}|>|[-*+]|\d+[.)])\s+/, "")
    .replace(/(\*\*|__|~~|`)/g, "")
    .replace(/\s+/g, " ")
    .trim();
  if (!words) return "New chat";
  return words.length > 60 ? `${words.slice(0, 59).trimEnd()}…` : words;
}

// ---------------------------------------------------------------------------------------
// Search across the user's chats

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
    { href: `#/c/${hit.chatroom.id}`, className: "result-link", dataset: { action: "open-result", message: hit.message.id } },
    h("span", { className: "result-room" }, hit.chatroom.name),
    who,
    snippet,
  );
  return h("li", {}, link);
}

function clearSearch() {
  $("search-input").value = "";
  search();
}

/** Shows a message of the open room, loading older pages until it is there. */
async function revealMessage(id) {
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

// ---------------------------------------------------------------------------------------
// The conversation

function route() {
  closeSidebar();
  const match = window.location.hash.match(/^#\/c\/([0-9a-fA-F-]{36})$/);
  return match ? openRoom(match[1]) : openNewChat();
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

function nearEnd() {
  const scroller = $("messages-scroll");
  return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80;
}

function scrollToEnd() {
  const scroller = $("messages-scroll");
  scroller.scrollTop = scroller.scrollHeight;
}

/** How far a message has come; a reply only moves forward (a retry starts it again). */
const STAGE = { pending: 0, streaming: 1, completed: 2, failed: 2 };

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
  const parts = [who, content];
  if (msg.local === "sending") parts.push(h("p", { className: "meta" }, "Sending…"));
  if (msg.local === "unsent") {
    parts.push(
      h("p", { className: "meta error" }, `Not sent: ${msg.failure}`),
      h("button", { type: "button", className: "secondary small-button", dataset: { action: "resend", id: msg.id } }, "Try again"),
    );
  }
  if (msg.status === "failed") {
    parts.push(
      h("p", { className: "meta error" }, `The reply failed: ${msg.error?.message || "unknown error"}`),
      h("button", { type: "button", className: "secondary small-button", dataset: { action: "retry-reply", id: msg.id } }, "Retry"),
    );
  }
  el.replaceChildren(h("div", { className: "bubble" }, ...parts));
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

// ---------------------------------------------------------------------------------------
// Live events

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

function closeStream() {
  state.stream?.controller.abort();
  state.stream = null;
}

function handleEvent({ type, data }) {
  if (!data || typeof data !== "object") return;
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
    addMessage(data, "end");
  } else if (type === "reply.delta") {
    let entry = state.messages.get(data.message_id);
    if (!entry) entry = addMessage({ id: data.message_id, role: "model", status: "streaming", content: "" }, "end");
    // A delta for a failed reply means it is being retried (here or on another device).
    if (entry.msg.status === "completed") return;
    applyDelta(entry, data.delta, data.offset || 0);
    entry.msg.status = "streaming";
    scheduleRender(entry);
    return;
  } else if (type === "reply.completed" || type === "reply.failed") {
    const entry = addMessage(data, "end");
    entry.chars = [...(data.content || "")].length;
    if (type === "reply.failed") {
      announce(`The reply failed: ${data.error?.message || ""}`);
      refreshUsage(); // a failed reply gives its prompt back
    } else {
      announce(`gemchat replied: ${(data.content || "").slice(0, 200)}`);
    }
  }
  if (stick) scrollToEnd();
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

async function refreshUsage() {
  try {
    const { body } = await call("GET", "/user/me");
    setUsage(body.usage);
  } catch {
    // The next send reports usage again.
  }
}

// ---------------------------------------------------------------------------------------
// Sending

let localIds = 0;

async function send(content) {
  content = content.trim();
  if (!content) return;
  if (state.usage?.remaining === 0) {
    showLimit(new Date(state.usage.resets_at));
    return;
  }
  const generation = state.generation;
  const entry = addMessage({ id: `local-${++localIds}`, role: "user", content, status: "completed", local: "sending" }, "end");
  scrollToEnd();
  try {
    if (!state.room) {
      const { body: room } = await call("POST", "/chatroom", { name: nameFrom(content) });
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
    const { body } = await call("POST", `/chatroom/${room.id}/message`, { content });
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
    upsertRoom({ ...room, last_message_at: body.message.created_at }, true);
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
  if (err.code === "validation_failed") return fieldMessage(err, "content", "The message");
  return describe(err);
}

async function resend(id) {
  const entry = state.messages.get(id);
  if (!entry) return;
  entry.el.remove();
  state.messages.delete(id);
  await send(entry.msg.content);
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

function autosize() {
  const input = $("composer-input");
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  $("send-button").disabled = !input.value.trim();
}

function submitComposer(event) {
  event.preventDefault();
  const input = $("composer-input");
  const content = input.value;
  if (!content.trim()) return;
  input.value = "";
  autosize();
  send(content);
}

// ---------------------------------------------------------------------------------------
// Sidebar on narrow screens, dialogs, and wiring

function openSidebar() {
  document.body.classList.add("sidebar-open");
  $("scrim").hidden = false;
  document.querySelector('[data-action="open-sidebar"]').setAttribute("aria-expanded", "true");
  document.querySelector(".new-chat").focus();
}

function closeSidebar() {
  if (!document.body.classList.contains("sidebar-open")) return;
  document.body.classList.remove("sidebar-open");
  $("scrim").hidden = true;
  document.querySelector('[data-action="open-sidebar"]').setAttribute("aria-expanded", "false");
}

const actions = {
  "change-number": () => showSigninStep("number-form"),
  "use-dev-code": () => {
    $("code-input").value = $("dev-code-value").textContent;
    $("code-input").focus();
  },
  "resend-code": resendCode,
  "use-password": () => {
    $("login-mobile").value = $("mobile-input").value;
    fieldError("login-error", "");
    showSigninStep("password-login-form");
  },
  "open-account": openAccount,
  "revoke-session": (button) => revokeSession(button),
  "sign-out": signOut,
  "new-chat": () => {
    if (window.location.hash === "#/" || !window.location.hash) openNewChat();
    else window.location.hash = "#/";
    closeSidebar();
  },
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
  "close-dialog": (button) => button.closest("dialog").close(),
  upgrade: (button) => upgrade(button),
  "manage-billing": (button) => manageBilling(button),
  resend: (button) => resend(button.dataset.id),
  "retry-reply": (button) => retryReply(button.dataset.id),
  "open-result": (link) => openResult(link),
};

function wire() {
  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-action]");
    if (!button || button.disabled) return;
    const action = actions[button.dataset.action];
    if (action) {
      event.preventDefault();
      action(button);
    }
  });
  $("number-form").addEventListener("submit", submitNumber);
  $("signup-form").addEventListener("submit", submitSignup);
  $("code-form").addEventListener("submit", submitCode);
  $("password-login-form").addEventListener("submit", submitPasswordLogin);
  $("profile-form").addEventListener("submit", saveProfile);
  $("password-form").addEventListener("submit", savePassword);
  $("rename-form").addEventListener("submit", renameRoom);
  $("delete-form").addEventListener("submit", deleteRoom);
  $("composer").addEventListener("submit", submitComposer);
  $("composer-input").addEventListener("keydown", onComposerKey);
  $("composer-input").addEventListener("input", autosize);
  $("scrim").addEventListener("click", closeSidebar);
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
  $("messages-scroll").addEventListener("scroll", () => {
    if ($("messages-scroll").scrollTop < 200) loadOlder();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
  window.addEventListener("hashchange", () => {
    if (loadSession()) route();
  });
  setUnauthorizedHandler(() => {
    if (loadSession()) signedOut("Your session has ended. Sign in again to continue.");
  });
}

wire();
autosize();
if (loadSession()) enterChat();
else showSignin();
