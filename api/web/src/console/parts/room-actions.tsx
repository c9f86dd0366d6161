// What an operator does to a room: kick the publisher, rotate the stream key (the new publish
// URL is shown once), disable the room, kill it at the edge. Each asks first and is one call.

import { del, post } from "../../shared/api";
import type { RoomAfterKick, RoomWithKey } from "../../shared/types";
import { useAction, useFeedback } from "./feedback";

function kickedText(kicked: string | undefined): string {
  switch (kicked) {
    case "kicked":
      return " The publisher was dropped.";
    case "failed":
      return " The origin did not drop the publisher.";
    case "no_control":
      return " No origin control API is configured, so the publisher was not dropped.";
    default:
      return "";
  }
}

export function RoomActions(props: { roomId: number; title: string; live: boolean; onChanged?: () => void }) {
  const { confirm, reveal } = useFeedback();
  const act = useAction();
  const { roomId, title } = props;
  const name = `“${title || `room ${roomId}`}”`;
  const changed = () => props.onChanged?.();

  const kick = async () => {
    const ok = await confirm({
      title: `Kick the publisher of ${name}?`,
      body: <p>The stream stops now. The key stays valid, so the publisher can reconnect.</p>,
      confirm: "Kick publisher",
      danger: true,
    });
    if (!ok) return;
    await act(
      () => post<{ kicked: boolean }>(`/rooms/${roomId}/kick`),
      (answer) => (answer.kicked ? `Publisher of ${name} kicked.` : `${name} had no publisher to kick.`),
    );
    changed();
  };

  const rotate = async () => {
    const ok = await confirm({
      title: `Rotate the stream key of ${name}?`,
      body: <p>The current key stops working at once and a live publisher is dropped. The new publish URL is shown once.</p>,
      confirm: "Rotate key",
      danger: true,
    });
    if (!ok) return;
    const answer = await act(
      () => post<RoomWithKey>(`/rooms/${roomId}/stream-key/rotate`),
      (value) => `Stream key of ${name} rotated.${kickedText(value.kicked)}`,
    );
    if (answer) {
      reveal(
        "New publish URL",
        <>
          <p>Shown this once: put it in OBS or ffmpeg now.</p>
          <label for="new-publish-url">Publish URL</label>
          <input id="new-publish-url" class="secret" readOnly value={answer.publish_url} data-testid="new-publish-url" onFocus={(e) => e.currentTarget.select()} />
        </>,
      );
      changed();
    }
  };

  const disable = async () => {
    const ok = await confirm({
      title: `Disable ${name}?`,
      body: <p>The room disappears for viewers, its publisher is dropped, viewers' tokens are refused and its chat closes.</p>,
      confirm: "Disable room",
      danger: true,
    });
    if (!ok) return;
    await act(
      () => del<RoomAfterKick>(`/rooms/${roomId}`),
      (value) => `${name} disabled.${kickedText(value.kicked)}`,
    );
    changed();
  };

  const kill = async () => {
    const ok = await confirm({
      title: `Kill ${name} at the edge?`,
      body: <p>Every edge refuses the viewers' current play tokens and ends their running streams.</p>,
      confirm: "Kill at edge",
      danger: true,
    });
    if (!ok) return;
    await act(
      () => post<RoomAfterKick>(`/rooms/${roomId}/kill`),
      (value) => `${name} killed at the edge.${kickedText(value.kicked)}`,
    );
    changed();
  };

  return (
    <div class="actions" role="group" aria-label={`Actions for ${title || `room ${roomId}`}`}>
      <button type="button" onClick={kick} disabled={!props.live}>
        Kick
      </button>
      <button type="button" onClick={rotate}>
        Rotate key
      </button>
      <button type="button" onClick={kill}>
        Kill at edge
      </button>
      <button type="button" class="danger" onClick={disable}>
        Disable
      </button>
    </div>
  );
}
