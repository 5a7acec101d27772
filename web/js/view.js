// The login form, the header and the chat list with its people search.
// Everything a person typed or a server sent is put in the page with
// textContent, never as HTML.

import * as api from './api.js';
import { preview, presenceText, shortTime } from './format.js';

/** @param {string} tag @param {string} [className] @param {string} [text] */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

// ---- login ------------------------------------------------------------------

/**
 * Shows the login form until the person logs in or registers.
 * @param {(session: {token: string, user: {id: number, username: string}}) => void} onSession
 * @param {string} [message] shown above the form (why they are here again)
 */
export function showLogin(onSession, message = '') {
  $('app').hidden = true;
  $('login').hidden = false;
  document.title = 'Chat: log in';
  const form = /** @type {HTMLFormElement} */ ($('login-form'));
  const username = /** @type {HTMLInputElement} */ ($('username'));
  const password = /** @type {HTMLInputElement} */ ($('password'));
  const formError = $('login-error');
  formError.textContent = message;

  const fieldError = (input, text) => {
    $(`${input.id}-error`).textContent = text;
    input.setAttribute('aria-invalid', text ? 'true' : 'false');
  };
  const clear = () => {
    fieldError(username, '');
    fieldError(password, '');
    formError.textContent = '';
  };
  /** Puts the server's words next to the field they are about. */
  const show = (error) => {
    const text = error.message;
    const lower = text.toLowerCase();
    if (lower.includes('username') && !lower.includes('password')) fieldError(username, text);
    else if (lower.includes('password') && !lower.includes('username')) fieldError(password, text);
    else formError.textContent = text;
    (username.getAttribute('aria-invalid') === 'true' ? username : password).focus();
  };
  const validate = () => {
    let ok = true;
    if (!username.value) {
      fieldError(username, 'Enter a username.');
      ok = false;
    }
    if (!password.value) {
      fieldError(password, 'Enter a password.');
      ok = false;
    }
    if (!ok) (username.value ? password : username).focus();
    return ok;
  };
  const submit = async (registering) => {
    clear();
    if (!validate()) return;
    if (registering && password.value.length < 8) {
      fieldError(password, 'Password must be at least 8 characters long.');
      password.focus();
      return;
    }
    for (const button of form.querySelectorAll('button')) button.disabled = true;
    try {
      if (registering) await api.register(username.value, password.value);
      const session = await api.login(username.value, password.value);
      password.value = '';
      form.onsubmit = null;
      $('register').onclick = null;
      onSession(session);
    } catch (error) {
      show(error);
    } finally {
      for (const button of form.querySelectorAll('button')) button.disabled = false;
    }
  };
  form.onsubmit = (event) => {
    event.preventDefault();
    submit(false);
  };
  $('register').onclick = () => submit(true);
  username.focus();
}

// ---- header -----------------------------------------------------------------

const CONNECTION_WORDS = {
  online: 'Connected',
  connecting: 'Connecting…',
  offline: 'Offline: reconnecting…',
};

/** @param {'online' | 'connecting' | 'offline'} state @param {number} [retryInMs] */
export function showConnection(state, retryInMs) {
  const node = $('connection');
  node.dataset.state = state;
  node.textContent = state === 'offline' && retryInMs
    ? `Offline: reconnecting in ${Math.max(1, Math.round(retryInMs / 1000))} s…`
    : CONNECTION_WORDS[state];
}

// ---- chat list --------------------------------------------------------------

export class ChatList {
  /**
   * @param {import('./store.js').ChatStore} store
   * @param {(chatId: number) => void} onOpen
   */
  constructor(store, onOpen) {
    this.store = store;
    this.onOpen = onOpen;
    this.list = $('chats');
    this.list.replaceChildren();
    /** @type {Map<number, HTMLLIElement>} */
    this.items = new Map();
    this.openId = /** @type {number | null} */ (null);
    this.search = new PeopleSearch(store, onOpen);
  }

  render() {
    const chats = this.store.sortedChats();
    $('no-chats').hidden = chats.length > 0;
    chats.forEach((chat, index) => {
      let item = this.items.get(chat.id);
      if (!item) {
        item = el('li');
        const button = el('button', 'chat');
        button.type = 'button';
        button.addEventListener('click', () => this.onOpen(chat.id));
        item.append(button);
        this.items.set(chat.id, item);
      }
      this.fill(/** @type {HTMLButtonElement} */ (item.firstChild), chat);
      // Move only what moved: moving a focused button would blur it.
      if (this.list.children[index] !== item) {
        const focused = document.activeElement;
        this.list.insertBefore(item, this.list.children[index] || null);
        if (focused instanceof HTMLElement && item.contains(focused)) focused.focus();
      }
    });
  }

