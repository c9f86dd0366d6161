// The console's frame: the login gate, the navigation (admin pages only for admins), and the
// page of the current route.

import { useEffect, useState } from "preact/hooks";
import { currentUser, logOut, onSessionChange, type User } from "../shared/session";
import { FeedbackProvider } from "./parts/feedback";
import { Link } from "./parts/link";
import { AuditPage } from "./pages/audit";
import { HealthPage } from "./pages/health";
import { LivePage } from "./pages/live";
import { LoginPage } from "./pages/login";
import { OrdersPage } from "./pages/orders";
import { RecordingsPage } from "./pages/recordings";
import { RoomPage } from "./pages/room";
import { RoomsPage } from "./pages/rooms";
import { useRoute, type Route } from "./router";

interface NavItem {
  to: string;
  label: string;
  page: Route["page"];
  adminOnly?: boolean;
}

const NAV: NavItem[] = [
  { to: "/", label: "Live now", page: "live" },
  { to: "/rooms", label: "Rooms", page: "rooms" },
  { to: "/recordings", label: "Recordings", page: "recordings" },
  { to: "/orders", label: "Orders", page: "orders", adminOnly: true },
  { to: "/health", label: "Health", page: "health", adminOnly: true },
  { to: "/audit", label: "Audit log", page: "audit", adminOnly: true },
];

const TITLES: Record<Route["page"], string> = {
  live: "Live now",
  rooms: "Rooms",
  room: "Room",
  recordings: "Recordings",
  orders: "Orders",
  health: "Health",
  audit: "Audit log",
  "not-found": "Not found",
};

function Page(props: { route: Route; user: User }) {
  const { route, user } = props;
  const admin = user.role === "admin";
  switch (route.page) {
    case "live":
      return <LivePage />;
    case "rooms":
      return <RoomsPage user={user} />;
    case "room":
      return <RoomPage id={route.id} />;
    case "recordings":
      return <RecordingsPage />;
    case "orders":
      return admin ? <OrdersPage /> : <Forbidden />;
    case "health":
      return admin ? <HealthPage /> : <Forbidden />;
    case "audit":
      return admin ? <AuditPage /> : <Forbidden />;
    case "not-found":
      return (
        <>
          <h1>Not found</h1>
          <p>
            No console page here. <Link to="/">Go to Live now</Link>.
          </p>
        </>
      );
  }
}

function Forbidden() {
  return (
    <>
      <h1>Admins only</h1>
      <p>This page is for admins.</p>
    </>
  );
}

export function App() {
  const [user, setUser] = useState<User | null>(currentUser());
  const route = useRoute();
  useEffect(() => onSessionChange(setUser), []);
  useEffect(() => {
    document.title = `${TITLES[route.page]} · livegate console`;
  }, [route.page]);

  if (!user || user.role === "viewer") {
    return <LoginPage />;
  }
  const admin = user.role === "admin";
  return (
    <FeedbackProvider>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <span class="brand">livegate</span>
        <nav aria-label="Console">
          <ul>
            {NAV.filter((item) => admin || !item.adminOnly).map((item) => (
              <li key={item.to}>
                <Link to={item.to} current={route.page === item.page || (item.page === "rooms" && route.page === "room")}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="who">
          <span>
            {user.username} <span class="muted">({user.role})</span>
          </span>
          <button type="button" class="small" onClick={() => void logOut()}>
            Log out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Page route={route} user={user} />
      </main>
    </FeedbackProvider>
  );
}
