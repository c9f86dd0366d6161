// Health: origins, database, bus and storage checks, and the proxy's, hooks' and recorder's
// numbers as the API scrapes them from their metrics.

import { get } from "../../shared/api";
import { label, number } from "../../shared/format";
import type { Health } from "../../shared/types";
import { useLoad } from "../hooks/use-load";
import { LoadState } from "../parts/status";

const EVERY_MS = 10_000;

function Numbers(props: { title: string; values: Record<string, number | null> | null; id: string }) {
  return (
    <section class="panel" aria-labelledby={props.id}>
      <h2 id={props.id}>{props.title}</h2>
      {props.values === null ? (
        <p class="muted">Not configured.</p>
      ) : (
        <dl class="numbers">
          {Object.entries(props.values).map(([name, value]) => (
            <div key={name}>
              <dt>{label(name)}</dt>
              <dd>{number(value, 2)}</dd>
            </div>
          ))}
        </dl>
      )}
    </section>
  );
}

export function HealthPage() {
  const health = useLoad(() => get<Health>("/admin/health"), "health", EVERY_MS);
  const data = health.data;
  return (
    <>
      <div class="page-head">
        <h1>Health</h1>
        <p class="muted">Checked every {EVERY_MS / 1000} s.</p>
      </div>
      <LoadState load={health} what="health" />
      {data && (
        <>
          <section aria-labelledby="checks-heading">
            <h2 id="checks-heading">Checks</h2>
            <ul class="checks" data-testid="health-checks">
              {data.checks.map((check) => (
                <li key={check.name} class={check.ok ? "ok" : "bad"}>
                  <span class={`badge ${check.ok ? "badge-ok" : "badge-failed"}`}>{check.ok ? "ok" : "failing"}</span>{" "}
                  <strong>{check.name}</strong> <span>{check.detail}</span>
                  {check.latency_ms !== null && <span class="muted"> · {number(check.latency_ms)} ms</span>}
                </li>
              ))}
            </ul>
          </section>
          <div class="panels">
            <Numbers id="proxy-heading" title="Proxy" values={data.proxy} />
            <Numbers id="hooks-heading" title="Hooks" values={data.hooks} />
            <Numbers id="recorder-heading" title="Recorder" values={data.recorder} />
          </div>
        </>
      )}
    </>
  );
}
