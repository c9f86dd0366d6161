// A room's live chat for its moderators: the log as it arrives, with delete, mute and ban on
// each message, slow mode and clearing for the room, and sending as the logged-in user.
// Moderation goes through the REST calls (audited), reading through the socket.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { post, put } from "../../shared/api";
import { ChatClient, type ChatLine, type ChatView } from "../../shared/chat";
import { clock } from "../../shared/format";
import { accessToken } from "../../shared/session";
import { useAction, useFeedback } from "./feedback";

const SLOW_MODES = [0, 5, 10, 30, 60, 300];
const MUTE_S = 600;

export function ChatPanel(props: { roomId: number; ownerId: number }) {
  const [view, setView] = useState<ChatView>({ lines: [], status: { kind: "connecting" }, online: null });
  const [draft, setDraft] = useState("");
  const [slow, setSlow] = useState(0);
  const list = useRef<HTMLDivElement>(null);
  const { confirm, notify } = useFeedback();
  const act = useAction();
  const client = useMemo(() => new ChatClient(props.roomId, () => accessToken(), setView), [props.roomId]);

  useEffect(() => {
    client.start();
    return () => client.stop();
  }, [client]);

  useEffect(() => {
    const element = list.current;
    if (element) element.scrollTop = element.scrollHeight;
  }, [view.lines.length]);

  const who = (line: ChatLine) => line.user?.name ?? "someone";

  const remove = async (line: ChatLine) => {
    if (line.offset === undefined) return;
    const ok = await confirm({
      title: "Delete this message?",
      body: <blockquote>{line.text}</blockquote>,
      confirm: "Delete message",
      danger: true,
    });
    if (ok) await act(() => post(`/rooms/${props.roomId}/chat/messages/${line.offset}/delete`), "Message deleted.");
  };

  const sanction = async (line: ChatLine, kind: "mute" | "ban") => {
    const user = line.user;
    if (!user) return;
    const ok = await confirm({
      title: kind === "mute" ? `Mute ${user.name} for 10 minutes?` : `Ban ${user.name} from this room's chat?`,
      body:
        kind === "mute" ? (
          <p>They can still read the chat but not write.</p>
        ) : (
          <p>Their chat connections close and they cannot rejoin until the ban is lifted.</p>
        ),
      confirm: kind === "mute" ? "Mute" : "Ban",
      danger: true,
    });
    if (!ok) return;
    if (kind === "mute") {
      await act(() => post(`/rooms/${props.roomId}/mutes`, { user_id: user.id, duration_s: MUTE_S }), `${user.name} muted for 10 minutes.`);
    } else {
      await act(() => post(`/rooms/${props.roomId}/bans`, { user_id: user.id }), `${user.name} banned.`);
    }
  };

  const clear = async () => {
    const ok = await confirm({
      title: "Clear the whole chat?",
      body: <p>Every message so far disappears for everyone.</p>,
      confirm: "Clear chat",
      danger: true,
    });
    if (ok) await act(() => post(`/rooms/${props.roomId}/chat/clear`), "Chat cleared.");
  };

  const setSlowMode = async (seconds: number) => {
    const done = await act(
      () => put(`/rooms/${props.roomId}/chat/slow-mode`, { seconds }),
      seconds === 0 ? "Slow mode off." : `Slow mode: one message every ${seconds} s.`,
    );
    if (done !== null) setSlow(seconds);
  };

  const send = async (event: Event) => {
    event.preventDefault();
    const text = draft.trim();
    if (!text) return;
    try {
      await client.send(text);
      setDraft("");
    } catch (error) {
      notify({ kind: "error", text: error instanceof Error ? error.message : String(error) });
    }
  };

  const status = view.status;
  return (
    <section class="chat-panel" aria-labelledby="chat-heading">
      <div class="section-head">
        <h2 id="chat-heading">Live chat</h2>
        <span class="muted" data-testid="chat-status">
          {status.kind === "open" ? `connected${view.online !== null ? ` · ${view.online} present` : ""}` : status.kind === "closed" ? status.reason : "connecting…"}
        </span>
      </div>
      <div class="chat-tools">
        <label>
          Slow mode{" "}
          <select value={slow} onChange={(e) => void setSlowMode(Number(e.currentTarget.value))}>
            {SLOW_MODES.map((s) => (
              <option value={s}>{s === 0 ? "off" : `${s} s`}</option>
            ))}
          </select>
        </label>
        <button type="button" class="danger" onClick={clear}>
          Clear chat
        </button>
      </div>
      <div class="chat-log" ref={list} role="log" aria-label="Chat messages" tabIndex={0}>
        <ol class="plain">
        {view.lines.length === 0 && <li class="muted">No messages yet.</li>}
        {view.lines.map((line) => (
          <li key={line.id} class={`chat-line chat-${line.type}`} data-offset={line.offset}>
            <span class="chat-meta">
              <time dateTime={new Date(line.at).toISOString()}>{clock(line.at)}</time>{" "}
              {(line.type === "chat" || line.type === "gift") && <strong>{who(line)}</strong>}
            </span>{" "}
            <span class="chat-text">{line.type === "gift" && "🎁 "}
              {line.type === "live" ? "The stream started." : line.type === "offline" ? "The stream ended." : line.text}</span>
            {(line.type === "chat" || line.type === "gift") && line.offset !== undefined && (
              <span class="chat-actions">
                <button type="button" class="small" onClick={() => void remove(line)} aria-label={`Delete message from ${who(line)}: ${line.text ?? ""}`}>
                  Delete
                </button>
                {line.user && line.user.id !== props.ownerId && (
                  <>
                    <button type="button" class="small" onClick={() => void sanction(line, "mute")} aria-label={`Mute ${who(line)}`}>
                      Mute
                    </button>
                    <button type="button" class="small" onClick={() => void sanction(line, "ban")} aria-label={`Ban ${who(line)}`}>
                      Ban
                    </button>
                  </>
                )}
              </span>
            )}
          </li>
        ))}
      </ol>
      </div>
      <form class="chat-send" onSubmit={send}>
        <label for="console-chat-text" class="visually-hidden">
          Message
        </label>
        <input
          id="console-chat-text"
          value={draft}
          maxLength={500}
          placeholder="Write to the room"
          onInput={(e) => setDraft(e.currentTarget.value)}
          disabled={status.kind !== "open" || !status.canSend}
        />
        <button type="submit" disabled={status.kind !== "open" || !status.canSend}>
          Send
        </button>
      </form>
    </section>
  );
}
