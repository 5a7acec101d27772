// The page's contract, as locators and readers. Everything here follows the
// contract in README.md; nothing depends on class names beyond those it lists.
import assert from 'node:assert/strict';
import { eventually } from './browser.mjs';

export const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---- login screen -----------------------------------------------------------

export const usernameInput = (page) => page.getByLabel('Username', { exact: true });
export const passwordInput = (page) => page.getByLabel('Password', { exact: true });
export const loginButton = (page) => page.getByRole('button', { name: 'Log in', exact: true });
export const registerButton = (page) => page.getByRole('button', { name: 'Register', exact: true });
export const logoutButton = (page) => page.getByRole('button', { name: 'Log out', exact: true });

export async function open(page, server) {
  await page.goto(`${server.url}/`);
}

/** The text of every role=alert element, joined. */
export const alertText = (page) => page.evaluate(() =>
  [...document.querySelectorAll('[role="alert"]')].map((e) => e.textContent.trim()).join(' ').trim());

export async function waitLoggedIn(page, timeout = 8000) {
  await logoutButton(page).waitFor({ state: 'visible', timeout });
}

export async function loginViaUI(page, server, user) {
  if (server) await open(page, server);
  await usernameInput(page).fill(user.username);
  await passwordInput(page).fill(user.password);
  await loginButton(page).click();
  await waitLoggedIn(page);
}

/**
 * Registers through the form. If the page does not log in by itself after
 * registering, logs in with the same fields; returns whether it did
 * (`{autoLogin}`), which the report notes.
 */
export async function registerViaUI(page, server, user) {
  if (server) await open(page, server);
  await usernameInput(page).fill(user.username);
  await passwordInput(page).fill(user.password);
  const answered = page.waitForResponse((r) => r.url().includes('/api/auth/register/'), { timeout: 8000 });
  await registerButton(page).click();
  const res = await answered;
  assert.equal(res.status(), 201, `registering ${user.username} through the form answered ${res.status()}`);
  try {
    await waitLoggedIn(page, 3000);
    return { autoLogin: true };
  } catch {
    if (await loginButton(page).isVisible()) {
      if ((await usernameInput(page).inputValue()) !== user.username) await usernameInput(page).fill(user.username);
      if ((await passwordInput(page).inputValue()) !== user.password) await passwordInput(page).fill(user.password);
      await loginButton(page).click();
    }
    await waitLoggedIn(page);
    return { autoLogin: false };
  }
}

// ---- main screen ------------------------------------------------------------

export const connection = (page) => page.locator('#connection');
export const connectionState = (page) => connection(page).getAttribute('data-state', { timeout: 2000 });

export async function waitConnection(page, state, timeout = 8000) {
  return eventually(
    () => page.evaluate(() => {
      const el = document.getElementById('connection');
      return el ? { state: el.dataset.state, text: el.textContent.trim(), role: el.getAttribute('role') } : null;
    }),
    (v) => v && (Array.isArray(state) ? state.includes(v.state) : v.state === state),
    { timeout, what: `${page.label}: #connection data-state ${state}` },
  );
}

/**
 * Records every data-state the #connection element takes from now on (a
 * MutationObserver, so short-lived states are not missed); read with
 * connectionHistory().
 */
export async function watchConnection(page) {
  await page.evaluate(() => {
    window.__connStates = [];
    const note = () => {
      const el = document.getElementById('connection');
      const s = el ? `${el.dataset.state}|${el.textContent.trim()}` : 'missing';
      if (window.__connStates[window.__connStates.length - 1] !== s) window.__connStates.push(s);
    };
    note();
    new MutationObserver(note).observe(document.documentElement, {
      subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ['data-state'],
    });
  });
}

export const connectionHistory = (page) => page.evaluate(() => window.__connStates || []);

export const searchBox = (page) => page.getByRole('searchbox', { name: 'Find people' });
export const startChatButton = (page, username) =>
  page.getByRole('button', { name: `Start a chat with ${username}`, exact: true });

export const chatList = (page) => page.getByRole('list', { name: 'Chats', exact: true });
/** The chat list's entry for a chat with `username` (its name starts with it). */
export const chatButton = (page, username) =>
  chatList(page).getByRole('button', { name: new RegExp(`^${escapeRe(username)}(?![\\w@.+-])`) });

export async function startChatViaSearch(page, username) {
  await searchBox(page).fill(username);
  await startChatButton(page, username).click();
  await waitConversation(page, username);
}

export const conversationHeading = (page, username) =>
  page.getByRole('heading', { level: 2, name: username });

