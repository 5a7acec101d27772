#!/usr/bin/env node
// The web client's numbers, each beside its target (`make bench-web`):
//
//   (a) bytes transferred for a cold first load of `/` (every response, as
//       the DevTools protocol counts them: encoded bodies plus headers);
//   (b) opening a conversation of BENCH_WEB_MESSAGES (100,000) messages:
//       history requests made (socket frames and REST pages) and `.message`
//       rows in the DOM;
//   (c) BENCH_WEB_LIVE (5,000) messages arriving live (another user posting
//       over REST) while that conversation is open: `.message` rows kept, the
//       worst main-thread stall meanwhile, and whether a click on the
//       composer is answered within a second afterwards.
//
// Not a test: it prints a table and exits 0 whether or not targets are met
// (exit 1 only if it could not measure). A fresh server of its own on a free
// loopback port and a temporary data directory.
import { Api } from './lib/api.mjs';
import { Harness, eventually, sleep } from './lib/browser.mjs';
import { startServer } from './lib/server.mjs';
import * as ui from './lib/ui.mjs';

const HISTORY = Number(process.env.BENCH_WEB_MESSAGES || 100_000);
const LIVE = Number(process.env.BENCH_WEB_LIVE || 5_000);
const rows = [];
const row = (name, value, target, met, note = '') => rows.push({ name, value: String(value), target, met, note });
const log = (s) => console.log(`# ${s}`);

const server = await startServer({ name: 'bench' });
const api = new Api(server.url);
const h = new Harness('bench');
await h.setup(server);

