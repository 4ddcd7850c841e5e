// The controls of a conversation in headless Chromium: Stop ends a reply mid-stream and keeps
// its text; Regenerate adds a version and the "‹ 1 / 2 ›" switcher moves between versions;
// Edit changes a prompt in place (Enter sends, Escape cancels) and the old branch stays
// reachable; each reply shows its tokens.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { api, apiUser, eventually, newNumber, openSignedIn, screenshotPath, sendWithEnter, useBrowser, useGemchat } from "../lib/harness.mjs";

const browser = useBrowser();

/** The texts of the open conversation's messages, in order. */
function texts(page) {
  return page.locator("#messages .message .content").allInnerTexts();
}

async function roomOf(page) {
  await page.waitForURL(/#\/c\/[0-9a-f-]{36}$/);
  return page.url().split("/").at(-1);
}

describe("with replies that take seconds to stream", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "400" });

  test("Stop ends a streaming reply and keeps what it wrote", async () => {
    const page = await browser.newPage();
    const session = await apiUser(gemchat.url, newNumber(), "Ravi");
    await openSignedIn(page, gemchat.url, session);
    await sendWithEnter(page, "Tell me a long story about the monsoon");
    const reply = page.locator("#messages .from-model").last();
    await eventually(async () => (await reply.getAttribute("data-status")) === "streaming" && (await reply.locator(".content").innerText()).length > 20, {
      what: "part of the reply to stream",
    });
    await reply.getByRole("button", { name: "Stop the reply" }).click();
    await eventually(async () => (await reply.getAttribute("data-status")) === "cancelled", { what: "the reply to stop" });
    const kept = await reply.locator(".content").innerText();
    assert.ok(kept.length > 20, `the partial text stays: ${kept}`);
    assert.match(await reply.innerText(), /Stopped\./);
    assert.equal(await reply.getByRole("button", { name: "Stop the reply" }).count(), 0);
    assert.ok(await reply.getByRole("button", { name: "Regenerate the reply" }).isVisible());
    await page.screenshot({ path: screenshotPath("reply-stopped.png") });

    // The server agrees, and the text it kept is what the page shows.
    const room = await roomOf(page);
    const stored = await api(gemchat.url, "GET", `/chatroom/${room}/messages`, { token: session.token });
    const last = stored.body.messages.at(-1);
    assert.equal(last.status, "cancelled");
    assert.equal(last.content.trim(), kept.trim());
    assert.deepEqual(page.problems, []);
  });
});

describe("with quick replies", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0" });

  test("Regenerate adds a version, and the switcher moves between them", async () => {
    const page = await browser.newPage();
    const session = await apiUser(gemchat.url, newNumber(), "Meera");
    await openSignedIn(page, gemchat.url, session);
    await sendWithEnter(page, "Name a colour");
    const reply = page.locator("#messages .from-model").last();
    await eventually(async () => (await reply.getAttribute("data-status")) === "completed", { what: "the reply" });
    assert.match(await reply.locator(".usage").innerText(), /^echo · \d+ in · \d+ out$/, "its tokens");
    const first = await reply.getAttribute("data-id");

    await reply.getByRole("button", { name: "Regenerate the reply" }).click();
    const versions = page.locator("#messages .from-model .versions");
    await eventually(async () => (await versions.count()) === 1 && (await versions.getAttribute("aria-label")) === "Version 2 of 2", {
      what: "the second version",
    });
    const again = page.locator("#messages .from-model").last();
    await eventually(async () => (await again.getAttribute("data-status")) === "completed", { what: "the new reply" });
    const second = await again.getAttribute("data-id");
    assert.notEqual(second, first);
    assert.equal(await page.locator("#messages .message").count(), 2, "one prompt, one reply shown");
    await page.screenshot({ path: screenshotPath("reply-versions.png") });

    await again.getByRole("button", { name: "Previous version" }).click();
    await eventually(async () => (await page.locator("#messages .from-model").last().getAttribute("data-id")) === first, { what: "the first version" });
    assert.equal(await page.locator("#messages .from-model .versions").getAttribute("aria-label"), "Version 1 of 2");
    await page.locator("#messages .from-model").last().getByRole("button", { name: "Next version" }).click();
    await eventually(async () => (await page.locator("#messages .from-model").last().getAttribute("data-id")) === second, { what: "back to the second" });
    assert.deepEqual(page.problems, []);
  });

  test("Edit changes a prompt in place, and the original branch stays reachable", async () => {
    const page = await browser.newPage();
    const session = await apiUser(gemchat.url, newNumber(), "Kabir");
    await openSignedIn(page, gemchat.url, session);
    for (const prompt of ["first question", "second question"]) {
      await sendWithEnter(page, prompt);
      await eventually(async () => (await page.locator('#messages .from-model[data-status="completed"]').count()) === (prompt === "first question" ? 1 : 2), {
        what: `the reply to ${prompt}`,
      });
    }
    const firstPrompt = page.locator("#messages .from-user").first();

    // Escape leaves the prompt as it was.
    await firstPrompt.getByRole("button", { name: "Edit the prompt" }).click();
    const box = page.getByRole("textbox", { name: "Edit the prompt" });
    await box.fill("never sent");
    await box.press("Escape");
    assert.equal(await box.count(), 0);
    assert.equal(await firstPrompt.locator(".content").innerText(), "first question");

    await firstPrompt.getByRole("button", { name: "Edit the prompt" }).click();
    await box.fill("first question, edited");
    await page.screenshot({ path: screenshotPath("prompt-editing.png") });
    await box.press("Enter");
    await eventually(
      async () => {
        const now = await texts(page);
        return now.length === 2 && now[0] === "first question, edited" && (await page.locator('#messages .from-model[data-status="completed"]').count()) === 1;
      },
      { what: "the edited branch" },
    );
    const shown = await texts(page);
    assert.equal(shown[0], "first question, edited");
    assert.match(shown[1], /You said: first question, edited/);
    assert.equal(await page.locator("#messages .from-user .versions").getAttribute("aria-label"), "Version 2 of 2");
    await page.screenshot({ path: screenshotPath("prompt-edited.png") });

    await page.locator("#messages .from-user").first().getByRole("button", { name: "Previous version" }).click();
    await eventually(async () => (await page.locator("#messages .message").count()) === 4, { what: "the original branch" });
    const original = await texts(page);
    assert.equal(original[0], "first question");
    assert.equal(original[2], "second question", "with what followed it");
    await page.screenshot({ path: screenshotPath("prompt-original-branch.png") });
    assert.deepEqual(page.problems, []);
  });
});
