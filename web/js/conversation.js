// The open conversation: its log (a window of messages, paged in as the
// person scrolls), the typing line and the composer.

import { clockTime, dayKey, dayLabel, presenceText } from './format.js';
import { el } from './view.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

/** Within this many pixels of an edge counts as being at it. */
const EDGE_PX = 150;
const TYPING_REFRESH_MS = 3000;
const DRAFTS_KEY = 'chat.drafts';

const TICKS = {
  sending: ['🕓', 'Sending'],
  failed: ['!', 'Not sent'],
  sent: ['✓', 'Sent'],
  delivered: ['✓✓', 'Delivered'],
  read: ['✓✓', 'Read'],
};

export class Conversation {
  /** @param {import('./store.js').ChatStore} store */
  constructor(store) {
    this.store = store;
    this.chatId = /** @type {number | null} */ (null);
    this.log = $('log');
    this.list = $('messages');
    this.box = /** @type {HTMLTextAreaElement} */ ($('message'));
    /** @type {Map<string, HTMLLIElement>} */
    this.rows = new Map();
    this.lastTypingSent = 0;
    this.noticeTimer = 0;
    this.drafts = loadDrafts();

    this.log.onscroll = () => this.scrolled();
    $('to-latest').onclick = () => this.toLatest();
    $('composer').onsubmit = (event) => {
      event.preventDefault();
      this.submit();
    };
    this.box.onkeydown = (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    };
    this.box.oninput = () => this.typed();
    document.addEventListener('visibilitychange', () => this.maybeRead());
  }

  /** @param {number} chatId */
  async show(chatId) {
    if (this.chatId !== null) this.saveDraft();
    this.chatId = chatId;
    this.rows.clear();
    this.list.replaceChildren();
    $('empty-conversation').hidden = true;
    $('chat-view').hidden = false;
    $('composer-error').textContent = '';
    this.box.value = this.drafts[chatId] || '';
    this.resizeBox();
    this.render({ stickToBottom: true });
    this.box.focus();
    await this.store.open(chatId);
    if (this.chatId === chatId) this.render({ stickToBottom: true });
  }

  hide() {
    if (this.chatId !== null) this.saveDraft();
    this.chatId = null;
    this.rows.clear();
    this.list.replaceChildren();
    $('chat-view').hidden = true;
    $('empty-conversation').hidden = false;
  }

