// Files in prompts: attached with the paperclip button, dropped on the conversation or pasted
// into the message box; each is uploaded at once (POST /uploads) and waits in the composer's
// tray (a thumbnail for images, a chip for PDFs and text) until the prompt is sent. Sent
// prompts show their files; an image opens large, other files download.

import { fileUrl, uploadFile } from "./api.js";
import { $, describe, h, toast } from "./ui.js";

/** The most files one prompt may carry (the API's limit). */
const MAX_FILES = 4;

/** Files in the tray: {key, file, status: "uploading" | "ready" | "failed", attachment?, error?, preview?}. */
let tray = [];
let keys = 0;

export const attachmentActions = {
  "attach-file": () => $("file-input").click(),
  "remove-file": (button) => removeFile(Number(button.dataset.key)),
  "open-file": (button) => openFile(button.dataset.file, button.dataset.kind, button.dataset.name),
};

export function wireAttachments() {
  $("file-input").addEventListener("change", (event) => {
    addFiles([...event.target.files]);
    event.target.value = ""; // the same file can be chosen again
  });
  $("composer-input").addEventListener("paste", (event) => {
    const files = [...(event.clipboardData?.files || [])];
    if (files.length) {
      event.preventDefault();
      addFiles(files);
    }
  });
  const zone = document.querySelector("main.conversation");
  zone.addEventListener("dragover", (event) => {
    if (!event.dataTransfer?.types.includes("Files")) return;
    event.preventDefault();
    zone.classList.add("dropping");
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) zone.classList.remove("dropping");
  });
  zone.addEventListener("drop", (event) => {
    zone.classList.remove("dropping");
    const files = [...(event.dataTransfer?.files || [])];
    if (!files.length) return;
    event.preventDefault();
    addFiles(files);
  });
}

/** Uploads `files` into the tray, up to the limit. */
function addFiles(files) {
  const room = MAX_FILES - tray.filter((item) => item.status !== "failed").length;
  if (files.length > room) toast(`At most ${MAX_FILES} files per message.`, "error");
  for (const file of files.slice(0, Math.max(room, 0))) {
    const item = { key: ++keys, file, status: "uploading" };
    if (file.type.startsWith("image/")) item.preview = URL.createObjectURL(file);
    tray.push(item);
    upload(item);
  }
  renderTray();
}

async function upload(item) {
  try {
    item.attachment = await uploadFile(item.file);
    item.status = "ready";
  } catch (err) {
    item.status = "failed";
    item.error = refusal(err);
  }
  if (tray.includes(item)) renderTray();
}

/** Why a file was refused, for people. */
function refusal(err) {
  if (err.code === "unsupported_media_type") return "This type of file is not accepted (images, PDFs and text files are).";
  if (err.code === "payload_too_large") return err.message;
  if (err.code === "validation_failed") return err.fieldError("file") ? `The file ${err.fieldError("file")}.` : err.message;
  return describe(err);
}

function removeFile(key) {
  const item = tray.find((i) => i.key === key);
  if (item?.preview) URL.revokeObjectURL(item.preview);
  tray = tray.filter((i) => i.key !== key);
  renderTray();
  $("composer-input").focus();
}

function renderTray() {
  const list = $("attachment-tray");
  list.hidden = tray.length === 0;
  list.replaceChildren(
    ...tray.map((item) => {
      const name = item.file.name || "pasted file";
      const label = item.status === "uploading" ? `${name}, uploading` : item.status === "failed" ? `${name}, refused` : name;
      return h(
        "li",
        { className: `tray-item ${item.status}`, title: item.error || name },
        item.preview ? h("img", { className: "thumb", src: item.preview, alt: "" }) : h("span", { className: "file-kind" }, kindOf(item.file.type, name)),
        h("span", { className: "file-name" }, name),
        item.status === "uploading" ? h("span", { className: "uploading", "aria-label": "uploading" }) : null,
        h("button", { type: "button", className: "remove-file", dataset: { action: "remove-file", key: String(item.key) }, "aria-label": `Remove ${label}` }, "×"),
        item.error ? h("span", { className: "file-error", role: "alert" }, item.error) : null,
      );
    }),
  );
}

/** "PDF", "TXT" or the file's extension, for a chip. */
function kindOf(type, name) {
  if (type === "application/pdf") return "PDF";
  if (type === "text/plain") return "TXT";
  const extension = name.includes(".") ? name.split(".").pop() : "file";
  return extension.slice(0, 4).toUpperCase();
}

/**
 * The files to send with the prompt, taken out of the tray: their attachments, or null (and
 * a message) while one is still uploading. Refused files are dropped with them.
 */
export function takeFiles() {
  if (tray.some((item) => item.status === "uploading")) {
    toast("Wait a moment: a file is still uploading.");
    return null;
  }
  const ready = tray.filter((item) => item.status === "ready").map((item) => item.attachment);
  for (const item of tray) if (item.preview) URL.revokeObjectURL(item.preview);
  tray = [];
  renderTray();
  return ready;
}

/** The files of a sent prompt: image thumbnails and chips, each a button that opens it. */
export function renderAttachments(attachments) {
  if (!attachments?.length) return null;
  return h(
    "ul",
    { className: "attachments", "aria-label": "Attached files" },
    ...attachments.map((file) => {
      const image = file.mime_type.startsWith("image/");
      const button = h(
        "button",
        {
          type: "button",
          className: image ? "attachment-thumb" : "attachment-chip",
          dataset: { action: "open-file", file: file.id, kind: image ? "image" : "file", name: file.name },
          "aria-label": image ? `Open the image ${file.name}` : `Download ${file.name}`,
        },
        image ? h("img", { alt: file.name }) : h("span", { className: "file-kind" }, kindOf(file.mime_type, file.name)),
        image ? null : h("span", { className: "file-name" }, `${file.name} · ${sizeText(file.size)}`),
      );
      if (image) {
        const img = button.querySelector("img");
        fileUrl(file.id).then(
          (url) => (img.src = url),
          () => button.classList.add("missing"),
        );
      }
      return h("li", {}, button);
    }),
  );
}

function sizeText(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** Shows an image large, or saves any other file. */
async function openFile(id, kind, name) {
  let url;
  try {
    url = await fileUrl(id);
  } catch (err) {
    toast(describe(err), "error");
    return;
  }
  if (kind === "image") {
    const dialog = $("image-dialog");
    $("image-view").src = url;
    $("image-view").alt = name;
    $("image-caption").textContent = name;
    dialog.showModal();
    return;
  }
  const link = h("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
}
