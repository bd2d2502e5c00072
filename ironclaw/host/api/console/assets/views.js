// The console's views, built from API answers with text nodes only (see text.js).

import { age, append, clear, clockTime, dateTime, el, visible } from "./text.js";

const DECIDERS = new Set(["owner", "admin", "approver"]);

export function mayDecide(roles) {
  return roles.some((role) => DECIDERS.has(role));
}

function details(event) {
  const parts = [];
  for (const [name, value] of Object.entries(event || {})) {
    if (name === "session_id") continue;
    const shown = value !== null && typeof value === "object" ? JSON.stringify(value) : value;
    parts.push(`${name}=${shown}`);
  }
  return parts.join("  ");
}

export function eventRow(frame) {
  const event = frame.event || {};
  return el("tr", { "data-seq": frame.seq, "data-type": frame.type },
    el("td", { class: "num" }, frame.seq),
    el("td", {}, clockTime(frame.at)),
    el("td", {}, el("code", {}, frame.type)),
    el("td", { class: "id" }, event.session_id || ""),
    el("td", { class: "details" }, details(event)));
}

export function noteRow(text) {
  return el("tr", { class: "note" }, el("td", { colspan: 5 }, text));
}

export function banner(node, status) {
  if (status.runtime_strength === "gvisor") {
    node.hidden = true;
    clear(node);
    return;
  }
  const why = status.runtime_warning ||
    (status.runtime_strength === "none" ? "agents run with no isolation at all"
      : "agents share the host's kernel");
  clear(node);
  append(node, el("strong", {}, `Sandboxes are not gVisor (runtime: ${status.runtime}). `), why);
  node.hidden = false;
}

export function sessions(tbody, list, status, summary) {
  clear(tbody);
  if (list.length === 0) {
    tbody.append(el("tr", {}, el("td", { colspan: 6 }, "No sessions yet.")));
    return;
  }
  for (const s of list) {
    tbody.append(el("tr", { "data-session-id": s.id },
      el("td", { class: "id" }, s.id),
      el("td", {}, s.agent_group_id),
      el("td", {}, s.live ? "live" : "idle"),
      el("td", {}, s.live ? status.runtime : "—"),
      el("td", {}, s.live ? age(s.heartbeat_at) : "—"),
      el("td", {}, age(s.last_active))));
  }
  summary.textContent = `${list.filter((s) => s.live).length} live of ${list.length}`;
}

// Pending changes are keyed by id: a refresh keeps the cards still pending as they are
// (a reason being typed, an answer being shown), adds new ones and drops decided ones.
export function pending(container, list, roles, decide) {
  const existing = new Map([...container.querySelectorAll("article[data-change-id]")]
    .map((card) => [card.dataset.changeId, card]));
  const cards = list.map((change) => existing.get(change.id) || changeCard(change, roles, decide));
  container.replaceChildren(...cards);
  if (list.length === 0) {
    container.append(el("p", {}, "No change is waiting for a decision."));
  }
}

function changeCard(change, roles, decide) {
  const allowed = mayDecide(roles);
  const reason = el("input", { type: "text", class: "decision-reason", maxlength: 2000,
    "aria-label": "Reason for the decision (optional)" });
  const result = el("p", { class: "decision-result", role: "status" });
  const approve = el("button", { type: "button", class: "approve", disabled: !allowed },
    "Approve");
  const reject = el("button", { type: "button", class: "reject", disabled: !allowed },
    "Reject");
  approve.addEventListener("click", () => decide(change.id, "approve", reason, result));
  reject.addEventListener("click", () => decide(change.id, "reject", reason, result));
  return el("article", { class: "change", "data-change-id": change.id },
    el("h3", {}, `${change.kind} for ${change.agent_group}`),
    el("dl", {},
      el("dt", {}, "Change"), el("dd", { class: "id" }, change.id),
      el("dt", {}, "Requested by"), el("dd", {}, change.requested_by),
      el("dt", {}, "Reason"), el("dd", { class: "reason" }, change.reason || "none given"),
      el("dt", {}, "Submitted"), el("dd", {}, dateTime(change.created_at)),
      el("dt", {}, "Expires"), el("dd", {}, dateTime(change.expires_at) || "never")),
    el("pre", { class: "diff", "aria-label": "What would change" },
      (change.diff_lines || []).map(visible).join("\n") || "no difference"),
    allowed ? null : el("p", { class: "role-note" },
      `Your role (${roles.join(", ") || "none"}) may read changes but not decide them.`),
    el("div", { class: "decide" }, el("label", {}, "Reason ", reason), approve, reject),
    result);
}

export function history(tbody, list) {
  clear(tbody);
  for (const change of list) {
    const decision = change.decision || {};
    tbody.append(el("tr", { "data-change-id": change.id, "data-status": change.status },
      el("td", { class: "id" }, change.id),
      el("td", {}, change.kind),
      el("td", {}, change.agent_group),
      el("td", { class: "status" }, change.status),
      el("td", {}, decision.decided_by || "—"),
      el("td", {}, dateTime(change.applied_at || decision.decided_at || change.created_at))));
  }
}

export function audit(tbody, entries) {
  clear(tbody);
  for (const entry of [...entries].reverse()) {
    tbody.append(el("tr", { "data-audit-seq": entry.seq },
      el("td", { class: "num" }, entry.seq),
      el("td", {}, dateTime(entry.at)),
      el("td", {}, el("code", {}, entry.kind)),
      el("td", { class: "details" }, details(entry.fields))));
  }
}

export function verify(node, report) {
  clear(node);
  node.dataset.ok = report.ok ? "yes" : "no";
  if (report.ok) {
    append(node, `The audit chain is intact: ${report.entries} entries verified.`);
    return;
  }
  append(node, `The audit chain FAILED verification (${report.entries} entries): `,
    el("ul", {}, report.problems.map((p) => el("li", {}, p))));
}

export function channels(tbody, list) {
  clear(tbody);
  if (list.length === 0) {
    tbody.append(el("tr", {}, el("td", { colspan: 3 }, "No channel is configured.")));
    return;
  }
  for (const c of list) {
    tbody.append(el("tr", { "data-status": c.status },
      el("td", {}, c.channel), el("td", {}, c.instance || "—"), el("td", {}, c.status)));
  }
}
