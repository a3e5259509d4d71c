/**
 * Completion statistics and status-bar text. Pure, so node can test it.
 */

/** starting: the server process; loading: its model; ready; error; stopped. */
export type ServerState = "starting" | "loading" | "ready" | "error" | "stopped";

/** The server's model status (from its `infill.stats` command) as a client state. */
export function stateFromServerStats(stats: unknown): { state: ServerState; error?: string } {
  const model = (stats as { model?: { status?: string; error?: string | null } } | null)?.model;
  switch (model?.status) {
    case "ready":
      return { state: "ready" };
    case "failed":
      return { state: "error", error: model.error ?? "the model failed to load" };
    case "loading":
    case "unloaded":
      return { state: "loading" };
    default:
      return { state: "ready" }; // a server without model status: nothing to wait for
  }
}

export class CompletionStats {
  requests = 0;
  withSuggestion = 0;
  errors = 0;
  lastLatencyMs: number | undefined;
  private latencies: number[] = [];

  record(latencyMs: number, itemCount: number): void {
    this.requests += 1;
    if (itemCount > 0) this.withSuggestion += 1;
    this.lastLatencyMs = latencyMs;
    this.latencies.push(latencyMs);
    if (this.latencies.length > 1000) this.latencies.shift();
  }

  recordError(): void {
    this.requests += 1;
    this.errors += 1;
  }

  /** Latency percentile (0-100) over the last 1000 requests, or undefined before the first. */
  percentile(p: number): number | undefined {
    if (this.latencies.length === 0) return undefined;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    const index = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
    return sorted[Math.max(0, index)];
  }

  summary(): string {
    const ms = (v: number | undefined) => (v === undefined ? "-" : `${Math.round(v)} ms`);
    return (
      `requests ${this.requests}, with a suggestion ${this.withSuggestion}, errors ${this.errors}; ` +
      `latency last ${ms(this.lastLatencyMs)}, p50 ${ms(this.percentile(50))}, p90 ${ms(this.percentile(90))}`
    );
  }
}

/** Status bar text: codicon + short state, with the last latency once ready. */
export function statusText(state: ServerState, enabled: boolean, lastLatencyMs?: number): string {
  switch (state) {
    case "starting":
      return "$(loading~spin) infill";
    case "loading":
      return "$(loading~spin) infill: loading model";
    case "error":
      return "$(error) infill";
    case "stopped":
      return "$(circle-slash) infill";
    case "ready":
      if (!enabled) return "$(circle-slash) infill off";
      return lastLatencyMs === undefined ? "$(check) infill" : `$(check) infill ${Math.round(lastLatencyMs)} ms`;
  }
}
