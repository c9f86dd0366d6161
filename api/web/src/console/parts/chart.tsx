// A small SVG line chart of one series over time, with a text summary for screen readers.

import { clock } from "../../shared/format";

export interface Series {
  at: number;
  value: number | null;
}

const WIDTH = 600;
const HEIGHT = 160;
const PAD = { left: 44, right: 12, top: 12, bottom: 24 };

export function LineChart(props: { title: string; unit: string; points: Series[]; format(value: number): string }) {
  const known = props.points.filter((p): p is { at: number; value: number } => p.value !== null);
  const values = known.map((p) => p.value);
  const max = Math.max(1, ...values);
  const first = props.points[0]?.at ?? Date.now() - 3_600_000;
  const last = props.points[props.points.length - 1]?.at ?? Date.now();
  const span = Math.max(1, last - first);
  const x = (at: number) => PAD.left + ((at - first) / span) * (WIDTH - PAD.left - PAD.right);
  const y = (value: number) => PAD.top + (1 - value / max) * (HEIGHT - PAD.top - PAD.bottom);
  // Gaps (unknown values) break the line rather than drawing through them.
  let path = "";
  let drawing = false;
  for (const point of props.points) {
    if (point.value === null) {
      drawing = false;
      continue;
    }
    path += `${drawing ? "L" : "M"}${x(point.at).toFixed(1)},${y(point.value).toFixed(1)}`;
    drawing = true;
  }
  const now = values.length > 0 ? values[values.length - 1] : null;
  const summary =
    values.length === 0
      ? `${props.title}: no samples yet.`
      : `${props.title}: now ${props.format(now ?? 0)}, peak ${props.format(Math.max(...values))}, over ${values.length} samples since ${clock(first)}.`;
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={summary} preserveAspectRatio="none">
        <line class="axis" x1={PAD.left} y1={HEIGHT - PAD.bottom} x2={WIDTH - PAD.right} y2={HEIGHT - PAD.bottom} />
        <line class="grid" x1={PAD.left} y1={PAD.top} x2={WIDTH - PAD.right} y2={PAD.top} />
        <text class="tick" x={PAD.left - 6} y={PAD.top + 4} text-anchor="end">
          {props.format(max)}
        </text>
        <text class="tick" x={PAD.left - 6} y={HEIGHT - PAD.bottom} text-anchor="end">
          0
        </text>
        <text class="tick" x={PAD.left} y={HEIGHT - 6}>
          {clock(first)}
        </text>
        <text class="tick" x={WIDTH - PAD.right} y={HEIGHT - 6} text-anchor="end">
          {clock(last)}
        </text>
        {path && <path class="line" d={path} />}
      </svg>
      <p class="chart-summary">{summary}</p>
    </figure>
  );
}
