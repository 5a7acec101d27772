// Scenario 10: viewport screenshots of the login screen, the chat list and a
// conversation, light and dark, wide (1280x800) and narrow (360x740), into
// artifacts/screenshots/ (screenshots/ with UPDATE_SCREENSHOTS=1) for people to look at.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before } from 'node:test';
import { Api } from '../lib/api.mjs';
import { Harness, NARROW, WIDE } from '../lib/browser.mjs';
import { shoot } from '../lib/screens.mjs';
import { startServer } from '../lib/server.mjs';
import * as ui from '../lib/ui.mjs';

const h = new Harness('screenshots');
let server;
let api;
let alice;
let bob;

before(async () => {
  server = await startServer({ name: 'screenshots' });
  api = new Api(server.url);
  [alice, bob] = await Promise.all(['alice', 'bob'].map((n) => api.user(n)));
  const carol = await api.user('carol');
  const dave = await api.user('dave');
  const withCarol = await api.createChat(alice, carol);
  await api.post(carol, withCarol.id, 'Lunch on Friday?');
  const withDave = await api.createChat(alice, dave);
  await api.post(alice, withDave.id, 'Thanks for the slides!');
  await api.post(dave, withDave.id, 'Any time.');
  const withBob = await api.createChat(alice, bob);
  const lines = [
    [bob, 'Hi Alice! Did the deploy go out?'],
    [alice, 'It did, about ten minutes ago.'],
    [bob, 'Great. Any errors in the logs?'],
    [alice, 'None so far. The reconnect test passed too: every message arrived exactly once.'],
    [bob, 'Perfect!'],
    [bob, 'Shall we call it a day?'],
  ];
  for (const [who, body] of lines) await api.post(who, withBob.id, body);
  await h.setup(server);
});
after(() => h.teardown());

const written = [];

for (const colorScheme of ['light', 'dark']) {
  for (const [size, viewport] of [['wide', WIDE], ['narrow', NARROW]]) {
    h.scenario(`10. screenshots ${colorScheme} ${size}`, async () => {
      const a = await h.page('alice', { viewport, colorScheme });
      await ui.open(a, server);
      await ui.usernameInput(a).waitFor();
      written.push(await shoot(a, `login-${colorScheme}-${size}`));

      await ui.loginViaUI(a, null, alice);
      await ui.waitConnection(a, 'online');
      await ui.chatButton(a, bob.username).waitFor();
      if (size === 'narrow') written.push(await shoot(a, `chats-${colorScheme}-${size}`));

      await ui.openChat(a, bob.username);
      await ui.waitBodies(a, [
        'Hi Alice! Did the deploy go out?',
        'It did, about ten minutes ago.',
        'Great. Any errors in the logs?',
        'None so far. The reconnect test passed too: every message arrived exactly once.',
        'Perfect!',
        'Shall we call it a day?',
      ]);
      await ui.composer(a).fill('Yes, see you tomorrow');
      written.push(await shoot(a, `conversation-${colorScheme}-${size}`));
      for (const f of written) assert.ok(fs.statSync(f).size > 1000, `${f} is a real image`);
    });
  }
}