try {
  // ---- (a) first load --------------------------------------------------------
  {
    const page = await h.page('cold');
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const urls = new Map();
    const sizes = new Map();
    cdp.on('Network.responseReceived', (e) => urls.set(e.requestId, e.response.url));
    cdp.on('Network.loadingFinished', (e) => sizes.set(e.requestId, e.encodedDataLength));
    const bodyReads = [];
    page.on('response', (r) => bodyReads.push(r.body().then((b) => b.length, () => 0)));
    await page.goto(`${server.url}/`, { waitUntil: 'networkidle' });
    await ui.usernameInput(page).waitFor();
    await sleep(200);
    const bodies = (await Promise.all(bodyReads)).reduce((s, n) => s + n, 0);
    const total = [...sizes.values()].reduce((s, n) => s + n, 0);
    for (const [id, n] of sizes) log(`  ${String(n).padStart(7)}  ${urls.get(id)}`);
    row('first load bytes', total, '< 153600', total < 153600, `${sizes.size} responses; bodies decoded ${bodies} B`);
    await h.closeContexts();
  }

  // ---- (b) a 100,000-message conversation -------------------------------------
  const [alice, bob] = await Promise.all(['alice', 'bob'].map((n) => api.user(n)));
  const chat = await api.createChat(alice, bob);
  {
    const t = Date.now();
    log(`seeding ${HISTORY} messages over REST…`);
    await api.seed(bob, chat.id, HISTORY, {
      body: (i) => `history ${i + 1}: the quick brown fox jumps over the lazy dog`,
      concurrency: 64,
      onProgress: (n) => { if (n % 20000 === 0) log(`  ${n} stored (${Math.round(n / ((Date.now() - t) / 1000))}/s)`); },
    });
    log(`seeded ${HISTORY} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }
  const page = await h.page('alice');
  const frames = { history: 0, sent: {} };
  let restPages = 0;
  page.on('websocket', (ws) => ws.on('framesent', (f) => {
    try {
      const type = JSON.parse(f.payload).type;
      frames.sent[type] = (frames.sent[type] || 0) + 1;
      if (type === 'history') frames.history++;
    } catch { /* not JSON */ }
  }));
  page.on('request', (r) => { if (/\/api\/chats\/\d+\/messages\//.test(r.url()) && r.method() === 'GET') restPages++; });
  await ui.loginViaUI(page, server, alice);
  await ui.waitConnection(page, 'online');
  const before = { history: frames.history, rest: restPages };
  const t0 = Date.now();
  await ui.openChat(page, bob.username);
  await eventually(() => ui.readMessages(page), (r) => r?.some((m) => m.seq === HISTORY),
    { timeout: 15000, what: `the newest message (seq ${HISTORY}) shown` });
  const openMs = Date.now() - t0;
  await sleep(1500); // anything else it would fetch by itself
  const requests = frames.history - before.history + (restPages - before.rest);
  const domRows = (await ui.readMessages(page)).length;
  row(`open ${HISTORY}-message chat: history requests`, requests, '1 page', requests === 1,
    `${frames.history - before.history} socket, ${restPages - before.rest} REST; newest shown in ${openMs} ms`);
  row(`open ${HISTORY}-message chat: .message rows`, domRows, '<= 50', domRows <= 50);

  // ---- (c) 5,000 live messages --------------------------------------------------
  {
    let stall = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const t = Date.now();
        try {
          await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => r())));
        } catch {
          return;
        }
        stall = Math.max(stall, Date.now() - t);
        await sleep(100);
      }
    })();
    const t = Date.now();
    await api.seed(bob, chat.id, LIVE, { body: (i) => `live ${i + 1}`, concurrency: 16, prefix: 'live' });
    const postMs = Date.now() - t;
    const last = HISTORY + LIVE;
    // Until the newest arrives, or the log has not changed for 2 s.
    let previous = '';
    let sameSince = Date.now();
    let view;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await sleep(250)) {
      view = await page.evaluate(() => {
        const rows = document.querySelectorAll('[role="log"] li.message');
        const log = document.querySelector('[role="log"]');
        return {
          rows: rows.length,
          last: Number(rows[rows.length - 1]?.dataset.seq),
          fromBottom: Math.round(log.scrollHeight - log.scrollTop - log.clientHeight),
          jump: !document.getElementById('to-latest')?.hidden,
        };
      });
      if (view.last === last) break;
      const key = JSON.stringify(view);
      if (key !== previous) { previous = key; sameSince = Date.now(); }
      else if (Date.now() - sameSince > 2000) break;
    }
    const shownMs = Date.now() - t;
    sampling = false;
    await sampler;
    row(`after ${LIVE} live: newest shown`, view.last === last ? 'yes' : 'no', 'yes', view.last === last,
      view.last === last ? `after ${shownMs} ms`
        : `log stopped at seq ${view.last} of ${last}, ${view.fromBottom} px above its bottom${view.jump ? ', "Jump to the latest" shown' : ''}`);
    row(`after ${LIVE} live: .message rows`, view.rows, '<= 300', view.rows <= 300, `posted in ${postMs} ms`);
    row(`during ${LIVE} live: worst frame wait`, `${stall} ms`, '(info)', null);

    const c0 = Date.now();
    await ui.composer(page).click({ timeout: 5000 });
    await page.keyboard.type('x');
    await eventually(() => ui.composer(page).inputValue(), (v) => v.endsWith('x'), { timeout: 5000, interval: 20, what: 'the composer took the key' });
    const clickMs = Date.now() - c0;
    row('click answered after live burst', `${clickMs} ms`, '< 1000 ms', clickMs < 1000);
  }
} catch (e) {
  console.error(`bench-web could not finish: ${e.stack || e}\n${server.logTail(20)}`);
  process.exitCode = 1;
} finally {
  await h.teardown();
}

const w = (k) => Math.max(k.length, ...rows.map((r) => r[k].length));
const widths = { name: w('name'), value: w('value'), target: Math.max(6, ...rows.map((r) => r.target.length)) };
console.log('');
console.log(`${'web client'.padEnd(widths.name)}  ${'value'.padStart(widths.value)}  ${'target'.padEnd(widths.target)}  result`);
for (const r of rows) {
  const met = r.met === null ? '' : r.met ? 'met' : 'NOT MET';
  console.log(`${r.name.padEnd(widths.name)}  ${r.value.padStart(widths.value)}  ${r.target.padEnd(widths.target)}  ${met.padEnd(7)}  ${r.note}`);
}
if (HISTORY !== 100_000) console.log(`(history of ${HISTORY} messages, not 100,000: BENCH_WEB_MESSAGES)`);
