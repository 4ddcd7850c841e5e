// What the browser tests run against: a real gemchat process (the binary `cargo build` made)
// on a free port and a fresh SQLite database of its own, fakes of Stripe and Gemini that speak
// their wire formats over HTTP, and Debian's headless Chromium driven by playwright-core.

import { execFileSync, spawn } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTcpServer, connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const BINARY = process.env.GEMCHAT_BIN || join(ROOT, "target/debug/gemchat");
/**
 * Where gemchat keeps its data: a fresh SQLite file per process (the default), or, with
 * E2E_DATABASE_URL (a PostgreSQL server's admin URL), a fresh PostgreSQL database per process;
 * with E2E_REDIS_URL, Redis carries the cache, limits and events, as in production.
 */
const POSTGRES = process.env.E2E_DATABASE_URL || null;
const REDIS = process.env.E2E_REDIS_URL || null;
export const MODE = POSTGRES ? "postgres" : "sqlite";
export const SCREENSHOTS = join(ROOT, MODE === "sqlite" ? "target/e2e" : `target/e2e-${MODE}`);
export const WEBHOOK_SECRET = "whsec_e2e_secret";

/** Polls `check` until it returns a truthy value, or fails after `ms`. */
export async function eventually(check, { ms = 10_000, what = "the condition" } = {}) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
    server.on("error", reject);
  });
}

/** An HTTP server on a free loopback port answering with `handler`; `.url`, `.close()`. */
async function listen(handler) {
  const server = createServer(handler);
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { server, url, close: () => new Promise((r) => server.close(r)) };
}

/**
 * Starts gemchat with `env` on top of a clean environment (no inherited GEMINI_ or STRIPE_
 * settings, no .env: it runs in a fresh directory). Resolves once /health answers.
 */
