// The sign-in form returns to the console URL it was opened at (photo and mall kept).
const params = new URLSearchParams(window.location.search);
const denied = params.has("denied");
params.delete("denied");
const query = params.toString();
document.getElementById("next").value = `/console${query ? `?${query}` : ""}`;
if (denied) {
  document.getElementById("denied").hidden = false;
  document.getElementById("key").setAttribute("aria-invalid", "true");
}
document.getElementById("key").focus();
