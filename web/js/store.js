// What the page knows: the user's chats (as `hello` and the events describe
// them) and, for chats that were opened, a window of their messages. Every
// change to it comes through here, from frames, REST pages or the person's
// actions, and ends with `onChange`.
//
// A window holds a contiguous run of a chat's messages by `seq` (never a
// gap, never a duplicate). While it `follows` the chat's head, live
// messages are appended; after a reconnect it pages `after=<last seq>` up
// to the head that `hello` reported (the catch-up of docs/protocol.md,
// from the window's last message instead of from 1: the run is still gap
// free), and messages that arrive live before the gap is filled wait in
// `early`. Windows stay small: the page never holds a whole history.

import * as api from './api.js';
import { Outbox } from './outbox.js';
import { newClientId as newId } from './format.js';

/** Messages per page when scrolling. */
export const PAGE = 50;
/** Rows kept in a window that follows the head while the person is at the bottom. */
export const KEEP_ROWS = 150;
/** A window never grows past this; paging the other way drops rows. */
export const MAX_ROWS = 300;
/** A reconnect further behind than this reloads the newest page instead of paging up to it. */
const CATCH_UP_MAX = 400;
const CATCH_UP_PAGE = 200;
/** How long a `typing` lasts here if its end never arrives (the server's TTL is 6 s). */
const TYPING_FALLBACK_MS = 8000;

/** The words a person sees for a refused send. */
const SEND_ERRORS = {
  empty: 'The message is empty.',
  too_long: 'The message is too long.',
  conflict: 'The server already holds a different message with this id; it was not sent.',
  not_participant: 'You are not in this chat.',
  unknown_chat: 'This chat does not exist any more.',
  bad_frame: 'The server could not read this message.',
};

export class MessageWindow {
  constructor() {
    /** @type {any[]} messages, by seq, contiguous */
    this.items = [];
    /** @type {Map<number, any>} live messages beyond a gap being filled */
    this.early = new Map();
    this.follows = true;
    /** The view shows the window's bottom (the view keeps this true). */
    this.pinned = true;
    this.loaded = false;
    /** @type {Promise<void> | null} */
    this.busy = null;
  }

  get first() {
    return this.items.length ? this.items[0].seq : 0;
  }

  get last() {
    return this.items.length ? this.items[this.items.length - 1].seq : 0;
  }

  /** Adds messages in seq order, keeping only the one that extends the run. */
  append(messages) {
    let added = [];
    const take = (m) => {
      if (this.items.length === 0 || m.seq === this.last + 1) {
        this.items.push(m);
        added.push(m);
      }
    };
    for (const m of messages) if (m.seq > this.last) take(m);
    while (this.early.has(this.last + 1)) {
      const m = this.early.get(this.last + 1);
      this.early.delete(m.seq);
      take(m);
    }
    for (const seq of this.early.keys()) if (seq <= this.last) this.early.delete(seq);
    return added;
  }

  prepend(messages) {
    const older = messages.filter((m) => m.seq < this.first);
    this.items = older.concat(this.items);
    return older;
  }
}

export class ChatStore {
  /**
   * @param {object} options
   * @param {{id: number, username: string}} options.me
   * @param {() => string} options.token
   * @param {import('./connection.js').Connection} options.connection
   * @param {(what: {chatId?: number, notice?: string}) => void} options.onChange
   */
  constructor({ me, token, connection, onChange }) {
    this.me = me;
    this.token = token;
    this.connection = connection;
    this.onChange = onChange;
    this.outbox = new Outbox(me.id);
    /** @type {Map<number, any>} chat state by id, as in `hello` */
    this.chats = new Map();
    /** @type {Map<number, MessageWindow>} */
    this.windows = new Map();
    this.limits = { max_message_chars: 4096 };
    this.deliveredTimers = new Map();
    this.typingTimers = new Map();
    this.retryTimer = 0;
  }

  // ---- what the view reads ----------------------------------------------

  /** Most recent activity first. */
  sortedChats() {
    const activity = (chat) => {
      const pending = this.outbox.forChat(chat.id);
      const times = [chat.created, chat.last_message?.created, pending.at(-1)?.created];
      return times.filter(Boolean).sort().at(-1);
    };
    return [...this.chats.values()].sort((a, b) => (activity(a) < activity(b) ? 1 : -1));
  }

