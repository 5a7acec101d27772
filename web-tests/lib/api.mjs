// REST helpers for seeding and checking data fast, without the page.
let counter = 0;

/** A client_id that grows with time (what the server's index prefers). */
export function clientId(prefix = 't') {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${process.pid.toString(36)}-${counter.toString().padStart(7, '0')}`;
}

export class ApiError extends Error {
  constructor(method, url, status, body) {
    super(`${method} ${url} -> ${status} ${body}`);
    this.status = status;
    this.body = body;
  }
}

export class Api {
  constructor(baseUrl) {
    this.baseUrl = baseUrl;
  }

  async call(method, route, { body, token, ok = [200, 201], timeout = 10_000 } = {}) {
    const headers = { 'content-type': 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    const res = await fetch(this.baseUrl + route, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(timeout),
    });
    const text = await res.text();
    if (!ok.includes(res.status)) throw new ApiError(method, route, res.status, text);
    return text ? JSON.parse(text) : null;
  }

  register(username, password) {
    return this.call('POST', '/api/auth/register/', { body: { username, password }, ok: [201] });
  }

  /** -> {token, user: {id, username}} */
  login(username, password) {
    return this.call('POST', '/api/auth/login/', { body: { username, password } });
  }

  /** Registers and logs in: {token, id, username, password}. */
  async user(username, password = 'correct horse battery') {
    await this.register(username, password);
    const { token, user } = await this.login(username, password);
    return { token, id: user.id, username: user.username, password };
  }

  createChat(user, other) {
    return this.call('POST', '/api/chats/create/', { token: user.token, body: { user_id: other.id } });
  }

  chats(user) {
    return this.call('GET', '/api/chats/', { token: user.token });
  }

  post(user, chatId, body, cid = clientId('rest')) {
    return this.call('POST', `/api/chats/${chatId}/messages/`, {
      token: user.token,
      body: { body, client_id: cid },
      ok: [201, 200],
    });
  }

  /** One page: {messages, has_more_before, has_more_after, head_seq}. */
  page(user, chatId, query = 'limit=200') {
    return this.call('GET', `/api/chats/${chatId}/messages/?${query}`, { token: user.token });
  }

  /** The whole history, oldest first, paged forward 200 at a time. */
  async history(user, chatId) {
    const all = [];
    let after = 0;
    for (;;) {
      const p = await this.page(user, chatId, `after=${after}&limit=200`);
      all.push(...p.messages);
      if (!p.has_more_after || p.messages.length === 0) return all;
      after = p.messages[p.messages.length - 1].seq;
    }
  }

  /**
   * Posts `count` messages as `user`, `concurrency` requests in flight at
   * once; body(i) makes the i-th body (0-based). Retries a 429/503 after a
   * pause with the same client_id (so nothing is stored twice).
   */
  async seed(user, chatId, count, { body = (i) => `seed ${i + 1}`, concurrency = 20, prefix = 'seed', onProgress } = {}) {
    let next = 0;
    let done = 0;
    const stamp = Date.now().toString(36);
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= count) return;
        const cid = `${prefix}-${stamp}-${String(i).padStart(7, '0')}`;
        for (let attempt = 0; ; attempt++) {
          try {
            await this.post(user, chatId, body(i), cid);
            break;
          } catch (e) {
            // 429/503, a time-out, or the connection closed under the request
            // (fetch's TypeError): safe to repeat with the same client_id.
            const transient = e.status === 429 || e.status === 503 || e.name === 'TimeoutError' || e.name === 'TypeError';
            if (attempt < 20 && transient) {
              this.retries = (this.retries || 0) + 1;
              if (this.retries <= 3) console.log(`# seed: retrying ${cid} after ${e.cause?.message || e.message}`);
              await new Promise((r) => setTimeout(r, 100 * (attempt + 1)));
              continue;
            }
            throw e;
          }
        }
        done++;
        if (onProgress && done % 1000 === 0) onProgress(done);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }
}
