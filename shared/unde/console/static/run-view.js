// The recognition view: one run of POST /recognize drawn as the spec's progressive timeline —
// scanning → chips on the photo (detected) → skeleton cards → search-order cards (candidates)
// → ranked cards with tier badges (ranked) → timings, calibration and degradations (result).

import { streamRecognition } from "./api.js";
import { productCard, skeletonCard, tierBadge, TIERS } from "./cards.js";
import { clear, el, garmentName, ms, percent, score, show } from "./dom.js";
import { meaning } from "./flags.js";
import { drawGarments } from "./photo.js";
import { serverTimingRows, timingBars } from "./timings.js";

const SKELETONS = 3;
const PRELIMINARY = 4;

export class RunView {
  constructor(doc) {
    this.output = doc.getElementById("run-output");
    this.status = doc.getElementById("status");
    this.frame = doc.getElementById("photo-frame");
    this.img = doc.getElementById("photo");
    this.layer = doc.getElementById("boxes");
    this.timeline = doc.getElementById("timeline");
    this.serverTimings = doc.getElementById("server-timings");
    this.degraded = doc.getElementById("degraded");
    this.garments = doc.getElementById("garments");
    this.requestLink = doc.getElementById("request-link");
    this.button = doc.getElementById("run");
    this.sections = new Map();
  }

  reset() {
    for (const node of [this.layer, this.timeline, this.serverTimings, this.degraded, this.garments, this.requestLink]) {
      clear(node);
    }
    show(this.degraded, false);
    this.sections.clear();
    this.ranked = new Set();
  }

  say(text) {
    this.status.textContent = text;
  }

  mark(label, detail = "") {
    const at = performance.now() - this.started;
    this.timeline.append(el("li", { dataset: { event: label } },
      el("span", { class: "at", text: ms(at) }), " ", el("span", { class: "what", text: label }),
      detail ? el("span", { class: "detail", text: ` — ${detail}` }) : null));
  }

  // photo: {blob, name, src} for an upload, or {url, src} for a photo URL the gateway fetches.
  async run(photo, mall) {
    this.reset();
    this.mall = mall;
    this.started = performance.now();
    this.output.dataset.state = "running";
    delete this.output.dataset.requestId;
    show(this.output);
    this.frame.classList.add("scanning");
    this.img.src = photo.src;
    this.img.alt = `The photo being recognized (${photo.name || photo.url})`;
    this.button.disabled = true;
    this.say("Scanning the photo…");
    this.mark("photo sent", mall ? `mall ${mall}` : "no mall: availability not applied");
    try {
      await streamRecognition(photo, mall, (event, data) => this.handle(event, data));
      if (this.output.dataset.state === "running") this.fail(new Error("the stream ended without a result"));
    } catch (error) {
      this.fail(error);
    } finally {
      this.button.disabled = false;
      this.frame.classList.remove("scanning");
    }
  }

  handle(event, data) {
    const handlers = {
      detected: () => this.detected(data),
      candidates: () => this.candidates(data),
      ranked: () => this.rankedEvent(data),
      done: () => this.mark("done", `server total ${ms(data.total_ms)}${data.partial ? ", partial (deadline)" : ""}`),
      result: () => this.result(data),
      error: () => this.fail(data),
    };
    (handlers[event] || (() => this.mark(`event ${event}`)))();
  }

  detected(data) {
    this.frame.classList.remove("scanning");
    this.output.dataset.requestId = data.request_id;
    const items = data.items || [];
    this.mark("detected", `${items.length} garment${items.length === 1 ? "" : "s"}`);
    drawGarments(this.img, this.layer, items);
    if (!items.length) {
      this.garments.append(el("p", { class: "empty", text: "No garment was detected in this photo." }));
      this.say("No garment detected.");
      return;
    }
    this.say(`Detected ${items.length} garment${items.length === 1 ? "" : "s"}; looking for similar products…`);
    items.forEach((item) => this.garments.append(this.section(item)));
  }

  section(item) {
    const id = `garment-${item.item_id}`;
    const cards = el("ul", { class: "cards" }, Array.from({ length: SKELETONS }, skeletonCard));
    const phase = el("p", { class: "phase", text: "Looking for similar…" });
    const tier = el("span", { class: "tier-slot" });
    const facts = el("div", { class: "facts" });
    const section = el("section", { class: "garment", id, "aria-labelledby": `${id}-title`, "aria-busy": "true",
      tabindex: "-1", dataset: { item: item.item_id, phase: "searching" } },
      el("div", { class: "garment-head" },
        el("h3", { id: `${id}-title` }, `#${item.item_id} · ${garmentName(item)} `,
          el("span", { class: "conf", text: `detected ${percent(item.confidence)}` })), tier),
      phase, cards, facts);
    this.sections.set(item.item_id, { section, cards, phase, tier, facts, item, label: `garment #${item.item_id}` });
    return section;
  }

