// PhysGM demo page: plain JS against the HTTP API (/v1/predict, /v1/gaussians, /v1/simulate).
"use strict";

const MATERIALS = ["jelly", "metal", "plasticine", "sand", "snow"];
const $ = (id) => document.getElementById(id);
const state = { files: [], cameras: null, plyUrl: null, videoUrl: null, compareUrls: {} };
const COMPARE = ["pretrained", "dpo"];   // model ids served side by side (GET /v1/models)

function setStatus(text) { $("status").textContent = text; }
function showError(text) {
  $("error").textContent = text || "";
  $("error").hidden = !text;
}

function headers() {
  const key = $("api-key").value.trim();
  localStorage.setItem("physgm-api-key", key);
  return key ? { "X-API-Key": key } : {};
}

function formData(extra) {
  const fd = new FormData();
  const ply = extra && extra.gaussians;
  if (ply) {
    fd.append("gaussians", ply, ply.name);
  } else {
    for (const f of state.files) fd.append("images", f, f.name);
    const cams = $("cameras").value.trim();
    if (cams) fd.append("cameras", cams);
  }
  for (const [k, v] of Object.entries(extra || {})) {
    if (k !== "gaussians" && v !== "" && v != null) fd.append(k, v);
  }
  return fd;
}

async function post(path, extra) {
  const res = await fetch(path, { method: "POST", body: formData(extra), headers: headers() });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail; } catch (e) { /* not JSON */ }
    throw new Error(`${res.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return res;
}

function setFiles(files, cameras) {
  state.files = files.slice(0, 4);
  $("cameras").value = cameras ? JSON.stringify(cameras) : "";
  const thumbs = $("thumbs");
  thumbs.replaceChildren();
  for (const f of state.files) {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(f);
    img.alt = f.name;
    thumbs.appendChild(img);
  }
  const ok = state.files.length > 0;
  $("predict").disabled = !ok;
  $("simulate").disabled = !ok && !$("ply-file").files.length;
  $("compare-run").disabled = !ok;
  $("ply-link").classList.add("disabled");
  $("result").hidden = true;
  showError(files.length > 4 ? "only the first 4 views are used" : "");
}

async function loadSample(sample) {
  setStatus(`loading sample ${sample.title}…`);
  const files = [];
  for (const path of sample.files) {
    const blob = await (await fetch(`/static/${path}`)).blob();
    files.push(new File([blob], path.split("/").pop(), { type: blob.type || "image/png" }));
  }
  setFiles(files, sample.cameras);
  setStatus(`sample ${sample.title} loaded`);
}

function fmt(x) {
  const a = Math.abs(x);
  return a !== 0 && (a >= 1e4 || a < 1e-2) ? x.toExponential(2) : x.toPrecision(3);
}

function fillProbs(el, probs) {
  el.replaceChildren();
  for (const [name, prob] of Object.entries(probs)) {
    const row = document.createElement("div");
    row.className = "bar";
    row.dataset.material = name;
    row.innerHTML = `<span>${name}</span><span class="fill" style="width:${(prob * 20).toFixed(2)}rem"></span><span>${(prob * 100).toFixed(1)} %</span>`;
    el.appendChild(row);
  }
}

function fillParams(body, params, withLog) {
  body.replaceChildren();
  for (const [name, s] of Object.entries(params)) {
    const tr = document.createElement("tr");
    const log = s.log10_mean != null ? `${s.log10_mean.toFixed(2)} ± ${s.log10_std.toFixed(2)}` : "";
    tr.innerHTML = `<td>${name}</td><td>${fmt(s.mean)}</td><td>${fmt(s.std)}</td>` +
      (withLog ? `<td>${log}</td>` : "");
    body.appendChild(tr);
  }
}

function showPrediction(p) {
  $("material-name").textContent = p.material.name;
  fillProbs($("probs"), p.material.probs);
  fillParams($("params").querySelector("tbody"), p.params, true);
  $("result").hidden = false;
}

function simInfo(res) {
  const params = JSON.parse(res.headers.get("X-Sim-Params") || "{}");
  return `status ${res.headers.get("X-Sim-Status")} · ${res.headers.get("X-Sim-Particles")} particles · ` +
    Object.entries(params).map(([k, v]) => `${k}=${typeof v === "number" ? fmt(v) : v}`).join(", ");
}

async function compare() {
  showError("");
  $("compare-run").disabled = true;
  try {
    const t0 = performance.now();
    setStatus("w/o vs w/ DPO: predicting with both models…");
    const preds = await Promise.all(COMPARE.map(async (id) => (await post("/v1/predict", { model: id })).json()));
    preds.forEach((p, i) => {
      const col = $(`compare-${COMPARE[i]}`);
      col.querySelector(".version").textContent = p.model_version;
      col.querySelector(".material").textContent = p.material.name;
      fillProbs(col.querySelector(".probs"), p.material.probs);
      fillParams(col.querySelector(".params tbody"), p.params, false);
    });
    setStatus("w/o vs w/ DPO: simulating both…");
    for (const id of COMPARE) {          // one after the other: the simulation replica runs one at a time
      const res = await post("/v1/simulate", { model: id });
      const col = $(`compare-${id}`);
      if (state.compareUrls[id]) URL.revokeObjectURL(state.compareUrls[id]);
      state.compareUrls[id] = URL.createObjectURL(await res.blob());
      const video = col.querySelector(".video");
      video.src = state.compareUrls[id];
      video.hidden = false;
      video.play().catch(() => {});
      col.querySelector(".sim-info").textContent = simInfo(res);
    }
    setStatus(`compared in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    showError(e.message);
    setStatus("");
  } finally {
    $("compare-run").disabled = state.files.length === 0;
  }
}

