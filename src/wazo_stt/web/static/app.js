// The page at /: plain JavaScript, no build step, no CDN. It speaks only the public API: the telephony flow
// (POST with user_uuid/message_id answers at once with a job id), GET /v1/audio/transcriptions/{id} for the queue
// position and progress, then /result in every format.
"use strict";

const TEXT = {
  en: {
    drop: "Drop an audio file here, or click to pick one", record: "Record from the microphone",
    stop: "Stop recording", model: "Model", format: "Format", transcribe: "Transcribe", download: "Download",
    clickWord: "Click a word to play the recording from there.", queue: "Queue", apiDocs: "API docs",
    keyNeeded: "This server needs an API key.", keyKept: "Kept in this tab only (sessionStorage).", ok: "OK",
    uploading: "Sending the audio…", queued: (n) => `Queued: position ${n}`, processing: "Transcribing…",
    processingPct: (p) => `Transcribing… ${p} %`, done: (d) => `Done: ${Number(d).toFixed(1)} s of audio`, failed: "Failed",
    queueState: (q) => `${q.queue_length} waiting · ${q.processing ? "one transcribing" : "idle"} · at most ${q.max_queue_size}`,
    healthy: "ready", loading: "loading the model…", unavailable: "unavailable", recording: "recording.webm",
    raw: (f) => `Output (${f})`, micRefused: "The microphone is not available here", noWords: "(no speech)",
  },
  fr: {
    drop: "Déposez un fichier audio ici, ou cliquez pour en choisir un", record: "Enregistrer au micro",
    stop: "Arrêter l'enregistrement", model: "Modèle", format: "Format", transcribe: "Transcrire",
    download: "Télécharger", clickWord: "Cliquez sur un mot pour écouter l'enregistrement à partir de là.",
    queue: "File d'attente", apiDocs: "Documentation de l'API", keyNeeded: "Ce serveur demande une clé d'API.",
    keyKept: "Gardée dans cet onglet seulement (sessionStorage).", ok: "OK", uploading: "Envoi de l'audio…",
    queued: (n) => `En attente : position ${n}`, processing: "Transcription…",
    processingPct: (p) => `Transcription… ${p} %`, done: (d) => `Terminé : ${Number(d).toFixed(1).replace(".", ",")} s d'audio`, failed: "Échec",
    queueState: (q) => `${q.queue_length} en attente · ${q.processing ? "une transcription en cours" : "au repos"} · ${q.max_queue_size} au plus`,
    healthy: "prêt", loading: "chargement du modèle…", unavailable: "indisponible", recording: "enregistrement.webm",
    raw: (f) => `Sortie (${f})`, micRefused: "Le micro n'est pas disponible ici", noWords: "(pas de parole)",
  },
};
const LANG = (navigator.language || "en").toLowerCase().startsWith("fr") ? "fr" : "en";
const T = TEXT[LANG];
const KEY = "wazo-stt-api-key";
const BASE = "/v1/audio/transcriptions";
const $ = (id) => document.getElementById(id);

let audioFile = null; // the File or recorded Blob to send
let jobId = null;

function translate() {
  document.documentElement.lang = LANG;
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = T[el.dataset.i18n];
}

// --- API access: a Bearer key from sessionStorage; a 401 asks for one and retries -------------------------------
function askKey() {
  return new Promise((resolve) => {
    const dialog = $("key-dialog");
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(KEY, $("key").value.trim());
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

async function api(path, options = {}) {
  for (;;) {
    const headers = new Headers(options.headers || {});
    const key = sessionStorage.getItem(KEY);
    if (key) headers.set("Authorization", `Bearer ${key}`);
    const response = await fetch(path, { ...options, headers });
    if (response.status !== 401) return response;
    await askKey();
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error?.message || body.detail || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// --- server state: health, models, queue ------------------------------------------------------------------------
async function refreshHealth() {
  const badge = $("health");
  try {
    const response = await fetch("/health");
    const body = await response.json();
    badge.textContent = `${body.model} · ${T[body.status] || body.status}`;
    badge.className = `badge ${response.ok ? "ok" : "bad"}`;
    $("fallback").hidden = !body.fallback;
    $("fallback").textContent = body.fallback || "";
    if (response.ok && !$("model").options.length) await loadModels();
    return response.ok;
  } catch {
    badge.textContent = T.unavailable;
    badge.className = "badge bad";
    return false;
  }
}

async function loadModels() {
  const response = await api("/v1/models");
  if (!response.ok) return;
  const select = $("model");
  select.replaceChildren();
  for (const model of (await response.json()).data) {
    if (model.id === "whisper-1") continue; // the alias of the default: the first entry already is it
    select.add(new Option(model.id, model.id));
  }
}

async function refreshQueue() {
  const response = await api(`${BASE}/status`);
  if (response.ok) $("queue-state").textContent = T.queueState(await response.json());
}

// --- choosing the audio: drop, pick or record -------------------------------------------------------------------
function useAudio(blob, name) {
  audioFile = blob;
  $("file-name").textContent = name;
  $("go").disabled = false;
}

function setUpInput() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => e.target.files[0] && useAudio(e.target.files[0], e.target.files[0].name));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const file = e.dataTransfer.files[0];
    if (file) useAudio(file, file.name);
  });

  let recorder = null;
  $("record").addEventListener("click", async () => {
    const button = $("record");
    if (recorder) { recorder.stop(); return; }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const parts = [];
      recorder = new MediaRecorder(stream);
      recorder.ondataavailable = (e) => parts.push(e.data);
      recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        const blob = new Blob(parts, { type: recorder.mimeType || "audio/webm" });
        useAudio(new File([blob], T.recording, { type: blob.type }), T.recording);
        recorder = null;
        button.textContent = T.record;
        button.classList.remove("recording");
      };
      recorder.start();
      button.textContent = T.stop;
      button.classList.add("recording");
    } catch (err) {
      showState(`${T.micRefused}: ${err.message}`, true);
    }
  });
}

