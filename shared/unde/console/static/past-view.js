// The past-request view: one `recognition_requests` row, as ops read it when a shopper complains.

import { getJSON } from "./api.js";
import { tierBadge } from "./cards.js";
import { clear, el, garmentName, ms, price, safeImageUrl, score, show } from "./dom.js";
import { meaning } from "./flags.js";
import { drawGarments } from "./photo.js";
import { timingBars } from "./timings.js";

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FRESH_RETRIES = 10;

export class PastView {
  constructor(doc) {
    this.form = doc.getElementById("request-form");
    this.input = doc.getElementById("request-id");
    this.status = doc.getElementById("request-status");
    this.detail = doc.getElementById("request-detail");
    this.recent = doc.getElementById("recent-body");
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      const id = this.input.value.trim();
      history.pushState(null, "", `/console?request=${encodeURIComponent(id)}`);
      this.load(id);
    });
  }

  async load(id, { fresh = false } = {}) {
    this.input.value = id;
    clear(this.detail);
    show(this.detail, false);
    delete this.detail.dataset.state;
    if (!UUID.test(id)) {
      this.status.textContent = "A request id is a UUID, e.g. 5f0c6e2a-1d1b-4c1e-9d0e-000000000001.";
      return;
    }
    this.status.textContent = "Loading…";
    // A fresh request's row is written just after its answer: wait for it a little.
    for (let attempt = 0; ; attempt += 1) {
      try {
        const row = await getJSON(`/console/api/request?id=${encodeURIComponent(id)}`);
        this.render(row);
        return;
      } catch (error) {
        if (error.status === 404 && fresh && attempt < FRESH_RETRIES) {
          await new Promise((resolve) => setTimeout(resolve, 500));
          continue;
        }
        this.status.textContent = error.status === 404 ? `No logged request has the id ${id}.`
          : `Could not load the request: ${error.message}`;
        return;
      }
    }
  }

  async loadRecent() {
    try {
      const { requests } = await getJSON("/console/api/requests?limit=20");
      this.recent.replaceChildren(...requests.map((r) => el("tr", {},
        el("td", {}, el("a", { href: `/console?request=${r.id}`, text: r.id.slice(0, 8) + "…", "aria-label": `request ${r.id}` })),
        el("td", { text: r.created_at ? new Date(r.created_at).toLocaleString() : "—" }),
        el("td", { text: r.user_mall || "no mall" }),
        el("td", { text: `${r.items_detected ?? "—"} / ${r.items_matched ?? "—"}` }),
        el("td", { text: ms(r.total_time_ms) }),
        el("td", { text: (Array.isArray(r.degradations) ? r.degradations : []).join(", ") || "none" }))));
      if (!requests.length) this.recent.replaceChildren(el("tr", {}, el("td", { colspan: 6, text: "No request logged yet." })));
    } catch (error) {
      this.recent.replaceChildren(el("tr", {}, el("td", { colspan: 6, text: `Could not list requests: ${error.message}` })));
    }
  }

  render(row) {
    this.status.textContent = `Request ${row.id}, ${row.created_at ? new Date(row.created_at).toLocaleString() : ""}`;
    const items = Array.isArray(row.detected_items) ? row.detected_items : [];
    this.detail.replaceChildren(
      photoSection(row, items),
      section("Step timings", timingBars([
        ["detection", row.detection_time_ms], ["search", row.search_time_ms], ["tagging", row.tagging_time_ms],
        ["availability", row.availability_time_ms], ["rerank", row.rerank_time_ms], ["total", row.total_time_ms],
      ], "Step timings of this request"), el("p", { class: "hint", text:
        "Search, tagging, availability and rerank are the slowest garment's; garments run concurrently." })),
      section("Calibration", calibration(row)),
      section("Degradations", degradations(row.degradations)),
      section("Final matches", finalMatches(row, items)),
      section("Feedback", feedback(row.user_feedback)),
      section("Settings it ran with", keyValues(Object.entries(row.flags || {}))));
    this.detail.dataset.state = "loaded";
    show(this.detail);
  }
}

function section(title, ...content) {
  const id = `past-part-${title.toLowerCase().replaceAll(/[^a-z]+/g, "-")}`;
  return el("section", { class: "past-part", "aria-labelledby": id }, el("h3", { id, text: title }), ...content);
}

function keyValues(pairs) {
  if (!pairs.length) return el("p", { text: "none recorded" });
  return el("dl", { class: "kv" }, pairs.map(([k, v]) => [el("dt", { text: k }),
    el("dd", { text: v === null || v === undefined ? "—" : typeof v === "object" ? JSON.stringify(v) : String(v) })]));
}

