// axe-core run inside the page. Its source is evaluated as a script through
// the DevTools protocol, which the page's CSP (script-src 'self') does not
// govern, unlike a <script> tag we would inject.
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const BLOCKING = ['serious', 'critical'];

export async function runAxe(page) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      helpUrl: v.helpUrl,
      nodes: v.nodes.map((n) => ({ target: n.target.join(' '), html: n.html.slice(0, 200), summary: n.failureSummary })),
    }));
  });
}

export function formatViolations(where, violations) {
  return violations
    .map((v) => {
      const nodes = v.nodes
        .slice(0, 6)
        .map((n) => `      - ${n.target}\n        ${n.html}\n        ${(n.summary || '').replace(/\n/g, '\n        ')}`)
        .join('\n');
      const more = v.nodes.length > 6 ? `\n      … and ${v.nodes.length - 6} more` : '';
      return `  [${v.impact}] ${v.id}: ${v.help} (${v.nodes.length} element(s))\n${nodes}${more}`;
    })
    .join('\n')
    .replace(/^/, `axe on ${where}:\n`);
}

/**
 * Scans `page`; prints minor violations; returns the serious/critical ones
 * formatted ('' when there are none), so a scenario can scan every screen
 * before failing.
 */
export async function scan(page, where) {
  const violations = await runAxe(page);
  const blocking = violations.filter((v) => BLOCKING.includes(v.impact));
  const minor = violations.filter((v) => !BLOCKING.includes(v.impact));
  if (minor.length) console.log(`# (not failing) ${formatViolations(where, minor).replace(/\n/g, '\n# ')}`);
  return blocking.length ? formatViolations(where, blocking) : '';
}

/** Fails on serious or critical violations; prints the minor ones. */
export async function assertAccessible(page, where) {
  const problems = await scan(page, where);
  if (problems) throw new Error(problems);
}
