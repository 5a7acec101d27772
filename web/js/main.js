// Starts the page: the login form, or (with a saved session) the chat
// client: one v2 socket, the store, the chat list and the conversation.
//
// The session (token and user) is kept in localStorage so that a reload or
// a new tab stays logged in, as people expect of a chat; the page's strict
// Content-Security-Policy and text-only rendering are what keep a script
// from reading it. Unsent messages and drafts are kept per tab, in
// sessionStorage.

import * as api from './api.js';
import { Connection } from './connection.js';
import { Conversation } from './conversation.js';
import { ChatStore } from './store.js';
import { ChatList, showConnection, showLogin } from './view.js';

const SESSION_KEY = 'chat.session';
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));

function savedSession() {
  try {
    const session = JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
    return session && typeof session.token === 'string' && session.user ? session : null;
  } catch {
    return null;
  }
}

function login(message = '') {
  showLogin((session) => {
    localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    startClient(session);
  }, message);
}

/** @param {{token: string, user: {id: number, username: string}}} session */
function startClient(session) {
  $('login').hidden = true;
  $('app').hidden = false;
  $('me').textContent = session.user.username;

  const chatFromHash = () => {
    const match = /^#chat-(\d+)$/.exec(location.hash);
    return match ? Number(match[1]) : null;
  };
  let openId = /** @type {number | null} */ (null);
  let renderQueued = false;
  const changed = new Set();

  const connection = new Connection({
    token: () => session.token,
    onHello: (hello) => {
      store.applyHello(hello);
      const wanted = chatFromHash();
      if (openId === null && wanted !== null && store.chats.has(wanted)) open(wanted);
    },
    onFrame: (frame) => store.applyFrame(frame),
    onState: (state, retryInMs) => {
      showConnection(state, retryInMs);
      if (state === 'online') return;
      store.connectionLost();
      const unsent = store.outbox.items.length;
      if (state === 'offline' && unsent) {
        conversation.notice(`No connection to the server. ${unsent === 1 ? 'Your message is' : `${unsent} messages are`} kept and will be sent when it is back.`);
      }
    },
    onAuthExpired: () => {
      stop();
      localStorage.removeItem(SESSION_KEY);
      login('Your session has ended: log in again. Messages you had not sent yet are kept and will be sent.');
    },
    tokenStillValid: async () => {
      try {
        await api.searchUsers(session.token, '', 1);
        return true;
      } catch (error) {
        return error.status !== 401;
      }
    },
  });

  const store = new ChatStore({
    me: session.user,
    token: () => session.token,
    connection,
    onChange: ({ chatId, notice }) => {
      if (notice) conversation.notice(notice);
      changed.add(chatId ?? 'all');
      if (!renderQueued) {
        renderQueued = true;
        // A hidden tab gets no animation frames, but its title (the unread
        // count) should still change.
        if (document.hidden) setTimeout(render, 100);
        else requestAnimationFrame(render);
      }
    },
  });
  const conversation = new Conversation(store);
  const list = new ChatList(store, (chatId) => open(chatId));

  function render() {
    if (!renderQueued) return;
    renderQueued = false;
    list.render();
    if (openId !== null && (changed.has('all') || changed.has(openId))) conversation.render();
    changed.clear();
    const unread = store.totalUnread();
    document.title = unread ? `(${unread}) Chat` : 'Chat';
  }

  function open(chatId) {
    openId = chatId;
    history.replaceState(null, '', `#chat-${chatId}`);
    document.body.classList.add('in-conversation');
    list.setOpen(chatId);
    conversation.show(chatId);
  }

  function close() {
    const was = openId;
    openId = null;
    history.replaceState(null, '', location.pathname);
    document.body.classList.remove('in-conversation');
    conversation.hide();
    list.setOpen(null);
    if (was !== null) list.focusChat(was);
  }

  function stop() {
    connection.stop();
    close();
    $('back').onclick = null;
    $('logout').onclick = null;
  }

  $('back').onclick = close;
  $('logout').onclick = () => {
    const unsent = store.outbox.items.length;
    if (unsent && !confirm(`${unsent} message${unsent > 1 ? 's have' : ' has'} not been sent yet. Log out and discard ${unsent > 1 ? 'them' : 'it'}?`)) return;
    store.outbox.clear();
    stop();
    localStorage.removeItem(SESSION_KEY);
    login();
  };
  conversation.hide();
  connection.start();
}

const session = savedSession();
if (session) startClient(session);
else login();
