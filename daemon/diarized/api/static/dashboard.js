// diarized dashboard. Served by the package (no CDN); the pages work without it, it makes them live.
// Every piece of text from the server is set with textContent, never parsed as HTML.
"use strict";

const COLOURS = ["#1a5fb4", "#c64600", "#26a269", "#9141ac", "#986a44", "#e01b24", "#2ec27e", "#5e5c64"];

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children || []) node.appendChild(child);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

function csrf() {
  const field = document.querySelector("input[name=csrf]");
  return field ? field.value : "";
}

async function getJSON(url) {
  const answer = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (answer.status === 401 || answer.redirected) { window.location = "/ui/login"; return null; }
  return answer.json();
}

// -- overview ---------------------------------------------------------------------------------
function setShare(bar, share) {
  bar.style.width = Math.min(100, Math.max(0, share * 100)).toFixed(1) + "%";
  bar.classList.toggle("high", share > 0.85);
}

function jobHref(id) {
  return "/ui/jobs/" + encodeURIComponent(id);
}

function jobLink(job) {
  return el("td", {"data-label": "file", "class": "file"}, [el("a", {href: jobHref(job.id), text: job.file})]);
}

function cell(label, text, extra) {
  return el("td", Object.assign({"data-label": label, text: text}, extra || {}));
}

function queueRow(job) {
  const bar = el("progress", {"class": "job-progress", max: "1", value: String(job.progress)});
  return el("tr", {"data-job": job.id}, [
    jobLink(job), cell("priority", job.priority), cell("state", job.state, {"class": "state-" + job.state}),
    cell("stage", job.stage || ""),
    el("td", {"data-label": "progress"}, [bar, el("span", {"class": "pct", text: " " + Math.floor(job.progress * 100) + "%"})]),
    cell("ETA", job.eta_text)]);
}

function finishedRow(job) {
  const outcome = el("td", {"data-label": "outcome"}, [el("span", {"class": "state-" + job.state, text: job.outcome_text})]);
  if (job.hint && (job.state === "failed" || job.state === "cancelled")) {
    outcome.appendChild(el("span", {"class": "row-hint", text: job.hint}));
  }
  return el("tr", {"data-job": job.id}, [
    el("td", {"data-label": "job"}, [el("a", {href: jobHref(job.id), text: job.short_id, "class": "mono"})]),
    jobLink(job), outcome, cell("speakers", job.speakers_text), cell("language", job.language),
    cell("audio", job.audio_text), cell("RTF", job.rtf_text), cell("ended", job.ended_text)]);
}

function fillRows(tbody, rows, empty, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {"class": "empty"}, [
    el("td", {colspan: String(columns), text: empty})])]));
}

function drawChart(chart, series) {
  // viewBox 1000 x 200: the last hour left to right, 0 at y = 185, the highest value at y = 20;
  // one colour per job, named in the legend below and at the end of its memory line
  chart.replaceChildren();
  const legend = document.getElementById("chart-legend");
  const now = Date.now() / 1000, start = now - 3600;
  const maxMem = Math.max(1, ...series.flatMap(line => line.points.map(p => p[1] / 1024)));
  const maxCpu = Math.max(100, ...series.flatMap(line => line.points.map(p => p[2])));
  const x = t => Math.max(0, (t - start) / 3600 * 1000).toFixed(1);
  const y = share => (185 - share * 165).toFixed(1);
  const entries = [];
  series.forEach((line, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const mem = line.points.map(p => x(p[0]) + "," + y(p[1] / 1024 / maxMem)).join(" ");
    const cpu = line.points.map(p => x(p[0]) + "," + y(p[2] / maxCpu)).join(" ");
    const memLine = svg("polyline", {points: mem, "class": "mem", stroke: colour, "data-job": line.job});
    const title = svg("title", {});
    title.textContent = line.label;
    memLine.appendChild(title);
    chart.appendChild(memLine);
    chart.appendChild(svg("polyline", {points: cpu, "class": "cpu", stroke: colour}));
    const swatch = el("span", {"class": "swatch"});
    swatch.style.background = colour;
    entries.push(el("li", {"data-job": line.job}, [swatch, el("a", {href: jobHref(line.job), text: line.label})]));
  });
  if (legend) legend.replaceChildren(...entries);
  const labels = [[6, 14, series.length ? `top: ${maxMem.toFixed(1)} GiB · ${maxCpu.toFixed(0)} % CPU`
                                          : "no worker ran in the last hour", "start"],
                  [6, 198, "1 hour ago", "start"], [994, 198, "now", "end"]];
  for (const [lx, ly, text, anchor] of labels) {
    const label = svg("text", {x: String(lx), y: String(ly), "font-size": "12", "text-anchor": anchor});
    label.textContent = text;
    chart.appendChild(label);
  }
}