export async function waitConversation(page, username, timeout = 8000) {
  await conversationHeading(page, username).first().waitFor({ state: 'visible', timeout });
  await page.getByRole('log').waitFor({ state: 'attached', timeout });
}

export async function openChat(page, username) {
  await chatButton(page, username).click();
  await waitConversation(page, username);
}

/** The chat list as the page shows it: names, badges, presence, in order. */
export function readChatList(page) {
  return page.evaluate(() => {
    const ul = [...document.querySelectorAll('ul[aria-label]')].find((u) => u.getAttribute('aria-label') === 'Chats');
    if (!ul) return null;
    return [...ul.querySelectorAll(':scope > li')].map((li) => {
      const b = li.querySelector('button');
      const badge = li.querySelector('.badge');
      const presence = li.querySelector('.presence');
      return {
        text: (b?.getAttribute('aria-label') || b?.textContent || '').trim().replace(/\s+/g, ' '),
        badge: badge ? { text: badge.textContent.trim(), count: badge.dataset.count } : null,
        online: presence ? presence.dataset.online : undefined,
      };
    });
  });
}

export const typingIndicator = (page) => page.locator('.typing').first();
export const typingText = (page) =>
  page.evaluate(() => (document.querySelector('.typing')?.textContent ?? null));

// ---- the log ------------------------------------------------------------------

/** Every message row in the DOM, in DOM order. */
export function readMessages(page) {
  return page.evaluate(() => {
    const log = document.querySelector('[role="log"]');
    if (!log) return null;
    return [...log.querySelectorAll('li.message')].map((li) => ({
      seq: li.hasAttribute('data-seq') ? Number(li.getAttribute('data-seq')) : null,
      clientId: li.getAttribute('data-client-id'),
      mine: li.getAttribute('data-mine'),
      status: li.getAttribute('data-status'),
      body: li.querySelector('.body')?.textContent ?? null,
    }));
  });
}

export const bodies = (rows) => (rows || []).map((r) => r.body);

/** Checks the rows' seqs are strictly increasing (no duplicate, in order). */
export function assertOrdered(rows, what) {
  const seqs = rows.filter((r) => r.seq != null).map((r) => r.seq);
  for (let i = 1; i < seqs.length; i++) {
    assert.ok(seqs[i] > seqs[i - 1], `${what}: data-seq not strictly increasing in DOM order: ${seqs.join(',')}`);
  }
  const ids = rows.map((r) => r.clientId).filter(Boolean);
  assert.equal(new Set(ids).size, ids.length, `${what}: a data-client-id appears twice: ${ids.join(',')}`);
}

/** Waits until the log's bodies are exactly `expected` (in order), then checks order. */
export async function waitBodies(page, expected, { timeout = 8000, what } = {}) {
  const rows = await eventually(
    () => readMessages(page),
    (rows) => rows && JSON.stringify(bodies(rows)) === JSON.stringify(expected),
    { timeout, what: what || `${page.label}: the log's bodies to be exactly ${JSON.stringify(expected).slice(0, 300)}` },
  );
  assertOrdered(rows, page.label);
  return rows;
}

export const backButton = (page) => page.getByRole('button', { name: 'Back to chats', exact: true });

export const composer = (page) => page.getByLabel('Message', { exact: true });
export const sendButton = (page) => page.getByRole('button', { name: 'Send', exact: true });

/** Types `text` into the composer and presses Enter. */
export async function sendViaEnter(page, text) {
  const box = composer(page);
  await box.fill(text);
  await box.press('Enter');
}

export async function scrollLogToTop(page) {
  // As a person would: the log's scroll position goes to 0, which fires a
  // real scroll event. If it already is 0 (nothing was prepended yet), it
  // first moves 1 px down, a frame apart, so that the move to 0 is a scroll.
  await page.evaluate(async () => {
    const log = document.querySelector('[role="log"]');
    const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
    if (log.scrollTop === 0) {
      log.scrollTop = 1;
      await frame();
    }
    log.scrollTop = 0;
    await frame();
  });
}

/** True when the page is wider than its viewport (a horizontal scrollbar). */
export function horizontalOverflow(page) {
  return page.evaluate(() => ({
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: window.innerWidth,
    overflows: document.documentElement.scrollWidth > window.innerWidth,
  }));
}

/** Visible and at least partly inside the viewport. */
export async function shown(locator) {
  if ((await locator.count()) === 0) return false;
  const first = locator.first();
  if (!(await first.isVisible())) return false;
  return first.evaluate((el) => {
    const r = el.getBoundingClientRect();
    return r.width > 0 && r.height > 0 && r.right > 0 && r.bottom > 0 && r.left < innerWidth && r.top < innerHeight;
  });
}