// --- a job: submit, follow, show --------------------------------------------------------------------------------
function showState(text, isError = false) {
  $("job").hidden = false;
  $("job-state").textContent = text;
  $("job-state").className = isError ? "error" : "";
}

function messageId() {
  // crypto.randomUUID needs a secure context; a page opened at http://<LAN address> is not one.
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(36).slice(2)}`;
}

async function transcribe() {
  $("go").disabled = true;
  $("result").hidden = true;
  const bar = $("progress");
  bar.removeAttribute("value"); // indeterminate while uploading
  showState(T.uploading);
  const form = new FormData();
  form.append("file", audioFile, audioFile.name || "audio");
  if ($("model").value) form.append("model", $("model").value);
  form.append("response_format", "verbose_json");
  form.append("timestamp_granularities[]", "word");
  form.append("timestamp_granularities[]", "segment");
  form.append("user_uuid", "web-page");
  form.append("message_id", messageId());
  try {
    const response = await api(BASE, { method: "POST", body: form });
    if (!response.ok) throw new Error(await errorMessage(response));
    jobId = (await response.json()).job_id;
    await follow(jobId);
  } catch (err) {
    showState(`${T.failed}: ${err.message}`, true);
  } finally {
    $("go").disabled = !audioFile;
  }
}

async function follow(id) {
  const bar = $("progress");
  for (;;) {
    const response = await api(`${BASE}/${id}`);
    if (!response.ok) throw new Error(await errorMessage(response));
    const job = await response.json();
    if (job.status === "queued") {
      bar.value = 0;
      showState(T.queued(job.queue_position));
    } else if (job.status === "processing") {
      if (job.progress == null) { bar.removeAttribute("value"); showState(T.processing); }
      else { bar.value = job.progress; showState(T.processingPct(Math.round(job.progress * 100))); }
    } else if (job.status === "failed") {
      throw new Error(job.error || T.failed);
    } else {
      bar.value = 1;
      showState(T.done(job.duration));
      await showResult(id);
      return;
    }
    refreshQueue();
    await new Promise((r) => setTimeout(r, 400));
  }
}

async function result(id, format) {
  const response = await api(`${BASE}/${id}/result?response_format=${format}`);
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

function clock(seconds) {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds - m * 60).toFixed(1).padStart(4, "0")}`;
}

async function showResult(id) {
  const verbose = await (await result(id, "verbose_json")).json();
  const audio = $("audio");
  if (audio.src) URL.revokeObjectURL(audio.src);
  audio.src = URL.createObjectURL(audioFile);
  const box = $("transcript");
  box.replaceChildren();
  box.lang = verbose.language || "";
  const words = verbose.words || [];
  for (const segment of verbose.segments || []) {
    const line = document.createElement("span");
    line.className = "seg";
    const time = document.createElement("span");
    time.className = "t";
    time.textContent = clock(segment.start);
    line.append(time);
    const inside = words.filter((w) => w.start >= segment.start - 0.01 && w.start < segment.end + 0.01);
    if (!inside.length) line.append(segment.text);
    for (const word of inside) {
      const span = document.createElement("span");
      span.className = "w";
      span.textContent = word.word.trim();
      span.dataset.start = word.start;
      span.dataset.end = word.end;
      span.title = `${clock(word.start)} – ${clock(word.end)}`;
      line.append(span, " ");
    }
    box.append(line);
  }
  if (!box.childNodes.length) box.textContent = verbose.text || T.noWords;
  const format = $("format").value;
  $("raw-title").textContent = T.raw(format);
  $("raw").textContent = format === "verbose_json" ? JSON.stringify(verbose, null, 2)
    : format === "json" ? JSON.stringify(await (await result(id, format)).json(), null, 2)
    : await (await result(id, format)).text();
  $("result").hidden = false;
}

function setUpResult() {
  const audio = $("audio");
  $("transcript").addEventListener("click", (e) => {
    const word = e.target.closest(".w");
    if (!word) return;
    audio.currentTime = Number(word.dataset.start);
    audio.play().catch(() => {}); // autoplay rules may refuse: the position moved anyway
  });
  audio.addEventListener("timeupdate", () => {
    const t = audio.currentTime;
    for (const w of document.querySelectorAll("#transcript .w")) {
      w.classList.toggle("now", t >= Number(w.dataset.start) && t < Number(w.dataset.end));
    }
  });
  for (const button of document.querySelectorAll(".download")) {
    button.addEventListener("click", async () => {
      const format = button.dataset.format;
      const blob = await (await result(jobId, format)).blob();
      const stem = (audioFile.name || "audio").replace(/\.[^.]+$/, "");
      const link = document.createElement("a");
      link.href = URL.createObjectURL(blob);
      link.download = `${stem}.${format === "verbose_json" ? "json" : format}`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
    });
  }
}

async function start() {
  translate();
  setUpInput();
  setUpResult();
  $("go").addEventListener("click", transcribe);
  // Health until the model is loaded, then rarely; the queue every few seconds.
  const poll = async () => setTimeout(poll, (await refreshHealth()) ? 15000 : 2000);
  await poll();
  refreshQueue();
  setInterval(refreshQueue, 3000);
}

start();
