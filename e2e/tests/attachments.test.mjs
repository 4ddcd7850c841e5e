// Files in prompts, in headless Chromium: an image and a PDF attached with the paperclip wait
// in the composer's tray, go with the prompt (the offline echo reply names them), show in the
// sent prompt as a thumbnail and a chip, and the thumbnail opens the image large. A refused
// file says why in the tray and is not sent; a pasted image and a dropped file are attached too.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { deflateSync, crc32 } from "node:zlib";

import { apiUser, eventually, newNumber, openSignedIn, screenshotPath, sendWithEnter, useBrowser, useGemchat } from "../lib/harness.mjs";

const browser = useBrowser();

/** A PNG of `size` x `size` pixels: a diagonal gradient, so a thumbnail is visibly an image. */
function gradientPng(size) {
  const chunk = (type, data) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(size, 0);
  header.writeUInt32BE(size, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) row.set([(x * 255) / size, (y * 255) / size, 200], 1 + x * 3);
    rows.push(row);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk("IHDR", header), chunk("IDAT", deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}

const PDF = Buffer.from(
  "%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n" +
    "3 0 obj << /Type /Page /Parent 2 0 R >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
);

describe("attachments", () => {
  const gemchat = useGemchat({ ECHO_CHUNK_DELAY_MS: "0" });

  test("an image and a PDF go with a prompt and show in it; the image opens large", async () => {
    const page = await browser.newPage();
    const session = await apiUser(gemchat.url, newNumber(), "Asha");
    await openSignedIn(page, gemchat.url, session);
    const image = gradientPng(96);
    await page.locator("#file-input").setInputFiles([
      { name: "sunset.png", mimeType: "image/png", buffer: image },
      { name: "itinerary.pdf", mimeType: "application/pdf", buffer: PDF },
    ]);
    const tray = page.locator("#attachment-tray .tray-item");
    await eventually(async () => (await page.locator("#attachment-tray .tray-item.ready").count()) === 2, { what: "both files to upload" });
    assert.deepEqual(await tray.locator(".file-name").allInnerTexts(), ["sunset.png", "itinerary.pdf"]);
    await page.screenshot({ path: screenshotPath("attachments-tray.png") });

    await sendWithEnter(page, "What do you make of these?");
    const reply = page.locator("#messages .from-model").last();
    await eventually(async () => (await reply.getAttribute("data-status")) === "completed", { what: "the reply" });
    const said = await reply.locator(".content").innerText();
    assert.match(said, new RegExp(`You attached: sunset\\.png \\(image/png, ${image.length} bytes\\), itinerary\\.pdf \\(application/pdf, ${PDF.length} bytes\\)`));
    assert.equal(await page.locator("#attachment-tray .tray-item").count(), 0, "the tray is empty again");

    const prompt = page.locator("#messages .from-user").last();
    const thumb = prompt.getByRole("button", { name: "Open the image sunset.png" });
    await eventually(async () => (await thumb.locator("img").evaluate((img) => img.complete && img.naturalWidth)) === 96, { what: "the thumbnail to load" });
    assert.match(await prompt.getByRole("button", { name: "Download itinerary.pdf" }).innerText(), /PDF\s*itinerary\.pdf · \d+ B/);
    await page.screenshot({ path: screenshotPath("attachments-sent.png") });

    await thumb.click();
    const dialog = page.locator("#image-dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await page.locator("#image-caption").innerText(), "sunset.png");
    await eventually(async () => (await page.locator("#image-view").evaluate((img) => img.naturalWidth)) === 96, { what: "the large image" });
    await page.screenshot({ path: screenshotPath("attachments-image-open.png") });
    await dialog.getByRole("button", { name: "Close" }).click();
    await dialog.waitFor({ state: "hidden" });

    // After a reload the files come from the server.
    await page.reload();
    await page.locator("#messages .from-user").first().getByRole("button", { name: "Open the image sunset.png" }).waitFor();
    assert.deepEqual(page.problems, []);
  });

  test("a refused file says why and is not sent; pasted and dropped files are attached", async () => {
    const page = await browser.newPage();
    const session = await apiUser(gemchat.url, newNumber(), "Dev");
    await openSignedIn(page, gemchat.url, session);
    await page.locator("#file-input").setInputFiles([{ name: "page.html", mimeType: "text/html", buffer: Buffer.from("<!DOCTYPE html><script>alert(1)</script>") }]);
    const refused = page.locator("#attachment-tray .tray-item.failed");
    await refused.waitFor();
    assert.match(await refused.locator(".file-error").innerText(), /not accepted/);
    await page.screenshot({ path: screenshotPath("attachments-refused.png") });

    // Pasting an image into the message box attaches it.
    await page.getByRole("textbox", { name: "Message" }).focus();
    await page.evaluate(async (bytes) => {
      const file = new File([new Uint8Array(bytes)], "pasted.png", { type: "image/png" });
      const data = new DataTransfer();
      data.items.add(file);
      const event = new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true });
      document.getElementById("composer-input").dispatchEvent(event);
    }, [...gradientPng(16)]);
    await page.locator("#attachment-tray .tray-item.ready").waitFor();
    // So is a file dropped on the conversation.
    await page.evaluate(() => {
      const data = new DataTransfer();
      data.items.add(new File(["Packing list: umbrella, boots\n"], "list.txt", { type: "text/plain" }));
      const zone = document.querySelector("main.conversation");
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: data, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
    });
    await eventually(async () => (await page.locator("#attachment-tray .tray-item.ready").count()) === 2, { what: "the dropped file" });
    await sendWithEnter(page, "Only the good one");
    const reply = page.locator("#messages .from-model").last();
    await eventually(async () => (await reply.getAttribute("data-status")) === "completed", { what: "the reply" });
    const said = await reply.locator(".content").innerText();
    assert.match(said, /You attached: pasted\.png \(image\/png, \d+ bytes\), list\.txt \(text\/plain, 30 bytes\)/);
    assert.doesNotMatch(said, /page\.html/);
    assert.deepEqual(page.problems, []);
  });
});
