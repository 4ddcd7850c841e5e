// The account's rights: taking its data out (GET /user/me/export, saved as a file) and
// deleting the account (DELETE /user/me), which asks for the word DELETE and a sign-in from
// the last 10 minutes; after signing in again, the deletion dialog comes back by itself.

import { call, download, loadSession } from "./api.js";
import { state } from "./state.js";
import { $, describe, fieldError, h, toast } from "./ui.js";

/** Set while the user signs in again to delete: the id of the account to delete. */
const PENDING = "gemchat.deleteAfterSignIn";
/** How recent the server wants the sign-in behind the token (less a margin for the clocks). */
const RECENT_MS = 10 * 60 * 1000 - 30 * 1000;
const WORD = "DELETE";

let onSignedOut = () => {};

export const dataActions = {
  "download-data": downloadData,
  "ask-delete-account": askDelete,
  "reauth-delete": signInAgain,
};

export function wireAccountData({ signedOut }) {
  onSignedOut = signedOut;
  $("delete-confirm").addEventListener("input", () => {
    $("delete-account-button").disabled = $("delete-confirm").value.trim() !== WORD;
  });
  $("delete-account-form").addEventListener("submit", deleteAccount);
}

/** After a sign-in: reopens the deletion this account signed in again for. */
export function resumeDeletion() {
  const pending = sessionStorage.getItem(PENDING);
  if (!pending) return;
  sessionStorage.removeItem(PENDING);
  if (state.user && pending === state.user.id) askDelete();
}

/** How long ago the current token was issued (its `iat`), in ms; Infinity when unreadable. */
function tokenAge() {
  try {
    const payload = loadSession().token.split(".")[1].replaceAll("-", "+").replaceAll("_", "/");
    return Date.now() - JSON.parse(atob(payload)).iat * 1000;
  } catch {
    return Infinity;
  }
}

async function downloadData(button) {
  button.disabled = true;
  try {
    const { blob, name } = await download("/user/me/export");
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    toast("Your data is downloaded.");
  } catch (err) {
    if (err.status !== 401) toast(describe(err), "error");
  } finally {
    button.disabled = false;
  }
}

function askDelete() {
  $("delete-confirm").value = "";
  $("delete-account-button").disabled = true;
  fieldError("delete-error", "");
  $("delete-reauth").hidden = tokenAge() < RECENT_MS;
  $("delete-account-dialog").showModal();
  $("delete-confirm").focus();
}

async function deleteAccount(event) {
  event.preventDefault();
  const button = $("delete-account-button");
  if ($("delete-confirm").value.trim() !== WORD) return;
  fieldError("delete-error", "");
  button.disabled = true;
  try {
    await call("DELETE", "/user/me");
    $("delete-account-dialog").close();
    $("account-dialog").close();
    onSignedOut("Your account and everything in it were deleted.");
  } catch (err) {
    if (err.code === "reauthentication_required") {
      $("delete-reauth").hidden = false;
      fieldError("delete-error", "Sign in again first: your sign-in is more than 10 minutes old.");
    } else if (err.code === "billing_unavailable") {
      fieldError(
        "delete-error",
        "The payment service is not answering, so your subscription could not be ended. Nothing was deleted; try again in a moment.",
      );
    } else if (err.status !== 401) {
      fieldError("delete-error", describe(err));
    }
    button.disabled = $("delete-confirm").value.trim() !== WORD;
  }
}

/** Signs out and back to the sign-in, the number filled in; the dialog returns afterwards. */
async function signInAgain() {
  const user = state.user;
  if (user) sessionStorage.setItem(PENDING, user.id);
  $("delete-account-dialog").close();
  $("account-dialog").close();
  try {
    await call("POST", "/auth/logout");
  } catch {
    // Signed out here either way.
  }
  onSignedOut("Sign in again to delete your account.");
  if (user) $("mobile-input").value = user.mobile_number;
}
