// The REST routes the page uses (seed and v2). Every failure becomes an
// ApiError whose message a person can read.

export class ApiError extends Error {
  /**
   * @param {number} status HTTP status, or 0 when the server was not reached
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const TIMEOUT_MS = 15_000;

/**
 * @param {string} method
 * @param {string} path
 * @param {{token?: string, body?: unknown}} [options]
 */
async function request(method, path, { token, body } = {}) {
  const headers = { Accept: 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch {
    throw new ApiError(0, 'The server cannot be reached. Check your connection and try again.');
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, explain(response.status, data));
  }
  return data;
}

function explain(status, data) {
  if (status === 429) return 'Too many requests. Wait a moment and try again.';
  if (status === 503) return 'The server is busy or its database is unreachable. Try again shortly.';
  if (status >= 500) return 'The server had a problem. Try again shortly.';
  const text = data && typeof data.error === 'string' ? data.error : `request failed (${status})`;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export const register = (username, password) =>
  request('POST', '/api/auth/register/', { body: { username, password } });

/** @returns {Promise<{token: string, user: {id: number, username: string}}>} */
export const login = (username, password) =>
  request('POST', '/api/auth/login/', { body: { username, password } });

export const searchUsers = (token, text, limit = 10) =>
  request('GET', `/api/users/?search=${encodeURIComponent(text)}&limit=${limit}`, { token });

/** The seed's chat list; its unread counts refresh ours after a read elsewhere. */
export const listChats = (token) => request('GET', '/api/chats/', { token });

export const createChat = (token, userId) =>
  request('POST', '/api/chats/create/', { token, body: { user_id: userId } });

/**
 * One page of a chat, oldest first (v2 paging).
 * @param {{before?: number, after?: number, limit?: number}} anchor
 */
export function fetchPage(token, chatId, { before, after, limit = 50 } = {}) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (before !== undefined) query.set('before', String(before));
  if (after !== undefined) query.set('after', String(after));
  return request('GET', `/api/chats/${chatId}/messages/?${query}`, { token });
}
