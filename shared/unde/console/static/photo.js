// The photo with the detected garments' boxes and chips drawn over it.

import { el, garmentName, percent } from "./dom.js";

export function loaded(img) {
  if (img.complete && img.naturalWidth) return Promise.resolve(true);
  return new Promise((resolve) => {
    img.addEventListener("load", () => resolve(true), { once: true });
    img.addEventListener("error", () => resolve(false), { once: true });
  });
}

// items: [{item_id, bbox: [x0, y0, x1, y1] in the photo's pixels, category, type, confidence}]
export async function drawGarments(img, layer, items, { chips = true, link = (item) => `#garment-${item.item_id}` } = {}) {
  layer.replaceChildren();
  const ok = await loaded(img);
  const width = img.naturalWidth;
  const height = img.naturalHeight;
  for (const item of items) {
    const label = `#${item.item_id} · ${garmentName(item)} ${percent(item.confidence)}`;
    const box = el("div", { class: "box", dataset: { item: item.item_id } });
    if (ok && width && height && Array.isArray(item.bbox)) {
      const [x0, y0, x1, y1] = item.bbox.map(Number);
      box.style.left = `${(100 * x0) / width}%`;
      box.style.top = `${(100 * y0) / height}%`;
      box.style.width = `${(100 * (x1 - x0)) / width}%`;
      box.style.height = `${(100 * (y1 - y0)) / height}%`;
    } else {
      box.classList.add("unplaced");
    }
    if (chips) box.append(el("a", { class: "chip", href: link(item), text: label }));
    layer.append(box);
  }
}
