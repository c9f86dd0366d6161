// Client-side routes under /console: the API answers every /console/* path with the app, and
// the app picks the page from the path.

import { useEffect, useState } from "preact/hooks";

export const BASE = "/console";

export type Route =
  | { page: "live" }
  | { page: "rooms" }
  | { page: "room"; id: number }
  | { page: "recordings" }
  | { page: "orders" }
  | { page: "health" }
  | { page: "audit" }
  | { page: "not-found" };

export function parse(pathname: string): Route {
  const rest = pathname.startsWith(BASE) ? pathname.slice(BASE.length) : pathname;
  const parts = rest.split("/").filter(Boolean);
  if (parts.length === 0) return { page: "live" };
  const [first, second] = parts;
  if (parts.length === 1) {
    switch (first) {
      case "rooms":
        return { page: "rooms" };
      case "recordings":
        return { page: "recordings" };
      case "orders":
        return { page: "orders" };
      case "health":
        return { page: "health" };
      case "audit":
        return { page: "audit" };
    }
  }
  if (parts.length === 2 && first === "rooms" && second && /^[1-9][0-9]*$/.test(second)) {
    return { page: "room", id: Number(second) };
  }
  return { page: "not-found" };
}

export function href(path: string): string {
  return path === "/" ? BASE : `${BASE}${path}`;
}

export function navigate(path: string): void {
  const url = href(path);
  if (location.pathname !== url) history.pushState(null, "", url);
  window.dispatchEvent(new Event("livegate:navigate"));
}

/** The current route, following links and the back button. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.pathname));
  useEffect(() => {
    const update = () => setRoute(parse(location.pathname));
    window.addEventListener("popstate", update);
    window.addEventListener("livegate:navigate", update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener("livegate:navigate", update);
    };
  }, []);
  return route;
}

/** A link inside the console that changes the page without a reload. */
export function onLinkClick(event: MouseEvent, path: string): void {
  if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
    return;
  }
  event.preventDefault();
  navigate(path);
}
