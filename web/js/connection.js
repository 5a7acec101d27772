// The one v2 socket of this page: connects, says when it is up (after
// `hello`), notices a dead link with `ping`, and reconnects by itself with
// growing delays. It knows nothing about chats: frames go to `onFrame`.

/** @typedef {'connecting' | 'online' | 'offline'} ConnectionState */

const PING_EVERY_MS = 20_000;
const PONG_WITHIN_MS = 10_000;
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
/** Close code the server uses when the token has expired or was revoked (a password change or logout elsewhere). */
const TOKEN_EXPIRED = 4001;

export class Connection {
  /**
   * @param {object} handlers
   * @param {() => string} handlers.token the current token
   * @param {(hello: any) => void} handlers.onHello
   * @param {(frame: any) => void} handlers.onFrame every frame after hello
   * @param {(state: ConnectionState, retryInMs?: number) => void} handlers.onState
   * @param {() => void} handlers.onAuthExpired the token is no longer accepted
   * @param {() => Promise<boolean>} handlers.tokenStillValid asked when a connect fails
   */
  constructor(handlers) {
    this.handlers = handlers;
    /** @type {WebSocket | null} */
    this.socket = null;
    this.state = /** @type {ConnectionState} */ ('offline');
    this.failures = 0;
    this.stopped = true;
    this.retryTimer = 0;
    this.pingTimer = 0;
    this.pongTimer = 0;
    this.onBrowserOnline = () => this.reconnectNow();
    this.onVisible = () => {
      if (document.visibilityState === 'visible') this.reconnectNow();
    };
  }

  start() {
    this.stopped = false;
    window.addEventListener('online', this.onBrowserOnline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onBrowserOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    clearTimeout(this.retryTimer);
    this.clearHeartbeat();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.close(1000);
      this.socket = null;
    }
    this.setState('offline');
  }

  /** Sends a frame if the socket is up; false when it is not (the caller queues). */
  send(frame) {
    if (this.state !== 'online' || !this.socket) return false;
    this.socket.send(JSON.stringify(frame));
    return true;
  }

  reconnectNow() {
    if (this.stopped || this.state !== 'offline') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  connect() {
    this.setState('connecting');
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const url = `${scheme}//${location.host}/ws/v2/?token=${encodeURIComponent(this.handlers.token())}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    let greeted = false;
    socket.onmessage = (event) => {
      if (typeof event.data !== 'string') return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.heardFromServer();
      if (!greeted) {
        if (frame.type !== 'hello') return;
        greeted = true;
        this.failures = 0;
        this.setState('online');
        this.startHeartbeat();
        this.handlers.onHello(frame);
        return;
      }
      this.handlers.onFrame(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.clearHeartbeat();
      if (this.stopped) return;
      if (event.code === TOKEN_EXPIRED) {
        this.stop();
        this.handlers.onAuthExpired();
        return;
      }
      if (!greeted) this.failures += 1;
      this.scheduleRetry(!greeted);
    };
  }

  async scheduleRetry(handshakeFailed) {
    // A browser hides the handshake's status: a 401 looks like any failure.
    // Ask REST whether the token still works before trying again.
    if (handshakeFailed && this.failures >= 2 && !(await this.handlers.tokenStillValid())) {
      this.stop();
      this.handlers.onAuthExpired();
      return;
    }
    if (this.stopped) return;
    const base = RETRY_DELAYS_MS[Math.min(this.failures, RETRY_DELAYS_MS.length - 1)];
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.setState('offline', delay);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  startHeartbeat() {
    this.clearHeartbeat();
    this.pingTimer = setInterval(() => {
      if (!this.socket) return;
      this.socket.send(JSON.stringify({ type: 'ping' }));
      clearTimeout(this.pongTimer);
      // Any frame counts as a sign of life (heardFromServer clears this).
      this.pongTimer = setTimeout(() => this.abandon(), PONG_WITHIN_MS);
    }, PING_EVERY_MS);
  }

  /** The link is dead: a closing handshake would never finish, so do not wait for it. */
  abandon() {
    const socket = this.socket;
    if (!socket) return;
    socket.onclose = null;
    socket.onmessage = null;
    socket.close();
    this.socket = null;
    this.clearHeartbeat();
    this.scheduleRetry(false);
  }

  heardFromServer() {
    clearTimeout(this.pongTimer);
  }

  clearHeartbeat() {
    clearInterval(this.pingTimer);
    clearTimeout(this.pongTimer);
  }

  setState(state, retryInMs) {
    this.state = state;
    this.handlers.onState(state, retryInMs);
  }
}
