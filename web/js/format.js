// Small pure helpers: ids, dates and times as people read them.

const DEVICE_KEY = 'chat.device';

/** A random id for this tab, kept across reloads (sessionStorage). */
function deviceId() {
  let id = sessionStorage.getItem(DEVICE_KEY);
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(6));
    id = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
    sessionStorage.setItem(DEVICE_KEY, id);
  }
  return id;
}

let counter = 0;

/**
 * A retry key for one message: time first, so the server's index of keys
 * grows at its end (docs/protocol.md), then this tab, then a counter.
 * @returns {string}
 */
export function newClientId() {
  counter += 1;
  return `${Date.now().toString(36).padStart(9, '0')}-${deviceId()}-${counter.toString(36)}`;
}

const DAY_MS = 86_400_000;

function startOfDay(date) {
  return new Date(date.getFullYear(), date.getMonth(), date.getDate()).getTime();
}

/** "Today", "Yesterday", or the date, for a day separator. */
export function dayLabel(iso, now = new Date()) {
  const date = new Date(iso);
  const days = Math.round((startOfDay(now) - startOfDay(date)) / DAY_MS);
  if (days === 0) return 'Today';
  if (days === 1) return 'Yesterday';
  const sameYear = date.getFullYear() === now.getFullYear();
  return date.toLocaleDateString(undefined, {
    weekday: 'long', day: 'numeric', month: 'long', year: sameYear ? undefined : 'numeric',
  });
}

/** The local calendar day of a timestamp, to know where a separator goes. */
export function dayKey(iso) {
  const d = new Date(iso);
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

/** "10:45" in the person's locale. */
export function clockTime(iso) {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' });
}

/** A chat list's time: the clock today, the weekday this week, else the date. */
export function shortTime(iso, now = new Date()) {
  const date = new Date(iso);
  const days = Math.round((startOfDay(now) - startOfDay(date)) / DAY_MS);
  if (days === 0) return clockTime(iso);
  if (days < 7) return date.toLocaleDateString(undefined, { weekday: 'short' });
  return date.toLocaleDateString(undefined, { day: 'numeric', month: 'short' });
}

/** "online", "last seen 5 min ago", "last seen Yesterday at 10:45", ... */
export function presenceText(user, now = new Date()) {
  if (user.online) return 'online';
  if (!user.last_seen) return 'offline';
  const minutes = Math.floor((now.getTime() - new Date(user.last_seen).getTime()) / 60_000);
  if (minutes < 1) return 'last seen just now';
  if (minutes < 60) return `last seen ${minutes} min ago`;
  return `last seen ${dayLabel(user.last_seen, now)} at ${clockTime(user.last_seen)}`;
}

/** At most `max` characters of a body on one line, for a preview. */
export function preview(body, max = 80) {
  const line = body.replace(/\s+/g, ' ').trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}
