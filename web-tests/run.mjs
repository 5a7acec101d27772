#!/usr/bin/env node
// Runs the browser suite with node's test runner: the spec reporter on the
// terminal, TAP into artifacts/results.tap, and then a cargo-style summary
// line into target/test-logs/browser.log, which `make test` adds to its total:
//
//   test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 95.31s
//
// Usage: node run.mjs [test files...]   (default: every unit/*.test.mjs and tests/*.test.mjs)
//        BROWSER_TESTS=history,restart node run.mjs   (only those files)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const artifacts = path.join(here, 'artifacts');
fs.mkdirSync(artifacts, { recursive: true });
const tap = path.join(artifacts, 'results.tap');
const specLog = path.join(artifacts, 'results.txt');
const logDir = path.join(root, 'target', 'test-logs');
fs.mkdirSync(logDir, { recursive: true });
const browserLog = path.join(logDir, 'browser.log');

let files = process.argv.slice(2);
if (files.length === 0) {
  const only = (process.env.BROWSER_TESTS || '').split(',').map((s) => s.trim()).filter(Boolean);
  // unit/: the page's client logic without a browser (fast, first);
  // tests/: the scenarios in Chromium.
  files = ['unit', 'tests'].flatMap((dir) => fs
    .readdirSync(path.join(here, dir))
    .filter((f) => f.endsWith('.test.mjs'))
    .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
    .sort()
    .map((f) => path.join(dir, f)));
}

const started = Date.now();
const child = spawn(
  process.execPath,
  [
    '--test',
    // One file at a time: each has its own server and Chromium, and two
    // cores are better spent on one than on timing-sensitive pairs.
    ...(Number(process.versions.node.split('.')[0]) >= 20 ? ['--test-concurrency=1'] : []),
    '--test-reporter=spec', '--test-reporter-destination=stdout',
    '--test-reporter=tap', `--test-reporter-destination=${tap}`,
    ...files,
  ],
  { cwd: here, stdio: ['ignore', 'pipe', 'inherit'] },
);
const out = fs.createWriteStream(specLog);
child.stdout.on('data', (d) => {
  process.stdout.write(d);
  out.write(d);
});
const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
await new Promise((r) => out.end(r));

// The TAP summary's counters: "# pass N", "# fail N", "# skipped N", "# todo N", "# cancelled N".
const text = fs.existsSync(tap) ? fs.readFileSync(tap, 'utf8') : '';
const count = (name) => {
  const m = [...text.matchAll(new RegExp(`^# ${name} (\\d+)$`, 'gm'))].at(-1);
  return m ? Number(m[1]) : 0;
};
const passed = count('pass');
const failed = count('fail') + count('cancelled');
const ignored = count('skipped') + count('todo');
const seconds = ((Date.now() - started) / 1000).toFixed(2);
const ok = code === 0 && failed === 0 && passed > 0;
const line = `test result: ${ok ? 'ok' : 'FAILED'}. ${passed} passed; ${failed} failed; ${ignored} ignored; 0 measured; 0 filtered out; finished in ${seconds}s`;
fs.writeFileSync(browserLog, `${fs.readFileSync(specLog, 'utf8')}\n${line}\n`);
console.log(`\nbrowser suite (${files.length} file(s)): ${line}`);
if (!ok && failed === 0 && code !== 0) console.log(`node --test exited with ${code}`);
if (passed === 0 && failed === 0) console.log('no browser test ran');
process.exit(ok ? 0 : 1);