export async function startGemchat(env = {}) {
  const dir = mkdtempSync(join(tmpdir(), "gemchat-e2e-"));
  const port = await freePort();
  const storage = {};
  let database = null;
  if (POSTGRES) {
    database = `gemchat_e2e_${randomUUID().replaceAll("-", "")}`;
    psql(`CREATE DATABASE ${database}`);
    const url = new URL(POSTGRES);
    url.pathname = `/${database}`;
    storage.DATABASE_URL = url.toString();
  }
  if (REDIS) {
    storage.REDIS_URL = REDIS;
    // Every process of the run shares Redis, and every request comes from 127.0.0.1: the
    // per-IP sign-in limit would add up across tests.
    storage.RATE_LIMIT_AUTH_PER_MINUTE = "100000";
  }
  const child = spawn(BINARY, ["serve"], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOST: "127.0.0.1", PORT: String(port), LOG_FORMAT: "json", RUST_LOG: "warn", ...storage, ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  child.stderr.on("data", (chunk) => {
    log += chunk;
  });
  const url = `http://127.0.0.1:${port}`;
  await eventually(
    async () => {
      if (child.exitCode !== null) throw new Error(`gemchat exited: ${log}`);
      return (await fetch(`${url}/health`)).ok;
    },
    { what: "gemchat to start" },
  );
  const databaseUrl = storage.DATABASE_URL || env.DATABASE_URL || `sqlite://${dir}/data/gemchat.db`;
  // The server's Redis too, if it has one: the command tells every serving process of the change.
  const redis = storage.REDIS_URL || env.REDIS_URL ? { REDIS_URL: storage.REDIS_URL || env.REDIS_URL } : {};
  return {
    url,
    log: () => log,
    /** Runs `gemchat admin <verb> <mobile>` on this gemchat's database; resolves to its stdout. */
    admin(verb, mobile) {
      return execFileSync(BINARY, ["admin", verb, mobile], {
        env: { PATH: process.env.PATH, DATABASE_URL: databaseUrl, LOG_FORMAT: "json", RUST_LOG: "warn", ...redis },
        encoding: "utf8",
      });
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
      if (database) psql(`DROP DATABASE ${database} WITH (FORCE)`);
    },
  };
}

function psql(sql) {
  execFileSync("psql", [POSTGRES, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], { stdio: ["ignore", "ignore", "inherit"] });
}

/**
 * A TCP relay in front of `target` (an http://host:port URL): `.url` to use instead, and
 * `.cut()`, which drops every connection through it at once, as a network failure would.
 */
export async function startRelay(target) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  const server = createTcpServer((client) => {
    const upstream = connect(Number(port), hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {});
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    cut() {
      for (const socket of sockets) socket.destroy();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

/** Calls gemchat's API directly (for set-up the test is not about). */
export async function api(base, method, path, { token, body } = {}) {
  const headers = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`${base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** Signs a number up through the API and signs it in; returns {token, user}. */
export async function apiUser(base, mobile, name) {
  await api(base, "POST", "/auth/signup", { body: { mobile_number: mobile, name } });
  const code = await api(base, "POST", "/auth/send-otp", { body: { mobile_number: mobile } });
  const session = await api(base, "POST", "/auth/verify-otp", { body: { mobile_number: mobile, otp: code.body.otp } });
  return session.body;
}

let numbers = 0;
/** A mobile number no other test uses (Indian mobile numbers start with 6 to 9). */
export function newNumber() {
  numbers += 1;
  const tail = String((Date.now() * 10 + numbers) % 100_000_000).padStart(8, "0");
  return `+91 98${tail.slice(0, 3)} ${tail.slice(3)}`;
}

/** A Stripe stand-in: the calls gemchat makes, answered in Stripe's shapes; records them. */
export async function startFakeStripe() {
  const calls = [];
  const fake = await listen((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      calls.push({ method: req.method, path: req.url, form: new URLSearchParams(body) });
      const json = (obj) => {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(obj));
      };
      if (req.url.startsWith("/v1/prices/")) {
        json({ id: "price_e2e", object: "price", unit_amount: 999, currency: "usd", recurring: { interval: "month" } });
      } else if (req.url.startsWith("/v1/customers")) {
        json({ id: "cus_e2e", object: "customer" });
      } else if (req.url.startsWith("/v1/checkout/sessions")) {
        json({ id: "cs_e2e", object: "checkout.session", url: `${fake.url}/pay/cs_e2e` });
      } else if (req.url.startsWith("/v1/subscriptions/")) {
        const periodEnd = fake.periodEnd;
        json({
          id: req.url.split("/").pop(),
          object: "subscription",
          customer: "cus_e2e",
          status: "active",
          cancel_at_period_end: calls.at(-1).form.get("cancel_at_period_end") === "true",
          metadata: {},
          items: {
            object: "list",
            data: [{ id: "si_e2e", object: "subscription_item", current_period_start: periodEnd - 2_592_000, current_period_end: periodEnd }],
          },
        });
      } else if (req.url.startsWith("/v1/billing_portal/sessions")) {
        json({ id: "bps_e2e", object: "billing_portal.session", url: `${fake.url}/portal/bps_e2e` });
      } else if (req.url.startsWith("/pay/") || req.url.startsWith("/portal/")) {
        res.writeHead(200, { "content-type": "text/html" });
        res.end(`<!doctype html><title>Fake Stripe</title><h1>Fake Stripe ${req.url}</h1>`);
      } else {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { type: "invalid_request_error", message: "unknown" } }));
      }
    });
  });
  fake.calls = calls;
  /** The end of the current period of the subscriptions it answers for. */
  fake.periodEnd = Math.floor(Date.now() / 1000) + 30 * 86400;
  return fake;
}

/** A Stripe event of `type` about `object`, created `age` seconds ago. */
export function stripeEvent(id, type, age, object) {
  const created = Math.floor(Date.now() / 1000) - age;
  return { id, object: "event", api_version: "2025-03-31.basil", created, livemode: false, type, data: { object } };
}

/** Delivers a Stripe event to gemchat's webhook, signed as Stripe signs it. */
export async function deliverWebhook(base, event) {
  const body = JSON.stringify(event);
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac("sha256", WEBHOOK_SECRET).update(`${t}.${body}`).digest("hex");
  const response = await fetch(`${base}/webhook/stripe`, {
    method: "POST",
    headers: { "Content-Type": "application/json", "Stripe-Signature": `t=${t},v1=${v1}` },
    body,
  });
  if (!response.ok) throw new Error(`webhook answered ${response.status}: ${await response.text()}`);
}

/**
 * A Gemini stand-in for `streamGenerateContent?alt=sse`: each request takes the next planned
 * answer, "fail" (a permanent 400 INVALID_ARGUMENT) or a reply text streamed in three events.
 */
export async function startFakeGemini(plan) {
  const requests = [];
  const titles = [];
  const fake = await listen((req, res) => {
    req.resume();
    req.on("end", () => {
      if (req.url.includes(":generateContent")) {
        // A chatroom's title: one JSON answer, apart from the planned replies.
        titles.push(req.url);
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ candidates: [{ content: { parts: [{ text: "The answer" }], role: "model" }, finishReason: "STOP" }] }));
        return;
      }
      requests.push(req.url);
      const next = plan.length > 1 ? plan.shift() : plan[0];
      if (next === "fail") {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { code: 400, message: "Request contains an invalid argument.", status: "INVALID_ARGUMENT" } }));
        return;
      }
      res.writeHead(200, { "content-type": "text/event-stream" });
      const words = next.split(" ");
      const third = Math.ceil(words.length / 3);
      for (let i = 0; i < 3; i++) {
        const text = words.slice(i * third, (i + 1) * third).join(" ") + (i < 2 ? " " : "");
        const event = { candidates: [{ content: { parts: [{ text }], role: "model" }, index: 0 }], modelVersion: "gemini-2.5-flash" };
        if (i === 2) {
          event.candidates[0].finishReason = "STOP";
          event.usageMetadata = { promptTokenCount: 5, candidatesTokenCount: 5, totalTokenCount: 10 };
        }
        res.write(`data: ${JSON.stringify(event)}\r\n\r\n`);
      }
      res.end();
    });
  });
  fake.requests = requests;
  fake.titles = titles;
  return fake;
}

/** Debian's Chromium, headless, with nothing reaching out to the network. */
export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/**
 * Chromium for the tests of the calling file (or suite): launched before them, closed after.
 * `.newPage(options)` opens a page as `newPage` does.
 */
export function useBrowser() {
  let browser = null;
  before(async () => {
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
  });
  return { newPage: (options) => newPage(browser, options) };
}

/** A gemchat started with `env` before the calling file's (or suite's) tests, stopped after. */
export function useGemchat(env) {
  const shared = { url: null, admin: null };
  let server = null;
  before(async () => {
    server = await startGemchat(env);
    shared.url = server.url;
    shared.admin = (verb, mobile) => server.admin(verb, mobile);
  });
  after(async () => {
    await server?.stop();
  });
  return shared;
}

/**
 * A fresh page of its own context that records, in `page.problems`, any dialog (an `alert`
 * would mean injected script ran), page error, console error, CSP violation, 5xx answer or
 * call to a route that does not exist; tests assert it stays empty.
 */
async function newPage(browser, options = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ...options });
  const page = await context.newPage();
  page.problems = [];
  page.on("dialog", async (dialog) => {
    page.problems.push(`dialog: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on("pageerror", (err) => page.problems.push(`page error: ${err.message}`));
  // The client must only call routes that exist, and nothing may answer 5xx.
  page.on("response", async (response) => {
    const status = response.status();
    if (status >= 500 || status === 405) {
      page.problems.push(`${status} for ${response.request().method()} ${response.url()}`);
    } else if (status === 404) {
      const body = await response.text().catch(() => "");
      if (body.includes("No route matches")) page.problems.push(`no route: ${response.request().method()} ${response.url()}`);
    }
  });
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/status of (4\d\d)/.test(msg.text())) page.problems.push(`console: ${msg.text()}`);
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return page;
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return join(SCREENSHOTS, name);
}

/** Signs in through the web client: number, (name for a new number), the shown code. */
export async function signInThroughUi(page, base, mobile, { name, newUser = false } = {}) {
  await page.goto(base);
  await page.getByRole("textbox", { name: "Mobile number" }).fill(mobile);
  await page.getByRole("button", { name: "Continue" }).click();
  if (newUser) {
    await page.getByLabel("Your name").fill(name || "");
    await page.getByRole("button", { name: "Create account" }).click();
  }
  await page.getByRole("button", { name: "Use this code" }).click();
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#chat-view").waitFor({ state: "visible" });
  await page.locator("#usage-text").filter({ hasText: /prompts/i }).waitFor({ state: "attached" });
}

/** Opens the web client already signed in as `session` (set-up the test is not about). */
export async function openSignedIn(page, base, session) {
  await page.context().addInitScript((value) => {
    localStorage.setItem("gemchat.session", value);
  }, JSON.stringify({ token: session.token, user: session.user }));
  await page.goto(base);
  await page.locator("#usage-text").filter({ hasText: /prompts/i }).waitFor({ state: "attached" });
}

/** Types a prompt and sends it with Enter. */
export async function sendWithEnter(page, text) {
  const box = page.getByRole("textbox", { name: "Message" });
  await box.fill(text);
  await box.press("Enter");
}

/** The number of replies in the open conversation in a final state. */
export function finishedReplies(page) {
  return page.locator('#messages .from-model[data-status="completed"], #messages .from-model[data-status="failed"]').count();
}
