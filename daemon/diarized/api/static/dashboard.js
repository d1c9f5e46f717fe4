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

function jobLink(job) {
  return el("td", {}, [el("a", {href: "/ui/jobs/" + encodeURIComponent(job.id), text: job.file})]);
}

function queueRow(job) {
  const bar = el("progress", {"class": "job-progress", max: "1", value: String(job.progress)});
  return el("tr", {"data-job": job.id}, [
    jobLink(job), el("td", {text: job.priority}), el("td", {"class": "state-" + job.state, text: job.state}),
    el("td", {text: job.stage || ""}),
    el("td", {}, [bar, el("span", {"class": "pct", text: " " + Math.floor(job.progress * 100) + "%"})]),
    el("td", {text: job.eta_text})]);
}

function finishedRow(job) {
  return el("tr", {"data-job": job.id}, [
    jobLink(job), el("td", {"class": "state-" + job.state, text: job.state}), el("td", {text: job.audio_text}),
    el("td", {text: job.took_text}), el("td", {text: job.rtf_text}), el("td", {text: job.ended_text})]);
}

function fillRows(tbody, rows, empty) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {"class": "empty"}, [
    el("td", {colspan: "6", text: empty})])]));
}

function drawChart(chart, samples) {
  // viewBox 1000 x 200: the last hour left to right, 0 at y = 185, the highest value at y = 20
  chart.replaceChildren();
  const series = Object.entries(samples);
  const now = Date.now() / 1000, start = now - 3600;
  const maxMem = Math.max(1, ...series.flatMap(([, points]) => points.map(p => p[1] / 1024)));
  const maxCpu = Math.max(100, ...series.flatMap(([, points]) => points.map(p => p[2])));
  const x = t => Math.max(0, (t - start) / 3600 * 1000).toFixed(1);
  const y = share => (185 - share * 165).toFixed(1);
  series.forEach(([pid, points], i) => {
    const colour = COLOURS[i % COLOURS.length];
    const mem = points.map(p => x(p[0]) + "," + y(p[1] / 1024 / maxMem)).join(" ");
    const cpu = points.map(p => x(p[0]) + "," + y(p[2] / maxCpu)).join(" ");
    chart.appendChild(svg("polyline", {points: mem, "class": "mem", stroke: colour, "data-pid": pid}));
    chart.appendChild(svg("polyline", {points: cpu, "class": "cpu", stroke: colour}));
  });
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
  fillRows(document.getElementById("queue-rows"), data.running.concat(data.queued).map(queueRow), "Nothing queued.");
  fillRows(document.getElementById("finished-rows"), data.finished.map(finishedRow), "No finished jobs yet.");
  drawChart(document.getElementById("chart"), data.samples);
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
      message.textContent = `${body.file} is ${body.state}` + (body.duplicate_of ? ` (same as ${body.duplicate_of})` : "");
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

// -- the transcript -----------------------------------------------------------------------------
function startTranscript() {
  const player = document.getElementById("player");
  const paragraphs = Array.from(document.querySelectorAll(".para"));
  const playhead = document.getElementById("playhead");
  const lanes = document.getElementById("lanes");
  const duration = parseFloat(lanes.dataset.duration || "0");
  paragraphs.forEach(p => {
    const seek = () => {
      if (!player) return;
      player.currentTime = parseFloat(p.dataset.start);
      player.play().catch(() => {});
    };
    p.addEventListener("click", seek);
    p.addEventListener("keydown", e => { if (e.key === "Enter") seek(); });
  });
  if (!player) return;
  player.addEventListener("timeupdate", () => {
    const t = player.currentTime;
    paragraphs.forEach(p => p.classList.toggle("now",
      parseFloat(p.dataset.start) <= t && t < parseFloat(p.dataset.end)));
    if (duration > 0) {
      const x = (160 + 840 * Math.min(1, t / duration)).toFixed(1);
      playhead.setAttribute("x1", x);
      playhead.setAttribute("x2", x);
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "overview") startOverview();
  if (page === "job") startJob();
  if (page === "transcript") startTranscript();
});