  window(chatId) {
    let win = this.windows.get(chatId);
    if (!win) {
      win = new MessageWindow();
      this.windows.set(chatId, win);
    }
    return win;
  }

  /** sending / failed / sent / delivered / read, for one of my messages. */
  statusOf(chat, message) {
    if (message.seq === undefined) {
      return this.outbox.find(message.client_id)?.error ? 'failed' : 'sending';
    }
    if (message.seq <= chat.other_read_up_to) return 'read';
    if (message.seq <= chat.other_delivered_up_to) return 'delivered';
    return 'sent';
  }

  totalUnread() {
    let total = 0;
    for (const chat of this.chats.values()) total += chat.unread_count;
    return total;
  }

  // ---- frames from the socket -------------------------------------------

  applyHello(hello) {
    this.limits = hello.limits;
    for (const chat of hello.chats) this.mergeChat(chat);
    this.onChange({});
    for (const [chatId, win] of this.windows) {
      if (win.loaded && win.follows) this.catchUp(chatId);
    }
    for (const chat of this.chats.values()) {
      const fromOther = chat.last_message && chat.last_message.sender_id !== this.me.id;
      if (fromOther && chat.delivered_up_to < chat.head_seq) this.noteDelivered(chat.id, chat.head_seq);
    }
    this.flush();
  }

  applyFrame(frame) {
    switch (frame.type) {
      case 'message':
        this.addMessage(frame.message);
        break;
      case 'ack':
        this.outbox.remove(frame.client_id);
        this.addMessage(frame.message);
        break;
      case 'chat':
        this.mergeChat(frame.chat);
        this.onChange({ chatId: frame.chat.id });
        break;
      case 'read':
      case 'delivered':
        this.moveCursor(frame.type, frame.chat_id, frame.user_id, frame.up_to);
        break;
      case 'typing':
        this.setTyping(frame.chat_id, frame.active);
        break;
      case 'presence':
        for (const chat of this.chats.values()) {
          if (chat.other_user.id === frame.user_id) {
            chat.other_user.online = frame.online;
            chat.other_user.last_seen = frame.last_seen;
            this.onChange({ chatId: chat.id });
          }
        }
        break;
      case 'error':
        this.refused(frame);
        break;
      default:
        break; // pong, and frame types of later versions
    }
  }

  connectionLost() {
    this.outbox.connectionLost();
    for (const chat of this.chats.values()) chat.typing = false;
    this.onChange({});
  }

  mergeChat(chat) {
    const known = this.chats.get(chat.id);
    if (known) {
      // Cursors only move forward; an event may repeat an older snapshot.
      for (const key of ['read_up_to', 'other_read_up_to', 'delivered_up_to', 'other_delivered_up_to', 'head_seq']) {
        chat[key] = Math.max(chat[key], known[key]);
      }
      if (known.last_message && (!chat.last_message || chat.last_message.seq < known.last_message.seq)) {
        chat.last_message = known.last_message;
      }
      chat.typing = known.typing;
      Object.assign(known, chat);
    } else {
      this.chats.set(chat.id, { typing: false, ...chat });
    }
  }

  addMessage(message) {
    const chat = this.chats.get(message.chat_id);
    if (!chat) return; // a `chat` event always comes first; a stray one waits for hello
    const mine = message.sender_id === this.me.id;
    if (mine && message.client_id) this.outbox.remove(message.client_id);
    const isNew = message.seq > chat.head_seq;
    if (isNew) {
      chat.head_seq = message.seq;
      chat.last_message = message;
      if (!mine && message.seq > chat.read_up_to) chat.unread_count += 1;
    }
    if (!mine && chat.typing) this.setTyping(chat.id, false);
    const win = this.windows.get(chat.id);
    if (win && win.loaded && win.follows) {
      if (win.items.length === 0 || message.seq <= win.last + 1) {
        win.append([message]);
      } else {
        // A gap: the catch-up after hello is filling it.
        win.early.set(message.seq, message);
        if (!win.busy) this.catchUp(chat.id);
      }
      if (win.items.length > MAX_ROWS) {
        if (win.pinned) {
          // The person is at the bottom: a burst between two renders drops
          // the oldest rows, as the view would.
          win.items.splice(0, win.items.length - KEEP_ROWS);
        } else {
          // They are reading older messages: keep those, stop following.
          win.follows = false;
          win.items.length = MAX_ROWS;
          win.early.clear();
        }
      }
    }
    if (!mine) this.noteDelivered(chat.id, message.seq);
    this.onChange({ chatId: chat.id });
  }

