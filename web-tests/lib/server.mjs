// A chat-server of our own per test file: a free loopback port, a fresh data
// directory (SQLite), short typing/presence timers, its output in
// web-tests/artifacts/. kill() + start() restarts it on the same port with the
// same data, which is what the page must survive (it reconnects to its origin).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const WEB_TESTS = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const ROOT = path.resolve(WEB_TESTS, '..');
export const ARTIFACTS = path.join(WEB_TESTS, 'artifacts');

export function serverBinary() {
  if (process.env.CHAT_SERVER_BIN) return path.resolve(process.env.CHAT_SERVER_BIN);
  let target = process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target');
  if (!path.isAbsolute(target)) target = path.join(ROOT, target);
  return path.join(target, 'release', 'chat-server');
}

/** A port nothing listens on right now: bind port 0, read it, release it. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Servers still running when this process ends (a crash, an interrupt, a
// test runner's time-out) are killed with it, never left behind.
const running = new Set();
process.on('exit', () => {
  for (const p of running) p.kill('SIGKILL');
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    for (const p of running) p.kill('SIGKILL');
    process.exit(128 + { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 }[signal]);
  });
}

export class ChatServer {
  constructor({ name = 'server', env = {} } = {}) {
    this.name = name;
    this.extraEnv = env;
    this.bin = serverBinary();
    this.proc = null;
    this.port = null;
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `chat-web-${name}-`));
    this.logFile = path.join(ARTIFACTS, `${name}.server.log`);
    fs.writeFileSync(this.logFile, '');
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Starts (or restarts, on the same port and data) and waits until it answers. */
  async start() {
    if (this.proc) throw new Error('server already running');
    if (!fs.existsSync(this.bin)) {
      throw new Error(`no server binary at ${this.bin}: run \`cargo build --release --bin chat-server\``);
    }
    if (this.port == null) this.port = await freePort();
    const fd = fs.openSync(this.logFile, 'a');
    fs.writeSync(fd, `\n==== ${new Date().toISOString()} start on port ${this.port}, data ${this.dataDir}\n`);
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      CHAT_ADDR: `127.0.0.1:${this.port}`,
      CHAT_DATA_DIR: this.dataDir,
      CHAT_JWT_SECRET: 'web-tests-secret-0123456789abcdefghijklmn', // 40 characters
      CHAT_TYPING_TTL: '2s',
      CHAT_PRESENCE_GRACE: '1s',
      CHAT_METRICS_ADDR: 'off', // test files run side by side: no fixed port
      RUST_LOG: 'warn',
      ...this.extraEnv,
    };
    const proc = spawn(this.bin, [], { env, stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
    this.proc = proc;
    running.add(proc);
    proc.exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
    proc.exited.then(() => {
      running.delete(proc);
      if (this.proc === proc) this.proc = null;
    });

    // Up = any HTTP answer from a REST route (401 without a token is fine).
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (this.proc !== proc) {
        throw new Error(`chat-server exited during start-up\n${this.logTail()}`);
      }
      try {
        const res = await fetch(`${this.url}/api/users/`, { signal: AbortSignal.timeout(1000) });
        await res.arrayBuffer();
        return this;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) {
        await this.kill();
        throw new Error(`chat-server did not answer on ${this.url} within 20 s\n${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  /** SIGKILL, and wait until the process is gone (the port is then closed). */
  async kill() {
    const proc = this.proc;
    if (!proc) return;
    proc.kill('SIGKILL');
    await proc.exited;
  }

  /** SIGTERM, then SIGKILL after 5 s. */
  async stop() {
    const proc = this.proc;
    if (!proc) return;
    proc.kill('SIGTERM');
    let timer;
    const done = await Promise.race([
      proc.exited,
      new Promise((r) => { timer = setTimeout(() => r(null), 5000); }),
    ]);
    clearTimeout(timer);
    if (!done) {
      proc.kill('SIGKILL');
      await proc.exited;
    }
  }

  async restart() {
    await this.kill();
    await this.start();
  }

  /** Stops and removes the data directory (the log stays in artifacts/). */
  async dispose() {
    await this.stop();
    fs.rmSync(this.dataDir, { recursive: true, force: true });
  }

  logTail(lines = 40) {
    try {
      const text = fs.readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
      return `---- last ${Math.min(lines, text.length)} lines of ${this.logFile}\n${text.slice(-lines).join('\n')}\n----`;
    } catch (e) {
      return `(no server log: ${e.message})`;
    }
  }
}

export async function startServer(opts) {
  const s = new ChatServer(opts);
  await s.start();
  return s;
}
