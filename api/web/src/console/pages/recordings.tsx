// Recordings: where each is on its way (discovered → remuxing → uploading → recorded, or
// failed with the reason), its size and length, a download link, and retry for failed ones.

import { useState } from "preact/hooks";
import { get, post, query } from "../../shared/api";
import { bytes, duration, time } from "../../shared/format";
import type { Page, Recording } from "../../shared/types";
import { useLoad } from "../hooks/use-load";
import { useAction, useFeedback } from "../parts/feedback";
import { Link } from "../parts/link";
import { LoadState } from "../parts/status";

const STATES = ["", "discovered", "remuxing", "uploading", "recorded", "failed"];

export function RecordingState(props: { recording: Recording }) {
  const { state, error } = props.recording;
  return (
    <span class={`badge badge-${state}`} title={error ?? undefined}>
      {state}
    </span>
  );
}

export function RecordingsPage() {
  const [state, setState] = useState("");
  const [room, setRoom] = useState("");
  const [items, setItems] = useState<Recording[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const filter = { state, room: room.trim() };
  const load = useLoad(async () => {
    const page = await get<Page<Recording>>(`/admin/recordings${query({ ...filter, limit: 50 })}`);
    setItems(page.items);
    setCursor(page.next_cursor);
    return page;
  }, `recordings-${state}-${filter.room}`, 15_000);
  const more = async () => {
    if (!cursor) return;
    const page = await get<Page<Recording>>(`/admin/recordings${query({ ...filter, limit: 50, cursor })}`);
    setItems((all) => [...all, ...page.items]);
    setCursor(page.next_cursor);
  };
  const act = useAction();
  const { confirm } = useFeedback();

  const retry = async (recording: Recording) => {
    const ok = await confirm({
      title: `Retry recording ${recording.id}?`,
      body: <p>The recorder takes it up again from the start: remux, upload, verify.</p>,
      confirm: "Retry",
    });
    if (!ok) return;
    await act(() => post(`/admin/recordings/${recording.id}/retry`), `Recording ${recording.id} queued again.`);
    load.reload();
  };

  return (
    <>
      <div class="page-head">
        <h1>Recordings</h1>
      </div>
      <form class="inline-form" onSubmit={(e) => e.preventDefault()} aria-label="Filter recordings">
        <label for="rec-state">State</label>
        <select id="rec-state" value={state} onChange={(e) => setState(e.currentTarget.value)}>
          {STATES.map((s) => (
            <option value={s}>{s || "any"}</option>
          ))}
        </select>
        <label for="rec-room">Room id</label>
        <input id="rec-room" inputMode="numeric" pattern="[0-9]*" value={room} onChange={(e) => setRoom(e.currentTarget.value)} />
      </form>
      <LoadState load={load} what="recordings" />
      {load.data && items.length === 0 && <p class="empty">No recordings.</p>}
      {items.length > 0 && (
        <div class="table-wrap">
          <table class="cards" data-testid="recordings-table">
            <caption class="visually-hidden">Recordings</caption>
            <thead>
              <tr>
                <th scope="col">Recording</th>
                <th scope="col">Room</th>
                <th scope="col">State</th>
                <th scope="col">Size</th>
                <th scope="col">Duration</th>
                <th scope="col">Updated</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {items.map((recording) => (
                <tr key={recording.id}>
                  <th scope="row" data-label="Recording">
                    #{recording.id}
                    {recording.stream_id !== null && <span class="muted"> stream {recording.stream_id}</span>}
                  </th>
                  <td data-label="Room">
                    <Link to={`/rooms/${recording.room_id}`}>#{recording.room_id}</Link>
                  </td>
                  <td data-label="State">
                    <RecordingState recording={recording} />
                    {recording.error && <div class="reason">{recording.error}</div>}
                  </td>
                  <td data-label="Size">{bytes(recording.size_bytes)}</td>
                  <td data-label="Duration">{recording.duration_ms === null ? "—" : duration(recording.duration_ms / 1000)}</td>
                  <td data-label="Updated">{time(recording.updated_at)}</td>
                  <td data-label="Actions">
                    <div class="actions">
                      {recording.download_url && (
                        <a class="button" href={recording.download_url} download>
                          Download<span class="visually-hidden"> recording {recording.id}</span>
                        </a>
                      )}
                      {recording.state === "failed" && (
                        <button type="button" onClick={() => void retry(recording)}>
                          Retry<span class="visually-hidden"> recording {recording.id}</span>
                        </button>
                      )}
                    </div>
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