  /**
   * The button's text is its accessible name (no aria-label, so what is
   * seen is what is heard): the username first, then presence, time, the
   * last message and the unread count, with a few words only for ears.
   */
  fill(button, chat) {
    const other = chat.other_user;
    const presence = presenceText(other);
    const last = chat.last_message;
    const mine = last && last.sender_id === this.store.me.id;
    const lastText = chat.typing ? 'typing…' : last ? `${mine ? 'You: ' : ''}${preview(last.body)}` : 'Nothing written yet';
    const unread = chat.unread_count;
    if (chat.id === this.openId) button.setAttribute('aria-current', 'true');
    else button.removeAttribute('aria-current');

    const dot = el('span', 'presence');
    dot.dataset.online = String(other.online);
    dot.setAttribute('aria-hidden', 'true');
    const when = el('time', 'when', last ? shortTime(last.created) : '');
    if (last) when.dateTime = last.created;
    const parts = [
      dot,
      el('span', 'name', other.username),
      el('span', 'visually-hidden', ', '),
      el('span', 'seen', presence),
      el('span', 'visually-hidden', ', '),
      when,
      el('span', `last${chat.typing ? ' is-typing' : ''}`, lastText),
    ];
    if (unread > 0) {
      const badge = el('span', 'badge', unread > 99 ? '99+' : String(unread));
      badge.dataset.count = String(unread);
      parts.push(el('span', 'visually-hidden', ', '), badge, el('span', 'visually-hidden', ' unread'));
    }
    button.replaceChildren(...parts);
  }

  /** @param {number | null} chatId */
  setOpen(chatId) {
    this.openId = chatId;
    this.render();
  }

  focusChat(chatId) {
    /** @type {HTMLElement | undefined} */ (this.items.get(chatId)?.firstChild)?.focus();
  }
}

class PeopleSearch {
  constructor(store, onOpen) {
    this.store = store;
    this.onOpen = onOpen;
    this.input = /** @type {HTMLInputElement} */ ($('find'));
    this.results = $('found');
    this.status = $('found-status');
    this.timer = 0;
    this.asked = 0;
    this.input.value = '';
    this.results.replaceChildren();
    this.input.oninput = () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.find(), 200);
    };
    this.input.onkeydown = (event) => {
      if (event.key === 'Escape') this.reset();
    };
  }

  reset() {
    this.input.value = '';
    this.results.replaceChildren();
    this.status.textContent = '';
  }

  async find() {
    const text = this.input.value.trim();
    const asked = ++this.asked;
    if (!text) {
      this.reset();
      return;
    }
    try {
      const users = await api.searchUsers(this.store.token(), text);
      if (asked !== this.asked) return; // a newer search is on its way
      this.status.textContent = users.length ? `${users.length} found` : `Nobody matches “${text}”.`;
      this.results.replaceChildren(...users.map((user) => {
        const button = el('button', 'person');
        button.type = 'button';
        button.append(el('span', 'visually-hidden', 'Start a chat with '), el('span', 'name', user.username));
        button.addEventListener('click', () => this.start(user, button));
        const item = el('li');
        item.append(button);
        return item;
      }));
    } catch (error) {
      if (asked === this.asked) this.status.textContent = error.message;
    }
  }

  async start(user, button) {
    button.disabled = true;
    try {
      const chat = await api.createChat(this.store.token(), user.id);
      if (!this.store.chats.has(chat.id)) {
        // The `chat` event may still be on its way (or the socket is down).
        this.store.mergeChat({
          id: chat.id, created: chat.created,
          other_user: { id: user.id, username: user.username, online: false, last_seen: null },
          head_seq: 0, last_message: null, read_up_to: 0, other_read_up_to: 0,
          delivered_up_to: 0, other_delivered_up_to: 0, unread_count: 0,
        });
      }
      this.reset();
      this.onOpen(chat.id);
    } catch (error) {
      this.status.textContent = error.message;
      button.disabled = false;
    }
  }
}
