// gemchat's web client: sign-in with a one-time code, chatrooms, streamed replies, the daily
// limit and the Pro plan, over the public API only. Plain DOM: every piece of user or model
// text goes in as text (textContent, text nodes) or through the Markdown renderer, which builds
// elements itself. This module starts the client and routes clicks on `data-action` controls
// to the module that owns them:
//   signin.js (sign-in steps) · account.js (user, usage, plan, account dialog) ·
//   account-data.js (export, deletion) · usage-chart.js (30 days as SVG) · admin.js (the
//   Admin view, for admins) · rooms.js
//   (the sidebar) · conversation.js (history, live events, sending) · attachments.js (files
//   in prompts) · search.js ·
//   api.js (fetch, problem+json, the SSE reader) · markdown.js · ui.js (helpers) · state.js

import { clearSession, loadSession, call, setUnauthorizedHandler } from "./api.js";
import { adminActions, wireAdmin } from "./admin.js";
import { attachmentActions, wireAttachments } from "./attachments.js";
import { accountActions, checkoutReturn, loadPlan, renderAccount, setUsage, wireAccount } from "./account.js";
import { dataActions, resumeDeletion, wireAccountData } from "./account-data.js";
import { autosize, closeStream, conversationActions, route, wireConversation } from "./conversation.js";
import { loadRooms, roomActions, wireRooms } from "./rooms.js";
import { clearSearch, searchActions, wireSearch } from "./search.js";
import { showSignin, signinActions, wireSignin } from "./signin.js";
import { state } from "./state.js";
import { $, describe, toast } from "./ui.js";

const actions = {
  ...signinActions,
  ...accountActions,
  ...dataActions,
  ...adminActions,
  ...roomActions,
  ...conversationActions,
  ...attachmentActions,
  ...searchActions,
  "sign-out": signOut,
  "close-dialog": (button) => button.closest("dialog").close(),
};

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
  closeStream();
  clearSearch();
  state.user = null;
  state.rooms = [];
  state.room = null;
  history.replaceState(null, "", "/");
  showSignin(notice);
}

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
  resumeDeletion();
  await Promise.all([loadRooms(), route()]);
  // The plan first: an answer of loadPlan arriving after checkoutReturn saw Pro would show the
  // Basic plan again.
  await loadPlan();
  checkoutReturn();
}

function wire() {
  document.addEventListener("click", (event) => {
    const control = event.target.closest("[data-action]");
    if (!control || control.disabled) return;
    const action = actions[control.dataset.action];
    if (action) {
      event.preventDefault();
      action(control);
    }
  });
  wireSignin({ signedIn: enterChat });
  wireAccount({ signedOut });
  wireAccountData({ signedOut });
  wireAdmin();
  wireRooms();
  wireConversation();
  wireAttachments();
  wireSearch();
  setUnauthorizedHandler(() => {
    if (loadSession()) signedOut("Your session has ended. Sign in again to continue.");
  });
}

wire();
autosize();
if (loadSession()) enterChat();
else showSignin();
