// Sign-in: the mobile number, then (for a new number) a name, then the one-time code; or the
// number and a password. In OTP_DELIVERY=response mode the code the API returned is shown,
// marked as the stand-in for an SMS.

import { call, saveSession } from "./api.js";
import { state } from "./state.js";
import { $, busy, describe, fieldError, fieldMessage, toast } from "./ui.js";

/** What happens once a session is saved; set by `wireSignin`. */
let onSignedIn = async () => {};

export const signinActions = {
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
};

export function wireSignin({ signedIn }) {
  onSignedIn = signedIn;
  $("number-form").addEventListener("submit", submitNumber);
  $("signup-form").addEventListener("submit", submitSignup);
  $("code-form").addEventListener("submit", submitCode);
  $("password-login-form").addEventListener("submit", submitPasswordLogin);
}

export function showSignin(notice) {
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
    await onSignedIn();
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
    await onSignedIn();
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
