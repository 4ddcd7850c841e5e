// Markdown for replies, rendered safely: the output is built with createElement and text
// nodes only, never parsed from HTML, so no markup in a reply (or a prompt it quotes) can
// reach the page as markup. Links keep only http(s) and mailto targets. It covers what chat
// models write: paragraphs, headings, emphasis, code spans and fenced blocks, lists (nested),
// block quotes, tables, rules and links. An unclosed code fence (a reply still streaming)
// renders as code up to the end.

const LIST_ITEM = /^( *)([-*+]|\d{1,9}[.)])(?:[ \t]+(.*))?$/;
const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([A-Za-z0-9_+#.-]*)/;
const HEADING = /^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}>/;
const TABLE_RULE = /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)+\|?[ \t]*$|^ {0,3}\|[ \t]*:?-+:?[ \t]*\|[ \t]*$/;
const BLANK = /^\s*$/;
const MAX_DEPTH = 8;

/** Renders `text` as a DocumentFragment of safe elements. */
export function renderMarkdown(text, doc = document) {
  const fragment = doc.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  blocks(doc, lines, fragment, 0);
  return fragment;
}

/** A URL a link may point to: absolute http(s) or mailto, else null. */
export function safeUrl(raw) {
  let url;
  try {
    url = new URL(String(raw).trim());
  } catch {
    return null;
  }
  return ["http:", "https:", "mailto:"].includes(url.protocol) ? url.href : null;
}

function el(doc, tag, className) {
  const node = doc.createElement(tag);
  if (className) node.className = className;
  return node;
}

function indentOf(line) {
  return line.length - line.trimStart().length;
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    LIST_ITEM.test(line) ||
    (line.includes("|") && next !== undefined && TABLE_RULE.test(next))
  );
}

function blocks(doc, lines, parent, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    const fence = line.match(FENCE);
    if (fence) {
      const marker = fence[1];
      const body = [];
      i++;
      while (i < lines.length && !isClosingFence(lines[i], marker)) body.push(lines[i++]);
      i++; // the closing fence, or past the end while streaming
      const pre = el(doc, "pre");
      const code = el(doc, "code");
      if (fence[2]) code.className = `language-${fence[2]}`;
      code.textContent = body.join("\n");
      pre.append(code);
      parent.append(pre);
      continue;
    }
    const heading = line.match(HEADING);
    if (heading) {
      // h1 and h2 belong to the page; a reply's headings start at h3.
      const h = el(doc, `h${Math.min(6, heading[1].length + 2)}`);
      inline(doc, heading[2], h, 0);
      parent.append(h);
      i++;
      continue;
    }
    if (RULE.test(line)) {
      parent.append(el(doc, "hr"));
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && QUOTE.test(lines[i])) {
        inner.push(lines[i++].replace(/^ {0,3}> ?/, ""));
      }
      const quote = el(doc, "blockquote");
      if (depth < MAX_DEPTH) blocks(doc, inner, quote, depth + 1);
      else quote.textContent = inner.join("\n");
      parent.append(quote);
      continue;
    }
    if (LIST_ITEM.test(line)) {
      i = list(doc, lines, i, parent, depth);
      continue;
    }
    if (line.includes("|") && i + 1 < lines.length && TABLE_RULE.test(lines[i + 1])) {
      i = table(doc, lines, i, parent);
      continue;
    }
    const paragraph = [line.trim()];
    i++;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i], lines[i + 1])) {
      paragraph.push(lines[i++].trim());
    }
    const p = el(doc, "p");
    paragraph.forEach((text, n) => {
      if (n > 0) p.append(el(doc, "br"));
      inline(doc, text, p, 0);
    });
    parent.append(p);
  }
}

function isClosingFence(line, marker) {
  const trimmed = line.trim();
  return (
    indentOf(line) < 4 &&
    trimmed.length >= marker.length &&
    [...trimmed].every((c) => c === marker[0])
  );
}

