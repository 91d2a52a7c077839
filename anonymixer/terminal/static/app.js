// The operator page of `anonymixer terminal serve`. Plain DOM, no build step, no outside requests.
// Every value from the server is shown with textContent (never innerHTML): names may hold quotes,
// HTML, newlines or any unicode. The token lives in this tab's sessionStorage and in headers only.
"use strict";

const TOKEN_KEY = "anonymixer.terminal.token";
const $ = (id) => document.getElementById(id);
let captured = null;          // a camera frame (Blob) waiting to be used by the next upload
let faceUrls = [];            // object URLs of the protected faces on show, revoked on refresh

function token() { return sessionStorage.getItem(TOKEN_KEY); }

function showLogin(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  $("console").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
}

function showConsole() {
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = false;
  refreshInfo();
  refreshSubjects();
  refreshAudit();
}

async function refreshInfo() {
  const result = await api("GET", "/v1/info");
  if (result.status !== 200) return;
  const s = result.body;
  const threshold = s.threshold === undefined ? "none (calibrate the store)" : Number(s.threshold).toFixed(3);
  $("store-info").textContent = (s.kind || "?") + " templates · recogniser " + (s.recogniser || "?") +
    " · model " + (s.model_id || "?") + " · key " + (s.fingerprint || "?") + " · threshold " + threshold;
}

// One request to the API. Resolves to {status, body} (body: parsed JSON, or a Blob with asBlob).
async function api(method, path, form, asBlob) {
  const response = await fetch(path, {
    method, body: form, cache: "no-store", credentials: "omit",
    headers: { "Authorization": "Bearer " + token() },
  });
  if (response.status === 401) {
    showLogin("The token was refused.");
    throw new Error("unauthorised");
  }
  const body = asBlob && response.ok ? await response.blob() : await response.json().catch(() => ({}));
  return { status: response.status, body };
}

function problem(result) {
  return (result.body && result.body.error) || ("HTTP " + result.status);
}

// The image of the next request: the captured camera frame if there is one, else the chosen file(s).
function addImages(form, input) {
  if (captured) {
    form.append("image", captured, "camera.jpg");
    captured = null;
    $("camera-status").textContent = "";
    return true;
  }
  for (const file of input.files) form.append("image", file, file.name);
  return input.files.length > 0;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  row.appendChild(td);
  return td;
}

function fixed(value) { return typeof value === "number" ? value.toFixed(3) : ""; }

async function refreshSubjects() {
  const result = await api("GET", "/v1/subjects");
  const rows = $("subjects-rows");
  faceUrls.forEach((url) => URL.revokeObjectURL(url));
  faceUrls = [];
  rows.replaceChildren();
  if (result.status !== 200) return;
  for (const subject of result.body.subjects) {
    const tr = document.createElement("tr");
    tr.className = "subject";
    const faceCell = cell(tr, "");
    const nameCell = cell(tr, subject.name);
    nameCell.className = "subject-name";
    cell(tr, subject.templates);
    cell(tr, subject.enrolled_at);
    const forget = document.createElement("button");
    forget.type = "button";
    forget.textContent = "Forget";
    forget.addEventListener("click", () => forgetSubject(subject.name));
    tr.appendChild(document.createElement("td")).appendChild(forget);
    rows.appendChild(tr);
    if (subject.face) {
      const face = await api("GET", subject.face, undefined, true);
      if (face.status === 200) {
        const img = document.createElement("img");
        const url = URL.createObjectURL(face.body);
        faceUrls.push(url);
        img.src = url;
        img.alt = "protected face (generated, not the photo)";
        img.className = "face";
        faceCell.appendChild(img);
      }
    }
  }
}

async function refreshAudit() {
  const result = await api("GET", "/v1/audit?limit=50");
  const rows = $("audit-rows");
  rows.replaceChildren();
  if (result.status !== 200) return;
  for (const row of result.body.rows) {
    const tr = document.createElement("tr");
    [row.time, row.action, row.subject, row.outcome, fixed(row.score), fixed(row.threshold), row.source, row.detail]
      .forEach((value) => cell(tr, value));
    rows.appendChild(tr);
  }
}

async function forgetSubject(name) {
  if (!window.confirm("Erase every template of this subject?\n\n" + name)) return;
  await api("DELETE", "/v1/subjects/" + encodeURIComponent(name));
  refreshSubjects();
  refreshAudit();
}

