// Chromium (Debian's, never a downloaded one) and the bookkeeping every
// scenario shares: per-page console and error capture, and on failure the
// server log's tail, each page's screenshot and its recent console lines.
import fs from 'node:fs';
import path from 'node:path';
import { inspect } from 'node:util';
import { test } from 'node:test';
import { chromium } from 'playwright-core';
import { ARTIFACTS } from './server.mjs';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
];

export const WIDE = { width: 1280, height: 800 };
export const NARROW = { width: 360, height: 740 };

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Polls `read` until `check(value)` is true; returns the value. On time-out
 * the error names `what` and shows the last value read (or the last error).
 */
export async function eventually(read, check, { timeout = 5000, interval = 100, what = 'condition' } = {}) {
  const start = Date.now();
  let last;
  let lastError;
  for (;;) {
    try {
      last = await read();
      lastError = undefined;
      if (await check(last)) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() - start > timeout) {
      const shown = inspect(last, { depth: 4, maxArrayLength: 60, maxStringLength: 300, breakLength: 120 });
      throw new Error(
        `timed out after ${timeout} ms waiting for ${what}\n  last value: ${shown}` +
          (lastError ? `\n  last error: ${lastError.message.split('\n')[0]}` : ''),
      );
    }
    await sleep(interval);
  }
}

/**
 * One browser per test file; `scenario()` wraps node:test's `test` so that a
 * failure prints what is needed to understand it.
 */
export class Harness {
  constructor(file) {
    this.file = file;
    this.browser = null;
    this.server = null;
    this.contexts = [];
    this.pages = [];
    this.notes = [];
  }

  async setup(server) {
    this.server = server;
    this.browser = await launch();
  }

  async teardown() {
    await this.closeContexts();
    if (this.browser) await this.browser.close().catch(() => {});
    if (this.server) await this.server.dispose().catch(() => {});
  }

  /** A fresh context (own storage, cookies, cache), fixed locale and zone. */
  async context(options = {}) {
    const ctx = await this.browser.newContext({
      viewport: WIDE,
      locale: 'en-US',
      timezoneId: 'UTC',
      deviceScaleFactor: 1,
      ...options,
    });
    ctx.setDefaultTimeout(8000);
    this.contexts.push(ctx);
    ctx.on('page', (p) => this.track(p, ctx));
    return ctx;
  }

  /** A page in a fresh context. `label` names it in failure output. */
  async page(label, options = {}) {
    const ctx = await this.context(options);
    const page = await ctx.newPage();
    page.label = label;
    return page;
  }

  track(page, ctx) {
    page.consoleLines = [];
    page.pageErrors = [];
    page.on('console', (m) => {
      page.consoleLines.push(`[${m.type()}] ${m.text()}`);
      if (page.consoleLines.length > 200) page.consoleLines.shift();
    });
    page.on('pageerror', (e) => page.pageErrors.push(e.stack || String(e)));
    this.pages.push(page);
  }

  async closeContexts() {
    const ctxs = this.contexts;
    this.contexts = [];
    this.pages = [];
    await Promise.all(ctxs.map((c) => c.close().catch(() => {})));
  }

  async dumpFailure(name) {
    const safe = name.replace(/[^a-z0-9]+/gi, '-').replace(/^-|-$/g, '').toLowerCase();
    const dir = path.join(ARTIFACTS, 'failures');
    fs.mkdirSync(dir, { recursive: true });
    const out = [];
    if (this.server) out.push(this.server.logTail(30));
    for (const [i, p] of this.pages.entries()) {
      const label = p.label || `page${i}`;
      if (!p.isClosed()) {
        const file = path.join(dir, `${safe}-${label}.png`);
        await p.screenshot({ path: file, timeout: 3000 }).catch(() => {});
        out.push(`screenshot of ${label} (${p.url()}): ${file}`);
      }
      if (p.pageErrors.length) out.push(`---- ${label}: uncaught page errors\n${p.pageErrors.join('\n')}`);
      if (p.consoleLines.length) out.push(`---- ${label}: last console lines\n${p.consoleLines.slice(-15).join('\n')}`);
    }
    console.error(`\n######## FAILED: ${name}\n${out.join('\n')}\n########\n`);
  }

  /**
   * A test with fresh contexts that are closed afterwards; uncaught errors in
   * any of its pages fail it too. Options: `timeout` (ms, default 60 s),
   * `todo` (a reason: a known page bug that should not fail the suite yet).
   */
  scenario(name, fn, { timeout = 60_000, todo } = {}) {
    // `todo: 'why'` marks a known page bug: the scenario still runs and
    // reports, but does not fail the suite (counted as ignored).
    test(name, { timeout, todo }, async (t) => {
      try {
        await fn(t);
        const errors = this.pages.flatMap((p) => p.pageErrors.map((e) => `${p.label}: ${e}`));
        if (errors.length) throw new Error(`uncaught errors in the page:\n${errors.join('\n')}`);
      } catch (e) {
        await this.dumpFailure(name);
        throw e;
      } finally {
        await this.closeContexts();
      }
    });
  }
}
