// The audit log (admins): who did what to which target, when, and how it ended.

import { useState } from "preact/hooks";
import { get, query } from "../../shared/api";
import { time } from "../../shared/format";
import type { AuditEntry, Page } from "../../shared/types";
import { useLoad } from "../hooks/use-load";
import { LoadState } from "../parts/status";

/** An outcome that is a refusal or failure: an HTTP status of 400 or more, or a word saying so. */
function refused(status: number | string): boolean {
  return typeof status === "number" ? status >= 400 : !/^(ok|2\d\d)$/i.test(status);
}

export function AuditPage() {
  const [room, setRoom] = useState("");
  const [actor, setActor] = useState("");
  const [items, setItems] = useState<AuditEntry[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const filter = { room: room.trim(), actor: actor.trim() };
  const load = useLoad(async () => {
    const page = await get<Page<AuditEntry>>(`/admin/audit${query({ ...filter, limit: 50 })}`);
    setItems(page.items);
    setCursor(page.next_cursor);
    return page;
  }, `audit-${filter.room}-${filter.actor}`);
  const more = async () => {
    if (!cursor) return;
    const page = await get<Page<AuditEntry>>(`/admin/audit${query({ ...filter, limit: 50, cursor })}`);
    setItems((all) => [...all, ...page.items]);
    setCursor(page.next_cursor);
  };
  return (
    <>
      <div class="page-head">
        <h1>Audit log</h1>
      </div>
      <form class="inline-form" onSubmit={(e) => e.preventDefault()} aria-label="Filter the audit log">
        <label for="audit-room">Room id</label>
        <input id="audit-room" inputMode="numeric" value={room} onChange={(e) => setRoom(e.currentTarget.value)} />
        <label for="audit-actor">User id</label>
        <input id="audit-actor" inputMode="numeric" value={actor} onChange={(e) => setActor(e.currentTarget.value)} />
      </form>
      <LoadState load={load} what="the audit log" />
      {load.data && items.length === 0 && <p class="empty">Nothing recorded yet.</p>}
      {items.length > 0 && (
        <div class="table-wrap">
          <table class="cards" data-testid="audit-table">
            <caption class="visually-hidden">Audit log, newest first</caption>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Who</th>
                <th scope="col">What</th>
                <th scope="col">Target</th>
                <th scope="col">Outcome</th>
              </tr>
            </thead>
            <tbody>
              {items.map((entry) => (
                <tr key={entry.id}>
                  <th scope="row" data-label="When">
                    {time(entry.at)}
                  </th>
                  <td data-label="Who">{entry.actor ? `${entry.actor.username} (${entry.actor.role})` : "—"}</td>
                  <td data-label="What">
                    <code>{entry.action}</code>
                  </td>
                  <td data-label="Target">{entry.target}</td>
                  <td data-label="Outcome">
                    {entry.status}
                    {entry.detail && <div class={refused(entry.status) ? "reason" : "muted"}>{entry.detail}</div>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {cursor && (
        <button type="button" onClick={more}>
          Load more
        </button>
      )}
    </>
  );
}