function showDecision(body) {
  $("check-error").textContent = "";
  $("decision").hidden = false;
  const verdict = $("decision-verdict");
  verdict.textContent = body.accepted ? "ACCEPTED" : "REJECTED";
  verdict.className = body.accepted ? "accepted" : "rejected";
  const who = body.name === null ? "no enrolled subject" : body.name;
  $("decision-detail").textContent = who + ": score " + fixed(body.score) +
    (body.accepted ? " ≥ " : " < ") + "threshold " + fixed(body.threshold) + " (" + body.kind + " templates)";
  const meter = $("decision-meter");
  meter.low = meter.high = body.threshold;   // below the threshold shows as a warning colour
  meter.optimum = 1;
  meter.value = body.score;
  const list = $("decision-candidates");
  list.replaceChildren();
  for (const candidate of body.candidates || []) {
    const li = document.createElement("li");
    li.textContent = candidate.name + ": " + fixed(candidate.score);
    list.appendChild(li);
  }
}

async function check(path, withName) {
  const form = new FormData();
  if (withName) form.append("name", $("check-name").value);
  $("decision").hidden = true;
  if (!addImages(form, $("check-file"))) {
    $("check-error").textContent = "Choose a photo or capture one with the camera.";
    return;
  }
  $("check-error").textContent = "Working…";
  const result = await api("POST", path, form);
  if (result.status === 200) showDecision(result.body);
  else $("check-error").textContent = problem(result);
  refreshAudit();
}

async function startCamera() {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
    $("camera-video").srcObject = stream;
    $("camera-video").hidden = false;
    $("camera-capture").disabled = false;
    $("camera-stop").disabled = false;
    $("camera-status").textContent = "Camera on.";
  } catch (error) {
    $("camera-status").textContent = "No camera: " + error.name + " (the page must be opened on localhost or over HTTPS).";
  }
}

function stopCamera() {
  const video = $("camera-video");
  if (video.srcObject) video.srcObject.getTracks().forEach((track) => track.stop());
  video.srcObject = null;
  video.hidden = true;
  $("camera-capture").disabled = true;
  $("camera-stop").disabled = true;
}

function capture() {
  const video = $("camera-video");
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext("2d").drawImage(video, 0, 0);
  canvas.toBlob((blob) => {
    captured = blob;
    $("camera-status").textContent = "Captured a " + canvas.width + "×" + canvas.height +
      " frame: the next enrol, verify or identify uses it.";
  }, "image/jpeg", 0.92);
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    try {
      const result = await api("GET", "/v1/subjects");
      if (result.status === 200) showConsole();
      else showLogin(problem(result));
    } catch (error) { /* showLogin already said why */ }
  });
  $("logout").addEventListener("click", () => { stopCamera(); $("store-info").textContent = ""; showLogin(""); });

  $("enrol-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = new FormData();
    form.append("name", $("enrol-name").value);
    if (!addImages(form, $("enrol-file"))) {
      $("enrol-result").textContent = "Choose a photo or capture one with the camera.";
      return;
    }
    $("enrol-result").textContent = "Working…";
    const result = await api("POST", "/v1/enrol", form);
    $("enrol-result").textContent = result.status === 201
      ? "Enrolled " + result.body.name + " (" + result.body.templates + " template(s))."
      : problem(result);
    refreshSubjects();
    refreshAudit();
  });

  $("check-form").addEventListener("submit", (event) => { event.preventDefault(); check("/v1/verify", true); });
  $("identify").addEventListener("click", () => check("/v1/identify", false));

  $("revoke-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const fingerprint = $("revoke-fingerprint").value.trim();
    if (!window.confirm("Revoke key " + fingerprint + "? Its templates will never match again.")) return;
    const form = new FormData();
    form.append("fingerprint", fingerprint);
    const result = await api("POST", "/v1/revoke", form);
    $("revoke-result").textContent = result.status === 200
      ? "Revoked " + result.body.fingerprint + ": " + result.body.retired + " template(s) retired." : problem(result);
    refreshInfo();
    refreshSubjects();
    refreshAudit();
  });

  $("subjects-refresh").addEventListener("click", refreshSubjects);
  $("audit-refresh").addEventListener("click", refreshAudit);
  $("camera-start").addEventListener("click", startCamera);
  $("camera-stop").addEventListener("click", stopCamera);
  $("camera-capture").addEventListener("click", capture);

  if (token()) {
    api("GET", "/v1/subjects").then((r) => r.status === 200 ? showConsole() : showLogin(problem(r)))
      .catch(() => {});
  } else {
    showLogin("");
  }
});