async function refreshOverview() {
  const data = await getJSON("/ui/overview.json");
  if (!data) return;
  const state = document.getElementById("daemon-state");
  state.textContent = data.daemon.paused ? "PAUSED" : (data.daemon.up ? "up" : "DOWN");
  state.className = data.daemon.up ? "ok" : "bad";
  document.getElementById("workers").textContent = data.daemon.workers_busy + "/" + data.daemon.workers_total;
  document.getElementById("memory").textContent =
    data.daemon.memory_used_gb.toFixed(1) + " / " + data.daemon.memory_budget_gb.toFixed(1) + " GiB";
  setShare(document.getElementById("memory-bar"), data.memory_share);
  document.getElementById("queued-count").textContent = String(data.waiting);
  fillRows(document.getElementById("queue-rows"), data.running.concat(data.queued).map(queueRow), "Nothing queued.", 6);
  fillRows(document.getElementById("finished-rows"), data.finished.map(finishedRow), "No finished jobs yet.", 8);
  drawChart(document.getElementById("chart"), data.samples);
  settleUploadMessage(data.finished);
}

// The upload message names its job; once that job has finished it is in the list below, so it goes.
let uploadedJob = null;

function settleUploadMessage(finished) {
  if (uploadedJob && finished.some(job => job.id === uploadedJob)) {
    uploadedJob = null;
    document.getElementById("upload-message").replaceChildren();
  }
}

function uploadMessage(message, body) {
  const parts = [el("a", {href: jobHref(body.id), text: body.file}), document.createTextNode(" is " + body.state)];
  if (body.duplicate_of) {
    parts.push(document.createTextNode(": the same recording as "),
               el("a", {href: jobHref(body.duplicate_of), text: "job " + body.duplicate_of}),
               document.createTextNode(", whose transcript it shares"));
  }
  message.replaceChildren(...parts);
  uploadedJob = body.duplicate_of ? null : body.id;
}

function upload(form) {
  const message = document.getElementById("upload-message");
  const progress = document.getElementById("upload-progress");
  const request = new XMLHttpRequest();
  request.open("POST", form.action);
  request.setRequestHeader("X-CSRF-Token", csrf());
  request.setRequestHeader("Accept", "application/json");
  request.upload.onprogress = e => { if (e.lengthComputable) progress.value = e.loaded / e.total; };
  request.onload = () => {
    progress.hidden = true;
    let body = {};
    try { body = JSON.parse(request.responseText); } catch (e) { body = {}; }
    if (request.status === 202) {
      message.className = "ok";
      uploadMessage(message, body);
      form.reset();
      refreshOverview();
    } else {
      message.className = "error";
      message.textContent = (body.error && body.error.message) || `upload failed (HTTP ${request.status})`;
    }
  };
  request.onerror = () => { message.className = "error"; message.textContent = "the upload was interrupted"; };
  progress.hidden = false;
  message.textContent = "";
  request.send(new FormData(form));
}

function startOverview() {
  setShare(document.getElementById("memory-bar"), parseFloat(document.getElementById("memory-bar").dataset.share));
  const form = document.getElementById("upload-form");
  if (form) {
    form.addEventListener("submit", e => { e.preventDefault(); upload(form); });
    const drop = document.getElementById("drop"), input = document.getElementById("file");
    drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", e => {
      e.preventDefault(); drop.classList.remove("over");
      if (e.dataTransfer.files.length) { input.files = e.dataTransfer.files; }
    });
  }
  refreshOverview();
  setInterval(refreshOverview, 2000);
}

// -- one job ------------------------------------------------------------------------------------
function startJob() {
  const id = document.body.dataset.job;
  const live = ["incoming", "queued", "running"];
  if (!live.includes(document.body.dataset.state)) return;
  const timer = setInterval(async () => {
    const data = await getJSON("/ui/jobs/" + encodeURIComponent(id) + ".json");
    if (!data) return;
    document.getElementById("job-state").textContent = data.state;
    document.getElementById("job-stage").textContent = data.stage || "-";
    document.getElementById("job-progress").value = data.progress;
    document.getElementById("job-pct").textContent = Math.floor(data.progress * 100) + "%";
    if (!live.includes(data.state)) { clearInterval(timer); window.location.reload(); }
  }, 2000);
}

// -- correcting the transcript --------------------------------------------------------------------
async function sendEdits(edits) {
  const message = document.getElementById("edit-message");
  const answer = await fetch("/ui/jobs/" + encodeURIComponent(document.body.dataset.job) + "/edit", {
    method: "POST", credentials: "same-origin",
    headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify({version: parseInt(document.body.dataset.version, 10), edits: edits})});
  let body = {};
  try { body = await answer.json(); } catch (e) { body = {}; }
  if (answer.ok) {
    sessionStorage.setItem("edit-done", body.done.join("; "));
    window.location.reload();
    return true;
  }
  message.className = "error";
  message.textContent = (body.error && body.error.message) || `the edit was not saved (HTTP ${answer.status})`;
  return false;
}

