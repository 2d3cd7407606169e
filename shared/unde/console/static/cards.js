// Product cards (catalog photo, brand, name, price, store, floor, sizes, tier badge, score),
// the skeleton cards shown while a garment is searched, and the tier badges.

import { el, price, safeImageUrl, score } from "./dom.js";

export const TIERS = {
  exact: { label: "Exact match", hint: "score above CONFIDENCE_HIGH" },
  similar: { label: "Similar", hint: "score between CONFIDENCE_MEDIUM and CONFIDENCE_HIGH" },
  style: { label: "Same style", hint: "weak visual match: attribute fallback or best visual candidates" },
};

export function tierBadge(matchType) {
  const tier = TIERS[matchType] || { label: matchType || "unknown", hint: "" };
  return el("span", { class: `badge tier-${matchType || "unknown"}`, title: tier.hint, text: tier.label });
}

export function skeletonCard() {
  return el("li", { class: "card skeleton", "aria-hidden": "true" },
    el("div", { class: "thumb" }), el("div", { class: "line" }), el("div", { class: "line short" }));
}

function storeLines(match, mallChosen) {
  const stores = Array.isArray(match.stores) ? match.stores : [];
  if (!stores.length) {
    return [el("p", { class: "store none", text: mallChosen ? "No store in this mall holds it" : "No mall chosen" })];
  }
  const lines = stores.slice(0, 2).map((store) => el("p", { class: "store" },
    store.name || store.store_id || "store", store.floor ? ` · floor ${store.floor}` : ""));
  if (stores.length > 2) lines.push(el("p", { class: "store more", text: `+${stores.length - 2} more stores` }));
  return lines;
}

// One match: `tier` is the garment's match_type, or null for a preliminary (search-order) card.
export function productCard(match, { tier = null, mallChosen = true } = {}) {
  const image = safeImageUrl(match.image);
  const title = [match.brand, match.name].filter(Boolean).join(" ");
  const sizes = Array.isArray(match.sizes_in_stock) ? match.sizes_in_stock : [];
  const parts = [];
  if (match.visual !== undefined && match.visual !== null) parts.push(`visual ${score(match.visual)}`);
  if (match.semantic !== undefined && match.semantic !== null) parts.push(`semantic ${score(match.semantic)}`);
  if (match.search_score !== undefined && match.search_score !== null) parts.push(`search ${score(match.search_score)}`);
  return el("li", { class: tier ? "card" : "card preliminary", dataset: { sku: `${match.brand}/${match.external_id}` } },
    image ? el("img", { class: "thumb", src: image, alt: title || "catalog photo", loading: "lazy" })
      : el("div", { class: "thumb missing", text: "no photo" }),
    el("p", { class: "brand", text: match.brand || "" }),
    el("h4", { class: "name", text: match.name || match.external_id || "unnamed product" }),
    el("p", { class: "price", text: price(match.price, match.currency) }),
    ...storeLines(match, mallChosen),
    el("p", { class: "sizes", text: sizes.length ? `Sizes in stock: ${sizes.join(", ")}` : "No sizes listed" }),
    el("p", { class: "meta" },
      tier ? tierBadge(tier) : el("span", { class: "badge prelim", text: "Search order" }), " ",
      el("span", { class: "score", text: match.score === null || match.score === undefined
        ? "no visual score" : `score ${score(match.score)}` })),
    parts.length ? el("p", { class: "detail", text: parts.join(" · ") }) : null,
    match.reason ? el("p", { class: "detail reason", text: match.reason }) : null);
}
