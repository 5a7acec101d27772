// Scenario 9: axe-core finds no serious or critical violation on the login
// screen, the chat list and an open conversation (light and dark).
import { after, before } from 'node:test';
import { Api } from '../lib/api.mjs';
import { scan } from '../lib/axe.mjs';
import { Harness, NARROW } from '../lib/browser.mjs';
import { startServer } from '../lib/server.mjs';
import * as ui from '../lib/ui.mjs';

const h = new Harness('a11y');
let server;
let api;
let alice;
let bob;

before(async () => {
  server = await startServer({ name: 'a11y' });
  api = new Api(server.url);
  [alice, bob] = await Promise.all(['alice9', 'bob9'].map((n) => api.user(n)));
  const chat = await api.createChat(alice, bob);
  await api.post(bob, chat.id, 'Hello, can you read this?');
  await api.post(alice, chat.id, 'Yes, loud and clear.');
  await api.post(bob, chat.id, 'Good.');
  await h.setup(server);
});
after(() => h.teardown());

for (const colorScheme of ['light', 'dark']) {
  h.scenario(`9. axe (${colorScheme}): login, chat list, conversation, login errors`, async () => {
    const a = await h.page('alice', { colorScheme });
    const problems = [];
    const assertAccessible = async (page, where) => { problems.push(await scan(page, where)); };
    await ui.open(a, server);
    await ui.usernameInput(a).waitFor();
    await assertAccessible(a, `the login screen (${colorScheme})`);

    // With field errors showing.
    await ui.loginButton(a).click();
    await assertAccessible(a, `the login screen with errors (${colorScheme})`);

    await ui.loginViaUI(a, null, alice);
    await ui.waitConnection(a, 'online');
    await ui.chatButton(a, bob.username).waitFor();
    await assertAccessible(a, `the chat list (${colorScheme})`);

    await ui.openChat(a, bob.username);
    await ui.waitBodies(a, ['Hello, can you read this?', 'Yes, loud and clear.', 'Good.']);
    await assertAccessible(a, `an open conversation (${colorScheme})`);

    await a.setViewportSize(NARROW);
    await assertAccessible(a, `an open conversation at 360 px (${colorScheme})`);
    await ui.backButton(a).click();
    await ui.chatButton(a, bob.username).waitFor();
    await assertAccessible(a, `the chat list at 360 px (${colorScheme})`);
    const found = problems.filter(Boolean);
    if (found.length) throw new Error(`serious or critical accessibility violations:\n${found.join('\n')}`);
  });
}
