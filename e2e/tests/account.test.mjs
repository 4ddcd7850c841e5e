// The account dialog (name, password, where one is signed in) and signing in with a password.

import assert from "node:assert/strict";
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

const browser = useBrowser();
const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0" });

test("a user renames themselves, sets a password, signs a device out, and signs in with the password", async () => {
  const mobile = newNumber();
  const first = await apiUser(gemchat.url, mobile, "Asha");
  const page = await browser.newPage();
  await openSignedIn(page, gemchat.url, first);
  const dialog = page.getByRole("dialog", { name: "Your account" });
  const sessions = dialog.locator("#session-list .session");

  // Name.
  await page.getByRole("button", { name: "Account" }).click();
  await dialog.getByLabel("Name").fill("Asha Kumar");
  await dialog.getByRole("button", { name: "Save", exact: true }).click();
  await eventually(async () => (await page.locator("#user-name").textContent()) === "Asha Kumar", { what: "the new name" });
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: first.token })).body.name, "Asha Kumar");

  // A first password needs no current one; setting it signs out every other token.
  assert.equal(await dialog.getByLabel("Current password").isVisible(), false);
  await dialog.getByLabel("New password").fill("short");
  await dialog.getByRole("button", { name: "Save password" }).click();
  await eventually(async () => /8/.test(await dialog.locator("#password-error").innerText()), { what: "the length rule" });
  await dialog.getByLabel("New password").fill("correct horse battery");
  await dialog.getByRole("button", { name: "Save password" }).click();
  await page.locator("#toast", { hasText: "Password saved" }).waitFor();
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: first.token })).status, 401, "the old token is revoked");
  await eventually(async () => (await sessions.count()) === 1, { what: "one session left" });
  assert.match(await sessions.first().textContent(), /This device/);
  assert.ok(await dialog.getByLabel("Current password").isVisible(), "a password is set now");

  // Another device signs in with the password, and is signed out from here.
  const other = await api(gemchat.url, "POST", "/auth/login", { body: { mobile_number: mobile, password: "correct horse battery" } });
  assert.equal(other.status, 200);
  await dialog.getByRole("button", { name: "Close" }).click();
  await page.getByRole("button", { name: "Account" }).click();
  await eventually(async () => (await sessions.count()) === 2, { what: "the other device" });
  await page.screenshot({ path: screenshotPath("account.png") });
  await dialog.getByRole("button", { name: "Sign out device" }).click();
  await eventually(async () => (await sessions.count()) === 1, { what: "the other device to go" });
  assert.equal((await api(gemchat.url, "GET", "/user/me", { token: other.body.token })).status, 401);

  // A wrong current password is refused.
  await dialog.getByLabel("Current password").fill("not the password");
  await dialog.getByLabel("New password").fill("another good password");
  await dialog.getByRole("button", { name: "Save password" }).click();
  await eventually(async () => (await dialog.locator("#password-error").innerText()) === "The current password is wrong.", {
    what: "the wrong password to be explained",
  });
  await dialog.getByRole("button", { name: "Close" }).click();

  // Sign out, then in with the password (a wrong one first).
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in with a password instead" }).click();
  await page.getByRole("textbox", { name: "Mobile number" }).fill(mobile);
  await page.getByLabel("Password", { exact: true }).fill("wrong password!");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await eventually(async () => (await page.locator("#login-error").innerText()) === "Wrong number or password.", {
    what: "the wrong password to be explained",
  });
  await page.getByLabel("Password", { exact: true }).fill("correct horse battery");
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.getByRole("heading", { name: "Hello, Asha Kumar" }).waitFor();
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
