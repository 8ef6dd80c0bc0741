// ray_slt web page: a tab per route of the server (from /healthz: translate, recognize, text2gloss, ...). For a
// model that reads signing: choose or record a clip, POST it to the tab's route with `?include_pose=true`, show the
// answer (a translation, or the ranked signs of a recognizer, optionally among candidate signs described in the
// page) and draw the extracted 77-point pose over the clip's frames. For a model that reads text (text -> gloss) or
// glosses (a producer): type a sentence, POST it as JSON, show the glosses, or animate the produced pose and offer
// it as a .pose file. Plain JS, no dependencies; relative URLs, so the page
// works under any prefix.
"use strict";

const $ = (id) => document.getElementById(id);
const PART_COLORS = [
  // [first point, last point + 1, colour] of the 77-point layout (ray_slt.features.layouts)
  [0, 9, "#f2c14e"], [9, 30, "#4ea8de"], [30, 51, "#f25f5c"], [51, 59, "#c77dff"], [59, 77, "#9ef01a"],
];
const MAX_RECORD_S = 8;

let clip = null; // {blob, name, isPose}
let pose = null; // the server's drawable pose
let animation = null;
let recorder = null;
let route = "translate"; // the chosen tab's route
let routes = {}; // route -> its model, as /healthz describes it
const VERB = { text: "Translate", labels: "Recognize", gloss: "Write glosses", pose: "Produce", score: "Score" };
const WRITES = { text: "a translation", gloss: "glosses", pose: "a signing pose (drawn below, and a .pose file)",
  score: "how likely a language model finds it (log-probability, perplexity)" };
const TEXT_INPUTS = ["text", "gloss"]; // routes whose model reads a sentence (or glosses), not a clip

function setState(state, message) {
  document.body.dataset.state = state;
  $("status").textContent = message || "";
}

function headers() {
  const token = $("token").value.trim();
  if (token) sessionStorage.setItem("ray_slt_token", token);
  return token ? { Authorization: "Bearer " + token } : {};
}

let limits = null;

function selectRoute(name) {
  route = name;
  const m = routes[name];
  for (const b of $("tabs").children) b.setAttribute("aria-selected", String(b.id === `tab-${name}`));
  const beams = m.settings.num_beams ? ` · beams ${m.settings.num_beams}` : "";
  const reads = TEXT_INPUTS.includes(m.inputs);
  $("service").textContent = `model ${m.model_id} at /${name} · ${m.kind}${m.stage ? " (" + m.stage + ")" : ""}` +
    `${beams} · batching ${m.batching.enabled ? "on" : "off"}` +
    (reads ? ` · ${m.inputs} up to ${limits.max_text_chars} characters`
      : ` · clips up to ${limits.max_video_s} s, ${limits.max_upload_mb} MB`);
  $("input-card").hidden = reads;
  $("text-card").hidden = !reads;
  $("viewer-card").hidden = true;
  $("send-text").textContent = VERB[m.predicts] || "Run";
  $("text-help").textContent = `The model of the tab chosen above reads ${m.inputs === "gloss" ? "glosses" : "text"} ` +
    `and writes ${WRITES[m.predicts] || "its answer"}.`;
  $("sentence").maxLength = limits.max_text_chars;
  // a producer set: one chain per sign language, chosen here
  const languages = Object.entries(m.languages || {});
  $("language-row").hidden = languages.length === 0;
  $("sign-language").replaceChildren(...languages.map(([code, l]) => {
    const o = document.createElement("option");
    o.value = code;
    // a set's chains say what they read; a bare multilingual model only its languages
    const chain = l.text2gloss === undefined ? "" : ` · ${l.text2gloss ? "text → glosses → pose" : "text → pose"}`;
    o.textContent = `${code}${chain}${l.shared ? " (shared model)" : ""}` +
      (l.spoken.length ? ` (from ${l.spoken.join(", ")})` : "");
    return o;
  }));
  $("translate").textContent = VERB[m.predicts] || "Run";
  $("candidates-row").hidden = !(m.predicts === "labels" && m.settings.zero_shot);
  $("result-card").hidden = true;
}

function candidates() {
  // "GLOSS: description" lines -> [{gloss, description}] (blank lines skipped)
  const lines = $("candidates").value.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.map((line) => {
    const at = line.indexOf(":");
    if (at < 1) throw new Error(`candidate line needs GLOSS: description: ${line}`);
    return { gloss: line.slice(0, at).trim(), description: line.slice(at + 1).trim() };
  });
}

