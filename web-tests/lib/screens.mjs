// Viewport screenshots for people to look at. Every run writes them to
// artifacts/screenshots/ (ignored by git); with UPDATE_SCREENSHOTS=1 they
// also replace the committed ones in screenshots/ (the README shows one).
// The times in them change with every run, so a normal test run must not
// dirty the tree.
import fs from 'node:fs';
import path from 'node:path';
import { WEB_TESTS } from './server.mjs';

export const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1'
  ? path.join(WEB_TESTS, 'screenshots')
  : path.join(WEB_TESTS, 'artifacts', 'screenshots');

/** `name` like "conversation-dark-wide"; returns the file written. */
export async function shoot(page, name) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  const file = path.join(SCREENSHOTS, `${name}.png`);
  // No caret blinking or animation mid-frame; fonts settled.
  await page.evaluate(() => document.fonts?.ready);
  await page.screenshot({ path: file, animations: 'disabled', caret: 'hide', scale: 'css' });
  return file;
}
