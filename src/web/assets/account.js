// The user and their plan: the name, today's usage and the daily limit, Pro through Stripe
// Checkout and the billing portal, and the account dialog (name, password, signed-in devices,
// the usage chart; its data section is account-data.js).

import { call, saveSession } from "./api.js";
import { loadUsageChart } from "./usage-chart.js";
import { state } from "./state.js";
import { $, dateFormat, describe, fieldError, fieldMessage, h, sleep, stampFormat, timeFormat, toast, untilText } from "./ui.js";

/** What happens when the user signs this device out from the list; set by `wireAccount`. */
let onSignedOut = () => {};

export const accountActions = {
  upgrade: (button) => upgrade(button),
  "manage-billing": (button) => manageBilling(button),
  "open-account": openAccount,
  "cancel-pro": () => {
    const end = state.subscription?.current_period_end;
    const until = end ? `You keep Pro until ${dateFormat.format(new Date(end))}, then move` : "You move";
    $("cancel-text").textContent =
      `${until} to Basic (${state.basicLimit ?? 5} prompts a day). Until then you can change your mind.`;
    $("cancel-dialog").showModal();
  },
  "keep-pro": (button) => changeCancellation(button, () => call("POST", "/subscription/reactivate")),
  "revoke-session": (button) => revokeSession(button),
};

export function wireAccount({ signedOut }) {
  onSignedOut = signedOut;
  $("profile-form").addEventListener("submit", saveProfile);
  $("password-form").addEventListener("submit", savePassword);
  $("cancel-form").addEventListener("submit", (event) => {
    event.preventDefault();
    $("cancel-dialog").close();
    changeCancellation($("cancel-button"), () => call("POST", "/subscription/cancel"));
  });
}

export function renderAccount(user) {
  state.user = user;
  $("user-name").textContent = user.name || "You";
  $("user-number").textContent = user.mobile_number;
  $("welcome-title").textContent = user.name ? `Hello, ${user.name}` : "Hello";
  $("admin-link").hidden = !user.is_admin;
}

export function setUsage(usage) {
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

let resetTimer = null;

/** Explains the daily limit until the prompts come back, then asks the server again. */
export function showLimit(resetsAt) {
  const limit = state.usage?.daily_limit ?? 5;
  const plan = state.user?.tier === "pro" ? "Pro" : "Basic";
  $("limit-text").textContent =
    `You have used all ${limit} prompts of today on the ${plan} plan. ` +
    `They come back at ${timeFormat.format(resetsAt)} (in ${untilText(resetsAt)}).` +
    (plan === "Basic" ? " Upgrade to Pro for unlimited prompts." : "");
  $("limit-upgrade").hidden = plan !== "Basic";
  $("limit-banner").hidden = false;
  clearTimeout(resetTimer);
  // Just after the reset; at most every 30 s should the server's clock lag ours.
  resetTimer = setTimeout(refreshUsage, Math.max(resetsAt - Date.now() + 1000, 30_000));
}

export async function refreshUsage() {
  try {
    const { body } = await call("GET", "/user/me");
    setUsage(body.usage);
  } catch {
    // The next send reports usage again.
  }
}

export async function loadPlan() {
  try {
    const [status, plans] = await Promise.all([
      call("GET", "/subscription/status"),
      call("GET", "/subscription/plans"),
    ]);
    const pro = plans.body.plans.find((plan) => plan.id === "pro");
    state.proPrice = pro?.price || null;
    state.basicLimit = plans.body.plans.find((plan) => plan.id === "basic")?.daily_limit;
    renderPlan(status.body);
  } catch (err) {
    if (err.status !== 401) $("plan-text").textContent = "Plan details are unavailable right now.";
  }
}

/** "$9.99/month" from Stripe's amount in the currency's smallest unit (cents; yen). */
function priceText(price) {
  if (!price) return "";
  const format = new Intl.NumberFormat(undefined, { style: "currency", currency: price.currency.toUpperCase() });
  const digits = format.resolvedOptions().maximumFractionDigits;
  return `${format.format(price.amount / 10 ** digits)}/${price.interval}`;
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
  const running = pro && ["active", "trialing"].includes(status.status);
  $("cancel-button").hidden = !running || status.cancel_at_period_end;
  $("keep-button").hidden = !pro || !status.cancel_at_period_end;
}

/** What billing refusals mean for the user. */
const BILLING_PROBLEMS = {
  billing_not_configured: "Payments are not set up on this server: billing is not configured.",
  billing_unavailable: "The payment service is not answering; try again in a moment.",
  already_subscribed: "You already have Pro.",
  no_subscription: "There is no subscription to manage yet.",
  not_cancelling: "Pro is not scheduled to end.",
};

/** Runs a billing request for `button` (disabled meanwhile); a refusal is explained, and a
 * conflict (the plan changed elsewhere) reloads the plan. */
async function billingAction(button, run) {
  button.disabled = true;
  try {
    await run();
  } catch (err) {
    toast(BILLING_PROBLEMS[err.code] || describe(err), "error");
    if (err.status === 409) loadPlan();
  } finally {
    button.disabled = false;
  }
}

function upgrade(button) {
  return billingAction(button, async () => {
    const origin = window.location.origin;
    const { body } = await call("POST", "/subscribe/pro", {
      success_url: `${origin}/?checkout=success`,
      cancel_url: `${origin}/?checkout=cancel`,
    });
    window.location.assign(body.checkout_url);
  });
}

/** Schedules the end of Pro at the period's end, or undoes that: `request` says which. */
function changeCancellation(button, request) {
  return billingAction(button, async () => {
    const { body } = await request();
    renderPlan(body);
    toast(body.cancel_at_period_end ? "Pro will end with this period." : "Pro continues.");
  });
}

function manageBilling(button) {
  return billingAction(button, async () => {
    const { body } = await call("POST", "/subscription/portal");
    window.location.assign(body.url);
  });
}

/** Back from Stripe Checkout: Pro arrives with Stripe's webhook, usually within seconds. */
export async function checkoutReturn() {
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

function openAccount() {
  const user = state.user || {};
  $("profile-name").value = user.name || "";
  fieldError("profile-error", "");
  fieldError("password-error", "");
  $("password-form").reset();
  renderPasswordForm();
  $("account-dialog").showModal();
  loadSessions();
  loadUsageChart();
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
      onSignedOut("You are signed out.");
    } else {
      loadSessions();
    }
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
  }
}