  candidates(data) {
    const part = this.sections.get(data.item_id);
    if (!part || this.ranked.has(data.item_id)) return;
    const found = data.candidates || [];
    const filtered = data.availability_applied ? "in stock in the mall" : "NOT filtered by the mall's stock";
    this.mark("candidates", `${part.label}: ${found.length} ${filtered}`);
    part.section.dataset.phase = "candidates";
    part.phase.textContent = found.length
      ? `${found.length} candidates ${filtered} (search order); reranking…`
      : "No candidate in stock; looking for the same style…";
    if (found.length) {
      part.cards.replaceChildren(...found.slice(0, PRELIMINARY).map((c) => productCard(c, { mallChosen: !!this.mall })));
    }
  }

  rankedEvent(data) {
    const part = this.sections.get(data.item_id);
    if (!part) return;
    this.mark("ranked", `${part.label}: ${TIERS[data.match_type]?.label || data.match_type}, ${(data.matches || []).length} shown`);
    this.showRanked(part, data.match_type, data.matches || []);
  }

  showRanked(part, matchType, matches) {
    this.ranked.add(part.item.item_id);
    part.section.dataset.phase = "ranked";
    part.section.dataset.tier = matchType;
    part.section.setAttribute("aria-busy", "false");
    part.tier.replaceChildren(tierBadge(matchType));
    part.phase.textContent = matches.length ? `${TIERS[matchType]?.label || matchType}: ${matches.length} shown`
      : "Nothing to show for this garment.";
    part.cards.replaceChildren(...matches.map((m) => productCard(m, { tier: matchType, mallChosen: !!this.mall })));
  }

  result(response) {
    this.output.dataset.requestId = response.request_id;
    for (const item of response.items || []) {
      const part = this.sections.get(item.item_id);
      if (!part) continue;
      if (!this.ranked.has(item.item_id)) this.showRanked(part, item.match_type, item.matches || []);
      part.facts.replaceChildren(garmentFacts(item));
    }
    this.serverTimings.replaceChildren(el("h4", { text: "Server step timings" }),
      timingBars(serverTimingRows(response.timings_ms), "Server step timings"));
    this.showDegraded(response);
    const matched = (response.items || []).filter((i) => i.match_type !== "style").length;
    this.requestLink.replaceChildren("Request ", el("code", { text: response.request_id }), " · ",
      el("a", { href: `/console?request=${encodeURIComponent(response.request_id)}&fresh=1`, text: "open its log row" }));
    this.output.dataset.state = "done";
    this.say(`Done in ${ms(response.total_ms)}: ${(response.items || []).length} garments, ${matched} exact or similar.`);
  }

  showDegraded(response) {
    const flags = new Map((response.degraded || []).map((flag) => [flag, []]));
    for (const item of response.items || []) {
      for (const flag of item.degraded || []) {
        if (!flags.has(flag)) flags.set(flag, []);
        flags.get(flag).push(item.item_id);
      }
    }
    show(this.degraded, true);
    this.degraded.dataset.flags = [...flags.keys()].join(" ");
    if (!flags.size) {
      this.degraded.className = "degraded none";
      this.degraded.replaceChildren(el("p", { text: "No degradation flags: every step answered." }));
      return;
    }
    this.degraded.className = "degraded";
    this.degraded.replaceChildren(el("h3", { text: `Degraded run: ${flags.size} flag${flags.size === 1 ? "" : "s"}` }),
      el("ul", {}, [...flags].map(([flag, items]) => el("li", { dataset: { flag } },
        el("code", { text: flag }), meaning(flag) ? ` — ${meaning(flag)}` : "",
        items.length ? el("span", { class: "detail", text: ` (${items.map((id) => this.sections.get(id)?.label || `item ${id}`).join(", ")})` }) : null))));
  }

  fail(error) {
    this.output.dataset.state = "error";
    this.frame.classList.remove("scanning");
    const status = error.status ? `HTTP ${error.status}: ` : "";
    const field = error.field ? ` (field ${error.field})` : "";
    const signIn = error.status === 401 ? " Reload the page to sign in again." : "";
    show(this.degraded, true);
    this.degraded.className = "degraded error";
    this.degraded.replaceChildren(el("h3", { text: "The recognition failed" }),
      el("p", { text: `${status}${error.message || error.error || "unknown error"}${field}.${signIn}` }));
    this.say("Failed.");
  }
}

function garmentFacts(item) {
  const search = item.search || {};
  const timings = item.timings_ms || {};
  const rows = [
    ["search", ms(timings.search)], ["tagging", ms(timings.tagging)],
    ["availability", ms(timings.availability)], ["rerank", ms(timings.rerank)],
    ["pgvector top-1", score(search.pgvector_top1_score)], ["pgvector margin", score(search.pgvector_margin)],
    ["pgvector confident", search.pgvector_confident ? "yes" : "no"],
    ["Ximilar search", search.used_ximilar ? "used" : "not used"],
    ["in stock after availability", String(item.candidates_after_availability ?? "—")],
  ];
  const tags = Object.entries(item.tags || {}).filter(([, v]) => typeof v === "string");
  return el("details", { class: "facts-detail" },
    el("summary", { text: "Timings, calibration and tags" }),
    el("dl", { class: "kv" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    tags.length ? el("p", { class: "tags" }, tags.map(([k, v]) => el("span", { class: "tag", text: `${k}: ${v}` }))) : null,
    item.fallback_matched_on ? el("p", { class: "detail", text: `fallback matched on ${item.fallback_matched_on.join(", ")}` }) : null);
}
