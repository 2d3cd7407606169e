// Small DOM and formatting helpers. Data is only ever put in the page as text (never as HTML).

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) {
  node.replaceChildren();
  return node;
}

export function show(node, visible = true) {
  node.hidden = !visible;
  return node;
}

export function ms(value) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return "—";
  const number = Number(value);
  return number >= 1000 ? `${(number / 1000).toFixed(2)} s` : `${Math.round(number)} ms`;
}

export function score(value) {
  return value === null || value === undefined ? "—" : Number(value).toFixed(3);
}

export function percent(value) {
  return value === null || value === undefined ? "—" : `${Math.round(Number(value) * 100)}%`;
}

export function price(amount, currency) {
  if (amount === null || amount === undefined || amount === "") return "price unknown";
  const number = Number(amount);
  if (Number.isNaN(number)) return String(amount);
  try {
    return new Intl.NumberFormat("en", { style: "currency", currency: currency || "AED" }).format(number);
  } catch {
    return `${number.toFixed(2)} ${currency || ""}`.trim();
  }
}

// Only http(s) and blob:/same-origin URLs become image sources.
export function safeImageUrl(raw) {
  if (typeof raw !== "string" || !raw) return null;
  try {
    const url = new URL(raw, window.location.href);
    return ["http:", "https:", "blob:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

export function garmentName(item) {
  const kind = item.type ? item.type.replaceAll("_", " ") : item.category;
  return kind || "garment";
}