async function loadModels() {
  try {
    const res = await fetch("/v1/models", { headers: headers() });
    if (!res.ok) return;
    const served = (await res.json()).models;
    $("compare").hidden = !COMPARE.every((id) => id in served);
  } catch (e) { /* no comparison offered */ }
}

async function predict() {
  showError("");
  setStatus("predicting…");
  try {
    const t0 = performance.now();
    const p = await (await post("/v1/predict")).json();
    showPrediction(p);
    $("model-version").textContent = p.model_version;
    setStatus(`predicted in ${((performance.now() - t0) / 1000).toFixed(2)} s; fetching Gaussians…`);
    const ply = await (await post("/v1/gaussians", {})).blob();
    if (state.plyUrl) URL.revokeObjectURL(state.plyUrl);
    state.plyUrl = URL.createObjectURL(ply);
    $("ply-link").href = state.plyUrl;
    $("ply-link").classList.remove("disabled");
    setStatus(`predicted; Gaussians ready (${(ply.size / 1024).toFixed(0)} KiB PLY)`);
  } catch (e) {
    showError(e.message);
    setStatus("");
  }
}

async function simulate() {
  showError("");
  setStatus("simulating (model → Gaussians → MPM → render)…");
  $("simulate").disabled = true;
  try {
    const t0 = performance.now();
    const ply = $("ply-file").files[0];
    const res = await post("/v1/simulate", {
      material: $("override-material").value, E: $("override-E").value, gaussians: ply,
    });
    const blob = await res.blob();
    if (state.videoUrl) URL.revokeObjectURL(state.videoUrl);
    state.videoUrl = URL.createObjectURL(blob);
    const video = $("video");
    video.src = state.videoUrl;
    video.hidden = false;
    video.play().catch(() => {});
    const look = res.headers.get("X-Sim-Appearance") === "pixels"
      ? " · shown with the input pixels' colours (the model's Gaussians are transparent)" : "";
    $("sim-info").textContent = simInfo(res) + look;
    setStatus(`video in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (e) {
    showError(e.message);
    setStatus("");
  } finally {
    $("simulate").disabled = state.files.length === 0 && !$("ply-file").files.length;
  }
}

async function init() {
  $("api-key").value = localStorage.getItem("physgm-api-key") || "";
  for (const m of MATERIALS) {
    const o = document.createElement("option");
    o.value = m;
    o.textContent = m;
    $("override-material").appendChild(o);
  }
  $("files").addEventListener("change", (e) => setFiles([...e.target.files], null));
  $("predict").addEventListener("click", predict);
  $("simulate").addEventListener("click", simulate);
  $("compare-run").addEventListener("click", compare);
  $("ply-file").addEventListener("change", () => {
    $("simulate").disabled = state.files.length === 0 && !$("ply-file").files.length;
  });
  $("api-key").addEventListener("change", loadModels);
  try {
    const samples = await (await fetch("/static/samples/samples.json")).json();
    for (const s of samples) {
      const b = document.createElement("button");
      b.id = `sample-${s.name}`;
      b.textContent = `sample: ${s.title}`;
      b.addEventListener("click", () => loadSample(s));
      $("samples").appendChild(b);
    }
  } catch (e) { /* no samples bundled */ }
  await loadModels();
  try {
    const h = await (await fetch("/healthz")).json();
    $("model-version").textContent = h.model_version;
  } catch (e) {
    $("model-version").textContent = "unavailable";
  }
}

init();