function list(doc, lines, start, parent, depth) {
  const first = lines[start].match(LIST_ITEM);
  const ordered = /\d/.test(first[2]);
  const base = first[1].length;
  const node = el(doc, ordered ? "ol" : "ul");
  if (ordered) {
    const number = Number.parseInt(first[2], 10);
    if (number !== 1) node.start = number;
  }
  let i = start;
  while (i < lines.length) {
    const item = lines[i].match(LIST_ITEM);
    if (!item || item[1].length !== base || /\d/.test(item[2]) !== ordered) break;
    const contentIndent = base + item[2].length + 1;
    const body = [item[3] || ""];
    i++;
    while (i < lines.length) {
      const line = lines[i];
      if (BLANK.test(line)) {
        let next = i + 1;
        while (next < lines.length && BLANK.test(lines[next])) next++;
        if (next < lines.length && indentOf(lines[next]) > base) {
          body.push("");
          i++;
          continue;
        }
        break;
      }
      const indent = indentOf(line);
      if (indent > base) {
        body.push(line.slice(Math.min(indent, contentIndent)));
        i++;
      } else if (!startsBlock(line, lines[i + 1])) {
        body.push(line.trim()); // a lazy continuation of the item's text
        i++;
      } else {
        break;
      }
    }
    const li = el(doc, "li");
    if (depth < MAX_DEPTH) blocks(doc, body, li, depth + 1);
    else li.textContent = body.join("\n");
    node.append(li);
    // Blank lines between two items of the same list.
    let next = i;
    while (next < lines.length && BLANK.test(lines[next])) next++;
    const following = next < lines.length ? lines[next].match(LIST_ITEM) : null;
    if (next > i && following && following[1].length === base) i = next;
  }
  parent.append(node);
  return i;
}

function cells(line) {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|"));
}

function table(doc, lines, start, parent) {
  const header = cells(lines[start]);
  const aligns = cells(lines[start + 1]).map((spec) => {
    if (spec.startsWith(":") && spec.endsWith(":")) return "align-center";
    if (spec.endsWith(":")) return "align-right";
    return "";
  });
  const wrap = el(doc, "div", "table-wrap");
  const tableNode = el(doc, "table");
  const head = el(doc, "thead");
  const headRow = el(doc, "tr");
  header.forEach((text, n) => {
    const th = el(doc, "th", aligns[n] || "");
    th.scope = "col";
    inline(doc, text, th, 0);
    headRow.append(th);
  });
  head.append(headRow);
  tableNode.append(head);
  const bodyNode = el(doc, "tbody");
  let i = start + 2;
  while (i < lines.length && !BLANK.test(lines[i]) && lines[i].includes("|")) {
    const tr = el(doc, "tr");
    const row = cells(lines[i]);
    header.forEach((_, n) => {
      const td = el(doc, "td", aligns[n] || "");
      inline(doc, row[n] || "", td, 0);
      tr.append(td);
    });
    bodyNode.append(tr);
    i++;
  }
  tableNode.append(bodyNode);
  wrap.append(tableNode);
  parent.append(wrap);
  return i;
}

