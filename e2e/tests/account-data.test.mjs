// The account's rights in the account dialog: the 30-day usage chart, "Download my data", and
// "Delete my account" (the word DELETE, and a fresh sign-in when the token is too old).

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import {
  api,
  apiUser,
  eventually,
  newNumber,
  openSignedIn,
  screenshotPath,
  useBrowser,
  useGemchat,
} from "../lib/harness.mjs";

const SECRET = "e2e-jwt-secret-0123456789abcdef0123456789abcdef";
const browser = useBrowser();
const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0", JWT_SECRET: SECRET });

/** The same token as if it had been issued `minutes` ago (same session, re-signed). */
function agedToken(token, minutes) {
  const [header, payload] = token.split(".");
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  claims.iat -= minutes * 60;
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}`;
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`;
}

test("the account dialog charts 30 days of use against the limit and downloads all the data", async () => {
  const session = await apiUser(gemchat.url, newNumber(), "Meera");
  const room = await api(gemchat.url, "POST", "/chatroom", { token: session.token, body: { name: "Recipes" } });
  for (const content of ["A soup for a cold day?", "And a bread to go with it?"]) {
    const sent = await api(gemchat.url, "POST", `/chatroom/${room.body.id}/message?wait=true`, {
      token: session.token,
      body: { content },
    });
    assert.equal(sent.status, 200);
  }
  const page = await browser.newPage();
  await openSignedIn(page, gemchat.url, session);
  await page.getByRole("button", { name: "Account" }).click();
  const dialog = page.getByRole("dialog", { name: "Your account" });

  const bars = dialog.locator("#usage-chart rect.bar");
  await eventually(async () => (await bars.count()) === 30, { what: "30 days of bars" });
  assert.equal(await bars.last().getAttribute("data-prompts"), "2", "today's two prompts");
  assert.ok(Number(await bars.last().getAttribute("data-tokens")) > 0, "and their tokens");
  assert.equal(await bars.first().getAttribute("data-prompts"), "0", "idle days are zeros");
  assert.equal(await dialog.locator("#usage-chart line.limit").count(), 1);
  assert.equal(await dialog.locator("#usage-chart text.limit-label").textContent(), "limit 5 a day");
  assert.match(await dialog.locator("#usage-summary").innerText(), /^2 prompts and .* tokens in the last 30 days\./);
  await dialog.getByRole("button", { name: "Delete my account" }).scrollIntoViewIfNeeded();
  await page.screenshot({ path: screenshotPath("account-usage.png") });

  const [download] = await Promise.all([
    page.waitForEvent("download"),
    dialog.getByRole("button", { name: "Download my data" }).click(),
  ]);
  assert.match(download.suggestedFilename(), /^gemchat-export-\d{4}-\d{2}-\d{2}\.json$/);
  const exported = JSON.parse(readFileSync(await download.path(), "utf8"));
  assert.equal(exported.user.id, session.user.id);
  assert.equal(exported.chatrooms.length, 1);
  assert.equal(exported.chatrooms[0].name, "Recipes");
  assert.deepEqual(
    exported.chatrooms[0].messages.map((m) => m.role),
    ["user", "model", "user", "model"],
  );
  await page.locator("#toast", { hasText: "Your data is downloaded." }).waitFor();
  assert.deepEqual(page.problems, []);
  await page.context().close();
});

test("deleting an account takes the word DELETE and, with an old sign-in, a fresh one", async () => {
  const mobile = newNumber();
  // Signed in with a password, so the code the fresh sign-in asks for meets no cooldown.
  await api(gemchat.url, "POST", "/auth/signup", { body: { mobile_number: mobile, name: "Ravi", password: "a good password" } });
  const login = await api(gemchat.url, "POST", "/auth/login", { body: { mobile_number: mobile, password: "a good password" } });
  const session = login.body;
  await api(gemchat.url, "POST", "/chatroom", { token: session.token, body: { name: "Doomed" } });
  const old = agedToken(session.token, 15);
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: old })).status, 200, "the aged token is valid");
  const page = await browser.newPage();
  await openSignedIn(page, gemchat.url, { token: old, user: session.user });

  await page.getByRole("button", { name: "Account" }).click();
  await page.getByRole("dialog", { name: "Your account" }).getByRole("button", { name: "Delete my account" }).click();
  const confirm = page.getByRole("dialog", { name: "Delete your account?" });
  await confirm.waitFor();
  const deleteButton = confirm.getByRole("button", { name: "Delete my account" });
  assert.ok(await confirm.getByText("deleting needs a sign-in from the last 10 minutes").isVisible());
  assert.ok(await deleteButton.isDisabled());
  await confirm.getByLabel("Type DELETE to confirm").fill("delete");
  assert.ok(await deleteButton.isDisabled(), "the word exactly");
  await confirm.getByLabel("Type DELETE to confirm").fill("DELETE");
  await deleteButton.click();
  await eventually(async () => /more than 10 minutes old/.test(await confirm.locator("#delete-error").innerText()), {
    what: "the server's refusal to be explained",
  });
  await page.screenshot({ path: screenshotPath("account-delete.png") });
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: session.token })).status, 200, "nothing deleted");

  // Sign in again: the number is filled in, and the dialog comes back afterwards.
  await confirm.getByRole("button", { name: "Sign in again" }).click();
  await page.getByRole("heading", { name: "Sign in or create an account" }).waitFor();
  assert.equal(await page.getByRole("textbox", { name: "Mobile number" }).inputValue(), session.user.mobile_number);
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("button", { name: "Use this code" }).click();
  await page.getByRole("button", { name: "Sign in" }).click();
  await confirm.waitFor();
  assert.equal(await confirm.getByText("deleting needs a sign-in").isVisible(), false, "the sign-in is fresh");
  await confirm.getByLabel("Type DELETE to confirm").fill("DELETE");
  await deleteButton.click();
  await page.locator("#toast", { hasText: "Your account and everything in it were deleted." }).waitFor();
  await page.getByRole("heading", { name: "Sign in or create an account" }).waitFor();
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: session.token })).status, 401);
  const again = await api(gemchat.url, "POST", "/auth/signup", { body: { mobile_number: mobile, name: "Ravi again" } });
  assert.equal(again.status, 201, "the number can sign up again");
  assert.notEqual(again.body.user.id, session.user.id);
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
