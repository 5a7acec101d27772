// Scenario 4: a 1,000-message history opens as one window and pages in, in
// order, without gaps or duplicates, as the log is scrolled to the top.
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { Api } from '../lib/api.mjs';
import { Harness, eventually } from '../lib/browser.mjs';
import { startServer } from '../lib/server.mjs';
import * as ui from '../lib/ui.mjs';

const TOTAL = 1000;
const h = new Harness('history');
let server;
let api;

before(async () => {
  server = await startServer({ name: 'history' });
  api = new Api(server.url);
  await h.setup(server);
});
after(() => h.teardown());

h.scenario('4. a 1,000-message history: a window of rows, scrolled up to message 1 in order, no gaps or duplicates', async () => {
  const [alice, bob] = await Promise.all(['alice4', 'bob4'].map((n) => api.user(n)));
  const chat = await api.createChat(alice, bob);
  const started = Date.now();
  // Bodies name their seq-independent index; which seq each gets is read back.
  await api.seed(bob, chat.id, TOTAL, { body: (i) => `history message #${i + 1}`, concurrency: 20 });
  const stored = await api.history(alice, chat.id);
  assert.equal(stored.length, TOTAL, 'seeded messages stored');
  const bodyOf = new Map(stored.map((m) => [m.seq, m.body]));
  console.log(`# seeded ${TOTAL} messages in ${Date.now() - started} ms`);

  const a = await h.page('alice');
  await ui.loginViaUI(a, server, alice);
  await ui.openChat(a, bob.username);

  // The newest message is shown first, in a bounded window.
  const first = await eventually(() => ui.readMessages(a), (rows) => rows?.some((r) => r.seq === TOTAL),
    { what: `alice: the newest message (seq ${TOTAL}) in the log` });
  assert.ok(first.length <= 100, `opening shows at most ~50-100 rows, got ${first.length}`);
  console.log(`# rows on open: ${first.length}`);

  // Scroll up until seq 1 arrives, collecting every row seen on the way
  // (the DOM window may drop rows at the bottom meanwhile).
  const seen = new Map();
  let maxRows = 0;
  let pages = 0;
  const collect = (rows, what) => {
    ui.assertOrdered(rows, what);
    maxRows = Math.max(maxRows, rows.length);
    for (const r of rows) {
      assert.notEqual(r.seq, null, `${what}: a history row without data-seq`);
      const prev = seen.get(r.seq);
      if (prev !== undefined) assert.equal(r.body, prev, `${what}: seq ${r.seq} changed its body`);
      seen.set(r.seq, r.body);
    }
    return Math.min(...rows.map((r) => r.seq));
  };
  let lowest = collect(first, 'on open');
  while (lowest > 1) {
    await ui.scrollLogToTop(a);
    const before = lowest;
    const rows = await eventually(() => ui.readMessages(a), (rows) => rows && Math.min(...rows.map((r) => r.seq)) < before,
      { timeout: 5000, what: `alice: rows older than seq ${before} after scrolling the log to the top (page ${pages + 1})` });
    lowest = collect(rows, `after page ${++pages}`);
    assert.ok(pages <= 60, 'paging ends');
  }
  console.log(`# reached seq 1 after ${pages} page(s); most rows at once: ${maxRows}`);
  assert.ok(maxRows <= 400, `the DOM window stays bounded while paging: ${maxRows} rows at once`);

  const seqs = [...seen.keys()].sort((x, y) => x - y);
  assert.equal(seqs.length, TOTAL, `every seq seen once: ${seqs.length} distinct`);
  assert.deepEqual([seqs[0], seqs.at(-1)], [1, TOTAL]);
  for (let i = 0; i < seqs.length; i++) assert.equal(seqs[i], i + 1, `no gap: expected seq ${i + 1}, next seen ${seqs[i]}`);
  for (const [seq, body] of seen) assert.equal(body, bodyOf.get(seq), `seq ${seq}'s body matches the server's`);
  const distinctBodies = new Set(seen.values());
  assert.equal(distinctBodies.size, TOTAL, 'no body shown at two seqs');
});

h.scenario('4b. 1,000 live messages in a burst while at the bottom: the log follows to the newest, rows stay bounded', async () => {
  const [alice, bob] = await Promise.all(['alice4b', 'bob4b'].map((n) => api.user(n)));
  const chat = await api.createChat(alice, bob);
  await api.seed(bob, chat.id, 60, { body: (i) => `before ${i + 1}` });
  const a = await h.page('alice');
  await ui.loginViaUI(a, server, alice);
  await ui.openChat(a, bob.username);
  await eventually(() => ui.readMessages(a), (rows) => rows?.at(-1)?.seq === 60, { what: 'alice: seq 60 shown' });

  // A slower device (6x CPU throttling, a low-end phone): frames take
  // longer, so more messages arrive between two renders. (With a page that
  // drops its oldest rows while following, this passes in about 2.5 s.)
  const throttle = Number(process.env.BURST_CPU_THROTTLE || 6);
  if (throttle > 1) {
    const cdp = await a.context().newCDPSession(a);
    await cdp.send('Emulation.setCPUThrottlingRate', { rate: throttle });
  }
  const LIVE = 1000;
  await api.seed(bob, chat.id, LIVE, { body: (i) => `live ${i + 1}`, concurrency: 16, prefix: 'live' });
  const last = 60 + LIVE;
  const view = () => a.evaluate(() => {
    const log = document.querySelector('[role="log"]');
    const rows = [...log.querySelectorAll('li.message')];
    return {
      rows: rows.length,
      first: Number(rows[0]?.dataset.seq),
      last: Number(rows.at(-1)?.dataset.seq),
      pxAboveBottom: Math.round(log.scrollHeight - log.scrollTop - log.clientHeight),
    };
  });
  const end = await eventually(view, (v) => v.last === last && v.pxAboveBottom < 40,
    { timeout: 15000, what: `alice (who never scrolled): the log at its bottom showing the newest message, seq ${last}` });
  assert.ok(end.rows <= 300, `rows bounded after the burst: ${end.rows}`);
  const rows = await ui.readMessages(a);
  ui.assertOrdered(rows, 'after the burst');
  for (let i = 1; i < rows.length; i++) assert.equal(rows[i].seq, rows[i - 1].seq + 1, `contiguous rows: ${rows[i - 1].seq} then ${rows[i].seq}`);
});