  moveCursor(kind, chatId, userId, upTo) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    const key = `${userId === this.me.id ? '' : 'other_'}${kind}_up_to`;
    if (upTo <= chat[key]) return;
    chat[key] = upTo;
    if (kind === 'read') {
      const deliveredKey = key.replace('read', 'delivered');
      chat[deliveredKey] = Math.max(chat[deliveredKey], upTo);
      if (userId === this.me.id) this.recountUnread(chat);
    }
    this.onChange({ chatId });
  }

  setTyping(chatId, active) {
    const chat = this.chats.get(chatId);
    if (!chat) return;
    clearTimeout(this.typingTimers.get(chatId));
    chat.typing = active;
    if (active) {
      this.typingTimers.set(chatId, setTimeout(() => this.setTyping(chatId, false), TYPING_FALLBACK_MS));
    }
    this.onChange({ chatId });
  }

  refused(frame) {
    const item = frame.client_id && this.outbox.find(frame.client_id);
    if (!item) return; // an answer to a read/typing frame: nothing to show
    if (frame.code === 'rate_limited' || frame.code === 'unavailable') {
      item.inFlight = false;
      const words = frame.code === 'rate_limited'
        ? 'You are sending faster than the server allows; your messages will go out in a moment.'
        : 'The server could not store your message just now; it will try again.';
      this.onChange({ chatId: item.chat_id, notice: words });
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.flush(), frame.code === 'rate_limited' ? 1500 : 3000);
      return;
    }
    this.outbox.fail(item.client_id, SEND_ERRORS[frame.code] || frame.message);
    this.onChange({ chatId: item.chat_id });
  }

  // ---- the person's actions ---------------------------------------------

  /** @returns {string | null} why it was not queued, or null */
  send(chatId, body) {
    if (body.trim() === '') return 'Type a message first.';
    const chars = [...body].length;
    const max = this.limits.max_message_chars;
    if (chars > max) {
      return `This message has ${chars.toLocaleString()} characters; the limit is ${max.toLocaleString()}. Shorten it to send.`;
    }
    if (body.includes('\u0000')) return 'The message contains a character that cannot be sent (NUL).';
    this.outbox.add({ client_id: newId(), chat_id: chatId, body, created: new Date().toISOString() });
    this.flush();
    this.onChange({ chatId });
    return null;
  }

  /** Sends what is queued, oldest first, if the socket is up. */
  flush() {
    for (const item of this.outbox.due()) {
      const sent = this.connection.send({
        type: 'send', chat_id: item.chat_id, client_id: item.client_id, body: item.body,
      });
      if (!sent) return;
      item.inFlight = true;
    }
  }

  retry(clientId) {
    this.outbox.retry(clientId);
    this.flush();
    this.onChange({});
  }

  discard(clientId) {
    const item = this.outbox.find(clientId);
    this.outbox.remove(clientId);
    if (item) this.onChange({ chatId: item.chat_id });
  }

  typing(chatId, active) {
    this.connection.send({ type: 'typing', chat_id: chatId, active });
  }

  /** The person has seen everything up to the window's last message. */
  markRead(chatId) {
    const chat = this.chats.get(chatId);
    const win = this.windows.get(chatId);
    if (!chat || !win || win.items.length === 0) return;
    const upTo = win.last;
    if (upTo <= chat.read_up_to) return;
    if (!this.connection.send({ type: 'read', chat_id: chatId, up_to: upTo })) return;
    this.moveCursor('read', chatId, this.me.id, upTo);
  }

  noteDelivered(chatId, seq) {
    const chat = this.chats.get(chatId);
    if (!chat || seq <= chat.delivered_up_to) return;
    if (this.deliveredTimers.has(chatId)) return;
    // One frame for a burst of messages.
    this.deliveredTimers.set(chatId, setTimeout(() => {
      this.deliveredTimers.delete(chatId);
      const upTo = chat.head_seq;
      if (upTo > chat.delivered_up_to && this.connection.send({ type: 'delivered', chat_id: chatId, up_to: upTo })) {
        chat.delivered_up_to = upTo;
      }
    }, 200));
  }

  // ---- paging (REST) ----------------------------------------------------

  /** Runs one paging job per window at a time. */
  async job(chatId, work) {
    const win = this.window(chatId);
    while (win.busy) await win.busy;
    const run = (async () => {
      try {
        await work(win, this.chats.get(chatId));
      } catch (error) {
        this.onChange({ chatId, notice: `Could not load messages: ${error.message}` });
      }
    })();
    win.busy = run;
    this.onChange({ chatId });
    await run;
    if (win.busy === run) win.busy = null;
    this.onChange({ chatId });
  }

  /** The newest page, replacing whatever the window held. */
  loadNewest(chatId) {
    return this.job(chatId, async (win, chat) => {
      const page = await api.fetchPage(this.token(), chatId, { limit: PAGE });
      win.items = [];
      const early = win.early;
      win.early = new Map();
      win.append(page.messages);
      for (const m of early.values()) win.early.set(m.seq, m);
      win.append([]);
      win.loaded = true;
      win.follows = true;
      this.learnHead(chat, page.head_seq);
      this.noteDelivered(chatId, win.last);
    });
  }

  /** Opens a chat: its newest page, or the held window brought up to date. */
  open(chatId) {
    const win = this.window(chatId);
    if (!win.loaded || !win.follows) return this.loadNewest(chatId);
    return this.catchUp(chatId);
  }

  loadOlder(chatId) {
    return this.job(chatId, async (win) => {
      if (win.first <= 1) return;
      const page = await api.fetchPage(this.token(), chatId, { before: win.first, limit: PAGE });
      win.prepend(page.messages);
      if (win.items.length > MAX_ROWS) {
        win.items.length = MAX_ROWS;
        win.follows = false;
        win.early.clear();
      }
    });
  }

  /** Pages toward the head (scrolling down in a window that stopped following). */
  loadNewer(chatId) {
    return this.job(chatId, async (win, chat) => {
      if (win.follows) return;
      const page = await api.fetchPage(this.token(), chatId, { after: win.last, limit: PAGE });
      win.append(page.messages);
      this.learnHead(chat, page.head_seq);
      if (!page.has_more_after) win.follows = true;
      if (win.items.length > MAX_ROWS) win.items.splice(0, win.items.length - MAX_ROWS);
    });
  }

  /** After a reconnect: page from the window's last message to the head. */
  catchUp(chatId) {
    return this.job(chatId, async (win, chat) => {
      if (chat.head_seq - win.last > CATCH_UP_MAX) {
        const page = await api.fetchPage(this.token(), chatId, { limit: PAGE });
        win.items = [];
        win.append(page.messages);
        this.learnHead(chat, page.head_seq);
        return;
      }
      while (win.last < chat.head_seq) {
        const page = await api.fetchPage(this.token(), chatId, { after: win.last, limit: CATCH_UP_PAGE });
        const added = win.append(page.messages);
        this.learnHead(chat, page.head_seq);
        if (added.length === 0) break;
      }
      if (win.items.length > MAX_ROWS) win.items.splice(0, win.items.length - KEEP_ROWS);
      this.noteDelivered(chatId, win.last);
    });
  }

  /** The person is at the bottom of a following window: keep it small. */
  trimOldest(chatId) {
    const win = this.windows.get(chatId);
    if (win && win.follows && win.items.length > KEEP_ROWS + PAGE) {
      win.items.splice(0, win.items.length - KEEP_ROWS);
      return true;
    }
    return false;
  }

  learnHead(chat, head) {
    if (head > chat.head_seq) chat.head_seq = head;
  }

  /** My read cursor moved: the unread count, from what is held or from the server. */
  recountUnread(chat) {
    if (chat.read_up_to >= chat.head_seq) {
      chat.unread_count = 0;
      return;
    }
    const win = this.windows.get(chat.id);
    if (win && win.follows && win.items.length && win.first <= chat.read_up_to + 1 && win.last >= chat.head_seq) {
      chat.unread_count = win.items.filter((m) => m.seq > chat.read_up_to && m.sender_id !== this.me.id).length;
      return;
    }
    api.listChats(this.token()).then((list) => {
      const fresh = list.find((c) => c.id === chat.id);
      if (fresh) {
        chat.unread_count = fresh.unread_count;
        this.onChange({ chatId: chat.id });
      }
    }, () => {});
  }
}
