// The account dialog's chart of the last 30 days, from GET /user/me/usage: prompts a day as
// bars, tokens as a line on their own scale, and the plan's daily limit as a dashed line.
// Inline SVG drawn here (no chart library); the caption says the same in words.

import { call } from "./api.js";
import { state } from "./state.js";
import { $ } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
// The chart's viewBox (index.html) and its margins: axis labels left, the token scale right.
const WIDTH = 640;
const HEIGHT = 200;
const MARGIN = { left: 36, right: 56, top: 14, bottom: 26 };
const DAYS = 30;

const dayFormat = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
const numberFormat = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** "Nov 22" for "2026-11-22" (a UTC day, as the server counts them). */
function dayLabel(date) {
  return dayFormat.format(new Date(`${date}T00:00:00Z`));
}

const tokensOf = (day) => day.input_tokens + day.output_tokens + day.thinking_tokens;

/** Fetches the last 30 days and draws them; says so in the caption when it cannot. */
export async function loadUsageChart() {
  try {
    const { body } = await call("GET", `/user/me/usage?days=${DAYS}`);
    drawUsage([...body.days].reverse(), state.usage?.daily_limit ?? null);
  } catch (err) {
    $("usage-chart").replaceChildren();
    $("usage-summary").textContent = err.status === 401 ? "" : "Your usage is unavailable right now.";
  }
}

/** Draws `days` (oldest first) against the plan's `limit` (null: unlimited). */
function drawUsage(days, limit) {
  const prompts = days.map((day) => day.prompts);
  const tokens = days.map(tokensOf);
  const top = Math.max(1, limit ?? 0, ...prompts);
  const tokenTop = Math.max(1, ...tokens);
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const base = MARGIN.top + plotHeight;
  const step = plotWidth / days.length;
  const y = (value, max) => base - (value / max) * plotHeight;
  const nodes = [
    svg("line", { class: "axis", x1: MARGIN.left, y1: base, x2: WIDTH - MARGIN.right, y2: base }),
    svg("text", { x: MARGIN.left - 6, y: base, "text-anchor": "end", "dominant-baseline": "middle" }, "0"),
    svg("text", { x: MARGIN.left - 6, y: MARGIN.top, "text-anchor": "end", "dominant-baseline": "middle" }, String(top)),
  ];
  days.forEach((day, i) => {
    const height = (day.prompts / top) * plotHeight;
    const bar = svg("rect", {
      class: i === days.length - 1 ? "bar today" : "bar",
      x: (MARGIN.left + i * step + step * 0.15).toFixed(1),
      y: (base - height).toFixed(1),
      width: (step * 0.7).toFixed(1),
      height: height.toFixed(1),
      "data-date": day.date,
      "data-prompts": day.prompts,
      "data-tokens": tokens[i],
    });
    bar.append(svg("title", {}, `${dayLabel(day.date)}: ${day.prompts} prompts, ${numberFormat.format(tokens[i])} tokens`));
    nodes.push(bar);
  });
  const points = tokens.map((count, i) => `${(MARGIN.left + (i + 0.5) * step).toFixed(1)},${y(count, tokenTop).toFixed(1)}`);
  nodes.push(svg("polyline", { class: "tokens", points: points.join(" ") }));
  const most = Math.max(0, ...tokens);
  nodes.push(svg("text", { x: WIDTH - MARGIN.right + 6, y: MARGIN.top, "dominant-baseline": "middle" }, numberFormat.format(most)));
  nodes.push(svg("text", { x: WIDTH - MARGIN.right + 6, y: MARGIN.top + 16, "dominant-baseline": "middle" }, "tokens"));
  if (limit !== null) {
    const at = y(limit, top).toFixed(1);
    nodes.push(svg("line", { class: "limit", x1: MARGIN.left, y1: at, x2: WIDTH - MARGIN.right, y2: at }));
    nodes.push(
      // Under the line: the line sits at the top of the scale whenever no day went past it.
      svg("text", { class: "limit-label", x: WIDTH - MARGIN.right - 4, y: Number(at) + 14, "text-anchor": "end" }, `limit ${limit} a day`),
    );
  }
  for (const i of [0, Math.floor(days.length / 2), days.length - 1]) {
    const x = (MARGIN.left + (i + 0.5) * step).toFixed(1);
    nodes.push(svg("text", { x, y: HEIGHT - 6, "text-anchor": "middle" }, i === days.length - 1 ? "Today" : dayLabel(days[i].date)));
  }
  $("usage-chart").replaceChildren(...nodes);
  $("usage-summary").textContent = summary(days, tokens, limit);
}

function summary(days, tokens, limit) {
  const total = days.reduce((sum, day) => sum + day.prompts, 0);
  const tokenTotal = tokens.reduce((sum, count) => sum + count, 0);
  const busiest = days.reduce((best, day) => (day.prompts > best.prompts ? day : best), days[0]);
  const parts = [`${total} prompts and ${numberFormat.format(tokenTotal)} tokens in the last ${days.length} days.`];
  if (busiest && busiest.prompts > 0) parts.push(`Busiest day: ${dayLabel(busiest.date)} (${busiest.prompts}).`);
  parts.push(
    "Bars: prompts a day; line: tokens" + (limit === null ? " (your plan has no daily limit)." : `; dashed: your plan's limit of ${limit} a day.`),
  );
  return parts.join(" ");
}