async function loadService() {
  try {
    const r = await fetch("healthz");
    const info = await r.json();
    if (!r.ok) throw new Error(info.error || r.statusText);
    routes = Object.fromEntries(Object.entries(info.routes).filter(
      ([, m]) => ["pose", "video", ...TEXT_INPUTS].includes(m.inputs)));
    const names = Object.keys(routes);
    if (!names.length) throw new Error(`no route of this server has a page (routes: ${Object.keys(info.routes)})`);
    limits = info.limits;
    $("tabs").replaceChildren(...names.map((name) => {
      const b = document.createElement("button");
      b.type = "button";
      b.role = "tab";
      b.id = `tab-${name}`;
      b.textContent = `${VERB[routes[name].predicts] || "Run"} · /${name}`;
      b.addEventListener("click", () => selectRoute(name));
      return b;
    }));
    $("api-routes").replaceChildren(...Object.keys(info.routes).map((n) => {
      const c = document.createElement("code");
      c.textContent = `POST ${n} `;
      return c;
    }));
    const signing = names.filter((n) => !TEXT_INPUTS.includes(routes[n].inputs));
    selectRoute(names.includes("translate") ? "translate" : (signing[0] || names[0]));
    $("token-row").hidden = !info.auth;
    $("token").value = sessionStorage.getItem("ray_slt_token") || "";
  } catch (e) {
    $("service").textContent = "service unavailable: " + e.message;
  }
}

function useClip(blob, name) {
  clip = { blob, name, isPose: name.toLowerCase().endsWith(".pose") };
  $("clip-name").textContent = `${name} (${(blob.size / 1e6).toFixed(2)} MB)`;
  $("translate").disabled = false;
  setState("ready", "");
}

$("file").addEventListener("change", (ev) => {
  const f = ev.target.files[0];
  if (f) useClip(f, f.name);
});

$("record").addEventListener("click", async () => {
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    setState("error", "recording is not supported by this browser; choose a file instead");
    return;
  }
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const chunks = [];
    recorder = new MediaRecorder(stream, { mimeType: MediaRecorder.isTypeSupported("video/webm") ? "video/webm" : "" });
    recorder.ondataavailable = (e) => e.data.size && chunks.push(e.data);
    recorder.onstop = () => {
      stream.getTracks().forEach((t) => t.stop());
      const type = recorder.mimeType || "video/webm";
      useClip(new Blob(chunks, { type }), type.includes("mp4") ? "recording.mp4" : "recording.webm");
      $("record").hidden = false;
      $("stop").hidden = true;
    };
    recorder.start();
    $("record").hidden = true;
    $("stop").hidden = false;
    setState("recording", `recording (stops after ${MAX_RECORD_S} s)…`);
    setTimeout(() => recorder && recorder.state === "recording" && recorder.stop(), MAX_RECORD_S * 1000);
  } catch (e) {
    setState("error", "cannot record: " + e.message);
  }
});

$("stop").addEventListener("click", () => recorder && recorder.state === "recording" && recorder.stop());

$("translate").addEventListener("click", async () => {
  if (!clip) return;
  const form = new FormData();
  form.append("file", clip.blob, clip.name);
  $("translate").disabled = true;
  setState("working", `uploading and running /${route}…`);
  try {
    if (!$("candidates-row").hidden && $("candidates").value.trim()) {
      form.append("candidates", JSON.stringify(candidates()));
    }
    const r = await fetch(`${route}?include_pose=true`, { method: "POST", body: form, headers: headers() });
    const out = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(`${r.status}: ${out.error || r.statusText}`);
    showResult(out);
    setState("done", `answered in ${out.timings.total_s.toFixed(2)} s`);
  } catch (e) {
    setState("error", e.message);
  } finally {
    $("translate").disabled = false;
  }
});

$("send-text").addEventListener("click", async () => {
  const m = routes[route];
  const value = $("sentence").value.trim();
  if (!value) {
    $("text-status").textContent = "type a sentence first";
    return;
  }
  $("send-text").disabled = true;
  $("text-status").textContent = `running /${route}…`;
  document.body.dataset.state = "working";
  try {
    const r = await fetch(route, {
      method: "POST",
      body: JSON.stringify({ [m.inputs]: value, ...(m.languages ? { sign_language: $("sign-language").value } : {}) }),
      headers: { ...headers(), "Content-Type": "application/json" },
    });
    const out = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (!r.ok) throw new Error(`${r.status}: ${out.error || r.statusText}`);
    showResult(out);
    $("text-status").textContent = `answered in ${out.timings.total_s.toFixed(2)} s`;
    document.body.dataset.state = "done";
  } catch (e) {
    $("text-status").textContent = e.message;
    document.body.dataset.state = "error";
  } finally {
    $("send-text").disabled = false;
  }
});

