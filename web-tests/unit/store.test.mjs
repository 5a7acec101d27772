// Unit tests of the page's client logic (web/js/store.js), without a
// browser: a fake socket, a fake REST server, an in-memory sessionStorage.
// The browser scenarios (../tests) prove the same end to end; these pin the
// rules of the message window (no gap, no duplicate) case by case.

import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

globalThis.sessionStorage = {
  data: new Map(),
  getItem(k) { return this.data.has(k) ? this.data.get(k) : null; },
  setItem(k, v) { this.data.set(k, String(v)); },
  removeItem(k) { this.data.delete(k); },
};

const { ChatStore, MessageWindow } = await import('../../web/js/store.js');
const { newClientId } = await import('../../web/js/format.js');

const ME = { id: 1, username: 'alice' };
const BOB = { id: 2, username: 'bob' };

function message(seq, sender = BOB, chatId = 10) {
  return {
    id: 1000 + seq, chat_id: chatId, seq, sender_id: sender.id, sender: sender.username,
    body: `m${seq}`, created: new Date(Date.UTC(2026, 11, 1, 10, 0, seq)).toISOString(), client_id: `k${seq}`,
  };
}

function chatState(head, overrides = {}) {
  return {
    id: 10, created: '2026-12-01T09:00:00.000Z',
    other_user: { id: BOB.id, username: BOB.username, online: true, last_seen: null },
    head_seq: head, last_message: head ? message(head) : null,
    read_up_to: 0, other_read_up_to: 0, delivered_up_to: 0, other_delivered_up_to: 0,
    unread_count: head, ...overrides,
  };
}

/** A REST server holding messages 1..head of chat 10; records what was asked. */
function fakeServer(head) {
  const asked = [];
  globalThis.fetch = async (url) => {
    const u = new URL(url, 'http://x');
    asked.push(u.search);
    const limit = Number(u.searchParams.get('limit'));
    const after = u.searchParams.get('after');
    const before = u.searchParams.get('before');
    let seqs = [];
    if (after !== null) for (let s = Number(after) + 1; s <= head.value && seqs.length < limit; s++) seqs.push(s);
    else {
      const top = before !== null ? Number(before) - 1 : head.value;
      for (let s = top; s >= 1 && seqs.length < limit; s--) seqs.unshift(s);
    }
    const body = {
      messages: seqs.map((s) => message(s)), head_seq: head.value,
      has_more_before: seqs.length ? seqs[0] > 1 : false,
      has_more_after: seqs.length ? seqs.at(-1) < head.value : false,
    };
    return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
  return asked;
}

function fakeSocket() {
  return { online: true, sent: [], send(frame) { if (!this.online) return false; this.sent.push(frame); return true; } };
}

function newStore(socket = fakeSocket()) {
  const changes = [];
  const store = new ChatStore({ me: ME, token: () => 't', connection: socket, onChange: (c) => changes.push(c) });
  return { store, socket, changes };
}

const seqs = (win) => win.items.map((m) => m.seq);

beforeEach(() => sessionStorage.data.clear());

test('a window appends only the next seq and drains what arrived early', () => {
  const win = new MessageWindow();
  win.append([message(1), message(2)]);
  win.append([message(2), message(4)]); // a duplicate, then a gap
  assert.deepEqual(seqs(win), [1, 2]);
  win.early.set(4, message(4));
  win.early.set(5, message(5));
  win.append([message(3)]);
  assert.deepEqual(seqs(win), [1, 2, 3, 4, 5]);
  assert.equal(win.early.size, 0);
  win.prepend([message(1)]);
  assert.deepEqual(seqs(win), [1, 2, 3, 4, 5]);
});

test('opening a chat loads one page, the newest', async () => {
  const head = { value: 100_000 };
  const asked = fakeServer(head);
  const { store } = newStore();
  store.applyHello({ chats: [chatState(head.value)], limits: { max_message_chars: 4096 } });
  await store.open(10);
  const win = store.window(10);
  assert.equal(win.items.length, 50);
  assert.equal(win.last, 100_000);
  assert.deepEqual(asked, ['?limit=50']);
});

test('catch-up after a reconnect pages from the last held seq, with live messages in between, no gap, no duplicate', async () => {
  const head = { value: 60 };
  fakeServer(head);
  const { store } = newStore();
  store.applyHello({ chats: [chatState(60)], limits: { max_message_chars: 4096 } });
  await store.open(10);
  assert.deepEqual([store.window(10).first, store.window(10).last], [11, 60]);

  // Offline: 70 more are stored. Reconnect: hello says 130; one arrives live.
  head.value = 130;
  store.applyHello({ chats: [chatState(130)], limits: { max_message_chars: 4096 } });
  head.value = 131;
  store.addMessage(message(131));
  while (store.window(10).busy) await store.window(10).busy;

  const got = seqs(store.window(10));
  assert.equal(got.at(-1), 131);
  got.forEach((s, i) => i && assert.equal(s, got[i - 1] + 1, `gap or duplicate at ${s}`));
});

test('a reconnect far behind reloads the newest page instead of paging everything', async () => {
  const head = { value: 60 };
  const asked = fakeServer(head);
  const { store } = newStore();
  store.applyHello({ chats: [chatState(60)], limits: { max_message_chars: 4096 } });
  await store.open(10);
  head.value = 5000;
  store.applyHello({ chats: [chatState(5000)], limits: { max_message_chars: 4096 } });
  await store.open(10);
  assert.equal(store.window(10).last, 5000);
  assert.equal(store.window(10).items.length, 50);
  assert.equal(asked.length, 2);
});

test('scrolling up past the window drops the newest rows, and the window stops following', async () => {
  const head = { value: 1000 };
  fakeServer(head);
  const { store } = newStore();
  store.applyHello({ chats: [chatState(1000)], limits: { max_message_chars: 4096 } });
  await store.open(10);
  for (let i = 0; i < 8; i++) await store.loadOlder(10);
  const win = store.window(10);
  assert.ok(win.items.length <= 300, `${win.items.length}`);
  assert.equal(win.follows, false);
  store.addMessage(message(1001)); // live, while reading old ones: not added
  assert.ok(win.last < 1001);
  assert.equal(store.chats.get(10).head_seq, 1001);
  head.value = 1001;
  while (!win.follows) await store.loadNewer(10);
  assert.equal(win.last, 1001);
});

test('a send is queued, sent once, removed by its ack; offline it waits for the next hello', () => {
  const { store, socket } = newStore();
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 4096 } });
  socket.online = false;
  assert.equal(store.send(10, 'hi'), null);
  assert.equal(socket.sent.length, 0);
  const [queued] = store.outbox.items;
  assert.equal(store.statusOf(store.chats.get(10), queued), 'sending');

  socket.online = true;
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 4096 } });
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 4096 } }); // in flight: not again
  assert.deepEqual(socket.sent.filter((f) => f.type === 'send').map((f) => f.client_id), [queued.client_id]);

  const stored = { ...message(1, ME), client_id: queued.client_id, body: 'hi' };
  store.applyFrame({ type: 'ack', client_id: queued.client_id, duplicate: false, message: stored });
  assert.equal(store.outbox.items.length, 0);
  const chat = store.chats.get(10);
  assert.equal(store.statusOf(chat, stored), 'sent');
  store.applyFrame({ type: 'delivered', chat_id: 10, user_id: BOB.id, up_to: 1 });
  assert.equal(store.statusOf(chat, stored), 'delivered');
  store.applyFrame({ type: 'read', chat_id: 10, user_id: BOB.id, up_to: 1 });
  assert.equal(store.statusOf(chat, stored), 'read');
});

