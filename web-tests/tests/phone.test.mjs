// Scenario 8: a 360x740 phone. The chat list and the conversation take the
// screen one at a time; "Back to chats" returns to the list.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Api } from '../lib/api.mjs';
import { Harness, NARROW, eventually } from '../lib/browser.mjs';
import { startServer } from '../lib/server.mjs';
import * as ui from '../lib/ui.mjs';

const h = new Harness('phone');
let server;
let api;

before(async () => {
  server = await startServer({ name: 'phone' });
  api = new Api(server.url);
  await h.setup(server);
});
after(() => h.teardown());

async function noOverflow(page, where) {
  const o = await ui.horizontalOverflow(page);
  assert.ok(!o.overflows, `${where}: no horizontal overflow at 360 px (scrollWidth ${o.scrollWidth} > ${o.innerWidth})`);
}

h.scenario('8. phone viewport: log in, open a chat, send, back to chats', async () => {
  const [alice, bob] = await Promise.all(['alice8', 'bob8'].map((n) => api.user(n)));
  const chat = await api.createChat(alice, bob);
  await api.post(bob, chat.id, 'hi from bob');

  const a = await h.page('alice', { viewport: NARROW, hasTouch: true, isMobile: true });
  await ui.open(a, server);
  await noOverflow(a, 'login');
  await ui.loginViaUI(a, null, alice);
  await ui.waitConnection(a, 'online');

  await ui.chatButton(a, bob.username).waitFor();
  assert.ok(await ui.shown(ui.chatList(a)), 'the chat list is shown first');
  assert.ok(!(await ui.shown(ui.composer(a))), 'no composer on screen before a chat is opened');
  await noOverflow(a, 'chat list');

  await ui.chatButton(a, bob.username).tap();
  await ui.waitConversation(a, bob.username);
  await eventually(() => ui.shown(ui.chatList(a)), (v) => v === false, { timeout: 2000, what: 'the chat list hidden while the conversation is open' });
  assert.ok(await ui.shown(ui.backButton(a)), '"Back to chats" is on screen');
  assert.ok(await ui.shown(ui.composer(a)), 'the composer is on screen');
  await ui.waitBodies(a, ['hi from bob']);

  await ui.composer(a).tap();
  await ui.composer(a).fill('hi from my phone');
  await ui.sendButton(a).tap();
  await ui.waitBodies(a, ['hi from bob', 'hi from my phone']);
  assert.equal(await ui.composer(a).inputValue(), '', 'composer cleared');
  await noOverflow(a, 'conversation');
  const box = await ui.sendButton(a).boundingBox();
  assert.ok(box && box.x >= 0 && box.x + box.width <= 360, `the Send button fits on screen: ${JSON.stringify(box)}`);

  await ui.backButton(a).tap();
  await eventually(() => ui.shown(ui.chatList(a)), (v) => v === true, { timeout: 2000, what: 'the chat list shown after "Back to chats"' });
  assert.ok(!(await ui.shown(ui.composer(a))), 'the conversation is hidden after "Back to chats"');
  const stored = (await api.page(bob, chat.id)).messages.map((m) => m.body);
  assert.deepEqual(stored, ['hi from bob', 'hi from my phone']);
});