const ESCAPABLE = /[\\`*_{}[\]()#+\-.!|~<>]/;
const BARE_URL = /^https?:\/\/[^\s<>"]+/;

/** Inline Markdown of `text` appended to `parent` as elements and text nodes. */
function inline(doc, text, parent, depth) {
  let plain = "";
  // Delimiters with no closer after some position have none after any later one either:
  // remembering that keeps pathological input (many unmatched `*`) linear.
  const unclosed = new Set();
  const flush = () => {
    if (plain) parent.append(doc.createTextNode(plain));
    plain = "";
  };
  const wrapped = (tag, inner) => {
    flush();
    const node = el(doc, tag);
    if (depth < MAX_DEPTH) inline(doc, inner, node, depth + 1);
    else node.textContent = inner;
    parent.append(node);
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && ESCAPABLE.test(text[i + 1] || "")) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "`") {
      let n = 1;
      while (text[i + n] === "`") n++;
      const marker = "`".repeat(n);
      const end = unclosed.has(marker) ? -1 : text.indexOf(marker, i + n);
      if (end === -1) {
        unclosed.add(marker);
        plain += marker;
        i += n;
        continue;
      }
      flush();
      const code = el(doc, "code");
      const inner = text.slice(i + n, end);
      code.textContent = /^ .* $/.test(inner) ? inner.slice(1, -1) : inner;
      parent.append(code);
      i = end + n;
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      let run = 1;
      while (text[i + run] === c) run++;
      const size = c === "~" ? 2 : Math.min(run, 2);
      const marker = c.repeat(size);
      const opens =
        run >= size &&
        !/\s/.test(text[i + size] || " ") &&
        !(c === "_" && /[\p{L}\p{N}]/u.test(text[i - 1] || ""));
      const end = opens && !unclosed.has(marker) ? findCloser(text, marker, i + size) : -1;
      if (end === -1) {
        if (opens) unclosed.add(marker);
        plain += c.repeat(run);
        i += run;
        continue;
      }
      const tag = c === "~" ? "del" : size === 2 ? "strong" : "em";
      wrapped(tag, text.slice(i + size, end));
      i = end + size;
      continue;
    }
    if (c === "[" || (c === "!" && text[i + 1] === "[")) {
      const link = parseLink(text, c === "!" ? i + 1 : i);
      if (link) {
        flush();
        const href = safeUrl(link.url);
        const label = c === "!" ? link.label || "image" : link.label;
        if (href) {
          const a = el(doc, "a");
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener noreferrer nofollow";
          if (depth < MAX_DEPTH) inline(doc, label, a, depth + 1);
          else a.textContent = label;
          parent.append(a);
        } else {
          plain += label;
        }
        i = link.end;
        continue;
      }
    }
    if (c === "<") {
      const auto = text.slice(i).match(/^<((?:https?:\/\/|mailto:)[^\s<>]+)>/);
      const href = auto && safeUrl(auto[1]);
      if (href) {
        flush();
        parent.append(anchor(doc, href, auto[1]));
        i += auto[0].length;
        continue;
      }
    }
    if ((c === "h" || c === "H") && (i === 0 || /[\s(]/.test(text[i - 1]))) {
      const bare = text.slice(i).match(BARE_URL);
      if (bare) {
        const url = bare[0].replace(/[.,;:!?)\]'"]+$/, "");
        const href = safeUrl(url);
        if (href) {
          flush();
          parent.append(anchor(doc, href, url));
          i += url.length;
          continue;
        }
      }
    }
    plain += c;
    i++;
  }
  flush();
}

function anchor(doc, href, text) {
  const a = el(doc, "a");
  a.href = href;
  a.target = "_blank";
  a.rel = "noopener noreferrer nofollow";
  a.textContent = text;
  return a;
}

/** The position of `marker` closing an emphasis opened before `from`, or -1. */
function findCloser(text, marker, from) {
  let at = text.indexOf(marker, from + 1);
  while (at !== -1) {
    const before = text[at - 1];
    const after = text[at + marker.length];
    const leftFlanking = !/\s/.test(before);
    const wordy = marker[0] === "_" && /[\p{L}\p{N}]/u.test(after || "");
    const longer = after === marker[0] && marker.length === 1;
    if (leftFlanking && !wordy && !longer) return at;
    at = text.indexOf(marker, at + 1);
  }
  return -1;
}

// How far a link's label and target may reach: bounds the work on text full of stray `[`.
const MAX_LABEL = 1000;
const MAX_TARGET = 2048;

/** `[label](url "title")` starting at `start` (the `[`): {label, url, end} or null. */
function parseLink(text, start) {
  let depth = 0;
  let close = -1;
  for (let i = start; i < Math.min(text.length, start + MAX_LABEL); i++) {
    const c = text[i];
    if (c === "\\") {
      i++;
    } else if (c === "[") {
      depth++;
    } else if (c === "]") {
      depth--;
      if (depth === 0) {
        close = i;
        break;
      }
    }
  }
  if (close === -1 || text[close + 1] !== "(") return null;
  let parens = 0;
  for (let i = close + 2; i < Math.min(text.length, close + 2 + MAX_TARGET); i++) {
    const c = text[i];
    if (c === "(") parens++;
    else if (c === ")") {
      if (parens === 0) {
        const target = text.slice(close + 2, i).trim();
        const url = target.replace(/\s+"[^"]*"$/, "").replace(/^<(.*)>$/, "$1");
        return { label: text.slice(start + 1, close), url, end: i + 1 };
      }
      parens--;
    } else if (c === "\n") {
      return null;
    }
  }
  return null;
}
