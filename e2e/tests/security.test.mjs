// Text from users and models reaches the page as text: markup in a prompt or a reply is shown,
// never run. The page's content security policy is the second line of defence.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  apiUser,
  eventually,
  finishedReplies,
  newNumber,
  openSignedIn,
  screenshotPath,
  sendWithEnter,
  useBrowser,
  useGemchat,
} from "../lib/harness.mjs";

const browser = useBrowser();
const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0" });

test("markup in a message and in its reply is shown as text", async () => {
  const session = await apiUser(gemchat.url, newNumber(), '<b onmouseover="alert(2)">Mallory</b>');
  const page = await browser.newPage();
  await openSignedIn(page, gemchat.url, session);
  // The user's own name is text too.
  assert.equal(await page.locator("#user-name").textContent(), '<b onmouseover="alert(2)">Mallory</b>');

  const image = "<img src=x onerror=alert(1)>";
  await sendWithEnter(page, image);
  await eventually(async () => (await finishedReplies(page)) === 1, { what: "the first reply" });
  // The echo reply repeats the prompt, so the reply carries the markup as well.
  const script = "<script>window.pwned = true; alert(3)</script> and [a link](javascript:alert(4))";
  await sendWithEnter(page, script);
  await eventually(async () => (await finishedReplies(page)) === 2, { what: "the second reply" });

  const users = await page.locator("#messages .from-user .content").allTextContents();
  assert.deepEqual(users, [image, script]);
  const replies = await page.locator("#messages .from-model .content").allTextContents();
  assert.ok(replies[0].endsWith(`You said: ${image}`), replies[0]);
  assert.ok(replies[1].includes("<script>window.pwned = true; alert(3)</script>"), replies[1]);

  const found = await page.evaluate(() => ({
    images: document.querySelectorAll("#messages img, #room-list img, #room-title img").length,
    scripts: document.querySelectorAll("body script").length,
    javascriptLinks: [...document.querySelectorAll("a")].filter((a) => a.href.startsWith("javascript:")).length,
    pwned: window.pwned === true,
    bold: document.querySelectorAll("#user-name b").length,
  }));
  assert.deepEqual(found, { images: 0, scripts: 0, javascriptLinks: 0, pwned: false, bold: 0 });
  // The room's title (echo titles it with the prompt's first words) shows as text too.
  await eventually(async () => (await page.locator("#room-list .room-link").first().textContent()) === image, {
    what: "the title, as text",
  });
  assert.equal(await page.locator("#room-title").textContent(), image);
  await page.screenshot({ path: screenshotPath("xss-as-text.png") });
  assert.deepEqual(page.problems, [], "no alert, no page error, no CSP violation");
  await page.context().close();
});

test("the page forbids inline script and foreign origins", async () => {
  const response = await fetch(gemchat.url);
  const csp = response.headers.get("content-security-policy");
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /connect-src 'self'(;|$)/);
  assert.match(csp, /frame-ancestors 'none'/);
  const page = await browser.newPage();
  await page.goto(gemchat.url);
  // Even markup that did get into the DOM could not run: inline handlers are blocked.
  await page.evaluate(() => {
    const probe = document.createElement("div");
    probe.innerHTML = '<img src="data:," onerror="window.ran = true">';
    document.body.append(probe);
  });
  await eventually(async () => page.problems.some((p) => p.includes("CSP violation")), { what: "the CSP report" });
  assert.equal(await page.evaluate(() => window.ran === true), false);
  await page.context().close();
});

test("the Markdown renderer builds safe elements", async () => {
  const page = await browser.newPage();
  await page.goto(gemchat.url);
  const cases = await page.evaluate(async () => {
    const { renderMarkdown } = await import("/assets/markdown.js");
    const html = (text) => {
      const div = document.createElement("div");
      div.append(renderMarkdown(text));
      return div.innerHTML;
    };
    return {
      paragraph: html("Hello *there*, **bold** and `code` ~~gone~~"),
      heading: html("# Title\n### Small"),
      list: html("1. one\n2. two\n   - nested\n\n- a\n- b"),
      fence: html("```js\nconst x = '<b>';\n```"),
      unclosedFence: html("```\nstill streaming <i>"),
      quote: html("> quoted **text**"),
      table: html("| a | b |\n|---|--:|\n| 1 | <x> |"),
      links: html("[ok](https://example.com) [bad](javascript:alert(1)) <https://x.test/a> https://y.test/b."),
      image: html("![alt](https://img.test/x.png)"),
      html: html('<img src=x onerror=alert(1)><script>alert(2)</script>'),
      escapes: html("\\*not em\\* and a_snake_case_word"),
      // Thousands of unmatched delimiters: rendered (in linear time) and kept as text.
      manyStars: (() => {
        const text = "a *b _c [e ~~f ".repeat(3000).trim();
        const div = document.createElement("div");
        div.append(renderMarkdown(text));
        return div.textContent === text;
      })(),
    };
  });
  assert.equal(cases.paragraph, "<p>Hello <em>there</em>, <strong>bold</strong> and <code>code</code> <del>gone</del></p>");
  assert.equal(cases.heading, "<h3>Title</h3><h5>Small</h5>");
  assert.equal(cases.list, "<ol><li><p>one</p></li><li><p>two</p><ul><li><p>nested</p></li></ul></li></ol><ul><li><p>a</p></li><li><p>b</p></li></ul>");
  assert.equal(cases.fence, '<pre><code class="language-js">const x = \'&lt;b&gt;\';</code></pre>');
  assert.equal(cases.unclosedFence, "<pre><code>still streaming &lt;i&gt;</code></pre>");
  assert.equal(cases.quote, "<blockquote><p>quoted <strong>text</strong></p></blockquote>");
  assert.equal(
    cases.table,
    '<div class="table-wrap"><table><thead><tr><th scope="col">a</th><th class="align-right" scope="col">b</th></tr></thead>' +
      '<tbody><tr><td>1</td><td class="align-right">&lt;x&gt;</td></tr></tbody></table></div>',
  );
  assert.equal(
    cases.links,
    '<p><a href="https://example.com/" target="_blank" rel="noopener noreferrer nofollow">ok</a> bad ' +
      '<a href="https://x.test/a" target="_blank" rel="noopener noreferrer nofollow">https://x.test/a</a> ' +
      '<a href="https://y.test/b" target="_blank" rel="noopener noreferrer nofollow">https://y.test/b</a>.</p>',
  );
  assert.equal(cases.image, '<p><a href="https://img.test/x.png" target="_blank" rel="noopener noreferrer nofollow">alt</a></p>');
  assert.equal(cases.html, "<p>&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;</p>");
  assert.equal(cases.escapes, "<p>*not em* and a_snake_case_word</p>");
  assert.equal(cases.manyStars, true);
  await page.context().close();
});
