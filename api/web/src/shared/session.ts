// The login session both pages share (same origin): the access JWT in memory and the refresh
// token in localStorage, so that a reload or a second tab stays logged in. Refreshes are
// deduplicated: two requests that both find the token stale wait for one refresh.

export type Role = "viewer" | "streamer" | "admin";

export interface User {
  id: number;
  username: string;
  role: Role;
}

interface Stored {
  access_token: string;
  /** Unix milliseconds at which the access token stops being accepted. */
  access_expires_at: number;
  refresh_token: string;
  user: User;
}

interface SessionAnswer {
  access_token: string;
  expires_in: number;
  refresh_token: string;
  user: User;
}

const STORAGE_KEY = "livegate.session";
/** Refresh this long before the access token runs out, so a request never carries a dying one. */
const REFRESH_MARGIN_MS = 30_000;

type Listener = (user: User | null) => void;

let current: Stored | null = load();
let refreshing: Promise<Stored | null> | null = null;
const listeners = new Set<Listener>();

function load(): Stored | null {
  try {
    const text = localStorage.getItem(STORAGE_KEY);
    if (!text) return null;
    const value = JSON.parse(text) as Stored;
    return typeof value.refresh_token === "string" && value.user ? value : null;
  } catch {
    return null;
  }
}

function store(next: Stored | null): void {
  current = next;
  if (next) localStorage.setItem(STORAGE_KEY, JSON.stringify(next));
  else localStorage.removeItem(STORAGE_KEY);
  for (const listener of listeners) listener(next?.user ?? null);
}

function fromAnswer(answer: SessionAnswer): Stored {
  return {
    access_token: answer.access_token,
    access_expires_at: Date.now() + answer.expires_in * 1000,
    refresh_token: answer.refresh_token,
    user: answer.user,
  };
}

/** The logged-in user, if any. */
export function currentUser(): User | null {
  return current?.user ?? null;
}

/** Calls `listener` whenever the user logs in or out (also from another tab). */
export function onSessionChange(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY) {
    current = load();
    for (const listener of listeners) listener(current?.user ?? null);
  }
});

/** An error answer of the API, in its envelope's terms. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** Reads the API's error envelope (or makes one up for a non-JSON answer). */
export async function errorOf(response: Response): Promise<ApiError> {
  try {
    const body = (await response.json()) as { error?: { code?: string; message?: string; field?: string } };
    if (body.error) {
      return new ApiError(
        response.status,
        body.error.code ?? "error",
        body.error.message ?? response.statusText,
        body.error.field,
      );
    }
  } catch {
    // Not JSON: fall through to the status line.
  }
  return new ApiError(response.status, "error", `${response.status} ${response.statusText}`.trim());
}

/** Logs in; the session is kept for later requests. */
export async function logIn(username: string, password: string): Promise<User> {
  const response = await fetch("/api/v1/sessions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ username, password }),
  });
  if (!response.ok) throw await errorOf(response);
  const stored = fromAnswer((await response.json()) as SessionAnswer);
  store(stored);
  return stored.user;
}

/** Logs out here and revokes the session at the API. */
export async function logOut(): Promise<void> {
  const refresh = current?.refresh_token;
  store(null);
  if (refresh) {
    await fetch("/api/v1/sessions", {
      method: "DELETE",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ refresh_token: refresh }),
    }).catch(() => undefined);
  }
}

async function refresh(stale: Stored): Promise<Stored | null> {
  const response = await fetch("/api/v1/sessions/refresh", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ refresh_token: stale.refresh_token }),
  });
  if (response.status === 401 || response.status === 400) {
    // Revoked, expired or reused elsewhere: the session is over.
    if (current?.refresh_token === stale.refresh_token) store(null);
    return null;
  }
  if (!response.ok) throw await errorOf(response);
  const next = fromAnswer((await response.json()) as SessionAnswer);
  store(next);
  return next;
}

/**
 * A valid access token, refreshed first when it is about to run out; `null` when logged out.
 * `force` refreshes even a fresh-looking one (after the API refused it).
 */
export async function accessToken(force = false): Promise<string | null> {
  const session = current;
  if (!session) return null;
  if (!force && session.access_expires_at - Date.now() > REFRESH_MARGIN_MS) {
    return session.access_token;
  }
  if (!refreshing) {
    refreshing = refresh(session).finally(() => {
      refreshing = null;
    });
  }
  const next = await refreshing;
  return next?.access_token ?? null;
}
