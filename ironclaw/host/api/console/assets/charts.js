// Two small live charts drawn on canvas from the event stream: messages received per
// minute (message.received), and reply latency (from a session's message.routed to
// its next first delivery, delivery.delivered). Each keeps a short, bounded history and
// states its figures in text too, for screen readers and narrow screens.

const MINUTES = 30;
const LATENCIES = 60;

export class Charts {
  constructor(messagesCanvas, messagesText, latencyCanvas, latencyText) {
    this.messagesCanvas = messagesCanvas;
    this.messagesText = messagesText;
    this.latencyCanvas = latencyCanvas;
    this.latencyText = latencyText;
    this.reset();
  }

  reset() {
    this.perMinute = new Map();
    this.routedAt = new Map();
    this.latencies = [];
    this.dirty = true;
  }

  observe(frame) {
    const event = frame.event || {};
    if (frame.type === "message.received") {
      const minute = Math.floor(frame.at / 60_000_000);
      this.perMinute.set(minute, (this.perMinute.get(minute) || 0) + 1);
      for (const old of this.perMinute.keys()) {
        if (old <= minute - MINUTES) this.perMinute.delete(old);
      }
      this.dirty = true;
    } else if (frame.type === "message.routed" && typeof event.session_id === "string") {
      if (!this.routedAt.has(event.session_id)) this.routedAt.set(event.session_id, frame.at);
      if (this.routedAt.size > 1000) this.routedAt.delete(this.routedAt.keys().next().value);
    } else if (frame.type === "delivery.delivered" && !event.duplicate
               && this.routedAt.has(event.session_id)) {
      this.latencies.push((frame.at - this.routedAt.get(event.session_id)) / 1000);
      this.routedAt.delete(event.session_id);
      if (this.latencies.length > LATENCIES) this.latencies.shift();
      this.dirty = true;
    }
  }

  draw(nowMs = Date.now()) {
    if (!this.dirty) return;
    this.dirty = false;
    const current = Math.floor(nowMs / 60_000);
    const counts = [];
    for (let m = current - MINUTES + 1; m <= current; m += 1) counts.push(this.perMinute.get(m) || 0);
    bars(this.messagesCanvas, counts);
    this.messagesText.textContent = `${counts[counts.length - 1]} this minute, ` +
      `${counts.reduce((a, b) => a + b, 0)} in the last ${MINUTES} minutes`;
    bars(this.latencyCanvas, this.latencies);
    if (this.latencies.length === 0) {
      this.latencyText.textContent = "no replies yet";
    } else {
      const sorted = [...this.latencies].sort((a, b) => a - b);
      const median = sorted[Math.floor(sorted.length / 2)];
      this.latencyText.textContent = `last ${Math.round(this.latencies.at(-1))} ms, ` +
        `median ${Math.round(median)} ms over ${sorted.length} replies`;
    }
  }
}

function bars(canvas, values) {
  const context = canvas.getContext("2d");
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  context.strokeStyle = "#8a8f98";
  context.beginPath();
  context.moveTo(0, height - 0.5);
  context.lineTo(width, height - 0.5);
  context.stroke();
  if (values.length === 0) return;
  const top = Math.max(1, ...values);
  const step = width / values.length;
  context.fillStyle = "#2f6fdf";
  values.forEach((value, i) => {
    const h = Math.round((value / top) * (height - 4));
    context.fillRect(Math.floor(i * step) + 1, height - 1 - h, Math.max(1, Math.floor(step) - 2), h);
  });
}
