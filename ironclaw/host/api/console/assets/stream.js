// The live event stream: one websocket to /v1/events, the token offered in
// Sec-WebSocket-Protocol (never in the URL). After a lost connection it reconnects
// with since=<last seq seen>, so the server replays exactly what was missed; a frame
// whose seq the console has already seen is dropped, so nothing shows twice.

import { reachable, token } from "./api.js";

const SUBPROTOCOL = "ironclaw.v1";
const CLOSE_UNAUTHORIZED = 4401;
const FIRST_RETRY_MS = 250;
const MAX_RETRY_MS = 8000;
// Resumes refused while the server answers /healthz: since= is ahead of a restarted
// control plane, so the console starts afresh and says there may be a gap.
const MAX_REFUSED_RESUMES = 2;

export class EventStream {
  constructor({ onEvent, onState, onLagged }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.onLagged = onLagged;
    this.lastSeq = null;
    this.socket = null;
    this.failures = 0;
    this.refusedResumes = 0;
    this.timer = null;
    this.stopped = true;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "signed out");
    this.lastSeq = null;
  }

  connect() {
    const secret = token.get();
    if (!secret || this.stopped) return;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.lastSeq === null ? "" : `?since=${this.lastSeq}`;
    const socket = new WebSocket(`${scheme}//${location.host}/v1/events${query}`,
      [SUBPROTOCOL, `bearer.${secret}`]);
    this.socket = socket;
    let ready = false;
    socket.onmessage = (message) => {
      if (this.socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (frame && frame.type === "stream.ready") ready = true;
      this.receive(frame);
    };
    socket.onclose = (closed) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (closed.code === CLOSE_UNAUTHORIZED) {
        this.onState("refused", "The event stream no longer accepts this token. Sign in again.");
        return;
      }
      this.retry(ready);
    };
  }

  async retry(wasReady) {
    let wait;
    if (!wasReady && this.lastSeq !== null && await reachable()) {
      // The server answers, yet refused to resume: since= is ahead of a restarted
      // control plane. Try once more at once, then start afresh and say so.
      this.refusedResumes += 1;
      if (this.refusedResumes >= MAX_REFUSED_RESUMES) {
        this.lastSeq = null;
        this.refusedResumes = 0;
        this.onState("gap", "The event stream could not resume where it stopped (the " +
          "control plane may have restarted); events from the gap are not shown.");
      }
      wait = FIRST_RETRY_MS;
    } else {
      this.failures = wasReady ? 1 : this.failures + 1;
      wait = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (this.failures - 1));
    }
    if (this.stopped) return;
    this.onState("reconnecting", `The event stream was lost; reconnecting in ${
      Math.max(1, Math.round(wait / 1000))} s.`);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  receive(frame) {
    if (!frame || typeof frame !== "object") return;
    if (frame.type === "stream.ready") {
      const resumed = this.lastSeq !== null;
      if (!resumed && frame.event && Number.isInteger(frame.event.last_seq)) {
        this.lastSeq = frame.event.last_seq;
      }
      this.failures = 0;
      this.refusedResumes = 0;
      this.onState("live", resumed ? "Live again; missed events were replayed." : "Live.");
      return;
    }
    if (frame.type === "stream.lagged") {
      this.onLagged(frame.event && Number.isInteger(frame.event.missed) ? frame.event.missed : 0);
      return;
    }
    if (frame.type === "error") {
      this.onState("error", "The event stream reported an error.");
      return;
    }
    if (!Number.isInteger(frame.seq) || typeof frame.type !== "string") return;
    if (this.lastSeq !== null && frame.seq <= this.lastSeq) return;
    this.lastSeq = frame.seq;
    this.onEvent(frame);
  }
}
