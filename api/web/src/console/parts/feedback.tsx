// Confirmation of destructive actions in a modal <dialog> (focus moves into it, Escape
// cancels), and one polite live region that announces what an action did.

import type { ComponentChildren } from "preact";
import { createContext } from "preact";
import { useCallback, useContext, useEffect, useRef, useState } from "preact/hooks";

export interface ConfirmRequest {
  title: string;
  body: ComponentChildren;
  confirm: string;
  danger?: boolean;
}

export interface Notice {
  kind: "ok" | "error";
  text: string;
}

interface Feedback {
  confirm(request: ConfirmRequest): Promise<boolean>;
  notify(notice: Notice): void;
  /** Shows something once (a new stream key) until the user closes it. */
  reveal(title: string, body: ComponentChildren): void;
}

/** How long an announcement stays on screen (screen readers have read it by then). */
const NOTICE_MS = 8000;

const FeedbackContext = createContext<Feedback | null>(null);

export function useFeedback(): Feedback {
  const feedback = useContext(FeedbackContext);
  if (!feedback) throw new Error("useFeedback outside FeedbackProvider");
  return feedback;
}

type Open =
  | { kind: "confirm"; request: ConfirmRequest; resolve(answer: boolean): void }
  | { kind: "reveal"; title: string; body: ComponentChildren };

export function FeedbackProvider(props: { children: ComponentChildren }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [open, setOpen] = useState<Open | null>(null);
  const [notice, setNotice] = useState<Notice | null>(null);
  const opener = useRef<Element | null>(null);

  const confirm = useCallback(
    (request: ConfirmRequest) =>
      new Promise<boolean>((resolve) => {
        opener.current = document.activeElement;
        setOpen({ kind: "confirm", request, resolve });
      }),
    [],
  );
  const reveal = useCallback((title: string, body: ComponentChildren) => {
    opener.current = document.activeElement;
    setOpen({ kind: "reveal", title, body });
  }, []);
  const notify = useCallback((next: Notice) => setNotice(next), []);

  useEffect(() => {
    if (!notice) return;
    const timer = setTimeout(() => setNotice(null), NOTICE_MS);
    return () => clearTimeout(timer);
  }, [notice]);

  useEffect(() => {
    const element = dialog.current;
    if (!element) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);

  const finish = (answer: boolean) => {
    if (open?.kind === "confirm") open.resolve(answer);
    setOpen(null);
    const back = opener.current;
    if (back instanceof HTMLElement && back.isConnected) back.focus();
  };

  return (
    <FeedbackContext.Provider value={{ confirm, notify, reveal }}>
      {props.children}
      <div class={`notice ${notice ? `notice-${notice.kind}` : ""}`} role="status" aria-live="polite" data-testid="notice">
        {notice?.text}
      </div>
      <dialog
        ref={dialog}
        aria-labelledby="dialog-title"
        onCancel={(event) => {
          event.preventDefault();
          finish(false);
        }}
      >
        {open?.kind === "confirm" && (
          <form
            method="dialog"
            onSubmit={(event) => {
              event.preventDefault();
              finish(true);
            }}
          >
            <h2 id="dialog-title">{open.request.title}</h2>
            <div class="dialog-body">{open.request.body}</div>
            <div class="dialog-actions">
              <button type="button" onClick={() => finish(false)} autofocus>
                Cancel
              </button>
              <button type="submit" class={open.request.danger ? "danger" : "primary"}>
                {open.request.confirm}
              </button>
            </div>
          </form>
        )}
        {open?.kind === "reveal" && (
          <div>
            <h2 id="dialog-title">{open.title}</h2>
            <div class="dialog-body">{open.body}</div>
            <div class="dialog-actions">
              <button type="button" class="primary" onClick={() => finish(false)} autofocus>
                Done
              </button>
            </div>
          </div>
        )}
      </dialog>
    </FeedbackContext.Provider>
  );
}

/** Runs an API action, announcing its outcome; resolves with its answer or null on failure. */
export function useAction() {
  const { notify } = useFeedback();
  return useCallback(
    async <T,>(run: () => Promise<T>, done: string | ((value: T) => string)): Promise<T | null> => {
      try {
        const value = await run();
        notify({ kind: "ok", text: typeof done === "string" ? done : done(value) });
        return value;
      } catch (error) {
        notify({ kind: "error", text: error instanceof Error ? error.message : String(error) });
        return null;
      }
    },
    [notify],
  );
}
