// One room: its details and settings, viewers and bitrate over the last hour, the live chat
// with moderation, and its past streams with their recordings.

import { useEffect, useState } from "preact/hooks";
import { get, patch, query } from "../../shared/api";
import { bytes, duration, kbps, time } from "../../shared/format";
import type { Page, Recording, Room, RoomHistory, StreamItem } from "../../shared/types";
import { useLoad } from "../hooks/use-load";
import { LineChart } from "../parts/chart";
import { ChatPanel } from "../parts/chat-panel";
import { useAction } from "../parts/feedback";
import { RoomActions } from "../parts/room-actions";
import { LoadState } from "../parts/status";
import { RecordingState } from "./recordings";

/** The history is sampled by the API; reading it every half minute keeps the charts current. */
const HISTORY_EVERY_MS = 30_000;

function Settings(props: { room: Room; onSaved(room: Room): void }) {
  const { room } = props;
  const [title, setTitle] = useState(room.title);
  const [loginRequired, setLoginRequired] = useState(room.login_required);
  const [cidrs, setCidrs] = useState((room.settings?.publish_allow_cidrs ?? []).join(", "));
  const act = useAction();
  useEffect(() => {
    setTitle(room.title);
    setLoginRequired(room.login_required);
    setCidrs((room.settings?.publish_allow_cidrs ?? []).join(", "));
  }, [room]);

  const save = async (event: Event) => {
    event.preventDefault();
    const list = cidrs
      .split(/[\s,]+/)
      .map((c) => c.trim())
      .filter(Boolean);
    const saved = await act(
      () => patch<Room>(`/rooms/${room.id}`, { title: title.trim(), login_required: loginRequired, publish_allow_cidrs: list }),
      "Settings saved.",
    );
    if (saved) props.onSaved(saved);
  };

  return (
    <form class="settings" onSubmit={save} aria-labelledby="settings-heading">
      <h2 id="settings-heading">Settings</h2>
      <label for="room-title">Title</label>
      <input id="room-title" value={title} maxLength={200} onInput={(e) => setTitle(e.currentTarget.value)} />
      <label class="check">
        <input type="checkbox" checked={loginRequired} onChange={(e) => setLoginRequired(e.currentTarget.checked)} /> Viewers must log in
      </label>
      <label for="room-cidrs">Publishers allowed from (CIDRs, comma-separated; empty: anywhere)</label>
      <input id="room-cidrs" value={cidrs} onInput={(e) => setCidrs(e.currentTarget.value)} placeholder="203.0.113.0/24" />
      <p class="muted">
        Stream key expires: {room.settings?.stream_key_expires_at ? time(room.settings.stream_key_expires_at) : "never"}
      </p>
      <button type="submit" class="primary">
        Save settings
      </button>
    </form>
  );
}

function Streams(props: { roomId: number }) {
  const streams = useLoad(() => get<Page<StreamItem>>(`/rooms/${props.roomId}/streams${query({ limit: 20 })}`), `streams-${props.roomId}`);
  const recordings = useLoad(
    () => get<Page<Recording>>(`/rooms/${props.roomId}/recordings${query({ limit: 50 })}`).catch(() => ({ items: [], next_cursor: null })),
    `recordings-${props.roomId}`,
  );
  const byStream = new Map<number, Recording[]>();
  for (const recording of recordings.data?.items ?? []) {
    if (recording.stream_id === null) continue;
    byStream.set(recording.stream_id, [...(byStream.get(recording.stream_id) ?? []), recording]);
  }
  return (
    <section aria-labelledby="streams-heading">
      <h2 id="streams-heading">Past streams</h2>
      <LoadState load={streams} what="streams" />
      {streams.data && streams.data.items.length === 0 && <p class="empty">No stream yet.</p>}
      {streams.data && streams.data.items.length > 0 && (
        <div class="table-wrap">
          <table class="cards">
            <caption class="visually-hidden">Past streams and their recordings</caption>
            <thead>
              <tr>
                <th scope="col">Stream</th>
                <th scope="col">Started</th>
                <th scope="col">Length</th>
                <th scope="col">Recordings</th>
              </tr>
            </thead>
            <tbody>
              {streams.data.items.map((stream) => (
                <tr key={stream.id}>
                  <th scope="row" data-label="Stream">
                    #{stream.id} {stream.is_live && <span class="badge badge-live">live</span>}
                  </th>
                  <td data-label="Started">{time(stream.start_at)}</td>
                  <td data-label="Length">{stream.stop_at ? duration((stream.stop_at - stream.start_at) / 1000) : "—"}</td>
                  <td data-label="Recordings">
                    {(byStream.get(stream.id) ?? []).length === 0 && !stream.record_url && <span class="muted">none</span>}
                    <ul class="plain">
                      {(byStream.get(stream.id) ?? []).map((recording) => (
                        <li key={recording.id}>
                          <RecordingState recording={recording} /> {bytes(recording.size_bytes)}{" "}
                          {recording.download_url && (
                            <a href={recording.download_url} download>
                              Download<span class="visually-hidden"> recording {recording.id}</span>
                            </a>
                          )}
                        </li>
                      ))}
                    </ul>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

export function RoomPage(props: { id: number }) {
  const room = useLoad(() => get<Room>(`/rooms/${props.id}`), `room-${props.id}`);
  const history = useLoad(() => get<RoomHistory>(`/rooms/${props.id}/history${query({ minutes: 60 })}`), `history-${props.id}`, HISTORY_EVERY_MS);
  const [shown, setShown] = useState<Room | null>(null);
  useEffect(() => setShown(room.data), [room.data]);
  const points = history.data?.points ?? [];

  return (
    <>
      <LoadState load={room} what="the room" />
      {shown && (
        <>
          <div class="page-head">
            <h1>
              {shown.title || `Room ${shown.id}`} <span class="muted">#{shown.id}</span>
            </h1>
            <p>
              <span class={`badge ${shown.is_live ? "badge-live" : ""}`} data-testid="room-state">
                {shown.disabled ? "disabled" : shown.is_live ? "live" : "offline"}
              </span>{" "}
              {shown.viewer_count} watching · <a href={`/watch/${shown.id}`}>watch page</a>
            </p>
            {shown.cover_url && (
              <img class="room-cover" src={shown.cover_url} alt={shown.is_live ? "Live snapshot" : "Newest recording's poster"} data-testid="room-cover" />
            )}
          </div>
          <RoomActions roomId={shown.id} title={shown.title} live={shown.is_live} onChanged={room.reload} />
          <div class="room-grid">
            <div>
              <section aria-labelledby="charts-heading">
                <h2 id="charts-heading">Last hour</h2>
                <LoadState load={history} what="the history" />
                <LineChart title="Viewers" unit="viewers" points={points.map((p) => ({ at: p.at, value: p.viewers }))} format={(v) => String(Math.round(v))} />
                <LineChart title="Incoming bitrate" unit="kb/s" points={points.map((p) => ({ at: p.at, value: p.bitrate_kbps }))} format={kbps} />
              </section>
              <Settings room={shown} onSaved={setShown} />
            </div>
            <ChatPanel roomId={shown.id} ownerId={shown.owner_id} />
          </div>
          <Streams roomId={shown.id} />
        </>
      )}
    </>
  );
}