function openEditor(para, player) {
  if (para.querySelector("textarea")) return;
  const text = para.querySelector(".text");
  const editor = el("textarea", {"class": "editor", rows: "3", "aria-label": "the words of this paragraph"});
  editor.value = text.textContent.trim();
  text.hidden = true;
  para.insertBefore(editor, text.nextSibling);
  editor.focus();
  const close = () => { editor.remove(); text.hidden = false; para.focus(); };
  const save = async () => {
    if (editor.value.trim() === text.textContent.trim()) return true;
    return sendEdits([{op: "text", paragraph: parseInt(para.dataset.index, 10), text: editor.value}]);
  };
  const split = () => {  // at the caret: the words before it stay, the rest become a new paragraph
    const index = parseInt(para.dataset.index, 10);
    const at = editor.value.slice(0, editor.selectionStart).split(/\s+/).filter(Boolean).length;
    const edits = editor.value.trim() === text.textContent.trim() ? [] : [{op: "text", paragraph: index, text: editor.value}];
    return sendEdits(edits.concat([{op: "split", paragraph: index, word: at}]));
  };
  editor.addEventListener("keydown", async e => {
    if (e.key === "Enter" && e.ctrlKey) { e.preventDefault(); split(); }
    else if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); if (await save()) close(); }
    else if (e.key === "Escape") { e.preventDefault(); close(); }
    else if (e.key === "Tab" && !e.shiftKey) {
      e.preventDefault();
      if (editor.value.trim() !== text.textContent.trim()) { sessionStorage.setItem("edit-next", para.dataset.index); save(); return; }
      close();
      const next = para.nextElementSibling;
      if (next && next.classList.contains("para")) openEditor(next, player);
    }
    else if (e.key === "p" && e.altKey && player) { e.preventDefault(); playFrom(player, para); }
  });
}

function playFrom(player, para) {
  player.currentTime = parseFloat(para.dataset.start);
  player.play().catch(() => {});
}

function startEditing(paragraphs, player) {
  if (window.location.search.includes("saved=1")) {  // "Names saved" once, not after every later reload
    window.history.replaceState(null, "", window.location.pathname);
  }
  const done = sessionStorage.getItem("edit-done");
  if (done) {
    sessionStorage.removeItem("edit-done");
    const message = document.getElementById("edit-message");
    message.className = "ok";
    message.textContent = "Saved: " + done;
  }
  paragraphs.forEach(para => {
    para.addEventListener("dblclick", () => openEditor(para, player));
    para.addEventListener("keydown", e => {
      if (e.target !== para) return;
      if (e.key === "Enter") { e.preventDefault(); openEditor(para, player); }
      else if (e.key === "p" && e.altKey && player) { e.preventDefault(); playFrom(player, para); }
    });
    const move = para.querySelector("select.move");
    if (move) move.addEventListener("change", () =>
      sendEdits([{op: "speaker", paragraph: parseInt(para.dataset.index, 10), speaker: move.value}]));
    const merge = para.querySelector("button.merge");
    if (merge) merge.addEventListener("click", () =>
      sendEdits([{op: "merge", paragraph: parseInt(para.dataset.index, 10)}]));
  });
  const next = sessionStorage.getItem("edit-next");
  if (next !== null) {
    sessionStorage.removeItem("edit-next");
    const following = paragraphs.find(p => p.dataset.index === String(parseInt(next, 10) + 1));
    if (following) openEditor(following, player);
  }
  const undo = document.getElementById("undo-button");
  if (undo) undo.addEventListener("click", () => sendEdits([{op: "undo"}]));
}

// -- the transcript -----------------------------------------------------------------------------
function startTranscript() {
  const player = document.getElementById("player");
  const paragraphs = Array.from(document.querySelectorAll(".para"));
  const playhead = document.getElementById("playhead");
  const lanes = document.getElementById("lanes");
  const duration = parseFloat(lanes.dataset.duration || "0");
  const editable = document.body.dataset.editable === "yes";
  paragraphs.forEach(p => {
    const seek = e => {
      if (!player || e.target.closest("textarea, select, button")) return;
      playFrom(player, p);
    };
    p.addEventListener("click", seek);
    if (!editable) p.addEventListener("keydown", e => { if (e.key === "Enter") seek(e); });
  });
  if (editable) startEditing(paragraphs, player);
  if (!player) return;
  player.addEventListener("timeupdate", () => {
    const t = player.currentTime;
    paragraphs.forEach(p => p.classList.toggle("now",
      parseFloat(p.dataset.start) <= t && t < parseFloat(p.dataset.end)));
    if (duration > 0) {
      const x = (1000 * Math.min(1, t / duration)).toFixed(1);
      playhead.setAttribute("x1", x);
      playhead.setAttribute("x2", x);
    }
  });
}

// A form with data-confirm asks first (the server side has its own confirmation page too).
function confirmForms() {
  document.querySelectorAll("form[data-confirm]").forEach(form => {
    form.addEventListener("submit", e => { if (!window.confirm(form.dataset.confirm)) e.preventDefault(); });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  confirmForms();
  const page = document.body.dataset.page;
  if (page === "overview") startOverview();
  if (page === "job") startJob();
  if (page === "transcript") startTranscript();
});
