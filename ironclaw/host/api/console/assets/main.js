// The console's entry point: sign-in and sign-out, the views, and what refreshes them.

import { ApiError, get, post, token } from "./api.js";
import { Charts } from "./charts.js";
import { EventStream } from "./stream.js";
import { clear } from "./text.js";
import * as views from "./views.js";

const KEPT_EVENTS = 2000;
const SHOWN_EVENTS = 500;
const REFRESH_MS = 15000;
const RENDER_MARK = "ironclaw.event.rendered";
const MAX_MARKS = 20000;

const $ = (id) => document.getElementById(id);

const state = {
  roles: [], status: null, kept: [], paused: false, unseen: 0, missed: 0, marks: 0,
  refreshTimer: null, pendingRefresh: new Set(), debounce: null,
  generation: 0,  // one per sign-in (and sign-out): late answers of an older one are dropped
};

const charts = new Charts($("chart-messages"), $("chart-messages-text"),
  $("chart-latency"), $("chart-latency-text"));

const stream = new EventStream({
  onEvent: (frame) => received(frame),
  onState: (kind, sentence) => {
    setStreamState(kind, sentence);
    if (kind === "gap") say(sentence);  // the stream's line moves on; this must stay
    if (kind === "refused") signOut("The control plane no longer accepts this token.");
  },
  onLagged: (missed) => {
    state.missed += missed;
    $("stream-missed").textContent = `${state.missed} events were dropped because the ` +
      "console fell behind.";
  },
});

function setStreamState(kind, sentence) {
  $("stream-state").dataset.state = kind;
  $("stream-state").textContent = sentence;
}

function say(sentence) {
  $("notice").textContent = sentence;
}

function failed(error) {
  if (error instanceof ApiError) {
    if (error.status === 401) signOut(error.message);
    else say(error.message);
  } else {
    say("Something went wrong in the console. Reload the page to start again.");
  }
}

// Sign-in and sign-out

async function signIn(submitted) {
  submitted.preventDefault();
  const field = $("token");
  const value = field.value.trim();
  field.value = "";
  $("sign-in-error").textContent = "";
  if (!value) {
    $("sign-in-error").textContent = "Paste an API token first.";
    return;
  }
  try {
    const who = await get("/v1/whoami", value);
    token.set(value);
    await start(who);
  } catch (error) {
    $("sign-in-error").textContent = error instanceof ApiError ? error.message
      : "Signing in failed. Reload the page and try again.";
    field.focus();
  }
}

async function start(who) {
  state.generation += 1;
  state.roles = Array.isArray(who.roles) ? who.roles : [];
  $("who").textContent = `Signed in as ${who.name} (${state.roles.join(", ")})`;
  $("sign-in").hidden = true;
  $("console").hidden = false;
  $("sign-out").hidden = false;
  say("");
  showView("events");
  setStreamState("connecting", "Connecting…");
  stream.start();
  $("console").setAttribute("aria-busy", "true");
  await refresh(["status", "sessions", "pending", "history", "audit"]);
  $("console").setAttribute("aria-busy", "false");
  clearInterval(state.refreshTimer);
  state.refreshTimer = setInterval(() => refresh(["status", "sessions"]), REFRESH_MS);
}

function signOut(sentence = "You are signed out.") {
  state.generation += 1;
  token.clear();
  stream.stop();
  setStreamState("signed-out", "");
  clearInterval(state.refreshTimer);
  Object.assign(state, { roles: [], status: null, kept: [], unseen: 0, missed: 0 });
  charts.reset();
  for (const id of ["events-body", "sessions-body", "pending-list", "history-body",
    "audit-body", "audit-verify", "channels-body", "who", "stream-missed", "banner"]) {
    clear($(id));
  }
  $("banner").hidden = true;
  $("console").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in").hidden = false;
  say(sentence);
  $("token").focus();
}

// Views and their refreshes

function showView(name) {
  for (const button of document.querySelectorAll("nav button[data-view]")) {
    const current = button.dataset.view === name;
    if (current) button.setAttribute("aria-current", "page");
    else button.removeAttribute("aria-current");
  }
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== name;
  }
}

// Each loader fetches, then returns how to show what it fetched. Nothing is shown if
// the user signed out (or in again) meanwhile: an answer meant for one principal never
// lands in another's view.
const loaders = {
  status: async () => {
    const status = await get("/v1/status");
    return () => {
      state.status = status;
      views.banner($("banner"), status);
      views.channels($("channels-body"), status.channels || []);
    };
  },
  sessions: async () => {
    const status = state.status || await get("/v1/status");
    const found = await get("/v1/sessions");
    return () => views.sessions($("sessions-body"), found.sessions, status, $("sessions-summary"));
  },
  pending: async () => {
    const found = await get("/v1/changes/pending");
    return () => {
      views.pending($("pending-list"), found.changes, state.roles, decide);
      $("pending-count").textContent = found.changes.length ? ` (${found.changes.length})` : "";
    };
  },
  history: async () => {
    const found = await get("/v1/changes/history?limit=50");
    return () => views.history($("history-body"), found.changes);
  },
  audit: async () => {
    const found = await get("/v1/audit?limit=50");
    return () => views.audit($("audit-body"), found.entries);
  },
};

