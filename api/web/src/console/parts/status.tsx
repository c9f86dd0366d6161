import type { Loaded } from "../hooks/use-load";

/** "Loading…" or the error of a load, in words and announced. */
export function LoadState(props: { load: Loaded<unknown>; what: string }) {
  if (props.load.error) {
    return (
      <p class="error" role="alert">
        Could not load {props.what}: {props.load.error}{" "}
        <button type="button" class="small" onClick={props.load.reload}>
          Try again
        </button>
      </p>
    );
  }
  if (props.load.loading && props.load.data === null) return <p class="muted">Loading {props.what}…</p>;
  return null;
}
