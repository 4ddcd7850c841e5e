// Small DOM helpers shared by the client's modules: element building (text only, never
// HTML), toasts, announcements for screen readers, dates, and error messages for people.

import { ApiError } from "./api.js";

export const $ = (id) => document.getElementById(id);

/** An element with properties (`dataset`, `aria-*` and `role` as attributes) and children;
 * strings become text nodes. */
export function h(tag, props = {}, ...children) {
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

export function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

export const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });

export const dateFormat = new Intl.DateTimeFormat(undefined, { day: "numeric", month: "short", year: "numeric" });

export const stampFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

export function untilText(date) {
  const minutes = Math.max(1, Math.round((date - Date.now()) / 60000));
  const hours = Math.floor(minutes / 60);
  if (hours === 0) return `${minutes} min`;
  return minutes % 60 === 0 ? `${hours} h` : `${hours} h ${minutes % 60} min`;
}

let toastTimer = null;

export function toast(text, kind = "info") {
  const node = $("toast");
  node.textContent = text;
  node.dataset.kind = kind;
  node.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => {
    node.hidden = true;
  }, 6000);
}

export function announce(text) {
  $("announcer").textContent = text;
}

/** "The number must …": a validation message of `field`, said of `label`, or the detail. */
export function fieldMessage(err, field, label) {
  const fragment = err instanceof ApiError ? err.fieldError(field) : null;
  return fragment ? `${label} ${fragment}.` : describe(err);
}

export function describe(err) {
  if (err instanceof ApiError) {
    if (err.code === "rate_limited") return `Too many requests; try again in ${err.retryAfter || 60} s.`;
    if (err.code === "unavailable") return "The service is briefly unavailable; try again in a moment.";
    return err.message;
  }
  return "Something went wrong. Try again.";
}

/** Shows (or clears) the error of a form field; its input is the one described by it. */
export function fieldError(id, text) {
  $(id).textContent = text || "";
  const input = document.querySelector(`[aria-describedby~="${id}"]`);
  if (input) input.setAttribute("aria-invalid", text ? "true" : "false");
}

/** Disables a form's buttons while its request is under way. */
export function busy(form, on) {
  for (const button of form.querySelectorAll("button")) button.disabled = on;
  form.setAttribute("aria-busy", on ? "true" : "false");
}
