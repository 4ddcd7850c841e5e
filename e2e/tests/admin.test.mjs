// The Admin view: only for a user granted the role on the command line; tiles, the users with
// search and the confirmed Comp Pro and Disabled switches, failed replies, and the audit log.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  api,
  apiUser,
  eventually,
  newNumber,
  openSignedIn,
  screenshotPath,
  startFakeGemini,
  startGemchat,
  useBrowser,
} from "../lib/harness.mjs";

const browser = useBrowser();

test("an admin sees the service at a glance, gives Pro, disables an account, and reads the audit log", async () => {
  const gemini = await startFakeGemini(["fail", "A fine answer arrives here."]);
  const gemchat = await startGemchat({
    AI_PROVIDER: "gemini",
    GEMINI_API_KEY: "e2e-key",
    GEMINI_BASE_URL: gemini.url,
    JOB_MAX_ATTEMPTS: "1",
  });
  try {
    const adminNumber = newNumber();
    const admin = await apiUser(gemchat.url, adminNumber, "Ops");
    const kiran = await apiUser(gemchat.url, newNumber(), "Kiran Rao");
    const lena = await apiUser(gemchat.url, newNumber(), "Lena Park");
    const room = await api(gemchat.url, "POST", "/chatroom", { token: kiran.token, body: { name: "Questions" } });
    for (const content of ["First question", "Second question"]) {
      await api(gemchat.url, "POST", `/chatroom/${room.body.id}/message?wait=true`, { token: kiran.token, body: { content } });
    }

    // Not an admin yet: no link, and the address shows the chat instead.
    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, admin);
    assert.equal(await page.locator("#admin-link").isVisible(), false);
    await page.goto(`${gemchat.url}/#/admin`);
    await page.locator("#usage-text").filter({ hasText: /prompts/i }).waitFor({ state: "attached" });
    assert.equal(await page.locator("#admin-view").isVisible(), false);
    assert.equal((await api(gemchat.url, "GET", "/admin/stats", { token: admin.token })).status, 403);

    assert.match(gemchat.admin("grant", adminNumber), /is now an admin/);
    await page.reload();
    await page.getByRole("link", { name: "Admin" }).click();
    const view = page.locator("#admin-view");
    await view.getByRole("heading", { name: "Admin" }).waitFor();
    const tile = (key) => view.locator(`[data-tile="${key}"] .figure`);
    await eventually(async () => (await tile("users").textContent()) === "3", { what: "three users" });
    assert.equal(await tile("prompts").textContent(), "1", "the failed reply gave its prompt back");
    assert.equal(await tile("active").textContent(), "1");
    assert.equal(await tile("failed").textContent(), "1", "the first reply failed");
    const failed = view.locator("#admin-failed tr");
    await eventually(async () => (await failed.count()) === 1, { what: "the failed reply" });
    assert.match(await failed.first().textContent(), /ai_rejected.*Kiran Rao$/);
    const rows = view.locator("#admin-users tr");
    await eventually(async () => (await rows.count()) === 3, { what: "the users" });

    // Search, then give Kiran Pro (confirmed first).
    await view.getByLabel("Find users by number or name").fill("kiran");
    await view.getByRole("button", { name: "Find" }).click();
    await eventually(async () => (await rows.count()) === 1, { what: "Kiran alone" });
    await view.getByLabel("Comp Pro for Kiran Rao").click();
    const confirm = page.getByRole("dialog", { name: "Give Pro for free?" });
    await confirm.waitFor();
    assert.equal(await view.getByLabel("Comp Pro for Kiran Rao").isChecked(), false, "not before it is confirmed");
    await confirm.getByRole("button", { name: "Give Pro" }).click();
    await eventually(async () => /Pro \(free\)/.test(await rows.first().textContent()), { what: "Kiran on Pro" });
    assert.equal((await api(gemchat.url, "GET", "/user/me", { token: kiran.token })).body.tier, "pro");

    // Disable Lena: her token stops at once. Cancelling first changes nothing.
    await view.getByLabel("Find users by number or name").fill("");
    await view.getByRole("button", { name: "Find" }).click();
    await eventually(async () => (await rows.count()) === 3, { what: "every user again" });
    await view.getByLabel("Disabled: Lena Park").click();
    const disable = page.getByRole("dialog", { name: "Disable this account?" });
    await disable.getByRole("button", { name: "Cancel" }).click();
    assert.equal((await api(gemchat.url, "GET", "/user/me", { token: lena.token })).status, 200);
    await view.getByLabel("Disabled: Lena Park").click();
    await disable.getByRole("button", { name: "Disable" }).click();
    await eventually(async () => view.getByLabel("Disabled: Lena Park").isChecked(), { what: "Lena disabled" });
    assert.equal((await api(gemchat.url, "GET", "/user/me", { token: lena.token })).status, 401);

    const audit = view.locator("#admin-audit li");
    await eventually(async () => (await audit.count()) === 3, { what: "three audit entries" });
    const entries = await audit.allTextContents();
    assert.match(entries[0], /Lena Park disabled by Ops$/);
    assert.match(entries[1], /Kiran Rao given Pro for free by Ops$/);
    assert.match(entries[2], /Ops made an admin on the command line$/);
    await eventually(async () => (await tile("pro").textContent()) === "1", { what: "one Pro user" });
    await page.screenshot({ path: screenshotPath("admin.png") });
    await view.locator("#admin-audit").scrollIntoViewIfNeeded();
    await page.screenshot({ path: screenshotPath("admin-failed-and-audit.png") });
    assert.deepEqual(page.problems.filter((p) => !/403/.test(p)), []);
    await page.context().close();
  } finally {
    await gemchat.stop();
    await gemini.close();
  }
});