function showResult(out) {
  window.lastResult = out;
  const ranked = Array.isArray(out.ranked);
  const produced = Array.isArray(out.frames); // a producer set also says which glosses it produced
  const glosses = !produced && typeof out.gloss === "string";
  const scored = typeof out.perplexity === "number"; // a language model's answer
  $("result-title").textContent = ranked ? "2 · Recognised signs" : glosses ? "2 · Glosses"
    : produced ? "2 · Produced signing" : scored ? "2 · Language model score" : "2 · Translation";
  $("download").hidden = !out.pose_b64;
  if (out.pose_b64) $("download").href = "data:application/octet-stream;base64," + out.pose_b64;
  $("translation").hidden = ranked;
  $("ranking").hidden = !ranked;
  if (ranked) {
    const top = Math.max(...out.scores.map(Math.abs), 1e-9);
    $("ranking").replaceChildren(...out.ranked.map((gloss, k) => {
      const li = document.createElement("li");
      li.textContent = `${gloss} (${out.scores[k].toFixed(3)})`;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, 120 * Math.abs(out.scores[k]) / top)}px`;
      li.appendChild(bar);
      return li;
    }));
  } else {
    $("translation").textContent = produced ? `${out.num_frames} frames at ${out.fps.toFixed(1)} fps` +
        (typeof out.gloss === "string" ? ` · ${out.sign_language} glosses: ${out.gloss || "(none)"}` : "")
      : glosses ? (out.gloss || "(no glosses)")
      : scored ? `log p = ${out.logprob.toFixed(2)} over ${out.tokens} tokens · perplexity ${out.perplexity.toFixed(2)}`
      : (out.text || "(empty translation)");
  }
  const rows = [
    ["model", out.model_id],
    ["input", out.num_frames == null ? out.input_kind : `${out.input_kind}, ${out.num_frames} frames (${out.pose_estimator})`],
    ...(out.batch_size == null ? [] : [["batch", `run in a batch of ${out.batch_size}`]]),
    ...Object.entries(out.timings).map(([k, v]) => [k.replace(/_s$/, " (s)"), v.toFixed(3)]),
  ];
  $("timings").replaceChildren(...rows.map(([k, v]) => {
    const tr = document.createElement("tr");
    for (const text of [k, v]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    return tr;
  }));
  $("result-card").hidden = false;
  $("viewer-card").hidden = !out.pose;
  if (out.pose) showPose(out.pose);
}

function showPose(p) {
  pose = p;
  const canvas = $("overlay");
  const video = $("video");
  const stage = $("stage");
  canvas.width = p.width;
  canvas.height = p.height;
  canvas.dataset.drawn = "0";
  $("viewer-card").hidden = false;
  if (animation) cancelAnimationFrame(animation);
  if (video.src) URL.revokeObjectURL(video.src);
  $("viewer-title").textContent = p.produced ? "3 · Produced pose" : "3 · Extracted pose";
  $("viewer-help").textContent = p.produced
    ? "Prompt2Sign's 50 joints (body, left hand, right hand) as the model produced them, seen from the front."
    : "The 77 keypoints the model reads (body, hands, mouth, face), drawn over the frames.";
  if (p.produced || !clip || clip.isPose) {
    stage.classList.add("pose-only");
    video.removeAttribute("src");
    const started = performance.now();
    const fps = p.fps || 25;
    const span = p.frames[p.frames.length - 1] + 1;
    const tick = () => {
      const frame = Math.floor(((performance.now() - started) / 1000) * fps) % span;
      draw(frame, true);
      animation = requestAnimationFrame(tick);
    };
    tick();
  } else {
    stage.classList.remove("pose-only");
    video.src = URL.createObjectURL(clip.blob);
    video.play().catch(() => {});
    const tick = () => {
      draw(Math.floor(video.currentTime * (p.fps || 25)), false);
      animation = requestAnimationFrame(tick);
    };
    tick();
  }
}

function keptFrameAt(frame) {
  // the last kept frame at or before `frame` (binary search over the sorted source frame numbers)
  const f = pose.frames;
  let lo = 0, hi = f.length - 1;
  if (frame <= f[0]) return 0;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f[mid] <= frame) lo = mid; else hi = mid - 1;
  }
  return lo;
}

function draw(frame, clear) {
  const canvas = $("overlay");
  const ctx = canvas.getContext("2d");
  const i = keptFrameAt(frame);
  const pts = pose.points[i];
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (clear) {
    ctx.fillStyle = "#111";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
  }
  const scale = Math.max(canvas.width, canvas.height) / 640;
  const colour = (k) => (pose.parts || PART_COLORS).find(([a, b]) => k >= a && k < b)[2];
  ctx.lineWidth = 2 * scale;
  for (const [a, b] of pose.edges) {
    const [xa, ya, xb, yb] = [pts[2 * a], pts[2 * a + 1], pts[2 * b], pts[2 * b + 1]];
    if (xa === null || xb === null) continue;
    ctx.strokeStyle = colour(a);
    ctx.beginPath();
    ctx.moveTo(xa, ya);
    ctx.lineTo(xb, yb);
    ctx.stroke();
  }
  for (let k = 0; k < pts.length / 2; k++) {
    if (pts[2 * k] === null) continue;
    ctx.fillStyle = colour(k);
    ctx.beginPath();
    ctx.arc(pts[2 * k], pts[2 * k + 1], 2.5 * scale, 0, 2 * Math.PI);
    ctx.fill();
  }
  canvas.dataset.drawn = String(Number(canvas.dataset.drawn || 0) + 1);
  $("frame-info").textContent = `frame ${pose.frames[i]} · ${pose.points.length} frames ` +
    (pose.produced ? "produced" : "extracted");
}

$("play").addEventListener("click", () => {
  const video = $("video");
  if (clip && !clip.isPose) (video.paused ? video.play() : video.pause());
});

loadService();
