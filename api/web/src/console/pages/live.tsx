// Live now: one row per live room, fed by the API's event stream (a snapshot whenever
// something changes, and every few seconds for the numbers), with the room actions.

import { useEffect, useState } from "preact/hooks";
import { duration, kbps } from "../../shared/format";
import { follow, type FeedState } from "../../shared/sse";
import type { LiveRoom, LiveSnapshot } from "../../shared/types";
import { Link } from "../parts/link";
import { RoomActions } from "../parts/room-actions";

function media(room: LiveRoom): string {
  const parts: string[] = [];
  if (room.video) parts.push(`${room.video.codec} ${room.video.width}×${room.video.height}`);
  if (room.audio) parts.push(room.audio.codec);
  return parts.length > 0 ? parts.join(" · ") : "—";
}

function feedText(state: FeedState, detail: string | undefined, at: number | null): string {
  switch (state) {
    case "open":
      return at ? `Live · updated ${new Date(at).toLocaleTimeString()}` : "Live · waiting for the first snapshot";
    case "connecting":
      return "Connecting to the live feed…";
    case "retrying":
      return `Feed interrupted${detail ? ` (${detail})` : ""}; reconnecting…`;
    case "stopped":
      return detail ? `Feed stopped: ${detail}` : "Feed stopped";
  }
}

export function LivePage() {
  const [rooms, setRooms] = useState<LiveRoom[] | null>(null);
  const [state, setState] = useState<{ state: FeedState; detail?: string }>({ state: "connecting" });
  const [updated, setUpdated] = useState<number | null>(null);

  useEffect(() => {
    const stop = new AbortController();
    void follow(
      "/admin/live/events",
      {
        onEvent(event) {
          if (event.event !== "snapshot") return;
          try {
            const snapshot = JSON.parse(event.data) as LiveSnapshot;
            setRooms(snapshot.rooms);
            setUpdated(Date.now());
          } catch {
            // A torn or unknown event: the next snapshot replaces it.
          }
        },
        onState(next, detail) {
          setState(detail === undefined ? { state: next } : { state: next, detail });
        },
      },
      stop.signal,
    );
    return () => stop.abort();
  }, []);

  return (
    <>
      <div class="page-head">
        <h1>Live now</h1>
        <p class={`feed feed-${state.state}`} data-testid="feed-state">
          {feedText(state.state, state.detail, updated)}
        </p>
      </div>
      {rooms === null ? (
        <p class="muted">Loading…</p>
      ) : rooms.length === 0 ? (
        <p class="empty" data-testid="no-live-rooms">
          No room is live. A room appears here as soon as its publisher connects.
        </p>
      ) : (
        <div class="table-wrap">
          <table class="cards" data-testid="live-table">
            <caption class="visually-hidden">Rooms live now</caption>
            <thead>
              <tr>
                <th scope="col">Room</th>
                <th scope="col">Owner</th>
                <th scope="col">Publisher</th>
                <th scope="col">Media</th>
                <th scope="col">Incoming</th>
                <th scope="col">Viewers FLV / HLS / chat</th>
                <th scope="col">Uptime</th>
                <th scope="col">Recording</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {rooms.map((room) => (
                <tr key={room.room_id} data-room-id={room.room_id}>
                  <th scope="row" data-label="Room">
                    <Link to={`/rooms/${room.room_id}`}>{room.title || `Room ${room.room_id}`}</Link>
                    <span class="muted"> #{room.room_id}</span>
                  </th>
                  <td data-label="Owner">{room.owner.username}</td>
                  <td data-label="Publisher">
                    <code>{room.publisher_addr ?? "—"}</code>
                  </td>
                  <td data-label="Media">{media(room)}</td>
                  <td data-label="Incoming">{kbps(room.bitrate_kbps)}</td>
                  <td data-label="Viewers">
                    {room.viewers.flv} / {room.viewers.hls} / {room.viewers.chat}
                  </td>
                  <td data-label="Uptime">{duration(room.uptime_s)}</td>
                  <td data-label="Recording">
                    <span class={`badge ${room.recording === "recording" ? "badge-rec" : ""}`}>{room.recording}</span>
                  </td>
                  <td data-label="Actions">
                    <RoomActions roomId={room.room_id} title={room.title} live />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
