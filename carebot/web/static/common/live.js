// The live feed: one WebSocket to /api/v1/events, reopened with backoff when it drops.

export class Live {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.delay = 500;
    this.stopped = false;
    this.socket = null;
  }

  start() {
    this.stopped = false;
    this.open();
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close(1000);
  }

  open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/v1/events`);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.delay = 500;
      this.onState("live");
    });
    socket.addEventListener("message", (msg) => {
      let event;
      try { event = JSON.parse(msg.data); } catch { return; }
      this.onEvent(event);
    });
    socket.addEventListener("close", (ev) => {
      if (this.stopped) return;
      // 1008: this agent was disabled or logged out; reconnecting would be refused.
      this.onState(ev.code === 1008 ? "revoked" : "reconnecting");
      if (ev.code === 1008) return;
      setTimeout(() => this.open(), this.delay);
      this.delay = Math.min(this.delay * 2, 10000);
    });
  }
}
