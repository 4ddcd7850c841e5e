// The web client end to end in headless Chromium against a running gemchat with the offline
// `echo` provider: sign-up, sign-in, chatrooms, streamed replies, the daily limit, history,
// sign-out, and the layout at 360 px.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  api,
  apiUser,
  eventually,
  finishedReplies,
  newNumber,
  openSignedIn,
  screenshotPath,
  sendWithEnter,
  signInThroughUi,
  startRelay,
  useBrowser,
  useGemchat,
} from "../lib/harness.mjs";

const browser = useBrowser();

describe("with the echo provider pacing its chunks", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "40" });

  test("a new number signs up, chats with a streamed reply, and meets the daily limit", async () => {
    const page = await browser.newPage();
    const mobile = newNumber();

    await page.goto(gemchat.url);
    await page.getByRole("heading", { name: "Sign in or create an account" }).waitFor();
    await page.screenshot({ path: screenshotPath("sign-in.png") });

    // An unknown number leads to sign-up in the same flow.
    await page.getByRole("textbox", { name: "Mobile number" }).fill(mobile);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("heading", { name: "Create your account" }).waitFor();
    await page.getByLabel("Your name").fill("Asha");
    await page.getByRole("button", { name: "Create account" }).click();

    // The code the API returned is shown, marked as the stand-in for an SMS.
    const devCode = page.locator("#dev-code");
    await devCode.waitFor();
    assert.match(await devCode.innerText(), /SMS is mocked/);
    const code = await page.locator("#dev-code-value").innerText();
    assert.match(code, /^\d{6}$/);
    await page.screenshot({ path: screenshotPath("sign-in-code.png") });
    await page.getByLabel("One-time code").fill(code);
    await page.getByRole("button", { name: "Sign in" }).click();

    await page.getByRole("heading", { name: "Hello, Asha" }).waitFor();
    await eventually(async () => (await page.locator("#usage-text").innerText()) === "5 of 5 prompts left today", {
      what: "the usage to show",
    });

    // Watch the reply's text as it changes, to see it arrive in pieces.
    await page.evaluate(() => {
      window.replySnapshots = [];
      new MutationObserver(() => {
        const reply = document.querySelector("#messages .from-model .content");
        if (reply) window.replySnapshots.push(reply.textContent);
      }).observe(document.getElementById("messages"), { subtree: true, childList: true, characterData: true });
    });
    const prompt = "Plan a **three-day** trip:\n- Goa\n- Hampi";
    const box = page.getByRole("textbox", { name: "Message" });
    await box.fill("Plan a **three-day** trip:");
    await box.press("Shift+Enter");
    await box.pressSequentially("- Goa");
    await box.press("Shift+Enter");
    await box.pressSequentially("- Hampi");
    await box.press("Enter");

    // The prompt shows at once and the room is created.
    const mine = page.locator("#messages .from-user .content").first();
    await eventually(async () => (await mine.textContent()) === prompt, { what: "the prompt to show" });
    await page.waitForURL(/#\/c\/[0-9a-f-]{36}$/);
    // Created unnamed ("New chat"), the room is titled from its first exchange once the reply
    // is in (echo titles it with the prompt's first words).
    await page.locator("#room-list .room-link", { hasText: "Plan a three-day trip" }).waitFor();
    await page.screenshot({ path: screenshotPath("title-arrived.png") });

    const reply = page.locator('#messages .from-model[data-status="completed"]');
    await reply.waitFor({ timeout: 10_000 });
    const finalText = await reply.locator(".content").textContent();
    assert.match(finalText, /You said: Plan a three-day trip:/);
    // Markdown: bold and a list, as elements.
    assert.equal(await reply.locator(".content strong").first().textContent(), "three-day");
    assert.deepEqual(await reply.locator(".content li").allTextContents(), ["Goa", "Hampi"]);
    const snapshots = await page.evaluate(() => window.replySnapshots);
    const partial = snapshots.filter((s) => s && s.length > 0 && s.length < finalText.length);
    assert.ok(partial.length >= 2, `the reply streamed in pieces; saw ${JSON.stringify(snapshots.slice(0, 12))}`);
    assert.equal(await page.locator("#usage-text").innerText(), "4 of 5 prompts left today");
    await page.screenshot({ path: screenshotPath("conversation.png") });

    // Copy gives the reply's Markdown source.
    await page.context().grantPermissions(["clipboard-read", "clipboard-write"]);
    await reply.getByRole("button", { name: "Copy the reply" }).click();
    await page.locator("#toast", { hasText: "Copied." }).waitFor();
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(copied, /You said: Plan a \*\*three-day\*\* trip:\n- Goa\n- Hampi$/);

    // Three more prompts here and one from another device use up the day; the other
    // device's prompt and its reply arrive here through the event stream.
    for (let n = 2; n <= 4; n++) {
      await sendWithEnter(page, `Prompt number ${n}`);
      await eventually(async () => (await finishedReplies(page)) === n, { what: `reply ${n}` });
    }
    assert.equal(await page.locator("#usage-text").innerText(), "1 of 5 prompts left today");
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem("gemchat.session")).token);
    const room = page.url().split("#/c/")[1];
    const elsewhere = await api(gemchat.url, "POST", `/chatroom/${room}/message`, { token, body: { content: "From my phone" } });
    assert.equal(elsewhere.status, 202);
    await eventually(async () => (await finishedReplies(page)) === 5, { what: "the other device's reply" });
    assert.equal(await page.locator("#messages .from-user .content").last().textContent(), "From my phone");

    // The server refuses the sixth prompt: the message says why, the limit is explained
    // with its reset time, and Pro is offered.
    await sendWithEnter(page, "Is there a sixth?");
    const unsent = page.locator('#messages .from-user[data-status="unsent"]');
    await unsent.waitFor();
    assert.match(await unsent.innerText(), /Not sent: the daily limit is reached/);
    const banner = page.locator("#limit-banner");
    await banner.waitFor();
    assert.match(await banner.innerText(), /used all 5 prompts of today on the Basic plan\. They come back at .+ \(in \d+ (h|min)/);
    assert.ok(await banner.getByRole("button", { name: "Upgrade to Pro" }).isVisible());
    assert.equal(await page.locator("#usage-text").innerText(), "0 of 5 prompts left today");
    // Now that the client knows, it explains at once and keeps the draft.
    const messages = await page.locator("#messages .message").count();
    await sendWithEnter(page, "A draft worth keeping");
    assert.equal(await page.getByRole("textbox", { name: "Message" }).inputValue(), "A draft worth keeping");
    assert.equal(await page.locator("#messages .message").count(), messages);
    assert.ok(await banner.isVisible());
    await page.screenshot({ path: screenshotPath("daily-limit.png") });
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test("an existing user signs in, renames and deletes chats, newest activity first, and signs out", async () => {
    const mobile = newNumber();
    await api(gemchat.url, "POST", "/auth/signup", { body: { mobile_number: mobile, name: "Ravi" } });
    const page = await browser.newPage();
    await signInThroughUi(page, gemchat.url, mobile);
    await page.getByRole("heading", { name: "Hello, Ravi" }).waitFor();

    for (const [n, text] of ["First topic", "Second topic"].entries()) {
      await page.getByRole("button", { name: "New chat" }).click();
      await sendWithEnter(page, text);
      await eventually(async () => (await finishedReplies(page)) === 1, { what: `the reply in room ${n + 1}` });
    }
    const names = () => page.locator("#room-list .room-link").allTextContents();
    // Each new chat is titled from its first exchange once its reply is in.
    await eventually(async () => JSON.stringify(await names()) === JSON.stringify(["Second topic", "First topic"]), {
      what: "both chats titled, newest first",
    });

    // Activity moves a room to the top, here and after a reload (the server's order).
    await page.locator("#room-list .room-link", { hasText: "First topic" }).click();
    await page.getByRole("heading", { name: "First topic" }).waitFor();
    await sendWithEnter(page, "More on the first");
    await eventually(async () => (await finishedReplies(page)) === 2, { what: "the second reply" });
    assert.deepEqual(await names(), ["First topic", "Second topic"]);
    await page.reload();
    await page.getByRole("heading", { name: "First topic", level: 1 }).waitFor();
    assert.deepEqual(await names(), ["First topic", "Second topic"]);
    assert.equal(await page.locator("#messages .message").count(), 4, "the history is shown after a reload");
    // Rooms have addresses: back and forward move between them.
    await page.locator("#room-list .room-link", { hasText: "Second topic" }).click();
    await page.getByRole("heading", { name: "Second topic", level: 1 }).waitFor();
    await page.goBack();
    await page.getByRole("heading", { name: "First topic", level: 1 }).waitFor();
    await eventually(async () => (await page.locator("#messages .message").count()) === 4, { what: "the first room's history" });

    // Rename, with the empty name refused.
    await page.getByRole("button", { name: "Rename" }).click();
    const dialog = page.getByRole("dialog", { name: "Rename chat" });
    await dialog.getByLabel("Name").fill("   ");
    await dialog.getByRole("button", { name: "Save" }).click();
    assert.match(await dialog.locator("#rename-error").innerText(), /name/i);
    await dialog.getByLabel("Name").fill("Trip ideas");
    await dialog.getByRole("button", { name: "Save" }).click();
    await page.getByRole("heading", { name: "Trip ideas", level: 1 }).waitFor();
    assert.deepEqual(await names(), ["Trip ideas", "Second topic"]);

    // Delete, after confirming.
    await page.getByRole("button", { name: "Delete" }).click();
    await page.getByRole("dialog", { name: "Delete this chat?" }).getByRole("button", { name: "Delete" }).click();
    await page.getByRole("heading", { name: "New chat", level: 1 }).waitFor();
    assert.deepEqual(await names(), ["Second topic"]);
    const token = await page.evaluate(() => JSON.parse(localStorage.getItem("gemchat.session")).token);
    const listed = await api(gemchat.url, "GET", "/chatroom", { token });
    assert.deepEqual(listed.body.chatrooms.map((r) => r.name), ["Second topic"]);

    // Sign out: the token is revoked and forgotten.
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByRole("heading", { name: "Sign in or create an account" }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem("gemchat.session")), null);
    assert.equal((await api(gemchat.url, "GET", "/user/me", { token })).status, 401);

    // Asking for another code at once meets the cooldown, which is explained.
    await page.getByRole("textbox", { name: "Mobile number" }).fill(mobile);
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByRole("heading", { name: "Enter your code" }).waitFor();
    assert.match(await page.locator("#code-error").innerText(), /ask for a new one in \d+ s/);
    assert.ok(await page.getByRole("button", { name: /Send a new code \(\d+ s\)/ }).isDisabled());
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test("a wrong code is refused with an explanation", async () => {
    const mobile = newNumber();
    await api(gemchat.url, "POST", "/auth/signup", { body: { mobile_number: mobile } });
    const page = await browser.newPage();
    await page.goto(gemchat.url);
    await page.getByRole("textbox", { name: "Mobile number" }).fill("12");
    await page.getByRole("button", { name: "Continue" }).click();
    await eventually(async () => /not a possible number/.test(await page.locator("#mobile-error").innerText()), {
      what: "the invalid number to be explained",
    });
    await page.getByRole("textbox", { name: "Mobile number" }).fill(mobile);
    await page.getByRole("button", { name: "Continue" }).click();
    const code = await page.locator("#dev-code-value").innerText();
    const wrong = code === "000000" ? "111111" : "000000";
    await page.getByLabel("One-time code").fill(wrong);
    await page.getByRole("button", { name: "Sign in" }).click();
    await eventually(async () => (await page.locator("#code-error").innerText()) === "That code is wrong or has expired.", {
      what: "the wrong code to be explained",
    });
    assert.equal(await page.locator("#chat-view").isVisible(), false);
    await page.context().close();
  });

  test("keyboard alone signs up and chats; focus is visible and every control is named", async () => {
    const page = await browser.newPage({ colorScheme: "dark" });
    await page.goto(gemchat.url);
    const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
    const outline = () => page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    await eventually(async () => (await focused()) === "mobile-input", { what: "the number field to take focus" });
    await page.keyboard.type(newNumber());
    await page.keyboard.press("Enter");
    await eventually(async () => (await focused()) === "name-input", { what: "the name field to take focus" });
    await page.keyboard.type("Keyboard User");
    await page.keyboard.press("Enter");
    await eventually(async () => (await focused()) === "code-input", { what: "the code field to take focus" });
    // Tab to "Use this code" and press it; the code lands in the field.
    await page.keyboard.press("Shift+Tab");
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Use this code");
    assert.notEqual(await outline(), "none", "focus is visible");
    await page.keyboard.press("Enter");
    assert.match(await page.locator("#code-input").inputValue(), /^\d{6}$/);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Hello, Keyboard User" }).waitFor();
    await eventually(async () => (await focused()) === "composer-input", { what: "the message box to take focus" });
    await page.keyboard.type("Typed without a mouse");
    await page.keyboard.press("Enter");
    await eventually(async () => (await finishedReplies(page)) === 1, { what: "the reply" });
    await page.screenshot({ path: screenshotPath("conversation-dark.png") });

    const unnamed = await page.evaluate(() => {
      const named = (el) =>
        (el.getAttribute("aria-label") || el.textContent || "").trim() ||
        [...(el.labels || [])].some((label) => label.textContent.trim());
      return [...document.querySelectorAll("button, input, textarea, a[href]")].filter((el) => !named(el)).map((el) => el.outerHTML);
    });
    assert.deepEqual(unnamed, []);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test("at 360 px the sidebar is a drawer and nothing overflows", async () => {
    const mobile = newNumber();
    const page = await browser.newPage({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true });
    await page.goto(gemchat.url);
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 360);
    await api(gemchat.url, "POST", "/auth/signup", { body: { mobile_number: mobile, name: "Meera" } });
    await signInThroughUi(page, gemchat.url, mobile);
    await sendWithEnter(page, "A question from a small screen, long enough to wrap onto several lines of the bubble.");
    await eventually(async () => (await finishedReplies(page)) === 1, { what: "the reply" });
    assert.equal(await page.locator("#sidebar").isVisible(), false);
    assert.ok((await page.evaluate(() => document.documentElement.scrollWidth)) <= 360, "no horizontal scrolling");
    await page.screenshot({ path: screenshotPath("conversation-360.png") });

    const menu = page.getByRole("button", { name: "Open the chatroom list" });
    await menu.click();
    assert.equal(await menu.getAttribute("aria-expanded"), "true");
    await eventually(async () => (await page.locator("#sidebar").boundingBox())?.x === 0, { what: "the drawer to open" });
    await page.screenshot({ path: screenshotPath("sidebar-360.png") });
    await page.keyboard.press("Escape");
    await page.locator("#sidebar").waitFor({ state: "hidden" });
    assert.equal(await menu.getAttribute("aria-expanded"), "false");
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});

describe("with slowly streamed replies", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "250" });

  test("a dropped event stream resumes with Last-Event-ID and the reply arrives whole", async () => {
    const session = await apiUser(gemchat.url, newNumber(), "Lee");
    const relay = await startRelay(gemchat.url);
    const page = await browser.newPage();
    const streams = [];
    page.on("request", (request) => {
      if (request.url().endsWith("/events")) streams.push(request.headers()["last-event-id"] || null);
    });
    await openSignedIn(page, relay.url, session);
    const prompt = "Tell me something long enough to stream in many pieces, please.";
    await sendWithEnter(page, prompt);
    const streaming = page.locator('#messages .from-model[data-status="streaming"] .content');
    await eventually(async () => ((await streaming.textContent()) || "").length > 0, { what: "the first pieces" });

    // The connection drops mid-reply.
    const seen = streams.length;
    relay.cut();
    await eventually(() => streams.length > seen, { what: "the client to reconnect" });

    const reply = page.locator('#messages .from-model[data-status="completed"] .content');
    await reply.waitFor({ timeout: 15_000 });
    const expected =
      "(offline echo provider: no AI model is configured, so this reply is generated locally) " +
      `You said: ${prompt}`;
    assert.equal(await reply.textContent(), expected, "nothing lost, nothing twice");
    assert.match(streams.at(-1) || "", /^[0-9a-f-]{36}(:\d+|:end)?$/, "the reconnect resumes after the last event seen");
    assert.deepEqual(page.problems.filter((p) => !p.includes("ERR_")), []);
    await page.context().close();
    await relay.close();
  });
});

describe("with instant replies and a generous limit", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0", BASIC_DAILY_LIMIT: "100" });

  test("search finds a message in any chat and opens it in place, even beyond the first page", async () => {
    const session = await apiUser(gemchat.url, newNumber(), "Ana");
    const { token } = session;
    const recipes = await api(gemchat.url, "POST", "/chatroom", { token, body: { name: "Recipes" } });
    const travel = await api(gemchat.url, "POST", "/chatroom", { token, body: { name: "Travel" } });
    const say = (room, content) =>
      api(gemchat.url, "POST", `/chatroom/${room.body.id}/message?wait=true`, { token, body: { content } });
    await say(recipes, "How do I make masala dosa at home?");
    for (let n = 1; n <= 30; n++) await say(recipes, `Filler question ${n}`);
    await say(travel, "Where can I eat a good dosa in Bengaluru?");

    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, session);
    await page.getByRole("searchbox", { name: "Search your chats" }).fill("dosa");
    const results = page.locator("#result-list .result-link");
    await eventually(async () => (await results.count()) === 4, { what: "the matches (two prompts, two echoes)" });
    assert.match(await page.locator("#results-status").innerText(), /4 matches/);
    assert.deepEqual(
      [...new Set(await page.locator("#result-list .result-room").allTextContents())].sort(),
      ["Recipes", "Travel"],
    );
    assert.deepEqual([...new Set(await page.locator("#result-list mark").allTextContents())], ["dosa"]);
    await page.screenshot({ path: screenshotPath("search.png") });

    // The Recipes prompt is older than the latest 50 messages: opening it loads back to it.
    // (The snippet's words differ by database: PostgreSQL's headline drops stop words.)
    const hit = page.locator('#result-list .result-link[data-role="user"]', { hasText: "Recipes" });
    await hit.click();
    await page.getByRole("heading", { name: "Recipes", level: 1 }).waitFor();
    const found = page.locator("#messages .message.found");
    await found.waitFor();
    assert.equal(await found.locator(".content").textContent(), "How do I make masala dosa at home?");
    assert.ok(await found.isVisible());
    assert.ok((await page.locator("#messages .message").count()) > 50);

    // Escape clears the search and the recent chats come back.
    await page.getByRole("searchbox", { name: "Search your chats" }).press("Escape");
    await page.locator("#recent-rooms").waitFor();
    assert.equal(await page.locator("#search-results").isVisible(), false);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });

  test("older history loads on scroll, keeping the reader's place", async () => {
    const mobile = newNumber();
    const session = await apiUser(gemchat.url, mobile, "Kiran");
    const { token } = session;
    const room = await api(gemchat.url, "POST", "/chatroom", { token, body: { name: "Long chat" } });
    for (let n = 1; n <= 40; n++) {
      const sent = await api(gemchat.url, "POST", `/chatroom/${room.body.id}/message?wait=true`, {
        token,
        body: { content: `Message ${n}` },
      });
      assert.equal(sent.status, 200);
    }
    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, session);
    await page.locator("#room-list .room-link", { hasText: "Long chat" }).click();
    await eventually(async () => (await page.locator("#messages .message").count()) === 50, { what: "the first page" });
    assert.match(await page.locator("#messages .message").last().innerText(), /You said: Message 40/);
    const oldestShown = await page.locator("#messages .message").first().getAttribute("data-id");

    await page.locator("#messages-scroll").evaluate((el) => {
      el.scrollTop = 0;
    });
    await eventually(async () => (await page.locator("#messages .message").count()) === 80, { what: "older messages" });
    assert.equal(await page.locator("#messages .from-user .content").first().textContent(), "Message 1");
    await eventually(async () => (await page.locator("#history-status").innerText()) === "This is the beginning of the chat.", {
      what: "the beginning to be marked",
    });
    // The message that was on top is still in view: the page did not jump.
    const stillVisible = await page.locator(`#messages [data-id="${oldestShown}"]`).evaluate((el) => {
      const box = el.getBoundingClientRect();
      const view = document.getElementById("messages-scroll").getBoundingClientRect();
      return box.bottom > view.top && box.top < view.bottom;
    });
    assert.ok(stillVisible, "the reader's place is kept");
    assert.deepEqual(page.problems, []);
    await page.context().close();
  });
});
