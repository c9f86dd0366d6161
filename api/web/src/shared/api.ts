// JSON calls to the room API under /api/v1 with the session's access token: one retry after a
// refresh when the API answers 401, errors as `ApiError` from the API's envelope.

import { accessToken, errorOf } from "./session";

export { ApiError } from "./session";

type Method = "GET" | "POST" | "PUT" | "PATCH" | "DELETE";

export interface CallOptions {
  body?: unknown;
  signal?: AbortSignal;
  /** Send no token even when logged in. */
  anonymous?: boolean;
}

async function send(method: Method, path: string, options: CallOptions, token: string | null): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (token) headers.Authorization = `Bearer ${token}`;
  const init: RequestInit = { method, headers };
  if (options.signal) init.signal = options.signal;
  if (options.body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body);
  }
  return fetch(`/api/v1${path}`, init);
}

/** Calls the API; resolves with the decoded body (`undefined` for 204). */
export async function call<T>(method: Method, path: string, options: CallOptions = {}): Promise<T> {
  let token = options.anonymous ? null : await accessToken();
  let response = await send(method, path, options, token);
  if (response.status === 401 && token) {
    token = await accessToken(true);
    if (token) response = await send(method, path, options, token);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const get = <T>(path: string, options?: CallOptions) => call<T>("GET", path, options);
export const post = <T>(path: string, body?: unknown, options?: CallOptions) =>
  call<T>("POST", path, { ...options, body });
export const put = <T>(path: string, body?: unknown) => call<T>("PUT", path, { body });
export const patch = <T>(path: string, body?: unknown) => call<T>("PATCH", path, { body });
export const del = <T>(path: string) => call<T>("DELETE", path);

/** `?a=1&b=2` of the given entries that are set; empty when none is. */
export function query(params: Record<string, string | number | boolean | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
