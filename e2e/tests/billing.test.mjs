// Pro through Stripe Checkout (a fake Stripe over HTTP, events delivered to the signed webhook),
// and a reply that fails and is retried (a fake Gemini over HTTP).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  WEBHOOK_SECRET,
  apiUser,
  deliverWebhook,
  eventually,
  newNumber,
  openSignedIn,
  screenshotPath,
  sendWithEnter,
  startFakeGemini,
  startFakeStripe,
  startGemchat,
  stripeEvent,
  useBrowser,
} from "../lib/harness.mjs";

const browser = useBrowser();

test("Upgrade goes to Checkout; after Stripe's webhook the client shows Pro and opens the portal", async () => {
  const stripe = await startFakeStripe();
  const gemchat = await startGemchat({
    ECHO_CHUNK_DELAY_MS: "0",
    STRIPE_SECRET_KEY: "sk_test_e2e",
    STRIPE_PRICE_ID: "price_e2e",
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    STRIPE_API_BASE: stripe.url,
  });
  try {
    const session = await apiUser(gemchat.url, newNumber(), "Priya");
    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, session);
    await eventually(async () => (await page.locator("#plan-text").innerText()) === "Basic plan · 5 prompts a day", {
      what: "the Basic plan",
    });
    const upgrade = page.locator("#upgrade-button");
    assert.equal(await upgrade.innerText(), "Upgrade to Pro · $9.99/month");

    await upgrade.click();
    await page.waitForURL(`${stripe.url}/pay/cs_e2e`);
    const checkout = stripe.calls.find((c) => c.path === "/v1/checkout/sessions");
    assert.equal(checkout.form.get("success_url"), `${gemchat.url}/?checkout=success`);
    assert.equal(checkout.form.get("cancel_url"), `${gemchat.url}/?checkout=cancel`);
    assert.equal(checkout.form.get("client_reference_id"), session.user.id);

    // Back from Checkout before Stripe's event: the client waits for it.
    await page.goto(`${gemchat.url}/?checkout=success`);
    await page.locator("#toast", { hasText: "starts as soon as the payment is confirmed" }).waitFor();
    const periodEnd = stripe.periodEnd;
    await deliverWebhook(
      gemchat.url,
      stripeEvent("evt_e2e_checkout", "checkout.session.completed", 10, {
        id: "cs_e2e",
        object: "checkout.session",
        mode: "subscription",
        status: "complete",
        payment_status: "paid",
        client_reference_id: session.user.id,
        customer: "cus_e2e",
        subscription: "sub_e2e",
        metadata: { user_id: session.user.id },
      }),
    );
    await page.locator("#toast", { hasText: "You are on Pro now" }).waitFor({ timeout: 15_000 });
    assert.equal(await page.locator("#usage-text").innerText(), "Unlimited prompts");
    assert.match(await page.locator("#plan-text").innerText(), /^Pro plan/);
    assert.equal(await page.locator("#upgrade-button").isVisible(), false);
    assert.equal(new URL(page.url()).search, "", "the return parameters are tidied away");

    // Pro has no daily limit: the banner never shows.
    // Stripe's events are older than what the user does next (a cancel is newer).
    await deliverWebhook(
      gemchat.url,
      stripeEvent("evt_e2e_sub", "customer.subscription.updated", 5, {
        id: "sub_e2e",
        object: "subscription",
        customer: "cus_e2e",
        status: "active",
        cancel_at_period_end: false,
        metadata: { user_id: session.user.id },
        items: {
          object: "list",
          data: [{ id: "si_e2e", object: "subscription_item", current_period_start: periodEnd - 2_592_000, current_period_end: periodEnd }],
        },
      }),
    );
    await page.reload();
    await eventually(async () => /^Pro plan · renews on /.test(await page.locator("#plan-text").innerText()), {
      what: "the renewal date",
    });
    await page.screenshot({ path: screenshotPath("pro-plan.png") });

    // Cancel at the period's end, after confirming; then change one's mind.
    await page.getByRole("button", { name: "Cancel Pro" }).click();
    const confirm = page.getByRole("dialog", { name: "Cancel Pro?" });
    assert.match(await confirm.innerText(), /You keep Pro until .+, then move to Basic \(5 prompts a day\)/);
    await confirm.getByRole("button", { name: "Cancel Pro" }).click();
    await eventually(async () => /^Pro plan · ends on /.test(await page.locator("#plan-text").innerText()), {
      what: "the scheduled end",
    });
    const cancelled = stripe.calls.findLast((c) => c.path === "/v1/subscriptions/sub_e2e");
    assert.equal(cancelled.form.get("cancel_at_period_end"), "true");
    await page.getByRole("button", { name: "Keep Pro" }).click();
    await eventually(async () => /^Pro plan · renews on /.test(await page.locator("#plan-text").innerText()), {
      what: "the renewal again",
    });
    assert.equal(stripe.calls.findLast((c) => c.path === "/v1/subscriptions/sub_e2e").form.get("cancel_at_period_end"), "false");

    await page.getByRole("button", { name: "Manage billing" }).click();
    await page.waitForURL(`${stripe.url}/portal/bps_e2e`);
    const portal = stripe.calls.find((c) => c.path === "/v1/billing_portal/sessions");
    assert.equal(portal.form.get("customer"), "cus_e2e");
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    await gemchat.stop();
    await stripe.close();
  }
});

test("without billing configured, Upgrade explains why it cannot proceed", async () => {
  const gemchat = await startGemchat({ ECHO_CHUNK_DELAY_MS: "0" });
  try {
    const session = await apiUser(gemchat.url, newNumber(), "Dev");
    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, session);
    await page.locator("#upgrade-button").click();
    await page.locator("#toast", { hasText: "billing is not configured" }).waitFor();
    assert.equal(new URL(page.url()).origin, gemchat.url);
    await page.context().close();
  } finally {
    await gemchat.stop();
  }
});

test("a failed reply says why and succeeds on Retry", async () => {
  const gemini = await startFakeGemini(["fail", "Here is **the answer** after all."]);
  const gemchat = await startGemchat({
    AI_PROVIDER: "gemini",
    GEMINI_API_KEY: "e2e-key",
    GEMINI_BASE_URL: gemini.url,
    JOB_MAX_ATTEMPTS: "1",
  });
  try {
    const session = await apiUser(gemchat.url, newNumber(), "Sam");
    const page = await browser.newPage();
    await openSignedIn(page, gemchat.url, session);
    await sendWithEnter(page, "What is the answer?");
    const failed = page.locator('#messages .from-model[data-status="failed"]');
    await failed.waitFor({ timeout: 15_000 });
    assert.match(await failed.innerText(), /The reply failed: /);
    // A failed reply gives its prompt back.
    await eventually(async () => (await page.locator("#usage-text").innerText()) === "5 of 5 prompts left today", {
      what: "the prompt to be given back",
    });
    await page.screenshot({ path: screenshotPath("failed-reply.png") });

    await failed.getByRole("button", { name: "Retry" }).click();
    const completed = page.locator('#messages .from-model[data-status="completed"]');
    await completed.waitFor({ timeout: 15_000 });
    assert.equal(await completed.locator("strong").textContent(), "the answer");
    assert.equal(await page.locator("#messages .from-model").count(), 1, "the retried reply is the same message");
    assert.equal(gemini.requests.length, 2);
    assert.deepEqual(page.problems, []);
    await page.context().close();
  } finally {
    await gemchat.stop();
    await gemini.close();
  }
});
