/** the control plane's REST API, from the page's own origin; the session is an HttpOnly cookie */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}

let csrfToken = '';
let onLoggedOut: () => void = () => {};

/** the session's CSRF token, sent with every state-changing request (kept in memory only) */
export function setSession(token: string, loggedOut: () => void): void {
  csrfToken = token;
  onLoggedOut = loggedOut;
}

export type Query = Record<string, string | number | undefined | null>;

/** `path` with the query's non-empty values */
export function withQuery(path: string, query: Query = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query))
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/**
 * A JSON request. A 401 (the session ended or was revoked) brings back the login form; other
 * refusals throw ApiError with the API's message and hint.
 */
export async function api<T>(
  path: string,
  options: { method?: string; body?: unknown; query?: Query; signal?: AbortSignal } = {},
): Promise<T> {
  const method = options.method ?? 'GET';
  const headers: Record<string, string> = {};
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET') headers['x-csrf-token'] = csrfToken;
  const res = await fetch(withQuery(path, options.query), {
    method,
    headers,
    credentials: 'same-origin',
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (res.status === 204) return undefined as T;
  const answer = (await res.json().catch(() => ({}))) as { error?: string; hint?: string };
  if (!res.ok) {
    if (res.status === 401 && path !== '/api/v1/login') onLoggedOut();
    throw new ApiError(res.status, answer.error ?? `${method} ${path} answered ${res.status}`, answer.hint);
  }
  return answer as T;
}

/** the message to show for a failed request */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) return err.hint ? `${err.message} (${err.hint})` : err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}

export const snapshotUrl = (device: string, id: string) =>
  `/api/v1/devices/${encodeURIComponent(device)}/snapshots/${encodeURIComponent(id)}`;
