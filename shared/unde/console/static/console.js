// Entry point: picks the view from the URL, fills the photo and mall choices, and starts a run
// on load for /console?photo=<image URL or demo photo file name>&mall=<mall name>.

import { getJSON } from "./api.js";
import { el } from "./dom.js";
import { PastView } from "./past-view.js";
import { RunView } from "./run-view.js";

const params = new URLSearchParams(window.location.search);
const $ = (id) => document.getElementById(id);

function setView(name) {
  $("recognize-view").hidden = name !== "recognize";
  $("request-view").hidden = name !== "request";
  for (const [link, view] of [["nav-recognize", "recognize"], ["nav-request", "request"]]) {
    if (name === view) $(link).setAttribute("aria-current", "page");
    else $(link).removeAttribute("aria-current");
  }
}

async function fillChoices() {
  const [malls, photos] = await Promise.allSettled([getJSON("/console/api/malls"), getJSON("/console/api/demo-photos")]);
  const mallSelect = $("mall");
  if (malls.status === "fulfilled") {
    for (const mall of malls.value.malls) {
      mallSelect.append(el("option", { value: mall.name, text: `${mall.name} (${mall.stores} stores)` }));
    }
    $("mall-hint").textContent = `${malls.value.malls.length} malls in the staging DB.`;
  } else {
    $("mall-hint").textContent = `Could not list the malls: ${malls.reason.message}`;
  }
  const demoSelect = $("demo-photo");
  const demo = photos.status === "fulfilled" ? photos.value.photos : [];
  for (const photo of demo) {
    demoSelect.append(el("option", { value: photo.name, dataset: { mall: photo.mall || "" },
      text: photo.mall ? `${photo.name} (${photo.mall})` : photo.name }));
  }
  demoSelect.disabled = !demo.length;
  if (!demo.length) demoSelect.options[0].textContent = "none in this data directory";
  return { demoNames: new Set(demo.map((p) => p.name)) };
}

function ensureMall(name) {
  const select = $("mall");
  if (![...select.options].some((o) => o.value === name)) {
    select.append(el("option", { value: name, text: `${name} (not in the staging DB)` }));
  }
  select.value = name;
}

async function demoPhoto(name) {
  const response = await fetch(`/console/api/demo-photo?name=${encodeURIComponent(name)}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`demo photo ${name}: HTTP ${response.status}`);
  const blob = await response.blob();
  return { blob, name, src: URL.createObjectURL(blob) };
}

// The photo the form describes: an uploaded file, a demo photo or a URL (they exclude each other).
async function chosenPhoto() {
  const file = $("photo-file").files[0];
  if (file) return { blob: file, name: file.name, src: URL.createObjectURL(file) };
  if ($("demo-photo").value) return demoPhoto($("demo-photo").value);
  const url = $("photo-url").value.trim();
  if (url) return { url, src: url };
  return null;
}

function exclusive() {
  const inputs = [$("photo-file"), $("demo-photo"), $("photo-url")];
  for (const input of inputs) {
    input.addEventListener("change", () => {
      if (!input.value) return;
      for (const other of inputs) if (other !== input) other.value = "";
      if (input.id === "demo-photo" && !$("mall").value) {
        const mall = input.selectedOptions[0]?.dataset.mall;
        if (mall) ensureMall(mall);
      }
    });
  }
}

async function startRecognize() {
  setView("recognize");
  const view = new RunView(document);
  const { demoNames } = await fillChoices();
  exclusive();
  $("run-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let photo;
    try {
      photo = await chosenPhoto();
    } catch (error) {
      $("status").textContent = error.message;
      return;
    }
    if (!photo) {
      $("status").textContent = "Choose a demo photo, upload a photo or give an image URL first.";
      $("demo-photo").disabled ? $("photo-file").focus() : $("demo-photo").focus();
      return;
    }
    view.run(photo, $("mall").value);
  });
  const photo = params.get("photo");
  if (params.has("mall")) ensureMall(params.get("mall"));
  if (photo) {
    if (demoNames.has(photo)) $("demo-photo").value = photo;
    else $("photo-url").value = photo;
    $("run-form").requestSubmit();
  }
}

function startRequest() {
  setView("request");
  const view = new PastView(document);
  view.loadRecent();
  const id = params.get("request");
  if (id) view.load(id, { fresh: params.get("fresh") === "1" });
  else $("request-id").focus();
}

if (params.get("view") === "request" || params.has("request")) startRequest();
else startRecognize();
