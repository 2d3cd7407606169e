// Per-step timings as horizontal bars, scaled to the request's total.

import { el, ms } from "./dom.js";

// rows: [[label, milliseconds | null]]; the last row is usually the total.
export function timingBars(rows, caption) {
  const values = rows.map(([, value]) => Number(value) || 0);
  const longest = Math.max(1, ...values);
  const list = el("ul", { class: "bars", "aria-label": caption });
  for (const [label, value] of rows) {
    const fill = el("span", { class: "fill" });
    fill.style.width = `${(100 * (Number(value) || 0)) / longest}%`;
    list.append(el("li", { class: "bar-row", dataset: { step: label } },
      el("span", { class: "bar-label", text: label }),
      el("span", { class: "bar", "aria-hidden": "true" }, fill),
      el("span", { class: "bar-value", text: ms(value) })));
  }
  return list;
}

export function serverTimingRows(timings) {
  const order = ["detection", "search", "tagging", "availability", "rerank", "total"];
  return order.filter((step) => step in (timings || {})).map((step) => [step, timings[step]]);
}