async function refresh(names) {
  const generation = state.generation;
  for (const name of names) {
    if (!token.get() || generation !== state.generation) return;
    try {
      const show = await loaders[name]();
      if (generation === state.generation) show();
    } catch (error) {
      if (generation === state.generation) failed(error);
    }
  }
}

// Events change what other views show: refresh those, at most a few times a second.
function refreshSoon(frame) {
  const type = frame.type;
  if (type.startsWith("change.")) {
    for (const name of ["pending", "history", "audit"]) state.pendingRefresh.add(name);
  }
  if (type.startsWith("session.") || type.startsWith("sandbox.") || type === "delivery.delivered") {
    state.pendingRefresh.add("sessions");
  }
  if (type.startsWith("channel.") || type === "runtime.selected") state.pendingRefresh.add("status");
  if (state.pendingRefresh.size === 0 || state.debounce) return;
  state.debounce = setTimeout(() => {
    const names = [...state.pendingRefresh];
    state.pendingRefresh.clear();
    state.debounce = null;
    refresh(names);
  }, 300);
}

async function decide(changeId, outcome, reasonField, result) {
  const body = { outcome };
  const reason = reasonField.value.trim();
  if (reason) body.reason = reason;
  result.textContent = outcome === "approve" ? "Approving…" : "Rejecting…";
  try {
    const change = await post(`/v1/changes/${encodeURIComponent(changeId)}/decision`, body);
    result.textContent = `Done: the change is now ${change.status}.`;
    say(`Change ${change.id} is now ${change.status}.`);  // the article may go: say it here too
    await refresh(["pending", "history", "audit"]);
  } catch (error) {
    result.textContent = error instanceof ApiError ? error.message
      : "The decision could not be sent.";
    failed(error);
  }
}

async function verifyAudit() {
  const node = $("audit-verify");
  node.textContent = "Verifying the whole chain…";
  try {
    views.verify(node, await get("/v1/audit/verify"));
  } catch (error) {
    node.textContent = error instanceof ApiError ? error.message : "Verification failed to run.";
  }
}

// Live events

function matches(frame) {
  const type = $("filter-type").value.trim();
  const session = $("filter-session").value.trim();
  if (session && (frame.event || {}).session_id !== session) return false;
  if (!type) return true;
  return type.split(",").map((p) => p.trim()).filter(Boolean).some((pattern) =>
    pattern === "*" || (pattern.endsWith(".*") ? frame.type.startsWith(pattern.slice(0, -1))
      : frame.type === pattern));
}

function received(frame) {
  state.kept.push(frame);
  if (state.kept.length > KEPT_EVENTS) state.kept.splice(0, state.kept.length - KEPT_EVENTS);
  charts.observe(frame);
  refreshSoon(frame);
  const lagMs = Date.now() - frame.at / 1000;
  $("stream-lag").textContent = `lag ${Math.max(0, Math.round(lagMs))} ms`;
  if (state.paused) {
    state.unseen += 1;
    $("pause").textContent = `Resume (${state.unseen} new)`;
    return;
  }
  if (!matches(frame)) return;
  const body = $("events-body");
  body.prepend(views.eventRow(frame));
  while (body.rows.length > SHOWN_EVENTS) body.deleteRow(-1);
  mark(frame.seq, lagMs);
}

// A performance mark per rendered event (its lag from publish to render in the
// detail), so the lag can be measured from the page itself.
function mark(seq, lagMs) {
  if (state.marks >= MAX_MARKS) {
    performance.clearMarks(RENDER_MARK);
    state.marks = 0;
  }
  performance.mark(RENDER_MARK, { detail: { seq, lagMs } });
  state.marks += 1;
}

function rerender() {
  const body = clear($("events-body"));
  const shown = state.kept.filter(matches).slice(-SHOWN_EVENTS);
  for (const frame of shown.reverse()) body.append(views.eventRow(frame));
  if (shown.length === 0) body.append(views.noteRow("No event matches yet."));
}

function togglePause() {
  state.paused = !state.paused;
  const button = $("pause");
  button.setAttribute("aria-pressed", state.paused ? "true" : "false");
  button.textContent = state.paused ? "Resume" : "Pause";
  if (!state.paused) {
    state.unseen = 0;
    rerender();
  }
}

// Wiring

function wire() {
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("pause").addEventListener("click", togglePause);
  $("filter-type").addEventListener("input", rerender);
  $("filter-session").addEventListener("input", rerender);
  $("verify").addEventListener("click", verifyAudit);
  $("refresh-audit").addEventListener("click", () => refresh(["audit"]));
  for (const button of document.querySelectorAll("nav button[data-view]")) {
    button.addEventListener("click", () => {
      showView(button.dataset.view);
      const view = button.dataset.view;
      if (view !== "events") refresh([view === "channels" ? "status" : view]);
    });
  }
  setInterval(() => charts.draw(), 1000);
  window.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    failed(event.reason);
  });
}

async function boot() {
  wire();
  const saved = token.get();
  if (!saved) {
    $("sign-in").hidden = false;
    return;
  }
  try {
    await start(await get("/v1/whoami"));
  } catch (error) {
    token.clear();
    $("sign-in").hidden = false;
    failed(error);
  }
}

boot();
