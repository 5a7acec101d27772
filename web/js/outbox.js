// Messages the person sent that the server has not acknowledged yet. Kept in
// sessionStorage, per user, so a reload or a lost connection loses none;
// each is resent with its `client_id` until acknowledged, which the server
// makes safe (a resend returns the stored original).

/**
 * @typedef {object} Outgoing
 * @property {string} client_id
 * @property {number} chat_id
 * @property {string} body
 * @property {string} created  when it was typed (ISO), to place it
 * @property {boolean} inFlight  sent on the current socket, no answer yet
 * @property {string | null} error  why it cannot be sent as it is; null while it will be retried
 */

export class Outbox {
  /** @param {number} userId */
  constructor(userId) {
    this.key = `chat.outbox.${userId}`;
    /** @type {Outgoing[]} */
    this.items = [];
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.key) || '[]');
      if (Array.isArray(saved)) this.items = saved.map((m) => ({ ...m, inFlight: false }));
    } catch {
      this.items = [];
    }
  }

  save() {
    sessionStorage.setItem(this.key, JSON.stringify(this.items));
  }

  /** @param {Omit<Outgoing, 'inFlight' | 'error'>} message */
  add(message) {
    const item = { ...message, inFlight: false, error: null };
    this.items.push(item);
    this.save();
    return item;
  }

  find(clientId) {
    return this.items.find((m) => m.client_id === clientId);
  }

  remove(clientId) {
    const before = this.items.length;
    this.items = this.items.filter((m) => m.client_id !== clientId);
    if (this.items.length !== before) this.save();
  }

  forChat(chatId) {
    return this.items.filter((m) => m.chat_id === chatId);
  }

  /** The ones to (re)send now: not in flight, not refused for good. */
  due() {
    return this.items.filter((m) => !m.inFlight && m.error === null);
  }

  /** The socket closed: nothing is in flight any more. */
  connectionLost() {
    for (const m of this.items) m.inFlight = false;
  }

  fail(clientId, error) {
    const item = this.find(clientId);
    if (item) {
      item.inFlight = false;
      item.error = error;
      this.save();
    }
  }

  retry(clientId) {
    const item = this.find(clientId);
    if (item) {
      item.error = null;
      item.inFlight = false;
      this.save();
    }
  }

  clear() {
    this.items = [];
    sessionStorage.removeItem(this.key);
  }
}