test('a lost socket puts in-flight messages back in the queue; the outbox survives a reload', () => {
  const { store, socket } = newStore();
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 4096 } });
  store.send(10, 'one');
  store.connectionLost();
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 4096 } });
  const sends = socket.sent.filter((f) => f.type === 'send');
  assert.equal(sends.length, 2);
  assert.equal(sends[0].client_id, sends[1].client_id, 'the same client_id: the server keeps one');

  const reloaded = newStore();
  assert.deepEqual(reloaded.store.outbox.items.map((m) => m.body), ['one']);
});

test('refusals: a rate limit keeps the message queued, too_long marks it failed with words', () => {
  const { store, changes } = newStore();
  store.applyHello({ chats: [chatState(0)], limits: { max_message_chars: 10 } });
  assert.match(store.send(10, 'x'.repeat(11)), /11 characters; the limit is 10/);
  assert.equal(store.send(10, '   '), 'Type a message first.');
  assert.equal(store.outbox.items.length, 0, 'refused before queueing, the text stays in the box');

  store.send(10, 'a');
  store.send(10, 'b');
  const [a, b] = store.outbox.items;
  store.applyFrame({ type: 'error', code: 'rate_limited', message: 'slow down', client_id: a.client_id });
  assert.equal(store.statusOf(store.chats.get(10), a), 'sending');
  assert.match(changes.at(-1).notice, /faster than the server allows/);
  store.applyFrame({ type: 'error', code: 'too_long', message: 'too long', client_id: b.client_id });
  assert.equal(store.statusOf(store.chats.get(10), b), 'failed');
  assert.equal(store.outbox.find(b.client_id).error, 'The message is too long.');
});

test('unread: counted for live messages, cleared by my read on any device', () => {
  const { store } = newStore();
  store.applyHello({ chats: [chatState(2, { unread_count: 2 })], limits: { max_message_chars: 4096 } });
  store.addMessage(message(3));
  assert.equal(store.chats.get(10).unread_count, 3);
  store.addMessage(message(3)); // again (a page and an event): counted once
  assert.equal(store.chats.get(10).unread_count, 3);
  store.applyFrame({ type: 'read', chat_id: 10, user_id: ME.id, up_to: 3 });
  assert.equal(store.chats.get(10).unread_count, 0);
  store.applyFrame({ type: 'read', chat_id: 10, user_id: ME.id, up_to: 1 }); // cursors never go back
  assert.equal(store.chats.get(10).read_up_to, 3);
});

test('typing shows until the typer sends, and chats sort by their latest activity', () => {
  const { store } = newStore();
  const other = { ...chatState(0), id: 11, created: '2026-12-01T11:00:00.000Z' };
  store.applyHello({ chats: [other, chatState(5)], limits: { max_message_chars: 4096 } });
  assert.deepEqual(store.sortedChats().map((c) => c.id), [11, 10]);
  store.applyFrame({ type: 'typing', chat_id: 10, user_id: BOB.id, active: true });
  assert.equal(store.chats.get(10).typing, true);
  store.addMessage({ ...message(6), created: '2026-12-01T12:00:00.000Z' });
  assert.equal(store.chats.get(10).typing, false);
  assert.deepEqual(store.sortedChats().map((c) => c.id), [10, 11]);
});

test('client ids are valid retry keys and grow with time', () => {
  const ids = Array.from({ length: 50 }, () => newClientId());
  for (const id of ids) assert.match(id, /^[!-~]{1,64}$/);
  assert.equal(new Set(ids).size, ids.length);
  assert.ok(ids[0].slice(0, 9) <= ids.at(-1).slice(0, 9));
});
