// Rooms: the caller's rooms (every room for an admin), and a new room with its key shown once.

import { useState } from "preact/hooks";
import { get, post, query } from "../../shared/api";
import type { Page, Room, RoomWithKey } from "../../shared/types";
import type { User } from "../../shared/session";
import { useLoad } from "../hooks/use-load";
import { useAction, useFeedback } from "../parts/feedback";
import { Link } from "../parts/link";
import { LoadState } from "../parts/status";

export function RoomsPage(props: { user: User }) {
  const owner = props.user.role === "admin" ? undefined : props.user.id;
  const [pages, setPages] = useState<Room[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const load = useLoad(async () => {
    const page = await get<Page<Room>>(`/rooms${query({ owner, limit: 50 })}`);
    setPages(page.items);
    setCursor(page.next_cursor);
    return page;
  }, `rooms-${owner ?? "all"}`);
  const more = async () => {
    if (!cursor) return;
    const page = await get<Page<Room>>(`/rooms${query({ owner, limit: 50, cursor })}`);
    setPages((rooms) => [...rooms, ...page.items]);
    setCursor(page.next_cursor);
  };
  const [title, setTitle] = useState("");
  const act = useAction();
  const { reveal } = useFeedback();

  const create = async (event: Event) => {
    event.preventDefault();
    const made = await act(() => post<RoomWithKey>("/rooms", { title: title.trim() }), (room) => `Room ${room.room.id} created.`);
    if (made) {
      setTitle("");
      reveal(
        "Publish URL of the new room",
        <>
          <p>Shown this once: put it in OBS or ffmpeg now.</p>
          <label for="created-publish-url">Publish URL</label>
          <input id="created-publish-url" class="secret" readOnly value={made.publish_url} onFocus={(e) => e.currentTarget.select()} />
        </>,
      );
      load.reload();
    }
  };

  return (
    <>
      <div class="page-head">
        <h1>Rooms</h1>
      </div>
      <form class="inline-form" onSubmit={create}>
        <label for="new-room-title">New room title</label>
        <input id="new-room-title" value={title} maxLength={200} onInput={(e) => setTitle(e.currentTarget.value)} />
        <button type="submit" class="primary">
          Create room
        </button>
      </form>
      <LoadState load={load} what="rooms" />
      {load.data && (
        <div class="table-wrap">
          <table class="cards">
            <caption class="visually-hidden">Rooms</caption>
            <thead>
              <tr>
                <th scope="col">Room</th>
                <th scope="col">State</th>
                <th scope="col">Viewers</th>
                <th scope="col">Login required</th>
                <th scope="col">Watch page</th>
              </tr>
            </thead>
            <tbody>
              {pages.map((room) => (
                <tr key={room.id}>
                  <th scope="row" data-label="Room">
                    <Link to={`/rooms/${room.id}`}>{room.title || `Room ${room.id}`}</Link> <span class="muted">#{room.id}</span>
                  </th>
                  <td data-label="State">
                    <span class={`badge ${room.is_live ? "badge-live" : ""}`}>{room.is_live ? "live" : "offline"}</span>
                  </td>
                  <td data-label="Viewers">{room.viewer_count}</td>
                  <td data-label="Login required">{room.login_required ? "yes" : "no"}</td>
                  <td data-label="Watch page">
                    <a href={`/watch/${room.id}`}>/watch/{room.id}</a>
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
