// The console's calls: its own JSON API and the orchestrator's POST /recognize event stream.
// The browser's key cookie (set by the sign-in form) authenticates both.

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error;
    this.field = body && body.field;
  }
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  return new ApiError(response.status, body);
}

export async function getJSON(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw await errorOf(response);
  return response.json();
}

// One server-sent event block ("event: x\ndata: {...}") → {event, data}, or null for a comment.
export function parseEvent(block) {
  let event = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: JSON.parse(data.join("\n")) } : null;
}

// POST /recognize with Accept: text/event-stream; calls onEvent(name, data) as each event arrives.
export async function streamRecognition(photo, mall, onEvent, signal) {
  const init = { method: "POST", headers: { Accept: "text/event-stream" }, credentials: "same-origin", signal };
  if (photo.blob) {
    const form = new FormData();
    form.append("image", photo.blob, photo.name || "photo.jpg");
    if (mall) form.append("user_mall", mall);
    init.body = form;
  } else {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(mall ? { photo_url: photo.url, user_mall: mall } : { photo_url: photo.url });
  }
  const response = await fetch("/recognize", init);
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const message = parseEvent(buffer.slice(0, cut).replaceAll("\r", ""));
      buffer = buffer.slice(cut + 2);
      if (message) onEvent(message.event, message.data);
    }
  }
}