function photoSection(row, items) {
  const src = safeImageUrl(row.photo_url);
  const facts = keyValues([["photo", row.photo_url], ["mall", row.user_mall || "no mall"],
    ["garments detected / matched", `${row.items_detected ?? "—"} / ${row.items_matched ?? "—"}`],
    ["Ximilar credits", row.ximilar_credits ?? 0]]);
  if (!src || !/^https?:/.test(src)) {
    return section("Photo", el("p", { class: "note", text:
      "The photo was uploaded: the log keeps only its hash, not the image. Detected boxes:" }),
    el("ul", {}, items.map((item) => el("li", { text: `#${item.item_id} · ${garmentName(item)} at [${(item.bbox || []).join(", ")}]` }))),
    facts);
  }
  const img = el("img", { id: "past-request-photo", src, alt: `The photo of request ${row.id}` });
  const layer = el("div", { class: "boxes" });
  drawGarments(img, layer, items, { link: (item) => `#past-garment-${item.item_id}` });
  return section("Photo", el("figure", { class: "photo" }, img, layer), facts);
}

function calibration(row) {
  const perGarment = Array.isArray(row.search_results) ? row.search_results : [];
  return el("div", {}, keyValues([
    ["pgvector top-1 (first garment)", score(row.pgvector_top1_score)],
    ["pgvector margin (first garment)", score(row.pgvector_margin)],
    ["Ximilar top-1", score(row.ximilar_top1_score)],
    ["Ximilar used for search", row.used_ximilar_booster ? "yes" : "no"],
    ["Ximilar used for tags", row.used_ximilar_tagging ? "yes" : "no"],
    ["candidates after availability (first garment)", row.candidates_after_availability ?? "—"],
  ]), perGarment.length ? el("div", { class: "scroll" }, el("table", {},
    el("caption", { text: "Per garment" }),
    el("thead", {}, el("tr", {}, ["garment", "pgvector top-1", "margin", "confident", "Ximilar", "after availability"]
      .map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, perGarment.map((s) => el("tr", {},
      el("th", { scope: "row", text: `#${s.item_id}` }), el("td", { text: score(s.pgvector_top1_score) }),
      el("td", { text: score(s.pgvector_margin) }), el("td", { text: s.pgvector_confident ? "yes" : "no" }),
      el("td", { text: s.used_ximilar ? "used" : "no" }),
      el("td", { text: String(s.candidates_after_availability ?? "—") })))))) : null);
}

function degradations(flags) {
  const list = Array.isArray(flags) ? flags : [];
  if (!list.length) return el("p", { text: "No degradation flags." });
  return el("ul", { class: "degraded-list" }, list.map((flag) => el("li", { dataset: { flag } },
    el("code", { text: flag }), meaning(flag) ? ` — ${meaning(flag)}` : "")));
}

function finalMatches(row, items) {
  if (!Array.isArray(row.final_matches)) {
    return el("p", { class: "note", text: `No answer: ${JSON.stringify(row.final_matches)}` });
  }
  const products = new Map((row.products || []).map((p) => [`${p.brand}/${p.external_id}`, p]));
  const names = new Map(items.map((item) => [item.item_id, garmentName(item)]));
  return el("div", {}, row.products_unavailable ? el("p", { class: "note", text:
    "The staging DB did not answer: products are shown by id only." }) : null,
  row.final_matches.map((garment) => el("div", { class: "past-garment", id: `past-garment-${garment.item_id}` },
    el("h4", {}, `#${garment.item_id} · ${names.get(garment.item_id) || "garment"} `, tierBadge(garment.match_type)),
    el("ul", { class: "past-matches" }, (garment.matches || []).map((m) => {
      const product = products.get(`${m.brand}/${m.external_id}`);
      const image = product && safeImageUrl(product.image);
      return el("li", {}, image ? el("img", { src: image, alt: `${m.brand} ${product.name || ""}`, loading: "lazy" }) : null,
        el("span", {}, el("strong", { text: `${m.brand} ${m.external_id}` }),
          product ? ` · ${product.name} · ${price(product.price, product.currency)}` : " · not in the catalog now",
          el("span", { class: "score", text: ` · score ${score(m.score)}` })));
    })))));
}

function feedback(entries) {
  const pairs = Object.entries(entries || {});
  if (!pairs.length) return el("p", { text: "No feedback from the shopper." });
  return el("ul", {}, pairs.map(([item, entry]) => el("li", { dataset: { verdict: entry.verdict } },
    `garment #${item}: `, el("strong", { text: entry.verdict }),
    entry.brand ? ` (${entry.brand} ${entry.external_id || ""})` : "",
    entry.comment ? ` — “${entry.comment}”` : "", entry.at ? el("span", { class: "detail", text: ` at ${entry.at}` }) : null)));
}