  notice(text) {
    const node = $('notice');
    node.textContent = text;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => { node.textContent = ''; }, 10_000);
  }

  // ---- rendering --------------------------------------------------------

  render({ stickToBottom = false } = {}) {
    const chat = this.chatId === null ? null : this.store.chats.get(this.chatId);
    if (!chat) return;
    const win = this.store.window(chat.id);
    const other = chat.other_user;
    $('chat-title').textContent = other.username;
    $('chat-presence').textContent = presenceText(other);
    this.log.setAttribute('aria-label', `Conversation with ${other.username}`);
    $('typing').textContent = chat.typing ? `${other.username} is typing…` : '';
    $('log-top').textContent = !win.loaded ? 'Loading…'
      : win.first > 1 ? (win.busy ? 'Loading older messages…' : '')
        : 'This is the start of your conversation.';
    $('to-latest').hidden = win.follows;

    const atBottom = stickToBottom || this.atBottom();
    const anchor = atBottom ? null : this.anchor();

    const wanted = [];
    let day = '';
    const addDay = (iso) => {
      const key = dayKey(iso);
      if (key === day) return;
      day = key;
      wanted.push([`d:${key}`, () => el('li', 'day', dayLabel(iso)), null]);
    };
    for (const m of win.items) {
      addDay(m.created);
      wanted.push([`m:${m.seq}`, () => this.messageRow(m), m]);
    }
    if (win.follows) {
      for (const item of this.store.outbox.forChat(chat.id)) {
        addDay(item.created);
        wanted.push([`o:${item.client_id}`, () => this.messageRow({ ...item, sender_id: this.store.me.id }), item]);
      }
    }
    this.patch(chat, wanted);

    if (atBottom) this.log.scrollTop = this.log.scrollHeight;
    else if (anchor) this.restore(anchor);
    win.pinned = this.atBottom();
    this.afterRender(chat, win);
  }

  /** Reuses rows by key; inserts, moves and removes only what changed. */
  patch(chat, wanted) {
    const keep = new Set();
    wanted.forEach(([key, make, message], index) => {
      keep.add(key);
      let row = this.rows.get(key);
      if (!row) {
        row = make();
        this.rows.set(key, row);
      }
      if (message && row.dataset.mine === 'true') this.updateStatus(chat, row, message);
      if (this.list.children[index] !== row) this.list.insertBefore(row, this.list.children[index] || null);
    });
    for (const [key, row] of this.rows) {
      if (!keep.has(key)) {
        row.remove();
        this.rows.delete(key);
      }
    }
  }

  messageRow(m) {
    const mine = m.sender_id === this.store.me.id;
    const row = el('li', `message${mine ? ' mine' : ''}`);
    row.dataset.mine = String(mine);
    if (m.seq !== undefined) row.dataset.seq = String(m.seq);
    if (m.client_id) row.dataset.clientId = m.client_id;
    const bubble = el('div', 'bubble');
    const body = el('p', 'body', m.body);
    body.dir = 'auto';
    const time = el('time', '', clockTime(m.created));
    time.dateTime = m.created;
    const meta = el('span', 'meta');
    meta.append(time);
    if (mine) meta.append(el('span', 'tick'));
    bubble.append(el('span', 'visually-hidden', mine ? 'You: ' : `${m.sender}: `), body, meta);
    row.append(bubble);
    return row;
  }

  updateStatus(chat, row, message) {
    const status = this.store.statusOf(chat, message);
    if (row.dataset.status === status) return;
    row.dataset.status = status;
    const tick = /** @type {HTMLElement} */ (row.querySelector('.tick'));
    const [glyph, words] = TICKS[status];
    tick.textContent = glyph;
    tick.setAttribute('aria-label', words);
    tick.title = words;
    row.querySelector('.failed')?.remove();
    if (status === 'failed') {
      const item = this.store.outbox.find(message.client_id);
      const box = el('div', 'failed');
      const retry = el('button', '', 'Retry');
      retry.type = 'button';
      retry.onclick = () => this.store.retry(message.client_id);
      const edit = el('button', '', 'Edit');
      edit.type = 'button';
      edit.onclick = () => {
        this.box.value = message.body;
        this.resizeBox();
        this.store.discard(message.client_id);
        this.box.focus();
      };
      const discard = el('button', '', 'Delete');
      discard.type = 'button';
      discard.onclick = () => this.store.discard(message.client_id);
      box.append(el('span', '', `Not sent: ${item?.error || 'refused'}`), retry, edit, discard);
      row.append(box);
    }
  }

  atBottom() {
    return this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
  }

  /** The first visible message row and where it is, to keep it in place. */
  anchor() {
    const top = this.log.scrollTop;
    // Messages only: a day separator moves when older messages of its day arrive.
    for (const row of this.list.querySelectorAll('.message')) {
      const r = /** @type {HTMLElement} */ (row);
      if (r.offsetTop + r.offsetHeight > top) return { row: r, offset: r.offsetTop - top };
    }
    return null;
  }

  restore({ row, offset }) {
    if (row.isConnected) this.log.scrollTop = row.offsetTop - offset;
  }

  afterRender(chat, win) {
    if (!win.loaded || win.busy) return;
    if (this.log.scrollHeight <= this.log.clientHeight + EDGE_PX && win.first > 1) {
      this.store.loadOlder(chat.id); // not enough to scroll yet
      return;
    }
    if (this.atBottom()) {
      if (this.store.trimOldest(chat.id)) {
        this.render({ stickToBottom: true });
        return;
      }
      this.maybeRead();
    }
  }

  maybeRead() {
    if (this.chatId === null || document.visibilityState !== 'visible') return;
    const win = this.store.window(this.chatId);
    if (win.follows && win.loaded && this.atBottom()) this.store.markRead(this.chatId);
  }

  scrolled() {
    if (this.chatId === null) return;
    const win = this.store.window(this.chatId);
    win.pinned = this.atBottom();
    if (!win.loaded || win.busy) return;
    if (this.log.scrollTop < EDGE_PX && win.first > 1) this.store.loadOlder(this.chatId);
    else if (this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < EDGE_PX && !win.follows) {
      this.store.loadNewer(this.chatId);
    } else if (this.atBottom()) this.maybeRead();
  }

  async toLatest() {
    if (this.chatId === null) return;
    await this.store.loadNewest(this.chatId);
    this.render({ stickToBottom: true });
  }

  // ---- composing --------------------------------------------------------

  submit() {
    if (this.chatId === null) return;
    const error = this.store.send(this.chatId, this.box.value);
    $('composer-error').textContent = error || '';
    if (error) return;
    this.box.value = '';
    this.resizeBox();
    this.lastTypingSent = 0;
    delete this.drafts[this.chatId];
    saveDrafts(this.drafts);
    if (!this.store.window(this.chatId).follows) this.toLatest();
    else this.render({ stickToBottom: true });
    this.box.focus();
  }

  typed() {
    this.resizeBox();
    $('composer-error').textContent = '';
    if (this.chatId === null) return;
    const now = Date.now();
    if (this.box.value === '') {
      if (this.lastTypingSent) this.store.typing(this.chatId, false);
      this.lastTypingSent = 0;
    } else if (now - this.lastTypingSent > TYPING_REFRESH_MS) {
      this.store.typing(this.chatId, true);
      this.lastTypingSent = now;
    }
    this.saveDraft();
  }

  resizeBox() {
    this.box.style.height = 'auto';
    this.box.style.height = `${Math.min(this.box.scrollHeight, 160)}px`;
  }

  saveDraft() {
    if (this.chatId === null) return;
    if (this.box.value) this.drafts[this.chatId] = this.box.value;
    else delete this.drafts[this.chatId];
    saveDrafts(this.drafts);
  }
}

function loadDrafts() {
  try {
    return JSON.parse(sessionStorage.getItem(DRAFTS_KEY) || '{}') || {};
  } catch {
    return {};
  }
}

function saveDrafts(drafts) {
  sessionStorage.setItem(DRAFTS_KEY, JSON.stringify(drafts));
}
